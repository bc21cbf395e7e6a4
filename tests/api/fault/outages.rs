//! Outages of what Countersign talks to, on the test clock: a merchant's callback receiver
//! down for ten hours (refusing connections, then answering 500), and the mail server and
//! Slack failing together. Nothing is lost, and retries keep the documented schedule.

use super::{free_port, until};
use crate::helpers::{
    BTC_ADDR, Receiver, SmtpSink, TestApp, eventually, spawn_app, spawn_app_with,
};
use countersign::clock::{Clock, HOUR_MS, MINUTE_MS};
use countersign::db::audit::{Actor, Origin};
use countersign::notify::slack::SlackWebhookUrl;
use countersign::worker::Worker;
use sqlx::Row;
use std::collections::BTreeSet;
use std::time::Duration;

/// One outbox job and the attempts recorded for it.
#[derive(Debug, Clone)]
struct JobState {
    id: i64,
    withdrawal_id: Option<i64>,
    status: String,
    attempts: i64,
    run_at: i64,
    leased: bool,
    tries: Vec<Try>,
}

#[derive(Debug, Clone)]
struct Try {
    at: i64,
    code: Option<i64>,
    error: Option<String>,
}

async fn jobs_of(app: &TestApp, kind: &str) -> Vec<JobState> {
    let db = &app.state.db;
    let rows = sqlx::query(
        "SELECT id, withdrawal_id, status, attempts, run_at, lease_owner FROM jobs WHERE kind = $1 ORDER BY id",
    )
    .bind(kind)
    .fetch_all(db.reader())
    .await
    .expect("jobs");
    let mut out = Vec::new();
    for r in rows {
        let id: i64 = r.get("id");
        let tries = sqlx::query(
            "SELECT attempted_at, status_code, error FROM delivery_attempts WHERE job_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(db.reader())
        .await
        .expect("attempts")
        .iter()
        .map(|a| Try {
            at: a.get("attempted_at"),
            code: a.get("status_code"),
            error: a.get("error"),
        })
        .collect();
        out.push(JobState {
            id,
            withdrawal_id: r.get("withdrawal_id"),
            status: r.get("status"),
            attempts: r.get("attempts"),
            run_at: r.get("run_at"),
            leased: r.get::<Option<String>, _>("lease_owner").is_some(),
            tries,
        });
    }
    out
}

/// Nobody holds the job and nothing is due: the worker has done all it will do at this
/// instant (so moving the clock cannot race it).
fn at_rest(j: &JobState, now: i64, records_tries: bool) -> bool {
    !j.leased
        && (j.status != "queued" || j.run_at > now)
        && (!records_tries || j.attempts == j.tries.len() as i64)
}

async fn settled(app: &TestApp, kind: &str, records_tries: bool) -> Vec<JobState> {
    let now = app.clock.now_ms();
    until(
        &format!("{kind} jobs at rest"),
        Duration::from_secs(15),
        || async {
            let jobs = jobs_of(app, kind).await;
            jobs.iter()
                .all(|j| at_rest(j, now, records_tries))
                .then_some(jobs)
        },
    )
    .await
}

/// Moves the clock to `at` after proving that one second earlier a worker round finds
/// nothing due (no retry comes early), then lets the worker run.
async fn step_to(app: &TestApp, at: i64) {
    app.clock.set_ms(at - 1000);
    let (_keep, running) = tokio::sync::watch::channel(false);
    let handled = Worker::new(app.state.clone())
        .round(&running)
        .await
        .expect("worker round");
    assert_eq!(handled, 0, "something ran before it was due");
    app.clock.set_ms(at);
    app.state.wake.notify_one();
}

/// The documented wait after the n-th failure (1-based), in minutes: 1, 5, 10, 30, 60, 120,
/// 240, then every 4 hours.
fn documented_delay_ms(failures: usize) -> i64 {
    const STEPS: [i64; 7] = [1, 5, 10, 30, 60, 120, 240];
    STEPS.get(failures - 1).copied().unwrap_or(240) * MINUTE_MS
}

#[tokio::test]
async fn callbacks_wait_out_a_ten_hour_receiver_outage_on_the_documented_schedule() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.answer_with(500);
    // First nobody listens at the merchant's address (connections refused) ...
    app.set_callback(&format!("http://127.0.0.1:{}/callbacks", free_port()))
        .await;
    app.credit("BTC", "1").await;
    let (code, v) = app.withdraw("down-paid", "BTC", "0.01", BTC_ADDR).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = app.withdraw("down-held", "BTC", "0.5", BTC_ADDR).await;
    assert_eq!(
        (code, &v["data"]["status"]),
        (200, &"pending".into()),
        "{v}"
    );
    app.wait_for_status("down-paid", "confirmed").await;
    let start = app.clock.now_ms();
    let first = eventually("both first attempts", || async {
        let jobs = jobs_of(&app, "callback").await;
        (jobs.len() == 2
            && jobs
                .iter()
                .all(|j| at_rest(j, start, true) && j.tries.len() == 1))
        .then_some(jobs)
    })
    .await;
    assert!(first.iter().all(|j| j.tries[0].at == start));

    // Walk the clock from one due retry to the next through ten hours.
    let (mut switched, mut recovered) = (false, false);
    for step in 0.. {
        assert!(step < 40, "the walk does not end");
        let jobs = settled(&app, "callback", true).await;
        if jobs.iter().all(|j| j.status == "done") {
            break;
        }
        assert!(jobs.iter().all(|j| j.status != "dead"), "{jobs:?}");
        if !switched && jobs.iter().all(|j| j.tries.len() == 3) {
            // ... then it listens but fails with 500.
            app.set_callback(&rx.url).await;
            switched = true;
        }
        let next = jobs
            .iter()
            .filter(|j| j.status == "queued")
            .map(|j| j.run_at)
            .min()
            .expect("a queued callback");
        if !recovered && next - start >= 10 * HOUR_MS {
            rx.answer_with(200);
            recovered = true;
        }
        step_to(&app, next).await;
    }
    assert!(switched && recovered);

    let jobs = jobs_of(&app, "callback").await;
    for j in &jobs {
        let tries = &j.tries;
        // 8 failures within the 10 hours (the 8th about 7 h 46 min in), delivered at the
        // 9th, about 11 h 46 min in.
        assert_eq!(tries.len(), 9, "job {}: {tries:?}", j.id);
        assert!(tries[7].at - start < 10 * HOUR_MS && tries[8].at - start >= 10 * HOUR_MS);
        for t in &tries[..3] {
            assert_eq!(
                (t.code, t.error.as_deref()),
                (None, Some("connection failed"))
            );
        }
        for t in &tries[3..8] {
            assert_eq!(
                (t.code, t.error.as_deref()),
                (Some(500), Some("receiver answered HTTP 500"))
            );
        }
        assert_eq!(
            (tries[8].code, tries[8].error.as_deref()),
            (Some(200), None)
        );
        for (n, pair) in tries.windows(2).enumerate() {
            let (waited, base) = (pair[1].at - pair[0].at, documented_delay_ms(n + 1));
            assert!(
                waited * 10 >= base * 9 && waited * 10 <= base * 11,
                "job {}: retry {} came {waited} ms after the failure, documented {base} ms ±10%",
                j.id,
                n + 1
            );
        }
    }
    // The merchant's receiver saw the same event (same id, same bytes) six times: five 500s
    // and the delivery, signed with the attempt's own timestamp.
    for (foreign_id, status) in [("down-paid", "confirmed"), ("down-held", "pending")] {
        let got = rx.for_foreign_id(foreign_id);
        assert_eq!(got.len(), 6, "{foreign_id}");
        let ids: BTreeSet<_> = got.iter().map(|r| r.header("webhook-id")).collect();
        let bodies: BTreeSet<_> = got.iter().map(|r| r.body.clone()).collect();
        assert_eq!((ids.len(), bodies.len()), (1, 1), "{foreign_id}");
        let last = got.last().expect("delivery");
        crate::callbacks::assert_signed(&app, last);
        assert_eq!(last.json()["status"], status);
        let w = countersign::db::withdrawals::by_foreign_id(
            &app.state.db,
            app.project_id(),
            foreign_id,
        )
        .await
        .expect("withdrawal")
        .expect("exists");
        let job = jobs
            .iter()
            .find(|j| j.withdrawal_id == Some(w.id))
            .expect("its job");
        assert_eq!(
            last.header("webhook-timestamp"),
            Some((job.tries[8].at / 1000).to_string().as_str())
        );
    }
}

