//! The outbox. Jobs are written in the transaction that causes them and claimed afterwards
//! with a lease: whoever holds an unexpired lease runs the job; a crashed holder's lease runs
//! out and another worker takes it. At least once, never lost; `dedupe_key` keeps one job per
//! effect.

use super::batch::{Cols, Rows, Ty, V, Writes};
use super::{Db, DbError, Engine, Tx};
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Callback,
    PayoutSubmit,
    PayoutCheck,
    Email,
    /// An approval email to one approver, rendered (with its link token) when sent.
    ApprovalEmail,
    /// A message to the project's Slack channel (see `notify::slack`).
    Slack,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Callback => "callback",
            JobKind::PayoutSubmit => "payout_submit",
            JobKind::PayoutCheck => "payout_check",
            JobKind::Email => "email",
            JobKind::ApprovalEmail => "approval_email",
            JobKind::Slack => "slack",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "callback" => Some(JobKind::Callback),
            "payout_submit" => Some(JobKind::PayoutSubmit),
            "payout_check" => Some(JobKind::PayoutCheck),
            "email" => Some(JobKind::Email),
            "approval_email" => Some(JobKind::ApprovalEmail),
            "slack" => Some(JobKind::Slack),
            _ => None,
        }
    }
}

pub struct NewJob<'a> {
    pub kind: JobKind,
    pub project_id: &'a str,
    pub withdrawal_id: Option<i64>,
    pub dedupe_key: String,
    pub payload: String,
    pub run_at: i64,
    /// After this instant a failing job is marked dead instead of retried.
    pub deadline: Option<i64>,
}

/// Queues a job unless one with the same dedupe key exists.
pub async fn enqueue(tx: &mut Tx<'_>, job: &NewJob<'_>, now: i64) -> Result<(), DbError> {
    enqueue_many(tx, std::slice::from_ref(job), now).await
}

/// [`enqueue`] for several jobs in one statement.
pub async fn enqueue_many(tx: &mut Tx<'_>, jobs: &[NewJob<'_>], now: i64) -> Result<(), DbError> {
    let mut writes = Writes::new(super::engine_of(tx));
    push_jobs(&mut writes, jobs, now);
    writes.run(tx).await
}

const JOB_COLS: Cols = &[
    ("kind", Ty::Text),
    ("project_id", Ty::Text),
    ("withdrawal_id", Ty::Int),
    ("dedupe_key", Ty::Text),
    ("payload", Ty::Text),
    ("status", Ty::Text),
    ("attempts", Ty::Int),
    ("run_at", Ty::Int),
    ("deadline", Ty::Int),
    ("created_at", Ty::Int),
    ("updated_at", Ty::Int),
];

/// Adds the insert of jobs, each unless one with the same dedupe key exists.
pub fn push_jobs(writes: &mut Writes, jobs: &[NewJob<'_>], now: i64) {
    if jobs.is_empty() {
        return;
    }
    let mut rows = Rows::new(JOB_COLS);
    for job in jobs {
        rows.push(&[
            V::Text(job.kind.as_str()),
            V::Text(job.project_id),
            V::OptInt(job.withdrawal_id),
            V::Text(&job.dedupe_key),
            V::Text(&job.payload),
            V::Text("queued"),
            V::Int(0),
            V::Int(job.run_at),
            V::OptInt(job.deadline),
            V::Int(now),
            V::Int(now),
        ]);
    }
    let (select, args) = rows.into_select(writes.engine(), 1);
    let sql = format!(
        "INSERT INTO jobs (kind, project_id, withdrawal_id, dedupe_key, payload, status, attempts, run_at, deadline, created_at, updated_at)
         {select} WHERE true
         ON CONFLICT (dedupe_key) DO NOTHING"
    );
    writes.push(sql, args, None);
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub project_id: Option<String>,
    pub withdrawal_id: Option<i64>,
    pub dedupe_key: Option<String>,
    pub payload: String,
    /// Including the current one.
    pub attempts: i64,
    pub deadline: Option<i64>,
    pub created_at: i64,
}

const JOB_COLUMNS: &str =
    "id, kind, project_id, withdrawal_id, dedupe_key, payload, attempts, deadline, created_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Job, DbError> {
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        project_id: r.try_get("project_id")?,
        withdrawal_id: r.try_get("withdrawal_id")?,
        dedupe_key: r.try_get("dedupe_key")?,
        payload: r.try_get("payload")?,
        attempts: r.try_get("attempts")?,
        deadline: r.try_get("deadline")?,
        created_at: r.try_get("created_at")?,
    })
}

