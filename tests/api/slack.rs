//! Slack: the Block Kit messages as a local stand-in for Slack receives them, delivery from
//! the outbox (429 with Retry-After, 5xx, a final 4xx, a channel disconnected meanwhile), and
//! the settings section (connect, replace, disconnect, test message).

use crate::helpers::{BTC_ADDR, Receiver, TestApp, eventually, spawn_app};
use crate::team::{fresh_code, text_of};
use countersign::clock::Clock;
use countersign::db::audit::{Actor, Origin};
use countersign::db::jobs::{self, Delivery, JobKind};
use countersign::db::withdrawals as wdb;
use countersign::notify::slack::{self, OutcomeAlert, PendingAlert, SlackWebhookUrl};
use serde_json::{Value, json};
use sqlx::Row;
use std::time::Duration;

async fn connect(app: &TestApp, url: &str) {
    countersign::service::slack::connect(
        &app.state,
        app.project_id(),
        &SlackWebhookUrl::parse(url).unwrap(),
        &Actor::Cli,
        &Origin::default(),
    )
    .await
    .unwrap();
}

/// A withdrawal held over the default limit (0.5 BTC = 30,000 EUR): its id. Tests create it
/// before connecting the channel, so that the alert it would queue itself does not take the
/// place (dedupe key) of the one the test queues by hand.
async fn pending_withdrawal(app: &TestApp, foreign_id: &str) -> wdb::Withdrawal {
    app.credit("BTC", "1").await;
    let (status, v) = app.withdraw(foreign_id, "BTC", "0.5", BTC_ADDR).await;
    assert_eq!(status, 200, "{v}");
    wdb::by_foreign_id(&app.state.db, app.project_id(), foreign_id)
        .await
        .unwrap()
        .unwrap()
}

fn detail_url(app: &TestApp, id: i64) -> String {
    app.url(&format!("/withdrawals/{id}"))
}

