//! The signed-in pages about money, as a user sees them: the dashboard, the withdrawals list
//! (filters, keyset pagination), one withdrawal's detail with its timeline and callback
//! deliveries, and re-sending a callback. Data is created through the signed merchant API.

use crate::helpers::{BTC_ADDR, Browser, TestApp, eventually, spawn_app, spawn_app_with};
use countersign::clock::{Clock, DAY_MS, rfc3339};
use countersign::db::audit::{Actor, Origin};
use countersign::db::jobs::{self, Delivery, JobKind};
use countersign::db::withdrawals as wdb;
use countersign::domain::withdrawal::{Event, Status};
use countersign::service::withdrawals::{self as wsvc, Change};
use serde_json::json;
use sqlx::Row;

/// The page with tera's HTML escapes undone, for plain-text assertions.
fn text(page: &str) -> String {
    page.replace("&#x2F;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The foreign ids of the withdrawal rows on a page, top to bottom.
fn foreign_ids(page: &str) -> Vec<String> {
    let page = text(page);
    page.split("data-foreign-id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect()
}

/// The href of the page link with this `rel` ("next": older, "prev": newer).
fn link(page: &str, rel: &str) -> Option<String> {
    let page = text(page);
    let marker = format!("rel=\"{rel}\" href=\"");
    let at = page.find(&marker)? + marker.len();
    page[at..].split('"').next().map(str::to_string)
}

/// The table row (`<tr ...>...</tr>`) of the unescaped page that contains `needle`.
fn row_with(page: &str, needle: &str) -> String {
    let page = text(page);
    let at = page
        .find(needle)
        .unwrap_or_else(|| panic!("no {needle:?} on the page"));
    let start = page[..at].rfind("<tr").expect("row start");
    let end = at + page[at..].find("</tr>").expect("row end");
    page[start..end].to_string()
}

/// The UTC calendar date of an instant, as the filter form takes it.
fn date(ms: i64) -> String {
    rfc3339(ms)[..10].to_string()
}

async fn withdraw_ok(
    app: &TestApp,
    foreign_id: &str,
    currency: &str,
    amount: &str,
    address: &str,
) -> (i64, String) {
    let (code, v) = app.withdraw(foreign_id, currency, amount, address).await;
    assert_eq!(code, 200, "{foreign_id}: {v}");
    (
        v["data"]["id"].as_i64().expect("id"),
        v["data"]["status"].as_str().expect("status").to_string(),
    )
}

async fn callback_deliveries(app: &TestApp, id: i64) -> Vec<Delivery> {
    jobs::deliveries_for_withdrawal(&app.state.db, id, JobKind::Callback)
        .await
        .expect("deliveries")
}

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE project_id = $1 AND action = $2")
        .bind(app.project_id())
        .bind(action)
        .fetch_one(app.state.db.reader())
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

async fn owner(app: &TestApp) -> Browser {
    let u = app.create_user("owner", true).await;
    app.signed_in(&u).await
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_sign_in() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (id, _) = withdraw_ok(&app, "w1", "BTC", "0.02", BTC_ADDR).await;
    let b = app.browser();
    let detail = format!("/withdrawals/{id}");
    for path in [
        "/",
        "/withdrawals",
        "/withdrawals?status=pending",
        detail.as_str(),
    ] {
        let r = b.http.get(app.url(path)).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 303, "{path}");
        let to = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        let back = url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>();
        assert_eq!(to, format!("/login?next={back}"), "{path}");
        let body = r.text().await.expect("body");
        assert!(
            !body.contains("w1"),
            "{path} leaked data to a signed-out visitor"
        );
    }
    let job = callback_deliveries(&app, id).await[0].job_id;
    let (status, _, to) = b
        .post_raw(
            &format!("/withdrawals/{id}/callbacks/{job}/resend"),
            &[("csrf", "x")],
            Some(&app.base),
        )
        .await;
    assert_eq!((status, to.as_deref()), (303, Some("/login")));
    assert_eq!(audit_count(&app, "callback.resent").await, 0);
}

#[tokio::test]
async fn the_dashboard_shows_what_waits_the_balances_the_latest_and_who_did_what() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    app.credit("SBX", "10").await;
    // 0.02 and 0.03 BTC are 1,200 and 1,800 EUR: over the 1,000 EUR per-operation limit.
    let (h1, s1) = withdraw_ok(&app, "held-1", "BTC", "0.02", BTC_ADDR).await;
    let (_, s2) = withdraw_ok(&app, "held-2", "BTC", "0.03", BTC_ADDR).await;
    let (paid, _) = withdraw_ok(&app, "paid-1", "SBX", "2.5", "sbx_dashboard").await;
    assert_eq!((s1.as_str(), s2.as_str()), ("pending", "pending"));
    app.wait_for_status("paid-1", "confirmed").await;

    let b = owner(&app).await;
    let (status, page) = b.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"pending-count\">2</p>"), "{page}");
    assert!(page.contains("href=\"/withdrawals?status=pending\""));
    let row = |page: &str, currency: &str| row_with(page, &format!("data-currency=\"{currency}\""));
    let btc = row(&page, "BTC");
    assert!(
        btc.contains(">0.95000000<") && btc.contains(">0.05000000<"),
        "{btc}"
    );
    let sbx = row(&page, "SBX");
    assert!(
        sbx.contains(">7.50000000<") && sbx.contains(">0.00000000<"),
        "{sbx}"
    );
    assert_eq!(foreign_ids(&page), ["paid-1", "held-2", "held-1"]);
    let t = text(&page);
    assert!(t.contains(&format!("href=\"/withdrawals/{paid}\"")));
    assert!(
        t.contains(&format!(
            "moved withdrawal #{paid} from processing to confirmed"
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!("created withdrawal #{h1}: 0.02 BTC (pending)")),
        "{t}"
    );
    let paid_row = row_with(
        &page,
        &format!("moved withdrawal #{paid} from processing to confirmed"),
    );
    assert!(paid_row.contains("<td>the system</td>"), "{paid_row}");
    let created_row = row_with(&page, &format!("created withdrawal #{h1}:"));
    assert!(created_row.contains("<td>API key "), "{created_row}");

    // One cancelled by the merchant: one fewer waiting, its hold back on the balance.
    let (code, _) = app
        .post_json("/withdrawal/cancel", &json!({"foreign_id": "held-1"}))
        .await;
    assert_eq!(code, 200);
    let (_, page) = b.get("/").await;
    assert!(page.contains("id=\"pending-count\">1</p>"));
    let btc = row(&page, "BTC");
    assert!(
        btc.contains(">0.97000000<") && btc.contains(">0.03000000<"),
        "{btc}"
    );
    assert!(text(&page).contains(&format!("moved withdrawal #{h1} from pending to cancelled")));
}

