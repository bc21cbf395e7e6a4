//! What a batch of new withdrawals reads and locks before it writes
//! (`service::withdrawals::intake`): the requests already made (replays), the limits and tiers
//! that apply, the address book's ids, ids for the new withdrawals, and then, locked until the
//! transaction ends and in this order, the balances, the limit windows and the audit chains'
//! heads (every transaction that takes more than one of them takes them in that order).
//!
//! On PostgreSQL all of it but the replays is one statement, sent right after `BEGIN`: the
//! batch writer's round trips are what limit intake (each costs a scheduling delay on both
//! sides of a busy machine), and this takes seven of them down to one. The replays are looked
//! up beside it, on a reading connection (see [`start`]). The statement's text does not change
//! with the batch (every list travels as one JSON parameter, see [`Rows`]), so it is prepared
//! once per connection. Its locks are taken in the order above because each locking part
//! waits for the one before it: the limit windows' upsert reads the locked balances first and
//! the heads' read the upserted windows (an uncorrelated subquery in a condition runs before
//! the rows it filters are read). Its parts answer in one row shape (see [`COLUMNS`]), each row
//! tagged with its part, so that the parsers of the tables' own reads serve here too.
//!
//! On SQLite, which runs statements in-process and whose `BEGIN IMMEDIATE` already holds the
//! whole database, the same reads are made one after another.
//!
//! The reads that take no lock see a snapshot taken before any lock was waited for: a
//! `foreign_id` committed by another instance while this one waited is then caught by its
//! unique key when the batch writes (the batch is written again one by one, and
//! that request answered as a replay), and an address book entry created meanwhile by the
//! writes' check (the batch is read again). Ids are taken for every request of the batch,
//! before it is known which are replays or refused for their balance: the ones not used are
//! gaps in the ids, as a rolled-back transaction leaves.

use super::audit::{self, Head};
use super::balances::{self, Balance};
use super::batch::{Cols, Rows, Ty, V};
use super::withdrawals::{self as wdb, AddressKey, IdTable, Withdrawal};
use super::{Db, DbError, Engine, HeldConnection, Tx, approvals, corrupt, limits};
use crate::domain::policy::{LimitSet, Scope, Tier, Usage};
use sqlx::Row;

/// What a batch needs read and locked. Lists are of distinct keys; the locked ones (balances,
/// windows, chains) sorted, so that two writers take them in the same order.
pub struct Keys<'a> {
    /// `(project_id, foreign_id)` of every request.
    pub foreign_ids: Vec<(&'a str, &'a str)>,
    /// `(project_id, scope, payout currency)`: limits and tiers to read.
    pub rules: Vec<(&'a str, Scope, &'a str)>,
    pub addresses: Vec<AddressKey<'a>>,
    /// How many new withdrawal ids to take.
    pub new_ids: usize,
    /// `(project_id, held currency)`.
    pub balances: Vec<(&'a str, &'a str)>,
    /// `(project_id, scope, payout currency)`: the limit windows to lock.
    pub windows: Vec<(&'a str, Scope, &'a str)>,
    /// The current hour's and day's buckets.
    pub buckets: [&'a str; 2],
    /// Projects whose audit chains to lock.
    pub chains: Vec<&'a str>,
}

/// What [`start`] read, each list in the order of its keys.
pub struct Started {
    /// Withdrawals that already exist for some of the `foreign_ids`, in no particular order.
    pub replays: Vec<Withdrawal>,
    /// The default limits and the currency's override, per rule key.
    pub limits: Vec<(LimitSet, Option<LimitSet>)>,
    /// Every tier of the batch's projects: `(project_id, scope, tier)`.
    pub tiers: Vec<(String, Scope, Tier)>,
    /// Per address: its entry's id, or a new id for an entry to create.
    pub address_ids: Vec<i64>,
    pub new_ids: Vec<i64>,
    /// Per balance key; `None` where the project has no such balance.
    pub balances: Vec<Option<Balance>>,
    /// Per window: the hour's and the day's usage.
    pub usages: Vec<[Usage; 2]>,
    pub heads: Vec<Head>,
}

/// The connections a batch writer keeps from one batch to the next: its writer connection
/// and a reading one for the replay lookups, each taken from its pool when first needed.
/// Each return of a connection to its pool, and each checkout of one, costs a round trip
/// (sqlx pings it), which a busy writer then pays once per run of batches instead of once
/// per batch. Drop it to give both back (after an error: the pool checks them).
#[derive(Default)]
pub struct Held {
    writer: Option<HeldConnection>,
    reader: Option<HeldConnection>,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.writer.is_none() && self.reader.is_none()
    }
}

