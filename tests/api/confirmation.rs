//! The Withdrawal Confirmation feature (seed 000): enabling with the primary email's
//! confirmation, disabling with two people's, cancel, expiry, and what the flag does.

use crate::helpers::{Browser, TestApp, TestUser, eventually, spawn_app};
use crate::team::fresh_code;
use countersign::db::projects;
use sqlx::Row;

const PAGE: &str = "/settings/withdrawal-confirmation";

/// The link of the `nth` (from 1) confirmation email to `to` (dev mailbox), as a path.
async fn nth_link_to(app: &TestApp, to: &str, nth: usize) -> String {
    let text: String = eventually("the confirmation email", || async {
        sqlx::query(
            "SELECT text_body FROM dev_mailbox WHERE to_addr = $1 AND subject LIKE 'Confirm:%' ORDER BY id",
        )
        .bind(to)
        .fetch_all(app.state.db.reader())
        .await
        .unwrap()
        .get(nth - 1)
        .map(|r| r.get::<String, _>("text_body"))
    })
    .await;
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/confirm/"))
        .expect("link in the email");
    link[app.base.len()..].to_string()
}

async fn link_to(app: &TestApp, to: &str) -> String {
    nth_link_to(app, to, 1).await
}

async fn enabled(app: &TestApp) -> bool {
    projects::get(&app.state.db, app.project_id())
        .await
        .unwrap()
        .unwrap()
        .withdrawal_confirmation
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    sqlx::query(
        "SELECT action FROM audit_log WHERE action LIKE 'withdrawal_confirmation.%' ORDER BY id",
    )
    .fetch_all(app.state.db.reader())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get("action"))
    .collect()
}

async fn request_enable(app: &TestApp, b: &Browser, owner: &TestUser) -> (u16, String) {
    b.get(PAGE).await;
    let code = fresh_code(app, owner);
    let (status, page, _) = b
        .post_form(&format!("{PAGE}/enable"), &[("code", &code)])
        .await;
    (status, page)
}

async fn request_disable(
    app: &TestApp,
    b: &Browser,
    owner: &TestUser,
    approver: &str,
) -> (u16, String) {
    b.get(PAGE).await;
    let code = fresh_code(app, owner);
    let (status, page, _) = b
        .post_form(
            &format!("{PAGE}/disable"),
            &[("code", &code), ("approver", approver)],
        )
        .await;
    (status, page)
}

