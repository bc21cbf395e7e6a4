//! Projects (merchant accounts) and their API keys.

use super::{Db, DbError, Tx, corrupt};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub primary_email: String,
    pub base_currency: String,
    pub callback_url: Option<String>,
    pub webhook_secret_enc: String,
    pub withdrawal_confirmation: bool,
    /// The operator gate's validation webhook (WITHDRAW_REQUEST); `None`: no gate.
    pub validation_url: Option<String>,
}

const PROJECT_COLUMNS: &str = "p.id, p.name, p.primary_email, p.base_currency, p.callback_url, p.webhook_secret_enc, p.withdrawal_confirmation, p.validation_url";

fn project_from_row(row: &sqlx::any::AnyRow) -> Result<Project, DbError> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        primary_email: row.try_get("primary_email")?,
        base_currency: row.try_get("base_currency")?,
        callback_url: row.try_get("callback_url")?,
        webhook_secret_enc: row.try_get("webhook_secret_enc")?,
        withdrawal_confirmation: row.try_get::<i64, _>("withdrawal_confirmation")? != 0,
        validation_url: row.try_get("validation_url")?,
    })
}

pub struct NewProject<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub primary_email: &'a str,
    pub base_currency: &'a str,
    pub callback_url: Option<&'a str>,
    pub webhook_secret_enc: &'a str,
}

pub async fn insert(tx: &mut Tx<'_>, p: &NewProject<'_>, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO projects (id, name, primary_email, base_currency, callback_url, webhook_secret_enc, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(p.id)
    .bind(p.name)
    .bind(p.primary_email)
    .bind(p.base_currency)
    .bind(p.callback_url)
    .bind(p.webhook_secret_enc)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO audit_heads (project_id, seq, hash) VALUES ($1, 0, $2)")
        .bind(p.id)
        .bind(super::audit::GENESIS)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Project>, DbError> {
    let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects p WHERE p.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(project_from_row).transpose()
}

pub async fn set_callback_url(db: &Db, id: &str, url: Option<&str>) -> Result<bool, DbError> {
    let r = sqlx::query("UPDATE projects SET callback_url = $1 WHERE id = $2")
        .bind(url)
        .bind(id)
        .execute(db.writer())
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_withdrawal_confirmation(db: &Db, id: &str, on: bool) -> Result<bool, DbError> {
    let r = sqlx::query("UPDATE projects SET withdrawal_confirmation = $1 WHERE id = $2")
        .bind(i64::from(on))
        .bind(id)
        .execute(db.writer())
        .await?;
    Ok(r.rows_affected() == 1)
}

pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub key_hash: &'a str,
    pub key_prefix: &'a str,
    pub secret_enc: &'a str,
    pub can_withdraw: bool,
}

pub async fn insert_api_key(tx: &mut Tx<'_>, k: &NewApiKey<'_>, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO api_keys (id, project_id, key_hash, key_prefix, secret_enc, can_withdraw, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(k.id)
    .bind(k.project_id)
    .bind(k.key_hash)
    .bind(k.key_prefix)
    .bind(k.secret_enc)
    .bind(i64::from(k.can_withdraw))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An active API key with its project, found by the hash of the public key.
#[derive(Debug, Clone)]
pub struct ApiKeyWithProject {
    pub key_id: String,
    pub secret_enc: String,
    pub can_withdraw: bool,
    pub project: Project,
}

pub async fn find_api_key(db: &Db, key_hash: &str) -> Result<Option<ApiKeyWithProject>, DbError> {
    db.api_keys.get(db, key_hash.to_string()).await
}

/// The active API keys (with their projects) whose hashes are `hashes`, in one query: the
/// lookup [`find_api_key`] coalesces (see [`crate::db::coalesce`]).
pub fn api_keys_by_hashes<'c>(
    conn: &'c mut sqlx::AnyConnection,
    hashes: &'c [String],
) -> futures_util::future::BoxFuture<'c, Result<Vec<(String, ApiKeyWithProject)>, DbError>> {
    Box::pin(async move {
        let postgres = conn.backend_name() == "PostgreSQL";
        // Each key by its unique index, whatever the statistics say.
        let keys = if postgres {
            "json_array_elements_text($1::json) AS f(h) CROSS JOIN LATERAL
                (SELECT * FROM api_keys WHERE key_hash = f.h) AS k"
        } else {
            "json_each($1) AS f JOIN api_keys k ON k.key_hash = f.value"
        };
        let sql = format!(
            "SELECT k.key_hash, k.id AS key_id, k.secret_enc, k.can_withdraw, {PROJECT_COLUMNS}
             FROM {keys} JOIN projects p ON p.id = k.project_id
             WHERE k.revoked_at IS NULL"
        );
        let hashes =
            serde_json::to_string(hashes).map_err(|e| corrupt("key_hash", e.to_string()))?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hashes)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("key_hash")?,
                    ApiKeyWithProject {
                        key_id: row.try_get("key_id")?,
                        secret_enc: row.try_get("secret_enc")?,
                        can_withdraw: row.try_get::<i64, _>("can_withdraw")? != 0,
                        project: project_from_row(row)?,
                    },
                ))
            })
            .collect()
    })
}

/// The project's first active API key secret (callbacks are signed with it, as the seeds do).
pub async fn signing_secret_enc(db: &Db, project_id: &str) -> Result<Option<String>, DbError> {
    let row = sqlx::query(
        "SELECT secret_enc FROM api_keys WHERE project_id = $1 AND revoked_at IS NULL
         ORDER BY created_at, id LIMIT 1",
    )
    .bind(project_id)
    .fetch_optional(db.reader())
    .await?;
    Ok(row.map(|r| r.try_get("secret_enc")).transpose()?)
}
