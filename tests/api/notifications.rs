//! Notification settings: each person's email alerts, the project's choice of Slack events,
//! and the settings page's delivery status.

use crate::helpers::{
    BTC_ADDR, Receiver, SmtpSink, TestApp, eventually, spawn_app, spawn_app_with,
};
use crate::team::{fresh_code, text_of};
use countersign::db::audit::{Actor, Origin};
use sqlx::Row;

async fn mails_to(app: &TestApp, to: &str, subject_like: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM dev_mailbox WHERE to_addr = $1 AND subject LIKE $2")
        .bind(to)
        .bind(subject_like)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
        .get("n")
}

async fn connect_slack(app: &TestApp, url: &str) {
    countersign::service::slack::connect(
        &app.state,
        app.project_id(),
        &countersign::notify::slack::SlackWebhookUrl::parse(url).unwrap(),
        &Actor::Cli,
        &Origin::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn each_person_turns_their_email_alerts_off_and_on() {
    let app = spawn_app().await;
    app.credit("BTC", "10").await;
    let quiet = app.create_user("owner", true).await;
    let loud = app.create_user("owner", true).await;
    let b = app.signed_in(&quiet).await;
    let (status, page) = b.get("/account/notifications").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("name=\"email_alerts\" value=\"on\" checked"),
        "on by default"
    );
    // Both boxes unticked: neither field is sent.
    let (status, _, location) = b.post_form("/account/notifications", &[]).await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/account/notifications?done=1"))
    );
    let (_, page) = b.get("/account/notifications").await;
    assert!(!page.contains("checked"), "{page}");

    let (_, v) = app.withdraw("n1", "BTC", "0.5", BTC_ADDR).await;
    assert_eq!(v["data"]["status"], "pending");
    eventually("the other owner's approval email", || async {
        (mails_to(&app, &loud.email, "Approval needed%").await == 1).then_some(())
    })
    .await;
    assert_eq!(mails_to(&app, &quiet.email, "Approval needed%").await, 0);

    // Back on: the next one reaches them.
    b.get("/account/notifications").await;
    b.post_form("/account/notifications", &[("email_alerts", "on")])
        .await;
    app.withdraw("n2", "BTC", "0.5", BTC_ADDR).await;
    eventually("the approval email after opting in", || async {
        (mails_to(&app, &quiet.email, "Approval needed%").await == 1).then_some(())
    })
    .await;
    let audited: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'user.notifications_changed'",
    )
    .fetch_one(app.state.db.reader())
    .await
    .unwrap()
    .get("n");
    assert_eq!(audited, 2);
}

#[tokio::test]
async fn the_project_chooses_which_events_go_to_slack() {
    let slack = Receiver::start().await;
    let app = spawn_app().await;
    connect_slack(&app, &slack.url).await;
    app.credit("BTC", "10").await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    let (_, page) = b.get("/settings").await;
    assert!(
        page.contains("value=\"pending\" checked"),
        "all on by default"
    );
    // Outcomes and lockouts only.
    let code = fresh_code(&app, &owner);
    let (status, _, _) = b
        .post_form(
            "/settings/slack/events",
            &[
                ("event", "outcomes"),
                ("event", "lockouts"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (status, page, _) = b
        .post_form(
            "/settings/slack/events",
            &[("event", "everything"), ("code", "1")],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("unknown event"), "{page}");

    let (_, v) = app.withdraw("e1", "BTC", "0.5", BTC_ADDR).await;
    assert_eq!(v["data"]["status"], "pending");
    let (code, _) = app
        .post_json(
            "/withdrawal/cancel",
            &serde_json::json!({"foreign_id": "e1"}),
        )
        .await;
    assert_eq!(code, 200);
    let outcome = eventually("the outcome on Slack", || async {
        slack.all().into_iter().next().map(|r| r.json())
    })
    .await;
    assert!(
        outcome.to_string().contains("Cancelled by the merchant"),
        "{outcome}"
    );
    // A lockout goes too.
    let anon = app.browser();
    anon.get("/login").await;
    for _ in 0..10 {
        anon.post_form(
            "/login",
            &[("email", &owner.email), ("password", "wrong wrong wrong")],
        )
        .await;
    }
    let texts = eventually("the lockout on Slack", || async {
        let all: Vec<String> = slack.all().iter().map(|r| r.json().to_string()).collect();
        (all.len() >= 2).then_some(all)
    })
    .await;
    assert!(texts[1].contains("was locked out"), "{texts:?}");
    assert!(
        !texts.iter().any(|t| t.contains("Awaiting approval")),
        "pending alerts are off: {texts:?}"
    );
}

#[tokio::test]
async fn the_settings_page_shows_the_last_email_delivery_and_failure() {
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(|s| sink.configure(s)).await;
    app.credit("BTC", "10").await;
    let owner = app.create_user("owner", true).await;
    let other = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    let (_, page) = b.get("/settings").await;
    assert_eq!(text_of(&page, "email-last-ok").as_deref(), Some(""));
    assert!(page.contains("nothing delivered yet"));

    sink.refuse(true);
    app.withdraw("m1", "BTC", "0.5", BTC_ADDR).await;
    let failure = eventually("a failure shown", || async {
        let (_, page) = b.get("/settings").await;
        let f = text_of(&page, "email-last-error")?;
        (!f.is_empty()).then_some(f)
    })
    .await;
    assert!(failure.contains("SMTP"), "{failure}");
    sink.refuse(false);
    app.clock.advance_secs(30 * 60);
    eventually("delivered after the outage", || async {
        (!sink.to(&other.email).is_empty()).then_some(())
    })
    .await;
    let (_, page) = b.get("/settings").await;
    assert!(
        text_of(&page, "email-last-ok").unwrap().ends_with('Z'),
        "{page}"
    );
}
