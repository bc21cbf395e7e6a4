use crate::helpers::{
    BTC_ADDR, Received, Receiver, TestApp, eventually, sign, spawn_app, spawn_app_with,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use countersign::db::jobs::{self, Delivery, JobKind};
use countersign::db::withdrawals as wdb;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

/// Checks both signatures with this test's own code, from the published schemes.
pub(crate) fn assert_signed(app: &TestApp, r: &Received) {
    let sig = r
        .header("X-Processing-Signature")
        .expect("X-Processing-Signature");
    assert_eq!(sig, sign(&app.creds.api_secret, r.body.as_bytes()));
    let id = r.header("webhook-id").expect("webhook-id");
    let ts = r.header("webhook-timestamp").expect("webhook-timestamp");
    let key = STANDARD
        .decode(app.creds.webhook_secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let header = r.header("webhook-signature").expect("webhook-signature");
    assert!(
        header.split(' ').any(|s| s == expected),
        "{header} != {expected}"
    );
    // The timestamp is the attempt's, in seconds, from the service's clock: after the
    // withdrawal was created, not after now.
    let ts: i64 = ts.parse().unwrap();
    let now = countersign::clock::Clock::now_ms(&app.clock) / 1000;
    assert!(
        ts >= app.created_at_secs && ts <= now,
        "timestamp {ts} outside the test's time"
    );
}

/// Waits until the callback job has `n` attempts recorded and is back in the queue (so a
/// clock change after this cannot race the worker's rescheduling).
async fn settled_after(app: &TestApp, foreign_id: &str, n: usize) -> Vec<Delivery> {
    eventually(&format!("attempt {n} recorded"), || async {
        let d = deliveries(app, foreign_id).await;
        (d[0].attempts.len() == n && !d[0].leased).then_some(d)
    })
    .await
}

async fn deliveries(app: &TestApp, foreign_id: &str) -> Vec<Delivery> {
    let w = wdb::by_foreign_id(&app.state.db, app.project_id(), foreign_id)
        .await
        .unwrap()
        .unwrap();
    jobs::deliveries_for_withdrawal(&app.state.db, w.id, JobKind::Callback)
        .await
        .unwrap()
}

#[tokio::test]
async fn pending_then_cancelled_callbacks_have_the_seed_shape_and_both_signatures() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.set_callback(&rx.url).await;
    app.credit("BTC", "1").await;
    app.post_json(
        "/withdrawal/crypto",
        &json!({"foreign_id": "operation_987", "currency": "BTC",
        "amount": "0.5", "address": BTC_ADDR, "end_user_reference": "user_12345"}),
    )
    .await;
    eventually("pending callback", || async {
        (rx.for_foreign_id("operation_987").len() == 1).then_some(())
    })
    .await;
    app.post_json(
        "/withdrawal/cancel",
        &json!({"foreign_id": "operation_987"}),
    )
    .await;
    let got = eventually("cancelled callback", || async {
        let v = rx.for_foreign_id("operation_987");
        (v.len() == 2).then_some(v)
    })
    .await;
    for r in &got {
        assert_signed(&app, r);
    }
    let pending = got[0].json();
    let id = pending["id"].clone();
    let addr_id = pending["crypto_address"]["id"].clone();
    assert_eq!(
        pending,
        json!({
            "id": id, "foreign_id": "operation_987", "end_user_reference": "user_12345", "type": "withdrawal",
            "crypto_address": {"id": addr_id, "currency": "BTC", "address": BTC_ADDR, "tag": null},
            "transactions": [{"id": id, "currency": "BTC", "transaction_type": "blockchain", "type": "withdrawal",
                "address": BTC_ADDR, "tag": null, "amount": "0.50000000", "txid": null, "confirmations": "0"}],
            "fees": [], "error": "", "status": "pending"
        })
    );
    let cancelled = got[1].json();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["error"], "Cancelled by merchant");
    // Each event has its own stable id.
    assert_ne!(got[0].header("webhook-id"), got[1].header("webhook-id"));
}

