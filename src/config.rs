//! Typed configuration: defaults, then a TOML file, then `COUNTERSIGN_*` environment variables
//! (nested keys with a double underscore: `COUNTERSIGN_SANDBOX__CONFIRM_DELAY_SECS`).
//! Secrets are `SecretString`s: they never appear in Debug output or logs.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://path?mode=rwc` (default, a file in the working directory) or `postgres://...`.
    pub database_url: String,
    /// Pool size; SQLite gets one writer connection regardless (see `db`).
    pub database_max_connections: u32,
    pub listen: String,
    /// Reverse proxies (addresses or CIDR networks, e.g. `["10.0.0.0/8", "::1"]`) whose
    /// `X-Forwarded-For` header is believed: a request arriving from one of them is recorded
    /// (audit log, sessions, lockout alerts) as coming from the address the proxy saw. Empty
    /// (the default): the header is ignored, since anyone can send it.
    pub trusted_proxies: Vec<Network>,
    /// The address people and merchants reach the service at (links in emails and Slack, the
    /// origin browser forms must come from). Empty: `http://` + the address `listen` bound.
    pub base_url: String,
    /// 64 hex characters. When unset, one is generated and kept in `secret_key_file`.
    #[serde(skip_serializing)]
    pub secret_key: Option<SecretString>,
    /// Where a generated master key is kept; default: next to the SQLite file, else
    /// `./countersign.key`.
    pub secret_key_file: Option<PathBuf>,
    /// tracing filter, e.g. `info` or `countersign=debug,info`.
    pub log: String,
    /// `text` or `json`.
    pub log_format: String,
    pub withdrawals: WithdrawalSettings,
    pub payout: PayoutSettings,
    pub sandbox: SandboxSettings,
    pub callbacks: CallbackSettings,
    pub outbound: OutboundSettings,
    pub gate: GateSettings,
    pub worker: WorkerSettings,
    pub rates: RateSettings,
    pub sessions: SessionSettings,
    pub smtp: SmtpSettings,
    pub fees: FeeSettings,
    pub exchange: ExchangeSettings,
    pub metrics: MetricsSettings,
}

/// The Prometheus endpoint. It is never served on the main port: only on its own listener,
/// which is off unless `listen` is set.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address the metrics listener binds (e.g. `127.0.0.1:9464`); empty = no metrics.
    pub listen: String,
    /// When set, scrapes must send `Authorization: Bearer <token>`.
    #[serde(skip_serializing)]
    pub token: Option<SecretString>,
}

impl MetricsSettings {
    /// A token is configured (an empty one counts as none).
    pub fn token_set(&self) -> bool {
        use secrecy::ExposeSecret;
        self.token
            .as_ref()
            .is_some_and(|t| !t.expose_secret().is_empty())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// A session unused this long ends.
    pub idle_minutes: u64,
    /// A session ends this long after sign-in, used or not.
    pub absolute_hours: u64,
    /// Password attempts per client address per minute (sign-in page and admin API token
    /// together; a burst that refills evenly); 0 = no limit. See `auth::throttle`.
    pub signin_attempts_per_minute: u32,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle_minutes: 30,
            absolute_hours: 12,
            signin_attempts_per_minute: 20,
        }
    }
}

/// Outgoing mail. With no `host`, mail goes to the built-in development mailbox at
/// `/dev/mailbox` instead.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: Option<String>,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit TLS) or `none` (plain, for local relays).
    pub security: Option<String>,
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    /// The From: address, e.g. `Countersign <countersign@acme.example>`.
    pub from: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WithdrawalSettings {
    /// A withdrawal left pending this long is cancelled with error "Expired".
    pub pending_expiry_hours: u64,
    /// While Withdrawal Confirmation is on, a person who gains withdrawal rights (alone or
    /// with the owner role) may approve or decline only this long afterwards, and the other
    /// approvers are emailed at once. 0 turns the hold off.
    pub new_approver_hold_hours: u64,
}

/// Where approved withdrawals are paid out.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayoutSettings {
    /// `sandbox` (the built-in rail: nothing leaves, txids are made up; see `sandbox`) or
    /// `http` (an upstream processor's API; see `http`).
    pub provider: String,
    pub http: HttpPayoutSettings,
}

impl Default for PayoutSettings {
    fn default() -> Self {
        PayoutSettings {
            provider: "sandbox".into(),
            http: HttpPayoutSettings::default(),
        }
    }
}

