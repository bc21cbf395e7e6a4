//! Destination addresses. A withdrawal only ever carries an [`Address`] that was checked against
//! its network's real encoding and checksum, so a typo is refused before anyone approves it.

use crate::domain::money::Network;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use bech32::Hrp;
use sha3::{Digest, Keccak256};

/// Generous bound for every supported network; anything longer is junk, not an address.
const MAX_LEN: usize = 128;

/// Why an address was refused. Messages are predicates ("is empty") so callers can prefix the
/// subject, e.g. `format!("destination address {err}")`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("is empty")]
    Empty,
    #[error("is longer than 128 characters")]
    TooLong,
    /// Never trimmed: a pasted address with stray whitespace is refused, not silently fixed.
    #[error("contains whitespace or control characters")]
    Whitespace,
    #[error("is not a valid {} address: {reason}", .network.name())]
    Invalid {
        network: Network,
        reason: &'static str,
    },
}

/// A validated destination address (parse, don't validate). Keeps the address exactly as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    network: Network,
    text: String,
}

impl Address {
    pub fn parse(network: Network, s: &str) -> Result<Address, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AddressError::Whitespace);
        }
        if s.chars().count() > MAX_LEN {
            return Err(AddressError::TooLong);
        }
        let checked = match network {
            Network::Bitcoin => check_utxo(&BITCOIN, s),
            Network::Litecoin => check_utxo(&LITECOIN, s),
            Network::Ethereum => check_ethereum(s),
            Network::Tron => check_tron(s),
            Network::Ton => check_ton(s),
            Network::Sandbox => check_sandbox(s),
        };
        checked.map_err(|reason| AddressError::Invalid { network, reason })?;
        Ok(Address {
            network,
            text: s.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn network(&self) -> Network {
        self.network
    }
}

type Check = Result<(), &'static str>;

/// The accepted segwit HRPs and base58check version bytes of a Bitcoin-style chain.
struct Utxo {
    hrps: &'static [Hrp],
    versions: &'static [u8],
}

const BITCOIN: Utxo = Utxo {
    hrps: &[bech32::hrp::BC, bech32::hrp::TB, bech32::hrp::BCRT],
    versions: &[0x00, 0x05, 0x6f, 0xc4],
};

const LITECOIN: Utxo = Utxo {
    hrps: &[Hrp::parse_unchecked("ltc"), Hrp::parse_unchecked("tltc")],
    versions: &[0x30, 0x32, 0x05, 0x6f, 0x3a],
};

/// Prefixes that mark a string as segwit, so its bech32 error is reported instead of a
/// misleading base58 one, and another chain's segwit address reads as "wrong network".
const SEGWIT_PREFIXES: [&str; 5] = ["bc1", "tb1", "bcrt1", "ltc1", "tltc1"];

fn check_utxo(chain: &Utxo, s: &str) -> Check {
    let lower = s.to_ascii_lowercase();
    if !SEGWIT_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return check_base58(s, chain.versions);
    }
    // `segwit::decode` enforces bech32 for v0 and bech32m for v1+, program lengths and one case.
    match bech32::segwit::decode(s) {
        Ok((hrp, _, _)) if chain.hrps.contains(&hrp) => Ok(()),
        Ok(_) => Err("segwit prefix belongs to another network"),
        Err(e) => Err(segwit_reason(&e.0)),
    }
}

fn segwit_reason(e: &bech32::primitives::decode::SegwitHrpstringError) -> &'static str {
    use bech32::primitives::decode::{
        CharError, SegwitHrpstringError as E, UncheckedHrpstringError,
    };
    match e {
        E::Checksum(_) => "bad checksum",
        E::Unchecked(UncheckedHrpstringError::Char(CharError::MixedCase)) => "mixed case",
        E::Unchecked(UncheckedHrpstringError::Char(CharError::InvalidChar(_))) => {
            "invalid bech32 character"
        }
        E::InvalidWitnessVersion(_) => "invalid witness version",
        E::WitnessLength(_) | E::Padding(_) => "invalid witness program",
        _ => "malformed bech32 address",
    }
}

