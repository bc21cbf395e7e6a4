//! Withdrawal rows, their timeline and the address book. Status changes are conditional
//! writes on the expected current status.

use super::{Db, DbError, Tx, corrupt};
use crate::domain::money::db_decimal;
use crate::domain::policy::{ApprovalRequirement, Scope};
use crate::domain::withdrawal::Status;
use rust_decimal::Decimal;
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct Withdrawal {
    pub id: i64,
    pub project_id: String,
    pub foreign_id: String,
    pub fingerprint: String,
    pub scope: Scope,
    pub initiator_kind: String,
    pub initiator_id: String,
    pub currency: String,
    pub network: String,
    pub amount: Decimal,
    pub fee: Decimal,
    pub address: String,
    pub tag: Option<String>,
    pub end_user_reference: Option<String>,
    pub base_currency: String,
    pub base_value: Decimal,
    pub rate: Decimal,
    pub status: Status,
    pub initial_status: Status,
    pub requirement: ApprovalRequirement,
    pub usage_hour: String,
    pub usage_day: String,
    pub error: String,
    pub txid: Option<String>,
    pub address_id: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// For a withdrawal with exchange: the balance debited and the conversion.
    pub exchange: Option<WithdrawalExchange>,
    /// When the rates the withdrawal was valued (and converted) with were fetched.
    pub rates_at: Option<i64>,
}

/// The conversion of a withdrawal with exchange, fixed at creation. The withdrawal's
/// `currency`/`amount`/`fee` are the payout side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawalExchange {
    /// The `exchanges` row (the `exchange` transaction in callbacks).
    pub id: i64,
    /// The balance held and debited (the request's `currency`).
    pub from_currency: String,
    /// Exactly the request's `amount`.
    pub from_amount: Decimal,
    /// Payout currency per one `from_currency`.
    pub rate: Decimal,
    /// The exchange fee, in the payout currency (`fee` is the withdrawal fee).
    pub fee: Decimal,
}

impl Withdrawal {
    /// The balance this withdrawal holds (and debits when paid), and how much.
    pub fn held(&self) -> (&str, Decimal) {
        match &self.exchange {
            Some(x) => (&x.from_currency, x.from_amount),
            None => (&self.currency, self.amount + self.fee),
        }
    }

    /// Every fee, in the payout currency.
    pub fn total_fee(&self) -> Decimal {
        self.fee + self.exchange.as_ref().map_or(Decimal::ZERO, |x| x.fee)
    }
}

pub(crate) const COLUMNS: &str = "id, project_id, foreign_id, fingerprint, scope, initiator_kind, initiator_id, currency, network, amount, fee, address, tag, end_user_reference, base_currency, base_value, rate, status, initial_status, requirement, usage_hour, usage_day, error, txid, address_id, expires_at, created_at, updated_at, source_currency, source_amount, exchange_rate, exchange_fee, exchange_id, rates_at";

fn dec(row: &sqlx::any::AnyRow, col: &'static str) -> Result<Decimal, DbError> {
    let s: String = row.try_get(col)?;
    db_decimal(&s).map_err(|_| corrupt(col, s))
}

fn status(row: &sqlx::any::AnyRow, col: &'static str) -> Result<Status, DbError> {
    let s: String = row.try_get(col)?;
    Status::parse(&s).ok_or_else(|| corrupt(col, s))
}

fn opt_dec(row: &sqlx::any::AnyRow, col: &'static str) -> Result<Option<Decimal>, DbError> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| db_decimal(&s).map_err(|_| corrupt(col, s)))
        .transpose()
}

fn exchange(row: &sqlx::any::AnyRow) -> Result<Option<WithdrawalExchange>, DbError> {
    let Some(from_currency) = row.try_get::<Option<String>, _>("source_currency")? else {
        return Ok(None);
    };
    let missing = |col: &'static str| corrupt(col, "NULL on a withdrawal with exchange");
    Ok(Some(WithdrawalExchange {
        id: row
            .try_get::<Option<i64>, _>("exchange_id")?
            .ok_or_else(|| missing("exchange_id"))?,
        from_currency,
        from_amount: opt_dec(row, "source_amount")?.ok_or_else(|| missing("source_amount"))?,
        rate: opt_dec(row, "exchange_rate")?.ok_or_else(|| missing("exchange_rate"))?,
        fee: opt_dec(row, "exchange_fee")?.ok_or_else(|| missing("exchange_fee"))?,
    }))
}

