//! Operations: health and readiness, the metrics listener and what it reports, graceful
//! shutdown of the worker, migrations run from several instances at once, and the purge of dead
//! sessions.

use crate::helpers::{
    BTC_ADDR, Receiver, TestApp, eventually, fresh_database_url, spawn_app, spawn_app_with,
};
use countersign::clock::Clock;
use countersign::db::audit::Origin;
use countersign::db::{Db, SchemaStatus, jobs, users, withdrawals as wdb};
use countersign::domain::approval::Decision;
use countersign::service::approvals::{self as asvc, Channel, DecisionRequest};
use countersign::worker::Worker;
use serde_json::Value;
use sqlx::Row;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.http.get(app.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The scrape body of the app's metrics listener.
async fn scrape(app: &TestApp) -> String {
    let base = app.metrics_base.as_ref().expect("metrics listener on");
    let r = app
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    r.text().await.unwrap()
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.trim().parse::<f64>().expect("numeric sample"))
    })
}

fn metrics_on(s: &mut countersign::config::Settings) {
    s.metrics.listen = "127.0.0.1:0".into();
}

#[tokio::test]
async fn healthz_and_readyz_answer_on_a_current_database() {
    let app = spawn_app().await;
    assert_eq!(
        get_json(&app, "/healthz").await,
        (200, serde_json::json!({"status": "ok"}))
    );
    assert_eq!(
        get_json(&app, "/readyz").await,
        (200, serde_json::json!({"status": "ready"}))
    );
    assert_eq!(
        app.state.db.schema_status().await.unwrap(),
        SchemaStatus::Current
    );
}

#[tokio::test]
async fn readyz_is_unavailable_while_a_migration_is_not_applied() {
    let app = spawn_app().await;
    let latest: i64 = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations")
        .fetch_one(app.state.db.writer())
        .await
        .unwrap()
        .try_get("v")
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(latest)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let (status, body) = get_json(&app, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not ready");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("migrations not applied"),
        "{body}"
    );
    assert_eq!(body["pending_migrations"], serde_json::json!([latest]));
    // The process itself is still up.
    assert_eq!(get_json(&app, "/healthz").await.0, 200);
}

#[tokio::test]
async fn readyz_is_unavailable_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.state.db.close().await;
    let (status, body) = get_json(&app, "/readyz").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("database unreachable"))
    );
}

#[tokio::test]
async fn metrics_are_never_served_on_the_main_port() {
    let app = spawn_app_with(metrics_on).await;
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Off by default: no listener at all.
    let plain = spawn_app().await;
    assert!(plain.metrics_base.is_none());
}

