//! The metrics listener: its own address (`metrics.listen`), one route (`GET /metrics`), an
//! optional bearer token (`metrics.token`, compared in constant time). The main listener
//! never serves metrics.

use crate::state::AppState;
use actix_web::dev::Server;
use actix_web::{HttpRequest, HttpResponse, HttpServer, http::header, web};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use std::net::TcpListener;
use subtle::ConstantTimeEq;

/// The content type of the text format prometheus-client writes (OpenMetrics 1.0 text, which
/// Prometheus reads natively).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn server(state: AppState, listener: TcpListener) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    Ok(HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(scrape))
            .default_service(web::to(HttpResponse::NotFound))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run())
}

async fn scrape(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(token) = state.settings.metrics.token.as_ref() {
        let token = token.expose_secret();
        if !token.is_empty() && !bearer_matches(&req, token) {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .finish();
        }
    }
    match state.metrics.render(&state.db, state.now()).await {
        Ok(body) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "metrics: encoding failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// Compares hashes of the two values, so neither the content nor the length of the token
/// leaks through timing.
fn bearer_matches(req: &HttpRequest, token: &str) -> bool {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    bool::from(a.ct_eq(&b))
}
