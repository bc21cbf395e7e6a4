//! A project's API keys as the settings page manages them. The key itself is stored only as
//! its SHA-256 (with a short visible prefix); the secret encrypted under the master key.

use super::{Db, DbError, Tx};
use sqlx::Row;

pub use super::projects::{NewApiKey, insert_api_key as insert};

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub key_prefix: String,
    pub can_withdraw: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str = "id, key_prefix, can_withdraw, created_at, revoked_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<ApiKey, DbError> {
    Ok(ApiKey {
        id: r.try_get("id")?,
        key_prefix: r.try_get("key_prefix")?,
        can_withdraw: r.try_get::<i64, _>("can_withdraw")? != 0,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// Every key of the project, active ones first, newest first.
pub async fn list(db: &Db, project_id: &str) -> Result<Vec<ApiKey>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE project_id = $1
         ORDER BY CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END, created_at DESC, id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_all(db.reader())
        .await?;
    rows.iter().map(from_row).collect()
}

/// A key of `project_id` by id (read in the caller's transaction): another project's key is
/// not found.
pub async fn in_project(
    tx: &mut Tx<'_>,
    project_id: &str,
    id: &str,
) -> Result<Option<ApiKey>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND project_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(project_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn count_active(tx: &mut Tx<'_>, project_id: &str) -> Result<i64, DbError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM api_keys WHERE project_id = $1 AND revoked_at IS NULL",
    )
    .bind(project_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("n")?)
}

/// The id of the key whose secret signs callbacks (the oldest active one; see
/// `projects::signing_secret_enc`).
pub async fn signing_key_id(db: &Db, project_id: &str) -> Result<Option<String>, DbError> {
    let row = sqlx::query(
        "SELECT id FROM api_keys WHERE project_id = $1 AND revoked_at IS NULL
         ORDER BY created_at, id LIMIT 1",
    )
    .bind(project_id)
    .fetch_optional(db.reader())
    .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?)
}

/// Revokes a key: a conditional write, false if it was already revoked.
pub async fn revoke(
    tx: &mut Tx<'_>,
    project_id: &str,
    id: &str,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND project_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .bind(project_id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}
