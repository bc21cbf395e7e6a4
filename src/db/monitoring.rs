//! The few queries `/metrics` runs at scrape time. Each reads only rows that are still in
//! motion, through a partial index that holds only those rows, so its cost follows the work
//! in flight, not the size of the history: withdrawals in `pending`, `approved` or
//! `processing` (`withdrawals_in_flight`) and queued jobs (`jobs_queued`). Final withdrawals
//! and finished jobs are never counted here. The conditions repeat the indexes' predicates
//! term for term (`status = 'pending' OR ...`, not `IN`): SQLite uses a partial index only
//! then.

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

/// Withdrawals in flight by status, through `withdrawals_in_flight`.
pub const IN_FLIGHT_SQL: &str = "SELECT status, COUNT(*) AS n FROM withdrawals
     WHERE status = 'pending' OR status = 'approved' OR status = 'processing'
     GROUP BY status";
/// When the oldest pending withdrawal was created, through `withdrawals_in_flight`.
pub const OLDEST_PENDING_SQL: &str =
    "SELECT MIN(created_at) AS oldest FROM withdrawals WHERE status = 'pending'";
/// Queued jobs by kind, through `jobs_queued`.
pub const OUTBOX_SQL: &str = "SELECT kind, COUNT(*) AS n, MIN(created_at) AS oldest FROM jobs
     WHERE status = 'queued' GROUP BY kind";

pub async fn withdrawals_in_flight(db: &Db) -> Result<InFlight, DbError> {
    let rows = sqlx::query(IN_FLIGHT_SQL).fetch_all(db.reader()).await?;
    let by_status = rows
        .iter()
        .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    let oldest = sqlx::query(OLDEST_PENDING_SQL)
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
    let rows = sqlx::query(OUTBOX_SQL).fetch_all(db.reader()).await?;
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
