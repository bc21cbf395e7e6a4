//! The team pages: role and rights changes with step-up, the last-owner rule, removal, 2FA
//! reset, other projects' ids; and the helpers the page tests share.

use crate::helpers::{Browser, TestApp, TestUser, eventually, spawn_app};
use countersign::auth::totp;
use countersign::clock::Clock;
use countersign::db::users;
use sqlx::Row;

/// The text a page shows for `&amp;`-style escapes (tera escapes `/` too).
pub fn unescape(s: &str) -> String {
    s.replace("&#x2F;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The unescaped text inside the element with this id (no nested tags).
pub fn text_of(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let rest = &page[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')?;
    Some(unescape(&rest[start..start + end]))
}

/// A fresh code for `user`: the clock moves one step first so it is never a replay.
pub fn fresh_code(app: &TestApp, user: &TestUser) -> String {
    app.clock.advance_secs(30);
    app.code(user)
}

/// A six-digit code that matches none of the steps the server accepts right now.
pub fn wrong_code(app: &TestApp, user: &TestUser) -> String {
    let now = app.clock.now_ms();
    let valid: Vec<String> = [-30_000, 0, 30_000]
        .iter()
        .map(|d| totp::code_at(&user.secret, now + d).unwrap())
        .collect();
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !valid.contains(c))
        .unwrap()
}

/// The path of the newest invitation link mailed to `email` (from the dev mailbox).
pub async fn invite_path(app: &TestApp, email: &str) -> String {
    let text: String = eventually("the invitation email", || async {
        sqlx::query("SELECT text_body FROM dev_mailbox WHERE to_addr = $1 ORDER BY id DESC LIMIT 1")
            .bind(email)
            .fetch_optional(app.state.db.reader())
            .await
            .unwrap()
            .map(|r| r.try_get::<String, _>("text_body").unwrap())
    })
    .await;
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/invite/"))
        .expect("link in the email");
    assert!(
        link.starts_with(&app.base),
        "{link} is not under {}",
        app.base
    );
    link[app.base.len()..].to_string()
}

pub async fn mails_to(app: &TestApp, email: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM dev_mailbox WHERE to_addr = $1")
        .bind(email)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

pub async fn user(app: &TestApp, id: &str) -> users::User {
    users::by_id(&app.state.db, id).await.unwrap().unwrap()
}

pub async fn invite(
    app: &TestApp,
    b: &Browser,
    owner: &TestUser,
    email: &str,
    role: &str,
    rights: bool,
) {
    b.get("/users").await;
    let code = fresh_code(app, owner);
    let mut fields = vec![("email", email), ("role", role), ("code", code.as_str())];
    if rights {
        fields.push(("withdrawal_rights", "1"));
    }
    let (status, body, location) = b.post_form("/users/invite", &fields).await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/users?done=invited")),
        "{body}"
    );
}

/// Whether a browser's session is still signed in (a page behind sign-in answers 200).
pub async fn signed_in(b: &Browser) -> bool {
    match b.get("/users").await.0 {
        200 => true,
        303 => false,
        other => panic!("unexpected status {other}"),
    }
}

#[tokio::test]
async fn a_member_sees_the_team_but_cannot_change_it_or_reach_settings() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let member = app.create_user("member", true).await;
    let m = app.signed_in(&member).await;
    let (status, page) = m.get("/users").await;
    assert_eq!(status, 200);
    assert!(page.contains(&owner.email) && page.contains(&member.email));
    assert!(
        !page.contains("Invite someone") && !page.contains("Manage"),
        "{page}"
    );
    for path in [
        "/settings",
        "/settings/limits?scope=api&currency=default",
        &format!("/users/{}", owner.id),
    ] {
        assert_eq!(m.get(path).await.0, 403, "{path}");
    }
    let keys = app.count("api_keys").await;
    let users_before = app.count("users").await;
    let audit_before = app.count("audit_log").await;
    let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/users/invite".into(),
            vec![
                ("email", "z@acme.test"),
                ("role", "owner"),
                ("withdrawal_rights", "1"),
            ],
        ),
        (
            format!("/users/{}/role", owner.id),
            vec![("role", "member")],
        ),
        (format!("/users/{}/remove", owner.id), vec![]),
        (format!("/users/{}/reset-2fa", owner.id), vec![]),
        ("/settings/api-keys".into(), vec![("can_withdraw", "1")]),
        (
            "/settings/limits".into(),
            vec![
                ("scope", "api"),
                ("currency", "default"),
                ("per_operation", "1"),
            ],
        ),
        (
            "/settings/limits/remove".into(),
            vec![("scope", "api"), ("currency", "BTC")],
        ),
        ("/settings/webhook-secret".into(), vec![]),
        (
            "/settings/callback-url".into(),
            vec![("callback_url", "https://evil.test/")],
        ),
        (
            "/settings/base-currency".into(),
            vec![("base_currency", "USD")],
        ),
    ];
    for (path, fields) in attempts {
        let code = fresh_code(&app, &member);
        let mut f = fields.clone();
        f.push(("code", &code));
        let (status, _, _) = m.post_form(&path, &f).await;
        assert_eq!(status, 403, "{path}");
    }
    assert_eq!(app.count("api_keys").await, keys);
    assert_eq!(app.count("users").await, users_before);
    assert!(user(&app, &owner.id).await.is_owner());
    assert_eq!(
        app.count("audit_log").await,
        audit_before,
        "nothing was recorded either"
    );
}

