//! Fees and conversions: pure decimal arithmetic, checked, rounded per currency.
//!
//! Rounding never favours the merchant beyond the configured price: converted amounts are
//! rounded down to the receiving currency's scale, fees and amounts to pay are rounded up.
//! Fees are charged in the currency received:
//! - an **exchange fee** per pair `FROM/TO` on every conversion (quotes, withdrawals with
//!   exchange), its fixed part in TO units;
//! - a **withdrawal fee** per payout currency on every payout, its fixed part in that
//!   currency. On a plain withdrawal it is held on top of the amount; on a withdrawal with
//!   exchange it comes out of the converted amount.

use crate::config::{ExchangeSettings, FeeSetting, FeeSettings};
use crate::domain::money::{Currency, parse_decimal};
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, BTreeSet};

const HUNDRED: Decimal = Decimal::ONE_HUNDRED;

fn down(d: Decimal, c: Currency) -> Decimal {
    d.round_dp_with_strategy(c.scale(), RoundingStrategy::ToZero)
}

fn up(d: Decimal, c: Currency) -> Decimal {
    d.round_dp_with_strategy(c.scale(), RoundingStrategy::AwayFromZero)
}

/// A percentage of the amount plus a fixed part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeeRule {
    /// `1.5` means 1.5 %.
    pub percent: Decimal,
    /// In the currency the fee is charged in.
    pub fixed: Decimal,
}

impl FeeRule {
    /// The fee on `amount` of `currency`: the percentage rounded up to the currency's scale,
    /// plus the fixed part.
    pub fn on(&self, amount: Decimal, currency: Currency) -> Option<Decimal> {
        let pct = amount.checked_mul(self.percent)?.checked_div(HUNDRED)?;
        up(pct, currency).checked_add(self.fixed)
    }

    pub fn is_zero(&self) -> bool {
        self.percent.is_zero() && self.fixed.is_zero()
    }
}

/// The configured fees, checked at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeeSchedule {
    exchange: BTreeMap<(Currency, Currency), FeeRule>,
    exchange_default: FeeRule,
    withdrawal: BTreeMap<Currency, FeeRule>,
    withdrawal_default: FeeRule,
}

impl FeeSchedule {
    pub fn exchange(&self, from: Currency, to: Currency) -> FeeRule {
        self.exchange
            .get(&(from, to))
            .copied()
            .unwrap_or(self.exchange_default)
    }

    pub fn withdrawal(&self, currency: Currency) -> FeeRule {
        self.withdrawal
            .get(&currency)
            .copied()
            .unwrap_or(self.withdrawal_default)
    }

    pub fn from_settings(s: &FeeSettings) -> Result<FeeSchedule, String> {
        let mut out = FeeSchedule::default();
        for (key, setting) in &s.exchange {
            let at = format!("fees.exchange.\"{key}\"");
            if key.trim() == "*" {
                out.exchange_default = rule(setting, None, &at)?;
                continue;
            }
            let (from, to) = parse_pair(key).map_err(|e| format!("{at}: {e}"))?;
            out.exchange
                .insert((from, to), rule(setting, Some(to), &at)?);
        }
        for (key, setting) in &s.withdrawal {
            let at = format!("fees.withdrawal.{key}");
            if key.trim() == "*" {
                out.withdrawal_default = rule(setting, None, &at)?;
                continue;
            }
            let c = Currency::parse(key)
                .filter(|c| c.network().is_some())
                .ok_or_else(|| format!("{at}: {key} is not a payout currency"))?;
            out.withdrawal.insert(c, rule(setting, Some(c), &at)?);
        }
        Ok(out)
    }
}

