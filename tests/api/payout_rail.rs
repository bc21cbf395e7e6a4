//! The HTTP payout rail (`payout.provider = "http"`): payouts forwarded, signed, to an upstream
//! processor that speaks the merchant API. First against a second Countersign standing in as
//! the upstream (its real API, signature checks and sandbox rail), then against a scripted
//! stand-in for the answers a real upstream can give: outages, refusals, declines.

use crate::helpers::{BTC_ADDR, Receiver, TestApp, eventually, sign, spawn_app, spawn_app_with};
use countersign::db::withdrawals as wdb;
use countersign::startup::Application;
use serde_json::json;

/// An app paying out through the upstream at `url` with these credentials.
async fn paying_through(url: &str, key: &str, secret: &str) -> TestApp {
    let (url, key, secret) = (url.to_string(), key.to_string(), secret.to_string());
    spawn_app_with(move |s| {
        s.payout.provider = "http".into();
        s.payout.http.url = Some(url);
        s.payout.http.key = Some(key);
        s.payout.http.secret = Some(secret.into());
        s.payout.http.id_prefix = "acme-".into();
        s.payout.http.check_interval_secs = 60;
    })
    .await
}

/// The payout job's last recorded error.
async fn payout_error(app: &TestApp, withdrawal_id: i64) -> Option<String> {
    use sqlx::Row;
    sqlx::query(
        "SELECT last_error FROM jobs WHERE withdrawal_id = $1
           AND (kind = 'payout_submit' OR kind = 'payout_check') ORDER BY id DESC LIMIT 1",
    )
    .bind(withdrawal_id)
    .fetch_optional(app.state.db.reader())
    .await
    .expect("job")
    .and_then(|r| {
        r.try_get::<Option<String>, _>("last_error")
            .expect("last_error")
    })
}

async fn withdrawal(app: &TestApp, foreign_id: &str) -> wdb::Withdrawal {
    wdb::by_foreign_id(&app.state.db, app.project_id(), foreign_id)
        .await
        .expect("read")
        .expect("withdrawal")
}

#[tokio::test]
async fn a_payout_goes_through_an_upstream_countersign_and_comes_back_with_its_txid() {
    let upstream = spawn_app().await;
    upstream.credit("BTC", "1").await;
    let app = paying_through(
        &upstream.url("/api/v2"),
        &upstream.creds.api_key,
        &upstream.creds.api_secret,
    )
    .await;
    app.credit("BTC", "2").await;

    let (code, v) = app.withdraw("w1", "BTC", "0.01", BTC_ADDR).await;
    assert_eq!(code, 200, "{v}");
    let id = withdrawal(&app, "w1").await.id;
    let upstream_fid = format!("acme-cs-wd-{id}");

    // The upstream got it as a signed merchant request and paid it on its own rail.
    eventually("the upstream's withdrawal", || async {
        wdb::by_foreign_id(&upstream.state.db, upstream.project_id(), &upstream_fid)
            .await
            .expect("read")
    })
    .await;
    let paid = upstream.wait_for_status(&upstream_fid, "confirmed").await;
    assert_eq!(paid["amount"], "0.01000000");
    assert_eq!(paid["currency"], "BTC");
    assert_eq!(paid["address"], BTC_ADDR);
    let txid = paid["txid"].as_str().expect("upstream txid").to_string();
    assert_eq!(upstream.balance("BTC").await.0, "0.99000000");

    // Ours waits, on the upstream's "processing", until it asks again.
    assert_eq!(app.status_of("w1").await["status"], "processing");
    app.clock.advance_secs(61);
    let done = app.wait_for_status("w1", "confirmed").await;
    assert_eq!(done["txid"], txid.as_str());
    assert_eq!(
        app.balance("BTC").await,
        ("1.99000000".into(), "0.00000000".into())
    );
    // Asked again, the upstream still holds one payout for it.
    assert_eq!(upstream.count("withdrawals").await, 1);
}

