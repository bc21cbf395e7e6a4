//! Approving or declining many pending withdrawals at once: one CSRF-checked form, one TOTP
//! code (checked once: the replay guard would refuse the same code a second time), then
//! `service::approvals::decide` for each withdrawal on the bulk channel. Each one still
//! obeys its own rules; the result page says, for each, what happened or why not.

use super::{QueueQuery, queue_page};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::SignedIn;
use crate::db::withdrawal_list as wl;
use crate::domain::approval::Decision;
use crate::domain::withdrawal::Status;
use crate::service::approvals::{self, Channel, DecideError, DecisionRequest, Outcome};
use crate::state::AppState;
use crate::web::error::PageError;
use crate::web::withdrawals::amount_text;
use crate::web::{page_context, render, step_up};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

/// At most this many withdrawals in one batch.
pub const MAX_BATCH: usize = 100;

#[derive(Debug, Default)]
struct BulkForm {
    csrf: String,
    ids: Vec<i64>,
    bad_ids: bool,
    decision: String,
    code: String,
    note: String,
    query: String,
}

fn parse(body: &[u8]) -> BulkForm {
    let mut f = BulkForm::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "csrf" => f.csrf = v.into_owned(),
            "id" => match v.trim().parse::<i64>() {
                Ok(id) if id > 0 => {
                    if !f.ids.contains(&id) {
                        f.ids.push(id);
                    }
                }
                _ => f.bad_ids = true,
            },
            "decision" => f.decision = v.into_owned(),
            "code" => f.code = v.into_owned(),
            "note" => f.note = v.into_owned(),
            "query" => f.query = v.into_owned(),
            _ => {}
        }
    }
    f
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Approved => "approved: the approvals are complete, it goes to payout".into(),
        Outcome::Recorded(t) => format!("approval recorded: {}", t.describe()),
        Outcome::Declined => "declined: the funds are released".into(),
    }
}

pub async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let f = parse(&body);
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    let q = QueueQuery::parse(&f.query);
    let refuse = |m: String| {
        queue_page(
            &state,
            &s,
            &q,
            &f.ids,
            Some(m),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    let Some(decision) = Decision::parse(&f.decision) else {
        return refuse("Choose Approve or Decline.".into()).await;
    };
    if f.ids.is_empty() || f.bad_ids {
        return refuse("Tick at least one withdrawal in the list.".into()).await;
    }
    if f.ids.len() > MAX_BATCH {
        return refuse(format!("At most {MAX_BATCH} withdrawals at once.")).await;
    }
    let note = f.note.trim();
    if note.chars().count() > crate::web::withdrawals::MAX_NOTE {
        return refuse(format!(
            "Note: at most {} characters.",
            crate::web::withdrawals::MAX_NOTE
        ))
        .await;
    }
    // One code for the whole batch.
    if let Some(m) = step_up::check(&state, &req, &s, &f.code).await? {
        return refuse(format!("Verification code: {m}")).await;
    }
    let origin = origin(&req);
    let mut results: Vec<Value> = Vec::new();
    for id in &f.ids {
        let w = wl::get(&state.db, &s.project.id, *id).await?;
        let request = DecisionRequest {
            withdrawal_id: *id,
            decision,
            note,
            channel: Channel::Bulk,
            origin: &origin,
            require_claim: false,
        };
        let (ok, message) = match approvals::decide(&state, &s.user, &request).await {
            Ok((_, outcome)) => (true, outcome_text(&outcome)),
            Err(DecideError::Db(e)) => {
                tracing::error!(error = %e, withdrawal = id, "bulk decision failed");
                (
                    false,
                    "failed on our side and nothing changed for it; try it again".to_string(),
                )
            }
            Err(e) => (false, e.to_string()),
        };
        results.push(json!({
            "id": id,
            "exists": w.is_some(),
            "foreign_id": w.as_ref().map(|w| w.foreign_id.clone()),
            "amount": w.as_ref().map(|w| format!("{} {}", amount_text(&w.currency, w.amount), w.currency)),
            "ok": ok,
            "message": message,
        }));
    }
    let succeeded = results.iter().filter(|r| r["ok"] == true).count();
    // The code was verified: renew the session id as after any step-up, and render the
    // result with the new session's CSRF token.
    let renewed = step_up::renew(&state, &req, &s).await?;
    let mut shown = renewed.as_ref().map_or(&s, |(_, n)| n).clone();
    shown.pending = wl::count_with_status(&state.db, &s.project.id, Status::Pending).await?;
    let mut ctx = page_context(&shown, "approvals");
    ctx.insert("decision", decision.as_str());
    ctx.insert("results", &results);
    ctx.insert("succeeded", &succeeded);
    ctx.insert("failed", &(results.len() - succeeded));
    ctx.insert("query", &q.link());
    let mut resp = render("approvals/result.html", &ctx)?;
    match renewed {
        Some((cookie, _)) => {
            let _ = resp.add_cookie(&cookie);
        }
        None => {
            let _ = resp.add_cookie(&crate::auth::session::removal_cookie(&state));
        }
    }
    Ok(resp)
}
