//! `POST /withdrawal/crypto`, `/withdrawal/status`, `/withdrawal/cancel`.

use super::{json_body, origin, required_str};
use crate::auth::api_signature::authenticate;
use crate::clock::rfc3339;
use crate::db::audit::Actor;
use crate::db::withdrawals::{self as wdb, Withdrawal};
use crate::domain::money::Currency;
use crate::domain::withdrawal::{NewWithdrawal, Status};
use crate::error::ApiError;
use crate::service::withdrawals::{self as svc, ChangeError};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

fn fmt_amount(w: &Withdrawal, d: rust_decimal::Decimal) -> String {
    Currency::parse(&w.currency).map_or_else(|| d.to_string(), |c| c.format(d))
}

fn reasons(w: &Withdrawal) -> Vec<String> {
    w.requirement.reasons.iter().map(|r| r.describe()).collect()
}

/// The answer to a creation: built only from what never changes, so a retried request gets
/// exactly the original response.
pub fn creation_view(w: &Withdrawal) -> Value {
    json!({
        "id": w.id,
        "foreign_id": w.foreign_id,
        "type": "withdrawal",
        "status": w.initial_status.merchant_status(),
        "currency": w.currency,
        "amount": fmt_amount(w, w.amount),
        "fee": fmt_amount(w, w.fee),
        "address": w.address,
        "tag": w.tag,
        "end_user_reference": w.end_user_reference,
        "approval_required": w.initial_status == Status::Pending,
        "hold_reasons": reasons(w),
        "created_at": rfc3339(w.created_at),
    })
}

/// The current state of a withdrawal: the creation view with what has changed since.
pub fn status_view(w: &Withdrawal) -> Value {
    let mut v = creation_view(w);
    v["status"] = json!(w.status.merchant_status());
    v["txid"] = json!(w.txid);
    v["error"] = json!(w.error);
    v["expires_at"] = json!(
        w.expires_at
            .filter(|_| w.status == Status::Pending)
            .map(rfc3339)
    );
    v["updated_at"] = json!(rfc3339(w.updated_at));
    v
}

pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
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
    Ok(HttpResponse::Ok().json(json!({ "data": creation_view(&w) })))
}

async fn find(state: &AppState, project_id: &str, body: &Value) -> Result<Withdrawal, ApiError> {
    let foreign_id = required_str(body, "foreign_id")?;
    wdb::by_foreign_id(&state.db, project_id, foreign_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Withdrawal with foreign_id {foreign_id:?}")))
}

pub async fn status(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    let json = json_body(&body)?;
    let w = find(&state, &caller.project.id, &json).await?;
    Ok(HttpResponse::Ok().json(json!({ "data": status_view(&w) })))
}

pub async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, &req, &body).await?;
    caller.require_withdraw()?;
    let json = json_body(&body)?;
    let w = find(&state, &caller.project.id, &json).await?;
    let actor = Actor::ApiKey(caller.key_id.clone());
    match svc::cancel_by_merchant(&state, &w, &actor, &origin(&req)).await {
        Ok(after) => Ok(HttpResponse::Ok().json(json!({ "data": status_view(&after) }))),
        Err(ChangeError::NotAllowed(d)) => {
            // A repeated cancel of a withdrawal the merchant already cancelled is a success.
            let now = wdb::by_id(&state.db, w.id).await?.unwrap_or(w);
            if now.status == Status::Cancelled && d.actor_kind == "api_key" {
                return Ok(HttpResponse::Ok().json(json!({ "data": status_view(&now) })));
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