#[tokio::test]
async fn metrics_token_is_required_when_configured() {
    let app = spawn_app_with(|s| {
        metrics_on(s);
        s.metrics.token = Some("scrape-secret".to_string().into());
    })
    .await;
    let url = format!("{}/metrics", app.metrics_base.as_ref().unwrap());
    let none = app.http.get(&url).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = app
        .http
        .get(&url)
        .bearer_auth("scrape-secreT")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let right = app
        .http
        .get(&url)
        .bearer_auth("scrape-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 200);
    assert!(
        right
            .text()
            .await
            .unwrap()
            .contains("countersign_database_up 1")
    );
}

#[tokio::test]
async fn metrics_report_withdrawals_decisions_outbox_and_requests() {
    // No worker: statuses and queued jobs stay where the test puts them.
    let app = spawn_app_with(|s| {
        metrics_on(s);
        s.worker.enabled = false;
    })
    .await;
    app.credit("BTC", "10").await;
    let owner = app.create_user("owner", true).await;
    let owner = users::by_id(&app.state.db, &owner.id)
        .await
        .unwrap()
        .unwrap();
    // The small one first (after the big ones it would be over the hourly limit); it needs
    // no approval (the merchant view shows `approved` as "processing").
    for (fid, amount, status) in [
        ("m3", "0.0001", "processing"),
        ("m1", "0.5", "pending"),
        ("m2", "0.5", "pending"),
    ] {
        let (code, v) = app.withdraw(fid, "BTC", amount, BTC_ADDR).await;
        assert_eq!(
            (code, v["data"]["status"].as_str()),
            (200, Some(status)),
            "{v}"
        );
    }
    app.clock.advance_secs(120);
    let m2 = wdb::by_foreign_id(&app.state.db, app.project_id(), "m2")
        .await
        .unwrap()
        .unwrap();
    asvc::decide(
        &app.state,
        &owner,
        &DecisionRequest {
            withdrawal_id: m2.id,
            decision: Decision::Decline,
            note: "",
            channel: Channel::Web,
            origin: &Origin::default(),
            require_claim: false,
        },
    )
    .await
    .unwrap();
    app.clock.advance_secs(30);
    // A page with an id in its path, to see the pattern (not the path) as the label.
    app.http
        .get(app.url(&format!("/withdrawals/{}", m2.id)))
        .send()
        .await
        .unwrap();

    let text = scrape(&app).await;
    let s = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} in\n{text}"));
    assert_eq!(s(r#"countersign_withdrawals{status="pending"}"#), 1.0);
    assert_eq!(s(r#"countersign_withdrawals{status="approved"}"#), 1.0);
    assert_eq!(s(r#"countersign_withdrawals{status="processing"}"#), 0.0);
    assert_eq!(
        s(r#"countersign_withdrawals_finished_total{status="declined"}"#),
        1.0
    );
    assert_eq!(
        s(r#"countersign_withdrawals_finished_total{status="confirmed"}"#),
        0.0
    );
    // m1 has waited since the start: 150 s by the app's clock.
    assert_eq!(s("countersign_pending_oldest_age_seconds"), 150.0);
    assert_eq!(
        s(r#"countersign_approval_latency_seconds_count{outcome="declined"}"#),
        1.0
    );
    assert_eq!(
        s(r#"countersign_approval_latency_seconds_sum{outcome="declined"}"#),
        120.0
    );
    assert_eq!(s(r#"countersign_outbox_queued{kind="payout_submit"}"#), 1.0);
    assert_eq!(
        s(r#"countersign_outbox_oldest_age_seconds{kind="payout_submit"}"#),
        150.0
    );
    assert_eq!(s(r#"countersign_outbox_queued{kind="payout_check"}"#), 0.0);
    assert_eq!(
        s(r#"countersign_outbox_oldest_age_seconds{kind="slack"}"#),
        0.0
    );
    // Callbacks for m1 and m2 (pending) and m2 (declined); none for m3 (approved).
    assert_eq!(s(r#"countersign_outbox_queued{kind="callback"}"#), 3.0);
    assert_eq!(
        s(
            r#"countersign_http_request_duration_seconds_count{method="POST",route="/api/v2/withdrawal/crypto",status="2xx"}"#
        ),
        3.0
    );
    assert_eq!(
        s(
            r#"countersign_http_request_duration_seconds_count{method="GET",route="/withdrawals/{id}",status="3xx"}"#
        ),
        1.0
    );
    assert!(
        !text.contains(&format!("/withdrawals/{}\"", m2.id)),
        "raw path as label"
    );
    assert_eq!(s("countersign_database_up"), 1.0);
}

#[tokio::test]
async fn metrics_count_sign_in_failures_and_lockouts() {
    let app = spawn_app_with(metrics_on).await;
    let user = app.create_user("member", false).await;
    let b = app.browser();
    b.get("/login").await;
    for _ in 0..10 {
        let (status, _, _) = b
            .post_form("/login", &[("email", &user.email), ("password", "not it")])
            .await;
        assert_eq!(status, 401);
    }
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            r#"countersign_signin_failures_total{factor="password"}"#
        ),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "countersign_lockouts_total"),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_count_delivery_failures_by_kind() {
    let app = spawn_app_with(metrics_on).await;
    let receiver = Receiver::start().await;
    receiver.answer_with(500);
    app.set_callback(&receiver.url).await;
    app.credit("BTC", "10").await;
    let (code, _) = app.withdraw("df1", "BTC", "0.5", BTC_ADDR).await;
    assert_eq!(code, 200);
    eventually("a failed callback in the metrics", || async {
        let text = scrape(&app).await;
        sample(
            &text,
            r#"countersign_delivery_failures_total{kind="callback",result="retry"}"#,
        )
        .filter(|n| *n >= 1.0)
    })
    .await;
}

/// A callback receiver on raw TCP that answers 200 after `delay`, or never (`None`). Counts
/// the connections it accepted.
async fn slow_receiver(delay: Option<Duration>) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callbacks", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = sock.read(&mut buf).await;
                match delay {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, accepted)
}

async fn leased_callbacks(app: &TestApp) -> i64 {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM jobs WHERE kind = 'callback' AND lease_owner IS NOT NULL",
    )
    .fetch_one(app.state.db.reader())
    .await
    .unwrap()
    .try_get("n")
    .unwrap()
}

#[tokio::test]
async fn a_stopped_worker_abandons_running_jobs_after_its_grace_and_releases_its_claims() {
    let app = spawn_app_with(|s| {
        s.worker.enabled = false;
        s.worker.concurrency = 1;
        s.worker.shutdown_grace_secs = 1;
        s.callbacks.timeout_secs = 60;
    })
    .await;
    let (url, accepted) = slow_receiver(None).await;
    app.set_callback(&url).await;
    app.credit("BTC", "10").await;
    for fid in ["g1", "g2", "g3"] {
        assert_eq!(app.withdraw(fid, "BTC", "0.5", BTC_ADDR).await.0, 200);
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(Worker::new(app.state.clone()).run(rx));
    // One callback is in flight (hanging); the other two are claimed and waiting their turn.
    eventually("a callback in flight", || async {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    assert_eq!(leased_callbacks(&app).await, 3);
    let stopping = Instant::now();
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), worker)
        .await
        .expect("the worker stops after its grace")
        .unwrap();
    assert!(
        stopping.elapsed() >= Duration::from_secs(1),
        "waited for the grace"
    );
    // Nothing is left leased; the attempts taken at claim time were handed back.
    assert_eq!(leased_callbacks(&app).await, 0);
    let rows = sqlx::query("SELECT status, attempts FROM jobs WHERE kind = 'callback'")
        .fetch_all(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r.try_get::<String, _>("status").unwrap(), "queued");
        assert_eq!(r.try_get::<i64, _>("attempts").unwrap(), 0);
    }
    // Another instance takes them at once, long before the 60 s lease would have run out.
    let now = app.clock.now_ms();
    let taken = jobs::claim(&app.state.db, "other-instance", now, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(taken.iter().filter(|j| j.kind == "callback").count(), 3);
}

#[tokio::test]
async fn a_stopped_worker_finishes_the_job_it_is_running_within_its_grace() {
    let app = spawn_app_with(|s| {
        s.worker.enabled = false;
        s.worker.shutdown_grace_secs = 10;
    })
    .await;
    let (url, accepted) = slow_receiver(Some(Duration::from_millis(1500))).await;
    app.set_callback(&url).await;
    app.credit("BTC", "10").await;
    assert_eq!(app.withdraw("q1", "BTC", "0.5", BTC_ADDR).await.0, 200);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(Worker::new(app.state.clone()).run(rx));
    eventually("the callback in flight", || async {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .unwrap()
        .unwrap();
    // The receiver's answer came in during the grace: delivered, not handed back.
    let rows = sqlx::query("SELECT status, lease_owner FROM jobs WHERE kind = 'callback'")
        .fetch_all(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].try_get::<String, _>("status").unwrap(), "done");
    assert_eq!(
        rows[0].try_get::<Option<String>, _>("lease_owner").unwrap(),
        None
    );
}

#[tokio::test]
async fn migrations_run_from_four_instances_at_once_all_succeed() {
    let url = fresh_database_url().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let db = Db::connect(&url, 2).await?;
            let r = db.migrate().await;
            db.close().await;
            r
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every instance's migrate succeeds");
    }
    let db = Db::connect(&url, 2).await.unwrap();
    assert_eq!(db.schema_status().await.unwrap(), SchemaStatus::Current);
    let dir = if url.starts_with("sqlite:") {
        "migrations/sqlite"
    } else {
        "migrations/postgres"
    };
    let files = std::fs::read_dir(dir).unwrap().count();
    let applied: i64 = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
        .fetch_one(db.reader())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(applied, i64::try_from(files).unwrap());
    db.close().await;
}

/// Posts a withdrawal with an `X-Forwarded-For` header and returns the address its audit
/// record holds.
async fn recorded_ip(app: &TestApp, foreign_id: &str, forwarded_for: &str) -> String {
    let body = serde_json::json!({
        "foreign_id": foreign_id, "currency": "BTC", "amount": "0.01", "address": BTC_ADDR,
    })
    .to_string();
    let r = app
        .http
        .post(app.url("/api/v2/withdrawal/crypto"))
        .header("X-Processing-Key", &app.creds.api_key)
        .header(
            "X-Processing-Signature",
            crate::helpers::sign(&app.creds.api_secret, body.as_bytes()),
        )
        .header("Content-Type", "application/json")
        .header("X-Forwarded-For", forwarded_for)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let row = sqlx::query(
        "SELECT ip FROM audit_log WHERE action = 'withdrawal.created' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(app.state.db.reader())
    .await
    .unwrap();
    row.try_get::<Option<String>, _>("ip")
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    // Anyone can send the header: by default the TCP peer is recorded.
    assert_eq!(
        recorded_ip(&app, "xff-1", "198.51.100.7").await,
        "127.0.0.1"
    );

    let app = spawn_app_with(|s| s.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]).await;
    app.credit("BTC", "1").await;
    // A trusted proxy elsewhere does not make this peer one.
    assert_eq!(
        recorded_ip(&app, "xff-2", "198.51.100.7").await,
        "127.0.0.1"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_it_saw_is_recorded() {
    let trusted = [
        "127.0.0.1".parse().unwrap(),
        "192.0.2.0/24".parse().unwrap(),
    ];
    let app = spawn_app_with(|s| s.trusted_proxies = trusted.to_vec()).await;
    app.credit("BTC", "1").await;
    assert_eq!(
        recorded_ip(&app, "xff-3", "198.51.100.7").await,
        "198.51.100.7"
    );
    // What the client put in the header itself (left of what the proxies appended) is not
    // believed; a second trusted proxy in the chain is walked past.
    assert_eq!(
        recorded_ip(&app, "xff-4", "6.6.6.6, 203.0.113.9, 192.0.2.5").await,
        "203.0.113.9"
    );
    // Garbage in the header: the last address known for sure, the proxy's.
    assert_eq!(recorded_ip(&app, "xff-5", "unknown").await, "127.0.0.1");
}

/// The worker's and `/metrics`' lookups of work in motion can go through the partial indexes
/// that hold only that work (migration 0012). On PostgreSQL, with scans of the whole table
/// ruled out, a query whose condition did not imply the index's predicate would get a
/// sequential scan; on SQLite, which plans without statistics here, the plan names the index.
#[tokio::test]
async fn work_in_motion_is_found_through_the_in_flight_indexes() {
    use countersign::db::{Arg, Engine, bind_args, monitoring};
    let app = spawn_app().await;
    let db = &app.state.db;
    let claim = jobs::claim_sql(db.engine());
    let n = || Arg::Int(1);
    let queries = [
        (
            wdb::EXPIRED_PENDING_SQL,
            "withdrawals_in_flight",
            vec![n(), n()],
        ),
        (monitoring::IN_FLIGHT_SQL, "withdrawals_in_flight", vec![]),
        (
            monitoring::OLDEST_PENDING_SQL,
            "withdrawals_in_flight",
            vec![],
        ),
        (monitoring::OUTBOX_SQL, "jobs_queued", vec![]),
        (
            &claim,
            "jobs_queued",
            vec![Arg::Text("worker".into()), n(), n(), n()],
        ),
    ];
    for (sql, index, args) in queries {
        let explain = format!(
            "{} {sql}",
            match db.engine() {
                Engine::Sqlite => "EXPLAIN QUERY PLAN",
                Engine::Postgres => "EXPLAIN",
            }
        );
        let mut tx = db.begin().await.unwrap();
        if db.engine() == Engine::Postgres {
            sqlx::raw_sql("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let q = bind_args(sqlx::query(sqlx::AssertSqlSafe(explain)), args);
        let plan = q
            .fetch_all(&mut *tx)
            .await
            .unwrap()
            .iter()
            .map(|r| match db.engine() {
                Engine::Sqlite => r.get::<String, _>("detail"),
                Engine::Postgres => r.get::<String, _>(0),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(plan.contains(index), "{sql}\nshould use {index}:\n{plan}");
    }
}

/// The worker deletes sessions that died more than a day ago (ended, past their absolute
/// expiry, or unused past the idle timeout), once an hour; live sessions and those that died
/// within the day stay.
#[tokio::test]
async fn the_worker_purges_sessions_dead_for_more_than_a_day() {
    use countersign::clock::{DAY_MS, HOUR_MS, MINUTE_MS};
    use countersign::db::sessions::{self, SessionRow, Stage};
    let app = spawn_app().await;
    // The worker purges when it starts, then an hour later. The rows are set as of then.
    let later = app.clock.now_ms() + 2 * HOUR_MS;
    let db = &app.state.db;
    let put = |id: &'static str, last_seen_at: i64, absolute_expiry: i64| {
        let row = SessionRow {
            id_hash: id.to_string(),
            user_id: None,
            stage: Stage::Anon,
            generation: 0,
            csrf_token: "csrf".into(),
            return_to: Some("/approve/secret".into()),
            created_at: last_seen_at - MINUTE_MS,
            last_seen_at,
            absolute_expiry,
            verified_at: None,
            ip: None,
            user_agent: None,
        };
        async move { sessions::insert(db, &row).await.unwrap() }
    };
    // Dead for more than a day as of `later`, not yet as of now (a purge may run meanwhile).
    let died = later - DAY_MS - 30 * MINUTE_MS;
    put("live", later - MINUTE_MS, later + HOUR_MS).await;
    // Unused for 30 minutes (the idle timeout) since `died - 30 minutes`.
    put("idle", died - 30 * MINUTE_MS, later + HOUR_MS).await;
    put("expired", later - MINUTE_MS, died).await;
    put("ended", died - MINUTE_MS, later + HOUR_MS).await;
    sessions::end(db, "ended", died).await.unwrap();
    put("ended-today", later - 2 * HOUR_MS, later + HOUR_MS).await;
    sessions::end(db, "ended-today", later - HOUR_MS)
        .await
        .unwrap();
    let left = || async {
        let rows = sqlx::query("SELECT id_hash FROM sessions ORDER BY id_hash")
            .fetch_all(db.reader())
            .await
            .unwrap();
        rows.iter()
            .map(|r| sqlx::Row::get::<String, _>(r, "id_hash"))
            .collect::<Vec<_>>()
    };
    // Not before the hour is up.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(left().await.len(), 5);
    app.clock.set_ms(later);
    let kept = eventually("the dead sessions purged", || async {
        let ids = left().await;
        (ids.len() == 2).then_some(ids)
    })
    .await;
    assert_eq!(kept, ["ended-today", "live"]);
}
