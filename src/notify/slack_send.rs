//! One POST of a message to a Slack incoming webhook, and what Slack's answer means for the
//! message. Used by the worker (outbox deliveries) and by the settings page's test button.
//!
//! Slack answers `200 ok` on success, `429` with `Retry-After` (seconds) when the webhook is
//! rate limited, and a 4xx with a short error text when the request can never succeed
//! (`404 no_service`, `410 channel_is_archived`, `400 invalid_payload`, `403 action_prohibited`).

use std::time::{Duration, Instant};

/// Total time for one send, on top of the shared client's connect timeout.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Slack's error texts are short words; more than this is not Slack talking.
const MAX_ERROR_BODY: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// 2xx: the message is in the channel.
    Delivered { status: u16 },
    /// 429: try again, not before `retry_after_ms` when Slack said.
    RateLimited {
        retry_after_ms: Option<i64>,
        error: String,
    },
    /// 5xx, timeout, connection failure: try again later.
    Transient { status: Option<u16>, error: String },
    /// Any other answer (a 4xx, a redirect): retrying sends the same request to the same
    /// refusal, so the message is given up.
    Permanent { status: u16, error: String },
}

impl SendResult {
    pub fn status(&self) -> Option<u16> {
        match self {
            SendResult::Delivered { status } | SendResult::Permanent { status, .. } => {
                Some(*status)
            }
            SendResult::RateLimited { .. } => Some(429),
            SendResult::Transient { status, .. } => *status,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            SendResult::Delivered { .. } => None,
            SendResult::RateLimited { error, .. }
            | SendResult::Transient { error, .. }
            | SendResult::Permanent { error, .. } => Some(error),
        }
    }
}

/// POSTs `body` (JSON) to the webhook, through the client for owner-set URLs (no redirects
/// followed, non-public addresses refused). Returns the result and how long it took, in milliseconds.
pub async fn post(
    http: &crate::notify::outbound::Outbound,
    url: &str,
    body: &str,
) -> (SendResult, i64) {
    let started = Instant::now();
    let req = match http.post(url) {
        Ok(req) => req,
        // Not the public internet, and not allowed by the operator: kept queued on the
        // schedule, as for an unreachable Slack (the operator may allow the network).
        Err(refused) => {
            let error = refused.to_string();
            return (
                SendResult::Transient {
                    status: None,
                    error,
                },
                0,
            );
        }
    };
    let sent = req
        .timeout(SEND_TIMEOUT)
        .header("Content-Type", "application/json; charset=utf-8")
        .header(
            "User-Agent",
            concat!("Countersign/", env!("CARGO_PKG_VERSION")),
        )
        .body(body.to_string())
        .send()
        .await;
    let result = match sent {
        Err(e) => SendResult::Transient {
            status: None,
            error: crate::error::describe_http_failure(e),
        },
        Ok(resp) => classify(resp).await,
    };
    let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    (result, ms)
}

async fn classify(mut resp: reqwest::Response) -> SendResult {
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return SendResult::Delivered { status };
    }
    let retry_after_ms = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map(|secs| i64::from(secs) * 1000);
    let text = error_text(&mut resp).await;
    let error = if text.is_empty() {
        format!("Slack answered HTTP {status}")
    } else {
        format!("Slack answered HTTP {status}: {text}")
    };
    match status {
        429 => SendResult::RateLimited {
            retry_after_ms,
            error,
        },
        500..=599 => SendResult::Transient {
            status: Some(status),
            error,
        },
        300..=399 => SendResult::Permanent {
            status,
            error: format!("{error} (a redirect, not followed: check the webhook URL)"),
        },
        _ => SendResult::Permanent { status, error },
    }
}

/// Slack's error text (`no_service`, `invalid_payload`), read with a size cap and reduced to
/// one printable line.
async fn error_text(resp: &mut reqwest::Response) -> String {
    let mut raw = Vec::new();
    while raw.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(c)) => raw.extend_from_slice(&c),
            _ => break,
        }
    }
    raw.truncate(MAX_ERROR_BODY);
    let text: String = String::from_utf8_lossy(&raw)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 200 {
        let mut t: String = text.chars().take(199).collect();
        t.push('…');
        t
    } else {
        text
    }
}