/// Decodes base58check (checksum verified by `bs58`) and requires a 21-byte payload whose first
/// byte is one of `versions`.
fn check_base58(s: &str, versions: &[u8]) -> Check {
    use bs58::decode::Error as B;
    let payload = bs58::decode(s)
        .with_check(None)
        .into_vec()
        .map_err(|e| match e {
            B::InvalidChecksum { .. } => "bad checksum",
            B::InvalidCharacter { .. } | B::NonAsciiCharacter { .. } => "invalid base58 character",
            _ => "malformed base58check",
        })?;
    match payload.as_slice() {
        [version, ..] if payload.len() == 21 && versions.contains(version) => Ok(()),
        [_, ..] if payload.len() == 21 => Err("version byte belongs to another network"),
        _ => Err("wrong payload length"),
    }
}

/// ETH and ERC-20: `0x` + 40 hex. Single-case hex carries no checksum; mixed case is EIP-55 and
/// must match, since a wrong mix means the address was mangled.
fn check_ethereum(s: &str) -> Check {
    let hex = s.strip_prefix("0x").ok_or("must start with 0x")?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be 0x followed by 40 hex digits");
    }
    let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    if !(has_lower && has_upper) {
        return Ok(());
    }
    let hash = Keccak256::digest(hex.to_ascii_lowercase().as_bytes());
    let nibbles = hash.iter().flat_map(|b| [b >> 4, b & 0x0f]);
    let mut letters = hex
        .bytes()
        .zip(nibbles)
        .filter(|(c, _)| c.is_ascii_alphabetic());
    match letters.all(|(c, n)| c.is_ascii_uppercase() == (n >= 8)) {
        true => Ok(()),
        false => Err("bad EIP-55 checksum"),
    }
}

/// TRX and TRC-20: base58check with version byte 0x41 (the leading `T`).
fn check_tron(s: &str) -> Check {
    check_base58(s, &[0x41])
}

const TON_CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// TON raw form `wc:hex`, or the 48-char user-friendly form: tag, workchain, 32-byte account id
/// and a CRC16-XMODEM over the first 34 bytes.
fn check_ton(s: &str) -> Check {
    if let Some((workchain, hex)) = s.split_once(':') {
        if workchain != "0" && workchain != "-1" {
            return Err("raw address workchain must be 0 or -1");
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("raw address must have 64 hex digits after the workchain");
        }
        return Ok(());
    }
    if s.len() != 48 {
        return Err("must be a 48-character user-friendly or a raw workchain:hex address");
    }
    let url_safe = s.contains(['-', '_']);
    if url_safe && s.contains(['+', '/']) {
        return Err("mixes base64 and base64url characters");
    }
    let engine = if url_safe { &URL_SAFE } else { &STANDARD };
    let bytes = engine.decode(s).map_err(|_| "invalid base64")?;
    if bytes.len() != 36 {
        return Err("wrong decoded length");
    }
    let (body, crc) = bytes.split_at(34);
    if crc != TON_CRC.checksum(body).to_be_bytes() {
        return Err("bad checksum");
    }
    let [tag, workchain, ..] = *body else {
        return Err("wrong decoded length");
    };
    // 0x11 bounceable, 0x51 non-bounceable; 0x80 marks test-only.
    if !matches!(tag & 0x7f, 0x11 | 0x51) {
        return Err("unknown address tag");
    }
    if !matches!(workchain, 0x00 | 0xff) {
        return Err("workchain must be 0 or -1");
    }
    Ok(())
}

