//! Email alerts and approving by email link: the whole story in Chromium, then every rule of
//! the link over plain HTTP (GET and HEAD change nothing, single use, the addressee only,
//! expiry, a fresh code), who gets approval emails and who hears the outcome.

use crate::browser::Chrome;
use crate::callbacks::assert_signed;
use crate::helpers::{
    BTC_ADDR, Browser, Receiver, SmtpMessage, SmtpSink, TestApp, TestUser, eventually,
    spawn_app_with,
};
use base64::Engine as _;
use countersign::db::audit::{Actor, Origin};
use countersign::db::withdrawals as wdb;
use countersign::domain::policy::{Scope, Tier};
use countersign::domain::withdrawal::NewWithdrawal;
use serde_json::json;
use sqlx::Row;
use std::time::Duration;

/// The decoded text/plain part of a message as the SMTP sink received it.
fn text_part(m: &SmtpMessage) -> String {
    let lines: Vec<&str> = m.data.lines().collect();
    let Some(start) = lines.iter().position(|l| {
        l.to_ascii_lowercase()
            .starts_with("content-type: text/plain")
    }) else {
        return m.data.clone();
    };
    let mut i = start;
    let mut encoding = String::new();
    while i < lines.len() && !lines[i].is_empty() {
        if let Some(v) = lines[i]
            .to_ascii_lowercase()
            .strip_prefix("content-transfer-encoding:")
        {
            encoding = v.trim().to_string();
        }
        i += 1;
    }
    let body: Vec<&str> = lines[i..]
        .iter()
        .skip(1)
        .take_while(|l| !l.starts_with("--"))
        .copied()
        .collect();
    match encoding.as_str() {
        "base64" => String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(body.concat())
                .expect("base64 body"),
        )
        .expect("utf-8 body"),
        "quoted-printable" => {
            let joined = body.join("\n").replace("=\n", "");
            let bytes = joined.as_bytes();
            let mut out = Vec::new();
            let mut j = 0;
            while j < bytes.len() {
                if bytes[j] == b'=' && j + 2 < bytes.len() {
                    if let Ok(b) = u8::from_str_radix(&joined[j + 1..j + 3], 16) {
                        out.push(b);
                        j += 3;
                        continue;
                    }
                }
                out.push(bytes[j]);
                j += 1;
            }
            String::from_utf8(out).expect("utf-8 body")
        }
        _ => body.join("\n"),
    }
}

/// The Subject header, unfolded.
fn subject(m: &SmtpMessage) -> String {
    let mut lines = m.data.lines().skip_while(|l| !l.starts_with("Subject: "));
    let Some(first) = lines.next() else {
        return String::new();
    };
    let mut s = first["Subject: ".len()..].to_string();
    for l in lines.take_while(|l| l.starts_with(' ') || l.starts_with('\t')) {
        s.push_str(l);
    }
    s
}

/// The approval emails a user got.
fn approval_emails(sink: &SmtpSink, user: &TestUser) -> Vec<String> {
    sink.to(&user.email)
        .iter()
        .filter(|m| subject(m).contains("Approval needed"))
        .map(text_part)
        .collect()
}

/// Waits for the approval email to `user` and returns the link's path (`/approve/<token>`).
async fn approval_link(app: &TestApp, sink: &SmtpSink, user: &TestUser) -> String {
    let text = eventually(&format!("approval email to {}", user.email), || async {
        approval_emails(sink, user).pop()
    })
    .await;
    let at = text.find("/approve/").expect("a link in the email");
    let path: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "/-_".contains(*c))
        .collect();
    assert!(
        text.contains(&format!("{}{path}", app.base)),
        "the link is absolute, on base_url: {text}"
    );
    assert!(path.len() > "/approve/".len() + 40, "{path}");
    path
}

async fn outcome_email(sink: &SmtpSink, user: &TestUser) -> (String, String) {
    eventually(&format!("outcome email to {}", user.email), || async {
        sink.to(&user.email)
            .iter()
            .find(|m| subject(m).starts_with("Withdrawal ") && !subject(m).contains("Approval"))
            .map(|m| (subject(m), text_part(m)))
    })
    .await
}

