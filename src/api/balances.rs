//! `POST /balances`: balances at the end of a UTC date (seed 001), read from the ledger, so
//! any past date is answerable.

use super::schema::BalancesRequest;
use super::{RawBody, json_body};
use crate::auth::api_signature::authenticate;
use crate::clock::{DAY_MS, parse_utc_date, rfc3339, utc_date};
use crate::db::balances;
use crate::domain::money::{Currency, CurrencyKind};
use crate::error::{ApiError, FieldErrorsBody, MessageBody};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, post, web};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"data": {"BTC": "0.99000000", "EUR": "4400.00"},
    "held": {"BTC": "0.01000000", "EUR": "0.00"}, "date": "2024-05-31", "as_of": "2024-05-31T23:59:59Z"}))]
pub struct BalancesResponse {
    /// Available balance per currency at `as_of` (as `balance` in `/accounts/list`).
    pub data: BTreeMap<String, String>,
    /// Held by withdrawals in flight at `as_of`.
    pub held: BTreeMap<String, String>,
    /// The UTC date asked for (today when none was).
    pub date: String,
    /// The instant the balances are for: the end of `date`, or now for today.
    pub as_of: String,
}

fn currencies(body: &Value) -> Result<Vec<Currency>, ApiError> {
    let codes: Vec<String> = match body.get("currencies") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::field("currencies", "must be a list of currency codes"))?,
        Some(_) => {
            return Err(ApiError::field(
                "currencies",
                "must be a list of currency codes or one comma-separated string",
            ));
        }
    };
    codes
        .iter()
        .map(|c| {
            Currency::parse(c)
                .ok_or_else(|| ApiError::field("currencies", format!("unknown currency {c:?}")))
        })
        .collect()
}

/// Balances at the end of a date.
///
/// Balances at the end of a UTC date (23:59:59.999), or now when no date (or today) is given.
///
/// Each balance is the one after the last ledger movement before that instant, so any past
/// date is answered exactly, whatever happened since.
#[utoipa::path(
    operation_id = "balancesAtDate",
    tag = "Account",
    request_body = BalancesRequest,
    responses(
        (status = 200, body = BalancesResponse),
        (status = 401, body = MessageBody),
        (status = 422, description = "`date` malformed or in the future, `currencies` unknown", body = FieldErrorsBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[post("/balances")]
pub async fn at_date(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    let json = json_body(&body)?;
    let now = state.now();
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    let day = match json.get("date") {
        None | Some(Value::Null) => today,
        Some(Value::String(s)) if s.is_empty() => today,
        Some(Value::String(s)) => parse_utc_date(s)
            .ok_or_else(|| ApiError::field("date", "must be a UTC date YYYY-MM-DD"))?,
        Some(_) => return Err(ApiError::field("date", "must be a string YYYY-MM-DD")),
    };
    if day > today {
        return Err(ApiError::field(
            "date",
            format!("must not be in the future (today is {} UTC)", utc_date(now)),
        ));
    }
    // Everything up to the end of the day, or up to now for today.
    let before = (day + DAY_MS).min(now + 1);
    let mut wanted = currencies(&json)?;
    let lines = balances::list(&state.db, &caller.project.id).await?;
    if wanted.is_empty() {
        wanted = Currency::ALL
            .into_iter()
            .filter(|c| {
                c.kind() == CurrencyKind::Crypto || lines.iter().any(|l| l.currency == c.code())
            })
            .collect();
    }
    let (mut data, mut held) = (BTreeMap::new(), BTreeMap::new());
    for c in wanted {
        let (a, h) = balances::at(&state.db, &caller.project.id, c.code(), before)
            .await?
            .unwrap_or((Decimal::ZERO, Decimal::ZERO));
        data.insert(c.code().to_string(), c.format(a));
        held.insert(c.code().to_string(), c.format(h));
    }
    Ok(HttpResponse::Ok().json(BalancesResponse {
        data,
        held,
        date: utc_date(day),
        as_of: rfc3339(before - 1),
    }))
}
