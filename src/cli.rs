//! The `countersign` command line. Every command reads the same configuration as `serve` and
//! applies pending migrations first, so a fresh database needs no separate step.

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::db::audit::{self, Actor, Verdict};
use crate::db::projects;
use crate::domain::money::{Currency, parse_decimal};
use crate::domain::policy::{LimitSet, Scope};
use crate::service::projects::{self as psvc, NewProjectInput};
use crate::startup::{Application, master_key, open_db};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "countersign",
    version,
    about = "Dual authorization for crypto withdrawals"
)]
pub struct Cli {
    /// TOML configuration file (default: ./countersign.toml if present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the APIs and run the background worker.
    Serve,
    /// Serve a seeded demo (own SQLite file, recreated each start): people, balances,
    /// withdrawals in every status, and a generator of signed API traffic.
    Demo {
        /// Do not submit a withdrawal every few seconds.
        #[arg(long)]
        no_traffic: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Projects (merchant accounts).
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Balances.
    #[command(subcommand)]
    Balance(BalanceCmd),
    /// Withdrawal limits.
    #[command(subcommand)]
    Limits(LimitsCmd),
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Development and benchmarking helpers.
    #[command(subcommand)]
    Dev(DevCmd),
}

#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// Create a project; prints its id and credentials as one JSON object (shown only once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        primary_email: String,
        #[arg(long, default_value = "EUR")]
        base_currency: String,
        #[arg(long)]
        callback_url: Option<String>,
    },
    /// Set (or, with --url "", clear) the callback URL.
    SetCallback {
        #[arg(long)]
        project: String,
        #[arg(long)]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BalanceCmd {
    /// Add funds to a balance (sandbox funding, manual top-up).
    Credit {
        #[arg(long)]
        project: String,
        #[arg(long)]
        currency: String,
        #[arg(long)]
        amount: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LimitsCmd {
    /// Set limits of a scope: without --currency the base-currency defaults, with it that
    /// currency's override (in its own units). Windows not given keep their value.
    Set {
        #[arg(long)]
        project: String,
        #[arg(long, value_parser = ["api", "dashboard"])]
        scope: String,
        #[arg(long)]
        currency: Option<String>,
        #[arg(long)]
        per_operation: Option<String>,
        #[arg(long)]
        per_hour: Option<String>,
        #[arg(long)]
        per_day: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create an active user with TOTP enrolled; reads the password from standard input and
    /// prints {"user_id", "totp_secret", "otpauth_url"} (the secret is shown only now).
    Create {
        #[arg(long)]
        project: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["owner", "member"])]
        role: String,
        /// Give a member withdrawal rights (owners always have them).
        #[arg(long)]
        withdrawal_rights: bool,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Reset a user's two-factor authentication: they enroll again at next sign-in.
    #[command(name = "reset-2fa")]
    Reset2fa {
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the project's hash chain; exits non-zero naming the first broken record.
    Verify {
        #[arg(long)]
        project: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevCmd {
    /// Insert COUNT historical confirmed withdrawals (for benchmarks at scale).
    Prefill {
        #[arg(long)]
        project: String,
        #[arg(long)]
        count: u64,
    },
}

fn decimal_arg(name: &str, v: &str) -> anyhow::Result<rust_decimal::Decimal> {
    parse_decimal(v).map_err(|e| anyhow::anyhow!("--{name} {e}"))
}

fn currency_arg(v: &str) -> anyhow::Result<Currency> {
    Currency::parse(v).with_context(|| {
        let known: Vec<_> = Currency::ALL.iter().map(|c| c.code()).collect();
        format!("--currency {v:?} is not one of {}", known.join(", "))
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    crate::telemetry::init(&settings.log, &settings.log_format);
    let now = SystemClock.now_ms();
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Demo { no_traffic } => crate::demo::run(settings, !no_traffic).await,
        Command::Migrate => {
            open_db(&settings).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Project(ProjectCmd::Create {
            name,
            primary_email,
            base_currency,
            callback_url,
        }) => {
            let db = open_db(&settings).await?;
            let key = master_key(&settings)?;
            if let Some(u) = callback_url.as_deref().filter(|u| !u.is_empty()) {
                check_reachable(&settings, u).await?;
            }
            let creds = psvc::create(
                &db,
                &key,
                &NewProjectInput {
                    name: &name,
                    primary_email: &primary_email,
                    base_currency: &base_currency,
                    callback_url: callback_url.as_deref().filter(|u| !u.is_empty()),
                },
                now,
            )
            .await?;
            println!("{}", serde_json::to_string(&creds)?);
            Ok(())
        }
        Command::Project(ProjectCmd::SetCallback { project, url }) => {
            let db = open_db(&settings).await?;
            let url = (!url.is_empty()).then_some(url);
            if let Some(u) = &url {
                psvc::check_callback_url(u)?;
                check_reachable(&settings, u).await?;
            }
            if !projects::set_callback_url(&db, &project, url.as_deref()).await? {
                bail!("no project {project}");
            }
            eprintln!("callback URL {}", url.as_deref().unwrap_or("cleared"));
            Ok(())
        }
        Command::Balance(BalanceCmd::Credit {
            project,
            currency,
            amount,
        }) => {
            let db = open_db(&settings).await?;
            let c = currency_arg(&currency)?;
            let after = psvc::credit(
                &db,
                &project,
                c,
                decimal_arg("amount", &amount)?,
                &Actor::Cli,
                now,
            )
            .await?;
            println!(
                "{}",
                serde_json::json!({"project_id": project, "currency": c.code(), "available": c.format(after)})
            );
            Ok(())
        }
        Command::Limits(LimitsCmd::Set {
            project,
            scope,
            currency,
            per_operation,
            per_hour,
            per_day,
        }) => {
            let db = open_db(&settings).await?;
            let scope = Scope::parse(&scope).context("--scope must be api or dashboard")?;
            let currency = currency.as_deref().map(currency_arg).transpose()?;
            let opt = |n: &str, v: Option<String>| v.map(|v| decimal_arg(n, &v)).transpose();
            let set = psvc::set_limits(
                &db,
                &project,
                scope,
                currency,
                LimitSet {
                    per_operation: opt("per-operation", per_operation)?,
                    per_hour: opt("per-hour", per_hour)?,
                    per_day: opt("per-day", per_day)?,
                },
                &Actor::Cli,
                now,
            )
            .await?;
            let show = |d: Option<rust_decimal::Decimal>| d.map(|d| d.normalize().to_string());
            println!(
                "{}",
                serde_json::json!({
                    "project_id": project, "scope": scope.as_str(),
                    "currency": currency.map_or("*", |c| c.code()),
                    "per_operation": show(set.per_operation), "per_hour": show(set.per_hour), "per_day": show(set.per_day),
                })
            );
            Ok(())
        }
        Command::User(cmd) => user_command(settings, cmd).await,
        Command::Audit(AuditCmd::Verify { project }) => {
            let db = open_db(&settings).await?;
            match audit::verify(&db, &project).await? {
                Verdict::Intact { records } => {
                    println!("audit log of {project} intact: {records} records");
                    Ok(())
                }
                Verdict::Broken { seq, reason } => {
                    bail!("audit log of {project} broken at record {seq}: {reason}")
                }
            }
        }
        Command::Dev(DevCmd::Prefill { project, count }) => {
            let db = open_db(&settings).await?;
            crate::db::prefill::withdrawals(&db, &project, count, now).await?;
            eprintln!("inserted {count} confirmed withdrawals into {project}");
            Ok(())
        }
    }
}

async fn user_command(settings: Settings, cmd: UserCmd) -> anyhow::Result<()> {
    use crate::db::users::Role;
    use crate::service::people;
    let db = open_db(&settings).await?;
    let state = crate::startup::build_state(settings, db, std::sync::Arc::new(SystemClock))?;
    match cmd {
        UserCmd::Create {
            project,
            email,
            role,
            withdrawal_rights,
            password_stdin: _,
        } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']).to_string();
            let role = Role::parse(&role).context("--role must be owner or member")?;
            let created = people::create_enrolled(
                &state,
                &project,
                &email,
                role,
                withdrawal_rights,
                secrecy::SecretString::from(password),
                &Actor::Cli,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string(&created)?);
        }
        UserCmd::Reset2fa { email } => {
            people::reset_second_factor_by_email(&state, &email, &Actor::Cli)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "two-factor authentication of {email} reset: they enroll again at next sign-in"
            );
        }
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let base_url = app.state().settings.base_url.clone();
    let shutdown = app.shutdown();
    tracing::info!(port = app.port(), metrics_port = app.metrics_port(), %base_url, "Countersign is serving");
    if app.state().settings.payout.provider == "sandbox" {
        tracing::warn!(
            "payouts go to the built-in sandbox rail: nothing is paid out for real and txids are made up (set payout.provider = \"http\" for an upstream processor)"
        );
    }
    let now = app.state().now();
    if let Some(token) = crate::web::setup::token_if_first_run(&app.state().db, now).await? {
        println!(
            "\nNo one can sign in yet. Open this one-time setup link (valid 24 hours) to create the first project and its owner:\n\n    {base_url}/setup/{token}\n"
        );
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests and running jobs");
        shutdown.stop().await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Refuses a callback URL that leads outside the public internet unless
/// `outbound.allowed_networks` allows it (deliveries would be refused: see `notify::outbound`).
async fn check_reachable(settings: &Settings, url: &str) -> anyhow::Result<()> {
    crate::notify::outbound::OutboundPolicy::new(settings.outbound.allowed_networks.clone())
        .check_url_resolving(url)
        .await
        .map_err(|r| anyhow::anyhow!("callback URL: {}", r.reason()))
}
