//! Stories in a real headless Chromium.

use crate::browser::Chrome;
use crate::helpers::spawn_app;

#[tokio::test]
async fn sign_in_with_password_and_code_in_chromium() {
    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    chrome.goto(&format!("{}/account/sessions", app.base)).await;
    assert_eq!(
        chrome.path().await,
        "/login",
        "signed-out visitors are sent to sign in"
    );
    chrome.fill("input[name=email]", &alice.email).await;
    chrome.fill("input[name=password]", &alice.password).await;
    chrome.click("button[type=submit]").await;
    assert_eq!(
        chrome.wait_for_path("/login/totp").await,
        "/login/totp",
        "{}",
        chrome.source().await
    );
    app.clock.advance_secs(30);
    chrome.fill("input[name=code]", &app.code(&alice)).await;
    chrome.click("button[type=submit]").await;
    // Back to the page asked for at first.
    assert_eq!(
        chrome.wait_for_path("/account/sessions").await,
        "/account/sessions"
    );
    assert!(chrome.source().await.contains(&alice.email));
    let shot = chrome.screenshot("sign-in-sessions").await;
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 1000)
            .unwrap_or(false)
    );
    chrome.close().await;
}

#[tokio::test]
async fn an_invited_member_joins_enrolls_signs_out_and_back_in_in_chromium() {
    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    let email = "new.member@acme.test";
    crate::team::invite(&app, &b, &owner, email, "member", true).await;
    let link = crate::team::invite_path(&app, email).await;

    // Accept: choose a password.
    chrome.goto(&format!("{}{link}", app.base)).await;
    let password = "a member's long passphrase";
    chrome.fill("input[name=password]", password).await;
    chrome.fill("input[name=confirm]", password).await;
    chrome.click("button[type=submit]").await;
    assert_eq!(chrome.wait_for_path("/login/enroll").await, "/login/enroll");

    // Enroll: the key shown on the page is what an authenticator app would read.
    let secret = countersign::auth::totp::from_base32(&chrome.text("#totp-secret").await)
        .expect("base32 key");
    app.clock.advance_secs(30);
    let code =
        countersign::auth::totp::code_at(&secret, countersign::clock::Clock::now_ms(&app.clock))
            .unwrap();
    chrome.fill("input[name=code]", &code).await;
    chrome.click("button[type=submit]").await;
    let codes = chrome.text("#recovery-codes").await;
    assert_eq!(
        codes.lines().filter(|l| !l.trim().is_empty()).count(),
        10,
        "{codes}"
    );
    chrome.click("a.button").await;
    assert_eq!(chrome.wait_for_path("/").await, "/");
    assert!(chrome.source().await.contains(email));

    // Sign out, then back in with password and the next code.
    chrome.click("header form button").await;
    assert_eq!(chrome.wait_for_path("/login").await, "/login");
    chrome.fill("input[name=email]", email).await;
    chrome.fill("input[name=password]", password).await;
    chrome.click("button[type=submit]").await;
    app.clock.advance_secs(30);
    let code =
        countersign::auth::totp::code_at(&secret, countersign::clock::Clock::now_ms(&app.clock))
            .unwrap();
    chrome.fill("input[name=code]", &code).await;
    chrome.click("button[type=submit]").await;
    assert_eq!(chrome.wait_for_path("/").await, "/");
    let page = chrome.source().await;
    assert!(page.contains(email) && page.contains("Dashboard"), "{page}");
    let shot = chrome.screenshot("invite-enroll-dashboard").await;
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 1000)
            .unwrap_or(false)
    );
    chrome.close().await;
}
