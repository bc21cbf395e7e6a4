//! The one database layer over two engines. Every query in the service lives below this
//! module; all use `$1..$N` placeholders and portable SQL through sqlx's `Any` driver.
//! Where the engines truly differ (row locks, job claiming) the difference sits in one
//! function here.

pub mod activity;
pub mod admin_api;
pub mod api_keys;
pub mod approvals;
pub mod audit;
pub mod audit_list;
pub mod balances;
pub mod batch;
pub mod coalesce;
pub mod confirmation;
pub mod email_status;
pub mod exchanges;
pub mod intake;
pub mod invites;
pub mod jobs;
pub mod limits;
pub mod monitoring;
mod nodelay;
pub mod pending;
pub mod prefill;
pub mod project_settings;
pub mod projects;
pub mod sessions;
pub mod slack;
pub mod users;
pub mod withdrawal_list;
pub mod withdrawals;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor};
use std::sync::Arc;
use std::time::Duration;

/// A write transaction: on a connection of the writer pool (`Tx<'static>`, from
/// [`Db::begin`]), or on one a task holds for several transactions in a row
/// ([`Db::begin_on`]).
pub type Tx<'c> = sqlx::Transaction<'c, Any>;

/// A connection of a pool, held by a task across transactions (see
/// [`Db::writer_connection`] and [`Db::reader_connection`]).
pub type HeldConnection = sqlx::pool::PoolConnection<Any>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("database error: {0}")]
    Query(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt value in column {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
    /// A row read before its lock changed before the write that relied on it (another
    /// writer got there first): the transaction must roll back; done again, it reads anew.
    #[error("changed meanwhile: {0}")]
    Stale(String),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => DbError::Unavailable(e),
            sqlx::Error::Database(ref d) if d.code().is_some_and(|c| went_away(&c)) => {
                DbError::Unavailable(e)
            }
            other => DbError::Query(other),
        }
    }
}

/// SQLSTATEs that say the server went away rather than that the statement was wrong:
/// connection exceptions (class 08) and the server shutting down or starting up (57P01
/// admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now). A restart of PostgreSQL
/// ends every session with 57P01.
fn went_away(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

impl DbError {
    pub fn is_stale(&self) -> bool {
        matches!(self, DbError::Stale(_))
    }

    /// The same error again, for a second caller (the driver's errors cannot be cloned): of
    /// the same kind, so that it is answered the same way (an unavailable database is a 503
    /// to everyone who waited for it), with the same text.
    pub fn replicate(&self) -> DbError {
        let text = self.to_string();
        match self {
            DbError::Unavailable(_) => {
                DbError::Unavailable(sqlx::Error::Io(std::io::Error::other(text)))
            }
            DbError::Stale(s) => DbError::Stale(s.clone()),
            DbError::Corrupt { column, value } => DbError::Corrupt {
                column,
                value: value.clone(),
            },
            DbError::Query(_) | DbError::Migrate(_) => DbError::Query(sqlx::Error::Protocol(text)),
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Query(e) => e
                .as_database_error()
                .is_some_and(|d| d.is_unique_violation()),
            _ => false,
        }
    }
}

/// Where the database's schema stands against the migrations this build embeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    Current,
    /// These versions are not applied yet.
    Pending(Vec<i64>),
    /// This version failed part-way.
    Dirty(i64),
    /// This applied version differs from the embedded file of the same version.
    Modified(i64),
}

/// SQLite's "database is locked" (another connection holds the write lock).
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "5" || c == "517")
}

/// The engine behind a transaction, for the few statements written per engine.
pub fn engine_of(tx: &Tx<'_>) -> Engine {
    if tx.backend_name() == "PostgreSQL" {
        Engine::Postgres
    } else {
        Engine::Sqlite
    }
}

/// The placeholders of a multi-row `VALUES` list: `rows` tuples of `cols` parameters each,
/// numbered from `$first` row by row (`($3, $4), ($5, $6)` for 2, 2, 3). Batched writes bind
/// their rows in that order.
pub fn values_list(rows: usize, cols: usize, first: usize) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(rows * (cols * 5 + 4));
    for r in 0..rows {
        s.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            let sep = if c == 0 { "" } else { ", " };
            let _ = write!(s, "{sep}${}", first + r * cols + c);
        }
        s.push(')');
    }
    s
}

/// A value to bind to a statement whose text is built at run time.
#[derive(Clone, Debug)]
pub enum Arg {
    Text(String),
    Int(i64),
    /// A NULL of type text (PostgreSQL types every parameter).
    NullText,
    /// A NULL of type bigint.
    NullInt,
}

