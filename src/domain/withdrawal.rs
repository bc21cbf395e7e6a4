//! A withdrawal's states and the one pure function that moves between them; the parsed,
//! valid request a withdrawal is created from.

use crate::domain::address::Address;
use crate::domain::money::{Amount, AmountError, Currency, CurrencyKind};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Held on the balance, waiting for approvals.
    Pending,
    /// Approvals met (or none needed); waiting to be handed to the payout rail.
    Approved,
    /// Submitted to the payout rail; waiting for its confirmation.
    Processing,
    Confirmed,
    Declined,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Processing => "processing",
            Status::Confirmed => "confirmed",
            Status::Declined => "declined",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Approved,
            Status::Processing,
            Status::Confirmed,
            Status::Declined,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Confirmed | Status::Declined | Status::Cancelled
        )
    }

    /// What the merchant sees: the seeds know `pending`, `processing`, `confirmed`,
    /// `declined`, `cancelled`; `approved` is internal and shows as `processing`.
    pub fn merchant_status(self) -> &'static str {
        match self {
            Status::Approved | Status::Processing => "processing",
            other => other.as_str(),
        }
    }

    /// Whether entering this status sends the merchant a callback (the seeds' four).
    pub fn has_callback(self) -> bool {
        matches!(
            self,
            Status::Pending | Status::Confirmed | Status::Declined | Status::Cancelled
        )
    }
}

/// What can happen to a withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    ApprovalsMet,
    Decline,
    /// Cancelled by the merchant through the API.
    Cancel,
    Expire,
    PayoutSubmitted,
    PayoutConfirmed,
    PayoutFailed,
}

/// What a transition does to the held funds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FundsEffect {
    None,
    /// The hold goes back to the available balance.
    Release,
    /// The hold leaves the balance for good.
    Debit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} withdrawal cannot take {event:?}")]
pub struct TransitionError {
    pub from: &'static str,
    pub event: Event,
}

/// The whole state machine. Everything that changes a withdrawal's status asks this first and
/// then writes conditionally on the `from` status.
pub fn transition(from: Status, event: Event) -> Result<(Status, FundsEffect), TransitionError> {
    use Event::*;
    use Status::*;
    let to = match (from, event) {
        (Pending, ApprovalsMet) => (Approved, FundsEffect::None),
        (Pending, Decline) => (Declined, FundsEffect::Release),
        (Pending, Cancel) | (Pending, Expire) => (Cancelled, FundsEffect::Release),
        (Approved, PayoutSubmitted) => (Processing, FundsEffect::None),
        (Approved, PayoutFailed) | (Processing, PayoutFailed) => (Cancelled, FundsEffect::Release),
        (Processing, PayoutConfirmed) => (Confirmed, FundsEffect::Debit),
        _ => {
            return Err(TransitionError {
                from: from.as_str(),
                event,
            });
        }
    };
    Ok(to)
}

/// Refusals with the seeds' error codes (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// Field errors (HTTP 422): field name → what is wrong with it.
pub type FieldErrors = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    Fields(FieldErrors),
    Refused(Refusal),
}

/// A withdrawal request that has passed every check that needs no database (or rates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWithdrawal {
    pub foreign_id: String,
    /// In the request's `currency`: the balance debited.
    pub amount: Amount,
    /// What the address receives: `convert_to`, or `currency` itself.
    pub payout: Currency,
    pub address: Address,
    pub tag: Option<String>,
    pub end_user_reference: Option<String>,
}

const MAX_TEXT: usize = 128;

