//! The exact CLI shapes scripts depend on, run as the real binary.

use crate::helpers::{BTC_ADDR, fresh_database_url, random_suffix, sign};
use serde_json::Value;
use std::process::{Command, Output};

/// A child process killed when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cli {
    db: String,
    key: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(args)
            .env("COUNTERSIGN_DATABASE_URL", &self.db)
            .env("COUNTERSIGN_SECRET_KEY", &self.key)
            .env("COUNTERSIGN_LOG", "error")
            .envs(env.iter().copied())
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run countersign")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
    }
}

#[tokio::test]
async fn project_balance_limits_and_audit_commands() {
    let cli = Cli {
        db: fresh_database_url().await,
        key: hex::encode([9u8; 32]),
    };
    assert!(cli.run(&["migrate"]).status.success());
    let p = cli.json(&[
        "project",
        "create",
        "--name",
        "Acme",
        "--primary-email",
        "ops@acme.test",
        "--callback-url",
        "https://acme.test/cb",
    ]);
    let obj = p.as_object().unwrap();
    let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["api_key", "api_secret", "project_id", "webhook_secret"]
    );
    assert!(p["webhook_secret"].as_str().unwrap().starts_with("whsec_"));
    let id = p["project_id"].as_str().unwrap();

    let b = cli.json(&[
        "balance",
        "credit",
        "--project",
        id,
        "--currency",
        "BTC",
        "--amount",
        "1.5",
    ]);
    assert_eq!(b["available"], "1.50000000");
    let l = cli.json(&[
        "limits",
        "set",
        "--project",
        id,
        "--scope",
        "api",
        "--currency",
        "BTC",
        "--per-operation",
        "0.1",
    ]);
    assert_eq!(
        (l["per_operation"].as_str(), l["per_hour"].as_str()),
        (Some("0.1"), None)
    );
    let l = cli.json(&[
        "limits",
        "set",
        "--project",
        id,
        "--scope",
        "dashboard",
        "--per-day",
        "20000",
    ]);
    // Windows not given keep the defaults.
    assert_eq!(
        (l["per_operation"].as_str(), l["per_day"].as_str()),
        (Some("1000"), Some("20000"))
    );
    // A callback URL on this machine's loopback is refused, unless the operator allows it.
    let loopback = [
        "project",
        "set-callback",
        "--project",
        id,
        "--url",
        "http://127.0.0.1:1/x",
    ];
    let out = cli.run(&loopback);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "callback URL: 127.0.0.1 is an address outside the public internet (127.0.0.1); \
             the operator can allow it in outbound.allowed_networks"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let allowed = [(
        "COUNTERSIGN_OUTBOUND__ALLOWED_NETWORKS",
        r#"["127.0.0.0/8"]"#,
    )];
    assert!(cli.run_with(&loopback, &allowed).status.success());

    // Bad input is refused with the reason, and nothing changes.
    for bad in [
        vec![
            "balance",
            "credit",
            "--project",
            id,
            "--currency",
            "DOGE",
            "--amount",
            "1",
        ],
        vec![
            "balance",
            "credit",
            "--project",
            id,
            "--currency",
            "BTC",
            "--amount",
            "-1",
        ],
        vec![
            "balance",
            "credit",
            "--project",
            id,
            "--currency",
            "BTC",
            "--amount",
            "0.000000001",
        ],
        vec![
            "balance",
            "credit",
            "--project",
            "prj_nope",
            "--currency",
            "BTC",
            "--amount",
            "1",
        ],
        vec![
            "limits",
            "set",
            "--project",
            id,
            "--scope",
            "web",
            "--per-day",
            "1",
        ],
        vec![
            "project",
            "set-callback",
            "--project",
            id,
            "--url",
            "ftp://x",
        ],
        vec![
            "project",
            "create",
            "--name",
            "X",
            "--primary-email",
            "not-an-email",
        ],
    ] {
        let out = cli.run(&bad);
        assert!(!out.status.success(), "{bad:?} succeeded");
        assert!(!out.stderr.is_empty());
    }
    let db = countersign::db::Db::connect(&cli.db, 1).await.unwrap();
    use sqlx::Row;
    let projects: Vec<String> = sqlx::query("SELECT id FROM projects")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("id"))
        .collect();
    assert_eq!(projects, [id], "the refused project create made none");
    assert_eq!(
        cli.json(&[
            "balance",
            "credit",
            "--project",
            id,
            "--currency",
            "BTC",
            "--amount",
            "0.5"
        ])["available"],
        "2.00000000"
    );

    let out = cli.run(&["audit", "verify", "--project", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));

    // One record's details changed behind the service's back: verify names it and fails.
    let altered = sqlx::query(
        "UPDATE audit_log SET details = '{\"amount\":\"1000\"}' WHERE project_id = $1 AND seq = 2",
    )
    .bind(id)
    .execute(db.writer())
    .await
    .unwrap();
    assert_eq!(altered.rows_affected(), 1);
    let out = cli.run(&["audit", "verify", "--project", id]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("error: audit log of {id} broken at record 2: record altered")
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn credentials_from_the_cli_work_against_serve() {
    let cli = Cli {
        db: fresh_database_url().await,
        key: hex::encode([5u8; 32]),
    };
    let p = cli.json(&[
        "project",
        "create",
        "--name",
        "Acme",
        "--primary-email",
        "ops@acme.test",
    ]);
    let id = p["project_id"].as_str().unwrap().to_string();
    cli.json(&[
        "balance",
        "credit",
        "--project",
        &id,
        "--currency",
        "BTC",
        "--amount",
        "1",
    ]);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    countersign::startup::install_crypto_provider();
    let mut server = Running(
        Command::new(env!("CARGO_BIN_EXE_countersign"))
            .arg("serve")
            .env("COUNTERSIGN_DATABASE_URL", &cli.db)
            .env("COUNTERSIGN_SECRET_KEY", &cli.key)
            .env("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}"))
            .env("COUNTERSIGN_LOG", "error")
            .env("COUNTERSIGN_SANDBOX__CONFIRM_DELAY_SECS", "0")
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let body =
        serde_json::json!({"foreign_id": format!("cli-{}", random_suffix()), "currency": "BTC",
        "amount": "0.01", "address": BTC_ADDR})
        .to_string();
    let mut answer = None;
    for _ in 0..600 {
        let r = http
            .post(format!("http://127.0.0.1:{port}/api/v2/withdrawal/crypto"))
            .header("X-Processing-Key", p["api_key"].as_str().unwrap())
            .header(
                "X-Processing-Signature",
                sign(p["api_secret"].as_str().unwrap(), body.as_bytes()),
            )
            .body(body.clone())
            .send()
            .await;
        if let Ok(r) = r {
            answer = Some((r.status().as_u16(), r.json::<Value>().await.unwrap()));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // SIGTERM: graceful stop.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(server.0.id().to_string())
        .status();
    let status = server.0.wait().unwrap();
    let (code, v) = answer.expect("server answered");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["status"], "processing");
    assert!(status.success(), "serve exited with {status}");
}

#[tokio::test]
async fn user_create_prints_an_enrolled_user_and_reset_2fa_makes_them_enroll_again() {
    use std::io::Write;
    let cli = Cli {
        db: fresh_database_url().await,
        key: hex::encode([4u8; 32]),
    };
    let p = cli.json(&[
        "project",
        "create",
        "--name",
        "Acme",
        "--primary-email",
        "ops@acme.test",
    ]);
    let pid = p["project_id"].as_str().unwrap();
    let run_with_stdin = |args: &[&str], input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(args)
            .env("COUNTERSIGN_DATABASE_URL", &cli.db)
            .env("COUNTERSIGN_SECRET_KEY", &cli.key)
            .env("COUNTERSIGN_LOG", "error")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run_with_stdin(
        &[
            "user",
            "create",
            "--project",
            pid,
            "--email",
            "Olivia@Acme.test",
            "--role",
            "owner",
            "--password-stdin",
        ],
        "a long enough passphrase\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let u: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = u["totp_secret"].as_str().unwrap();
    assert!(countersign::auth::totp::from_base32(secret).is_some_and(|s| s.len() == 20));
    assert!(
        u["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Countersign:")
    );
    assert!(u["user_id"].as_str().unwrap().starts_with("usr_"));
    // The same email (any case) again, a weak password, an unknown project: refused.
    for (args, input) in [
        (
            vec![
                "user",
                "create",
                "--project",
                pid,
                "--email",
                "olivia@acme.test",
                "--role",
                "member",
                "--password-stdin",
            ],
            "another long passphrase\n",
        ),
        (
            vec![
                "user",
                "create",
                "--project",
                pid,
                "--email",
                "m@acme.test",
                "--role",
                "member",
                "--password-stdin",
            ],
            "password1234\n",
        ),
        (
            vec![
                "user",
                "create",
                "--project",
                "prj_nope",
                "--email",
                "n@acme.test",
                "--role",
                "member",
                "--password-stdin",
            ],
            "another long passphrase\n",
        ),
    ] {
        let out = run_with_stdin(&args, input);
        assert!(!out.status.success(), "{args:?}");
    }
    let out = cli.run(&["user", "reset-2fa", "--email", "OLIVIA@acme.test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli.run(&["user", "reset-2fa", "--email", "nobody@acme.test"]);
    assert!(!out.status.success());
    let out = cli.run(&["audit", "verify", "--project", pid]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("intact: 3 records"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn demo_serves_a_seeded_project_that_the_printed_credentials_open() {
    let dir = std::env::temp_dir().join(format!("cs-demo-{}", random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    countersign::startup::install_crypto_provider();
    let child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["demo", "--no-traffic"])
        .env("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}"))
        .env("COUNTERSIGN_LOG", "error")
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..300 {
        if http
            .get(format!("http://127.0.0.1:{port}/login"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(up, "demo did not serve: {text}");
    assert!(
        text.contains("olivia.owner@acme-casino.test") && text.contains("TOTP secret:"),
        "{text}"
    );
    assert!(
        dir.join("countersign-demo.db").exists(),
        "the demo keeps its own database file"
    );
    // The seeded database has withdrawals in every status the demo promises.
    let db = countersign::db::Db::connect(
        &format!(
            "sqlite://{}?mode=rw",
            dir.join("countersign-demo.db").display()
        ),
        1,
    )
    .await
    .unwrap();
    use sqlx::Row;
    let statuses: Vec<String> =
        sqlx::query("SELECT DISTINCT status FROM withdrawals ORDER BY status")
            .fetch_all(db.reader())
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("status").unwrap())
            .collect();
    for s in ["cancelled", "declined", "pending"] {
        assert!(
            statuses.iter().any(|x| x == s),
            "{s} missing from {statuses:?}"
        );
    }
    assert_eq!(
        sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(db.reader())
            .await
            .unwrap()
            .try_get::<i64, _>("n")
            .unwrap(),
        3
    );
    // The demo's decisions were made by a person through the approval rules: one approval,
    // one decline, each a recorded vote.
    let votes: Vec<String> = sqlx::query("SELECT decision FROM withdrawal_votes ORDER BY decision")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("decision").unwrap())
        .collect();
    assert_eq!(votes, ["approve", "decline"]);
}
