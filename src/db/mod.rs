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
pub mod confirmation;
pub mod exchanges;
pub mod invites;
pub mod jobs;
pub mod limits;
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

pub type Tx = sqlx::Transaction<'static, Any>;

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
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => DbError::Unavailable(e),
            other => DbError::Query(other),
        }
    }
}

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Query(e) => e
                .as_database_error()
                .is_some_and(|d| d.is_unique_violation()),
            _ => false,
        }
    }
}

/// The engine behind a transaction, for the few statements written per engine.
pub fn engine_of(tx: &Tx) -> Engine {
    if tx.backend_name() == "PostgreSQL" {
        Engine::Postgres
    } else {
        Engine::Sqlite
    }
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
        // `writer`: SQLite's writer checkpoints only as a last resort (see `checkpoints`).
        let options = |writer: bool| {
            AnyPoolOptions::new()
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
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

    /// A write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so a
    /// transaction never fails half-way upgrading from a read.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        let tx = match self.engine {
            Engine::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.write.begin().await?,
        };
        Ok(tx)
    }

    /// Applies pending migrations (safe to run from several instances at once on PostgreSQL:
    /// sqlx takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self.engine {
            Engine::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.write).await?,
            Engine::Postgres => {
                sqlx::migrate!("migrations/postgres")
                    .run(&self.write)
                    .await?
            }
        }
        Ok(())
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
