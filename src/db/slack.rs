//! A project's Slack channel: its incoming-webhook URL (encrypted; see migration 0007) and the
//! outcome of the latest sends, for the settings page.

use super::{Db, DbError, Tx};
use sqlx::Row;

/// The connected webhook as stored. `url_enc` is the master-key ciphertext; only the worker
/// and the test button decrypt it, at send time.
#[derive(Debug, Clone)]
pub struct SlackWebhook {
    pub webhook_id: String,
    pub url_enc: String,
    pub url_hint: String,
    pub connected_at: i64,
    pub last_ok_at: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
}

const COLUMNS: &str =
    "webhook_id, url_enc, url_hint, connected_at, last_ok_at, last_error_at, last_error";

fn from_row(r: &sqlx::any::AnyRow) -> Result<SlackWebhook, DbError> {
    Ok(SlackWebhook {
        webhook_id: r.try_get("webhook_id")?,
        url_enc: r.try_get("url_enc")?,
        url_hint: r.try_get("url_hint")?,
        connected_at: r.try_get("connected_at")?,
        last_ok_at: r.try_get("last_ok_at")?,
        last_error_at: r.try_get("last_error_at")?,
        last_error: r.try_get("last_error")?,
    })
}

pub async fn get(db: &Db, project_id: &str) -> Result<Option<SlackWebhook>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM slack_webhooks WHERE project_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The same read inside a transaction (the settings change holds the project lock).
pub async fn get_in(tx: &mut Tx<'_>, project_id: &str) -> Result<Option<SlackWebhook>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM slack_webhooks WHERE project_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Whether a channel is connected and the project sends `event` to it, read in the caller's
/// transaction (so a message is queued only for a project that has somewhere to send it and
/// wants it).
pub async fn wants(tx: &mut Tx<'_>, project_id: &str, event: &str) -> Result<bool, DbError> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM slack_webhooks s JOIN projects p ON p.id = s.project_id
         WHERE s.project_id = $1 AND (',' || p.slack_events || ',') LIKE $2",
    )
    .bind(project_id)
    .bind(format!("%,{event},%"))
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.is_some())
}

/// The events the project sends to Slack.
pub async fn events(db: &Db, project_id: &str) -> Result<Vec<String>, DbError> {
    let row = sqlx::query("SELECT slack_events FROM projects WHERE id = $1")
        .bind(project_id)
        .fetch_optional(db.reader())
        .await?;
    let s: String = match row {
        Some(r) => r.try_get("slack_events")?,
        None => String::new(),
    };
    Ok(s.split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect())
}

pub async fn set_events(tx: &mut Tx<'_>, project_id: &str, events: &[&str]) -> Result<(), DbError> {
    sqlx::query("UPDATE projects SET slack_events = $1 WHERE id = $2")
        .bind(events.join(","))
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Connects or replaces the webhook. A replacement starts with no send history.
pub async fn upsert(
    tx: &mut Tx<'_>,
    project_id: &str,
    webhook_id: &str,
    url_enc: &str,
    url_hint: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO slack_webhooks (project_id, webhook_id, url_enc, url_hint, connected_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (project_id) DO UPDATE SET webhook_id = $2, url_enc = $3, url_hint = $4,
            connected_at = $5, last_ok_at = NULL, last_error_at = NULL, last_error = NULL",
    )
    .bind(project_id)
    .bind(webhook_id)
    .bind(url_enc)
    .bind(url_hint)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Disconnects; true if something was connected.
pub async fn delete(tx: &mut Tx<'_>, project_id: &str) -> Result<bool, DbError> {
    let r = sqlx::query("DELETE FROM slack_webhooks WHERE project_id = $1")
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Records a delivered message on the webhook it went to (nothing if that webhook has since
/// been replaced or disconnected).
pub async fn record_ok(
    db: &Db,
    project_id: &str,
    webhook_id: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE slack_webhooks SET last_ok_at = $1 WHERE project_id = $2 AND webhook_id = $3",
    )
    .bind(now)
    .bind(project_id)
    .bind(webhook_id)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// What [`take_test_slot`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum TestSlot {
    /// Taken: send now.
    Taken,
    /// The last test went out at this time, too recently.
    UsedAt(i64),
    /// The webhook was disconnected or replaced meanwhile.
    Gone,
}

/// Takes the test-message slot of the webhook: one conditional write, so of two clicks at
/// once (on any instances) one wins. Refused while the last test is less than `gap_ms`
/// before `now`.
pub async fn take_test_slot(
    db: &Db,
    project_id: &str,
    webhook_id: &str,
    now: i64,
    gap_ms: i64,
) -> Result<TestSlot, DbError> {
    let taken = sqlx::query(
        "UPDATE slack_webhooks SET last_test_at = $1
         WHERE project_id = $2 AND webhook_id = $3 AND (last_test_at IS NULL OR last_test_at <= $4)",
    )
    .bind(now)
    .bind(project_id)
    .bind(webhook_id)
    .bind(now - gap_ms)
    .execute(db.writer())
    .await?;
    if taken.rows_affected() > 0 {
        return Ok(TestSlot::Taken);
    }
    let row = sqlx::query(
        "SELECT last_test_at FROM slack_webhooks WHERE project_id = $1 AND webhook_id = $2",
    )
    .bind(project_id)
    .bind(webhook_id)
    .fetch_optional(db.reader())
    .await?;
    Ok(match row {
        Some(r) => TestSlot::UsedAt(r.try_get::<Option<i64>, _>("last_test_at")?.unwrap_or(now)),
        None => TestSlot::Gone,
    })
}

/// Records a failed send on the webhook it went to (as `record_ok`).
pub async fn record_error(
    db: &Db,
    project_id: &str,
    webhook_id: &str,
    error: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE slack_webhooks SET last_error_at = $1, last_error = $2
         WHERE project_id = $3 AND webhook_id = $4",
    )
    .bind(now)
    .bind(error)
    .bind(project_id)
    .bind(webhook_id)
    .execute(db.writer())
    .await?;
    Ok(())
}
