//! One withdrawal's page: what it shows, re-sending callbacks, and other projects' ids.

use super::{audit_count, callback_deliveries, foreign_ids, owner, row_with, text, withdraw_ok};
use crate::helpers::{BTC_ADDR, Receiver, eventually, sign, spawn_app};
use countersign::clock::Clock;
use countersign::db::audit::Actor;
use countersign::domain::money::Currency;
use countersign::service::projects::{self as psvc, NewProjectInput};
use serde_json::{Value, json};

#[tokio::test]
async fn the_detail_shows_the_timeline_and_every_callback_attempt_and_owners_can_resend() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.answer_with(500);
    app.set_callback(&rx.url).await;
    app.credit("BTC", "1").await;
    let (id, status) = withdraw_ok(&app, "held-cb", "BTC", "0.02", BTC_ADDR).await;
    assert_eq!(status, "pending");
    eventually("first attempt fails", || async {
        let d = callback_deliveries(&app, id).await;
        (d[0].attempts.len() == 1 && !d[0].leased).then_some(())
    })
    .await;
    rx.answer_with(200);
    app.clock.advance_secs(120);
    let job = eventually("retry delivered", || async {
        let d = callback_deliveries(&app, id).await;
        (d[0].status == "done").then(|| d[0].job_id)
    })
    .await;

    let owner_user = app.create_user("owner", true).await;
    let b = app.signed_in(&owner_user).await;
    let (status, page) = b.get(&format!("/withdrawals/{id}")).await;
    assert_eq!(status, 200);
    let t = text(&page);
    for expected in [
        "0.02000000 BTC",
        BTC_ADDR,
        "bitcoin",
        "held-cb",
        "1200.00 EUR",
        "over the api per-operation limit: 1200 EUR against 1000 EUR",
        "at least one by an owner",
        "API key ",
        "created as <strong>pending</strong>",
        "“pending” callback",
        &format!("msg_wd{id}_pending"),
        "<td>500</td>",
        "<td>200</td>",
        "class=\"delivery-state\">delivered<",
        "Re-send callback",
    ] {
        assert!(t.contains(expected), "detail lacks {expected:?}:\n{t}");
    }
    assert_eq!(t.matches("<tr class=\"failed\">").count(), 1);
    assert_eq!(t.matches("<tr class=\"ok\">").count(), 1);

    // Re-send: the receiver gets the same event again, with the same webhook-id and body.
    let action = format!("/withdrawals/{id}/callbacks/{job}/resend");
    let (status, _, to) = b.post_form(&action, &[]).await;
    assert_eq!(status, 303);
    assert_eq!(
        to,
        Some(format!("/withdrawals/{id}?callback=resent#callbacks"))
    );
    let got = eventually("re-sent callback", || async {
        let v = rx.for_foreign_id("held-cb");
        (v.len() == 3).then_some(v)
    })
    .await;
    let webhook_ids: Vec<_> = got
        .iter()
        .map(|r| r.header("webhook-id").map(str::to_string))
        .collect();
    assert_eq!(webhook_ids, vec![Some(format!("msg_wd{id}_pending")); 3]);
    assert_eq!(got[2].body, got[0].body);
    assert_eq!(audit_count(&app, "callback.resent").await, 1);
    eventually("third attempt recorded", || async {
        let d = callback_deliveries(&app, id).await;
        (d[0].status == "done" && d[0].attempts.len() == 3).then_some(())
    })
    .await;
    let (_, page) = b.get(&format!("/withdrawals/{id}?callback=resent")).await;
    let t = text(&page);
    assert!(t.contains("The callback was queued again"));
    assert_eq!(t.matches("<td>200</td>").count(), 2);
    let (_, dash) = b.get("/").await;
    let activity = row_with(&dash, &format!("re-sent a callback of withdrawal #{id}"));
    assert!(
        activity.contains(&format!("<td>{}</td>", owner_user.email)),
        "{activity}"
    );

    // Forged or foreign requests change nothing.
    let (status, _, _) = b
        .post_raw(&action, &[("csrf", "forged")], Some(&app.base))
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = b
        .post_form(&format!("/withdrawals/{id}/callbacks/999999/resend"), &[])
        .await;
    assert_eq!(status, 404);
    rx.answer_with(500);
    let (other, _) = withdraw_ok(&app, "held-cb-2", "BTC", "0.03", BTC_ADDR).await;
    let other_job = eventually("other's first attempt", || async {
        let d = callback_deliveries(&app, other).await;
        (d[0].attempts.len() == 1 && !d[0].leased).then(|| d[0].job_id)
    })
    .await;
    let (status, _, _) = b
        .post_form(
            &format!("/withdrawals/{id}/callbacks/{other_job}/resend"),
            &[],
        )
        .await;
    assert_eq!(status, 404, "a job of another withdrawal");
    // Still being retried: nothing to re-send, and the page says so.
    let (status, _, to) = b
        .post_form(
            &format!("/withdrawals/{other}/callbacks/{other_job}/resend"),
            &[],
        )
        .await;
    assert_eq!(
        (status, to),
        (
            303,
            Some(format!("/withdrawals/{other}?callback=busy#callbacks"))
        )
    );
    let (_, page) = b.get(&format!("/withdrawals/{other}?callback=busy")).await;
    assert!(text(&page).contains("still queued, so nothing was re-sent"));
    assert!(text(&page).contains("failed so far; will be retried"));
    assert_eq!(audit_count(&app, "callback.resent").await, 1);

    // A member sees the page but cannot re-send.
    let member = app.create_user("member", false).await;
    let m = app.signed_in(&member).await;
    let (status, page) = m.get(&format!("/withdrawals/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("held-cb") && !page.contains("Re-send callback"));
    let (status, _, _) = m.post_form(&action, &[]).await;
    assert_eq!(status, 403);
    assert_eq!(audit_count(&app, "callback.resent").await, 1);
    let d = callback_deliveries(&app, id).await;
    assert_eq!((d[0].status.as_str(), d[0].attempts.len()), ("done", 3));
}

#[tokio::test]
async fn the_detail_shows_the_payout_txid_of_a_confirmed_withdrawal() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (id, _) = withdraw_ok(&app, "paid", "BTC", "0.01", BTC_ADDR).await;
    let txid = app.wait_for_status("paid", "confirmed").await["txid"]
        .as_str()
        .expect("txid")
        .to_string();
    let b = owner(&app).await;
    let (_, page) = b.get(&format!("/withdrawals/{id}")).await;
    let t = text(&page);
    assert!(t.contains(&format!("id=\"txid\">{txid}<")), "{t}");
    assert!(t.contains("No approval was needed"));
    for step in [
        "created as <strong>approved</strong>",
        "approved → <strong>processing</strong>",
        "processing → <strong>confirmed</strong>",
    ] {
        assert!(t.contains(step), "timeline lacks {step}");
    }
    // No callback URL: the page says nothing was sent rather than "delivered".
    assert!(t.contains("no callback URL"));
}

