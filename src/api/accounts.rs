//! `GET /ping`, `POST /accounts/list`, `POST /currencies/list`.

use super::schema::CurrenciesListRequest;
use super::{RawBody, json_body};
use crate::auth::api_signature::authenticate;
use crate::db::balances;
use crate::domain::money::{Currency, CurrencyKind};
use crate::error::{ApiError, FieldErrorsBody, MessageBody};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CurrencyKindName {
    Crypto,
    Fiat,
}

impl From<CurrencyKind> for CurrencyKindName {
    fn from(k: CurrencyKind) -> Self {
        match k {
            CurrencyKind::Crypto => CurrencyKindName::Crypto,
            CurrencyKind::Fiat => CurrencyKindName::Fiat,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountLine {
    pub currency: String,
    #[serde(rename = "type")]
    pub kind: CurrencyKindName,
    /// Available now.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub balance: String,
    /// Held by withdrawals in flight.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub held: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountsResponse {
    pub data: Vec<AccountLine>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrencyInfo {
    pub id: usize,
    /// The code used everywhere in this API (`USDTT`).
    pub name: String,
    pub title: String,
    /// `null` for fiat.
    pub network_name: Option<String>,
    #[serde(rename = "type")]
    pub kind: CurrencyKindName,
    /// The asset ticker (`USDT` for `USDTT` and `USDTE`).
    pub currency: String,
    pub decimals: u32,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub min_withdrawal: String,
    pub tag_supported: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrenciesResponse {
    pub data: Vec<CurrencyInfo>,
}

/// Check the credentials.
///
/// Checks the credentials: `{"message": "OK"}`.
#[utoipa::path(
    operation_id = "ping",
    tag = "Account",
    responses(
        (status = 200, body = MessageBody, example = json!({"message": "OK"})),
        (status = 401, body = MessageBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[get("/ping")]
pub async fn ping(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body).await?;
    Ok(HttpResponse::Ok().json(MessageBody {
        message: "OK".into(),
    }))
}

/// Current balances.
///
/// Every crypto currency (and any fiat balance the project has) with the available balance
/// (`balance`) and the amount held by withdrawals in flight (`held`).
#[utoipa::path(
    operation_id = "listAccounts",
    tag = "Account",
    responses(
        (status = 200, body = AccountsResponse),
        (status = 401, body = MessageBody),
        (status = 422, body = FieldErrorsBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[post("/accounts/list")]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    json_body(&body)?;
    let lines = balances::list(&state.db, &caller.project.id).await?;
    let data = Currency::ALL
        .into_iter()
        .filter(|c| {
            c.kind() == CurrencyKind::Crypto || lines.iter().any(|l| l.currency == c.code())
        })
        .map(|c| {
            let line = lines.iter().find(|l| l.currency == c.code());
            AccountLine {
                currency: c.code().into(),
                kind: c.kind().into(),
                balance: c.format(line.map_or(Decimal::ZERO, |l| l.available)),
                held: c.format(line.map_or(Decimal::ZERO, |l| l.held)),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(AccountsResponse { data }))
}

/// Supported currencies.
///
/// Every currency Countersign knows, optionally only `crypto` or `fiat` ones.
#[utoipa::path(
    operation_id = "listCurrencies",
    tag = "Currencies",
    request_body = CurrenciesListRequest,
    responses(
        (status = 200, body = CurrenciesResponse),
        (status = 401, body = MessageBody),
        (status = 422, body = FieldErrorsBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[post("/currencies/list")]
pub async fn currencies(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &req, &body).await?;
    let json = json_body(&body)?;
    let kind = match json.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "crypto" => Some(CurrencyKind::Crypto),
        Some(Value::String(s)) if s == "fiat" => Some(CurrencyKind::Fiat),
        Some(_) => return Err(ApiError::field("type", "must be \"crypto\" or \"fiat\"")),
    };
    let data = Currency::ALL
        .into_iter()
        .enumerate()
        .filter(|(_, c)| kind.is_none_or(|k| c.kind() == k))
        .map(|(i, c)| CurrencyInfo {
            id: i + 1,
            name: c.code().into(),
            title: c.display_name().into(),
            network_name: c.network().map(|n| n.name().into()),
            kind: c.kind().into(),
            currency: c.ticker().into(),
            decimals: c.scale(),
            min_withdrawal: c.min_withdrawal().normalize().to_string(),
            tag_supported: c.takes_tag(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(CurrenciesResponse { data }))
}
