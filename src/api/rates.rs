//! `GET /rates`, `POST /currencies/rates`, `POST /currencies/pairs` (seed 001). Rates are
//! decimal strings (the seeds print JSON numbers; a number would lose digits).

use super::accounts::CurrencyKindName;
use super::schema::PairFilterRequest;
use super::{RawBody, json_body, optional_str};
use crate::auth::api_signature::authenticate;
use crate::clock::rfc3339;
use crate::domain::money::Currency;
use crate::domain::withdrawal::FieldErrors;
use crate::error::{ApiError, ErrorBody, FieldErrorsBody, MessageBody};
use crate::rates::RateTable;
use crate::service::pricing::rates_unavailable;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "base": "EUR", "rates": {"BTC": "60000", "ETH": "3000", "USDTT": "0.92"},
    "date_created": "2026-11-21T06:00:00Z", "date_modified": "2026-11-21T06:00:00Z", "source": "static", "stale": false}))]
pub struct RatesResponse {
    /// The rate table's version: it changes whenever new rates arrive.
    pub id: u64,
    /// The project's base currency.
    pub base: String,
    /// Value of one unit of each currency, in `base`.
    pub rates: BTreeMap<String, String>,
    /// When these rates were obtained.
    pub date_created: String,
    /// Same as `date_created`: a table is never modified, only replaced.
    pub date_modified: String,
    /// `static` (configured table) or `http` (live source).
    pub source: String,
    /// Older than the allowed age: shown, but not used for conversions until fresh ones
    /// arrive.
    pub stale: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrencyRef {
    pub currency: String,
    #[serde(rename = "type")]
    pub kind: CurrencyKindName,
}

/// One unit of `currency_from` (`rate_from`, always `"1"`) is worth `rate_to` of
/// `currency_to`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PairRate {
    pub currency_from: CurrencyRef,
    pub currency_to: CurrencyRef,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub rate_from: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub rate_to: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"data": [{"currency_from": {"currency": "BTC", "type": "crypto"},
    "currency_to": {"currency": "EUR", "type": "fiat"}, "rate_from": "1", "rate_to": "60000"}],
    "updated_at": "2026-11-21T06:00:00Z", "stale": false}))]
pub struct PairRatesResponse {
    pub data: Vec<PairRate>,
    /// When the rates were obtained.
    pub updated_at: String,
    /// See `GET /rates`.
    pub stale: bool,
}

fn table(state: &AppState) -> Result<(Arc<RateTable>, bool), ApiError> {
    state.rates.latest().map_err(rates_unavailable)
}

/// Most recent rates in the base currency.
///
/// The value of one unit of every priced currency in the project's base currency.
#[utoipa::path(
    operation_id = "rates",
    tag = "Rates",
    responses(
        (status = 200, body = RatesResponse),
        (status = 401, body = MessageBody),
        (status = 503, description = "`rates_unavailable`: the live source never answered", body = ErrorBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[get("/rates")]
pub async fn rates(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    let (t, stale) = table(&state)?;
    let base = Currency::parse(&caller.project.base_currency)
        .ok_or_else(|| ApiError::internal("project base currency unknown"))?;
    let rates = t
        .currencies()
        .into_iter()
        .filter(|c| *c != base)
        .filter_map(|c| Some((c.code().to_string(), t.rate(c, base)?.to_string())))
        .collect();
    Ok(HttpResponse::Ok().json(RatesResponse {
        id: t.version,
        base: base.code().into(),
        rates,
        date_created: rfc3339(t.fetched_at),
        date_modified: rfc3339(t.fetched_at),
        source: state.rates.source_name().into(),
        stale,
    }))
}

/// The optional `currency_from` / `currency_to` filters, with the seed's messages.
fn filters(body: &Value) -> Result<(Option<Currency>, Option<Currency>), ApiError> {
    let mut errors = FieldErrors::new();
    let mut one = |name: &str, label: &str| match optional_str(body, name) {
        Ok(None) => None,
        Ok(Some(code)) => {
            let c = Currency::parse(code);
            if c.is_none() {
                errors.insert(name.into(), format!("The selected {label} is invalid."));
            }
            c
        }
        Err(_) => {
            errors.insert(name.into(), format!("The selected {label} is invalid."));
            None
        }
    };
    let from = one("currency_from", "currency from");
    let to = one("currency_to", "currency to");
    if errors.is_empty() {
        Ok((from, to))
    } else {
        Err(ApiError::Fields(errors))
    }
}

fn pairs(
    t: &RateTable,
    body: &Value,
    keep: impl Fn(Currency, Currency) -> bool,
) -> Result<Vec<PairRate>, ApiError> {
    let (from, to) = filters(body)?;
    let priced = t.currencies();
    let reference = |c: Currency| CurrencyRef {
        currency: c.code().into(),
        kind: c.kind().into(),
    };
    let mut out = Vec::new();
    for &f in priced.iter().filter(|c| from.is_none_or(|x| x == **c)) {
        for &g in priced.iter().filter(|c| to.is_none_or(|x| x == **c)) {
            if f == g || !keep(f, g) {
                continue;
            }
            if let Some(rate) = t.rate(f, g) {
                out.push(PairRate {
                    currency_from: reference(f),
                    currency_to: reference(g),
                    rate_from: "1".into(),
                    rate_to: rate.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// Rates of currency pairs.
///
/// The most recent rate of every pair of priced currencies, optionally filtered.
#[utoipa::path(
    operation_id = "currencyRates",
    tag = "Rates",
    request_body = PairFilterRequest,
    responses(
        (status = 200, body = PairRatesResponse),
        (status = 401, body = MessageBody),
        (status = 422, description = "Unknown currency (the seed's messages)", body = FieldErrorsBody,
            example = json!({"errors": {"currency_from": "The selected currency from is invalid."}})),
        (status = 503, body = ErrorBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[post("/currencies/rates")]
pub async fn currency_rates(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body).await?;
    let json = json_body(&body)?;
    let (t, stale) = table(&state)?;
    let data = pairs(&t, &json, |_, _| true)?;
    Ok(HttpResponse::Ok().json(PairRatesResponse {
        data,
        updated_at: rfc3339(t.fetched_at),
        stale,
    }))
}

/// Exchangeable currency pairs.
///
/// The pairs that can be exchanged (by quotes and withdrawals with exchange), with their
/// current rates.
#[utoipa::path(
    operation_id = "currencyPairs",
    tag = "Rates",
    request_body = PairFilterRequest,
    responses(
        (status = 200, body = PairRatesResponse),
        (status = 401, body = MessageBody),
        (status = 422, description = "Unknown currency (the seed's messages)", body = FieldErrorsBody,
            example = json!({"errors": {"currency_from": "The selected currency from is invalid.",
                "currency_to": "The selected currency to is invalid."}})),
        (status = 503, body = ErrorBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[post("/currencies/pairs")]
pub async fn currency_pairs(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body).await?;
    let json = json_body(&body)?;
    let (t, stale) = table(&state)?;
    let data = pairs(&t, &json, |f, g| state.pricing.allows(f, g))?;
    Ok(HttpResponse::Ok().json(PairRatesResponse {
        data,
        updated_at: rfc3339(t.fetched_at),
        stale,
    }))
}
