//! The background loop: claims due jobs from the outbox (callbacks, payouts, email, Slack)
//! with a lease, runs them with bounded concurrency, and cancels expired pending withdrawals.
//! Several instances may run it against one database; leases keep each job with one runner
//! at a time.

use crate::clock::{DAY_MS, HOUR_MS, MINUTE_MS};
use crate::db::audit::{Actor, Origin};
use crate::db::jobs::{self, Attempt, Job, JobKind};
use crate::db::{DbError, projects, sessions, slack as slack_db, withdrawals as wdb};
use crate::domain::withdrawal::{Event, Status};
use crate::notify::callback::{CallbackJob, retry_delay_ms, signed_headers};
use crate::notify::slack_send::{self, SendResult};
use crate::payout::{PayoutError, PayoutRequest, PayoutState};
use crate::service::withdrawals::{self as svc, Change, ChangeError};
use crate::state::AppState;
use futures_util::stream::{self, StreamExt};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What became of one run of a job.
#[derive(Debug)]
enum Outcome {
    Done,
    /// Try again at this instant; `counts` false hands the attempt back (not a failure).
    Retry {
        at: i64,
        error: Option<String>,
        counts: bool,
    },
    Dead(String),
}

/// A unit of a round's work: one job, or all of its payout jobs together.
enum Unit {
    One(Job),
    Payouts(Vec<Job>),
}

/// What the rail's answer means for a payout job: an outcome now, or a change to record.
enum Asked {
    Outcome(Outcome),
    Step(Box<Step>),
}

/// A status change the rail's answer calls for (recorded with the batch's others).
struct Step {
    withdrawal: wdb::Withdrawal,
    event: Event,
    note: String,
    error: Option<String>,
    txid: Option<String>,
    check_at: Option<i64>,
}

type DoneSender = tokio::sync::mpsc::UnboundedSender<i64>;

pub struct Worker {
    state: AppState,
    owner: String,
    /// When this worker last purged dead sessions (by the service's clock).
    purged_at: AtomicI64,
}

/// How often each worker deletes dead sessions, and how long a session stays after it died
/// (so that a look at the table shows the day's sign-outs and expiries).
const SESSION_PURGE_EVERY_MS: i64 = HOUR_MS;
const SESSION_KEPT_DEAD_MS: i64 = DAY_MS;
/// Sessions deleted per statement (each a short write).
const SESSION_PURGE_BATCH: i64 = 1_000;

impl Worker {
    pub fn new(state: AppState) -> Worker {
        let owner = format!(
            "{}-{}",
            std::process::id(),
            crate::crypto::random_token::<6>().unwrap_or_default()
        );
        Worker {
            state,
            owner,
            purged_at: AtomicI64::new(i64::MIN),
        }
    }

