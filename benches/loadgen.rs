//! Load generator for the withdrawal intake endpoint (`benches/run.sh` drives it).
//!
//! Standalone on purpose: it does not link against the `countersign` crate.
//!
//!   cargo bench --bench loadgen -- target   --url URL --key K --secret S -n N -c C
//!   cargo bench --bench loadgen -- baseline --baseline-db sqlite|postgres://... -n N -c C
//!   cargo bench --bench loadgen -- compare  --url URL --key K --secret S --baseline-db sqlite
//!   cargo bench --bench loadgen -- approvals --url URL --key K --secret S --person E,P,OTPAUTH...
//!   cargo bench --bench loadgen -- pages    --url URL --person E,P,OTPAUTH --page /approvals...
//!
//! Requests are built and signed before the clock starts, so the client's own HMAC work
//! does not compete with the server for CPU while it is measured. The baseline is a bare
//! actix-web server on its own actix System (own threads) that verifies the same signature,
//! parses the body and does one INSERT through an sqlx `AnyPool`: the floor to compare with.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, http::StatusCode, web};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, ValueEnum};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha512;
use sqlx::{AnyPool, Connection, any::AnyPoolOptions};
use tokio::sync::oneshot::Sender;

#[path = "loadgen/cpu.rs"]
mod cpu;
#[path = "loadgen/people.rs"]
mod people;

const PATH: &str = "/api/v2/withdrawal/crypto";
const BASELINE_KEY: &str = "baseline_key";
const BASELINE_SECRET: &str = "baseline_secret";

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Load a running Countersign server (needs --url --key --secret)
    Target,
    /// Load an in-process bare actix-web + sqlx server doing one INSERT per request
    Baseline,
    /// Run baseline, then target, and print target/baseline throughput
    Compare,
    /// Create N withdrawals (unmeasured; they must come out pending), then have one approver
    /// per --person claim and approve them through the admin API
    Approvals,
    /// Sign in as the --person and load each --page N times over C connections
    Pages,
}

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for POST /api/v2/withdrawal/crypto"
)]
struct Cli {
    #[arg(value_enum)]
    mode: Mode,
    /// Base URL of the server under test, e.g. http://127.0.0.1:18080
    #[arg(long)]
    url: Option<String>,
    /// API key (X-Processing-Key)
    #[arg(long)]
    key: Option<String>,
    /// API secret, the HMAC-SHA512 key of X-Processing-Signature
    #[arg(long)]
    secret: Option<String>,
    /// Baseline database: `sqlite` (fresh temp file), a sqlite:// or a postgres:// URL
    #[arg(long)]
    baseline_db: Option<String>,
    /// actix worker threads of the baseline server (default: actix's default)
    #[arg(long)]
    baseline_workers: Option<usize>,
    /// Measured requests
    #[arg(short = 'n', long = "requests", default_value_t = 20_000)]
    n: usize,
    /// Concurrent connections, one task each
    #[arg(short = 'c', long = "concurrency", default_value_t = 32)]
    c: usize,
    /// Unmeasured warm-up requests sent first
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    #[arg(long, default_value = "SBX")]
    currency: String,
    #[arg(long, default_value = "0.001")]
    amount: String,
    #[arg(long, default_value = "sbx_bench_addr")]
    address: String,
    /// foreign_id prefix, ids are `{prefix}-{i}` (default: random per run)
    #[arg(long)]
    prefix: Option<String>,
    /// EMAIL,PASSWORD,OTPAUTH_URL of a user (approvals: one approver each; pages: the first)
    #[arg(long = "person")]
    people: Vec<String>,
    /// A page path to load (pages mode), e.g. /approvals or /withdrawals?status=confirmed
    #[arg(long = "page")]
    pages: Vec<String>,
    /// The pid of the server under test (target and compare modes): its CPU per request is
    /// reported beside the load generator's and PostgreSQL's
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON line on stdout (the human report then goes to stderr)
    #[arg(long)]
    json: bool,
    /// Appended by `cargo bench`; ignored
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Serialize, Deserialize)]
struct Withdrawal {
    foreign_id: String,
    currency: String,
    amount: String,
    address: String,
}

/// A request body and its signature, made before the clock starts.
struct Signed(Vec<u8>, String);

