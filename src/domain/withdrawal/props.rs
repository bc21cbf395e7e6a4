//! Property tests of `NewWithdrawal::parse`: any JSON body (any types, any nesting) is either a
//! valid withdrawal, field errors that name fields, or a refusal with a seed code; well-formed
//! requests are accepted with what they said.

use super::*;
use crate::domain::address::props::valid as valid_address;
use crate::domain::money::Network;
use crate::testing::cases;
use proptest::prelude::*;

const FIELDS: [&str; 8] = [
    "foreign_id",
    "currency",
    "amount",
    "address",
    "convert_to",
    "tag",
    "memo",
    "end_user_reference",
];

const CODES: [&str; 4] = [
    "coin_not_supported",
    "invalid_amount",
    "amount_too_low",
    "invalid_address",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[0-9.eE+-]{0,30}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,12}|amount|currency", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn currency_code() -> impl Strategy<Value = String> {
    let codes: Vec<&str> = Currency::ALL.iter().map(|c| c.code()).collect();
    prop_oneof![
        4 => (proptest::sample::select(codes), any::<bool>())
            .prop_map(|(c, lower)| if lower { c.to_lowercase() } else { c.to_string() }),
        1 => "(DOGE|XRP| BTC|btc |B TC|USDT|€|БТЦ|)",
    ]
}

fn amount_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,8}(\\.[0-9]{1,20})?",
        "[-+ ]?[0-9]{0,30}(\\.[0-9]{0,30})?([eE][-+]?[0-9]{1,9})?",
        "\\PC{0,20}",
    ]
}

fn address_text() -> impl Strategy<Value = String> {
    let networks = vec![
        Network::Bitcoin,
        Network::Litecoin,
        Network::Ethereum,
        Network::Tron,
        Network::Ton,
        Network::Sandbox,
    ];
    prop_oneof![
        3 => proptest::sample::select(networks).prop_flat_map(valid_address),
        1 => "\\PC{0,130}",
    ]
}

fn text(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::string::string_regex(&format!("\\PC{{1,{max}}}")).unwrap(),
        1 => "[a-z]{0,3}[\\x00-\\x1f\\x7f\\u{85}][a-z]{0,3}",
        1 => Just(String::new()),
    ]
    .boxed()
}

/// A field: absent, a string of its kind, or any JSON at all.
fn field(kind: BoxedStrategy<String>) -> impl Strategy<Value = Option<Value>> {
    proptest::option::weighted(
        0.85,
        prop_oneof![4 => kind.prop_map(Value::String), 1 => any_json()],
    )
}

fn body() -> impl Strategy<Value = Value> {
    let object = (
        (
            field(text(140)),
            field(currency_code().boxed()),
            field(amount_text().boxed()),
            field(address_text().boxed()),
        ),
        (
            proptest::option::weighted(0.3, field(currency_code().boxed())),
            proptest::option::weighted(0.2, field(text(140))),
            proptest::option::weighted(0.2, field(text(140))),
            proptest::option::weighted(0.3, field(text(140))),
        ),
        prop::collection::btree_map("\\PC{1,10}", any_json(), 0..3),
    )
        .prop_map(|((f, c, a, ad), (cv, t, m, r), extra)| {
            let mut obj: Map<String, Value> = extra.into_iter().collect();
            let optional = [cv, t, m, r].map(Option::flatten);
            let values = [f, c, a, ad].into_iter().chain(optional);
            for (name, value) in FIELDS.iter().zip(values) {
                if let Some(v) = value {
                    obj.insert((*name).to_string(), v);
                }
            }
            Value::Object(obj)
        });
    prop_oneof![6 => object, 1 => any_json()]
}

