//! Passwords: argon2id with the RustCrypto defaults (m = 19456 KiB, t = 2, p = 1), hashed off
//! the async threads. 12 to 128 characters, no composition rules; the most common passwords,
//! one repeated character, and the account's own email are refused.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

const COMMON: &str = include_str!("common_passwords.txt");
pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 128;

/// Why a new password is not acceptable, in words for the form.
pub fn check_policy(password: &str, email: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters"));
    }
    if n > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters"));
    }
    let lower = password.to_lowercase();
    if COMMON.lines().any(|c| c.eq_ignore_ascii_case(password)) {
        return Err("is one of the most common passwords; choose another".into());
    }
    let mut chars = password.chars();
    if let Some(first) = chars.next() {
        if chars.all(|c| c == first) {
            return Err("must not be one character repeated".into());
        }
    }
    if lower == email.to_lowercase()
        || lower == email.split('@').next().unwrap_or("").to_lowercase()
    {
        return Err("must not be your email address".into());
    }
    Ok(())
}

fn argon2() -> Argon2<'static> {
    // Params::DEFAULT is m=19456, t=2, p=1 (OWASP's recommendation for argon2id).
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// How many argon2 computations run at once in this process. Each takes 19 MiB and a core
/// for tens of milliseconds; a flood of sign-in attempts (unknown emails included, which
/// cost the same work) waits here for its turn instead of filling the blocking thread pool,
/// which would allow hundreds at once, and the memory with them.
const ARGON2_AT_ONCE: usize = 4;
static ARGON2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ARGON2_AT_ONCE);

/// Hashes a new password (PHC string).
pub async fn hash(password: SecretString) -> Result<String, HashError> {
    // The semaphore is never closed, so a permit always comes.
    let _slot = ARGON2_SLOTS.acquire().await.ok();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    })
    .await
    .map_err(|e| HashError(e.to_string()))?
}

/// A fixed hash to verify against when there is no user, so that an unknown email costs the
/// same time as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Z3OE6V4c6yBZfJ2bh6z0f2Dpqv2tGk0Yw6VcZ5yF3c";

/// Checks a password against a stored hash (or against the dummy when `hash` is None, which
/// always fails). Constant work either way.
pub async fn verify(password: SecretString, hash: Option<String>) -> bool {
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
    let _slot = ARGON2_SLOTS.acquire().await.ok();
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                argon2()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    ok && known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn argon2_waits_for_a_free_slot() {
        let held = ARGON2_SLOTS
            .acquire_many(ARGON2_AT_ONCE as u32)
            .await
            .expect("permits");
        let check = tokio::spawn(verify("pw".to_string().into(), None));
        // With every slot taken it cannot even start.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!check.is_finished());
        drop(held);
        assert!(!check.await.expect("verify"));
    }

    #[test]
    fn policy() {
        assert!(check_policy("short", "a@b.c").is_err());
        assert!(check_policy(&"x".repeat(129), "a@b.c").is_err());
        assert!(check_policy("password1234", "a@b.c").is_err());
        assert!(check_policy("PASSWORD1234", "a@b.c").is_err());
        assert!(check_policy("zzzzzzzzzzzzzz", "a@b.c").is_err());
        assert!(check_policy("alice.smith@acme.test", "Alice.Smith@acme.test").is_err());
        assert!(check_policy("correct horse battery", "a@b.c").is_ok());
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(SecretString::from("correct horse battery"), Some(h.clone())).await);
        assert!(!verify(SecretString::from("correct horse batterx"), Some(h)).await);
        assert!(!verify(SecretString::from("anything"), None).await);
    }

    /// An unknown email must cost the same argon2 work as a wrong password: the dummy hash
    /// parses, with the algorithm, version, parameters and sizes the real hasher writes, and
    /// verifying against it gets as far as comparing the output.
    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(DUMMY_HASH).expect("the dummy hash parses");
        let salt = SaltString::generate(&mut OsRng);
        let real = argon2()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(
            (dummy.algorithm, dummy.version, &dummy.params),
            (real.algorithm, real.version, &real.params)
        );
        assert_eq!(
            dummy.salt.map(|s| s.as_str().len()),
            real.salt.map(|s| s.as_str().len())
        );
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        assert_eq!(
            argon2().verify_password(b"anything", &dummy),
            Err(argon2::password_hash::Error::Password)
        );
    }
}
