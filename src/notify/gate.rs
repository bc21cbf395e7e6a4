//! The operator gate (seed 004): when a project has a validation-webhook URL, every new
//! withdrawal is first POSTed there as `WITHDRAW_REQUEST`, signed like callbacks, and the
//! operator's answer `{"error": 0..9, "description": ...}` decides: 0 goes on, 1–9 refuse.
//!
//! The gate fails closed: no answer within `gate.timeout_ms`, a connection error, any status
//! other than 2xx (redirects are not followed) or an answer that is not
//! `{"error": <integer 0..9>, ...}` counts as code 3, temporarily unavailable.
//!
//! Nothing here touches the database inside a transaction: the caller asks before it opens one.

use crate::db::audit::Actor;
use crate::db::projects::{self, Project};
use crate::domain::exchange::WithdrawalPrice;
use crate::domain::money::Currency;
use crate::domain::policy::Scope;
use crate::domain::withdrawal::NewWithdrawal;
use crate::notify::callback::sign_headers;
use crate::state::AppState;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Answers longer than this are not read (and count as malformed).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The operator's description is kept to this many characters.
const MAX_DESCRIPTION_CHARS: usize = 256;

/// Why the operator (or the gate, for code 3) refused a withdrawal: the seed's codes 1–9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyCode {
    DeclinedByOperator,
    InsufficientBalance,
    TemporarilyUnavailable,
    UserNotEligible,
    DailyLimitExceeded,
    AmountTooLow,
    AmountTooHigh,
    VerificationRequired,
    AccountSuspended,
}

impl DenyCode {
    pub const ALL: [DenyCode; 9] = [
        DenyCode::DeclinedByOperator,
        DenyCode::InsufficientBalance,
        DenyCode::TemporarilyUnavailable,
        DenyCode::UserNotEligible,
        DenyCode::DailyLimitExceeded,
        DenyCode::AmountTooLow,
        DenyCode::AmountTooHigh,
        DenyCode::VerificationRequired,
        DenyCode::AccountSuspended,
    ];

    /// The seed's number, 1 to 9.
    pub fn code(self) -> u8 {
        match self {
            DenyCode::DeclinedByOperator => 1,
            DenyCode::InsufficientBalance => 2,
            DenyCode::TemporarilyUnavailable => 3,
            DenyCode::UserNotEligible => 4,
            DenyCode::DailyLimitExceeded => 5,
            DenyCode::AmountTooLow => 6,
            DenyCode::AmountTooHigh => 7,
            DenyCode::VerificationRequired => 8,
            DenyCode::AccountSuspended => 9,
        }
    }

    pub fn from_code(n: u64) -> Option<DenyCode> {
        DenyCode::ALL.into_iter().find(|c| u64::from(c.code()) == n)
    }

    /// The seed's meaning, for people.
    pub fn meaning(self) -> &'static str {
        match self {
            DenyCode::DeclinedByOperator => "declined by operator",
            DenyCode::InsufficientBalance => "insufficient balance",
            DenyCode::TemporarilyUnavailable => "temporarily unavailable",
            DenyCode::UserNotEligible => "user not eligible",
            DenyCode::DailyLimitExceeded => "daily limit exceeded",
            DenyCode::AmountTooLow => "amount too low",
            DenyCode::AmountTooHigh => "amount too high",
            DenyCode::VerificationRequired => "verification required",
            DenyCode::AccountSuspended => "account suspended",
        }
    }
}

/// A withdrawal the gate refused. Nothing was created or held for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRefusal {
    pub code: DenyCode,
    /// The operator's `description` (control characters removed, at most 256 characters;
    /// may be empty). When the operator gave no usable answer: what went wrong instead.
    pub description: String,
    /// False when the refusal is the gate's own code 3 (timeout, connection error, non-2xx,
    /// malformed answer), true when the operator answered with this code.
    pub answered: bool,
}

impl GateRefusal {
    fn unavailable(reason: impl Into<String>) -> GateRefusal {
        GateRefusal {
            code: DenyCode::TemporarilyUnavailable,
            description: reason.into(),
            answered: false,
        }
    }

    /// One human-readable sentence naming the code and its meaning.
    pub fn message(&self) -> String {
        let (n, meaning) = (self.code.code(), self.code.meaning());
        if !self.answered {
            format!(
                "Withdrawal denied by the operator gate: {meaning} (code {n}): the validation webhook {}; retry later",
                self.description
            )
        } else if self.description.is_empty() {
            format!("Withdrawal denied by the operator: {meaning} (code {n})")
        } else {
            format!(
                "Withdrawal denied by the operator: {meaning} (code {n}): {}",
                self.description
            )
        }
    }
}