#[tokio::test]
async fn list_filters_each_narrow_to_exactly_their_rows() {
    // Payouts stay `processing` until the clock passes the sandbox's confirmation delay.
    let app = spawn_app_with(|s| s.sandbox.confirm_delay_secs = 600).await;
    app.credit("BTC", "1").await;
    app.credit("SBX", "100000").await;
    let day1 = date(app.clock.now_ms());
    withdraw_ok(&app, "c-sbx-1", "SBX", "1", "sbx_alice").await;
    withdraw_ok(&app, "c-btc-1", "BTC", "0.001", BTC_ADDR).await;
    // Submitted to the rail (the merchant's "processing" also covers "approved", not yet
    // submitted), so that moving the clock past the delay confirms both.
    for fid in ["c-sbx-1", "c-btc-1"] {
        eventually(&format!("{fid} submitted"), || async {
            let w = wdb::by_foreign_id(&app.state.db, app.project_id(), fid)
                .await
                .expect("read");
            w.filter(|w| w.status == Status::Processing).map(|_| ())
        })
        .await;
    }
    app.clock.advance_secs(601);
    app.wait_for_status("c-sbx-1", "confirmed").await;
    app.wait_for_status("c-btc-1", "confirmed").await;

    app.clock.advance_ms(2 * DAY_MS);
    let later = date(app.clock.now_ms());
    let between = date(app.clock.now_ms() - DAY_MS);
    assert!(day1 < between && between < later);
    for (fid, cur, amount, addr) in [
        ("p-sbx-1", "SBX", "1500", "sbx_bob"),
        ("p-btc-1", "BTC", "0.02", BTC_ADDR),
        ("x-sbx-1", "SBX", "1200", "sbx_carol"),
        ("d-sbx-1", "SBX", "1100", "sbx_dave"),
    ] {
        assert_eq!(withdraw_ok(&app, fid, cur, amount, addr).await.1, "pending");
    }
    let (code, _) = app
        .post_json("/withdrawal/cancel", &json!({"foreign_id": "x-sbx-1"}))
        .await;
    assert_eq!(code, 200);
    let user = app.create_user("owner", true).await;
    let d = wdb::by_foreign_id(&app.state.db, app.project_id(), "d-sbx-1")
        .await
        .unwrap()
        .unwrap();
    wsvc::change(
        &app.state,
        &d,
        Change {
            event: Event::Decline,
            actor: &Actor::User(user.id.clone()),
            note: "declined in the test",
            error: Some("Declined by user ID:1"),
            txid: None,
            check_at: None,
            origin: &Origin::default(),
        },
    )
    .await
    .expect("decline");
    withdraw_ok(&app, "r-sbx-1", "SBX", "2", "sbx_alice").await;
    app.wait_for_status("r-sbx-1", "processing").await;

    let b = app.signed_in(&user).await;
    let ids = |q: &'static str| {
        let b = b.clone();
        async move {
            let (status, page) = b.get(&format!("/withdrawals{q}")).await;
            assert_eq!(status, 200, "{q}: {page}");
            foreign_ids(&page)
        }
    };
    let all = [
        "r-sbx-1", "d-sbx-1", "x-sbx-1", "p-btc-1", "p-sbx-1", "c-btc-1", "c-sbx-1",
    ];
    assert_eq!(ids("").await, all);
    assert_eq!(ids("?status=pending").await, ["p-btc-1", "p-sbx-1"]);
    assert_eq!(ids("?status=processing").await, ["r-sbx-1"]);
    assert_eq!(ids("?status=confirmed").await, ["c-btc-1", "c-sbx-1"]);
    assert_eq!(ids("?status=declined").await, ["d-sbx-1"]);
    assert_eq!(ids("?status=cancelled").await, ["x-sbx-1"]);
    assert_eq!(ids("?currency=BTC").await, ["p-btc-1", "c-btc-1"]);
    assert_eq!(ids("?currency=btc&status=").await, ["p-btc-1", "c-btc-1"]);
    assert_eq!(ids("?currency=SBX&status=pending").await, ["p-sbx-1"]);
    assert_eq!(ids("?foreign_id=p-sbx-1").await, ["p-sbx-1"]);
    assert!(
        ids("?foreign_id=p-sbx").await.is_empty(),
        "foreign id matches exactly"
    );
    assert_eq!(ids("?address=sbx_alice").await, ["r-sbx-1", "c-sbx-1"]);
    assert!(
        ids("?address=sbx_ali").await.is_empty(),
        "address matches exactly"
    );
    assert!(ids("?foreign_id=%27%20OR%201%3D1%20--").await.is_empty());

    let by_dates = |from: &str, to: &str| {
        let (b, q) = (b.clone(), format!("/withdrawals?from={from}&to={to}"));
        async move {
            let (status, page) = b.get(&q).await;
            assert_eq!(status, 200, "{q}");
            foreign_ids(&page)
        }
    };
    assert_eq!(by_dates(&day1, &day1).await, ["c-btc-1", "c-sbx-1"]);
    assert_eq!(by_dates(&later, &later).await, &all[..5]);
    assert_eq!(by_dates(&day1, &later).await, all);
    assert_eq!(by_dates(&day1, "").await, all);
    assert_eq!(by_dates("", &day1).await, ["c-btc-1", "c-sbx-1"]);
    assert_eq!(by_dates(&later, "").await, &all[..5]);
    let (_, page) = b
        .get(&format!("/withdrawals?from={between}&to={between}"))
        .await;
    assert!(foreign_ids(&page).is_empty());
    assert!(page.contains("No withdrawal matches these filters."));
    let (_, page) = b
        .get(&format!("/withdrawals?status=confirmed&from={later}"))
        .await;
    assert!(foreign_ids(&page).is_empty());

    // Bad input: the page says what is wrong and keeps what was typed; no rows, no 500.
    for (q, says) in [
        (
            "?from=2026-02-30",
            "“From” must be a calendar date written like 2026-01-31 (UTC); “2026-02-30” is not.",
        ),
        ("?to=last%20week", "“To” must be a calendar date"),
        ("?status=approved", "There is no status “approved”"),
        ("?currency=DOGE", "There is no currency “DOGE”."),
        ("?before=abc", "This page link is damaged"),
        ("?before=5&after=3", "This page link is damaged"),
    ] {
        let (status, page) = b.get(&format!("/withdrawals{q}")).await;
        assert_eq!(status, 400, "{q}");
        assert!(text(&page).contains(says), "{q}: {page}");
        assert!(foreign_ids(&page).is_empty(), "{q}");
    }
    let (_, page) = b.get(&format!("/withdrawals?from={day1}&to={day1}0")).await;
    assert!(
        text(&page).contains(&format!("value=\"{day1}0\"")),
        "the bad value is kept in the form"
    );
    let (_, page) = b.get(&format!("/withdrawals?from={later}&to={day1}")).await;
    assert!(text(&page).contains("The “From” date is after the “To” date."));
}

