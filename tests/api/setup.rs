//! First run: the one-time setup link creates the first project and its owner.

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_setup_link_creates_the_first_owner_once() {
    let app = spawn_app().await;
    let now = countersign::clock::Clock::now_ms(&app.clock);
    let token = countersign::web::setup::token_if_first_run(&app.state.db, now)
        .await
        .unwrap()
        .expect("no users yet: a token");
    let b = app.browser();
    let (status, page) = b.get(&format!("/setup/{token}")).await;
    assert_eq!(status, 200, "{page}");
    // Bad input: named on the page, nothing created.
    let (status, page, _) = b
        .post_form(
            &format!("/setup/{token}"),
            &[
                ("project_name", "Acme"),
                ("primary_email", "ops@acme.test"),
                ("email", "me@acme.test"),
                ("password", "short"),
                ("base_currency", "EUR"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        page.contains("Password must be at least 12 characters"),
        "{page}"
    );
    assert_eq!(app.count("users").await, 0);
    let (status, page, _) = b
        .post_form(
            &format!("/setup/{token}"),
            &[
                ("project_name", "Acme Two"),
                ("primary_email", "ops@acme.test"),
                ("email", "me@acme.test"),
                ("password", "the first owner's passphrase"),
                ("base_currency", "USD"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"api-secret\""), "credentials shown once");
    // Next: TOTP enrollment for the new owner.
    let (status, page) = b.get("/login/enroll").await;
    assert_eq!(status, 200);
    assert!(page.contains("me@acme.test"));
    // The link is single use, and no second token is issued once someone exists.
    let (status, _) = app.browser().get(&format!("/setup/{token}")).await;
    assert_eq!(status, 400);
    assert!(
        countersign::web::setup::token_if_first_run(&app.state.db, now)
            .await
            .unwrap()
            .is_none()
    );
}