#[tokio::test]
async fn another_projects_withdrawal_does_not_exist_for_this_projects_users() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (ours, _) = withdraw_ok(&app, "ours-1", "BTC", "0.01", BTC_ADDR).await;
    let other = psvc::create(
        &app.state.db,
        &app.state.master_key,
        &NewProjectInput {
            name: "Other Exchange",
            primary_email: "ops@other.test",
            base_currency: "EUR",
            callback_url: None,
        },
        app.clock.now_ms(),
    )
    .await
    .expect("second project");
    psvc::credit(
        &app.state.db,
        &other.project_id,
        Currency::Btc,
        "1".parse().expect("amount"),
        &Actor::Cli,
        app.clock.now_ms(),
    )
    .await
    .expect("credit");
    let body =
        json!({"foreign_id": "theirs-1", "currency": "BTC", "amount": "0.02", "address": BTC_ADDR})
            .to_string();
    let r: Value = app
        .http
        .post(app.url("/api/v2/withdrawal/crypto"))
        .header("X-Processing-Key", &other.api_key)
        .header(
            "X-Processing-Signature",
            sign(&other.api_secret, body.as_bytes()),
        )
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let theirs = r["data"]["id"].as_i64().expect("their id");
    let their_job = callback_deliveries(&app, theirs).await[0].job_id;

    let b = owner(&app).await;
    // A page of our own first: its forms carry this session's CSRF token.
    assert_eq!(b.get(&format!("/withdrawals/{ours}")).await.0, 200);
    let (status, page) = b.get(&format!("/withdrawals/{theirs}")).await;
    assert_eq!(status, 404);
    assert!(page.contains("Not found") && !page.contains("theirs-1"));
    let (status, _, _) = b
        .post_form(
            &format!("/withdrawals/{theirs}/callbacks/{their_job}/resend"),
            &[],
        )
        .await;
    assert_eq!(status, 404);
    for q in [
        "/withdrawals",
        "/withdrawals?foreign_id=theirs-1",
        "/withdrawals?status=pending",
        "/",
    ] {
        let (status, page) = b.get(q).await;
        assert_eq!(status, 200, "{q}");
        // (The filter form may echo the typed id; no row may show it.)
        let shown = foreign_ids(&page);
        assert!(
            !shown.iter().any(|f| f == "theirs-1"),
            "{q} shows another project's withdrawal"
        );
        assert!(
            !text(&page).contains(&format!("/withdrawals/{theirs}\"")),
            "{q}"
        );
    }
    let (_, dash) = b.get("/").await;
    assert!(dash.contains("id=\"pending-count\">0</p>"));
    for junk in ["abc", "0", "-1", "99999999999999999999"] {
        assert_eq!(
            b.get(&format!("/withdrawals/{junk}")).await.0,
            404,
            "{junk}"
        );
    }
    assert_eq!(b.get(&format!("/withdrawals/{ours}")).await.0, 200);

    // The other project's own owner sees theirs, and not ours.
    let their_owner = app.create_user_in(&other.project_id, "owner", true).await;
    let o = app.signed_in(&their_owner).await;
    let (status, page) = o.get(&format!("/withdrawals/{theirs}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("theirs-1"));
    assert_eq!(o.get(&format!("/withdrawals/{ours}")).await.0, 404);
    assert_eq!(foreign_ids(&o.get("/withdrawals").await.1), ["theirs-1"]);
}

#[tokio::test]
async fn a_withdrawal_with_exchange_shows_what_the_balance_gave_and_the_rate() {
    let app = spawn_app().await;
    app.credit("EUR", "1000").await;
    app.credit("BTC", "1").await;
    let (code, v) = app
        .post_json(
            "/withdrawal/crypto",
            &json!({"foreign_id": "fx-1", "currency": "EUR", "convert_to": "BTC",
                "amount": "600", "address": BTC_ADDR}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let fx = v["data"]["id"].as_i64().expect("id");
    let (plain, _) = withdraw_ok(&app, "plain-1", "BTC", "0.01", BTC_ADDR).await;
    app.wait_for_status("plain-1", "confirmed").await;

    let b = owner(&app).await;
    let (status, page) = b.get(&format!("/withdrawals/{fx}")).await;
    assert_eq!(status, 200);
    let t = text(&page);
    // 600 EUR at 60,000 EUR per BTC, no fee configured.
    assert!(t.contains("id=\"amount\">0.01000000 BTC<"), "{t}");
    assert!(t.contains("id=\"held\">600.00 EUR "), "{t}");
    assert!(
        t.contains("id=\"exchange\">EUR → BTC at 0.0000166666666667 BTC per EUR"),
        "{t}"
    );
    let (_, page) = b.get(&format!("/withdrawals/{plain}")).await;
    let t = text(&page);
    assert!(t.contains("id=\"held\">0.01000000 BTC "), "{t}");
    assert!(dd_text(&t, "held").contains("debited"), "{t}");
    assert!(!t.contains("id=\"exchange\""));

    // The list shows the payout, and for the exchange where it came from.
    let (_, list) = b.get("/withdrawals?currency=BTC").await;
    assert_eq!(foreign_ids(&list), ["plain-1", "fx-1"]);
    assert!(
        row_with(&list, "data-foreign-id=\"fx-1\"")
            .contains("from <span class=\"nowrap\">600.00</span> EUR")
    );
    assert!(!row_with(&list, "data-foreign-id=\"plain-1\"").contains("from "));
}

/// The text of the `<dd id="...">` element.
fn dd_text(page: &str, id: &str) -> String {
    let marker = format!("<dd id=\"{id}\">");
    let at = page.find(&marker).expect("dd") + marker.len();
    page[at..at + page[at..].find("</dd>").expect("dd end")].to_string()
}