fn rule(s: &FeeSetting, fixed_in: Option<Currency>, at: &str) -> Result<FeeRule, String> {
    let number = |v: &str, what: &str| -> Result<Decimal, String> {
        if v.trim().is_empty() {
            return Ok(Decimal::ZERO);
        }
        parse_decimal(v.trim())
            .map_err(|e| format!("{at}.{what} {e}"))
            .map(|d| d.normalize())
    };
    let percent = number(&s.percent, "percent")?;
    let fixed = number(&s.fixed, "fixed")?;
    if percent >= HUNDRED {
        return Err(format!("{at}.percent must be below 100"));
    }
    match fixed_in {
        None if !fixed.is_zero() => Err(format!(
            "{at}: a \"*\" entry applies to several currencies, so it can only have a percent"
        )),
        Some(c) if fixed.scale() > c.scale() => Err(format!(
            "{at}.fixed is in {c}, which has {} decimal places",
            c.scale()
        )),
        _ => Ok(FeeRule { percent, fixed }),
    }
}

/// `"EUR/BTC"` → (EUR, BTC).
pub fn parse_pair(key: &str) -> Result<(Currency, Currency), String> {
    let (f, t) = key
        .split_once('/')
        .ok_or_else(|| format!("{key:?} is not a pair like \"EUR/BTC\""))?;
    let from = Currency::parse(f).ok_or_else(|| format!("unknown currency {f:?}"))?;
    let to = Currency::parse(t).ok_or_else(|| format!("unknown currency {t:?}"))?;
    if from == to {
        return Err(format!("{key:?} converts a currency to itself"));
    }
    Ok((from, to))
}

/// Which pairs can be exchanged, fees, and how long a quote lasts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pricing {
    pub fees: FeeSchedule,
    /// `None`: every pair of priced currencies.
    pairs: Option<BTreeSet<(Currency, Currency)>>,
    pub quote_ttl_ms: i64,
}

impl Pricing {
    pub fn from_settings(fees: &FeeSettings, ex: &ExchangeSettings) -> Result<Pricing, String> {
        let pairs = if ex.pairs.is_empty() {
            None
        } else {
            let mut set = BTreeSet::new();
            for p in &ex.pairs {
                set.insert(parse_pair(p).map_err(|e| format!("exchange.pairs: {e}"))?);
            }
            Some(set)
        };
        Ok(Pricing {
            fees: FeeSchedule::from_settings(fees)?,
            pairs,
            quote_ttl_ms: i64::try_from(ex.quote_ttl_secs)
                .unwrap_or(60)
                .saturating_mul(1000),
        })
    }

    /// Whether `from` may be exchanged into `to` (both must also have rates).
    pub fn allows(&self, from: Currency, to: Currency) -> bool {
        from != to && self.pairs.as_ref().is_none_or(|p| p.contains(&(from, to)))
    }
}

/// One conversion at a fixed rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversion {
    pub from: Currency,
    pub to: Currency,
    /// How many `to` one `from` buys.
    pub rate: Decimal,
    /// Taken from the `from` balance.
    pub from_amount: Decimal,
    /// `from_amount` at the rate, before the fee.
    pub gross: Decimal,
    /// The exchange fee, in `to`.
    pub fee: Decimal,
    /// What the conversion yields: `gross - fee`.
    pub to_amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    #[error("the amount is too large to convert")]
    Overflow,
    #[error("after fees of {fee} {currency} nothing would be left")]
    NothingLeft { fee: String, currency: Currency },
}

/// Converts exactly `from_amount` of `from` (the seeds' `request_coin == from_coin`).
pub fn sell(
    from: Currency,
    to: Currency,
    rate: Decimal,
    fee: FeeRule,
    from_amount: Decimal,
) -> Result<Conversion, ConversionError> {
    let gross = down(
        from_amount
            .checked_mul(rate)
            .ok_or(ConversionError::Overflow)?,
        to,
    );
    let fee_amount = fee.on(gross, to).ok_or(ConversionError::Overflow)?;
    let to_amount = gross - fee_amount;
    if to_amount <= Decimal::ZERO {
        return Err(ConversionError::NothingLeft {
            fee: to.format(fee_amount),
            currency: to,
        });
    }
    Ok(Conversion {
        from,
        to,
        rate,
        from_amount,
        gross,
        fee: fee_amount,
        to_amount,
    })
}