#[tokio::test]
async fn a_confirmed_callback_carries_the_txid() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.set_callback(&rx.url).await;
    app.credit("BTC", "1").await;
    app.withdraw("c1", "BTC", "0.01", BTC_ADDR).await;
    let got = eventually("confirmed callback", || async {
        rx.for_foreign_id("c1")
            .into_iter()
            .find(|r| r.json()["status"] == "confirmed")
    })
    .await;
    assert_signed(&app, &got);
    let v = got.json();
    assert_eq!(v["transactions"][0]["amount"], "0.01000000");
    assert_eq!(
        v["transactions"][0]["txid"].as_str().map(str::len),
        Some(64)
    );
    // No approval was needed: no pending callback before it.
    assert_eq!(rx.for_foreign_id("c1").len(), 1);
}

#[tokio::test]
async fn a_receiver_that_fails_gets_retries_with_the_same_id_until_it_answers() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.answer_with(500);
    app.set_callback(&rx.url).await;
    app.credit("BTC", "1").await;
    app.withdraw("r1", "BTC", "0.5", BTC_ADDR).await;
    settled_after(&app, "r1", 1).await;
    // Not before the first backoff step (1 minute, ±10%).
    app.clock.advance_secs(50);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(rx.for_foreign_id("r1").len(), 1);
    // A redirect is not followed and counts as a failure.
    rx.answer_with(302);
    app.clock.advance_secs(20);
    settled_after(&app, "r1", 2).await;
    rx.answer_with(204);
    app.clock.advance_secs(6 * 60);
    let got = eventually("third attempt", || async {
        let v = rx.for_foreign_id("r1");
        (v.len() == 3).then_some(v)
    })
    .await;
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    assert!(got.iter().all(|r| r.body == got[0].body));
    for r in &got {
        assert_signed(&app, r);
    }
    let d = eventually("delivery recorded", || async {
        let d = deliveries(&app, "r1").await;
        (d[0].status == "done").then_some(d)
    })
    .await;
    let codes: Vec<_> = d[0].attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(302), Some(204)]);
    assert!(d[0].attempts[0].error.as_deref().unwrap().contains("500"));
    // Nothing more is sent for that event once delivered.
    app.clock.advance_secs(12 * 3600);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let same_event = rx
        .all()
        .iter()
        .filter(|r| r.header("webhook-id") == Some(ids[0].as_str()))
        .count();
    assert_eq!(same_event, 3);
}