pub(crate) fn from_row(row: &sqlx::any::AnyRow) -> Result<Withdrawal, DbError> {
    let scope: String = row.try_get("scope")?;
    let requirement: String = row.try_get("requirement")?;
    Ok(Withdrawal {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        foreign_id: row.try_get("foreign_id")?,
        fingerprint: row.try_get("fingerprint")?,
        scope: Scope::parse(&scope).ok_or_else(|| corrupt("scope", scope))?,
        initiator_kind: row.try_get("initiator_kind")?,
        initiator_id: row.try_get("initiator_id")?,
        currency: row.try_get("currency")?,
        network: row.try_get("network")?,
        amount: dec(row, "amount")?,
        fee: dec(row, "fee")?,
        address: row.try_get("address")?,
        tag: row.try_get("tag")?,
        end_user_reference: row.try_get("end_user_reference")?,
        base_currency: row.try_get("base_currency")?,
        base_value: dec(row, "base_value")?,
        rate: dec(row, "rate")?,
        status: status(row, "status")?,
        initial_status: status(row, "initial_status")?,
        requirement: serde_json::from_str(&requirement)
            .map_err(|_| corrupt("requirement", requirement))?,
        usage_hour: row.try_get("usage_hour")?,
        usage_day: row.try_get("usage_day")?,
        error: row.try_get("error")?,
        txid: row.try_get("txid")?,
        address_id: row.try_get("address_id")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        exchange: exchange(row)?,
        rates_at: row.try_get("rates_at")?,
    })
}

/// Inserts a new withdrawal and returns its id. A repeated `foreign_id` fails with a unique
/// violation (see `DbError::is_unique_violation`).
pub async fn insert(tx: &mut Tx, w: &Withdrawal) -> Result<i64, DbError> {
    let ids = insert_many(tx, &[w]).await?;
    ids.first()
        .copied()
        .ok_or_else(|| corrupt("withdrawals.id", "INSERT returned no row"))
}

/// Inserts new withdrawals in one statement and returns their ids in the order given. A
/// `foreign_id` already taken (or given twice) fails the whole statement with a unique
/// violation.
pub async fn insert_many(tx: &mut Tx, ws: &[&Withdrawal]) -> Result<Vec<i64>, DbError> {
    if ws.is_empty() {
        return Ok(Vec::new());
    }
    let mut p = super::Params::new(1);
    let rows: Vec<String> = ws
        .iter()
        .map(|w| {
            let x = w.exchange.as_ref();
            super::row(&[
                p.text(&w.project_id),
                p.text(&w.foreign_id),
                p.text(&w.fingerprint),
                p.text(w.scope.as_str()),
                p.text(&w.initiator_kind),
                p.text(&w.initiator_id),
                p.text(&w.currency),
                p.text(&w.network),
                p.text(w.amount.to_string()),
                p.text(w.fee.to_string()),
                p.text(&w.address),
                p.opt_text(w.tag.as_deref()),
                p.opt_text(w.end_user_reference.as_deref()),
                p.text(&w.base_currency),
                p.text(w.base_value.to_string()),
                p.text(w.rate.to_string()),
                p.text(w.status.as_str()),
                p.text(w.initial_status.as_str()),
                p.text(serde_json::to_string(&w.requirement).unwrap_or_default()),
                p.text(&w.usage_hour),
                p.text(&w.usage_day),
                p.text(&w.error),
                p.opt_text(w.txid.as_deref()),
                p.int(w.address_id),
                p.opt_int(w.expires_at),
                p.int(w.created_at),
                p.int(w.updated_at),
                p.opt_text(x.map(|x| x.from_currency.as_str())),
                p.opt_text(x.map(|x| x.from_amount.to_string())),
                p.opt_text(x.map(|x| x.rate.to_string())),
                p.opt_text(x.map(|x| x.fee.to_string())),
                p.opt_int(x.map(|x| x.id)),
                p.opt_int(w.rates_at),
            ])
        })
        .collect();
    let sql = format!(
        "INSERT INTO withdrawals (project_id, foreign_id, fingerprint, scope, initiator_kind, initiator_id,
            currency, network, amount, fee, address, tag, end_user_reference, base_currency, base_value, rate,
            status, initial_status, requirement, usage_hour, usage_day, error, txid, address_id, expires_at,
            created_at, updated_at, source_currency, source_amount, exchange_rate, exchange_fee, exchange_id,
            rates_at)
         VALUES {}
         RETURNING id, project_id, foreign_id",
        rows.join(", ")
    );
    let q = p.bind(sqlx::query(sqlx::AssertSqlSafe(sql)));
    let rows = q.fetch_all(&mut **tx).await?;
    // RETURNING gives no order: match the rows to the withdrawals by their unique key.
    let mut ids = vec![None; ws.len()];
    for row in &rows {
        let project_id: String = row.try_get("project_id")?;
        let foreign_id: String = row.try_get("foreign_id")?;
        let i = ws
            .iter()
            .position(|w| w.project_id == project_id && w.foreign_id == foreign_id)
            .ok_or_else(|| corrupt("withdrawals.foreign_id", &foreign_id))?;
        ids[i] = Some(row.try_get::<i64, _>("id")?);
    }
    ids.into_iter()
        .map(|id| id.ok_or_else(|| corrupt("withdrawals.id", "INSERT returned too few rows")))
        .collect()
}

