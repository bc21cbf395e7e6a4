//! `POST /withdrawal/crypto`, `/withdrawal/status`, `/withdrawal/cancel`.

use super::schema::{ForeignIdRequest, WithdrawalRequest};
use super::{RawBody, json_body, origin, required_str};
use crate::auth::api_signature::authenticate;
use crate::clock::rfc3339;
use crate::db::audit::Actor;
use crate::db::withdrawals::{self as wdb, Withdrawal};
use crate::domain::money::Currency;
use crate::domain::withdrawal::{NewWithdrawal, Status};
use crate::error::{ApiError, ErrorBody, FieldErrorsBody, MessageBody};
use crate::notify::callback_payload::{CurrencyAmount, FeeItem, WithdrawalKind};
use crate::service::withdrawals::{self as svc, ChangeError};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, post, web};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// What the merchant sees of a status (`approved` is internal and shows as `processing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MerchantStatus {
    Pending,
    Processing,
    Confirmed,
    Declined,
    Cancelled,
}

impl From<Status> for MerchantStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => MerchantStatus::Pending,
            Status::Approved | Status::Processing => MerchantStatus::Processing,
            Status::Confirmed => MerchantStatus::Confirmed,
            Status::Declined => MerchantStatus::Declined,
            Status::Cancelled => MerchantStatus::Cancelled,
        }
    }
}

/// A withdrawal as created: built only from what never changes, so a retried request gets
/// exactly the original response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WithdrawalView {
    pub id: i64,
    pub foreign_id: String,
    #[serde(rename = "type")]
    pub kind: WithdrawalKind,
    /// At creation: `processing` (no approval needed) or `pending` (held for approval).
    pub status: MerchantStatus,
    /// The request's currency: the balance debited.
    pub currency: String,
    /// The request's amount, in `currency`.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub amount: String,
    /// The payout currency of a withdrawal with exchange; `null` otherwise.
    pub convert_to: Option<String>,
    /// Every fee, in `fee_currency` (the payout currency).
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub fee: String,
    pub fee_currency: String,
    /// The fees itemized as in callbacks (empty when there are none).
    pub fees: Vec<FeeItem>,
    /// What the balance gives: held now, debited when the payout confirms. A plain
    /// withdrawal's fee is held on top of its amount.
    pub currency_sent: CurrencyAmount,
    /// What the address receives.
    pub currency_received: CurrencyAmount,
    /// With exchange: `convert_to` per one `currency`, fixed at creation.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub exchange_rate: Option<String>,
    pub address: String,
    pub tag: Option<String>,
    pub end_user_reference: Option<String>,
    pub approval_required: bool,
    /// Why it waits for approval (which limit, which rule).
    pub hold_reasons: Vec<String>,
    pub created_at: String,
}

