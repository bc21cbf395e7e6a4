//! Load generator for the withdrawal intake endpoint.
//!
//! Standalone on purpose: it does not link against the `countersign` crate.
//!
//!   cargo bench --bench loadgen -- target   --url URL --key K --secret S -n N -c C
//!   cargo bench --bench loadgen -- baseline --baseline-db sqlite -n N -c C
//!   cargo bench --bench loadgen -- compare  --url URL --key K --secret S --baseline-db sqlite
//!
//! Requests are built and signed before the clock starts, so the client's own
//! HMAC work does not compete with the server for CPU during the measurement.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, http::StatusCode, web};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha512;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

const PATH: &str = "/api/v2/withdrawal/crypto";
const BASELINE_KEY: &str = "baseline_key";
const BASELINE_SECRET: &str = "baseline_secret";
const MAX_ERROR_BODIES: usize = 5;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for the withdrawal intake endpoint"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// Appended by `cargo bench`; ignored.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Mode {
    /// Load a running Countersign server.
    Target {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Load an in-process bare actix-web + sqlx server doing one INSERT per request.
    Baseline {
        #[command(flatten)]
        baseline: BaselineArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Run `target`, then `baseline`, and print target/baseline throughput.
    Compare {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        baseline: BaselineArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:18080
    #[arg(long)]
    url: String,
    /// API key (X-Processing-Key)
    #[arg(long)]
    key: String,
    /// API secret used for the HMAC-SHA512 request signature
    #[arg(long)]
    secret: String,
}

#[derive(Args, Clone)]
struct BaselineArgs {
    /// `sqlite` (fresh temp file), a sqlite:// URL, or a postgres:// URL
    #[arg(long)]
    baseline_db: String,
    /// actix worker threads for the baseline server (default: actix's default)
    #[arg(long)]
    baseline_workers: Option<usize>,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Number of measured requests
    #[arg(short = 'n', long = "requests", default_value_t = 20_000)]
    n: usize,
    /// Concurrent connections (one task per connection)
    #[arg(short = 'c', long = "concurrency", default_value_t = 32)]
    c: usize,
    /// Unmeasured warm-up requests sent before the measurement
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    #[arg(long, default_value = "SBX")]
    currency: String,
    #[arg(long, default_value = "0.001")]
    amount: String,
    #[arg(long, default_value = "sbx_bench_addr")]
    address: String,
    /// foreign_id prefix (default: random per run); ids are `{prefix}-{i}`
    #[arg(long)]
    prefix: Option<String>,
    /// Print one JSON line on stdout (the human report goes to stderr)
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Withdrawal<'a> {
    foreign_id: &'a str,
    currency: &'a str,
    amount: &'a str,
    address: &'a str,
}

struct Prepared {
    body: Vec<u8>,
    signature: String,
}

#[derive(Serialize, Clone)]
struct Figures {
    label: String,
    requests: usize,
    ok: usize,
    errors: usize,
    errors_by_status: BTreeMap<String, usize>,
    concurrency: usize,
    elapsed_s: f64,
    throughput_rps: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Default)]
struct TaskResult {
    latencies_us: Vec<u64>,
    errors: BTreeMap<String, usize>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    sqlx::any::install_default_drivers();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the load generator runtime")?
        .block_on(run(cli.mode))
}

async fn run(mode: Mode) -> Result<()> {
    match mode {
        Mode::Target { target, load } => {
            let t = run_target(&target, &load).await?;
            emit(&load, &serde_json::json!({"mode": "target", "target": t}))
        }
        Mode::Baseline { baseline, load } => {
            let b = run_baseline(&baseline, &load).await?;
            emit(
                &load,
                &serde_json::json!({"mode": "baseline", "baseline": b}),
            )
        }
        Mode::Compare {
            target,
            baseline,
            load,
        } => {
            let t = run_target(&target, &load).await?;
            let b = run_baseline(&baseline, &load).await?;
            let ratio = 100.0 * t.throughput_rps / b.throughput_rps.max(f64::MIN_POSITIVE);
            say(
                &load,
                &format!("\ntarget / baseline throughput: {ratio:.1}%"),
            );
            if t.errors + b.errors > 0 {
                say(
                    &load,
                    "WARNING: errors occurred; the ratio is not meaningful",
                );
            }
            emit(
                &load,
                &serde_json::json!({"mode": "compare", "target": t, "baseline": b, "ratio_pct": ratio}),
            )
        }
    }
}

fn say(load: &LoadArgs, line: &str) {
    if load.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn emit(load: &LoadArgs, value: &serde_json::Value) -> Result<()> {
    if load.json {
        println!("{}", serde_json::to_string(value)?);
    }
    Ok(())
}

async fn run_target(target: &TargetArgs, load: &LoadArgs) -> Result<Figures> {
    let label = format!("target ({})", target.url);
    drive(&label, &target.url, &target.key, &target.secret, load).await
}

async fn run_baseline(args: &BaselineArgs, load: &LoadArgs) -> Result<Figures> {
    let server = BaselineServer::start(args).await?;
    let url = format!("http://{}", server.addr);
    let label = format!("baseline ({})", server.db_kind);
    let figures = drive(&label, &url, BASELINE_KEY, BASELINE_SECRET, load).await;
    let stopped = server.stop().await;
    let figures = figures?;
    stopped?;
    Ok(figures)
}

/// Warm up, then send `load.n` pre-signed requests with `load.c` connections and report.
async fn drive(
    label: &str,
    url: &str,
    key: &str,
    secret: &str,
    load: &LoadArgs,
) -> Result<Figures> {
    let c = load.c.max(1);
    let prefix = load
        .prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{}", random_hex()));
    let endpoint = format!("{}{PATH}", url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(c)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    let warm = prepare(&format!("{prefix}-warmup"), load.warmup, secret, load)?;
    let reqs = prepare(&prefix, load.n, secret, load)?;
    let samples = Arc::new(Mutex::new(Vec::new()));
    if !warm.is_empty() {
        let (results, _) = fire(&client, &endpoint, key, warm, c, samples.clone()).await?;
        let errors: usize = results.iter().flat_map(|r| r.errors.values()).sum();
        if errors > 0 {
            say(
                load,
                &format!("warm-up: {errors} of {} requests failed", load.warmup),
            );
        }
    }
    let (results, elapsed) = fire(&client, &endpoint, key, reqs, c, samples.clone()).await?;
    let figures = summarize(label, c, results, elapsed);
    say(load, &render(&figures));
    let samples = samples
        .lock()
        .map_err(|_| anyhow!("sample lock poisoned"))?;
    for (i, body) in samples.iter().enumerate() {
        say(load, &format!("  error body #{}: {body}", i + 1));
    }
    Ok(figures)
}

fn prepare(
    prefix: &str,
    count: usize,
    secret: &str,
    load: &LoadArgs,
) -> Result<Arc<Vec<Prepared>>> {
    let mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).context("HMAC key")?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let foreign_id = format!("{prefix}-{i}");
        let body = serde_json::to_vec(&Withdrawal {
            foreign_id: &foreign_id,
            currency: &load.currency,
            amount: &load.amount,
            address: &load.address,
        })?;
        let mut m = mac.clone();
        m.update(&body);
        let signature = hex::encode(m.finalize().into_bytes());
        out.push(Prepared { body, signature });
    }
    Ok(Arc::new(out))
}

/// Send every prepared request once, from `c` tasks pulling indexes off a shared counter.
async fn fire(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    reqs: Arc<Vec<Prepared>>,
    c: usize,
    samples: Arc<Mutex<Vec<String>>>,
) -> Result<(Vec<TaskResult>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(c);
    for _ in 0..c {
        let (client, next, reqs, samples) =
            (client.clone(), next.clone(), reqs.clone(), samples.clone());
        let (endpoint, key) = (endpoint.to_owned(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut res = TaskResult {
                latencies_us: Vec::with_capacity(reqs.len() / c + 1),
                ..Default::default()
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = reqs.get(i) else { break };
                let t0 = Instant::now();
                let outcome = send(&client, &endpoint, &key, req).await;
                res.latencies_us.push(t0.elapsed().as_micros() as u64);
                if let Err((status, body)) = outcome {
                    *res.errors.entry(status).or_default() += 1;
                    if let Ok(mut s) = samples.lock() {
                        if s.len() < MAX_ERROR_BODIES {
                            s.push(body.chars().take(500).collect());
                        }
                    }
                }
            }
            res
        }));
    }
    let mut results = Vec::with_capacity(c);
    for t in tasks {
        results.push(t.await.context("load task panicked")?);
    }
    Ok((results, start.elapsed()))
}