pub async fn by_foreign_id(
    db: &Db,
    project_id: &str,
    foreign_id: &str,
) -> Result<Option<Withdrawal>, DbError> {
    let sql =
        format!("SELECT {COLUMNS} FROM withdrawals WHERE project_id = $1 AND foreign_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(foreign_id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The project's withdrawals with these `foreign_id`s, read in the caller's transaction.
pub async fn by_foreign_ids_in(
    tx: &mut Tx,
    project_id: &str,
    foreign_ids: &[&str],
) -> Result<Vec<Withdrawal>, DbError> {
    if foreign_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut p = super::Params::new(2);
    let list: Vec<String> = foreign_ids.iter().map(|f| p.text(*f)).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM withdrawals WHERE project_id = $1 AND foreign_id IN ({})",
        list.join(", ")
    );
    let q = p.bind(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(project_id));
    let rows = q.fetch_all(&mut **tx).await?;
    rows.iter().map(from_row).collect()
}

pub async fn by_id(db: &Db, id: i64) -> Result<Option<Withdrawal>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM withdrawals WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The withdrawals with these ids (those that exist), in no particular order.
pub async fn by_ids(db: &Db, ids: &[i64]) -> Result<Vec<Withdrawal>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = super::values_list(1, ids.len(), 1);
    let sql = format!("SELECT {COLUMNS} FROM withdrawals WHERE id IN {list}");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(db.reader()).await?;
    rows.iter().map(from_row).collect()
}

/// Reads a withdrawal inside a write transaction and keeps it locked until commit: decisions
/// on one withdrawal queue here, so each sees the votes of those before it.
pub async fn lock(db: &Db, tx: &mut Tx, id: i64) -> Result<Option<Withdrawal>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM withdrawals WHERE id = $1{}",
        db.for_update()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The one conditional write behind every status change: zero rows means someone else moved
/// the withdrawal first.
#[allow(clippy::too_many_arguments)]
pub async fn set_status(
    tx: &mut Tx,
    id: i64,
    from: Status,
    to: Status,
    error: Option<&str>,
    txid: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE withdrawals SET status = $1, error = COALESCE($2, error), txid = COALESCE($3, txid), updated_at = $4
         WHERE id = $5 AND status = $6",
    )
    .bind(to.as_str())
    .bind(error)
    .bind(txid)
    .bind(now)
    .bind(id)
    .bind(from.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// One conditional status write of [`set_statuses`].
pub struct StatusWrite<'a> {
    pub id: i64,
    pub from: Status,
    pub to: Status,
    pub error: Option<&'a str>,
    pub txid: Option<&'a str>,
}

/// [`set_status`] for several withdrawals in one statement. Returns the ids that moved (those
/// still in their `from` status); the others were moved by someone else first.
pub async fn set_statuses(
    tx: &mut Tx,
    writes: &[StatusWrite<'_>],
    now: i64,
) -> Result<Vec<i64>, DbError> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "WITH v (wid, from_status, to_status, new_error, new_txid) AS (VALUES {})
         UPDATE withdrawals SET status = v.to_status, error = COALESCE(v.new_error, withdrawals.error),
            txid = COALESCE(v.new_txid, withdrawals.txid), updated_at = $1
         FROM v WHERE withdrawals.id = v.wid AND withdrawals.status = v.from_status
         RETURNING id",
        super::values_list(writes.len(), 5, 2)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
    for w in writes {
        q = q
            .bind(w.id)
            .bind(w.from.as_str())
            .bind(w.to.as_str())
            .bind(w.error.map(str::to_string))
            .bind(w.txid.map(str::to_string));
    }
    let rows = q.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|r| r.try_get::<i64, _>("id").map_err(DbError::from))
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub async fn add_event(
    tx: &mut Tx,
    withdrawal_id: i64,
    from: Option<Status>,
    to: Status,
    actor_kind: &str,
    actor_id: &str,
    note: &str,
    now: i64,
) -> Result<(), DbError> {
    let e = NewEvent {
        withdrawal_id,
        from,
        to,
        actor_kind,
        actor_id,
        note,
    };
    add_events(tx, &[e], now).await
}