#[tokio::test]
async fn enable_needs_two_approvers_a_code_and_the_primary_email() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    let (_, page) = b.get(PAGE).await;
    assert!(
        page.contains("Disabled") && page.contains("Invite another user with withdrawal rights")
    );
    let (status, page) = request_enable(&app, &b, &owner).await;
    assert_eq!(status, 422);
    assert!(
        page.contains("at least two users with withdrawal rights"),
        "{page}"
    );

    let member = app.create_user("member", true).await;
    b.get(PAGE).await;
    let (status, page, _) = b
        .post_form(&format!("{PAGE}/enable"), &[("code", "000000")])
        .await;
    assert_eq!(status, 422, "a wrong code");
    assert!(page.contains("Code:"), "{page}");
    let (status, _) = request_enable(&app, &b, &owner).await;
    assert_eq!(status, 303);
    let (_, page) = b.get(PAGE).await;
    assert!(
        page.contains("Enable requested") && page.contains("finance@acme.test"),
        "{page}"
    );
    let (status, page) = request_enable(&app, &b, &owner).await;
    assert_eq!(status, 422, "one request at a time: {page}");

    // The primary account email confirms; opening the link (GET, HEAD) changes nothing.
    let link = link_to(&app, "finance@acme.test").await;
    let anon = app.browser();
    for _ in 0..2 {
        let (status, page) = anon.get(&link).await;
        assert_eq!(status, 200);
        assert!(page.contains("Confirm"), "{page}");
    }
    let head = app
        .http
        .head(format!("{}{link}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert!(!enabled(&app).await);
    let (status, page, _) = anon.post_form(&link, &[]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("now enabled"), "{page}");
    assert!(enabled(&app).await);
    // Used: a replay is refused.
    let (status, _, _) = anon.post_form(&link, &[]).await;
    assert_eq!(status, 422);
    assert_eq!(
        audit_actions(&app).await,
        [
            "withdrawal_confirmation.requested",
            "withdrawal_confirmation.2fa_passed",
            "withdrawal_confirmation.email_sent",
            "withdrawal_confirmation.confirmed",
            "withdrawal_confirmation.enabled",
        ]
    );
    eventually("the owners hear of it", || async {
        sqlx::query("SELECT COUNT(*) AS n FROM dev_mailbox WHERE to_addr = $1 AND subject = 'Withdrawal Confirmation is now enabled'")
            .bind(&owner.email)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap()
            .get::<i64, _>("n")
            .eq(&1)
            .then_some(())
    })
    .await;

    // Now every withdrawal waits for a second person, even a small one.
    app.credit("SBX", "10").await;
    let (_, v) = app.withdraw("wc1", "SBX", "1", "sbx_wallet_1").await;
    assert_eq!(v["data"]["status"], "pending", "{v}");
    // And the second approver cannot be taken away.
    b.get(&format!("/users/{}", member.id)).await;
    let code = fresh_code(&app, &owner);
    let (status, page, _) = b
        .post_form(&format!("/users/{}/remove", member.id), &[("code", &code)])
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Withdrawal Confirmation"));
}

#[tokio::test]
async fn disable_needs_both_people_signed_in_on_their_own_links() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let approver = app.create_user("member", true).await;
    projects::set_withdrawal_confirmation(&app.state.db, app.project_id(), true)
        .await
        .unwrap();
    app.credit("SBX", "10").await;
    let (_, v) = app.withdraw("before", "SBX", "1", "sbx_wallet_1").await;
    assert_eq!(v["data"]["status"], "pending");

    let a = app.signed_in(&owner).await;
    let (status, page) = request_disable(&app, &a, &owner, "").await;
    assert_eq!(status, 422);
    assert!(page.contains("Approving user"), "{page}");
    let (status, _) = request_disable(&app, &a, &owner, &owner.id).await;
    assert_eq!(
        status, 422,
        "the requester cannot approve their own request"
    );
    let (status, _) = request_disable(&app, &a, &owner, &approver.id).await;
    assert_eq!(status, 303);
    let mine = link_to(&app, &owner.email).await;
    let theirs = link_to(&app, &approver.email).await;
    assert_ne!(mine, theirs);

    // Signed out: the page asks to sign in and comes back.
    let (_, page) = app.browser().get(&theirs).await;
    assert!(page.contains(&format!("/login?next={theirs}")), "{page}");
    // Signed in as the wrong person: refused, nothing confirmed.
    let (_, page) = a.get(&theirs).await;
    assert!(page.contains("This link was sent to"), "{page}");
    let (status, _, _) = a.post_form(&theirs, &[]).await;
    assert_eq!(status, 422);
    // The requester confirms; the feature stays on until the approver does too.
    a.get(&mine).await;
    let (status, page, _) = a.post_form(&mine, &[]).await;
    assert_eq!(status, 200);
    assert!(page.contains("still awaited"), "{page}");
    assert!(enabled(&app).await);
    let b = app.signed_in(&approver).await;
    b.get(&theirs).await;
    let (status, page, _) = b.post_form(&theirs, &[]).await;
    assert_eq!(status, 200);
    assert!(page.contains("now disabled"), "{page}");
    assert!(!enabled(&app).await);
    // A replayed link is refused.
    let (status, _, _) = a.post_form(&mine, &[]).await;
    assert_eq!(status, 422);

    // What was pending keeps its requirement; what is new goes straight to payout.
    assert_eq!(app.status_of("before").await["status"], "pending");
    let (code, v) = app.withdraw("after", "SBX", "1", "sbx_wallet_1").await;
    assert_eq!(
        (code, v["data"]["status"].as_str()),
        (200, Some("processing")),
        "{v}"
    );
    let actions = audit_actions(&app).await;
    assert_eq!(
        actions.iter().filter(|a| a.ends_with(".confirmed")).count(),
        2
    );
    assert_eq!(
        actions.last().map(String::as_str),
        Some("withdrawal_confirmation.disabled")
    );
}

