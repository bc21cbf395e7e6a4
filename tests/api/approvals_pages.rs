//! Deciding pending withdrawals in the browser: the detail page's Approve / Decline (each
//! with a fresh code), the queue's bulk decisions (one code for many), manual payouts from the
//! dashboard and approval tiers in settings. Over real HTTP with the cookie-keeping Browser;
//! pending withdrawals come from the signed merchant API above the owner's limit.

mod bulk;
mod in_chromium;
mod payouts;
mod tiers;

use crate::helpers::{BTC_ADDR, Browser, Receiver, TestApp, TestUser, eventually, spawn_app};
use serde_json::json;
use sqlx::Row;

/// The page with tera's HTML escapes undone, for plain-text assertions.
pub fn text(page: &str) -> String {
    page.replace("&#x2F;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A BTC withdrawal through the API (0.02 BTC is 1,200 EUR: over the 1,000 EUR per-operation
/// limit, so pending for an owner). Returns its id.
pub async fn api_withdrawal(
    app: &TestApp,
    foreign_id: &str,
    amount: &str,
    end_user: Option<&str>,
) -> i64 {
    let mut body =
        json!({"foreign_id": foreign_id, "currency": "BTC", "amount": amount, "address": BTC_ADDR});
    if let Some(u) = end_user {
        body["end_user_reference"] = json!(u);
    }
    let (code, v) = app.post_json("/withdrawal/crypto", &body).await;
    assert_eq!(code, 200, "{foreign_id}: {v}");
    v["data"]["id"].as_i64().expect("id")
}

pub async fn held(app: &TestApp, foreign_id: &str) -> i64 {
    let id = api_withdrawal(app, foreign_id, "0.02", None).await;
    assert_eq!(app.status_of(foreign_id).await["status"], "pending");
    id
}

pub async fn status(app: &TestApp, id: i64) -> String {
    countersign::db::withdrawals::by_id(&app.state.db, id)
        .await
        .expect("read")
        .expect("exists")
        .status
        .as_str()
        .to_string()
}

/// Waits until withdrawal `id` is paid out (the sandbox rail confirms at once), failing at
/// once if it is anywhere but on its way there (approved, processing).
pub async fn paid_out(app: &TestApp, id: i64) {
    eventually(&format!("withdrawal {id} confirmed"), || async {
        let s = status(app, id).await;
        assert!(
            ["approved", "processing", "confirmed"].contains(&s.as_str()),
            "withdrawal {id} is {s}"
        );
        (s == "confirmed").then_some(())
    })
    .await;
}

pub async fn votes(app: &TestApp, id: i64) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM withdrawal_votes WHERE withdrawal_id = $1")
        .bind(id)
        .fetch_one(app.state.db.reader())
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

/// A fresh code (the clock moves one step on first, so it is never a replay).
pub fn fresh_code(app: &TestApp, user: &TestUser) -> String {
    app.clock.advance_secs(30);
    app.code(user)
}

/// Opens the withdrawal's page (for its CSRF token), then approves or declines it there.
pub async fn decide(
    app: &TestApp,
    b: &Browser,
    user: &TestUser,
    id: i64,
    action: &str,
    note: &str,
) -> (u16, String, Option<String>) {
    let (s, _) = b.get(&format!("/withdrawals/{id}")).await;
    assert_eq!(s, 200);
    let code = fresh_code(app, user);
    b.post_form(
        &format!("/withdrawals/{id}/{action}"),
        &[("code", &code), ("note", note)],
    )
    .await
}

#[tokio::test]
async fn an_owner_approves_on_the_detail_page_and_the_payout_goes_out() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.set_callback(&rx.url).await;
    app.credit("BTC", "1").await;
    let earlier = api_withdrawal(&app, "earlier", "0.001", Some("player-7")).await;
    app.wait_for_status("earlier", "confirmed").await;
    let id = api_withdrawal(&app, "big-1", "0.02", Some("player-7")).await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;

    let (s, page) = b.get(&format!("/withdrawals/{id}")).await;
    assert_eq!(s, 200);
    let t = text(&page);
    for expected in [
        "What you are signing",
        "0.02000000 BTC",
        BTC_ADDR,
        "1200.00 EUR",
        "over the api per-operation limit",
        "0 of 1 approval; an owner's approval still needed",
        "id=\"approve-form\"",
        "id=\"decline-form\"",
        "End user player-7: earlier withdrawals",
        &format!("href=\"/withdrawals/{earlier}\""),
        "id=\"paid-before\"",
    ] {
        assert!(t.contains(expected), "detail lacks {expected:?}:\n{t}");
    }
    assert!(!t.contains("id=\"first-time\""));

    let code = fresh_code(&app, &owner);
    let (s, _, to) = b
        .post_form(&format!("/withdrawals/{id}/approve"), &[("code", &code)])
        .await;
    assert_eq!(s, 303);
    assert_eq!(
        to,
        Some(format!("/withdrawals/{id}?decided=approved#approval"))
    );
    app.wait_for_status("big-1", "confirmed").await;
    let got = eventually("confirmed callback", || async {
        rx.for_foreign_id("big-1")
            .into_iter()
            .map(|r| r.json())
            .find(|v| v["status"] == "confirmed")
    })
    .await;
    assert_eq!(got["foreign_id"], "big-1");

    // Decided withdrawals say who decided, and how.
    let (_, page) = b.get(&format!("/withdrawals/{id}")).await;
    let t = text(&page);
    assert!(t.contains(&format!("Approved by {}", owner.email)), "{t}");
    assert!(t.contains("this page"), "{t}");
    assert!(!t.contains("id=\"approve-form\""));
}

#[tokio::test]
async fn a_decline_with_a_note_tells_the_merchant_who_declined() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.set_callback(&rx.url).await;
    app.credit("BTC", "1").await;
    let id = held(&app, "dec-1").await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    let (s, _, to) = decide(&app, &b, &owner, id, "decline", "address on a watch list").await;
    assert_eq!(
        (s, to),
        (
            303,
            Some(format!("/withdrawals/{id}?decided=declined#approval"))
        )
    );
    let cb = eventually("declined callback", || async {
        rx.for_foreign_id("dec-1")
            .into_iter()
            .map(|r| r.json())
            .find(|v| v["status"] == "declined")
    })
    .await;
    assert_eq!(cb["error"], format!("Declined by user ID:{}", owner.id));
    assert_eq!(app.balance("BTC").await.1, "0.00000000");
    let (_, page) = b.get(&format!("/withdrawals/{id}")).await;
    assert!(text(&page).contains("address on a watch list"));
}

