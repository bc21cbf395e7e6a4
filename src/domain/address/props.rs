//! Property tests of address validation: no input panics on any network; generated valid
//! addresses are accepted as given; one substituted character in a checksummed address is
//! refused.

use super::*;
use crate::testing::cases;
use proptest::prelude::*;

const NETWORKS: [Network; 6] = [
    Network::Bitcoin,
    Network::Litecoin,
    Network::Ethereum,
    Network::Tron,
    Network::Ton,
    Network::Sandbox,
];

/// The EIP-55 spelling of a 20-byte account (the reference algorithm, written out again).
fn eip55(account: &[u8]) -> String {
    let lower = hex::encode(account);
    let hash = Keccak256::digest(lower.as_bytes());
    let spelled: String = lower
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let nibble = if i % 2 == 0 {
                hash[i / 2] >> 4
            } else {
                hash[i / 2] & 0x0f
            };
            if nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    format!("0x{spelled}")
}

/// Whether `s` is an Ethereum address by the reference rules: single-case hex, or mixed case
/// spelled exactly as EIP-55 spells it.
fn eth_reference(s: &str) -> bool {
    let Some(hex) = s.strip_prefix("0x") else {
        return false;
    };
    let Ok(account) = hex::decode(hex) else {
        return false;
    };
    let single_case = !hex.bytes().any(|b| b.is_ascii_lowercase())
        || !hex.bytes().any(|b| b.is_ascii_uppercase());
    account.len() == 20 && (single_case || eip55(&account) == s)
}

fn base58check(versions: &'static [u8]) -> BoxedStrategy<String> {
    (proptest::sample::select(versions), any::<[u8; 20]>())
        .prop_map(|(v, payload)| bs58::encode(payload).with_check_version(v).into_string())
        .boxed()
}

fn segwit(hrps: &'static [Hrp]) -> BoxedStrategy<String> {
    let program = prop_oneof![
        prop::collection::vec(any::<u8>(), 20..=20),
        prop::collection::vec(any::<u8>(), 32..=32),
    ];
    (
        proptest::sample::select(hrps),
        any::<bool>(),
        program,
        any::<bool>(),
    )
        .prop_map(|(hrp, v1, program, upper)| {
            let s = if v1 && program.len() == 32 {
                bech32::segwit::encode_v1(hrp, &program)
            } else {
                bech32::segwit::encode_v0(hrp, &program)
            };
            let s = s.unwrap();
            if upper { s.to_ascii_uppercase() } else { s }
        })
        .boxed()
}

fn ton_friendly() -> BoxedStrategy<String> {
    let tag = proptest::sample::select(vec![0x11u8, 0x51, 0x91, 0xd1]);
    let workchain = proptest::sample::select(vec![0x00u8, 0xff]);
    (tag, workchain, any::<[u8; 32]>(), any::<bool>())
        .prop_map(|(tag, workchain, account, url_safe)| {
            let mut full = vec![tag, workchain];
            full.extend_from_slice(&account);
            full.extend_from_slice(&TON_CRC.checksum(&full).to_be_bytes());
            if url_safe {
                URL_SAFE.encode(&full)
            } else {
                STANDARD.encode(&full)
            }
        })
        .boxed()
}

/// Valid addresses of `network` that carry a checksum.
pub(crate) fn checksummed(network: Network) -> BoxedStrategy<String> {
    match network {
        Network::Bitcoin => {
            prop_oneof![base58check(BITCOIN.versions), segwit(BITCOIN.hrps)].boxed()
        }
        Network::Litecoin => {
            prop_oneof![base58check(LITECOIN.versions), segwit(LITECOIN.hrps)].boxed()
        }
        Network::Ethereum => any::<[u8; 20]>()
            .prop_map(|a| eip55(&a))
            .prop_filter("mixed case", |s| !eth_reference_single_case(s))
            .boxed(),
        Network::Tron => base58check(&[0x41]),
        Network::Ton => ton_friendly(),
        Network::Sandbox => panic!("sandbox addresses carry no checksum"),
    }
}

fn eth_reference_single_case(s: &str) -> bool {
    let hex = &s[2..];
    !hex.bytes().any(|b| b.is_ascii_lowercase()) || !hex.bytes().any(|b| b.is_ascii_uppercase())
}

/// Any valid address of `network`, with or without a checksum.
pub(crate) fn valid(network: Network) -> BoxedStrategy<String> {
    match network {
        Network::Ethereum => prop_oneof![
            checksummed(network),
            any::<[u8; 20]>().prop_map(|a| format!("0x{}", hex::encode(a))),
            any::<[u8; 20]>().prop_map(|a| format!("0x{}", hex::encode_upper(a))),
        ]
        .boxed(),
        Network::Ton => prop_oneof![
            checksummed(network),
            ("(0|-1)", "[0-9a-fA-F]{64}").prop_map(|(w, h)| format!("{w}:{h}")),
        ]
        .boxed(),
        Network::Sandbox => "[A-Za-z0-9_-]{4,64}".boxed(),
        other => checksummed(other),
    }
}

