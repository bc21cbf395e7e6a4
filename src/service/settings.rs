//! The owner's project settings: API keys (create, rotate, revoke), the callback URL, the
//! operator gate's validation-webhook URL, the Standard Webhooks secret and the base currency. Each change holds the project's row lock,
//! is audited with what it was before and after, and never records a secret.

use crate::crypto::{CryptoError, generate_webhook_secret};
use crate::db::audit::{self, Actor, Origin};
use crate::db::{DbError, Tx, api_keys, project_settings, projects};
use crate::domain::money::Currency;
use crate::service::projects::{
    ProjectError, check_callback_url, check_http_url, new_api_credentials,
};
use crate::state::AppState;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Bad input, shown next to the field it names; nothing was changed.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A rule refused the change (shown as is); nothing was changed.
    #[error("{0}")]
    Refused(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
}

impl From<CryptoError> for SettingsError {
    fn from(e: CryptoError) -> Self {
        SettingsError::Internal(e.to_string())
    }
}

/// A new key as shown once to the owner.
#[derive(Debug)]
pub struct NewKey {
    pub key_id: String,
    pub api_key: String,
    pub api_secret: String,
}

pub(super) async fn locked(
    state: &AppState,
    project_id: &str,
) -> Result<Tx<'static>, SettingsError> {
    let mut tx = state.db.begin().await?;
    if !project_settings::lock(&state.db, &mut tx, project_id).await? {
        return Err(SettingsError::NotFound);
    }
    Ok(tx)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn record(
    tx: &mut Tx<'_>,
    project_id: &str,
    actor: &Actor,
    action: &str,
    subject: String,
    details: serde_json::Value,
    origin: &Origin,
    now: i64,
) -> Result<(), DbError> {
    audit::append(
        tx,
        &audit::Entry {
            project_id,
            actor,
            action,
            subject,
            details,
            origin,
        },
        now,
    )
    .await
}

pub async fn create_api_key(
    state: &AppState,
    project_id: &str,
    can_withdraw: bool,
    actor: &Actor,
    origin: &Origin,
) -> Result<NewKey, SettingsError> {
    let cred = new_api_credentials(&state.master_key)?;
    let now = state.now();
    let mut tx = locked(state, project_id).await?;
    api_keys::insert(&mut tx, &cred.row(project_id, can_withdraw), now).await?;
    record(
        &mut tx,
        project_id,
        actor,
        "api_key.created",
        format!("api_key:{}", cred.key_id),
        json!({"before": null, "after": {"prefix": cred.key_prefix(), "can_withdraw": can_withdraw, "revoked": false}}),
        origin,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(NewKey {
        key_id: cred.key_id.clone(),
        api_key: cred.api_key,
        api_secret: cred.api_secret,
    })
}

/// Replaces a key with a new one (same rights) and revokes the old one, in one transaction:
/// there is no moment with neither, and the old key stops working at once.
pub async fn rotate_api_key(
    state: &AppState,
    project_id: &str,
    key_id: &str,
    actor: &Actor,
    origin: &Origin,
) -> Result<NewKey, SettingsError> {
    let cred = new_api_credentials(&state.master_key)?;
    let now = state.now();
    let mut tx = locked(state, project_id).await?;
    let old = api_keys::in_project(&mut tx, project_id, key_id)
        .await?
        .ok_or(SettingsError::NotFound)?;
    if old.revoked_at.is_some() || !api_keys::revoke(&mut tx, project_id, key_id, now).await? {
        return Err(SettingsError::Refused(format!(
            "Key {}… is already revoked.",
            old.key_prefix
        )));
    }
    api_keys::insert(&mut tx, &cred.row(project_id, old.can_withdraw), now).await?;
    record(
        &mut tx,
        project_id,
        actor,
        "api_key.rotated",
        format!("api_key:{key_id}"),
        json!({
            "before": {"key_id": key_id, "prefix": old.key_prefix, "can_withdraw": old.can_withdraw},
            "after": {"key_id": cred.key_id, "prefix": cred.key_prefix(), "can_withdraw": old.can_withdraw},
        }),
        origin,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(NewKey {
        key_id: cred.key_id.clone(),
        api_key: cred.api_key,
        api_secret: cred.api_secret,
    })
}

/// Revokes a key. The last active key cannot be revoked (callbacks are signed with an active
/// key's secret): rotate it instead, which also stops it at once.
pub async fn revoke_api_key(
    state: &AppState,
    project_id: &str,
    key_id: &str,
    actor: &Actor,
    origin: &Origin,
) -> Result<String, SettingsError> {
    let now = state.now();
    let mut tx = locked(state, project_id).await?;
    let key = api_keys::in_project(&mut tx, project_id, key_id)
        .await?
        .ok_or(SettingsError::NotFound)?;
    if key.revoked_at.is_some() {
        return Err(SettingsError::Refused(format!(
            "Key {}… is already revoked.",
            key.key_prefix
        )));
    }
    if api_keys::count_active(&mut tx, project_id).await? <= 1 {
        return Err(SettingsError::Refused(
            "This is the project's only active API key, and callbacks are signed with it: rotate it instead (the old key stops working at once).".into(),
        ));
    }
    api_keys::revoke(&mut tx, project_id, key_id, now).await?;
    record(
        &mut tx,
        project_id,
        actor,
        "api_key.revoked",
        format!("api_key:{key_id}"),
        json!({
            "before": {"prefix": key.key_prefix, "revoked": false},
            "after": {"prefix": key.key_prefix, "revoked": true},
        }),
        origin,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(key.key_prefix)
}

/// Sets (or, with an empty URL, clears) where callbacks go.
pub async fn set_callback_url(
    state: &AppState,
    project_id: &str,
    url: &str,
    actor: &Actor,
    origin: &Origin,
) -> Result<(), SettingsError> {
    let url = check_callback_target(state, url).await?;
    let now = state.now();
    let before = projects::get(&state.db, project_id)
        .await?
        .ok_or(SettingsError::NotFound)?
        .callback_url;
    let mut tx = locked(state, project_id).await?;
    project_settings::set_callback_url(&mut tx, project_id, url).await?;
    record(
        &mut tx,
        project_id,
        actor,
        "project.callback_url_changed",
        format!("project:{project_id}"),
        json!({"before": before, "after": url}),
        origin,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// Checks a callback URL as typed (trimmed; empty means "no callbacks"), including where it
/// leads.
pub async fn check_callback_target<'u>(
    state: &AppState,
    url: &'u str,
) -> Result<Option<&'u str>, SettingsError> {
    owner_url(state, "callback_url", url, |u| {
        check_callback_url(u).map_err(|e| match e {
            ProjectError::Invalid(m) => m,
            other => other.to_string(),
        })
    })
    .await
}

/// Checks a validation-webhook URL as typed (trimmed; empty means "no gate"), including where
/// it leads.
pub async fn check_validation_target<'u>(
    state: &AppState,
    url: &'u str,
) -> Result<Option<&'u str>, SettingsError> {
    owner_url(state, "validation_url", url, |u| {
        check_http_url(u).map_err(|m| {
            format!("{m}, such as https://backend.example/countersign/withdraw-request")
        })
    })
    .await
}

/// An owner-set URL as typed, for `field`: trimmed (empty means none), at most 2000
/// characters, of the form `format` accepts, and leading to the public internet unless the
/// operator allowed its network (an address, or a name that resolves only to refused
/// addresses, is refused: see `notify::outbound`, which checks again at every delivery).
async fn owner_url<'u>(
    state: &AppState,
    field: &'static str,
    url: &'u str,
    format: impl FnOnce(&str) -> Result<(), String>,
) -> Result<Option<&'u str>, SettingsError> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    let invalid = |message: String| SettingsError::Invalid { field, message };
    if url.len() > 2000 {
        return Err(invalid("must be at most 2000 characters".into()));
    }
    format(url).map_err(invalid)?;
    state
        .outbound
        .policy()
        .check_url_resolving(url)
        .await
        .map_err(|r| invalid(r.reason()))?;
    Ok(Some(url))
}