/// One timeline entry to write (see [`add_events`]).
pub struct NewEvent<'a> {
    pub withdrawal_id: i64,
    pub from: Option<Status>,
    pub to: Status,
    pub actor_kind: &'a str,
    pub actor_id: &'a str,
    pub note: &'a str,
}

/// Writes timeline entries in one statement.
pub async fn add_events(tx: &mut Tx, events: &[NewEvent<'_>], now: i64) -> Result<(), DbError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut p = super::Params::new(1);
    let rows: Vec<String> = events
        .iter()
        .map(|e| {
            super::row(&[
                p.int(e.withdrawal_id),
                p.opt_text(e.from.map(Status::as_str)),
                p.text(e.to.as_str()),
                p.text(e.actor_kind),
                p.text(e.actor_id),
                p.text(e.note),
                p.int(now),
            ])
        })
        .collect();
    let sql = format!(
        "INSERT INTO withdrawal_events (withdrawal_id, from_status, to_status, actor_kind, actor_id, note, created_at)
         VALUES {}",
        rows.join(", ")
    );
    let q = p.bind(sqlx::query(sqlx::AssertSqlSafe(sql)));
    q.execute(&mut **tx).await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Event {
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor_kind: String,
    pub actor_id: String,
    pub note: String,
    pub created_at: i64,
}

pub async fn events(db: &Db, withdrawal_id: i64) -> Result<Vec<Event>, DbError> {
    let rows = sqlx::query(
        "SELECT from_status, to_status, actor_kind, actor_id, note, created_at
         FROM withdrawal_events WHERE withdrawal_id = $1 ORDER BY id",
    )
    .bind(withdrawal_id)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Event {
                from_status: r.try_get("from_status")?,
                to_status: r.try_get("to_status")?,
                actor_kind: r.try_get("actor_kind")?,
                actor_id: r.try_get("actor_id")?,
                note: r.try_get("note")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Records the destination in the address book and returns its id.
pub async fn touch_address(
    tx: &mut Tx,
    project_id: &str,
    currency: &str,
    address: &str,
    tag: Option<&str>,
    now: i64,
) -> Result<i64, DbError> {
    let key = AddressKey {
        project_id,
        currency,
        address,
        tag: tag.unwrap_or(""),
    };
    let ids = touch_addresses(tx, &[key], now).await?;
    ids.first()
        .copied()
        .ok_or_else(|| corrupt("payout_addresses.id", "upsert returned no row"))
}

/// An address book entry (no tag is the empty tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey<'a> {
    pub project_id: &'a str,
    pub currency: &'a str,
    pub address: &'a str,
    pub tag: &'a str,
}

/// [`touch_address`] for several distinct entries in one statement; the ids come back in the
/// order given. (Distinct: one upsert may not update a row twice.)
pub async fn touch_addresses(
    tx: &mut Tx,
    keys: &[AddressKey<'_>],
    now: i64,
) -> Result<Vec<i64>, DbError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "INSERT INTO payout_addresses (project_id, currency, address, tag, first_used_at, last_used_at)
         VALUES {}
         ON CONFLICT (project_id, currency, address, tag) DO UPDATE SET last_used_at = excluded.last_used_at
         RETURNING id, project_id, currency, address, tag",
        super::values_list(keys.len(), 6, 1)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for k in keys {
        q = q
            .bind(k.project_id.to_string())
            .bind(k.currency.to_string())
            .bind(k.address.to_string())
            .bind(k.tag.to_string())
            .bind(now)
            .bind(now);
    }
    let rows = q.fetch_all(&mut **tx).await?;
    let mut ids = vec![None; keys.len()];
    for row in &rows {
        let (p, c, a, t): (String, String, String, String) = (
            row.try_get("project_id")?,
            row.try_get("currency")?,
            row.try_get("address")?,
            row.try_get("tag")?,
        );
        let i = keys
            .iter()
            .position(|k| k.project_id == p && k.currency == c && k.address == a && k.tag == t)
            .ok_or_else(|| corrupt("payout_addresses.address", &a))?;
        ids[i] = Some(row.try_get::<i64, _>("id")?);
    }
    ids.into_iter()
        .map(|id| id.ok_or_else(|| corrupt("payout_addresses.id", "upsert returned too few rows")))
        .collect()
}

/// Pending withdrawals whose expiry has passed, oldest first.
pub async fn expired_pending(db: &Db, now: i64, limit: i64) -> Result<Vec<i64>, DbError> {
    let rows = sqlx::query(
        "SELECT id FROM withdrawals WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| r.try_get("id").map_err(DbError::from))
        .collect()
}