/// One request. `Err((status key, body))` unless HTTP 200 with `{"data": {"id": N, ...}}`.
async fn send(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    req: &Prepared,
) -> Result<(), (String, String)> {
    let resp = client
        .post(endpoint)
        .header("X-Processing-Key", key)
        .header("X-Processing-Signature", &req.signature)
        .header("Content-Type", "application/json")
        .body(req.body.clone())
        .send()
        .await
        .map_err(|e| ("transport".to_owned(), e.to_string()))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ("transport".to_owned(), e.to_string()))?;
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    if status != reqwest::StatusCode::OK {
        return Err((status.as_u16().to_string(), text()));
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) if v["data"]["id"].is_number() => Ok(()),
        _ => Err(("200-bad-body".to_owned(), text())),
    }
}

fn summarize(label: &str, c: usize, results: Vec<TaskResult>, elapsed: Duration) -> Figures {
    let mut lat = Vec::new();
    let mut errors_by_status = BTreeMap::new();
    for r in results {
        lat.extend(r.latencies_us);
        for (k, v) in r.errors {
            *errors_by_status.entry(k).or_default() += v;
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let rank = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
        lat[rank - 1] as f64 / 1000.0
    };
    let errors: usize = errors_by_status.values().sum();
    let secs = elapsed.as_secs_f64();
    Figures {
        label: label.to_owned(),
        requests: lat.len(),
        ok: lat.len() - errors,
        errors,
        errors_by_status,
        concurrency: c,
        elapsed_s: secs,
        throughput_rps: if secs > 0.0 {
            lat.len() as f64 / secs
        } else {
            0.0
        },
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    }
}

fn render(f: &Figures) -> String {
    let errs = if f.errors_by_status.is_empty() {
        "none".to_owned()
    } else {
        let parts: Vec<String> = f
            .errors_by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        parts.join(", ")
    };
    format!(
        "== {} ==\nrequests    {} (ok {}, errors {}) with {} connections\nerrors      {errs}\n\
         elapsed     {:.3} s\nthroughput  {:.1} req/s\nlatency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        f.label,
        f.requests,
        f.ok,
        f.errors,
        f.concurrency,
        f.elapsed_s,
        f.throughput_rps,
        f.p50_ms,
        f.p90_ms,
        f.p99_ms,
        f.max_ms
    )
}

fn random_hex() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

// ---------------------------------------------------------------- baseline server

struct BaselineState {
    pool: AnyPool,
    mac: Hmac<Sha512>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct WithdrawalIn {
    foreign_id: String,
    currency: String,
    amount: String,
    address: String,
}

async fn baseline_intake(
    req: HttpRequest,
    body: web::Bytes,
    st: web::Data<BaselineState>,
) -> HttpResponse {
    match baseline_insert(&req, &body, &st).await {
        Ok(id) => {
            HttpResponse::Ok().json(serde_json::json!({"data": {"id": id, "status": "pending"}}))
        }
        Err((code, msg)) => HttpResponse::build(code).json(serde_json::json!({"error": msg})),
    }
}

async fn baseline_insert(
    req: &HttpRequest,
    body: &[u8],
    st: &BaselineState,
) -> Result<i64, (StatusCode, String)> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let unauthorized = |m: &str| (StatusCode::UNAUTHORIZED, m.to_owned());
    if header("X-Processing-Key") != BASELINE_KEY {
        return Err(unauthorized("unknown key"));
    }
    let sig =
        hex::decode(header("X-Processing-Signature")).map_err(|_| unauthorized("bad signature"))?;
    let mut mac = st.mac.clone();
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| unauthorized("bad signature"))?;
    let w: WithdrawalIn =
        serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let raw = String::from_utf8_lossy(body).into_owned();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let done = sqlx::query(
        "INSERT INTO baseline_withdrawals (foreign_id, body, created_at) VALUES ($1, $2, $3)",
    )
    .bind(w.foreign_id)
    .bind(raw)
    .bind(now_ms)
    .execute(&st.pool)
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(done.last_insert_id().unwrap_or(0))
}

