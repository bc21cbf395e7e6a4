//! The approval rules themselves, below every channel: who may decide, how approvals add
//! up, the schema's own guards, and races between deciders.

use crate::helpers::{BTC_ADDR, Receiver, TestApp, TestUser, spawn_app};
use countersign::db::audit::{Actor, Origin};
use countersign::db::users::{self, User};
use countersign::db::withdrawals::{self as wdb, Withdrawal};
use countersign::db::{Tx, approvals as adb};
use countersign::domain::approval::Decision;
use countersign::domain::policy::{Scope, Tier};
use countersign::domain::withdrawal::Status;
use countersign::service::approvals::{
    self as asvc, Channel, DecideError, DecisionRequest, Outcome,
};
use rust_decimal::Decimal;
use std::sync::Arc;

async fn user(app: &TestApp, u: &TestUser) -> User {
    users::by_id(&app.state.db, &u.id).await.unwrap().unwrap()
}

/// A withdrawal over the owner limit (0.5 BTC ≈ far over 1,000 EUR): pending.
async fn pending(app: &TestApp, fid: &str) -> Withdrawal {
    let (code, v) = app.withdraw(fid, "BTC", "0.5", BTC_ADDR).await;
    assert_eq!(
        (code, v["data"]["status"].as_str()),
        (200, Some("pending")),
        "{v}"
    );
    wdb::by_foreign_id(&app.state.db, app.project_id(), fid)
        .await
        .unwrap()
        .unwrap()
}

async fn decide(
    app: &TestApp,
    who: &User,
    w: &Withdrawal,
    decision: Decision,
) -> Result<Outcome, DecideError> {
    asvc::decide(
        &app.state,
        who,
        &DecisionRequest {
            withdrawal_id: w.id,
            decision,
            note: "",
            channel: Channel::Web,
            origin: &Origin::default(),
            require_claim: false,
        },
    )
    .await
    .map(|(_, o)| o)
}

#[tokio::test]
async fn over_a_limit_an_owner_decides_and_a_member_cannot() {
    let app = spawn_app().await;
    app.credit("BTC", "10").await;
    let owner = user(&app, &app.create_user("owner", true).await).await;
    let member = user(&app, &app.create_user("member", true).await).await;
    let w = pending(&app, "ol1").await;
    assert_eq!(w.requirement.approvals, 1);
    assert!(w.requirement.owner_required);

    let refused = decide(&app, &member, &w, Decision::Approve)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "owner_required");
    assert_eq!(
        decide(&app, &owner, &w, Decision::Approve).await.unwrap(),
        Outcome::Approved
    );
    app.wait_for_status("ol1", "confirmed").await;
    // Exactly one vote, the owner's; the member's refusal left nothing behind.
    assert_eq!(app.count("withdrawal_votes").await, 1);
}

#[tokio::test]
async fn a_decline_is_final_and_reaches_the_merchant_in_the_seed_format() {
    let receiver = Receiver::start().await;
    let app = spawn_app().await;
    app.set_callback(&receiver.url).await;
    app.credit("BTC", "10").await;
    let owner = user(&app, &app.create_user("owner", true).await).await;
    let w = pending(&app, "dec1").await;
    assert_eq!(
        decide(&app, &owner, &w, Decision::Decline).await.unwrap(),
        Outcome::Declined
    );
    let v = app.wait_for_status("dec1", "declined").await;
    assert_eq!(v["error"], format!("Declined by user ID:{}", owner.id));
    crate::helpers::eventually("declined callback", || async {
        receiver
            .for_foreign_id("dec1")
            .iter()
            .find(|r| r.json()["status"] == "declined")
            .map(|r| r.json())
    })
    .await
    .get("error")
    .map(|e| assert_eq!(e, &format!("Declined by user ID:{}", owner.id)))
    .unwrap();
    assert_eq!(app.balance("BTC").await.1, "0.00000000", "hold released");
    // A later approval is told who decided.
    let other = user(&app, &app.create_user("owner", true).await).await;
    let late = decide(&app, &other, &w, Decision::Approve)
        .await
        .unwrap_err();
    assert_eq!(late.code(), "already_decided");
    assert!(late.to_string().contains(&owner.email), "{late}");
}