async fn queue_pending_at(app: &TestApp, w: &wdb::Withdrawal, now: i64) {
    let reasons = vec![
        "over the per-operation limit (30000 EUR > 1000 EUR)".to_string(),
        "Withdrawal Confirmation is on".to_string(),
    ];
    let url = detail_url(app, w.id);
    let mut tx = app.state.db.begin().await.unwrap();
    slack::queue_pending(
        &mut tx,
        app.project_id(),
        &PendingAlert {
            withdrawal_id: w.id,
            amount: "0.5 BTC",
            network: &w.network,
            address: &w.address,
            reasons: &reasons,
            initiator: "API key ck_test <x>",
            approvals_needed: 1,
            owner_required: true,
            detail_url: &url,
        },
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    app.state.wake.notify_one();
}

async fn queue_pending(app: &TestApp, w: &wdb::Withdrawal) {
    queue_pending_at(app, w, app.clock.now_ms()).await;
}

async fn slack_deliveries(app: &TestApp, withdrawal_id: i64) -> Vec<Delivery> {
    jobs::deliveries_for_withdrawal(&app.state.db, withdrawal_id, JobKind::Slack)
        .await
        .unwrap()
}

/// Waits until the Slack job of this withdrawal has `n` attempts and nobody holds it (so a
/// clock change after this cannot race the worker's rescheduling).
async fn settled_after(app: &TestApp, withdrawal_id: i64, n: usize) -> Delivery {
    eventually(&format!("Slack attempt {n} recorded"), || async {
        let d = slack_deliveries(app, withdrawal_id).await;
        d.first()
            .filter(|d| d.attempts.len() == n && !d.leased)
            .cloned()
    })
    .await
}

/// The messages received, once there are at least `n`.
async fn received(rx: &Receiver, n: usize) -> Vec<Value> {
    eventually(&format!("{n} Slack messages"), || async {
        let all = rx.all();
        (all.len() >= n).then(|| all.iter().map(|r| r.json()).collect())
    })
    .await
}

/// Gives a (wrongly) early retry the chance to happen.
async fn quiet_moment() {
    tokio::time::sleep(Duration::from_millis(250)).await;
}

#[tokio::test]
async fn a_pending_alert_and_its_outcome_arrive_as_block_kit_messages() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let w = pending_withdrawal(&app, "s1").await;
    connect(&app, &rx.url).await;
    queue_pending(&app, &w).await;
    let got = received(&rx, 1).await;
    let id = w.id;
    let url = detail_url(&app, id);
    assert_eq!(
        got[0],
        json!({
            "text": format!("Withdrawal #{id} of 0.5 BTC awaiting approval"),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Awaiting approval: 0.5 BTC"}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": format!("*Withdrawal*\n#{id}")},
                    {"type": "mrkdwn", "text": format!("*Network*\n{}", w.network)},
                    {"type": "mrkdwn", "text": "*Address*\n`tb1qur…rxswgm`"},
                    {"type": "mrkdwn", "text": "*Reasons*\nover the per-operation limit (30000 EUR &gt; 1000 EUR)\nWithdrawal Confirmation is on"},
                    {"type": "mrkdwn", "text": "*Initiated by*\nAPI key ck_test &lt;x&gt;"},
                    {"type": "mrkdwn", "text": "*Approvals needed*\n1 (owner required)"},
                ]},
                {"type": "actions", "elements": [{
                    "type": "button", "style": "primary", "url": url,
                    "text": {"type": "plain_text", "text": format!("Review withdrawal #{id}")},
                    "action_id": format!("open_withdrawal_{id}"),
                }]},
            ],
        })
    );
    let r = &rx.all()[0];
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );

    let mut tx = app.state.db.begin().await.unwrap();
    let alert = OutcomeAlert {
        withdrawal_id: id,
        amount: "0.5 BTC",
        outcome: "Declined by bob@acme.test: <!channel> wrong address & no ticket",
        detail_url: &url,
    };
    slack::queue_outcome(&mut tx, app.project_id(), &alert, app.clock.now_ms())
        .await
        .unwrap();
    // Queued twice (a retried transaction): one message.
    slack::queue_outcome(&mut tx, app.project_id(), &alert, app.clock.now_ms())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let got = received(&rx, 2).await;
    assert_eq!(
        got[1],
        json!({
            "text": format!("Withdrawal #{id} of 0.5 BTC: Declined by bob@acme.test: &lt;!channel&gt; wrong address &amp; no ticket"),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                    "*Withdrawal #{id} of 0.5 BTC*\nDeclined by bob@acme.test: &lt;!channel&gt; wrong address &amp; no ticket")}},
                {"type": "actions", "elements": [{
                    "type": "button", "url": url,
                    "text": {"type": "plain_text", "text": format!("View withdrawal #{id}")},
                    "action_id": format!("open_withdrawal_{id}"),
                }]},
            ],
        })
    );
    let d = eventually("both done", || async {
        let d = slack_deliveries(&app, id).await;
        d.iter().all(|d| d.status == "done").then_some(d)
    })
    .await;
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d.attempts.len() == 1));
    assert_eq!(d[0].attempts[0].status_code, Some(200));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.all().len(), 2, "the duplicate outcome was not sent");
    let hook = countersign::db::slack::get(&app.state.db, app.project_id())
        .await
        .unwrap()
        .unwrap();
    assert!(hook.last_ok_at.is_some() && hook.last_error.is_none());
}

