//! Signing in: password then TOTP, replay guard, lockout, CSRF, session fixation and timeouts.

use crate::helpers::{csrf_in, spawn_app, spawn_app_with};

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

/// A browser past the password step, at the code step.
pub(crate) async fn at_code_step(
    app: &crate::helpers::TestApp,
    user: &crate::helpers::TestUser,
) -> crate::helpers::Browser {
    let b = app.browser();
    b.get("/login").await;
    let (status, _, _) = b
        .post_form(
            "/login",
            &[("email", &user.email), ("password", &user.password)],
        )
        .await;
    assert_eq!(status, 303);
    b.get("/login/totp").await;
    b
}

#[tokio::test]
async fn a_code_is_accepted_once_even_by_twenty_racing_requests() {
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    app.clock.advance_secs(30);
    let code = app.code(&alice);
    let first = at_code_step(&app, &alice).await;
    let (status, _, _) = first.post_form("/login/totp", &[("code", &code)]).await;
    assert_eq!(status, 303);
    // The same code again, sequentially: refused as a replay.
    let again = at_code_step(&app, &alice).await;
    let (status, page, _) = again.post_form("/login/totp", &[("code", &code)]).await;
    assert_eq!(status, 401);
    assert!(page.contains("already used"), "{page}");

    // Next step: 20 browsers at the code step submit the same fresh code at once.
    app.clock.advance_secs(30);
    let code = app.code(&alice);
    let mut browsers = Vec::new();
    for _ in 0..20 {
        browsers.push(at_code_step(&app, &alice).await);
    }
    let tasks: Vec<_> = browsers
        .into_iter()
        .map(|b| {
            let code = code.clone();
            tokio::spawn(async move {
                let (status, page, _) = b.post_form("/login/totp", &[("code", &code)]).await;
                (status, page)
            })
        })
        .collect();
    let (mut won, mut replayed, mut held_back) = (0, 0, 0);
    for t in tasks {
        let (status, page) = t.await.unwrap();
        match status {
            303 => won += 1,
            401 if page.contains("already used") => replayed += 1,
            // At most five codes are checked at once per account (see hardening.rs).
            401 if page.contains("being tried for this account at once") => held_back += 1,
            other => panic!("answered {other}: {page}"),
        }
    }
    assert_eq!(
        won, 1,
        "exactly one of the racing requests may use the code"
    );
    assert_eq!(replayed + held_back, 19);
    let replays = app
        .count("audit_log WHERE action = 'totp.replay_refused'")
        .await;
    assert_eq!(replays, 1 + replayed);
    // Replays of a right code are no guesses: nothing was locked.
    assert_eq!(
        app.count("audit_log WHERE action = 'signin.lockout'").await,
        0
    );
}

#[tokio::test]
async fn an_older_code_than_the_last_accepted_one_is_refused() {
    let app = spawn_app().await;
    let alice = app.create_user("member", true).await;
    app.clock.advance_secs(30);
    let older = app.code(&alice);
    let older_step = countersign::clock::Clock::now_ms(&app.clock) / 1000 / 30;
    app.clock.advance_secs(30);
    let newer = app.code(&alice);
    let b = at_code_step(&app, &alice).await;
    assert_eq!(b.post_form("/login/totp", &[("code", &newer)]).await.0, 303);
    // Still inside the one-step drift window (so it is not simply a wrong code), but its step
    // is not later than the last one: refused as a replay, and recorded as one.
    let b = at_code_step(&app, &alice).await;
    let (status, page, _) = b.post_form("/login/totp", &[("code", &older)]).await;
    assert_eq!(status, 401);
    assert!(page.contains("That code was already used"), "{page}");
    let replays: Vec<String> =
        sqlx::query("SELECT details FROM audit_log WHERE action = 'totp.replay_refused'")
            .fetch_all(app.state.db.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| sqlx::Row::get(r, "details"))
            .collect();
    assert_eq!(
        replays,
        [serde_json::json!({"step": older_step}).to_string()]
    );
}

