//! The audit log: append-only and hash-chained per project. Each record's hash covers the
//! previous record's hash and all of its own fields, so altering or removing a row breaks the
//! chain at that row, which `verify` names.

use super::batch::{Arg, Cols, Rows, Ty, V, Writes};
use super::{Db, DbError, Tx};
use crate::crypto::sha256_hex;
use sqlx::Row;

pub const GENESIS: &str = "genesis";

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    System,
    Cli,
    ApiKey(String),
    User(String),
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::System => "system",
            Actor::Cli => "cli",
            Actor::ApiKey(_) => "api_key",
            Actor::User(_) => "user",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Actor::System | Actor::Cli => "",
            Actor::ApiKey(id) | Actor::User(id) => id,
        }
    }
}

/// Where a request came from, for the record.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

pub struct Entry<'a> {
    pub project_id: &'a str,
    pub actor: &'a Actor,
    pub action: &'a str,
    pub subject: String,
    pub details: serde_json::Value,
    pub origin: &'a Origin,
}

#[allow(clippy::too_many_arguments)]
fn record_hash(
    prev: &str,
    seq: i64,
    created_at: i64,
    actor_kind: &str,
    actor_id: &str,
    action: &str,
    subject: &str,
    details: &str,
    ip: Option<&str>,
    ua: Option<&str>,
) -> String {
    let canonical = serde_json::json!([
        prev, seq, created_at, actor_kind, actor_id, action, subject, details, ip, ua
    ]);
    sha256_hex(canonical.to_string().as_bytes())
}

/// Appends one record in the caller's transaction. Taking the chain's head row serializes
/// appends per project, so the chain never forks.
pub async fn append(tx: &mut Tx<'_>, e: &Entry<'_>, now: i64) -> Result<(), DbError> {
    append_many(tx, std::slice::from_ref(e), now).await
}

/// Appends records in the order given, in the caller's transaction: per project, one head
/// update reserves their sequence numbers (and locks the head until commit, so the chain
/// never forks), the chain is computed here, and the records and the new head are written
/// together (see [`Writes`]).
pub async fn append_many(tx: &mut Tx<'_>, entries: &[Entry<'_>], now: i64) -> Result<(), DbError> {
    let mut writes = Writes::new(super::engine_of(tx));
    let mut projects: Vec<&str> = Vec::new();
    for e in entries {
        if !projects.contains(&e.project_id) {
            projects.push(e.project_id);
        }
    }
    for project_id in projects {
        let mine: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.project_id == project_id)
            .collect();
        let head = reserve(tx, project_id, mine.len()).await?;
        push_chain(&mut writes, head, &mine, now);
    }
    writes.run(tx).await
}

/// A project's chain head, with sequence numbers reserved for the records to append.
pub struct Reserved {
    project_id: String,
    /// The last reserved sequence number.
    last: i64,
    n: i64,
    /// The hash of the record before the first reserved one.
    prev: String,
}

/// A project's chain head as read (and locked) by a transaction that will append to it.
pub struct Head {
    pub project_id: String,
    /// The last record's sequence number.
    pub seq: i64,
    /// The last record's hash.
    pub hash: String,
}

impl Head {
    /// The next `n` sequence numbers, for [`push_chain`] (which moves the head past them).
    pub fn reserve(self, n: usize) -> Reserved {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        Reserved {
            project_id: self.project_id,
            last: self.seq.saturating_add(n),
            n,
            prev: self.hash,
        }
    }
}

/// Reads the project's chain head, locked until the transaction ends (PostgreSQL; SQLite's
/// `BEGIN IMMEDIATE` already holds the database), so take it after the balance and limit rows.
pub async fn head(tx: &mut Tx<'_>, project_id: &str) -> Result<Head, DbError> {
    let sql = match super::engine_of(tx) {
        super::Engine::Postgres => {
            "SELECT seq, hash FROM audit_heads WHERE project_id = $1 FOR UPDATE"
        }
        super::Engine::Sqlite => "SELECT seq, hash FROM audit_heads WHERE project_id = $1",
    };
    let row = sqlx::query(sql)
        .bind(project_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(Head {
        project_id: project_id.to_string(),
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
    })
}

/// Reserves `n` sequence numbers on the project's chain; its head row stays locked until the
/// transaction ends, so take it after the balance and limit rows.
pub async fn reserve(tx: &mut Tx<'_>, project_id: &str, n: usize) -> Result<Reserved, DbError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let head = sqlx::query(
        "UPDATE audit_heads SET seq = seq + $2 WHERE project_id = $1 RETURNING seq, hash",
    )
    .bind(project_id)
    .bind(n)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Reserved {
        project_id: project_id.to_string(),
        last: head.try_get("seq")?,
        n,
        prev: head.try_get("hash")?,
    })
}

