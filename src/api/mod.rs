//! The merchant API under `/api/v2` (seeds 001/002): JSON over HTTPS, every request signed.
//!
//! Every endpoint is registered once, in [`merchant_api`]; the OpenAPI document is collected
//! from those same registrations (each handler's `#[utoipa::path]`), so a route cannot be
//! served without being documented.

pub mod accounts;
pub mod balances;
pub mod exchange;
pub mod openapi;
pub mod rates;
pub mod schema;
pub mod withdrawals;

use crate::config::Network;
use crate::db::audit::Origin;
use crate::error::{ApiError, ErrorBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;
use std::net::IpAddr;
use utoipa_actix_web::OpenApiFactory;
use utoipa_actix_web::service_config::ServiceConfig;

pub const PREFIX: &str = "/api/v2";

/// The raw request body: signatures cover its exact bytes, so handlers parse it themselves.
/// (An alias so that utoipa does not take a `Bytes` argument for the documented body: each
/// handler declares its `request_body` type.)
pub type RawBody = web::Bytes;

/// The merchant endpoints, as registered with actix and collected for the document.
fn endpoints(cfg: &mut ServiceConfig<'_>) {
    cfg.service(accounts::ping)
        .service(withdrawals::create)
        .service(withdrawals::status)
        .service(withdrawals::cancel)
        .service(accounts::list)
        .service(balances::at_date)
        .service(accounts::currencies)
        .service(rates::currency_rates)
        .service(rates::currency_pairs)
        .service(rates::rates)
        .service(exchange::create_quota)
        .service(exchange::make_exchange);
}

/// The `/api/v2` scope: the endpoints, plus the OpenAPI document and its reference page
/// (served, not themselves merchant endpoints).
pub fn merchant_api() -> impl actix_web::dev::HttpServiceFactory + OpenApiFactory + 'static {
    utoipa_actix_web::scope(PREFIX)
        .app_data(web::PayloadConfig::new(64 * 1024))
        .configure(endpoints)
        .route("/openapi.json", web::get().to(openapi::document))
        .route("/docs", web::get().to(openapi::reference_page))
        .route("/docs/{asset}", web::get().to(openapi::reference_asset))
        .default_service(web::to(not_found))
        .wrap(ErrorHandlers::new().default_handler(json_errors))
}

/// Errors raised before a handler runs (a body over the 64 KiB limit, a broken upload, a
/// method the path does not take) come from actix as plain text or nothing; the merchant API
/// answers JSON every time.
fn json_errors<B: 'static>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (message, code) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("Request body over 64 KiB", "payload_too_large"),
        StatusCode::METHOD_NOT_ALLOWED => ("Method not allowed", "method_not_allowed"),
        s if s.is_server_error() => ("Internal error", "internal_error"),
        _ => ("Malformed request", "bad_request"),
    };
    let (req, _) = res.into_parts();
    let answer = HttpResponse::build(status).json(ErrorBody::new(message, code));
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, answer).map_into_right_body(),
    ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(merchant_api());
}

/// A documented path asked with another method: 405 with the methods it takes; anything
/// else: 404.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    match openapi::methods_of(req.path()) {
        Some(allowed) => Ok(HttpResponse::MethodNotAllowed()
            .insert_header(("Allow", allowed))
            .json(ErrorBody::new(
                format!("{} is not served at {}", req.method(), req.path()),
                "method_not_allowed",
            ))),
        None => Err(ApiError::NotFound("endpoint".into())),
    }
}

/// The request body as JSON; an empty body is an empty object. A body of only whitespace is
/// not JSON and is refused like any other (schemathesis sent `" "` to `/balances`).
pub fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
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

/// An optional string field: absent, `null` and `""` are `None`.
pub fn optional_str<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::field(name, "must be a string")),
    }
}

/// Where a request came from, for the audit log and sessions: the client's address (see
/// [`client_ip`]) and its user agent.
pub fn origin(req: &HttpRequest) -> Origin {
    let trusted = req
        .app_data::<web::Data<crate::state::AppState>>()
        .map(|s| s.settings.trusted_proxies.as_slice())
        .unwrap_or_default();
    let ip = req.peer_addr().map(|peer| {
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("X-Forwarded-For")
            .filter_map(|v| v.to_str().ok())
            .collect();
        client_ip(peer.ip(), &forwarded, trusted).to_string()
    });
    Origin {
        ip,
        user_agent: req
            .headers()
            .get("User-Agent")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(200).collect()),
    }
}

/// The client's address. It is the TCP peer, unless the peer is one of the `trusted` proxies
/// (`trusted_proxies`); then the `X-Forwarded-For` entries (`forwarded_for`: the header's
/// values in the order received) are read from the right, the nearest hop first, and the
/// first address that is not a trusted proxy is the client. Entries left of it could be
/// anything the client sent, so they are never used. An entry that is not an address ends
/// the walk at the last address known.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[Network]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer.to_canonical();
    let hops: Vec<&str> = forwarded_for.iter().flat_map(|h| h.split(',')).collect();
    for hop in hops.into_iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match parse_hop(hop) {
            Some(ip) => client = ip,
            None => break,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: `192.0.2.7`, `2001:db8::1`, or either with a port
/// (`192.0.2.7:4711`, `[2001:db8::1]:4711`) as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<IpAddr>().ok()
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Network> {
        list.iter().map(|n| n.parse().expect("network")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let got = client_ip(ip("203.0.113.9"), &["198.51.100.1"], &[]);
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_passes_on_the_address_it_saw() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.1.2.3"), &["198.51.100.1"], &trusted);
        assert_eq!(got, ip("198.51.100.1"));
    }

    #[test]
    fn an_untrusted_peer_cannot_claim_another_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("203.0.113.9"), &["198.51.100.1"], &trusted);
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn what_the_client_prepended_is_not_believed() {
        // The client sent `X-Forwarded-For: 1.1.1.1`; the proxy appended what it saw.
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.2"), &["1.1.1.1, 198.51.100.1"], &trusted);
        assert_eq!(got, ip("198.51.100.1"));
    }

    #[test]
    fn chains_of_trusted_proxies_and_several_headers_are_walked() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.7"]);
        let headers = ["1.1.1.1, 198.51.100.1", "192.0.2.7, 10.9.9.9"];
        let got = client_ip(ip("10.0.0.2"), &headers, &trusted);
        assert_eq!(got, ip("198.51.100.1"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let trusted = nets(&["127.0.0.1", "::1"]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &["198.51.100.1:4711"], &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_ip(ip("::1"), &["[2001:db8::5]:443"], &trusted),
            ip("2001:db8::5")
        );
        assert_eq!(
            client_ip(ip("::1"), &["[2001:db8::6]"], &trusted),
            ip("2001:db8::6")
        );
    }

    #[test]
    fn garbage_stops_at_the_last_known_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.2"), &["198.51.100.1, unknown"], &trusted);
        assert_eq!(got, ip("10.0.0.2"));
        let got = client_ip(ip("10.0.0.2"), &[""], &trusted);
        assert_eq!(got, ip("10.0.0.2"));
    }

    #[test]
    fn networks_parse_from_addresses_and_cidrs() {
        assert!(nets(&["10.0.0.0/8"])[0].contains(&ip("10.255.0.1")));
        assert!(nets(&["192.0.2.7"])[0].contains(&ip("192.0.2.7")));
        assert!(!nets(&["192.0.2.7"])[0].contains(&ip("192.0.2.8")));
        assert!(nets(&["10.1.2.3/8"])[0].contains(&ip("10.9.9.9")));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("proxy.internal".parse::<Network>().is_err());
    }
}
