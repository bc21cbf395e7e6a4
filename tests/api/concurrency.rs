use crate::helpers::{BTC_ADDR, spawn_app, spawn_app_with};
use countersign::db::audit::{Actor, Origin};
use countersign::db::{balances, withdrawals as wdb};
use countersign::domain::withdrawal::Event;
use countersign::service::withdrawals::{self as svc, Change};
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn fifty_identical_requests_make_one_withdrawal_and_identical_answers() {
    let app = Arc::new(spawn_app().await);
    app.credit("BTC", "1").await;
    let body =
        json!({"foreign_id": "race", "currency": "BTC", "amount": "0.01", "address": BTC_ADDR});
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { app.post_json("/withdrawal/crypto", &body).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "answers differ: {answers:?}"
    );
    assert_eq!(answers[0].0, 200);
    assert_eq!(app.count("withdrawals").await, 1);
    app.wait_for_status("race", "confirmed").await;
    assert_eq!(
        app.balance("BTC").await,
        ("0.99000000".into(), "0.00000000".into())
    );
}

#[tokio::test]
async fn a_hundred_withdrawals_racing_for_a_balance_that_covers_ten() {
    let app = Arc::new(spawn_app().await);
    app.credit("SBX", "10").await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.withdraw(&format!("r{i}"), "SBX", "1", "sbx_wallet_1")
                    .await
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (code, v) = t.await.unwrap();
        match code {
            200 => ok += 1,
            400 if v["error_code"] == "balance_not_enough" => refused += 1,
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((ok, refused), (10, 90));
    assert_eq!(app.count("withdrawals").await, 10);
    let (available, _) = app.balance("SBX").await;
    assert_eq!(available, "0.00000000");
    assert!(
        balances::reconcile(&app.state.db, app.project_id())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn cancel_racing_approval_and_expiry_has_exactly_one_outcome() {
    let app = Arc::new(spawn_app().await);
    app.credit("BTC", "100").await;
    for round in 0..8 {
        let fid = format!("c{round}");
        let (_, v) = app.withdraw(&fid, "BTC", "0.5", BTC_ADDR).await;
        assert_eq!(v["data"]["status"], "pending");
        let w = wdb::by_foreign_id(&app.state.db, app.project_id(), &fid)
            .await
            .unwrap()
            .unwrap();
        let cancel = {
            let (app, fid) = (app.clone(), fid.clone());
            tokio::spawn(async move {
                app.post_json("/withdrawal/cancel", &json!({"foreign_id": fid}))
                    .await
                    .0
            })
        };
        let approve = {
            let (app, w) = (app.clone(), w.clone());
            tokio::spawn(async move {
                svc::change(
                    &app.state,
                    &w,
                    Change {
                        event: Event::ApprovalsMet,
                        actor: &Actor::User("owner-2".into()),
                        note: "approved",
                        error: None,
                        txid: None,
                        check_at: None,
                        origin: &Origin::default(),
                    },
                )
                .await
                .is_ok()
            })
        };
        let expire = {
            let (app, w) = (app.clone(), w.clone());
            tokio::spawn(async move {
                svc::change(
                    &app.state,
                    &w,
                    Change {
                        event: Event::Expire,
                        actor: &Actor::System,
                        note: "expired",
                        error: Some("Expired"),
                        txid: None,
                        check_at: None,
                        origin: &Origin::default(),
                    },
                )
                .await
                .is_ok()
            })
        };
        let cancelled = cancel.await.unwrap() == 200;
        let approved = approve.await.unwrap();
        let expired = expire.await.unwrap();
        assert_eq!(
            [cancelled, approved, expired]
                .iter()
                .filter(|x| **x)
                .count(),
            1,
            "round {round}"
        );
        if approved {
            app.wait_for_status(&fid, "confirmed").await;
            assert_eq!(app.sandbox_submissions(w.id).await, 1);
        } else {
            let v = app.status_of(&fid).await;
            assert_eq!(v["status"], "cancelled");
            assert_eq!(
                v["error"],
                if expired {
                    "Expired"
                } else {
                    "Cancelled by merchant"
                }
            );
            assert_eq!(app.sandbox_submissions(w.id).await, 0);
        }
        // Exactly one status change after creation is recorded.
        let events = wdb::events(&app.state.db, w.id).await.unwrap();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.from_status.as_deref() == Some("pending"))
                .count(),
            1
        );
    }
    assert!(
        balances::reconcile(&app.state.db, app.project_id())
            .await
            .unwrap()
            .is_empty()
    );
    let (_, held) = app.balance("BTC").await;
    assert_eq!(held, "0.00000000");
}

#[tokio::test]
async fn exchange_and_plain_withdrawals_racing_count_every_one_in_the_limit_windows() {
    use sqlx::Row;
    let app = Arc::new(spawn_app().await);
    app.credit("BTC", "1").await;
    app.credit("EUR", "1000").await;
    // 12 × 100 EUR into BTC (the EUR covers 10) and 12 × 0.001 BTC (60 EUR each), at once:
    // the first hold EUR, the others BTC, and all count in the BTC windows.
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let body = if i % 2 == 0 {
                    json!({"foreign_id": format!("x{i}"), "currency": "EUR", "convert_to": "BTC",
                        "amount": "100", "address": BTC_ADDR})
                } else {
                    json!({"foreign_id": format!("p{i}"), "currency": "BTC", "amount": "0.001",
                        "address": BTC_ADDR})
                };
                app.post_json("/withdrawal/crypto", &body).await
            })
        })
        .collect();
    let (mut accepted, mut paid) = ((0, 0), Vec::new());
    for (i, t) in tasks.into_iter().enumerate() {
        let (code, v) = t.await.unwrap();
        if code == 200 {
            paid.push(v["data"]["foreign_id"].as_str().unwrap().to_string());
        }
        match (code, i % 2) {
            (200, 0) => accepted.0 += 1,
            (200, _) => accepted.1 += 1,
            (400, 0) if v["error_code"] == "balance_not_enough" => {}
            other => panic!("unexpected {other:?}: {v}"),
        }
    }
    assert_eq!(accepted, (10, 12));
    assert_eq!(app.balance("EUR").await.0, "0.00");
    // Every accepted withdrawal is in the day's BTC window: 10 × 100 + 12 × 60 EUR.
    let day = sqlx::query(
        "SELECT amount, base_amount FROM limit_usage WHERE currency = 'BTC' AND bucket LIKE 'd%'",
    )
    .fetch_one(app.state.db.reader())
    .await
    .unwrap();
    let base: String = day.get("base_amount");
    let amount: String = day.get("amount");
    assert_eq!(base.parse::<rust_decimal::Decimal>().unwrap(), 1720.into());
    // 10 × 0.00166666 (100 EUR, no fee configured) + 12 × 0.001
    assert_eq!(
        amount.parse::<rust_decimal::Decimal>().unwrap(),
        "0.0286666".parse().unwrap()
    );
    // Once every payout has settled, the ledger explains every balance.
    for fid in &paid {
        app.wait_for_status(fid, "confirmed").await;
    }
    assert!(
        balances::reconcile(&app.state.db, app.project_id())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Withdrawals that arrive while one is being written wait and are then written together, in
/// at most two transactions (what the writer took before the balance was free, then all the
/// rest: how many the first took depends on timing), by the same rules as one by one: each
/// hold against the running balance, each limit check against the running window, one answer
/// each.
#[tokio::test]
async fn withdrawals_queued_behind_a_held_balance_are_written_together_by_the_same_rules() {
    use countersign::domain::money::Currency;
    use countersign::domain::policy::{LimitSet, Scope};
    let app = Arc::new(spawn_app().await);
    app.credit("SBX", "20").await;
    let now = countersign::clock::Clock::now_ms(&app.clock);
    let hourly = LimitSet {
        per_operation: None,
        per_hour: Some("10".parse().unwrap()),
        per_day: None,
    };
    countersign::service::projects::set_limits(
        &app.state.db,
        app.project_id(),
        Scope::Api,
        Some(Currency::Sbx),
        hourly,
        &Actor::Cli,
        now,
    )
    .await
    .unwrap();
    // Hold the balance (on SQLite, the one write connection) so that all 30 queue up.
    let mut blocker = app.state.db.begin().await.unwrap();
    balances::lock(&app.state.db, &mut blocker, app.project_id(), "SBX")
        .await
        .unwrap()
        .unwrap();
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.withdraw(&format!("q{i}"), "SBX", "1", "sbx_wallet_1")
                    .await
            })
        })
        .collect();
    crate::helpers::eventually("all 30 waiting to be written", || async {
        (app.state.intake.unanswered() == 30).then_some(())
    })
    .await;
    blocker.rollback().await.unwrap();
    let (mut approved, mut pending, mut refused) = (Vec::new(), 0, 0);
    for t in tasks {
        let (code, v) = t.await.unwrap();
        match (code, v["data"]["status"].as_str()) {
            (200, Some("approved" | "processing" | "confirmed")) => {
                approved.push(v["data"]["foreign_id"].as_str().unwrap().to_string());
            }
            (200, Some("pending")) => pending += 1,
            (400, _) if v["error_code"] == "balance_not_enough" => refused += 1,
            other => panic!("unexpected {other:?}: {v}"),
        }
    }
    // 20 SBX cover 20; the hour's 10 SBX let 10 through without approval.
    assert_eq!((approved.len(), pending, refused), (10, 10, 10));
    assert_eq!(app.count("withdrawals").await, 20);
    // One creation event each (the worker may already have added payout events).
    let created = app
        .count("withdrawal_events WHERE from_status IS NULL")
        .await;
    assert_eq!(created, 20);
    // At most two transactions wrote the 20: what the writer took first, then the rest.
    assert_eq!(app.metric("countersign_intake_batch_size_sum").await, 20.0);
    assert!(app.metric("countersign_intake_batch_size_count").await <= 2.0);
    // Once the ten approved are paid, what is held is the ten pending.
    for fid in &approved {
        app.wait_for_status(fid, "confirmed").await;
    }
    assert_eq!(
        app.balance("SBX").await,
        ("0.00000000".into(), "10.00000000".into())
    );
    app.assert_books_whole(app.project_id()).await;
}

