//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and the
//! request/response types, served at `/api/v2/openapi.json`; and a reference page that renders
//! it, served from `static/api-reference/` (embedded in the binary, nothing from a CDN).

use crate::error::{ErrorBody, FieldErrorsBody, MessageBody};
use crate::notify::callback_payload::CallbackPayload;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::OpenApiFactory;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Countersign merchant API",
        description = "Dual authorization for crypto withdrawals. JSON over HTTPS; every request \
carries `X-Processing-Key` (the API key) and `X-Processing-Signature`: the lowercase hex \
HMAC-SHA512 of the raw request body with the API secret (the body of a GET is empty). \
Amounts and rates are decimal strings, never JSON numbers. Withdrawal status changes are \
POSTed to the project's callback URL (see `webhooks`).",
        license(name = "Apache-2.0")
    ),
    components(schemas(MessageBody, ErrorBody, FieldErrorsBody, CallbackPayload)),
    modifiers(&Security),
    tags(
        (name = "Withdrawals", description = "Payouts, optionally converted from another balance"),
        (name = "Exchange", description = "Quotes and conversions between the project's balances"),
        (name = "Rates", description = "Exchange rates and exchangeable pairs"),
        (name = "Account", description = "Credentials and balances"),
        (name = "Currencies", description = "What can be held and paid out"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let header = |name: &str, what: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, what)))
        };
        components.add_security_scheme(
            "ApiKey",
            header(
                "X-Processing-Key",
                "The API key (`X-Process-Key` is accepted too).",
            ),
        );
        components.add_security_scheme(
            "Signature",
            header(
                "X-Processing-Signature",
                "Lowercase hex HMAC-SHA512 of the raw request body with the API secret \
                 (`X-Process-Signature` is accepted too).",
            ),
        );
    }
}

/// The document: the annotated endpoints as registered, the shared schemas, and the
/// callback as an OpenAPI 3.1 webhook.
pub fn build() -> Value {
    let api = super::merchant_api();
    let mut doc = ApiDoc::openapi();
    doc.paths.merge(api.paths());
    let mut schemas = Vec::new();
    api.schemas(&mut schemas);
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    let mut v = serde_json::to_value(&doc).unwrap_or_default();
    optional_when_nothing_required(&mut v);
    v["webhooks"] = json!({
        "withdrawalStatus": {"post": {
            "summary": "Withdrawal status callback",
            "description": "POSTed to the project's callback URL when a withdrawal becomes pending \
    (held for approval), confirmed, declined or cancelled. Signed with `X-Processing-Signature` (hex \
    HMAC-SHA512 of the body with the API secret) and Standard Webhooks headers (`webhook-id`, \
    `webhook-timestamp`, `webhook-signature`). Any 2xx is delivered; anything else is retried with \
    backoff for about three days.",
            "tags": ["Withdrawals"],
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/CallbackPayload"}}}},
            "responses": {"2XX": {"description": "Received"}}
        }}
    });
    v
}

/// An empty body reads as `{}` (see [`super::json_body`]), so a body whose schema requires no
/// field may be left out: its `requestBody` is not `required`.
fn optional_when_nothing_required(doc: &mut Value) {
    let schemas = doc["components"]["schemas"].clone();
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for op in operations {
        let Some(body) = op.get_mut("requestBody").and_then(Value::as_object_mut) else {
            continue;
        };
        let name = body
            .get("content")
            .and_then(|c| c["application/json"]["schema"]["$ref"].as_str())
            .and_then(|r| r.strip_prefix("#/components/schemas/"));
        let Some(schema) = name.and_then(|n| schemas.get(n)) else {
            continue;
        };
        if schema["required"].as_array().is_none_or(|r| r.is_empty()) {
            body.remove("required");
        }
    }
}

/// The methods the document lists for `path` (`"GET"`, `"POST"`), for an `Allow` header;
/// `None` for a path it does not have.
pub fn methods_of(path: &str) -> Option<&'static str> {
    static METHODS: OnceLock<std::collections::HashMap<String, String>> = OnceLock::new();
    let methods = METHODS.get_or_init(|| {
        let doc = build();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        paths
            .into_iter()
            .map(|(p, item)| {
                let listed = item.as_object().map(|ops| {
                    ops.keys()
                        .map(|m| m.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                (p, listed.unwrap_or_default())
            })
            .collect()
    });
    methods.get(path).map(String::as_str)
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

const PAGE: &str = include_str!("../../static/api-reference/index.html");
const SCRIPT: &str = include_str!("../../static/api-reference/reference.js");
const STYLE: &str = include_str!("../../static/api-reference/reference.css");

/// Only this app's own assets, no inline script, no third parties.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub async fn reference_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", CSP))
        .body(PAGE)
}

pub async fn reference_asset(asset: web::Path<String>) -> HttpResponse {
    let (body, kind) = match asset.as_str() {
        "reference.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "reference.css" => (STYLE, "text/css; charset=utf-8"),
        _ => {
            return HttpResponse::NotFound()
                .json(ErrorBody::new("asset not found", "resource_not_found"));
        }
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header(("Content-Security-Policy", CSP))
        .body(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_carry_the_scope_prefix_and_schemas_resolve() {
        let doc = super::build();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/api/v2/withdrawal/crypto"), "{paths:?}");
        assert!(paths.keys().all(|p| p.starts_with("/api/v2/")));
        assert_eq!(doc["openapi"], "3.1.0");
        // Bodies with nothing required may be left out (an empty body is `{}`).
        let body = |path: &str| doc["paths"][path]["post"]["requestBody"].clone();
        assert_eq!(body("/api/v2/withdrawal/crypto")["required"], true);
        assert_eq!(body("/api/v2/exchange/create-quota")["required"], true);
        for optional in [
            "currencies/list",
            "balances",
            "currencies/rates",
            "currencies/pairs",
        ] {
            let b = body(&format!("/api/v2/{optional}"));
            assert!(
                b.is_object() && b.get("required").is_none(),
                "{optional}: {b}"
            );
        }
        // Every $ref points at a schema the document has.
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{name} missing"
            );
        }
    }
}