/// Begins the batch's transaction on the held writer connection and reads and locks what
/// `keys` name. The replays are looked up meanwhile on the held reading connection (what the
/// lookup needs is committed): inside the statement, PostgreSQL planned that lookup once for
/// the connection, while the table was still small, and kept a plan that walks the project's
/// rows in another index.
pub async fn start<'c>(
    db: &Db,
    held: &'c mut Held,
    keys: &Keys<'_>,
) -> Result<(Tx<'c>, Started), DbError> {
    let Held { writer, reader } = held;
    let lookups = async {
        let reader = match reader {
            Some(conn) => conn,
            None => reader.insert(db.reader_connection().await?),
        };
        wdb::by_foreign_ids(reader, db.engine(), &keys.foreign_ids).await
    };
    let locked = async {
        let conn = match writer {
            Some(conn) => conn,
            None => writer.insert(db.writer_connection().await?),
        };
        let mut tx = db.begin_on(conn).await?;
        let started = match db.engine() {
            Engine::Postgres => in_one_statement(&mut tx, keys).await?,
            Engine::Sqlite => in_steps(db, &mut tx, keys).await?,
        };
        Ok::<_, DbError>((tx, started))
    };
    let (locked, found) = tokio::join!(locked, lookups);
    let (tx, mut started) = locked?;
    started.replays = found?;
    Ok((tx, started))
}

/// The one row shape of the PostgreSQL statement: the column names of the tables the parts
/// read (so their parsers apply), and `part` and `i` (the key's place in its list).
const COLUMNS: &[(&str, &str)] = &[
    ("part", "text"),
    ("i", "bigint"),
    ("id", "bigint"),
    ("project_id", "text"),
    ("scope", "text"),
    ("currency", "text"),
    ("per_operation", "text"),
    ("per_hour", "text"),
    ("per_day", "text"),
    ("min_base_amount", "text"),
    ("approvers", "bigint"),
    ("available", "text"),
    ("held", "text"),
    ("version", "bigint"),
    ("updated_at", "bigint"),
    ("bucket", "text"),
    ("amount", "text"),
    ("base_amount", "text"),
    ("seq", "bigint"),
    ("hash", "text"),
];

/// `SELECT '<part>', <the columns: given, or NULL> <from>`.
fn part(name: &str, given: &[(&str, &str)], from: &str) -> String {
    let cells: Vec<String> = COLUMNS
        .iter()
        .map(|&(col, ty)| match col {
            "part" => format!("'{name}'::text AS part"),
            _ => match given.iter().find(|(c, _)| *c == col) {
                Some((_, expr)) => format!("({expr})::{ty} AS {col}"),
                None => format!("NULL::{ty} AS {col}"),
            },
        })
        .collect();
    format!("SELECT {} {from}", cells.join(", "))
}

const RULE_COLS: Cols = &[
    ("i", Ty::Int),
    ("project_id", Ty::Text),
    ("scope", Ty::Text),
    ("currency", Ty::Text),
];
const BALANCE_COLS: Cols = &[
    ("i", Ty::Int),
    ("project_id", Ty::Text),
    ("currency", Ty::Text),
];
const CHAIN_COLS: Cols = &[("i", Ty::Int), ("project_id", Ty::Text)];