#[tokio::test]
async fn wrong_passwords_and_codes_lock_the_account_and_the_lock_ends() {
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    let b = app.browser();
    b.get("/login").await;
    for _ in 0..10 {
        let (status, page, _) = b
            .post_form(
                "/login",
                &[
                    ("email", &alice.email),
                    ("password", "not the password at all"),
                ],
            )
            .await;
        assert_eq!(status, 401);
        assert!(page.contains("email or password is wrong"));
    }
    // Locked: even the right password is refused, with the same words as for a wrong one.
    let (status, page, _) = b
        .post_form(
            "/login",
            &[("email", &alice.email), ("password", &alice.password)],
        )
        .await;
    assert_eq!(status, 401);
    assert!(page.contains("email or password is wrong"));
    // An unknown email gets exactly the same answer.
    let (status2, page2, _) = b
        .post_form(
            "/login",
            &[("email", "nobody@acme.test"), ("password", &alice.password)],
        )
        .await;
    assert_eq!(status2, 401);
    assert_eq!(
        strip_csrf(&page),
        strip_csrf(&page2.replace("nobody@acme.test", &alice.email))
    );
    // The user was told by email.
    let mail = crate::helpers::eventually("lockout email", || async {
        use sqlx::Row;
        sqlx::query("SELECT subject, text_body FROM dev_mailbox WHERE to_addr = $1")
            .bind(&alice.email)
            .fetch_optional(app.state.db.reader())
            .await
            .unwrap()
            .map(|r| r.try_get::<String, _>("text_body").unwrap())
    })
    .await;
    assert!(mail.contains("locked for 15 minutes"), "{mail}");
    // After 15 minutes the right password works again.
    app.clock.advance_secs(15 * 60 + 1);
    let (status, _, _) = b
        .post_form(
            "/login",
            &[("email", &alice.email), ("password", &alice.password)],
        )
        .await;
    assert_eq!(status, 303);

    // Five wrong codes lock it too.
    b.get("/login/totp").await;
    for _ in 0..5 {
        let (status, _, _) = b.post_form("/login/totp", &[("code", "000000")]).await;
        assert_eq!(status, 401);
    }
    app.clock.advance_secs(30);
    let (status, page, _) = b
        .post_form("/login/totp", &[("code", &app.code(&alice))])
        .await;
    assert_eq!(status, 401);
    assert!(page.contains("locked"), "{page}");
    app.clock.advance_secs(15 * 60 + 1);
    // The half-signed-in session timed out meanwhile; start again.
    let b = at_code_step(&app, &alice).await;
    assert_eq!(
        b.post_form("/login/totp", &[("code", &app.code(&alice))])
            .await
            .0,
        303
    );
    assert!(app.count("audit_log WHERE action = 'signin.lockout'").await >= 2);
}

fn strip_csrf(page: &str) -> String {
    match csrf_in(page) {
        Some(t) => page.replace(&t, ""),
        None => page.to_string(),
    }
}

