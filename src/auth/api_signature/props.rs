//! Property tests of the request signing: reading the two headers from arbitrary header
//! values, and verifying arbitrary signatures over arbitrary bodies.

use super::{MAX_CREDENTIAL_LEN, credentials};
use crate::crypto::verify_hmac_sha512_hex;
use crate::testing::cases;
use actix_web::http::header::HeaderValue;
use actix_web::test::TestRequest;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha512;

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Bytes a header value may carry on the wire (visible ASCII, space, tab, obs-text), mostly
/// short, sometimes past the length limit.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        6 => 0x21u8..0x7f,
        1 => Just(b' '),
        1 => Just(b'\t'),
        1 => 0x80u8..=0xff,
    ];
    prop_oneof![
        4 => prop::collection::vec(byte.clone(), 0..40),
        1 => prop::collection::vec(byte, 190..230),
        1 => "[0-9a-fA-F]{0,260}".prop_map(String::into_bytes),
    ]
}

/// What `credentials` must make of one header pair (primary name first, then its alias).
fn expected(primary: &Option<Vec<u8>>, alias: &Option<Vec<u8>>) -> Option<String> {
    // The first header present decides, even when its value is unusable.
    let raw = primary.as_ref().or(alias.as_ref())?;
    let text = std::str::from_utf8(raw).ok()?;
    // `HeaderValue::to_str` accepts visible ASCII, space and tab only.
    if !text
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return None;
    }
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn credentials_follow_the_header_rules(
        key in proptest::option::of(header_bytes()),
        key_alias in proptest::option::of(header_bytes()),
        sig in proptest::option::of(header_bytes()),
        sig_alias in proptest::option::of(header_bytes()),
    ) {
        let mut req = TestRequest::default();
        for (name, value) in [
            ("X-Processing-Key", &key),
            ("X-Process-Key", &key_alias),
            ("X-Processing-Signature", &sig),
            ("X-Process-Signature", &sig_alias),
        ] {
            if let Some(v) = value {
                req = req.insert_header((name, HeaderValue::from_bytes(v).unwrap()));
            }
        }
        let req = req.to_http_request();
        let want = match (expected(&key, &key_alias), expected(&sig, &sig_alias)) {
            (Some(k), Some(s)) if k.len() <= MAX_CREDENTIAL_LEN && s.len() <= MAX_CREDENTIAL_LEN => {
                Some((k, s))
            }
            _ => None,
        };
        let got = credentials(&req).map(|(k, s)| (k.to_string(), s.to_string()));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn the_right_signature_verifies_in_any_case(
        secret in prop::collection::vec(any::<u8>(), 1..200),
        body in prop::collection::vec(any::<u8>(), 0..2048),
        upper in prop::collection::vec(any::<bool>(), 128),
    ) {
        let sig = sign(&secret, &body);
        prop_assert!(verify_hmac_sha512_hex(&secret, &body, &sig));
        let mixed: String = sig
            .chars()
            .zip(&upper)
            .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
            .collect();
        prop_assert!(verify_hmac_sha512_hex(&secret, &body, &mixed));
        // Another body, another secret: refused.
        let mut other = body.clone();
        other.push(0);
        prop_assert!(!verify_hmac_sha512_hex(&secret, &other, &sig));
        let mut wrong_secret = secret.clone();
        wrong_secret[0] ^= 1;
        prop_assert!(!verify_hmac_sha512_hex(&wrong_secret, &body, &sig));
    }

    #[test]
    fn a_damaged_signature_never_verifies(
        secret in prop::collection::vec(any::<u8>(), 1..100),
        body in prop::collection::vec(any::<u8>(), 0..512),
        at in 0usize..128,
        digit in 1u8..16,
        cut in 0usize..128,
        extra in "[0-9a-fA-F]{1,64}",
    ) {
        let sig = sign(&secret, &body);
        // One hex digit changed to another value.
        let mut changed = sig.clone().into_bytes();
        let old = u8::from_str_radix(&sig[at..=at], 16).unwrap();
        changed[at] = char::from_digit(u32::from((old + digit) % 16), 16).unwrap() as u8;
        let changed = String::from_utf8(changed).unwrap();
        prop_assert!(!verify_hmac_sha512_hex(&secret, &body, &changed), "{}", changed);
        // Truncated (odd lengths included) or extended.
        prop_assert!(!verify_hmac_sha512_hex(&secret, &body, &sig[..cut]));
        let extended = format!("{sig}{extra}");
        prop_assert!(!verify_hmac_sha512_hex(&secret, &body, &extended));
    }

    #[test]
    fn arbitrary_signatures_are_refused_without_panicking(
        body in prop::collection::vec(any::<u8>(), 0..256),
        sig in prop_oneof![
            any::<String>(),
            "[0-9a-fA-F]{0,300}",
            "\\PC{0,10}[0-9a-f]{128}\\PC{0,10}",
            "[0-9a-f٠-٩０-９]{120,136}",
        ],
    ) {
        prop_assert!(!verify_hmac_sha512_hex(b"secret", &body, &sig));
    }
}
