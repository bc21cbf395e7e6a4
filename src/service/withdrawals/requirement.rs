//! What a new withdrawal would need before it is paid: gathered once here, so that
//! [`super::create`] (under its locks) and the manual-payout form's preview (without them)
//! ask [`policy::requirement`] the same question with the same inputs.

use crate::db::projects::Project;
use crate::db::{approvals, limits};
use crate::domain::money::Currency;
use crate::domain::policy::{self, ApprovalRequirement, LimitSet, PolicyInput, Scope, Tier, Usage};
use crate::domain::withdrawal::NewWithdrawal;
use crate::error::ApiError;
use crate::service::pricing::{self, Priced};
use crate::state::AppState;

/// Everything the requirement depends on except the current windows' usage.
pub(crate) struct Basis {
    pub priced: Priced,
    scope: Scope,
    payout: Currency,
    base_limits: LimitSet,
    currency_limits: Option<LimitSet>,
    tiers: Vec<Tier>,
    withdrawal_confirmation: bool,
}

impl Basis {
    /// Prices the request and reads the scope's limits and tiers.
    pub async fn load(
        state: &AppState,
        project: &Project,
        scope: Scope,
        req: &NewWithdrawal,
    ) -> Result<Basis, ApiError> {
        let priced = pricing::price_withdrawal(state, project, req)?;
        // Limits count the payout currency: what leaves, in its units and at its base value.
        let payout = req.payout;
        let (base_limits, currency_limits) =
            limits::for_withdrawal(&state.db, &project.id, scope, payout.code()).await?;
        let tiers = approvals::tiers(&state.db, &project.id)
            .await?
            .into_iter()
            .filter_map(|(s, t)| (s == scope).then_some(t))
            .collect();
        Ok(Basis {
            priced,
            scope,
            payout,
            base_limits,
            currency_limits,
            tiers,
            withdrawal_confirmation: project.withdrawal_confirmation,
        })
    }

    /// The requirement, given what the hour and day windows have used so far.
    pub fn requirement(&self, used_this_hour: Usage, used_today: Usage) -> ApprovalRequirement {
        policy::requirement(&PolicyInput {
            scope: self.scope,
            currency: self.payout.code(),
            base_currency: self.priced.base.code(),
            amount: self.priced.price.received,
            base_value: self.priced.base_value,
            base_limits: self.base_limits,
            currency_limits: self.currency_limits,
            used_this_hour,
            used_today,
            withdrawal_confirmation: self.withdrawal_confirmation,
            tiers: &self.tiers,
        })
    }
}

/// The requirement `req` would be created with now (usage read without locks: a withdrawal
/// created meanwhile can only make the real one stricter).
pub async fn preview(
    state: &AppState,
    project: &Project,
    scope: Scope,
    req: &NewWithdrawal,
) -> Result<ApprovalRequirement, ApiError> {
    let basis = Basis::load(state, project, scope, req).await?;
    let (hour, day) = limits::buckets(state.now());
    let code = req.payout.code();
    let reader = state.db.reader();
    let used_hour = limits::usage(reader, &project.id, scope, code, &hour).await?;
    let used_day = limits::usage(reader, &project.id, scope, code, &day).await?;
    Ok(basis.requirement(used_hour, used_day))
}