/// Sets (or, with an empty URL, clears) the operator gate's validation webhook: every new
/// withdrawal is first sent there and created only if the operator approves.
pub async fn set_validation_url(
    state: &AppState,
    project_id: &str,
    url: &str,
    actor: &Actor,
    origin: &Origin,
) -> Result<(), SettingsError> {
    let url = check_validation_target(state, url).await?;
    let now = state.now();
    let before = projects::get(&state.db, project_id)
        .await?
        .ok_or(SettingsError::NotFound)?
        .validation_url;
    let mut tx = locked(state, project_id).await?;
    project_settings::set_validation_url(&mut tx, project_id, url).await?;
    record(
        &mut tx,
        project_id,
        actor,
        "project.validation_url_changed",
        format!("project:{project_id}"),
        json!({"before": before, "after": url}),
        origin,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// A new `whsec_` secret for the Standard Webhooks signature, returned to be shown once.
/// Callbacks delivered from now on (retries included) are signed with it.
pub async fn rotate_webhook_secret(
    state: &AppState,
    project_id: &str,
    actor: &Actor,
    origin: &Origin,
) -> Result<String, SettingsError> {
    let secret = generate_webhook_secret()?;
    let enc = state.master_key.encrypt(&secret)?;
    let now = state.now();
    let mut tx = locked(state, project_id).await?;
    project_settings::set_webhook_secret(&mut tx, project_id, &enc).await?;
    record(
        &mut tx,
        project_id,
        actor,
        "project.webhook_secret_rotated",
        format!("project:{project_id}"),
        // Never the secret itself: only that it changed.
        json!({"before": "(previous secret)", "after": "(new secret)"}),
        origin,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(secret)
}

/// Changes the currency the default limits are expressed in. The limit figures stay as they
/// are and are read in the new currency from now on.
pub async fn set_base_currency(
    state: &AppState,
    project_id: &str,
    code: &str,
    actor: &Actor,
    origin: &Origin,
) -> Result<(), SettingsError> {
    let invalid = |m: String| SettingsError::Invalid {
        field: "base_currency",
        message: m,
    };
    let currency = Currency::parse(code.trim())
        .ok_or_else(|| invalid(format!("{code:?} is not a currency")))?;
    let before = projects::get(&state.db, project_id)
        .await?
        .ok_or(SettingsError::NotFound)?
        .base_currency;
    if before == currency.code() {
        return Err(invalid(format!("is already {currency}")));
    }
    // Every withdrawal is valued in the base currency: without a rate for it (the rate
    // source does not price it, or its rates are stale), every one would be refused.
    let priced = Currency::parse(&before).is_some_and(|b| state.rates.rate(b, currency).is_some());
    if !priced {
        return Err(invalid(format!(
            "the exchange rates have no {currency} price right now, so withdrawals could not be valued in it"
        )));
    }
    let now = state.now();
    let mut tx = locked(state, project_id).await?;
    project_settings::set_base_currency(&mut tx, project_id, currency.code()).await?;
    record(
        &mut tx,
        project_id,
        actor,
        "project.base_currency_changed",
        format!("project:{project_id}"),
        json!({"before": before, "after": currency.code()}),
        origin,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}
