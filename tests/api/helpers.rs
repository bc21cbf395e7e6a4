//! Test harness: the real application on port 0 with a fresh database per test (SQLite, or
//! PostgreSQL when `CS_TEST_POSTGRES_URL` is set), a settable clock, and a local HTTP
//! server standing in for the merchant's callback receiver.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use countersign::clock::{Clock, ManualClock};
use countersign::config::Settings;
use countersign::service::projects::{self as psvc, NewProjectInput, ProjectCredentials};
use countersign::startup::Application;
use countersign::state::AppState;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha512;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BTC_ADDR: &str = "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm";

pub fn random_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("random");
    hex::encode(b)
}

/// A fresh database URL for one test.
pub async fn fresh_database_url() -> String {
    match std::env::var("CS_TEST_POSTGRES_URL") {
        Ok(admin) if !admin.is_empty() => {
            use sqlx::Executor;
            sqlx::any::install_default_drivers();
            let name = format!("cs_test_{}", random_suffix());
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("connect to the PostgreSQL test server");
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("create test database");
            let mut url = url::Url::parse(&admin).expect("postgres url");
            url.set_path(&name);
            url.to_string()
        }
        _ => {
            let dir = std::env::temp_dir().join("countersign-tests");
            std::fs::create_dir_all(&dir).expect("temp dir");
            format!(
                "sqlite://{}?mode=rwc",
                dir.join(format!("{}.db", random_suffix())).display()
            )
        }
    }
}

