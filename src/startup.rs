//! Building and running the application: pools, migrations, the master key, the HTTP server
//! and the background worker.

use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::crypto::MasterKey;
use crate::db::{Db, SchemaStatus};
use crate::domain::exchange::Pricing;
use crate::payout::PayoutProvider;
use crate::payout::http::HttpProvider;
use crate::payout::sandbox::SandboxProvider;
use crate::rates::Rates;
use crate::state::AppState;
use crate::worker::Worker;
use actix_web::dev::{Server, ServerHandle, Service};
use actix_web::{App, HttpResponse, HttpServer, middleware, web};
use anyhow::Context;
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Installs the process-wide TLS crypto provider (ring) once; reqwest and sqlx both use it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Finds the master key: configured, or kept in a file, or generated into that file (0600).
pub fn master_key(settings: &Settings) -> anyhow::Result<MasterKey> {
    if let Some(k) = &settings.secret_key {
        return MasterKey::from_hex(k.expose_secret()).context("COUNTERSIGN_SECRET_KEY");
    }
    let path = settings.secret_key_file.clone().unwrap_or_else(|| {
        settings
            .sqlite_path()
            .map(|db| db.with_extension("key"))
            .unwrap_or_else(|| PathBuf::from("countersign.key"))
    });
    if path.exists() {
        let hex = std::fs::read_to_string(&path)
            .with_context(|| format!("reading master key file {}", path.display()))?;
        return MasterKey::from_hex(&hex)
            .with_context(|| format!("master key in {}", path.display()));
    }
    let hex = MasterKey::generate_hex()?;
    write_private(&path, &hex)
        .with_context(|| format!("writing master key to {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "no COUNTERSIGN_SECRET_KEY set: generated a master key and stored it in this file (mode 0600). \
         Back it up: without it the stored API secrets cannot be read. Set COUNTERSIGN_SECRET_KEY in production."
    );
    MasterKey::from_hex(&hex).context("generated master key")
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())
}

/// The payout rail `payout.provider` names.
fn payout_provider(settings: &Settings, db: &Db) -> anyhow::Result<Arc<dyn PayoutProvider>> {
    match settings.payout.provider.as_str() {
        "sandbox" => Ok(Arc::new(SandboxProvider::new(
            db.clone(),
            i64::try_from(settings.sandbox.confirm_delay_secs).unwrap_or(5) * 1000,
            settings.sandbox.fail_addresses.clone(),
        ))),
        "http" => Ok(Arc::new(
            HttpProvider::from_settings(&settings.payout.http).map_err(anyhow::Error::msg)?,
        )),
        other => anyhow::bail!("payout.provider must be \"sandbox\" or \"http\", not {other:?}"),
    }
}

/// Opens the database and applies migrations.
pub async fn open_db(settings: &Settings) -> anyhow::Result<Db> {
    install_crypto_provider();
    let db = Db::connect(&settings.database_url, settings.database_max_connections)
        .await
        .context("connecting to the database")?;
    db.migrate().await.context("applying migrations")?;
    Ok(db)
}

pub fn build_state(settings: Settings, db: Db, clock: SharedClock) -> anyhow::Result<AppState> {
    install_crypto_provider();
    let master_key = master_key(&settings)?;
    let rates = Rates::from_settings(&settings.rates, clock.clone())?;
    let pricing =
        Pricing::from_settings(&settings.fees, &settings.exchange).map_err(anyhow::Error::msg)?;
    let outbound = crate::notify::outbound::Outbound::new(
        &settings.callbacks,
        settings.outbound.allowed_networks.clone(),
    )
    .context("building the HTTP client")?;
    let payout = payout_provider(&settings, &db)?;
    let mailer = crate::notify::email::Mailer::from_settings(&settings.smtp)
        .context("SMTP configuration")?;
    crate::web::check_templates().map_err(|e| anyhow::anyhow!("templates: {e}"))?;
    let signin_throttle = Arc::new(crate::auth::throttle::SignInThrottle::new(
        settings.sessions.signin_attempts_per_minute,
        clock.clone(),
    ));
    Ok(AppState {
        mailer: Arc::new(mailer),
        db,
        clock,
        settings: Arc::new(settings),
        master_key,
        rates: Arc::new(rates),
        pricing: Arc::new(pricing),
        payout,
        outbound,
        signin_throttle,
        wake: Arc::new(Notify::new()),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        intake: Arc::new(crate::service::withdrawals::Intake::new()),
    })
}

pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
    /// The metrics listener and its port, when `metrics.listen` is set.
    metrics: Option<(Server, u16)>,
    stop: Arc<watch::Sender<bool>>,
}

