//! `countersign demo`: the product on its embedded defaults with a seeded project, so a
//! newcomer sees everything working in one browser. It always uses its own SQLite file
//! (`countersign-demo.db`, recreated at every start), never the configured database.

use crate::auth::totp;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::crypto::hmac_sha512_hex;
use crate::db::audit::{Actor, Origin};
use crate::db::users::Role;
use crate::domain::approval::Decision;
use crate::domain::money::Currency;
use crate::domain::policy::Scope;
use crate::domain::withdrawal::NewWithdrawal;
use crate::service::approvals;
use crate::service::people::{self, CreatedUser};
use crate::service::projects::{self as psvc, NewProjectInput, ProjectCredentials};
use crate::service::withdrawals as wsvc;
use crate::startup::Application;
use crate::state::AppState;
use anyhow::Context;
use serde_json::json;
use std::time::Duration;

pub const DEMO_DB: &str = "countersign-demo.db";

/// The demo's people: (email, role, rights, password).
const PEOPLE: [(&str, Role, bool, &str); 3] = [
    (
        "olivia.owner@acme-casino.test",
        Role::Owner,
        true,
        "demo owner passphrase 1",
    ),
    (
        "oscar.owner@acme-casino.test",
        Role::Owner,
        true,
        "demo owner passphrase 2",
    ),
    (
        "maya.member@acme-casino.test",
        Role::Member,
        true,
        "demo member passphrase",
    ),
];

const ADDRESSES: [(&str, &str); 4] = [
    ("BTC", "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm"),
    ("ETH", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
    ("USDTT", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"),
    ("SBX", "sbx_demo_wallet_1"),
];

pub async fn run(mut settings: Settings, traffic: bool) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{DEMO_DB}{suffix}"));
    }
    settings.database_url = format!("sqlite://{DEMO_DB}?mode=rwc");
    settings.secret_key_file = Some("countersign-demo.key".into());
    settings.sandbox.confirm_delay_secs = 20;
    settings.sandbox.fail_addresses = vec!["sbx_demo_blocked".into()];
    // Trying callbacks or Slack against a receiver on this machine is part of a demo.
    if settings.outbound.allowed_networks.is_empty() {
        settings.outbound.allowed_networks = ["127.0.0.0/8", "::1"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
    }
    let app = Application::build(settings).await?;
    let state = app.state().clone();
    let (creds, people) = seed(&state).await.context("seeding the demo")?;
    print_banner(&state, &creds, &people);
    let handle = app.handle();
    let codes_for = people.clone();
    tokio::spawn(async move {
        // The current codes, every 30 seconds, so the demo can be signed into without a phone.
        loop {
            let now = SystemClock.now_ms();
            let line: Vec<String> = codes_for
                .iter()
                .filter_map(|(email, _, c)| {
                    let secret = totp::from_base32(&c.totp_secret)?;
                    Some(format!("{email}: {}", totp::code_at(&secret, now).ok()?))
                })
                .collect();
            println!("[codes] {}", line.join("   "));
            let wait = 30_000 - now % 30_000;
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(30_000))).await;
        }
    });
    if traffic {
        let base = state.settings.base_url.clone();
        let creds = (creds.api_key.clone(), creds.api_secret.clone());
        tokio::spawn(async move { generate_traffic(base, creds.0, creds.1).await });
    }
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        handle.stop(true).await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

type Person = (String, String, CreatedUser);

