//! Live rates from a JSON endpoint, polled at an interval. The last good table is kept with
//! the time it was fetched; a failed or malformed fetch changes nothing but `last_error`, and
//! `Rates::current` refuses tables older than `rates.max_age_secs`.
//!
//! The endpoint answers `{"base": "EUR", "rates": {"BTC": "60000.12", "ETH": 3000.5, ...}}`:
//! each rate is the value of one unit of that currency in `base`. Rates may be decimal strings
//! or JSON numbers; a number is read from its literal text, never through a float. Currencies
//! Countersign does not know are ignored; other fields (`id`, dates) are ignored.

use super::{RateError, RateSource, RateTable};
use crate::config::RateSettings;
use crate::domain::money::{Currency, parse_decimal};
use crate::error::describe_http_failure;
use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Larger answers are refused: a rate table is a few kilobytes.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Default)]
struct Inner {
    table: Option<Arc<RateTable>>,
    last_error: Option<String>,
    version: u64,
}

pub struct HttpSource {
    url: String,
    client: reqwest::Client,
    max_age_ms: i64,
    interval: Duration,
    inner: RwLock<Inner>,
}

impl HttpSource {
    pub fn from_settings(s: &RateSettings) -> Result<HttpSource, RateError> {
        let url = s
            .http
            .url
            .clone()
            .ok_or_else(|| RateError::Config("rates.http.url is not set".into()))?;
        let timeout = Duration::from_secs(s.http.timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            // One request a minute needs no pooled connections (and none outlive a runtime).
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| RateError::Config(format!("building the rates HTTP client: {e}")))?;
        Ok(HttpSource {
            url,
            client,
            max_age_ms: i64::try_from(s.max_age_secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            interval: Duration::from_secs(s.http.poll_interval_secs.max(1)),
            inner: RwLock::new(Inner::default()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    async fn fetch(&self) -> Result<Vec<u8>, RateError> {
        let mut resp = self
            .client
            .get(&self.url)
            .header("Accept", "application/json")
            .header(
                "User-Agent",
                concat!("Countersign/", env!("CARGO_PKG_VERSION")),
            )
            .send()
            .await
            .map_err(|e| RateError::Fetch(describe_http_failure(e)))?;
        if !resp.status().is_success() {
            return Err(RateError::Fetch(format!(
                "the rate source answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| RateError::Fetch(describe_http_failure(e)))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(RateError::Malformed(format!(
                    "answer larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[derive(Deserialize)]
struct Feed<'a> {
    base: String,
    #[serde(borrow)]
    rates: BTreeMap<String, &'a RawValue>,
}

/// Reads one rate from its JSON text: a decimal string, or a number literal (exponents
/// allowed), exactly as written.
fn rate_value(raw: &RawValue) -> Option<Decimal> {
    let text = raw.get().trim();
    let value = if text.starts_with('"') {
        let s: String = serde_json::from_str(text).ok()?;
        parse_decimal(&s).ok()?
    } else if text.starts_with(|c: char| c.is_ascii_digit()) {
        if text.contains(['e', 'E']) {
            Decimal::from_scientific(text).ok()?
        } else {
            Decimal::from_str_exact(text).ok()?
        }
    } else {
        return None;
    };
    (value > Decimal::ZERO).then_some(value)
}

/// Parses a feed into a table (pure: the caller stamps time and version).
pub fn parse_feed(body: &[u8]) -> Result<(Currency, BTreeMap<Currency, Decimal>), RateError> {
    let feed: Feed<'_> = serde_json::from_slice(body)
        .map_err(|e| RateError::Malformed(format!("expected {{\"base\", \"rates\"}}: {e}")))?;
    let base = Currency::parse(&feed.base)
        .ok_or_else(|| RateError::Malformed(format!("unknown base currency {:?}", feed.base)))?;
    let mut values = BTreeMap::new();
    for (code, raw) in feed.rates {
        let Some(c) = Currency::parse(&code) else {
            continue;
        };
        let v = rate_value(raw).ok_or_else(|| {
            RateError::Malformed(format!(
                "rate for {code} must be a positive decimal, not {}",
                raw.get().chars().take(40).collect::<String>()
            ))
        })?;
        values.insert(c, v);
    }
    if values.keys().all(|c| *c == base) {
        return Err(RateError::Malformed(
            "no rate for any known currency".into(),
        ));
    }
    values.insert(base, Decimal::ONE);
    Ok((base, values))
}

#[async_trait]
impl RateSource for HttpSource {
    fn name(&self) -> &'static str {
        "http"
    }

    fn latest(&self) -> Option<Arc<RateTable>> {
        self.read().table.clone()
    }

    fn last_error(&self) -> Option<String> {
        self.read().last_error.clone()
    }

    fn max_age_ms(&self) -> Option<i64> {
        Some(self.max_age_ms)
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(self.interval)
    }

    async fn refresh(&self, now: i64) -> Result<(), RateError> {
        let parsed = match self.fetch().await {
            Ok(body) => parse_feed(&body),
            Err(e) => Err(e),
        };
        let mut inner = self.write();
        match parsed {
            Ok((reference, values)) => {
                inner.version += 1;
                inner.table = Some(Arc::new(RateTable {
                    reference,
                    values,
                    fetched_at: now,
                    version: inner.version,
                }));
                inner.last_error = None;
                Ok(())
            }
            Err(e) => {
                inner.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strings_and_number_literals_exactly() {
        let (base, v) = parse_feed(
            br#"{"id": 7, "base": "EUR", "rates": {"BTC": "60000.12", "ETH": 3000.123456789012345678,
                "TRX": 2e-1, "DOGE": 0.1}}"#,
        )
        .unwrap();
        assert_eq!(base, Currency::Eur);
        assert_eq!(v[&Currency::Btc].to_string(), "60000.12");
        // A float would have lost the last digits.
        assert_eq!(v[&Currency::Eth].to_string(), "3000.123456789012345678");
        assert_eq!(v[&Currency::Trx], Decimal::new(2, 1));
        assert_eq!(v[&Currency::Eur], Decimal::ONE);
        assert!(!v.keys().any(|c| c.code() == "DOGE"));
    }

    #[test]
    fn refuses_malformed_feeds() {
        for bad in [
            &br#"not json"#[..],
            br#"{"rates": {"BTC": "1"}}"#,
            br#"{"base": "XYZ", "rates": {"BTC": "1"}}"#,
            br#"{"base": "EUR", "rates": {"BTC": "-1"}}"#,
            br#"{"base": "EUR", "rates": {"BTC": 0}}"#,
            br#"{"base": "EUR", "rates": {"BTC": null}}"#,
            br#"{"base": "EUR", "rates": {"BTC": "1e5"}}"#,
            br#"{"base": "EUR", "rates": {"DOGE": "1"}}"#,
            br#"{"base": "EUR", "rates": []}"#,
        ] {
            assert!(
                matches!(parse_feed(bad), Err(RateError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