impl std::fmt::Display for GateRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for GateRefusal {}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Money {
    pub currency: String,
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Initiator {
    /// `api_key`, `user` (or `system`, `cli`).
    pub kind: String,
    pub id: String,
}

/// The `WITHDRAW_REQUEST` body. Amounts are decimal strings at the currency's scale.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WithdrawRequest {
    /// Always `WITHDRAW_REQUEST`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub project_id: String,
    pub foreign_id: String,
    /// The balance debited, as requested.
    pub currency: String,
    /// The amount requested, in `currency`.
    pub amount: String,
    /// The currency sent to the address when it differs from `currency` (with exchange).
    pub convert_to: Option<String>,
    /// The payout currency's network.
    pub network: String,
    pub address: String,
    pub tag: Option<String>,
    pub end_user_reference: Option<String>,
    /// What the balance would give (held now, debited when the payout confirms).
    pub currency_sent: Money,
    /// What the address would receive.
    pub currency_received: Money,
    /// Every fee, in the payout currency.
    pub fee: String,
    /// With exchange: payout currency per unit of `currency`, fixed at creation.
    pub exchange_rate: Option<String>,
    /// `api` or `dashboard`.
    pub scope: &'static str,
    pub initiator: Initiator,
    /// The project's base currency and the request's value in it (what limits count).
    pub base_currency: String,
    pub base_value: String,
    /// When the request was made (RFC 3339, UTC).
    pub requested_at: String,
}

/// What one new withdrawal looks like to the gate.
pub struct GateInput<'a> {
    pub project: &'a Project,
    pub initiator: &'a Actor,
    pub scope: Scope,
    pub request: &'a NewWithdrawal,
    pub price: &'a WithdrawalPrice,
    pub base: Currency,
    pub base_value: Decimal,
    pub now_ms: i64,
}

impl WithdrawRequest {
    pub fn new(i: &GateInput<'_>) -> WithdrawRequest {
        let (req, price) = (i.request, i.price);
        let source = req.currency();
        let payout = req.payout;
        WithdrawRequest {
            kind: "WITHDRAW_REQUEST",
            project_id: i.project.id.clone(),
            foreign_id: req.foreign_id.clone(),
            currency: source.code().to_string(),
            amount: req.amount.to_canonical(),
            convert_to: req.is_exchange().then(|| payout.code().to_string()),
            network: req.address.network().name().to_string(),
            address: req.address.as_str().to_string(),
            tag: req.tag.clone(),
            end_user_reference: req.end_user_reference.clone(),
            currency_sent: Money {
                currency: price.held_currency.code().to_string(),
                amount: price.held_currency.format(price.held),
            },
            currency_received: Money {
                currency: payout.code().to_string(),
                amount: payout.format(price.received),
            },
            fee: payout.format(price.total_fee()),
            exchange_rate: price.exchange.map(|c| c.rate.normalize().to_string()),
            scope: i.scope.as_str(),
            initiator: Initiator {
                kind: i.initiator.kind().to_string(),
                id: i.initiator.id().to_string(),
            },
            base_currency: i.base.code().to_string(),
            base_value: i.base.format(i.base_value),
            requested_at: crate::clock::rfc3339(i.now_ms),
        }
    }
}

/// Asks the project's operator about `request`. `Ok(())` when the project has no gate or the
/// operator answered code 0; otherwise the refusal to show (codes 1–9; 3 for no usable
/// answer). Never call this with a transaction open: it waits up to `gate.timeout_ms`.
pub async fn check(
    state: &AppState,
    project: &Project,
    request: &WithdrawRequest,
) -> Result<(), GateRefusal> {
    let Some(url) = project.validation_url.as_deref() else {
        return Ok(());
    };
    let timeout_ms = state.settings.gate.timeout_ms;
    let asked = tokio::time::timeout(
        Duration::from_millis(timeout_ms),
        ask(state, project, url, request, timeout_ms),
    )
    .await
    .unwrap_or_else(|_| Err(GateRefusal::unavailable(no_answer(timeout_ms))));
    match asked {
        Ok(()) => Ok(()),
        Err(refusal) => {
            // Never the URL (it may carry a token) nor any secret.
            if refusal.answered {
                tracing::info!(project = %project.id, foreign_id = %request.foreign_id,
                    code = refusal.code.code(), "operator gate denied a withdrawal");
            } else {
                tracing::warn!(project = %project.id, foreign_id = %request.foreign_id,
                    reason = %refusal.description, "operator gate unavailable: withdrawal denied with code 3");
            }
            Err(refusal)
        }
    }
}

fn no_answer(timeout_ms: u64) -> String {
    format!("did not answer within {timeout_ms} ms")
}

