//! Manual payouts: a user with withdrawal rights sends a withdrawal from the dashboard. It is
//! created exactly as an API withdrawal is (same parser, same `create`, the dashboard's
//! limits), with the user as its initiator, so the user can never approve it themselves.
//! Before anything is created, a payout that would need approvals nobody else in the project
//! can give is refused: it could only expire.

use crate::db::audit::{Actor, Origin};
use crate::db::projects::Project;
use crate::db::users::{self, User};
use crate::db::withdrawals::Withdrawal;
use crate::domain::approval::unmet_by;
use crate::domain::policy::{ApprovalRequirement, Scope};
use crate::domain::withdrawal::NewWithdrawal;
use crate::error::ApiError;
use crate::service::alerts::voter_as;
use crate::service::withdrawals;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error("you need withdrawal rights, with two-factor authentication set up, to send payouts")]
    NoRights,
    /// The approval it would need cannot be given by anyone but the initiator.
    #[error("{0}")]
    NoApprover(String),
    /// What the merchant API would have answered (field errors, `balance_not_enough`, ...).
    #[error(transparent)]
    Refused(#[from] ApiError),
}

fn no_approver_message(req: &ApprovalRequirement, eligible: usize) -> String {
    let reasons: Vec<String> = req.reasons.iter().map(|r| r.describe()).collect();
    let who = if req.owner_required {
        ", at least one of them an owner"
    } else {
        ""
    };
    let others = match eligible {
        0 => "nobody else in the project can approve it".to_string(),
        1 => "only 1 other person can approve it".to_string(),
        n => format!("only {n} other people can approve it"),
    };
    format!(
        "This payout would need {} approval{} by someone other than you{who} ({}), and {others}, so nothing was created. Invite another user with withdrawal rights{}, or send a smaller amount.",
        req.approvals,
        if req.approvals == 1 { "" } else { "s" },
        reasons.join("; "),
        if req.owner_required {
            " (an owner, for payouts over a limit)"
        } else {
            ""
        },
    )
}

/// Refuses, without creating anything, a payout by `user` that nobody else could approve.
pub async fn check_approvable(
    state: &AppState,
    project: &Project,
    user: &User,
    req: &NewWithdrawal,
) -> Result<(), PayoutError> {
    if !user.can_use_withdrawal_rights() || user.project_id != project.id {
        return Err(PayoutError::NoRights);
    }
    let requirement = withdrawals::preview(state, project, Scope::Dashboard, req).await?;
    let voters: Vec<_> = users::list(&state.db, &project.id)
        .await
        .map_err(ApiError::from)?
        .iter()
        .map(|u| voter_as(u, u.id == user.id, state.now()))
        .collect();
    match unmet_by(&requirement, &voters) {
        None => Ok(()),
        Some(n) => Err(PayoutError::NoApprover(no_approver_message(
            &requirement,
            n,
        ))),
    }
}

/// Creates the payout (after [`check_approvable`], again, just before).
pub async fn create(
    state: &AppState,
    project: &Project,
    user: &User,
    req: NewWithdrawal,
    origin: &Origin,
) -> Result<Withdrawal, PayoutError> {
    check_approvable(state, project, user, &req).await?;
    Ok(withdrawals::create(
        state,
        project,
        &Actor::User(user.id.clone()),
        Scope::Dashboard,
        req,
        origin,
    )
    .await?)
}
