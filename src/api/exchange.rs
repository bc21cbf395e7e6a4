//! `POST /exchange/create-quota`, `POST /exchange/make-exchange` (seed 001).

use super::schema::{MakeExchangeRequest, QuoteRequest};
use super::{RawBody, json_body, origin, required_str};
use crate::auth::api_signature::authenticate;
use crate::clock::rfc3339;
use crate::db::audit::Actor;
use crate::db::exchanges::Quote;
use crate::domain::money::{Amount, AmountError, Currency};
use crate::domain::withdrawal::FieldErrors;
use crate::error::{ApiError, ErrorBody, FieldErrorsBody, MessageBody};
use crate::notify::callback_payload::wire_amount;
use crate::service::exchange::{self as svc, QuoteRequest as Parsed};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A quote, in the seed's shape. Amounts carry at least 8 decimals, rates 12 significant
/// digits.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"quote_id": "2J3IwFIcaoYoyfRAEBib8Q", "expire_time": 60, "expire_timestamp": 1691411462,
    "from_coin": "EUR", "from_amount": "100.00000000", "request_amount": "100.00000000", "request_coin": "EUR",
    "to_coin": "BTC", "to_amount": "0.00164999", "exchange_rate": "0.0000166666666667",
    "reverse_exchange_rate": "60000", "fee_amount": "0.00001667", "fee_coin": "BTC",
    "merchant_id": "prj_Xy3k9Qe1Lm2Z", "user_id": null}))]
pub struct QuoteView {
    /// Pass it to `make-exchange` before `expire_timestamp`.
    pub quote_id: String,
    /// Seconds the quote is valid for.
    pub expire_time: i64,
    /// Unix seconds.
    pub expire_timestamp: i64,
    pub from_coin: String,
    /// Taken from the `from_coin` balance.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub from_amount: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub request_amount: String,
    pub request_coin: String,
    pub to_coin: String,
    /// Added to the `to_coin` balance (after the fee).
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub to_amount: String,
    /// `to_coin` per one `from_coin`.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub exchange_rate: String,
    /// `from_coin` per one `to_coin`.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub reverse_exchange_rate: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub fee_amount: String,
    /// Fees are charged in the currency received.
    pub fee_coin: String,
    /// The project's id.
    pub merchant_id: String,
    /// Always `null`: quotes belong to the project, not to a dashboard user.
    pub user_id: Option<String>,
}

/// An executed exchange.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExchangeView {
    pub id: i64,
    pub quote_id: String,
    pub from_coin: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub from_amount: String,
    pub to_coin: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub to_amount: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub exchange_rate: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub fee_amount: String,
    pub fee_coin: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"success": true, "data": {"id": 7, "quote_id": "2J3IwFIcaoYoyfRAEBib8Q",
    "from_coin": "EUR", "from_amount": "100.00000000", "to_coin": "BTC", "to_amount": "0.00164999",
    "exchange_rate": "0.0000166666666667", "fee_amount": "0.00001667", "fee_coin": "BTC",
    "created_at": "2026-11-21T06:06:23Z"}}))]
pub struct MakeExchangeResponse {
    pub success: bool,
    pub data: ExchangeView,
}

fn quote_view(q: &Quote) -> QuoteView {
    let secs = |ms: i64| ms.div_euclid(1000);
    QuoteView {
        quote_id: q.id.clone(),
        expire_time: secs(q.expires_at - q.created_at),
        expire_timestamp: secs(q.expires_at),
        from_coin: q.from_currency.clone(),
        from_amount: wire_amount(&q.from_currency, q.from_amount),
        request_amount: wire_amount(&q.request_currency, q.request_amount),
        request_coin: q.request_currency.clone(),
        to_coin: q.to_currency.clone(),
        to_amount: wire_amount(&q.to_currency, q.to_amount),
        exchange_rate: q.rate.normalize().to_string(),
        reverse_exchange_rate: q.reverse_rate.normalize().to_string(),
        fee_amount: wire_amount(&q.to_currency, q.fee),
        fee_coin: q.to_currency.clone(),
        merchant_id: q.project_id.clone(),
        user_id: None,
    }
}