async fn ask(
    state: &AppState,
    project: &Project,
    url: &str,
    request: &WithdrawRequest,
    timeout_ms: u64,
) -> Result<(), GateRefusal> {
    let body = serde_json::to_string(request)
        .map_err(|_| GateRefusal::unavailable("request could not be encoded"))?;
    let key = &state.master_key;
    let secret = projects::signing_secret_enc(&state.db, &project.id)
        .await
        .ok()
        .flatten()
        .and_then(|s| key.decrypt(&s).ok());
    let whsec = key.decrypt(&project.webhook_secret_enc).ok();
    let (Some(secret), Some(whsec)) = (secret, whsec) else {
        return Err(GateRefusal::unavailable(
            "could not be signed (no active API key, or the stored secrets cannot be read)",
        ));
    };
    let msg_id = crate::crypto::random_token::<12>()
        .map(|t| format!("msg_gate_{t}"))
        .map_err(|_| GateRefusal::unavailable("could not be signed (no randomness)"))?;
    let headers = sign_headers(&msg_id, &body, &secret, &whsec, state.now())
        .map_err(|_| GateRefusal::unavailable("could not be signed (bad webhook secret)"))?;
    let mut req = state
        .outbound
        .post(url)
        .map_err(|refused| GateRefusal::unavailable(format!("could not be reached ({refused})")))?
        .timeout(Duration::from_millis(timeout_ms))
        .header("Content-Type", "application/json")
        .header(
            "User-Agent",
            concat!("Countersign/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut resp = req.body(body).send().await.map_err(|e| {
        GateRefusal::unavailable(
            if let Some(refused) = crate::notify::outbound::refusal_of(&e) {
                format!("could not be reached ({refused})")
            } else if e.is_timeout() {
                no_answer(timeout_ms)
            } else if e.is_connect() {
                "could not be reached (connection failed)".to_string()
            } else {
                // reqwest's own text names the URL, which may carry a token: not shown.
                "could not be reached (request failed)".to_string()
            },
        )
    })?;
    let status = resp.status();
    if !status.is_success() {
        let note = if status.is_redirection() {
            " (redirects are not followed)"
        } else {
            ""
        };
        return Err(GateRefusal::unavailable(format!(
            "answered HTTP {}{note}",
            status.as_u16()
        )));
    }
    let mut answer = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(GateRefusal::unavailable(format!(
                        "answered with more than {MAX_ANSWER_BYTES} bytes"
                    )));
                }
                answer.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => {
                return Err(GateRefusal::unavailable(no_answer(timeout_ms)));
            }
            Err(_) => {
                return Err(GateRefusal::unavailable(
                    "answer was cut off (connection failed)",
                ));
            }
        }
    }
    decide(&answer)
}

/// Reads the operator's answer: `{"error": <integer 0..9>, "description": "..."}`.
pub fn decide(answer: &[u8]) -> Result<(), GateRefusal> {
    let v: Value = serde_json::from_slice(answer)
        .map_err(|_| GateRefusal::unavailable("answered with something that is not JSON"))?;
    let Some(obj) = v.as_object() else {
        return Err(GateRefusal::unavailable(
            "answered with JSON that is not an object",
        ));
    };
    let code = match obj.get("error") {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| {
        GateRefusal::unavailable("answered without an integer \"error\" code (0 to 9)")
    })?;
    if code == 0 {
        return Ok(());
    }
    let Some(deny) = DenyCode::from_code(code) else {
        return Err(GateRefusal::unavailable(format!(
            "answered with error code {code}, which is not one of 0 to 9"
        )));
    };
    let description = obj
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION_CHARS)
        .collect::<String>()
        .trim()
        .to_string();
    Err(GateRefusal {
        code: deny,
        description,
        answered: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly_and_fail_closed() {
        assert_eq!(decide(br#"{"error": 0, "description": "ok"}"#), Ok(()));
        assert_eq!(decide(br#"{"error": 0}"#), Ok(()));
        let r = decide(br#"{"error": 5, "description": "Daily\nlimit "}"#).unwrap_err();
        assert_eq!(
            (r.code, r.description.as_str(), r.answered),
            (DenyCode::DailyLimitExceeded, "Dailylimit", true)
        );
        for bad in [
            &b"ok"[..],
            br#"[0]"#,
            br#"{"description": "ok"}"#,
            br#"{"error": "0"}"#,
            br#"{"error": 0.5}"#,
            br#"{"error": -1}"#,
            br#"{"error": 10}"#,
        ] {
            let r = decide(bad).unwrap_err();
            assert_eq!(r.code, DenyCode::TemporarilyUnavailable, "{bad:?}");
            assert!(!r.answered);
        }
    }

    #[test]
    fn every_code_has_the_seed_meaning() {
        let codes: Vec<u8> = DenyCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, (1..=9).collect::<Vec<u8>>());
        assert_eq!(DenyCode::from_code(9), Some(DenyCode::AccountSuspended));
        assert_eq!(DenyCode::from_code(0), None);
        let r = GateRefusal {
            code: DenyCode::DailyLimitExceeded,
            description: "over 500 EUR today".into(),
            answered: true,
        };
        assert_eq!(
            r.message(),
            "Withdrawal denied by the operator: daily limit exceeded (code 5): over 500 EUR today"
        );
    }
}
