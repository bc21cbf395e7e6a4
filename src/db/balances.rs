//! Balances and their ledger. A balance row is only changed together with a ledger entry, in
//! one transaction, after taking the row (see `lock`), so available funds never go negative
//! whatever runs concurrently.

use super::batch::{Arg, Cols, Rows, Ty, V, Writes};
use super::{Db, DbError, Tx, corrupt};
use crate::domain::money::db_decimal;
use rust_decimal::Decimal;
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    Credit,
    Hold,
    Release,
    Debit,
    /// Taken from the available balance by a conversion (make-exchange).
    ExchangeOut,
    /// Added to the available balance by a conversion.
    ExchangeIn,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Credit => "credit",
            LedgerKind::Hold => "hold",
            LedgerKind::Release => "release",
            LedgerKind::Debit => "debit",
            LedgerKind::ExchangeOut => "exchange_out",
            LedgerKind::ExchangeIn => "exchange_in",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub available: Decimal,
    pub held: Decimal,
    pub version: i64,
    /// When its last movement was stamped (epoch ms).
    pub updated_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    #[error("not enough funds available")]
    Insufficient,
    #[error(transparent)]
    Db(#[from] DbError),
}

pub(crate) fn parse(row: &sqlx::any::AnyRow) -> Result<Balance, DbError> {
    let available: String = row.try_get("available")?;
    let held: String = row.try_get("held")?;
    Ok(Balance {
        available: db_decimal(&available).map_err(|_| corrupt("balances.available", &available))?,
        held: db_decimal(&held).map_err(|_| corrupt("balances.held", &held))?,
        version: row.try_get("version")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Reads a balance inside a write transaction and keeps it locked until commit.
pub async fn lock(
    db: &Db,
    tx: &mut Tx<'_>,
    project_id: &str,
    currency: &str,
) -> Result<Option<Balance>, DbError> {
    let sql = format!(
        "SELECT available, held, version, updated_at FROM balances WHERE project_id = $1 AND currency = $2{}",
        db.for_update()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(currency)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(parse).transpose()
}

/// Creates a zero balance row if there is none (for credits).
pub async fn ensure(
    tx: &mut Tx<'_>,
    project_id: &str,
    currency: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO balances (project_id, currency, available, held, version, updated_at)
         VALUES ($1, $2, '0', '0', 0, $3) ON CONFLICT (project_id, currency) DO NOTHING",
    )
    .bind(project_id)
    .bind(currency)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves funds on a locked balance and records the ledger entry. The update is also
/// conditional on the version read, as a second guard.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    tx: &mut Tx<'_>,
    project_id: &str,
    currency: &str,
    current: Balance,
    kind: LedgerKind,
    amount: Decimal,
    withdrawal_id: Option<i64>,
    now: i64,
) -> Result<Balance, BalanceError> {
    let source = Source {
        withdrawal_id,
        exchange_id: None,
    };
    movement(tx, project_id, currency, current, kind, amount, source, now).await
}

/// [`apply`] for the two sides of a conversion between balances.
#[allow(clippy::too_many_arguments)]
pub async fn apply_exchange(
    tx: &mut Tx<'_>,
    project_id: &str,
    currency: &str,
    current: Balance,
    kind: LedgerKind,
    amount: Decimal,
    exchange_id: i64,
    now: i64,
) -> Result<Balance, BalanceError> {
    let source = Source {
        withdrawal_id: None,
        exchange_id: Some(exchange_id),
    };
    movement(tx, project_id, currency, current, kind, amount, source, now).await
}

/// What caused a movement.
struct Source {
    withdrawal_id: Option<i64>,
    exchange_id: Option<i64>,
}

#[allow(clippy::too_many_arguments)]
async fn movement(
    tx: &mut Tx<'_>,
    project_id: &str,
    currency: &str,
    current: Balance,
    kind: LedgerKind,
    amount: Decimal,
    source: Source,
    now: i64,
) -> Result<Balance, BalanceError> {
    let moves = [Move {
        kind,
        amount,
        source,
    }];
    movements(tx, project_id, currency, current, &moves, now).await
}

/// Several withdrawals' movements (holds, releases, debits) on one locked balance, in the
/// order given, added to `writes` (which must run while the balance is still locked): one
/// ledger entry each, one update of the balance. Fails (nothing added) if any would take the
/// balance below zero.
pub fn push_moves(
    writes: &mut Writes,
    project_id: &str,
    currency: &str,
    current: Balance,
    moves: &[(LedgerKind, Decimal, i64)],
    now: i64,
) -> Result<Balance, BalanceError> {
    let moves: Vec<Move> = moves
        .iter()
        .map(|&(kind, amount, withdrawal_id)| Move {
            kind,
            amount,
            source: Source {
                withdrawal_id: Some(withdrawal_id),
                exchange_id: None,
            },
        })
        .collect();
    push_movements(writes, project_id, currency, current, &moves, now)
}

struct Move {
    kind: LedgerKind,
    amount: Decimal,
    source: Source,
}

/// The balance after `amount` of `kind` moved on `(available, held)`.
fn moved(
    (a, h): (Decimal, Decimal),
    kind: LedgerKind,
    amount: Decimal,
) -> Result<(Decimal, Decimal), BalanceError> {
    let overflow = || BalanceError::Db(corrupt("balances", "amount overflow"));
    let (available, held) = match kind {
        LedgerKind::Credit | LedgerKind::ExchangeIn => (a.checked_add(amount), Some(h)),
        LedgerKind::Hold => (a.checked_sub(amount), h.checked_add(amount)),
        LedgerKind::Release => (a.checked_add(amount), h.checked_sub(amount)),
        LedgerKind::Debit => (Some(a), h.checked_sub(amount)),
        LedgerKind::ExchangeOut => (a.checked_sub(amount), Some(h)),
    };
    let (available, held) = (available.ok_or_else(overflow)?, held.ok_or_else(overflow)?);
    if available < Decimal::ZERO || held < Decimal::ZERO {
        return Err(BalanceError::Insufficient);
    }
    Ok((available, held))
}

async fn movements(
    tx: &mut Tx<'_>,
    project_id: &str,
    currency: &str,
    current: Balance,
    moves: &[Move],
    now: i64,
) -> Result<Balance, BalanceError> {
    let mut writes = Writes::new(super::engine_of(tx));
    let after = push_movements(&mut writes, project_id, currency, current, moves, now)?;
    writes.run(tx).await?;
    Ok(after)
}

const LEDGER_COLS: Cols = &[
    ("project_id", Ty::Text),
    ("currency", Ty::Text),
    ("kind", Ty::Text),
    ("amount", Ty::Text),
    ("withdrawal_id", Ty::Int),
    ("exchange_id", Ty::Int),
    ("available_after", Ty::Text),
    ("held_after", Ty::Text),
    ("created_at", Ty::Int),
];

/// The balance's update (conditional on the version read: it must touch its row) and the
/// ledger entries, added to `writes`.
fn push_movements(
    writes: &mut Writes,
    project_id: &str,
    currency: &str,
    current: Balance,
    moves: &[Move],
    now: i64,
) -> Result<Balance, BalanceError> {
    let text = |d: Decimal| d.normalize().to_string();
    // A movement's time is taken before its transaction waits for the balance, so another
    // one that waited less may have been stamped later and committed first. Stamped no
    // earlier than the balance's last movement, a balance's entries are in time order as
    // they are in fact, and "the balance at T" (the last entry before T) is never an older
    // state than one already reported.
    let now = now.max(current.updated_at);
    let mut state = (current.available, current.held);
    let mut rows = Rows::new(LEDGER_COLS);
    for m in moves {
        state = moved(state, m.kind, m.amount)?;
        let (amount, a, h) = (text(m.amount), text(state.0), text(state.1));
        rows.push(&[
            V::Text(project_id),
            V::Text(currency),
            V::Text(m.kind.as_str()),
            V::Text(&amount),
            V::OptInt(m.source.withdrawal_id),
            V::OptInt(m.source.exchange_id),
            V::Text(&a),
            V::Text(&h),
            V::Int(now),
        ]);
    }
    let (available, held) = state;
    writes.push(
        "UPDATE balances SET available = $3, held = $4, version = version + 1, updated_at = $5
         WHERE project_id = $1 AND currency = $2 AND version = $6"
            .to_string(),
        vec![
            Arg::Text(project_id.to_string()),
            Arg::Text(currency.to_string()),
            Arg::Text(text(available)),
            Arg::Text(text(held)),
            Arg::Int(now),
            Arg::Int(current.version),
        ],
        Some(1),
    );
    if !rows.is_empty() {
        let n = rows.len() as u64;
        let (select, args) = rows.into_select(writes.engine(), 1);
        let sql = format!(
            "INSERT INTO ledger_entries (project_id, currency, kind, amount, withdrawal_id, exchange_id, available_after, held_after, created_at)
             {select}"
        );
        writes.push(sql, args, Some(n));
    }
    Ok(Balance {
        available,
        held,
        version: current.version + 1,
        updated_at: now,
    })
}

#[derive(Debug, Clone)]
pub struct BalanceLine {
    pub currency: String,
    pub available: Decimal,
    pub held: Decimal,
}

pub async fn list(db: &Db, project_id: &str) -> Result<Vec<BalanceLine>, DbError> {
    list_in(db.reader(), project_id).await
}

async fn list_in<'c, E>(ex: E, project_id: &str) -> Result<Vec<BalanceLine>, DbError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT currency, available, held, version, updated_at FROM balances WHERE project_id = $1 ORDER BY currency",
    )
    .bind(project_id)
    .fetch_all(ex)
    .await?;
    rows.iter()
        .map(|r| {
            let b = parse(r)?;
            Ok(BalanceLine {
                currency: r.try_get("currency")?,
                available: b.available,
                held: b.held,
            })
        })
        .collect()
}

/// A balance as it stood just before `before` (epoch ms): the balance after the last ledger
/// entry earlier than that instant; `None` if the balance had no entry yet.
pub async fn at(
    db: &Db,
    project_id: &str,
    currency: &str,
    before: i64,
) -> Result<Option<(Decimal, Decimal)>, DbError> {
    let row = sqlx::query(
        "SELECT available_after, held_after FROM ledger_entries
         WHERE project_id = $1 AND currency = $2 AND created_at < $3
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(project_id)
    .bind(currency)
    .bind(before)
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let a: String = row.try_get("available_after")?;
    let h: String = row.try_get("held_after")?;
    Ok(Some((
        db_decimal(&a).map_err(|_| corrupt("ledger_entries.available_after", &a))?,
        db_decimal(&h).map_err(|_| corrupt("ledger_entries.held_after", &h))?,
    )))
}

/// Checks that every balance equals the sum of its ledger entries (used by tests and the
/// `verify` tooling): returns the currencies that disagree. Both reads come from one snapshot,
/// so payouts moving meanwhile cannot make a consistent book look wrong.
pub async fn reconcile(db: &Db, project_id: &str) -> Result<Vec<String>, DbError> {
    let mut snapshot = db.reader().begin_with(db.snapshot_begin()).await?;
    let entries = sqlx::query(
        "SELECT currency, kind, amount FROM ledger_entries WHERE project_id = $1 ORDER BY id",
    )
    .bind(project_id)
    .fetch_all(&mut *snapshot)
    .await?;
    let lines = list_in(&mut *snapshot, project_id).await?;
    snapshot.rollback().await?;
    let mut sums: std::collections::BTreeMap<String, (Decimal, Decimal)> = Default::default();
    for e in &entries {
        let currency: String = e.try_get("currency")?;
        let kind: String = e.try_get("kind")?;
        let amount: String = e.try_get("amount")?;
        let amount = db_decimal(&amount).map_err(|_| corrupt("ledger_entries.amount", &amount))?;
        let s = sums.entry(currency).or_default();
        match kind.as_str() {
            "credit" | "exchange_in" => s.0 += amount,
            "exchange_out" => s.0 -= amount,
            "hold" => {
                s.0 -= amount;
                s.1 += amount;
            }
            "release" => {
                s.0 += amount;
                s.1 -= amount;
            }
            "debit" => s.1 -= amount,
            _ => return Err(corrupt("ledger_entries.kind", kind)),
        }
    }
    let mut bad = Vec::new();
    for line in lines {
        let (a, h) = sums.remove(&line.currency).unwrap_or_default();
        if a != line.available || h != line.held {
            bad.push(line.currency);
        }
    }
    bad.extend(sums.into_keys());
    Ok(bad)
}
