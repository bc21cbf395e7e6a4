//! Request bodies as the OpenAPI document shows them. Bodies are parsed field by field at the
//! edge (so every bad field is named, see `domain::withdrawal::NewWithdrawal::parse`); these
//! types describe what that parsing accepts. Amounts are decimal strings, never numbers.

use serde::Deserialize;
use utoipa::ToSchema;

/// `POST /withdrawal/crypto`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"foreign_id": "withdrawal_1230203", "currency": "EUR", "convert_to": "BTC",
    "amount": "100", "address": "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm", "end_user_reference": "user_12345"}))]
pub struct WithdrawalRequest {
    /// Your id for this withdrawal, unique per project (the idempotency key); 1-128 characters.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub foreign_id: String,
    /// The balance debited (`BTC`, `USDTT`, ...; with `convert_to`, also `EUR` or `USD`), in
    /// any letter case.
    #[schema(min_length = 1, max_length = 128)]
    pub currency: String,
    /// In `currency`, a decimal string with at most the currency's decimals.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$", max_length = 128)]
    pub amount: String,
    /// Destination on the payout currency's network.
    #[schema(min_length = 1, max_length = 128)]
    pub address: String,
    /// The currency sent to `address`, converted from `currency` at the current rate minus
    /// fees. Absent or equal to `currency`: a plain withdrawal.
    #[schema(max_length = 128)]
    pub convert_to: Option<String>,
    /// Destination tag / memo (TON only). `memo` is accepted as the same field.
    #[schema(max_length = 128, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub tag: Option<String>,
    /// Alias of `tag`.
    #[schema(max_length = 128, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub memo: Option<String>,
    /// Who the funds are for, on your side; sent back in callbacks.
    #[schema(max_length = 128, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub end_user_reference: Option<String>,
}

/// `POST /withdrawal/status`, `POST /withdrawal/cancel`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"foreign_id": "withdrawal_1230203"}))]
pub struct ForeignIdRequest {
    #[schema(min_length = 1)]
    pub foreign_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CurrencyType {
    Crypto,
    Fiat,
}

/// `POST /currencies/list`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CurrenciesListRequest {
    /// Only currencies of this type.
    #[serde(rename = "type")]
    pub kind: Option<CurrencyType>,
}

/// `POST /balances`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"date": "2024-05-31", "currencies": ["BTC", "EUR"]}))]
pub struct BalancesRequest {
    /// A UTC date `YYYY-MM-DD`: balances at its end (23:59:59.999 UTC). Absent: now.
    pub date: Option<String>,
    /// Currency codes, as an array or one comma-separated string. Absent or empty: all.
    pub currencies: Option<CurrencyFilter>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CurrencyFilter {
    List(Vec<String>),
    CommaSeparated(String),
}

/// `POST /currencies/rates`, `POST /currencies/pairs`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"currency_from": "BTC", "currency_to": "EUR"}))]
pub struct PairFilterRequest {
    /// Only pairs converting from this currency.
    pub currency_from: Option<String>,
    /// Only pairs converting into this currency.
    pub currency_to: Option<String>,
}

/// `POST /exchange/create-quota`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"from_coin": "EUR", "to_coin": "BTC", "request_amount": "100", "request_coin": "EUR"}))]
pub struct QuoteRequest {
    /// The balance converted from.
    pub from_coin: String,
    /// The balance converted into.
    pub to_coin: String,
    /// A decimal string, in `request_coin`.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub request_amount: String,
    /// `from_coin` (sell exactly `request_amount`) or `to_coin` (receive exactly
    /// `request_amount`).
    pub request_coin: String,
}

/// `POST /exchange/make-exchange`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"quote_id": "q_2J3IwFIcaoYoyfRAEBib8Q"}))]
pub struct MakeExchangeRequest {
    #[schema(min_length = 1)]
    pub quote_id: String,
}
