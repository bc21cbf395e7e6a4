//! Exchange quotes and their execution between balances (seed 001: create-quota,
//! make-exchange). Rates: the default table (1 BTC = 60000 EUR); fee: 1 % on EUR/BTC.

use crate::helpers::{TestApp, sign, spawn_app_with};
use countersign::config::FeeSetting;
use countersign::service::projects::{self as psvc, NewProjectInput};
use serde_json::{Value, json};
use std::sync::Arc;

async fn app() -> TestApp {
    let app = spawn_app_with(|s| {
        s.fees.exchange.insert(
            "EUR/BTC".into(),
            FeeSetting {
                percent: "1".into(),
                fixed: String::new(),
            },
        );
        s.exchange.pairs = vec!["EUR/BTC".into(), "BTC/EUR".into()];
    })
    .await;
    app.credit("EUR", "5000").await;
    app
}

async fn quote(app: &TestApp, from: &str, to: &str, amount: &str, coin: &str) -> (u16, Value) {
    app.post_json(
        "/exchange/create-quota",
        &json!({"from_coin": from, "to_coin": to, "request_amount": amount, "request_coin": coin}),
    )
    .await
}

async fn execute(app: &TestApp, quote_id: &Value) -> (u16, Value) {
    app.post_json("/exchange/make-exchange", &json!({"quote_id": quote_id}))
        .await
}

#[tokio::test]
async fn a_quote_fixes_the_price_and_executing_it_moves_both_balances() {
    let app = app().await;
    let (code, q) = quote(&app, "EUR", "BTC", "100", "EUR").await;
    assert_eq!(code, 200, "{q}");
    let now_s = countersign::clock::Clock::now_ms(&app.clock) / 1000;
    assert_eq!(q["quote_id"].as_str().map(str::len), Some(22));
    // 100 EUR = 0.00166666 BTC (rounded down); 1 % fee = 0.00001667 (rounded up).
    assert_eq!(
        q,
        json!({
            "quote_id": q["quote_id"], "expire_time": 60, "expire_timestamp": now_s + 60,
            "from_coin": "EUR", "from_amount": "100.00000000",
            "request_amount": "100.00000000", "request_coin": "EUR",
            "to_coin": "BTC", "to_amount": "0.00164999",
            "exchange_rate": "0.0000166666666667", "reverse_exchange_rate": "60000",
            "fee_amount": "0.00001667", "fee_coin": "BTC",
            "merchant_id": app.project_id(), "user_id": null
        })
    );
    // A quote moves nothing.
    assert_eq!(app.balance("EUR").await.0, "5000.00");
    let (code, v) = execute(&app, &q["quote_id"]).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(
        (
            v["data"]["from_amount"].as_str(),
            v["data"]["to_amount"].as_str()
        ),
        (Some("100.00000000"), Some("0.00164999"))
    );
    assert_eq!(app.balance("EUR").await, ("4900.00".into(), "0.00".into()));
    assert_eq!(
        app.balance("BTC").await,
        ("0.00164999".into(), "0.00000000".into())
    );
    // Reused: refused, nothing moves again.
    let (code, v) = execute(&app, &q["quote_id"]).await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (400, Some("duplication_request")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("already executed at")
    );
    assert_eq!(app.balance("EUR").await.0, "4900.00");
    assert!(
        countersign::db::balances::reconcile(&app.state.db, app.project_id())
            .await
            .unwrap()
            .is_empty()
    );
    // And back the other way (no fee configured on BTC/EUR): 0.001 BTC = 60.00 EUR.
    let (_, q) = quote(&app, "BTC", "EUR", "0.001", "BTC").await;
    assert_eq!(
        (q["to_amount"].as_str(), q["fee_amount"].as_str()),
        (Some("60.00000000"), Some("0.00000000"))
    );
    assert_eq!(execute(&app, &q["quote_id"]).await.0, 200);
    assert_eq!(app.balance("EUR").await.0, "4960.00");
    assert_eq!(app.balance("BTC").await.0, "0.00064999");
}

#[tokio::test]
async fn asking_for_an_exact_amount_to_receive_prices_what_it_takes() {
    let app = app().await;
    let (code, q) = quote(&app, "EUR", "BTC", "0.001", "BTC").await;
    assert_eq!(code, 200, "{q}");
    // 0.001 BTC after a 1 % fee needs 0.001 / 0.99 = 0.00101011 BTC (rounded up), which costs
    // 0.00101011 × 60000 = 60.6066 → 60.61 EUR.
    assert_eq!(q["to_amount"], "0.00100000");
    assert_eq!(q["fee_amount"], "0.00001011");
    assert_eq!(q["from_amount"], "60.61000000");
    assert_eq!(q["request_amount"], "0.00100000");
    assert_eq!(q["request_coin"], "BTC");
    execute(&app, &q["quote_id"]).await;
    assert_eq!(app.balance("EUR").await.0, "4939.39");
    assert_eq!(app.balance("BTC").await.0, "0.00100000");
}

