//! Signing in: password then TOTP, replay guard, lockout, CSRF, session fixation and timeouts.

use crate::helpers::{csrf_in, spawn_app};

#[tokio::test]
async fn password_then_code_signs_in_and_renews_the_session_id() {
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    let b = app.browser();
    b.get("/login").await;
    let anon = b.session_cookie().expect("anonymous session");
    let (status, _, location) = b
        .post_form(
            "/login",
            &[
                ("email", &alice.email.to_uppercase()),
                ("password", &alice.password),
            ],
        )
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/login/totp")));
    let half = b.session_cookie().unwrap();
    assert_ne!(anon, half, "session id must change at the password step");
    let (status, page) = b.get("/login/totp").await;
    assert_eq!(status, 200);
    assert!(csrf_in(&page).is_some());
    let (status, _, location) = b
        .post_form("/login/totp", &[("code", &app.code(&alice))])
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/")));
    let full = b.session_cookie().unwrap();
    assert_ne!(half, full, "session id must change at the code step");
    let (status, page) = b.get("/account/sessions").await;
    assert_eq!(status, 200);
    assert!(page.contains(&alice.email));
    // The earlier ids are dead: presenting them gets a visitor sent to sign in.
    for old in [anon, half] {
        let (status, _) = b.with_cookie(&old).get("/account/sessions").await;
        assert_eq!(status, 303);
    }
}