#[derive(Serialize)]
struct Figures {
    label: String,
    requests: usize,
    ok: usize,
    errors: usize,
    errors_by_status: Errors,
    concurrency: usize,
    elapsed_s: f64,
    throughput_rps: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// CPU per request while the load ran (Linux only).
    cpu: Option<cpu::Cpu>,
}

/// Error counts by HTTP status (or `transport`, `200-bad-body`).
type Errors = BTreeMap<String, usize>;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    sqlx::any::install_default_drivers();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(&cli))
}

async fn run(cli: &Cli) -> Result<()> {
    let out = match cli.mode {
        Mode::Target => json!({"mode": "target", "target": run_target(cli).await?}),
        Mode::Baseline => json!({"mode": "baseline", "baseline": run_baseline(cli).await?}),
        Mode::Compare => {
            // The baseline first: after the target, the service's worker goes on paying the
            // target's withdrawals out for a while and would slow the baseline down.
            let b = run_baseline(cli).await?;
            let t = run_target(cli).await?;
            let ratio = 100.0 * t.throughput_rps / b.throughput_rps.max(f64::MIN_POSITIVE);
            say(cli, &format!("\ntarget / baseline throughput: {ratio:.1}%"));
            if t.errors + b.errors > 0 {
                say(cli, "WARNING: there were errors, so the ratio means little");
            }
            json!({"mode": "compare", "target": t, "baseline": b, "ratio_pct": ratio})
        }
        Mode::Approvals => {
            let url = cli.url.clone().context("--url is required")?;
            let people = parse_people(cli)?;
            let ids = create_ids(cli).await?;
            let figures = people::approvals(cli, url.trim_end_matches('/'), &people, ids).await?;
            json!({"mode": "approvals", "target": figures})
        }
        Mode::Pages => {
            let url = cli.url.clone().context("--url is required")?;
            let people = parse_people(cli)?;
            let person = people.first().context("pages mode needs a --person")?;
            let url = url.trim_end_matches('/');
            json!({"mode": "pages", "pages": people::pages(cli, url, person, &cli.pages).await?})
        }
    };
    if cli.json {
        println!("{out}");
    }
    Ok(())
}

fn parse_people(cli: &Cli) -> Result<Vec<people::Person>> {
    cli.people
        .iter()
        .map(|p| people::Person::parse(p))
        .collect()
}

/// Submits `cli.n` withdrawals (not measured) and returns the ids of those that came out
/// pending.
async fn create_ids(cli: &Cli) -> Result<Vec<i64>> {
    let need =
        |v: &Option<String>, flag: &str| v.clone().with_context(|| format!("{flag} is required"));
    let (url, key) = (need(&cli.url, "--url")?, need(&cli.key, "--key")?);
    let secret = need(&cli.secret, "--secret")?;
    let prefix = format!("approve-{}", random_hex());
    let reqs = sign_all(&prefix, cli.n, &secret, cli)?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let endpoint = format!("{}{PATH}", url.trim_end_matches('/'));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..cli.c.max(1) {
        let (http, endpoint, key, next, reqs) = (
            http.clone(),
            endpoint.clone(),
            key.clone(),
            next.clone(),
            reqs.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while let Some(req) = reqs.get(next.fetch_add(1, Ordering::Relaxed)) {
                let resp = http
                    .post(&endpoint)
                    .header("X-Processing-Key", &key)
                    .header("X-Processing-Signature", &req.1)
                    .header("Content-Type", "application/json")
                    .body(req.0.clone())
                    .send()
                    .await?;
                let v: serde_json::Value = resp.json().await?;
                if v["data"]["approval_required"] == true {
                    ids.extend(v["data"]["id"].as_i64());
                }
            }
            Ok::<_, anyhow::Error>(ids)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.context("intake task panicked")??);
    }
    say(
        cli,
        &format!("created {} pending withdrawals of {}", ids.len(), cli.n),
    );
    if ids.is_empty() {
        bail!("no withdrawal came out pending: lower the per-operation limit below --amount");
    }
    ids.sort_unstable();
    Ok(ids)
}

