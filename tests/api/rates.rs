//! The rate endpoints (`GET /rates`, `/currencies/rates`, `/currencies/pairs`) and the HTTP
//! rate source against a local stand-in: fresh, stale, malformed, down.

use crate::helpers::{BTC_ADDR, TestApp, eventually, sign, spawn_app, spawn_app_with};
use actix_web::{App, HttpResponse, HttpServer, web};
use countersign::db::withdrawals as wdb;
use countersign::service::pricing::valuation;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A local HTTP server standing in for a live rate feed: answers with a settable status and
/// body, counts requests.
#[derive(Clone)]
struct Feed {
    url: String,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl Feed {
    async fn start(body: Value) -> Feed {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new((200, body.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        let server = HttpServer::new(move || {
            let (a, h) = (a.clone(), h.clone());
            App::new().default_service(web::to(move || {
                let (a, h) = (a.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let (code, body) = a.lock().unwrap().clone();
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                        .content_type("application/json")
                        .body(body)
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Feed {
            url: format!("http://127.0.0.1:{port}/rates.json"),
            answer,
            hits,
        }
    }

    fn set(&self, code: u16, body: &str) {
        *self.answer.lock().unwrap() = (code, body.to_string());
    }
}

async fn live_app(feed_url: &str, max_age_secs: u64, poll_secs: u64) -> TestApp {
    let url = feed_url.to_string();
    spawn_app_with(move |s| {
        s.rates.source = "http".into();
        s.rates.http.url = Some(url);
        s.rates.http.poll_interval_secs = poll_secs;
        s.rates.max_age_secs = max_age_secs;
    })
    .await
}

/// `GET /api/v2/rates`, signed (the signature of an empty body).
async fn get_rates(app: &TestApp) -> (u16, Value) {
    let r = app
        .http
        .get(app.url("/api/v2/rates"))
        .header("X-Processing-Key", &app.creds.api_key)
        .header("X-Processing-Signature", sign(&app.creds.api_secret, b""))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn feed_body(btc: &str) -> Value {
    json!({"id": 9, "base": "EUR", "rates": {"BTC": btc, "ETH": 2500.5, "USDTT": "0.9", "DOGE": "0.1"},
        "date_created": "2023-10-26T19:40:40.865248"})
}

async fn quote(app: &TestApp) -> (u16, Value) {
    app.post_json(
        "/exchange/create-quota",
        &json!({"from_coin": "EUR", "to_coin": "BTC", "request_amount": "100", "request_coin": "EUR"}),
    )
    .await
}

#[tokio::test]
async fn the_static_table_in_the_projects_base_currency() {
    let app = spawn_app().await;
    let (code, v) = get_rates(&app).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["rates"],
        json!({"BTC": "60000", "ETH": "3000", "LTC": "80", "SBX": "1", "TON": "5", "TRX": "0.2",
            "USD": "0.92", "USDTE": "0.92", "USDTT": "0.92"})
    );
    assert_eq!(
        (v["id"].as_u64(), v["base"].as_str()),
        (Some(1), Some("EUR"))
    );
    assert_eq!(
        (v["source"].as_str(), v["stale"].as_bool()),
        (Some("static"), Some(false))
    );
    // A table never ages: a year later it is still used.
    app.clock.advance_secs(365 * 86_400);
    assert_eq!(quote(&app).await.0, 200);
}

#[tokio::test]
async fn currency_rates_and_pairs_with_filters_and_the_seeds_errors() {
    let app =
        spawn_app_with(|s| s.exchange.pairs = vec!["EUR/BTC".into(), "BTC/USDTT".into()]).await;
    let (code, v) = app
        .post_json(
            "/currencies/rates",
            &json!({"currency_from": "BTC", "currency_to": "EUR"}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        v["data"],
        json!([{"currency_from": {"currency": "BTC", "type": "crypto"},
            "currency_to": {"currency": "EUR", "type": "fiat"}, "rate_from": "1", "rate_to": "60000"}])
    );
    let (_, v) = app
        .post_json(
            "/currencies/rates",
            &json!({"currency_from": "EUR", "currency_to": "BTC"}),
        )
        .await;
    assert_eq!(v["data"][0]["rate_to"], "0.0000166666666667");
    // Unfiltered: every ordered pair of the ten priced currencies.
    let (_, v) = app.post_json("/currencies/rates", &json!({})).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 90);
    // Pairs: only what the installation exchanges.
    let (_, v) = app.post_json("/currencies/pairs", &json!({})).await;
    let pairs: Vec<(String, String)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["currency_from"]["currency"].as_str().unwrap().into(),
                p["currency_to"]["currency"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [("BTC".into(), "USDTT".into()), ("EUR".into(), "BTC".into())]
    );
    let (_, v) = app
        .post_json("/currencies/pairs", &json!({"currency_to": "BTC"}))
        .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    for path in ["/currencies/rates", "/currencies/pairs"] {
        let (code, v) = app
            .post_json(path, &json!({"currency_from": "XYZ", "currency_to": 5}))
            .await;
        assert_eq!(code, 422);
        assert_eq!(
            v,
            json!({"errors": {"currency_from": "The selected currency from is invalid.",
                "currency_to": "The selected currency to is invalid."}})
        );
    }
}

#[tokio::test]
async fn live_rates_are_fetched_at_start_and_used_with_their_time() {
    let feed = Feed::start(feed_body("50000.5")).await;
    let app = live_app(&feed.url, 600, 3600).await;
    let (code, v) = get_rates(&app).await;
    assert_eq!(code, 200, "{v}");
    // Numbers are read from their literal text; unknown currencies are ignored.
    assert_eq!(
        v["rates"],
        json!({"BTC": "50000.5", "ETH": "2500.5", "USDTT": "0.9"})
    );
    assert_eq!(
        (v["source"].as_str(), v["stale"].as_bool(), v["id"].as_u64()),
        (Some("http"), Some(false), Some(1))
    );
    // 100 EUR at 50,000.5 EUR/BTC = 0.00199998 BTC (no fee configured).
    let (code, q) = quote(&app).await;
    assert_eq!(code, 200, "{q}");
    assert_eq!(
        (q["to_amount"].as_str(), q["reverse_exchange_rate"].as_str()),
        (Some("0.00199998"), Some("50000.5"))
    );
    // LTC has no live rate: it cannot be valued, so it cannot be withdrawn.
    app.credit("LTC", "10").await;
    let (code, v) = app
        .withdraw("l1", "LTC", "1", "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9")
        .await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (400, Some("coin_not_supported")),
        "{v}"
    );
}

#[tokio::test]
async fn stale_rates_are_shown_but_refuse_conversions_until_fresh_ones_arrive() {
    let feed = Feed::start(feed_body("50000")).await;
    let app = live_app(&feed.url, 120, 60).await;
    app.credit("BTC", "1").await;
    app.credit("EUR", "1000").await;
    app.clock.advance_secs(121);
    let (code, v) = quote(&app).await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (503, Some("rates_unavailable")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("stale: last updated 121 s ago"),
        "{v}"
    );
    // Every withdrawal is valued for limits, so none is accepted meanwhile; nothing is written.
    let (code, v) = app.withdraw("w1", "BTC", "0.001", BTC_ADDR).await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (503, Some("rates_unavailable"))
    );
    assert_eq!(app.count("withdrawals").await, 0);
    let (code, v) = get_rates(&app).await;
    assert_eq!(
        (code, v["stale"].as_bool(), v["rates"]["BTC"].as_str()),
        (200, Some(true), Some("50000"))
    );
    // A new fetch makes them usable again, with the new values.
    feed.set(200, &feed_body("40000").to_string());
    app.state.rates.refresh().await.unwrap();
    let (_, v) = get_rates(&app).await;
    assert_eq!(
        (
            v["stale"].as_bool(),
            v["id"].as_u64(),
            v["rates"]["BTC"].as_str()
        ),
        (Some(false), Some(2), Some("40000"))
    );
    let (code, q) = quote(&app).await;
    assert_eq!(code, 200, "{q}");
    assert_eq!(q["to_amount"], "0.00250000");
}

#[tokio::test]
async fn malformed_or_failing_answers_keep_the_last_good_rates() {
    let feed = Feed::start(feed_body("50000")).await;
    let app = live_app(&feed.url, 600, 3600).await;
    for (code, body, says) in [
        (200, "not json", "malformed"),
        (
            200,
            r#"{"base": "EUR", "rates": {"BTC": "-1"}}"#,
            "rate for BTC must be a positive decimal",
        ),
        (
            200,
            r#"{"base": "EUR", "rates": {"BTC": "1e5"}}"#,
            "rate for BTC",
        ),
        (200, r#"{"rates": {"BTC": "1"}}"#, "malformed"),
        (503, "{}", "answered HTTP 503"),
    ] {
        feed.set(code, body);
        let e = app.state.rates.refresh().await.unwrap_err();
        assert!(e.to_string().contains(says), "{body}: {e}");
        let (_, v) = get_rates(&app).await;
        assert_eq!(
            (
                v["id"].as_u64(),
                v["rates"]["BTC"].as_str(),
                v["stale"].as_bool()
            ),
            (Some(1), Some("50000"), Some(false)),
            "{body}"
        );
        assert_eq!(quote(&app).await.0, 200);
    }
    assert_eq!(feed.hits.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_source_that_never_answered_refuses_everything_that_needs_a_rate() {
    // Nothing listens on port 9.
    let app = live_app("http://127.0.0.1:9/rates.json", 600, 3600).await;
    app.credit("BTC", "1").await;
    let (code, v) = get_rates(&app).await;
    assert_eq!(
        (code, v["error_code"].as_str()),
        (503, Some("rates_unavailable")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("connection failed"),
        "{v}"
    );
    let (code, _) = app.withdraw("w1", "BTC", "0.001", BTC_ADDR).await;
    assert_eq!(code, 503);
    let (code, _) = app.post_json("/currencies/pairs", &json!({})).await;
    assert_eq!(code, 503);
    assert_eq!(
        app.count("withdrawals").await + app.count("exchange_quotes").await,
        0
    );
}

#[tokio::test]
async fn the_poller_fetches_by_itself() {
    let feed = Feed::start(feed_body("50000")).await;
    let app = live_app(&feed.url, 600, 1).await;
    feed.set(200, &feed_body("51000").to_string());
    let v = eventually("a polled update", || async {
        let (_, v) = get_rates(&app).await;
        (v["rates"]["BTC"] == "51000").then_some(v)
    })
    .await;
    assert!(v["id"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn approvers_see_the_value_at_creation_and_the_value_now() {
    let feed = Feed::start(feed_body("50000")).await;
    let app = live_app(&feed.url, 600, 3600).await;
    app.credit("EUR", "5000").await;
    // 2,000 EUR into BTC: over the 1,000 EUR limit, held for approval.
    app.post_json(
        "/withdrawal/crypto",
        &json!({"foreign_id": "v1", "currency": "EUR", "convert_to": "BTC", "amount": "2000", "address": BTC_ADDR}),
    )
    .await;
    let w = wdb::by_foreign_id(&app.state.db, app.project_id(), "v1")
        .await
        .unwrap()
        .unwrap();
    let created_at = w.rates_at;
    feed.set(200, &feed_body("55000").to_string());
    app.clock.advance_secs(30);
    app.state.rates.refresh().await.unwrap();
    let v = valuation(&app.state, &w);
    assert_eq!(v.base_currency, "EUR");
    // 2000 EUR = 0.04 BTC, worth 2,000 EUR at creation and 2,200 EUR now.
    assert_eq!(w.amount.normalize().to_string(), "0.04");
    assert_eq!(v.at_creation.value.normalize().to_string(), "2000");
    assert_eq!(v.at_creation.rates_at, created_at);
    assert_eq!(v.at_creation.exchange_rate.unwrap().to_string(), "0.00002");
    let now = v.now.unwrap();
    assert_eq!(now.value.normalize().to_string(), "2200");
    assert_eq!(now.rate.to_string(), "55000");
    assert_eq!(now.exchange_rate.unwrap().to_string(), "0.0000181818181818");
    assert!(now.rates_at > created_at);
    // Stale rates: "value now" says why there is none.
    app.clock.advance_secs(601);
    assert!(valuation(&app.state, &w).now.is_err());
}