#[tokio::test]
async fn an_upstream_outage_is_retried_with_the_same_signed_request_and_pays_once() {
    let upstream = Receiver::start().await;
    upstream.answer_with_body(503, &[], "upstream down");
    let app = paying_through(&upstream.url, "up-key", "up-secret").await;
    app.credit("BTC", "1").await;
    app.withdraw("w1", "BTC", "0.01", BTC_ADDR).await;
    let id = withdrawal(&app, "w1").await.id;

    let first = eventually("the first submission", || async {
        upstream.all().into_iter().next()
    })
    .await;
    assert!(first.path.ends_with("/withdrawal/crypto"), "{}", first.path);
    assert_eq!(first.header("X-Processing-Key"), Some("up-key"));
    assert_eq!(
        first.header("X-Processing-Signature"),
        Some(sign("up-secret", first.body.as_bytes()).as_str())
    );
    assert_eq!(
        first.json(),
        json!({"foreign_id": format!("acme-cs-wd-{id}"), "currency": "BTC",
               "amount": "0.01", "address": BTC_ADDR})
    );
    let error = eventually("the outage recorded", || async {
        payout_error(&app, id).await
    })
    .await;
    assert_eq!(error, "upstream answered HTTP 503");
    // Nothing known to have failed: the withdrawal and its funds stay where they were, and
    // its page says why it has not gone out.
    assert_eq!(app.status_of("w1").await["status"], "processing");
    assert_eq!(app.balance("BTC").await.1, "0.01000000");
    let owner = app.create_user("owner", true).await;
    let (code, page) = app
        .signed_in(&owner)
        .await
        .get(&format!("/withdrawals/{id}"))
        .await;
    assert_eq!(code, 200);
    assert!(
        page.contains("Not through yet: upstream answered HTTP 503"),
        "{page}"
    );

    // Back up, and the retry (after its backoff) is the same request.
    upstream.answer_with_body(200, &[], r#"{"data": {"id": 7, "status": "processing"}}"#);
    app.clock.advance_secs(600);
    let second = eventually("the retried submission", || async {
        upstream.all().get(1).cloned()
    })
    .await;
    assert_eq!(second.body, first.body);
    assert_eq!(
        second.header("X-Processing-Signature"),
        first.header("X-Processing-Signature")
    );
    eventually("submitted", || async {
        (withdrawal(&app, "w1").await.status.as_str() == "processing").then_some(())
    })
    .await;

    // Confirmed when asked, with the upstream's txid.
    upstream.answer_with_body(
        200,
        &[],
        r#"{"data": {"id": 7, "status": "confirmed", "txid": "0xfeed"}}"#,
    );
    app.clock.advance_secs(61);
    let done = app.wait_for_status("w1", "confirmed").await;
    assert_eq!(done["txid"], "0xfeed");
    let (_, page) = app
        .signed_in(&owner)
        .await
        .get(&format!("/withdrawals/{id}"))
        .await;
    assert!(page.contains("0xfeed") && !page.contains("Not through yet"));
    let asked = upstream.all();
    let status_asks: Vec<_> = asked
        .iter()
        .filter(|r| r.path.ends_with("/withdrawal/status"))
        .collect();
    assert!(!status_asks.is_empty());
    for ask in status_asks {
        assert_eq!(
            ask.json(),
            json!({"foreign_id": format!("acme-cs-wd-{id}")})
        );
        assert_eq!(
            ask.header("X-Processing-Signature"),
            Some(sign("up-secret", ask.body.as_bytes()).as_str())
        );
    }
    // Submitted exactly twice (the failed try and its retry), never again once accepted.
    let submissions = asked
        .iter()
        .filter(|r| r.path.ends_with("/withdrawal/crypto"))
        .count();
    assert_eq!(submissions, 2);
    assert_eq!(
        app.balance("BTC").await,
        ("0.99000000".into(), "0.00000000".into())
    );
}

#[tokio::test]
async fn an_upstream_refusal_for_good_cancels_the_withdrawal_and_releases_its_funds() {
    let upstream = Receiver::start().await;
    upstream.answer_with_body(
        400,
        &[],
        r#"{"message": "Address is not valid for BTC", "error_code": "invalid_address"}"#,
    );
    let app = paying_through(&upstream.url, "up-key", "up-secret").await;
    let callbacks = Receiver::start().await;
    app.set_callback(&callbacks.url).await;
    app.credit("BTC", "1").await;
    app.withdraw("w1", "BTC", "0.01", BTC_ADDR).await;

    let v = app.wait_for_status("w1", "cancelled").await;
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("invalid_address") && error.contains("Address is not valid for BTC"),
        "{v}"
    );
    assert_eq!(
        app.balance("BTC").await,
        ("1.00000000".into(), "0.00000000".into())
    );
    let cancelled = eventually("the cancelled callback", || async {
        callbacks
            .for_foreign_id("w1")
            .into_iter()
            .find(|r| r.json()["status"] == "cancelled")
    })
    .await;
    assert_eq!(cancelled.json()["error"], v["error"]);
}

