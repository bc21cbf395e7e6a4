//! One withdrawal, everything about it: what is paid where, who started it, why it was held,
//! its timeline, and every callback delivery with every attempt; owners can re-send a
//! delivered or abandoned callback.

use super::amount_text;
use super::decide::{Problem, panel};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::SignedIn;
use crate::clock::{HOUR_MS, rfc3339};
use crate::db::activity::Names;
use crate::db::audit::{self, Actor};
use crate::db::jobs::{self, Delivery, JobKind};
use crate::db::withdrawal_list as wl;
use crate::db::withdrawals::{self as wdb, Withdrawal};
use crate::db::{Db, DbError};
use crate::domain::policy::Scope;
use crate::domain::withdrawal::Status;
use crate::notify::callback::CallbackJob;
use crate::state::AppState;
use crate::web::error::PageError;
use crate::web::{page_context, redirect, render};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

/// Ids in paths are positive integers; anything else names nothing.
fn parse_id(s: &str) -> Result<i64, PageError> {
    s.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(PageError::NotFound)
}

pub(super) async fn load(db: &Db, s: &SignedIn, id: &str) -> Result<Withdrawal, PageError> {
    wl::get(db, &s.project.id, parse_id(id)?)
        .await?
        .ok_or(PageError::NotFound)
}

fn withdrawal_json(w: &Withdrawal, names: &Names) -> Value {
    let state_note = match w.status {
        Status::Approved => Some("approved, waiting to be handed to the payout rail"),
        Status::Processing => Some("sent to the payout rail, waiting for its confirmation"),
        _ => None,
    };
    // What the balance gives: the amount plus its fee, or, with exchange, the amount of the
    // other currency converted into the payout.
    let (held_currency, held) = w.held();
    json!({
        "id": w.id,
        "foreign_id": w.foreign_id,
        "amount": amount_text(&w.currency, w.amount),
        "fee": amount_text(&w.currency, w.fee),
        "total_fee": amount_text(&w.currency, w.total_fee()),
        "taken": {
            "currency": held_currency,
            "amount": amount_text(held_currency, held),
            "note": match w.status {
                Status::Confirmed => "debited",
                Status::Declined | Status::Cancelled => "held, then given back",
                _ => "held until it is paid out; given back if it is not",
            },
        },
        "exchange": w.exchange.as_ref().map(|x| json!({
            "from_currency": x.from_currency,
            "rate": x.rate.normalize().to_string(),
            "fee": amount_text(&w.currency, x.fee),
        })),
        "rates_at": w.rates_at.map(rfc3339),
        "currency": w.currency,
        "network": w.network,
        "address": w.address,
        "tag": w.tag,
        "end_user_reference": w.end_user_reference,
        "base_value": amount_text(&w.base_currency, w.base_value),
        "base_currency": w.base_currency,
        "rate": w.rate.normalize().to_string(),
        "initiator": names.describe(&w.initiator_kind, &w.initiator_id),
        "through": match w.scope {
            Scope::Api => "the merchant API",
            Scope::Dashboard => "the dashboard",
        },
        "status": w.status.merchant_status(),
        "state_note": state_note,
        "error": w.error,
        "txid": w.txid,
        "created": rfc3339(w.created_at),
        "updated": rfc3339(w.updated_at),
        "expires": (w.status == Status::Pending).then(|| w.expires_at.map(rfc3339)).flatten(),
        "held": w.requirement.is_needed(),
        "approvals": w.requirement.approvals,
        "owner_required": w.requirement.owner_required,
        "reasons": w.requirement.reasons.iter().map(|r| r.describe()).collect::<Vec<_>>(),
    })
}

fn delivery_json(d: &Delivery, can_resend: bool) -> Value {
    let job: Option<CallbackJob> = serde_json::from_str(&d.payload).ok();
    let event = job
        .as_ref()
        .and_then(|j| serde_json::from_str::<Value>(&j.body).ok())
        .and_then(|b| b["status"].as_str().map(str::to_string));
    let finished = d.status == "done" || d.status == "dead";
    let state = match d.status.as_str() {
        "done" if d.attempts.is_empty() => "not sent: the project had no callback URL",
        "done" => "delivered",
        "dead" => "gave up (no success before the retry deadline)",
        _ if d.leased => "being delivered now",
        _ if d.attempts.is_empty() => "waiting to be sent",
        _ => "failed so far; will be retried",
    };
    let attempts: Vec<Value> = d
        .attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "at": rfc3339(a.attempted_at),
                "http_status": a.status_code,
                "ok": a.status_code.is_some_and(|c| (200..300).contains(&c)),
                "error": a.error,
                "duration_ms": a.duration_ms,
            })
        })
        .collect();
    json!({
        "job_id": d.job_id,
        "event": event,
        "webhook_id": job.map(|j| j.msg_id),
        "state": state,
        "delivered": d.status == "done" && !d.attempts.is_empty(),
        "last_error": d.last_error,
        "attempts": attempts,
        "can_resend": can_resend && finished,
    })
}

pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let w = load(&state.db, &s, &path).await?;
    show(&state, &req, &s, &w, None).await
}

fn notice(query: &str) -> Option<&'static str> {
    url::form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| match (k.as_ref(), v.as_ref()) {
        ("callback", "resent") => Some(
            "The callback was queued again and goes out in a moment, with the same webhook-id so the receiver can tell it is a repeat.",
        ),
        ("callback", "busy") => Some(
            "That callback is still queued, so nothing was re-sent: the service keeps retrying it by itself.",
        ),
        ("created", "1") => Some(
            "Payout created. If it needs approval, the people who can give it are alerted; you cannot approve your own payout.",
        ),
        ("decided", "approved") => Some(
            "Approved. The approvals are complete: the withdrawal goes to payout now.",
        ),
        ("decided", "recorded") => Some(
            "Your approval is recorded. The withdrawal waits for the approvals still needed.",
        ),
        ("decided", "declined") => Some(
            "Declined. The funds are released and the merchant is told.",
        ),
        _ => None,
    })
}

/// The page, optionally with a refused decision (and its HTTP status).
pub(super) async fn show(
    state: &AppState,
    req: &HttpRequest,
    s: &SignedIn,
    w: &Withdrawal,
    problem: Option<Problem>,
) -> Result<HttpResponse, PageError> {
    let names = Names::load(&state.db, &s.project.id).await?;
    let events = wdb::events(&state.db, w.id).await?;
    let timeline: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "from": e.from_status,
                "to": e.to_status,
                "who": names.describe(&e.actor_kind, &e.actor_id),
                "note": e.note,
                "at": rfc3339(e.created_at),
            })
        })
        .collect();
    let deliveries: Vec<Value> =
        jobs::deliveries_for_withdrawal(&state.db, w.id, JobKind::Callback)
            .await?
            .iter()
            .map(|d| delivery_json(d, s.user.is_owner()))
            .collect();
    let mut ctx = page_context(s, "withdrawals");
    ctx.insert("w", &withdrawal_json(w, &names));
    ctx.insert("approval", &panel(state, s, w, &names, &events).await?);
    ctx.insert("timeline", &timeline);
    ctx.insert("deliveries", &deliveries);
    let payout_retrying = jobs::payout_retrying(&state.db, w.id).await?.map(
        |(error, attempts, run_at)| json!({"error": error, "attempts": attempts, "next": rfc3339(run_at)}),
    );
    ctx.insert("payout_retrying", &payout_retrying);
    ctx.insert("callback_url_set", &s.project.callback_url.is_some());
    let status = match &problem {
        Some(p) => {
            ctx.insert("notice", &None::<&str>);
            ctx.insert(
                "problem",
                &json!({"message": p.message, "decision": p.decision.as_str(), "note": p.note}),
            );
            p.status
        }
        None => {
            ctx.insert("notice", &notice(req.query_string()));
            ctx.insert("problem", &None::<Value>);
            StatusCode::OK
        }
    };
    let mut resp = render("withdrawals/detail.html", &ctx)?;
    *resp.status_mut() = status;
    Ok(resp)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    // Missing is the same as wrong: the CSRF check answers, not the form parser.
    #[serde(default)]
    csrf: String,
}

/// Re-queues one callback delivery of one withdrawal of the signed-in owner's project.
pub async fn resend(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &form.csrf)?;
    s.require_owner()?;
    let (id, job_id) = path.into_inner();
    let w = load(&state.db, &s, &id).await?;
    let job_id = parse_id(&job_id)?;
    let deliveries = jobs::deliveries_for_withdrawal(&state.db, w.id, JobKind::Callback).await?;
    let delivery = deliveries
        .iter()
        .find(|d| d.job_id == job_id)
        .ok_or(PageError::NotFound)?;
    let back = format!("/withdrawals/{}", w.id);
    let now = state.now();
    let give_up_ms =
        i64::try_from(state.settings.callbacks.give_up_after_hours).unwrap_or(72) * HOUR_MS;
    if !jobs::requeue(&state.db, job_id, now, Some(now + give_up_ms)).await? {
        return Ok(redirect(&format!("{back}?callback=busy#callbacks")));
    }
    let webhook_id = serde_json::from_str::<CallbackJob>(&delivery.payload)
        .ok()
        .map(|j| j.msg_id);
    let mut tx = state.db.begin().await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &s.project.id,
            actor: &Actor::User(s.user.id.clone()),
            action: "callback.resent",
            subject: format!("withdrawal:{}", w.id),
            details: json!({
                "job_id": job_id,
                "webhook_id": webhook_id,
                "attempts_before": delivery.attempts.len(),
            }),
            origin: &origin(&req),
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    Ok(redirect(&format!("{back}?callback=resent#callbacks")))
}
