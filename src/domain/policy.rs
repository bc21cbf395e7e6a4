//! Limits and the approval requirement a withdrawal is created with.
//!
//! Limits are per scope (`api`, `dashboard`) and per currency. The scope's default limits are
//! in the project's base currency and apply to each currency's withdrawals at their base value;
//! an override for one currency is in that currency's own units and replaces the default for
//! it. Hour and day windows are UTC calendar buckets (the clock hour, the UTC day).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Api,
    Dashboard,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Api => "api",
            Scope::Dashboard => "dashboard",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "api" => Some(Scope::Api),
            "dashboard" => Some(Scope::Dashboard),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSet {
    pub per_operation: Option<Decimal>,
    pub per_hour: Option<Decimal>,
    pub per_day: Option<Decimal>,
}

impl LimitSet {
    /// New projects start here, in both scopes: 1,000 / 5,000 / 10,000 of the base currency.
    pub fn project_default() -> LimitSet {
        LimitSet {
            per_operation: Some(Decimal::new(1_000, 0)),
            per_hour: Some(Decimal::new(5_000, 0)),
            per_day: Some(Decimal::new(10_000, 0)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    PerOperation,
    PerHour,
    PerDay,
}

impl Window {
    pub fn label(self) -> &'static str {
        match self {
            Window::PerOperation => "per-operation",
            Window::PerHour => "per-hour",
            Window::PerDay => "per-day",
        }
    }
}

/// Why a withdrawal waits for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HoldReason {
    /// Over a limit: `would_be` is the window's total including this withdrawal.
    Limit {
        scope: Scope,
        window: Window,
        limit: String,
        would_be: String,
        currency: String,
    },
    /// The project's Withdrawal Confirmation feature is on.
    WithdrawalConfirmation,
    /// An approval tier: at or above `min` (base currency), `approvers` distinct people.
    Tier {
        scope: Scope,
        min: String,
        currency: String,
        approvers: u32,
    },
}

impl HoldReason {
    pub fn describe(&self) -> String {
        match self {
            HoldReason::Limit {
                scope,
                window,
                limit,
                would_be,
                currency,
            } => format!(
                "over the {} {} limit: {would_be} {currency} against {limit} {currency}",
                scope.as_str(),
                window.label()
            ),
            HoldReason::WithdrawalConfirmation => {
                "Withdrawal Confirmation is enabled: every withdrawal needs a second person".into()
            }
            HoldReason::Tier {
                scope,
                min,
                currency,
                approvers,
            } => format!(
                "{} approval tier: at or above {min} {currency} needs {approvers} distinct approver{}",
                scope.as_str(),
                if *approvers == 1 { "" } else { "s" }
            ),
        }
    }
}

/// Who must say yes before a withdrawal is paid. The initiator never counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ApprovalRequirement {
    /// Distinct approvers (with withdrawal rights) needed; 0 = straight to payout.
    pub approvals: u32,
    /// At least one of them must be an owner (limits).
    pub owner_required: bool,
    pub reasons: Vec<HoldReason>,
}

impl ApprovalRequirement {
    pub fn is_needed(&self) -> bool {
        self.approvals > 0
    }
}

/// An owner-set approval tier of one scope: withdrawals worth at least `min_base_amount`
/// (base currency) need `approvers` distinct approvers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub min_base_amount: Decimal,
    pub approvers: u32,
}

/// Totals already used in the current windows, in the currency's units and base value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub amount: Decimal,
    pub base_amount: Decimal,
}

/// Everything needed to decide, gathered by the caller.
#[derive(Debug, Clone)]
pub struct PolicyInput<'a> {
    pub scope: Scope,
    pub currency: &'a str,
    pub base_currency: &'a str,
    pub amount: Decimal,
    pub base_value: Decimal,
    /// The scope's default limits, in base currency.
    pub base_limits: LimitSet,
    /// The scope's override for this currency, in its own units.
    pub currency_limits: Option<LimitSet>,
    pub used_this_hour: Usage,
    pub used_today: Usage,
    pub withdrawal_confirmation: bool,
    /// The scope's approval tiers (any order).
    pub tiers: &'a [Tier],
}

