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
                txid: Some(txid),
                check_at: due,
            },
        }
    }
}

impl SandboxProvider {
    /// How many times the sandbox has seen this key submitted (for reconciliation and tests:
    /// a retried submission must not count as a second payout).
    pub async fn submissions(&self, key: &str) -> Result<u64, PayoutError> {
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

    fn outcome_for(&self, address: &str) -> &'static str {
        if self.fail_addresses.iter().any(|a| a == address) {
            "fail"
        } else {
            "confirm"
        }
    }

    /// The answer for each key from `rows` (each with idempotency_key, txid, outcome,
    /// submitted_at); a key without a row is a transient error.
    fn answers<'k>(
        &self,
        keys: impl Iterator<Item = &'k str>,
        rows: &[sqlx::any::AnyRow],
        now: i64,
    ) -> Vec<Result<PayoutState, PayoutError>> {
        let parse = |r: &sqlx::any::AnyRow| -> Result<(String, String, String, i64), sqlx::Error> {
            Ok((
                r.try_get("idempotency_key")?,
                r.try_get("txid")?,
                r.try_get("outcome")?,
                r.try_get("submitted_at")?,
            ))
        };
        let parsed: Vec<_> = rows.iter().map(parse).collect();
        keys.map(|key| {
            let found = parsed.iter().find(|p| matches!(p, Ok((k, ..)) if k == key));
            match found {
                Some(Ok((_, txid, outcome, submitted_at))) => {
                    Ok(self.state(txid.clone(), outcome, *submitted_at, now))
                }
                _ => Err(PayoutError::Transient(format!("no sandbox payout {key}"))),
            }
        })
        .collect()
    }
}

fn transient(e: impl std::fmt::Display) -> PayoutError {
    PayoutError::Transient(e.to_string())
}

#[async_trait]
impl PayoutProvider for SandboxProvider {
    async fn submit(&self, req: &PayoutRequest, now: i64) -> Result<PayoutState, PayoutError> {
        let txid = sha256_hex(format!("sandbox:{}", req.idempotency_key).as_bytes());
        let outcome = self.outcome_for(&req.address);
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

    /// One upsert for the lot (a key given twice goes one by one: one upsert may not touch a
    /// row twice).
    async fn submit_many(
        &self,
        reqs: &[PayoutRequest],
        now: i64,
    ) -> Vec<Result<PayoutState, PayoutError>> {
        let mut keys: Vec<&str> = reqs.iter().map(|r| r.idempotency_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.len() != reqs.len() || reqs.len() < 2 {
            let mut out = Vec::with_capacity(reqs.len());
            for r in reqs {
                out.push(self.submit(r, now).await);
            }
            return out;
        }
        let sql = format!(
            "INSERT INTO sandbox_payouts (idempotency_key, txid, currency, amount, address, outcome, submitted_at, submissions)
             VALUES {}
             ON CONFLICT (idempotency_key) DO UPDATE SET submissions = sandbox_payouts.submissions + 1
             RETURNING idempotency_key, txid, outcome, submitted_at",
            crate::db::values_list(reqs.len(), 8, 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in reqs {
            q = q
                .bind(r.idempotency_key.clone())
                .bind(sha256_hex(
                    format!("sandbox:{}", r.idempotency_key).as_bytes(),
                ))
                .bind(r.currency.clone())
                .bind(r.amount.to_string())
                .bind(r.address.clone())
                .bind(self.outcome_for(&r.address))
                .bind(now)
                .bind(1_i64);
        }
        let rows = match q.fetch_all(self.db.writer()).await {
            Ok(rows) => rows,
            Err(e) => return reqs.iter().map(|_| Err(transient(&e))).collect(),
        };
        self.answers(reqs.iter().map(|r| r.idempotency_key.as_str()), &rows, now)
    }

    async fn status_many(
        &self,
        idempotency_keys: &[String],
        now: i64,
    ) -> Vec<Result<PayoutState, PayoutError>> {
        if idempotency_keys.is_empty() {
            return Vec::new();
        }
        let list = crate::db::values_list(1, idempotency_keys.len(), 1);
        let sql = format!(
            "SELECT idempotency_key, txid, outcome, submitted_at FROM sandbox_payouts WHERE idempotency_key IN {list}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for k in idempotency_keys {
            q = q.bind(k.clone());
        }
        let rows = match q.fetch_all(self.db.reader()).await {
            Ok(rows) => rows,
            Err(e) => {
                return idempotency_keys
                    .iter()
                    .map(|_| Err(transient(&e)))
                    .collect();
            }
        };
        self.answers(idempotency_keys.iter().map(String::as_str), &rows, now)
    }
}