/// Binds `args`, in order, after whatever `q` has bound.
pub fn bind_args<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
            Arg::NullText => q.bind(None::<String>),
            Arg::NullInt => q.bind(None::<i64>),
        };
    }
    q
}

pub fn corrupt(column: &'static str, value: impl Into<String>) -> DbError {
    DbError::Corrupt {
        column,
        value: value.into(),
    }
}

/// SQLite checkpoints (copying the WAL back into the database file, with an fsync) are run
/// by a background task on a read connection, every [`CHECKPOINT_EVERY`]; left to the default
/// (every 1,000 pages, by the committing connection) they ran inside the single writer's
/// commits every few dozen withdrawals and stalled everything queued behind it. The writer
/// still checkpoints itself if the WAL grows past 16,384 pages (4 KiB each), so the WAL stays
/// bounded even if the background task falls behind.
const WRITER_AUTOCHECKPOINT: &str = "PRAGMA wal_autocheckpoint = 16384";
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Runs `PASSIVE` checkpoints (they wait for no reader or writer) until the pool closes.
async fn checkpoints(read: AnyPool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if read.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&read)
            .await
        {
            if read.is_closed() {
                break;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
        }
    }
}

/// Connection pools. On SQLite all writes go through one connection (SQLite has one writer
/// anyway; queueing in the pool is fairer and faster than SQLITE_BUSY back-off) while reads
/// use several; on PostgreSQL both are the same pool.
#[derive(Clone, Debug)]
pub struct Db {
    write: AnyPool,
    read: AnyPool,
    engine: Engine,
    /// API key lookups, coalesced (see [`projects::find_api_key`]).
    api_keys: Arc<coalesce::Coalesced<String, projects::ApiKeyWithProject>>,
    /// SQLite's checkpoint task, stopped when the last clone of this `Db` goes.
    _checkpoints: Option<Arc<StopOnDrop>>,
}