#[tokio::test]
async fn changing_a_role_ends_that_users_sessions_and_renews_the_owners() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let member = app.create_user("member", true).await;
    let o = app.signed_in(&owner).await;
    let m = app.signed_in(&member).await;
    assert!(signed_in(&m).await);
    let (status, page) = o.get(&format!("/users/{}", member.id)).await;
    assert_eq!(status, 200);
    assert!(page.contains("Role and withdrawal rights"));
    let before_cookie = o.session_cookie().unwrap();
    let code = fresh_code(&app, &owner);
    let (status, _, location) = o
        .post_form(
            &format!("/users/{}/role", member.id),
            &[("role", "member"), ("code", &code)],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/users?done=role"))
    );
    // The member's browser is sent to sign in; the owner carries on with a new session id.
    let (status, _) = m.get("/users").await;
    assert_eq!(status, 303);
    assert!(signed_in(&o).await);
    assert_ne!(o.session_cookie().unwrap(), before_cookie);
    assert_eq!(o.with_cookie(&before_cookie).get("/users").await.0, 303);
    let u = user(&app, &member.id).await;
    assert!(!u.has_withdrawal_rights());
    let details: String =
        sqlx::query("SELECT details FROM audit_log WHERE action = 'user.role_changed'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap()
            .get("details");
    let d: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(d["before"]["withdrawal_rights"], true);
    assert_eq!(d["after"]["withdrawal_rights"], false);

    // Promoting to owner gives rights whatever the checkbox says.
    let code = fresh_code(&app, &owner);
    o.get(&format!("/users/{}", member.id)).await;
    let (status, _, _) = o
        .post_form(
            &format!("/users/{}/role", member.id),
            &[("role", "owner"), ("code", &code)],
        )
        .await;
    assert_eq!(status, 303);
    let u = user(&app, &member.id).await;
    assert!(u.is_owner() && u.has_withdrawal_rights());
}

