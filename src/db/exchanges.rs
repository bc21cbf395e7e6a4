//! Exchange quotes and executed exchanges. A quote is executed at most once: the conditional
//! `use_quote` write, and `exchanges.quote_id` being unique.

use super::{Db, DbError, Tx, corrupt};
use crate::domain::money::db_decimal;
use rust_decimal::Decimal;
use sqlx::Row;

/// One conversion (see migration 0003).
pub struct NewExchange<'a> {
    pub project_id: &'a str,
    /// `quote` or `withdrawal`.
    pub kind: &'a str,
    pub quote_id: Option<&'a str>,
    pub from_currency: &'a str,
    pub to_currency: &'a str,
    pub from_amount: Decimal,
    pub to_amount: Decimal,
    pub rate: Decimal,
    /// In `to_currency`.
    pub fee: Decimal,
}

pub async fn insert(tx: &mut Tx<'_>, e: &NewExchange<'_>, now: i64) -> Result<i64, DbError> {
    let row = sqlx::query(
        "INSERT INTO exchanges (project_id, kind, quote_id, from_currency, to_currency, from_amount, to_amount, rate, fee, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(e.project_id)
    .bind(e.kind)
    .bind(e.quote_id)
    .bind(e.from_currency)
    .bind(e.to_currency)
    .bind(e.from_amount.to_string())
    .bind(e.to_amount.to_string())
    .bind(e.rate.to_string())
    .bind(e.fee.to_string())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("id")?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub id: String,
    pub project_id: String,
    pub from_currency: String,
    pub to_currency: String,
    pub request_currency: String,
    pub request_amount: Decimal,
    pub from_amount: Decimal,
    pub to_amount: Decimal,
    pub rate: Decimal,
    pub reverse_rate: Decimal,
    /// In `to_currency`.
    pub fee: Decimal,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub exchange_id: Option<i64>,
    pub created_at: i64,
}

pub async fn insert_quote(db: &Db, q: &Quote) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO exchange_quotes (id, project_id, from_currency, to_currency, request_currency, request_amount,
            from_amount, to_amount, rate, reverse_rate, fee, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&q.id)
    .bind(&q.project_id)
    .bind(&q.from_currency)
    .bind(&q.to_currency)
    .bind(&q.request_currency)
    .bind(q.request_amount.to_string())
    .bind(q.from_amount.to_string())
    .bind(q.to_amount.to_string())
    .bind(q.rate.to_string())
    .bind(q.reverse_rate.to_string())
    .bind(q.fee.to_string())
    .bind(q.expires_at)
    .bind(q.created_at)
    .execute(db.writer())
    .await?;
    Ok(())
}

fn dec(row: &sqlx::any::AnyRow, col: &'static str) -> Result<Decimal, DbError> {
    let s: String = row.try_get(col)?;
    db_decimal(&s).map_err(|_| corrupt(col, s))
}

/// A project's quote by id (another project's quote is not found).
pub async fn quote(db: &Db, project_id: &str, id: &str) -> Result<Option<Quote>, DbError> {
    let row = sqlx::query(
        "SELECT id, project_id, from_currency, to_currency, request_currency, request_amount, from_amount,
            to_amount, rate, reverse_rate, fee, expires_at, used_at, exchange_id, created_at
         FROM exchange_quotes WHERE id = $1 AND project_id = $2",
    )
    .bind(id)
    .bind(project_id)
    .fetch_optional(db.reader())
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Quote {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        from_currency: r.try_get("from_currency")?,
        to_currency: r.try_get("to_currency")?,
        request_currency: r.try_get("request_currency")?,
        request_amount: dec(&r, "request_amount")?,
        from_amount: dec(&r, "from_amount")?,
        to_amount: dec(&r, "to_amount")?,
        rate: dec(&r, "rate")?,
        reverse_rate: dec(&r, "reverse_rate")?,
        fee: dec(&r, "fee")?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
        exchange_id: r.try_get("exchange_id")?,
        created_at: r.try_get("created_at")?,
    }))
}

/// Marks a quote executed, if it is unused and unexpired at `now`; false otherwise (someone
/// used it first, or it expired).
pub async fn use_quote(
    tx: &mut Tx<'_>,
    id: &str,
    exchange_id: i64,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE exchange_quotes SET used_at = $1, exchange_id = $2
         WHERE id = $3 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(exchange_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}