/// Reads the four fields; every shape problem is reported at once.
fn parse(body: &Value) -> Result<Parsed, ApiError> {
    let mut errors = FieldErrors::new();
    let mut coin = |name: &str| match required_str(body, name) {
        Ok(code) => match Currency::parse(code) {
            Some(c) => Some(c),
            None => {
                errors.insert(name.into(), format!("unknown currency {code:?}"));
                None
            }
        },
        Err(ApiError::Fields(f)) => {
            errors.extend(f);
            None
        }
        Err(_) => None,
    };
    let (from, to, request_coin) = (coin("from_coin"), coin("to_coin"), coin("request_coin"));
    let amount = match body.get("request_amount") {
        Some(Value::Number(_)) => {
            errors.insert(
                "request_amount".into(),
                "must be a decimal string such as \"100.5\", not a JSON number".into(),
            );
            None
        }
        _ => match required_str(body, "request_amount") {
            Ok(a) => Some(a),
            Err(ApiError::Fields(f)) => {
                errors.extend(f);
                None
            }
            Err(_) => None,
        },
    };
    if let (Some(f), Some(t)) = (from, to) {
        if f == t {
            errors.insert("to_coin".into(), "must differ from from_coin".into());
        }
    }
    if let (Some(f), Some(t), Some(r)) = (from, to, request_coin) {
        if r != f && r != t {
            errors.insert(
                "request_coin".into(),
                "must be equal to from_coin or to_coin".into(),
            );
        }
    }
    let (Some(from), Some(to), Some(request_coin), Some(amount)) = (from, to, request_coin, amount)
    else {
        return Err(ApiError::Fields(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Fields(errors));
    }
    let amount = Amount::parse(request_coin, amount).map_err(|e| match e {
        AmountError::TooLow { .. } => ApiError::refused("amount_too_low", e.to_string()),
        other => {
            let text = other.to_string();
            let text = match text.strip_prefix("amount") {
                Some(rest) => format!("request_amount{rest}"),
                None => text,
            };
            ApiError::refused("invalid_amount", text)
        }
    })?;
    Ok(Parsed { from, to, amount })
}

/// Create an exchange quote.
///
/// Prices a conversion between two of the project's balances, fixed for 60 seconds
/// (`exchange.quote_ttl_secs`).
///
/// With `request_coin` = `from_coin`, exactly `request_amount` is converted and `to_amount`
/// follows from the rate and the fee. With `request_coin` = `to_coin`, `to_amount` is exactly
/// `request_amount` and `from_amount` is what it takes. Creating a quote moves no money.
#[utoipa::path(
    operation_id = "createQuote",
    tag = "Exchange",
    request_body = QuoteRequest,
    responses(
        (status = 200, body = QuoteView),
        (status = 400, description = "`coin_not_supported` (pair not exchangeable, no rate), `invalid_amount`, `amount_too_low`", body = ErrorBody),
        (status = 401, body = MessageBody),
        (status = 403, body = MessageBody),
        (status = 422, body = FieldErrorsBody),
        (status = 503, description = "`rates_unavailable`: rates are stale; retry", body = ErrorBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[post("/exchange/create-quota")]
pub async fn create_quota(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    caller.require_withdraw()?;
    let parsed = parse(&json_body(&body)?)?;
    let q = svc::create_quote(&state, &caller.project, parsed).await?;
    Ok(HttpResponse::Ok().json(quote_view(&q)))
}

/// Execute an exchange quote.
///
/// Executes a quote: `from_amount` leaves the `from_coin` balance and `to_amount` arrives on
/// the `to_coin` balance, at the quoted rate. A quote is executed once, before it expires.
#[utoipa::path(
    operation_id = "makeExchange",
    tag = "Exchange",
    request_body = MakeExchangeRequest,
    responses(
        (status = 200, body = MakeExchangeResponse),
        (status = 400, description = "`process_exchange_quota_error` (expired quote), `duplication_request` (quote already executed), `balance_not_enough`", body = ErrorBody),
        (status = 401, body = MessageBody),
        (status = 403, body = MessageBody),
        (status = 404, description = "`resource_not_found`: no such quote for this project", body = ErrorBody),
        (status = 422, body = FieldErrorsBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[post("/exchange/make-exchange")]
pub async fn make_exchange(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    caller.require_withdraw()?;
    let json = json_body(&body)?;
    let quote_id = required_str(&json, "quote_id")?;
    let actor = Actor::ApiKey(caller.key_id.clone());
    let done = svc::make_exchange(&state, &caller.project, &actor, quote_id, &origin(&req)).await?;
    let q = &done.quote;
    Ok(HttpResponse::Ok().json(MakeExchangeResponse {
        success: true,
        data: ExchangeView {
            id: done.exchange_id,
            quote_id: q.id.clone(),
            from_coin: q.from_currency.clone(),
            from_amount: wire_amount(&q.from_currency, q.from_amount),
            to_coin: q.to_currency.clone(),
            to_amount: wire_amount(&q.to_currency, q.to_amount),
            exchange_rate: q.rate.normalize().to_string(),
            fee_amount: wire_amount(&q.to_currency, q.fee),
            fee_coin: q.to_currency.clone(),
            created_at: rfc3339(done.at),
        },
    }))
}
