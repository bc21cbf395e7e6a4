//! The payout rail behind one trait. Every submission carries an idempotency key (one per
//! withdrawal): submitting the same key again returns the first submission, so a retried job
//! never pays twice.

pub mod http;
pub mod sandbox;

use async_trait::async_trait;
use rust_decimal::Decimal;

#[derive(Debug, Clone)]
pub struct PayoutRequest {
    pub idempotency_key: String,
    pub currency: String,
    pub network: String,
    pub amount: Decimal,
    pub address: String,
    pub tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutState {
    /// On its way; ask again at (epoch ms). The txid, when the rail has one yet.
    InFlight {
        txid: Option<String>,
        check_at: i64,
    },
    Confirmed {
        txid: String,
    },
    Failed {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    /// Try again later; nothing is known to have happened.
    #[error("payout rail unavailable: {0}")]
    Transient(String),
    /// The rail refused this payout for good.
    #[error("payout refused: {0}")]
    Rejected(String),
}

#[async_trait]
pub trait PayoutProvider: Send + Sync + 'static {
    /// Hands a payout over (idempotent per key) and returns where it stands.
    async fn submit(&self, req: &PayoutRequest, now: i64) -> Result<PayoutState, PayoutError>;
    /// Where a submitted payout stands.
    async fn status(&self, idempotency_key: &str, now: i64) -> Result<PayoutState, PayoutError>;

    /// [`submit`](Self::submit) for several payouts: one answer per request, in order. A rail
    /// that takes batches hands them over together; by default they go side by side (the
    /// worker passes at most `worker.concurrency` at a time).
    async fn submit_many(
        &self,
        reqs: &[PayoutRequest],
        now: i64,
    ) -> Vec<Result<PayoutState, PayoutError>> {
        futures_util::future::join_all(reqs.iter().map(|r| self.submit(r, now))).await
    }

    /// [`status`](Self::status) for several payouts: one answer per key, in order.
    async fn status_many(
        &self,
        idempotency_keys: &[String],
        now: i64,
    ) -> Vec<Result<PayoutState, PayoutError>> {
        futures_util::future::join_all(idempotency_keys.iter().map(|k| self.status(k, now))).await
    }
}
