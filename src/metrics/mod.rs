//! Prometheus metrics: one registry per application (in `AppState`, no globals), a small
//! recording API for the places where things happen, and [`Metrics::render`], which refreshes
//! the gauges read from the database and encodes everything in the text exposition format.
//! Served only on its own listener (see [`endpoint`]).

pub mod endpoint;

use crate::db::jobs::JobKind;
use crate::db::{Db, monitoring};
use crate::domain::withdrawal::Status;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

type SecondsGauge = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
    /// `retry` (tried again later) or `dead` (given up).
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FactorLabel {
    factor: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    /// The matched route pattern (`/api/v2/withdrawal/{id}`), never the raw path.
    route: String,
    status: &'static str,
}

/// Which sign-in factor a failure was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Password,
    /// A TOTP or recovery code (at sign-in, or when a decision asks for a fresh code).
    Code,
    /// A password attempt over the per-address limit, refused before it was checked.
    Throttled,
}

/// Final statuses, counted as withdrawals reach them (see `finished`).
const FINAL: [Status; 3] = [Status::Confirmed, Status::Declined, Status::Cancelled];
/// Statuses counted exactly from the database at scrape time.
const IN_FLIGHT: [Status; 3] = [Status::Pending, Status::Approved, Status::Processing];
const JOB_KINDS: [JobKind; 6] = [
    JobKind::Callback,
    JobKind::PayoutSubmit,
    JobKind::PayoutCheck,
    JobKind::Email,
    JobKind::ApprovalEmail,
    JobKind::Slack,
];

