//! The settings page: API keys (create, rotate, revoke) against the signed API, the webhook
//! secret, the callback URL, limits that change what the API does, the base currency.

use crate::helpers::{BTC_ADDR, Browser, Receiver, TestApp, TestUser, eventually, sign, spawn_app};
use crate::team::{fresh_code, text_of, wrong_code};
use countersign::db::api_keys;
use serde_json::{Value, json};
use sqlx::Row;

async fn owner_browser(app: &TestApp) -> (TestUser, Browser) {
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    let (status, _) = b.get("/settings").await;
    assert_eq!(status, 200);
    (owner, b)
}

/// A signed merchant API call with these credentials: (status, json).
async fn api(app: &TestApp, key: &str, secret: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let r = app
        .http
        .post(app.url(&format!("/api/v2{path}")))
        .header("X-Processing-Key", key)
        .header("X-Processing-Signature", sign(secret, body.as_bytes()))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn key_id_by_prefix(app: &TestApp, prefix: &str) -> String {
    api_keys::list(&app.state.db, app.project_id())
        .await
        .unwrap()
        .into_iter()
        .find(|k| prefix.starts_with(&k.key_prefix))
        .unwrap()
        .id
}

async fn last_audit(app: &TestApp, action: &str) -> Value {
    let details: String =
        sqlx::query("SELECT details FROM audit_log WHERE action = $1 ORDER BY seq DESC LIMIT 1")
            .bind(action)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap()
            .get("details");
    serde_json::from_str(&details).unwrap()
}

#[tokio::test]
async fn a_new_api_key_works_at_once_and_stops_when_revoked() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (owner, b) = owner_browser(&app).await;
    let code = fresh_code(&app, &owner);
    let (status, page, _) = b
        .post_form(
            "/settings/api-keys",
            &[("can_withdraw", "1"), ("code", &code)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let key = text_of(&page, "api-key").expect("key shown");
    let secret = text_of(&page, "api-secret").expect("secret shown");
    assert!(
        key.starts_with("ck_") && secret.starts_with("cs_"),
        "{key} {secret}"
    );
    // Stored only hashed and encrypted.
    let row = sqlx::query("SELECT key_hash, secret_enc FROM api_keys WHERE key_prefix = $1")
        .bind(&key[..10])
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(
        row.get::<String, _>("key_hash"),
        countersign::crypto::sha256_hex(key.as_bytes())
    );
    assert!(!row.get::<String, _>("secret_enc").contains(&secret));

    let (status, v) = api(
        &app,
        &key,
        &secret,
        "/withdrawal/crypto",
        &json!({"foreign_id": "k1", "currency": "BTC", "amount": "0.001", "address": BTC_ADDR}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, page) = b.get("/settings").await;
    assert!(page.contains(&key[..10]), "the list shows the prefix");
    assert!(!page.contains(&secret), "the secret is never shown again");

    let id = key_id_by_prefix(&app, &key).await;
    let code = fresh_code(&app, &owner);
    let (status, _, location) = b
        .post_form(
            &format!("/settings/api-keys/{id}/revoke"),
            &[("code", &code)],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/settings?done=key_revoked"))
    );
    let (status, v) = api(&app, &key, &secret, "/accounts/list", &json!({})).await;
    assert_eq!((status, v), (401, json!({"message": "Unauthorized"})));
    // The project's first key still works.
    let (status, _) = app.post_json("/accounts/list", &json!({})).await;
    assert_eq!(status, 200);
    let d = last_audit(&app, "api_key.revoked").await;
    assert_eq!(
        (
            d["before"]["revoked"].clone(),
            d["after"]["revoked"].clone()
        ),
        (json!(false), json!(true))
    );

    // A read-only key reads but cannot withdraw.
    let code = fresh_code(&app, &owner);
    b.get("/settings").await;
    let (_, page, _) = b.post_form("/settings/api-keys", &[("code", &code)]).await;
    let (ro_key, ro_secret) = (
        text_of(&page, "api-key").unwrap(),
        text_of(&page, "api-secret").unwrap(),
    );
    assert_eq!(
        api(&app, &ro_key, &ro_secret, "/accounts/list", &json!({}))
            .await
            .0,
        200
    );
    let (status, _) = api(
        &app,
        &ro_key,
        &ro_secret,
        "/withdrawal/crypto",
        &json!({"foreign_id": "k2", "currency": "BTC", "amount": "0.001", "address": BTC_ADDR}),
    )
    .await;
    assert_eq!(status, 403);
    // The page that showed the secret carries the renewed session's CSRF token.
    let (status, _, location) = b.post_form("/logout", &[]).await;
    assert_eq!((status, location.as_deref()), (303, Some("/login")));
}

#[tokio::test]
async fn rotating_a_key_replaces_it_and_the_only_key_cannot_be_revoked() {
    let app = spawn_app().await;
    let (owner, b) = owner_browser(&app).await;
    let first = key_id_by_prefix(&app, &app.creds.api_key).await;
    let code = fresh_code(&app, &owner);
    let (status, page, _) = b
        .post_form(
            &format!("/settings/api-keys/{first}/revoke"),
            &[("code", &code)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("only active API key"), "{page}");
    assert_eq!(app.post_json("/accounts/list", &json!({})).await.0, 200);

    let code = fresh_code(&app, &owner);
    let (status, page, _) = b
        .post_form(
            &format!("/settings/api-keys/{first}/rotate"),
            &[("code", &code)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let key = text_of(&page, "api-key").unwrap();
    let secret = text_of(&page, "api-secret").unwrap();
    assert_ne!(key, app.creds.api_key);
    assert_eq!(
        app.post_json("/accounts/list", &json!({})).await.0,
        401,
        "the old key stops at once"
    );
    assert_eq!(
        api(&app, &key, &secret, "/accounts/list", &json!({}))
            .await
            .0,
        200
    );
    let d = last_audit(&app, "api_key.rotated").await;
    assert_eq!(d["before"]["key_id"], first);
    assert_eq!(d["after"]["can_withdraw"], true);
    assert!(!d.to_string().contains(&secret) && !d.to_string().contains(&key));
    // A revoked key cannot be rotated again.
    b.get("/settings").await;
    let code = fresh_code(&app, &owner);
    let (status, _, _) = b
        .post_form(
            &format!("/settings/api-keys/{first}/rotate"),
            &[("code", &code)],
        )
        .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn key_changes_need_a_fresh_code_and_other_projects_keys_are_not_found() {
    let app = spawn_app().await;
    let (owner, b) = owner_browser(&app).await;
    let keys = app.count("api_keys").await;
    let (status, page, _) = b
        .post_form(
            "/settings/api-keys",
            &[("can_withdraw", "1"), ("code", &wrong_code(&app, &owner))],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Verification code:"), "{page}");
    let code = fresh_code(&app, &owner);
    assert_eq!(
        b.post_form("/settings/api-keys", &[("code", &code)])
            .await
            .0,
        200
    );
    b.get("/settings").await;
    let (status, page, _) = b.post_form("/settings/api-keys", &[("code", &code)]).await;
    assert_eq!(status, 422, "a replayed code");
    assert!(page.contains("already used"), "{page}");
    assert_eq!(app.count("api_keys").await, keys + 1);

    let other = app.other_project("Other", "ops@other.test").await;
    let theirs = api_keys::list(&app.state.db, &other.project_id)
        .await
        .unwrap()[0]
        .id
        .clone();
    for action in ["revoke", "rotate"] {
        let code = fresh_code(&app, &owner);
        let (status, _, _) = b
            .post_form(
                &format!("/settings/api-keys/{theirs}/{action}"),
                &[("code", &code)],
            )
            .await;
        assert_eq!(status, 404, "{action}");
    }
    let (status, v) = api(
        &app,
        &other.api_key,
        &other.api_secret,
        "/accounts/list",
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn callbacks_go_to_the_url_set_and_are_signed_with_the_rotated_webhook_secret() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let receiver = Receiver::start().await;
    let (owner, b) = owner_browser(&app).await;

    let code = fresh_code(&app, &owner);
    let (status, page, _) = b
        .post_form(
            "/settings/callback-url",
            &[("callback_url", "ftp://files.example/"), ("code", &code)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Callback URL:"), "{page}");
    // The cloud metadata address (link-local): refused by where it leads, before the code.
    let (status, page, _) = b
        .post_form(
            "/settings/callback-url",
            &[
                ("callback_url", "http://169.254.169.254/latest/meta-data/"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        page.contains(
            "Callback URL: 169.254.169.254 is an address outside the public internet (169.254.169.254); \
             the operator can allow it in outbound.allowed_networks"
        ),
        "{page}"
    );
    let (status, _, _) = b
        .post_form(
            "/settings/callback-url",
            &[("callback_url", &receiver.url), ("code", &code)],
        )
        .await;
    assert_eq!(status, 303, "the code was not used up by the typo");
    let d = last_audit(&app, "project.callback_url_changed").await;
    assert_eq!(
        (d["before"].clone(), d["after"].clone()),
        (Value::Null, json!(receiver.url))
    );

    b.get("/settings").await;
    let code = fresh_code(&app, &owner);
    let (status, page, _) = b
        .post_form("/settings/webhook-secret", &[("code", &code)])
        .await;
    assert_eq!(status, 200);
    let whsec = text_of(&page, "webhook-secret").expect("secret shown once");
    assert!(whsec.starts_with("whsec_") && whsec != app.creds.webhook_secret);
    let (_, settings) = b.get("/settings").await;
    assert!(!settings.contains(&whsec));

    let (status, _) = app.withdraw("cb1", "BTC", "0.001", BTC_ADDR).await;
    assert_eq!(status, 200);
    let r = eventually("a callback", || async {
        receiver.for_foreign_id("cb1").into_iter().next()
    })
    .await;
    let id = r.header("webhook-id").unwrap();
    let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
    let header = r.header("webhook-signature").unwrap().to_string();
    let with = |s: &str| {
        countersign::crypto::standard_webhook_signature(s, id, ts, r.body.as_bytes()).unwrap()
    };
    assert!(
        header.split(' ').any(|s| s == with(&whsec)),
        "signed with the new secret"
    );
    assert!(
        !header
            .split(' ')
            .any(|s| s == with(&app.creds.webhook_secret)),
        "not the old one"
    );
    let d = last_audit(&app, "project.webhook_secret_rotated").await;
    assert!(!d.to_string().contains(whsec.trim_start_matches("whsec_")));
}

async fn set_limits(
    app: &TestApp,
    b: &Browser,
    owner: &TestUser,
    currency: &str,
    per_op: &str,
) -> (u16, String) {
    b.get(&format!("/settings/limits?scope=api&currency={currency}"))
        .await;
    let code = fresh_code(app, owner);
    let (status, page, _) = b
        .post_form(
            "/settings/limits",
            &[
                ("scope", "api"),
                ("currency", currency),
                ("per_operation", per_op),
                ("per_hour", ""),
                ("per_day", "100000"),
                ("code", &code),
            ],
        )
        .await;
    (status, page)
}

#[tokio::test]
async fn limits_set_on_the_page_decide_what_the_api_holds() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (owner, b) = owner_browser(&app).await;
    // 0.002 BTC is 120 EUR: under the default 1,000 EUR.
    let (_, v) = app.withdraw("l1", "BTC", "0.002", BTC_ADDR).await;
    assert_eq!(v["data"]["status"], "processing", "{v}");

    let (status, page) = set_limits(&app, &b, &owner, "default", "100").await;
    assert_eq!(status, 303, "{page}");
    let (_, v) = app.withdraw("l2", "BTC", "0.002", BTC_ADDR).await;
    assert_eq!(v["data"]["status"], "pending", "{v}");
    assert!(
        v["data"]["hold_reasons"]
            .to_string()
            .contains("120 EUR against 100 EUR"),
        "{v}"
    );
    let d = last_audit(&app, "limits.changed").await;
    assert_eq!(d["before"]["per_operation"], "1000");
    assert_eq!(
        (
            d["after"]["per_operation"].clone(),
            d["after"]["per_hour"].clone()
        ),
        (json!("100"), Value::Null)
    );
    let (_, page) = b.get("/settings").await;
    assert!(page.contains("id=\"limit-api-default\""), "{page}");

    // A BTC override in BTC replaces the default for BTC...
    let (status, _) = set_limits(&app, &b, &owner, "BTC", "0.01").await;
    assert_eq!(status, 303);
    let (_, v) = app.withdraw("l3", "BTC", "0.002", BTC_ADDR).await;
    assert_eq!(v["data"]["status"], "processing", "{v}");
    // ...until it is removed.
    let (status, page) = b.get("/settings/limits?scope=api&currency=BTC").await;
    assert_eq!(status, 200);
    assert!(page.contains("Remove the BTC override"));
    let code = fresh_code(&app, &owner);
    let (status, _, location) = b
        .post_form(
            "/settings/limits/remove",
            &[("scope", "api"), ("currency", "BTC"), ("code", &code)],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/settings?done=override_removed"))
    );
    let (_, v) = app.withdraw("l4", "BTC", "0.002", BTC_ADDR).await;
    assert_eq!(v["data"]["status"], "pending", "{v}");
    let d = last_audit(&app, "limits.override_removed").await;
    assert_eq!(
        (d["before"]["per_operation"].clone(), d["after"].clone()),
        (json!("0.01"), Value::Null)
    );
}

#[tokio::test]
async fn bad_limits_name_the_field_and_change_nothing() {
    let app = spawn_app().await;
    let (owner, b) = owner_browser(&app).await;
    let before = countersign::db::limits::list(&app.state.db, app.project_id())
        .await
        .unwrap();
    for (per_op, says) in [
        ("-5", "Per operation:"),
        ("abc", "Per operation:"),
        ("0", "greater than zero"),
        ("10.123", "at most 2 decimal places"),
        ("1e3", "plain decimal"),
    ] {
        let (status, page) = set_limits(&app, &b, &owner, "default", per_op).await;
        assert_eq!(status, 422, "{per_op}");
        assert!(page.contains(says), "{per_op}: {page}");
        assert!(
            page.contains(&format!("value=\"{per_op}\"")),
            "what was typed is kept"
        );
    }
    let code = fresh_code(&app, &owner);
    let (status, page, _) = b
        .post_form(
            "/settings/limits",
            &[
                ("scope", "api"),
                ("currency", "EUR"),
                ("per_operation", "5"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Currency:"), "{page}");
    let (status, page, _) = b
        .post_form(
            "/settings/limits",
            &[
                ("scope", "web"),
                ("currency", "default"),
                ("per_operation", "5"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Scope:"), "{page}");
    let (status, page, _) = b
        .post_form(
            "/settings/limits/remove",
            &[("scope", "api"), ("currency", "LTC"), ("code", &code)],
        )
        .await;
    assert_eq!(status, 422, "no LTC override to remove");
    assert!(page.contains("no LTC override"), "{page}");
    let (status, page, _) = b
        .post_form(
            "/settings/limits",
            &[
                ("scope", "api"),
                ("currency", "default"),
                ("per_operation", "100"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(status, 422, "the code was used by the refused removal");
    assert!(page.contains("already used"), "{page}");
    let after = countersign::db::limits::list(&app.state.db, app.project_id())
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(app.count("audit_log WHERE action LIKE 'limits.%'").await, 0);
}

#[tokio::test]
async fn a_base_currency_the_rates_do_not_price_is_refused() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.rates.table.remove("USD");
    })
    .await;
    let (owner, b) = owner_browser(&app).await;
    let code = fresh_code(&app, &owner);
    let (status, page, _) = b
        .post_form(
            "/settings/base-currency",
            &[("base_currency", "USD"), ("code", &code)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("have no USD price"), "{page}");
    let p = countersign::db::projects::get(&app.state.db, app.project_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.base_currency, "EUR");
}

#[tokio::test]
async fn the_base_currency_changes_with_a_fresh_code() {
    let app = spawn_app().await;
    let (owner, b) = owner_browser(&app).await;
    let code = fresh_code(&app, &owner);
    let (status, page, _) = b
        .post_form(
            "/settings/base-currency",
            &[("base_currency", "XYZ"), ("code", &code)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Base currency:"), "{page}");
    let (status, _, location) = b
        .post_form(
            "/settings/base-currency",
            &[("base_currency", "USD"), ("code", &code)],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/settings?done=base_currency"))
    );
    let p = countersign::db::projects::get(&app.state.db, app.project_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.base_currency, "USD");
    let d = last_audit(&app, "project.base_currency_changed").await;
    assert_eq!(
        (d["before"].clone(), d["after"].clone()),
        (json!("EUR"), json!("USD"))
    );
    let (_, page) = b.get("/settings").await;
    assert!(page.contains("Default (in USD)"), "{page}");
}
