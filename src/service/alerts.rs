//! What people hear about pending withdrawals: an approval email to every eligible approver
//! when a withdrawal starts waiting, and the outcome to its initiator and the owners when it
//! is decided. Everything here runs inside the transaction of the change that causes it and
//! only writes outbox rows; delivery happens after commit.

use crate::db::activity::Names;
use crate::db::audit::Actor;
use crate::db::jobs::{self, JobKind, NewJob};
use crate::db::users::{self, User};
use crate::db::withdrawals::Withdrawal;
use crate::db::{DbError, Tx};
use crate::domain::approval::{Voter, eligibility};
use crate::domain::withdrawal::Status;
use crate::notify::{email, slack};
use crate::state::AppState;
use crate::web::withdrawals::amount_text;
use serde::{Deserialize, Serialize};

/// The payload of an approval-email job. The email, and the link token in it, are made when
/// the worker sends it, so no usable token ever sits in the outbox.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApprovalEmailJob {
    pub user_id: String,
}

/// The withdrawal's page, for links in alerts.
pub fn detail_url(state: &AppState, id: i64) -> String {
    format!(
        "{}/withdrawals/{id}",
        state.settings.base_url.trim_end_matches('/')
    )
}

/// Whether `user` could approve `w` at `now` (the same rule the decision itself applies).
pub fn may_decide(w: &Withdrawal, user: &User, now: i64) -> bool {
    user.project_id == w.project_id && eligibility(&w.requirement, voter(w, user, now)).is_ok()
}

/// `user` as a voter on `w` at `now`.
pub fn voter(w: &Withdrawal, user: &User, now: i64) -> Voter {
    voter_as(
        user,
        w.initiator_kind == "user" && w.initiator_id == user.id,
        now,
    )
}

/// `user` as a voter at `now` on a withdrawal they did (or did not) initiate.
pub fn voter_as(user: &User, is_initiator: bool, now: i64) -> Voter {
    Voter {
        is_initiator,
        is_owner: user.is_owner(),
        has_rights: user.can_use_withdrawal_rights(),
        held_until: user.approval_held_until(now),
    }
}

/// `w` just became pending: one approval email per eligible approver with alerts on.
pub async fn on_pending(
    tx: &mut Tx<'_>,
    state: &AppState,
    w: &Withdrawal,
    now: i64,
) -> Result<(), DbError> {
    let names = Names::load_in(tx, &w.project_id).await?;
    let reasons: Vec<String> = w.requirement.reasons.iter().map(|r| r.describe()).collect();
    slack::queue_pending(
        tx,
        &w.project_id,
        &slack::PendingAlert {
            withdrawal_id: w.id,
            amount: &format!("{} {}", amount_text(&w.currency, w.amount), w.currency),
            network: &w.network,
            address: &w.address,
            reasons: &reasons,
            initiator: &names.describe(&w.initiator_kind, &w.initiator_id),
            approvals_needed: w.requirement.approvals,
            owner_required: w.requirement.owner_required,
            detail_url: &detail_url(state, w.id),
        },
        now,
    )
    .await?;
    let people = users::list_in(tx, &w.project_id).await?;
    for user in people.into_iter().filter(|u| may_decide(w, u, now)) {
        if !user.email_alerts {
            continue;
        }
        let payload = ApprovalEmailJob {
            user_id: user.id.clone(),
        };
        jobs::enqueue(
            tx,
            &NewJob {
                kind: JobKind::ApprovalEmail,
                project_id: &w.project_id,
                withdrawal_id: Some(w.id),
                dedupe_key: format!("approval_email:{}:{}", w.id, user.id),
                payload: serde_json::to_string(&payload).unwrap_or_default(),
                run_at: now,
                deadline: w.expires_at,
            },
            now,
        )
        .await?;
    }
    Ok(())
}

/// One line on how a pending withdrawal ended: "Approved by alice@…", "Declined by bob@…:
/// note", "Expired", "Cancelled by the merchant".
pub fn outcome_line(after: &Withdrawal, actor: &Actor, note: &str, names: &Names) -> String {
    let by = names.describe(actor.kind(), actor.id());
    match after.status {
        Status::Approved => match actor {
            Actor::User(_) => format!("Approved by {by}"),
            _ => "Approved".to_string(),
        },
        Status::Declined if note.trim().is_empty() => format!("Declined by {by}"),
        Status::Declined => format!("Declined by {by}: {}", note.trim()),
        Status::Cancelled if after.error == "Expired" => "Expired".to_string(),
        Status::Cancelled => match actor {
            Actor::ApiKey(_) => "Cancelled by the merchant".to_string(),
            _ => format!("Cancelled by {by}"),
        },
        other => format!("Now {}", other.as_str()),
    }
}

/// `after` has just left `pending`: tell its initiator (a dashboard payout's user, if they
/// want outcome emails) and the owners who receive approval alerts, except whoever decided.
pub async fn on_decided(
    tx: &mut Tx<'_>,
    state: &AppState,
    after: &Withdrawal,
    actor: &Actor,
    note: &str,
    now: i64,
) -> Result<(), DbError> {
    let names = Names::load_in(tx, &after.project_id).await?;
    let line = outcome_line(after, actor, note, &names);
    slack::queue_outcome(
        tx,
        &after.project_id,
        &slack::OutcomeAlert {
            withdrawal_id: after.id,
            amount: &format!(
                "{} {}",
                amount_text(&after.currency, after.amount),
                after.currency
            ),
            outcome: &line,
            detail_url: &detail_url(state, after.id),
        },
        now,
    )
    .await?;
    let people = users::list_in(tx, &after.project_id).await?;
    for user in people.iter().filter(|u| u.status == "active") {
        if actor.kind() == "user" && actor.id() == user.id {
            continue;
        }
        let initiated = after.initiator_kind == "user" && after.initiator_id == user.id;
        let wants = (initiated && user.outcome_alerts) || (user.is_owner() && user.email_alerts);
        if !wants {
            continue;
        }
        let mut ctx = tera::Context::new();
        ctx.insert("outcome", &line);
        ctx.insert("id", &after.id);
        ctx.insert("foreign_id", &after.foreign_id);
        ctx.insert("amount", &amount_text(&after.currency, after.amount));
        ctx.insert("address", &after.address);
        ctx.insert("initiated", &initiated);
        ctx.insert("link", &detail_url(state, after.id));
        let subject = format!(
            "Withdrawal {} of {} {}: {}",
            after.id,
            amount_text(&after.currency, after.amount),
            after.currency,
            line
        );
        let message = match email::render("withdrawal_outcome", &user.email, &subject, &ctx) {
            Ok(m) => m,
            Err(e) => {
                // A template error must not undo the decision itself; it is a bug to log.
                tracing::error!(error = %e, "outcome email could not be rendered");
                continue;
            }
        };
        email::queue(
            tx,
            &after.project_id,
            &message,
            format!("outcome_email:{}:{}", after.id, user.id),
            now,
        )
        .await?;
    }
    Ok(())
}
