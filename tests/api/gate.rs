//! The operator gate: a local HTTP server stands in for the operator's validation webhook,
//! checks both signatures with this test's own code, and answers what each test tells it to.

use crate::helpers::{BTC_ADDR, Received, TestApp, sign, spawn_app, spawn_app_with};
use crate::team::{fresh_code, text_of, wrong_code};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use countersign::db::audit::{Actor, Origin};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::Row;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the stand-in answers next: this status and body, after waiting `delay_ms`.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    body: String,
    delay_ms: u64,
}

fn code(n: u64, description: &str) -> Answer {
    Answer {
        status: 200,
        body: json!({"error": n, "description": description}).to_string(),
        delay_ms: 0,
    }
}

fn raw(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: body.into(),
        delay_ms: 0,
    }
}

#[derive(Clone)]
struct Operator {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
}

/// Both signatures of a request, checked with the published schemes: `X-Processing-Signature`
/// (hex HMAC-SHA512 of the body with the API secret) and Standard Webhooks (`v1,` base64
/// HMAC-SHA256 of `id.timestamp.body` with the `whsec_` secret).
fn signatures_valid(api_secret: &str, whsec: &str, r: &Received) -> bool {
    let Some(sig) = r.header("X-Processing-Signature") else {
        return false;
    };
    if sig != sign(api_secret, r.body.as_bytes()) {
        return false;
    }
    let (Some(id), Some(ts), Some(header)) = (
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.header("webhook-signature"),
    ) else {
        return false;
    };
    let key = STANDARD
        .decode(whsec.trim_start_matches("whsec_"))
        .expect("whsec");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header.split(' ').any(|s| s == expected)
}

