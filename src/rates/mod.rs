//! Exchange rates: where they come from ([`RateSource`]: the static table from configuration,
//! or a live JSON endpoint polled at an interval) and how old they may be before Countersign
//! stops converting with them. Every rate is a `Decimal`; nothing here is ever a float.

pub mod fixed;
pub mod http;

use crate::clock::SharedClock;
use crate::config::RateSettings;
use crate::domain::money::Currency;
use async_trait::async_trait;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Rates are rounded to this many significant digits: exact enough for any amount we
/// handle, short enough to print, and the printed rate is the one amounts are computed with.
pub const RATE_SIGNIFICANT_DIGITS: u32 = 12;

/// One set of rates, as fetched at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTable {
    /// The currency the values are expressed in.
    pub reference: Currency,
    /// Value of one unit of each priced currency, in `reference` units.
    pub values: BTreeMap<Currency, Decimal>,
    /// When the table was obtained (epoch ms, by the service's clock).
    pub fetched_at: i64,
    /// Increases by one with every new table from the source.
    pub version: u64,
}

impl RateTable {
    /// How many `to` one `from` is worth, rounded to [`RATE_SIGNIFICANT_DIGITS`].
    pub fn rate(&self, from: Currency, to: Currency) -> Option<Decimal> {
        if from == to {
            return Some(Decimal::ONE);
        }
        let f = self.values.get(&from)?;
        let t = self.values.get(&to)?;
        f.checked_div(*t)?
            .round_sf(RATE_SIGNIFICANT_DIGITS)
            .map(|d| d.normalize())
    }

    /// `amount` of `from` in `to`, rounded to 8 decimal places (valuations for limits and
    /// display; conversions that move money use `domain::exchange`).
    pub fn convert(&self, amount: Decimal, from: Currency, to: Currency) -> Option<Decimal> {
        amount
            .checked_mul(self.rate(from, to)?)
            .map(|v| v.round_dp(8))
    }

    pub fn is_priced(&self, c: Currency) -> bool {
        c == self.reference || self.values.contains_key(&c)
    }

    /// Priced currencies, in `Currency::ALL` order.
    pub fn currencies(&self) -> Vec<Currency> {
        Currency::ALL
            .into_iter()
            .filter(|c| self.is_priced(*c))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// Configuration that cannot work (start-up).
    #[error("rates: {0}")]
    Config(String),
    /// The source has never produced a usable table.
    #[error("exchange rates are not available yet ({0})")]
    Unavailable(String),
    /// The last good table is older than the allowed age.
    #[error(
        "exchange rates are stale: last updated {age_secs} s ago (at {at}), the maximum age is {max_age_secs} s"
    )]
    Stale {
        at: String,
        age_secs: i64,
        max_age_secs: i64,
    },
    /// One fetch failed (the previous table, if any, stays in use).
    #[error("fetching rates failed: {0}")]
    Fetch(String),
    /// The source answered, but not with a rate table.
    #[error("the rate source answered with malformed rates: {0}")]
    Malformed(String),
}

/// Where rates come from.
#[async_trait]
pub trait RateSource: Send + Sync + 'static {
    /// `static` or `http` (shown by `GET /rates`).
    fn name(&self) -> &'static str;
    /// The last good table, however old.
    fn latest(&self) -> Option<Arc<RateTable>>;
    /// Why the last fetch failed, if it did.
    fn last_error(&self) -> Option<String>;
    /// How long a table stays usable; `None` for a table that never ages.
    fn max_age_ms(&self) -> Option<i64>;
    /// How often to call [`RateSource::refresh`]; `None` if there is nothing to poll.
    fn poll_interval(&self) -> Option<Duration>;
    /// Fetches a new table. On failure the previous table stays.
    async fn refresh(&self, now: i64) -> Result<(), RateError>;
}

/// What the rest of the service asks for rates: the source plus the clock that decides
/// whether its table is still fresh.
pub struct Rates {
    source: Arc<dyn RateSource>,
    clock: SharedClock,
}

impl std::fmt::Debug for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rates")
            .field("source", &self.source.name())
            .finish()
    }
}

