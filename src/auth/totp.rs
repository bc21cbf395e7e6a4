//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of drift either way) via totp-rs.
//! totp-rs only says which step a code matched; the replay guard (accept a step only if it is
//! later than the last accepted one) is a conditional write in `db::users::accept_totp_step`.

use totp_rs::{Algorithm, Builder, Totp};

pub const ISSUER: &str = "Countersign";

#[derive(Debug, thiserror::Error)]
#[error("TOTP: {0}")]
pub struct TotpError(String);

/// A new 160-bit secret.
pub fn new_secret() -> Result<Vec<u8>, crate::crypto::CryptoError> {
    Ok(crate::crypto::random_bytes::<20>()?.to_vec())
}

fn build(secret: &[u8], account: &str) -> Result<Totp, TotpError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| TotpError(e.to_string()))
}

/// The step a code matches at `now_ms`, if any. Codes with spaces ("123 456") are accepted.
pub fn matching_step(secret: &[u8], code: &str, now_ms: i64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = build(secret, "user").ok()?;
    totp.check(&code, u64::try_from(now_ms / 1000).ok()?)
}

/// The code for `now_ms` (the demo's console helper and tests use it).
pub fn code_at(secret: &[u8], now_ms: i64) -> Result<String, TotpError> {
    let totp = build(secret, "user")?;
    Ok(totp
        .generate(u64::try_from(now_ms / 1000).unwrap_or(0))
        .to_string())
}

pub fn base32(secret: &[u8]) -> String {
    totp_rs::Secret::from(secret.to_vec()).to_base32()
}

pub fn from_base32(s: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::try_from_base32(s)
        .ok()
        .map(|s| s.as_ref().to_vec())
}

/// The `otpauth://` URL an authenticator app reads.
pub fn otpauth_url(secret: &[u8], account: &str) -> Result<String, TotpError> {
    build(secret, account)?
        .to_url()
        .map_err(|e| TotpError(e.to_string()))
}

/// The enrollment QR code as a `data:` URI (PNG), rendered locally.
pub fn qr_data_uri(secret: &[u8], account: &str) -> Result<String, TotpError> {
    let b64 = build(secret, account)?
        .to_qr_base64()
        .map_err(|e| TotpError(e.to_string()))?;
    Ok(format!("data:image/png;base64,{b64}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits) -> last 6 digits 287082.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59_000).unwrap(), "287082");
        assert_eq!(matching_step(secret, "287082", 59_000), Some(1));
        // One step of drift either way, not two.
        assert_eq!(matching_step(secret, "287082", 89_000), Some(1));
        assert_eq!(matching_step(secret, "287082", 119_000), None);
        assert_eq!(matching_step(secret, "287 082", 59_000), Some(1));
        assert_eq!(matching_step(secret, "28708", 59_000), None);
        let b32 = base32(secret);
        assert_eq!(from_base32(&b32).unwrap(), secret.to_vec());
    }
}