struct BaselineServer {
    addr: SocketAddr,
    db_kind: &'static str,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<Result<()>>,
    temp_db: Option<PathBuf>,
}

impl BaselineServer {
    /// Starts the server on its own actix System (own threads), returns once it listens.
    async fn start(args: &BaselineArgs) -> Result<Self> {
        let (url, temp_db) = if args.baseline_db == "sqlite" {
            let path = std::env::temp_dir().join(format!("baseline-{}.db", random_hex()));
            (format!("sqlite://{}?mode=rwc", path.display()), Some(path))
        } else {
            (args.baseline_db.clone(), None)
        };
        let sqlite = url.starts_with("sqlite:");
        if !sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            bail!("--baseline-db must be `sqlite`, a sqlite:// URL or a postgres:// URL");
        }
        let workers = args.baseline_workers;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("baseline-system".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(serve_baseline(url, sqlite, workers, tx))
            })
            .context("spawning the baseline server thread")?;
        let started = match rx.await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("baseline server thread exited during start-up")),
        };
        let (addr, handle) = match started {
            Ok(v) => v,
            Err(e) => {
                let _ = thread.join();
                remove_sqlite_files(temp_db.as_ref());
                return Err(e);
            }
        };
        let db_kind = if sqlite { "sqlite" } else { "postgres" };
        Ok(Self {
            addr,
            db_kind,
            handle,
            thread,
            temp_db,
        })
    }

    async fn stop(self) -> Result<()> {
        self.handle.stop(true).await;
        let joined = tokio::task::spawn_blocking(move || self.thread.join()).await?;
        remove_sqlite_files(self.temp_db.as_ref());
        joined.map_err(|_| anyhow!("baseline server thread panicked"))?
    }
}