#[tokio::test]
async fn the_last_owner_cannot_be_demoted_and_nobody_removes_themselves() {
    let app = spawn_app().await;
    let a = app.create_user("owner", true).await;
    let bu = app.create_user("owner", true).await;
    let ab = app.signed_in(&a).await;
    let bb = app.signed_in(&bu).await;
    // A removes B (another owner): allowed; B is signed out.
    ab.get(&format!("/users/{}", bu.id)).await;
    let code = fresh_code(&app, &a);
    let (status, _, location) = ab
        .post_form(&format!("/users/{}/remove", bu.id), &[("code", &code)])
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/users?done=removed"))
    );
    assert_eq!(bb.get("/users").await.0, 303);
    assert_eq!(user(&app, &bu.id).await.status, "removed");
    let (_, page) = ab.get("/users").await;
    assert!(!page.contains(&bu.email));
    let login = app.browser();
    login.get("/login").await;
    let (status, _, _) = login
        .post_form(
            "/login",
            &[("email", &bu.email), ("password", &bu.password)],
        )
        .await;
    assert_eq!(status, 401);

    // A is now the last owner: demoting A is refused, and so is removing oneself.
    ab.get(&format!("/users/{}", a.id)).await;
    let code = fresh_code(&app, &a);
    let (status, page, _) = ab
        .post_form(
            &format!("/users/{}/role", a.id),
            &[
                ("role", "member"),
                ("withdrawal_rights", "1"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("last owner"), "{page}");
    let code = fresh_code(&app, &a);
    let (status, page, _) = ab
        .post_form(&format!("/users/{}/remove", a.id), &[("code", &code)])
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("cannot remove yourself"), "{page}");
    let me = user(&app, &a.id).await;
    assert!(me.is_owner() && me.status == "active");
    assert!(signed_in(&ab).await);
}

#[tokio::test]
async fn two_owners_demoting_each_other_at_once_leave_one_owner() {
    let app = spawn_app().await;
    let a = app.create_user("owner", true).await;
    let b = app.create_user("owner", true).await;
    let ab = app.signed_in(&a).await;
    let bb = app.signed_in(&b).await;
    ab.get(&format!("/users/{}", b.id)).await;
    bb.get(&format!("/users/{}", a.id)).await;
    app.clock.advance_secs(30);
    let (ca, cb) = (app.code(&a), app.code(&b));
    let pa = format!("/users/{}/role", b.id);
    let pb = format!("/users/{}/role", a.id);
    let fa = [
        ("role", "member"),
        ("withdrawal_rights", "1"),
        ("code", ca.as_str()),
    ];
    let fb = [
        ("role", "member"),
        ("withdrawal_rights", "1"),
        ("code", cb.as_str()),
    ];
    let (ra, rb) = tokio::join!(ab.post_form(&pa, &fa), bb.post_form(&pb, &fb));
    // The loser is refused (422), or, if the winner's change ended its session first, sent
    // to sign in; either way exactly one demotion happened.
    let won = [&ra, &rb]
        .iter()
        .filter(|r| r.2.as_deref() == Some("/users?done=role"))
        .count();
    assert_eq!(won, 1, "{:?} / {:?}", (ra.0, &ra.2), (rb.0, &rb.2));
    assert_eq!(
        users::count_owners(&app.state.db, app.project_id())
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_wrong_or_replayed_code_changes_nothing() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let member = app.create_user("member", true).await;
    let m = app.signed_in(&member).await;
    let o = app.signed_in(&owner).await;
    let path = format!("/users/{}/role", member.id);
    o.get(&format!("/users/{}", member.id)).await;
    for code in [wrong_code(&app, &owner), String::new(), "12345".into()] {
        let (status, page, _) = o
            .post_form(&path, &[("role", "owner"), ("code", &code)])
            .await;
        assert_eq!(status, 422, "{code:?}");
        assert!(page.contains("Verification code:"), "{page}");
    }
    assert!(!user(&app, &member.id).await.is_owner());
    assert!(signed_in(&m).await, "a refused change ends no session");

    // A code that worked once does not work again, even for another change.
    let code = fresh_code(&app, &owner);
    let (status, _, _) = o
        .post_form(
            &format!("/users/{}/reset-2fa", member.id),
            &[("code", &code)],
        )
        .await;
    assert_eq!(status, 303);
    o.get(&format!("/users/{}", member.id)).await;
    let (status, page, _) = o
        .post_form(&path, &[("role", "owner"), ("code", &code)])
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("already used"), "{page}");
    assert!(!user(&app, &member.id).await.is_owner());
}