fn network() -> impl Strategy<Value = Network> {
    proptest::sample::select(NETWORKS.to_vec())
}

fn checksummed_address() -> impl Strategy<Value = (Network, String)> {
    proptest::sample::select(NETWORKS[..5].to_vec()).prop_flat_map(|n| (Just(n), checksummed(n)))
}

fn valid_address() -> impl Strategy<Value = (Network, String)> {
    network().prop_flat_map(|n| (Just(n), valid(n)))
}

/// Replacement characters: mostly from the address alphabets, sometimes anything.
fn replacement() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::sample::select(
            "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/-_:"
                .chars()
                .collect::<Vec<_>>()
        ),
        1 => any::<char>(),
    ]
}

/// Address-shaped junk: near misses of every format, and anything at all.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "(bc|tb|bcrt|ltc|tltc|BC|TB|LTC)1[qpzry9x8gf2tvdw0s3jn54khce6mua7lQPZ]{0,90}",
        "[1-9A-HJ-NP-Za-km-z]{0,60}",
        "0x[0-9a-fA-FgG]{36,44}",
        "(0|-1|1|-|)?:[0-9a-fA-F]{60,68}",
        "[A-Za-z0-9+/_=-]{44,52}",
        "[A-Za-z0-9_.-]{0,70}",
        "\\PC{0,130}",
    ]
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn no_input_panics_and_accepted_text_is_kept(n in network(), s in junk()) {
        if let Ok(a) = Address::parse(n, &s) {
            prop_assert_eq!(a.as_str(), s.as_str());
            prop_assert_eq!(a.network(), n);
            prop_assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
            prop_assert!(s.chars().count() <= MAX_LEN);
        }
        if n == Network::Ethereum && s.starts_with("0x") {
            prop_assert_eq!(Address::parse(n, &s).is_ok(), eth_reference(&s), "{}", s);
        }
        if n == Network::Sandbox {
            let rule = (4..=64).contains(&s.len())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            prop_assert_eq!(Address::parse(n, &s).is_ok(), rule, "{}", s);
        }
    }

    #[test]
    fn valid_addresses_are_accepted_as_given((n, s) in valid_address()) {
        let a = Address::parse(n, &s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(a.as_str(), s.as_str());
        // Any other network's check may refuse it, but never panics.
        for other in NETWORKS {
            let _ = Address::parse(other, &s);
        }
    }

    #[test]
    fn one_substituted_character_is_refused(
        (n, s) in checksummed_address(),
        at in any::<prop::sample::Index>(),
        with in replacement(),
    ) {
        let mut chars: Vec<char> = s.chars().collect();
        let i = at.index(chars.len());
        let was = chars[i];
        prop_assume!(was != with);
        // The same TON address in the other base64 alphabet is not a typo.
        let same_digit = matches!((was, with), ('+', '-') | ('-', '+') | ('/', '_') | ('_', '/'));
        prop_assume!(!(n == Network::Ton && same_digit));
        chars[i] = with;
        let mutated: String = chars.into_iter().collect();
        let got = Address::parse(n, &mutated);
        if n == Network::Ethereum {
            // EIP-55 checks the case of the letters: a changed case is always caught; a
            // changed digit only as far as its ~15 check bits go, exactly as the reference says.
            if was.eq_ignore_ascii_case(&with) && !eth_reference_single_case(&mutated) {
                prop_assert!(got.is_err(), "{} -> {} accepted", s, mutated);
            }
            prop_assert_eq!(got.is_ok(), eth_reference(&mutated), "{} -> {}", s, mutated);
        } else {
            prop_assert!(got.is_err(), "{:?}: {} -> {} accepted", n, s, mutated);
        }
    }

    #[test]
    fn edited_addresses_never_panic(
        (n, s) in valid_address(),
        at in any::<prop::sample::Index>(),
        edit in 0u8..4,
        with in replacement(),
    ) {
        let mut chars: Vec<char> = s.chars().collect();
        let i = at.index(chars.len());
        match edit {
            0 => { chars.remove(i); }
            1 => chars.insert(i, with),
            2 => {
                let next = (i + 1) % chars.len();
                chars.swap(i, next);
            }
            _ => chars.truncate(i),
        }
        let edited: String = chars.into_iter().collect();
        for other in NETWORKS {
            if let Ok(a) = Address::parse(other, &edited) {
                prop_assert_eq!(a.as_str(), edited.as_str());
            }
        }
        // A deleted or inserted character changes the length: a checksummed form refuses it.
        if edit < 2 && n != Network::Sandbox && !s.contains(':') {
            prop_assert!(Address::parse(n, &edited).is_err(), "{} -> {}", s, edited);
        }
    }
}