fn index(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// `(i, project_id, scope, currency)` keys (of rules or limit windows) as rows.
fn rule_rows(keys: &[(&str, Scope, &str)]) -> Rows {
    let mut rows = Rows::new(RULE_COLS);
    for (i, (project_id, scope, currency)) in keys.iter().enumerate() {
        rows.push(&[
            V::Int(index(i)),
            V::Text(project_id),
            V::Text(scope.as_str()),
            V::Text(currency),
        ]);
    }
    rows
}

async fn in_one_statement(tx: &mut Tx<'_>, keys: &Keys<'_>) -> Result<Started, DbError> {
    let (rules, addresses) = (
        rule_rows(&keys.rules),
        wdb::address_key_rows(&keys.addresses),
    );
    let mut balances_in = Rows::new(BALANCE_COLS);
    for (i, (project_id, currency)) in keys.balances.iter().enumerate() {
        balances_in.push(&[V::Int(index(i)), V::Text(project_id), V::Text(currency)]);
    }
    let windows = rule_rows(&keys.windows);
    let mut chains = Rows::new(CHAIN_COLS);
    for (i, project_id) in keys.chains.iter().enumerate() {
        chains.push(&[V::Int(index(i)), V::Text(project_id)]);
    }
    // Parameters: $1 and $2 the buckets, $3 the number of ids, then one per list.
    let mut args = vec![
        super::Arg::Text(keys.buckets[0].to_string()),
        super::Arg::Text(keys.buckets[1].to_string()),
        super::Arg::Int(index(keys.new_ids)),
    ];
    let mut list = |rows: Rows| {
        let (select, mut arg) = rows.into_select(Engine::Postgres, args.len() + 1);
        args.append(&mut arg);
        select
    };
    let (rules, addresses) = (list(rules), list(addresses));
    let (balances_in, windows, chains) = (list(balances_in), list(windows), list(chains));
    let default = limits::DEFAULT_CURRENCY;
    let withdrawal_ids = IdTable::Withdrawals.name();
    let address_ids = IdTable::PayoutAddresses.name();
    let sql = [
        format!(
            "WITH balance AS MATERIALIZED (
                SELECT k.i, b.available, b.held, b.version, b.updated_at
                FROM ({balances_in}) AS k JOIN balances AS b
                  ON b.project_id = k.project_id AND b.currency = k.currency
                ORDER BY k.i FOR UPDATE OF b),
            window_key AS MATERIALIZED ({windows}),
            usage AS (
                INSERT INTO limit_usage (project_id, scope, currency, bucket, amount, base_amount)
                SELECT k.project_id, k.scope, k.currency, b.bucket, '0', '0'
                FROM window_key AS k CROSS JOIN (VALUES (0, $1::text), (1, $2::text)) AS b(j, bucket)
                WHERE (SELECT count(*) FROM balance) >= 0
                ORDER BY k.i, b.j
                ON CONFLICT (project_id, scope, currency, bucket)
                  DO UPDATE SET amount = limit_usage.amount
                RETURNING project_id, scope, currency, bucket, amount, base_amount),
            head AS MATERIALIZED (
                SELECT k.i, h.seq, h.hash FROM ({chains}) AS k JOIN audit_heads AS h
                  ON h.project_id = k.project_id
                WHERE (SELECT count(*) FROM usage) >= 0
                ORDER BY k.i FOR UPDATE OF h)"
        ),
        part(
            "limit",
            &[
                ("i", "k.i"),
                ("currency", "l.currency"),
                ("per_operation", "l.per_operation"),
                ("per_hour", "l.per_hour"),
                ("per_day", "l.per_day"),
            ],
            &format!(
                "FROM ({rules}) AS k JOIN limits AS l ON l.project_id = k.project_id
                   AND l.scope = k.scope AND l.currency IN ('{default}', k.currency)"
            ),
        ),
        part(
            "tier",
            &[
                ("project_id", "t.project_id"),
                ("scope", "t.scope"),
                ("min_base_amount", "t.min_base_amount"),
                ("approvers", "t.approvers"),
            ],
            &format!(
                "FROM approval_tiers AS t
                 WHERE t.project_id IN (SELECT k.project_id FROM ({chains}) AS k)"
            ),
        ),
        part(
            "address",
            &[
                ("i", "k.i"),
                (
                    "id",
                    &format!("COALESCE(a.id, nextval(pg_get_serial_sequence('{address_ids}', 'id')))"),
                ),
            ],
            &format!(
                "FROM ({addresses}) AS k LEFT JOIN LATERAL (SELECT id FROM payout_addresses
                   WHERE project_id = k.project_id AND currency = k.currency
                     AND address = k.address AND tag = k.tag LIMIT 1) AS a ON true"
            ),
        ),
        part(
            "id",
            &[(
                "id",
                &format!("nextval(pg_get_serial_sequence('{withdrawal_ids}', 'id'))"),
            )],
            "FROM generate_series(1, $3)",
        ),
        part(
            "balance",
            &[
                ("i", "i"),
                ("available", "available"),
                ("held", "held"),
                ("version", "version"),
                ("updated_at", "updated_at"),
            ],
            "FROM balance",
        ),
        part(
            "usage",
            &[
                ("i", "k.i"),
                ("bucket", "u.bucket"),
                ("amount", "u.amount"),
                ("base_amount", "u.base_amount"),
            ],
            "FROM usage AS u JOIN window_key AS k ON k.project_id = u.project_id
               AND k.scope = u.scope AND k.currency = u.currency",
        ),
        part("head", &[("i", "i"), ("seq", "seq"), ("hash", "hash")], "FROM head"),
    ];
    let sql = format!("{} {}", sql[0], sql[1..].join(" UNION ALL "));
    let rows = super::bind_args(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(&mut **tx)
        .await?;

    let mut limit_rows = vec![Vec::new(); keys.rules.len()];
    let mut tiers = Vec::new();
    let mut address_ids = vec![None; keys.addresses.len()];
    let mut new_ids = Vec::with_capacity(keys.new_ids);
    let mut balances = vec![None; keys.balances.len()];
    let mut usages = vec![[None, None]; keys.windows.len()];
    let mut heads = Vec::with_capacity(keys.chains.len());
    for row in &rows {
        let part: String = row.try_get("part")?;
        let at = |len: usize| -> Result<usize, DbError> {
            let i: Option<i64> = row.try_get("i")?;
            i.and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < len)
                .ok_or_else(|| corrupt("intake", "a row for no key"))
        };
        match part.as_str() {
            "limit" => limit_rows[at(keys.rules.len())?].push(row),
            "tier" => {
                let (scope, tier) = approvals::tier_of(row)?;
                tiers.push((row.try_get("project_id")?, scope, tier));
            }
            "address" => address_ids[at(keys.addresses.len())?] = Some(row.try_get("id")?),
            "id" => new_ids.push(row.try_get("id")?),
            "balance" => balances[at(keys.balances.len())?] = Some(balances::parse(row)?),
            "usage" => {
                let bucket: String = row.try_get("bucket")?;
                let j = keys
                    .buckets
                    .iter()
                    .position(|b| *b == bucket)
                    .ok_or_else(|| corrupt("limit_usage.bucket", &bucket))?;
                usages[at(keys.windows.len())?][j] = Some(limits::parse_usage(row)?);
            }
            "head" => {
                let i = at(keys.chains.len())?;
                heads.push((i, row.try_get("seq")?, row.try_get("hash")?));
            }
            other => return Err(corrupt("intake", other)),
        }
    }
    heads.sort_unstable_by_key(|h| h.0);
    if heads.len() != keys.chains.len() || heads.iter().enumerate().any(|(i, h)| h.0 != i) {
        return Err(corrupt("audit_heads", "a project without its chain head"));
    }
    Ok(Started {
        replays: Vec::new(),
        limits: limit_rows
            .into_iter()
            .map(limits::limit_sets)
            .collect::<Result<_, _>>()?,
        tiers,
        address_ids: address_ids
            .into_iter()
            .map(|id| id.ok_or_else(|| corrupt("payout_addresses.id", "no id for an address")))
            .collect::<Result<_, _>>()?,
        new_ids,
        balances,
        usages: usages
            .into_iter()
            .map(|[hour, day]| match (hour, day) {
                (Some(hour), Some(day)) => Ok([hour, day]),
                _ => Err(corrupt("limit_usage", "a window without its buckets")),
            })
            .collect::<Result<_, _>>()?,
        heads: heads
            .into_iter()
            .zip(&keys.chains)
            .map(|((_, seq, hash), project_id)| Head {
                project_id: project_id.to_string(),
                seq,
                hash,
            })
            .collect(),
    })
}

