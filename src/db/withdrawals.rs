//! Withdrawal rows, their timeline and the address book. Status changes are conditional
//! writes on the expected current status.

use super::batch::{Cols, Rows, Ty, V, Writes};
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

const WITHDRAWAL_COLS: Cols = &[
    ("id", Ty::Int),
    ("project_id", Ty::Text),
    ("foreign_id", Ty::Text),
    ("fingerprint", Ty::Text),
    ("scope", Ty::Text),
    ("initiator_kind", Ty::Text),
    ("initiator_id", Ty::Text),
    ("currency", Ty::Text),
    ("network", Ty::Text),
    ("amount", Ty::Text),
    ("fee", Ty::Text),
    ("address", Ty::Text),
    ("tag", Ty::Text),
    ("end_user_reference", Ty::Text),
    ("base_currency", Ty::Text),
    ("base_value", Ty::Text),
    ("rate", Ty::Text),
    ("status", Ty::Text),
    ("initial_status", Ty::Text),
    ("requirement", Ty::Text),
    ("usage_hour", Ty::Text),
    ("usage_day", Ty::Text),
    ("error", Ty::Text),
    ("txid", Ty::Text),
    ("address_id", Ty::Int),
    ("expires_at", Ty::Int),
    ("created_at", Ty::Int),
    ("updated_at", Ty::Int),
    ("source_currency", Ty::Text),
    ("source_amount", Ty::Text),
    ("exchange_rate", Ty::Text),
    ("exchange_fee", Ty::Text),
    ("exchange_id", Ty::Int),
    ("rates_at", Ty::Int),
];

/// Adds the insert of new withdrawals, each with the id [`allocate_ids`] gave it. A
/// `foreign_id` already taken (or given twice) fails the writes with a unique violation (see
/// `DbError::is_unique_violation`).
pub fn push_inserts(writes: &mut Writes, ws: &[&Withdrawal]) {
    if ws.is_empty() {
        return;
    }
    let mut rows = Rows::new(WITHDRAWAL_COLS);
    for w in ws {
        let x = w.exchange.as_ref();
        let requirement = serde_json::to_string(&w.requirement).unwrap_or_default();
        let (amount, fee, base_value, rate) = (
            w.amount.to_string(),
            w.fee.to_string(),
            w.base_value.to_string(),
            w.rate.to_string(),
        );
        let from_amount = x.map(|x| x.from_amount.to_string());
        let exchange_rate = x.map(|x| x.rate.to_string());
        let exchange_fee = x.map(|x| x.fee.to_string());
        rows.push(&[
            V::Int(w.id),
            V::Text(&w.project_id),
            V::Text(&w.foreign_id),
            V::Text(&w.fingerprint),
            V::Text(w.scope.as_str()),
            V::Text(&w.initiator_kind),
            V::Text(&w.initiator_id),
            V::Text(&w.currency),
            V::Text(&w.network),
            V::Text(&amount),
            V::Text(&fee),
            V::Text(&w.address),
            V::OptText(w.tag.as_deref()),
            V::OptText(w.end_user_reference.as_deref()),
            V::Text(&w.base_currency),
            V::Text(&base_value),
            V::Text(&rate),
            V::Text(w.status.as_str()),
            V::Text(w.initial_status.as_str()),
            V::Text(&requirement),
            V::Text(&w.usage_hour),
            V::Text(&w.usage_day),
            V::Text(&w.error),
            V::OptText(w.txid.as_deref()),
            V::Int(w.address_id),
            V::OptInt(w.expires_at),
            V::Int(w.created_at),
            V::Int(w.updated_at),
            V::OptText(x.map(|x| x.from_currency.as_str())),
            V::OptText(from_amount.as_deref()),
            V::OptText(exchange_rate.as_deref()),
            V::OptText(exchange_fee.as_deref()),
            V::OptInt(x.map(|x| x.id)),
            V::OptInt(w.rates_at),
        ]);
    }
    let n = rows.len() as u64;
    let (select, args) = rows.into_select(writes.engine(), 1);
    let names: Vec<&str> = WITHDRAWAL_COLS.iter().map(|(c, _)| *c).collect();
    let sql = format!("INSERT INTO withdrawals ({}) {select}", names.join(", "));
    writes.push(sql, args, Some(n));
}

