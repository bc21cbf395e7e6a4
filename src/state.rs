//! What every handler and worker shares.

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::crypto::MasterKey;
use crate::db::Db;
use crate::domain::exchange::Pricing;
use crate::payout::PayoutProvider;
use crate::rates::Rates;
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub clock: SharedClock,
    pub settings: Arc<Settings>,
    pub master_key: MasterKey,
    pub rates: Arc<Rates>,
    /// Fees, exchangeable pairs, quote lifetime (from `fees.*` and `exchange.*`).
    pub pricing: Arc<Pricing>,
    pub payout: Arc<dyn PayoutProvider>,
    /// For owner-set URLs (callbacks, the operator gate, Slack): redirects off, connect and
    /// total timeouts set, non-public addresses refused (see `notify::outbound`).
    pub outbound: crate::notify::outbound::Outbound,
    /// The per-address limit on password attempts (see `auth::throttle`).
    pub signin_throttle: Arc<crate::auth::throttle::SignInThrottle>,
    /// Wakes the worker when a transaction queued work, so delivery does not wait for a poll.
    pub wake: Arc<Notify>,
    pub mailer: Arc<crate::notify::email::Mailer>,
    /// Prometheus metrics of this instance (served by `metrics::endpoint`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// New withdrawals waiting to be written, in batches (see `service::withdrawals::Intake`).
    pub intake: Arc<crate::service::withdrawals::Intake>,
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}