pub struct Metrics {
    registry: Registry,
    withdrawals: Family<StatusLabel, Gauge>,
    finished: Family<StatusLabel, Counter>,
    oldest_pending: SecondsGauge,
    approval_latency: HistogramFamily<OutcomeLabel>,
    outbox_queued: Family<KindLabel, Gauge>,
    outbox_oldest: Family<KindLabel, SecondsGauge>,
    delivery_failures: Family<FailureLabels, Counter>,
    sign_in_failures: Family<FactorLabel, Counter>,
    lockouts: Counter,
    http: HistogramFamily<HttpLabels>,
    intake_batch: Histogram,
    database_up: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn http_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn approval_histogram() -> Histogram {
    // 30 s to 2 days: approvals are human work.
    Histogram::new([
        30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0,
        86400.0, 172800.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let withdrawals = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "countersign_withdrawals",
            "Withdrawals not yet final, by status (counted in the database at scrape time)",
            withdrawals.clone(),
        );
        let finished = Family::<StatusLabel, Counter>::default();
        registry.register(
            "countersign_withdrawals_finished",
            "Withdrawals this instance moved into a final status",
            finished.clone(),
        );
        let oldest_pending = SecondsGauge::default();
        registry.register(
            "countersign_pending_oldest_age_seconds",
            "Age of the oldest pending withdrawal (0 when none is pending)",
            oldest_pending.clone(),
        );
        let approval_latency: HistogramFamily<OutcomeLabel> =
            Family::new_with_constructor(approval_histogram);
        registry.register(
            "countersign_approval_latency_seconds",
            "From creation to the decision that took a withdrawal out of pending",
            approval_latency.clone(),
        );
        let outbox_queued = Family::<KindLabel, Gauge>::default();
        registry.register(
            "countersign_outbox_queued",
            "Queued outbox jobs (due or scheduled), by kind",
            outbox_queued.clone(),
        );
        let outbox_oldest = Family::<KindLabel, SecondsGauge>::default();
        registry.register(
            "countersign_outbox_oldest_age_seconds",
            "Age of the oldest queued outbox job, by kind (0 when none is queued)",
            outbox_oldest.clone(),
        );
        let delivery_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "countersign_delivery_failures",
            "Failed outbox job runs, by kind and whether the job will be retried or is dead",
            delivery_failures.clone(),
        );
        let sign_in_failures = Family::<FactorLabel, Counter>::default();
        registry.register(
            "countersign_signin_failures",
            "Refused sign-in factors (wrong password, unknown or locked account, wrong code, over the per-address attempt limit)",
            sign_in_failures.clone(),
        );
        let lockouts = Counter::default();
        registry.register(
            "countersign_lockouts",
            "Accounts locked after too many failures",
            lockouts.clone(),
        );
        let http: HistogramFamily<HttpLabels> = Family::new_with_constructor(http_histogram);
        registry.register(
            "countersign_http_request_duration_seconds",
            "HTTP requests on the main listener, by method, matched route and status class",
            http.clone(),
        );
        let intake_batch = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]);
        registry.register(
            "countersign_intake_batch_size",
            "New withdrawals written per transaction (see README, Performance)",
            intake_batch.clone(),
        );
        let database_up = Gauge::default();
        registry.register(
            "countersign_database_up",
            "1 when the scrape-time database queries succeeded (otherwise the database-derived gauges keep their last values)",
            database_up.clone(),
        );
        Metrics {
            registry,
            withdrawals,
            finished,
            oldest_pending,
            approval_latency,
            outbox_queued,
            outbox_oldest,
            delivery_failures,
            sign_in_failures,
            lockouts,
            http,
            intake_batch,
            database_up,
        }
    }

    /// A batch of `n` new withdrawals was written in one transaction.
    pub fn intake_batch(&self, n: usize) {
        self.intake_batch.observe(n as f64);
    }

    /// One request answered by the main listener. `route` is the matched pattern, `None` when
    /// no route matched.
    pub fn http_request(&self, method: &str, route: Option<String>, status: u16, took: Duration) {
        let labels = HttpLabels {
            method: method_label(method),
            route: route.unwrap_or_else(|| "unmatched".into()),
            status: status_class(status),
        };
        self.http.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// A decision took a withdrawal created at `created_at` out of pending at `now` (both ms).
    pub fn decided(&self, outcome: Status, created_at: i64, now: i64) {
        let waited = (now - created_at).max(0) as f64 / 1000.0;
        self.approval_latency
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .observe(waited);
    }

    /// A withdrawal's status changed (after commit); counts it when it is now final.
    pub fn moved(&self, to: Status) {
        if to.is_final() {
            self.finished
                .get_or_create(&StatusLabel {
                    status: to.as_str(),
                })
                .inc();
        }
    }

    /// A run of an outbox job failed; `dead` when it will not be tried again.
    pub fn delivery_failed(&self, kind: &str, dead: bool) {
        let labels = FailureLabels {
            kind: kind_label(kind),
            result: if dead { "dead" } else { "retry" },
        };
        self.delivery_failures.get_or_create(&labels).inc();
    }

    pub fn sign_in_failed(&self, factor: Factor) {
        let factor = match factor {
            Factor::Password => "password",
            Factor::Code => "code",
            Factor::Throttled => "throttled",
        };
        self.sign_in_failures
            .get_or_create(&FactorLabel { factor })
            .inc();
    }

    pub fn lockout(&self) {
        self.lockouts.inc();
    }

    /// Refreshes the database-derived gauges (as of `now`, ms) and encodes every metric.
    pub async fn render(&self, db: &Db, now: i64) -> Result<String, std::fmt::Error> {
        match self.refresh(db, now).await {
            Ok(()) => self.database_up.set(1),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: database queries failed");
                self.database_up.set(0)
            }
        };
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    async fn refresh(&self, db: &Db, now: i64) -> Result<(), crate::db::DbError> {
        let flight = monitoring::withdrawals_in_flight(db).await?;
        let jobs = monitoring::outbox(db).await?;
        for status in IN_FLIGHT {
            let n = flight
                .by_status
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n);
            self.withdrawals
                .get_or_create(&StatusLabel {
                    status: status.as_str(),
                })
                .set(n);
        }
        self.oldest_pending
            .set(flight.oldest_pending_at.map_or(0.0, |at| age_secs(at, now)));
        for kind in JOB_KINDS {
            let row = jobs.iter().find(|j| j.kind == kind.as_str());
            let label = KindLabel {
                kind: kind.as_str(),
            };
            self.outbox_queued
                .get_or_create(&label)
                .set(row.map_or(0, |r| r.queued));
            self.outbox_oldest
                .get_or_create(&label)
                .set(row.map_or(0.0, |r| age_secs(r.oldest_created_at, now)));
        }
        // Final statuses show from the first scrape, at zero.
        for status in FINAL {
            let _ = self.finished.get_or_create(&StatusLabel {
                status: status.as_str(),
            });
        }
        Ok(())
    }
}

fn age_secs(since: i64, now: i64) -> f64 {
    (now - since).max(0) as f64 / 1000.0
}

fn kind_label(kind: &str) -> &'static str {
    JobKind::parse(kind).map_or("other", JobKind::as_str)
}

fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(method_label("BREW"), "other");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(599), "5xx");
        assert_eq!(kind_label("nonsense"), "other");
        assert_eq!(kind_label("payout_submit"), "payout_submit");
    }
}