impl NewWithdrawal {
    /// Parses the merchant's JSON body. Shape problems come back together as field errors;
    /// then the business checks, in order: currency, amount, address.
    pub fn parse(body: &Value) -> Result<NewWithdrawal, RequestError> {
        let Some(obj) = body.as_object() else {
            let mut e = FieldErrors::new();
            e.insert("body".into(), "must be a JSON object".into());
            return Err(RequestError::Fields(e));
        };
        let mut errors = FieldErrors::new();
        let foreign_id = required_text(obj, "foreign_id", &mut errors);
        let currency = required_text(obj, "currency", &mut errors);
        let amount = required_text(obj, "amount", &mut errors);
        let address = required_text(obj, "address", &mut errors);
        // `memo` is the seeds' name for the same thing.
        let tag = optional_text(obj, "tag", &mut errors)
            .or_else(|| optional_text(obj, "memo", &mut errors));
        let end_user_reference = optional_text(obj, "end_user_reference", &mut errors);
        let convert_to = optional_text(obj, "convert_to", &mut errors);
        if let Some(a) = obj.get("amount") {
            if a.is_number() {
                errors.insert(
                    "amount".into(),
                    "must be a decimal string such as \"0.015\", not a JSON number".into(),
                );
            }
        }
        let (Some(foreign_id), Some(currency), Some(amount), Some(address)) =
            (foreign_id, currency, amount, address)
        else {
            return Err(RequestError::Fields(errors));
        };
        if !errors.is_empty() {
            return Err(RequestError::Fields(errors));
        }

        let refuse = |code, msg: String| RequestError::Refused(Refusal::new(code, msg));
        let crypto = |c: &Currency| c.kind() == CurrencyKind::Crypto;
        let exchange = convert_to
            .as_deref()
            .filter(|c| !c.trim().eq_ignore_ascii_case(currency.trim()));
        let (source, payout) = match exchange {
            // With exchange: any balance, converted into a crypto currency.
            Some(to) => {
                let source = Currency::parse(&currency).ok_or_else(|| {
                    refuse(
                        "coin_not_supported",
                        format!("Currency {currency} is not supported"),
                    )
                })?;
                let payout = Currency::parse(to).filter(crypto).ok_or_else(|| {
                    refuse(
                        "coin_not_supported",
                        format!("convert_to {to} is not supported: withdrawals pay out a crypto currency ({})", crypto_list()),
                    )
                })?;
                (source, payout)
            }
            None => {
                let c = Currency::parse(&currency).filter(crypto).ok_or_else(|| {
                    refuse(
                        "coin_not_supported",
                        format!(
                            "Currency {currency} is not supported for withdrawals; to pay out from a fiat balance, set convert_to to the crypto currency to send"
                        ),
                    )
                })?;
                (c, c)
            }
        };
        let amount = Amount::parse(source, &amount).map_err(|e| match e {
            AmountError::TooLow { .. } => refuse("amount_too_low", e.to_string()),
            other => refuse("invalid_amount", other.to_string()),
        })?;
        // With exchange, the payout minimum applies to the converted amount (checked once
        // the rate is known).
        if source == payout {
            amount
                .check_min_withdrawal()
                .map_err(|e| refuse("amount_too_low", e.to_string()))?;
        }
        let network = payout
            .network()
            .ok_or_else(|| refuse("coin_not_supported", format!("{payout} has no network")))?;
        let address = Address::parse(network, &address)
            .map_err(|e| refuse("invalid_address", format!("address {e}")))?;
        if tag.is_some() && !payout.takes_tag() {
            let mut e = FieldErrors::new();
            e.insert(
                "tag".into(),
                format!("{payout} payouts do not take a tag or memo"),
            );
            return Err(RequestError::Fields(e));
        }
        Ok(NewWithdrawal {
            foreign_id,
            amount,
            payout,
            address,
            tag,
            end_user_reference,
        })
    }

    /// The request's `currency`: the balance debited.
    pub fn currency(&self) -> Currency {
        self.amount.currency()
    }

    pub fn is_exchange(&self) -> bool {
        self.payout != self.currency()
    }

    /// What makes two requests "the same request": everything but the foreign id, normalized.
    pub fn fingerprint(&self) -> String {
        let mut canonical = serde_json::json!([
            self.currency().code(),
            self.amount.to_canonical(),
            self.address.as_str(),
            self.tag,
            self.end_user_reference,
        ]);
        if self.is_exchange() {
            if let Some(parts) = canonical.as_array_mut() {
                parts.push(self.payout.code().into());
            }
        }
        crate::crypto::sha256_hex(canonical.to_string().as_bytes())
    }
}

fn crypto_list() -> String {
    Currency::ALL
        .into_iter()
        .filter(|c| c.kind() == CurrencyKind::Crypto)
        .map(Currency::code)
        .collect::<Vec<_>>()
        .join(", ")
}

fn text_field(
    obj: &Map<String, Value>,
    name: &str,
    errors: &mut FieldErrors,
) -> Option<Option<String>> {
    match obj.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => {
            if s.chars().count() > MAX_TEXT {
                errors.insert(
                    name.into(),
                    format!("must be at most {MAX_TEXT} characters"),
                );
                None
            } else if s.chars().any(char::is_control) {
                errors.insert(name.into(), "must not contain control characters".into());
                None
            } else if s.is_empty() {
                Some(None)
            } else {
                Some(Some(s.clone()))
            }
        }
        // Reported once, with a better message, by the caller.
        Some(Value::Number(_)) if name == "amount" => None,
        Some(_) => {
            errors.insert(name.into(), "must be a string".into());
            None
        }
    }
}

fn required_text(obj: &Map<String, Value>, name: &str, errors: &mut FieldErrors) -> Option<String> {
    match text_field(obj, name, errors) {
        Some(Some(s)) => Some(s),
        Some(None) => {
            errors.insert(name.into(), "is required".into());
            None
        }
        None => None,
    }
}

