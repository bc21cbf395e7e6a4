//! Creating projects and their credentials, funding balances, setting limits: what the CLI
//! (and later the settings pages) do.

use crate::crypto::{self, CryptoError, MasterKey, sha256_hex};
use crate::db::audit::{self, Actor, Origin};
use crate::db::balances::{self, LedgerKind};
use crate::db::projects::{self, NewApiKey, NewProject};
use crate::db::{Db, DbError, limits, project_settings};
use crate::domain::money::Currency;
use crate::domain::policy::{LimitSet, Scope};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Printed once by `project create`: the only time the secrets are shown.
#[derive(Debug, Serialize)]
pub struct ProjectCredentials {
    pub project_id: String,
    pub api_key: String,
    pub api_secret: String,
    pub webhook_secret: String,
}

pub struct NewProjectInput<'a> {
    pub name: &'a str,
    pub primary_email: &'a str,
    pub base_currency: &'a str,
    pub callback_url: Option<&'a str>,
}

/// A new API key and its secret: `ck_` + 192 random bits (stored only as its SHA-256 and a
/// 10-character prefix) and `cs_` + 256 random bits (stored encrypted: HMAC needs it).
pub struct ApiCredentials {
    pub key_id: String,
    pub api_key: String,
    pub api_secret: String,
    key_hash: String,
    secret_enc: String,
}

impl ApiCredentials {
    pub fn key_prefix(&self) -> &str {
        self.api_key.get(..10).unwrap_or(&self.api_key)
    }

    /// The row to store: never the plaintext key or secret.
    pub fn row<'a>(&'a self, project_id: &'a str, can_withdraw: bool) -> NewApiKey<'a> {
        NewApiKey {
            id: &self.key_id,
            project_id,
            key_hash: &self.key_hash,
            key_prefix: self.key_prefix(),
            secret_enc: &self.secret_enc,
            can_withdraw,
        }
    }
}

pub fn new_api_credentials(key: &MasterKey) -> Result<ApiCredentials, CryptoError> {
    let api_key = format!("ck_{}", crypto::random_token::<24>()?);
    let api_secret = format!("cs_{}", crypto::random_token::<32>()?);
    Ok(ApiCredentials {
        key_id: format!("key_{}", crypto::random_token::<12>()?),
        key_hash: sha256_hex(api_key.as_bytes()),
        secret_enc: key.encrypt(&api_secret)?,
        api_key,
        api_secret,
    })
}

pub fn check_callback_url(url: &str) -> Result<(), ProjectError> {
    check_http_url(url).map_err(|m| ProjectError::Invalid(format!("callback URL {m}")))
}

/// An http(s) URL with a host; the refusal is a predicate ("must be ...") to put after the
/// field's name.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let u = url::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err("must be an http(s) URL with a host".into());
    }
    Ok(())
}

pub async fn create(
    db: &Db,
    key: &MasterKey,
    input: &NewProjectInput<'_>,
    now: i64,
) -> Result<ProjectCredentials, ProjectError> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ProjectError::Invalid(
            "name must be 1 to 100 characters".into(),
        ));
    }
    let email = input.primary_email.trim();
    if !email.contains('@') || email.len() > 254 || email.contains(char::is_whitespace) {
        return Err(ProjectError::Invalid(format!(
            "{email:?} is not an email address"
        )));
    }
    let base = Currency::parse(input.base_currency).ok_or_else(|| {
        ProjectError::Invalid(format!("unknown base currency {}", input.base_currency))
    })?;
    if let Some(u) = input.callback_url {
        check_callback_url(u)?;
    }
    let project_id = format!("prj_{}", crypto::random_token::<12>()?);
    let cred = new_api_credentials(key)?;
    let webhook_secret = crypto::generate_webhook_secret()?;

    let mut tx = db.begin().await?;
    projects::insert(
        &mut tx,
        &NewProject {
            id: &project_id,
            name,
            primary_email: email,
            base_currency: base.code(),
            callback_url: input.callback_url,
            webhook_secret_enc: &key.encrypt(&webhook_secret)?,
        },
        now,
    )
    .await?;
    projects::insert_api_key(&mut tx, &cred.row(&project_id, true), now).await?;
    let key_id = cred.key_id.clone();
    for scope in [Scope::Api, Scope::Dashboard] {
        limits::upsert(
            &mut tx,
            &project_id,
            scope,
            limits::DEFAULT_CURRENCY,
            &LimitSet::project_default(),
            now,
        )
        .await?;
    }
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &project_id,
            actor: &Actor::Cli,
            action: "project.created",
            subject: format!("project:{project_id}"),
            details: json!({"name": name, "primary_email": email, "base_currency": base.code(), "api_key_id": key_id}),
            origin: &Origin::default(),
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(ProjectCredentials {
        project_id,
        api_key: cred.api_key,
        api_secret: cred.api_secret,
        webhook_secret,
    })
}

