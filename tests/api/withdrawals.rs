use crate::helpers::{BTC_ADDR, eventually, spawn_app, spawn_app_with};
use countersign::db::{balances, jobs, withdrawals as wdb};
use serde_json::json;

#[tokio::test]
async fn under_the_limits_a_withdrawal_is_held_paid_and_confirmed() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (code, v) = app.withdraw("w-1", "BTC", "0.01", BTC_ADDR).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["status"], "processing");
    assert_eq!(v["data"]["amount"], "0.01000000");
    assert_eq!(v["data"]["approval_required"], false);
    let done = app.wait_for_status("w-1", "confirmed").await;
    assert_eq!(done["txid"].as_str().map(str::len), Some(64));
    assert_eq!(
        app.balance("BTC").await,
        ("0.99000000".into(), "0.00000000".into())
    );
    assert!(
        balances::reconcile(&app.state.db, app.project_id())
            .await
            .unwrap()
            .is_empty()
    );
    // The timeline has every step.
    let id = done["id"].as_i64().unwrap();
    let steps: Vec<String> = wdb::events(&app.state.db, id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to_status)
        .collect();
    assert_eq!(steps, ["approved", "processing", "confirmed"]);
}

#[tokio::test]
async fn over_a_limit_it_waits_pending_with_the_reason_and_the_funds_held() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    // 0.02 BTC = 1,200 EUR at the default table: over the 1,000 EUR per-operation default.
    let (code, v) = app.withdraw("big", "BTC", "0.02", BTC_ADDR).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["status"], "pending");
    assert_eq!(v["data"]["approval_required"], true);
    let reasons = v["data"]["hold_reasons"].to_string();
    assert!(
        reasons.contains("api per-operation limit")
            && reasons.contains("1200")
            && reasons.contains("1000 EUR"),
        "{reasons}"
    );
    assert_eq!(
        app.balance("BTC").await,
        ("0.98000000".into(), "0.02000000".into())
    );
    let w = wdb::by_foreign_id(&app.state.db, app.project_id(), "big")
        .await
        .unwrap()
        .unwrap();
    assert!(w.requirement.owner_required);
    assert_eq!(w.requirement.approvals, 1);
    // Nothing is paid while it waits.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(app.status_of("big").await["status"], "pending");
    assert_eq!(app.sandbox_submissions(w.id).await, 0);
}

#[tokio::test]
async fn hour_and_day_windows_add_up_and_currency_overrides_apply() {
    let app = spawn_app().await;
    app.credit("SBX", "100000").await;
    // SBX = 1 EUR. Four of 900 fit the 5,000 hour limit... until the sixth.
    for i in 0..5 {
        let (_, v) = app
            .withdraw(&format!("h{i}"), "SBX", "900", "sbx_wallet_1")
            .await;
        assert_eq!(v["data"]["status"], "processing", "h{i}: {v}");
    }
    let (_, v) = app.withdraw("h5", "SBX", "900", "sbx_wallet_1").await;
    assert_eq!(v["data"]["status"], "pending");
    assert!(
        v["data"]["hold_reasons"].to_string().contains("per-hour"),
        "{v}"
    );
    // Cancelling the held one gives its share of the window back.
    let (code, _) = app
        .post_json("/withdrawal/cancel", &json!({"foreign_id": "h5"}))
        .await;
    assert_eq!(code, 200);
    let (_, v) = app.withdraw("h6", "SBX", "400", "sbx_wallet_1").await;
    assert_eq!(v["data"]["status"], "processing", "{v}");
    // A currency override in its own units replaces the EUR default.
    countersign::service::projects::set_limits(
        &app.state.db,
        app.project_id(),
        countersign::domain::policy::Scope::Api,
        Some(countersign::domain::money::Currency::Sbx),
        countersign::domain::policy::LimitSet {
            per_operation: Some(50.into()),
            per_hour: Some(1_000_000.into()),
            per_day: Some(1_000_000.into()),
        },
        &countersign::db::audit::Actor::Cli,
        countersign::clock::Clock::now_ms(&app.clock),
    )
    .await
    .unwrap();
    let (_, v) = app.withdraw("o1", "SBX", "60", "sbx_wallet_1").await;
    assert_eq!(v["data"]["status"], "pending");
    assert!(
        v["data"]["hold_reasons"]
            .to_string()
            .contains("60 SBX against 50 SBX"),
        "{v}"
    );
    // Next UTC day: the day window starts again (hour too).
    app.clock.advance_secs(86_400);
    let (_, v) = app.withdraw("d1", "SBX", "40", "sbx_wallet_1").await;
    assert_eq!(v["data"]["status"], "processing", "{v}");
}