    /// This worker's lease owner id (unique per run).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until `shutdown` turns true. Jobs already running get `worker.shutdown_grace_secs`
    /// to finish; claimed jobs not yet started are not started. Whatever this worker still
    /// holds at the end is released for other instances at once.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.state.settings.worker.poll_interval_ms.max(10));
        let grace = Duration::from_secs(self.state.settings.worker.shutdown_grace_secs);
        loop {
            if *shutdown.borrow() {
                break;
            }
            let outcome = tokio::select! {
                r = self.round(&shutdown) => Some(r),
                _ = grace_over(shutdown.clone(), grace) => None,
            };
            let busy = match outcome {
                None => {
                    tracing::warn!(
                        grace_secs = grace.as_secs(),
                        "shutdown grace over: abandoning the jobs still running"
                    );
                    break;
                }
                Some(Ok(n)) => n > 0,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "worker round failed; retrying");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = self.state.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        match self.release_claims().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "handed back claimed jobs that did not finish"),
            Err(e) => {
                tracing::warn!(error = %e, "could not hand back claimed jobs; their leases will run out")
            }
        }
        tracing::info!("worker stopped");
    }

    /// Releases the leases of jobs this worker claimed and did not finish.
    pub async fn release_claims(&self) -> Result<u64, DbError> {
        jobs::release(&self.state.db, &self.owner, self.state.now()).await
    }

    /// One pass: expire, then claim and run a batch. Returns how many items it handled. Once
    /// `stop` turns true no further claimed job is started.
    pub async fn round(&self, stop: &watch::Receiver<bool>) -> Result<usize, DbError> {
        let expired = svc::expire_due(&self.state).await?
            + crate::service::confirmation::expire_due(&self.state).await?;
        self.purge_sessions().await;
        let s = &self.state.settings.worker;
        let now = self.state.now();
        let lease_ms = i64::try_from(s.lease_secs).unwrap_or(60) * 1000;
        let claimed = jobs::claim(
            &self.state.db,
            &self.owner,
            now,
            lease_ms,
            i64::from(s.batch_size),
        )
        .await?;
        let n = claimed.len();
        let stop = stop.clone();
        // Payout jobs go together (see `payouts`); the others run one by one, side by side.
        let (payouts, others): (Vec<Job>, Vec<Job>) = claimed.into_iter().partition(|j| {
            matches!(
                JobKind::parse(&j.kind),
                Some(JobKind::PayoutSubmit | JobKind::PayoutCheck)
            )
        });
        // Jobs that are simply done are marked so together: whatever finished meanwhile, in
        // one statement, while the others run on (a done job must not wait for a slow one in
        // its batch, or its lease could run out and another instance run it again). The
        // marking runs beside the jobs, never while they are paused: on SQLite a paused job
        // may hold the one write connection.
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
        // The payouts first, as one unit of work beside the others.
        let mut units: Vec<Unit> = Vec::with_capacity(others.len() + 1);
        if !payouts.is_empty() {
            units.push(Unit::Payouts(payouts));
        }
        units.extend(others.into_iter().map(Unit::One));
        let run = async move {
            stream::iter(units)
                .take_while(move |_| std::future::ready(!*stop.borrow()))
                .for_each_concurrent(s.concurrency, |unit| {
                    let done_tx = done_tx.clone();
                    async move {
                        match unit {
                            Unit::One(job) => {
                                let outcome = self.run_job(&job).await;
                                self.record(&job, outcome, &done_tx).await;
                            }
                            Unit::Payouts(jobs) => {
                                for (job, outcome) in self.payouts(jobs).await {
                                    self.record(&job, outcome, &done_tx).await;
                                }
                            }
                        }
                    }
                })
                .await;
            // (the last sender goes here, so the marking below ends)
        };
        let mark = async {
            let mut done = Vec::new();
            let mut failed = None;
            while done_rx.recv_many(&mut done, 256).await > 0 {
                if let Err(e) =
                    jobs::complete_all(&self.state.db, &done, &self.owner, self.state.now()).await
                {
                    failed = Some(e);
                }
                done.clear();
            }
            failed
        };
        if let ((), Some(e)) = tokio::join!(run, mark) {
            return Err(e);
        }
        Ok(expired + n)
    }

    /// Deletes the sessions that died more than a day ago, once an hour per worker (several
    /// instances may each do it: deleting the dead twice deletes nothing). A failure is
    /// logged and tried again an hour later; it does not hold up the round.
    async fn purge_sessions(&self) {
        let now = self.state.now();
        if now.saturating_sub(self.purged_at.load(Ordering::Relaxed)) < SESSION_PURGE_EVERY_MS {
            return;
        }
        self.purged_at.store(now, Ordering::Relaxed);
        let idle_ms = crate::auth::session::idle_ms(&self.state);
        let dead_before = now - SESSION_KEPT_DEAD_MS;
        let mut purged = 0;
        loop {
            let db = &self.state.db;
            match sessions::purge(db, dead_before, idle_ms, SESSION_PURGE_BATCH).await {
                Ok(n) => {
                    purged += n;
                    if n < SESSION_PURGE_BATCH as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge dead sessions; will try again");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::info!(sessions = purged, "purged dead sessions");
        }
    }

    /// Records what became of `job`: a retry or a death here, a done job through `done` (to
    /// be marked with others).
    async fn record(&self, job: &Job, outcome: Outcome, done: &DoneSender) {
        if let Err(e) = self.try_record(job, outcome, done).await {
            tracing::warn!(job = job.id, error = %e, "could not record job outcome");
        }
    }

    async fn try_record(
        &self,
        job: &Job,
        outcome: Outcome,
        done: &DoneSender,
    ) -> Result<(), DbError> {
        let now = self.state.now();
        let db = &self.state.db;
        match outcome {
            Outcome::Done => {
                let _ = done.send(job.id);
            }
            Outcome::Retry { at, error, counts } => {
                if counts {
                    tracing::info!(job = job.id, kind = %job.kind, attempt = job.attempts, error = error.as_deref().unwrap_or(""), "job failed; will retry");
                    self.state.metrics.delivery_failed(&job.kind, false);
                }
                jobs::reschedule(db, job.id, &self.owner, at, error.as_deref(), counts, now).await?
            }
            Outcome::Dead(error) => {
                tracing::warn!(job = job.id, kind = %job.kind, attempts = job.attempts, %error, "job gave up");
                self.state.metrics.delivery_failed(&job.kind, true);
                jobs::kill(db, job.id, &self.owner, &error, now).await?
            }
        }
        Ok(())
    }

    async fn run_job(&self, job: &Job) -> Outcome {
        let result = match JobKind::parse(&job.kind) {
            Some(JobKind::Callback) => self.deliver_callback(job).await,
            // Run together by `payouts` (`round` hands them there); hand one back if it ends
            // up here.
            Some(JobKind::PayoutSubmit | JobKind::PayoutCheck) => Ok(Outcome::Retry {
                at: self.state.now(),
                error: None,
                counts: false,
            }),
            Some(JobKind::Email) => self.send_email(job).await,
            Some(JobKind::ApprovalEmail) => self.send_approval_email(job).await,
            Some(JobKind::Slack) => self.send_slack(job).await,
            None => Ok(Outcome::Dead(format!("unknown job kind {}", job.kind))),
        };
        result.unwrap_or_else(|e| Outcome::Retry {
            at: self.state.now() + self.backoff(job.attempts, MINUTE_MS * 5),
            error: Some(e.to_string()),
            counts: true,
        })
    }

    fn backoff(&self, attempt: i64, cap: i64) -> i64 {
        let jitter = crate::crypto::random_bytes::<2>()
            .map(|b| f64::from(u16::from_le_bytes(b)) / 65536.0)
            .unwrap_or(0.5);
        retry_delay_ms(attempt, jitter).min(cap)
    }

    fn payout_request(w: &wdb::Withdrawal) -> PayoutRequest {
        PayoutRequest {
            idempotency_key: payout_key(w.id),
            currency: w.currency.clone(),
            network: w.network.clone(),
            amount: w.amount,
            address: w.address.clone(),
            tag: w.tag.clone(),
        }
    }

    /// Moves payouts along: hands each to the rail when `approved`, asks the rail where it
    /// stands when `processing` (side by side, up to `worker.concurrency` at once), then
    /// records everything the rail said in one transaction (see `svc::record_payouts`). A
    /// failure of that transaction retries every job in it; the changes are conditional on
    /// the status read, so a retry never moves a withdrawal twice.
    async fn payouts(&self, jobs: Vec<Job>) -> Vec<(Job, Outcome)> {
        let ids: Vec<i64> = jobs.iter().filter_map(|j| j.withdrawal_id).collect();
        let read = match wdb::by_ids(&self.state.db, &ids).await {
            Ok(ws) => ws,
            Err(e) => return self.all_retry(jobs, &e),
        };
        // The rail is asked about `worker.concurrency` payouts at a time (in one call each:
        // see `PayoutProvider::submit_many`).
        let now = self.state.now();
        let mut asked: Vec<(Job, Asked)> = Vec::with_capacity(jobs.len());
        let (mut submits, mut checks) = (Vec::new(), Vec::new());
        for job in jobs {
            let submitting = JobKind::parse(&job.kind) == Some(JobKind::PayoutSubmit);
            let expected = if submitting {
                Status::Approved
            } else {
                Status::Processing
            };
            match job
                .withdrawal_id
                .and_then(|id| read.iter().find(|w| w.id == id))
            {
                None => asked.push((
                    job,
                    Asked::Outcome(Outcome::Dead("withdrawal not found".into())),
                )),
                // Someone already moved it on.
                Some(w) if w.status != expected => asked.push((job, Asked::Outcome(Outcome::Done))),
                Some(w) if submitting => submits.push((job, w)),
                Some(w) => checks.push((job, w)),
            }
        }
        let at_once = self.state.settings.worker.concurrency.max(1);
        for chunk in submits.chunks(at_once) {
            let reqs: Vec<PayoutRequest> =
                chunk.iter().map(|(_, w)| Self::payout_request(w)).collect();
            let answers = self.state.payout.submit_many(&reqs, now).await;
            for ((job, w), answer) in chunk.iter().zip(answers) {
                asked.push((job.clone(), self.interpret(job, w, true, answer, now)));
            }
        }
        for chunk in checks.chunks(at_once) {
            let keys: Vec<String> = chunk.iter().map(|(_, w)| payout_key(w.id)).collect();
            let answers = self.state.payout.status_many(&keys, now).await;
            for ((job, w), answer) in chunk.iter().zip(answers) {
                asked.push((job.clone(), self.interpret(job, w, false, answer, now)));
            }
        }
        let (mut answered, mut steps) = (Vec::new(), Vec::new());
        for (job, asked) in asked {
            match asked {
                Asked::Outcome(o) => answered.push((job, o)),
                Asked::Step(step) => steps.push((job, step)),
            }
        }
        if steps.is_empty() {
            return answered;
        }
        let system = Actor::System;
        let origin = Origin::default();
        let changes: Vec<(&wdb::Withdrawal, Change)> = steps
            .iter()
            .map(|(_, s)| {
                (
                    &s.withdrawal,
                    Change {
                        event: s.event,
                        actor: &system,
                        note: &s.note,
                        error: s.error.as_deref(),
                        txid: s.txid.as_deref(),
                        check_at: s.check_at,
                        origin: &origin,
                    },
                )
            })
            .collect();
        match svc::record_payouts(&self.state, &changes).await {
            // Moved, or someone else (another instance, a cancel) moved it on first: either
            // way nothing is left to do here.
            Ok(_) => answered.extend(steps.into_iter().map(|(job, _)| (job, Outcome::Done))),
            Err(ChangeError::NotAllowed(_)) => {
                answered.extend(steps.into_iter().map(|(job, _)| (job, Outcome::Done)))
            }
            Err(ChangeError::Db(e)) => {
                answered.extend(self.all_retry(steps.into_iter().map(|(j, _)| j).collect(), &e))
            }
        }
        answered
    }

    fn all_retry(&self, jobs: Vec<Job>, e: &DbError) -> Vec<(Job, Outcome)> {
        jobs.into_iter()
            .map(|job| {
                let at = self.state.now() + self.backoff(job.attempts, MINUTE_MS * 5);
                let outcome = Outcome::Retry {
                    at,
                    error: Some(e.to_string()),
                    counts: true,
                };
                (job, outcome)
            })
            .collect()
    }

    /// What the rail's `answer` about `w` (being submitted, or checked) means for its job.
    fn interpret(
        &self,
        job: &Job,
        w: &wdb::Withdrawal,
        submitting: bool,
        answer: Result<PayoutState, PayoutError>,
        now: i64,
    ) -> Asked {
        let step = |event, note: String, error, txid, check_at| {
            Asked::Step(Box::new(Step {
                withdrawal: w.clone(),
                event,
                note,
                error,
                txid,
                check_at,
            }))
        };
        let submitted = || "submitted to the payout rail".to_string();
        match answer {
            Ok(PayoutState::InFlight { txid, check_at }) if submitting => step(
                Event::PayoutSubmitted,
                submitted(),
                None,
                txid,
                Some(check_at),
            ),
            Ok(PayoutState::Confirmed { txid }) if submitting => step(
                Event::PayoutSubmitted,
                submitted(),
                None,
                Some(txid),
                Some(now),
            ),
            Ok(PayoutState::InFlight { check_at, .. }) => Asked::Outcome(Outcome::Retry {
                at: check_at.max(now + 100),
                error: None,
                counts: false,
            }),
            Ok(PayoutState::Confirmed { txid }) => step(
                Event::PayoutConfirmed,
                "confirmed by the payout rail".to_string(),
                None,
                Some(txid),
                None,
            ),
            Ok(PayoutState::Failed { reason }) | Err(PayoutError::Rejected(reason)) => {
                let error = format!("Payout failed: {reason}");
                step(Event::PayoutFailed, error.clone(), Some(error), None, None)
            }
            Err(PayoutError::Transient(e)) => Asked::Outcome(Outcome::Retry {
                at: now + self.backoff(job.attempts, MINUTE_MS * 5),
                error: Some(e),
                counts: true,
            }),
        }
    }

    async fn deliver_callback(&self, job: &Job) -> Result<Outcome, DbError> {
        let Ok(cb) = serde_json::from_str::<CallbackJob>(&job.payload) else {
            return Ok(Outcome::Dead("malformed callback job".into()));
        };
        let Some(project_id) = job.project_id.as_deref() else {
            return Ok(Outcome::Dead("callback without project".into()));
        };
        let Some(project) = projects::get(&self.state.db, project_id).await? else {
            return Ok(Outcome::Dead("project not found".into()));
        };
        let Some(url) = project.callback_url.clone() else {
            // Nothing to deliver to: the merchant has not set a callback URL.
            return Ok(Outcome::Done);
        };
        let key = &self.state.master_key;
        let secret = projects::signing_secret_enc(&self.state.db, project_id)
            .await?
            .and_then(|s| key.decrypt(&s).ok());
        let whsec = key.decrypt(&project.webhook_secret_enc).ok();
        let (Some(secret), Some(whsec)) = (secret, whsec) else {
            return Ok(Outcome::Dead(
                "signing secrets unavailable (no active API key, or wrong master key)".into(),
            ));
        };
        let now = self.state.now();
        let headers = match signed_headers(&cb, &secret, &whsec, now) {
            Ok(h) => h,
            Err(e) => return Ok(Outcome::Dead(e.to_string())),
        };
        let started = Instant::now();
        // A URL leading outside the public internet (and not allowed by the operator) is
        // refused like an unreachable receiver: recorded, and tried again on the schedule
        // (the owner may correct the URL, the operator may allow the network).
        let result = match self.state.outbound.post(&url) {
            Ok(mut req) => {
                req = req.header("Content-Type", "application/json").header(
                    "User-Agent",
                    concat!("Countersign/", env!("CARGO_PKG_VERSION")),
                );
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                req.body(cb.body.clone())
                    .send()
                    .await
                    .map_err(crate::error::describe_http_failure)
            }
            Err(refused) => Err(refused.to_string()),
        };
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (code, error) = match result {
            Ok(resp) if resp.status().is_success() => {
                (Some(i64::from(resp.status().as_u16())), None)
            }
            Ok(resp) => (
                Some(i64::from(resp.status().as_u16())),
                Some(format!("receiver answered HTTP {}", resp.status().as_u16())),
            ),
            Err(e) => (None, Some(e)),
        };
        jobs::record_attempt(
            &self.state.db,
            &Attempt {
                job_id: job.id,
                attempt: job.attempts,
                attempted_at: now,
                status_code: code,
                error: error.as_deref(),
                duration_ms,
            },
        )
        .await?;
        let Some(error) = error else {
            return Ok(Outcome::Done);
        };
        let next = self.state.now() + self.backoff(job.attempts, i64::MAX);
        if job.deadline.is_some_and(|d| next > d) {
            return Ok(Outcome::Dead(format!(
                "gave up after {} attempts: {error}",
                job.attempts
            )));
        }
        Ok(Outcome::Retry {
            at: next,
            error: Some(error),
            counts: true,
        })
    }
}

impl Worker {
    async fn send_email(&self, job: &Job) -> Result<Outcome, DbError> {
        let Ok(email) = serde_json::from_str::<crate::notify::email::Email>(&job.payload) else {
            return Ok(Outcome::Dead("malformed email job".into()));
        };
        self.deliver_email(job, &email).await
    }

    /// Approval emails are made at send time (with a fresh link) and not sent at all once
    /// the withdrawal is decided.
    async fn send_approval_email(&self, job: &Job) -> Result<Outcome, DbError> {
        let Ok(p) = serde_json::from_str::<crate::service::alerts::ApprovalEmailJob>(&job.payload)
        else {
            return Ok(Outcome::Dead("malformed approval email job".into()));
        };
        let Some(withdrawal_id) = job.withdrawal_id else {
            return Ok(Outcome::Dead("approval email without a withdrawal".into()));
        };
        use crate::notify::approval_email::{BuildError, build};
        match build(&self.state, withdrawal_id, &p.user_id).await {
            Ok(Some(email)) => self.deliver_email(job, &email).await,
            Ok(None) => Ok(Outcome::Done),
            Err(BuildError::Db(e)) => Err(e),
            Err(e) => Ok(Outcome::Dead(e.to_string())),
        }
    }

    async fn deliver_email(
        &self,
        job: &Job,
        email: &crate::notify::email::Email,
    ) -> Result<Outcome, DbError> {
        let now = self.state.now();
        let sent = self.state.mailer.send(&self.state.db, email, now).await;
        if let Some(project_id) = &job.project_id {
            let error = sent.as_ref().err().map(|e| e.to_string());
            crate::db::email_status::record(&self.state.db, project_id, error.as_deref(), now)
                .await?;
        }
        match sent {
            Ok(()) => Ok(Outcome::Done),
            Err(e) => {
                let error = e.to_string();
                let next = now + self.backoff(job.attempts, MINUTE_MS * 30);
                if job.deadline.is_some_and(|d| next > d) {
                    return Ok(Outcome::Dead(format!(
                        "gave up after {} attempts: {error}",
                        job.attempts
                    )));
                }
                Ok(Outcome::Retry {
                    at: next,
                    error: Some(error),
                    counts: true,
                })
            }
        }
    }
}

impl Worker {
    /// Sends one Slack message to the webhook connected now (decrypted here, at send time).
    /// 429 waits at least Slack's `Retry-After`; 5xx and transport failures back off; any
    /// other refusal is final, with Slack's error text kept. An outcome waits for its pending
    /// alert while that one is still queued.
    async fn send_slack(&self, job: &Job) -> Result<Outcome, DbError> {
        let Some(project_id) = job.project_id.as_deref() else {
            return Ok(Outcome::Dead("Slack message without project".into()));
        };
        let db = &self.state.db;
        let now = self.state.now();
        let follows = job.dedupe_key.as_deref().and_then(|k| {
            k.strip_prefix("slack:outcome:")
                .map(|id| format!("slack:pending:{id}"))
        });
        if let Some(key) = follows {
            if let Some(due) = jobs::queued_run_at(db, &key).await? {
                // The alert this follows up has not gone out yet: keep the channel in order.
                return Ok(Outcome::Retry {
                    at: due.max(now) + 1000,
                    error: None,
                    counts: false,
                });
            }
        }
        let mut attempt = Attempt {
            job_id: job.id,
            attempt: job.attempts,
            attempted_at: now,
            status_code: None,
            error: None,
            duration_ms: 0,
        };
        let Some(hook) = slack_db::get(db, project_id).await? else {
            // Disconnected after the message was queued: nothing to send it to.
            let note = "not sent: the Slack channel was disconnected";
            tracing::info!(job = job.id, "{note}");
            attempt.error = Some(note);
            jobs::record_attempt(db, &attempt).await?;
            return Ok(Outcome::Done);
        };
        let Ok(url) = self.state.master_key.decrypt(&hook.url_enc) else {
            return Ok(Outcome::Dead(
                "the Slack webhook URL cannot be decrypted with this master key".into(),
            ));
        };
        let (result, duration_ms) =
            slack_send::post(&self.state.outbound, &url, &job.payload).await;
        attempt.status_code = result.status().map(i64::from);
        attempt.error = result.error();
        attempt.duration_ms = duration_ms;
        jobs::record_attempt(db, &attempt).await?;
        let now = self.state.now();
        match result.error() {
            None => slack_db::record_ok(db, project_id, &hook.webhook_id, now).await?,
            Some(e) => slack_db::record_error(db, project_id, &hook.webhook_id, e, now).await?,
        }
        let (next, error) = match result {
            SendResult::Delivered { .. } => return Ok(Outcome::Done),
            SendResult::Permanent { error, .. } => return Ok(Outcome::Dead(error)),
            SendResult::RateLimited {
                retry_after_ms: Some(wait),
                error,
            } => (now + wait.max(1000), error),
            SendResult::RateLimited { error, .. } | SendResult::Transient { error, .. } => {
                (now + self.backoff(job.attempts, MINUTE_MS * 30), error)
            }
        };
        if job.deadline.is_some_and(|d| next > d) {
            return Ok(Outcome::Dead(format!(
                "gave up after {} attempts: {error}",
                job.attempts
            )));
        }
        Ok(Outcome::Retry {
            at: next,
            error: Some(error),
            counts: true,
        })
    }
}

/// Resolves `grace` after `shutdown` turns true (or its sender is gone).
async fn grace_over(mut shutdown: watch::Receiver<bool>, grace: Duration) {
    let _ = shutdown.wait_for(|stopped| *stopped).await;
    tokio::time::sleep(grace).await;
}

pub fn payout_key(withdrawal_id: i64) -> String {
    format!("cs-wd-{withdrawal_id}")
}
