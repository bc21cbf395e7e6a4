//! The admin API's OpenAPI 3.1 document, separate from the merchant API's (other audience,
//! other credential), generated from the handlers' `#[utoipa::path]` attributes and served at
//! `/admin/api/openapi.json`.

use super::error::AdminErrorBody;
use actix_web::HttpResponse;
use serde_json::Value;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::OpenApiFactory;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Countersign admin API",
        description = "For an operator's admin tooling: claim and finalize pending withdrawals in \
two steps, as the management panel does (`PENDING -> PROCESSING`, then `PROCESSING -> COMPLETED` \
or `REJECTED`). Get a bearer token (a JWT, 15 minutes) from `POST /admin/api/token` with the \
user's email, password and current TOTP code, and send it as `Authorization: Bearer <token>`. \
A token is revoked when the user's password, role, rights or two-factor authentication change \
or the user is removed. Errors are `{\"error\": {\"code\", \"message\"}}` with stable codes.",
        license(name = "Apache-2.0")
    ),
    components(schemas(AdminErrorBody)),
    modifiers(&Security),
    tags(
        (name = "Authentication", description = "Bearer tokens"),
        (name = "Withdrawals", description = "The queue, and the two-step finalize"),
    )
)]
struct AdminDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "Bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some("From POST /admin/api/token; valid 15 minutes."))
                        .build(),
                ),
            );
    }
}

pub fn build() -> Value {
    let api = super::admin_api();
    let mut doc = AdminDoc::openapi();
    doc.paths.merge(api.paths());
    let mut schemas = Vec::new();
    api.schemas(&mut schemas);
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    serde_json::to_value(&doc).unwrap_or_default()
}

fn cached() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| build().to_string())
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(cached())
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_carry_the_prefix_and_schemas_resolve() {
        let doc = super::build();
        let paths = doc["paths"].as_object().unwrap();
        let mut keys: Vec<_> = paths.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "/admin/api/token",
                "/admin/api/withdrawals",
                "/admin/api/withdrawals/{id}",
                "/admin/api/withdrawals/{id}/status",
            ]
        );
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{name} missing"
            );
        }
        assert_eq!(
            doc["paths"]["/admin/api/withdrawals/{id}/status"]["patch"]["security"],
            serde_json::json!([{"Bearer": []}])
        );
    }
}
