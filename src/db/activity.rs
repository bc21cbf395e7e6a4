//! What the dashboard says about recent activity: the latest audit records of a project, and
//! the names to show for the people and keys that acted.

use super::{Db, DbError, Tx};
use sqlx::Row;
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

impl Names {
    pub async fn load(db: &Db, project_id: &str) -> Result<Names, DbError> {
        let mut conn = db.reader().acquire().await?;
        Names::load_with(&mut conn, project_id).await
    }

    /// [`Names::load`] inside a write transaction (no second pool connection while it holds
    /// row locks).
    pub async fn load_in(tx: &mut Tx, project_id: &str) -> Result<Names, DbError> {
        Names::load_with(tx, project_id).await
    }

    async fn load_with(conn: &mut sqlx::AnyConnection, project_id: &str) -> Result<Names, DbError> {
        let users = sqlx::query("SELECT id, email FROM users WHERE project_id = $1")
            .bind(project_id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("email")?)))
            .collect::<Result<_, DbError>>()?;
        let keys = sqlx::query("SELECT id, key_prefix FROM api_keys WHERE project_id = $1")
            .bind(project_id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("key_prefix")?)))
            .collect::<Result<_, DbError>>()?;
        Ok(Names { users, keys })
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