/// Adds funds to a balance (sandbox funding and manual top-ups), with its ledger entry.
pub async fn credit(
    db: &Db,
    project_id: &str,
    currency: Currency,
    amount: Decimal,
    actor: &Actor,
    now: i64,
) -> Result<Decimal, ProjectError> {
    if amount <= Decimal::ZERO {
        return Err(ProjectError::Invalid(
            "amount must be greater than zero".into(),
        ));
    }
    if amount.normalize().scale() > currency.scale() {
        return Err(ProjectError::Invalid(format!(
            "{currency} amounts have at most {} decimal places",
            currency.scale()
        )));
    }
    if projects::get(db, project_id).await?.is_none() {
        return Err(ProjectError::Invalid(format!("no project {project_id}")));
    }
    let mut tx = db.begin().await?;
    balances::ensure(&mut tx, project_id, currency.code(), now).await?;
    let current = balances::lock(db, &mut tx, project_id, currency.code())
        .await?
        .ok_or_else(|| ProjectError::Invalid("balance row missing".into()))?;
    let after = balances::apply(
        &mut tx,
        project_id,
        currency.code(),
        current,
        LedgerKind::Credit,
        amount,
        None,
        now,
    )
    .await
    .map_err(|e| match e {
        balances::BalanceError::Db(d) => ProjectError::Db(d),
        balances::BalanceError::Insufficient => ProjectError::Invalid("insufficient".into()),
    })?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id,
            actor,
            action: "balance.credited",
            subject: format!("balance:{}", currency.code()),
            details: json!({"amount": amount.to_string(), "available_after": after.available.to_string()}),
            origin: &Origin::default(),
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(after.available)
}

/// Changes the given windows of one limit row, keeping the others (the CLI).
pub async fn set_limits(
    db: &Db,
    project_id: &str,
    scope: Scope,
    currency: Option<Currency>,
    changes: LimitSet,
    actor: &Actor,
    now: i64,
) -> Result<LimitSet, ProjectError> {
    let code = currency.map_or(limits::DEFAULT_CURRENCY, Currency::code);
    let existing = limits::list(db, project_id)
        .await?
        .into_iter()
        .find(|(s, c, _)| *s == scope && c == code)
        .map(|(_, _, l)| l)
        .unwrap_or_default();
    let merged = LimitSet {
        per_operation: changes.per_operation.or(existing.per_operation),
        per_hour: changes.per_hour.or(existing.per_hour),
        per_day: changes.per_day.or(existing.per_day),
    };
    replace_limits(
        db,
        project_id,
        scope,
        currency,
        merged,
        actor,
        &Origin::default(),
        now,
    )
    .await
}

fn limits_json(l: Option<&LimitSet>) -> serde_json::Value {
    let show = |d: Option<Decimal>| d.map(|d| d.normalize().to_string());
    match l {
        Some(l) => json!({
            "per_operation": show(l.per_operation),
            "per_hour": show(l.per_hour),
            "per_day": show(l.per_day),
        }),
        None => serde_json::Value::Null,
    }
}

/// Sets all three windows of one limit row (`None` = no limit in that window): the settings
/// page. Audited with the row before and after.
#[allow(clippy::too_many_arguments)]
pub async fn replace_limits(
    db: &Db,
    project_id: &str,
    scope: Scope,
    currency: Option<Currency>,
    set: LimitSet,
    actor: &Actor,
    origin: &Origin,
    now: i64,
) -> Result<LimitSet, ProjectError> {
    for v in [set.per_operation, set.per_hour, set.per_day]
        .into_iter()
        .flatten()
    {
        if v <= Decimal::ZERO {
            return Err(ProjectError::Invalid(
                "limits must be greater than zero".into(),
            ));
        }
    }
    let code = currency.map_or(limits::DEFAULT_CURRENCY, Currency::code);
    let mut tx = db.begin().await?;
    if !project_settings::lock(db, &mut tx, project_id).await? {
        return Err(ProjectError::Invalid(format!("no project {project_id}")));
    }
    let before = limits::get_in(&mut tx, project_id, scope, code).await?;
    limits::upsert(&mut tx, project_id, scope, code, &set, now).await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id,
            actor,
            action: "limits.changed",
            subject: format!("limits:{}:{code}", scope.as_str()),
            details: json!({"before": limits_json(before.as_ref()), "after": limits_json(Some(&set))}),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(set)
}

/// Removes a currency's override: its withdrawals fall back to the scope's base-currency
/// limits. The base-currency row itself cannot be removed (clear its windows instead).
pub async fn remove_limit_override(
    db: &Db,
    project_id: &str,
    scope: Scope,
    currency: Currency,
    actor: &Actor,
    origin: &Origin,
    now: i64,
) -> Result<(), ProjectError> {
    let code = currency.code();
    let mut tx = db.begin().await?;
    if !project_settings::lock(db, &mut tx, project_id).await? {
        return Err(ProjectError::Invalid(format!("no project {project_id}")));
    }
    let before = limits::get_in(&mut tx, project_id, scope, code).await?;
    if before.is_none() || !limits::delete(&mut tx, project_id, scope, code).await? {
        return Err(ProjectError::Invalid(format!(
            "there is no {code} override in the {} limits",
            scope.as_str()
        )));
    }
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id,
            actor,
            action: "limits.override_removed",
            subject: format!("limits:{}:{code}", scope.as_str()),
            details: json!({"before": limits_json(before.as_ref()), "after": null}),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}