pub fn test_settings(database_url: String) -> Settings {
    let mut s = Settings {
        database_url,
        listen: "127.0.0.1:0".into(),
        secret_key: Some(hex::encode([7u8; 32]).into()),
        log: std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into()),
        ..Settings::default()
    };
    s.worker.poll_interval_ms = 20;
    s.database_max_connections = 4;
    s.sandbox.confirm_delay_secs = 0;
    // The tests' receivers (callbacks, gate, Slack) listen on loopback.
    s.outbound.allowed_networks = vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
    // Every test signs in from 127.0.0.1, some dozens of times: the per-address limit is
    // tested with its default in signin.rs.
    s.sessions.signin_attempts_per_minute = 1_000;
    s
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub creds: ProjectCredentials,
    /// When the test app started, by its clock (seconds).
    pub created_at_secs: i64,
    /// `http://127.0.0.1:PORT` of the metrics listener, when `metrics.listen` is set.
    pub metrics_base: Option<String>,
    handle: actix_web::dev::ServerHandle,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(fresh_database_url().await);
    tweak(&mut settings);
    countersign::telemetry::init(&settings.log, "text");
    let clock = ManualClock::default();
    let app = Application::build_with_clock(settings, Arc::new(clock.clone()))
        .await
        .expect("build app");
    let base = format!("http://127.0.0.1:{}", app.port());
    let metrics_base = app.metrics_port().map(|p| format!("http://127.0.0.1:{p}"));
    let state = app.state().clone();
    let handle = app.handle();
    // The server runs on its own thread and runtime so that dropping the TestApp can stop it
    // (its worker threads hold the connection pool) after the test's runtime is gone.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        let _ = rt.block_on(app.run_until_stopped());
    });
    let creds = psvc::create(
        &state.db,
        &state.master_key,
        &NewProjectInput {
            name: "Acme Casino",
            primary_email: "finance@acme.test",
            base_currency: "EUR",
            callback_url: None,
        },
        clock.now_ms(),
    )
    .await
    .expect("create project");
    let created_at_secs = clock.now_ms() / 1000;
    TestApp {
        base,
        state,
        clock,
        http: reqwest::Client::new(),
        creds,
        created_at_secs,
        metrics_base,
        handle,
    }
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn project_id(&self) -> &str {
        &self.creds.project_id
    }

    /// POST a signed body to `/api/v2{path}`.
    pub async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/v2{path}")))
            .header("X-Processing-Key", &self.creds.api_key)
            .header(
                "X-Processing-Signature",
                sign(&self.creds.api_secret, body.as_bytes()),
            )
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    /// POST a signed JSON body and return (status, json).
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.post(path, &body.to_string()).await;
        let status = r.status().as_u16();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    }

    pub async fn credit(&self, currency: &str, amount: &str) {
        let c = countersign::domain::money::Currency::parse(currency).expect("currency");
        psvc::credit(
            &self.state.db,
            self.project_id(),
            c,
            amount.parse().expect("amount"),
            &countersign::db::audit::Actor::Cli,
            self.clock.now_ms(),
        )
        .await
        .expect("credit");
    }

    /// A second project (EUR base, no callback URL), created now; its credentials.
    pub async fn other_project(&self, name: &str, primary_email: &str) -> ProjectCredentials {
        countersign::service::projects::create(
            &self.state.db,
            &self.state.master_key,
            &countersign::service::projects::NewProjectInput {
                name,
                primary_email,
                base_currency: "EUR",
                callback_url: None,
            },
            self.clock.now_ms(),
        )
        .await
        .expect("another project")
    }

    pub async fn set_callback(&self, url: &str) {
        countersign::db::projects::set_callback_url(&self.state.db, self.project_id(), Some(url))
            .await
            .expect("set callback");
    }

    pub async fn withdraw(
        &self,
        foreign_id: &str,
        currency: &str,
        amount: &str,
        address: &str,
    ) -> (u16, Value) {
        self.post_json(
            "/withdrawal/crypto",
            &serde_json::json!({"foreign_id": foreign_id, "currency": currency, "amount": amount, "address": address}),
        )
        .await
    }

    pub async fn status_of(&self, foreign_id: &str) -> Value {
        let (code, v) = self
            .post_json(
                "/withdrawal/status",
                &serde_json::json!({"foreign_id": foreign_id}),
            )
            .await;
        assert_eq!(code, 200, "status of {foreign_id}: {v}");
        v["data"].clone()
    }

    /// Waits until the withdrawal reaches `status` (merchant view), or fails after 15 s.
    pub async fn wait_for_status(&self, foreign_id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..750 {
            last = self.status_of(foreign_id).await;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{foreign_id} never reached {status}; last seen {last}");
    }

    /// (available, held) of a currency from `accounts/list`.
    pub async fn balance(&self, currency: &str) -> (String, String) {
        let (code, v) = self
            .post_json("/accounts/list", &serde_json::json!({}))
            .await;
        assert_eq!(code, 200);
        let line = v["data"]
            .as_array()
            .expect("data array")
            .iter()
            .find(|l| l["currency"] == currency)
            .unwrap_or_else(|| panic!("no {currency} in {v}"))
            .clone();
        (
            line["balance"].as_str().expect("balance").to_string(),
            line["held"].as_str().expect("held").to_string(),
        )
    }

    /// How many times the sandbox rail was handed withdrawal `id`'s payout.
    pub async fn sandbox_submissions(&self, withdrawal_id: i64) -> u64 {
        countersign::payout::sandbox::SandboxProvider::new(self.state.db.clone(), 0, Vec::new())
            .submissions(&countersign::worker::payout_key(withdrawal_id))
            .await
            .expect("sandbox submissions")
    }

    /// Number of rows in a table (to show that a refusal wrote nothing).
    /// Asserts that the project's ledger adds up to its balances and its audit chain is intact.
    pub async fn assert_books_whole(&self, project_id: &str) {
        let off = countersign::db::balances::reconcile(&self.state.db, project_id)
            .await
            .expect("reconcile");
        assert!(off.is_empty(), "ledger and balances differ: {off:?}");
        let chain = countersign::db::audit::verify(&self.state.db, project_id)
            .await
            .expect("verify");
        assert!(
            matches!(chain, countersign::db::audit::Verdict::Intact { .. }),
            "{chain:?}"
        );
    }

    /// The value of the first `/metrics` line starting with `name`.
    pub async fn metric(&self, name: &str) -> f64 {
        let now = countersign::clock::Clock::now_ms(&self.clock);
        let text = self
            .state
            .metrics
            .render(&self.state.db, now)
            .await
            .expect("metrics");
        let line = (text.lines().find(|l| l.starts_with(name)))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number")
    }

    /// The number of rows of `from`: a table, or a table and a `WHERE` clause.
    pub async fn count(&self, from: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM {from}"
        )))
        .fetch_one(self.state.db.reader())
        .await
        .expect("count")
        .try_get::<i64, _>("n")
        .expect("n")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Sends the stop command now; the server thread finishes the shutdown and closes the
        // pools.
        drop(self.handle.stop(false));
    }
}

