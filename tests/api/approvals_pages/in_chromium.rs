//! The queue in a real headless Chromium: sign in, tick two withdrawals, approve them with one
//! code, read the result.

use super::{held, status};
use crate::browser::Chrome;
use crate::helpers::{eventually, spawn_app};

#[tokio::test]
async fn bulk_approve_two_from_the_queue_in_chromium() {
    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let a = held(&app, "ch-a").await;
    let b = held(&app, "ch-b").await;
    let c = held(&app, "ch-c").await;
    let owner = app.create_user("owner", true).await;

    chrome.goto(&format!("{}/approvals", app.base)).await;
    assert_eq!(chrome.wait_for_path("/login").await, "/login");
    chrome.fill("input[name=email]", &owner.email).await;
    chrome.fill("input[name=password]", &owner.password).await;
    chrome.click("button[type=submit]").await;
    assert_eq!(chrome.wait_for_path("/login/totp").await, "/login/totp");
    app.clock.advance_secs(30);
    chrome.fill("input[name=code]", &app.code(&owner)).await;
    chrome.click("button[type=submit]").await;
    assert_eq!(chrome.wait_for_path("/approvals").await, "/approvals");

    chrome
        .click(&format!("input[name=id][value=\"{a}\"]"))
        .await;
    chrome
        .click(&format!("input[name=id][value=\"{b}\"]"))
        .await;
    app.clock.advance_secs(30);
    chrome
        .fill("#bulk-form input[name=code]", &app.code(&owner))
        .await;
    chrome.click("#bulk-approve").await;
    assert_eq!(
        chrome.wait_for_path("/approvals/bulk").await,
        "/approvals/bulk"
    );
    let heading = chrome.text("h1").await;
    assert_eq!(
        heading,
        "Approve: 2 done, 0 refused",
        "{}",
        chrome.source().await
    );
    let results = chrome.text("#results").await;
    assert!(
        results.contains("approved: the approvals are complete"),
        "{results}"
    );
    chrome.screenshot("approvals-bulk-result").await;
    eventually("both left pending", || async {
        (status(&app, a).await != "pending" && status(&app, b).await != "pending").then_some(())
    })
    .await;
    assert_eq!(status(&app, c).await, "pending");
    chrome.close().await;
}
