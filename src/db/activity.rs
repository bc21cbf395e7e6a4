//! What the dashboard says about recent activity: the latest audit records of a project, and
//! the names to show for the people and keys that acted.

use super::{Db, DbError, Tx};
use sqlx::{Any, Executor, Row};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Record {
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub subject: String,
    pub details: serde_json::Value,
    pub created_at: i64,
}

/// The project's latest `limit` audit records, newest first.
pub async fn recent(db: &Db, project_id: &str, limit: i64) -> Result<Vec<Record>, DbError> {
    let rows = sqlx::query(
        "SELECT actor_kind, actor_id, action, subject, details, created_at FROM audit_log
         WHERE project_id = $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(project_id)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            let details: String = r.try_get("details")?;
            Ok(Record {
                actor_kind: r.try_get("actor_kind")?,
                actor_id: r.try_get("actor_id")?,
                action: r.try_get("action")?,
                subject: r.try_get("subject")?,
                // Details are JSON written by `audit::append`; anything else is shown as text.
                details: serde_json::from_str(&details)
                    .unwrap_or(serde_json::Value::String(details)),
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Who someone is, for pages: users by email (removed ones too: history keeps their name)
/// and API keys by their visible prefix.
#[derive(Debug, Clone, Default)]
pub struct Names {
    users: HashMap<String, String>,
    keys: HashMap<String, String>,
}

async fn user_names<'c, E>(ex: E, project_id: &str) -> Result<HashMap<String, String>, DbError>
where
    E: Executor<'c, Database = Any>,
{
    sqlx::query("SELECT id, email FROM users WHERE project_id = $1")
        .bind(project_id)
        .fetch_all(ex)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("email")?)))
        .collect()
}

async fn key_names<'c, E>(ex: E, project_id: &str) -> Result<HashMap<String, String>, DbError>
where
    E: Executor<'c, Database = Any>,
{
    sqlx::query("SELECT id, key_prefix FROM api_keys WHERE project_id = $1")
        .bind(project_id)
        .fetch_all(ex)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("key_prefix")?)))
        .collect()
}

impl Names {
    pub async fn load(db: &Db, project_id: &str) -> Result<Names, DbError> {
        Ok(Names {
            users: user_names(db.reader(), project_id).await?,
            keys: key_names(db.reader(), project_id).await?,
        })
    }

    /// The same, read inside a transaction: code holding row locks must not wait for a
    /// second pooled connection (others queueing on those locks may hold them all).
    pub async fn load_in(tx: &mut Tx<'_>, project_id: &str) -> Result<Names, DbError> {
        Ok(Names {
            users: user_names(&mut **tx, project_id).await?,
            keys: key_names(&mut **tx, project_id).await?,
        })
    }

    /// "alice@acme.test", "API key ab12cd…", "the system", "the command line".
    pub fn describe(&self, kind: &str, id: &str) -> String {
        match kind {
            "user" => self
                .users
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("user {id}")),
            "api_key" => match self.keys.get(id) {
                Some(prefix) => format!("API key {prefix}…"),
                None => "an API key".to_string(),
            },
            "system" => "the system".to_string(),
            "cli" => "the command line".to_string(),
            other => other.to_string(),
        }
    }
}
