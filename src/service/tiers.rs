//! Approval tiers, set by owners per scope: "at or above AMOUNT (base currency), N distinct
//! approvers". The highest tier a new withdrawal reaches sets how many people must approve
//! it (see `domain::policy::requirement`). Each change holds the project's row lock and is
//! audited with the value before and after.

use crate::db::audit::{self, Actor, Origin};
use crate::db::{DbError, approvals, project_settings};
use crate::domain::money::{Currency, parse_decimal};
use crate::domain::policy::{Scope, Tier};
use crate::service::settings::SettingsError;
use crate::state::AppState;
use rust_decimal::Decimal;
use serde_json::json;

pub const MAX_APPROVERS: u32 = 10;

fn invalid(field: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        field,
        message: message.into(),
    }
}

pub fn parse_scope(s: &str) -> Result<Scope, SettingsError> {
    Scope::parse(s.trim()).ok_or_else(|| invalid("scope", "choose api or dashboard"))
}

/// The threshold: a plain positive decimal with no more decimals than the base currency has.
pub fn parse_min(s: &str, base: Currency) -> Result<Decimal, SettingsError> {
    let t = s.trim();
    let v = parse_decimal(t).map_err(|_| {
        invalid(
            "min",
            format!("{t:?} is not a plain decimal number such as 10000"),
        )
    })?;
    if v <= Decimal::ZERO {
        return Err(invalid("min", "must be greater than zero"));
    }
    if v.normalize().scale() > base.scale() {
        return Err(invalid(
            "min",
            format!(
                "{base} amounts have at most {} decimal places",
                base.scale()
            ),
        ));
    }
    Ok(v.normalize())
}

pub fn parse_approvers(s: &str) -> Result<u32, SettingsError> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_APPROVERS).contains(n))
        .ok_or_else(|| {
            invalid(
                "approvers",
                format!("a whole number from 1 to {MAX_APPROVERS}"),
            )
        })
}

async fn current(
    state: &AppState,
    project_id: &str,
    scope: Scope,
    min: Decimal,
) -> Result<Option<u32>, DbError> {
    Ok(approvals::tiers(&state.db, project_id)
        .await?
        .into_iter()
        .find(|(s, t)| *s == scope && t.min_base_amount == min)
        .map(|(_, t)| t.approvers))
}

/// Adds the tier, or changes the number of approvers of the tier at the same amount.
pub async fn set(
    state: &AppState,
    project_id: &str,
    scope: Scope,
    tier: Tier,
    actor: &Actor,
    origin: &Origin,
) -> Result<(), SettingsError> {
    let now = state.now();
    let mut tx = state.db.begin().await?;
    if !project_settings::lock(&state.db, &mut tx, project_id).await? {
        return Err(SettingsError::NotFound);
    }
    let min = tier.min_base_amount.normalize();
    let before = current(state, project_id, scope, min).await?;
    approvals::put_tier(&mut tx, project_id, scope, tier, now).await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id,
            actor,
            action: "approval_tier.set",
            subject: format!("approval_tier:{}:{min}", scope.as_str()),
            details: json!({"scope": scope.as_str(), "min_base_amount": min.to_string(),
                "before": before, "after": tier.approvers}),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

pub async fn remove(
    state: &AppState,
    project_id: &str,
    scope: Scope,
    min: Decimal,
    actor: &Actor,
    origin: &Origin,
) -> Result<(), SettingsError> {
    let now = state.now();
    let min = min.normalize();
    let mut tx = state.db.begin().await?;
    if !project_settings::lock(&state.db, &mut tx, project_id).await? {
        return Err(SettingsError::NotFound);
    }
    let before = current(state, project_id, scope, min).await?;
    if before.is_none()
        || !approvals::delete_tier(&mut tx, project_id, scope, &min.to_string()).await?
    {
        return Err(SettingsError::Refused(format!(
            "there is no {} tier at {min}",
            scope.as_str()
        )));
    }
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id,
            actor,
            action: "approval_tier.removed",
            subject: format!("approval_tier:{}:{min}", scope.as_str()),
            details: json!({"scope": scope.as_str(), "min_base_amount": min.to_string(),
                "before": before, "after": null}),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}