fn say(cli: &Cli, line: &str) {
    if cli.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

async fn run_target(cli: &Cli) -> Result<Figures> {
    let need = |v: &Option<String>, flag: &str| {
        let msg = || format!("{flag} is required in target and compare modes");
        v.clone().with_context(msg)
    };
    let (url, key) = (need(&cli.url, "--url")?, need(&cli.key, "--key")?);
    let secret = need(&cli.secret, "--secret")?;
    drive(&format!("target ({url})"), &url, &key, &secret, cli).await
}

async fn run_baseline(cli: &Cli) -> Result<Figures> {
    let db = cli
        .baseline_db
        .as_deref()
        .context("--baseline-db is required")?;
    let (started, thread) = start_baseline(db, cli.baseline_workers).await?;
    let (addr, handle) = match started {
        Ok(v) => v,
        Err(e) => {
            let _ = thread.join(); // it has already stopped; this lets it remove its files
            return Err(e);
        }
    };
    let kind = db.split(':').next().unwrap_or(db);
    let (label, url) = (format!("baseline ({kind})"), format!("http://{addr}"));
    let figures = drive(&label, &url, BASELINE_KEY, BASELINE_SECRET, cli).await;
    handle.stop(true).await;
    let joined = tokio::task::spawn_blocking(move || thread.join()).await?;
    joined.map_err(|_| anyhow!("baseline server thread panicked"))??;
    figures
}

/// Everything the load tasks share.
struct Load {
    http: reqwest::Client,
    endpoint: String,
    key: String,
    c: usize,
    samples: Mutex<Vec<String>>,
}

/// Warm up, then send `cli.n` pre-signed requests over `cli.c` connections, and report.
async fn drive(label: &str, url: &str, key: &str, secret: &str, cli: &Cli) -> Result<Figures> {
    let c = cli.c.max(1);
    let prefix = match &cli.prefix {
        Some(p) => p.clone(),
        None => format!("bench-{}", random_hex()),
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(c)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()?;
    let endpoint = format!("{}{PATH}", url.trim_end_matches('/'));
    let (key, samples) = (key.to_owned(), Mutex::new(Vec::new()));
    let load = Arc::new(Load {
        http,
        endpoint,
        key,
        c,
        samples,
    });
    let warm = sign_all(&format!("{prefix}-warmup"), cli.warmup, secret, cli)?;
    let reqs = sign_all(&prefix, cli.n, secret, cli)?;
    if !warm.is_empty() {
        let failed: usize = fire(&load, warm).await?.1.values().sum();
        if failed > 0 {
            say(cli, &format!("warm-up: {failed} of {} failed", cli.warmup));
        }
    }
    // The baseline server runs in this process: it is in the load generator's figure.
    let server_pid = if label.starts_with("baseline") {
        None
    } else {
        cli.server_pid
    };
    let before = cpu::snapshot(server_pid);
    let (latencies, errors, elapsed) = fire(&load, reqs).await?;
    let used = before.and_then(|b| cpu::since(&b, server_pid, latencies.len()));
    let mut figures = summarize(label, c, latencies, errors, elapsed);
    figures.cpu = used;
    say(cli, &render(&figures));
    if figures.errors > 0 {
        say(
            cli,
            "WARNING: failed requests are counted in the throughput and latencies",
        );
    }
    let samples = load.samples.lock().map_err(|_| anyhow!("poisoned lock"))?;
    for (i, body) in samples.iter().enumerate() {
        say(cli, &format!("  error body #{}: {body}", i + 1));
    }
    Ok(figures)
}

fn sign_all(prefix: &str, count: usize, secret: &str, cli: &Cli) -> Result<Arc<Vec<Signed>>> {
    let mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).context("HMAC key")?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let body = serde_json::to_vec(&Withdrawal {
            foreign_id: format!("{prefix}-{i}"),
            currency: cli.currency.clone(),
            amount: cli.amount.clone(),
            address: cli.address.clone(),
        })?;
        let mut m = mac.clone();
        m.update(&body);
        out.push(Signed(body, hex::encode(m.finalize().into_bytes())));
    }
    Ok(Arc::new(out))
}

