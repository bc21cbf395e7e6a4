//! Property tests of amount parsing: no input panics, exactly the plain decimal grammar is
//! accepted, and an accepted amount keeps its currency's scale through format → parse.

use super::*;
use crate::testing::cases;
use proptest::prelude::*;

/// Strings that look like amounts but are not plain decimals: signs, exponents (huge ones
/// included), whitespace, non-ASCII digits, separators.
fn amount_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ \t+\\-]?[0-9]{0,30}(\\.[0-9]{0,30})?([eE][+\\-]?[0-9]{1,12})?[ \t\n]?",
        "[0-9٠-٩０-９۰-۹]{1,12}(\\.[0-9٠-٩０-９]{1,12})?",
        "[0-9]{1,6}[,._' ][0-9]{1,6}([,.][0-9]{1,3})?",
        "(NaN|nan|inf|-inf|Infinity|0x1F|0b101|1_000|\u{2212}1|１)",
        "\\.[0-9]{1,10}|[0-9]{1,10}\\.",
        any::<String>(),
    ]
}

/// The plain decimal grammar, of any size.
fn plain_decimal() -> impl Strategy<Value = (String, Option<String>)> {
    ("[0-9]{1,45}", proptest::option::of("[0-9]{1,45}"))
}

fn join(int: &str, frac: &Option<String>) -> String {
    match frac {
        Some(f) => format!("{int}.{f}"),
        None => int.to_string(),
    }
}

fn any_currency() -> impl Strategy<Value = Currency> {
    proptest::sample::select(Currency::ALL.to_vec())
}

/// An amount that must be accepted: at most 20 integer digits (`parse_decimal`'s bound), room
/// for the currency's full scale within 28 digits, at most the currency's decimals (possibly
/// with trailing zeros past them), not zero.
fn valid_amount() -> impl Strategy<Value = (Currency, String)> {
    any_currency().prop_flat_map(|c| {
        let frac = proptest::string::string_regex(&format!("[0-9]{{1,{}}}", c.scale())).unwrap();
        (
            Just(c),
            "0{0,3}[0-9]{0,20}",
            proptest::option::of(frac),
            "0{0,4}",
        )
            .prop_filter_map("zero or too long", |(c, int, frac, zeros)| {
                let int = if int.is_empty() { "0".to_string() } else { int };
                let int_digits = int.trim_start_matches('0').len();
                let frac = frac.map(|f| f + &zeros);
                let s = join(&int, &frac);
                let significant = int_digits + frac.as_ref().map_or(0, String::len);
                let nonzero = s.bytes().any(|b| (b'1'..=b'9').contains(&b));
                let fits = int_digits <= 20 && int_digits + c.scale() as usize <= 28;
                (nonzero && fits && significant <= 28).then_some((c, s))
            })
    })
}

fn is_plain(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match s.split_once('.') {
        Some((i, f)) => digits(i) && digits(f),
        None => digits(s),
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn only_plain_decimals_parse(s in amount_like()) {
        match parse_decimal(&s) {
            Ok(d) => {
                prop_assert!(is_plain(&s), "{s:?} accepted");
                prop_assert_eq!(Some(d), Decimal::from_str(&s).ok());
                prop_assert!(d >= Decimal::ZERO);
            }
            Err(DecimalError::Malformed) => prop_assert!(!is_plain(&s), "{s:?} malformed"),
            Err(DecimalError::TooLarge) => prop_assert!(is_plain(&s), "{s:?} too large"),
        }
        // The signed form differs only by the leading minus.
        if let Ok(d) = parse_signed_decimal(&s) {
            let magnitude = s.strip_prefix('-').unwrap_or(&s);
            prop_assert_eq!(parse_decimal(magnitude).map(|m| m.abs()), Ok(d.abs()));
        }
    }

    #[test]
    fn plain_decimals_parse_exactly_or_are_too_large((int, frac) in plain_decimal()) {
        let s = join(&int, &frac);
        let int_digits = int.trim_start_matches('0').len();
        let significant = int_digits + frac.as_ref().map_or(0, String::len);
        match parse_decimal(&s) {
            Ok(d) => {
                prop_assert!(int_digits <= 20 && significant <= 28, "{s} accepted");
                // Exact: the value prints back as the same digits (leading zeros aside).
                let printed = d.to_string();
                let canonical_int = match int.trim_start_matches('0') {
                    "" => "0",
                    rest => rest,
                };
                prop_assert_eq!(printed, join(canonical_int, &frac));
            }
            Err(e) => {
                prop_assert_eq!(e, DecimalError::TooLarge);
                prop_assert!(int_digits > 20 || significant > 28, "{s} refused");
            }
        }
    }

    #[test]
    fn any_string_is_a_valid_amount_or_a_refusal(c in any_currency(), s in amount_like()) {
        if let Ok(a) = Amount::parse(c, &s) {
            prop_assert!(a.value() > Decimal::ZERO);
            prop_assert!(a.value().normalize().scale() <= c.scale());
            prop_assert_eq!(a.currency(), c);
        }
    }

    #[test]
    fn accepted_amounts_always_print_at_full_scale(
        c in any_currency(),
        (int, frac) in plain_decimal(),
    ) {
        let s = join(&int, &frac);
        if let Ok(a) = Amount::parse(c, &s) {
            let canonical = a.to_canonical();
            let decimals = canonical.split_once('.').map_or(0, |(_, f)| f.len());
            prop_assert_eq!(decimals, c.scale() as usize, "{} {} -> {}", c, s, canonical);
        }
    }

    #[test]
    fn valid_amounts_round_trip_at_the_currency_scale((c, s) in valid_amount()) {
        let a = Amount::parse(c, &s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        let canonical = a.to_canonical();
        // Exactly the currency's decimals, no more, no fewer.
        let decimals = canonical.split_once('.').map_or(0, |(_, f)| f.len());
        prop_assert_eq!(decimals, c.scale() as usize, "{} {} -> {}", c, s, canonical);
        // format -> parse gives the same amount, and formatting it again changes nothing.
        let again = Amount::parse(c, &canonical)
            .map_err(|e| TestCaseError::fail(format!("{canonical}: {e}")))?;
        prop_assert_eq!(again, a);
        prop_assert_eq!(again.to_canonical(), canonical.clone());
        prop_assert_eq!(db_decimal(&canonical).ok(), Some(a.value()));
        // The minimum check agrees with the currency's minimum.
        prop_assert_eq!(a.check_min_withdrawal().is_ok(), a.value() >= c.min_withdrawal());
    }

    #[test]
    fn more_decimals_than_the_currency_has_are_refused(
        c in any_currency(),
        int in "[0-9]{1,5}",
        extra in 1u32..6,
        last in 1u8..10,
    ) {
        // The currency's full scale, then `extra` more places ending in a non-zero digit.
        let frac = format!("{}{}", "0".repeat((c.scale() + extra - 1) as usize), last);
        let s = format!("{int}.{frac}");
        if frac.len() + int.trim_start_matches('0').len() > 28 {
            prop_assert_eq!(
                Amount::parse(c, &s),
                Err(AmountError::Decimal(DecimalError::TooLarge))
            );
        } else {
            prop_assert_eq!(
                Amount::parse(c, &s),
                Err(AmountError::TooPrecise { currency: c, scale: c.scale() })
            );
        }
    }
}
