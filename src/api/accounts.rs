//! `GET /ping`, `POST /accounts/list`, `POST /currencies/list`.

use super::json_body;
use crate::auth::api_signature::authenticate;
use crate::db::balances;
use crate::domain::money::{Currency, CurrencyKind};
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

pub async fn ping(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body).await?;
    Ok(HttpResponse::Ok().json(json!({"message": "OK"})))
}

/// Every currency with its available balance (`balance`) and the amount held by withdrawals
/// in flight (`held`).
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    json_body(&body)?;
    let lines = balances::list(&state.db, &caller.project.id).await?;
    let data: Vec<Value> = Currency::ALL
        .into_iter()
        .filter(|c| {
            c.kind() == CurrencyKind::Crypto || lines.iter().any(|l| l.currency == c.code())
        })
        .map(|c| {
            let line = lines.iter().find(|l| l.currency == c.code());
            json!({
                "currency": c.code(),
                "type": c.kind().name(),
                "balance": c.format(line.map_or(rust_decimal::Decimal::ZERO, |l| l.available)),
                "held": c.format(line.map_or(rust_decimal::Decimal::ZERO, |l| l.held)),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

pub async fn currencies(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body).await?;
    let json = json_body(&body)?;
    let kind = match json.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "crypto" => Some(CurrencyKind::Crypto),
        Some(Value::String(s)) if s == "fiat" => Some(CurrencyKind::Fiat),
        Some(_) => return Err(ApiError::field("type", "must be \"crypto\" or \"fiat\"")),
    };
    let data: Vec<Value> = Currency::ALL
        .into_iter()
        .enumerate()
        .filter(|(_, c)| kind.is_none_or(|k| c.kind() == k))
        .map(|(i, c)| {
            json!({
                "id": i + 1,
                "name": c.code(),
                "title": c.display_name(),
                "network_name": c.network().map(|n| n.name()),
                "type": c.kind().name(),
                "currency": c.ticker(),
                "decimals": c.scale(),
                "min_withdrawal": c.min_withdrawal().normalize().to_string(),
                "tag_supported": c.takes_tag(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}