/// Converts into exactly `to_amount` of `to` (the seeds' `request_coin == to_coin`): the
/// amount to take from `from` is what yields at least `to_amount` after the fee, rounded up.
pub fn buy(
    from: Currency,
    to: Currency,
    rate: Decimal,
    fee: FeeRule,
    to_amount: Decimal,
) -> Result<Conversion, ConversionError> {
    let o = ConversionError::Overflow;
    // gross - (gross * p / 100 + fixed) = to_amount  =>  gross = (to_amount + fixed) / (1 - p/100)
    let keep = Decimal::ONE - fee.percent.checked_div(HUNDRED).ok_or(o.clone())?;
    let gross = up(
        to_amount
            .checked_add(fee.fixed)
            .ok_or(o.clone())?
            .checked_div(keep)
            .ok_or(o.clone())?,
        to,
    );
    let from_amount = up(gross.checked_div(rate).ok_or(o.clone())?, from);
    if from_amount <= Decimal::ZERO {
        return Err(ConversionError::NothingLeft {
            fee: to.format(Decimal::ZERO),
            currency: to,
        });
    }
    Ok(Conversion {
        from,
        to,
        rate,
        from_amount,
        gross,
        fee: gross - to_amount,
        to_amount,
    })
}

/// What a withdrawal costs and pays, fixed when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithdrawalPrice {
    pub payout: Currency,
    /// Sent to the address, in `payout`.
    pub received: Decimal,
    /// The payout's withdrawal fee, in `payout`.
    pub network_fee: Decimal,
    /// For a withdrawal with exchange: the conversion from the debited balance.
    pub exchange: Option<Conversion>,
    /// The balance held now and debited when the payout confirms.
    pub held_currency: Currency,
    pub held: Decimal,
}

impl WithdrawalPrice {
    /// Every fee, in the payout currency.
    pub fn total_fee(&self) -> Decimal {
        self.network_fee + self.exchange.map_or(Decimal::ZERO, |c| c.fee)
    }
}

/// A plain withdrawal: `amount` is sent; the fee is held on top of it.
pub fn price_plain(
    payout: Currency,
    amount: Decimal,
    fee: FeeRule,
) -> Result<WithdrawalPrice, ConversionError> {
    let network_fee = fee.on(amount, payout).ok_or(ConversionError::Overflow)?;
    Ok(WithdrawalPrice {
        payout,
        received: amount,
        network_fee,
        exchange: None,
        held_currency: payout,
        held: amount
            .checked_add(network_fee)
            .ok_or(ConversionError::Overflow)?,
    })
}