async fn seed(state: &AppState) -> anyhow::Result<(ProjectCredentials, Vec<Person>)> {
    let now = state.now();
    let creds = psvc::create(
        &state.db,
        &state.master_key,
        &NewProjectInput {
            name: "Acme Casino",
            primary_email: "finance@acme-casino.test",
            base_currency: "EUR",
            callback_url: None,
        },
        now,
    )
    .await?;
    let pid = creds.project_id.clone();
    for (cur, amount) in [
        ("BTC", "12.5"),
        ("ETH", "150"),
        ("USDTT", "250000"),
        ("SBX", "1000000"),
        ("TRX", "500000"),
    ] {
        let c = Currency::parse(cur).context("currency")?;
        psvc::credit(&state.db, &pid, c, amount.parse()?, &Actor::Cli, now).await?;
    }
    let mut people_out = Vec::new();
    for (email, role, rights, password) in PEOPLE {
        let created = people::create_enrolled(
            state,
            &pid,
            email,
            role,
            rights,
            password.to_string().into(),
            &Actor::Cli,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        people_out.push((email.to_string(), password.to_string(), created));
    }
    let project = crate::db::projects::get(&state.db, &pid)
        .await?
        .context("project")?;
    let api_actor = Actor::ApiKey("demo".into());
    let mut n = 0;
    let mut create = |cur: &'static str, amount: &'static str, reference: &'static str| {
        n += 1;
        let address = ADDRESSES
            .iter()
            .find(|(c, _)| *c == cur)
            .map_or("sbx_demo_wallet_1", |(_, a)| *a);
        let body = json!({"foreign_id": format!("demo-{n:03}"), "currency": cur, "amount": amount,
            "address": address, "end_user_reference": reference});
        NewWithdrawal::parse(&body).map_err(|e| anyhow::anyhow!("demo withdrawal: {e:?}"))
    };
    let o = Origin::default();
    // Confirmed and processing ones (under the limits), pending over-limit ones, and the
    // other outcomes made by the people above.
    let plan = [
        (create("SBX", "120", "user_1001")?, None),
        (create("USDTT", "250", "user_1002")?, None),
        (create("BTC", "0.005", "user_1003")?, None),
        (create("BTC", "0.4", "user_1004")?, None),
        (create("ETH", "2.5", "user_1005")?, None),
        (create("USDTT", "4800", "user_1006")?, None),
        (create("SBX", "2500", "user_1007")?, Some(Then::Decline)),
        (create("BTC", "0.05", "user_1008")?, Some(Then::Cancel)),
        (create("ETH", "1.5", "user_1009")?, Some(Then::Approve)),
    ];
    // The decisions go through the same code as the pages: votes, audit, alerts.
    let owner = crate::db::users::by_id(&state.db, &people_out[1].2.user_id)
        .await?
        .context("demo owner")?;
    for (req, then) in plan {
        let w = wsvc::create(state, &project, &api_actor, Scope::Api, req, &o)
            .await
            .map_err(|e| anyhow::anyhow!("demo withdrawal: {e}"))?;
        let decision = match then {
            None => continue,
            Some(Then::Cancel) => {
                wsvc::cancel_by_merchant(state, &w, &api_actor, &o)
                    .await
                    .map_err(|e| anyhow::anyhow!("demo cancel: {e}"))?;
                continue;
            }
            Some(Then::Decline) => Decision::Decline,
            Some(Then::Approve) => Decision::Approve,
        };
        approvals::decide(
            state,
            &owner,
            &approvals::DecisionRequest {
                withdrawal_id: w.id,
                decision,
                note: "demo",
                channel: approvals::Channel::Web,
                origin: &o,
                require_claim: false,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("demo decision: {e}"))?;
    }
    Ok((creds, people_out))
}

/// What the demo does with a seeded withdrawal after creating it.
enum Then {
    Decline,
    Approve,
    Cancel,
}

fn print_banner(state: &AppState, creds: &ProjectCredentials, people: &[Person]) {
    let base = &state.settings.base_url;
    println!("\n=== Countersign demo ===============================================");
    println!("Open {base}/login  (mail: {base}/dev/mailbox)");
    println!("Project \"Acme Casino\" ({})", creds.project_id);
    for (email, password, c) in people {
        println!(
            "  {email}\n      password: {password}\n      TOTP secret: {}  (add it to an authenticator app, or use the [codes] lines below)",
            c.totp_secret
        );
    }
    println!(
        "Merchant API: key {}  secret {}",
        creds.api_key, creds.api_secret
    );
    println!("Database: {DEMO_DB} (recreated at every start; your real database is never touched)");
    println!("=====================================================================\n");
}

/// Submits a signed withdrawal through the real API every few seconds; some go over the
/// limits and wait for approval.
async fn generate_traffic(base: String, key: String, secret: String) {
    let http = reqwest::Client::new();
    let mut i: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(4)).await;
        i += 1;
        let (currency, amount) = match i % 5 {
            0 => ("BTC", "0.03"),
            1 => ("SBX", "75"),
            2 => ("USDTT", "40"),
            3 => ("ETH", "0.2"),
            _ => ("SBX", "1500"),
        };
        let address = ADDRESSES
            .iter()
            .find(|(c, _)| *c == currency)
            .map_or("sbx_demo_wallet_1", |(_, a)| *a);
        let body = json!({"foreign_id": format!("traffic-{}-{i}", SystemClock.now_ms()), "currency": currency,
            "amount": amount, "address": address, "end_user_reference": format!("user_{}", 2000 + i % 17)})
        .to_string();
        let sig = hmac_sha512_hex(secret.as_bytes(), body.as_bytes());
        let r = http
            .post(format!("{base}/api/v2/withdrawal/crypto"))
            .header("X-Processing-Key", &key)
            .header("X-Processing-Signature", sig)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "demo traffic request failed");
        }
    }
}