#[derive(Debug)]
struct StopOnDrop(tokio::task::AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            Engine::Postgres
        };
        let port = nodelay::port_of(url);
        // `writer`: SQLite's writer checkpoints only as a last resort (see `checkpoints`).
        let options = |writer: bool| {
            AnyPoolOptions::new()
                .acquire_timeout(Duration::from_secs(10))
                // A pooled SQLite connection is a file handle in this process: nothing to find
                // broken, and the check is a round trip to its thread on every checkout.
                .test_before_acquire(engine == Engine::Postgres)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if engine == Engine::Postgres {
                            nodelay::set_on_sockets_to(port);
                        }
                        if engine == Engine::Sqlite {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            if writer {
                                conn.execute(WRITER_AUTOCHECKPOINT).await?;
                            }
                        }
                        Ok(())
                    })
                })
        };
        let db = match engine {
            Engine::Sqlite => {
                let write = options(true).max_connections(1).connect(url).await?;
                let read = options(false)
                    .max_connections(max_connections.clamp(1, 8))
                    .connect(url)
                    .await?;
                let task = tokio::spawn(checkpoints(read.clone()));
                Db {
                    write,
                    read,
                    engine,
                    api_keys: Arc::new(coalesce::Coalesced::new(projects::api_keys_by_hashes)),
                    _checkpoints: Some(Arc::new(StopOnDrop(task.abort_handle()))),
                }
            }
            Engine::Postgres => {
                let pool = options(false)
                    .max_connections(max_connections.max(2))
                    .connect(url)
                    .await?;
                Db {
                    write: pool.clone(),
                    read: pool,
                    engine,
                    api_keys: Arc::new(coalesce::Coalesced::new(projects::api_keys_by_hashes)),
                    _checkpoints: None,
                }
            }
        };
        Ok(db)
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// For reads that need no transaction.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// For single writes outside a transaction.
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// A connection of the writer pool, for a task that runs several transactions in a row
    /// on it ([`Db::begin_on`]). Every return of a connection to its pool costs a round trip
    /// (sqlx checks it before taking it back) and waits for a task to be scheduled; a batch
    /// writer holding its connection pays that once per run of batches, not once per batch.
    /// On SQLite this is the one writer connection: hold it briefly.
    pub async fn writer_connection(&self) -> Result<HeldConnection, DbError> {
        Ok(self.write.acquire().await?)
    }

    /// A connection of the reading pool, for a task that reads on it again and again (the
    /// same round trip saved as [`Db::writer_connection`]'s).
    pub async fn reader_connection(&self) -> Result<HeldConnection, DbError> {
        Ok(self.read.acquire().await?)
    }

    /// [`Db::begin`] on a held connection.
    pub async fn begin_on<'c>(&self, conn: &'c mut HeldConnection) -> Result<Tx<'c>, DbError> {
        use sqlx::Connection;
        let tx = match self.engine {
            Engine::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => conn.begin().await?,
        };
        Ok(tx)
    }

    /// A write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so a
    /// transaction never fails half-way upgrading from a read.
    pub async fn begin(&self) -> Result<Tx<'static>, DbError> {
        let tx = match self.engine {
            Engine::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.write.begin().await?,
        };
        Ok(tx)
    }

    /// The migrations this build embeds for its engine.
    fn migrator(&self) -> sqlx::migrate::Migrator {
        match self.engine {
            Engine::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Engine::Postgres => sqlx::migrate!("migrations/postgres"),
        }
    }

    /// Applies pending migrations; safe to run from several instances at once. PostgreSQL:
    /// sqlx holds an advisory lock for the run. SQLite has no such lock, and two runners would
    /// both try to apply the same migration, so the whole run happens in one `BEGIN IMMEDIATE`
    /// transaction (sqlx's per-migration transactions become savepoints): a second runner
    /// waits for the write lock, then finds everything applied.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = self.migrator();
        match self.engine {
            Engine::Postgres => migrator.run(&self.write).await?,
            Engine::Sqlite => {
                let mut tx = self.begin_sqlite_exclusive().await?;
                // `run(&mut *tx)` would make this future not `Send` (sqlx's "Acquire is not
                // general enough"); `run_direct` is the same run on a connection.
                migrator.run_direct(None, &mut *tx, false).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// `BEGIN IMMEDIATE`, retried while another runner holds the write lock for longer than
    /// the connection's busy timeout (a long migration elsewhere).
    async fn begin_sqlite_exclusive(&self) -> Result<Tx<'static>, DbError> {
        let mut attempts = 0;
        loop {
            match self.write.begin_with("BEGIN IMMEDIATE").await {
                Ok(tx) => return Ok(tx),
                Err(e) if attempts < 30 && is_busy(&e) => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the database has exactly the migrations this build expects (for `/readyz`).
    /// Migrations applied by a newer build that this one does not know are tolerated: during
    /// a rolling upgrade the old instances keep serving.
    pub async fn schema_status(&self) -> Result<SchemaStatus, DbError> {
        use sqlx::migrate::Migrate;
        let migrator = self.migrator();
        let mut conn = self.read.acquire().await?;
        let table = migrator.table_name.as_ref();
        let exists = match self.engine {
            Engine::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Engine::Postgres => {
                "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let n: i64 = sqlx::Row::try_get(
            &sqlx::query(exists)
                .bind(table)
                .fetch_one(&mut *conn)
                .await?,
            "n",
        )?;
        if n == 0 {
            return Ok(SchemaStatus::Pending(
                migrator.iter().map(|m| m.version).collect(),
            ));
        }
        if let Some(v) = conn.dirty_version(table).await? {
            return Ok(SchemaStatus::Dirty(v));
        }
        let applied = conn.list_applied_migrations(table).await?;
        let mut pending = Vec::new();
        for m in migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
        {
            match applied.iter().find(|a| a.version == m.version) {
                None => pending.push(m.version),
                Some(a) if a.checksum != m.checksum => {
                    return Ok(SchemaStatus::Modified(m.version));
                }
                Some(_) => {}
            }
        }
        Ok(if pending.is_empty() {
            SchemaStatus::Current
        } else {
            SchemaStatus::Pending(pending)
        })
    }

    /// Readiness: true when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.read).await.is_ok()
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// Opens a read transaction whose statements all see one snapshot (SQLite's deferred
    /// transactions in WAL mode already do; PostgreSQL needs REPEATABLE READ).
    pub fn snapshot_begin(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "BEGIN",
            Engine::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }

    /// `FOR UPDATE` where the engine has row locks; SQLite's `BEGIN IMMEDIATE` already made
    /// the transaction the only writer.
    pub fn for_update(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR UPDATE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::values_list;

    #[test]
    fn values_lists_number_rows_in_order() {
        assert_eq!(values_list(1, 3, 1), "($1, $2, $3)");
        assert_eq!(values_list(2, 2, 3), "($3, $4), ($5, $6)");
        assert_eq!(values_list(0, 2, 1), "");
    }
}
