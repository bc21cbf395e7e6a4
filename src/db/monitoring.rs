//! The few queries `/metrics` runs at scrape time. Each reads only rows that are still in
//! motion, through an index whose first column is `status`, so its cost follows the work in
//! flight, not the size of the history: withdrawals in `pending`, `approved` or `processing`
//! (index `withdrawals_expiry (status, expires_at)`) and queued jobs (`jobs_due (status,
//! run_at)`). Final withdrawals and finished jobs are never counted here.

use super::{Db, DbError};
use sqlx::Row;

/// Withdrawals not yet in a final status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlight {
    /// (status, count) for `pending`, `approved`, `processing` (absent when zero).
    pub by_status: Vec<(String, i64)>,
    /// `created_at` of the oldest pending withdrawal.
    pub oldest_pending_at: Option<i64>,
}

pub async fn withdrawals_in_flight(db: &Db) -> Result<InFlight, DbError> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*) AS n FROM withdrawals
         WHERE status IN ('pending', 'approved', 'processing') GROUP BY status",
    )
    .fetch_all(db.reader())
    .await?;
    let by_status = rows
        .iter()
        .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    let oldest =
        sqlx::query("SELECT MIN(created_at) AS oldest FROM withdrawals WHERE status = 'pending'")
            .fetch_one(db.reader())
            .await?;
    Ok(InFlight {
        by_status,
        oldest_pending_at: oldest.try_get("oldest")?,
    })
}

/// Queued jobs of one kind: how many, and when the oldest was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedKind {
    pub kind: String,
    pub queued: i64,
    pub oldest_created_at: i64,
}

pub async fn outbox(db: &Db) -> Result<Vec<QueuedKind>, DbError> {
    let rows = sqlx::query(
        "SELECT kind, COUNT(*) AS n, MIN(created_at) AS oldest FROM jobs
         WHERE status = 'queued' GROUP BY kind",
    )
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(QueuedKind {
                kind: r.try_get("kind")?,
                queued: r.try_get("n")?,
                oldest_created_at: r.try_get("oldest")?,
            })
        })
        .collect()
}
