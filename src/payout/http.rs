//! The HTTP rail: forwards payouts to an upstream processor that speaks the merchant API this
//! service serves itself (seeds `001`/`002`): `POST {url}/withdrawal/crypto` to hand a payout
//! over and `POST {url}/withdrawal/status` to ask where it stands, each body signed with
//! `X-Processing-Key` and `X-Processing-Signature` (lowercase hex HMAC-SHA512 of the raw body
//! with the secret). The payout's idempotency key (prefixed with `id_prefix`) is its
//! `foreign_id`: the upstream answers a repeated `foreign_id` with the original payout, so a
//! retried submission never pays twice.
//!
//! What an answer means:
//! - `data.status` `confirmed` → confirmed, with `data.txid`;
//!   `pending` / `processing` → on its way, asked again `check_interval_secs` later;
//!   `declined` / `cancelled` → failed (the withdrawal is cancelled and its funds released);
//! - 400 with an `error_code` the upstream cannot change its mind about (`invalid_address`,
//!   `coin_not_supported`, `invalid_amount`, `amount_too_low`) and 422, answering a
//!   submission → refused for good (answering a status question they only mean "try again":
//!   the payout was accepted and may be on its way);
//! - everything else (5xx, 401/403, `balance_not_enough`, `withdraw_disabled`, a timeout, a
//!   refused connection, an answer that is not the API's JSON) → try again later: nothing is
//!   known to have failed, and the same `foreign_id` makes the retry safe. So is
//!   `duplication_request` (another payout already holds that `foreign_id` upstream): only a
//!   person can sort that out, and failing the withdrawal would release funds the upstream
//!   might be paying.

use super::{PayoutError, PayoutProvider, PayoutRequest, PayoutState};
use crate::config::HttpPayoutSettings;
use crate::crypto::hmac_sha512_hex;
use crate::error::describe_http_failure;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::time::Duration;

/// Business refusals after which resubmitting the same payout can never succeed.
const FINAL_REFUSALS: &[&str] = &[
    "invalid_address",
    "coin_not_supported",
    "invalid_amount",
    "amount_too_low",
];

pub struct HttpProvider {
    client: reqwest::Client,
    /// The upstream API's base, without a trailing slash (`https://host/api/v2`).
    url: String,
    key: String,
    secret: SecretString,
    id_prefix: String,
    check_interval_ms: i64,
}

impl HttpProvider {
    /// The provider `settings` describe; an error names the missing or malformed key.
    pub fn from_settings(settings: &HttpPayoutSettings) -> Result<HttpProvider, String> {
        let url = settings
            .url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or("payout.http.url is required when payout.provider is \"http\"")?;
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("payout.http.url is not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
            return Err("payout.http.url must be an http:// or https:// URL".into());
        }
        let key = settings
            .key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or("payout.http.key is required when payout.provider is \"http\"")?;
        let secret = settings
            .secret
            .clone()
            .filter(|s| !s.expose_secret().is_empty())
            .ok_or("payout.http.secret is required when payout.provider is \"http\"")?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(settings.timeout_secs.clamp(1, 10)))
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .user_agent(concat!("Countersign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("payout.http: building the HTTP client: {e}"))?;
        Ok(HttpProvider {
            client,
            url: url.trim_end_matches('/').to_string(),
            key: key.to_string(),
            secret,
            id_prefix: settings.id_prefix.clone(),
            check_interval_ms: i64::try_from(settings.check_interval_secs.max(1))
                .unwrap_or(30)
                .saturating_mul(1000),
        })
    }

    fn foreign_id(&self, idempotency_key: &str) -> String {
        format!("{}{idempotency_key}", self.id_prefix)
    }

    /// POSTs `body` signed to `{url}{path}`; the answer's status code and JSON body.
    async fn call(&self, path: &str, body: &Value) -> Result<(u16, Value), PayoutError> {
        let body = body.to_string();
        let signature = hmac_sha512_hex(self.secret.expose_secret().as_bytes(), body.as_bytes());
        let resp = self
            .client
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .header("X-Processing-Key", &self.key)
            .header("X-Processing-Signature", signature)
            .body(body)
            .send()
            .await
            .map_err(upstream_failed)?;
        let code = resp.status().as_u16();
        let text = resp.text().await.map_err(upstream_failed)?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((code, json))
    }

    /// What an answer about one payout means.
    fn interpret(&self, code: u16, body: &Value, now: i64) -> Result<PayoutState, PayoutError> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        match code {
            200 | 201 => {
                let data = &body["data"];
                let txid = data["txid"].as_str().filter(|t| !t.is_empty());
                match data["status"].as_str() {
                    Some("confirmed") => match txid {
                        Some(t) => Ok(PayoutState::Confirmed { txid: t.into() }),
                        None => Err(PayoutError::Transient(
                            "upstream reported confirmed without a txid".into(),
                        )),
                    },
                    Some("pending" | "processing") => Ok(PayoutState::InFlight {
                        txid: txid.map(str::to_string),
                        check_at: now + self.check_interval_ms,
                    }),
                    Some(s @ ("declined" | "cancelled")) => {
                        let error = text(&data["error"]);
                        Ok(PayoutState::Failed {
                            reason: if error.is_empty() {
                                format!("upstream {s} the payout")
                            } else {
                                format!("upstream {s} the payout: {error}")
                            },
                        })
                    }
                    _ => Err(PayoutError::Transient(format!(
                        "upstream answered HTTP {code} without a known data.status"
                    ))),
                }
            }
            400 => {
                let error_code = text(&body["error_code"]);
                let message = text(&body["message"]);
                let what = format!("upstream refused ({error_code}): {message}");
                if FINAL_REFUSALS.contains(&error_code.as_str()) {
                    Err(PayoutError::Rejected(what))
                } else {
                    Err(PayoutError::Transient(what))
                }
            }
            422 => Err(PayoutError::Rejected(format!(
                "upstream refused the fields: {}",
                body["errors"]
            ))),
            _ => Err(PayoutError::Transient(format!(
                "upstream answered HTTP {code}"
            ))),
        }
    }
}

