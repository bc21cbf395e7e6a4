//! `POST /balances`: balances at the end of past UTC dates, from the ledger, after a sequence
//! of credits, holds, releases, debits and exchanges.

use crate::helpers::{BTC_ADDR, TestApp, spawn_app};
use serde_json::{Value, json};

/// Epoch ms of a UTC instant `YYYY-MM-DDTHH:MM:SS.mmm`.
fn at(s: &str) -> i64 {
    let (date, time) = s.split_once('T').unwrap();
    let day = countersign::clock::parse_utc_date(date).unwrap();
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let p: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    day + ((p[0] * 60 + p[1]) * 60 + p[2]) * 1000 + ms.parse::<i64>().unwrap()
}

async fn balances(app: &TestApp, body: Value) -> (u16, Value) {
    app.post_json("/balances", &body).await
}

async fn on(app: &TestApp, date: &str) -> (Value, Value) {
    let (code, v) = balances(app, json!({"date": date, "currencies": ["BTC", "EUR"]})).await;
    assert_eq!(code, 200, "{date}: {v}");
    assert_eq!(v["date"], date);
    (v["data"].clone(), v["held"].clone())
}

#[tokio::test]
async fn any_past_date_is_answered_from_the_ledger() {
    let app = spawn_app().await;
    app.clock.set_ms(at("2024-03-01T10:00:00"));
    app.credit("BTC", "1").await;
    app.credit("EUR", "1000").await;
    // 2 March: 0.02 BTC (1,200 EUR) is over the limit and held.
    app.clock.set_ms(at("2024-03-02T12:00:00"));
    app.withdraw("held", "BTC", "0.02", BTC_ADDR).await;
    // 3 March: the held one is cancelled (released), then 0.01 BTC is paid (held, debited).
    app.clock.set_ms(at("2024-03-03T09:00:00"));
    app.post_json("/withdrawal/cancel", &json!({"foreign_id": "held"}))
        .await;
    app.withdraw("paid", "BTC", "0.01", BTC_ADDR).await;
    app.wait_for_status("paid", "confirmed").await;
    // 4 March, last millisecond: 100 EUR exchanged into BTC.
    app.clock.set_ms(at("2024-03-04T23:59:59.999"));
    let (_, q) = app
        .post_json(
            "/exchange/create-quota",
            &json!({"from_coin": "EUR", "to_coin": "BTC", "request_amount": "100", "request_coin": "EUR"}),
        )
        .await;
    let (code, _) = app
        .post_json(
            "/exchange/make-exchange",
            &json!({"quote_id": q["quote_id"]}),
        )
        .await;
    assert_eq!(code, 200);
    // 5 March, first millisecond: a credit that belongs to the 5th, not the 4th.
    app.clock.set_ms(at("2024-03-05T00:00:00"));
    app.credit("EUR", "1").await;
    app.clock.set_ms(at("2024-03-05T08:00:00"));

    let zero = (
        json!({"BTC": "0.00000000", "EUR": "0.00"}),
        json!({"BTC": "0.00000000", "EUR": "0.00"}),
    );
    assert_eq!(on(&app, "2024-02-29").await, zero);
    assert_eq!(
        on(&app, "2024-03-01").await,
        (
            json!({"BTC": "1.00000000", "EUR": "1000.00"}),
            zero.1.clone()
        )
    );
    assert_eq!(
        on(&app, "2024-03-02").await,
        (
            json!({"BTC": "0.98000000", "EUR": "1000.00"}),
            json!({"BTC": "0.02000000", "EUR": "0.00"})
        )
    );
    assert_eq!(
        on(&app, "2024-03-03").await,
        (
            json!({"BTC": "0.99000000", "EUR": "1000.00"}),
            zero.1.clone()
        )
    );
    // 100 EUR = 0.00166666 BTC at 60,000 EUR/BTC (no fee configured).
    assert_eq!(
        on(&app, "2024-03-04").await,
        (
            json!({"BTC": "0.99166666", "EUR": "900.00"}),
            zero.1.clone()
        )
    );
    // Today: up to now.
    let (code, v) = balances(&app, json!({"currencies": "BTC, EUR"})).await;
    assert_eq!(code, 200);
    assert_eq!(v["data"], json!({"BTC": "0.99166666", "EUR": "901.00"}));
    assert_eq!(
        (v["date"].as_str(), v["as_of"].as_str()),
        (Some("2024-03-05"), Some("2024-03-05T08:00:00Z"))
    );
    let (_, past) = balances(&app, json!({"date": "2024-03-04"})).await;
    assert_eq!(past["as_of"], "2024-03-04T23:59:59Z");
    // Without a filter: every crypto currency and the fiat balances the project has.
    let keys: Vec<String> = past["data"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "BTC", "ETH", "EUR", "LTC", "SBX", "TON", "TRX", "USDTE", "USDTT"
        ]
    );
}

#[tokio::test]
async fn bad_dates_and_currencies_are_named() {
    let app = spawn_app().await;
    app.clock.set_ms(at("2024-03-05T08:00:00"));
    for (body, field) in [
        (json!({"date": "2024-03-06"}), "date"),
        (json!({"date": "2024-02-30"}), "date"),
        (json!({"date": "05/03/2024"}), "date"),
        (json!({"date": 20240305}), "date"),
        (json!({"currencies": ["BTC", "DOGE"]}), "currencies"),
        (json!({"currencies": [1]}), "currencies"),
        (json!({"currencies": {"BTC": true}}), "currencies"),
    ] {
        let (code, v) = balances(&app, body.clone()).await;
        assert_eq!(code, 422, "{body}: {v}");
        assert!(v["errors"][field].is_string(), "{body}: {v}");
    }
    let (_, v) = balances(&app, json!({"date": "2024-03-06"})).await;
    assert_eq!(
        v["errors"]["date"],
        "must not be in the future (today is 2024-03-05 UTC)"
    );
}

#[tokio::test]
async fn an_empty_body_means_no_filters_but_whitespace_is_not_json() {
    use countersign::domain::money::{Currency, CurrencyKind};
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    app.credit("EUR", "50").await;
    let empty = app.post("/balances", "").await;
    assert_eq!(empty.status().as_u16(), 200);
    let empty: Value = empty.json().await.unwrap();
    // No filters: every crypto currency and the one fiat currency the project holds (EUR,
    // not USD), each as a request naming them all answers.
    let all: Vec<&str> = Currency::ALL
        .into_iter()
        .filter(|c| c.kind() == CurrencyKind::Crypto || *c == Currency::Eur)
        .map(Currency::code)
        .collect();
    let keys: Vec<&str> = empty["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "{empty}");
    assert_eq!(
        (&empty["data"]["BTC"], &empty["data"]["EUR"]),
        (&json!("1.00000000"), &json!("50.00"))
    );
    let (code, named) = balances(&app, json!({ "currencies": all })).await;
    assert_eq!(code, 200, "{named}");
    assert_eq!(empty, named);
    let blank = app.post("/balances", " \n").await;
    assert_eq!(blank.status().as_u16(), 422);
    let v: Value = blank.json().await.unwrap();
    assert!(
        v["errors"]["body"]
            .as_str()
            .is_some_and(|m| m.contains("not valid JSON")),
        "{v}"
    );
}
