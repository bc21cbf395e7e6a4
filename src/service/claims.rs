//! Admin API claims: `PENDING -> PROCESSING` makes one admin the only person who may decide a
//! pending withdrawal for 15 minutes (the finalize step, [`super::approvals::decide`] with
//! `require_claim`, checks it). A claim is one conditional write, so of several admins
//! claiming at once exactly one holds it; the others are told who and until when. Only a
//! person who may decide the withdrawal can claim it, and every claim is audited.

use crate::clock::MINUTE_MS;
use crate::db::activity::Names;
use crate::db::admin_api as qdb;
use crate::db::approvals::{self as adb, Claim};
use crate::db::audit::{self, Actor, Origin};
use crate::db::users::User;
use crate::db::withdrawals as wdb;
use crate::db::withdrawals::Withdrawal;
use crate::db::{DbError, Tx};
use crate::domain::approval::eligibility;
use crate::domain::withdrawal::Status;
use crate::service::alerts::voter;
use crate::service::approvals::{
    Channel, DecideError, DecisionRequest, Outcome, already_decided, decide,
};
use crate::state::AppState;
use serde_json::json;

/// How long a claim holds.
pub const CLAIM_MS: i64 = 15 * MINUTE_MS;

async fn claimed_by_other(state: &AppState, project_id: &str, c: Claim) -> DecideError {
    match Names::load(&state.db, project_id).await {
        Ok(names) => DecideError::ClaimedByOther {
            by: names.describe("user", &c.user_id),
            until: c.until,
        },
        Err(e) => DecideError::Db(e),
    }
}

async fn commit(tx: Tx<'_>) -> Result<(), DbError> {
    tx.commit().await.map_err(DbError::from)
}

/// `user` claims withdrawal `id` (or renews their own claim) for [`CLAIM_MS`].
pub async fn claim(
    state: &AppState,
    user: &User,
    id: i64,
    note: &str,
    origin: &Origin,
) -> Result<Claim, DecideError> {
    let w = match wdb::by_id(&state.db, id).await? {
        Some(w) if w.project_id == user.project_id => w,
        _ => return Err(DecideError::NotFound),
    };
    if w.status != Status::Pending {
        return Err(already_decided(state, &w.project_id, w.id).await);
    }
    eligibility(&w.requirement, voter(&w, user, state.now())).map_err(DecideError::Ineligible)?;
    let now = state.now();
    // Someone else's live claim is answered without queueing on the row lock.
    if let Some(c) = adb::claim_of(state.db.reader(), w.id, now).await? {
        if c.user_id != user.id {
            return Err(claimed_by_other(state, &w.project_id, c).await);
        }
    }
    let until = now + CLAIM_MS;
    let mut tx = state.db.begin().await?;
    let w = match wdb::lock(&state.db, &mut tx, w.id).await? {
        Some(w) if w.status == Status::Pending => w,
        _ => {
            drop(tx);
            return Err(already_decided(state, &user.project_id, id).await);
        }
    };
    // Someone who has voted cannot vote again: holding the claim would only block others.
    if let Some(mine) = adb::votes(&mut *tx, w.id)
        .await?
        .into_iter()
        .find(|v| v.user_id == user.id)
    {
        return Err(DecideError::AlreadyVoted {
            decision: mine.decision,
            at: mine.created_at,
        });
    }
    let renewed = adb::claim_of(&mut *tx, w.id, now)
        .await?
        .is_some_and(|c| c.user_id == user.id);
    if !adb::claim(&mut tx, w.id, &user.id, until, now).await? {
        let holder = adb::claim_of(&mut *tx, w.id, now).await?;
        drop(tx);
        return Err(match holder {
            Some(c) => claimed_by_other(state, &w.project_id, c).await,
            None => already_decided(state, &w.project_id, w.id).await,
        });
    }
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &w.project_id,
            actor: &Actor::User(user.id.clone()),
            action: "withdrawal.claimed",
            subject: format!("withdrawal:{}", w.id),
            details: json!({
                "channel": Channel::AdminApi.as_str(),
                "until": until,
                "renewed": renewed,
                "note": note,
            }),
            origin,
        },
        now,
    )
    .await?;
    commit(tx).await?;
    Ok(Claim {
        user_id: user.id.clone(),
        until,
    })
}

/// The finalize step: `decide` with `require_claim`, after the same checks made without a
/// transaction. Only the claim holder gets as far as `decide`'s transaction and row lock: the
/// others are answered at once, rather than each holding a pooled connection while queueing on
/// the row lock (twenty admins finalizing at once would otherwise starve the pool the holder's
/// own transaction needs). `decide` checks everything again under the lock.
pub async fn finalize(
    state: &AppState,
    user: &User,
    req: &DecisionRequest<'_>,
) -> Result<(Withdrawal, Outcome), DecideError> {
    let w = match wdb::by_id(&state.db, req.withdrawal_id).await? {
        Some(w) if w.project_id == user.project_id => w,
        _ => return Err(DecideError::NotFound),
    };
    if w.status != Status::Pending {
        return Err(already_decided(state, &w.project_id, w.id).await);
    }
    eligibility(&w.requirement, voter(&w, user, state.now())).map_err(DecideError::Ineligible)?;
    match adb::claim_of(state.db.reader(), w.id, state.now()).await? {
        Some(c) if c.user_id == user.id => decide(state, user, req).await,
        Some(c) => Err(claimed_by_other(state, &w.project_id, c).await),
        None => Err(DecideError::NotClaimed),
    }
}

/// Why a claim was given back (kept in the audit record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// `PROCESSING -> PENDING`: the holder hands it back.
    ByHolder,
    /// The holder's approval was recorded and more are needed: the next approver may claim.
    AfterApproval,
}

/// Gives `user`'s claim on `id` back. `NotClaimed` when they hold none.
pub async fn release(
    state: &AppState,
    user: &User,
    id: i64,
    why: Release,
    note: &str,
    origin: &Origin,
) -> Result<(), DecideError> {
    let w = match wdb::by_id(&state.db, id).await? {
        Some(w) if w.project_id == user.project_id => w,
        _ => return Err(DecideError::NotFound),
    };
    if w.status != Status::Pending {
        return Err(already_decided(state, &w.project_id, w.id).await);
    }
    let now = state.now();
    let mut tx = state.db.begin().await?;
    if !qdb::release_claim(&mut tx, w.id, &user.id, now).await? {
        return Err(DecideError::NotClaimed);
    }
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &w.project_id,
            actor: &Actor::User(user.id.clone()),
            action: "withdrawal.claim_released",
            subject: format!("withdrawal:{}", w.id),
            details: json!({
                "channel": Channel::AdminApi.as_str(),
                "why": match why {
                    Release::ByHolder => "handed back",
                    Release::AfterApproval => "approval recorded, more needed",
                },
                "note": note,
            }),
            origin,
        },
        now,
    )
    .await?;
    commit(tx).await?;
    Ok(())
}
