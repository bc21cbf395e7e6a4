//! The seeds' request signing: `X-Processing-Key` names the API key and
//! `X-Processing-Signature` is the lowercase hex HMAC-SHA512 of the raw body with its secret
//! (`X-Process-Key` / `X-Process-Signature` accepted too). The signature of a GET is that of
//! the empty body.

use crate::crypto::{sha256_hex, verify_hmac_sha512_hex};
use crate::db::projects::{self, Project};
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::HttpRequest;

/// An authenticated merchant request.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub key_id: String,
    pub can_withdraw: bool,
    pub project: Project,
}

impl ApiCaller {
    /// 403 for keys without withdrawal rights.
    pub fn require_withdraw(&self) -> Result<(), ApiError> {
        if self.can_withdraw {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

fn header<'a>(req: &'a HttpRequest, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| req.headers().get(*n))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A signature over a known dummy secret, so an unknown key costs the same HMAC as a known
/// one and timing does not tell which keys exist.
const DUMMY_SECRET: &[u8] = b"countersign-dummy-secret-for-constant-work";

/// Longer header values are refused before any lookup or HMAC.
const MAX_CREDENTIAL_LEN: usize = 200;

/// The API key and signature the request carries (trimmed, non-empty, at most
/// [`MAX_CREDENTIAL_LEN`] bytes each); `None` when either is missing or unusable.
pub fn credentials(req: &HttpRequest) -> Option<(&str, &str)> {
    let key = header(req, &["X-Processing-Key", "X-Process-Key"])?;
    let sig = header(req, &["X-Processing-Signature", "X-Process-Signature"])?;
    (key.len() <= MAX_CREDENTIAL_LEN && sig.len() <= MAX_CREDENTIAL_LEN).then_some((key, sig))
}

pub async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<ApiCaller, ApiError> {
    let Some((key, sig)) = credentials(req) else {
        return Err(ApiError::Unauthorized);
    };
    let found = projects::find_api_key(&state.db, &sha256_hex(key.as_bytes())).await?;
    let Some(found) = found else {
        let _ = verify_hmac_sha512_hex(DUMMY_SECRET, body, sig);
        return Err(ApiError::Unauthorized);
    };
    let secret = state
        .master_key
        .decrypt(&found.secret_enc)
        .map_err(|e| ApiError::internal(format!("API secret for key {}: {e}", found.key_id)))?;
    if !verify_hmac_sha512_hex(secret.as_bytes(), body, sig) {
        return Err(ApiError::Unauthorized);
    }
    Ok(ApiCaller {
        key_id: found.key_id,
        can_withdraw: found.can_withdraw,
        project: found.project,
    })
}

#[cfg(test)]
mod props;
