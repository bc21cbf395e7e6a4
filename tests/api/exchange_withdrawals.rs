//! Withdrawals with exchange (seeds 000/002/003): EUR balance, BTC payout, through every
//! outcome, with exact decimals. Rates: the default table (1 BTC = 60000 EUR, so 1 EUR =
//! 0.0000166666666667 BTC at 12 significant digits). Fees: 1 % on EUR/BTC conversions and
//! 0.0001 BTC per BTC payout.

use crate::helpers::{BTC_ADDR, Receiver, TestApp, eventually, spawn_app_with};
use countersign::config::{FeeSetting, Settings};
use countersign::db::audit::{Actor, Origin};
use countersign::db::{balances, withdrawals as wdb};
use countersign::domain::withdrawal::Event;
use countersign::service::withdrawals::{self as svc, Change};
use serde_json::{Value, json};

fn fees(s: &mut Settings) {
    let fee = |p: &str, f: &str| FeeSetting {
        percent: p.into(),
        fixed: f.into(),
    };
    s.fees.exchange.insert("EUR/BTC".into(), fee("1", ""));
    s.fees.withdrawal.insert("BTC".into(), fee("", "0.0001"));
}

async fn app() -> (TestApp, Receiver) {
    let app = spawn_app_with(fees).await;
    let rx = Receiver::start().await;
    app.set_callback(&rx.url).await;
    app.credit("EUR", "5000").await;
    (app, rx)
}

fn request(foreign_id: &str, amount: &str) -> Value {
    json!({"foreign_id": foreign_id, "currency": "EUR", "convert_to": "BTC", "amount": amount,
        "address": BTC_ADDR, "end_user_reference": "user_12345"})
}

/// The seed 003 "with conversion" body this withdrawal must produce in `status`.
async fn expected_callback(
    app: &TestApp,
    foreign_id: &str,
    status: &str,
    eur: &str,
    btc: &str,
    fee: &str,
) -> Value {
    let w = wdb::by_foreign_id(&app.state.db, app.project_id(), foreign_id)
        .await
        .unwrap()
        .unwrap();
    let x = w.exchange.clone().unwrap();
    json!({
        "id": w.id, "foreign_id": foreign_id, "end_user_reference": "user_12345",
        "type": "withdrawal_exchange",
        "crypto_address": {"id": w.address_id, "currency": "BTC", "address": BTC_ADDR, "tag": null},
        "currency_sent": {"currency": "EUR", "amount": eur},
        "currency_received": {"currency": "BTC", "amount": btc},
        "transactions": [
            {"id": w.id, "currency": "BTC", "transaction_type": "blockchain", "type": "withdrawal",
             "address": BTC_ADDR, "tag": null, "amount": btc, "txid": w.txid, "confirmations": "0"},
            {"id": x.id, "currency": "EUR", "currency_to": "BTC", "transaction_type": "exchange",
             "type": "exchange", "amount": eur, "amount_to": btc}
        ],
        "fees": [{"type": "fee_crypto_withdrawal_from_fiat", "currency": "BTC", "amount": fee}],
        "error": w.error, "status": status
    })
}

async fn callback(rx: &Receiver, foreign_id: &str, status: &str) -> Value {
    eventually(&format!("{status} callback for {foreign_id}"), || async {
        rx.for_foreign_id(foreign_id)
            .into_iter()
            .map(|r| r.json())
            .find(|v| v["status"] == status)
    })
    .await
}

