//! The merchant API under `/api/v2` (seeds 001/002): JSON over HTTPS, every request signed.

pub mod accounts;
pub mod withdrawals;

use crate::db::audit::Origin;
use crate::error::ApiError;
use actix_web::{HttpRequest, web};
use serde_json::Value;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v2")
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route("/ping", web::get().to(accounts::ping))
            .route("/withdrawal/crypto", web::post().to(withdrawals::create))
            .route("/withdrawal/status", web::post().to(withdrawals::status))
            .route("/withdrawal/cancel", web::post().to(withdrawals::cancel))
            .route("/accounts/list", web::post().to(accounts::list))
            .route("/currencies/list", web::post().to(accounts::currencies))
            .default_service(web::to(not_found)),
    );
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("endpoint".into()))
}

/// The request body as JSON; an empty body is an empty object.
pub fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::field("body", format!("is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    Ok(v)
}

/// A required string field of a JSON object body.
pub fn required_str<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) => Err(ApiError::field(name, "is required")),
        Some(Value::String(_)) => Err(ApiError::field(name, "is required")),
        Some(_) => Err(ApiError::field(name, "must be a string")),
    }
}

pub fn origin(req: &HttpRequest) -> Origin {
    Origin {
        ip: req.peer_addr().map(|a| a.ip().to_string()),
        user_agent: req
            .headers()
            .get("User-Agent")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(200).collect()),
    }
}
