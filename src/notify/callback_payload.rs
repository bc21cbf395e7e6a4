//! The callback bodies of seed 003, as types: the OpenAPI document describes them from here.
//!
//! A plain withdrawal sends `type: "withdrawal"` with one `blockchain` transaction. A
//! withdrawal with exchange sends `type: "withdrawal_exchange"`, `currency_sent` (the balance
//! debited) and `currency_received` (what the address receives), the `exchange` transaction
//! beside the `blockchain` one, and its fees. Amounts are decimal strings with at least 8
//! decimal places, as the seeds print them (`"100.00000000"` EUR).

use crate::db::withdrawals::Withdrawal;
use crate::domain::money::{Currency, CurrencyKind};
use crate::domain::withdrawal::Status;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

/// A withdrawal status callback (seed 003).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 123, "foreign_id": "operation_987", "end_user_reference": "user_12345",
    "type": "withdrawal_exchange",
    "crypto_address": {"id": 123, "currency": "BTC", "address": "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm", "tag": null},
    "currency_sent": {"currency": "EUR", "amount": "804.25000000"},
    "currency_received": {"currency": "BTC", "amount": "0.01000000"},
    "transactions": [
        {"id": 123, "currency": "BTC", "transaction_type": "blockchain", "type": "withdrawal",
         "address": "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm", "tag": null, "amount": "0.01000000",
         "txid": "bb040d895ef7141ea0b06b04227d8f5dd4ee12d5b890e6e5633f6439393a666b", "confirmations": "0"},
        {"id": 1000, "currency": "EUR", "currency_to": "BTC", "transaction_type": "exchange", "type": "exchange",
         "amount": "804.25000000", "amount_to": "0.01000000"}
    ],
    "fees": [{"type": "fee_crypto_withdrawal_from_fiat", "currency": "BTC", "amount": "0.00028735"}],
    "error": "", "status": "confirmed"
}))]
pub struct CallbackPayload {
    /// The withdrawal's id.
    pub id: i64,
    pub foreign_id: String,
    pub end_user_reference: Option<String>,
    #[serde(rename = "type")]
    pub kind: WithdrawalKind,
    pub crypto_address: CryptoAddress,
    /// Withdrawals with exchange only: the balance debited and the amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency_sent: Option<CurrencyAmount>,
    /// Withdrawals with exchange only: what the address receives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency_received: Option<CurrencyAmount>,
    /// The `blockchain` payout, then (with exchange) the `exchange` conversion.
    pub transactions: Vec<CallbackTransaction>,
    /// Fees charged, in the payout currency (empty when there were none).
    pub fees: Vec<FeeItem>,
    /// Why a withdrawal was declined or cancelled ("Declined by user ID:N", "Expired", ...);
    /// empty otherwise.
    pub error: String,
    pub status: CallbackStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalKind {
    Withdrawal,
    WithdrawalExchange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    Pending,
    Confirmed,
    Declined,
    Cancelled,
}

/// The destination, as kept in the project's address book (the same address has the same id).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CryptoAddress {
    pub id: i64,
    pub currency: String,
    pub address: String,
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrencyAmount {
    pub currency: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CallbackTransaction {
    Blockchain(BlockchainTransaction),
    Exchange(ExchangeTransaction),
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockchainKind {
    Blockchain,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalTxType {
    Withdrawal,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeKind {
    Exchange,
}

/// The payout on its network.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlockchainTransaction {
    /// The withdrawal's id.
    pub id: i64,
    pub currency: String,
    pub transaction_type: BlockchainKind,
    #[serde(rename = "type")]
    pub kind: WithdrawalTxType,
    pub address: String,
    pub tag: Option<String>,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub amount: String,
    /// Set once the payout rail has it.
    pub txid: Option<String>,
    pub confirmations: String,
}

/// The conversion of a withdrawal with exchange, at the rate fixed when it was created.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExchangeTransaction {
    pub id: i64,
    /// The balance debited.
    pub currency: String,
    /// The payout currency.
    pub currency_to: String,
    pub transaction_type: ExchangeKind,
    #[serde(rename = "type")]
    pub kind: ExchangeKind,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub amount: String,
    /// What the address receives (after fees).
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub amount_to: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeeItem {
    /// `fee_crypto_withdrawal` (plain withdrawal), `fee_crypto_withdrawal_from_fiat` or
    /// `fee_crypto_withdrawal_from_crypto` (with exchange, by the kind of balance debited).
    #[serde(rename = "type")]
    pub kind: String,
    pub currency: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub amount: String,
}

/// Amounts as the seeds print them: the currency's decimals, and at least 8.
pub fn wire_amount(currency: &str, d: Decimal) -> String {
    let scale = Currency::parse(currency).map_or(8, |c| c.scale().max(8));
    let mut a = d;
    a.rescale(scale);
    a.to_string()
}

/// The fees a withdrawal was charged, as listed in callbacks and views.
pub fn fee_items(w: &Withdrawal) -> Vec<FeeItem> {
    let total = w.total_fee();
    if total.is_zero() {
        return Vec::new();
    }
    let kind = match &w.exchange {
        None => "fee_crypto_withdrawal",
        Some(x) => match Currency::parse(&x.from_currency).map(Currency::kind) {
            Some(CurrencyKind::Fiat) => "fee_crypto_withdrawal_from_fiat",
            _ => "fee_crypto_withdrawal_from_crypto",
        },
    };
    vec![FeeItem {
        kind: kind.into(),
        currency: w.currency.clone(),
        amount: wire_amount(&w.currency, total),
    }]
}

pub fn callback_status(s: Status) -> CallbackStatus {
    match s {
        Status::Confirmed => CallbackStatus::Confirmed,
        Status::Declined => CallbackStatus::Declined,
        Status::Cancelled => CallbackStatus::Cancelled,
        // Only the four callback statuses are sent; the others never reach here.
        Status::Pending | Status::Approved | Status::Processing => CallbackStatus::Pending,
    }
}

/// The seed 003 body for a withdrawal in `status`.
pub fn build(w: &Withdrawal, status: Status) -> CallbackPayload {
    let blockchain = CallbackTransaction::Blockchain(BlockchainTransaction {
        id: w.id,
        currency: w.currency.clone(),
        transaction_type: BlockchainKind::Blockchain,
        kind: WithdrawalTxType::Withdrawal,
        address: w.address.clone(),
        tag: w.tag.clone(),
        amount: wire_amount(&w.currency, w.amount),
        txid: w.txid.clone(),
        confirmations: "0".into(),
    });
    let mut transactions = vec![blockchain];
    let (mut kind, mut sent, mut received) = (WithdrawalKind::Withdrawal, None, None);
    if let Some(x) = &w.exchange {
        kind = WithdrawalKind::WithdrawalExchange;
        let from_amount = wire_amount(&x.from_currency, x.from_amount);
        let to_amount = wire_amount(&w.currency, w.amount);
        sent = Some(CurrencyAmount {
            currency: x.from_currency.clone(),
            amount: from_amount.clone(),
        });
        received = Some(CurrencyAmount {
            currency: w.currency.clone(),
            amount: to_amount.clone(),
        });
        transactions.push(CallbackTransaction::Exchange(ExchangeTransaction {
            id: x.id,
            currency: x.from_currency.clone(),
            currency_to: w.currency.clone(),
            transaction_type: ExchangeKind::Exchange,
            kind: ExchangeKind::Exchange,
            amount: from_amount,
            amount_to: to_amount,
        }));
    }
    CallbackPayload {
        id: w.id,
        foreign_id: w.foreign_id.clone(),
        end_user_reference: w.end_user_reference.clone(),
        kind,
        crypto_address: CryptoAddress {
            id: w.address_id,
            currency: w.currency.clone(),
            address: w.address.clone(),
            tag: w.tag.clone(),
        },
        currency_sent: sent,
        currency_received: received,
        transactions,
        fees: fee_items(w),
        error: w.error.clone(),
        status: callback_status(status),
    }
}
