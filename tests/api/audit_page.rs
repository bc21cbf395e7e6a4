//! The audit log page and its CSV export: filters, keyset pages, escaping, project scope.

use crate::helpers::{TestApp, spawn_app};
use countersign::clock::{Clock, rfc3339};
use countersign::db::audit::Actor;
use countersign::domain::policy::{LimitSet, Scope};

/// Writes `n` limit changes by the command line (n audit records).
async fn cli_limit_changes(app: &TestApp, n: i64) {
    for i in 1..=n {
        countersign::service::projects::set_limits(
            &app.state.db,
            app.project_id(),
            Scope::Api,
            None,
            LimitSet {
                per_operation: Some((1000 + i).into()),
                ..LimitSet::default()
            },
            &Actor::Cli,
            app.clock.now_ms(),
        )
        .await
        .unwrap();
    }
}

fn rows(page: &str) -> Vec<i64> {
    page.match_indices("<tr id=\"audit-")
        .map(|(i, m)| {
            let rest = &page[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// A small RFC 4180 reader: records of fields, quotes undone.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut out, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                out.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    out
}

#[tokio::test]
async fn the_audit_log_pages_back_by_sequence_and_filters() {
    let app = spawn_app().await;
    app.create_user("owner", true).await;
    let member = app.create_user("member", false).await;
    cli_limit_changes(&app, 60).await;
    let b = app.signed_in(&member).await;
    let (status, page) = b.get("/audit").await;
    assert_eq!(status, 200, "every signed-in user may read the log");
    let first = rows(&page);
    assert_eq!(first.len(), 50);
    assert!(first.windows(2).all(|w| w[0] > w[1]), "newest first");
    let at = page.find("id=\"older\" href=\"").expect("an older page");
    let href = &page[at + 17..];
    let href = crate::team::unescape(&href[..href.find('"').unwrap()]);
    let (_, older) = b.get(&href).await;
    let second = rows(&older);
    assert!(!second.is_empty() && second[0] < *first.last().unwrap());
    assert!(!older.contains("id=\"older\""));
    let total = app
        .count(&format!(
            "audit_log WHERE project_id = '{}'",
            app.project_id()
        ))
        .await;
    assert_eq!(
        (first.len() + second.len()) as i64,
        total,
        "every record, once"
    );

    // By action prefix, by actor, by day.
    let (_, page) = b.get("/audit?action=limits.").await;
    assert_eq!(rows(&page).len(), 50);
    assert!(!page.contains("<code class=\"action\">signin.succeeded</code>"));
    let (_, page) = b.get(&format!("/audit?actor=user:{}", member.id)).await;
    assert!(
        page.contains("<code class=\"action\">signin.succeeded</code>"),
        "{page}"
    );
    assert!(!page.contains("<code class=\"action\">limits.changed</code>"));
    let (_, page) = b.get("/audit?actor=cli&action=user.created").await;
    assert_eq!(rows(&page).len(), 2, "the two users created");
    assert!(page.contains("command line"), "{page}");
    let today = &rfc3339(app.clock.now_ms())[..10];
    let (_, page) = b
        .get(&format!(
            "/audit?action=user.created&from={today}&to={today}"
        ))
        .await;
    assert_eq!(rows(&page).len(), 2);
    let tomorrow = &rfc3339(app.clock.now_ms() + 86_400_000)[..10];
    let (_, page) = b.get(&format!("/audit?from={tomorrow}")).await;
    assert!(rows(&page).is_empty() && page.contains("Nothing matches"));
    let (status, page) = b.get("/audit?from=21/11/2026").await;
    assert_eq!(status, 422);
    assert!(page.contains("From:"), "{page}");
    let (status, _) = b.get("/audit?actor=robot").await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn the_csv_export_has_the_same_records_escaped_with_utc_times() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    cli_limit_changes(&app, 3).await;
    let b = app.signed_in(&owner).await;
    let r = b
        .http
        .get(format!("{}/audit.csv?action=limits.changed", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let text = r.text().await.unwrap();
    let records = parse_csv(&text);
    assert_eq!(
        records[0],
        [
            "seq",
            "time_utc",
            "actor_kind",
            "actor_id",
            "actor",
            "action",
            "subject",
            "details",
            "ip",
            "user_agent",
            "hash"
        ]
    );
    assert_eq!(records.len(), 4, "{text}");
    for r in &records[1..] {
        assert_eq!(r.len(), 11);
        assert_eq!(r[5], "limits.changed");
        assert!(r[1].ends_with('Z') && r[1].len() == 20, "{}", r[1]);
        let details: serde_json::Value =
            serde_json::from_str(&r[7]).expect("details survive quoting");
        assert!(details["after"]["per_operation"].is_string());
    }
    assert!(
        records[1][7].contains(','),
        "a field with commas and quotes round-trips"
    );
    assert!(
        text.contains("\"{\"\"after\"\":{\"\"per_day\"\""),
        "quotes are doubled inside a quoted field"
    );
    // The same filters as the page.
    let r = b
        .http
        .get(format!("{}/audit.csv?actor=user:{}", app.base, owner.id))
        .send()
        .await
        .unwrap();
    let records = parse_csv(&r.text().await.unwrap());
    assert!(records.len() > 1);
    assert!(
        records[1..]
            .iter()
            .all(|r| r[2] == "user" && r[3] == owner.id && r[4] == owner.email)
    );
    let r = b
        .http
        .get(format!("{}/audit.csv?to=1999-01-01", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        parse_csv(&r.text().await.unwrap()).len(),
        1,
        "only the header"
    );
    let r = b
        .http
        .get(format!("{}/audit.csv?to=not-a-date", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn another_projects_records_are_not_shown() {
    let app = spawn_app().await;
    let owner = app.create_user("owner", true).await;
    let other = app.other_project("Other", "ops@other.test").await;
    let stranger = app.create_user_in(&other.project_id, "member", false).await;
    let b = app.signed_in(&owner).await;
    let (_, page) = b.get("/audit?action=project.created").await;
    assert_eq!(rows(&page).len(), 1);
    let (_, page) = b.get("/audit").await;
    assert!(!page.contains(&stranger.id) && !page.contains(&other.project_id));
    let r = b
        .http
        .get(format!("{}/audit.csv", app.base))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains(app.project_id()) && !text.contains(&other.project_id));
    // Signed out, the page asks to sign in.
    let (status, _) = app.browser().get("/audit").await;
    assert_eq!(status, 303);
}
