//! Exchange quotes (`/exchange/create-quota`) and their execution between the project's
//! balances (`/exchange/make-exchange`). A quote fixes a price for `exchange.quote_ttl_secs`;
//! it is executed at most once, and never after it expired.

use crate::clock::rfc3339;
use crate::db::audit::{self, Actor, Origin};
use crate::db::balances::{self, BalanceError, LedgerKind};
use crate::db::exchanges::{self, NewExchange, Quote};
use crate::db::projects::Project;
use crate::db::{DbError, Tx};
use crate::domain::exchange::{Conversion, buy, sell};
use crate::domain::money::{Amount, Currency};
use crate::error::ApiError;
use crate::service::pricing::{conversion_refused, no_rate, rates_unavailable};
use crate::state::AppState;
use serde_json::json;

/// A parsed quote request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteRequest {
    pub from: Currency,
    pub to: Currency,
    /// In `from` (sell exactly this) or in `to` (receive exactly this).
    pub amount: Amount,
}

pub async fn create_quote(
    state: &AppState,
    project: &Project,
    req: QuoteRequest,
) -> Result<Quote, ApiError> {
    let (from, to) = (req.from, req.to);
    if !state.pricing.allows(from, to) {
        return Err(ApiError::refused(
            "coin_not_supported",
            format!("{from} cannot be exchanged into {to} (see POST /currencies/pairs)"),
        ));
    }
    let table = state.rates.current().map_err(rates_unavailable)?;
    let rate = table.rate(from, to).ok_or_else(|| no_rate(from, to))?;
    let reverse = table.rate(to, from).ok_or_else(|| no_rate(to, from))?;
    let fee = state.pricing.fees.exchange(from, to);
    let value = req.amount.value();
    let c: Conversion = if req.amount.currency() == from {
        sell(from, to, rate, fee, value)
    } else {
        buy(from, to, rate, fee, value)
    }
    .map_err(conversion_refused)?;
    let now = state.now();
    let quote = Quote {
        id: crate::crypto::random_token::<16>().map_err(ApiError::internal)?,
        project_id: project.id.clone(),
        from_currency: from.code().into(),
        to_currency: to.code().into(),
        request_currency: req.amount.currency().code().into(),
        request_amount: value,
        from_amount: c.from_amount,
        to_amount: c.to_amount,
        rate,
        reverse_rate: reverse,
        fee: c.fee,
        expires_at: now + state.pricing.quote_ttl_ms,
        used_at: None,
        exchange_id: None,
        created_at: now,
    };
    exchanges::insert_quote(&state.db, &quote).await?;
    Ok(quote)
}

/// An executed quote.
#[derive(Debug, Clone)]
pub struct Executed {
    pub exchange_id: i64,
    pub quote: Quote,
    pub at: i64,
}

fn already_used(q: &Quote) -> ApiError {
    ApiError::refused(
        "duplication_request",
        format!(
            "Quote {} was already executed{}; create a new quote",
            q.id,
            q.used_at
                .map(|t| format!(" at {}", rfc3339(t)))
                .unwrap_or_default()
        ),
    )
}

fn expired(q: &Quote) -> ApiError {
    ApiError::refused(
        "process_exchange_quota_error",
        format!(
            "Quote {} expired at {}; create a new quote",
            q.id,
            rfc3339(q.expires_at)
        ),
    )
}

fn currency(code: &str) -> Result<Currency, ApiError> {
    Currency::parse(code).ok_or_else(|| ApiError::internal(format!("unknown currency {code}")))
}

fn balance_error(e: BalanceError) -> ApiError {
    match e {
        BalanceError::Insufficient => {
            ApiError::refused("balance_not_enough", "Not enough money on balance")
        }
        BalanceError::Db(d) => d.into(),
    }
}

/// Executes a quote: takes `from_amount` from one balance and adds `to_amount` to the other,
/// in one transaction with both ledger entries and the audit record.
pub async fn make_exchange(
    state: &AppState,
    project: &Project,
    actor: &Actor,
    quote_id: &str,
    origin: &Origin,
) -> Result<Executed, ApiError> {
    let q = exchanges::quote(&state.db, &project.id, quote_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Quote {quote_id:?}")))?;
    let now = state.now();
    if q.used_at.is_some() {
        return Err(already_used(&q));
    }
    if now >= q.expires_at {
        return Err(expired(&q));
    }
    let (from, to) = (currency(&q.from_currency)?, currency(&q.to_currency)?);
    let mut tx = state.db.begin().await?;
    balances::ensure(&mut tx, &project.id, to.code(), now).await?;
    // Two balances: always locked in the same order, so two exchanges cannot deadlock.
    let (first, second) = if from.code() < to.code() {
        (from, to)
    } else {
        (to, from)
    };
    let b1 = balances::lock(&state.db, &mut tx, &project.id, first.code()).await?;
    let b2 = balances::lock(&state.db, &mut tx, &project.id, second.code()).await?;
    let (from_balance, to_balance) = if first == from { (b1, b2) } else { (b2, b1) };
    let (Some(from_balance), Some(to_balance)) = (from_balance, to_balance) else {
        return Err(balance_error(BalanceError::Insufficient));
    };
    if from_balance.available < q.from_amount {
        return Err(balance_error(BalanceError::Insufficient));
    }
    let exchange_id = match record(&mut tx, project, &q, now).await {
        Ok(id) => id,
        Err(e) if e.is_unique_violation() => return Err(already_used(&q)),
        Err(e) => return Err(e.into()),
    };
    if !exchanges::use_quote(&mut tx, &q.id, exchange_id, now).await? {
        drop(tx);
        // Someone executed it first, or it expired meanwhile: say which.
        let now_q = exchanges::quote(&state.db, &project.id, quote_id).await?;
        return Err(match now_q {
            Some(q) if q.used_at.is_some() => already_used(&q),
            _ => expired(&q),
        });
    }
    let out = LedgerKind::ExchangeOut;
    balances::apply_exchange(
        &mut tx,
        &project.id,
        from.code(),
        from_balance,
        out,
        q.from_amount,
        exchange_id,
        now,
    )
    .await
    .map_err(balance_error)?;
    let inn = LedgerKind::ExchangeIn;
    balances::apply_exchange(
        &mut tx,
        &project.id,
        to.code(),
        to_balance,
        inn,
        q.to_amount,
        exchange_id,
        now,
    )
    .await
    .map_err(balance_error)?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &project.id,
            actor,
            action: "exchange.executed",
            subject: format!("exchange:{exchange_id}"),
            details: json!({
                "quote_id": q.id, "from": q.from_currency, "from_amount": q.from_amount.to_string(),
                "to": q.to_currency, "to_amount": q.to_amount.to_string(),
                "rate": q.rate.to_string(), "fee": q.fee.to_string(),
            }),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Executed {
        exchange_id,
        quote: q,
        at: now,
    })
}

async fn record(tx: &mut Tx<'_>, project: &Project, q: &Quote, now: i64) -> Result<i64, DbError> {
    exchanges::insert(
        tx,
        &NewExchange {
            project_id: &project.id,
            kind: "quote",
            quote_id: Some(&q.id),
            from_currency: &q.from_currency,
            to_currency: &q.to_currency,
            from_amount: q.from_amount,
            to_amount: q.to_amount,
            rate: q.rate,
            fee: q.fee,
        },
        now,
    )
    .await
}