/// Polls `check` until it returns Some, for up to 15 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..750 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// One request the stand-in receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("callback body is JSON")
    }
}

/// A local HTTP server standing in for a merchant's callback receiver (or any webhook
/// consumer): records every request and answers with a settable status code.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<AtomicU16>,
    /// Extra response headers and a body for the answers (as Slack sends `Retry-After` and
    /// `no_service`).
    reply: Arc<Mutex<Reply>>,
}

/// Extra headers and a body for the stand-in's answers.
type Reply = (Vec<(String, String)>, String);

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let answer = Arc::new(AtomicU16::new(200));
        let reply: Arc<Mutex<Reply>> = Arc::default();
        let (r, a, x) = (received.clone(), answer.clone(), reply.clone());
        let server = HttpServer::new(move || {
            let (r, a, x) = (r.clone(), a.clone(), x.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (r, a, x) = (r.clone(), a.clone(), x.clone());
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    r.lock().expect("lock").push(Received {
                        path: req.path().to_string(),
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let code = a.load(Ordering::SeqCst);
                    let resp = HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(code).expect("status"),
                    )
                    .insert_header(("Location", "http://127.0.0.1:9/elsewhere"))
                    .finish();
                    let (headers, text) = x.lock().expect("lock").clone();
                    let mut resp = resp.set_body(text);
                    for (k, v) in headers {
                        resp.headers_mut().insert(
                            k.parse::<actix_web::http::header::HeaderName>()
                                .expect("name"),
                            v.parse().expect("value"),
                        );
                    }
                    resp.map_into_boxed_body()
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/callbacks"),
            received,
            answer,
            reply,
        }
    }

    pub fn answer_with(&self, code: u16) {
        self.answer.store(code, Ordering::SeqCst);
    }

    /// Answers with this status, these extra headers and this body from now on.
    pub fn answer_with_body(&self, code: u16, headers: &[(&str, &str)], body: &str) {
        *self.reply.lock().expect("lock") = (
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body.to_string(),
        );
        self.answer_with(code);
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Callbacks whose body has this foreign id, in arrival order.
    pub fn for_foreign_id(&self, foreign_id: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| {
                serde_json::from_str::<Value>(&r.body).is_ok_and(|v| v["foreign_id"] == foreign_id)
            })
            .collect()
    }
}

/// A user created for a test, with what it takes to sign in as them.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub secret: Vec<u8>,
}

impl TestApp {
    /// Creates an active, enrolled user in the test project.
    pub async fn create_user(&self, role: &str, rights: bool) -> TestUser {
        self.create_user_in(self.project_id(), role, rights).await
    }

    pub async fn create_user_in(&self, project_id: &str, role: &str, rights: bool) -> TestUser {
        let email = format!("{role}-{}@acme.test", random_suffix());
        let password = format!("pw {} horse battery", random_suffix());
        let created = countersign::service::people::create_enrolled(
            &self.state,
            project_id,
            &email,
            countersign::db::users::Role::parse(role).expect("role"),
            rights,
            password.clone().into(),
            &countersign::db::audit::Actor::Cli,
        )
        .await
        .expect("create user");
        TestUser {
            id: created.user_id,
            email,
            password,
            secret: countersign::auth::totp::from_base32(&created.totp_secret).expect("secret"),
        }
    }

    /// The current TOTP code of `user` by the app's clock.
    pub fn code(&self, user: &TestUser) -> String {
        countersign::auth::totp::code_at(&user.secret, self.clock.now_ms()).expect("code")
    }

