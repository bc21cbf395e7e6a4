//! Writes behind the settings page: callback URL, validation-webhook URL, webhook secret, base
//! currency; and the per-project lock that serializes changes to a project's team and settings.

use super::{Db, DbError, Tx};

/// Takes the project's row lock for the rest of the transaction (on SQLite, `BEGIN
/// IMMEDIATE` already made the transaction the only writer). Guards that count ("the last
/// owner", "the last active API key") read after this, so two concurrent changes cannot both
/// pass them. False if there is no such project.
pub async fn lock(db: &Db, tx: &mut Tx<'_>, project_id: &str) -> Result<bool, DbError> {
    let sql = format!("SELECT id FROM projects WHERE id = $1{}", db.for_update());
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

pub async fn set_callback_url(
    tx: &mut Tx<'_>,
    project_id: &str,
    url: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query("UPDATE projects SET callback_url = $1 WHERE id = $2")
        .bind(url)
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The operator gate's validation-webhook URL (`None` turns the gate off).
pub async fn set_validation_url(
    tx: &mut Tx<'_>,
    project_id: &str,
    url: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query("UPDATE projects SET validation_url = $1 WHERE id = $2")
        .bind(url)
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn set_webhook_secret(
    tx: &mut Tx<'_>,
    project_id: &str,
    enc: &str,
) -> Result<(), DbError> {
    sqlx::query("UPDATE projects SET webhook_secret_enc = $1 WHERE id = $2")
        .bind(enc)
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn set_base_currency(
    tx: &mut Tx<'_>,
    project_id: &str,
    code: &str,
) -> Result<(), DbError> {
    sqlx::query("UPDATE projects SET base_currency = $1 WHERE id = $2")
        .bind(code)
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