/// A request to the upstream that got no answer (without its URL).
fn upstream_failed(e: reqwest::Error) -> PayoutError {
    PayoutError::Transient(format!("upstream: {}", describe_http_failure(e)))
}

#[async_trait]
impl PayoutProvider for HttpProvider {
    async fn submit(&self, req: &PayoutRequest, now: i64) -> Result<PayoutState, PayoutError> {
        let mut body = json!({
            "foreign_id": self.foreign_id(&req.idempotency_key),
            "currency": req.currency,
            "amount": req.amount.to_string(),
            "address": req.address,
        });
        if let Some(tag) = &req.tag {
            body["tag"] = json!(tag);
        }
        let (code, answer) = self.call("/withdrawal/crypto", &body).await?;
        self.interpret(code, &answer, now)
    }

    async fn status(&self, idempotency_key: &str, now: i64) -> Result<PayoutState, PayoutError> {
        let body = json!({"foreign_id": self.foreign_id(idempotency_key)});
        let (code, answer) = self.call("/withdrawal/status", &body).await?;
        // Asked about a payout it accepted, only the upstream's word that the payout was
        // declined or cancelled fails it. A refusal of the question itself (a 404 for a
        // payout it took, a 422) says nothing about the payout, which may be on its way:
        // failing it would release funds being paid.
        match self.interpret(code, &answer, now) {
            Err(PayoutError::Rejected(why)) => Err(PayoutError::Transient(why)),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> HttpProvider {
        crate::startup::install_crypto_provider();
        HttpProvider::from_settings(&HttpPayoutSettings {
            url: Some("https://upstream.test/api/v2/".into()),
            key: Some("k".into()),
            secret: Some("s".to_string().into()),
            ..HttpPayoutSettings::default()
        })
        .expect("settings")
    }

    #[test]
    fn answers_map_to_states() {
        let p = provider();
        let ok = |status: &str, txid: Value| json!({"data": {"status": status, "txid": txid}});
        assert_eq!(
            p.interpret(200, &ok("confirmed", json!("ab12")), 0)
                .unwrap(),
            PayoutState::Confirmed {
                txid: "ab12".into()
            }
        );
        assert_eq!(
            p.interpret(200, &ok("processing", Value::Null), 1_000)
                .unwrap(),
            PayoutState::InFlight {
                txid: None,
                check_at: 31_000
            }
        );
        let failed = p
            .interpret(
                200,
                &json!({"data": {"status": "declined", "error": "Declined by user ID:7"}}),
                0,
            )
            .unwrap();
        assert_eq!(
            failed,
            PayoutState::Failed {
                reason: "upstream declined the payout: Declined by user ID:7".into()
            }
        );
        // Confirmed without a txid is not believed yet.
        assert!(matches!(
            p.interpret(200, &ok("confirmed", Value::Null), 0),
            Err(PayoutError::Transient(_))
        ));
    }

    #[test]
    fn only_refusals_that_cannot_change_are_final() {
        let p = provider();
        let refusal = |code: &str| json!({"message": "no", "error_code": code});
        for code in FINAL_REFUSALS {
            assert!(matches!(
                p.interpret(400, &refusal(code), 0),
                Err(PayoutError::Rejected(_))
            ));
        }
        for code in [
            "balance_not_enough",
            "duplication_request",
            "withdraw_disabled",
        ] {
            assert!(matches!(
                p.interpret(400, &refusal(code), 0),
                Err(PayoutError::Transient(_))
            ));
        }
        assert!(matches!(
            p.interpret(422, &json!({"errors": {"address": "bad"}}), 0),
            Err(PayoutError::Rejected(_))
        ));
        for code in [401, 403, 404, 500, 502, 503, 302] {
            assert!(matches!(
                p.interpret(code, &Value::Null, 0),
                Err(PayoutError::Transient(_))
            ));
        }
    }

    #[test]
    fn settings_name_what_is_missing() {
        crate::startup::install_crypto_provider();
        let base = HttpPayoutSettings {
            url: Some("https://upstream.test/api/v2".into()),
            key: Some("k".into()),
            secret: Some("s".to_string().into()),
            ..HttpPayoutSettings::default()
        };
        let err = |s: HttpPayoutSettings| HttpProvider::from_settings(&s).err().unwrap_or_default();
        assert!(
            err(HttpPayoutSettings {
                url: None,
                ..base.clone()
            })
            .contains("payout.http.url")
        );
        assert!(
            err(HttpPayoutSettings {
                url: Some("ftp://x".into()),
                ..base.clone()
            })
            .contains("payout.http.url")
        );
        assert!(
            err(HttpPayoutSettings {
                key: None,
                ..base.clone()
            })
            .contains("payout.http.key")
        );
        assert!(
            err(HttpPayoutSettings {
                secret: Some(String::new().into()),
                ..base.clone()
            })
            .contains("payout.http.secret")
        );
        let p = HttpProvider::from_settings(&HttpPayoutSettings {
            id_prefix: "acme-".into(),
            ..base
        })
        .expect("valid");
        assert_eq!(p.foreign_id("cs-wd-7"), "acme-cs-wd-7");
        assert_eq!(p.url, "https://upstream.test/api/v2");
    }
}
