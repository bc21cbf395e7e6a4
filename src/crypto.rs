//! Secrets at rest, random tokens and message authentication.
//!
//! API secrets must stay usable (HMAC verification needs them), so they are encrypted with
//! AES-256-GCM under the master key rather than hashed. Public tokens and key ids are stored
//! only as SHA-256 hashes.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the master key must be 64 hex characters (32 bytes)")]
    BadMasterKey,
    #[error("stored secret cannot be decrypted with this master key")]
    Decrypt,
    #[error("the system random number generator failed")]
    Random,
}

/// The master key (`COUNTERSIGN_SECRET_KEY`). Debug output never shows it.
///
/// It encrypts secrets at rest and is the root of purpose-bound keys ([`MasterKey::derive`]):
/// no other use ever sees the master key itself.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// HMAC-SHA256 keyed with the master key, for derivations.
    kdf: HmacSha256,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_hex(s: &str) -> Result<MasterKey, CryptoError> {
        let bytes = hex::decode(s.trim()).map_err(|_| CryptoError::BadMasterKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::BadMasterKey)?;
        let kdf =
            <HmacSha256 as Mac>::new_from_slice(&bytes).map_err(|_| CryptoError::BadMasterKey)?;
        Ok(MasterKey { cipher, kdf })
    }

    /// A 32-byte key for one purpose, derived from the master key: HMAC-SHA256(master key,
    /// "countersign/derive/v1/" ‖ label), which is HKDF-Expand's first block for a uniformly
    /// random key. Distinct labels give independent keys; none of them reveals the master key.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = self.kdf.clone();
        mac.update(b"countersign/derive/v1/");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A fresh random key, hex-encoded, for first start-up.
    pub fn generate_hex() -> Result<String, CryptoError> {
        Ok(hex::encode(random_bytes::<32>()?))
    }

    /// `v1:` + base64(nonce ‖ ciphertext).
    pub fn encrypt(&self, plaintext: &str) -> Result<String, CryptoError> {
        let nonce_bytes = random_bytes::<12>()?;
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), plaintext.as_bytes())
            .map_err(|_| CryptoError::Decrypt)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("v1:{}", STANDARD.encode(out)))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let raw = stored
            .strip_prefix("v1:")
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|r| r.len() > 12)
            .ok_or(CryptoError::Decrypt)?;
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Decrypt)
    }
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|_| CryptoError::Random)?;
    Ok(buf)
}

/// A URL-safe random token with `bytes * 8` bits of entropy.
pub fn random_token<const N: usize>() -> Result<String, CryptoError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<N>()?))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

type HmacSha512 = Hmac<Sha512>;
type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex HMAC-SHA512: the seeds' `X-Processing-Signature`.
pub fn hmac_sha512_hex(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    match <HmacSha512 as Mac>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Checks a hex HMAC-SHA512 in constant time. Upper-case hex is accepted too.
pub fn verify_hmac_sha512_hex(secret: &[u8], body: &[u8], signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = <HmacSha512 as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Standard Webhooks signature: `v1,` + base64(HMAC-SHA256(secret, "id.timestamp.body")),
/// where the secret is the base64 part of `whsec_...`.
pub fn standard_webhook_signature(
    whsec: &str,
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> Result<String, CryptoError> {
    let key = STANDARD
        .decode(whsec.strip_prefix("whsec_").unwrap_or(whsec))
        .map_err(|_| CryptoError::Decrypt)?;
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).map_err(|_| CryptoError::Decrypt)?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// A new Standard Webhooks secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_webhook_secret() -> Result<String, CryptoError> {
    Ok(format!("whsec_{}", STANDARD.encode(random_bytes::<32>()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_round_trip_and_wrong_key() {
        let k = MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap();
        let other = MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap();
        let stored = k.encrypt("s3cret").unwrap();
        assert!(!stored.contains("s3cret"));
        assert_eq!(k.decrypt(&stored).unwrap(), "s3cret");
        assert!(other.decrypt(&stored).is_err());
        assert!(MasterKey::from_hex("abcd").is_err());
    }

    #[test]
    fn derived_keys_are_bound_to_their_label_and_key() {
        let hex = MasterKey::generate_hex().unwrap();
        let k = MasterKey::from_hex(&hex).unwrap();
        let again = MasterKey::from_hex(&hex).unwrap();
        let other = MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap();
        assert_eq!(k.derive("a"), again.derive("a"));
        assert_ne!(k.derive("a"), k.derive("b"));
        assert_ne!(k.derive("a"), other.derive("a"));
        assert_ne!(k.derive("a").to_vec(), hex::decode(&hex).unwrap());
    }

    #[test]
    fn hmac_sha512_known_answer() {
        // RFC 4231 test case 2.
        let sig = hmac_sha512_hex(b"Jefe", b"what do ya want for nothing?");
        assert!(
            sig.starts_with("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554")
        );
        assert!(verify_hmac_sha512_hex(
            b"Jefe",
            b"what do ya want for nothing?",
            &sig
        ));
        assert!(verify_hmac_sha512_hex(
            b"Jefe",
            b"what do ya want for nothing?",
            &sig.to_uppercase()
        ));
        assert!(!verify_hmac_sha512_hex(
            b"Jefe",
            b"what do ya want for nothing!",
            &sig
        ));
        assert!(!verify_hmac_sha512_hex(b"Jefe", b"x", "not hex"));
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification's reference libraries.
        let sig = standard_webhook_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