type Started = Result<(SocketAddr, actix_web::dev::ServerHandle)>;

async fn serve_baseline(
    url: String,
    sqlite: bool,
    workers: Option<usize>,
    tx: tokio::sync::oneshot::Sender<Started>,
) -> Result<()> {
    let setup = async {
        let pool = baseline_pool(&url, sqlite).await?;
        let state = web::Data::new(BaselineState {
            pool: pool.clone(),
            mac: Hmac::<Sha512>::new_from_slice(BASELINE_SECRET.as_bytes()).context("HMAC key")?,
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route(PATH, web::post().to(baseline_intake))
        });
        if let Some(w) = workers {
            server = server.workers(w);
        }
        let server = server
            .bind(("127.0.0.1", 0))
            .context("binding the baseline server")?;
        let addr = *server
            .addrs()
            .first()
            .context("baseline server has no address")?;
        Ok::<_, anyhow::Error>((pool, addr, server.disable_signals().run()))
    };
    let (pool, addr, server) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            let _ = tx.send(Err(e));
            return Ok(());
        }
    };
    let _ = tx.send(Ok((addr, server.handle())));
    let served = server.await.context("baseline server");
    if !sqlite {
        sqlx::query("DROP TABLE IF EXISTS baseline_withdrawals")
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    served
}

async fn baseline_pool(url: &str, sqlite: bool) -> Result<AnyPool> {
    let mut opts = AnyPoolOptions::new().max_connections(if sqlite { 1 } else { 16 });
    if sqlite {
        opts = opts.after_connect(|conn, _meta| {
            Box::pin(async move {
                for pragma in [
                    "PRAGMA journal_mode=WAL",
                    "PRAGMA synchronous=NORMAL",
                    "PRAGMA busy_timeout=5000",
                ] {
                    sqlx::raw_sql(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        });
    }
    let pool = opts
        .connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let id = if sqlite {
        "INTEGER PRIMARY KEY"
    } else {
        "BIGSERIAL PRIMARY KEY"
    };
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS baseline_withdrawals (id {id}, foreign_id TEXT NOT NULL UNIQUE, \
         body TEXT NOT NULL, created_at BIGINT NOT NULL)"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
        .execute(&pool)
        .await
        .context("creating baseline table")?;
    Ok(pool)
}

fn remove_sqlite_files(path: Option<&PathBuf>) {
    if let Some(p) = path {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
        }
    }
}
