//! The withdrawal pages in a real headless Chromium: the filter form and the page links work
//! without JavaScript, and an owner re-sends a callback with the button.

use super::{foreign_ids, withdraw_ok};
use crate::browser::Chrome;
use crate::helpers::{BTC_ADDR, Receiver, eventually, spawn_app};

/// The current URL's path and query, once it satisfies `ok` (a click returns before the
/// navigation it starts has finished).
async fn wait_for_url(chrome: &Chrome, what: &str, ok: impl Fn(&str) -> bool) -> String {
    eventually(what, || async {
        let url = chrome.client.current_url().await.ok()?;
        let at = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        ok(&at).then_some(at)
    })
    .await
}

#[tokio::test]
async fn filter_page_through_and_resend_in_chromium() {
    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.set_callback(&rx.url).await;
    app.credit("BTC", "1").await;
    app.credit("SBX", "100").await;
    let (held, _) = withdraw_ok(&app, "held-1", "BTC", "0.02", BTC_ADDR).await;
    for i in 0..52 {
        withdraw_ok(&app, &format!("sbx-{i:02}"), "SBX", "0.1", "sbx_chromium").await;
    }
    eventually("pending callback delivered", || async {
        (rx.for_foreign_id("held-1").len() == 1).then_some(())
    })
    .await;
    let owner = app.create_user("owner", true).await;

    // Signing in brings the owner back to the list.
    chrome.goto(&format!("{}/withdrawals", app.base)).await;
    wait_for_url(&chrome, "sign-in page", |u| u.starts_with("/login")).await;
    chrome.fill("input[name=email]", &owner.email).await;
    chrome.fill("input[name=password]", &owner.password).await;
    chrome.click("button[type=submit]").await;
    wait_for_url(&chrome, "code page", |u| u == "/login/totp").await;
    app.clock.advance_secs(30);
    chrome.fill("input[name=code]", &app.code(&owner)).await;
    chrome.click("button[type=submit]").await;
    wait_for_url(&chrome, "the list", |u| u == "/withdrawals").await;
    assert_eq!(foreign_ids(&chrome.source().await).len(), 50);

    // Older, then Newer: the links work as plain links.
    chrome.click("a[rel=next]").await;
    wait_for_url(&chrome, "older page", |u| u.contains("before=")).await;
    let older = foreign_ids(&chrome.source().await);
    assert_eq!(older, ["sbx-01", "sbx-00", "held-1"]);
    chrome.click("a[rel=prev]").await;
    wait_for_url(&chrome, "newer page", |u| u.contains("after=")).await;
    assert_eq!(foreign_ids(&chrome.source().await).len(), 50);

    // The filter form is a plain GET form.
    chrome
        .fill("form.filters input[name=foreign_id]", "held-1")
        .await;
    chrome.click("form.filters button[type=submit]").await;
    wait_for_url(&chrome, "filtered list", |u| {
        u.contains("foreign_id=held-1")
    })
    .await;
    assert_eq!(foreign_ids(&chrome.source().await), ["held-1"]);

    // The detail page, on a phone-sized window, and the re-send button.
    chrome
        .client
        .set_window_size(390, 844)
        .await
        .expect("window size");
    chrome
        .click(&format!("a[href=\"/withdrawals/{held}\"]"))
        .await;
    wait_for_url(&chrome, "detail", |u| u == format!("/withdrawals/{held}")).await;
    chrome.screenshot("withdrawal-detail-phone").await;
    chrome.click("#callbacks form button[type=submit]").await;
    wait_for_url(&chrome, "re-sent", |u| u.contains("callback=resent")).await;
    assert!(
        chrome
            .source()
            .await
            .contains("The callback was queued again")
    );
    let got = eventually("the callback again", || async {
        let v = rx.for_foreign_id("held-1");
        (v.len() == 2).then_some(v)
    })
    .await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    chrome.close().await;
}