#[tokio::test]
async fn a_receiver_down_for_three_days_ends_in_a_dead_delivery_with_every_attempt_stored() {
    let app = spawn_app_with_long_expiry().await;
    // Nothing listens on this port: connection refused every time.
    app.set_callback("http://127.0.0.1:9/unreachable").await;
    app.credit("BTC", "1").await;
    app.withdraw("d1", "BTC", "0.5", BTC_ADDR).await;
    let mut last = 0;
    for _ in 0..1500 {
        let d = deliveries(&app, "d1").await;
        if d[0].status == "dead" {
            break;
        }
        let n = d[0].attempts.len();
        if n > last && !d[0].leased {
            last = n;
            // Past the longest backoff step (4 h + 10% jitter).
            app.clock.advance_secs(4 * 3600 + 1800);
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let d = eventually("dead delivery", || async {
        let d = deliveries(&app, "d1").await;
        (d[0].status == "dead").then_some(d)
    })
    .await;
    let n = d[0].attempts.len();
    assert!((10..=30).contains(&n), "{n} attempts");
    assert!(
        d[0].attempts
            .iter()
            .all(|a| a.status_code.is_none() && a.error.as_deref() == Some("connection failed"))
    );
    let first = d[0].attempts.first().unwrap().attempted_at;
    let last_at = d[0].attempts.last().unwrap().attempted_at;
    let hours = (last_at - first) / 3_600_000;
    assert!((60..=80).contains(&hours), "retried for {hours} h");
    assert!(
        d[0].last_error
            .as_deref()
            .unwrap()
            .starts_with("gave up after")
    );
}

async fn spawn_app_with_long_expiry() -> TestApp {
    crate::helpers::spawn_app_with(|s| s.withdrawals.pending_expiry_hours = 24 * 30).await
}

/// The delivery log of a withdrawal: each job with its own attempts, in order, and nothing of
/// another kind or another withdrawal (the attempts are read in one query and handed out).
#[tokio::test]
async fn each_delivery_lists_its_own_attempts() {
    use countersign::db::jobs::{Attempt, NewJob};
    use sqlx::Row;
    let app = spawn_app().await;
    let db = &app.state.db;
    let job = |kind: JobKind, withdrawal_id: i64, key: &str| NewJob {
        kind,
        project_id: app.project_id(),
        withdrawal_id: Some(withdrawal_id),
        dedupe_key: key.to_string(),
        payload: "{}".to_string(),
        run_at: 0,
        deadline: None,
    };
    let mut tx = db.begin().await.unwrap();
    let queued = [
        job(JobKind::Callback, 7, "a"),
        job(JobKind::Slack, 7, "other kind"),
        job(JobKind::Callback, 8, "other withdrawal"),
        job(JobKind::Callback, 7, "b"),
        job(JobKind::Callback, 7, "never tried"),
    ];
    jobs::enqueue_many(&mut tx, &queued, 1).await.unwrap();
    tx.commit().await.unwrap();
    let id_of = |key: &'static str| async move {
        sqlx::query("SELECT id FROM jobs WHERE dedupe_key = $1")
            .bind(key)
            .fetch_one(db.reader())
            .await
            .unwrap()
            .get::<i64, _>("id")
    };
    let tries = [
        ("b", 1, 500),
        ("a", 1, 502),
        ("other kind", 1, 500),
        ("a", 2, 200),
        ("other withdrawal", 1, 500),
        ("b", 2, 503),
        ("b", 3, 204),
    ];
    for (at, (key, attempt, code)) in tries.into_iter().enumerate() {
        jobs::record_attempt(
            db,
            &Attempt {
                job_id: id_of(key).await,
                attempt,
                attempted_at: at as i64,
                status_code: Some(code),
                error: None,
                duration_ms: 1,
            },
        )
        .await
        .unwrap();
    }
    let d = jobs::deliveries_for_withdrawal(db, 7, JobKind::Callback)
        .await
        .unwrap();
    type Tries = Vec<(i64, Option<i64>)>;
    let seen: Vec<(i64, Tries)> = d
        .iter()
        .map(|d| {
            let tries = d.attempts.iter().map(|a| (a.attempt, a.status_code));
            (d.job_id, tries.collect())
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (id_of("a").await, vec![(1, Some(502)), (2, Some(200))]),
            (
                id_of("b").await,
                vec![(1, Some(500)), (2, Some(503)), (3, Some(204))]
            ),
            (id_of("never tried").await, vec![]),
        ]
    );
}

#[tokio::test]
async fn callbacks_to_addresses_outside_the_public_internet_are_refused_at_delivery() {
    // The production default: no network outside the public internet is allowed.
    let app = spawn_app_with(|s| s.outbound.allowed_networks = Vec::new()).await;
    let rx = Receiver::start().await;
    app.credit("BTC", "1").await;
    // A URL already stored (e.g. set while the operator allowed loopback): every delivery is
    // checked again, not only the form.
    app.set_callback(&rx.url).await;
    app.withdraw("ssrf1", "BTC", "0.1", BTC_ADDR).await;
    let d = settled_after(&app, "ssrf1", 1).await;
    assert_eq!(d[0].attempts[0].status_code, None);
    assert_eq!(
        d[0].attempts[0].error.as_deref(),
        Some(
            "refused: 127.0.0.1 is an address outside the public internet (127.0.0.1); \
             the operator can allow it in outbound.allowed_networks"
        )
    );
    // A name is judged by what it resolves to when the connection is made.
    app.set_callback(&rx.url.replace("127.0.0.1", "localhost"))
        .await;
    app.withdraw("ssrf2", "BTC", "0.1", BTC_ADDR).await;
    let d = settled_after(&app, "ssrf2", 1).await;
    let error = d[0].attempts[0].error.clone().unwrap_or_default();
    assert!(
        error.starts_with(
            "refused: localhost resolves only to addresses outside the public internet (127.0.0.1"
        ) || error.starts_with(
            "refused: localhost resolves only to addresses outside the public internet (::1"
        ),
        "{error}"
    );
    // Both stay queued on the retry schedule; nothing reached the receiver.
    assert!(d[0].last_error.is_some());
    assert!(rx.all().is_empty());
}