async fn app_with_sink() -> (SmtpSink, TestApp) {
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(|s| sink.configure(s)).await;
    (sink, app)
}

/// 0.02 BTC = 1,200 EUR at the default table: over the 1,000 EUR per-operation default.
async fn over_limit(app: &TestApp, foreign_id: &str) -> i64 {
    app.credit("BTC", "1").await;
    let (code, v) = app.withdraw(foreign_id, "BTC", "0.02", BTC_ADDR).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["status"], "pending");
    withdrawal_id(app, foreign_id).await
}

async fn withdrawal_id(app: &TestApp, foreign_id: &str) -> i64 {
    wdb::by_foreign_id(&app.state.db, app.project_id(), foreign_id)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// A payout started from the dashboard by `user`, over the limit.
async fn dashboard_payout(app: &TestApp, project_id: &str, user: &TestUser, foreign_id: &str) {
    let project = countersign::db::projects::get(&app.state.db, project_id)
        .await
        .unwrap()
        .unwrap();
    let req = NewWithdrawal::parse(&json!({
        "foreign_id": foreign_id, "currency": "BTC", "amount": "0.02", "address": BTC_ADDR,
    }))
    .expect("valid request");
    let w = countersign::service::withdrawals::create(
        &app.state,
        &project,
        &Actor::User(user.id.clone()),
        Scope::Dashboard,
        req,
        &Origin::default(),
    )
    .await
    .expect("dashboard payout");
    assert_eq!(w.status.as_str(), "pending");
}

async fn set_email_alerts(app: &TestApp, user: &TestUser, on: bool) {
    sqlx::query("UPDATE users SET email_alerts = $1 WHERE id = $2")
        .bind(i64::from(on))
        .bind(&user.id)
        .execute(app.state.db.writer())
        .await
        .unwrap();
}

/// How many approval links are spent.
async fn used_links(app: &TestApp) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM approval_links WHERE used_at IS NOT NULL")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

/// Opens the link page (keeping its CSRF token) and submits a decision with a fresh code.
async fn decide(
    app: &TestApp,
    b: &Browser,
    user: &TestUser,
    link: &str,
    decision: &str,
) -> (u16, String) {
    let (status, page) = b.get(link).await;
    assert_eq!(status, 200, "{page}");
    app.clock.advance_secs(30);
    let (status, page, _) = b
        .post_form(
            link,
            &[
                ("code", &app.code(user)),
                ("decision", decision),
                ("note", ""),
            ],
        )
        .await;
    (status, page)
}

/// Both owners of a project, with a merchant receiver wired up, and an API payout over the
/// limit that waits for one owner.
async fn story_start() -> (SmtpSink, TestApp, Receiver, TestUser, TestUser, String) {
    let (sink, app) = app_with_sink().await;
    let receiver = Receiver::start().await;
    app.set_callback(&receiver.url).await;
    let first = app.create_user("owner", true).await;
    let second = app.create_user("owner", true).await;
    over_limit(&app, "story").await;
    let pending = eventually("the pending callback", || async {
        receiver.for_foreign_id("story").first().cloned()
    })
    .await;
    assert_eq!(pending.json()["status"], "pending");
    assert_signed(&app, &pending);
    let link = approval_link(&app, &sink, &second).await;
    (sink, app, receiver, first, second, link)
}

async fn story_in_chromium(decision: &str) {
    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let (sink, app, receiver, first, second, link) = story_start().await;

    // The emailed link, opened signed out: a decision waits, nothing more.
    chrome.goto(&format!("{}{link}", app.base)).await;
    let page = chrome.source().await;
    assert!(page.contains("waits for your decision"), "{page}");
    assert!(!page.contains(BTC_ADDR), "no details before sign-in");
    chrome.click("#sign-in").await;
    assert_eq!(chrome.wait_for_path("/login").await, "/login");
    chrome.fill("input[name=email]", &second.email).await;
    chrome.fill("input[name=password]", &second.password).await;
    chrome.click("button[type=submit]").await;
    assert_eq!(chrome.wait_for_path("/login/totp").await, "/login/totp");
    app.clock.advance_secs(30);
    chrome.fill("input[name=code]", &app.code(&second)).await;
    chrome.click("button[type=submit]").await;

    // Back on the approval page, now with what is being signed.
    assert_eq!(chrome.wait_for_path(&link).await, link);
    assert_eq!(chrome.text("#address").await, BTC_ADDR);
    assert!(chrome.text("#amount").await.contains("BTC"));
    assert!(chrome.text("#standing").await.contains("0 of 1"));
    app.clock.advance_secs(30);
    chrome.fill("input[name=code]", &app.code(&second)).await;
    if decision == "decline" {
        chrome.fill("textarea[name=note]", "unknown address").await;
    }
    chrome.click(&format!("#{decision}")).await;
    let result = chrome.text("#approve-done h1").await;
    let shot = chrome
        .screenshot(&format!("approval-link-{decision}"))
        .await;
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000));

    let w = wdb::by_foreign_id(&app.state.db, app.project_id(), "story")
        .await
        .unwrap()
        .unwrap();
    let votes = countersign::db::approvals::votes(app.state.db.reader(), w.id)
        .await
        .unwrap();
    assert_eq!(votes.len(), 1);
    assert_eq!(votes[0].channel, "email");
    assert_eq!(votes[0].user_id, second.id);
    if decision == "approve" {
        assert_eq!(result, "Approved");
        app.wait_for_status("story", "confirmed").await;
        let confirmed = eventually("the confirmed callback", || async {
            receiver
                .for_foreign_id("story")
                .into_iter()
                .find(|r| r.json()["status"] == "confirmed")
        })
        .await;
        assert_signed(&app, &confirmed);
        // The other owner hears how it ended; the decider is not told what they did.
        let (subject, text) = outcome_email(&sink, &first).await;
        assert!(
            subject.contains(&format!("Approved by {}", second.email)),
            "{subject}"
        );
        assert!(text.contains(&format!("Approved by {}", second.email)));
    } else {
        assert_eq!(result, "Declined");
        let done = app.wait_for_status("story", "declined").await;
        let expected = format!("Declined by user ID:{}", second.id);
        assert_eq!(done["error"], expected.as_str());
        let declined = eventually("the declined callback", || async {
            receiver
                .for_foreign_id("story")
                .into_iter()
                .find(|r| r.json()["status"] == "declined")
        })
        .await;
        assert_eq!(declined.json()["error"], expected.as_str());
        assert_signed(&app, &declined);
        let (subject, text) = outcome_email(&sink, &first).await;
        assert!(
            subject.contains(&format!("Declined by {}: unknown address", second.email)),
            "{subject}"
        );
        assert!(text.contains("unknown address"));
        assert_eq!(app.balance("BTC").await.1, "0.00000000", "hold released");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sink.to(&second.email)
            .iter()
            .all(|m| subject(m).contains("Approval needed")),
        "the decider gets no outcome email"
    );
    // The link is spent.
    chrome.goto(&format!("{}{link}", app.base)).await;
    assert!(chrome.text("#reason").await.contains("already"));
    chrome.close().await;
}

