//! The static rate table from configuration (`rates.table`): the default, used by the sandbox
//! and the tests. It never ages.

use super::{RateError, RateSource, RateTable};
use crate::config::RateSettings;
use crate::domain::money::{Currency, parse_decimal};
use async_trait::async_trait;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct StaticSource {
    table: Arc<RateTable>,
}

impl StaticSource {
    pub fn from_settings(s: &RateSettings, now: i64) -> Result<StaticSource, RateError> {
        let reference = Currency::parse(&s.reference).ok_or_else(|| {
            RateError::Config(format!("unknown reference currency {}", s.reference))
        })?;
        let mut values = BTreeMap::new();
        for (code, value) in &s.table {
            let c = Currency::parse(code).ok_or_else(|| {
                RateError::Config(format!("unknown currency {code} in rates.table"))
            })?;
            let v = parse_decimal(value)
                .ok()
                .filter(|v| *v > Decimal::ZERO)
                .ok_or_else(|| {
                    RateError::Config(format!(
                        "rates.table.{code} must be a positive decimal string"
                    ))
                })?;
            values.insert(c, v);
        }
        values.insert(reference, Decimal::ONE);
        Ok(StaticSource {
            table: Arc::new(RateTable {
                reference,
                values,
                fetched_at: now,
                version: 1,
            }),
        })
    }
}

#[async_trait]
impl RateSource for StaticSource {
    fn name(&self) -> &'static str {
        "static"
    }

    fn latest(&self) -> Option<Arc<RateTable>> {
        Some(self.table.clone())
    }

    fn last_error(&self) -> Option<String> {
        None
    }

    fn max_age_ms(&self) -> Option<i64> {
        None
    }

    fn poll_interval(&self) -> Option<Duration> {
        None
    }

    async fn refresh(&self, _now: i64) -> Result<(), RateError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_tables() {
        let mut s = RateSettings::default();
        s.table.insert("DOGE".into(), "1".into());
        assert!(StaticSource::from_settings(&s, 0).is_err());
        let mut s = RateSettings::default();
        s.table.insert("BTC".into(), "-1".into());
        assert!(StaticSource::from_settings(&s, 0).is_err());
        let mut s = RateSettings::default();
        s.table.insert("BTC".into(), "6e4".into());
        assert!(StaticSource::from_settings(&s, 0).is_err());
    }
}