#[tokio::test]
async fn resetting_2fa_signs_the_user_out_and_sends_them_to_enroll_again() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let member = app.create_user("member", true).await;
    let m = app.signed_in(&member).await;
    let o = app.signed_in(&owner).await;
    o.get(&format!("/users/{}", member.id)).await;
    let code = fresh_code(&app, &owner);
    let (status, _, location) = o
        .post_form(
            &format!("/users/{}/reset-2fa", member.id),
            &[("code", &code)],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/users?done=reset"))
    );
    assert_eq!(m.get("/users").await.0, 303);
    let again = app.browser();
    again.get("/login").await;
    let (status, _, location) = again
        .post_form(
            "/login",
            &[("email", &member.email), ("password", &member.password)],
        )
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/login/enroll")));
    // Not one's own second factor.
    o.get(&format!("/users/{}", owner.id)).await;
    let code = fresh_code(&app, &owner);
    let (status, page, _) = o
        .post_form(
            &format!("/users/{}/reset-2fa", owner.id),
            &[("code", &code)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("your own two-factor"), "{page}");
    assert!(user(&app, &owner.id).await.totp_enrolled());
}

#[tokio::test]
async fn another_projects_users_are_not_found() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let other = app.other_project("Other", "ops@other.test").await;
    let stranger = app.create_user_in(&other.project_id, "owner", true).await;
    let o = app.signed_in(&owner).await;
    assert_eq!(o.get(&format!("/users/{}", stranger.id)).await.0, 404);
    let (_, page) = o.get("/users").await;
    assert!(!page.contains(&stranger.email));
    for action in ["role", "remove", "reset-2fa", "resend-invite"] {
        let code = fresh_code(&app, &owner);
        let (status, _, _) = o
            .post_form(
                &format!("/users/{}/{action}", stranger.id),
                &[("role", "member"), ("code", &code)],
            )
            .await;
        assert_eq!(status, 404, "{action}");
    }
    let s = user(&app, &stranger.id).await;
    assert!(s.is_owner() && s.status == "active" && s.totp_enrolled());
}

#[tokio::test]
async fn an_owner_who_has_not_accepted_yet_does_not_count_as_another_owner() {
    let app = spawn_app().await;
    let a = app.create_user("owner", true).await;
    let o = app.signed_in(&a).await;
    invite(&app, &o, &a, "future.owner@acme.test", "owner", false).await;
    let invited = users::by_email(&app.state.db, "future.owner@acme.test")
        .await
        .unwrap()
        .unwrap();
    o.get(&format!("/users/{}", a.id)).await;
    let code = fresh_code(&app, &a);
    let (status, page, _) = o
        .post_form(
            &format!("/users/{}/role", a.id),
            &[("role", "member"), ("code", &code)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("last owner"), "{page}");
    assert!(user(&app, &a.id).await.is_owner());
    // The invitation itself can still be turned into a member's.
    o.get(&format!("/users/{}", invited.id)).await;
    let code = fresh_code(&app, &a);
    let (status, _, _) = o
        .post_form(
            &format!("/users/{}/role", invited.id),
            &[("role", "member"), ("code", &code)],
        )
        .await;
    assert_eq!(status, 303);
    assert!(!user(&app, &invited.id).await.is_owner());
}

#[tokio::test]
async fn with_withdrawal_confirmation_on_two_usable_approvers_stay() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let member = app.create_user("member", true).await;
    let viewer = app.create_user("member", false).await;
    countersign::db::projects::set_withdrawal_confirmation(&app.state.db, app.project_id(), true)
        .await
        .unwrap();
    let o = app.signed_in(&owner).await;
    let m = format!("/users/{}", member.id);
    for (action, fields) in [
        ("role", vec![("role", "member")]),
        ("remove", vec![]),
        ("reset-2fa", vec![]),
    ] {
        o.get(&m).await;
        let code = fresh_code(&app, &owner);
        let mut f = fields.clone();
        f.push(("code", &code));
        let (status, page, _) = o.post_form(&format!("{m}/{action}"), &f).await;
        assert_eq!(status, 422, "{action}");
        assert!(page.contains("Withdrawal Confirmation"), "{action}: {page}");
    }
    let u = user(&app, &member.id).await;
    assert!(u.can_use_withdrawal_rights() && u.status == "active");
    // Changes that keep the approvers are fine: removing someone without rights.
    o.get(&format!("/users/{}", viewer.id)).await;
    let code = fresh_code(&app, &owner);
    let (status, _, _) = o
        .post_form(&format!("/users/{}/remove", viewer.id), &[("code", &code)])
        .await;
    assert_eq!(status, 303);
}

