//! Invitations: accepting one (password, then TOTP enrollment), single use, expiry, weak
//! passwords, bad input, a new link replacing the old one.

use crate::helpers::eventually;
use crate::helpers::spawn_app;
use crate::team::{
    fresh_code, invite, invite_path, mails_to, signed_in, text_of, user, wrong_code,
};
use countersign::auth::totp;
use countersign::clock::Clock;
use countersign::db::users;
use sqlx::Row;

#[tokio::test]
async fn an_invited_user_sets_a_password_enrolls_and_is_signed_in() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    let email = "new.approver@acme.test";
    invite(&app, &b, &owner, email, "member", true).await;
    let (_, page) = b.get("/users").await;
    assert!(page.contains(email) && page.contains("invited"), "{page}");
    let invited = users::by_email(&app.state.db, email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (invited.status.as_str(), invited.password_hash.is_none()),
        ("invited", true)
    );

    // The token is stored only hashed.
    let path = invite_path(&app, email).await;
    let token = path.trim_start_matches("/invite/");
    assert!(token.len() >= 43, "at least 256 bits, url-safe: {token}");
    assert_eq!(app.count("invites").await, 1);
    let stored: String = sqlx::query("SELECT token_hash FROM invites")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
        .get("token_hash");
    assert_ne!(stored, token);
    assert_eq!(stored, countersign::crypto::sha256_hex(token.as_bytes()));

    // Opening the link twice consumes nothing.
    let visitor = app.browser();
    for _ in 0..2 {
        let (status, page) = visitor.get(&path).await;
        assert_eq!(status, 200);
        assert!(
            page.contains("Join Acme Casino") && page.contains(email),
            "{page}"
        );
    }
    let (status, _, location) = visitor
        .post_form(
            &path,
            &[
                ("password", "four random words here"),
                ("confirm", "four random words here"),
            ],
        )
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/login/enroll")));
    assert!(
        !signed_in(&visitor).await,
        "not signed in before enrolling the second factor"
    );

    let (status, page) = visitor.get("/login/enroll").await;
    assert_eq!(status, 200);
    let secret = totp::from_base32(&text_of(&page, "totp-secret").expect("secret shown")).unwrap();
    let code = totp::code_at(&secret, app.clock.now_ms()).unwrap();
    let (status, page, _) = visitor.post_form("/login/enroll", &[("code", &code)]).await;
    assert_eq!(status, 200);
    assert!(page.contains("recovery-codes"), "{page}");
    let (status, page) = visitor.get("/users").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!("{email} <span class=\"badge\">you</span>")),
        "{page}"
    );
    let active = user(&app, &invited.id).await;
    assert_eq!(active.status, "active");
    assert!(active.can_use_withdrawal_rights());

    // The password chosen works for a fresh sign-in.
    let again = app.browser();
    again.get("/login").await;
    let (status, _, location) = again
        .post_form(
            "/login",
            &[("email", email), ("password", "four random words here")],
        )
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/login/totp")));

    // The link is used up, and the audit log says who did what.
    let (status, page) = app.browser().get(&path).await;
    assert_eq!(status, 410);
    assert!(page.contains("already been accepted"), "{page}");
    let actions: Vec<String> =
        sqlx::query("SELECT action FROM audit_log WHERE subject = $1 ORDER BY seq")
            .bind(format!("user:{}", invited.id))
            .fetch_all(app.state.db.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("action"))
            .collect();
    assert_eq!(
        actions,
        ["user.invited", "user.invite_accepted", "totp.enrolled"]
    );
}

#[tokio::test]
async fn an_invitation_works_once_and_expires_after_72_hours() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    invite(&app, &b, &owner, "first@acme.test", "member", false).await;
    invite(&app, &b, &owner, "late@acme.test", "owner", false).await;
    let first = invite_path(&app, "first@acme.test").await;
    let late = invite_path(&app, "late@acme.test").await;

    // Used once, then refused, also to a second browser posting the form.
    let v = app.browser();
    v.get(&first).await;
    let pw = "correct horse battery staple";
    let (status, _, _) = v
        .post_form(&first, &[("password", pw), ("confirm", pw)])
        .await;
    assert_eq!(status, 303);
    let v2 = app.browser();
    v2.get("/login").await;
    let (status, page, _) = v2
        .post_form(
            &first,
            &[
                ("password", "another fine passphrase"),
                ("confirm", "another fine passphrase"),
            ],
        )
        .await;
    assert_eq!(status, 410);
    assert!(page.contains("already been accepted"), "{page}");

    // 71 hours on, the other link still opens; after 73 it is refused and changes nothing.
    app.clock.advance_secs(71 * 3600);
    assert_eq!(app.browser().get(&late).await.0, 200);
    app.clock.advance_secs(2 * 3600);
    let (status, page) = app.browser().get(&late).await;
    assert_eq!(status, 410);
    assert!(page.contains("expired"), "{page}");
    let v3 = app.browser();
    v3.get("/login").await;
    let (status, _, _) = v3
        .post_form(&late, &[("password", pw), ("confirm", pw)])
        .await;
    assert_eq!(status, 410);
    let u = users::by_email(&app.state.db, "late@acme.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (u.status.as_str(), u.password_hash.is_none()),
        ("invited", true)
    );

    // An unknown token is not found.
    let (status, page) = app.browser().get("/invite/not-a-real-token").await;
    assert_eq!(status, 404);
    assert!(page.contains("not valid"), "{page}");
}

