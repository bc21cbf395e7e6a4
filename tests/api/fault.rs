//! Fault tolerance: the real binary killed with SIGKILL under load and restarted, three
//! instances sharing one PostgreSQL, a callback receiver down for ten hours (test clock), SMTP
//! and Slack failing, and the database itself stopped and started while requests flow.
//!
//! What every scenario checks at the end is what a merchant and an operator would check:
//! each withdrawal in its right final state, each callback event delivered (by `webhook-id`),
//! one payout per withdrawal, balances equal to their ledger, nothing left queued or dead.

mod db_restart;
mod outages;
mod processes;

use crate::helpers::{Received, sign};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::time::{Duration, Instant};

/// Polls `check` until it returns Some, for up to `limit` (the suite's `eventually` allows
/// 15 s; a thousand withdrawals through a restarted process need longer).
pub(crate) async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A project's credentials as `project create` prints them.
#[derive(Debug, Clone)]
pub(crate) struct Creds {
    pub project_id: String,
    pub api_key: String,
    pub api_secret: String,
    pub webhook_secret: String,
}

impl Creds {
    pub fn from_json(v: &Value) -> Creds {
        let field = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("{k} in {v}"))
                .to_string()
        };
        Creds {
            project_id: field("project_id"),
            api_key: field("api_key"),
            api_secret: field("api_secret"),
            webhook_secret: field("webhook_secret"),
        }
    }
}

/// POSTs a signed body to `{base}/api/v2{path}`. `Err` when no answer came back (refused,
/// reset, cut mid-answer): the caller does not know whether it was processed.
pub(crate) async fn post_signed(
    http: &reqwest::Client,
    base: &str,
    creds: &Creds,
    path: &str,
    body: &str,
) -> Result<(u16, Value), reqwest::Error> {
    let r = http
        .post(format!("{base}/api/v2{path}"))
        .header("X-Processing-Key", &creds.api_key)
        .header(
            "X-Processing-Signature",
            sign(&creds.api_secret, body.as_bytes()),
        )
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Checks both callback signatures with this test's own code (the published schemes).
pub(crate) fn assert_signed(creds: &Creds, r: &Received) {
    assert_eq!(
        r.header("X-Processing-Signature"),
        Some(sign(&creds.api_secret, r.body.as_bytes()).as_str()),
        "X-Processing-Signature of {}",
        r.body
    );
    let id = r.header("webhook-id").expect("webhook-id");
    let ts = r.header("webhook-timestamp").expect("webhook-timestamp");
    let key = STANDARD
        .decode(creds.webhook_secret.trim_start_matches("whsec_"))
        .expect("whsec is base64");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("hmac key");
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let header = r.header("webhook-signature").expect("webhook-signature");
    assert!(
        header.split(' ').any(|s| s == expected),
        "webhook-signature {header} != {expected}"
    );
}

/// A port nothing listens on (bound, then released): connections to it are refused until
/// someone takes it.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a port")
        .port()
}
