//! Limit settings and their running usage per calendar bucket.

use super::batch::{Arg, Writes};
use super::{Db, DbError, Tx, corrupt};
use crate::clock::{DAY_MS, HOUR_MS};
use crate::domain::money::db_decimal;
use crate::domain::policy::{LimitSet, Scope, Usage};
use rust_decimal::Decimal;
use sqlx::Row;

/// The default (base-currency) row of a scope.
pub const DEFAULT_CURRENCY: &str = "*";

fn opt_decimal(row: &sqlx::any::AnyRow, col: &'static str) -> Result<Option<Decimal>, DbError> {
    let v: Option<String> = row.try_get(col)?;
    v.map(|s| db_decimal(&s).map_err(|_| corrupt(col, s)))
        .transpose()
}

/// The scope's default limits and its override for `currency`, if any.
pub async fn for_withdrawal<'c, E>(
    ex: E,
    project_id: &str,
    scope: Scope,
    currency: &str,
) -> Result<(LimitSet, Option<LimitSet>), DbError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT currency, per_operation, per_hour, per_day FROM limits
         WHERE project_id = $1 AND scope = $2 AND currency IN ($3, $4)",
    )
    .bind(project_id)
    .bind(scope.as_str())
    .bind(DEFAULT_CURRENCY)
    .bind(currency)
    .fetch_all(ex)
    .await?;
    limit_sets(&rows)
}

/// The scope's default limits and the currency's override, if any, out of rows of `limits`
/// (columns `currency`, `per_operation`, `per_hour`, `per_day`) of one scope and currency.
pub(crate) fn limit_sets<'r>(
    rows: impl IntoIterator<Item = &'r sqlx::any::AnyRow>,
) -> Result<(LimitSet, Option<LimitSet>), DbError> {
    let mut base = LimitSet::default();
    let mut over = None;
    for r in rows {
        let set = LimitSet {
            per_operation: opt_decimal(r, "per_operation")?,
            per_hour: opt_decimal(r, "per_hour")?,
            per_day: opt_decimal(r, "per_day")?,
        };
        if r.try_get::<String, _>("currency")? == DEFAULT_CURRENCY {
            base = set;
        } else {
            over = Some(set);
        }
    }
    Ok((base, over))
}

pub async fn list(db: &Db, project_id: &str) -> Result<Vec<(Scope, String, LimitSet)>, DbError> {
    let rows = sqlx::query(
        "SELECT scope, currency, per_operation, per_hour, per_day FROM limits
         WHERE project_id = $1 ORDER BY scope, currency",
    )
    .bind(project_id)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            let scope: String = r.try_get("scope")?;
            Ok((
                Scope::parse(&scope).ok_or_else(|| corrupt("limits.scope", scope))?,
                r.try_get("currency")?,
                LimitSet {
                    per_operation: opt_decimal(r, "per_operation")?,
                    per_hour: opt_decimal(r, "per_hour")?,
                    per_day: opt_decimal(r, "per_day")?,
                },
            ))
        })
        .collect()
}

fn text(d: Option<Decimal>) -> Option<String> {
    d.map(|d| d.normalize().to_string())
}

/// Replaces one limit row (all three windows; `None` = no limit in that window).
pub async fn upsert(
    tx: &mut Tx<'_>,
    project_id: &str,
    scope: Scope,
    currency: &str,
    set: &LimitSet,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO limits (project_id, scope, currency, per_operation, per_hour, per_day, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (project_id, scope, currency) DO UPDATE SET
           per_operation = excluded.per_operation, per_hour = excluded.per_hour,
           per_day = excluded.per_day, updated_at = excluded.updated_at",
    )
    .bind(project_id)
    .bind(scope.as_str())
    .bind(currency)
    .bind(text(set.per_operation))
    .bind(text(set.per_hour))
    .bind(text(set.per_day))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The buckets an instant falls in: the UTC clock hour and the UTC day.
pub fn buckets(now: i64) -> (String, String) {
    (
        format!("h{}", now.div_euclid(HOUR_MS)),
        format!("d{}", now.div_euclid(DAY_MS)),
    )
}

/// A bucket's totals, read without a lock (for a preview; see [`lock_usages`]).
pub async fn usage<'c, E>(
    ex: E,
    project_id: &str,
    scope: Scope,
    currency: &str,
    bucket: &str,
) -> Result<Usage, DbError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT amount, base_amount FROM limit_usage
         WHERE project_id = $1 AND scope = $2 AND currency = $3 AND bucket = $4",
    )
    .bind(project_id)
    .bind(scope.as_str())
    .bind(currency)
    .bind(bucket)
    .fetch_optional(ex)
    .await?;
    row.as_ref().map_or(Ok(Usage::default()), parse_usage)
}

pub(crate) fn parse_usage(row: &sqlx::any::AnyRow) -> Result<Usage, DbError> {
    let amount: String = row.try_get("amount")?;
    let base: String = row.try_get("base_amount")?;
    Ok(Usage {
        amount: db_decimal(&amount).map_err(|_| corrupt("limit_usage.amount", &amount))?,
        base_amount: db_decimal(&base).map_err(|_| corrupt("limit_usage.base_amount", &base))?,
    })
}