#[tokio::test]
async fn a_weak_password_is_refused_and_the_link_keeps_working() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    invite(&app, &b, &owner, "weak@acme.test", "member", true).await;
    let path = invite_path(&app, "weak@acme.test").await;
    let v = app.browser();
    v.get(&path).await;
    for (pw, confirm, says) in [
        ("password1234", "password1234", "most common passwords"),
        ("short", "short", "at least 12 characters"),
        ("weak@acme.test", "weak@acme.test", "must not be your email"),
        ("good long passphrase", "good long passphrase!", "differ"),
    ] {
        let (status, page, _) = v
            .post_form(&path, &[("password", pw), ("confirm", confirm)])
            .await;
        assert_eq!(status, 422, "{pw}");
        assert!(
            page.contains("Password:") && page.contains(says),
            "{pw}: {page}"
        );
    }
    let u = users::by_email(&app.state.db, "weak@acme.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (u.status.as_str(), u.password_hash.is_none()),
        ("invited", true)
    );
    let used: Option<i64> = sqlx::query("SELECT used_at FROM invites")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
        .get("used_at");
    assert_eq!(used, None);
    let (status, _, location) = v
        .post_form(
            &path,
            &[
                ("password", "good long passphrase"),
                ("confirm", "good long passphrase"),
            ],
        )
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/login/enroll")));
}

#[tokio::test]
async fn bad_invitations_name_the_field_and_change_nothing() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let taken = app.create_user("member", false).await;
    let b = app.signed_in(&owner).await;
    b.get("/users").await;
    let users_before = app.count("users").await;
    let code = fresh_code(&app, &owner);
    let (status, page, _) = b
        .post_form(
            "/users/invite",
            &[
                ("email", "not-an-address"),
                ("role", "member"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Email:"), "{page}");
    let (status, page, _) = b
        .post_form(
            "/users/invite",
            &[("email", "x@acme.test"), ("role", "admin"), ("code", &code)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Role:"), "{page}");
    let (status, page, _) = b
        .post_form(
            "/users/invite",
            &[
                ("email", &taken.email.to_uppercase()),
                ("role", "member"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        page.contains("Email:") && page.contains("already has a Countersign account"),
        "{page}"
    );
    let (status, page, _) = b
        .post_form(
            "/users/invite",
            &[
                ("email", "y@acme.test"),
                ("role", "member"),
                ("code", &wrong_code(&app, &owner)),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Verification code:"), "{page}");
    assert_eq!(app.count("users").await, users_before);
    assert_eq!(app.count("invites").await, 0);
    assert_eq!(app.count("jobs WHERE kind = 'email'").await, 0);
}

#[tokio::test]
async fn a_new_invitation_replaces_the_old_link() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let o = app.signed_in(&owner).await;
    invite(&app, &o, &owner, "slow@acme.test", "member", false).await;
    let old = invite_path(&app, "slow@acme.test").await;
    let u = users::by_email(&app.state.db, "slow@acme.test")
        .await
        .unwrap()
        .unwrap();
    o.get(&format!("/users/{}", u.id)).await;
    let code = fresh_code(&app, &owner);
    let (status, _, location) = o
        .post_form(
            &format!("/users/{}/resend-invite", u.id),
            &[("code", &code)],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/users?done=resent"))
    );
    eventually("the second email", || async {
        (mails_to(&app, "slow@acme.test").await == 2).then_some(())
    })
    .await;
    let new = invite_path(&app, "slow@acme.test").await;
    assert_ne!(old, new);
    assert_eq!(app.browser().get(&old).await.0, 410);
    assert_eq!(app.browser().get(&new).await.0, 200);
}