/// A withdrawal as it is now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WithdrawalStatusView {
    /// As created, except `status`, which is the current one.
    #[serde(flatten)]
    pub created: WithdrawalView,
    pub txid: Option<String>,
    /// Why it was declined or cancelled; empty otherwise.
    pub error: String,
    /// While pending: when it expires.
    pub expires_at: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WithdrawalResponse {
    pub data: WithdrawalView,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WithdrawalStatusResponse {
    pub data: WithdrawalStatusView,
}

fn fmt(code: &str, d: Decimal) -> String {
    Currency::parse(code).map_or_else(|| d.to_string(), |c| c.format(d))
}

pub fn creation_view(w: &Withdrawal) -> WithdrawalView {
    let (held_currency, held) = w.held();
    let (currency, amount) = match &w.exchange {
        Some(x) => (x.from_currency.clone(), x.from_amount),
        None => (w.currency.clone(), w.amount),
    };
    let fees = crate::notify::callback_payload::fee_items(w)
        .into_iter()
        .map(|f| FeeItem {
            amount: fmt(&w.currency, w.total_fee()),
            ..f
        })
        .collect();
    WithdrawalView {
        id: w.id,
        foreign_id: w.foreign_id.clone(),
        kind: if w.exchange.is_some() {
            WithdrawalKind::WithdrawalExchange
        } else {
            WithdrawalKind::Withdrawal
        },
        status: w.initial_status.into(),
        amount: fmt(&currency, amount),
        currency,
        convert_to: w.exchange.as_ref().map(|_| w.currency.clone()),
        fee: fmt(&w.currency, w.total_fee()),
        fee_currency: w.currency.clone(),
        fees,
        currency_sent: CurrencyAmount {
            currency: held_currency.to_string(),
            amount: fmt(held_currency, held),
        },
        currency_received: CurrencyAmount {
            currency: w.currency.clone(),
            amount: fmt(&w.currency, w.amount),
        },
        exchange_rate: w.exchange.as_ref().map(|x| x.rate.normalize().to_string()),
        address: w.address.clone(),
        tag: w.tag.clone(),
        end_user_reference: w.end_user_reference.clone(),
        approval_required: w.initial_status == Status::Pending,
        hold_reasons: w.requirement.reasons.iter().map(|r| r.describe()).collect(),
        created_at: rfc3339(w.created_at),
    }
}

/// The current state: the creation view with what has changed since (`status` is current).
pub fn status_view(w: &Withdrawal) -> WithdrawalStatusView {
    let mut created = creation_view(w);
    created.status = w.status.into();
    WithdrawalStatusView {
        created,
        txid: w.txid.clone(),
        error: w.error.clone(),
        expires_at: w
            .expires_at
            .filter(|_| w.status == Status::Pending)
            .map(rfc3339),
        updated_at: rfc3339(w.updated_at),
    }
}

/// Withdraw crypto, optionally converted from another balance.
///
/// Creates a withdrawal (optionally with exchange), or returns the original answer when the
/// same request is repeated.
///
/// The amount is held on the `currency` balance. Within the owner's limits the withdrawal
/// goes straight to payout (`processing`); over a limit it is held `pending` for approval,
/// with the reasons. With `convert_to`, the amount is converted at the current rate (fixed
/// now) minus the configured fees; limits count its base-currency value. When the project
/// has an operator gate, the request is first sent to its validation webhook
/// (`WITHDRAW_REQUEST`); a refusal answers 400 `withdrawal_denied` and creates nothing.
#[utoipa::path(
    operation_id = "createWithdrawal",
    tag = "Withdrawals",
    request_body = WithdrawalRequest,
    responses(
        (status = 200, description = "Created (or the original answer to a repeated request)", body = WithdrawalResponse),
        (status = 400, description = "Refused: `coin_not_supported`, `invalid_amount`, `amount_too_low`, `invalid_address`, `balance_not_enough`, `duplication_request`; `withdrawal_denied` (the project's operator gate said no: `operator_code` 1-9 and `operator_description`)", body = ErrorBody),
        (status = 401, description = "Unknown key or bad signature", body = MessageBody),
        (status = 403, description = "The key has no withdrawal rights", body = MessageBody),
        (status = 422, description = "A field is missing or malformed", body = FieldErrorsBody),
        (status = 503, description = "`rates_unavailable` (stale rates) or `service_unavailable`; retry", body = ErrorBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[post("/withdrawal/crypto")]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    caller.require_withdraw()?;
    let json = json_body(&body)?;
    let parsed = NewWithdrawal::parse(&json)?;
    let actor = Actor::ApiKey(caller.key_id.clone());
    let w = svc::create(
        &state,
        &caller.project,
        &actor,
        crate::domain::policy::Scope::Api,
        parsed,
        &origin(&req),
    )
    .await?;
    Ok(HttpResponse::Ok().json(WithdrawalResponse {
        data: creation_view(&w),
    }))
}

async fn find(state: &AppState, project_id: &str, body: &Value) -> Result<Withdrawal, ApiError> {
    let foreign_id = required_str(body, "foreign_id")?;
    wdb::by_foreign_id(&state.db, project_id, foreign_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Withdrawal with foreign_id {foreign_id:?}")))
}

/// A withdrawal's current status.
///
/// A withdrawal as it is now: status, txid once paid, error once declined or cancelled.
#[utoipa::path(
    operation_id = "withdrawalStatus",
    tag = "Withdrawals",
    request_body = ForeignIdRequest,
    responses(
        (status = 200, body = WithdrawalStatusResponse),
        (status = 401, body = MessageBody),
        (status = 404, description = "`resource_not_found`: no withdrawal with that foreign_id", body = ErrorBody),
        (status = 422, body = FieldErrorsBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[post("/withdrawal/status")]
pub async fn status(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    let json = json_body(&body)?;
    let w = find(&state, &caller.project.id, &json).await?;
    Ok(HttpResponse::Ok().json(WithdrawalStatusResponse {
        data: status_view(&w),
    }))
}

/// Cancel a pending withdrawal.
///
/// Cancels a pending withdrawal: its hold is released and a `cancelled` callback is sent.
/// Repeating the cancel returns the cancelled withdrawal again.
#[utoipa::path(
    operation_id = "cancelWithdrawal",
    tag = "Withdrawals",
    request_body = ForeignIdRequest,
    responses(
        (status = 200, body = WithdrawalStatusResponse),
        (status = 400, description = "`invalid_status`: only pending withdrawals can be cancelled (says who moved it and when)", body = ErrorBody),
        (status = 401, body = MessageBody),
        (status = 403, body = MessageBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = FieldErrorsBody),
    ),
    security(("ApiKey" = [], "Signature" = []))
)]
#[post("/withdrawal/cancel")]
pub async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    caller.require_withdraw()?;
    let json = json_body(&body)?;
    let w = find(&state, &caller.project.id, &json).await?;
    let actor = Actor::ApiKey(caller.key_id.clone());
    let ok = |w: &Withdrawal| {
        HttpResponse::Ok().json(WithdrawalStatusResponse {
            data: status_view(w),
        })
    };
    match svc::cancel_by_merchant(&state, &w, &actor, &origin(&req)).await {
        Ok(after) => Ok(ok(&after)),
        Err(ChangeError::NotAllowed(d)) => {
            // A repeated cancel of a withdrawal the merchant already cancelled is a success.
            let now = wdb::by_id(&state.db, w.id).await?.unwrap_or(w);
            if now.status == Status::Cancelled && d.actor_kind == "api_key" {
                return Ok(ok(&now));
            }
            Err(ApiError::refused(
                "invalid_status",
                format!(
                    "Only pending withdrawals can be cancelled; this one is {} (since {}, by {})",
                    d.status.merchant_status(),
                    rfc3339(d.at),
                    describe_actor(&d.actor_kind, &d.actor_id)
                ),
            ))
        }
        Err(ChangeError::Db(e)) => Err(e.into()),
    }
}

pub fn describe_actor(kind: &str, id: &str) -> String {
    match kind {
        "user" => format!("user ID:{id}"),
        "api_key" => format!("API key {id}"),
        "system" => "the system".into(),
        other => other.to_string(),
    }
}
