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