#[tokio::test]
async fn a_quote_expires_after_sixty_seconds() {
    let app = app().await;
    let (_, a) = quote(&app, "EUR", "BTC", "10", "EUR").await;
    let (_, b) = quote(&app, "EUR", "BTC", "10", "EUR").await;
    app.clock.advance_ms(59_999);
    assert_eq!(execute(&app, &a["quote_id"]).await.0, 200);
    app.clock.advance_ms(1);
    let (code, v) = execute(&app, &b["quote_id"]).await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (400, Some("process_exchange_quota_error")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("expired at"), "{v}");
    assert_eq!(app.balance("EUR").await.0, "4990.00");
    assert_eq!(app.count("exchanges").await, 1);
}

#[tokio::test]
async fn ten_executions_of_one_quote_racing_move_the_money_once() {
    let app = Arc::new(app().await);
    let (_, q) = quote(&app, "EUR", "BTC", "1000", "EUR").await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (app, id) = (app.clone(), q["quote_id"].clone());
            tokio::spawn(async move { execute(&app, &id).await })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        let (code, v) = t.await.unwrap();
        if code != 200 {
            assert_eq!(v["error_code"], "duplication_request", "{v}");
        }
        codes.push(code);
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(app.balance("EUR").await.0, "4000.00");
    assert_eq!(app.balance("BTC").await.0, "0.01649999");
    assert_eq!(app.count("exchanges").await, 1);
}

#[tokio::test]
async fn without_the_funds_nothing_moves_and_the_quote_stays_usable() {
    let app = app().await;
    let (_, q) = quote(&app, "EUR", "BTC", "6000", "EUR").await;
    let (code, v) = execute(&app, &q["quote_id"]).await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (400, Some("balance_not_enough"))
    );
    assert_eq!(app.count("ledger_entries").await, 1);
    app.credit("EUR", "1000").await;
    assert_eq!(execute(&app, &q["quote_id"]).await.0, 200);
    assert_eq!(app.balance("EUR").await.0, "0.00");
}

#[tokio::test]
async fn bad_quote_requests_name_the_field_or_the_reason() {
    let app = app().await;
    let (code, v) = app.post_json("/exchange/create-quota", &json!({})).await;
    assert_eq!(code, 422);
    let named: Vec<_> = v["errors"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        named,
        ["from_coin", "request_amount", "request_coin", "to_coin"]
    );
    let cases = [
        (
            json!({"from_coin": "DOGE", "to_coin": "BTC", "request_amount": "1", "request_coin": "BTC"}),
            "from_coin",
        ),
        (
            json!({"from_coin": "EUR", "to_coin": "EUR", "request_amount": "1", "request_coin": "EUR"}),
            "to_coin",
        ),
        (
            json!({"from_coin": "EUR", "to_coin": "BTC", "request_amount": "1", "request_coin": "ETH"}),
            "request_coin",
        ),
        (
            json!({"from_coin": "EUR", "to_coin": "BTC", "request_amount": 1, "request_coin": "EUR"}),
            "request_amount",
        ),
    ];
    for (body, field) in cases {
        let (code, v) = app.post_json("/exchange/create-quota", &body).await;
        assert_eq!(code, 422, "{body}: {v}");
        assert!(v["errors"][field].is_string(), "{field}: {v}");
    }
    let (code, v) = quote(&app, "EUR", "BTC", "1.001", "EUR").await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (400, Some("invalid_amount"))
    );
    assert_eq!(v["message"], "EUR amounts have at most 2 decimal places");
    // 1 satoshi is 0.0006 EUR: nothing in cents.
    let (code, v) = quote(&app, "BTC", "EUR", "0.00000001", "BTC").await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (400, Some("amount_too_low")),
        "{v}"
    );
    let (code, v) = quote(&app, "EUR", "ETH", "10", "EUR").await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (400, Some("coin_not_supported"))
    );
    let (code, v) = execute(&app, &json!("no-such-quote")).await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (404, Some("resource_not_found"))
    );
    assert_eq!(app.count("exchange_quotes").await, 0);
}

#[tokio::test]
async fn another_project_cannot_execute_a_quote() {
    let app = app().await;
    let (_, q) = quote(&app, "EUR", "BTC", "10", "EUR").await;
    let other = psvc::create(
        &app.state.db,
        &app.state.master_key,
        &NewProjectInput {
            name: "Other",
            primary_email: "ops@other.test",
            base_currency: "EUR",
            callback_url: None,
        },
        countersign::clock::Clock::now_ms(&app.clock),
    )
    .await
    .unwrap();
    let body = json!({"quote_id": q["quote_id"]}).to_string();
    let r = app
        .http
        .post(app.url("/api/v2/exchange/make-exchange"))
        .header("X-Processing-Key", &other.api_key)
        .header(
            "X-Processing-Signature",
            sign(&other.api_secret, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.balance("EUR").await.0, "5000.00");
}