/// Send every request once from `c` tasks that pull indexes off a shared counter.
async fn fire(load: &Arc<Load>, reqs: Arc<Vec<Signed>>) -> Result<(Vec<u64>, Errors, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(load.c);
    for _ in 0..load.c {
        let (load, next, reqs) = (load.clone(), next.clone(), reqs.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = (Vec::with_capacity(reqs.len() / load.c + 1), Errors::new());
            while let Some(req) = reqs.get(next.fetch_add(1, Ordering::Relaxed)) {
                let t0 = Instant::now();
                let result = send(&load, req).await;
                out.0.push(t0.elapsed().as_micros() as u64);
                if let Err((status, body)) = result {
                    *out.1.entry(status).or_default() += 1;
                    if let Ok(mut s) = load.samples.lock()
                        && s.len() < 5
                    {
                        s.push(body.chars().take(500).collect());
                    }
                }
            }
            out
        }));
    }
    let (mut latencies, mut errors) = (Vec::with_capacity(reqs.len()), Errors::new());
    for task in tasks {
        let (l, e) = task.await.context("load task panicked")?;
        latencies.extend(l);
        e.into_iter()
            .for_each(|(k, v)| *errors.entry(k).or_default() += v);
    }
    Ok((latencies, errors, start.elapsed()))
}

/// One request: `Err((status, body))` unless HTTP 200 with `{"data": {"id": N, ...}}`.
async fn send(load: &Load, req: &Signed) -> Result<(), (String, String)> {
    let transport = |e| {
        (
            "transport".to_owned(),
            format!("{:#}", anyhow::Error::from(e)),
        )
    };
    let resp = load
        .http
        .post(&load.endpoint)
        .header("X-Processing-Key", &load.key)
        .header("X-Processing-Signature", &req.1)
        .header("Content-Type", "application/json")
        .body(req.0.clone())
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(transport)?;
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    if status != reqwest::StatusCode::OK {
        return Err((status.as_u16().to_string(), text()));
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) if v["data"]["id"].is_number() => Ok(()),
        _ => Err(("200-bad-body".to_owned(), text())),
    }
}

fn summarize(label: &str, c: usize, mut lat: Vec<u64>, errs: Errors, took: Duration) -> Figures {
    lat.sort_unstable();
    let pct = |p: f64| {
        let rank = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len().max(1));
        lat.get(rank - 1).map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let errors: usize = errs.values().sum();
    let secs = took.as_secs_f64().max(1e-9);
    Figures {
        label: label.to_owned(),
        requests: lat.len(),
        ok: lat.len() - errors,
        errors,
        errors_by_status: errs,
        concurrency: c,
        elapsed_s: secs,
        throughput_rps: lat.len() as f64 / secs,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        cpu: None,
    }
}

fn render(f: &Figures) -> String {
    let errs = serde_json::to_string(&f.errors_by_status).unwrap_or_default();
    let (p50, p90, p99, max) = (f.p50_ms, f.p90_ms, f.p99_ms, f.max_ms);
    [
        format!("== {} ==", f.label),
        format!("requests    {} ({} connections)", f.requests, f.concurrency),
        format!("ok          {}", f.ok),
        format!("errors      {} {errs}", f.errors),
        format!("elapsed     {:.3} s", f.elapsed_s),
        format!("throughput  {:.1} req/s", f.throughput_rps),
        format!("latency ms  p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}"),
    ]
    .into_iter()
    .chain(f.cpu.as_ref().map(cpu::render))
    .collect::<Vec<_>>()
    .join("\n")
}

fn random_hex() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    h.write_u128(now.map(|d| d.as_nanos()).unwrap_or(0));
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

// ------------------------------------------------------------------ baseline server

/// Baseline server state: the pool and the HMAC key.
struct Baseline(AnyPool, Hmac<Sha512>);

type HttpErr = (StatusCode, String);

async fn intake(req: HttpRequest, body: web::Bytes, st: web::Data<Baseline>) -> HttpResponse {
    match insert(&req, &body, &st).await {
        Ok(id) => HttpResponse::Ok().json(json!({"data": {"id": id, "status": "pending"}})),
        Err((code, msg)) => HttpResponse::build(code).json(json!({"error": msg})),
    }
}

/// Verify the signature, parse the body, do one INSERT.
async fn insert(req: &HttpRequest, body: &[u8], st: &Baseline) -> Result<i64, HttpErr> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let denied = || (StatusCode::UNAUTHORIZED, "bad key or signature".to_owned());
    if header("X-Processing-Key") != Some(BASELINE_KEY) {
        return Err(denied());
    }
    let sig = hex::decode(header("X-Processing-Signature").unwrap_or_default());
    let mut mac = st.1.clone();
    mac.update(body);
    let verified = mac.verify_slice(&sig.map_err(|_| denied())?);
    verified.map_err(|_| denied())?;
    let w: Withdrawal =
        serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    let sql = "INSERT INTO baseline_withdrawals (foreign_id, body, created_at) VALUES ($1, $2, $3)";
    let done = sqlx::query(sql)
        .bind(w.foreign_id)
        .bind(String::from_utf8_lossy(body).into_owned())
        .bind(now.map(|d| d.as_millis() as i64).unwrap_or(0))
        .execute(&st.0)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(done.last_insert_id().unwrap_or(0))
}

