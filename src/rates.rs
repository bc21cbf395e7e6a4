//! Exchange rates for limits (and, later, conversions): a static table from configuration.
//! Every rate is a `Decimal`; a currency missing from the table cannot be valued.

use crate::config::RateSettings;
use crate::domain::money::{Currency, parse_decimal};
use rust_decimal::Decimal;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Rates {
    /// Value of one unit of each currency, in the reference currency.
    values: HashMap<Currency, Decimal>,
}

#[derive(Debug, thiserror::Error)]
#[error("rates: {0}")]
pub struct RateError(pub String);

impl Rates {
    pub fn from_settings(s: &RateSettings) -> Result<Rates, RateError> {
        let reference = Currency::parse(&s.reference)
            .ok_or_else(|| RateError(format!("unknown reference currency {}", s.reference)))?;
        let mut values = HashMap::new();
        for (code, value) in &s.table {
            let c = Currency::parse(code)
                .ok_or_else(|| RateError(format!("unknown currency {code} in rates.table")))?;
            let v = parse_decimal(value)
                .ok()
                .filter(|v| *v > Decimal::ZERO)
                .ok_or_else(|| {
                    RateError(format!(
                        "rates.table.{code} must be a positive decimal string"
                    ))
                })?;
            values.insert(c, v);
        }
        values.insert(reference, Decimal::ONE);
        Ok(Rates { values })
    }

    /// How many `to` one `from` is worth.
    pub fn rate(&self, from: Currency, to: Currency) -> Option<Decimal> {
        let f = self.values.get(&from)?;
        let t = self.values.get(&to)?;
        f.checked_div(*t)
    }

    /// `amount` of `from` in `to`, rounded to 8 decimal places (enough for limit checks).
    pub fn convert(&self, amount: Decimal, from: Currency, to: Currency) -> Option<Decimal> {
        amount
            .checked_mul(self.rate(from, to)?)
            .map(|v| v.round_dp(8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_through_the_reference() {
        let r = Rates::from_settings(&RateSettings::default()).unwrap();
        assert_eq!(
            r.convert(Decimal::new(1, 2), Currency::Btc, Currency::Eur),
            Some(Decimal::new(600, 0))
        );
        assert_eq!(r.rate(Currency::Eur, Currency::Eur), Some(Decimal::ONE));
        // 1 EUR in USD = 1 / 0.92
        assert_eq!(
            r.convert(Decimal::ONE, Currency::Eur, Currency::Usd)
                .unwrap(),
            Decimal::new(108695652, 8)
        );
    }
}
