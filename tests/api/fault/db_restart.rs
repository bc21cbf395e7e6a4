//! The database stopped and started again under load, on a private PostgreSQL cluster made
//! for the test (initdb in a temporary directory, a free port, trust authentication).
//! While it is down every request answers 503 with the documented JSON error; once it is
//! back the service serves again by itself, without a restart.

use super::{Creds, free_port, post_signed, until};
use crate::helpers::{BTC_ADDR, spawn_app_with};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A throwaway PostgreSQL cluster. PostgreSQL refuses to run as root, so when the tests do,
/// its tools run as the `postgres` user (`runuser`) on a directory that user owns.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// Creates and starts one, or says why it cannot.
    fn create() -> Result<Cluster, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|_| "no /usr/lib/postgresql (PostgreSQL server binaries)".to_string())?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            .max()
            .ok_or("no initdb and pg_ctl under /usr/lib/postgresql/*/bin")?;
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = std::env::temp_dir().join(format!("cs-pg-{}", crate::helpers::random_suffix()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
        if root {
            let chown = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .output()
                .map_err(|e| e.to_string())?;
            if !chown.status.success() {
                return Err(format!(
                    "running as root and cannot hand a directory to the postgres user: {}",
                    String::from_utf8_lossy(&chown.stderr)
                ));
            }
        }
        let cluster = Cluster {
            bin,
            dir,
            port: free_port(),
            as_postgres: root,
        };
        let data = cluster.data();
        cluster.tool(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.start()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn tool(&self, name: &str, args: &[&str]) -> Result<Output, String> {
        let path = self.bin.join(name);
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .current_dir(&self.dir)
                .output()
        } else {
            Command::new(&path)
                .args(args)
                .current_dir(&self.dir)
                .output()
        }
        .map_err(|e| format!("{name}: {e}"))?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(format!(
                "{name} {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        )
        .map(drop)
    }

    /// A clean, fast shutdown: sessions are told to end, the server exits.
    fn stop(&self) -> Result<(), String> {
        self.tool("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
            .map(drop)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.tool(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One answer (or none) to a request sent while the database went away and came back.
#[derive(Debug, Clone)]
enum Seen {
    Answer(u16, Value),
    NoAnswer(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_answers_503_then_recovers_without_restarting_the_service() {
    let cluster = match tokio::task::spawn_blocking(Cluster::create)
        .await
        .expect("join")
    {
        Ok(c) => c,
        Err(why) => {
            eprintln!("skipped: cannot start a private PostgreSQL cluster: {why}");
            return;
        }
    };
    let started = Instant::now();
    let url = cluster.url();
    let app = spawn_app_with(|s| {
        s.database_url = url;
        s.database_max_connections = 8;
    })
    .await;
    app.credit("BTC", "10").await;
    let creds = Creds {
        project_id: app.creds.project_id.clone(),
        api_key: app.creds.api_key.clone(),
        api_secret: app.creds.api_secret.clone(),
        webhook_secret: app.creds.webhook_secret.clone(),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let body = |i: usize| {
        let foreign_id = format!("db-{i:04}");
        let body = json!({"foreign_id": foreign_id, "currency": "BTC", "amount": "0.0001",
            "address": BTC_ADDR})
        .to_string();
        (foreign_id, body)
    };

    // Four clients send withdrawals without pause until told to stop.
    let seen: Mutex<BTreeMap<String, Seen>> = Mutex::default();
    let (next, ok, unavailable) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let stop = AtomicBool::new(false);
    let client = || async {
        while !stop.load(Ordering::SeqCst) {
            let (foreign_id, body) = body(next.fetch_add(1, Ordering::SeqCst));
            let r = post_signed(&http, &app.base, &creds, "/withdrawal/crypto", &body).await;
            let s = match r {
                Ok((code, v)) => {
                    match code {
                        200 => ok.fetch_add(1, Ordering::SeqCst),
                        _ => unavailable.fetch_add(1, Ordering::SeqCst),
                    };
                    Seen::Answer(code, v)
                }
                Err(e) => Seen::NoAnswer(e.to_string()),
            };
            seen.lock().expect("lock").insert(foreign_id, s);
        }
    };
    let script = async {
        until(
            "20 withdrawals accepted",
            Duration::from_secs(30),
            || async { (ok.load(Ordering::SeqCst) >= 20).then_some(()) },
        )
        .await;
        let down_at = Instant::now();
        let c = &cluster;
        tokio::task::block_in_place(|| c.stop()).expect("stop the cluster");
        let ok_before = ok.load(Ordering::SeqCst);
        until(
            "answers while the database is down",
            Duration::from_secs(45),
            || async { (unavailable.load(Ordering::SeqCst) >= 4).then_some(()) },
        )
        .await;
        let readyz = http
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz answers");
        assert_eq!(readyz.status(), 503, "/readyz while the database is down");
        let down_for = down_at.elapsed();
        tokio::task::block_in_place(|| c.start()).expect("start the cluster again");
        let up_at = Instant::now();
        // The service finds the database again by itself: a fresh signed request succeeds.
        until(
            "a withdrawal accepted after the restart",
            Duration::from_secs(45),
            || async { (ok.load(Ordering::SeqCst) >= ok_before + 10).then_some(()) },
        )
        .await;
        stop.store(true, Ordering::SeqCst);
        (down_for, up_at.elapsed())
    };
    let ((down_for, recovered_in), ..) =
        tokio::join!(script, client(), client(), client(), client());

    let seen = seen.into_inner().expect("lock");
    let mut refused = Vec::new();
    for (foreign_id, s) in &seen {
        match s {
            Seen::Answer(200, _) => {}
            Seen::Answer(503, v) => {
                assert_eq!(
                    v,
                    &json!({"message": "Service temporarily unavailable, retry later",
                        "error_code": "service_unavailable"}),
                    "{foreign_id}"
                );
                refused.push(foreign_id.clone());
            }
            Seen::NoAnswer(e) => panic!("{foreign_id}: no answer from the service: {e}"),
            Seen::Answer(code, v) => panic!("{foreign_id}: neither accepted nor 503: {code} {v}"),
        }
    }
    assert!(!refused.is_empty());
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );

    // The merchant re-sends what was refused: each is accepted once; then everything that
    // was accepted is paid out and the books balance.
    for foreign_id in &refused {
        let i: usize = foreign_id[3..].parse().expect("index");
        let (_, body) = body(i);
        let (code, v) = post_signed(&http, &app.base, &creds, "/withdrawal/crypto", &body)
            .await
            .expect("answer");
        assert_eq!(code, 200, "{foreign_id}: {v}");
    }
    // Background jobs that failed on the database wait out their back-off (at most 5
    // minutes), and claims whose outcome could not be written wait out their lease (60 s):
    // on the test clock that time has to be made to pass.
    app.clock.advance_secs(10 * 60);
    app.state.wake.notify_one();
    let total = seen.len();
    until(
        "every withdrawal confirmed",
        Duration::from_secs(60),
        || async {
            let n = app.count("withdrawals WHERE status = 'confirmed'").await;
            (n == total as i64).then_some(())
        },
    )
    .await;
    until("the outbox drained", Duration::from_secs(30), || async {
        (app.count("jobs WHERE status <> 'done'").await == 0).then_some(())
    })
    .await;
    assert_eq!(app.count("withdrawals").await, total as i64);
    assert_eq!(app.count("sandbox_payouts").await, total as i64);
    let bad = countersign::db::balances::reconcile(&app.state.db, app.project_id())
        .await
        .expect("reconcile");
    assert!(bad.is_empty(), "{bad:?}");
    eprintln!(
        "database restart: {total} withdrawals, {} answered 503 while down {:.1} s, \
         recovered {:.1} s after the start; {:.1} s in all",
        refused.len(),
        down_for.as_secs_f64(),
        recovered_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