#[tokio::test]
async fn requests_can_be_cancelled_by_either_side_and_expire_after_thirty_minutes() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let member = app.create_user("member", true).await;
    let a = app.signed_in(&owner).await;

    // An owner cancels an enable request: its link then changes nothing.
    assert_eq!(request_enable(&app, &a, &owner).await.0, 303);
    let link = link_to(&app, "finance@acme.test").await;
    let (_, page) = a.get(PAGE).await;
    let marker = "name=\"request_id\" value=\"";
    let id_at = page.find(marker).unwrap() + marker.len();
    let id: String = page[id_at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let (status, _, _) = a
        .post_form(&format!("{PAGE}/cancel"), &[("request_id", &id)])
        .await;
    assert_eq!(status, 303);
    let anon = app.browser();
    let (status, page) = anon.get(&link).await;
    assert_eq!(status, 410);
    assert!(page.contains("cancelled"), "{page}");
    anon.get("/login").await; // a form token for this anonymous session
    let (status, page, _) = anon.post_form(&link, &[]).await;
    assert_eq!(status, 422);
    assert!(page.contains("This request was cancelled"), "{page}");
    assert!(!enabled(&app).await);

    // Unconfirmed for 30 minutes: expired.
    assert_eq!(request_enable(&app, &a, &owner).await.0, 303);
    let link = nth_link_to(&app, "finance@acme.test", 2).await;
    app.clock.advance_secs(20 * 60);
    let (_, page) = a.get(PAGE).await; // (keeps the session from idling out)
    assert!(page.contains("Enable requested"), "{page}");
    app.clock.advance_secs(11 * 60);
    let (_, page) = a.get(PAGE).await;
    assert!(page.contains("Disabled"), "{page}");
    let (status, page) = anon.get(&link).await;
    assert_eq!(status, 410);
    assert!(page.contains("expired"), "{page}");
    assert!(!enabled(&app).await);
    assert!(
        audit_actions(&app)
            .await
            .contains(&"withdrawal_confirmation.expired".to_string())
    );

    // The approving user cancels a disable request from their link.
    projects::set_withdrawal_confirmation(&app.state.db, app.project_id(), true)
        .await
        .unwrap();
    let a = app.signed_in(&owner).await;
    assert_eq!(request_disable(&app, &a, &owner, &member.id).await.0, 303);
    let theirs = link_to(&app, &member.email).await;
    let m = app.signed_in(&member).await;
    m.get(&theirs).await;
    let (status, page, _) = m.post_form(&format!("{theirs}/cancel"), &[]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("cancelled"), "{page}");
    assert!(enabled(&app).await, "still enabled");
    let (_, page) = a.get(PAGE).await;
    assert!(
        page.contains("Enabled") && !page.contains("Disable requested"),
        "{page}"
    );
}

#[tokio::test]
async fn a_link_from_another_project_or_made_up_names_nothing() {
    let app = spawn_app().await;
    let (status, _) = app.browser().get("/confirm/not-a-real-token").await;
    assert_eq!(status, 404);
    let b = app.browser();
    b.get("/login").await;
    let (status, _, _) = b.post_form("/confirm/not-a-real-token", &[]).await;
    assert_eq!(status, 404);

    // Another project's disable request: its approver's link, used by someone of ours.
    let other = countersign::service::projects::create(
        &app.state.db,
        &app.state.master_key,
        &countersign::service::projects::NewProjectInput {
            name: "Other",
            primary_email: "ops@other.test",
            base_currency: "EUR",
            callback_url: None,
        },
        0,
    )
    .await
    .unwrap();
    let their_owner = app.create_user_in(&other.project_id, "owner", true).await;
    let their_approver = app.create_user_in(&other.project_id, "member", true).await;
    projects::set_withdrawal_confirmation(&app.state.db, &other.project_id, true)
        .await
        .unwrap();
    let owner_row = countersign::db::users::by_id(&app.state.db, &their_owner.id)
        .await
        .unwrap()
        .unwrap();
    countersign::service::confirmation::request_disable(
        &app.state,
        &owner_row,
        &their_approver.id,
        &countersign::db::audit::Origin::default(),
    )
    .await
    .unwrap();
    let foreign = link_to(&app, &their_approver.email).await;
    let ours = app.create_user("owner", true).await;
    let b = app.signed_in(&ours).await;
    b.get("/").await; // this session's form token
    let (_, page) = b.get(&foreign).await;
    assert!(page.contains("This link was sent to"), "{page}");
    let (status, _, _) = b.post_form(&foreign, &[]).await;
    assert_eq!(status, 422);
    let (status, _, _) = b.post_form(&format!("{foreign}/cancel"), &[]).await;
    assert_eq!(status, 422, "nor can they cancel it");
    assert!(
        projects::get(&app.state.db, &other.project_id)
            .await
            .unwrap()
            .unwrap()
            .withdrawal_confirmation
    );
    let confirmed: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM confirmation_links WHERE confirmed_at IS NOT NULL")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap()
            .get("n");
    assert_eq!(confirmed, 0);
}