/// A batch (at most two: what the writer took before the balances were free, then the rest)
/// holding two projects' withdrawals, replays of an earlier one, a new and a known address,
/// the same `foreign_id` in both projects and requests beyond each balance: each gets
/// the answer it would have got alone (the batch's reads and locks are one statement on
/// PostgreSQL, see `db::intake`), and both audit chains and both ledgers stay whole.
#[tokio::test]
async fn a_batch_of_two_projects_with_replays_and_refusals_answers_each_as_alone() {
    use countersign::domain::money::Currency;
    let app = Arc::new(spawn_app().await);
    app.credit("SBX", "10").await;
    let other = app.other_project("Other", "ops@other.test").await;
    countersign::service::projects::credit(
        &app.state.db,
        &other.project_id,
        Currency::parse("SBX").unwrap(),
        "3".parse().unwrap(),
        &Actor::Cli,
        countersign::clock::Clock::now_ms(&app.clock),
    )
    .await
    .unwrap();
    let (code, first) = app.withdraw("first", "SBX", "1", "sbx_wallet_1").await;
    assert_eq!(code, 200, "{first}");

    // Both balances held, so that every request below queues and goes into one batch.
    let mut blocker = app.state.db.begin().await.unwrap();
    let mut projects = [app.project_id().to_string(), other.project_id.clone()];
    projects.sort();
    for project_id in &projects {
        balances::lock(&app.state.db, &mut blocker, project_id, "SBX")
            .await
            .unwrap()
            .unwrap();
    }
    // (project: 0 this one, 1 the other; foreign_id; amount; address)
    let requests: Vec<(usize, &str, &str, &str)> = vec![
        (0, "first", "1", "sbx_wallet_1"),
        (0, "a1", "1", "sbx_wallet_new"),
        (1, "b1", "1", "sbx_wallet_1"),
        (0, "a2", "1", "sbx_wallet_1"),
        (0, "first", "1", "sbx_wallet_1"),
        (0, "too-much", "100", "sbx_wallet_1"),
        (1, "a1", "1", "sbx_wallet_new"),
        (1, "b2", "1", "sbx_wallet_1"),
        (1, "b3", "1", "sbx_wallet_1"),
        (0, "a3", "1", "sbx_wallet_new"),
    ];
    let creds = [
        (app.creds.api_key.clone(), app.creds.api_secret.clone()),
        (other.api_key.clone(), other.api_secret.clone()),
    ];
    let tasks: Vec<_> = requests
        .iter()
        .map(|&(project, foreign_id, amount, address)| {
            let (app, creds) = (app.clone(), creds[project].clone());
            let body = json!({"foreign_id": foreign_id, "currency": "SBX", "amount": amount,
                "address": address})
            .to_string();
            tokio::spawn(async move {
                let r = app
                    .http
                    .post(app.url("/api/v2/withdrawal/crypto"))
                    .header("X-Processing-Key", &creds.0)
                    .header(
                        "X-Processing-Signature",
                        crate::helpers::sign(&creds.1, body.as_bytes()),
                    )
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let code = r.status().as_u16();
                (code, r.json::<serde_json::Value>().await.unwrap())
            })
        })
        .collect();
    crate::helpers::eventually("all waiting to be written", || async {
        (app.state.intake.unanswered() == requests.len()).then_some(())
    })
    .await;
    blocker.rollback().await.unwrap();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }

    let mut ids = std::collections::BTreeSet::new();
    let mut other_created = 0;
    for (&(project, foreign_id, _, _), (code, v)) in requests.iter().zip(&answers) {
        match (project, foreign_id) {
            (0, "first") => {
                assert_eq!(*code, 200, "{v}");
                assert_eq!(v["data"]["id"], first["data"]["id"], "a replay: {v}");
            }
            (0, "too-much") => {
                assert_eq!(
                    (*code, v["error_code"].as_str()),
                    (400, Some("balance_not_enough"))
                )
            }
            (0, _) => {
                assert_eq!(*code, 200, "{foreign_id}: {v}");
                assert_eq!(v["data"]["foreign_id"], foreign_id);
                assert!(ids.insert(v["data"]["id"].to_string()), "a new id: {v}");
            }
            // The other project's 3 SBX cover three of its four.
            _ => match (*code, v["error_code"].as_str()) {
                (200, _) => {
                    assert_eq!(v["data"]["foreign_id"], foreign_id);
                    assert!(ids.insert(v["data"]["id"].to_string()), "a new id: {v}");
                    other_created += 1;
                }
                (400, Some("balance_not_enough")) => {}
                other => panic!("{foreign_id}: {other:?} {v}"),
            },
        }
    }
    assert_eq!(other_created, 3, "{answers:?}");
    let count = |project_id: String| {
        let app = app.clone();
        async move {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM withdrawals WHERE project_id = $1")
                .bind(project_id)
                .fetch_one(app.state.db.reader())
                .await
                .unwrap();
            sqlx::Row::get::<i64, _>(&row, "n")
        }
    };
    assert_eq!(count(app.project_id().to_string()).await, 4);
    assert_eq!(count(other.project_id.clone()).await, 3);
    // One address book entry per project and address used.
    let entries = app.count("payout_addresses").await;
    let new_used_by_other = answers
        .iter()
        .zip(&requests)
        .any(|((code, _), r)| *code == 200 && r.0 == 1 && r.3 == "sbx_wallet_new");
    assert_eq!(entries, 3 + i64::from(new_used_by_other));
    // The first withdrawal's batch, then at most two: what the writer took before the
    // balances were free, then the rest; 7 withdrawals written in all.
    assert_eq!(app.metric("countersign_intake_batch_size_sum").await, 7.0);
    assert!(app.metric("countersign_intake_batch_size_count").await <= 3.0);
    for project_id in &projects {
        app.assert_books_whole(project_id).await;
    }
}