#[tokio::test]
async fn approval_mail_and_slack_alerts_survive_smtp_down_and_slack_429_then_500() {
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(|s| sink.configure(s)).await;
    let owner = app.create_user("owner", true).await;
    let slack = Receiver::start().await;
    slack.answer_with_body(429, &[("Retry-After", "120")], "rate_limited");
    countersign::service::slack::connect(
        &app.state,
        app.project_id(),
        &SlackWebhookUrl::parse(&slack.url).expect("loopback webhook URL"),
        &Actor::Cli,
        &Origin::default(),
    )
    .await
    .expect("connect Slack");
    sink.refuse(true);
    app.credit("BTC", "5").await;
    let mut held = Vec::new();
    for i in 0..5 {
        let (code, v) = app
            .withdraw(&format!("held-{i}"), "BTC", "0.5", BTC_ADDR)
            .await;
        assert_eq!(
            (code, &v["data"]["status"]),
            (200, &"pending".into()),
            "{v}"
        );
        held.push(v["data"]["id"].as_i64().expect("id"));
    }

    // First attempts: the mail server answers 451, Slack 429 with Retry-After: 120.
    let t0 = app.clock.now_ms();
    let mails = until("first mail attempts", Duration::from_secs(15), || async {
        let j = jobs_of(&app, "approval_email").await;
        (j.len() == 5 && j.iter().all(|j| at_rest(j, t0, false) && j.attempts == 1)).then_some(j)
    })
    .await;
    assert!(mails.iter().all(|j| j.status == "queued"));
    let posts = until("first Slack attempts", Duration::from_secs(15), || async {
        let j = jobs_of(&app, "slack").await;
        (j.len() == 5 && j.iter().all(|j| at_rest(j, t0, true) && j.tries.len() == 1)).then_some(j)
    })
    .await;
    for j in &posts {
        assert_eq!(j.tries[0].code, Some(429));
        assert!(
            j.run_at >= j.tries[0].at + 120_000,
            "Slack retried before its Retry-After: {j:?}"
        );
    }
    // 50 s on, before any retry is due (mail's first retry is 54 to 66 s out), a worker round
    // has nothing to do.
    app.clock.advance_secs(50);
    let (_keep, running) = tokio::sync::watch::channel(false);
    assert_eq!(
        Worker::new(app.state.clone())
            .round(&running)
            .await
            .expect("round"),
        0
    );

    // An hour later Slack answers 500 and mail is still refused.
    slack.answer_with_body(500, &[], "internal_error");
    app.clock.advance_secs(3600);
    app.state.wake.notify_one();
    let t1 = app.clock.now_ms();
    until("second attempts", Duration::from_secs(15), || async {
        let m = jobs_of(&app, "approval_email").await;
        let s = jobs_of(&app, "slack").await;
        (m.iter().all(|j| at_rest(j, t1, false) && j.attempts == 2)
            && s.iter().all(|j| at_rest(j, t1, true) && j.tries.len() == 2))
        .then_some(())
    })
    .await;
    let posts = jobs_of(&app, "slack").await;
    assert!(posts.iter().all(|j| j.tries[1].code == Some(500)));
    assert!(sink.to(&owner.email).is_empty(), "mail got through a 451");
    assert_eq!(slack.all().len(), 10);

    // Both recover; an hour later everything has gone out, once per message.
    sink.refuse(false);
    slack.answer_with_body(200, &[], "ok");
    app.clock.advance_secs(3600);
    app.state.wake.notify_one();
    until(
        "mail and Slack delivered",
        Duration::from_secs(15),
        || async {
            let m = jobs_of(&app, "approval_email").await;
            let s = jobs_of(&app, "slack").await;
            m.iter()
                .chain(s.iter())
                .all(|j| j.status == "done")
                .then_some(())
        },
    )
    .await;
    let mail = sink.to(&owner.email);
    assert_eq!(mail.len(), 5);
    let delivered: Vec<String> = slack.all()[10..].iter().map(|r| r.body.clone()).collect();
    assert_eq!(delivered.len(), 5);
    for id in held {
        let subject = format!("Approval needed: withdrawal {id} of");
        assert!(
            mail.iter().any(|m| m.data.contains(&subject)),
            "no approval email for #{id}"
        );
        let alerts = delivered.iter().filter(|b| {
            let text = serde_json::from_str::<serde_json::Value>(b).expect("JSON")["text"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            text.starts_with(&format!("Withdrawal #{id} of 0.5"))
                && text.ends_with("BTC awaiting approval")
        });
        assert_eq!(alerts.count(), 1, "Slack alert for #{id}: {delivered:?}");
    }
    assert_eq!(app.count("jobs WHERE status = 'dead'").await, 0);
}