/// SQLite: the same reads one after another.
async fn in_steps(db: &Db, tx: &mut Tx<'_>, keys: &Keys<'_>) -> Result<Started, DbError> {
    let mut limits_read = Vec::with_capacity(keys.rules.len());
    for &(project_id, scope, currency) in &keys.rules {
        limits_read.push(limits::for_withdrawal(&mut **tx, project_id, scope, currency).await?);
    }
    let mut tiers = Vec::new();
    for &project_id in &keys.chains {
        for (scope, tier) in approvals::tiers_in(&mut **tx, project_id).await? {
            tiers.push((project_id.to_string(), scope, tier));
        }
    }
    let address_ids = wdb::address_ids(tx, &keys.addresses).await?;
    let new_ids = wdb::allocate_ids(tx, IdTable::Withdrawals, keys.new_ids).await?;
    let mut balances = Vec::with_capacity(keys.balances.len());
    for &(project_id, currency) in &keys.balances {
        balances.push(balances::lock(db, tx, project_id, currency).await?);
    }
    let mut usages = Vec::with_capacity(keys.windows.len());
    for &(project_id, scope, currency) in &keys.windows {
        usages.push(limits::lock_usages(tx, project_id, scope, currency, keys.buckets).await?);
    }
    let mut heads = Vec::with_capacity(keys.chains.len());
    for &project_id in &keys.chains {
        heads.push(audit::head(tx, project_id).await?);
    }
    Ok(Started {
        replays: Vec::new(),
        limits: limits_read,
        tiers,
        address_ids,
        new_ids,
        balances,
        usages,
        heads,
    })
}
