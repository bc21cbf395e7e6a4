//! Reads for the approval pages: the pending queue, an end user's recent withdrawals, and
//! whether a destination was paid before. Every query is scoped to one project and walks an
//! index that ends in the id (`withdrawals_by_status`, `withdrawals_by_end_user`,
//! `withdrawals_by_address`).

use super::withdrawals::{COLUMNS, Withdrawal, from_row};
use super::{Db, DbError};
use sqlx::Row;

/// The oldest `limit` pending withdrawals of a project (the queue sorts them itself).
pub async fn pending(db: &Db, project_id: &str, limit: i64) -> Result<Vec<Withdrawal>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM withdrawals WHERE project_id = $1 AND status = 'pending'
         ORDER BY id LIMIT $2"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(limit)
        .fetch_all(db.reader())
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// The end user's latest `limit` withdrawals before `before_id`, newest first.
pub async fn by_end_user(
    db: &Db,
    project_id: &str,
    reference: &str,
    before_id: i64,
    limit: i64,
) -> Result<Vec<Withdrawal>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM withdrawals
         WHERE project_id = $1 AND end_user_reference = $2 AND id < $3
         ORDER BY id DESC LIMIT $4"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(reference)
        .bind(before_id)
        .bind(limit)
        .fetch_all(db.reader())
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// What the project sent to one destination before a withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressHistory {
    /// Earlier withdrawals to the same currency, address and tag, whatever their outcome.
    pub earlier: i64,
    /// The latest of them that was paid (confirmed), if any.
    pub last_paid: Option<(i64, i64)>,
}

pub async fn address_history(db: &Db, w: &Withdrawal) -> Result<AddressHistory, DbError> {
    let earlier = sqlx::query(
        "SELECT COUNT(*) AS n FROM withdrawals
         WHERE project_id = $1 AND address = $2 AND id < $3 AND currency = $4
           AND COALESCE(tag, '') = $5",
    )
    .bind(&w.project_id)
    .bind(&w.address)
    .bind(w.id)
    .bind(&w.currency)
    .bind(w.tag.as_deref().unwrap_or(""))
    .fetch_one(db.reader())
    .await?
    .try_get("n")?;
    let last_paid = sqlx::query(
        "SELECT id, updated_at FROM withdrawals
         WHERE project_id = $1 AND address = $2 AND id < $3 AND currency = $4
           AND COALESCE(tag, '') = $5 AND status = 'confirmed'
         ORDER BY id DESC LIMIT 1",
    )
    .bind(&w.project_id)
    .bind(&w.address)
    .bind(w.id)
    .bind(&w.currency)
    .bind(w.tag.as_deref().unwrap_or(""))
    .fetch_optional(db.reader())
    .await?
    .map(|r| Ok::<_, DbError>((r.try_get("id")?, r.try_get("updated_at")?)))
    .transpose()?;
    Ok(AddressHistory { earlier, last_paid })
}