#[tokio::test]
async fn an_approved_withdrawal_not_yet_submitted_is_listed_as_processing() {
    // No worker: an approved withdrawal stays approved (not handed to the rail).
    let app = spawn_app_with(|s| s.worker.enabled = false).await;
    app.credit("BTC", "1").await;
    let (id, status) = withdraw_ok(&app, "approved-1", "BTC", "0.01", BTC_ADDR).await;
    assert_eq!(status, "processing");
    let stored = wdb::by_id(&app.state.db, id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Approved);
    let b = owner(&app).await;
    let (_, page) = b.get("/withdrawals?status=processing").await;
    assert_eq!(foreign_ids(&page), ["approved-1"]);
    assert!(row_with(&page, "approved-1").contains("badge processing"));
    let (_, page) = b.get("/withdrawals?status=pending").await;
    assert!(foreign_ids(&page).is_empty());
    let (_, page) = b.get(&format!("/withdrawals/{id}")).await;
    assert!(text(&page).contains("approved, waiting to be handed to the payout rail"));
}

/// Walks the list from `start` following `rel` links; returns each page's foreign ids.
async fn walk(b: &Browser, start: &str, rel: &str) -> (Vec<Vec<String>>, String) {
    let mut pages = Vec::new();
    let mut at = start.to_string();
    let mut last_page;
    loop {
        let (status, page) = b.get(&at).await;
        assert_eq!(status, 200, "{at}");
        pages.push(foreign_ids(&page));
        last_page = page;
        match link(&last_page, rel) {
            Some(next) => at = next,
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    (pages, at)
}

#[tokio::test]
async fn pagination_walks_every_row_exactly_once_both_ways() {
    let app = spawn_app().await;
    app.credit("SBX", "1000").await;
    app.credit("BTC", "1").await;
    let mut created = Vec::new();
    for i in 0..120 {
        let fid = format!("pg-{i:03}");
        withdraw_ok(&app, &fid, "SBX", "0.5", "sbx_pages").await;
        created.push(fid);
        if i % 20 == 0 {
            let fid = format!("btc-{i:03}");
            withdraw_ok(&app, &fid, "BTC", "0.0001", BTC_ADDR).await;
            created.push(fid);
        }
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let b = owner(&app).await;

    let (status, first) = b.get("/withdrawals").await;
    assert_eq!(status, 200);
    assert_eq!(
        link(&first, "prev"),
        None,
        "nothing is newer than the newest page"
    );
    let (older, last_at) = walk(&b, "/withdrawals", "next").await;
    assert_eq!(older.iter().map(Vec::len).collect::<Vec<_>>(), [50, 50, 26]);
    assert_eq!(older.concat(), newest_first);
    assert!(last_at.contains("before="));

    let (newer, top_at) = walk(&b, &last_at, "prev").await;
    assert_eq!(newer.iter().map(Vec::len).collect::<Vec<_>>(), [26, 50, 50]);
    let back: Vec<String> = newer.into_iter().rev().flatten().collect();
    assert_eq!(back, newest_first);
    assert!(top_at.contains("after="));

    // A filter holds across pages, both ways.
    let sbx_only: Vec<String> = newest_first
        .iter()
        .filter(|f| f.starts_with("pg-"))
        .cloned()
        .collect();
    let (older, last_at) = walk(&b, "/withdrawals?currency=SBX", "next").await;
    assert_eq!(older.iter().map(Vec::len).collect::<Vec<_>>(), [50, 50, 20]);
    assert_eq!(older.concat(), sbx_only);
    assert!(last_at.contains("currency=SBX"));
    let (newer, _) = walk(&b, &last_at, "prev").await;
    assert_eq!(
        newer.into_iter().rev().flatten().collect::<Vec<_>>(),
        sbx_only
    );
}

mod detail;
mod in_chromium;