#[tokio::test]
async fn approved_by_email_link_in_chromium() {
    story_in_chromium("approve").await;
}

#[tokio::test]
async fn declined_by_email_link_in_chromium() {
    story_in_chromium("decline").await;
}

#[tokio::test]
async fn opening_the_link_consumes_nothing_and_shows_nothing_before_sign_in() {
    let (sink, app) = app_with_sink().await;
    let owner = app.create_user("owner", true).await;
    over_limit(&app, "scan").await;
    let link = approval_link(&app, &sink, &owner).await;

    // A mail scanner: GET and HEAD, no session.
    let scanner = app.browser();
    for _ in 0..2 {
        let (status, page) = scanner.get(&link).await;
        assert_eq!(status, 200);
        assert!(page.contains("waits for your decision") && page.contains("login?next="));
        assert!(!page.contains(BTC_ADDR) && !page.contains("0.02"), "{page}");
        let head = app.http.head(app.url(&link)).send().await.unwrap();
        assert_eq!(head.status(), 200);
    }
    // Signed in as the addressee, looking is still only looking.
    let b = app.signed_in(&owner).await;
    let (status, page) = b.get(&link).await;
    assert_eq!(status, 200);
    assert!(page.contains(BTC_ADDR) && page.contains("0 of 1 approval"));
    assert_eq!(
        b.http.head(app.url(&link)).send().await.unwrap().status(),
        200
    );
    assert_eq!(used_links(&app).await, 0);
    assert_eq!(app.count("withdrawal_votes").await, 0);

    // Sign-in from the page comes back to it.
    let c = app.browser();
    let (_, page) = c.get(&link).await;
    let next = format!("/login?next={}", link.replace('/', "%2F"));
    // (In the page, tera writes the path's first "/" as an entity.)
    assert!(page.contains(&next["/login".len()..]), "{page}");
    assert_eq!(c.get(&next).await.0, 200);
    c.post_form(
        "/login",
        &[("email", &owner.email), ("password", &owner.password)],
    )
    .await;
    c.get("/login/totp").await;
    app.clock.advance_secs(30);
    let (status, _, location) = c
        .post_form("/login/totp", &[("code", &app.code(&owner))])
        .await;
    assert_eq!((status, location.as_deref()), (303, Some(link.as_str())));

    // The link still works after all that.
    let (status, page) = decide(&app, &c, &owner, &link, "approve").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Approved"));
    app.wait_for_status("scan", "confirmed").await;
    assert_eq!(used_links(&app).await, 1);

    // Used: refused, whoever asks, and it says why to the addressee only.
    let (status, page) = c.get(&link).await;
    assert_eq!(status, 410);
    assert!(
        page.contains(&format!("already approved by {}", owner.email)),
        "{page}"
    );
    let (status, page) = scanner.get(&link).await;
    assert_eq!(status, 410);
    assert!(!page.contains(&owner.email));
    app.clock.advance_secs(30);
    let (status, _, _) = c
        .post_form(
            &link,
            &[("code", &app.code(&owner)), ("decision", "decline")],
        )
        .await;
    assert_eq!(status, 410);
    assert_eq!(app.status_of("scan").await["status"], "confirmed");
    // An unknown token names nothing.
    assert_eq!(scanner.get("/approve/not-a-token").await.0, 404);
}