/// Stops a running [`Application`] gracefully (see [`Application::run_until_stopped`]).
#[derive(Clone)]
pub struct Shutdown {
    server: ServerHandle,
    stop: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// Stops accepting connections; in-flight requests finish (up to 30 s) while the worker
    /// finishes the jobs it is running (up to `worker.shutdown_grace_secs`) and hands back
    /// the ones it claimed but did not start. Returns once the HTTP server has stopped.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        self.server.stop(true).await;
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        mut settings: Settings,
        clock: SharedClock,
    ) -> anyhow::Result<Application> {
        let db = open_db(&settings).await?;
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let port = addr.port();
        if settings.base_url.is_empty() {
            settings.base_url = format!("http://{addr}");
        }
        let state = build_state(settings, db, clock)?;
        // A first fetch before serving, so a live source has rates from the first request (a
        // failure is logged and retried by the poller; conversions are refused meanwhile).
        let _ = state.rates.refresh().await;
        if state.mailer.is_dev_mailbox() && !crate::web::mailbox::served(&state) {
            tracing::warn!(
                "no SMTP server is configured: email is kept in the database and not sent, and the \
                 development mailbox page is not served because base_url is not a loopback address. \
                 Configure smtp.host."
            );
        }
        let metrics = match state.settings.metrics.listen.as_str() {
            "" => None,
            addr => {
                let listener = TcpListener::bind(addr)
                    .with_context(|| format!("binding metrics.listen {addr}"))?;
                let port = listener.local_addr()?.port();
                let server = crate::metrics::endpoint::server(state.clone(), listener)?;
                Some((server, port))
            }
        };
        let server = http_server(state.clone(), listener)?;
        Ok(Application {
            port,
            server,
            state,
            metrics,
            stop: Arc::new(watch::channel(false).0),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The metrics listener's port, when it is on.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn shutdown(&self) -> Shutdown {
        Shutdown {
            server: self.server.handle(),
            stop: self.stop.clone(),
        }
    }

    /// Serves until stopped: by [`Shutdown::stop`] (SIGTERM/SIGINT in `serve`), which drains
    /// requests and the worker side by side, or by `handle().stop()`, after which the worker
    /// is told to stop. The worker finishes its running jobs within
    /// `worker.shutdown_grace_secs` and releases the leases of the rest; the metrics listener
    /// answers until then.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let rx = self.stop.subscribe();
        let worker: Option<JoinHandle<()>> = self
            .state
            .settings
            .worker
            .enabled
            .then(|| tokio::spawn(Worker::new(self.state.clone()).run(rx.clone())));
        let rates = tokio::spawn(self.state.rates.clone().poll(rx));
        let metrics = self.metrics.map(|(server, _)| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let result = self.server.await;
        let _ = self.stop.send(true);
        if let Some(w) = worker {
            // The worker enforces its own grace; this only bounds a stuck database.
            let grace = self.state.settings.worker.shutdown_grace_secs;
            let _ = tokio::time::timeout(Duration::from_secs(grace + 15), w).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), rates).await;
        if let Some(m) = metrics {
            m.stop(true).await;
        }
        self.state.db.close().await;
        result
    }
}

fn http_server(state: AppState, listener: TcpListener) -> anyhow::Result<Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let metrics = data.metrics.clone();
        App::new()
            .app_data(data.clone())
            .wrap(
                middleware::DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Cache-Control", "no-store"))
                    .add(("Content-Security-Policy", crate::web::CSP))
                    .add(("Referrer-Policy", "no-referrer"))
                    .add(("X-Frame-Options", "DENY")),
            )
            .wrap_fn(move |req, srv| {
                let started = Instant::now();
                let method = req.method().clone();
                let path = loggable_path(req.path());
                // The pattern, never the path: ids and tokens must not become label values.
                let route = req.match_pattern();
                let metrics = metrics.clone();
                let fut = srv.call(req);
                async move {
                    let res = fut.await;
                    let took = started.elapsed();
                    let ms = took.as_secs_f64() * 1000.0;
                    let status = match &res {
                        Ok(r) => {
                            tracing::info!(%method, %path, status = r.status().as_u16(), ms, "request");
                            r.status().as_u16()
                        }
                        Err(e) => {
                            tracing::warn!(%method, %path, error = %e, ms, "request failed");
                            e.as_response_error().status_code().as_u16()
                        }
                    };
                    metrics.http_request(method.as_str(), route, status, took);
                    res
                }
            })
            .configure(crate::api::routes)
            .configure(crate::admin_api::routes)
            .configure(crate::web::routes)
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .default_service(web::to(not_found_page))
    })
    .disable_signals()
    .shutdown_timeout(30)
    .listen(listener)?
    .run();
    Ok(server)
}

async fn not_found_page() -> Result<HttpResponse, crate::web::error::PageError> {
    Err(crate::web::error::PageError::NotFound)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Invitation, setup and approval links carry their secret token in the path: logged
/// without it.
pub fn loggable_path(path: &str) -> String {
    for prefix in ["/invite/", "/setup/", "/approve/", "/confirm/"] {
        if path.starts_with(prefix) {
            return format!("{prefix}{{token}}");
        }
    }
    path.to_string()
}

/// Ready when the database answers and has exactly the migrations this build expects.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let not_ready = |reason: String, extra: serde_json::Value| {
        let mut body = serde_json::json!({"status": "not ready", "reason": reason});
        if let (Some(b), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        HttpResponse::ServiceUnavailable().json(body)
    };
    match state.db.schema_status().await {
        Ok(SchemaStatus::Current) => {
            HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
        }
        Ok(SchemaStatus::Pending(versions)) => not_ready(
            "migrations not applied: run `countersign migrate`".into(),
            serde_json::json!({"pending_migrations": versions}),
        ),
        Ok(SchemaStatus::Dirty(v)) => not_ready(
            format!("migration {v} failed part-way"),
            serde_json::Value::Null,
        ),
        Ok(SchemaStatus::Modified(v)) => not_ready(
            format!("applied migration {v} differs from this build's"),
            serde_json::Value::Null,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            not_ready("database unreachable".into(), serde_json::Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_paths_are_logged_without_their_token() {
        assert_eq!(super::loggable_path("/invite/abcDEF123"), "/invite/{token}");
        assert_eq!(super::loggable_path("/setup/abcDEF123"), "/setup/{token}");
        assert_eq!(
            super::loggable_path("/approve/abc-DEF_123"),
            "/approve/{token}"
        );
        assert_eq!(super::loggable_path("/withdrawals/12"), "/withdrawals/12");
    }
}