/// `n` ids for new rows of `table` (`withdrawals` or `payout_addresses`), taken before the
/// rows are written so that everything referring to them can be written in the same
/// statement. On SQLite the write transaction (`BEGIN IMMEDIATE`) holds the database, so the
/// ids after the highest ever given are free until it commits.
pub async fn allocate_ids(tx: &mut Tx<'_>, table: IdTable, n: usize) -> Result<Vec<i64>, DbError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = i64::try_from(n).map_err(|_| corrupt("ids", "too many"))?;
    let name = table.name();
    match super::engine_of(tx) {
        super::Engine::Postgres => {
            let sql = format!(
                "SELECT nextval(pg_get_serial_sequence('{name}', 'id')) AS id FROM generate_series(1, $1)"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(n)
                .fetch_all(&mut **tx)
                .await?;
            rows.iter()
                .map(|r| r.try_get::<i64, _>("id").map_err(DbError::from))
                .collect()
        }
        super::Engine::Sqlite => {
            let sql = format!(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{name}'), 0),
                            COALESCE((SELECT MAX(id) FROM {name}), 0)) AS last"
            );
            let last: i64 = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut **tx)
                .await?
                .try_get("last")?;
            Ok((1..=n).map(|i| last + i).collect())
        }
    }
}

/// A table whose ids [`allocate_ids`] gives out.
#[derive(Debug, Clone, Copy)]
pub enum IdTable {
    Withdrawals,
    PayoutAddresses,
}

impl IdTable {
    pub(crate) fn name(self) -> &'static str {
        match self {
            IdTable::Withdrawals => "withdrawals",
            IdTable::PayoutAddresses => "payout_addresses",
        }
    }
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

const FOREIGN_KEY_COLS: Cols = &[("project_id", Ty::Text), ("foreign_id", Ty::Text)];

/// The withdrawals with these `(project_id, foreign_id)` keys (committed ones: read outside
/// any transaction), on `conn`, a reading connection.
///
/// One statement text whatever the number of keys (see [`Rows`]). On PostgreSQL each key is
/// looked up on its own through the `(project_id, foreign_id)` key, and the statement is
/// planned anew each time: planned once while the table was small (a new install's first
/// minutes, before autovacuum has analyzed it), the lookup went through another index of
/// `project_id` and then scanned the whole project, and a prepared plan would keep doing so
/// as the table grows.
pub async fn by_foreign_ids(
    conn: &mut sqlx::AnyConnection,
    engine: super::Engine,
    keys: &[(&str, &str)],
) -> Result<Vec<Withdrawal>, DbError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Rows::new(FOREIGN_KEY_COLS);
    for (project_id, foreign_id) in keys {
        rows.push(&[V::Text(project_id), V::Text(foreign_id)]);
    }
    let (keyed, args) = rows.into_select(engine, 1);
    let sql = match engine {
        super::Engine::Postgres => format!(
            "SELECT w.* FROM ({keyed}) AS k CROSS JOIN LATERAL (SELECT {COLUMNS} FROM withdrawals
                WHERE project_id = k.project_id AND foreign_id = k.foreign_id LIMIT 1) AS w"
        ),
        super::Engine::Sqlite => format!(
            "SELECT w.* FROM ({keyed}) AS k CROSS JOIN (SELECT {COLUMNS} FROM withdrawals) AS w
             WHERE w.project_id = k.project_id AND w.foreign_id = k.foreign_id"
        ),
    };
    let rows = super::bind_args(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .persistent(false)
        .fetch_all(conn)
        .await?;
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
    // Not kept prepared: a plan cached while the table was young (a scan of all of it, which
    // was cheaper then) would stay with the connection as the table grows; PostgreSQL replaces
    // it only when the table is analyzed again. Planned anew, it looks each id up.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
    for id in ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(db.reader()).await?;
    rows.iter().map(from_row).collect()
}