#[tokio::test]
async fn a_used_link_is_refused_while_the_withdrawal_still_waits() {
    let (sink, app) = app_with_sink().await;
    let alice = app.create_user("owner", true).await;
    let bob = app.create_user("owner", true).await;
    // A tier of two approvers: one approval leaves it pending.
    let mut tx = app.state.db.begin().await.unwrap();
    countersign::db::approvals::put_tier(
        &mut tx,
        app.project_id(),
        Scope::Api,
        Tier {
            min_base_amount: "500".parse().unwrap(),
            approvers: 2,
        },
        countersign::clock::Clock::now_ms(&app.clock),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    over_limit(&app, "two").await;
    let link = approval_link(&app, &sink, &alice).await;
    let b = app.signed_in(&alice).await;
    let (status, page) = decide(&app, &b, &alice, &link, "approve").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("1 of 2 approvals"), "{page}");
    let (status, page) = b.get(&link).await;
    assert_eq!(status, 410);
    assert!(page.contains("works only once"), "{page}");
    app.clock.advance_secs(30);
    let (status, _, _) = b
        .post_form(
            &link,
            &[("code", &app.code(&alice)), ("decision", "approve")],
        )
        .await;
    assert_eq!(status, 410);
    assert_eq!(app.count("withdrawal_votes").await, 1);
    // Bob's own link completes it.
    let bob_link = approval_link(&app, &sink, &bob).await;
    let c = app.signed_in(&bob).await;
    let (status, page) = decide(&app, &c, &bob, &bob_link, "approve").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Approved"));
    app.wait_for_status("two", "confirmed").await;
}