const RECORD_COLS: Cols = &[
    ("seq", Ty::Int),
    ("actor_kind", Ty::Text),
    ("actor_id", Ty::Text),
    ("action", Ty::Text),
    ("subject", Ty::Text),
    ("details", Ty::Json),
    ("ip", Ty::Text),
    ("user_agent", Ty::Text),
    ("created_at", Ty::Int),
    ("prev_hash", Ty::Text),
    ("hash", Ty::Text),
];

/// Adds the records (as many as were reserved, all of `head`'s project) and the new head
/// (its sequence number too: a [`Head`] read with [`head`] has not moved yet).
pub fn push_chain(writes: &mut Writes, head: Reserved, entries: &[&Entry<'_>], now: i64) {
    let mut prev = head.prev;
    let mut rows = Rows::new(RECORD_COLS);
    for (seq, e) in (head.last - head.n + 1..).zip(entries) {
        let details = e.details.to_string();
        let hash = record_hash(
            &prev,
            seq,
            now,
            e.actor.kind(),
            e.actor.id(),
            e.action,
            &e.subject,
            &details,
            e.origin.ip.as_deref(),
            e.origin.user_agent.as_deref(),
        );
        rows.push(&[
            V::Int(seq),
            V::Text(e.actor.kind()),
            V::Text(e.actor.id()),
            V::Text(e.action),
            V::Text(&e.subject),
            V::Text(&details),
            V::OptText(e.origin.ip.as_deref()),
            V::OptText(e.origin.user_agent.as_deref()),
            V::Int(now),
            V::Text(&prev),
            V::Text(&hash),
        ]);
        prev = hash;
    }
    if rows.is_empty() {
        return;
    }
    let n = rows.len() as u64;
    let (select, rows) = rows.into_select(writes.engine(), 2);
    let mut args = vec![Arg::Text(head.project_id.clone())];
    args.extend(rows);
    writes.push(
        format!(
            "INSERT INTO audit_log (project_id, seq, actor_kind, actor_id, action, subject, details, ip, user_agent, created_at, prev_hash, hash)
             SELECT $1, x.* FROM ({select}) AS x"
        ),
        args,
        Some(n),
    );
    writes.push(
        "UPDATE audit_heads SET seq = $1, hash = $2 WHERE project_id = $3".to_string(),
        vec![
            Arg::Int(head.last),
            Arg::Text(prev),
            Arg::Text(head.project_id),
        ],
        Some(1),
    );
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        records: i64,
    },
    /// The first record (by sequence number) whose hash or link does not hold, or the first
    /// missing sequence number.
    Broken {
        seq: i64,
        reason: String,
    },
}

pub async fn verify(db: &Db, project_id: &str) -> Result<Verdict, DbError> {
    // The log and its head from one snapshot: appends committed meanwhile must not look like
    // records missing at the end.
    let mut snapshot = db.reader().begin_with(db.snapshot_begin()).await?;
    let rows = sqlx::query(
        "SELECT seq, actor_kind, actor_id, action, subject, details, ip, user_agent, created_at, prev_hash, hash
         FROM audit_log WHERE project_id = $1 ORDER BY seq",
    )
    .bind(project_id)
    .fetch_all(&mut *snapshot)
    .await?;
    let head = sqlx::query("SELECT seq, hash FROM audit_heads WHERE project_id = $1")
        .bind(project_id)
        .fetch_optional(&mut *snapshot)
        .await?;
    snapshot.rollback().await?;
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1;
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        if seq != expected_seq {
            return Ok(Verdict::Broken {
                seq: expected_seq,
                reason: "record missing".into(),
            });
        }
        let stored_prev: String = row.try_get("prev_hash")?;
        let stored: String = row.try_get("hash")?;
        let ip: Option<String> = row.try_get("ip")?;
        let ua: Option<String> = row.try_get("user_agent")?;
        let computed = record_hash(
            &prev,
            seq,
            row.try_get("created_at")?,
            &row.try_get::<String, _>("actor_kind")?,
            &row.try_get::<String, _>("actor_id")?,
            &row.try_get::<String, _>("action")?,
            &row.try_get::<String, _>("subject")?,
            &row.try_get::<String, _>("details")?,
            ip.as_deref(),
            ua.as_deref(),
        );
        if stored_prev != prev || computed != stored {
            return Ok(Verdict::Broken {
                seq,
                reason: "record altered".into(),
            });
        }
        prev = stored;
        expected_seq += 1;
    }
    if let Some(head) = head {
        let head_seq: i64 = head.try_get("seq")?;
        let head_hash: String = head.try_get("hash")?;
        if head_seq != expected_seq - 1 || head_hash != prev {
            return Ok(Verdict::Broken {
                seq: expected_seq,
                reason: "records missing at the end of the log".into(),
            });
        }
    }
    Ok(Verdict::Intact {
        records: expected_seq - 1,
    })
}