/// Reads a withdrawal inside a write transaction and keeps it locked until commit: decisions
/// on one withdrawal queue here, so each sees the votes of those before it.
pub async fn lock(db: &Db, tx: &mut Tx<'_>, id: i64) -> Result<Option<Withdrawal>, DbError> {
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
    tx: &mut Tx<'_>,
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

const STATUS_COLS: Cols = &[
    ("wid", Ty::Int),
    ("from_status", Ty::Text),
    ("to_status", Ty::Text),
    ("new_error", Ty::Text),
    ("new_txid", Ty::Text),
];

/// [`set_status`] for several withdrawals in one statement. Returns the ids that moved (those
/// still in their `from` status); the others were moved by someone else first.
pub async fn set_statuses(
    tx: &mut Tx<'_>,
    writes: &[StatusWrite<'_>],
    now: i64,
) -> Result<Vec<i64>, DbError> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Rows::new(STATUS_COLS);
    for w in writes {
        rows.push(&[
            V::Int(w.id),
            V::Text(w.from.as_str()),
            V::Text(w.to.as_str()),
            V::OptText(w.error),
            V::OptText(w.txid),
        ]);
    }
    let engine = super::engine_of(tx);
    let (select, args) = rows.into_select(engine, 2);
    // On PostgreSQL the rows are locked in id order first, so that two transactions moving
    // some of the same withdrawals queue on the first they share instead of each taking one
    // the other needs (the worker's payouts lock their withdrawals before anything else: see
    // `service::withdrawals::record_payouts`). SQLite's writer holds the whole database.
    let (with, from, locked) = match engine {
        super::Engine::Postgres => (
            format!(
                "WITH v AS ({select}), locked AS (
                   SELECT w.id FROM withdrawals w JOIN v ON w.id = v.wid AND w.status = v.from_status
                   ORDER BY w.id FOR UPDATE OF w) "
            ),
            "v".to_string(),
            " AND withdrawals.id IN (SELECT id FROM locked)",
        ),
        super::Engine::Sqlite => (String::new(), format!("({select}) AS v"), ""),
    };
    let sql = format!(
        "{with}UPDATE withdrawals SET status = v.to_status, error = COALESCE(v.new_error, withdrawals.error),
            txid = COALESCE(v.new_txid, withdrawals.txid), updated_at = $1
         FROM {from} WHERE withdrawals.id = v.wid AND withdrawals.status = v.from_status{locked}
         RETURNING id"
    );
    // Not kept prepared: a plan made while the table was small (a hash join over all of it)
    // would stay with the connection as the table grows. Planned anew, each time it looks
    // the rows up by id.
    let rows = super::bind_args(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now), args)
        .persistent(false)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| r.try_get::<i64, _>("id").map_err(DbError::from))
        .collect()
}

/// One timeline entry to write (see [`push_events`]).
pub struct NewEvent<'a> {
    pub withdrawal_id: i64,
    pub from: Option<Status>,
    pub to: Status,
    pub actor_kind: &'a str,
    pub actor_id: &'a str,
    pub note: &'a str,
}

const EVENT_COLS: Cols = &[
    ("withdrawal_id", Ty::Int),
    ("from_status", Ty::Text),
    ("to_status", Ty::Text),
    ("actor_kind", Ty::Text),
    ("actor_id", Ty::Text),
    ("note", Ty::Text),
    ("created_at", Ty::Int),
];