#[tokio::test]
async fn someone_elses_link_is_refused_and_stays_usable() {
    let (sink, app) = app_with_sink().await;
    let alice = app.create_user("owner", true).await;
    let bob = app.create_user("owner", true).await;
    over_limit(&app, "foreign").await;
    let bobs_link = approval_link(&app, &sink, &bob).await;
    let a = app.signed_in(&alice).await;
    let (status, page) = a.get(&bobs_link).await;
    assert_eq!(status, 403);
    assert!(
        page.contains(&format!("This link was sent to {}", bob.email)),
        "{page}"
    );
    assert!(!page.contains(BTC_ADDR), "no details for someone else");
    app.clock.advance_secs(30);
    let (status, _, _) = a
        .post_form(
            &bobs_link,
            &[("code", &app.code(&alice)), ("decision", "approve")],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(app.count("withdrawal_votes").await, 0);
    assert_eq!(used_links(&app).await, 0);
    let b = app.signed_in(&bob).await;
    let (status, page) = decide(&app, &b, &bob, &bobs_link, "approve").await;
    assert_eq!(status, 200, "{page}");
}

#[tokio::test]
async fn a_link_to_another_projects_withdrawal_is_refused() {
    let (sink, app) = app_with_sink().await;
    let alice = app.create_user("owner", true).await;
    let other = app
        .other_project("Other Casino", "finance@other.test")
        .await;
    let carol = app.create_user_in(&other.project_id, "owner", true).await;
    let dave = app.create_user_in(&other.project_id, "owner", true).await;
    countersign::service::projects::credit(
        &app.state.db,
        &other.project_id,
        countersign::domain::money::Currency::parse("BTC").unwrap(),
        "1".parse().unwrap(),
        &Actor::Cli,
        countersign::clock::Clock::now_ms(&app.clock),
    )
    .await
    .unwrap();
    dashboard_payout(&app, &other.project_id, &carol, "theirs").await;
    let daves_link = approval_link(&app, &sink, &dave).await;
    let a = app.signed_in(&alice).await;
    let (status, page) = a.get(&daves_link).await;
    assert_eq!(status, 403);
    assert!(page.contains("another project"), "{page}");
    assert!(!page.contains(&dave.email) && !page.contains(BTC_ADDR));
    app.clock.advance_secs(30);
    let (status, _, _) = a
        .post_form(
            &daves_link,
            &[("code", &app.code(&alice)), ("decision", "approve")],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(app.count("withdrawal_votes").await, 0);
    assert_eq!(used_links(&app).await, 0);
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let (sink, app) = app_with_sink().await;
    let owner = app.create_user("owner", true).await;
    over_limit(&app, "late").await;
    let link = approval_link(&app, &sink, &owner).await;
    // The default time to decide is 24 hours.
    app.clock.advance_secs(24 * 3600 + 60);
    let b = app.signed_in(&owner).await;
    let (status, page) = b.get(&link).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
    app.clock.advance_secs(30);
    let (status, page, _) = b
        .post_form(
            &link,
            &[("code", &app.code(&owner)), ("decision", "approve")],
        )
        .await;
    assert_eq!(status, 410, "{page}");
    assert_eq!(app.count("withdrawal_votes").await, 0);
    // Never approved: it was left pending past its own 24 hours, and expires.
    let w = app.wait_for_status("late", "cancelled").await;
    assert_eq!(w["error"], "Expired", "{w}");
}

#[tokio::test]
async fn after_someone_else_decided_the_link_says_who_and_when() {
    let (sink, app) = app_with_sink().await;
    let alice = app.create_user("owner", true).await;
    let bob = app.create_user("owner", true).await;
    over_limit(&app, "raced").await;
    let alices_link = approval_link(&app, &sink, &alice).await;
    let bobs_link = approval_link(&app, &sink, &bob).await;
    let b = app.signed_in(&bob).await;
    // Bob opens his page; Alice decides first.
    assert_eq!(b.get(&bobs_link).await.0, 200);
    let a = app.signed_in(&alice).await;
    let (status, _) = decide(&app, &a, &alice, &alices_link, "decline").await;
    assert_eq!(status, 200);
    app.clock.advance_secs(30);
    let (status, page, _) = b
        .post_form(
            &bobs_link,
            &[("code", &app.code(&bob)), ("decision", "approve")],
        )
        .await;
    assert_eq!(status, 410);
    assert!(
        page.contains(&format!("already declined by {} at", alice.email)),
        "{page}"
    );
    let (status, page) = b.get(&bobs_link).await;
    assert_eq!(status, 410);
    assert!(page.contains(&format!("already declined by {}", alice.email)));
    assert_eq!(app.status_of("raced").await["status"], "declined");
    assert_eq!(used_links(&app).await, 1, "only Alice's link was used");
}

#[tokio::test]
async fn a_wrong_or_missing_code_refuses_and_leaves_the_link_usable() {
    let (sink, app) = app_with_sink().await;
    let owner = app.create_user("owner", true).await;
    over_limit(&app, "codes").await;
    let link = approval_link(&app, &sink, &owner).await;
    let b = app.signed_in(&owner).await;
    assert_eq!(b.get(&link).await.0, 200);
    let (status, page, _) = b.post_form(&link, &[("decision", "approve")]).await;
    assert_eq!(status, 422);
    assert!(page.contains("6-digit code"), "{page}");
    let old = countersign::auth::totp::code_at(
        &owner.secret,
        countersign::clock::Clock::now_ms(&app.clock) - 10 * 60_000,
    )
    .unwrap();
    let (status, page, _) = b
        .post_form(&link, &[("code", &old), ("decision", "approve")])
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("Verification code"), "{page}");
    // No CSRF token: refused before anything else.
    let (status, _, _) = b
        .post_raw(
            &link,
            &[("code", &app.code(&owner)), ("decision", "approve")],
            Some(&app.base),
        )
        .await;
    assert_eq!(status, 403);
    // Signed out: sent to sign in, and back here afterwards.
    let (status, _, location) = app
        .browser()
        .post_raw(&link, &[("decision", "approve")], Some(&app.base))
        .await;
    assert_eq!(status, 303);
    assert!(location.unwrap().starts_with("/login?next=%2Fapprove%2F"));
    assert_eq!(used_links(&app).await, 0);
    assert_eq!(app.count("withdrawal_votes").await, 0);
    let (status, page) = decide(&app, &b, &owner, &link, "approve").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Approved"));
}

#[tokio::test]
async fn approval_emails_go_to_eligible_approvers_with_alerts_on_and_outcomes_to_the_initiator() {
    let (sink, app) = app_with_sink().await;
    let initiator = app.create_user("owner", true).await;
    let approver = app.create_user("owner", true).await;
    let quiet = app.create_user("owner", true).await;
    let member = app.create_user("member", true).await;
    let no_rights = app.create_user("member", false).await;
    set_email_alerts(&app, &quiet, false).await;
    app.credit("BTC", "1").await;
    dashboard_payout(&app, app.project_id(), &initiator, "mine").await;

    let link = approval_link(&app, &sink, &approver).await;
    let text = approval_emails(&sink, &approver).pop().unwrap();
    assert!(text.contains(&initiator.email), "who started it: {text}");
    assert!(
        text.contains("dashboard per-operation limit"),
        "why: {text}"
    );
    assert!(text.contains("0 of 1 approval"), "{text}");
    // Let the worker finish the round, then look at everyone else's inbox.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (who, why) in [
        (&initiator, "the initiator"),
        (&quiet, "alerts off"),
        (&member, "over a limit only owners decide"),
        (&no_rights, "no withdrawal rights"),
    ] {
        assert!(
            approval_emails(&sink, who).is_empty(),
            "{why}: no approval email"
        );
    }

    let b = app.signed_in(&approver).await;
    let (status, page) = decide(&app, &b, &approver, &link, "approve").await;
    assert_eq!(status, 200, "{page}");
    let id = withdrawal_id(&app, "mine").await;
    // The initiator hears the outcome, with the outcome line.
    let (line, text) = outcome_email(&sink, &initiator).await;
    assert!(
        line.contains(&format!("Withdrawal {id}"))
            && line.contains(&format!("Approved by {}", approver.email)),
        "{line}"
    );
    assert!(text.contains("You initiated this withdrawal"), "{text}");
    assert!(text.contains(&format!("/withdrawals/{id}")), "{text}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (who, why) in [
        (&approver, "the decider"),
        (&quiet, "alerts off"),
        (&member, "not an owner, not the initiator"),
    ] {
        assert!(
            sink.to(&who.email)
                .iter()
                .all(|m| !subject(m).contains("Approved by")),
            "{why}: no outcome email"
        );
    }
}
