//! The exact CLI shapes scripts depend on, run as the real binary.

use crate::helpers::{BTC_ADDR, fresh_database_url, random_suffix, sign};
use serde_json::Value;
use std::process::{Command, Output};

struct Cli {
    db: String,
    key: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(args)
            .env("COUNTERSIGN_DATABASE_URL", &self.db)
            .env("COUNTERSIGN_SECRET_KEY", &self.key)
            .env("COUNTERSIGN_LOG", "error")
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
    assert!(
        cli.run(&[
            "project",
            "set-callback",
            "--project",
            id,
            "--url",
            "http://127.0.0.1:1/x"
        ])
        .status
        .success()
    );

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .arg("serve")
        .env("COUNTERSIGN_DATABASE_URL", &cli.db)
        .env("COUNTERSIGN_SECRET_KEY", &cli.key)
        .env("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}"))
        .env("COUNTERSIGN_LOG", "error")
        .env("COUNTERSIGN_SANDBOX__CONFIRM_DELAY_SECS", "0")
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let body =
        serde_json::json!({"foreign_id": format!("cli-{}", random_suffix()), "currency": "BTC",
        "amount": "0.01", "address": BTC_ADDR})
        .to_string();
    let mut answer = None;
    for _ in 0..200 {
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
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    let (code, v) = answer.expect("server answered");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["status"], "processing");
    assert!(status.success(), "serve exited with {status}");
}
