//! Creating projects and their credentials, funding balances, setting limits: what the CLI
//! (and later the settings pages) do.

use crate::crypto::{self, CryptoError, MasterKey, sha256_hex};
use crate::db::audit::{self, Actor, Origin};
use crate::db::balances::{self, LedgerKind};
use crate::db::projects::{self, NewApiKey, NewProject};
use crate::db::{Db, DbError, limits};
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

pub fn check_callback_url(url: &str) -> Result<(), ProjectError> {
    let u = url::Url::parse(url)
        .map_err(|e| ProjectError::Invalid(format!("callback URL is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(ProjectError::Invalid(
            "callback URL must be an http(s) URL with a host".into(),
        ));
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
    let api_key = format!("ck_{}", crypto::random_token::<24>()?);
    let api_secret = format!("cs_{}", crypto::random_token::<32>()?);
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
    let key_id = format!("key_{}", crypto::random_token::<12>()?);
    projects::insert_api_key(
        &mut tx,
        &NewApiKey {
            id: &key_id,
            project_id: &project_id,
            key_hash: &sha256_hex(api_key.as_bytes()),
            key_prefix: &api_key[..10],
            secret_enc: &key.encrypt(&api_secret)?,
            can_withdraw: true,
        },
        now,
    )
    .await?;
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
        api_key,
        api_secret,
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

/// Changes the given windows of one limit row, keeping the others.
pub async fn set_limits(
    db: &Db,
    project_id: &str,
    scope: Scope,
    currency: Option<Currency>,
    changes: LimitSet,
    actor: &Actor,
    now: i64,
) -> Result<LimitSet, ProjectError> {
    if projects::get(db, project_id).await?.is_none() {
        return Err(ProjectError::Invalid(format!("no project {project_id}")));
    }
    for v in [changes.per_operation, changes.per_hour, changes.per_day]
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
    let mut tx = db.begin().await?;
    limits::upsert(&mut tx, project_id, scope, code, &merged, now).await?;
    let show = |d: Option<Decimal>| d.map(|d| d.normalize().to_string());
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id,
            actor,
            action: "limits.changed",
            subject: format!("limits:{}:{code}", scope.as_str()),
            details: json!({
                "per_operation": show(merged.per_operation),
                "per_hour": show(merged.per_hour),
                "per_day": show(merged.per_day),
            }),
            origin: &Origin::default(),
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(merged)
}