#[tokio::test]
async fn the_merchant_cancels_a_pending_withdrawal_and_the_hold_is_released() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    app.withdraw("big", "BTC", "0.5", BTC_ADDR).await;
    let (code, v) = app
        .post_json("/withdrawal/cancel", &json!({"foreign_id": "big"}))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["status"], "cancelled");
    assert_eq!(v["data"]["error"], "Cancelled by merchant");
    assert_eq!(
        app.balance("BTC").await,
        ("1.00000000".into(), "0.00000000".into())
    );
    // Repeating the cancel is harmless; cancelling a paid one is refused with the reason.
    let (code, _) = app
        .post_json("/withdrawal/cancel", &json!({"foreign_id": "big"}))
        .await;
    assert_eq!(code, 200);
    app.withdraw("small", "BTC", "0.001", BTC_ADDR).await;
    app.wait_for_status("small", "confirmed").await;
    let (code, v) = app
        .post_json("/withdrawal/cancel", &json!({"foreign_id": "small"}))
        .await;
    assert_eq!(code, 400);
    assert_eq!(v["error_code"], "invalid_status");
    assert!(v["message"].as_str().unwrap().contains("confirmed"), "{v}");
    // Unknown foreign ids.
    let (code, v) = app
        .post_json("/withdrawal/cancel", &json!({"foreign_id": "nope"}))
        .await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (404, Some("resource_not_found"))
    );
    let (code, v) = app
        .post_json("/withdrawal/status", &json!({"foreign_id": "nope"}))
        .await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (404, Some("resource_not_found"))
    );
}

#[tokio::test]
async fn a_withdrawal_left_pending_expires_after_the_configured_time() {
    let app = spawn_app_with(|s| s.withdrawals.pending_expiry_hours = 2).await;
    app.credit("BTC", "1").await;
    app.withdraw("slow", "BTC", "0.5", BTC_ADDR).await;
    app.clock.advance_secs(2 * 3600 - 10);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(app.status_of("slow").await["status"], "pending");
    app.clock.advance_secs(11);
    let v = app.wait_for_status("slow", "cancelled").await;
    assert_eq!(v["error"], "Expired");
    assert_eq!(
        app.balance("BTC").await,
        ("1.00000000".into(), "0.00000000".into())
    );
}

#[tokio::test]
async fn the_same_request_again_returns_the_original_response() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (c1, first) = app.withdraw("idem", "BTC", "0.01", BTC_ADDR).await;
    app.wait_for_status("idem", "confirmed").await;
    // Same fields, amount written differently: the original answer, nothing new.
    let (c2, again) = app.withdraw("idem", "BTC", "0.0100", BTC_ADDR).await;
    assert_eq!((c1, c2), (200, 200));
    assert_eq!(first, again);
    assert_eq!(app.count("withdrawals").await, 1);
    // Different fields: refused.
    let (code, v) = app.withdraw("idem", "BTC", "0.02", BTC_ADDR).await;
    assert_eq!(code, 400);
    assert_eq!(v["error_code"], "duplication_request");
    assert_eq!(app.balance("BTC").await.0, "0.99000000");
}

#[tokio::test]
async fn not_enough_balance_is_refused_and_holds_nothing() {
    let app = spawn_app().await;
    app.credit("BTC", "0.01").await;
    let (code, v) = app.withdraw("x", "BTC", "0.02", BTC_ADDR).await;
    assert_eq!(code, 400);
    assert_eq!(
        v,
        json!({"message": "Not enough money on balance", "error_code": "balance_not_enough"})
    );
    // A currency never funded.
    let (code, v) = app
        .withdraw("y", "LTC", "1", "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9")
        .await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (400, Some("balance_not_enough"))
    );
    assert_eq!(app.count("withdrawals").await, 0);
    assert_eq!(
        app.balance("BTC").await,
        ("0.01000000".into(), "0.00000000".into())
    );
}