#[tokio::test]
async fn within_limits_it_converts_at_the_creation_rate_pays_and_debits_the_eur_balance() {
    let (app, rx) = app().await;
    let (code, v) = app
        .post_json("/withdrawal/crypto", &request("x1", "600"))
        .await;
    assert_eq!(code, 200, "{v}");
    let id = v["data"]["id"].clone();
    let created = v["data"]["created_at"].clone();
    // 600 EUR = 0.01 BTC; 1 % exchange fee (0.0001) and the 0.0001 payout fee come out of it.
    assert_eq!(
        v["data"],
        json!({
            "id": id, "foreign_id": "x1", "type": "withdrawal_exchange", "status": "processing",
            "currency": "EUR", "amount": "600.00", "convert_to": "BTC",
            "fee": "0.00020000", "fee_currency": "BTC",
            "fees": [{"type": "fee_crypto_withdrawal_from_fiat", "currency": "BTC", "amount": "0.00020000"}],
            "currency_sent": {"currency": "EUR", "amount": "600.00"},
            "currency_received": {"currency": "BTC", "amount": "0.00980000"},
            "exchange_rate": "0.0000166666666667",
            "address": BTC_ADDR, "tag": null, "end_user_reference": "user_12345",
            "approval_required": false, "hold_reasons": [], "created_at": created
        })
    );
    let done = app.wait_for_status("x1", "confirmed").await;
    assert_eq!(done["txid"].as_str().map(str::len), Some(64));
    // The EUR balance paid; no BTC balance was touched.
    assert_eq!(app.balance("EUR").await, ("4400.00".into(), "0.00".into()));
    assert_eq!(app.balance("BTC").await.0, "0.00000000");
    // The rail was asked to send exactly the received amount.
    let sent: String = sqlx::Row::get(
        &sqlx::query("SELECT amount FROM sandbox_payouts")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap(),
        "amount",
    );
    assert_eq!(sent, "0.00980000");
    let got = callback(&rx, "x1", "confirmed").await;
    let want = expected_callback(
        &app,
        "x1",
        "confirmed",
        "600.00000000",
        "0.00980000",
        "0.00020000",
    )
    .await;
    assert_eq!(got, want);
    assert!(
        balances::reconcile(&app.state.db, app.project_id())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn over_the_limit_it_holds_eur_pending_and_a_cancel_releases_it() {
    let (app, rx) = app().await;
    // 1500 EUR is over the 1000 EUR per-operation limit: its base value counts.
    let (_, v) = app
        .post_json("/withdrawal/crypto", &request("x2", "1500"))
        .await;
    assert_eq!(v["data"]["status"], "pending", "{v}");
    assert_eq!(
        v["data"]["hold_reasons"],
        json!(["over the api per-operation limit: 1500 EUR against 1000 EUR"])
    );
    // 1500 EUR = 0.025 BTC; fees 0.00025 + 0.0001.
    assert_eq!(v["data"]["currency_received"]["amount"], "0.02465000");
    assert_eq!(
        app.balance("EUR").await,
        ("3500.00".into(), "1500.00".into())
    );
    let got = callback(&rx, "x2", "pending").await;
    let want = expected_callback(
        &app,
        "x2",
        "pending",
        "1500.00000000",
        "0.02465000",
        "0.00035000",
    )
    .await;
    assert_eq!(got, want);

    let (code, v) = app
        .post_json("/withdrawal/cancel", &json!({"foreign_id": "x2"}))
        .await;
    assert_eq!((code, &v["data"]["status"]), (200, &json!("cancelled")));
    assert_eq!(app.balance("EUR").await, ("5000.00".into(), "0.00".into()));
    let got = callback(&rx, "x2", "cancelled").await;
    let mut want = expected_callback(
        &app,
        "x2",
        "cancelled",
        "1500.00000000",
        "0.02465000",
        "0.00035000",
    )
    .await;
    assert_eq!(want["error"], "Cancelled by merchant");
    want["transactions"][0]["txid"] = Value::Null;
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_declined_exchange_withdrawal_releases_the_eur_and_says_who_declined() {
    let (app, rx) = app().await;
    app.post_json("/withdrawal/crypto", &request("x3", "2400"))
        .await;
    let w = wdb::by_foreign_id(&app.state.db, app.project_id(), "x3")
        .await
        .unwrap()
        .unwrap();
    svc::change(
        &app.state,
        &w,
        Change {
            event: Event::Decline,
            actor: &Actor::User("777".into()),
            note: "declined",
            error: Some("Declined by user ID:777"),
            txid: None,
            check_at: None,
            origin: &Origin::default(),
        },
    )
    .await
    .unwrap();
    assert_eq!(app.balance("EUR").await, ("5000.00".into(), "0.00".into()));
    let got = callback(&rx, "x3", "declined").await;
    // 2400 EUR = 0.04 BTC; fees 0.0004 + 0.0001.
    let want = expected_callback(
        &app,
        "x3",
        "declined",
        "2400.00000000",
        "0.03950000",
        "0.00050000",
    )
    .await;
    assert_eq!(want["error"], "Declined by user ID:777");
    assert_eq!(got, want);
}

#[tokio::test]
async fn expiry_and_payout_failure_cancel_and_release_the_eur() {
    let app = spawn_app_with(|s| {
        fees(s);
        s.withdrawals.pending_expiry_hours = 1;
        s.sandbox.fail_addresses = vec!["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq".into()];
    })
    .await;
    let rx = Receiver::start().await;
    app.set_callback(&rx.url).await;
    app.credit("EUR", "5000").await;
    app.post_json("/withdrawal/crypto", &request("slow", "1200"))
        .await;
    let mut failing = request("fail", "300");
    failing["address"] = json!("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq");
    app.post_json("/withdrawal/crypto", &failing).await;
    let v = app.wait_for_status("fail", "cancelled").await;
    assert!(
        v["error"].as_str().unwrap().starts_with("Payout failed"),
        "{v}"
    );
    app.clock.advance_secs(3601);
    let v = app.wait_for_status("slow", "cancelled").await;
    assert_eq!(v["error"], "Expired");
    assert_eq!(app.balance("EUR").await, ("5000.00".into(), "0.00".into()));
    let got = callback(&rx, "slow", "cancelled").await;
    let mut want = expected_callback(
        &app,
        "slow",
        "cancelled",
        "1200.00000000",
        "0.01970000",
        "0.00030000",
    )
    .await;
    want["transactions"][0]["txid"] = Value::Null;
    assert_eq!(got, want);
    assert_eq!(
        callback(&rx, "fail", "cancelled").await["type"],
        "withdrawal_exchange"
    );
}

#[tokio::test]
async fn refusals_write_nothing() {
    let app = spawn_app_with(|s| {
        fees(s);
        s.exchange.pairs = vec!["EUR/BTC".into(), "USDTT/BTC".into()];
    })
    .await;
    app.credit("EUR", "100").await;
    let before = (
        app.count("withdrawals").await,
        app.count("ledger_entries").await,
        app.count("exchanges").await,
    );
    let cases = [
        (
            request("r1", "100.01"),
            "balance_not_enough",
            "Not enough money on balance",
        ),
        // 5 EUR = 0.00008333 BTC: less than the fees, let alone the 0.0001 BTC minimum.
        (
            request("r2", "5"),
            "amount_too_low",
            "nothing would be left",
        ),
        // 7 EUR = 0.00011666 BTC - 0.00000117 - 0.0001 = 0.00001549 BTC < 0.0001
        (
            request("r3", "7"),
            "amount_too_low",
            "converts to 0.00001549 BTC after fees of 0.00010117 BTC",
        ),
        (
            request("r4", "7.001"),
            "invalid_amount",
            "EUR amounts have at most 2 decimal places",
        ),
    ];
    for (body, code, text) in cases {
        let (status, v) = app.post_json("/withdrawal/crypto", &body).await;
        assert_eq!(
            (status, v["error_code"].as_str()),
            (400, Some(code)),
            "{body}: {v}"
        );
        assert!(v["message"].as_str().unwrap().contains(text), "{v}");
    }
    // A pair the installation does not exchange.
    let mut eth = request("r5", "50");
    eth["convert_to"] = json!("ETH");
    eth["address"] = json!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let (status, v) = app.post_json("/withdrawal/crypto", &eth).await;
    assert_eq!(
        (status, v["error_code"].as_str()),
        (400, Some("coin_not_supported")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("EUR cannot be exchanged into ETH")
    );
    assert_eq!(
        (
            app.count("withdrawals").await,
            app.count("ledger_entries").await,
            app.count("exchanges").await
        ),
        before
    );
    assert_eq!(app.balance("EUR").await, ("100.00".into(), "0.00".into()));
}

#[tokio::test]
async fn from_a_crypto_balance_and_with_a_payout_currency_override() {
    let (app, _rx) = app().await;
    app.credit("USDTT", "2000").await;
    // No USDTT/BTC exchange fee configured; the BTC payout fee applies. 1 USDTT = 0.92/60000
    // BTC = 0.0000153333333333; 1000 USDTT -> 0.01533333 BTC, minus 0.0001.
    let (_, v) = app
        .post_json(
            "/withdrawal/crypto",
            &json!({"foreign_id": "u1", "currency": "USDTT", "convert_to": "BTC", "amount": "1000",
                "address": BTC_ADDR}),
        )
        .await;
    assert_eq!(v["data"]["status"], "processing", "{v}");
    assert_eq!(v["data"]["currency_received"]["amount"], "0.01523333");
    assert_eq!(
        v["data"]["fees"],
        json!([{"type": "fee_crypto_withdrawal_from_crypto", "currency": "BTC", "amount": "0.00010000"}])
    );
    // Held, then debited when the payout confirms: either way 1000 USDTT stay available.
    assert_eq!(app.balance("USDTT").await.0, "1000.00000000");
    // A BTC override (in BTC) applies to what is sent: 900 EUR -> 0.01475 BTC > 0.01.
    countersign::service::projects::set_limits(
        &app.state.db,
        app.project_id(),
        countersign::domain::policy::Scope::Api,
        Some(countersign::domain::money::Currency::Btc),
        countersign::domain::policy::LimitSet {
            per_operation: Some("0.01".parse().unwrap()),
            per_hour: None,
            per_day: None,
        },
        &Actor::Cli,
        countersign::clock::Clock::now_ms(&app.clock),
    )
    .await
    .unwrap();
    let (_, v) = app
        .post_json("/withdrawal/crypto", &request("o1", "900"))
        .await;
    assert_eq!(
        v["data"]["hold_reasons"],
        json!(["over the api per-operation limit: 0.01475 BTC against 0.01 BTC"])
    );
}

#[tokio::test]
async fn a_repeated_request_gets_the_original_answer_and_a_changed_one_is_refused() {
    let (app, _rx) = app().await;
    let (_, first) = app
        .post_json("/withdrawal/crypto", &request("i1", "600"))
        .await;
    let mut again = request("i1", "600.0");
    again["convert_to"] = json!("btc");
    let (code, second) = app.post_json("/withdrawal/crypto", &again).await;
    assert_eq!((code, &second), (200, &first));
    // The same fields paid out in another currency are another request.
    let mut other = request("i1", "600");
    other["convert_to"] = json!("LTC");
    other["address"] = json!("LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9");
    let (code, v) = app.post_json("/withdrawal/crypto", &other).await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (400, Some("duplication_request"))
    );
    assert_eq!(app.count("withdrawals").await, 1);
}