#[tokio::test]
async fn a_member_cannot_decide_an_over_limit_withdrawal() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let id = held(&app, "m-1").await;
    let member = app.create_user("member", true).await;
    let b = app.signed_in(&member).await;
    let (_, page) = b.get(&format!("/withdrawals/{id}")).await;
    let t = text(&page);
    assert!(t.contains("only an owner can decide it"), "{t}");
    assert!(!t.contains("id=\"approve-form\""));
    let (s, page, _) = decide(&app, &b, &member, id, "approve", "").await;
    assert_eq!(s, 403);
    assert!(text(&page).contains("Not recorded: it is over a limit: only an owner can decide it"));
    assert_eq!(status(&app, id).await, "pending");
    assert_eq!(votes(&app, id).await, 0);
}

#[tokio::test]
async fn the_loser_of_a_race_is_told_who_decided_and_when() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let id = held(&app, "race-1").await;
    let (alice, bob) = (
        app.create_user("owner", true).await,
        app.create_user("owner", true).await,
    );
    let a = app.signed_in(&alice).await;
    let b = app.signed_in(&bob).await;
    // Both have the page open with the buttons; Alice is first.
    b.get(&format!("/withdrawals/{id}")).await;
    let (s, _, _) = decide(&app, &a, &alice, id, "approve", "").await;
    assert_eq!(s, 303);
    let code = fresh_code(&app, &bob);
    let (s, page, _) = b
        .post_form(&format!("/withdrawals/{id}/decline"), &[("code", &code)])
        .await;
    assert_eq!(s, 409);
    let t = text(&page);
    assert!(t.contains("Not recorded: already "), "{t}");
    assert!(t.contains(&format!(" by {} at 20", alice.email)), "{t}");
    assert_eq!(votes(&app, id).await, 1);
}

#[tokio::test]
async fn a_missing_wrong_or_replayed_code_changes_nothing() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (w1, w2) = (held(&app, "c-1").await, held(&app, "c-2").await);
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    b.get(&format!("/withdrawals/{w1}")).await;
    for code in ["", "000000", "12"] {
        let (s, page, _) = b
            .post_form(&format!("/withdrawals/{w1}/approve"), &[("code", code)])
            .await;
        assert_eq!(s, 422, "code {code:?}");
        assert!(text(&page).contains("Verification code: "), "{page}");
    }
    assert_eq!(
        (status(&app, w1).await, votes(&app, w1).await),
        ("pending".into(), 0)
    );

    // A code works once: the same code on the next withdrawal is refused.
    let code = fresh_code(&app, &owner);
    b.get(&format!("/withdrawals/{w1}")).await;
    let (s, _, _) = b
        .post_form(&format!("/withdrawals/{w1}/approve"), &[("code", &code)])
        .await;
    assert_eq!(s, 303);
    b.get(&format!("/withdrawals/{w2}")).await;
    let (s, page, _) = b
        .post_form(&format!("/withdrawals/{w2}/approve"), &[("code", &code)])
        .await;
    assert_eq!(s, 422);
    assert!(text(&page).contains("already used"), "{page}");
    assert_eq!(
        (status(&app, w2).await, votes(&app, w2).await),
        ("pending".into(), 0)
    );
}

#[tokio::test]
async fn decisions_without_the_csrf_token_are_refused() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let id = held(&app, "csrf-1").await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    b.get(&format!("/withdrawals/{id}")).await;
    let code = fresh_code(&app, &owner);
    let ids = id.to_string();
    for (path, fields) in [
        (
            format!("/withdrawals/{id}/approve"),
            vec![("code", code.as_str())],
        ),
        (
            format!("/withdrawals/{id}/decline"),
            vec![("code", code.as_str())],
        ),
        (
            "/approvals/bulk".to_string(),
            vec![
                ("code", code.as_str()),
                ("id", ids.as_str()),
                ("decision", "approve"),
            ],
        ),
    ] {
        let (s, _, _) = b.post_raw(&path, &fields, Some(&app.base)).await;
        assert_eq!(s, 403, "{path}");
    }
    // A right token from another site's page is refused too.
    let token = b.csrf.lock().expect("lock").clone();
    let (s, _, _) = b
        .post_raw(
            &format!("/withdrawals/{id}/approve"),
            &[("code", &code), ("csrf", &token)],
            Some("https://evil.test"),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        (status(&app, id).await, votes(&app, id).await),
        ("pending".into(), 0)
    );
}
