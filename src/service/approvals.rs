//! Deciding pending withdrawals: every channel (the detail page, the bulk queue, email links,
//! the admin API) ends in [`decide`], so the same rules hold everywhere.
//!
//! One decision is one transaction: lock the withdrawal row (so decisions on one withdrawal
//! queue and each sees the votes before it), check it is still pending and who may decide,
//! insert the vote (the schema refuses a repeat voter, the initiator and other projects), and
//! when the approvals are enough or the vote is a decline, make the transition in the same
//! transaction. Of 20 people approving at once, the requirement is met once and the others
//! are told who decided and when.

use crate::clock::rfc3339;
use crate::db::activity::Names;
use crate::db::approvals::{self as adb, NewVote};
use crate::db::audit::{self, Actor, Origin};
use crate::db::users::User;
use crate::db::withdrawals::{self as wdb, Withdrawal};
use crate::db::{DbError, Tx};
use crate::domain::approval::{Approval, Decision, Ineligible, Tally, eligibility, tally};
use crate::domain::withdrawal::{Event, Status};
use crate::service::alerts::voter;
use crate::service::withdrawals::{Change, ChangeError, change_in, decided, lock_funds};
use crate::state::AppState;
use serde_json::json;

/// Where a decision was made (kept with the vote and in the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Web,
    Bulk,
    Email,
    AdminApi,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Bulk => "bulk",
            Channel::Email => "email",
            Channel::AdminApi => "admin_api",
        }
    }
}

pub struct DecisionRequest<'a> {
    pub withdrawal_id: i64,
    pub decision: Decision,
    pub note: &'a str,
    pub channel: Channel,
    pub origin: &'a Origin,
    /// The admin API's finalize step: only the holder of an unexpired claim may decide.
    pub require_claim: bool,
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The approval counts; more are needed.
    Recorded(Tally),
    /// The approvals are now enough: the withdrawal goes to payout.
    Approved,
    Declined,
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("withdrawal not found")]
    NotFound,
    #[error("{0}")]
    Ineligible(Ineligible),
    #[error("you already {}d this withdrawal at {}", .decision.as_str(), rfc3339(*.at))]
    AlreadyVoted { decision: Decision, at: i64 },
    #[error("already {} by {by} at {}", .status.as_str(), rfc3339(*.at))]
    AlreadyDecided { status: Status, by: String, at: i64 },
    #[error("claimed by {by} until {}: only they can decide it until then", rfc3339(*.until))]
    ClaimedByOther { by: String, until: i64 },
    #[error("claim the withdrawal (PENDING -> PROCESSING) before finalizing it")]
    NotClaimed,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl DecideError {
    /// A stable code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            DecideError::NotFound => "not_found",
            DecideError::Ineligible(Ineligible::Initiator) => "self_approval",
            DecideError::Ineligible(Ineligible::NoRights) => "no_withdrawal_rights",
            DecideError::Ineligible(Ineligible::OwnerRequired) => "owner_required",
            DecideError::Ineligible(Ineligible::Held { .. }) => "new_approver_hold",
            DecideError::AlreadyVoted { .. } => "already_voted",
            DecideError::AlreadyDecided { .. } => "already_decided",
            DecideError::ClaimedByOther { .. } => "claimed_by_other",
            DecideError::NotClaimed => "not_claimed",
            DecideError::Db(_) => "internal",
        }
    }
}

pub(crate) async fn already_decided(state: &AppState, project_id: &str, id: i64) -> DecideError {
    let d = match decided(state, id).await {
        Ok(ChangeError::NotAllowed(d)) => d,
        Ok(ChangeError::Db(e)) | Err(e) => return DecideError::Db(e),
    };
    let by = match Names::load(&state.db, project_id).await {
        Ok(names) => names.describe(&d.actor_kind, &d.actor_id),
        Err(e) => return DecideError::Db(e),
    };
    DecideError::AlreadyDecided {
        status: d.status,
        by,
        at: d.at,
    }
}

/// `user` approves or declines a withdrawal of their project. The caller has verified who
/// `user` is (session and fresh TOTP code, or an admin token); everything else is checked here.
pub async fn decide(
    state: &AppState,
    user: &User,
    req: &DecisionRequest<'_>,
) -> Result<(Withdrawal, Outcome), DecideError> {
    decide_using(state, user, req, None).await
}

/// [`decide`] through an email link (by its token hash): the link is used in the same
/// transaction as the vote, so it counts as used exactly when the decision was recorded; any
/// refusal leaves it as it was. A link that cannot be used (used meanwhile, expired) answers
/// `NotFound`. The caller has checked that the link is `user`'s and names this withdrawal.
pub async fn decide_with_link(
    state: &AppState,
    user: &User,
    req: &DecisionRequest<'_>,
    link_hash: &str,
) -> Result<(Withdrawal, Outcome), DecideError> {
    decide_using(state, user, req, Some(link_hash)).await
}

