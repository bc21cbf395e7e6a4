//! Attacks on sign-in beyond the one-request-at-a-time cases of `signin.rs`: bursts of
//! guessed codes and of wrong passwords sent at once, and hostile return paths after sign-in.

use crate::helpers::{TestApp, spawn_app};

/// How many audit records of `action` the project has.
async fn audited(app: &TestApp, action: &str) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE action = $1")
        .bind(action)
        .fetch_one(app.state.db.reader())
        .await
        .expect("count")
        .try_get::<i64, _>("n")
        .expect("n")
}

#[tokio::test]
async fn a_burst_of_guessed_codes_gets_no_more_than_five_checked_then_the_right_one_is_refused() {
    let app = spawn_app().await;
    let user = app.create_user("owner", true).await;
    let b = crate::signin::at_code_step(&app, &user).await;
    app.clock.advance_secs(30);
    let right = app.code(&user);
    let wrong = format!(
        "{:06}",
        (right.parse::<u32>().expect("digits") + 500_000) % 1_000_000
    );

    let form = [("code", wrong.as_str())];
    let answers =
        futures_util::future::join_all((0..40).map(|_| b.post_form("/login/totp", &form))).await;
    assert!(
        answers.iter().all(|(_, _, location)| location.is_none()),
        "a wrong code signed in"
    );
    assert_eq!(audited(&app, "totp.failed").await, 5);
    assert_eq!(audited(&app, "signin.lockout").await, 1);

    // Locked: the right code, sent now, does not get in either.
    let (_, page, location) = b.post_form("/login/totp", &[("code", &right)]).await;
    assert_eq!(location, None);
    assert!(page.contains("locked"), "{page}");
    // Once the lock is over, it does.
    app.clock.advance_secs(16 * 60);
    let (status, _, location) = b
        .post_form("/login/totp", &[("code", &app.code(&user))])
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/")));
}

#[tokio::test]
async fn wrong_passwords_sent_at_once_are_all_counted_and_lock_once() {
    let app = spawn_app().await;
    let user = app.create_user("member", false).await;
    let b = app.browser();
    b.get("/login").await;
    let form = [
        ("email", user.email.as_str()),
        ("password", "not the password"),
    ];
    let answers =
        futures_util::future::join_all((0..12).map(|_| b.post_form("/login", &form))).await;
    assert!(answers.iter().all(|(status, _, _)| *status == 401));
    assert_eq!(audited(&app, "signin.lockout").await, 1);
    // Locked: the right password does not get past the first step.
    let (status, _, location) = b
        .post_form(
            "/login",
            &[("email", &user.email), ("password", &user.password)],
        )
        .await;
    assert_eq!((status, location), (401, None));
}

#[tokio::test]
async fn after_sign_in_only_a_path_on_this_site_is_followed() {
    let app = spawn_app().await;
    let user = app.create_user("member", false).await;
    let b = app.signed_in(&user).await;
    let location_for = |next: &'static str| {
        let b = b.clone();
        async move {
            let r = b
                .http
                .get(format!("{}/login?next={next}", b.base))
                .send()
                .await
                .expect("get");
            assert_eq!(r.status().as_u16(), 303, "{next}");
            r.headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        }
    };
    for hostile in [
        "https://evil.example/",
        "//evil.example/",
        "/%09/evil.example",
        "/%0a/evil.example",
        "/%0D%0A/evil.example",
        "/%5Cevil.example",
        "/%20/evil.example",
        "evil.example",
    ] {
        assert_eq!(
            location_for(hostile).await.as_deref(),
            Some("/"),
            "{hostile}"
        );
    }
    assert_eq!(
        location_for("/withdrawals%3Fstatus%3Dpending")
            .await
            .as_deref(),
        Some("/withdrawals?status=pending")
    );
}
