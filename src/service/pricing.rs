//! What a withdrawal is worth and costs: priced once when it is created (the rate is fixed
//! then) and valued again on demand ("value now" on the approval pages).

use crate::db::projects::Project;
use crate::db::withdrawals::Withdrawal;
use crate::domain::exchange::{ConversionError, WithdrawalPrice, price_plain, price_with_exchange};
use crate::domain::money::Currency;
use crate::domain::withdrawal::NewWithdrawal;
use crate::error::ApiError;
use crate::rates::RateError;
use crate::state::AppState;
use rust_decimal::Decimal;

/// No fresh rates: a 503 the merchant can retry, naming why.
pub fn rates_unavailable(e: RateError) -> ApiError {
    ApiError::Temporary {
        code: "rates_unavailable",
        message: format!("{e}; conversions are refused until fresh rates arrive, retry later"),
    }
}

pub fn no_rate(from: Currency, to: Currency) -> ApiError {
    ApiError::refused(
        "coin_not_supported",
        format!("No {from}/{to} rate is available"),
    )
}

pub fn conversion_refused(e: ConversionError) -> ApiError {
    match e {
        ConversionError::Overflow => ApiError::refused("invalid_amount", e.to_string()),
        ConversionError::NothingLeft { .. } => {
            ApiError::refused("amount_too_low", format!("{e} to send"))
        }
    }
}

/// A new withdrawal's price and value.
#[derive(Debug, Clone, Copy)]
pub struct Priced {
    pub price: WithdrawalPrice,
    pub base: Currency,
    /// Base-currency value of the amount in the request's `currency` (what limits count).
    pub base_value: Decimal,
    /// Base-currency value of one unit of the payout currency.
    pub payout_rate: Decimal,
    /// When the rates used were fetched.
    pub rates_at: i64,
}

pub fn price_withdrawal(
    state: &AppState,
    project: &Project,
    req: &NewWithdrawal,
) -> Result<Priced, ApiError> {
    let base = Currency::parse(&project.base_currency)
        .ok_or_else(|| ApiError::internal("project base currency unknown"))?;
    let (source, payout) = (req.currency(), req.payout);
    if req.is_exchange() && !state.pricing.allows(source, payout) {
        return Err(ApiError::refused(
            "coin_not_supported",
            format!(
                "{source} cannot be exchanged into {payout} on this installation (see POST /currencies/pairs)"
            ),
        ));
    }
    let table = state.rates.current().map_err(rates_unavailable)?;
    let payout_rate = table
        .rate(payout, base)
        .ok_or_else(|| no_rate(payout, base))?;
    let source_rate = table
        .rate(source, base)
        .ok_or_else(|| no_rate(source, base))?;
    let amount = req.amount.value();
    let fees = &state.pricing.fees;
    let price = if req.is_exchange() {
        let rate = table
            .rate(source, payout)
            .ok_or_else(|| no_rate(source, payout))?;
        let p = price_with_exchange(
            source,
            amount,
            payout,
            rate,
            fees.exchange(source, payout),
            fees.withdrawal(payout),
        )
        .map_err(conversion_refused)?;
        let min = payout.min_withdrawal();
        if p.received < min {
            return Err(ApiError::refused(
                "amount_too_low",
                format!(
                    "{} {source} converts to {} {payout} after fees of {} {payout} (rate {rate} {payout} per {source}); the minimum {payout} withdrawal is {}",
                    amount.normalize(),
                    p.received.normalize(),
                    p.total_fee().normalize(),
                    min.normalize()
                ),
            ));
        }
        p
    } else {
        price_plain(payout, amount, fees.withdrawal(payout)).map_err(conversion_refused)?
    };
    let base_value = amount
        .checked_mul(source_rate)
        .map(|v| v.round_dp(8))
        .ok_or_else(|| conversion_refused(ConversionError::Overflow))?;
    Ok(Priced {
        price,
        base,
        base_value,
        payout_rate,
        rates_at: table.fetched_at,
    })
}

/// The payout valued at one rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueAt {
    /// Base-currency value of one unit of the payout currency.
    pub rate: Decimal,
    /// Base-currency value of the amount sent.
    pub value: Decimal,
    /// When those rates were fetched.
    pub rates_at: Option<i64>,
    /// For a withdrawal with exchange: payout currency per unit of the debited one.
    pub exchange_rate: Option<Decimal>,
}

/// "Value at creation" and "value now", for the people approving a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valuation {
    pub base_currency: String,
    pub at_creation: ValueAt,
    /// `Err` while there are no fresh rates (the reason is shown instead).
    pub now: Result<ValueAt, RateError>,
}

pub fn valuation(state: &AppState, w: &Withdrawal) -> Valuation {
    let at_creation = ValueAt {
        rate: w.rate,
        value: (w.amount * w.rate).round_dp(8),
        rates_at: w.rates_at,
        exchange_rate: w.exchange.as_ref().map(|x| x.rate),
    };
    let now = state.rates.current().and_then(|table| {
        let missing = || RateError::Unavailable(format!("no {} rate", w.currency));
        let payout = Currency::parse(&w.currency).ok_or_else(missing)?;
        let base = Currency::parse(&w.base_currency).ok_or_else(missing)?;
        let rate = table.rate(payout, base).ok_or_else(missing)?;
        let exchange_rate = match &w.exchange {
            Some(x) => Some(
                Currency::parse(&x.from_currency)
                    .and_then(|from| table.rate(from, payout))
                    .ok_or_else(missing)?,
            ),
            None => None,
        };
        Ok(ValueAt {
            rate,
            value: (w.amount * rate).round_dp(8),
            rates_at: Some(table.fetched_at),
            exchange_rate,
        })
    });
    Valuation {
        base_currency: w.base_currency.clone(),
        at_creation,
        now,
    }
}