#[tokio::test]
async fn nothing_is_queued_without_a_channel_and_text_notices_are_escaped() {
    let app = spawn_app().await;
    let w = pending_withdrawal(&app, "s2").await;
    queue_pending(&app, &w).await;
    assert!(slack_deliveries(&app, w.id).await.is_empty());

    let rx = Receiver::start().await;
    connect(&app, &rx.url).await;
    let mut tx = app.state.db.begin().await.unwrap();
    slack::queue_text(
        &mut tx,
        slack::SlackEvent::Feature,
        app.project_id(),
        "slack:notice:test-1".into(),
        "Withdrawal Confirmation was turned off by <alice>",
        app.clock.now_ms(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let got = received(&rx, 1).await;
    assert_eq!(
        got[0]["blocks"][0]["text"]["text"],
        "Withdrawal Confirmation was turned off by &lt;alice&gt;"
    );
}

#[tokio::test]
async fn a_429_is_retried_only_after_retry_after() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.answer_with_body(429, &[("Retry-After", "120")], "rate_limited");
    let w = pending_withdrawal(&app, "s3").await;
    connect(&app, &rx.url).await;
    queue_pending(&app, &w).await;
    let d = settled_after(&app, w.id, 1).await;
    assert_eq!(d.status, "queued");
    assert_eq!(d.attempts[0].status_code, Some(429));
    assert_eq!(
        d.attempts[0].error.as_deref(),
        Some("Slack answered HTTP 429: rate_limited")
    );
    // The outcome, decided meanwhile, waits for the alert it follows up.
    let url = detail_url(&app, w.id);
    let mut tx = app.state.db.begin().await.unwrap();
    let alert = OutcomeAlert {
        withdrawal_id: w.id,
        amount: "0.5 BTC",
        outcome: "Expired",
        detail_url: &url,
    };
    slack::queue_outcome(&mut tx, app.project_id(), &alert, app.clock.now_ms())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Past the usual first backoff step (1 minute ±10%), still inside Retry-After.
    rx.answer_with_body(200, &[], "ok");
    app.clock.advance_secs(110);
    quiet_moment().await;
    assert_eq!(rx.all().len(), 1, "sent before Retry-After elapsed");
    app.clock.advance_secs(11);
    received(&rx, 2).await;
    app.clock.advance_secs(2);
    let got = received(&rx, 3).await;
    assert_eq!(got[0], got[1], "the same alert, retried");
    assert_eq!(
        got[2]["text"],
        format!("Withdrawal #{} of 0.5 BTC: Expired", w.id)
    );
    let d = eventually("delivered", || async {
        let d = slack_deliveries(&app, w.id).await;
        d.iter().all(|d| d.status == "done").then_some(d)
    })
    .await;
    let codes: Vec<_> = d[0].attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(429), Some(200)]);
    assert_eq!(d[1].attempts.len(), 1, "waiting is not an attempt");
}

#[tokio::test]
async fn a_500_is_retried_with_backoff_then_delivered() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.answer_with_body(500, &[], "");
    let w = pending_withdrawal(&app, "s4").await;
    connect(&app, &rx.url).await;
    queue_pending(&app, &w).await;
    let d = settled_after(&app, w.id, 1).await;
    assert_eq!(
        d.attempts[0].error.as_deref(),
        Some("Slack answered HTTP 500")
    );
    rx.answer_with_body(200, &[], "ok");
    app.clock.advance_secs(50);
    quiet_moment().await;
    assert_eq!(rx.all().len(), 1, "not before the first backoff step");
    app.clock.advance_secs(20);
    received(&rx, 2).await;
    let d = eventually("delivered", || async {
        let d = slack_deliveries(&app, w.id).await;
        (d[0].status == "done").then(|| d[0].clone())
    })
    .await;
    assert_eq!(d.attempts.len(), 2);
    let hook = countersign::db::slack::get(&app.state.db, app.project_id())
        .await
        .unwrap()
        .unwrap();
    assert!(hook.last_ok_at >= hook.last_error_at);
    assert_eq!(hook.last_error.as_deref(), Some("Slack answered HTTP 500"));
}

#[tokio::test]
async fn a_404_is_final_and_shows_on_the_settings_page() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.answer_with_body(404, &[], "no_service");
    let w = pending_withdrawal(&app, "s5").await;
    connect(&app, &rx.url).await;
    queue_pending(&app, &w).await;
    let d = eventually("given up", || async {
        let d = slack_deliveries(&app, w.id).await;
        (d[0].status == "dead").then(|| d[0].clone())
    })
    .await;
    assert_eq!(
        d.last_error.as_deref(),
        Some("Slack answered HTTP 404: no_service")
    );
    assert_eq!(d.attempts.len(), 1);
    app.clock.advance_secs(3600);
    quiet_moment().await;
    assert_eq!(rx.all().len(), 1, "never retried");

    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    let (status, page) = b.get("/settings").await;
    assert_eq!(status, 200);
    let failure = text_of(&page, "slack-last-error").unwrap();
    assert!(
        failure.ends_with("Z: Slack answered HTTP 404: no_service"),
        "{failure}"
    );
    assert_eq!(
        text_of(&page, "slack-last-ok").as_deref(),
        Some(""),
        "nothing delivered"
    );
    assert!(page.contains("nothing delivered yet"));
}