/// The claim statement: `$1` owner, `$2` lease end, `$3` now, `$4` how many. It finds due
/// jobs through `jobs_queued`, which holds queued jobs only.
pub fn claim_sql(engine: Engine) -> String {
    let lock = match engine {
        Engine::Postgres => " FOR UPDATE SKIP LOCKED",
        Engine::Sqlite => "",
    };
    format!(
        "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3
         WHERE id IN (
            SELECT id FROM jobs
            WHERE status = 'queued' AND run_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
            ORDER BY run_at LIMIT $4{lock})
         RETURNING {JOB_COLUMNS}"
    )
}

/// Claims up to `limit` due jobs for `owner` until `now + lease_ms`. On PostgreSQL, `SKIP
/// LOCKED` lets several instances claim side by side without waiting on each other; SQLite
/// has a single writer, so the plain form is already exclusive.
pub async fn claim(
    db: &Db,
    owner: &str,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Job>, DbError> {
    let claim = sqlx::query(sqlx::AssertSqlSafe(claim_sql(db.engine())))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit);
    let rows = match db.engine() {
        Engine::Sqlite => claim.fetch_all(db.writer()).await?,
        // The due jobs must be read in `run_at` order from `jobs_queued`, never gathered and
        // sorted: under a backlog (a callback receiver down for hours, a burst of payouts)
        // thousands are due, and a plan made without fresh statistics (a young or fast-
        // changing table) sorted all of them on every claim: 7.8 ms against 0.7 ms with
        // 17,500 due. Sorting is ruled out for this one statement.
        Engine::Postgres => {
            let mut tx = db.begin().await?;
            sqlx::raw_sql("SET LOCAL enable_sort = off")
                .execute(&mut *tx)
                .await?;
            let rows = claim.fetch_all(&mut *tx).await?;
            tx.commit().await?;
            rows
        }
    };
    rows.iter().map(from_row).collect()
}

/// Finishes the jobs this worker holds among `ids`, in one statement (the worker's round
/// finishes its batch together rather than taking the single SQLite writer once per job).
pub async fn complete_all(db: &Db, ids: &[i64], owner: &str, now: i64) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_until = NULL, last_error = NULL, updated_at = $1
         WHERE lease_owner = $2 AND id IN {}",
        super::values_list(1, ids.len(), 3)
    );
    // Planned anew each time, as `withdrawals::by_ids` is (a plan cached while the table was
    // young scans all of it: 2 ms instead of 0.3 ms for 16 jobs among 60,000).
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(now)
        .bind(owner);
    for id in ids {
        q = q.bind(*id);
    }
    q.execute(db.writer()).await?;
    Ok(())
}

/// Puts a job back for a later attempt. `counts` false means "not a failure, just not yet"
/// (the attempt is handed back).
pub async fn reschedule(
    db: &Db,
    id: i64,
    owner: &str,
    run_at: i64,
    error: Option<&str>,
    counts: bool,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, run_at = $1, last_error = $2,
            attempts = attempts - $3, updated_at = $4
         WHERE id = $5 AND lease_owner = $6",
    )
    .bind(run_at)
    .bind(error)
    .bind(i64::from(!counts))
    .bind(now)
    .bind(id)
    .bind(owner)
    .execute(db.writer())
    .await?;
    Ok(())
}

pub async fn kill(db: &Db, id: i64, owner: &str, error: &str, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE jobs SET status = 'dead', lease_owner = NULL, lease_until = NULL, last_error = $1, updated_at = $2
         WHERE id = $3 AND lease_owner = $4",
    )
    .bind(error)
    .bind(now)
    .bind(id)
    .bind(owner)
    .execute(db.writer())
    .await?;
    Ok(())
}

pub struct Attempt<'a> {
    pub job_id: i64,
    pub attempt: i64,
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    pub error: Option<&'a str>,
    pub duration_ms: i64,
}

