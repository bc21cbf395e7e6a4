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
        chrome.path().await,
        "/login/totp",
        "{}",
        chrome.source().await
    );
    app.clock.advance_secs(30);
    chrome.fill("input[name=code]", &app.code(&alice)).await;
    chrome.click("button[type=submit]").await;
    // Back to the page asked for at first.
    assert_eq!(chrome.path().await, "/account/sessions");
    assert!(chrome.source().await.contains(&alice.email));
    let shot = chrome.screenshot("sign-in-sessions").await;
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 1000)
            .unwrap_or(false)
    );
    chrome.close().await;
}
