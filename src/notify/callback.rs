//! Merchant callbacks: the seeds' payloads (seed 003), signed two ways, delivered from the
//! outbox with retries.
//!
//! Headers on every delivery:
//! - `X-Processing-Signature`: hex HMAC-SHA512 of the body with the project's API secret;
//! - Standard Webhooks: `webhook-id` (stable across retries of one event), `webhook-timestamp`
//!   (seconds, of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA256>` of
//!   `id.timestamp.body` with the project's `whsec_` secret.

use crate::clock::MINUTE_MS;
use crate::crypto::{hmac_sha512_hex, standard_webhook_signature};
use crate::db::withdrawals::Withdrawal;
use crate::domain::withdrawal::Status;
use serde::{Deserialize, Serialize};

/// The seed 003 body for a withdrawal in `status` (see [`super::callback_payload`]).
pub fn payload(w: &Withdrawal, status: Status) -> serde_json::Value {
    serde_json::to_value(super::callback_payload::build(w, status)).unwrap_or_default()
}

/// What a callback job carries: the exact body (so every retry sends the same bytes) and the
/// Standard Webhooks message id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackJob {
    pub msg_id: String,
    pub body: String,
}

impl CallbackJob {
    pub fn for_status(w: &Withdrawal, status: Status) -> CallbackJob {
        CallbackJob {
            msg_id: format!("msg_wd{}_{}", w.id, status.as_str()),
            body: serde_json::to_string(&super::callback_payload::build(w, status))
                .unwrap_or_default(),
        }
    }
}

/// Headers for one delivery attempt.
pub fn signed_headers(
    job: &CallbackJob,
    api_secret: &str,
    whsec: &str,
    now_ms: i64,
) -> Result<Vec<(&'static str, String)>, crate::crypto::CryptoError> {
    sign_headers(&job.msg_id, &job.body, api_secret, whsec, now_ms)
}

/// The signature headers of any message Countersign POSTs to the merchant (callbacks, the
/// operator gate's WITHDRAW_REQUEST): both schemes over the exact `body` bytes.
pub fn sign_headers(
    msg_id: &str,
    body: &str,
    api_secret: &str,
    whsec: &str,
    now_ms: i64,
) -> Result<Vec<(&'static str, String)>, crate::crypto::CryptoError> {
    let ts = now_ms.div_euclid(1000);
    Ok(vec![
        (
            "X-Processing-Signature",
            hmac_sha512_hex(api_secret.as_bytes(), body.as_bytes()),
        ),
        ("webhook-id", msg_id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            standard_webhook_signature(whsec, msg_id, ts, body.as_bytes())?,
        ),
    ])
}

/// The wait before retry `attempt` (1-based count of failures so far): the seeds' 1, 5, 10
/// ... 240 minutes, then every 4 hours, each with up to ±10% jitter so that a recovering
/// receiver is not hit by every retry at once.
pub fn retry_delay_ms(attempt: i64, jitter_unit: f64) -> i64 {
    const STEPS_MIN: [i64; 7] = [1, 5, 10, 30, 60, 120, 240];
    let idx = usize::try_from(attempt.max(1) - 1).unwrap_or(0);
    let base = STEPS_MIN.get(idx).copied().unwrap_or(240) * MINUTE_MS;
    // jitter_unit in [0, 1): maps to a factor in [0.9, 1.1)
    let factor = 0.9 + 0.2 * jitter_unit.clamp(0.0, 1.0);
    (base as f64 * factor) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_levels_with_jitter_bounds() {
        assert_eq!(retry_delay_ms(1, 0.5), MINUTE_MS);
        assert_eq!(retry_delay_ms(2, 0.5), 5 * MINUTE_MS);
        assert_eq!(retry_delay_ms(7, 0.5), 240 * MINUTE_MS);
        assert_eq!(retry_delay_ms(30, 0.5), 240 * MINUTE_MS);
        assert_eq!(retry_delay_ms(1, 0.0), 54_000);
        assert!(retry_delay_ms(1, 0.999) < 66_000);
        // About three days of retries: the sum of the schedule passes 72 hours near 23 tries.
        let total: i64 = (1..=23).map(|a| retry_delay_ms(a, 0.5)).sum();
        assert!(total > 72 * 60 * MINUTE_MS - 4 * 60 * MINUTE_MS);
    }
}