/// The requirement a withdrawal is created with: over any limit, one owner; Withdrawal
/// Confirmation, one person with withdrawal rights; the highest tier reached, its number of
/// distinct approvers. The largest count wins; "an owner among them" holds when a limit is
/// exceeded.
pub fn requirement(input: &PolicyInput<'_>) -> ApprovalRequirement {
    let (limits, value, hour, day, unit) = match input.currency_limits {
        Some(l) => (
            l,
            input.amount,
            input.used_this_hour.amount,
            input.used_today.amount,
            input.currency,
        ),
        None => (
            input.base_limits,
            input.base_value,
            input.used_this_hour.base_amount,
            input.used_today.base_amount,
            input.base_currency,
        ),
    };
    let mut reasons = Vec::new();
    let checks = [
        (Window::PerOperation, limits.per_operation, value),
        (Window::PerHour, limits.per_hour, hour + value),
        (Window::PerDay, limits.per_day, day + value),
    ];
    for (window, limit, would_be) in checks {
        if let Some(limit) = limit {
            if would_be > limit {
                reasons.push(HoldReason::Limit {
                    scope: input.scope,
                    window,
                    limit: limit.normalize().to_string(),
                    would_be: would_be.normalize().to_string(),
                    currency: unit.to_string(),
                });
            }
        }
    }
    let over_limit = !reasons.is_empty();
    if input.withdrawal_confirmation {
        reasons.push(HoldReason::WithdrawalConfirmation);
    }
    let mut approvals = u32::from(!reasons.is_empty());
    let tier = input
        .tiers
        .iter()
        .filter(|t| input.base_value >= t.min_base_amount && t.approvers > 0)
        .max_by_key(|t| t.min_base_amount);
    if let Some(t) = tier {
        reasons.push(HoldReason::Tier {
            scope: input.scope,
            min: t.min_base_amount.normalize().to_string(),
            currency: input.base_currency.to_string(),
            approvers: t.approvers,
        });
        approvals = approvals.max(t.approvers);
    }
    ApprovalRequirement {
        approvals,
        owner_required: over_limit,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(amount: i64, base_value: i64) -> PolicyInput<'static> {
        PolicyInput {
            scope: Scope::Api,
            currency: "BTC",
            base_currency: "EUR",
            amount: Decimal::new(amount, 0),
            base_value: Decimal::new(base_value, 0),
            base_limits: LimitSet::project_default(),
            currency_limits: None,
            used_this_hour: Usage::default(),
            used_today: Usage::default(),
            withdrawal_confirmation: false,
            tiers: &[],
        }
    }

    #[test]
    fn under_limits_needs_nobody() {
        let r = requirement(&input(1, 999));
        assert!(!r.is_needed());
        assert!(r.reasons.is_empty());
    }

    #[test]
    fn each_window_holds_with_its_reason() {
        let r = requirement(&input(1, 1001));
        assert_eq!(r.approvals, 1);
        assert!(r.owner_required);
        assert!(matches!(
            r.reasons[0],
            HoldReason::Limit {
                window: Window::PerOperation,
                ..
            }
        ));

        let mut i = input(1, 500);
        i.used_this_hour.base_amount = Decimal::new(4_600, 0);
        i.used_today.base_amount = Decimal::new(9_600, 0);
        let r = requirement(&i);
        let windows: Vec<_> = r
            .reasons
            .iter()
            .filter_map(|h| match h {
                HoldReason::Limit {
                    window, would_be, ..
                } => Some((*window, would_be.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            windows,
            vec![
                (Window::PerHour, "5100".into()),
                (Window::PerDay, "10100".into())
            ]
        );
    }

    #[test]
    fn currency_override_replaces_base_limits_in_its_own_units() {
        let mut i = input(3, 180_000); // 3 BTC, far over 1,000 EUR
        i.currency_limits = Some(LimitSet {
            per_operation: Some(Decimal::new(5, 0)),
            per_hour: None,
            per_day: None,
        });
        assert!(!requirement(&i).is_needed());
        i.amount = Decimal::new(6, 0);
        let r = requirement(&i);
        assert!(matches!(&r.reasons[0], HoldReason::Limit { currency, .. } if currency == "BTC"));
    }

    #[test]
    fn withdrawal_confirmation_needs_any_rights_holder() {
        let mut i = input(1, 10);
        i.withdrawal_confirmation = true;
        let r = requirement(&i);
        assert_eq!(r.approvals, 1);
        assert!(!r.owner_required);
        assert_eq!(r.reasons, vec![HoldReason::WithdrawalConfirmation]);
    }

    #[test]
    fn the_highest_tier_reached_sets_the_count() {
        let tiers = [
            Tier {
                min_base_amount: Decimal::new(500, 0),
                approvers: 2,
            },
            Tier {
                min_base_amount: Decimal::new(5_000, 0),
                approvers: 3,
            },
        ];
        let mut i = input(1, 499);
        i.tiers = &tiers;
        assert!(!requirement(&i).is_needed());
        i.base_value = Decimal::new(500, 0);
        let r = requirement(&i);
        assert_eq!((r.approvals, r.owner_required), (2, false));
        // Over the per-operation limit too: an owner must be among the three.
        i.base_value = Decimal::new(6_000, 0);
        let r = requirement(&i);
        assert_eq!((r.approvals, r.owner_required), (3, true));
        assert!(matches!(
            r.reasons.last(),
            Some(HoldReason::Tier { approvers: 3, min, .. }) if min == "5000"
        ));
    }
}
