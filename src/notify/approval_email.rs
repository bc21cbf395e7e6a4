//! The approval email: what is waiting, why, who started it, where the approvals stand, and
//! one link for this approver. The link's token (256 bits) is made when the email is sent and
//! stored only as its SHA-256, bound to this withdrawal and this user; it is single use and
//! void once the withdrawal is decided or expires.

use crate::clock::{DAY_MS, rfc3339};
use crate::crypto::{random_token, sha256_hex};
use crate::db::DbError;
use crate::db::activity::Names;
use crate::db::approvals as adb;
use crate::db::users;
use crate::db::withdrawals::{self as wdb, Withdrawal};
use crate::domain::withdrawal::Status;
use crate::notify::email::{self, Email};
use crate::service::{alerts, approvals, pricing};
use crate::state::AppState;
use crate::web::withdrawals::amount_text;

/// The details every approval surface shows (email, Slack, the detail page).
pub fn details_context(state: &AppState, w: &Withdrawal, names: &Names) -> tera::Context {
    let mut ctx = tera::Context::new();
    let v = pricing::valuation(state, w);
    ctx.insert("id", &w.id);
    ctx.insert("foreign_id", &w.foreign_id);
    ctx.insert("amount", &amount_text(&w.currency, w.amount));
    ctx.insert("currency", &w.currency);
    ctx.insert("network", &w.network);
    ctx.insert("address", &w.address);
    ctx.insert("tag", &w.tag);
    ctx.insert("end_user_reference", &w.end_user_reference);
    ctx.insert(
        "value_now",
        &match &v.now {
            Ok(now) => format!("{} {}", now.value.round_dp(2), v.base_currency),
            Err(e) => format!("unknown now ({e})"),
        },
    );
    ctx.insert(
        "value_at_creation",
        &format!("{} {}", v.at_creation.value.round_dp(2), v.base_currency),
    );
    ctx.insert(
        "initiator",
        &names.describe(&w.initiator_kind, &w.initiator_id),
    );
    let reasons: Vec<String> = w.requirement.reasons.iter().map(|r| r.describe()).collect();
    ctx.insert("reasons", &reasons);
    ctx.insert("created", &rfc3339(w.created_at));
    ctx.insert("expires", &w.expires_at.map(rfc3339));
    ctx
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("link token: {0}")]
    Random(#[from] crate::crypto::CryptoError),
    #[error(transparent)]
    Email(#[from] email::EmailError),
}

/// Builds the approval email of `job_user_id` for withdrawal `id`, with a fresh link; `None`
/// when there is nothing to send any more (decided meanwhile, the user lost the right or
/// turned alerts off).
pub async fn build(
    state: &AppState,
    withdrawal_id: i64,
    user_id: &str,
) -> Result<Option<Email>, BuildError> {
    let Some(w) = wdb::by_id(&state.db, withdrawal_id).await? else {
        return Ok(None);
    };
    let Some(user) = users::by_id(&state.db, user_id).await? else {
        return Ok(None);
    };
    if w.status != Status::Pending
        || !user.email_alerts
        || !alerts::may_decide(&w, &user, state.now())
    {
        return Ok(None);
    }
    let names = Names::load(&state.db, &w.project_id).await?;
    let (_, standing) = approvals::standing(state, &w).await?;
    let now = state.now();
    let token = random_token::<32>()?;
    let expires_at = w.expires_at.unwrap_or(now + DAY_MS);
    adb::insert_link(
        &state.db,
        &sha256_hex(token.as_bytes()),
        w.id,
        &user.id,
        expires_at,
        now,
    )
    .await?;
    let base = state.settings.base_url.trim_end_matches('/');
    let mut ctx = details_context(state, &w, &names);
    ctx.insert("standing", &standing.describe());
    ctx.insert("link", &format!("{base}/approve/{token}"));
    ctx.insert("link_expires", &rfc3339(expires_at));
    let subject = format!(
        "Approval needed: withdrawal {} of {}",
        w.id,
        amount_text(&w.currency, w.amount)
    );
    Ok(Some(email::render(
        "approval_request",
        &user.email,
        &subject,
        &ctx,
    )?))
}
