//! Currencies, networks and amounts. Money is `rust_decimal::Decimal`, never a float; it is
//! stored as a canonical decimal string and travels as a JSON string.

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// A payout network: decides how an address is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    Bitcoin,
    Litecoin,
    Ethereum,
    Tron,
    Ton,
    Sandbox,
}

impl Network {
    pub fn name(self) -> &'static str {
        match self {
            Network::Bitcoin => "bitcoin",
            Network::Litecoin => "litecoin",
            Network::Ethereum => "ethereum",
            Network::Tron => "tron",
            Network::Ton => "ton",
            Network::Sandbox => "sandbox",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrencyKind {
    Crypto,
    Fiat,
}

impl CurrencyKind {
    pub fn name(self) -> &'static str {
        match self {
            CurrencyKind::Crypto => "crypto",
            CurrencyKind::Fiat => "fiat",
        }
    }
}

/// Every currency Countersign knows. Crypto currencies can be paid out; fiat ones are balance
/// and base currencies only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Currency {
    Btc,
    Ltc,
    Eth,
    Usdte,
    Usdtt,
    Trx,
    Ton,
    Sbx,
    Eur,
    Usd,
}

impl Currency {
    pub const ALL: [Currency; 10] = [
        Currency::Btc,
        Currency::Ltc,
        Currency::Eth,
        Currency::Usdte,
        Currency::Usdtt,
        Currency::Trx,
        Currency::Ton,
        Currency::Sbx,
        Currency::Eur,
        Currency::Usd,
    ];

    /// Case-insensitive lookup by code (`btc`, `USDTT`).
    pub fn parse(code: &str) -> Option<Currency> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(code.trim()))
    }

    pub fn code(self) -> &'static str {
        match self {
            Currency::Btc => "BTC",
            Currency::Ltc => "LTC",
            Currency::Eth => "ETH",
            Currency::Usdte => "USDTE",
            Currency::Usdtt => "USDTT",
            Currency::Trx => "TRX",
            Currency::Ton => "TON",
            Currency::Sbx => "SBX",
            Currency::Eur => "EUR",
            Currency::Usd => "USD",
        }
    }

    /// The asset ticker as the seeds' `currencies/list` shows it (`USDTT` is `USDT` on tron).
    pub fn ticker(self) -> &'static str {
        match self {
            Currency::Usdte | Currency::Usdtt => "USDT",
            other => other.code(),
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Currency::Btc => "Bitcoin",
            Currency::Ltc => "Litecoin",
            Currency::Eth => "Ethereum",
            Currency::Usdte => "Tether USD (ERC-20)",
            Currency::Usdtt => "Tether USD (TRC-20)",
            Currency::Trx => "Tron",
            Currency::Ton => "Toncoin",
            Currency::Sbx => "Sandbox coin",
            Currency::Eur => "Euro",
            Currency::Usd => "US dollar",
        }
    }

    pub fn kind(self) -> CurrencyKind {
        match self {
            Currency::Eur | Currency::Usd => CurrencyKind::Fiat,
            _ => CurrencyKind::Crypto,
        }
    }

    /// The network a payout in this currency goes over; `None` for fiat.
    pub fn network(self) -> Option<Network> {
        match self {
            Currency::Btc => Some(Network::Bitcoin),
            Currency::Ltc => Some(Network::Litecoin),
            Currency::Eth | Currency::Usdte => Some(Network::Ethereum),
            Currency::Usdtt | Currency::Trx => Some(Network::Tron),
            Currency::Ton => Some(Network::Ton),
            Currency::Sbx => Some(Network::Sandbox),
            Currency::Eur | Currency::Usd => None,
        }
    }

    /// Decimal places an amount may carry.
    pub fn scale(self) -> u32 {
        match self {
            Currency::Btc | Currency::Ltc | Currency::Usdte | Currency::Usdtt | Currency::Sbx => 8,
            Currency::Eth => 18,
            Currency::Trx => 6,
            Currency::Ton => 9,
            Currency::Eur | Currency::Usd => 2,
        }
    }

    /// Smallest payout accepted (below it: `amount_too_low`).
    pub fn min_withdrawal(self) -> Decimal {
        // Decimal::new(mantissa, scale)
        match self {
            Currency::Btc => Decimal::new(1, 4),    // 0.0001
            Currency::Ltc => Decimal::new(1, 3),    // 0.001
            Currency::Eth => Decimal::new(1, 3),    // 0.001
            Currency::Usdte => Decimal::new(10, 0), // gas makes small ERC-20 payouts pointless
            Currency::Usdtt => Decimal::new(1, 0),
            Currency::Trx => Decimal::new(1, 0),
            Currency::Ton => Decimal::new(1, 1), // 0.1
            Currency::Sbx => Decimal::new(1, 8),
            Currency::Eur | Currency::Usd => Decimal::new(1, 2),
        }
    }

    /// Whether the network carries a destination tag / memo (TON comments).
    pub fn takes_tag(self) -> bool {
        matches!(self, Currency::Ton)
    }

    /// Formats an amount with exactly this currency's scale, as the seeds' payloads show
    /// (`"0.01000000"` for BTC).
    pub fn format(self, amount: Decimal) -> String {
        let mut a = amount;
        a.rescale(self.scale());
        a.to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("must be a decimal number written as a string, e.g. \"0.015\"")]
    Malformed,
    #[error("is too large")]
    TooLarge,
}