#[tokio::test]
async fn a_message_queued_before_the_channel_was_disconnected_is_not_sent() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let w = pending_withdrawal(&app, "s6").await;
    connect(&app, &rx.url).await;
    // Due in a minute, so the disconnection surely comes first.
    queue_pending_at(&app, &w, app.clock.now_ms() + 60_000).await;
    countersign::service::slack::disconnect(
        &app.state,
        app.project_id(),
        &Actor::Cli,
        &Origin::default(),
    )
    .await
    .unwrap();
    app.clock.advance_secs(61);
    let d = eventually("dropped", || async {
        let d = slack_deliveries(&app, w.id).await;
        (d[0].status == "done").then(|| d[0].clone())
    })
    .await;
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].status_code, None);
    assert_eq!(
        d.attempts[0].error.as_deref(),
        Some("not sent: the Slack channel was disconnected")
    );
    assert!(rx.all().is_empty());
}

async fn raw_slack_row(app: &TestApp) -> Option<(String, String)> {
    sqlx::query("SELECT url_enc, url_hint FROM slack_webhooks WHERE project_id = $1")
        .bind(app.project_id())
        .fetch_optional(app.state.db.reader())
        .await
        .unwrap()
        .map(|r| (r.get("url_enc"), r.get("url_hint")))
}

