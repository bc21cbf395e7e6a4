//! The background loop: claims due jobs from the outbox (callbacks, payouts, email, Slack)
//! with a lease, runs them with bounded concurrency, and cancels expired pending withdrawals.
//! Several instances may run it against one database; leases keep each job with one runner
//! at a time.

use crate::clock::MINUTE_MS;
use crate::db::audit::{Actor, Origin};
use crate::db::jobs::{self, Attempt, Job, JobKind};
use crate::db::{DbError, projects, slack as slack_db, withdrawals as wdb};
use crate::domain::withdrawal::{Event, Status};
use crate::notify::callback::{CallbackJob, retry_delay_ms, signed_headers};
use crate::notify::slack_send::{self, SendResult};
use crate::payout::{PayoutError, PayoutRequest, PayoutState};
use crate::service::withdrawals::{self as svc, Change, ChangeError};
use crate::state::AppState;
use futures_util::stream::{self, StreamExt};
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

pub struct Worker {
    state: AppState,
    owner: String,
}

impl Worker {
    pub fn new(state: AppState) -> Worker {
        let owner = format!(
            "{}-{}",
            std::process::id(),
            crate::crypto::random_token::<6>().unwrap_or_default()
        );
        Worker { state, owner }
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
        // Jobs that are simply done are marked so together: whatever finished meanwhile, in
        // one statement, while the others run on (a done job must not wait for a slow one in
        // its batch, or its lease could run out and another instance run it again). The
        // marking runs beside the jobs, never while they are paused: on SQLite a paused job
        // may hold the one write connection.
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
        let run = async move {
            stream::iter(claimed)
                .take_while(move |_| std::future::ready(!*stop.borrow()))
                .for_each_concurrent(s.concurrency, |job| {
                    let done_tx = done_tx.clone();
                    async move {
                        match self.finish(&job).await {
                            Ok(Some(id)) => {
                                let _ = done_tx.send(id);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(job = job.id, error = %e, "could not record job outcome");
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

    /// Runs `job` and records a retry or a death; returns its id when it is done (for the
    /// caller to record).
    async fn finish(&self, job: &Job) -> Result<Option<i64>, DbError> {
        let outcome = self.run_job(job).await;
        let now = self.state.now();
        let db = &self.state.db;
        match outcome {
            Outcome::Done => return Ok(Some(job.id)),
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
        Ok(None)
    }

    async fn run_job(&self, job: &Job) -> Outcome {
        let result = match JobKind::parse(&job.kind) {
            Some(JobKind::Callback) => self.deliver_callback(job).await,
            Some(JobKind::PayoutSubmit) => self.advance_payout(job, Status::Approved).await,
            Some(JobKind::PayoutCheck) => self.advance_payout(job, Status::Processing).await,
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

    async fn withdrawal(&self, job: &Job) -> Result<Option<wdb::Withdrawal>, DbError> {
        match job.withdrawal_id {
            Some(id) => wdb::by_id(&self.state.db, id).await,
            None => Ok(None),
        }
    }

    async fn apply(
        &self,
        w: &wdb::Withdrawal,
        event: Event,
        note: &str,
        error: Option<&str>,
        txid: Option<&str>,
        check_at: Option<i64>,
    ) -> Result<Outcome, DbError> {
        let r = svc::change(
            &self.state,
            w,
            Change {
                event,
                actor: &Actor::System,
                note,
                error,
                txid,
                check_at,
                origin: &Origin::default(),
            },
        )
        .await;
        match r {
            // Someone else moved it on (another instance, a cancel): nothing left to do here.
            Ok(_) | Err(ChangeError::NotAllowed(_)) => Ok(Outcome::Done),
            Err(ChangeError::Db(e)) => Err(e),
        }
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

    /// Moves a payout along: hands it to the rail when `approved`, asks the rail where it
    /// stands when `processing`, and records what the rail says.
    async fn advance_payout(&self, job: &Job, expected: Status) -> Result<Outcome, DbError> {
        let Some(w) = self.withdrawal(job).await? else {
            return Ok(Outcome::Dead("withdrawal not found".into()));
        };
        if w.status != expected {
            // Someone already moved it on.
            return Ok(Outcome::Done);
        }
        let now = self.state.now();
        let submitting = expected == Status::Approved;
        let answer = if submitting {
            self.state
                .payout
                .submit(&Self::payout_request(&w), now)
                .await
        } else {
            self.state.payout.status(&payout_key(w.id), now).await
        };
        let submitted = "submitted to the payout rail";
        match answer {
            Ok(PayoutState::InFlight { txid, check_at }) if submitting => {
                self.apply(
                    &w,
                    Event::PayoutSubmitted,
                    submitted,
                    None,
                    Some(&txid),
                    Some(check_at),
                )
                .await
            }
            Ok(PayoutState::Confirmed { txid }) if submitting => {
                self.apply(
                    &w,
                    Event::PayoutSubmitted,
                    submitted,
                    None,
                    Some(&txid),
                    Some(now),
                )
                .await
            }
            Ok(PayoutState::InFlight { check_at, .. }) => Ok(Outcome::Retry {
                at: check_at.max(now + 100),
                error: None,
                counts: false,
            }),
            Ok(PayoutState::Confirmed { txid }) => {
                let note = "confirmed by the payout rail";
                self.apply(&w, Event::PayoutConfirmed, note, None, Some(&txid), None)
                    .await
            }
            Ok(PayoutState::Failed { reason }) | Err(PayoutError::Rejected(reason)) => {
                let error = format!("Payout failed: {reason}");
                self.apply(&w, Event::PayoutFailed, &error, Some(&error), None, None)
                    .await
            }
            Err(PayoutError::Transient(e)) => Ok(Outcome::Retry {
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
        let mut req = self
            .state
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .header(
                "User-Agent",
                concat!("Countersign/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let started = Instant::now();
        let result = req.body(cb.body.clone()).send().await;
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (code, error) = match &result {
            Ok(resp) if resp.status().is_success() => {
                (Some(i64::from(resp.status().as_u16())), None)
            }
            Ok(resp) => (
                Some(i64::from(resp.status().as_u16())),
                Some(format!("receiver answered HTTP {}", resp.status().as_u16())),
            ),
            Err(e) => (None, Some(describe_reqwest(e))),
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
        let (result, duration_ms) = slack_send::post(&self.state.http, &url, &job.payload).await;
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

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_redirect() {
        "redirect refused".into()
    } else {
        // reqwest's text does not include credentials; URLs here carry none of ours.
        e.to_string()
    }
}
