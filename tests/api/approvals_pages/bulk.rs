//! The approval queue and bulk decisions: one code for the batch, each withdrawal decided by
//! its own rules, and a result line for each.

use super::{decide, fresh_code, held, paid_out, status, text, votes};
use crate::helpers::spawn_app;

/// The result line of withdrawal `id` on the bulk result page.
fn result_line(page: &str, id: i64) -> String {
    let t = text(page);
    let marker = format!("data-id=\"{id}\"");
    let at = t
        .find(&marker)
        .unwrap_or_else(|| panic!("no result for {id}:\n{t}"));
    let end = at + t[at..].find("</tr>").expect("row end");
    t[at..end].to_string()
}

#[tokio::test]
async fn the_queue_filters_sorts_and_a_bulk_approval_reports_each_result() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let a = held(&app, "q-a").await;
    let b_id = held(&app, "q-b").await;
    let gone = held(&app, "q-gone").await;
    let big = super::api_withdrawal(&app, "q-big", "0.05", None).await;
    let (alice, bob) = (
        app.create_user("owner", true).await,
        app.create_user("owner", true).await,
    );
    let member = app.create_user("member", true).await;

    // Bob declines one first.
    let bb = app.signed_in(&bob).await;
    let (s, _, _) = decide(&app, &bb, &bob, gone, "decline", "").await;
    assert_eq!(s, 303);

    let br = app.signed_in(&alice).await;
    let (s, page) = br.get("/approvals").await;
    assert_eq!(s, 200);
    let t = text(&page);
    assert!(t.contains("id=\"nav-approvals\""));
    assert!(
        t.contains("Approvals <span class=\"badge pending\">3</span>"),
        "{t}"
    );
    let order = |page: &str| -> Vec<String> {
        text(page)
            .split("data-foreign-id=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next().map(str::to_string))
            .collect()
    };
    assert_eq!(order(&page), ["q-a", "q-b", "q-big"]);
    assert!(
        t.contains("0/1 <span class=\"muted small\">owner needed</span>"),
        "{t}"
    );
    assert!(t.contains(BTC_SHORT), "{t}");
    let (_, page) = br.get("/approvals?sort=amount").await;
    assert_eq!(order(&page), ["q-big", "q-a", "q-b"]);
    let (_, page) = br.get("/approvals?reason=confirmation").await;
    assert!(order(&page).is_empty());
    let (s, _) = br.get("/approvals?reason=weather").await;
    assert_eq!(s, 400);
    // A member sees them but may decide none of them.
    let bm = app.signed_in(&member).await;
    let (_, page) = bm.get("/approvals?mine=1").await;
    assert!(order(&page).is_empty());

    // Alice approves four at once with one code: two succeed, one was declined already, and
    // one does not exist.
    br.get("/approvals").await;
    let code = fresh_code(&app, &alice);
    let ids = [
        a.to_string(),
        b_id.to_string(),
        gone.to_string(),
        "999999".to_string(),
    ];
    let mut fields: Vec<(&str, &str)> = ids.iter().map(|i| ("id", i.as_str())).collect();
    fields.push(("code", &code));
    fields.push(("decision", "approve"));
    let (s, page, _) = br.post_form("/approvals/bulk", &fields).await;
    assert_eq!(s, 200, "{page}");
    assert!(text(&page).contains("2 done, 2 refused"), "{page}");
    assert!(result_line(&page, a).contains("Done"));
    assert!(result_line(&page, b_id).contains("approved: the approvals are complete"));
    let declined = result_line(&page, gone);
    assert!(declined.contains("Refused"), "{declined}");
    assert!(
        declined.contains(&format!("already declined by {} at 20", bob.email)),
        "{declined}"
    );
    assert!(result_line(&page, 999_999).contains("withdrawal not found"));
    for id in [a, b_id] {
        paid_out(&app, id).await;
    }
    assert_eq!(status(&app, big).await, "pending");
    let channel: String =
        sqlx::query("SELECT channel FROM withdrawal_votes WHERE withdrawal_id = $1")
            .bind(a)
            .fetch_one(app.state.db.reader())
            .await
            .expect("vote")
            .try_get("channel")
            .expect("channel");
    assert_eq!(channel, "bulk");
}

use sqlx::Row;

const BTC_SHORT: &str = "tb1qurv0…rxswgm";

#[tokio::test]
async fn self_approval_is_refused_in_bulk_and_on_the_page() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (alice, bob) = (
        app.create_user("owner", true).await,
        app.create_user("owner", true).await,
    );
    let _ = bob;
    let b = app.signed_in(&alice).await;
    let id = super::payouts::manual_payout(&app, &b, &alice, "0.02", "self-1").await;
    assert_eq!(status(&app, id).await, "pending");

    let (_, page) = b.get(&format!("/withdrawals/{id}")).await;
    let t = text(&page);
    assert!(
        t.contains("You cannot decide this withdrawal: you initiated this withdrawal"),
        "{t}"
    );
    assert!(!t.contains("id=\"approve-form\""));
    let (s, page, _) = decide(&app, &b, &alice, id, "approve", "").await;
    assert_eq!(s, 403);
    assert!(text(&page).contains("Not recorded: you initiated this withdrawal"));

    b.get("/approvals").await;
    let code = fresh_code(&app, &alice);
    let ids = id.to_string();
    let (s, page, _) = b
        .post_form(
            "/approvals/bulk",
            &[("id", &ids), ("code", &code), ("decision", "approve")],
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        result_line(&page, id).contains("you initiated this withdrawal"),
        "{page}"
    );
    assert_eq!(
        (status(&app, id).await, votes(&app, id).await),
        ("pending".into(), 0)
    );
}

#[tokio::test]
async fn a_bulk_form_with_a_bad_code_or_nothing_ticked_changes_nothing() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let id = held(&app, "bc-1").await;
    let owner = app.create_user("owner", true).await;
    let b = app.signed_in(&owner).await;
    b.get("/approvals").await;
    let ids = id.to_string();
    let (s, page, _) = b
        .post_form(
            "/approvals/bulk",
            &[("id", &ids), ("code", "000000"), ("decision", "approve")],
        )
        .await;
    assert_eq!(s, 422);
    let t = text(&page);
    assert!(t.contains("id=\"bulk-error\">Verification code: "), "{t}");
    // The selection is kept.
    assert!(
        t.contains(&format!(
            "value=\"{id}\" aria-label=\"Select withdrawal {id}\" checked"
        )),
        "{t}"
    );
    let code = fresh_code(&app, &owner);
    let (s, page, _) = b
        .post_form(
            "/approvals/bulk",
            &[("code", &code), ("decision", "approve")],
        )
        .await;
    assert_eq!(s, 422);
    assert!(text(&page).contains("Tick at least one withdrawal"));
    assert_eq!(
        (status(&app, id).await, votes(&app, id).await),
        ("pending".into(), 0)
    );
}