async fn last_audit(app: &TestApp) -> Value {
    let details: String = sqlx::query(
        "SELECT details FROM audit_log WHERE action = 'project.slack_webhook_changed' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(app.state.db.reader())
    .await
    .unwrap()
    .get("details");
    serde_json::from_str(&details).unwrap()
}

#[tokio::test]
async fn owners_connect_replace_and_disconnect_slack_with_a_fresh_code() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let member = app.create_user("member", true).await;
    let b = app.signed_in(&owner).await;
    let (_, page) = b.get("/settings").await;
    assert!(page.contains("not connected"));

    // A bad URL names the field and does not use up the code.
    let code = fresh_code(&app, &owner);
    for (bad, says) in [
        (
            "http://hooks.slack.com/services/T1/B2/x",
            "Slack webhook URL: must start with https:",
        ),
        ("not a url", "Slack webhook URL: is not a URL"),
        ("", "Slack webhook URL: enter the incoming-webhook URL"),
        // the operator's own network (notify::outbound)
        (
            "https://192.168.1.20/services/T1/B2/x",
            "Slack webhook URL: 192.168.1.20 is an address outside the public internet",
        ),
    ] {
        let (status, page, _) = b
            .post_form("/settings/slack", &[("webhook_url", bad), ("code", &code)])
            .await;
        assert_eq!(status, 422, "{bad}");
        assert!(page.contains(says), "{bad}: {page}");
    }
    assert!(raw_slack_row(&app).await.is_none());

    let secret_url = "https://hooks.slack.com/services/T0AAA1111/B0BBB2222/SecretTokenXyz123";
    let (status, _, location) = b
        .post_form(
            "/settings/slack",
            &[("webhook_url", secret_url), ("code", &code)],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some("/settings?done=slack_connected#slack")
    );
    let (enc, hint) = raw_slack_row(&app).await.unwrap();
    assert!(!enc.contains("SecretTokenXyz123") && !enc.contains("hooks.slack.com"));
    assert_eq!(app.state.master_key.decrypt(&enc).unwrap(), secret_url);
    assert_eq!(hint, "https://hooks.slack.com/services/T…/…");
    let (_, page) = b.get("/settings?done=slack_connected").await;
    assert!(!page.contains("SecretTokenXyz123"));
    assert_eq!(
        text_of(&page, "slack-hint").as_deref(),
        Some("https://hooks.slack.com/services/T…/…")
    );
    assert!(page.contains("Slack channel connected."));
    let d = last_audit(&app).await;
    assert_eq!(
        d,
        json!({"before": null, "after": "https://hooks.slack.com/services/T…/…"})
    );

    // The same code twice is a replay.
    let (status, page, _) = b
        .post_form(
            "/settings/slack",
            &[("webhook_url", secret_url), ("code", &code)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Verification code"), "{page}");

    // Replace with the local stand-in (plain http: loopback only), then disconnect.
    let rx = Receiver::start().await;
    let code = fresh_code(&app, &owner);
    let (status, _, _) = b
        .post_form(
            "/settings/slack",
            &[("webhook_url", &rx.url), ("code", &code)],
        )
        .await;
    assert_eq!(status, 303);
    let (enc, _) = raw_slack_row(&app).await.unwrap();
    assert_eq!(app.state.master_key.decrypt(&enc).unwrap(), rx.url);
    b.get("/settings").await;
    let code = fresh_code(&app, &owner);
    let (status, _, location) = b
        .post_form("/settings/slack/disconnect", &[("code", &code)])
        .await;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some("/settings?done=slack_disconnected#slack")
    );
    assert!(raw_slack_row(&app).await.is_none());
    assert_eq!(
        last_audit(&app).await,
        json!({"before": format!("{}/c…", rx.url.trim_end_matches("/callbacks")), "after": null})
    );

    // Members may not touch it.
    let m = app.signed_in(&member).await;
    let (status, _) = m.get("/settings").await;
    assert_eq!(status, 403);
    m.get("/").await;
    let code = fresh_code(&app, &member);
    let (status, _, _) = m
        .post_form(
            "/settings/slack",
            &[("webhook_url", &rx.url), ("code", &code)],
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = m.post_form("/settings/slack/test", &[]).await;
    assert_eq!(status, 403);
    assert!(raw_slack_row(&app).await.is_none());
}

#[tokio::test]
async fn the_test_button_reports_success_or_slacks_exact_error() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    b.get("/settings").await;
    let (status, page, _) = b.post_form("/settings/slack/test", &[]).await;
    assert_eq!(status, 422);
    assert!(page.contains("No Slack channel is connected"), "{page}");

    connect(&app, &rx.url).await;
    let (status, _, location) = b.post_form("/settings/slack/test", &[]).await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/settings?done=slack_test#slack"));
    let got = rx.all();
    assert_eq!(got.len(), 1);
    let text = got[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("Test message from Countersign") && text.contains(&owner.email),
        "{text}"
    );
    let (_, page) = b.get("/settings?done=slack_test").await;
    assert!(page.contains("Test message delivered to the Slack channel."));
    let last_ok = text_of(&page, "slack-last-ok").unwrap();
    assert!(last_ok.ends_with('Z'), "{last_ok}");

    // One test per 10 seconds: a second click now is refused and sends nothing.
    app.clock.advance_ms(3_500);
    let (status, page, _) = b.post_form("/settings/slack/test", &[]).await;
    assert_eq!(status, 422);
    assert!(
        page.contains(
            "A test message went to this channel 3 s ago: wait 7 more seconds before sending another."
        ),
        "{page}"
    );
    assert_eq!(rx.all().len(), 1);
    app.clock.advance_ms(6_500);

    rx.answer_with_body(410, &[], "channel_is_archived");
    let (status, page, _) = b.post_form("/settings/slack/test", &[]).await;
    assert_eq!(status, 502);
    assert!(
        page.contains(
            "Slack test message not delivered: Slack answered HTTP 410: channel_is_archived"
        ),
        "{page}"
    );
    let failure = text_of(&page, "slack-last-error").unwrap();
    assert!(failure.ends_with("Z: Slack answered HTTP 410: channel_is_archived"));
    // A test message is not queued: nothing is retried.
    assert_eq!(app.count("jobs WHERE kind = 'slack'").await, 0);
}

#[tokio::test]
async fn of_ten_test_clicks_at_once_one_message_goes_out() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    b.get("/settings").await;
    connect(&app, &rx.url).await;
    let clicks = (0..10).map(|_| b.post_form("/settings/slack/test", &[]));
    let answers = futures_util::future::join_all(clicks).await;
    let mut codes: Vec<u16> = answers.iter().map(|(status, _, _)| *status).collect();
    codes.sort_unstable();
    assert_eq!(codes, [303, 422, 422, 422, 422, 422, 422, 422, 422, 422]);
    assert_eq!(rx.all().len(), 1);
    // After the gap the button works again.
    app.clock.advance_ms(10_000);
    let (status, _, _) = b.post_form("/settings/slack/test", &[]).await;
    assert_eq!(status, 303);
    assert_eq!(rx.all().len(), 2);
}
