//! Email over a real SMTP conversation with a server on loopback; the dev mailbox otherwise.

use crate::helpers::{SmtpSink, TestApp, eventually, spawn_app, spawn_app_with};
use sqlx::Row;

/// (status, attempts, last_error) of every email job, oldest first.
async fn email_jobs(app: &TestApp) -> Vec<(String, i64, Option<String>)> {
    sqlx::query("SELECT status, attempts, last_error FROM jobs WHERE kind = 'email' ORDER BY id")
        .fetch_all(app.state.db.reader())
        .await
        .expect("jobs")
        .iter()
        .map(|r| (r.get("status"), r.get("attempts"), r.get("last_error")))
        .collect()
}

async fn lock_out(app: &TestApp, email: &str) {
    let b = app.browser();
    b.get("/login").await;
    for _ in 0..10 {
        b.post_form(
            "/login",
            &[("email", email), ("password", "definitely not it")],
        )
        .await;
    }
}

#[tokio::test]
async fn mail_goes_over_smtp_as_text_and_html_and_survives_an_outage() {
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(|s| sink.configure(s)).await;
    let alice = app.create_user("owner", true).await;
    sink.refuse(true);
    lock_out(&app, &alice.email).await;
    // The server refuses the attempt: the message waits in the outbox with the refusal
    // recorded, nothing is lost.
    let jobs = eventually("a refused attempt", || async {
        let jobs = email_jobs(&app).await;
        jobs.iter().any(|(_, _, e)| e.is_some()).then_some(jobs)
    })
    .await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let (status, attempts, error) = &jobs[0];
    assert_eq!((status.as_str(), *attempts), ("queued", 1), "{jobs:?}");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("try again later")),
        "{jobs:?}"
    );
    assert!(sink.to(&alice.email).is_empty());
    sink.refuse(false);
    app.clock.advance_secs(10 * 60);
    let got = eventually("lockout email over SMTP", || async {
        sink.to(&alice.email).pop()
    })
    .await;
    // Delivered once: the job is done and nothing else arrives.
    eventually("the email job done", || async {
        (email_jobs(&app).await[0].0 == "done").then_some(())
    })
    .await;
    assert_eq!(sink.to(&alice.email).len(), 1);
    assert_eq!(sink.messages.lock().unwrap().len(), 1);
    assert!(got.from.contains("countersign@acme.test"));
    assert!(
        got.data
            .contains("Subject: Your Countersign account was locked"),
        "{}",
        got.data
    );
    assert!(got.data.contains("multipart/alternative"));
    assert!(got.data.contains("text/plain") && got.data.contains("text/html"));
    // With SMTP configured there is no dev mailbox.
    assert_eq!(app.browser().get("/dev/mailbox").await.0, 404);
    assert_eq!(app.count("dev_mailbox").await, 0);
}

#[tokio::test]
async fn without_smtp_mail_is_kept_in_the_dev_mailbox_with_clickable_links() {
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    lock_out(&app, &alice.email).await;
    let b = app.browser();
    let page = eventually("mail in the dev mailbox", || async {
        let (_, page) = b.get("/dev/mailbox").await;
        page.contains("Your Countersign account was locked")
            .then_some(page)
    })
    .await;
    assert!(page.contains("For development only"));
    let id_at = page.find("/dev/mailbox/").unwrap() + "/dev/mailbox/".len();
    let id: String = page[id_at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let (status, message) = b.get(&format!("/dev/mailbox/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        message.contains(&format!(
            "<a href=\"{}&#x2F;login\">",
            app.base.replace('/', "&#x2F;")
        )),
        "{message}"
    );
}

#[tokio::test]
async fn a_public_installation_without_smtp_does_not_publish_its_mail() {
    let app = spawn_app_with(|s| s.base_url = "https://payouts.acme.example".into()).await;
    // Browser forms must come from base_url, which this test cannot be: queue a message the
    // way the service does.
    let mut ctx = tera::Context::new();
    ctx.insert("email", "alice@acme.test");
    ctx.insert("what", "password");
    ctx.insert("minutes", &15);
    ctx.insert("ip", "203.0.113.9");
    ctx.insert("base_url", "https://payouts.acme.example");
    let mail =
        countersign::notify::email::render("lockout", "alice@acme.test", "Locked", &ctx).unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    countersign::notify::email::queue(
        &mut tx,
        app.project_id(),
        &mail,
        "t:1".into(),
        countersign::clock::Clock::now_ms(&app.clock),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    app.state.wake.notify_one();
    eventually("mail kept", || async {
        (app.count("dev_mailbox").await > 0).then_some(())
    })
    .await;
    let id: i64 = sqlx::query("SELECT id FROM dev_mailbox")
        .fetch_one(app.state.db.reader())
        .await
        .expect("kept mail")
        .get("id");
    assert_eq!(app.browser().get("/dev/mailbox").await.0, 404);
    assert_eq!(
        app.browser().get(&format!("/dev/mailbox/{id}")).await.0,
        404
    );
}

/// "Last delivered" on the settings page is written at most every `OK_EVERY_MS` while email
/// keeps going out, but a failure is written at once and never hides a later delivery.
#[tokio::test]
async fn last_delivered_is_kept_to_within_seconds_and_a_failure_never_hides_a_delivery() {
    use countersign::db::email_status::{self, OK_EVERY_MS};
    let app = spawn_app().await;
    let (db, p) = (&app.state.db, app.project_id());
    let shown = || async { email_status::get(db, p).await.unwrap() };
    let t = 1_800_000_000_000_i64;
    email_status::record(db, p, None, t).await.unwrap();
    assert_eq!(shown().await.last_ok_at, Some(t));
    // Another delivery a second later is not written again...
    email_status::record(db, p, None, t + 1_000).await.unwrap();
    assert_eq!(shown().await.last_ok_at, Some(t));
    // ...one OK_EVERY_MS after the recorded one is.
    email_status::record(db, p, None, t + OK_EVERY_MS)
        .await
        .unwrap();
    assert_eq!(shown().await.last_ok_at, Some(t + OK_EVERY_MS));
    // A failure is written at once, and so is the delivery right after it.
    let failed_at = t + OK_EVERY_MS + 100;
    email_status::record(db, p, Some("550 mailbox unavailable"), failed_at)
        .await
        .unwrap();
    let s = shown().await;
    assert_eq!(
        (s.last_ok_at, s.last_error_at, s.last_error.as_deref()),
        (
            Some(t + OK_EVERY_MS),
            Some(failed_at),
            Some("550 mailbox unavailable")
        )
    );
    email_status::record(db, p, None, failed_at + 100)
        .await
        .unwrap();
    assert_eq!(shown().await.last_ok_at, Some(failed_at + 100));
    assert_eq!(app.count("email_status").await, 1);
}
