//! Edges of money and the lifecycle found in review: a movement stamped before it waited for
//! its balance, a decision on a withdrawal past its expiry that the worker has not swept yet,
//! and one withdrawal that cannot be expired among others that can.

use crate::helpers::{BTC_ADDR, TestApp, spawn_app_with};
use countersign::clock::Clock;
use countersign::db::balances::{self, LedgerKind};
use countersign::db::withdrawals as wdb;
use countersign::worker::Worker;
use rust_decimal::Decimal;
use std::str::FromStr;

const ETH_ADDR: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

/// An app whose background work runs only when a test runs a round.
async fn quiet_app() -> TestApp {
    spawn_app_with(|s| s.worker.enabled = false).await
}

async fn round(app: &TestApp) -> usize {
    let (_keep, running) = tokio::sync::watch::channel(false);
    Worker::new(app.state.clone())
        .round(&running)
        .await
        .expect("worker round")
}

#[tokio::test]
async fn a_movement_stamped_before_its_wait_never_makes_the_balance_look_older() {
    let app = quiet_app().await;
    app.credit("BTC", "1").await;
    let now = app.clock.now_ms();
    // A hold whose time was taken 5 s before it got the balance (it queued behind the
    // credit), committed after it.
    let db = &app.state.db;
    let mut tx = db.begin().await.expect("begin");
    let b = balances::lock(db, &mut tx, app.project_id(), "BTC")
        .await
        .expect("lock")
        .expect("balance");
    balances::apply(
        &mut tx,
        app.project_id(),
        "BTC",
        b,
        LedgerKind::Hold,
        dec("0.25"),
        None,
        now - 5_000,
    )
    .await
    .expect("hold");
    tx.commit().await.expect("commit");

    // The balance now is the one after both movements, however it is asked for.
    assert_eq!(
        balances::at(db, app.project_id(), "BTC", now + 1)
            .await
            .expect("at")
            .map(|(a, h)| (a.normalize(), h.normalize())),
        Some((dec("0.75"), dec("0.25")))
    );
    let (code, v) = app
        .post_json("/balances", &serde_json::json!({"currencies": ["BTC"]}))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["data"]["BTC"].clone(), v["held"]["BTC"].clone()),
        ("0.75000000".into(), "0.25000000".into())
    );
    assert_eq!(
        app.balance("BTC").await,
        ("0.75000000".into(), "0.25000000".into())
    );
}

#[tokio::test]
async fn a_decision_after_the_expiry_expires_the_withdrawal_instead() {
    let app = quiet_app().await;
    let owner = app.create_user("owner", true).await;
    app.credit("BTC", "1").await;
    // Over the 1,000 EUR per-operation limit: pending, waiting for an owner.
    let (code, v) = app.withdraw("late", "BTC", "0.02", BTC_ADDR).await;
    assert_eq!((code, v["data"]["status"].as_str()), (200, Some("pending")));
    let id = wdb::by_foreign_id(&app.state.db, app.project_id(), "late")
        .await
        .expect("read")
        .expect("withdrawal")
        .id;
    // Past the 24 hours, with nothing swept yet (the worker is stopped).
    app.clock.advance_secs(24 * 3600 + 60);
    let b = app.signed_in(&owner).await;
    b.get(&format!("/withdrawals/{id}")).await;
    app.clock.advance_secs(30);
    let (status, page, _) = b
        .post_form(
            &format!("/withdrawals/{id}/approve"),
            &[("code", &app.code(&owner))],
        )
        .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("cancelled"), "{page}");
    let v = app.status_of("late").await;
    assert_eq!(
        (v["status"].as_str(), v["error"].as_str()),
        (Some("cancelled"), Some("Expired"))
    );
    assert_eq!(
        app.balance("BTC").await,
        ("1.00000000".into(), "0.00000000".into())
    );
    assert_eq!(app.sandbox_submissions(id).await, 0);
}

#[tokio::test]
async fn one_withdrawal_that_cannot_expire_does_not_hold_up_the_others_or_the_round() {
    let app = quiet_app().await;
    app.credit("BTC", "1").await;
    app.credit("ETH", "10").await;
    // Both over the per-operation limit, so both wait.
    for (fid, currency, amount, address) in [
        ("eth", "ETH", "0.5", ETH_ADDR),
        ("btc", "BTC", "0.02", BTC_ADDR),
    ] {
        let (code, v) = app.withdraw(fid, currency, amount, address).await;
        assert_eq!(
            (code, v["data"]["status"].as_str()),
            (200, Some("pending")),
            "{v}"
        );
    }
    // The ETH withdrawal's balance row is gone (damaged data): it cannot be expired.
    sqlx::query("DELETE FROM balances WHERE currency = 'ETH'")
        .execute(app.state.db.writer())
        .await
        .expect("delete");
    app.clock.advance_secs(24 * 3600 + 60);
    round(&app).await;
    assert_eq!(app.status_of("btc").await["status"], "cancelled");
    assert_eq!(app.status_of("eth").await["status"], "pending");
}