impl Operator {
    /// Starts the stand-in for `app`'s project. A request with a bad signature gets 401 (which
    /// the gate counts as code 3), so an approval proves the signatures were right.
    async fn start(app: &TestApp) -> Operator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let answer = Arc::new(Mutex::new(code(0, "ok")));
        let secrets = (
            app.creds.api_secret.clone(),
            app.creds.webhook_secret.clone(),
        );
        let (r, a) = (received.clone(), answer.clone());
        let server = HttpServer::new(move || {
            let (r, a, secrets) = (r.clone(), a.clone(), secrets.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (r, a, secrets) = (r.clone(), a.clone(), secrets.clone());
                async move {
                    let got = Received {
                        path: req.path().to_string(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    let valid = signatures_valid(&secrets.0, &secrets.1, &got);
                    r.lock().expect("lock").push(got);
                    if !valid {
                        return HttpResponse::Unauthorized().body("bad signature");
                    }
                    let Answer {
                        status,
                        body,
                        delay_ms,
                    } = a.lock().expect("lock").clone();
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(status).expect("status"),
                    )
                    .insert_header(("Location", "http://127.0.0.1:9/elsewhere"))
                    .content_type("application/json")
                    .body(body)
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Operator {
            url: format!("http://127.0.0.1:{port}/withdraw-request"),
            received,
            answer,
        }
    }

    fn answer(&self, a: Answer) {
        *self.answer.lock().expect("lock") = a;
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn set_gate(app: &TestApp, url: &str) {
    countersign::service::settings::set_validation_url(
        &app.state,
        app.project_id(),
        url,
        &Actor::Cli,
        &Origin::default(),
    )
    .await
    .expect("set validation url");
}

/// Everything a refused request must leave alone.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    balance: (String, String),
    withdrawals: i64,
    jobs: i64,
    ledger: i64,
    limit_usage: Vec<(String, String, String)>,
    addresses: i64,
}

async fn footprint(app: &TestApp, currency: &str) -> Footprint {
    let usage = sqlx::query(
        "SELECT bucket, amount, base_amount FROM limit_usage WHERE project_id = $1 ORDER BY bucket, currency, scope",
    )
    .bind(app.project_id())
    .fetch_all(app.state.db.reader())
    .await
    .expect("usage")
    .iter()
    .map(|r| (r.get("bucket"), r.get("amount"), r.get("base_amount")))
    .collect();
    Footprint {
        balance: app.balance(currency).await,
        withdrawals: app.count("withdrawals").await,
        jobs: app.count("jobs").await,
        ledger: app.count("ledger_entries").await,
        limit_usage: usage,
        addresses: app.count("payout_addresses").await,
    }
}

/// The `details` of every `withdrawal.denied_by_operator` record, oldest first.
async fn denials(app: &TestApp) -> Vec<Value> {
    sqlx::query(
        "SELECT details FROM audit_log WHERE action = 'withdrawal.denied_by_operator' ORDER BY seq",
    )
    .fetch_all(app.state.db.reader())
    .await
    .expect("audit")
    .iter()
    .map(|r| serde_json::from_str(&r.get::<String, _>("details")).expect("json"))
    .collect()
}

fn btc(foreign_id: &str) -> Value {
    json!({"foreign_id": foreign_id, "currency": "BTC", "amount": "0.01", "address": BTC_ADDR,
           "end_user_reference": "user_12345"})
}

#[tokio::test]
async fn an_approved_request_is_signed_carries_the_withdrawal_and_goes_on() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    app.credit("EUR", "5000").await;
    let op = Operator::start(&app).await;
    set_gate(&app, &op.url).await;

    let (status, v) = app.post_json("/withdrawal/crypto", &btc("w1")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["status"], "processing");
    let got = op.all();
    assert_eq!(got.len(), 1);
    assert!(signatures_valid(
        &app.creds.api_secret,
        &app.creds.webhook_secret,
        &got[0]
    ));
    assert!(
        got[0]
            .header("webhook-id")
            .is_some_and(|id| id.starts_with("msg_gate_"))
    );
    let body = got[0].json();
    let initiator = body["initiator"].clone();
    assert_eq!(initiator["kind"], "api_key");
    assert!(!initiator["id"].as_str().unwrap_or("").is_empty());
    assert_eq!(
        body,
        json!({
            "type": "WITHDRAW_REQUEST", "project_id": app.project_id(), "foreign_id": "w1",
            "currency": "BTC", "amount": "0.01000000", "convert_to": null, "network": "bitcoin",
            "address": BTC_ADDR, "tag": null, "end_user_reference": "user_12345",
            "currency_sent": {"currency": "BTC", "amount": "0.01000000"},
            "currency_received": {"currency": "BTC", "amount": "0.01000000"},
            "fee": "0.00000000", "exchange_rate": null, "scope": "api", "initiator": initiator,
            "base_currency": "EUR", "base_value": "600.00",
            "requested_at": body["requested_at"].clone(),
        })
    );
    assert!(
        body["requested_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    // A repeated request is answered from what exists: the operator is not asked again.
    let (status, again) = app.post_json("/withdrawal/crypto", &btc("w1")).await;
    assert_eq!((status, &again), (200, &v));
    assert_eq!(op.all().len(), 1);

    // With exchange: the balance debited, the currency sent to the address, the rate.
    let (status, v) = app
        .post_json(
            "/withdrawal/crypto",
            &json!({"foreign_id": "x1", "currency": "EUR", "convert_to": "BTC", "amount": "600",
                    "address": BTC_ADDR}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let body = op.all()[1].json();
    assert_eq!(
        (
            &body["currency"],
            &body["amount"],
            &body["convert_to"],
            &body["network"]
        ),
        (
            &json!("EUR"),
            &json!("600.00"),
            &json!("BTC"),
            &json!("bitcoin")
        )
    );
    assert_eq!(
        body["currency_sent"],
        json!({"currency": "EUR", "amount": "600.00"})
    );
    assert_eq!(
        body["currency_received"],
        json!({"currency": "BTC", "amount": "0.01000000"})
    );
    assert_eq!(body["exchange_rate"], "0.0000166666666667");
    assert_eq!(body["base_value"], "600.00");
    assert!(denials(&app).await.is_empty());
}

#[tokio::test]
async fn each_refusal_code_refuses_with_its_meaning_and_leaves_nothing_behind() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let op = Operator::start(&app).await;
    // Some history first, so "unchanged" is about real rows.
    let (status, _) = app.post_json("/withdrawal/crypto", &btc("before")).await;
    assert_eq!(status, 200);
    // Paid out and settled, so the worker has nothing left to change.
    app.wait_for_status("before", "confirmed").await;
    set_gate(&app, &op.url).await;
    let before = footprint(&app, "BTC").await;
    assert_eq!(before.withdrawals, 1);
    assert!(!before.limit_usage.is_empty());
    assert_eq!(before.balance, ("0.99000000".into(), "0.00000000".into()));

    let meanings = [
        "declined by operator",
        "insufficient balance",
        "temporarily unavailable",
        "user not eligible",
        "daily limit exceeded",
        "amount too low",
        "amount too high",
        "verification required",
        "account suspended",
    ];
    for (n, meaning) in (1u64..=9).zip(meanings) {
        op.answer(code(n, &format!("reason {n}")));
        let (status, v) = app.post_json("/withdrawal/crypto", &btc("w1")).await;
        assert_eq!(status, 400, "code {n}: {v}");
        assert_eq!(v["error_code"], "withdrawal_denied");
        assert_eq!(v["operator_code"], n);
        assert_eq!(v["operator_description"], format!("reason {n}"));
        assert_eq!(
            v["message"],
            format!("Withdrawal denied by the operator: {meaning} (code {n}): reason {n}")
        );
        assert_eq!(footprint(&app, "BTC").await, before, "after code {n}");
    }
    assert_eq!(op.all().len(), 9);
    let audited = denials(&app).await;
    assert_eq!(
        audited
            .iter()
            .map(|d| d["operator_code"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(audited[4]["foreign_id"], "w1");
    assert_eq!(audited[4]["meaning"], "daily limit exceeded");
    assert_eq!(audited[4]["operator_answered"], true);
    let status = app
        .http
        .post(app.url("/api/v2/withdrawal/status"))
        .header("X-Processing-Key", &app.creds.api_key)
        .header(
            "X-Processing-Signature",
            sign(&app.creds.api_secret, br#"{"foreign_id":"w1"}"#),
        )
        .body(r#"{"foreign_id":"w1"}"#)
        .send()
        .await
        .expect("status")
        .status()
        .as_u16();
    assert_eq!(status, 404, "a refused request does not exist");

    // The same foreign_id goes through once the operator approves.
    op.answer(code(0, "ok"));
    let (status, v) = app.post_json("/withdrawal/crypto", &btc("w1")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["foreign_id"], "w1");
    let after = footprint(&app, "BTC").await;
    assert_eq!(after.withdrawals, 2);
    assert_ne!(after.balance, before.balance);
}

/// Asks for `w1` and checks it was refused as code 3 for `reason`, leaving `before` as it was.
async fn refused_as_unavailable(app: &TestApp, before: &Footprint, reason: &str, what: &str) {
    let (status, v) = app.post_json("/withdrawal/crypto", &btc("w1")).await;
    assert_eq!(status, 400, "{what}: {v}");
    assert_eq!(v["error_code"], "withdrawal_denied");
    assert_eq!(v["operator_code"], 3, "{what}");
    assert_eq!(v["operator_description"], reason);
    assert_eq!(
        v["message"],
        format!(
            "Withdrawal denied by the operator gate: temporarily unavailable (code 3): the validation webhook {reason}; retry later"
        )
    );
    assert_eq!(&footprint(app, "BTC").await, before, "{what}");
}

/// An operator slower than `gate.timeout_ms` is not waited for.
#[tokio::test]
async fn an_answer_later_than_the_timeout_counts_as_code_3() {
    let app = spawn_app_with(|s| s.gate.timeout_ms = 300).await;
    app.credit("BTC", "1").await;
    let op = Operator::start(&app).await;
    set_gate(&app, &op.url).await;
    let before = footprint(&app, "BTC").await;
    let late = Answer {
        status: 200,
        body: json!({"error": 0, "description": "ok"}).to_string(),
        delay_ms: 20_000,
    };
    op.answer(late.clone());
    let started = Instant::now();
    refused_as_unavailable(&app, &before, "did not answer within 300 ms", "late").await;
    // Only a bound proving the timeout fired: waiting for the answer would take 20 s.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?} for {late:?}",
        started.elapsed()
    );
    assert_eq!(op.all().len(), 1);
    let audited = denials(&app).await;
    assert_eq!(audited.len(), 1);
    assert_eq!(
        (
            &audited[0]["operator_code"],
            &audited[0]["operator_answered"]
        ),
        (&json!(3), &json!(false))
    );
}

/// Any answer but a well-formed one in time is code 3. The timeout here is the default (5 s),
/// far beyond what these answers take, even on a busy machine.
#[tokio::test]
async fn no_usable_answer_counts_as_code_3_temporarily_unavailable() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let op = Operator::start(&app).await;
    set_gate(&app, &op.url).await;
    let before = footprint(&app, "BTC").await;

    let cases = [
        (raw(500, r#"{"error": 0}"#), "answered HTTP 500"),
        (
            raw(302, r#"{"error": 0}"#),
            "answered HTTP 302 (redirects are not followed)",
        ),
        (raw(404, r#"{"error": 0}"#), "answered HTTP 404"),
        (raw(200, "ok"), "answered with something that is not JSON"),
        (
            raw(200, r#"{"description": "ok"}"#),
            "answered without an integer \"error\" code (0 to 9)",
        ),
        (
            raw(200, r#"{"error": "0"}"#),
            "answered without an integer \"error\" code (0 to 9)",
        ),
        (
            raw(200, r#"{"error": 12, "description": "?"}"#),
            "answered with error code 12, which is not one of 0 to 9",
        ),
    ];
    for (answer, reason) in cases {
        op.answer(answer.clone());
        refused_as_unavailable(&app, &before, reason, &format!("{answer:?}")).await;
    }

    // Nobody listening on the port.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    set_gate(&app, &format!("http://127.0.0.1:{port}/gate")).await;
    let (status, v) = app.post_json("/withdrawal/crypto", &btc("w1")).await;
    assert_eq!((status, &v["operator_code"]), (400, &json!(3)), "{v}");
    assert_eq!(
        v["operator_description"],
        "could not be reached (connection failed)"
    );
    assert_eq!(footprint(&app, "BTC").await, before);

    let audited = denials(&app).await;
    assert_eq!(audited.len(), 8);
    assert!(
        audited
            .iter()
            .all(|d| d["operator_code"] == 3 && d["operator_answered"] == false)
    );

    // Once the operator answers again, the same foreign_id is created.
    set_gate(&app, &op.url).await;
    op.answer(code(0, "ok"));
    let (status, v) = app.post_json("/withdrawal/crypto", &btc("w1")).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn a_wrong_signature_is_caught_by_the_stand_in() {
    // The stand-in itself is checked: a request signed with another secret is refused by it,
    // which the gate turns into code 3.
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let op = Operator::start(&app).await;
    set_gate(&app, &op.url).await;
    countersign::service::settings::rotate_webhook_secret(
        &app.state,
        app.project_id(),
        &Actor::Cli,
        &Origin::default(),
    )
    .await
    .expect("rotate");
    let (status, v) = app.post_json("/withdrawal/crypto", &btc("w1")).await;
    assert_eq!((status, &v["operator_code"]), (400, &json!(3)), "{v}");
    assert_eq!(v["operator_description"], "answered HTTP 401");
}

#[tokio::test]
async fn owners_set_and_clear_the_validation_webhook_with_a_code_members_cannot() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let op = Operator::start(&app).await;
    op.answer(code(4, "not eligible"));
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    let (status, page) = b.get("/settings").await;
    assert_eq!(status, 200);
    assert!(page.contains("No validation webhook"), "{page}");

    // A bad URL: the page names the field; nothing changes and the code is not used up.
    let audit_before = app.count("audit_log").await;
    for (bad, why) in [
        ("ftp://gate.example/x", "must be an http(s) URL with a host"),
        ("not a url", "is not a URL"),
        ("https://", "is not a URL"),
        // the operator's own network: not reachable for owner-set URLs (notify::outbound)
        (
            "http://10.0.0.7/gate",
            "10.0.0.7 is an address outside the public internet (10.0.0.7)",
        ),
    ] {
        let code_now = fresh_code(&app, &owner);
        let (status, page, _) = b
            .post_form(
                "/settings/validation-url",
                &[("validation_url", bad), ("code", &code_now)],
            )
            .await;
        assert_eq!(status, 422, "{bad}");
        assert!(
            page.contains(&format!("Validation webhook URL: {why}")),
            "{bad}: {page}"
        );
    }
    assert_eq!(app.count("audit_log").await, audit_before);

    // A wrong code: refused, nothing saved.
    let (status, _, _) = b
        .post_form(
            "/settings/validation-url",
            &[
                ("validation_url", &op.url),
                ("code", &wrong_code(&app, &owner)),
            ],
        )
        .await;
    assert_eq!(status, 422);

    let code_now = fresh_code(&app, &owner);
    let (status, _, location) = b
        .post_form(
            "/settings/validation-url",
            &[("validation_url", &op.url), ("code", &code_now)],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/settings?done=validation"))
    );
    let (_, page) = b.get("/settings?done=validation").await;
    assert!(page.contains("Validation webhook saved"), "{page}");
    assert_eq!(
        text_of(&page, "validation-url").as_deref(),
        Some(op.url.as_str())
    );
    let details: String = sqlx::query(
        "SELECT details FROM audit_log WHERE action = 'project.validation_url_changed' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(app.state.db.reader())
    .await
    .expect("audited")
    .get("details");
    let details: Value = serde_json::from_str(&details).expect("json");
    assert_eq!(details, json!({"before": null, "after": op.url}));

    // It is in force at once.
    let (status, v) = app.post_json("/withdrawal/crypto", &btc("w1")).await;
    assert_eq!((status, &v["operator_code"]), (400, &json!(4)), "{v}");

    // A member cannot change it.
    let member = app.create_user("member", true).await;
    let m = app.signed_in(&member).await;
    assert_eq!(m.get("/settings").await.0, 403);
    m.get("/users").await;
    let code_now = fresh_code(&app, &member);
    let (status, _, _) = m
        .post_form(
            "/settings/validation-url",
            &[("validation_url", ""), ("code", &code_now)],
        )
        .await;
    assert_eq!(status, 403);

    // The owner clears it: withdrawals no longer go to the operator.
    b.get("/settings").await;
    let code_now = fresh_code(&app, &owner);
    let (status, _, _) = b
        .post_form(
            "/settings/validation-url",
            &[("validation_url", "  "), ("code", &code_now)],
        )
        .await;
    assert_eq!(status, 303);
    let (_, page) = b.get("/settings").await;
    assert!(page.contains("No validation webhook"), "{page}");
    let asked = op.all().len();
    let (status, v) = app.post_json("/withdrawal/crypto", &btc("w1")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(op.all().len(), asked);
}

#[tokio::test]
async fn a_refusal_matches_the_published_error_schema() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let op = Operator::start(&app).await;
    set_gate(&app, &op.url).await;
    op.answer(code(7, "over 500 EUR per withdrawal"));
    let doc: Value = app
        .http
        .get(app.url("/api/v2/openapi.json"))
        .send()
        .await
        .expect("document")
        .json()
        .await
        .expect("json");
    let mut c = crate::schema_check::Checker::new(doc);
    let key = (app.creds.api_key.as_str(), app.creds.api_secret.as_str());
    let (status, v) = c
        .call(
            &app,
            Some(key),
            "post",
            "/api/v2/withdrawal/crypto",
            Some(btc("w1")),
        )
        .await;
    assert_eq!((status, &v["operator_code"]), (400, &json!(7)), "{v}");
    // Other refusals keep their old shape: no operator fields.
    op.answer(code(0, "ok"));
    let (status, v) = c
        .call(
            &app,
            Some(key),
            "post",
            "/api/v2/withdrawal/crypto",
            Some(
                json!({"foreign_id": "w2", "currency": "BTC", "amount": "5", "address": BTC_ADDR}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v,
        json!({"message": "Not enough money on balance", "error_code": "balance_not_enough"})
    );
}
