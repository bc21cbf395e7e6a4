//! Admin API bearer tokens: JWTs signed with HS256 under a key derived from the master key
//! (label `admin-api-jwt`), so every instance sharing the master key accepts them and nothing
//! else is signed with that key.
//!
//! A token names its user (`sub`) and the user's `session_generation` when it was issued
//! (`gen`): a password change, a role or rights change, a 2FA reset or removal bumps the
//! generation and so revokes every token issued before. Only HS256 is accepted (`none` and
//! every other algorithm are refused before any signature work); `iss` and `aud` must be ours;
//! `exp` is checked here against the injected clock, not the system time.

use crate::clock::MINUTE_MS;
use crate::crypto::{MasterKey, random_token};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "countersign";
pub const AUDIENCE: &str = "countersign-admin-api";
/// Tokens live 15 minutes.
pub const TTL_MS: i64 = 15 * MINUTE_MS;
/// The label of the signing key's derivation from the master key.
const KEY_LABEL: &str = "admin-api-jwt";
/// A token longer than this is not one of ours (ours are about 300 bytes).
const MAX_TOKEN_LEN: usize = 2048;
/// A token issued further in the future than this (clock skew between instances) is refused.
const MAX_SKEW_MS: i64 = MINUTE_MS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The user's session generation at issue (`gen` in the token).
    #[serde(rename = "gen")]
    pub generation: i64,
    /// A random token id (kept in the audit record of its issue).
    pub jti: String,
    /// Issued at, seconds since the epoch (by the injected clock).
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Bad shape, signature, algorithm, issuer or audience: nothing about it is trusted.
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("could not create a token: {0}")]
    Issue(String),
}

fn key(master: &MasterKey) -> [u8; 32] {
    master.derive(KEY_LABEL)
}

/// A token for `user_id` at `generation`, valid for [`TTL_MS`] from `now_ms`.
pub fn issue(
    master: &MasterKey,
    user_id: &str,
    generation: i64,
    now_ms: i64,
) -> Result<(String, Claims), TokenError> {
    let iat = now_ms.div_euclid(1000);
    let claims = Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: user_id.into(),
        generation,
        jti: random_token::<16>().map_err(|e| TokenError::Issue(e.to_string()))?,
        iat,
        exp: iat + TTL_MS / 1000,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&key(master)),
    )
    .map_err(|e| TokenError::Issue(e.to_string()))?;
    Ok((token, claims))
}

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.algorithms = vec![Algorithm::HS256];
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Time is checked in `verify` against the injected clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = 0;
    v
}

/// Checks a token's algorithm, signature (constant-time, in the library's HMAC verify),
/// issuer, audience and lifetime at `now_ms`, and returns its claims. The caller still checks
/// the user and the generation.
pub fn verify(master: &MasterKey, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Invalid);
    }
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(&key(master)),
        &validation(),
    )
    .map_err(|_| TokenError::Invalid)?;
    let c = data.claims;
    // The library checked both already; checked again so a change of its defaults cannot
    // loosen them.
    if data.header.alg != Algorithm::HS256 || c.iss != ISSUER || c.aud != AUDIENCE {
        return Err(TokenError::Invalid);
    }
    if c.iat.saturating_mul(1000) > now_ms.saturating_add(MAX_SKEW_MS) || c.exp <= c.iat {
        return Err(TokenError::Invalid);
    }
    if c.exp.saturating_mul(1000) <= now_ms {
        return Err(TokenError::Expired);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn master() -> MasterKey {
        MasterKey::from_hex(&hex::encode([9u8; 32])).unwrap()
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn round_trip_and_expiry_by_the_given_clock() {
        let m = master();
        let (t, c) = issue(&m, "usr_1", 3, NOW).unwrap();
        assert_eq!(c.exp - c.iat, 900);
        assert_eq!(verify(&m, &t, NOW).unwrap(), c);
        assert_eq!(verify(&m, &t, NOW + TTL_MS - 1000).unwrap().generation, 3);
        assert_eq!(verify(&m, &t, NOW + TTL_MS), Err(TokenError::Expired));
        // Issued in the future (by more than the skew allowance): refused.
        assert_eq!(
            verify(&m, &t, NOW - 2 * MINUTE_MS),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn another_key_alg_none_and_foreign_claims_are_refused() {
        let m = master();
        let (t, c) = issue(&m, "usr_1", 0, NOW).unwrap();
        let other = MasterKey::from_hex(&hex::encode([8u8; 32])).unwrap();
        assert_eq!(verify(&other, &t, NOW), Err(TokenError::Invalid));
        // alg none, unsigned.
        let body = t.split('.').nth(1).unwrap();
        let none = format!(
            "{}.{body}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
        );
        assert_eq!(verify(&m, &none, NOW), Err(TokenError::Invalid));
        // HS512 with the right key: still refused (only HS256).
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &c,
            &EncodingKey::from_secret(&key(&m)),
        )
        .unwrap();
        assert_eq!(verify(&m, &hs512, NOW), Err(TokenError::Invalid));
        // Right key, wrong audience or issuer.
        for claims in [
            Claims {
                aud: "someone-else".into(),
                ..c.clone()
            },
            Claims {
                iss: "someone-else".into(),
                ..c.clone()
            },
        ] {
            let t = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(&key(&m)),
            )
            .unwrap();
            assert_eq!(verify(&m, &t, NOW), Err(TokenError::Invalid));
        }
        // The master key itself does not sign tokens.
        let with_master = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(&[9u8; 32]),
        )
        .unwrap();
        assert_eq!(verify(&m, &with_master, NOW), Err(TokenError::Invalid));
        assert_eq!(verify(&m, "", NOW), Err(TokenError::Invalid));
        assert_eq!(verify(&m, "a.b.c", NOW), Err(TokenError::Invalid));
    }
}