/// The upstream processor behind the `http` rail (see `payout::http`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpPayoutSettings {
    /// Base of the upstream's merchant API, e.g. `https://processor.example/api/v2`.
    pub url: Option<String>,
    /// The API key the upstream issued (`X-Processing-Key`).
    pub key: Option<String>,
    /// Its signing secret (HMAC-SHA512 of each body).
    #[serde(skip_serializing)]
    pub secret: Option<SecretString>,
    /// Put before each payout's idempotency key to make the upstream `foreign_id`: set one
    /// unique to this install when the upstream account is shared with anything else.
    pub id_prefix: String,
    /// A request with no complete answer within this is retried later.
    pub timeout_secs: u64,
    /// How long after an "on its way" answer the upstream is asked again.
    pub check_interval_secs: u64,
}

impl Default for HttpPayoutSettings {
    fn default() -> Self {
        HttpPayoutSettings {
            url: None,
            key: None,
            secret: None,
            id_prefix: String::new(),
            timeout_secs: 30,
            check_interval_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// How long after submission a sandbox payout confirms.
    pub confirm_delay_secs: u64,
    /// Payouts to these addresses fail (to rehearse the failure path).
    pub fail_addresses: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackSettings {
    pub connect_timeout_secs: u64,
    pub timeout_secs: u64,
    /// How long a callback is retried before its delivery is marked dead.
    pub give_up_after_hours: u64,
}

/// Where owner-set URLs (merchant callbacks, the operator gate, Slack) may lead: the public
/// internet, plus the networks listed here (see `notify::outbound`).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    /// Networks outside the public internet that owner-set URLs may reach anyway, e.g.
    /// `["10.20.0.0/16"]` for a merchant whose callback receiver is on the private network.
    /// Empty (the default): loopback, private, link-local and other non-public addresses are
    /// refused. `countersign demo` allows loopback when this is empty.
    pub allowed_networks: Vec<Network>,
}

/// The operator gate: how long a new withdrawal waits for the validation webhook's answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateSettings {
    /// No complete answer within this (connecting included): code 3, temporarily unavailable.
    pub timeout_ms: u64,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings { timeout_ms: 5_000 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Run background work in this process (callbacks, payouts, expiry).
    pub enabled: bool,
    /// How often the worker looks for due work when nothing woke it.
    pub poll_interval_ms: u64,
    /// Jobs claimed per round. A round's payouts are recorded in one transaction, which
    /// takes the project's balance row only for its last round trips (see
    /// `service::withdrawals::record_payouts`), so a larger round no longer keeps new
    /// withdrawals waiting: 32 pays out a load a third faster than 16 with the same intake
    /// (see README, Performance, change 19).
    pub batch_size: u32,
    /// Jobs run at once.
    pub concurrency: usize,
    /// A claimed job not finished within this time is claimed again by any instance.
    pub lease_secs: u64,
    /// On shutdown, how long jobs already running may take to finish; claimed jobs not yet
    /// started are handed back at once.
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateSettings {
    /// `static` (the table below) or `http` (polls `http.url`).
    pub source: String,
    /// The currency the static table is expressed in.
    pub reference: String,
    /// Value of one unit of each currency in `reference` units, as decimal strings.
    pub table: BTreeMap<String, String>,
    /// Live rates older than this are not used for conversions (the static table never ages).
    pub max_age_secs: u64,
    pub http: HttpRateSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpRateSettings {
    /// A JSON endpoint answering `{"base": "EUR", "rates": {"BTC": "60000", ...}}`.
    pub url: Option<String>,
    pub poll_interval_secs: u64,
    pub timeout_secs: u64,
}

/// One fee: a percentage of the amount plus a fixed part, both decimal strings.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct FeeSetting {
    pub percent: String,
    pub fixed: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FeeSettings {
    /// Per currency pair `"FROM/TO"` (or `"*"` for every other pair, percentage only): charged
    /// on conversions, in the currency received (`fixed` is in TO units).
    pub exchange: BTreeMap<String, FeeSetting>,
    /// Per payout currency (one asset on one network: `BTC`, `USDTT`, ...; `"*"` for every
    /// other, percentage only): charged on every payout, in that currency.
    pub withdrawal: BTreeMap<String, FeeSetting>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeSettings {
    /// Pairs `"FROM/TO"` that can be exchanged; empty = every pair of priced currencies.
    pub pairs: Vec<String>,
    /// How long an exchange quote can be executed.
    pub quote_ttl_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: "sqlite://countersign.db?mode=rwc".into(),
            database_max_connections: 16,
            listen: "127.0.0.1:8080".into(),
            trusted_proxies: Vec::new(),
            base_url: String::new(),
            secret_key: None,
            secret_key_file: None,
            log: "info".into(),
            log_format: "text".into(),
            withdrawals: WithdrawalSettings::default(),
            payout: PayoutSettings::default(),
            sandbox: SandboxSettings::default(),
            callbacks: CallbackSettings::default(),
            outbound: OutboundSettings::default(),
            gate: GateSettings::default(),
            worker: WorkerSettings::default(),
            rates: RateSettings::default(),
            sessions: SessionSettings::default(),
            smtp: SmtpSettings::default(),
            fees: FeeSettings::default(),
            exchange: ExchangeSettings::default(),
            metrics: MetricsSettings::default(),
        }
    }
}

impl Default for HttpRateSettings {
    fn default() -> Self {
        HttpRateSettings {
            url: None,
            poll_interval_secs: 60,
            timeout_secs: 10,
        }
    }
}

impl Default for ExchangeSettings {
    fn default() -> Self {
        ExchangeSettings {
            pairs: Vec::new(),
            quote_ttl_secs: 60,
        }
    }
}

impl Default for WithdrawalSettings {
    fn default() -> Self {
        WithdrawalSettings {
            pending_expiry_hours: 24,
            new_approver_hold_hours: 24,
        }
    }
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            confirm_delay_secs: 5,
            fail_addresses: Vec::new(),
        }
    }
}

impl Default for CallbackSettings {
    fn default() -> Self {
        CallbackSettings {
            connect_timeout_secs: 5,
            timeout_secs: 15,
            give_up_after_hours: 72,
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            enabled: true,
            poll_interval_ms: 250,
            batch_size: 32,
            concurrency: 16,
            lease_secs: 60,
            shutdown_grace_secs: 20,
        }
    }
}

impl Default for RateSettings {
    fn default() -> Self {
        // Indicative EUR values; production deployments set their own or use a live source. Stablecoins are close to one dollar.
        let table = [
            ("EUR", "1"),
            ("USD", "0.92"),
            ("BTC", "60000"),
            ("LTC", "80"),
            ("ETH", "3000"),
            ("USDTE", "0.92"),
            ("USDTT", "0.92"),
            ("TRX", "0.2"),
            ("TON", "5"),
            ("SBX", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        RateSettings {
            source: "static".into(),
            reference: "EUR".into(),
            table,
            max_age_secs: 600,
            http: HttpRateSettings::default(),
        }
    }
}

/// An IP network from the configuration: `10.0.0.0/8`, or one address (`192.0.2.7`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(pub ipnet::IpNet);

impl Network {
    pub fn contains(&self, ip: &std::net::IpAddr) -> bool {
        self.0.contains(ip)
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Network, String> {
        let s = s.trim();
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(|net| Network(net.trunc()))
            .map_err(|_| format!("{s:?} is neither an IP address nor a network like 10.0.0.0/8"))
    }
}

impl Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Network, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Defaults ← TOML file (explicit path, else `countersign.toml` if present) ← environment.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError(format!("{} does not exist", p.display())));
                }
                fig = fig.merge(Toml::file(p));
            }
            None => {
                if Path::new("countersign.toml").exists() {
                    fig = fig.merge(Toml::file("countersign.toml"));
                }
            }
        }
        fig = fig.merge(Env::prefixed("COUNTERSIGN_").split("__"));
        let settings: Settings = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres"))
        {
            return Err(ConfigError(
                "database_url must start with sqlite: or postgres://".into(),
            ));
        }
        if !self.base_url.is_empty() {
            url::Url::parse(&self.base_url)
                .map_err(|e| ConfigError(format!("base_url is not a URL: {e}")))?;
        }
        if self.worker.concurrency == 0 || self.worker.batch_size == 0 {
            return Err(ConfigError(
                "worker.concurrency and worker.batch_size must be at least 1".into(),
            ));
        }
        if !(1..=60_000).contains(&self.gate.timeout_ms) {
            return Err(ConfigError(
                "gate.timeout_ms must be between 1 and 60000 (a withdrawal waits this long)".into(),
            ));
        }
        if let Some(sec) = &self.smtp.security {
            if !matches!(sec.as_str(), "starttls" | "tls" | "none") {
                return Err(ConfigError(
                    "smtp.security must be starttls, tls or none".into(),
                ));
            }
        }
        if self.metrics.token_set() && self.metrics.listen.is_empty() {
            return Err(ConfigError(
                "metrics.token is set but metrics.listen is empty: metrics are served only on their own listener".into(),
            ));
        }
        self.check_rates()?;
        crate::domain::exchange::Pricing::from_settings(&self.fees, &self.exchange)
            .map_err(ConfigError)?;
        if self.exchange.quote_ttl_secs == 0 {
            return Err(ConfigError(
                "exchange.quote_ttl_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Whether cookies must be `Secure` (the service is reached over HTTPS).
    pub fn https(&self) -> bool {
        self.base_url.starts_with("https://")
    }

    /// The origin (scheme://host[:port]) of `base_url`, which browser requests must come from.
    pub fn origin(&self) -> String {
        url::Url::parse(&self.base_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }

    fn check_rates(&self) -> Result<(), ConfigError> {
        let r = &self.rates;
        match r.source.as_str() {
            "static" => Ok(()),
            "http" => {
                let url = r.http.url.as_deref().ok_or_else(|| {
                    ConfigError("rates.source = \"http\" needs rates.http.url".into())
                })?;
                let u = url::Url::parse(url)
                    .map_err(|e| ConfigError(format!("rates.http.url is not a URL: {e}")))?;
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(ConfigError("rates.http.url must be http(s)".into()));
                }
                if r.http.poll_interval_secs == 0 || r.http.timeout_secs == 0 {
                    return Err(ConfigError(
                        "rates.http.poll_interval_secs and rates.http.timeout_secs must be at least 1"
                            .into(),
                    ));
                }
                if r.max_age_secs < r.http.poll_interval_secs {
                    return Err(ConfigError(format!(
                        "rates.max_age_secs ({}) must be at least rates.http.poll_interval_secs ({}): \
                         otherwise rates go stale between two polls",
                        r.max_age_secs, r.http.poll_interval_secs
                    )));
                }
                Ok(())
            }
            other => Err(ConfigError(format!(
                "rates.source must be \"static\" or \"http\", not {other:?}"
            ))),
        }
    }

    /// The SQLite file behind `database_url`, if it is SQLite.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.database_url.strip_prefix("sqlite:")?;
        let rest = rest.trim_start_matches("//");
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }
}

#[cfg(test)]
mod tests {
    //! `deploy/countersign.toml` documents every key: it must load, hold the defaults, and
    //! with its commented-out keys switched on still load and name every key there is.

    use super::*;
    use std::collections::BTreeSet;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/countersign.toml");

    /// Keys whose value is a map of the operator's own names: their entries are not keys.
    const MAPS: [&str; 3] = ["rates.table", "fees.exchange", "fees.withdrawal"];

    fn key_paths(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v.as_object() {
            Some(obj) if !MAPS.contains(&prefix) => {
                for (k, v) in obj {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    key_paths(v, &path, out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }

    /// `# key = value` and `# [table]` lines lose their `# `; prose comments stay.
    fn switch_on_commented_keys(text: &str) -> String {
        let is_key_line = |rest: &str| {
            if let Some(table) = rest.strip_prefix('[') {
                return table.starts_with(|c: char| c.is_ascii_alphabetic() || c == '"');
            }
            let key_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            key_len > 0 && rest[key_len..].starts_with(" = ")
        };
        text.lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if is_key_line(rest) => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_example_config_loads_and_holds_the_defaults() {
        let loaded = Settings::load(Some(Path::new(EXAMPLE))).expect("deploy/countersign.toml");
        assert_eq!(
            serde_json::to_value(&loaded).unwrap(),
            serde_json::to_value(Settings::default()).unwrap(),
            "deploy/countersign.toml sets a value other than the default"
        );
    }

    /// Every other `.toml` under `deploy/` (the Kubernetes ConfigMap's, ...) loads too.
    #[test]
    fn every_config_under_deploy_loads() {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|e| e == "toml") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")),
            &mut files,
        );
        assert!(files.len() > 1, "found only {files:?}");
        for f in files {
            if let Err(e) = Settings::load(Some(f.as_path())) {
                panic!("{}: {e}", f.display());
            }
        }
    }

    #[test]
    fn the_example_config_names_every_key() {
        let text = switch_on_commented_keys(&std::fs::read_to_string(EXAMPLE).unwrap());
        let path = std::env::temp_dir().join(format!(
            "countersign-example-{}-{}.toml",
            std::process::id(),
            getrandom::u32().unwrap()
        ));
        std::fs::write(&path, &text).unwrap();
        let loaded = Settings::load(Some(path.as_path()));
        std::fs::remove_file(&path).unwrap();
        loaded.expect("deploy/countersign.toml with every commented-out key switched on");

        let mut every_key = BTreeSet::new();
        key_paths(
            &serde_json::to_value(Settings::default()).unwrap(),
            "",
            &mut every_key,
        );
        // Secrets are never serialized.
        every_key.extend(
            [
                "secret_key",
                "smtp.password",
                "metrics.token",
                "payout.http.secret",
            ]
            .map(String::from),
        );
        let mut in_example = BTreeSet::new();
        let example: serde_json::Value = Figment::from(Toml::string(&text)).extract().unwrap();
        key_paths(&example, "", &mut in_example);
        let missing: Vec<_> = every_key.difference(&in_example).collect();
        assert!(
            missing.is_empty(),
            "deploy/countersign.toml does not mention {missing:?}"
        );
    }
}