/// A withdrawal with exchange: exactly `amount` of `from` is held; it is converted at `rate`
/// and both fees come out of the converted amount.
pub fn price_with_exchange(
    from: Currency,
    amount: Decimal,
    payout: Currency,
    rate: Decimal,
    exchange_fee: FeeRule,
    network_fee: FeeRule,
) -> Result<WithdrawalPrice, ConversionError> {
    let conversion = sell(from, payout, rate, exchange_fee, amount)?;
    let nf = network_fee
        .on(conversion.gross, payout)
        .ok_or(ConversionError::Overflow)?;
    let received = conversion.to_amount - nf;
    if received <= Decimal::ZERO {
        return Err(ConversionError::NothingLeft {
            fee: payout.format(conversion.fee + nf),
            currency: payout,
        });
    }
    Ok(WithdrawalPrice {
        payout,
        received,
        network_fee: nf,
        exchange: Some(conversion),
        held_currency: from,
        held: amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn fee(p: &str, f: &str) -> FeeRule {
        FeeRule {
            percent: d(p),
            fixed: d(f),
        }
    }

    #[test]
    fn selling_rounds_the_proceeds_down_and_the_fee_up() {
        // 100 EUR at 1/60000 BTC per EUR = 0.001666666 → 0.00166666 BTC
        let c = sell(
            Currency::Eur,
            Currency::Btc,
            d("0.0000166666666667"),
            fee("1.5", "0.00001"),
            d("100"),
        )
        .unwrap();
        assert_eq!(c.gross, d("0.00166666"));
        // 1.5 % of 0.00166666 = 0.000024999.9 → 0.00002500, + 0.00001
        assert_eq!(c.fee, d("0.00003500"));
        assert_eq!(c.to_amount, d("0.00163166"));
    }

    #[test]
    fn buying_charges_enough_to_cover_the_amount_and_the_fee() {
        let rate = d("0.0000166666666667");
        let c = buy(
            Currency::Eur,
            Currency::Btc,
            rate,
            fee("1.5", "0.00001"),
            d("0.001"),
        )
        .unwrap();
        assert_eq!(c.to_amount, d("0.001"));
        // (0.001 + 0.00001) / 0.985 = 0.00102538071 → 0.00102539 BTC gross
        assert_eq!(c.gross, d("0.00102539"));
        assert_eq!(c.fee, d("0.00002539"));
        // 0.00102539 / rate = 61.5233999... → 61.53 EUR
        assert_eq!(c.from_amount, d("61.53"));
        // Selling what buying asks for yields at least the amount bought.
        let back = sell(
            Currency::Eur,
            Currency::Btc,
            rate,
            fee("1.5", "0.00001"),
            c.from_amount,
        )
        .unwrap();
        assert!(back.to_amount >= c.to_amount, "{back:?}");
    }

    #[test]
    fn fees_that_eat_everything_are_refused() {
        let e = sell(
            Currency::Eur,
            Currency::Btc,
            d("0.0000166666666667"),
            fee("0", "0.001"),
            d("10"),
        )
        .unwrap_err();
        assert!(matches!(e, ConversionError::NothingLeft { .. }));
    }

    #[test]
    fn plain_withdrawals_hold_the_fee_on_top() {
        let p = price_plain(Currency::Btc, d("0.01"), fee("0.1", "0.0001")).unwrap();
        assert_eq!(p.network_fee, d("0.00011"));
        assert_eq!(p.held, d("0.01011"));
        assert_eq!(p.received, d("0.01"));
        assert_eq!(p.held_currency, Currency::Btc);
    }

    #[test]
    fn withdrawals_with_exchange_hold_the_amount_and_deduct_both_fees() {
        let p = price_with_exchange(
            Currency::Eur,
            d("600"),
            Currency::Btc,
            d("0.0000166666666667"),
            fee("1", "0"),
            fee("0", "0.0001"),
        )
        .unwrap();
        let c = p.exchange.unwrap();
        assert_eq!(c.gross, d("0.01"));
        assert_eq!(c.fee, d("0.0001"));
        assert_eq!(p.network_fee, d("0.0001"));
        assert_eq!(p.received, d("0.0098"));
        assert_eq!(p.total_fee(), d("0.0002"));
        assert_eq!((p.held_currency, p.held), (Currency::Eur, d("600")));
    }

    #[test]
    fn configuration_is_checked() {
        let mut s = FeeSettings::default();
        s.exchange.insert(
            "EUR/BTC".into(),
            FeeSetting {
                percent: "1.5".into(),
                fixed: "0.00001".into(),
            },
        );
        s.exchange.insert(
            "*".into(),
            FeeSetting {
                percent: "2".into(),
                fixed: String::new(),
            },
        );
        let f = FeeSchedule::from_settings(&s).unwrap();
        assert_eq!(
            f.exchange(Currency::Eur, Currency::Btc),
            fee("1.5", "0.00001")
        );
        assert_eq!(f.exchange(Currency::Eur, Currency::Eth), fee("2", "0"));
        assert_eq!(f.withdrawal(Currency::Btc), FeeRule::default());
        for (key, p, fx) in [
            ("*", "1", "1"),
            ("EUR/EUR", "1", ""),
            ("EUR-BTC", "1", ""),
            ("EUR/BTC", "100", ""),
            ("EUR/BTC", "-1", ""),
            ("EUR/BTC", "", "0.000000001"),
        ] {
            let mut s = FeeSettings::default();
            s.exchange.insert(
                key.into(),
                FeeSetting {
                    percent: p.into(),
                    fixed: fx.into(),
                },
            );
            assert!(FeeSchedule::from_settings(&s).is_err(), "{key} {p} {fx}");
        }
        let mut s = FeeSettings::default();
        s.withdrawal.insert("EUR".into(), FeeSetting::default());
        assert!(FeeSchedule::from_settings(&s).is_err());
    }
}