#[tokio::test]
async fn a_refusal_that_can_change_is_retried_not_final() {
    let upstream = Receiver::start().await;
    upstream.answer_with_body(
        400,
        &[],
        r#"{"message": "Not enough money on balance", "error_code": "balance_not_enough"}"#,
    );
    let app = paying_through(&upstream.url, "up-key", "up-secret").await;
    app.credit("BTC", "1").await;
    app.withdraw("w1", "BTC", "0.01", BTC_ADDR).await;
    let id = withdrawal(&app, "w1").await.id;
    let error = eventually("the refusal recorded", || async {
        payout_error(&app, id).await
    })
    .await;
    assert!(error.contains("balance_not_enough"), "{error}");
    assert_eq!(app.status_of("w1").await["status"], "processing");
    assert_eq!(app.balance("BTC").await.1, "0.01000000");
}

#[tokio::test]
async fn after_acceptance_only_a_decline_cancels_and_releases() {
    let upstream = Receiver::start().await;
    upstream.answer_with_body(200, &[], r#"{"data": {"status": "pending"}}"#);
    let app = paying_through(&upstream.url, "up-key", "up-secret").await;
    app.credit("BTC", "1").await;
    app.withdraw("w1", "BTC", "0.01", BTC_ADDR).await;
    eventually("submitted", || async {
        (withdrawal(&app, "w1").await.status.as_str() == "processing").then_some(())
    })
    .await;
    // A refused question (here 422) about a payout the upstream took says nothing about
    // the payout: it stays on its way, and is asked about again.
    upstream.answer_with_body(422, &[], r#"{"errors": {"foreign_id": "is unknown here"}}"#);
    app.clock.advance_secs(61);
    let id = withdrawal(&app, "w1").await.id;
    let error = eventually("the refused question recorded", || async {
        payout_error(&app, id).await
    })
    .await;
    assert!(error.contains("upstream refused the fields"), "{error}");
    assert_eq!(app.status_of("w1").await["status"], "processing");
    assert_eq!(app.balance("BTC").await.1, "0.01000000");

    upstream.answer_with_body(
        200,
        &[],
        r#"{"data": {"status": "declined", "error": "Declined by user ID:12"}}"#,
    );
    app.clock.advance_secs(600);
    let v = app.wait_for_status("w1", "cancelled").await;
    assert_eq!(
        v["error"],
        "Payout failed: upstream declined the payout: Declined by user ID:12"
    );
    assert_eq!(
        app.balance("BTC").await,
        ("1.00000000".into(), "0.00000000".into())
    );
}

#[tokio::test]
async fn the_rail_is_checked_at_start_up() {
    let start = |tweak: fn(&mut countersign::config::Settings)| async move {
        let mut s = crate::helpers::test_settings(crate::helpers::fresh_database_url().await);
        tweak(&mut s);
        match Application::build(s).await {
            Ok(_) => panic!("started with a bad payout rail"),
            Err(e) => format!("{e:#}"),
        }
    };
    let e = start(|s| s.payout.provider = "wire".into()).await;
    assert!(e.contains("payout.provider"), "{e}");
    let e = start(|s| s.payout.provider = "http".into()).await;
    assert!(e.contains("payout.http.url"), "{e}");
    let e = start(|s| {
        s.payout.provider = "http".into();
        s.payout.http.url = Some("https://upstream.test/api/v2".into());
        s.payout.http.key = Some("k".into());
    })
    .await;
    assert!(e.contains("payout.http.secret"), "{e}");
}
