//! Email over a real SMTP conversation with a server on loopback; the dev mailbox otherwise.

use crate::helpers::{SmtpSink, eventually, spawn_app, spawn_app_with};

async fn lock_out(app: &crate::helpers::TestApp, email: &str) {
    let b = app.browser();
    b.get("/login").await;
    for _ in 0..10 {
        b.post_form(
            "/login",
            &[("email", email), ("password", "definitely not it")],
        )
        .await;
    }
}

#[tokio::test]
async fn mail_goes_over_smtp_as_text_and_html_and_survives_an_outage() {
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(|s| sink.configure(s)).await;
    let alice = app.create_user("owner", true).await;
    sink.refuse(true);
    lock_out(&app, &alice.email).await;
    // The server refuses: the message waits in the outbox, nothing is lost.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(sink.to(&alice.email).is_empty());
    sink.refuse(false);
    app.clock.advance_secs(10 * 60);
    let got = eventually("lockout email over SMTP", || async {
        sink.to(&alice.email).pop()
    })
    .await;
    assert!(got.from.contains("countersign@acme.test"));
    assert!(
        got.data
            .contains("Subject: Your Countersign account was locked"),
        "{}",
        got.data
    );
    assert!(got.data.contains("multipart/alternative"));
    assert!(got.data.contains("text/plain") && got.data.contains("text/html"));
    // With SMTP configured there is no dev mailbox.
    assert_eq!(app.browser().get("/dev/mailbox").await.0, 404);
    assert_eq!(app.count("dev_mailbox").await, 0);
}

#[tokio::test]
async fn without_smtp_mail_is_kept_in_the_dev_mailbox_with_clickable_links() {
    let app = spawn_app().await;
    let alice = app.create_user("owner", true).await;
    lock_out(&app, &alice.email).await;
    let b = app.browser();
    let page = eventually("mail in the dev mailbox", || async {
        let (_, page) = b.get("/dev/mailbox").await;
        page.contains("Your Countersign account was locked")
            .then_some(page)
    })
    .await;
    assert!(page.contains("For development only"));
    let id_at = page.find("/dev/mailbox/").unwrap() + "/dev/mailbox/".len();
    let id: String = page[id_at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let (status, message) = b.get(&format!("/dev/mailbox/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        message.contains(&format!(
            "<a href=\"{}&#x2F;login\">",
            app.base.replace('/', "&#x2F;")
        )),
        "{message}"
    );
}