impl Rates {
    pub fn new(source: Arc<dyn RateSource>, clock: SharedClock) -> Rates {
        Rates { source, clock }
    }

    /// The source `settings` describe: the static table, or the HTTP source (not yet
    /// fetched: see [`Rates::refresh`] and [`Rates::poll`]).
    pub fn from_settings(s: &RateSettings, clock: SharedClock) -> Result<Rates, RateError> {
        let source: Arc<dyn RateSource> = match s.source.as_str() {
            "http" => Arc::new(http::HttpSource::from_settings(s)?),
            _ => Arc::new(fixed::StaticSource::from_settings(s, clock.now_ms())?),
        };
        Ok(Rates::new(source, clock))
    }

    pub fn source_name(&self) -> &'static str {
        self.source.name()
    }

    /// The table to convert with: fresh, or an error saying why there is none.
    pub fn current(&self) -> Result<Arc<RateTable>, RateError> {
        let table = self.source.latest().ok_or_else(|| {
            RateError::Unavailable(
                self.source
                    .last_error()
                    .unwrap_or_else(|| "no successful fetch yet".into()),
            )
        })?;
        if let Some(max) = self.source.max_age_ms() {
            let age = self.clock.now_ms() - table.fetched_at;
            if age > max {
                return Err(RateError::Stale {
                    at: crate::clock::rfc3339(table.fetched_at),
                    age_secs: age / 1000,
                    max_age_secs: max / 1000,
                });
            }
        }
        Ok(table)
    }

    /// The last good table however old, and whether it is too old to convert with (for
    /// display: the rates endpoints show stale rates, flagged, rather than nothing).
    pub fn latest(&self) -> Result<(Arc<RateTable>, bool), RateError> {
        match self.current() {
            Ok(t) => Ok((t, false)),
            Err(e @ RateError::Stale { .. }) => self.source.latest().map(|t| (t, true)).ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// How many `to` one `from` is worth now; `None` without a fresh rate.
    pub fn rate(&self, from: Currency, to: Currency) -> Option<Decimal> {
        self.current().ok()?.rate(from, to)
    }

    /// `amount` of `from` in `to` now; `None` without a fresh rate.
    pub fn convert(&self, amount: Decimal, from: Currency, to: Currency) -> Option<Decimal> {
        self.current().ok()?.convert(amount, from, to)
    }

    /// Fetches new rates now (a no-op for the static table).
    pub async fn refresh(&self) -> Result<(), RateError> {
        let r = self.source.refresh(self.clock.now_ms()).await;
        if let Err(e) = &r {
            tracing::warn!(source = self.source.name(), error = %e, "rate refresh failed; keeping the last good rates");
        }
        r
    }

    /// Polls the source at its interval until `shutdown` turns true (returns at once for a
    /// source with nothing to poll).
    pub async fn poll(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(every) = self.source.poll_interval() else {
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            let _ = self.refresh().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn rates() -> Rates {
        Rates::from_settings(&RateSettings::default(), Arc::new(ManualClock::default())).unwrap()
    }

    #[test]
    fn converts_through_the_reference() {
        let r = rates();
        assert_eq!(
            r.convert(Decimal::new(1, 2), Currency::Btc, Currency::Eur),
            Some(Decimal::new(600, 0))
        );
        assert_eq!(r.rate(Currency::Eur, Currency::Eur), Some(Decimal::ONE));
        // 1 EUR in USD = 1 / 0.92, to 12 significant digits
        assert_eq!(
            r.rate(Currency::Eur, Currency::Usd).unwrap().to_string(),
            "1.08695652174"
        );
        assert_eq!(
            r.rate(Currency::Eur, Currency::Btc).unwrap().to_string(),
            "0.0000166666666667"
        );
        assert_eq!(
            r.convert(Decimal::ONE, Currency::Eur, Currency::Usd)
                .unwrap(),
            Decimal::new(108695652, 8)
        );
    }

    #[test]
    fn the_static_table_never_goes_stale() {
        let clock = ManualClock::default();
        let r = Rates::from_settings(&RateSettings::default(), Arc::new(clock.clone())).unwrap();
        clock.advance_secs(10 * 365 * 86_400);
        assert!(r.current().is_ok());
    }
}