#[tokio::test]
async fn recovery_codes_replace_a_code_once_each() {
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    // Enroll afresh through the pages to get recovery codes.
    let b = app.signed_in(&alice).await;
    drop(b);
    let mut tx = app.state.db.begin().await.unwrap();
    countersign::db::users::reset_totp(&mut tx, &alice.id, 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let b = app.browser();
    b.get("/login").await;
    let (_, _, location) = b
        .post_form(
            "/login",
            &[("email", &alice.email), ("password", &alice.password)],
        )
        .await;
    assert_eq!(location.as_deref(), Some("/login/enroll"));
    let (status, page) = b.get("/login/enroll").await;
    assert_eq!(status, 200);
    // The QR code is inline (a data: URI; tera escapes its slash as an entity).
    assert!(
        page.contains("src=\"data:image&#x2F;png;base64,"),
        "QR code inline"
    );
    let secret = secret_on(&page);
    app.clock.advance_secs(30);
    let code =
        countersign::auth::totp::code_at(&secret, countersign::clock::Clock::now_ms(&app.clock))
            .unwrap();
    let (status, page, _) = b.post_form("/login/enroll", &[("code", &code)]).await;
    assert_eq!(status, 200);
    let codes: Vec<String> = page
        .match_indices("<li><code>")
        .map(|(i, _)| page[i + 10..i + 24].to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    // The enrollment code burnt its step: it cannot sign in again.
    let again = at_code_step(&app, &alice).await;
    assert_eq!(
        again.post_form("/login/totp", &[("code", &code)]).await.0,
        401
    );
    // A recovery code works once.
    let r = at_code_step(&app, &alice).await;
    assert_eq!(
        r.post_form("/login/totp", &[("code", &codes[0])]).await.0,
        303
    );
    let r = at_code_step(&app, &alice).await;
    assert_eq!(
        r.post_form("/login/totp", &[("code", &codes[0])]).await.0,
        401
    );
}

fn secret_on(page: &str) -> Vec<u8> {
    let start = page
        .find("id=\"totp-secret\">")
        .expect("secret on the page")
        + "id=\"totp-secret\">".len();
    let end = start + page[start..].find('<').unwrap();
    countersign::auth::totp::from_base32(&page[start..end]).expect("base32 secret")
}

#[tokio::test]
async fn forms_without_the_right_csrf_token_or_origin_are_refused() {
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    let b = app.signed_in(&alice).await;
    b.get("/account/password").await;
    let token = b.csrf.lock().unwrap().clone();
    let new = [
        ("current", alice.password.as_str()),
        ("new", "a brand new passphrase"),
        ("confirm", "a brand new passphrase"),
    ];
    // Missing token, wrong token, right token but a foreign or missing Origin.
    let (s1, _, _) = b.post_raw("/account/password", &new, Some(&app.base)).await;
    let mut wrong = new.to_vec();
    wrong.push(("csrf", "forged"));
    let (s2, _, _) = b
        .post_raw("/account/password", &wrong, Some(&app.base))
        .await;
    let mut right = new.to_vec();
    right.push(("csrf", &token));
    let (s3, _, _) = b
        .post_raw("/account/password", &right, Some("https://evil.example"))
        .await;
    let (s4, _, _) = b.post_raw("/account/password", &right, None).await;
    assert_eq!([s1, s2, s3, s4], [400, 403, 403, 403]);
    // What a browser sends under our no-referrer policy: Origin null plus Sec-Fetch-Site.
    let fetch = |site: &'static str| {
        let form = right.clone();
        let req = b
            .http
            .post(format!("{}/account/password", app.base))
            .header("Origin", "null")
            .header("Sec-Fetch-Site", site)
            .form(&form);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(fetch("cross-site").await, 403);
    assert_eq!(fetch("same-site").await, 403);
    // Nothing changed: the old password still signs in.
    app.clock.advance_secs(30);
    let _ = app.signed_in(&alice).await;
    // The same form with token and origin works.
    let (s5, _, location) = b
        .post_raw("/account/password", &right, Some(&app.base))
        .await;
    assert_eq!(
        (s5, location.as_deref()),
        (303, Some("/account/password?done=1"))
    );
}

#[tokio::test]
async fn sessions_end_when_idle_too_long_or_past_their_absolute_lifetime() {
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    let b = app.signed_in(&alice).await;
    app.clock.advance_secs(29 * 60);
    assert_eq!(b.get("/account/sessions").await.0, 200);
    app.clock.advance_secs(31 * 60);
    assert_eq!(
        b.get("/account/sessions").await.0,
        303,
        "idle for 31 minutes"
    );

    // Used every 20 minutes, a session still ends 12 hours after sign-in.
    let b = app.signed_in(&alice).await;
    for _ in 0..35 {
        app.clock.advance_secs(20 * 60);
        assert_eq!(b.get("/account/sessions").await.0, 200);
    }
    app.clock.advance_secs(20 * 60 + 1);
    assert_eq!(b.get("/account/sessions").await.0, 303, "past 12 hours");
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions_and_sessions_can_be_ended_by_hand() {
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    let laptop = app.signed_in(&alice).await;
    let phone = app.signed_in(&alice).await;
    let (_, page) = laptop.get("/account/sessions").await;
    assert_eq!(page.matches("name=\"id\"").count(), 2);
    // End the phone's session from the laptop.
    let phone_hash = countersign::crypto::sha256_hex(phone.session_cookie().unwrap().as_bytes());
    let (status, _, _) = laptop
        .post_form("/account/sessions/end", &[("id", &phone_hash)])
        .await;
    assert_eq!(status, 303);
    assert_eq!(phone.get("/account/sessions").await.0, 303);
    // A new phone session, then a password change on the laptop ends it.
    let phone = app.signed_in(&alice).await;
    laptop.get("/account/password").await;
    let new = "another long passphrase";
    let (status, _, _) = laptop
        .post_form(
            "/account/password",
            &[("current", &alice.password), ("new", new), ("confirm", new)],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(phone.get("/account/sessions").await.0, 303);
    assert_eq!(
        laptop.get("/account/sessions").await.0,
        200,
        "the changer stays signed in"
    );
    // Weak new passwords are refused with the reason.
    laptop.get("/account/password").await;
    let (status, page, _) = laptop
        .post_form(
            "/account/password",
            &[
                ("current", new),
                ("new", "password1234"),
                ("confirm", "password1234"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("most common passwords"));
}

#[tokio::test]
async fn password_attempts_are_limited_per_address_across_accounts() {
    // The shipped default, from behind a trusted proxy so that each test "address" is one.
    let limit = countersign::config::Settings::default()
        .sessions
        .signin_attempts_per_minute;
    assert_eq!(limit, 20);
    let app = spawn_app_with(move |s| {
        s.sessions.signin_attempts_per_minute = limit;
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let alice = app.create_user("owner", true).await;
    let sprayer = app.browser_from("203.0.113.9");
    sprayer.get("/login").await;
    // One common password tried on many accounts (alice's among them): each refused like any
    // wrong password, none of them enough to lock an account.
    for i in 0..limit {
        let email = if i == 7 {
            alice.email.clone()
        } else {
            format!("victim{i}@acme.test")
        };
        let (status, _, _) = sprayer
            .post_form("/login", &[("email", &email), ("password", "Winter2026!")])
            .await;
        assert_eq!(status, 401, "attempt {i}");
    }
    let failed_before = app.count("audit_log WHERE action LIKE 'signin.%'").await;
    assert_eq!(failed_before, 1, "alice's one wrong password is audited");

    // The next attempt from that address is refused before any account is looked at, even
    // with alice's right password: 429, and when to try again (20 a minute: one every 3 s).
    let attempt = |b: &crate::helpers::Browser, password: String| {
        let b = b.clone();
        let email = alice.email.clone();
        async move {
            let csrf = b.csrf.lock().unwrap().clone();
            let r = b
                .http
                .post(format!("{}/login", b.base))
                .header("Origin", &b.base)
                .form(&[
                    ("email", email.as_str()),
                    ("password", &password),
                    ("csrf", &csrf),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (status, retry, r.text().await.unwrap())
        }
    };
    let (status, retry, page) = attempt(&sprayer, alice.password.clone()).await;
    assert_eq!((status, retry.as_deref()), (429, Some("3")));
    assert!(
        page.contains("Too many sign-in attempts from this address. Try again in 3 seconds."),
        "{page}"
    );
    assert_eq!(
        app.count("audit_log WHERE action LIKE 'signin.%'").await,
        failed_before,
        "nothing was checked or recorded for the refused attempt"
    );
    assert_eq!(
        app.metric("countersign_signin_failures_total{factor=\"throttled\"}")
            .await,
        1.0
    );

    // The admin API's token endpoint shares the budget: the same refusal in its format.
    let r = app
        .http
        .post(app.url("/admin/api/token"))
        .header("X-Forwarded-For", "203.0.113.9")
        .json(&serde_json::json!({"email": alice.email, "password": alice.password, "code": app.code(&alice)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");
    assert_eq!(body["error"]["details"]["retry_after_secs"], 3);

    // Alice, from her own address, is not affected: the limit is per address, and her
    // account was never locked.
    let own = app.browser_from("198.51.100.20");
    own.get("/login").await;
    let (status, _, location) = own
        .post_form(
            "/login",
            &[("email", &alice.email), ("password", &alice.password)],
        )
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/login/totp")));

    // Three seconds later the sprayer has one attempt again, checked as usual.
    app.clock.advance_secs(3);
    let (status, _, _) = attempt(&sprayer, "Spring2026!".into()).await;
    assert_eq!(status, 401);
    let (status, _, _) = attempt(&sprayer, "Summer2026!".into()).await;
    assert_eq!(status, 429);
}
