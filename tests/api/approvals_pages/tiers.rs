//! Approval tiers in settings: owners add and remove them with a fresh code (audited),
//! members cannot, bad input is named, and a tier really asks for two approvers.

use super::{api_withdrawal, decide, fresh_code, paid_out, status, text};
use crate::helpers::spawn_app;
use sqlx::Row;

async fn audit_count(app: &crate::helpers::TestApp, action: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE action = $1")
        .bind(action)
        .fetch_one(app.state.db.reader())
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

#[tokio::test]
async fn owners_set_tiers_and_a_tier_needs_two_approvers() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (alice, bob) = (
        app.create_user("owner", true).await,
        app.create_user("owner", true).await,
    );
    let member = app.create_user("member", true).await;
    let b = app.signed_in(&alice).await;
    let (s, _) = b.get("/settings/tiers").await;
    assert_eq!(s, 200);

    // Bad input: each field named, nothing saved.
    for (min, approvers, field) in [
        ("-5", "2", "error-min"),
        ("1e3", "2", "error-min"),
        ("500", "11", "error-approvers"),
        ("500", "0", "error-approvers"),
    ] {
        let code = fresh_code(&app, &alice);
        let (s, page, _) = b
            .post_form(
                "/settings/tiers",
                &[
                    ("scope", "api"),
                    ("min", min),
                    ("approvers", approvers),
                    ("code", &code),
                ],
            )
            .await;
        assert_eq!(s, 422, "{min} {approvers}");
        assert!(
            page.contains(&format!("id=\"{field}\"")),
            "{min} {approvers}: {page}"
        );
    }
    let (s, page, _) = b
        .post_form(
            "/settings/tiers",
            &[
                ("scope", "api"),
                ("min", "500"),
                ("approvers", "2"),
                ("code", "000000"),
            ],
        )
        .await;
    assert_eq!(s, 422);
    assert!(page.contains("id=\"error-code\""));
    assert_eq!(app.count("approval_tiers").await, 0);

    let code = fresh_code(&app, &alice);
    let (s, _, to) = b
        .post_form(
            "/settings/tiers",
            &[
                ("scope", "api"),
                ("min", "500.00"),
                ("approvers", "2"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!((s, to.as_deref()), (303, Some("/settings/tiers?done=set")));
    let (_, page) = b.get("/settings/tiers?done=set").await;
    assert!(text(&page).contains("id=\"tier-api-500\""), "{page}");
    assert_eq!(audit_count(&app, "approval_tier.set").await, 1);

    // Members: no page, no change.
    let bm = app.signed_in(&member).await;
    assert_eq!(bm.get("/settings/tiers").await.0, 403);
    bm.get("/").await;
    let code = fresh_code(&app, &member);
    let (s, _, _) = bm
        .post_form(
            "/settings/tiers",
            &[
                ("scope", "api"),
                ("min", "100"),
                ("approvers", "3"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(app.count("approval_tiers").await, 1);

    // 0.01 BTC is 600 EUR: within the limits, but at the 500 EUR tier: two approvers.
    let id = api_withdrawal(&app, "tier-1", "0.01", None).await;
    assert_eq!(status(&app, id).await, "pending");
    let (s, _, to) = decide(&app, &b, &alice, id, "approve", "").await;
    assert_eq!(
        (s, to),
        (
            303,
            Some(format!("/withdrawals/{id}?decided=recorded#approval"))
        )
    );
    assert_eq!(status(&app, id).await, "pending");
    let (_, page) = b.get(&format!("/withdrawals/{id}")).await;
    assert!(text(&page).contains("So far: 1 of 2 approvals."), "{page}");
    let bb = app.signed_in(&bob).await;
    let (s, _, to) = decide(&app, &bb, &bob, id, "approve", "").await;
    assert_eq!(
        (s, to),
        (
            303,
            Some(format!("/withdrawals/{id}?decided=approved#approval"))
        )
    );
    paid_out(&app, id).await;

    // Remove it, with a code.
    b.get("/settings/tiers").await;
    let code = fresh_code(&app, &alice);
    let (s, _, to) = b
        .post_form(
            "/settings/tiers/remove",
            &[("scope", "api"), ("min", "500"), ("code", &code)],
        )
        .await;
    assert_eq!(
        (s, to.as_deref()),
        (303, Some("/settings/tiers?done=removed"))
    );
    assert_eq!(app.count("approval_tiers").await, 0);
    assert_eq!(audit_count(&app, "approval_tier.removed").await, 1);
}