    /// A cookie-keeping browser against this app.
    pub fn browser(&self) -> Browser {
        self.browser_with(reqwest::header::HeaderMap::new())
    }

    /// A browser whose requests say, through a proxy's `X-Forwarded-For`, that they come from
    /// `ip` (the app must trust 127.0.0.1 as a proxy: `trusted_proxies`).
    pub fn browser_from(&self, ip: &str) -> Browser {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("X-Forwarded-For", ip.parse().expect("header value"));
        self.browser_with(headers)
    }

    fn browser_with(&self, headers: reqwest::header::HeaderMap) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        Browser {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(headers)
                .build()
                .expect("client"),
            csrf: Arc::new(Mutex::new(String::new())),
            jar,
        }
    }

    /// A browser signed in as `user` (password, then a fresh TOTP code: the clock moves on
    /// one step first so the code is never a replay).
    pub async fn signed_in(&self, user: &TestUser) -> Browser {
        let b = self.browser();
        self.clock.advance_secs(30);
        let (status, _) = b.get("/login").await;
        assert_eq!(status, 200);
        let (status, _, location) = b
            .post_form(
                "/login",
                &[("email", &user.email), ("password", &user.password)],
            )
            .await;
        assert_eq!(
            (status, location.as_deref()),
            (303, Some("/login/totp")),
            "password step"
        );
        b.get("/login/totp").await;
        let (status, _, location) = b
            .post_form("/login/totp", &[("code", &self.code(user))])
            .await;
        assert_eq!(status, 303, "code step");
        assert_eq!(location.as_deref(), Some("/"));
        b
    }
}

/// A browser-like HTTP client: keeps cookies, sends the page's CSRF token and the Origin
/// header with forms, does not follow redirects (tests look at them).
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    pub http: reqwest::Client,
    /// The CSRF token of the last page that had a form.
    pub csrf: Arc<Mutex<String>>,
    pub jar: Arc<reqwest::cookie::Jar>,
}

/// The value of the first `name="csrf" value="..."` in a page.
pub fn csrf_in(page: &str) -> Option<String> {
    let at = page.find("name=\"csrf\" value=\"")?;
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest.find('"').map(|end| rest[..end].to_string())
}

impl Browser {
    /// The session cookie's value the browser holds now.
    pub fn session_cookie(&self) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = url::Url::parse(&self.base).expect("base url");
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix("cs_session=").map(str::to_string))
    }

    /// A second browser presenting this cookie value (to replay a stolen or old session).
    pub fn with_cookie(&self, value: &str) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let url = url::Url::parse(&self.base).expect("base url");
        jar.add_cookie_str(&format!("cs_session={value}; Path=/"), &url);
        Browser {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            csrf: Arc::new(Mutex::new(String::new())),
            jar,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("get");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        if let Some(t) = csrf_in(&body) {
            *self.csrf.lock().expect("lock") = t;
        }
        (status, body)
    }

    /// Follows a GET's redirect chain (same origin) and returns the last page and its path.
    pub async fn get_following(&self, path: &str) -> (u16, String, String) {
        let mut path = path.to_string();
        for _ in 0..5 {
            let r = self
                .http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("get");
            if r.status().is_redirection() {
                path = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("/")
                    .to_string();
                continue;
            }
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if let Some(t) = csrf_in(&body) {
                *self.csrf.lock().expect("lock") = t;
            }
            return (status, body, path);
        }
        panic!("too many redirects from {path}");
    }

    /// POSTs a form with the current CSRF token and a same-origin Origin header. Returns
    /// status, body and the Location header.
    pub async fn post_form(
        &self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (u16, String, Option<String>) {
        let token = self.csrf.lock().expect("lock").clone();
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            all.push(("csrf", &token));
        }
        self.post_raw(path, &all, Some(&self.base)).await
    }

    /// POSTs exactly these fields with this Origin (or none), for CSRF tests.
    pub async fn post_raw(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (u16, String, Option<String>) {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(fields);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        let r = req.send().await.expect("post");
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = r.text().await.unwrap_or_default();
        if let Some(t) = csrf_in(&body) {
            *self.csrf.lock().expect("lock") = t;
        }
        (status, body, location)
    }
}

