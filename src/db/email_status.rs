//! When email last went out for a project, and when and why it last failed (the settings
//! page shows both).

use super::{Db, DbError};
use sqlx::Row;

#[derive(Debug, Clone, Default)]
pub struct EmailStatus {
    pub last_ok_at: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
}

pub async fn get(db: &Db, project_id: &str) -> Result<EmailStatus, DbError> {
    let row = sqlx::query(
        "SELECT last_ok_at, last_error_at, last_error FROM email_status WHERE project_id = $1",
    )
    .bind(project_id)
    .fetch_optional(db.reader())
    .await?;
    Ok(match row {
        Some(r) => EmailStatus {
            last_ok_at: r.try_get("last_ok_at")?,
            last_error_at: r.try_get("last_error_at")?,
            last_error: r.try_get("last_error")?,
        },
        None => EmailStatus::default(),
    })
}

/// Records a delivery (`error` None) or a failure.
pub async fn record(
    db: &Db,
    project_id: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), DbError> {
    let sql = if error.is_none() {
        "INSERT INTO email_status (project_id, last_ok_at) VALUES ($1, $2)
         ON CONFLICT (project_id) DO UPDATE SET last_ok_at = excluded.last_ok_at"
    } else {
        "INSERT INTO email_status (project_id, last_error_at, last_error) VALUES ($1, $2, $3)
         ON CONFLICT (project_id) DO UPDATE SET last_error_at = excluded.last_error_at, last_error = excluded.last_error"
    };
    let mut q = sqlx::query(sql).bind(project_id).bind(now);
    if let Some(e) = error {
        q = q.bind(e);
    }
    q.execute(db.writer()).await?;
    Ok(())
}
