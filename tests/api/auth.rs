use crate::helpers::{BTC_ADDR, sign, spawn_app};
use serde_json::{Value, json};

#[tokio::test]
async fn ping_is_signed_over_the_empty_body() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.url("/api/v2/ping"))
        .header("X-Processing-Key", &app.creds.api_key)
        .header("X-Processing-Signature", sign(&app.creds.api_secret, b""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"message": "OK"}));
}

#[tokio::test]
async fn seed_header_spelling_is_accepted_too() {
    let app = spawn_app().await;
    let body = "{}";
    let r = app
        .http
        .post(app.url("/api/v2/accounts/list"))
        .header("X-Process-Key", &app.creds.api_key)
        .header(
            "X-Process-Signature",
            sign(&app.creds.api_secret, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn unauthorized(
    app: &crate::helpers::TestApp,
    key: Option<&str>,
    sig: Option<String>,
    body: &str,
) {
    let mut req = app
        .http
        .post(app.url("/api/v2/withdrawal/crypto"))
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("X-Processing-Key", k);
    }
    if let Some(s) = sig {
        req = req.header("X-Processing-Signature", s);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Unauthorized"})
    );
}

#[tokio::test]
async fn bad_credentials_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let body =
        json!({"foreign_id": "a1", "currency": "BTC", "amount": "0.01", "address": BTC_ADDR})
            .to_string();
    let good_sig = sign(&app.creds.api_secret, body.as_bytes());
    // No headers, key without signature, signature without key.
    unauthorized(&app, None, None, &body).await;
    unauthorized(&app, Some(&app.creds.api_key), None, &body).await;
    unauthorized(&app, None, Some(good_sig.clone()), &body).await;
    // Unknown key with an otherwise valid signature.
    unauthorized(&app, Some("ck_unknown"), Some(good_sig.clone()), &body).await;
    // Signature with another secret, over another body, or not hex.
    unauthorized(
        &app,
        Some(&app.creds.api_key),
        Some(sign("cs_wrong", body.as_bytes())),
        &body,
    )
    .await;
    unauthorized(
        &app,
        Some(&app.creds.api_key),
        Some(sign(&app.creds.api_secret, b"{}")),
        &body,
    )
    .await;
    unauthorized(&app, Some(&app.creds.api_key), Some("zz".into()), &body).await;
    // The body changed after signing (one amount digit).
    let tampered = body.replace("0.01", "0.91");
    unauthorized(&app, Some(&app.creds.api_key), Some(good_sig), &tampered).await;
    assert_eq!(app.count("withdrawals").await, 0);
    assert_eq!(
        app.balance("BTC").await,
        ("1.00000000".into(), "0.00000000".into())
    );
}

#[tokio::test]
async fn a_key_without_withdrawal_rights_is_forbidden_to_withdraw() {
    let app = spawn_app().await;
    let now = countersign::clock::Clock::now_ms(&app.clock);
    let (key, secret) = ("ck_readonlykey0000000000000000", "cs_readonly_secret");
    let mut tx = app.state.db.begin().await.unwrap();
    countersign::db::projects::insert_api_key(
        &mut tx,
        &countersign::db::projects::NewApiKey {
            id: "key_ro",
            project_id: app.project_id(),
            key_hash: &countersign::crypto::sha256_hex(key.as_bytes()),
            key_prefix: &key[..10],
            secret_enc: &app.state.master_key.encrypt(secret).unwrap(),
            can_withdraw: false,
        },
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let send = |path: &'static str, body: String| {
        let req = app
            .http
            .post(app.url(path))
            .header("X-Processing-Key", key)
            .header("X-Processing-Signature", sign(secret, body.as_bytes()))
            .body(body);
        async move { req.send().await.unwrap() }
    };
    let body =
        json!({"foreign_id": "a1", "currency": "BTC", "amount": "0.01", "address": BTC_ADDR})
            .to_string();
    let r = send("/api/v2/withdrawal/crypto", body).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Forbidden"})
    );
    // Reading is allowed.
    assert_eq!(
        send("/api/v2/accounts/list", "{}".into()).await.status(),
        200
    );
}

/// Key lookups made at the same moment are answered by shared queries
/// (`db::coalesce`): each request must still get its own project, an unknown or revoked key
/// none, whatever it was asked together with.
#[tokio::test]
async fn keys_looked_up_together_each_get_their_own_project() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let other = app.other_project("Other", "ops@other.test").await;
    let btc = countersign::domain::money::Currency::parse("BTC").unwrap();
    countersign::service::projects::credit(
        &app.state.db,
        &other.project_id,
        btc,
        "2".parse().unwrap(),
        &countersign::db::audit::Actor::Cli,
        countersign::clock::Clock::now_ms(&app.clock),
    )
    .await
    .unwrap();
    // A third key, revoked before the burst.
    let third = app.other_project("Gone", "ops@gone.test").await;
    sqlx::query("UPDATE api_keys SET revoked_at = 1 WHERE project_id = $1")
        .bind(&third.project_id)
        .execute(app.state.db.writer())
        .await
        .unwrap();

    let ask = |key: String, secret: String| {
        let app = &app;
        async move {
            let r = app
                .http
                .post(app.url("/api/v2/accounts/list"))
                .header("X-Processing-Key", key)
                .header("X-Processing-Signature", sign(&secret, b"{}"))
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            let btc = body["data"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["currency"] == "BTC"))
                .map(|c| c["balance"].as_str().unwrap_or("").to_string());
            (status, btc)
        }
    };
    let mut asks = Vec::new();
    for i in 0..60 {
        let (key, secret, expect) = match i % 5 {
            0 | 1 => (
                app.creds.api_key.clone(),
                app.creds.api_secret.clone(),
                (200, Some("1.00000000".to_string())),
            ),
            2 | 3 => (
                other.api_key.clone(),
                other.api_secret.clone(),
                (200, Some("2.00000000".to_string())),
            ),
            _ if i % 2 == 0 => (third.api_key.clone(), third.api_secret.clone(), (401, None)),
            _ => (
                format!("ck_unknown{i}"),
                "cs_whatever".to_string(),
                (401, None),
            ),
        };
        asks.push(async move { (ask(key, secret).await, expect) });
    }
    for (got, expect) in futures_util::future::join_all(asks).await {
        assert_eq!(got, expect);
    }
}
