//! The admin REST API (seed 004): bearer tokens from password + TOTP, and the two-step
//! finalize (`PENDING -> PROCESSING -> COMPLETED | REJECTED`) with the same rules as every
//! other way of deciding.

use crate::helpers::{BTC_ADDR, Receiver, TestApp, TestUser, eventually, spawn_app};
use crate::schema_check::Checker;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign::clock::Clock;
use countersign::db::audit::{Actor, Origin};
use countersign::db::users::{self, Role};
use countersign::db::{approvals as adb, projects, withdrawals as wdb};
use countersign::domain::policy::{Scope, Tier};
use countersign::domain::withdrawal::NewWithdrawal;
use countersign::service::projects::{self as psvc, NewProjectInput};
use countersign::service::{team, withdrawals as wsvc};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Requests token: `POST /admin/api/token` with these fields.
async fn token_request(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app
        .http
        .post(app.url("/admin/api/token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A token for `user` with their current code (each user's first code is fresh; callers
/// reusing a user move the clock on a step first).
async fn token(app: &TestApp, user: &TestUser) -> String {
    let (status, v) = token_request(
        app,
        json!({"email": user.email, "password": user.password, "code": app.code(user)}),
    )
    .await;
    assert_eq!(status, 200, "token for {}: {v}", user.email);
    v["token"].as_str().unwrap().to_string()
}

/// An admin API call with a bearer token: (status, body).
async fn call(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = app.url(&format!("/admin/api{path}"));
    let req = match method {
        "get" => app.http.get(url),
        "patch" => app.http.patch(url),
        other => panic!("method {other}"),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn set_status(app: &TestApp, token: &str, id: i64, status: &str, note: &str) -> (u16, Value) {
    call(
        app,
        token,
        "patch",
        &format!("/withdrawals/{id}/status"),
        Some(json!({"status": status, "adminNote": note})),
    )
    .await
}

/// With Withdrawal Confirmation on, every withdrawal waits for one person with rights.
async fn confirmation_on(app: &TestApp) {
    projects::set_withdrawal_confirmation(&app.state.db, app.project_id(), true)
        .await
        .unwrap();
}

/// A merchant withdrawal of 0.01 BTC, pending; returns its id.
async fn pending(app: &TestApp, fid: &str) -> i64 {
    let (code, v) = app.withdraw(fid, "BTC", "0.01", BTC_ADDR).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["status"], "pending", "{v}");
    v["data"]["id"].as_i64().unwrap()
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE action = $1")
        .bind(action)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
        .get::<i64, _>("n")
}

#[tokio::test]
async fn a_token_takes_password_and_a_fresh_code_and_nothing_less() {
    let app = spawn_app().await;
    let alice = app.create_user("member", true).await;
    let code = app.code(&alice);
    let (status, v) = token_request(
        &app,
        json!({"email": alice.email, "password": alice.password, "code": code}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 900);
    let t = v["token"].as_str().unwrap();
    let c = claims_of(t);
    assert_eq!(c["sub"], alice.id.as_str());
    assert_eq!(c["iss"], "countersign");
    assert_eq!(c["aud"], "countersign-admin-api");
    assert_eq!(c["gen"], 0);
    assert_eq!(c["iat"], app.clock.now_ms() / 1000);
    assert_eq!(c["exp"], app.clock.now_ms() / 1000 + 900);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 20));
    let (status, list) = call(&app, t, "get", "/withdrawals", None).await;
    assert_eq!((status, &list["data"]), (200, &json!([])));
    assert_eq!(audit_count(&app, "admin_api.token_issued").await, 1);

    // The same code again: a replay, refused. Wrong password, unknown email, wrong code: one
    // answer for all.
    let replay = token_request(
        &app,
        json!({"email": alice.email, "password": alice.password, "code": code}),
    )
    .await;
    app.clock.advance_secs(30);
    let wrong_password = token_request(
        &app,
        json!({"email": alice.email, "password": "not her password", "code": app.code(&alice)}),
    )
    .await;
    let unknown = token_request(
        &app,
        json!({"email": "nobody@acme.test", "password": alice.password, "code": app.code(&alice)}),
    )
    .await;
    let wrong = format!(
        "{:06}",
        (app.code(&alice).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let wrong_code = token_request(
        &app,
        json!({"email": alice.email, "password": alice.password, "code": wrong}),
    )
    .await;
    for (what, (status, body)) in [
        ("replay", &replay),
        ("wrong password", &wrong_password),
        ("unknown email", &unknown),
        ("wrong code", &wrong_code),
    ] {
        assert_eq!(*status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "invalid_credentials", "{what}");
        assert_eq!(body, &replay.1, "{what}: the answers must not differ");
    }
    assert_eq!(audit_count(&app, "totp.replay_refused").await, 1);
    // The password failure did not burn the code: it still works once.
    let (status, _) = token_request(
        &app,
        json!({"email": alice.email, "password": alice.password, "code": app.code(&alice)}),
    )
    .await;
    assert_eq!(status, 200);

    // Not JSON: 400 with the same error shape.
    let r = app
        .http
        .post(app.url("/admin/api/token"))
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_request");

    // Lockout, as on the sign-in page: 5 wrong codes lock the account; then even a right
    // code is refused, with the same answer.
    let bob = app.create_user("member", true).await;
    for _ in 0..5 {
        let (status, _) = token_request(
            &app,
            json!({"email": bob.email, "password": bob.password, "code": "000000"}),
        )
        .await;
        assert_eq!(status, 401);
    }
    let (status, v) = token_request(
        &app,
        json!({"email": bob.email, "password": bob.password, "code": app.code(&bob)}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(v, replay.1);
    assert!(audit_count(&app, "signin.lockout").await >= 1);
}

#[tokio::test]
async fn expired_tampered_unsigned_and_foreign_tokens_are_refused() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let app = spawn_app().await;
    let alice = app.create_user("member", true).await;
    let t = token(&app, &alice).await;
    assert_eq!(call(&app, &t, "get", "/withdrawals", None).await.0, 200);

    let refused = |(status, v): (u16, Value), code: &str, what: &str| {
        assert_eq!(status, 401, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
    };
    // A changed signature (a character in its middle: the last one carries padding bits).
    let sig_at = t.rfind('.').unwrap() + 10;
    let mut tampered = t.clone().into_bytes();
    tampered[sig_at] = if tampered[sig_at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    refused(
        call(&app, &tampered, "get", "/withdrawals", None).await,
        "invalid_token",
        "tampered signature",
    );
    // A changed payload under the old signature.
    let parts: Vec<&str> = t.split('.').collect();
    let mut c = claims_of(&t);
    c["sub"] = json!("usr_someone_else");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    refused(
        call(&app, &forged, "get", "/withdrawals", None).await,
        "invalid_token",
        "forged payload",
    );
    // alg none, unsigned.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    refused(
        call(&app, &none, "get", "/withdrawals", None).await,
        "invalid_token",
        "alg none",
    );
    // Signed with the right key (derived from the master key) but for another audience or
    // issuer, or with another algorithm.
    let key = EncodingKey::from_secret(&app.state.master_key.derive("admin-api-jwt"));
    let claims = claims_of(&t);
    for (what, header, patch) in [
        (
            "wrong aud",
            Algorithm::HS256,
            json!({"aud": "merchant-api"}),
        ),
        (
            "wrong iss",
            Algorithm::HS256,
            json!({"iss": "someone-else"}),
        ),
        ("HS512", Algorithm::HS512, json!({})),
    ] {
        let mut c = claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        let other = jsonwebtoken::encode(&Header::new(header), &c, &key).unwrap();
        refused(
            call(&app, &other, "get", "/withdrawals", None).await,
            "invalid_token",
            what,
        );
    }
    // The same claims re-signed correctly pass: the refusals above were for the reasons named.
    let same = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
    assert_eq!(call(&app, &same, "get", "/withdrawals", None).await.0, 200);
    // No header, another scheme.
    let r = app
        .http
        .get(app.url("/admin/api/withdrawals"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let r = app
        .http
        .get(app.url("/admin/api/withdrawals"))
        .header("Authorization", format!("Basic {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // 15 minutes later, by the app's clock: expired.
    app.clock.advance_secs(16 * 60);
    refused(
        call(&app, &t, "get", "/withdrawals", None).await,
        "token_expired",
        "expired",
    );
}

#[tokio::test]
async fn a_rights_change_a_2fa_reset_or_removal_revokes_the_token() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let demoted = app.create_user("member", true).await;
    let reset = app.create_user("member", true).await;
    let removed = app.create_user("member", true).await;
    let tokens = [
        token(&app, &demoted).await,
        token(&app, &reset).await,
        token(&app, &removed).await,
    ];
    for t in &tokens {
        assert_eq!(call(&app, t, "get", "/withdrawals", None).await.0, 200);
    }
    let by = users::by_id(&app.state.db, &owner.id)
        .await
        .unwrap()
        .unwrap();
    let o = Origin::default();
    team::change_role_and_rights(&app.state, &by, &demoted.id, Role::Member, false, &o)
        .await
        .unwrap();
    team::reset_2fa(&app.state, &by, &reset.id, &o)
        .await
        .unwrap();
    team::remove_user(&app.state, &by, &removed.id, &o)
        .await
        .unwrap();
    for t in &tokens {
        let (status, v) = call(&app, t, "get", "/withdrawals", None).await;
        assert_eq!(status, 401, "{v}");
        assert_eq!(v["error"]["code"], "token_revoked");
    }
    // The demoted member signs in again and gets a token: they can read, not decide.
    app.clock.advance_secs(30);
    let t = token(&app, &demoted).await;
    confirmation_on(&app).await;
    app.credit("BTC", "1").await;
    let id = pending(&app, "w1").await;
    let (status, v) = call(&app, &t, "get", &format!("/withdrawals/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(v["can_decide"], false);
    let (status, v) = set_status(&app, &t, id, "PROCESSING", "").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("no_withdrawal_rights"))
    );
}

#[tokio::test]
async fn merchant_credentials_and_admin_tokens_do_not_cross() {
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    let t = token(&app, &alice).await;
    // The merchant key and signature on the admin API.
    let r = app
        .http
        .get(app.url("/admin/api/withdrawals"))
        .header("X-Processing-Key", &app.creds.api_key)
        .header(
            "X-Processing-Signature",
            crate::helpers::sign(&app.creds.api_secret, b""),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_token");
    // The admin token on the merchant API.
    for path in ["/api/v2/accounts/list", "/api/v2/withdrawal/status"] {
        let r = app
            .http
            .post(app.url(path))
            .bearer_auth(&t)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v, json!({"message": "Unauthorized"}));
    }
    // The API secret is not a token either.
    let (status, _) = call(&app, &app.creds.api_secret, "get", "/withdrawals", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn claim_then_complete_pays_out_and_calls_back_confirmed() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    app.set_callback(&receiver.url).await;
    confirmation_on(&app).await;
    app.credit("BTC", "1").await;
    let admin = app.create_user("member", true).await;
    let t = token(&app, &admin).await;
    let id = pending(&app, "w1").await;
    let doc: Value = app
        .http
        .get(app.url("/admin/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let checker = Checker::new(doc.clone());
    let check = |method: &str, path: &str, status: u16, body: &Value| {
        let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
            ["schema"];
        checker.check(schema, body, &format!("{method} {path} {status}"));
    };

    let (status, v) = call(&app, &t, "get", "/withdrawals?status=pending", None).await;
    assert_eq!(status, 200);
    check("get", "/admin/api/withdrawals", 200, &v);
    let row = &v["data"][0];
    assert_eq!(row["id"], id);
    assert_eq!(row["status"], "PENDING");
    assert_eq!(row["internal_status"], "pending");
    assert_eq!(row["amount"], "0.01000000");
    assert_eq!(row["currency"], "BTC");
    assert_eq!(row["address"], BTC_ADDR);
    assert_eq!(row["foreign_id"], "w1");
    assert_eq!(row["initiator"]["kind"], "api_key");
    assert_eq!(
        row["approvals"],
        json!({"have": 0, "need": 1, "owner_needed": false})
    );
    assert_eq!(row["can_decide"], true);
    assert!(
        row["reasons"][0]
            .as_str()
            .unwrap()
            .contains("Withdrawal Confirmation")
    );

    // No jump from PENDING to COMPLETED.
    let (status, v) = set_status(&app, &t, id, "COMPLETED", "approved").await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "not_claimed");
    check("patch", "/admin/api/withdrawals/{id}/status", 409, &v);
    // Nor to CANCELLED, nor an unknown status.
    let (status, v) = set_status(&app, &t, id, "CANCELLED", "").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_transition"))
    );
    let (status, v) = set_status(&app, &t, id, "DONE", "").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );

    let (status, v) = set_status(&app, &t, id, "PROCESSING", "reviewing").await;
    assert_eq!(status, 200, "{v}");
    check("patch", "/admin/api/withdrawals/{id}/status", 200, &v);
    assert_eq!(v["outcome"], "claimed");
    assert_eq!(v["withdrawal"]["status"], "PROCESSING");
    assert_eq!(v["withdrawal"]["claim"]["yours"], true);
    assert_eq!(v["withdrawal"]["claim"]["user"], admin.email.as_str());
    assert_eq!(audit_count(&app, "withdrawal.claimed").await, 1);
    let (_, pend) = call(&app, &t, "get", "/withdrawals?status=PENDING", None).await;
    assert_eq!(pend["data"], json!([]));
    let (_, proc) = call(&app, &t, "get", "/withdrawals?status=processing", None).await;
    assert_eq!(proc["data"][0]["id"], id);

    let (status, v) = set_status(&app, &t, id, "COMPLETED", "approved").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "approved");
    assert_eq!(v["withdrawal"]["status"], "COMPLETED");
    assert_eq!(audit_count(&app, "withdrawal.approval").await, 1);
    app.wait_for_status("w1", "confirmed").await;
    let confirmed = eventually("the confirmed callback", || async {
        receiver
            .for_foreign_id("w1")
            .into_iter()
            .find(|r| r.json()["status"] == "confirmed")
    })
    .await;
    assert_eq!(confirmed.json()["foreign_id"], "w1");
    let (status, v) = call(&app, &t, "get", &format!("/withdrawals/{id}"), None).await;
    assert_eq!(status, 200);
    check("get", "/admin/api/withdrawals/{id}", 200, &v);
    assert_eq!(v["status"], "COMPLETED");
    assert_eq!(v["internal_status"], "confirmed");
    assert_eq!(v["votes"][0]["channel"], "admin_api");
    assert_eq!(v["votes"][0]["note"], "approved");
    let (_, done) = call(&app, &t, "get", "/withdrawals?status=completed", None).await;
    assert_eq!(done["data"][0]["id"], id);
    // Finalizing again: already decided, by whom.
    let (status, v) = set_status(&app, &t, id, "PROCESSING", "").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("already_decided"))
    );
    check("patch", "/admin/api/withdrawals/{id}/status", 409, &v);
    // Unknown ids and paths.
    let (status, v) = call(&app, &t, "get", "/withdrawals/999999", None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    check("get", "/admin/api/withdrawals/{id}", 404, &v);
    let (status, _) = call(&app, &t, "get", "/withdrawals/abc", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn rejected_declines_with_the_admins_id_and_note() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    app.set_callback(&receiver.url).await;
    confirmation_on(&app).await;
    app.credit("BTC", "1").await;
    let admin = app.create_user("owner", true).await;
    let t = token(&app, &admin).await;
    let id = pending(&app, "w1").await;
    assert_eq!(set_status(&app, &t, id, "PROCESSING", "").await.0, 200);
    let (status, v) = set_status(&app, &t, id, "REJECTED", "address on a sanctions list").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "declined");
    assert_eq!(v["withdrawal"]["status"], "REJECTED");
    let declined = eventually("the declined callback", || async {
        receiver
            .for_foreign_id("w1")
            .into_iter()
            .find(|r| r.json()["status"] == "declined")
    })
    .await;
    assert_eq!(
        declined.json()["error"],
        format!("Declined by user ID:{}", admin.id)
    );
    assert_eq!(app.balance("BTC").await.1, "0.00000000");
    let (_, rejected) = call(&app, &t, "get", "/withdrawals?status=rejected", None).await;
    assert_eq!(rejected["data"][0]["id"], id);
    assert_eq!(
        rejected["data"][0]["votes"][0]["note"],
        "address on a sanctions list"
    );
}

#[tokio::test]
async fn the_initiator_cannot_approve_their_own_payout() {
    let app = spawn_app().await;
    confirmation_on(&app).await;
    app.credit("BTC", "1").await;
    let admin = app.create_user("owner", true).await;
    let project = projects::get(&app.state.db, app.project_id())
        .await
        .unwrap()
        .unwrap();
    let req = NewWithdrawal::parse(&json!({
        "foreign_id": "dash-1", "currency": "BTC", "amount": "0.01", "address": BTC_ADDR
    }))
    .unwrap();
    let w = wsvc::create(
        &app.state,
        &project,
        &Actor::User(admin.id.clone()),
        Scope::Dashboard,
        req,
        &Origin::default(),
    )
    .await
    .unwrap();
    let t = token(&app, &admin).await;
    let (_, v) = call(&app, &t, "get", &format!("/withdrawals/{}", w.id), None).await;
    assert_eq!(v["initiator"]["name"], admin.email.as_str());
    assert_eq!(v["can_decide"], false);
    for status in ["PROCESSING", "COMPLETED", "REJECTED"] {
        let (code, v) = set_status(&app, &t, w.id, status, "").await;
        assert_eq!(code, 403, "{status}: {v}");
        assert_eq!(v["error"]["code"], "self_approval");
    }
    assert_eq!(app.count("withdrawal_votes").await, 0);
}

#[tokio::test]
async fn a_new_approver_on_hold_cannot_claim_until_the_hold_ends() {
    use countersign::clock::{HOUR_MS, rfc3339};
    let app = spawn_app().await;
    confirmation_on(&app).await;
    app.credit("BTC", "1").await;
    let alice = app.create_user("owner", true).await;
    app.create_user("owner", true).await;
    let carol = app.create_user("member", false).await;
    let by = users::by_id(&app.state.db, &alice.id)
        .await
        .unwrap()
        .unwrap();
    team::change_role_and_rights(
        &app.state,
        &by,
        &carol.id,
        Role::Member,
        true,
        &Origin::default(),
    )
    .await
    .unwrap();
    let from = app.clock.now_ms() + 24 * HOUR_MS;
    let id = pending(&app, "held-1").await;
    let t = token(&app, &carol).await;
    let (_, v) = call(&app, &t, "get", &format!("/withdrawals/{id}"), None).await;
    assert_eq!(v["can_decide"], false, "{v}");
    let (code, v) = set_status(&app, &t, id, "PROCESSING", "").await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["error"]["code"], "new_approver_hold");
    assert_eq!(
        v["error"]["details"]["approver_from"],
        rfc3339(from).as_str()
    );
    let w = wdb::by_id(&app.state.db, id).await.unwrap().unwrap();
    assert_eq!(w.status.as_str(), "pending");
    assert!(
        adb::claim_of(app.state.db.reader(), id, app.clock.now_ms())
            .await
            .unwrap()
            .is_none()
    );

    app.clock.advance_ms(24 * HOUR_MS);
    let id = pending(&app, "held-2").await;
    let t = token(&app, &carol).await;
    let (code, v) = set_status(&app, &t, id, "PROCESSING", "").await;
    assert_eq!(code, 200, "{v}");
}

#[tokio::test]
async fn another_projects_admin_sees_nothing() {
    let app = spawn_app().await;
    confirmation_on(&app).await;
    app.credit("BTC", "1").await;
    let id = pending(&app, "w1").await;
    let other = psvc::create(
        &app.state.db,
        &app.state.master_key,
        &NewProjectInput {
            name: "Other",
            primary_email: "ops@other.test",
            base_currency: "EUR",
            callback_url: None,
        },
        app.clock.now_ms(),
    )
    .await
    .unwrap();
    let stranger = app.create_user_in(&other.project_id, "owner", true).await;
    let t = token(&app, &stranger).await;
    let (status, v) = call(&app, &t, "get", &format!("/withdrawals/{id}"), None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    for s in ["PROCESSING", "COMPLETED", "REJECTED", "PENDING"] {
        let (status, v) = set_status(&app, &t, id, s, "").await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{s}"
        );
    }
    let (_, v) = call(&app, &t, "get", "/withdrawals", None).await;
    assert_eq!(v["data"], json!([]));
    let w = wdb::by_id(&app.state.db, id).await.unwrap().unwrap();
    assert_eq!(w.status.as_str(), "pending");
    assert_eq!(
        adb::claim_of(app.state.db.reader(), id, app.clock.now_ms())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn of_two_admins_claiming_at_once_one_holds_it_until_the_claim_expires() {
    let app = Arc::new(spawn_app().await);
    confirmation_on(&app).await;
    app.credit("BTC", "1").await;
    let a = app.create_user("member", true).await;
    let b = app.create_user("member", true).await;
    let (ta, tb) = (token(&app, &a).await, token(&app, &b).await);
    let id = pending(&app, "w1").await;
    let claim = |t: String| {
        let app = app.clone();
        tokio::spawn(async move { set_status(&app, &t, id, "PROCESSING", "").await })
    };
    let (ra, rb) = (claim(ta.clone()), claim(tb.clone()));
    let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{ra:?} {rb:?}");
    let (winner, loser, loser_user, lost) = if ra.0 == 200 {
        (&a, &b, tb.clone(), rb.1)
    } else {
        (&b, &a, ta.clone(), ra.1)
    };
    assert_eq!(lost["error"]["code"], "claimed_by_other");
    assert_eq!(
        lost["error"]["details"]["claimed_by"],
        winner.email.as_str()
    );
    assert!(
        lost["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&winner.email)
    );
    // The loser cannot finalize it either.
    let (status, v) = set_status(&app, &loser_user, id, "COMPLETED", "").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("claimed_by_other"))
    );

    // 15 minutes on, the claim (and both tokens) have expired: the other admin claims it.
    app.clock.advance_secs(15 * 60 + 1);
    let loser_token = token(&app, loser).await;
    let (status, v) = set_status(&app, &loser_token, id, "PROCESSING", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["withdrawal"]["claim"]["user"], loser.email.as_str());
    // And the first one, signed in again, is now the one told to wait.
    let winner_token = token(&app, winner).await;
    let (status, v) = set_status(&app, &winner_token, id, "COMPLETED", "").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("claimed_by_other"))
    );
    // The holder hands it back; then the first can claim it.
    let (status, v) = set_status(&app, &loser_token, id, "PENDING", "").await;
    assert_eq!((status, v["outcome"].as_str()), (200, Some("released")));
    assert_eq!(v["withdrawal"]["status"], "PENDING");
    let (status, _) = set_status(&app, &winner_token, id, "PROCESSING", "").await;
    assert_eq!(status, 200);
    assert_eq!(audit_count(&app, "withdrawal.claimed").await, 3);
    assert_eq!(audit_count(&app, "withdrawal.claim_released").await, 1);
}

/// An app with Withdrawal Confirmation on, a balance, and a tier (from 1 EUR two approvals
/// are needed); a member and an owner with rights, and their tokens.
async fn two_approvals_needed() -> (TestApp, TestUser, String, String) {
    let app = spawn_app().await;
    confirmation_on(&app).await;
    app.credit("BTC", "1").await;
    let mut tx = app.state.db.begin().await.unwrap();
    adb::put_tier(
        &mut tx,
        app.project_id(),
        Scope::Api,
        Tier {
            min_base_amount: 1.into(),
            approvers: 2,
        },
        app.clock.now_ms(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let a = app.create_user("member", true).await;
    let b = app.create_user("owner", true).await;
    let (ta, tb) = (token(&app, &a).await, token(&app, &b).await);
    (app, b, ta, tb)
}

#[tokio::test]
async fn the_list_shows_each_withdrawal_its_own_votes_and_claim() {
    let (app, b, ta, tb) = two_approvals_needed().await;
    let voted = pending(&app, "w-voted").await;
    let claimed = pending(&app, "w-claimed").await;
    let untouched = pending(&app, "w-untouched").await;
    assert_eq!(set_status(&app, &ta, voted, "PROCESSING", "").await.0, 200);
    let (status, v) = set_status(&app, &ta, voted, "COMPLETED", "first of two").await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("approval_recorded"))
    );
    assert_eq!(
        set_status(&app, &tb, claimed, "PROCESSING", "").await.0,
        200
    );

    let (status, list) = call(&app, &tb, "get", "/withdrawals", None).await;
    assert_eq!(status, 200, "{list}");
    let row = |id: i64| {
        let rows = list["data"].as_array().unwrap();
        rows.iter().find(|w| w["id"] == id).cloned().unwrap()
    };
    let (v, c, u) = (row(voted), row(claimed), row(untouched));
    assert_eq!(v["votes"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["votes"][0]["note"], "first of two");
    assert_eq!(v["approvals"]["have"], 1);
    assert_eq!(v["claim"], Value::Null);
    assert_eq!(c["claim"]["user"], b.email.as_str(), "{c}");
    assert_eq!(c["claim"]["yours"], true);
    assert_eq!(c["votes"], json!([]));
    assert_eq!(c["approvals"]["have"], 0);
    assert_eq!(
        (u["claim"].clone(), u["votes"].clone()),
        (Value::Null, json!([]))
    );
    // The list and the single view agree.
    for id in [voted, claimed, untouched] {
        let (status, one) = call(&app, &tb, "get", &format!("/withdrawals/{id}"), None).await;
        assert_eq!(status, 200);
        assert_eq!(one, row(id));
    }
}

#[tokio::test]
async fn with_two_approvals_needed_the_first_is_recorded_and_the_claim_released() {
    let (app, _, ta, tb) = two_approvals_needed().await;
    let id = pending(&app, "w1").await;
    assert_eq!(set_status(&app, &ta, id, "PROCESSING", "").await.0, 200);
    let (status, v) = set_status(&app, &ta, id, "COMPLETED", "looks fine").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "approval_recorded");
    assert_eq!(v["withdrawal"]["status"], "PENDING");
    assert_eq!(
        v["withdrawal"]["approvals"],
        json!({"have": 1, "need": 2, "owner_needed": false})
    );
    assert_eq!(v["withdrawal"]["claim"], Value::Null);
    assert_eq!(v["withdrawal"]["can_decide"], false);
    // A second claim by the same person: they have voted already.
    let (status, v) = set_status(&app, &ta, id, "PROCESSING", "").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("already_voted"))
    );
    assert_eq!(set_status(&app, &tb, id, "PROCESSING", "").await.0, 200);
    let (status, v) = set_status(&app, &tb, id, "COMPLETED", "").await;
    assert_eq!((status, v["outcome"].as_str()), (200, Some("approved")));
    app.wait_for_status("w1", "confirmed").await;
}

#[tokio::test]
async fn twenty_admins_claiming_and_completing_at_once_pay_once() {
    let app = Arc::new(spawn_app().await);
    let receiver = Receiver::start().await;
    app.set_callback(&receiver.url).await;
    confirmation_on(&app).await;
    app.credit("BTC", "1").await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        let u = app.create_user("member", true).await;
        tokens.push(token(&app, &u).await);
    }
    let id = pending(&app, "race").await;
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let app = app.clone();
            tokio::spawn(async move {
                let claimed = set_status(&app, &t, id, "PROCESSING", "").await;
                let completed = set_status(&app, &t, id, "COMPLETED", "").await;
                (claimed, completed)
            })
        })
        .collect();
    let (mut claims, mut completions) = (0, 0);
    for task in tasks {
        let ((cs, cv), (fs, fv)) = task.await.unwrap();
        match cs {
            200 => claims += 1,
            409 => assert!(
                ["claimed_by_other", "already_decided"]
                    .contains(&cv["error"]["code"].as_str().unwrap()),
                "{cv}"
            ),
            other => panic!("claim answered {other}: {cv}"),
        }
        match fs {
            200 => {
                assert_eq!(fv["outcome"], "approved");
                completions += 1
            }
            409 => assert!(
                ["claimed_by_other", "already_decided", "not_claimed"]
                    .contains(&fv["error"]["code"].as_str().unwrap()),
                "{fv}"
            ),
            other => panic!("complete answered {other}: {fv}"),
        }
    }
    assert_eq!((claims, completions), (1, 1));
    app.wait_for_status("race", "confirmed").await;
    assert_eq!(app.sandbox_submissions(id).await, 1);
    eventually("the confirmed callback", || async {
        receiver
            .for_foreign_id("race")
            .into_iter()
            .find(|r| r.json()["status"] == "confirmed")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let confirmed = receiver
        .for_foreign_id("race")
        .into_iter()
        .filter(|r| r.json()["status"] == "confirmed")
        .count();
    assert_eq!(confirmed, 1);
    assert_eq!(app.count("withdrawal_votes").await, 1);
    let events = wdb::events(&app.state.db, id).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.from_status.as_deref() == Some("pending"))
            .count(),
        1
    );
}

#[tokio::test]
async fn the_list_pages_with_a_cursor_and_the_document_is_served() {
    let app = spawn_app().await;
    confirmation_on(&app).await;
    app.credit("BTC", "1").await;
    let admin = app.create_user("member", true).await;
    let t = token(&app, &admin).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(pending(&app, &format!("w{i}")).await);
    }
    ids.reverse();
    let (status, p1) = call(&app, &t, "get", "/withdrawals?status=PENDING&limit=2", None).await;
    assert_eq!(status, 200);
    let page_ids = |v: &Value| -> Vec<i64> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(page_ids(&p1), ids[0..2]);
    let c = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = call(
        &app,
        &t,
        "get",
        &format!("/withdrawals?status=PENDING&limit=2&cursor={c}"),
        None,
    )
    .await;
    assert_eq!(page_ids(&p2), ids[2..4]);
    let c = p2["next_cursor"].as_str().unwrap();
    let (_, p3) = call(
        &app,
        &t,
        "get",
        &format!("/withdrawals?limit=2&cursor={c}"),
        None,
    )
    .await;
    assert_eq!(page_ids(&p3), ids[4..5]);
    assert_eq!(p3["next_cursor"], Value::Null);
    for bad in ["status=APPROVED", "limit=0", "limit=101", "cursor=x"] {
        let (status, v) = call(&app, &t, "get", &format!("/withdrawals?{bad}"), None).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }
    let (status, v) = call(&app, &t, "get", "/nothing-here", None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let doc: Value = app
        .http
        .get(app.url("/admin/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths.len(), 4, "{paths:?}");
    assert_eq!(
        doc["components"]["securitySchemes"]["Bearer"]["scheme"],
        "bearer"
    );
    // The merchant document does not list the admin API.
    let merchant: Value = app
        .http
        .get(app.url("/api/v2/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        merchant["paths"]
            .as_object()
            .unwrap()
            .keys()
            .all(|p| p.starts_with("/api/v2/"))
    );
}