/// Two changes for one withdrawal in one batch (two jobs that should not both exist): one is
/// made, the other is not, and the funds move once.
#[tokio::test]
async fn a_batch_of_changes_moves_each_withdrawal_once() {
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let (_, v) = app.withdraw("twice", "BTC", "0.5", BTC_ADDR).await;
    assert_eq!(v["data"]["status"], "pending");
    let w = wdb::by_foreign_id(&app.state.db, app.project_id(), "twice")
        .await
        .unwrap()
        .unwrap();
    let origin = Origin::default();
    let cancel = || Change {
        event: Event::Cancel,
        actor: &Actor::System,
        note: "cancelled",
        error: Some("Cancelled by merchant"),
        txid: None,
        check_at: None,
        origin: &origin,
    };
    let answers = svc::change_many(&app.state, &[(&w, cancel()), (&w, cancel())])
        .await
        .unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].as_ref().unwrap().status.as_str(), "cancelled");
    assert!(answers[1].is_none());
    let releases = app.count("ledger_entries WHERE kind = 'release'").await;
    assert_eq!(releases, 1);
    assert_eq!(app.balance("BTC").await.1, "0.00000000");
    assert!(
        balances::reconcile(&app.state.db, app.project_id())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn batched_writes_that_miss_their_rows_leave_nothing_behind() {
    use countersign::db::batch::{Arg, Writes};
    let app = spawn_app().await;
    app.credit("BTC", "1").await;
    let db = &app.state.db;
    let usage = |bucket: &str| {
        (
            "INSERT INTO limit_usage (project_id, scope, currency, bucket, amount, base_amount)
             VALUES ($1, 'api', 'BTC', $2, '1', '1')"
                .to_string(),
            vec![
                Arg::Text(app.project_id().to_string()),
                Arg::Text(bucket.to_string()),
            ],
        )
    };
    // The balance's version is not 999: its update touches no row, and the usage row written
    // before it in the same batch must not survive.
    let mut tx = db.begin().await.unwrap();
    let mut writes = Writes::new(db.engine());
    let (sql, args) = usage("h-stale");
    writes.push(sql, args, Some(1));
    writes.push(
        "UPDATE balances SET held = '0' WHERE project_id = $1 AND currency = 'BTC' AND version = 999"
            .to_string(),
        vec![Arg::Text(app.project_id().to_string())],
        Some(1),
    );
    let failed = writes.run(&mut tx).await.unwrap_err();
    assert!(failed.is_stale(), "{failed}");
    drop(tx);
    assert_eq!(app.count("limit_usage").await, 0);

    // The same writes with the right expectations go through together.
    let mut tx = db.begin().await.unwrap();
    let mut writes = Writes::new(db.engine());
    for bucket in ["h-1", "h-2"] {
        let (sql, args) = usage(bucket);
        writes.push(sql, args, Some(1));
    }
    writes.push(
        "UPDATE balances SET updated_at = updated_at WHERE project_id = $1 AND currency = 'BTC'"
            .to_string(),
        vec![Arg::Text(app.project_id().to_string())],
        Some(1),
    );
    writes.run(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(app.count("limit_usage").await, 2);
}

/// The worker's payouts lock their withdrawals before the balance (`svc::record_payouts`).
/// Two instances recording the same rail answers at once (as when a lease ran out), in
/// opposite orders and while new withdrawals of the project are written: each withdrawal moves
/// once, its funds are debited once, nothing waits for ever, and the books stay whole. A
/// pending withdrawal handed to it is not moved: only approved and processing withdrawals,
/// which no one else moves, are its to lock first.
#[tokio::test]
async fn payouts_recorded_twice_at_once_beside_new_withdrawals_move_each_withdrawal_once() {
    let app = spawn_app_with(|s| s.worker.enabled = false).await;
    app.credit("SBX", "100").await;
    for i in 0..8 {
        let (code, v) = app
            .withdraw(&format!("p{i}"), "SBX", "1", "sbx_wallet_1")
            .await;
        assert_eq!(
            (code, &v["data"]["approval_required"]),
            (200, &json!(false)),
            "{v}"
        );
    }
    let read = |prefix: &'static str| {
        let db = app.state.db.clone();
        let project_id = app.project_id().to_string();
        async move {
            let mut ws = Vec::new();
            for i in 0..8 {
                let foreign_id = format!("{prefix}{i}");
                ws.push(
                    wdb::by_foreign_id(&db, &project_id, &foreign_id)
                        .await
                        .unwrap()
                        .unwrap(),
                );
            }
            ws
        }
    };
    let origin = Origin::default();
    let step = |event| Change {
        event,
        actor: &Actor::System,
        note: "the rail said so",
        error: None,
        txid: Some("sbx_tx"),
        check_at: Some(0),
        origin: &origin,
    };
    for (round, (event, to)) in [
        (Event::PayoutSubmitted, "processing"),
        (Event::PayoutConfirmed, "confirmed"),
    ]
    .into_iter()
    .enumerate()
    {
        let ws = read("p").await;
        let forward: Vec<_> = ws.iter().map(|w| (w, step(event))).collect();
        let backward: Vec<_> = ws.iter().rev().map(|w| (w, step(event))).collect();
        let new_ones = async {
            let mut codes = Vec::new();
            for i in 0..4 {
                let foreign_id = format!("n{round}-{i}");
                codes.push(
                    app.withdraw(&foreign_id, "SBX", "1", "sbx_wallet_2")
                        .await
                        .0,
                );
            }
            codes
        };
        let (a, b, codes) = tokio::join!(
            svc::record_payouts(&app.state, &forward),
            svc::record_payouts(&app.state, &backward),
            new_ones
        );
        let (a, mut b) = (a.unwrap(), b.unwrap());
        b.reverse();
        assert_eq!(codes, [200; 4]);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let moved: Vec<_> = [x, y].into_iter().flatten().collect();
            assert_eq!(moved.len(), 1, "p{i} moved by {} recorders", moved.len());
            assert_eq!(moved[0].status.as_str(), to);
        }
        for w in read("p").await {
            assert_eq!(w.status.as_str(), to);
        }
    }
    let debits = app.count("ledger_entries WHERE kind = 'debit'").await;
    assert_eq!(debits, 8);
    // 8 paid out, 8 new ones held.
    assert_eq!(
        app.balance("SBX").await,
        ("84.00000000".into(), "8.00000000".into())
    );
    app.assert_books_whole(app.project_id()).await;

    // A pending withdrawal is not the payouts' to move.
    app.credit("BTC", "1").await;
    let (_, v) = app.withdraw("waits", "BTC", "0.5", BTC_ADDR).await;
    assert_eq!(v["data"]["status"], "pending");
    let w = wdb::by_foreign_id(&app.state.db, app.project_id(), "waits")
        .await
        .unwrap()
        .unwrap();
    let answers = svc::record_payouts(&app.state, &[(&w, step(Event::Cancel))])
        .await
        .unwrap();
    assert!(answers[0].is_none());
    let after = wdb::by_id(&app.state.db, w.id).await.unwrap().unwrap();
    assert_eq!(after.status.as_str(), "pending");
    app.assert_books_whole(app.project_id()).await;
}