/// Adds the insert of timeline entries.
pub fn push_events(writes: &mut Writes, events: &[NewEvent<'_>], now: i64) {
    if events.is_empty() {
        return;
    }
    let mut rows = Rows::new(EVENT_COLS);
    for e in events {
        rows.push(&[
            V::Int(e.withdrawal_id),
            V::OptText(e.from.map(Status::as_str)),
            V::Text(e.to.as_str()),
            V::Text(e.actor_kind),
            V::Text(e.actor_id),
            V::Text(e.note),
            V::Int(now),
        ]);
    }
    let n = rows.len() as u64;
    let (select, args) = rows.into_select(writes.engine(), 1);
    let sql = format!(
        "INSERT INTO withdrawal_events (withdrawal_id, from_status, to_status, actor_kind, actor_id, note, created_at)
         {select}"
    );
    writes.push(sql, args, Some(n));
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

/// An address book entry (no tag is the empty tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey<'a> {
    pub project_id: &'a str,
    pub currency: &'a str,
    pub address: &'a str,
    pub tag: &'a str,
}

const ADDRESS_KEY_COLS: Cols = &[
    ("i", Ty::Int),
    ("project_id", Ty::Text),
    ("currency", Ty::Text),
    ("address", Ty::Text),
    ("tag", Ty::Text),
];

/// The keys as rows `(i, project_id, currency, address, tag)`, `i` their place in `keys`.
pub(crate) fn address_key_rows(keys: &[AddressKey<'_>]) -> Rows {
    let mut rows = Rows::new(ADDRESS_KEY_COLS);
    for (i, k) in keys.iter().enumerate() {
        rows.push(&[
            V::Int(i64::try_from(i).unwrap_or(i64::MAX)),
            V::Text(k.project_id),
            V::Text(k.currency),
            V::Text(k.address),
            V::Text(k.tag),
        ]);
    }
    rows
}

const ADDRESS_COLS: Cols = &[
    ("id", Ty::Int),
    ("project_id", Ty::Text),
    ("currency", Ty::Text),
    ("address", Ty::Text),
    ("tag", Ty::Text),
    ("first_used_at", Ty::Int),
    ("last_used_at", Ty::Int),
];

/// The address book's id of each (distinct) entry, in the order given: the existing entry's,
/// or one allocated for an entry [`push_addresses`] will create. Read before any lock is
/// taken; the write checks that the ids still hold.
pub async fn address_ids(tx: &mut Tx<'_>, keys: &[AddressKey<'_>]) -> Result<Vec<i64>, DbError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows = address_key_rows(keys);
    let engine = super::engine_of(tx);
    let (keyed, args) = rows.into_select(engine, 1);
    // Each entry looked up by its unique key on its own, whatever the table's statistics say.
    let sql = format!(
        "SELECT k.i, a.id FROM ({keyed}) AS k CROSS JOIN LATERAL (
            SELECT id FROM payout_addresses
            WHERE project_id = k.project_id AND currency = k.currency AND address = k.address
              AND tag = k.tag LIMIT 1) AS a"
    );
    let sql = match engine {
        super::Engine::Postgres => sql,
        super::Engine::Sqlite => format!(
            "SELECT k.i, a.id FROM ({keyed}) AS k JOIN payout_addresses AS a
             ON a.project_id = k.project_id AND a.currency = k.currency AND a.address = k.address
               AND a.tag = k.tag"
        ),
    };
    let found = super::bind_args(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(&mut **tx)
        .await?;
    let mut ids: Vec<Option<i64>> = vec![None; keys.len()];
    for row in &found {
        let i: i64 = row.try_get("i")?;
        let slot = usize::try_from(i)
            .ok()
            .and_then(|i| ids.get_mut(i))
            .ok_or_else(|| corrupt("payout_addresses", "unknown key"))?;
        *slot = Some(row.try_get("id")?);
    }
    let missing = ids.iter().filter(|id| id.is_none()).count();
    let mut new = allocate_ids(tx, IdTable::PayoutAddresses, missing)
        .await?
        .into_iter();
    ids.into_iter()
        .map(|id| match id {
            Some(id) => Ok(id),
            None => new
                .next()
                .ok_or_else(|| corrupt("payout_addresses.id", "too few ids allocated")),
        })
        .collect()
}

/// Adds the upsert of address book entries with the ids [`address_ids`] gave: new entries
/// are created, known ones marked used now. An entry created meanwhile under another id (by
/// another instance) fails the writes, as its withdrawals would point at the wrong entry.
pub fn push_addresses(writes: &mut Writes, keys: &[AddressKey<'_>], ids: &[i64], now: i64) {
    if keys.is_empty() {
        return;
    }
    let mut rows = Rows::new(ADDRESS_COLS);
    for (k, &id) in keys.iter().zip(ids) {
        rows.push(&[
            V::Int(id),
            V::Text(k.project_id),
            V::Text(k.currency),
            V::Text(k.address),
            V::Text(k.tag),
            V::Int(now),
            V::Int(now),
        ]);
    }
    let n = rows.len() as u64;
    let (select, args) = rows.into_select(writes.engine(), 1);
    let sql = format!(
        "INSERT INTO payout_addresses (id, project_id, currency, address, tag, first_used_at, last_used_at)
         {select} WHERE true
         ON CONFLICT (project_id, currency, address, tag) DO UPDATE SET last_used_at = excluded.last_used_at
         WHERE payout_addresses.id = excluded.id"
    );
    writes.push(sql, args, Some(n));
}

/// Pending withdrawals whose expiry has passed, oldest first.
/// Pending withdrawals past their expiry (`$1` now, `$2` how many), through
/// `withdrawals_in_flight`.
pub const EXPIRED_PENDING_SQL: &str = "SELECT id FROM withdrawals WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2";

pub async fn expired_pending(db: &Db, now: i64, limit: i64) -> Result<Vec<i64>, DbError> {
    let rows = sqlx::query(EXPIRED_PENDING_SQL)
        .bind(now)
        .bind(limit)
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|r| r.try_get("id").map_err(DbError::from))
        .collect()
}
