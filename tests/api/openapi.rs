//! The OpenAPI document: every merchant endpoint is in it, and real responses (every
//! documented status of every endpoint) and real callbacks match their documented schemas.
//! Schemas are checked strictly: an undocumented field fails.

use crate::helpers::{BTC_ADDR, Receiver, TestApp, eventually, spawn_app_with};
use crate::schema_check::Checker;
use countersign::config::FeeSetting;
use countersign::db::projects::{self, NewApiKey};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Every merchant endpoint PRODUCT.md lists, plus the exchange endpoints of seed 001.
const ENDPOINTS: [(&str, &str); 12] = [
    ("get", "/api/v2/ping"),
    ("post", "/api/v2/withdrawal/crypto"),
    ("post", "/api/v2/withdrawal/cancel"),
    ("post", "/api/v2/withdrawal/status"),
    ("post", "/api/v2/accounts/list"),
    ("post", "/api/v2/balances"),
    ("post", "/api/v2/currencies/list"),
    ("post", "/api/v2/currencies/rates"),
    ("post", "/api/v2/currencies/pairs"),
    ("get", "/api/v2/rates"),
    ("post", "/api/v2/exchange/create-quota"),
    ("post", "/api/v2/exchange/make-exchange"),
];

async fn app_with_fees() -> TestApp {
    spawn_app_with(|s| {
        s.fees.exchange.insert(
            "EUR/BTC".into(),
            FeeSetting {
                percent: "1".into(),
                fixed: String::new(),
            },
        );
        s.fees.withdrawal.insert(
            "BTC".into(),
            FeeSetting {
                percent: String::new(),
                fixed: "0.0001".into(),
            },
        );
    })
    .await
}