#[tokio::test]
async fn a_tier_needs_distinct_approvers_and_one_person_counts_once() {
    let app = spawn_app().await;
    app.credit("SBX", "100000").await;
    let mut tx: Tx = app.state.db.begin().await.unwrap();
    let tier = Tier {
        min_base_amount: Decimal::new(100, 0),
        approvers: 2,
    };
    adb::put_tier(&mut tx, app.project_id(), Scope::Api, tier, 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let a = user(&app, &app.create_user("member", true).await).await;
    let b = user(&app, &app.create_user("member", true).await).await;
    let (code, v) = app.withdraw("t1", "SBX", "200", "sbx_wallet_1").await;
    assert_eq!((code, v["data"]["status"].as_str()), (200, Some("pending")));
    let w = wdb::by_foreign_id(&app.state.db, app.project_id(), "t1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (w.requirement.approvals, w.requirement.owner_required),
        (2, false)
    );

    let first = decide(&app, &a, &w, Decision::Approve).await.unwrap();
    assert!(matches!(first, Outcome::Recorded(t) if t.approvals == 1 && t.needed == 2));
    let again = decide(&app, &a, &w, Decision::Approve).await.unwrap_err();
    assert_eq!(again.code(), "already_voted");
    assert_eq!(
        decide(&app, &b, &w, Decision::Approve).await.unwrap(),
        Outcome::Approved
    );
    app.wait_for_status("t1", "confirmed").await;
}

#[tokio::test]
async fn the_schema_refuses_a_second_vote_the_initiator_and_other_projects() {
    let app = spawn_app().await;
    app.credit("BTC", "10").await;
    let owner = app.create_user("owner", true).await;
    let w = pending(&app, "s1").await;
    let vote = |user_id: String, initiator: String, project: String| {
        let db = app.state.db.clone();
        let wid = w.id;
        async move {
            sqlx::query(
                "INSERT INTO withdrawal_votes (withdrawal_id, project_id, initiator_id, user_id, decision, voter_role, channel, note, created_at)
                 VALUES ($1, $2, $3, $4, 'approve', 'owner', 'web', '', 0)",
            )
            .bind(wid)
            .bind(project)
            .bind(initiator)
            .bind(user_id)
            .execute(db.writer())
            .await
        }
    };
    let pid = app.project_id().to_string();
    vote(owner.id.clone(), w.initiator_id.clone(), pid.clone())
        .await
        .expect("first vote");
    assert!(
        vote(owner.id.clone(), w.initiator_id.clone(), pid.clone())
            .await
            .is_err(),
        "second vote"
    );
    // Claiming a false initiator breaks the composite foreign key; the true one, the CHECK.
    let other = app.create_user("owner", true).await;
    assert!(
        vote(other.id.clone(), other.id.clone(), pid.clone())
            .await
            .is_err(),
        "false initiator"
    );
    // A user of another project.
    let creds = countersign::service::projects::create(
        &app.state.db,
        &app.state.master_key,
        &countersign::service::projects::NewProjectInput {
            name: "Other",
            primary_email: "other@other.test",
            base_currency: "EUR",
            callback_url: None,
        },
        0,
    )
    .await
    .unwrap();
    let stranger = app.create_user_in(&creds.project_id, "owner", true).await;
    assert!(
        vote(stranger.id.clone(), w.initiator_id.clone(), pid.clone())
            .await
            .is_err(),
        "foreign voter"
    );
    assert!(
        vote(stranger.id, w.initiator_id.clone(), creds.project_id)
            .await
            .is_err(),
        "foreign project"
    );
    assert_eq!(app.count("withdrawal_votes").await, 1);
}

#[tokio::test]
async fn the_initiator_of_a_dashboard_payout_cannot_approve_it() {
    let app = spawn_app().await;
    app.credit("BTC", "10").await;
    let me = user(&app, &app.create_user("owner", true).await).await;
    let project = countersign::db::projects::get(&app.state.db, app.project_id())
        .await
        .unwrap()
        .unwrap();
    let req = countersign::domain::withdrawal::NewWithdrawal::parse(&serde_json::json!({
        "foreign_id": "dash1", "currency": "BTC", "amount": "0.5", "address": BTC_ADDR
    }))
    .map_err(|_| "parse")
    .unwrap();
    let w = countersign::service::withdrawals::create(
        &app.state,
        &project,
        &Actor::User(me.id.clone()),
        Scope::Dashboard,
        req,
        &Origin::default(),
    )
    .await
    .unwrap();
    assert_eq!(w.status, Status::Pending);
    let e = decide(&app, &me, &w, Decision::Approve).await.unwrap_err();
    assert_eq!(e.code(), "self_approval");
    let e = decide(&app, &me, &w, Decision::Decline).await.unwrap_err();
    assert_eq!(e.code(), "self_approval");
    assert_eq!(app.count("withdrawal_votes").await, 0);
}

#[tokio::test]
async fn twenty_owners_approving_at_once_make_one_transition_one_payout_one_callback() {
    let receiver = Receiver::start().await;
    let app = Arc::new(spawn_app().await);
    app.set_callback(&receiver.url).await;
    app.credit("BTC", "10").await;
    let mut owners = Vec::new();
    for _ in 0..20 {
        owners.push(user(&app, &app.create_user("owner", true).await).await);
    }
    let w = pending(&app, "race20").await;
    let tasks: Vec<_> = owners
        .into_iter()
        .map(|o| {
            let (app, w) = (app.clone(), w.clone());
            tokio::spawn(async move { decide(&app, &o, &w, Decision::Approve).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Outcome::Approved) => won += 1,
            Err(e) => {
                assert_eq!(e.code(), "already_decided", "{e}");
                assert!(
                    e.to_string().starts_with("already approved by owner-"),
                    "{e}"
                );
            }
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    app.wait_for_status("race20", "confirmed").await;
    assert_eq!(app.count("withdrawal_votes").await, 1);
    assert_eq!(app.count("sandbox_payouts").await, 1);
    // Every callback delivered (nothing left to retry), then one event per status: the
    // order of arrival is not promised, and a retry would repeat an event's `webhook-id`.
    crate::helpers::eventually("callbacks delivered", || async {
        let open = app
            .count("jobs WHERE kind = 'callback' AND status <> 'done'")
            .await;
        (open == 0 && app.count("jobs WHERE kind = 'callback'").await == 2).then_some(())
    })
    .await;
    let events: std::collections::BTreeMap<String, String> = receiver
        .for_foreign_id("race20")
        .iter()
        .map(|r| {
            (
                r.header("webhook-id").expect("webhook-id").to_string(),
                r.json()["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut statuses: Vec<&str> = events.values().map(String::as_str).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["confirmed", "pending"], "{events:?}");
}

/// (subject, text) of the mail the dev mailbox holds for `to`, oldest first.
async fn mailbox(app: &TestApp, to: &str) -> Vec<(String, String)> {
    use sqlx::Row;
    sqlx::query("SELECT subject, text_body FROM dev_mailbox WHERE to_addr = $1 ORDER BY id")
        .bind(to)
        .fetch_all(app.state.db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("subject"), r.get("text_body")))
        .collect()
}

#[tokio::test]
async fn approval_emails_go_to_eligible_approvers_with_alerts_on_and_outcomes_follow() {
    let app = spawn_app().await;
    app.credit("BTC", "10").await;
    let o1 = app.create_user("owner", true).await;
    let o2 = app.create_user("owner", true).await;
    let o3 = app.create_user("owner", true).await;
    let member = app.create_user("member", true).await;
    sqlx::query("UPDATE users SET email_alerts = 0 WHERE id = $1")
        .bind(&o2.id)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let w = pending(&app, "mail1").await;
    let (subject, text) = crate::helpers::eventually("approval email", || async {
        mailbox(&app, &o1.email).await.into_iter().next()
    })
    .await;
    assert!(subject.starts_with("Approval needed"), "{subject}");
    assert!(
        text.contains(BTC_ADDR) && text.contains("over the api per-operation limit"),
        "{text}"
    );
    // Only the SHA-256 of the link's token is stored.
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/approve/"))
        .unwrap();
    let token = link.rsplit('/').next().unwrap();
    assert!(token.len() >= 43, "256-bit token: {token}");
    assert!(adb::link(&app.state.db, token).await.unwrap().is_none());
    let stored = adb::link(
        &app.state.db,
        &countersign::crypto::sha256_hex(token.as_bytes()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (stored.withdrawal_id, stored.user_id.as_str()),
        (w.id, o1.id.as_str())
    );
    crate::helpers::eventually("o3's email", || async {
        (!mailbox(&app, &o3.email).await.is_empty()).then_some(())
    })
    .await;
    assert!(mailbox(&app, &o2.email).await.is_empty(), "alerts off");
    assert!(
        mailbox(&app, &member.email).await.is_empty(),
        "a member cannot decide this one"
    );

    let o1u = user(&app, &o1).await;
    decide(&app, &o1u, &w, Decision::Approve).await.unwrap();
    app.wait_for_status("mail1", "confirmed").await;
    // The other owner with alerts on hears the outcome; the decider is not told their own.
    let outcome = crate::helpers::eventually("outcome email", || async {
        mailbox(&app, &o3.email).await.into_iter().nth(1)
    })
    .await;
    assert!(
        outcome.0.contains(&format!("Approved by {}", o1.email)),
        "{}",
        outcome.0
    );
    assert_eq!(mailbox(&app, &o1.email).await.len(), 1);
}

#[tokio::test]
async fn approve_decline_cancel_and_expiry_racing_have_exactly_one_outcome() {
    use countersign::domain::withdrawal::Event;
    use countersign::service::withdrawals::{self as svc, Change};
    let app = Arc::new(spawn_app().await);
    app.credit("BTC", "100").await;
    let a = user(&app, &app.create_user("owner", true).await).await;
    let b = user(&app, &app.create_user("owner", true).await).await;
    for round in 0..6 {
        let fid = format!("r{round}");
        let w = pending(&app, &fid).await;
        let approve = {
            let (app, w, a) = (app.clone(), w.clone(), a.clone());
            tokio::spawn(async move { decide(&app, &a, &w, Decision::Approve).await.is_ok() })
        };
        let decline = {
            let (app, w, b) = (app.clone(), w.clone(), b.clone());
            tokio::spawn(async move { decide(&app, &b, &w, Decision::Decline).await.is_ok() })
        };
        let cancel = {
            let (app, fid) = (app.clone(), fid.clone());
            tokio::spawn(async move {
                app.post_json(
                    "/withdrawal/cancel",
                    &serde_json::json!({"foreign_id": fid}),
                )
                .await
                .0 == 200
            })
        };
        let expire = {
            let (app, w) = (app.clone(), w.clone());
            tokio::spawn(async move {
                let change = Change {
                    event: Event::Expire,
                    actor: &Actor::System,
                    note: "expired",
                    error: Some("Expired"),
                    txid: None,
                    check_at: None,
                    origin: &Origin::default(),
                };
                svc::change(&app.state, &w, change).await.is_ok()
            })
        };
        let wins: Vec<bool> = vec![
            approve.await.unwrap(),
            decline.await.unwrap(),
            cancel.await.unwrap(),
            expire.await.unwrap(),
        ];
        assert_eq!(
            wins.iter().filter(|w| **w).count(),
            1,
            "round {round}: {wins:?}"
        );
        let events = wdb::events(&app.state.db, w.id).await.unwrap();
        let left_pending = events
            .iter()
            .filter(|e| e.from_status.as_deref() == Some("pending"))
            .count();
        assert_eq!(left_pending, 1, "round {round}");
    }
    assert!(
        countersign::db::balances::reconcile(&app.state.db, app.project_id())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_pending_withdrawal_and_its_outcome_are_posted_to_slack() {
    let slack = Receiver::start().await;
    let app = spawn_app().await;
    countersign::service::slack::connect(
        &app.state,
        app.project_id(),
        &countersign::notify::slack::SlackWebhookUrl::parse(&slack.url).unwrap(),
        &Actor::Cli,
        &Origin::default(),
    )
    .await
    .unwrap();
    app.credit("BTC", "10").await;
    let owner = user(&app, &app.create_user("owner", true).await).await;
    let w = pending(&app, "sl1").await;
    let first = crate::helpers::eventually("pending alert", || async {
        slack.all().into_iter().next().map(|r| r.json())
    })
    .await;
    let text = first.to_string();
    assert!(
        text.contains("Awaiting approval") && text.contains("0.50000000 BTC"),
        "{text}"
    );
    assert!(text.contains(&format!("/withdrawals/{}", w.id)), "{text}");
    assert!(text.contains("owner required"), "{text}");
    decide(&app, &owner, &w, Decision::Decline).await.unwrap();
    let second = crate::helpers::eventually("outcome", || async {
        slack.all().into_iter().nth(1).map(|r| r.json())
    })
    .await;
    assert!(
        second
            .to_string()
            .contains(&format!("Declined by {}", owner.email)),
        "{second}"
    );
}
