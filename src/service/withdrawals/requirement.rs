//! What a new withdrawal would need before it is paid: gathered once here, so that
//! [`super::create`] (under its locks) and the manual-payout form's preview (without them)
//! ask [`policy::requirement`] the same question with the same inputs.

use crate::db::projects::Project;
use crate::db::{Db, DbError, approvals, limits};
use crate::domain::money::Currency;
use crate::domain::policy::{self, ApprovalRequirement, LimitSet, PolicyInput, Scope, Tier, Usage};
use crate::domain::withdrawal::NewWithdrawal;
use crate::error::ApiError;
use crate::service::pricing::{self, Priced};
use crate::state::AppState;

/// What the requirement depends on from the request itself: its price and its scope.
pub(crate) struct Basis {
    pub priced: Priced,
    pub scope: Scope,
    pub payout: Currency,
    withdrawal_confirmation: bool,
}

/// The project's rules for one scope and payout currency: its limits and approval tiers.
/// New withdrawals read them in the transaction that creates them (see `intake`).
pub(crate) struct Rules {
    base_limits: LimitSet,
    currency_limits: Option<LimitSet>,
    tiers: Vec<Tier>,
}

impl Basis {
    /// Prices the request (no database read).
    pub fn price(
        state: &AppState,
        project: &Project,
        scope: Scope,
        req: &NewWithdrawal,
    ) -> Result<Basis, ApiError> {
        Ok(Basis {
            priced: pricing::price_withdrawal(state, project, req)?,
            scope,
            // Limits count the payout currency: what leaves, in its units and at its base value.
            payout: req.payout,
            withdrawal_confirmation: project.withdrawal_confirmation,
        })
    }

    /// The requirement under `rules`, given what the hour and day windows have used so far.
    pub fn requirement(
        &self,
        rules: &Rules,
        used_this_hour: Usage,
        used_today: Usage,
    ) -> ApprovalRequirement {
        policy::requirement(&PolicyInput {
            scope: self.scope,
            currency: self.payout.code(),
            base_currency: self.priced.base.code(),
            amount: self.priced.price.received,
            base_value: self.priced.base_value,
            base_limits: rules.base_limits,
            currency_limits: rules.currency_limits,
            used_this_hour,
            used_today,
            withdrawal_confirmation: self.withdrawal_confirmation,
            tiers: &rules.tiers,
        })
    }
}

impl Rules {
    pub(super) fn new(
        limits: (LimitSet, Option<LimitSet>),
        tiers: Vec<(Scope, Tier)>,
        scope: Scope,
    ) -> Rules {
        Rules {
            base_limits: limits.0,
            currency_limits: limits.1,
            tiers: tiers
                .into_iter()
                .filter_map(|(s, t)| (s == scope).then_some(t))
                .collect(),
        }
    }

    /// Read without a transaction (for a preview).
    pub async fn load(
        db: &Db,
        project_id: &str,
        scope: Scope,
        currency: &str,
    ) -> Result<Rules, DbError> {
        let reader = db.reader();
        let limits = limits::for_withdrawal(reader, project_id, scope, currency).await?;
        let tiers = approvals::tiers_in(reader, project_id).await?;
        Ok(Rules::new(limits, tiers, scope))
    }
}

/// The requirement `req` would be created with now (rules and usage read without locks: a
/// withdrawal created meanwhile can only make the real one stricter).
pub async fn preview(
    state: &AppState,
    project: &Project,
    scope: Scope,
    req: &NewWithdrawal,
) -> Result<ApprovalRequirement, ApiError> {
    let basis = Basis::price(state, project, scope, req)?;
    let code = req.payout.code();
    let rules = Rules::load(&state.db, &project.id, scope, code).await?;
    let (hour, day) = limits::buckets(state.now());
    let reader = state.db.reader();
    let used_hour = limits::usage(reader, &project.id, scope, code, &hour).await?;
    let used_day = limits::usage(reader, &project.id, scope, code, &day).await?;
    Ok(basis.requirement(&rules, used_hour, used_day))
}
