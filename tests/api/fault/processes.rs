//! The real binary (`countersign serve`) as an operator runs it: killed with SIGKILL in the
//! middle of a load and restarted, and three instances sharing one PostgreSQL database.

use super::{Creds, assert_signed, free_port, post_signed, until};
use crate::helpers::{BTC_ADDR, Receiver, SmtpSink, fresh_database_url, random_suffix};
use countersign::db::Db;
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Every tenth withdrawal is over the per-operation limit (0.02 BTC = 1,200 EUR against
/// 1,000 EUR) and stays pending, with an approval email to the owner; the rest are paid out.
const SMALL: &str = "0.0001";
const LARGE: &str = "0.02";

fn is_held(i: usize) -> bool {
    i % 10 == 9
}

/// One prepared installation: a database with a project, its funds, an owner, and the
/// stand-ins for the merchant's callback receiver and the mail server.
struct Installation {
    db_url: String,
    key: String,
    creds: Creds,
    owner: String,
    rx: Receiver,
    sink: SmtpSink,
}

impl Installation {
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(args)
            .env("COUNTERSIGN_DATABASE_URL", &self.db_url)
            .env("COUNTERSIGN_SECRET_KEY", &self.key)
            .env("COUNTERSIGN_LOG", "error")
            .env(
                "COUNTERSIGN_OUTBOUND__ALLOWED_NETWORKS",
                r#"["127.0.0.0/8"]"#,
            )
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run countersign");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.unwrap_or("").as_bytes())
            .expect("write stdin");
        drop(input);
        let out = child.wait_with_output().expect("countersign output");
        assert!(
            out.status.success(),
            "countersign {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.cli(args, None).stdout).expect("one JSON object")
    }

    /// A project created, funded and configured through the CLI, the way an operator would.
    async fn prepare() -> Installation {
        let rx = Receiver::start().await;
        let sink = SmtpSink::start().await;
        let mut inst = Installation {
            db_url: fresh_database_url().await,
            key: hex::encode([3u8; 32]),
            creds: Creds {
                project_id: String::new(),
                api_key: String::new(),
                api_secret: String::new(),
                webhook_secret: String::new(),
            },
            owner: format!("owner-{}@acme.test", random_suffix()),
            rx,
            sink,
        };
        let p = inst.json(&[
            "project",
            "create",
            "--name",
            "Acme Casino",
            "--primary-email",
            "finance@acme.test",
            "--callback-url",
            &inst.rx.url,
        ]);
        inst.creds = Creds::from_json(&p);
        let id = inst.creds.project_id.clone();
        inst.json(&[
            "balance",
            "credit",
            "--project",
            &id,
            "--currency",
            "BTC",
            "--amount",
            "10",
        ]);
        // Hour and day windows out of the way: only the per-operation limit holds anything.
        inst.json(&[
            "limits",
            "set",
            "--project",
            &id,
            "--scope",
            "api",
            "--per-hour",
            "100000000",
            "--per-day",
            "100000000",
        ]);
        let owner = inst.owner.clone();
        inst.cli(
            &[
                "user",
                "create",
                "--project",
                &id,
                "--email",
                &owner,
                "--role",
                "owner",
                "--withdrawal-rights",
                "--password-stdin",
            ],
            Some("a long enough passphrase\n"),
        );
        inst
    }

    /// `countersign serve` on a free port, the sandbox confirming at once, short leases (a
    /// killed process's claims come back after 5 s rather than a minute), mail to the sink.
    fn serve(&self) -> Serve {
        let port = free_port();
        let log = std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into());
        let child = Command::new(env!("CARGO_BIN_EXE_countersign"))
            .arg("serve")
            .env("COUNTERSIGN_DATABASE_URL", &self.db_url)
            .env("COUNTERSIGN_SECRET_KEY", &self.key)
            .env("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}"))
            .env("COUNTERSIGN_LOG", &log)
            .env("COUNTERSIGN_DATABASE_MAX_CONNECTIONS", "8")
            .env("COUNTERSIGN_SANDBOX__CONFIRM_DELAY_SECS", "0")
            .env(
                "COUNTERSIGN_OUTBOUND__ALLOWED_NETWORKS",
                r#"["127.0.0.0/8"]"#,
            )
            .env("COUNTERSIGN_WORKER__POLL_INTERVAL_MS", "50")
            .env("COUNTERSIGN_WORKER__LEASE_SECS", "5")
            .env("COUNTERSIGN_SMTP__HOST", "127.0.0.1")
            .env("COUNTERSIGN_SMTP__PORT", self.sink.port.to_string())
            .env("COUNTERSIGN_SMTP__SECURITY", "none")
            .env(
                "COUNTERSIGN_SMTP__FROM",
                "Countersign <countersign@acme.test>",
            )
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(if log == "off" {
                Stdio::null()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("start countersign serve");
        Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn db(&self) -> Db {
        Db::connect(&self.db_url, 2)
            .await
            .expect("open the database")
    }
}

/// A running `countersign serve`, killed (SIGKILL) when dropped.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    async fn ready(&self, http: &reqwest::Client) {
        until(
            "serve to answer /healthz",
            Duration::from_secs(30),
            || async {
                http.get(format!("{}/healthz", self.base))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                    .then_some(())
            },
        )
        .await;
    }

    /// `kill -9`: no shutdown hook, no lease handed back, connections cut.
    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn withdrawal_body(run: &str, i: usize) -> (String, String) {
    let foreign_id = format!("{run}-{i:04}");
    let amount = if is_held(i) { LARGE } else { SMALL };
    let body = json!({"foreign_id": foreign_id, "currency": "BTC", "amount": amount,
        "address": BTC_ADDR, "end_user_reference": format!("user-{i}")})
    .to_string();
    (foreign_id, body)
}

/// What a load left: the answers by foreign id, and the ones that got none.
#[derive(Default)]
struct Load {
    answered: BTreeMap<String, (u16, Value)>,
    unanswered: Vec<usize>,
}

/// What the final check saw, for the report.
#[derive(Debug)]
struct Figures {
    confirmed: usize,
    pending: usize,
    callback_requests: usize,
    callback_events: usize,
    payouts: usize,
    resubmitted: usize,
    emails: usize,
}

/// Waits until everything the load caused is finished, then checks it all.
async fn settle_and_check(inst: &Installation, db: &Db, n: usize, run: &str) -> Figures {
    let expected: BTreeMap<String, &str> = (0..n)
        .map(|i| {
            let (foreign_id, _) = withdrawal_body(run, i);
            (foreign_id, if is_held(i) { "pending" } else { "confirmed" })
        })
        .collect();
    // Every withdrawal in its final state and the outbox drained.
    let rows = until(
        "every withdrawal final and every job done",
        Duration::from_secs(90),
        || async {
            let rows: BTreeMap<String, (i64, String)> =
                sqlx::query("SELECT id, foreign_id, status FROM withdrawals WHERE project_id = $1")
                    .bind(&inst.creds.project_id)
                    .fetch_all(db.reader())
                    .await
                    .ok()?
                    .iter()
                    .map(|r| {
                        (
                            r.get::<String, _>("foreign_id"),
                            (r.get::<i64, _>("id"), r.get::<String, _>("status")),
                        )
                    })
                    .collect();
            let open: i64 = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'")
                .fetch_one(db.reader())
                .await
                .ok()?
                .get("n");
            let finished = rows.len() == expected.len()
                && rows
                    .iter()
                    .all(|(f, (_, s))| expected.get(f.as_str()) == Some(&s.as_str()));
            (finished && open == 0).then_some(rows)
        },
    )
    .await;
    let dead: Vec<String> =
        sqlx::query("SELECT kind, last_error FROM jobs WHERE status <> 'done' ORDER BY id")
            .fetch_all(db.reader())
            .await
            .expect("jobs")
            .iter()
            .map(|r| {
                format!(
                    "{}: {:?}",
                    r.get::<String, _>("kind"),
                    r.get::<Option<String>, _>("last_error")
                )
            })
            .collect();
    assert!(dead.is_empty(), "jobs not done: {dead:?}");

    // Every callback event delivered (at least once), each with both signatures; none
    // unexpected.
    let received = until(
        "a callback for every withdrawal",
        Duration::from_secs(30),
        || async {
            let all = inst.rx.all();
            let events: BTreeSet<String> = all
                .iter()
                .filter_map(|r| r.header("webhook-id").map(str::to_string))
                .collect();
            (events.len() >= expected.len()).then_some(all)
        },
    )
    .await;
    let mut by_event: BTreeMap<String, Value> = BTreeMap::new();
    for r in &received {
        assert_signed(&inst.creds, r);
        let id = r.header("webhook-id").expect("webhook-id").to_string();
        let body = r.json();
        if let Some(first) = by_event.get(&id) {
            assert_eq!(first, &body, "a retry of {id} sent another body");
        }
        by_event.insert(id, body);
    }
    let delivered: BTreeMap<String, String> = by_event
        .values()
        .map(|b| {
            (
                b["foreign_id"].as_str().expect("foreign_id").to_string(),
                b["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();
    let wanted: BTreeMap<String, String> = expected
        .iter()
        .map(|(f, s)| (f.clone(), s.to_string()))
        .collect();
    assert_eq!(by_event.len(), expected.len(), "one event per withdrawal");
    assert_eq!(
        delivered, wanted,
        "every withdrawal's final status was called back"
    );

    // One payout per paid withdrawal: the rail saw one idempotency key per confirmed
    // withdrawal and nothing else.
    let payouts: BTreeMap<String, i64> =
        sqlx::query("SELECT idempotency_key, submissions FROM sandbox_payouts")
            .fetch_all(db.reader())
            .await
            .expect("sandbox payouts")
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>("idempotency_key"),
                    r.get::<i64, _>("submissions"),
                )
            })
            .collect();
    let confirmed_keys: BTreeSet<String> = rows
        .values()
        .filter(|(_, s)| s == "confirmed")
        .map(|(id, _)| format!("cs-wd-{id}"))
        .collect();
    assert_eq!(
        payouts.keys().cloned().collect::<BTreeSet<_>>(),
        confirmed_keys,
        "one payout per confirmed withdrawal"
    );
    let resubmitted = payouts.values().filter(|n| **n > 1).count();

    // Balances equal the sum of their ledger entries, and the amounts add up.
    let bad = countersign::db::balances::reconcile(db, &inst.creds.project_id)
        .await
        .expect("reconcile");
    assert!(bad.is_empty(), "balances differ from the ledger: {bad:?}");
    let pending = expected.values().filter(|s| **s == "pending").count();
    let confirmed = expected.len() - pending;
    let (available, held): (String, String) = {
        let r = sqlx::query(
            "SELECT available, held FROM balances WHERE project_id = $1 AND currency = 'BTC'",
        )
        .bind(&inst.creds.project_id)
        .fetch_one(db.reader())
        .await
        .expect("BTC balance");
        (r.get("available"), r.get("held"))
    };
    let dec = |s: &str| s.parse::<rust_decimal::Decimal>().expect("decimal");
    let (small, large) = (dec(SMALL), dec(LARGE));
    let paid = small * rust_decimal::Decimal::from(confirmed);
    let on_hold = large * rust_decimal::Decimal::from(pending);
    assert_eq!(
        (dec(&available), dec(&held)),
        (dec("10") - paid - on_hold, on_hold)
    );

    // The owner was asked to approve every held withdrawal, by email.
    let mails = inst.sink.to(&inst.owner);
    for (foreign_id, (id, status)) in &rows {
        if status == "pending" {
            let subject = format!("Approval needed: withdrawal {id} of");
            assert!(
                mails.iter().any(|m| m.data.contains(&subject)),
                "no approval email for {foreign_id} (#{id})"
            );
        }
    }
    Figures {
        confirmed,
        pending,
        callback_requests: received.len(),
        callback_events: by_event.len(),
        payouts: payouts.len(),
        resubmitted,
        emails: mails.len(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Sends withdrawals `indices` with `concurrency` requests in flight, to `bases` in turn.
/// After `kill_at` answers, `on_kill` runs (once).
async fn fire(
    http: &reqwest::Client,
    bases: &[String],
    creds: &Creds,
    run: &str,
    indices: Vec<usize>,
    concurrency: usize,
    kill_at: Option<(usize, &(dyn Fn() + Sync))>,
) -> Load {
    let answers = AtomicUsize::new(0);
    let load = Mutex::new(Load::default());
    stream::iter(indices)
        .for_each_concurrent(concurrency, |i| {
            let (foreign_id, body) = withdrawal_body(run, i);
            let base = &bases[i % bases.len()];
            let (answers, load) = (&answers, &load);
            async move {
                let r = post_signed(http, base, creds, "/withdrawal/crypto", &body).await;
                let mut load = load.lock().expect("lock");
                match r {
                    Ok(answer) => {
                        load.answered.insert(foreign_id, answer);
                        let n = answers.fetch_add(1, Ordering::SeqCst) + 1;
                        if let Some((at, kill)) = kill_at {
                            if n == at {
                                kill();
                            }
                        }
                    }
                    Err(_) => load.unanswered.push(i),
                }
            }
        })
        .await;
    load.into_inner().expect("lock")
}

fn assert_accepted(load: &Load) {
    for (foreign_id, (code, v)) in &load.answered {
        assert_eq!(*code, 200, "{foreign_id}: {v}");
        let expected = if foreign_id.ends_with('9') {
            "pending"
        } else {
            "processing"
        };
        assert!(
            v["data"]["status"] == expected || v["data"]["status"] == "confirmed",
            "{foreign_id}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_and_pays_nothing_twice() {
    const N: usize = 1000;
    const KILL_AT: usize = 400;
    let started = Instant::now();
    let inst = Installation::prepare().await;
    let http = client();
    let first = inst.serve();
    first.ready(&http).await;
    let bases = vec![first.base.clone()];
    let run = format!("k9-{}", random_suffix());

    // 1,000 signed withdrawals, 16 at a time; SIGKILL after the 400th answer. Requests in
    // flight at that moment, and every later one, get no answer.
    let running = Mutex::new(Some(first));
    let kill = || {
        if let Some(s) = running.lock().expect("lock").take() {
            s.kill9();
        }
    };
    let phase1 = fire(
        &http,
        &bases,
        &inst.creds,
        &run,
        (0..N).collect(),
        16,
        Some((KILL_AT, &kill)),
    )
    .await;
    assert!(
        running.lock().expect("lock").is_none(),
        "the process was killed"
    );
    assert_accepted(&phase1);
    assert!(phase1.answered.len() >= KILL_AT && !phase1.unanswered.is_empty());

    // Restart; the client re-sends what got no answer (same foreign ids, same bodies).
    let second = inst.serve();
    second.ready(&http).await;
    let bases = vec![second.base.clone()];
    let phase2 = fire(
        &http,
        &bases,
        &inst.creds,
        &run,
        phase1.unanswered.clone(),
        16,
        None,
    )
    .await;
    assert!(
        phase2.unanswered.is_empty(),
        "the restarted process answers"
    );
    assert_accepted(&phase2);

    let db = inst.db().await;
    // Requests answered before the kill keep their answer: the same withdrawal id.
    for (foreign_id, (_, v)) in &phase1.answered {
        let (_, again) = post_signed(
            &http,
            &second.base,
            &inst.creds,
            "/withdrawal/status",
            &json!({"foreign_id": foreign_id}).to_string(),
        )
        .await
        .expect("status");
        assert_eq!(again["data"]["id"], v["data"]["id"], "{foreign_id}");
    }
    let figures = settle_and_check(&inst, &db, N, &run).await;
    assert_eq!((figures.confirmed, figures.pending), (900, 100));
    assert_eq!(figures.payouts, 900);
    assert!(figures.emails >= 100);
    eprintln!(
        "kill -9: {} answered before the kill, {} re-sent after restart; {figures:?}; {:.1} s",
        phase1.answered.len(),
        phase1.unanswered.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_postgresql_do_every_job_once() {
    if std::env::var("CS_TEST_POSTGRES_URL").map_or(true, |u| u.is_empty()) {
        eprintln!(
            "skipped: three instances need a shared PostgreSQL (set CS_TEST_POSTGRES_URL); \
             SQLite is one process's file"
        );
        return;
    }
    const N: usize = 300;
    let started = Instant::now();
    let inst = Installation::prepare().await;
    let http = client();
    let servers: Vec<Serve> = (0..3).map(|_| inst.serve()).collect();
    for s in &servers {
        s.ready(&http).await;
    }
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let run = format!("x3-{}", random_suffix());
    let load = fire(&http, &bases, &inst.creds, &run, (0..N).collect(), 16, None).await;
    assert!(load.unanswered.is_empty());
    assert_accepted(&load);
    let db = inst.db().await;
    let figures = settle_and_check(&inst, &db, N, &run).await;
    assert_eq!((figures.confirmed, figures.pending), (270, 30));
    assert_eq!((figures.payouts, figures.emails), (270, 30));

    // Once each: no callback event arrived twice, no job was run twice, one attempt per
    // delivery, one submission per payout.
    assert_eq!(
        figures.callback_requests, figures.callback_events,
        "a callback was delivered twice"
    );
    assert_eq!(figures.resubmitted, 0, "a payout was submitted twice");
    let rerun: Vec<(i64, String, i64)> =
        sqlx::query("SELECT id, kind, attempts FROM jobs WHERE attempts <> 1 ORDER BY id")
            .fetch_all(db.reader())
            .await
            .expect("jobs")
            .iter()
            .map(|r| (r.get("id"), r.get("kind"), r.get("attempts")))
            .collect();
    assert!(rerun.is_empty(), "jobs run more than once: {rerun:?}");
    let attempts: Vec<(i64, i64)> = sqlx::query(
        "SELECT j.id AS id, COUNT(a.id) AS n FROM jobs j LEFT JOIN delivery_attempts a ON a.job_id = j.id
         WHERE j.kind = 'callback' GROUP BY j.id HAVING COUNT(a.id) <> 1",
    )
    .fetch_all(db.reader())
    .await
    .expect("attempts")
    .iter()
    .map(|r| (r.get("id"), r.get("n")))
    .collect();
    assert!(
        attempts.is_empty(),
        "callbacks without exactly one attempt: {attempts:?}"
    );
    eprintln!(
        "three instances: {figures:?}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
