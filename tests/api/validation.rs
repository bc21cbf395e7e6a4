use crate::helpers::{BTC_ADDR, TestApp, spawn_app};
use serde_json::{Value, json};

/// Tables a refused request must leave untouched.
async fn footprint(app: &TestApp) -> Vec<i64> {
    let mut v = Vec::new();
    for t in [
        "withdrawals",
        "ledger_entries",
        "jobs",
        "limit_usage",
        "payout_addresses",
        "withdrawal_events",
    ] {
        v.push(app.count(t).await);
    }
    v.push(app.count("audit_log").await);
    v
}

fn base() -> Value {
    json!({"foreign_id": "v1", "currency": "BTC", "amount": "0.01", "address": BTC_ADDR})
}

fn with(patch: Value) -> Value {
    let mut b = base();
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v.clone();
        }
    }
    b
}

#[tokio::test]
async fn every_bad_field_is_named_and_nothing_is_written() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let before = footprint(&app).await;

    // Malformed JSON and non-object bodies.
    for raw in [
        "{",
        "not json",
        "[1,2]",
        "\"text\"",
        "{\"foreign_id\": \"a\",}",
    ] {
        let r = app.post("/withdrawal/crypto", raw).await;
        assert_eq!(r.status(), 422, "{raw}");
        let v: Value = r.json().await.unwrap();
        assert!(v["errors"]["body"].is_string(), "{raw}: {v}");
    }

    // Everything missing at once: every required field named.
    let (code, v) = app.post_json("/withdrawal/crypto", &json!({})).await;
    assert_eq!(code, 422);
    let named: Vec<&str> = v["errors"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(named, ["address", "amount", "currency", "foreign_id"]);

    // Wrong types and sizes.
    let cases: Vec<(Value, &str)> = vec![
        (with(json!({"amount": 0.01})), "amount"),
        (with(json!({"amount": 1})), "amount"),
        (with(json!({"foreign_id": 12})), "foreign_id"),
        (with(json!({"foreign_id": "x".repeat(129)})), "foreign_id"),
        (with(json!({"foreign_id": "bad\nid"})), "foreign_id"),
        (with(json!({"address": ["a"]})), "address"),
        (
            with(json!({"end_user_reference": {"a": 1}})),
            "end_user_reference",
        ),
        (with(json!({"tag": "123"})), "tag"),
        (with(json!({"convert_to": 5})), "convert_to"),
    ];
    for (body, field) in cases {
        let (code, v) = app.post_json("/withdrawal/crypto", &body).await;
        assert_eq!(code, 422, "{body}: {v}");
        assert!(
            v["errors"][field].is_string(),
            "{field} not named for {body}: {v}"
        );
    }

    // Business refusals with the seeds' codes.
    let refusals: Vec<(Value, &str)> = vec![
        (with(json!({"currency": "DOGE"})), "coin_not_supported"),
        (with(json!({"currency": "EUR"})), "coin_not_supported"),
        // Fiat cannot be sent to an address; nor can an unknown currency.
        (with(json!({"convert_to": "EUR"})), "coin_not_supported"),
        (with(json!({"convert_to": "DOGE"})), "coin_not_supported"),
        (with(json!({"amount": "-0.01"})), "invalid_amount"),
        (with(json!({"amount": "0"})), "invalid_amount"),
        (with(json!({"amount": "0.000000000"})), "invalid_amount"),
        (with(json!({"amount": "0.000000001"})), "invalid_amount"),
        (with(json!({"amount": "1e3"})), "invalid_amount"),
        (with(json!({"amount": "1,5"})), "invalid_amount"),
        (with(json!({"amount": " 1"})), "invalid_amount"),
        (
            with(json!({"amount": "123456789012345678901234567890123"})),
            "invalid_amount",
        ),
        (
            with(json!({"amount": "79228162514264337593543950336"})),
            "invalid_amount",
        ),
        (with(json!({"amount": "0.00001"})), "amount_too_low"),
        (
            with(json!({"address": "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgn"})),
            "invalid_address",
        ),
        (
            with(json!({"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"})),
            "invalid_address",
        ),
        (
            with(
                json!({"currency": "ETH", "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"}),
            ),
            "invalid_address",
        ),
        (
            with(json!({"currency": "USDTT", "amount": "5", "address": BTC_ADDR})),
            "invalid_address",
        ),
        (
            with(
                json!({"currency": "TRX", "amount": "5", "address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u"}),
            ),
            "invalid_address",
        ),
    ];
    for (body, code_expected) in refusals {
        let (code, v) = app.post_json("/withdrawal/crypto", &body).await;
        assert_eq!(code, 400, "{body}: {v}");
        assert_eq!(v["error_code"], code_expected, "{body}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // A body over the size limit.
    let huge = format!("{{\"foreign_id\": \"{}\"}}", "x".repeat(70_000));
    let r = app.post("/withdrawal/crypto", &huge).await;
    assert_eq!(r.status(), 413);

    assert_eq!(
        footprint(&app).await,
        before,
        "a refused request left rows behind"
    );
    assert_eq!(
        app.balance("BTC").await,
        ("1.00000000".into(), "0.00000000".into())
    );
}

#[tokio::test]
async fn valid_requests_on_every_network_are_accepted() {
    let app = spawn_app().await;
    for (cur, amount) in [
        ("BTC", "1"),
        ("LTC", "10"),
        ("ETH", "1"),
        ("USDTE", "100"),
        ("USDTT", "100"),
        ("TRX", "100"),
        ("TON", "10"),
        ("SBX", "10"),
    ] {
        app.credit(cur, amount).await;
    }
    let ok = [
        json!({"foreign_id": "btc", "currency": "BTC", "amount": "0.001", "address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"}),
        json!({"foreign_id": "ltc", "currency": "LTC", "amount": "0.5", "address": "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9"}),
        json!({"foreign_id": "eth", "currency": "ETH", "amount": "0.000000000000000001", "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}),
        json!({"foreign_id": "usdte", "currency": "USDTE", "amount": "10", "address": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"}),
        json!({"foreign_id": "usdtt", "currency": "USDTT", "amount": "1.5", "address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"}),
        json!({"foreign_id": "trx", "currency": "TRX", "amount": "1.123456", "address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"}),
        json!({"foreign_id": "ton", "currency": "TON", "amount": "0.5", "address": "EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N", "memo": "invoice 77"}),
        json!({"foreign_id": "sbx", "currency": "SBX", "amount": "1", "address": "sbx_wallet_1", "end_user_reference": "user_12345"}),
    ];
    // ETH's minimum is 0.001: the 1-wei request is refused as too low, the rest accepted.
    for body in ok {
        let (code, v) = app.post_json("/withdrawal/crypto", &body).await;
        if body["foreign_id"] == "eth" {
            assert_eq!(v["error_code"], "amount_too_low", "{v}");
            continue;
        }
        assert_eq!(code, 200, "{body}: {v}");
        if body["foreign_id"] == "ton" {
            assert_eq!(v["data"]["tag"], "invoice 77");
        }
    }
}
