//! The admin REST API under `/admin/api` (seed 004): operators' tooling claims and finalizes
//! pending withdrawals in two steps, as the management panel does. Authentication is a
//! short-lived bearer token (a JWT) obtained with email, password and TOTP code; it is a
//! separate credential from the merchant API's key and signature, and neither works on the
//! other's API.
//!
//! Every endpoint is registered once, in [`endpoints`]; the API's own OpenAPI document
//! (`/admin/api/openapi.json`) is collected from those registrations.

pub mod auth;
pub mod error;
pub mod openapi;
pub mod token;
pub mod view;
pub mod withdrawals;

use actix_web::web;
use error::AdminError;
use utoipa_actix_web::OpenApiFactory;
use utoipa_actix_web::service_config::ServiceConfig;

pub const PREFIX: &str = "/admin/api";

fn endpoints(cfg: &mut ServiceConfig<'_>) {
    cfg.service(token::create_token)
        .service(withdrawals::list)
        .service(withdrawals::detail)
        .service(withdrawals::change_status);
}

/// The `/admin/api` scope: the endpoints and the document.
pub fn admin_api() -> impl actix_web::dev::HttpServiceFactory + OpenApiFactory + 'static {
    utoipa_actix_web::scope(PREFIX)
        .app_data(web::PayloadConfig::new(16 * 1024))
        .configure(endpoints)
        .route("/openapi.json", web::get().to(openapi::document))
        .default_service(web::to(not_found))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(admin_api());
}

async fn not_found() -> Result<actix_web::HttpResponse, AdminError> {
    Err(AdminError::not_found("endpoint"))
}