/// A real SMTP server on loopback for tests: speaks enough ESMTP for lettre (EHLO, MAIL,
/// RCPT, DATA, RSET, NOOP, QUIT) and keeps every message it accepts. It can be told to refuse
/// mail (answer 451) to rehearse an outage.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    pub messages: Arc<Mutex<Vec<SmtpMessage>>>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, Clone)]
pub struct SmtpMessage {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let messages: Arc<Mutex<Vec<SmtpMessage>>> = Arc::default();
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, r) = (messages.clone(), refuse.clone());
        // Runs on its own thread so it outlives nothing it should not.
        let rt_listener = listener.into_std().expect("std listener");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(rt_listener).expect("listener");
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        return;
                    };
                    let (m, r) = (m.clone(), r.clone());
                    tokio::spawn(async move {
                        let (rd, mut wr) = sock.into_split();
                        let mut lines = BufReader::new(rd).lines();
                        let _ = wr.write_all(b"220 sink.test ESMTP\r\n").await;
                        let (mut from, mut to, mut data, mut in_data) =
                            (String::new(), Vec::new(), String::new(), false);
                        while let Ok(Some(line)) = lines.next_line().await {
                            if in_data {
                                if line == "." {
                                    in_data = false;
                                    m.lock().expect("lock").push(SmtpMessage {
                                        from: from.clone(),
                                        to: to.clone(),
                                        data: std::mem::take(&mut data),
                                    });
                                    to.clear();
                                    let _ = wr.write_all(b"250 2.0.0 queued\r\n").await;
                                } else {
                                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                                    data.push('\n');
                                }
                                continue;
                            }
                            let upper = line.to_ascii_uppercase();
                            let reply: &[u8] = if upper.starts_with("EHLO") {
                                b"250-sink.test\r\n250 8BITMIME\r\n"
                            } else if upper.starts_with("HELO")
                                || upper.starts_with("RSET")
                                || upper.starts_with("NOOP")
                            {
                                b"250 OK\r\n"
                            } else if upper.starts_with("MAIL FROM:") {
                                if r.load(std::sync::atomic::Ordering::SeqCst) {
                                    b"451 4.3.0 try again later\r\n"
                                } else {
                                    from = line[10..].trim().to_string();
                                    b"250 OK\r\n"
                                }
                            } else if upper.starts_with("RCPT TO:") {
                                to.push(line[8..].trim().to_string());
                                b"250 OK\r\n"
                            } else if upper == "DATA" {
                                in_data = true;
                                b"354 end with .\r\n"
                            } else if upper == "QUIT" {
                                let _ = wr.write_all(b"221 bye\r\n").await;
                                return;
                            } else {
                                b"502 not implemented\r\n"
                            };
                            let _ = wr.write_all(reply).await;
                        }
                    });
                }
            });
        });
        SmtpSink {
            port,
            messages,
            refuse,
        }
    }

    pub fn refuse(&self, on: bool) {
        self.refuse.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn to(&self, address: &str) -> Vec<SmtpMessage> {
        self.messages
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| m.to.iter().any(|t| t.contains(address)))
            .cloned()
            .collect()
    }

    /// Settings pointing the app at this sink.
    pub fn configure(&self, s: &mut Settings) {
        s.smtp.host = Some("127.0.0.1".into());
        s.smtp.port = Some(self.port);
        s.smtp.security = Some("none".into());
        s.smtp.from = Some("Countersign <countersign@acme.test>".into());
    }
}

/// The first link containing `marker` (e.g. "/confirm/") in a raw SMTP message, with the
/// quoted-printable soft line breaks and escapes of its text part undone.
pub fn link_in_mail(data: &str, marker: &str) -> Option<String> {
    let text = data
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let at = text.find(marker)?;
    let start = text[..at].rfind("http")?;
    let end = text[start..]
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .map_or(text.len(), |e| start + e);
    Some(text[start..end].to_string())
}