pub async fn record_attempt(db: &Db, a: &Attempt<'_>) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO delivery_attempts (job_id, attempt, attempted_at, status_code, error, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(a.job_id)
    .bind(a.attempt)
    .bind(a.attempted_at)
    .bind(a.status_code)
    .bind(a.error)
    .bind(a.duration_ms)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Why the payout rail has not taken or settled withdrawal `withdrawal_id` yet, while its
/// payout job waits to try again: (the last error, attempts so far, next try at).
pub async fn payout_retrying(
    db: &Db,
    withdrawal_id: i64,
) -> Result<Option<(String, i64, i64)>, DbError> {
    let row = sqlx::query(
        "SELECT last_error, attempts, run_at FROM jobs
         WHERE withdrawal_id = $1 AND (kind = 'payout_submit' OR kind = 'payout_check')
           AND status = 'queued' AND last_error IS NOT NULL
         ORDER BY id DESC LIMIT 1",
    )
    .bind(withdrawal_id)
    .fetch_optional(db.reader())
    .await?;
    row.map(|r| {
        Ok((
            r.try_get("last_error")?,
            r.try_get("attempts")?,
            r.try_get("run_at")?,
        ))
    })
    .transpose()
}

/// A delivery as the UI and tests see it: the job and all of its attempts.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub job_id: i64,
    pub kind: String,
    pub status: String,
    pub attempts: Vec<AttemptRow>,
    pub last_error: Option<String>,
    pub payload: String,
    /// A worker holds it right now.
    pub leased: bool,
}

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub attempt: i64,
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

pub async fn deliveries_for_withdrawal(
    db: &Db,
    withdrawal_id: i64,
    kind: JobKind,
) -> Result<Vec<Delivery>, DbError> {
    let jobs = sqlx::query(
        "SELECT id, kind, status, last_error, payload, lease_owner FROM jobs WHERE withdrawal_id = $1 AND kind = $2 ORDER BY id",
    )
    .bind(withdrawal_id)
    .bind(kind.as_str())
    .fetch_all(db.reader())
    .await?;
    // Every attempt of those jobs in one read, in job order (not one read per job).
    let attempts = sqlx::query(
        "SELECT a.job_id, a.attempt, a.attempted_at, a.status_code, a.error, a.duration_ms
         FROM delivery_attempts a JOIN jobs j ON j.id = a.job_id
         WHERE j.withdrawal_id = $1 AND j.kind = $2 ORDER BY a.job_id, a.id",
    )
    .bind(withdrawal_id)
    .bind(kind.as_str())
    .fetch_all(db.reader())
    .await?;
    let mut attempts = attempts.iter().peekable();
    let mut out = Vec::with_capacity(jobs.len());
    for j in &jobs {
        let job_id: i64 = j.try_get("id")?;
        let mut of_job = Vec::new();
        // Both reads are in job order; an attempt of a job queued between them is skipped.
        while let Some(a) =
            attempts.next_if(|a| a.try_get::<i64, _>("job_id").is_ok_and(|id| id <= job_id))
        {
            if a.try_get::<i64, _>("job_id")? == job_id {
                of_job.push(AttemptRow {
                    attempt: a.try_get("attempt")?,
                    attempted_at: a.try_get("attempted_at")?,
                    status_code: a.try_get("status_code")?,
                    error: a.try_get("error")?,
                    duration_ms: a.try_get("duration_ms")?,
                });
            }
        }
        out.push(Delivery {
            job_id,
            kind: j.try_get("kind")?,
            status: j.try_get("status")?,
            attempts: of_job,
            last_error: j.try_get("last_error")?,
            payload: j.try_get("payload")?,
            leased: j.try_get::<Option<String>, _>("lease_owner")?.is_some(),
        });
    }
    Ok(out)
}

/// When the job with this dedupe key is still queued (not yet done or given up): when it is
/// due.
pub async fn queued_run_at(db: &Db, dedupe_key: &str) -> Result<Option<i64>, DbError> {
    let row = sqlx::query("SELECT run_at FROM jobs WHERE dedupe_key = $1 AND status = 'queued'")
        .bind(dedupe_key)
        .fetch_optional(db.reader())
        .await?;
    row.map(|r| r.try_get("run_at"))
        .transpose()
        .map_err(Into::into)
}

/// Re-queues a delivered or dead job by hand (re-send a callback).
pub async fn requeue(db: &Db, id: i64, now: i64, deadline: Option<i64>) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'queued', run_at = $1, deadline = $2, lease_owner = NULL, lease_until = NULL, updated_at = $1
         WHERE id = $3 AND status IN ('done', 'dead')",
    )
    .bind(now)
    .bind(deadline)
    .bind(id)
    .execute(db.writer())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Hands back every job `owner` still holds without having finished it (claimed but not
/// started, or abandoned at shutdown): another instance can claim them at once instead of
/// after the lease runs out. The attempt taken at claim time is handed back too. Returns how
/// many were released.
pub async fn release(db: &Db, owner: &str, now: i64) -> Result<u64, DbError> {
    let r = sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL,
            attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $1
         WHERE lease_owner = $2 AND status = 'queued'",
    )
    .bind(now)
    .bind(owner)
    .execute(db.writer())
    .await?;
    Ok(r.rows_affected())
}