async fn decide_using(
    state: &AppState,
    user: &User,
    req: &DecisionRequest<'_>,
    link_hash: Option<&str>,
) -> Result<(Withdrawal, Outcome), DecideError> {
    let w = match wdb::by_id(&state.db, req.withdrawal_id).await? {
        Some(w) if w.project_id == user.project_id => w,
        _ => return Err(DecideError::NotFound),
    };
    if w.status != Status::Pending {
        return Err(already_decided(state, &w.project_id, w.id).await);
    }
    eligibility(&w.requirement, voter(&w, user, state.now())).map_err(DecideError::Ineligible)?;
    let event = match req.decision {
        Decision::Approve => Event::ApprovalsMet,
        Decision::Decline => Event::Decline,
    };
    let now = state.now();
    let mut tx = state.db.begin().await?;
    // Lock order: balance (a decline releases funds), then the withdrawal.
    let balance = lock_funds(state, &mut tx, &w, event).await?;
    let w = match wdb::lock(&state.db, &mut tx, w.id).await? {
        Some(w) if w.status == Status::Pending => w,
        _ => {
            drop(tx);
            return Err(already_decided(state, &user.project_id, req.withdrawal_id).await);
        }
    };
    if w.expires_at.is_some_and(|at| now >= at) {
        // Past its expiry, though the worker has not swept it yet (it may be stopped): it
        // expires now instead of being decided, and the answer says so.
        drop(tx);
        crate::service::withdrawals::expire(state, &w).await?;
        return Err(already_decided(state, &user.project_id, w.id).await);
    }
    if let Some(hash) = link_hash {
        // After the lock: of two submissions of one link, the second finds it used.
        if !adb::use_link(&mut tx, hash, now).await? {
            return Err(DecideError::NotFound);
        }
    }
    match adb::claim_of(&mut *tx, w.id, now).await? {
        Some(c) if c.user_id != user.id => {
            drop(tx);
            let names = Names::load(&state.db, &w.project_id).await?;
            return Err(DecideError::ClaimedByOther {
                by: names.describe("user", &c.user_id),
                until: c.until,
            });
        }
        None if req.require_claim => return Err(DecideError::NotClaimed),
        _ => {}
    }
    let votes = adb::votes(&mut *tx, w.id).await?;
    if let Some(mine) = votes.iter().find(|v| v.user_id == user.id) {
        return Err(DecideError::AlreadyVoted {
            decision: mine.decision,
            at: mine.created_at,
        });
    }
    adb::insert_vote(
        &mut tx,
        &NewVote {
            withdrawal_id: w.id,
            project_id: &w.project_id,
            initiator_id: &w.initiator_id,
            user_id: &user.id,
            decision: req.decision,
            voter_is_owner: user.is_owner(),
            channel: req.channel.as_str(),
            note: req.note,
        },
        now,
    )
    .await?;
    let actor = Actor::User(user.id.clone());
    let mut approvals: Vec<Approval> = votes
        .iter()
        .filter(|v| v.decision == Decision::Approve)
        .map(|v| Approval {
            by_owner: v.by_owner,
        })
        .collect();
    let outcome = match req.decision {
        Decision::Decline => Outcome::Declined,
        Decision::Approve => {
            approvals.push(Approval {
                by_owner: user.is_owner(),
            });
            let t = tally(&w.requirement, &approvals);
            if t.is_met() {
                Outcome::Approved
            } else {
                Outcome::Recorded(t)
            }
        }
    };
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &w.project_id,
            actor: &actor,
            action: match req.decision {
                Decision::Approve => "withdrawal.approval",
                Decision::Decline => "withdrawal.decline",
            },
            subject: format!("withdrawal:{}", w.id),
            details: json!({ "channel": req.channel.as_str(), "note": req.note }),
            origin: req.origin,
        },
        now,
    )
    .await?;
    let after = match outcome {
        Outcome::Recorded(_) => w.clone(),
        Outcome::Approved | Outcome::Declined => {
            let error = format!("Declined by user ID:{}", user.id);
            let note = match (&outcome, req.note.trim()) {
                (Outcome::Approved, "") => "approvals met".to_string(),
                (Outcome::Approved, n) => format!("approvals met: {n}"),
                (_, n) => n.to_string(),
            };
            let change = Change {
                event,
                actor: &actor,
                note: &note,
                error: (req.decision == Decision::Decline).then_some(error.as_str()),
                txid: None,
                check_at: None,
                origin: req.origin,
            };
            match change_in(state, &mut tx, &w, &change, balance).await {
                Ok(Some(after)) => after,
                Ok(None) => {
                    drop(tx);
                    return Err(already_decided(state, &w.project_id, w.id).await);
                }
                Err(ChangeError::Db(e)) => return Err(e.into()),
                Err(ChangeError::NotAllowed(_)) => {
                    drop(tx);
                    return Err(already_decided(state, &w.project_id, w.id).await);
                }
            }
        }
    };
    commit(tx).await?;
    state.wake.notify_one();
    if after.status != Status::Pending {
        state.metrics.decided(after.status, w.created_at, now);
        state.metrics.moved(after.status);
    }
    Ok((after, outcome))
}

async fn commit(tx: Tx<'_>) -> Result<(), DbError> {
    tx.commit().await.map_err(DbError::from)
}

/// The votes on a withdrawal and where its requirement stands.
pub async fn standing(
    state: &AppState,
    w: &Withdrawal,
) -> Result<(Vec<adb::Vote>, Tally), DbError> {
    let votes = adb::votes(state.db.reader(), w.id).await?;
    Ok(standing_of(w, votes))
}

/// Where `w`'s requirement stands with `votes` (all of its votes, in order).
pub fn standing_of(w: &Withdrawal, votes: Vec<adb::Vote>) -> (Vec<adb::Vote>, Tally) {
    let approvals: Vec<Approval> = votes
        .iter()
        .filter(|v| v.decision == Decision::Approve)
        .map(|v| Approval {
            by_owner: v.by_owner,
        })
        .collect();
    let tally = tally(&w.requirement, &approvals);
    (votes, tally)
}