#[tokio::test]
async fn enable_and_disable_in_chromium_with_mail_over_smtp() {
    use crate::browser::Chrome;
    use crate::helpers::{SmtpSink, link_in_mail, spawn_app_with};
    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(|s| sink.configure(s)).await;
    let owner = app.create_user("owner", true).await;
    let sign_in = |who: TestUser| {
        let (chrome, app) = (&chrome, &app);
        async move {
            chrome.fill("input[name=email]", &who.email).await;
            chrome.fill("input[name=password]", &who.password).await;
            chrome.click("button[type=submit]").await;
            chrome.wait_for_path("/login/totp").await;
            app.clock.advance_secs(30);
            chrome.fill("input[name=code]", &app.code(&who)).await;
            chrome.click("button[type=submit]").await;
        }
    };
    chrome.goto(&format!("{}{PAGE}", app.base)).await;
    sign_in(owner.clone()).await;
    assert_eq!(chrome.wait_for_path(PAGE).await, PAGE);
    assert!(
        chrome
            .source()
            .await
            .contains("Invite another user with withdrawal rights")
    );

    // A second person with withdrawal rights joins; enabling is offered.
    let member = app.create_user("member", true).await;
    let page = format!("{}{PAGE}", app.base);
    let request_enable = || async {
        chrome.goto(&page).await;
        app.clock.advance_secs(30);
        chrome.fill("input[name=code]", &app.code(&owner)).await;
        chrome.click("form[action$='/enable'] button").await;
        assert!(
            chrome
                .text(".notice")
                .await
                .contains("primary account email")
        );
    };
    let sink_ref = &sink;
    let nth_enable_link = |n: usize| async move {
        let sink = sink_ref;
        let mail = eventually("enable mail", || async {
            sink.to("finance@acme.test").into_iter().nth(n)
        })
        .await;
        link_in_mail(&mail.data, "/confirm/").expect("link")
    };

    // Asked, then cancelled: its link no longer confirms anything.
    request_enable().await;
    chrome.click("form[action$='/cancel'] button").await;
    assert_eq!(
        chrome.wait_for_text("#wc-status", "Disabled").await,
        "Disabled"
    );
    chrome.goto(&nth_enable_link(0).await).await;
    assert!(chrome.source().await.contains("<strong>cancelled</strong>"));
    assert!(
        chrome
            .client
            .find(fantoccini::Locator::Id("confirm"))
            .await
            .is_err()
    );

    // Asked, then left for more than 30 minutes: expired.
    request_enable().await;
    app.clock.advance_secs(20 * 60);
    chrome.goto(&page).await; // (the session stays alive)
    assert_eq!(chrome.text("#wc-status").await, "Enable requested");
    app.clock.advance_secs(11 * 60);
    chrome.goto(&page).await;
    assert_eq!(chrome.text("#wc-status").await, "Disabled");
    chrome.goto(&nth_enable_link(1).await).await;
    assert!(chrome.source().await.contains("<strong>expired</strong>"));

    // Asked and confirmed by the primary account email; the link then works no more.
    request_enable().await;
    let link = nth_enable_link(2).await;
    chrome.goto(&link).await;
    chrome.click("#confirm").await;
    assert!(chrome.text(".notice").await.contains("now enabled"));
    chrome.goto(&link).await;
    assert!(chrome.source().await.contains("<strong>completed</strong>"));
    assert!(
        chrome
            .client
            .find(fantoccini::Locator::Id("confirm"))
            .await
            .is_err()
    );
    chrome.goto(&page).await;
    assert_eq!(chrome.text("#wc-status").await, "Enabled");

    // Disable: choose the approver, both confirm on their own links.
    app.clock.advance_secs(30);
    chrome
        .find(&format!(
            "select[name=approver] option[value='{}']",
            member.id
        ))
        .await
        .click()
        .await
        .unwrap();
    chrome.fill("input[name=code]", &app.code(&owner)).await;
    chrome.click("form[action$='/disable'] button").await;
    assert!(chrome.text(".notice").await.contains("both are confirmed"));
    // Each has a confirmation link coming; the owner's mailbox also holds the "enabled" notice,
    // which may be delivered after it, so wait for the mail that carries a link.
    let smtp_link = |address: String| async move {
        eventually("confirmation link", || async {
            sink_ref
                .to(&address)
                .iter()
                .rev()
                .find_map(|m| link_in_mail(&m.data, "/confirm/"))
        })
        .await
    };
    let mine = smtp_link(owner.email.clone()).await;
    let theirs = smtp_link(member.email.clone()).await;
    chrome.goto(&mine).await;
    chrome.click("#confirm").await;
    assert!(chrome.text(".notice").await.contains("still awaited"));
    // The approver's link, opened by the requester: refused, nothing to click.
    chrome.goto(&theirs).await;
    assert!(
        chrome
            .text(".error")
            .await
            .contains("This link was sent to")
    );
    assert!(
        chrome
            .client
            .find(fantoccini::Locator::Id("confirm"))
            .await
            .is_err()
    );
    chrome.goto(&format!("{}{PAGE}", app.base)).await;
    chrome.click("header form button").await;
    chrome.wait_for_path("/login").await;
    chrome.goto(&theirs).await;
    chrome.click("a.button").await;
    sign_in(member.clone()).await;
    let back = theirs[app.base.len()..].to_string();
    assert_eq!(chrome.wait_for_path(&back).await, back);
    chrome.click("#confirm").await;
    assert!(chrome.text(".notice").await.contains("now disabled"));
    assert!(!enabled(&app).await);
    chrome.screenshot("withdrawal-confirmation-disabled").await;
    chrome.close().await;
}
