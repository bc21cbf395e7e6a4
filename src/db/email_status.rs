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

/// How stale "last delivered" may be: a delivery within this long after the one recorded
/// (and with no failure recorded since) is not written again.
pub const OK_EVERY_MS: i64 = 5_000;

/// Records a delivery (`error` None) or a failure. Every failure is written. A delivery is
/// written only when the row does not already show one in the last [`OK_EVERY_MS`] with no
/// failure after it: the row is one per project, so writing it for every email made every
/// sender wait its turn for the row (on SQLite, for the single writer), up to 2 ms an email
/// in a burst of approval emails on PostgreSQL. The check is a read; two senders that both
/// find the row stale both write it, which is harmless.
pub async fn record(
    db: &Db,
    project_id: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), DbError> {
    if error.is_none() {
        let shown = get(db, project_id).await?;
        let recent = shown.last_ok_at.is_some_and(|ok| {
            ok > now - OK_EVERY_MS && shown.last_error_at.is_none_or(|failed| failed < ok)
        });
        if recent {
            return Ok(());
        }
    }
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