/// Sandbox addresses are opaque test identifiers; just keep them sane.
fn check_sandbox(s: &str) -> Check {
    if !(4..=64).contains(&s.len()) {
        return Err("must be 4 to 64 characters");
    }
    match s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        true => Ok(()),
        false => Err("only letters, digits, '_' and '-' are allowed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Network::*;

    const ETH: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    const TRON: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
    const TON: &str = "EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N";
    const LTC: &str = "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9";
    const LTC_SEGWIT: &str = "ltc1qg42tkwuuxefutzxezdkdel39gfstuap288mfea";
    const BTC: &str = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa";
    const BTC_SEGWIT: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
    const SUM: &str = "bad checksum";
    const VER: &str = "version byte belongs to another network";
    const HRP: &str = "segwit prefix belongs to another network";
    const B58: &str = "invalid base58 character";

    fn ok(network: Network, s: &str) {
        let a = Address::parse(network, s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!((a.as_str(), a.network()), (s, network));
    }

    fn rejects(network: Network, cases: &[(&str, &str)]) {
        for (s, want) in cases {
            match Address::parse(network, s) {
                Err(AddressError::Invalid { network: n, reason }) if n == network => {
                    assert!(reason.starts_with(want), "{s}: {reason}")
                }
                other => panic!("{s}: expected Invalid, got {other:?}"),
            }
        }
    }

    /// Flips the case (letters) or value (digits) of the character at `i`.
    fn flip(s: &str, i: usize) -> String {
        let mut b = s.as_bytes().to_vec();
        b[i] = match b[i] {
            c if c.is_ascii_alphabetic() => c ^ 0x20,
            b'9' => b'8',
            c => c + 1,
        };
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn bitcoin() {
        for s in [
            "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm",
            "tb1qj0d4rsczat6dx3yy065g98rrz5hewkrdcrz7je",
            BTC_SEGWIT,
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", // BIP-173: uppercase is allowed
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", // BIP-350 taproot
            "bc1py3m7vwnghyne9gnvcjw82j7gqt2rafgdmlmwmqnn3hvcmdm09rjqcgrtxs",
            BTC,
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
            "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn",
            "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc",
        ] {
            ok(Bitcoin, s);
        }
        let regtest = bech32::segwit::encode_v0(bech32::hrp::BCRT, &[7; 20]).unwrap();
        ok(Bitcoin, &regtest);
        // BIP-350 vectors: v0 with a bech32m checksum, v1 with bech32, v0 with a 16-byte program.
        let v0_bech32m = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh";
        let v1_bech32 = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd";
        let v0_short = "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P";
        let bad: &[(&str, &str)] = &[
            ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr", SUM),
            ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mcq", SUM),
            ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", SUM),
            (&flip(BTC, 10), SUM),
            (&flip(BTC_SEGWIT, 12), "mixed case"),
            (v0_bech32m, SUM),
            (v1_bech32, SUM),
            (v0_short, "invalid witness program"),
            ("bc1", "malformed bech32 address"),
            (LTC, VER),
            (TRON, VER),
            (LTC_SEGWIT, HRP),
            (ETH, B58),
            (TON, B58),
        ];
        rejects(Bitcoin, bad);
    }

    #[test]
    fn litecoin() {
        ok(Litecoin, LTC);
        ok(Litecoin, LTC_SEGWIT);
        for version in [0x30, 0x32, 0x05, 0x6f, 0x3a] {
            let b58 = bs58::encode([1; 20]).with_check_version(version);
            ok(Litecoin, &b58.into_string());
        }
        for hrp in ["ltc", "tltc"] {
            let hrp = Hrp::parse(hrp).unwrap();
            ok(Litecoin, &bech32::segwit::encode_v0(hrp, &[2; 20]).unwrap());
            ok(Litecoin, &bech32::segwit::encode_v1(hrp, &[3; 32]).unwrap());
        }
        let bad: &[(&str, &str)] = &[
            (&flip(LTC, 5), SUM),
            (&flip(LTC_SEGWIT, 6), SUM),
            (BTC, VER),
            (BTC_SEGWIT, HRP),
            (ETH, B58),
            (TRON, VER),
        ];
        rejects(Litecoin, bad);
    }

    #[test]
    fn ethereum() {
        ok(Ethereum, ETH);
        ok(Ethereum, &ETH.to_ascii_lowercase());
        ok(Ethereum, &format!("0x{}", ETH[2..].to_ascii_uppercase()));
        ok(Ethereum, "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"); // EIP-55 vector
        let (hex40, prefix) = ("must be 0x followed by 40 hex digits", "must start with 0x");
        let bad: &[(&str, &str)] = &[
            (&flip(ETH, 3), "bad EIP-55 checksum"), // 'a' -> 'A'
            (&flip(ETH, 4), "bad EIP-55 checksum"), // 'A' -> 'a'
            (&ETH[2..], prefix),
            (&ETH[..41], hex40),
            (&format!("{ETH}0"), hex40),
            ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg", hex40),
            (TRON, prefix),
            (BTC, prefix),
        ];
        rejects(Ethereum, bad);
    }

    #[test]
    fn tron() {
        ok(Tron, TRON);
        ok(Tron, &bs58::encode([0x41; 21]).with_check().into_string());
        let short = bs58::encode([0x41; 20]).with_check().into_string();
        let bad: &[(&str, &str)] = &[
            (&flip(TRON, 12), SUM),
            (&short, "wrong payload length"),
            (BTC, VER),
            (LTC, VER),
            (ETH, B58),
            (TON, B58),
        ];
        rejects(Tron, bad);
    }

    #[test]
    fn ton() {
        ok(Ton, TON);
        // The same account in raw form, then re-encoded friendly forms in both alphabets.
        let bytes = URL_SAFE.decode(TON).unwrap();
        ok(Ton, &format!("0:{}", hex::encode(&bytes[2..34])));
        ok(Ton, &format!("-1:{}", hex::encode_upper(&bytes[2..34])));
        let friendly = |tag: u8, workchain: u8, account: u8| {
            let mut full = vec![tag, workchain];
            full.extend_from_slice(&[account; 32]);
            full.extend_from_slice(&TON_CRC.checksum(&full).to_be_bytes());
            (STANDARD.encode(&full), URL_SAFE.encode(&full))
        };
        let (std, url) = friendly(0x51, 0xff, 0xfb); // 0xfb needs '+'/'/' vs '-'/'_'
        assert!(std.contains(['+', '/']) && url.contains(['-', '_']));
        ok(Ton, &std);
        ok(Ton, &url);
        ok(Ton, &friendly(0x91, 0, 7).0); // testnet-only bounceable
        let (raw, len) = ("raw address must have 64 hex", "must be a 48-character");
        let bad: &[(&str, &str)] = &[
            (&flip(TON, 20), SUM),
            (&format!("{}+{}", &url[..30], &url[31..]), "mixes base64"),
            (&friendly(0x12, 0, 7).0, "unknown address tag"),
            (&friendly(0x11, 5, 7).0, "workchain must be 0 or -1"),
            (&format!("1:{}", "a".repeat(64)), "raw address workchain"),
            (&format!("0:{}", "a".repeat(63)), raw),
            (&format!("0:{}", "g".repeat(64)), raw),
            (&TON[..47], len),
            (&format!("{}!", &TON[..47]), "invalid base64"),
            (ETH, len),
            (TRON, len),
        ];
        rejects(Ton, bad);
    }

    #[test]
    fn sandbox() {
        for good in ["abcd", "Sandbox_Wallet-01", &"x".repeat(64)] {
            ok(Sandbox, good);
        }
        let (len, chars) = ("must be 4 to 64", "only letters");
        let long = "x".repeat(65);
        let bad = [
            ("abc", len),
            (&long, len),
            ("abc.d", chars),
            ("wallet:1", chars),
        ];
        rejects(Sandbox, &bad);
        rejects(Sandbox, &[("wället", chars)]);
    }

    #[test]
    fn generic_rules_apply_to_every_network() {
        for n in [Bitcoin, Litecoin, Ethereum, Tron, Ton, Sandbox] {
            assert_eq!(Address::parse(n, ""), Err(AddressError::Empty));
            let long = "a".repeat(129);
            assert_eq!(Address::parse(n, &long), Err(AddressError::TooLong));
            let spaced = [format!(" {BTC}"), format!("{ETH}\n"), format!("{TRON}\t")];
            for ws in spaced
                .iter()
                .map(String::as_str)
                .chain(["ab\0cd", "a\u{a0}bcd"])
            {
                assert_eq!(Address::parse(n, ws), Err(AddressError::Whitespace));
            }
        }
        let err = Address::parse(Bitcoin, &flip(BTC, 10)).unwrap_err();
        let msg = "is not a valid bitcoin address: bad checksum";
        assert_eq!(err.to_string(), msg);
    }
}

#[cfg(test)]
pub(crate) mod props;