/// Parses a plain decimal string: digits, optionally one `.` and more digits. No sign, no
/// exponent, no spaces, no thousands separators: what a merchant sends is what is paid.
pub fn parse_decimal(s: &str) -> Result<Decimal, DecimalError> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(DecimalError::Malformed);
    }
    let significant = int.trim_start_matches('0').len() + frac.map_or(0, str::len);
    if int.trim_start_matches('0').len() > 20 || significant > 28 {
        return Err(DecimalError::TooLarge);
    }
    Decimal::from_str_exact(s).map_err(|_| DecimalError::TooLarge)
}

/// Parses a signed decimal (used for configuration and CLI values that may be negative, e.g.
/// balance adjustments). Same strictness as [`parse_decimal`] apart from a leading `-`.
pub fn parse_signed_decimal(s: &str) -> Result<Decimal, DecimalError> {
    match s.strip_prefix('-') {
        Some(rest) => parse_decimal(rest).map(|d| -d),
        None => parse_decimal(s),
    }
}

/// Reads a canonical decimal back from the database. A malformed value there is a bug or
/// corruption, reported as such.
pub fn db_decimal(s: &str) -> Result<Decimal, rust_decimal::Error> {
    Decimal::from_str(s)
}

/// Significant digits a `Decimal` always holds.
const MAX_DIGITS: u32 = 28;

/// A positive amount of one currency with no more decimals than the currency allows, small
/// enough to be written with all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    currency: Currency,
    value: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount {0}")]
    Decimal(#[from] DecimalError),
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("{currency} amounts have at most {scale} decimal places")]
    TooPrecise { currency: Currency, scale: u32 },
    #[error("the minimum {currency} withdrawal is {min}")]
    TooLow { currency: Currency, min: String },
}

impl Amount {
    pub fn parse(currency: Currency, s: &str) -> Result<Amount, AmountError> {
        let value = parse_decimal(s)?;
        Amount::new(currency, value)
    }

    pub fn new(currency: Currency, value: Decimal) -> Result<Amount, AmountError> {
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        if value.normalize().scale() > currency.scale() {
            return Err(AmountError::TooPrecise {
                currency,
                scale: currency.scale(),
            });
        }
        // Stored and shown with the currency's full scale, within a Decimal's 28 digits: an
        // ETH amount (18 decimals) has at most 10 integer digits.
        let limit = Decimal::from_i128_with_scale(10i128.pow(MAX_DIGITS - currency.scale()), 0);
        if value >= limit {
            return Err(AmountError::Decimal(DecimalError::TooLarge));
        }
        Ok(Amount { currency, value })
    }