/// Reads the totals of `buckets` and keeps their rows locked until commit (creating missing
/// ones at zero), in one statement: an upsert whose conflict branch rewrites a row with its own
/// value, which takes PostgreSQL's row lock (SQLite's `BEGIN IMMEDIATE` already made the
/// transaction the only writer) and returns the row either way. Read-modify-writes of one
/// bucket are so serialized even between transactions that hold different balances (a
/// withdrawal with exchange holds its source balance but counts in its payout currency).
/// Take it after the balance lock; rows are locked in the order given (hour, then day,
/// everywhere). Returns the totals in the order of `buckets`.
pub async fn lock_usages<const N: usize>(
    tx: &mut Tx<'_>,
    project_id: &str,
    scope: Scope,
    currency: &str,
    buckets: [&str; N],
) -> Result<[Usage; N], DbError> {
    let values = (0..N)
        .map(|i| format!("($1, $2, $3, ${}, '0', '0')", i + 4))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO limit_usage (project_id, scope, currency, bucket, amount, base_amount)
         VALUES {values}
         ON CONFLICT (project_id, scope, currency, bucket) DO UPDATE SET amount = limit_usage.amount
         RETURNING bucket, amount, base_amount"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(scope.as_str())
        .bind(currency);
    for b in buckets {
        q = q.bind(b);
    }
    let rows = q.fetch_all(&mut **tx).await?;
    let mut out = [Usage::default(); N];
    for row in &rows {
        let bucket: String = row.try_get("bucket")?;
        let i = buckets
            .iter()
            .position(|b| *b == bucket)
            .ok_or_else(|| corrupt("limit_usage.bucket", &bucket))?;
        out[i] = parse_usage(row)?;
    }
    if rows.len() != N {
        return Err(corrupt(
            "limit_usage",
            "upsert returned fewer rows than buckets",
        ));
    }
    Ok(out)
}

/// Adds (or, with negative figures, removes) a withdrawal to its buckets, under the
/// buckets' row locks.
#[allow(clippy::too_many_arguments)]
pub async fn add_usage<const N: usize>(
    tx: &mut Tx<'_>,
    project_id: &str,
    scope: Scope,
    currency: &str,
    buckets: [&str; N],
    delta: Usage,
) -> Result<(), DbError> {
    let current = lock_usages(tx, project_id, scope, currency, buckets).await?;
    let totals = current.map(|cur| Usage {
        amount: (cur.amount + delta.amount).max(Decimal::ZERO),
        base_amount: (cur.base_amount + delta.base_amount).max(Decimal::ZERO),
    });
    put_usages(tx, project_id, scope, currency, buckets, totals).await
}

/// Writes the buckets' new totals in one statement (the caller read the old ones with
/// [`lock_usages`]).
pub async fn put_usages<const N: usize>(
    tx: &mut Tx<'_>,
    project_id: &str,
    scope: Scope,
    currency: &str,
    buckets: [&str; N],
    totals: [Usage; N],
) -> Result<(), DbError> {
    let mut writes = Writes::new(super::engine_of(tx));
    push_usages(&mut writes, project_id, scope, currency, buckets, totals);
    writes.run(tx).await
}

/// [`put_usages`], added to `writes`.
pub fn push_usages<const N: usize>(
    writes: &mut Writes,
    project_id: &str,
    scope: Scope,
    currency: &str,
    buckets: [&str; N],
    totals: [Usage; N],
) {
    let values = (0..N)
        .map(|i| {
            format!(
                "($1, $2, $3, ${}, ${}, ${})",
                3 * i + 4,
                3 * i + 5,
                3 * i + 6
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO limit_usage (project_id, scope, currency, bucket, amount, base_amount)
         VALUES {values}
         ON CONFLICT (project_id, scope, currency, bucket) DO UPDATE SET
           amount = excluded.amount, base_amount = excluded.base_amount"
    );
    let mut args = vec![
        Arg::Text(project_id.to_string()),
        Arg::Text(scope.as_str().to_string()),
        Arg::Text(currency.to_string()),
    ];
    for (bucket, total) in buckets.iter().zip(totals) {
        args.push(Arg::Text((*bucket).to_string()));
        args.push(Arg::Text(total.amount.normalize().to_string()));
        args.push(Arg::Text(total.base_amount.normalize().to_string()));
    }
    writes.push(sql, args, Some(N as u64));
}

/// One limit row, read in the caller's transaction (for before/after records).
pub async fn get_in(
    tx: &mut Tx<'_>,
    project_id: &str,
    scope: Scope,
    currency: &str,
) -> Result<Option<LimitSet>, DbError> {
    let row = sqlx::query(
        "SELECT per_operation, per_hour, per_day FROM limits
         WHERE project_id = $1 AND scope = $2 AND currency = $3",
    )
    .bind(project_id)
    .bind(scope.as_str())
    .bind(currency)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(LimitSet {
            per_operation: opt_decimal(&r, "per_operation")?,
            per_hour: opt_decimal(&r, "per_hour")?,
            per_day: opt_decimal(&r, "per_day")?,
        })
    })
    .transpose()
}

/// Removes one limit row (a currency override; the currency falls back to the scope's
/// base-currency limits). False if there was none.
pub async fn delete(
    tx: &mut Tx<'_>,
    project_id: &str,
    scope: Scope,
    currency: &str,
) -> Result<bool, DbError> {
    let r =
        sqlx::query("DELETE FROM limits WHERE project_id = $1 AND scope = $2 AND currency = $3")
            .bind(project_id)
            .bind(scope.as_str())
            .bind(currency)
            .execute(&mut **tx)
            .await?;
    Ok(r.rows_affected() == 1)
}