/// A request that must be accepted: a crypto payout over the minimum to a valid address,
/// plain or converted from another balance.
fn well_formed() -> impl Strategy<Value = Value> {
    let crypto: Vec<Currency> = Currency::ALL
        .into_iter()
        .filter(|c| c.kind() == CurrencyKind::Crypto)
        .collect();
    (
        proptest::sample::select(crypto),
        proptest::sample::select(Currency::ALL.to_vec()),
        any::<bool>(),
    )
        .prop_flat_map(|(payout, source, exchange)| {
            let source = if exchange { source } else { payout };
            // Every minimum is at most 10, so 10 and more is always enough.
            let amount = format!("[1-9][0-9]{{1,5}}(\\.[0-9]{{1,{}}})?", source.scale());
            let amount = proptest::string::string_regex(&amount).unwrap();
            let network = payout.network().unwrap_or(Network::Sandbox);
            (
                Just((payout, source)),
                "\\PC{1,128}",
                amount,
                valid_address(network),
                proptest::option::of("\\PC{1,128}"),
                proptest::option::of("[0-9]{1,20}"),
            )
        })
        .prop_map(
            |((payout, source), foreign_id, amount, address, reference, tag)| {
                let mut body = serde_json::json!({
                    "foreign_id": foreign_id,
                    "currency": source.code(),
                    "amount": amount,
                    "address": address,
                });
                if payout != source {
                    body["convert_to"] = payout.code().into();
                }
                if let Some(r) = reference {
                    body["end_user_reference"] = r.into();
                }
                if let (true, Some(t)) = (payout.takes_tag(), tag) {
                    body["tag"] = t.into();
                }
                body
            },
        )
}

fn check_accepted(body: &Value, w: &NewWithdrawal) -> Result<(), TestCaseError> {
    let text = |name: &str| body.get(name).and_then(Value::as_str);
    prop_assert_eq!(Some(w.foreign_id.as_str()), text("foreign_id"));
    prop_assert!((1..=MAX_TEXT).contains(&w.foreign_id.chars().count()));
    prop_assert!(!w.foreign_id.chars().any(char::is_control));
    prop_assert_eq!(Some(w.address.as_str()), text("address"));
    prop_assert_eq!(Some(w.payout.network()), Some(Some(w.address.network())));
    prop_assert_eq!(w.payout.kind(), CurrencyKind::Crypto);
    prop_assert!(w.tag.is_none() || w.payout.takes_tag());
    let amount = text("amount").unwrap_or_default();
    prop_assert_eq!(Amount::parse(w.currency(), amount), Ok(w.amount));
    if !w.is_exchange() {
        prop_assert!(w.amount.check_min_withdrawal().is_ok());
    }
    prop_assert_eq!(w.fingerprint(), w.clone().fingerprint());
    Ok(())
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn any_body_is_a_withdrawal_or_a_reasoned_refusal(body in body()) {
        let parsed = NewWithdrawal::parse(&body);
        prop_assert_eq!(&parsed, &NewWithdrawal::parse(&body), "not deterministic");
        match parsed {
            Ok(w) => check_accepted(&body, &w)?,
            Err(RequestError::Fields(errors)) => {
                // 422 names at least one field, and only fields the request has.
                prop_assert!(!errors.is_empty(), "422 without a reason for {}", body);
                for (name, message) in &errors {
                    let known = FIELDS.contains(&name.as_str()) || name == "body";
                    prop_assert!(known && !message.is_empty(), "{}: {}", name, message);
                }
                if !body.is_object() {
                    prop_assert_eq!(errors.keys().collect::<Vec<_>>(), vec!["body"]);
                }
            }
            Err(RequestError::Refused(r)) => {
                prop_assert!(CODES.contains(&r.code), "{}", r.code);
                prop_assert!(!r.message.is_empty());
            }
        }
    }

    #[test]
    fn well_formed_requests_are_accepted(body in well_formed()) {
        match NewWithdrawal::parse(&body) {
            Ok(w) => {
                check_accepted(&body, &w)?;
                prop_assert_eq!(w.is_exchange(), body.get("convert_to").is_some());
            }
            Err(e) => prop_assert!(false, "{} refused: {:?}", body, e),
        }
    }
}