    /// Checks the per-currency payout minimum.
    pub fn check_min_withdrawal(&self) -> Result<(), AmountError> {
        let min = self.currency.min_withdrawal();
        if self.value < min {
            return Err(AmountError::TooLow {
                currency: self.currency,
                min: min.normalize().to_string(),
            });
        }
        Ok(())
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn value(&self) -> Decimal {
        self.value
    }

    /// Canonical text for storage and JSON: the currency's full scale.
    pub fn to_canonical(&self) -> String {
        self.currency.format(self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_decimals_only() {
        assert_eq!(parse_decimal("0.01").unwrap(), Decimal::new(1, 2));
        assert_eq!(parse_decimal("10").unwrap(), Decimal::new(10, 0));
        for bad in [
            "", ".", "1.", ".5", "-1", "+1", "1e5", " 1", "1,5", "0x10", "1.2.3", "NaN",
        ] {
            assert_eq!(parse_decimal(bad), Err(DecimalError::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse_decimal("123456789012345678901234567890"),
            Err(DecimalError::TooLarge)
        );
    }

    #[test]
    fn amount_scale_and_sign_are_checked_per_currency() {
        assert!(Amount::parse(Currency::Btc, "0.00000001").is_ok());
        assert!(matches!(
            Amount::parse(Currency::Btc, "0.000000001"),
            Err(AmountError::TooPrecise { scale: 8, .. })
        ));
        // Trailing zeros beyond the scale carry no value and are accepted.
        assert!(Amount::parse(Currency::Trx, "1.0000000000").is_ok());
        assert!(Amount::parse(Currency::Eth, "0.000000000000000001").is_ok());
        assert_eq!(
            Amount::parse(Currency::Btc, "0"),
            Err(AmountError::NotPositive)
        );
        assert_eq!(
            Amount::parse(Currency::Btc, "0.01").unwrap().to_canonical(),
            "0.01000000"
        );
    }

    #[test]
    fn amounts_too_large_for_the_full_scale_are_refused() {
        // Found by the property tests: 80000000000 ETH was accepted and printed with 17
        // decimals, since 11 + 18 digits do not fit a Decimal.
        let too_large = Err(AmountError::Decimal(DecimalError::TooLarge));
        assert_eq!(Amount::parse(Currency::Eth, "80000000000"), too_large);
        assert_eq!(Amount::parse(Currency::Eth, "10000000000"), too_large);
        let max = Amount::parse(Currency::Eth, "9999999999.999999999999999999").unwrap();
        assert_eq!(max.to_canonical(), "9999999999.999999999999999999");
        assert_eq!(
            Amount::parse(Currency::Ton, "10000000000000000000"),
            too_large
        );
        let btc = Amount::parse(Currency::Btc, "99999999999999999999").unwrap();
        assert_eq!(btc.to_canonical(), "99999999999999999999.00000000");
    }

    #[test]
    fn minimums() {
        let a = Amount::parse(Currency::Btc, "0.00001").unwrap();
        assert!(matches!(
            a.check_min_withdrawal(),
            Err(AmountError::TooLow { .. })
        ));
        assert!(
            Amount::parse(Currency::Btc, "0.0001")
                .unwrap()
                .check_min_withdrawal()
                .is_ok()
        );
    }

    #[test]
    fn currency_lookup() {
        assert_eq!(Currency::parse("usdtt"), Some(Currency::Usdtt));
        assert_eq!(Currency::parse("DOGE"), None);
        assert_eq!(Currency::Usdtt.network(), Some(Network::Tron));
        assert_eq!(Currency::Eur.network(), None);
    }
}

#[cfg(test)]
mod props;
