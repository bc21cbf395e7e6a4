//! Logging: `tracing` to stdout, text or JSON, filtered by `log` (`COUNTERSIGN_LOG`).
//! Secrets never reach a log line: configuration secrets are `SecretString`s and request
//! bodies and headers are not logged.

use tracing_subscriber::EnvFilter;

pub fn init(filter: &str, format: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests start many apps in one process) is harmless; ignore its error.
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