/// A second key on the project, without withdrawal rights.
async fn read_only_key(app: &TestApp) -> (String, String) {
    let (key, secret) = (
        "ck_readonly_key_for_tests".to_string(),
        "cs_readonly_secret".to_string(),
    );
    let mut tx = app.state.db.begin().await.unwrap();
    projects::insert_api_key(
        &mut tx,
        &NewApiKey {
            id: "key_readonly",
            project_id: app.project_id(),
            key_hash: &countersign::crypto::sha256_hex(key.as_bytes()),
            key_prefix: &key[..10],
            secret_enc: &app.state.master_key.encrypt(&secret).unwrap(),
            can_withdraw: false,
        },
        0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (key, secret)
}

#[tokio::test]
async fn every_endpoint_is_documented_and_served() {
    let app = app_with_fees().await;
    let r = app
        .http
        .get(app.url("/api/v2/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let expected: BTreeSet<_> = ENDPOINTS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        assert!(
            op["summary"].is_string() || op["description"].is_string(),
            "{path} undescribed"
        );
        assert!(
            op["responses"]["200"].is_object() && op["responses"]["401"].is_object(),
            "{path}"
        );
        assert_eq!(
            op["security"],
            json!([{"ApiKey": [], "Signature": []}]),
            "{path}"
        );
        // Served: unsigned, it is refused (401), not unknown (404).
        let req = if method == "get" {
            app.http.get(app.url(path))
        } else {
            app.http.post(app.url(path))
        };
        assert_eq!(req.send().await.unwrap().status(), 401, "{method} {path}");
    }
    assert!(doc["webhooks"]["withdrawalStatus"]["post"].is_object());
    // Deposits are out of scope: not served.
    let r = app
        .http
        .post(app.url("/api/v2/addresses/take"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_reference_page_is_served_by_the_app_without_third_parties() {
    let app = app_with_fees().await;
    let page = app.http.get(app.url("/api/v2/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="/api/v2/docs/reference.js" defer></script>"#));
    for asset in ["reference.js", "reference.css"] {
        let r = app
            .http
            .get(app.url(&format!("/api/v2/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let text = r.text().await.unwrap();
        assert!(text.len() > 1000, "{asset}");
        assert!(
            !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
            "{asset} loads something from elsewhere"
        );
    }
    assert!(!html.contains("https://"));
    let js = app
        .http
        .get(app.url("/api/v2/docs/reference.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !js.contains(".innerHTML") && !js.contains("insertAdjacentHTML"),
        "the page must build its DOM with textContent"
    );
    let r = app
        .http
        .get(app.url("/api/v2/docs/other.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn real_responses_and_callbacks_match_their_schemas() {
    let app = app_with_fees().await;
    let rx = Receiver::start().await;
    app.set_callback(&rx.url).await;
    app.credit("BTC", "1").await;
    app.credit("EUR", "5000").await;
    let doc: Value = app
        .http
        .get(app.url("/api/v2/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut c = Checker::new(doc);
    let me = (app.creds.api_key.clone(), app.creds.api_secret.clone());
    let me = Some((me.0.as_str(), me.1.as_str()));
    let (ro_key, ro_secret) = read_only_key(&app).await;
    let ro = Some((ro_key.as_str(), ro_secret.as_str()));
    let a = &app;

    c.call(a, me, "get", "/api/v2/ping", None).await;
    c.call(a, None, "get", "/api/v2/ping", None).await;

    let w = "/api/v2/withdrawal/crypto";
    let plain = json!({"foreign_id": "p1", "currency": "BTC", "amount": "0.01", "address": BTC_ADDR, "end_user_reference": "u1"});
    let exchange = json!({"foreign_id": "x1", "currency": "EUR", "convert_to": "BTC", "amount": "1500", "address": BTC_ADDR});
    assert_eq!(c.call(a, me, "post", w, Some(plain.clone())).await.0, 200);
    let (code, v) = c.call(a, me, "post", w, Some(exchange)).await;
    assert_eq!((code, v["data"]["status"].as_str()), (200, Some("pending")));
    assert_eq!(
        c.call(
            a,
            me,
            "post",
            w,
            Some(
                json!({"foreign_id": "big", "currency": "BTC", "amount": "5", "address": BTC_ADDR})
            )
        )
        .await
        .0,
        400
    );
    assert_eq!(c.call(a, None, "post", w, Some(plain.clone())).await.0, 401);
    assert_eq!(c.call(a, ro, "post", w, Some(plain.clone())).await.0, 403);
    assert_eq!(
        c.call(a, me, "post", w, Some(json!({"amount": 1}))).await.0,
        422
    );

    let s = "/api/v2/withdrawal/status";
    app.wait_for_status("p1", "confirmed").await;
    assert_eq!(
        c.call(a, me, "post", s, Some(json!({"foreign_id": "p1"})))
            .await
            .0,
        200
    );
    assert_eq!(
        c.call(a, me, "post", s, Some(json!({"foreign_id": "x1"})))
            .await
            .0,
        200
    );
    assert_eq!(
        c.call(a, None, "post", s, Some(json!({"foreign_id": "p1"})))
            .await
            .0,
        401
    );
    assert_eq!(
        c.call(a, me, "post", s, Some(json!({"foreign_id": "nope"})))
            .await
            .0,
        404
    );
    assert_eq!(c.call(a, me, "post", s, Some(json!({}))).await.0, 422);

    let x = "/api/v2/withdrawal/cancel";
    assert_eq!(
        c.call(a, me, "post", x, Some(json!({"foreign_id": "x1"})))
            .await
            .0,
        200
    );
    assert_eq!(
        c.call(a, me, "post", x, Some(json!({"foreign_id": "p1"})))
            .await
            .0,
        400
    );
    assert_eq!(
        c.call(a, None, "post", x, Some(json!({"foreign_id": "x1"})))
            .await
            .0,
        401
    );
    assert_eq!(
        c.call(a, ro, "post", x, Some(json!({"foreign_id": "x1"})))
            .await
            .0,
        403
    );
    assert_eq!(
        c.call(a, me, "post", x, Some(json!({"foreign_id": "nope"})))
            .await
            .0,
        404
    );
    assert_eq!(
        c.call(a, me, "post", x, Some(json!({"foreign_id": 7})))
            .await
            .0,
        422
    );

    for path in ["/api/v2/accounts/list", "/api/v2/currencies/list"] {
        assert_eq!(c.call(a, me, "post", path, Some(json!({}))).await.0, 200);
        assert_eq!(c.call(a, None, "post", path, Some(json!({}))).await.0, 401);
    }
    assert_eq!(
        c.call(
            a,
            me,
            "post",
            "/api/v2/currencies/list",
            Some(json!({"type": "fiat"}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call(a, me, "post", "/api/v2/accounts/list", Some(json!([1])))
            .await
            .0,
        422
    );
    assert_eq!(
        c.call(
            a,
            me,
            "post",
            "/api/v2/currencies/list",
            Some(json!({"type": "metal"}))
        )
        .await
        .0,
        422
    );

    let b = "/api/v2/balances";
    assert_eq!(c.call(a, me, "post", b, Some(json!({}))).await.0, 200);
    assert_eq!(
        c.call(
            a,
            me,
            "post",
            b,
            Some(json!({"date": "2024-01-31", "currencies": ["BTC"]}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call(a, me, "post", b, Some(json!({"currencies": "BTC,EUR"})))
            .await
            .0,
        200
    );
    assert_eq!(c.call(a, None, "post", b, Some(json!({}))).await.0, 401);
    assert_eq!(
        c.call(a, me, "post", b, Some(json!({"date": "yesterday"})))
            .await
            .0,
        422
    );

    for path in ["/api/v2/currencies/rates", "/api/v2/currencies/pairs"] {
        assert_eq!(
            c.call(a, me, "post", path, Some(json!({"currency_from": "BTC"})))
                .await
                .0,
            200
        );
        assert_eq!(c.call(a, None, "post", path, Some(json!({}))).await.0, 401);
        assert_eq!(
            c.call(a, me, "post", path, Some(json!({"currency_to": "XYZ"})))
                .await
                .0,
            422
        );
    }
    assert_eq!(c.call(a, me, "get", "/api/v2/rates", None).await.0, 200);
    assert_eq!(c.call(a, None, "get", "/api/v2/rates", None).await.0, 401);

    let q = "/api/v2/exchange/create-quota";
    let ask = json!({"from_coin": "EUR", "to_coin": "BTC", "request_amount": "100", "request_coin": "EUR"});
    let (code, quote) = c.call(a, me, "post", q, Some(ask.clone())).await;
    assert_eq!(code, 200);
    let mut bad = ask.clone();
    bad["request_amount"] = json!("0.001");
    assert_eq!(c.call(a, me, "post", q, Some(bad)).await.0, 400);
    assert_eq!(c.call(a, None, "post", q, Some(ask.clone())).await.0, 401);
    assert_eq!(c.call(a, ro, "post", q, Some(ask.clone())).await.0, 403);
    assert_eq!(
        c.call(a, me, "post", q, Some(json!({"from_coin": "EUR"})))
            .await
            .0,
        422
    );
    let m = "/api/v2/exchange/make-exchange";
    let id = json!({"quote_id": quote["quote_id"]});
    assert_eq!(c.call(a, me, "post", m, Some(id.clone())).await.0, 200);
    assert_eq!(c.call(a, me, "post", m, Some(id.clone())).await.0, 400);
    assert_eq!(c.call(a, None, "post", m, Some(id.clone())).await.0, 401);
    assert_eq!(c.call(a, ro, "post", m, Some(id.clone())).await.0, 403);
    assert_eq!(
        c.call(a, me, "post", m, Some(json!({"quote_id": "nope"})))
            .await
            .0,
        404
    );
    assert_eq!(c.call(a, me, "post", m, Some(json!({}))).await.0, 422);

    // Rates that never arrived: the documented 503s.
    let down = spawn_app_with(|s| {
        s.rates.source = "http".into();
        s.rates.http.url = Some("http://127.0.0.1:9/rates.json".into());
    })
    .await;
    let d = (down.creds.api_key.clone(), down.creds.api_secret.clone());
    let d = Some((d.0.as_str(), d.1.as_str()));
    down.credit("BTC", "1").await;
    assert_eq!(c.call(&down, d, "post", w, Some(plain)).await.0, 503);
    assert_eq!(c.call(&down, d, "post", q, Some(ask)).await.0, 503);
    assert_eq!(
        c.call(
            &down,
            d,
            "post",
            "/api/v2/currencies/rates",
            Some(json!({}))
        )
        .await
        .0,
        503
    );
    assert_eq!(
        c.call(
            &down,
            d,
            "post",
            "/api/v2/currencies/pairs",
            Some(json!({}))
        )
        .await
        .0,
        503
    );
    assert_eq!(c.call(&down, d, "get", "/api/v2/rates", None).await.0, 503);

    // Every documented answer of every endpoint was produced and checked.
    let mut missing = Vec::new();
    for (path, item) in c.doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in op["responses"].as_object().unwrap().keys() {
                let key = (method.clone(), path.clone(), status.parse::<u16>().unwrap());
                if !c.seen.contains(&key) {
                    missing.push(format!("{method} {path} {status}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented but never exercised: {missing:?}"
    );

    // Callbacks: a plain confirmed one, an exchange pending and cancelled.
    let got = eventually("callbacks", || async {
        let all: Vec<Value> = rx.all().iter().map(|r| r.json()).collect();
        (all.len() >= 3).then_some(all)
    })
    .await;
    let kinds: BTreeSet<(String, String)> = got
        .iter()
        .map(|v| {
            (
                v["type"].as_str().unwrap().into(),
                v["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("withdrawal".into(), "confirmed".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("withdrawal_exchange".into(), "pending".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("withdrawal_exchange".into(), "cancelled".into())),
        "{kinds:?}"
    );
    for v in &got {
        c.check(&Checker::schema_ref("CallbackPayload"), v, "callback");
    }
    // The strict check does catch an undocumented field.
    let mut extra = got[0].clone();
    extra["surprise"] = json!(1);
    let mut root = Checker::schema_ref("CallbackPayload");
    root["components"] = c.components.clone();
    assert!(
        !jsonschema::draft202012::new(&root)
            .unwrap()
            .is_valid(&extra)
    );
}
