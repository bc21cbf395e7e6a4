//! Manual payouts from the dashboard: the happy path, field errors with values kept, API
//! refusals on the page, and the refusal when nobody else could approve.

use super::{fresh_code, paid_out, text};
use crate::helpers::{BTC_ADDR, Browser, TestApp, TestUser, spawn_app};

/// Fills the payout form as `user` and returns the new withdrawal's id.
pub async fn manual_payout(
    app: &TestApp,
    b: &Browser,
    user: &TestUser,
    amount: &str,
    foreign_id: &str,
) -> i64 {
    let (s, _) = b.get("/payouts/new").await;
    assert_eq!(s, 200);
    let code = fresh_code(app, user);
    let (s, page, to) = b
        .post_form(
            "/payouts",
            &[
                ("currency", "BTC"),
                ("address", BTC_ADDR),
                ("amount", amount),
                ("foreign_id", foreign_id),
                ("end_user_reference", "desk"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(s, 303, "{page}");
    let to = to.expect("location");
    to.trim_start_matches("/withdrawals/")
        .split('?')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("redirect {to}"))
}

#[tokio::test]
async fn a_manual_payout_within_limits_goes_straight_to_payout() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    let id = manual_payout(&app, &b, &owner, "0.01", "").await;
    let (_, page) = b.get(&format!("/withdrawals/{id}?created=1")).await;
    let t = text(&page);
    assert!(t.contains("Payout created."), "{t}");
    assert!(
        t.contains(&format!(
            "{} <span class=\"muted small\">through the dashboard",
            owner.email
        )),
        "{t}"
    );
    assert!(t.contains("dash-"), "a foreign id was generated: {t}");
    let w = countersign::db::withdrawals::by_id(&app.state.db, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (w.initiator_kind.as_str(), w.initiator_id.as_str()),
        ("user", owner.id.as_str())
    );
    assert_eq!(w.end_user_reference.as_deref(), Some("desk"));
    paid_out(&app, id).await;
}

#[tokio::test]
async fn the_payout_form_names_bad_fields_keeps_values_and_shows_api_refusals() {
    let app = spawn_app().await;
    app.credit("BTC", "0.001").await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    b.get("/payouts/new").await;
    let cases: [(&str, &str, &str, &str, &str); 4] = [
        ("BTC", "not-an-address", "0.01", "error-address", "address "),
        ("BTC", BTC_ADDR, "1.5.0", "error-amount", ""),
        ("", BTC_ADDR, "0.01", "error-currency", "is required"),
        ("BTC", BTC_ADDR, "0.00001", "error-amount", ""),
    ];
    for (currency, address, amount, id, says) in cases {
        let code = fresh_code(&app, &owner);
        let (s, page, _) = b
            .post_form(
                "/payouts",
                &[
                    ("currency", currency),
                    ("address", address),
                    ("amount", amount),
                    ("code", &code),
                ],
            )
            .await;
        assert_eq!(s, 422, "{id}: {page}");
        let t = text(&page);
        assert!(t.contains(&format!("id=\"{id}\">{says}")), "{id}:\n{t}");
        assert!(
            t.contains(&format!("name=\"address\" value=\"{address}\"")),
            "value kept: {t}"
        );
    }
    // Not enough money: the API's refusal, on the page.
    let code = fresh_code(&app, &owner);
    let (s, page, _) = b
        .post_form(
            "/payouts",
            &[
                ("currency", "BTC"),
                ("address", BTC_ADDR),
                ("amount", "0.01"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(s, 422);
    assert!(
        text(&page).contains("Not enough money on balance (balance_not_enough)"),
        "{page}"
    );
    assert_eq!(app.count("withdrawals").await, 0);
    // Members without withdrawal rights get no form.
    let member = app.create_user("member", false).await;
    let bm = app.signed_in(&member).await;
    assert_eq!(bm.get("/payouts/new").await.0, 403);
}

#[tokio::test]
async fn a_payout_nobody_else_could_approve_is_refused_and_creates_nothing() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let owner = app.create_user("owner", true).await;
    // A member with rights cannot approve an over-limit payout: an owner must.
    let _member = app.create_user("member", true).await;
    let b = app.signed_in(&owner).await;
    let before = app.balance("BTC").await;
    b.get("/payouts/new").await;
    let code = fresh_code(&app, &owner);
    let (s, page, _) = b
        .post_form(
            "/payouts",
            &[
                ("currency", "BTC"),
                ("address", BTC_ADDR),
                ("amount", "0.02"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(s, 422);
    let t = text(&page);
    assert!(t.contains("This payout would need 1 approval by someone other than you, at least one of them an owner"), "{t}");
    assert!(
        t.contains("nobody else in the project can approve it, so nothing was created"),
        "{t}"
    );
    assert!(t.contains("over the dashboard per-operation limit"), "{t}");
    assert_eq!(app.count("withdrawals").await, 0);
    assert_eq!(app.balance("BTC").await, before);
    // The code was not asked for yet, so it is still good for a payout within the limits.
    let (s, _, _) = b
        .post_form(
            "/payouts",
            &[
                ("currency", "BTC"),
                ("address", BTC_ADDR),
                ("amount", "0.01"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(s, 303);
    assert_eq!(app.count("withdrawals").await, 1);
}

#[tokio::test]
async fn an_operator_gate_refusal_is_shown_on_the_payout_form_and_creates_nothing() {
    use countersign::db::audit::{Actor, Origin};
    let gate = crate::helpers::Receiver::start().await;
    gate.answer_with_body(
        200,
        &[("Content-Type", "application/json")],
        r#"{"error": 4, "description": "desk payouts are paused"}"#,
    );
    let app = spawn_app().await;
    countersign::service::settings::set_validation_url(
        &app.state,
        app.project_id(),
        &gate.url,
        &Actor::Cli,
        &Origin::default(),
    )
    .await
    .unwrap();
    app.credit("BTC", "1").await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    b.get("/payouts/new").await;
    let code = fresh_code(&app, &owner);
    let (s, page, _) = b
        .post_form(
            "/payouts",
            &[
                ("currency", "BTC"),
                ("address", BTC_ADDR),
                ("amount", "0.01"),
                ("foreign_id", "desk-1"),
                ("code", &code),
            ],
        )
        .await;
    assert_ne!(s, 303, "{page}");
    let t = text(&page);
    assert!(
        t.contains("user not eligible") && t.contains("desk payouts are paused"),
        "{t}"
    );
    assert_eq!(gate.all().len(), 1, "the operator was asked once");
    assert_eq!(gate.all()[0].json()["scope"], "dashboard");
    assert_eq!(app.count("withdrawals").await, 0);
    assert_eq!(app.balance("BTC").await.1, "0.00000000", "nothing held");
}
