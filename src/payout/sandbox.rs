//! The built-in sandbox rail: deterministic fake txids, confirms a configurable delay after
//! submission, fails payouts to configured addresses. It keeps its book in the service's own
//! database so it survives restarts like a real rail would.

use super::{PayoutError, PayoutProvider, PayoutRequest, PayoutState};
use crate::crypto::sha256_hex;
use crate::db::Db;
use async_trait::async_trait;
use sqlx::Row;

pub struct SandboxProvider {
    db: Db,
    confirm_delay_ms: i64,
    fail_addresses: Vec<String>,
}

impl SandboxProvider {
    pub fn new(db: Db, confirm_delay_ms: i64, fail_addresses: Vec<String>) -> SandboxProvider {
        SandboxProvider {
            db,
            confirm_delay_ms,
            fail_addresses,
        }
    }

    fn state(&self, txid: String, outcome: &str, submitted_at: i64, now: i64) -> PayoutState {
        let due = submitted_at + self.confirm_delay_ms;
        match outcome {
            "fail" => PayoutState::Failed {
                reason: "sandbox rail rejected the destination address".into(),
            },
            _ if now >= due => PayoutState::Confirmed { txid },
            _ => PayoutState::InFlight {
                txid,
                check_at: due,
            },
        }
    }
}

fn transient(e: impl std::fmt::Display) -> PayoutError {
    PayoutError::Transient(e.to_string())
}

#[async_trait]
impl PayoutProvider for SandboxProvider {
    async fn submit(&self, req: &PayoutRequest, now: i64) -> Result<PayoutState, PayoutError> {
        let txid = sha256_hex(format!("sandbox:{}", req.idempotency_key).as_bytes());
        let outcome = if self.fail_addresses.iter().any(|a| a == &req.address) {
            "fail"
        } else {
            "confirm"
        };
        let row = sqlx::query(
            "INSERT INTO sandbox_payouts (idempotency_key, txid, currency, amount, address, outcome, submitted_at, submissions)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1)
             ON CONFLICT (idempotency_key) DO UPDATE SET submissions = sandbox_payouts.submissions + 1
             RETURNING txid, outcome, submitted_at",
        )
        .bind(&req.idempotency_key)
        .bind(&txid)
        .bind(&req.currency)
        .bind(req.amount.to_string())
        .bind(&req.address)
        .bind(outcome)
        .bind(now)
        .fetch_one(self.db.writer())
        .await
        .map_err(transient)?;
        let txid: String = row.try_get("txid").map_err(transient)?;
        let outcome: String = row.try_get("outcome").map_err(transient)?;
        let submitted_at: i64 = row.try_get("submitted_at").map_err(transient)?;
        Ok(self.state(txid, &outcome, submitted_at, now))
    }

    async fn status(&self, key: &str, now: i64) -> Result<PayoutState, PayoutError> {
        let row = sqlx::query(
            "SELECT txid, outcome, submitted_at FROM sandbox_payouts WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(self.db.reader())
        .await
        .map_err(transient)?
        .ok_or_else(|| PayoutError::Transient(format!("no sandbox payout {key}")))?;
        let txid: String = row.try_get("txid").map_err(transient)?;
        let outcome: String = row.try_get("outcome").map_err(transient)?;
        let submitted_at: i64 = row.try_get("submitted_at").map_err(transient)?;
        Ok(self.state(txid, &outcome, submitted_at, now))
    }

    async fn submissions(&self, key: &str) -> Result<u64, PayoutError> {
        let row = sqlx::query("SELECT submissions FROM sandbox_payouts WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(self.db.reader())
            .await
            .map_err(transient)?;
        Ok(row
            .map(|r| r.try_get::<i64, _>("submissions"))
            .transpose()
            .map_err(transient)?
            .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }
}