#[tokio::test]
async fn a_payout_the_rail_rejects_is_cancelled_and_released() {
    let app = spawn_app_with(|s| s.sandbox.fail_addresses = vec!["sbx_blocked".into()]).await;
    app.credit("SBX", "10").await;
    app.withdraw("f1", "SBX", "3", "sbx_blocked").await;
    let v = app.wait_for_status("f1", "cancelled").await;
    assert!(
        v["error"].as_str().unwrap().starts_with("Payout failed"),
        "{v}"
    );
    assert_eq!(
        app.balance("SBX").await,
        ("10.00000000".into(), "0.00000000".into())
    );
}

#[tokio::test]
async fn a_slow_payout_stays_processing_until_the_rail_confirms() {
    let app = spawn_app_with(|s| s.sandbox.confirm_delay_secs = 600).await;
    app.credit("SBX", "10").await;
    app.withdraw("s1", "SBX", "3", "sbx_wallet_1").await;
    let w = eventually("payout submitted", || async {
        let w = wdb::by_foreign_id(&app.state.db, app.project_id(), "s1")
            .await
            .unwrap()
            .unwrap();
        (w.status == countersign::domain::withdrawal::Status::Processing).then_some(w)
    })
    .await;
    assert!(w.txid.is_some());
    assert_eq!(
        app.balance("SBX").await,
        ("7.00000000".into(), "3.00000000".into())
    );
    app.clock.advance_secs(601);
    app.wait_for_status("s1", "confirmed").await;
    assert_eq!(
        app.balance("SBX").await,
        ("7.00000000".into(), "0.00000000".into())
    );
    // One submission to the rail, whatever the polling did.
    assert_eq!(app.sandbox_submissions(w.id).await, 1);
    // The job is marked done just after the change it made commits.
    let checks = crate::helpers::eventually("the payout check marked done", || async {
        let checks =
            jobs::deliveries_for_withdrawal(&app.state.db, w.id, jobs::JobKind::PayoutCheck)
                .await
                .unwrap();
        checks.iter().all(|c| c.status == "done").then_some(checks)
    })
    .await;
    assert_eq!(checks.len(), 1);
}

#[tokio::test]
async fn accounts_and_currencies_lists() {
    let app = spawn_app().await;
    app.credit("USDTT", "118.71888735").await;
    let (_, v) = app.post_json("/accounts/list", &json!({})).await;
    let usdtt = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["currency"] == "USDTT")
        .unwrap()
        .clone();
    assert_eq!(
        usdtt,
        json!({"currency": "USDTT", "type": "crypto", "balance": "118.71888735", "held": "0.00000000"})
    );
    let (_, v) = app
        .post_json("/currencies/list", &json!({"type": "crypto"}))
        .await;
    let list = v["data"].as_array().unwrap();
    assert_eq!(list.len(), 8);
    let usdtt = list.iter().find(|c| c["name"] == "USDTT").unwrap();
    assert_eq!(
        (usdtt["network_name"].as_str(), usdtt["currency"].as_str()),
        (Some("tron"), Some("USDT"))
    );
    let (code, v) = app
        .post_json("/currencies/list", &json!({"type": "metal"}))
        .await;
    assert_eq!((code, v["errors"]["type"].is_string()), (422, true));
}

#[tokio::test]
async fn the_audit_log_records_every_change_and_detects_tampering() {
    use countersign::db::audit::{Verdict, verify};
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    app.withdraw("a", "BTC", "0.01", BTC_ADDR).await;
    app.wait_for_status("a", "confirmed").await;
    let Verdict::Intact { records } = verify(&app.state.db, app.project_id()).await.unwrap() else {
        panic!("chain broken");
    };
    // project created, credited, withdrawal created, approved→processing, →confirmed
    assert_eq!(records, 5);
    sqlx::query("UPDATE audit_log SET details = '{}' WHERE seq = 3")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    assert_eq!(
        verify(&app.state.db, app.project_id()).await.unwrap(),
        Verdict::Broken {
            seq: 3,
            reason: "record altered".into()
        }
    );
}
