//! Deciding one withdrawal from its page: the approval panel (what is being signed, the
//! votes so far, what is still needed, the end user's recent withdrawals, whether the
//! destination was paid before, and whether the signed-in user may decide) and the Approve /
//! Decline forms, each confirmed with a fresh TOTP code. The decision itself is
//! `service::approvals::decide`, as for every other channel.

use super::amount_text;
use super::detail::{load, show};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::SignedIn;
use crate::clock::rfc3339;
use crate::db::activity::Names;
use crate::db::pending::{self, AddressHistory};
use crate::db::withdrawals::{Event, Withdrawal};
use crate::domain::approval::{Decision, eligibility};
use crate::domain::withdrawal::Status;
use crate::notify::approval_email::details_context;
use crate::service::alerts::voter;
use crate::service::approvals::{self, Channel, DecideError, DecisionRequest, Outcome};
use crate::state::AppState;
use crate::web::error::PageError;
use crate::web::step_up;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

/// How many of the end user's earlier withdrawals the page lists.
const RECENT: i64 = 10;
/// Decline notes go to the audit log and the timeline; keep them short.
pub const MAX_NOTE: usize = 500;

/// A decision that was refused, shown on the page with what was typed.
pub struct Problem {
    pub message: String,
    pub status: StatusCode,
    pub decision: Decision,
    pub note: String,
}

/// "Approved by alice@… at T" for a withdrawal that left `pending`.
fn decided_line(events: &[Event], names: &Names) -> Option<Value> {
    let e = events
        .iter()
        .find(|e| e.from_status.as_deref() == Some(Status::Pending.as_str()))?;
    Some(json!({
        "status": e.to_status,
        "by": names.describe(&e.actor_kind, &e.actor_id),
        "at": rfc3339(e.created_at),
        "note": e.note,
    }))
}

fn address_json(h: AddressHistory) -> Value {
    json!({
        "first_time": h.last_paid.is_none(),
        "earlier": h.earlier,
        "last_paid": h.last_paid.map(|(id, at)| json!({"id": id, "at": rfc3339(at)})),
    })
}

/// Everything the page's approval section shows.
pub async fn panel(
    state: &AppState,
    s: &SignedIn,
    w: &Withdrawal,
    names: &Names,
    events: &[Event],
) -> Result<Value, PageError> {
    let (votes, tally) = approvals::standing(state, w).await?;
    let mine = votes.iter().find(|v| v.user_id == s.user.id);
    let why_not = if w.status != Status::Pending {
        None
    } else if let Some(v) = mine {
        Some(format!(
            "You already {}d this withdrawal at {}.",
            v.decision.as_str(),
            rfc3339(v.created_at)
        ))
    } else {
        eligibility(&w.requirement, voter(w, &s.user, state.now()))
            .err()
            .map(|e| format!("You cannot decide this withdrawal: {e}."))
    };
    let votes: Vec<Value> = votes
        .iter()
        .map(|v| {
            json!({
                "who": names.describe("user", &v.user_id),
                "decision": v.decision.as_str(),
                "channel": v.channel,
                "at": rfc3339(v.created_at),
                "note": v.note,
            })
        })
        .collect();
    let recent: Vec<Value> = match &w.end_user_reference {
        Some(r) => pending::by_end_user(&state.db, &w.project_id, r, w.id, RECENT)
            .await?
            .iter()
            .map(|o| {
                json!({
                    "id": o.id,
                    "amount": amount_text(&o.currency, o.amount),
                    "currency": o.currency,
                    "address": o.address,
                    "same_address": o.address == w.address,
                    "status": o.status.merchant_status(),
                    "created": rfc3339(o.created_at),
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let history = pending::address_history(&state.db, w).await?;
    Ok(json!({
        "pending": w.status == Status::Pending,
        "signed": details_context(state, w, names).into_json(),
        "votes": votes,
        "standing": tally.describe(),
        "can_decide": w.status == Status::Pending && why_not.is_none(),
        "why_not": why_not,
        "decided": decided_line(events, names),
        "recent": recent,
        "address": address_json(history),
        "max_note": MAX_NOTE,
    }))
}

#[derive(Deserialize)]
pub struct DecisionForm {
    // Missing is the same as wrong: the CSRF check answers, not the form parser.
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    note: String,
}

pub async fn approve(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    path: web::Path<String>,
    form: web::Form<DecisionForm>,
) -> Result<HttpResponse, PageError> {
    decide(&state, &req, &s, &path, &form, Decision::Approve).await
}

pub async fn decline(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    path: web::Path<String>,
    form: web::Form<DecisionForm>,
) -> Result<HttpResponse, PageError> {
    decide(&state, &req, &s, &path, &form, Decision::Decline).await
}

/// The HTTP status a refused decision answers with.
pub fn refusal_status(e: &DecideError) -> StatusCode {
    match e {
        DecideError::Ineligible(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::CONFLICT,
    }
}

async fn decide(
    state: &AppState,
    req: &HttpRequest,
    s: &SignedIn,
    id: &str,
    form: &DecisionForm,
    decision: Decision,
) -> Result<HttpResponse, PageError> {
    csrf::check(state, req, &s.session, &form.csrf)?;
    let w = load(&state.db, s, id).await?;
    let problem = |message: String, status: StatusCode| Problem {
        message,
        status,
        decision,
        note: form.note.clone(),
    };
    let note = form.note.trim();
    if note.chars().count() > MAX_NOTE || note.chars().any(|c| c.is_control() && c != '\n') {
        let m = format!("Note: at most {MAX_NOTE} characters, no control characters.");
        return show(
            state,
            req,
            s,
            &w,
            Some(problem(m, StatusCode::UNPROCESSABLE_ENTITY)),
        )
        .await;
    }
    if let Some(m) = step_up::check(state, req, s, &form.code).await? {
        let m = format!("Verification code: {m}");
        return show(
            state,
            req,
            s,
            &w,
            Some(problem(m, StatusCode::UNPROCESSABLE_ENTITY)),
        )
        .await;
    }
    let origin = origin(req);
    let request = DecisionRequest {
        withdrawal_id: w.id,
        decision,
        note,
        channel: Channel::Web,
        origin: &origin,
        require_claim: false,
    };
    match approvals::decide(state, &s.user, &request).await {
        Ok((_, outcome)) => {
            let done = match outcome {
                Outcome::Approved => "approved",
                Outcome::Recorded(_) => "recorded",
                Outcome::Declined => "declined",
            };
            let to = format!("/withdrawals/{}?decided={done}#approval", w.id);
            step_up::redirect_renewed(state, req, s, &to).await
        }
        Err(DecideError::NotFound) => Err(PageError::NotFound),
        Err(DecideError::Db(e)) => Err(e.into()),
        Err(e) => {
            let status = refusal_status(&e);
            let m = format!("Not recorded: {e}.");
            // Reload: the withdrawal may have moved on since it was read.
            let w = load(&state.db, s, id).await?;
            show(state, req, s, &w, Some(problem(m, status))).await
        }
    }
}