type Started = Result<(SocketAddr, ServerHandle)>;

/// Starts the baseline server on its own actix System thread (plus its worker threads) and
/// returns once it listens. The thread drops the table (postgres) or the temp file (sqlite).
async fn start_baseline(db: &str, workers: Option<usize>) -> Result<(Started, JoinHandle)> {
    let temp = (db == "sqlite").then(|| format!("{}/baseline-{}.db", temp_dir(), random_hex()));
    let url = match &temp {
        Some(path) => format!("sqlite://{path}?mode=rwc"),
        None => db.to_owned(),
    };
    let scheme = url.split(':').next().unwrap_or_default();
    if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
        bail!("--baseline-db must be `sqlite`, a sqlite:// URL or a postgres:// URL");
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("baseline-system".into())
        .spawn(move || {
            let served = actix_web::rt::System::new().block_on(serve_baseline(url, workers, tx));
            if let Some(path) = &temp {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
            served
        })
        .context("spawning the baseline server thread")?;
    let started = rx.await.unwrap_or_else(|_| Err(anyhow!("server died")));
    Ok((started, thread))
}

type JoinHandle = std::thread::JoinHandle<Result<()>>;

fn temp_dir() -> String {
    std::env::temp_dir().display().to_string()
}

async fn serve_baseline(url: String, workers: Option<usize>, tx: Sender<Started>) -> Result<()> {
    let sqlite = url.starts_with("sqlite:");
    let setup = async {
        let pool = baseline_pool(&url, sqlite).await?;
        let mac = Hmac::<Sha512>::new_from_slice(BASELINE_SECRET.as_bytes())?;
        let state = web::Data::new(Baseline(pool.clone(), mac));
        let app = move || {
            let route = web::post().to(intake);
            App::new().app_data(state.clone()).route(PATH, route)
        };
        let mut server = HttpServer::new(app).disable_signals();
        if let Some(w) = workers {
            server = server.workers(w);
        }
        let server = server.bind(("127.0.0.1", 0)).context("binding")?;
        let addr = *server.addrs().first().context("no address")?;
        Ok::<_, anyhow::Error>((pool, addr, server.run()))
    };
    let (pool, addr, server) = match setup.await {
        Ok(v) => v,
        Err(e) => return tx.send(Err(e)).map_err(|_| anyhow!("start-up report lost")),
    };
    let _ = tx.send(Ok((addr, server.handle())));
    let served = server.await.context("baseline server");
    // Pooled connections opened on the (now stopped) worker runtimes are unusable: use a new one.
    pool.close().await;
    if !sqlite {
        let mut conn = sqlx::AnyConnection::connect(&url).await?;
        let drop = sqlx::raw_sql("DROP TABLE IF EXISTS baseline_withdrawals");
        drop.execute(&mut conn)
            .await
            .context("dropping the table")?;
        conn.close().await?;
    }
    served
}

async fn baseline_pool(url: &str, sqlite: bool) -> Result<AnyPool> {
    let opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
    let mut opts = opts.max_connections(if sqlite { 1 } else { 16 });
    if sqlite {
        opts = opts.after_connect(|conn, _meta| {
            Box::pin(async move {
                let pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                               PRAGMA busy_timeout=5000;";
                sqlx::raw_sql(pragmas).execute(&mut *conn).await.map(|_| ())
            })
        });
    }
    let pool = opts.connect(url).await;
    let pool = pool.with_context(|| format!("connecting to {url}"))?;
    let id = if sqlite { "INTEGER" } else { "BIGSERIAL" };
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS baseline_withdrawals (id {id} PRIMARY KEY, \
         foreign_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, created_at BIGINT NOT NULL)"
    );
    let create = sqlx::raw_sql(sqlx::AssertSqlSafe(ddl)).execute(&pool).await;
    create.context("creating the baseline table")?;
    Ok(pool)
}