fn optional_text(obj: &Map<String, Value>, name: &str, errors: &mut FieldErrors) -> Option<String> {
    text_field(obj, name, errors).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_machine() {
        assert_eq!(
            transition(Status::Pending, Event::ApprovalsMet).unwrap().0,
            Status::Approved
        );
        assert_eq!(
            transition(Status::Processing, Event::PayoutConfirmed).unwrap(),
            (Status::Confirmed, FundsEffect::Debit)
        );
        assert_eq!(
            transition(Status::Pending, Event::Expire).unwrap(),
            (Status::Cancelled, FundsEffect::Release)
        );
        // No cancelling once money is moving; nothing leaves a final state.
        assert!(transition(Status::Approved, Event::Cancel).is_err());
        assert!(transition(Status::Processing, Event::Cancel).is_err());
        assert!(transition(Status::Pending, Event::PayoutConfirmed).is_err());
        for s in [Status::Confirmed, Status::Declined, Status::Cancelled] {
            for e in [
                Event::ApprovalsMet,
                Event::Decline,
                Event::Cancel,
                Event::Expire,
                Event::PayoutSubmitted,
                Event::PayoutConfirmed,
                Event::PayoutFailed,
            ] {
                assert!(transition(s, e).is_err());
            }
        }
    }

    fn parse(v: Value) -> Result<NewWithdrawal, RequestError> {
        NewWithdrawal::parse(&v)
    }

    #[test]
    fn names_every_bad_field() {
        let Err(RequestError::Fields(e)) = parse(json!({"amount": 1, "tag": 5})) else {
            panic!("expected field errors")
        };
        for f in ["foreign_id", "currency", "address", "amount", "tag"] {
            assert!(e.contains_key(f), "{f} missing in {e:?}");
        }
    }

    #[test]
    fn an_amount_of_any_other_type_is_named() {
        // Found by the property tests: a non-string, non-number amount gave a 422 that named
        // nothing (`{"errors": {}}`).
        for amount in [json!([]), json!(true), json!({"value": "1"})] {
            let body = json!({"foreign_id": "a", "currency": "BTC", "amount": amount,
                "address": "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm"});
            let Err(RequestError::Fields(e)) = parse(body) else {
                panic!("expected field errors")
            };
            assert_eq!(
                e.get("amount").map(String::as_str),
                Some("must be a string")
            );
        }
    }

    #[test]
    fn business_refusals_use_seed_codes() {
        let base = json!({"foreign_id": "a", "currency": "BTC", "amount": "0.01",
            "address": "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm"});
        assert!(parse(base.clone()).is_ok());
        let code = |patch: Value| {
            let mut v = base.clone();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            match parse(v) {
                Err(RequestError::Refused(r)) => r.code,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(code(json!({"currency": "DOGE"})), "coin_not_supported");
        assert_eq!(code(json!({"currency": "EUR"})), "coin_not_supported");
        assert_eq!(code(json!({"convert_to": "EUR"})), "coin_not_supported");
        assert_eq!(
            code(json!({"currency": "EUR", "convert_to": "USD"})),
            "coin_not_supported"
        );
        assert_eq!(
            code(json!({"currency": "EUR", "convert_to": "BTC", "amount": "1.001"})),
            "invalid_amount"
        );
        assert_eq!(
            code(json!({"currency": "EUR", "convert_to": "ETH"})),
            "invalid_address"
        );
        assert_eq!(code(json!({"amount": "-1"})), "invalid_amount");
        assert_eq!(code(json!({"amount": "0"})), "invalid_amount");
        assert_eq!(code(json!({"amount": "0.000000001"})), "invalid_amount");
        assert_eq!(code(json!({"amount": "1e9"})), "invalid_amount");
        assert_eq!(
            code(json!({"amount": "99999999999999999999999999999999"})),
            "invalid_amount"
        );
        assert_eq!(code(json!({"amount": "0.00001"})), "amount_too_low");
        assert_eq!(
            code(json!({"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"})),
            "invalid_address"
        );
    }

    #[test]
    fn with_exchange_the_amount_is_in_the_debited_currency_and_the_address_in_the_payout_one() {
        let w = parse(
            json!({"foreign_id": "a", "currency": "EUR", "convert_to": "btc",
            "amount": "0.5", "address": "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm"}),
        )
        .unwrap();
        assert_eq!(w.currency(), Currency::Eur);
        assert_eq!(w.payout, Currency::Btc);
        assert!(w.is_exchange());
        // convert_to equal to currency is a plain withdrawal, with the same fingerprint.
        let plain = json!({"foreign_id": "a", "currency": "BTC", "amount": "0.01",
            "address": "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm"});
        let mut same = plain.clone();
        same["convert_to"] = json!("BTC");
        let (a, b) = (parse(plain).unwrap(), parse(same).unwrap());
        assert!(!b.is_exchange());
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), w.fingerprint());
    }

    #[test]
    fn fingerprint_ignores_formatting_of_the_same_amount() {
        let a = parse(
            json!({"foreign_id": "a", "currency": "btc", "amount": "0.01",
            "address": "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm"}),
        )
        .unwrap();
        let b = parse(
            json!({"foreign_id": "a", "currency": "BTC", "amount": "0.010",
            "address": "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm"}),
        )
        .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }
}

#[cfg(test)]
mod props;