/// Opens `user_id`'s page and sets their role and rights there with a fresh code of `owner`:
/// (status, page).
async fn set_role(
    app: &TestApp,
    b: &Browser,
    owner: &TestUser,
    user_id: &str,
    role: &str,
    rights: bool,
) -> (u16, String) {
    let page = format!("/users/{user_id}");
    b.get(&page).await;
    let code = fresh_code(app, owner);
    let mut fields = vec![("role", role), ("code", code.as_str())];
    if rights {
        fields.push(("withdrawal_rights", "1"));
    }
    let (status, body, _) = b.post_form(&format!("{page}/role"), &fields).await;
    (status, body)
}

/// The newest email to `to` in the dev mailbox: (subject, text).
async fn last_mail(app: &TestApp, to: &str) -> Option<(String, String)> {
    sqlx::query(
        "SELECT subject, text_body FROM dev_mailbox WHERE to_addr = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(to)
    .fetch_optional(app.state.db.reader())
    .await
    .unwrap()
    .map(|r| (r.get("subject"), r.get("text_body")))
}

#[tokio::test]
async fn a_new_approver_waits_out_a_hold_while_withdrawal_confirmation_is_on() {
    use crate::approvals_pages::{api_withdrawal, decide, paid_out, status};
    use countersign::clock::{HOUR_MS, rfc3339};
    let app = spawn_app().await;
    app.credit("BTC", "10").await;
    let alice = app.create_user("owner", true).await;
    let bob = app.create_user("owner", true).await;
    let carol = app.create_user("member", false).await;
    countersign::db::projects::set_withdrawal_confirmation(&app.state.db, app.project_id(), true)
        .await
        .unwrap();

    // Alice gives Carol withdrawal rights: Carol may approve only 24 hours later.
    let a = app.signed_in(&alice).await;
    let page = format!("/users/{}", carol.id);
    let (status_code, body) = set_role(&app, &a, &alice, &carol.id, "member", true).await;
    assert_eq!(status_code, 303, "{body}");
    let granted_at = app.clock.now_ms();
    let from = rfc3339(granted_at + 24 * HOUR_MS);
    assert_eq!(
        user(&app, &carol.id).await.approver_from,
        Some(granted_at + 24 * HOUR_MS)
    );
    let (_, shown) = a.get(&page).await;
    assert!(
        text_of(&shown, "approver-from").is_some_and(|t| t.starts_with(&from)),
        "{shown}"
    );
    // Bob, the other approver, is told at once; Alice (who did it) and Carol are not.
    let (subject, text) = eventually("the email to bob", || last_mail(&app, &bob.email)).await;
    assert!(
        subject.contains(&carol.email) && subject.contains(&from),
        "{subject}"
    );
    assert!(
        text.contains(&format!(
            "{} gave {} withdrawal rights",
            alice.email, carol.email
        )) && text.contains(&format!("only from {from}"))
            && text.contains(&format!("{}{page}", app.base)),
        "{text}"
    );
    assert_eq!(mails_to(&app, &alice.email).await, 0);
    assert_eq!(mails_to(&app, &carol.email).await, 0);
    let held: String = sqlx::query(
        "SELECT details FROM audit_log WHERE action = 'user.approver_held' AND subject = $1",
    )
    .bind(format!("user:{}", carol.id))
    .fetch_one(app.state.db.reader())
    .await
    .unwrap()
    .get("details");
    assert!(held.contains(&from) && held.contains(&bob.email), "{held}");

    // Held, Carol cannot decide, and does not count as one of the two approvers that
    // Withdrawal Confirmation keeps: Bob's rights cannot be taken away yet.
    let id = api_withdrawal(&app, "held-1", "0.001", None).await;
    assert_eq!(status(&app, id).await, "pending");
    let c = app.signed_in(&carol).await;
    let (refused, page_text, _) = decide(&app, &c, &carol, id, "approve", "").await;
    assert_eq!(refused, 403, "{page_text}");
    assert!(
        crate::approvals_pages::text(&page_text)
            .contains(&format!("a new approver may decide from {from}")),
        "{page_text}"
    );
    assert_eq!(status(&app, id).await, "pending");
    let (demote, body) = set_role(&app, &a, &alice, &bob.id, "member", false).await;
    assert_eq!(demote, 422, "{body}");
    assert!(body.contains("Withdrawal Confirmation"), "{body}");

    // Once the hold is over Carol decides like anyone else.
    app.clock.advance_ms(24 * HOUR_MS);
    let id = api_withdrawal(&app, "after-hold", "0.001", None).await;
    let c = app.signed_in(&carol).await;
    let (approved, body, _) = decide(&app, &c, &carol, id, "approve", "").await;
    assert_eq!(approved, 303, "{body}");
    paid_out(&app, id).await;

    // Accepting an invitation with withdrawal rights starts a hold too; Bob and Carol (now an
    // approver) are told, not Alice, who sent it.
    let a = app.signed_in(&alice).await;
    invite(&app, &a, &alice, "dave@acme.test", "member", true).await;
    let path = invite_path(&app, "dave@acme.test").await;
    let accepted_at = app.clock.now_ms();
    let visitor = app.browser();
    visitor.get(&path).await;
    let (accepted, _, _) = visitor
        .post_form(
            &path,
            &[
                ("password", "four random words here"),
                ("confirm", "four random words here"),
            ],
        )
        .await;
    assert_eq!(accepted, 303);
    let dave = users::by_email(&app.state.db, "dave@acme.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dave.approver_from, Some(accepted_at + 24 * HOUR_MS));
    for told in [&bob.email, &carol.email] {
        let (subject, _) = eventually("the email about dave", || async {
            last_mail(&app, told)
                .await
                .filter(|(s, _)| s.contains("dave@acme.test"))
        })
        .await;
        assert!(
            subject.contains(&rfc3339(accepted_at + 24 * HOUR_MS)),
            "{subject}"
        );
    }
    let to_alice: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM dev_mailbox WHERE to_addr = $1 AND subject LIKE '%dave@%'",
    )
    .bind(&alice.email)
    .fetch_one(app.state.db.reader())
    .await
    .unwrap()
    .get("n");
    assert_eq!(to_alice, 0);

    // Granted while the feature is off, rights work at once.
    countersign::db::projects::set_withdrawal_confirmation(&app.state.db, app.project_id(), false)
        .await
        .unwrap();
    let erin = app.create_user("member", false).await;
    let (changed, body) = set_role(&app, &a, &alice, &erin.id, "member", true).await;
    assert_eq!(changed, 303, "{body}");
    let erin = user(&app, &erin.id).await;
    assert!(erin.approver_from.is_none() && erin.can_approve(app.clock.now_ms()));
}
