//! Bad input at scale over real HTTP: a few hundred random and malformed bodies, with every
//! kind of good, bad, missing and garbled signature header, POSTed to the withdrawal
//! endpoints. Whatever arrives, the answer is never a 5xx and always a JSON body of a
//! documented shape. `CS_FUZZ_HTTP_REQUESTS` raises the count; `CS_FUZZ_SEED` replays a run.

use crate::helpers::{BTC_ADDR, TestApp, sign, spawn_app};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

const ADDRESSES: [&str; 8] = [
    BTC_ADDR,
    "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
    "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
    "EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N",
    "sandbox_wallet_01",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Currencies with an address of their network.
const PAYOUTS: [(&str, &str); 6] = [
    ("BTC", BTC_ADDR),
    ("LTC", "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9"),
    ("ETH", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
    ("USDTT", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"),
    ("TON", "EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N"),
    ("SBX", "sandbox_wallet_01"),
];

/// A withdrawal-shaped object whose fields are plausible, junk or of the wrong type; mostly
/// a currency with an address of its network, so that requests get past parsing into the
/// service (holds, limits, balance, idempotency).
fn withdrawal_like() -> impl Strategy<Value = Value> {
    let text = |plausible: BoxedStrategy<String>| {
        proptest::option::weighted(
            0.9,
            prop_oneof![5 => plausible.prop_map(Value::String), 1 => any_json()],
        )
    };
    let currency = "(BTC|btc|LTC|ETH|USDTE|USDTT|TRX|TON|SBX|EUR|USD|DOGE|)".boxed();
    let amount = prop_oneof![
        6 => "(0\\.0[1-9]|[1-9]|1[0-9])",
        1 => "[0-9]{1,4}(\\.[0-9]{1,20})?",
        1 => "[-+ ]?[0-9]{0,40}(\\.[0-9]{0,30})?([eE][-+]?[0-9]{1,9})?",
        1 => "\\PC{0,12}",
    ]
    .boxed();
    let address = prop_oneof![
        proptest::sample::select(ADDRESSES.to_vec()).prop_map(String::from),
        "\\PC{0,140}",
    ]
    .boxed();
    let coherent = proptest::option::weighted(0.75, proptest::sample::select(PAYOUTS.to_vec()));
    let main = (
        text(prop_oneof![4 => "[a-z0-9_]{1,20}", 1 => "\\PC{0,140}"].boxed()),
        text(currency.clone()),
        text(amount),
        text(address),
        coherent,
    );
    let extra = (
        proptest::option::weighted(0.15, text(currency)),
        proptest::option::weighted(0.1, text("\\PC{0,20}".boxed())),
        proptest::option::weighted(0.2, text("\\PC{0,60}|\\PC{120,140}".boxed())),
    );
    (main, extra).prop_map(|((id, currency, amount, address, coherent), extra)| {
        let (currency, address) = match coherent {
            Some((c, a)) => (Some(Value::from(c)), Some(Value::from(a))),
            None => (currency, address),
        };
        let (convert_to, tag, reference) = extra;
        let fields = [
            ("foreign_id", id),
            ("currency", currency),
            ("amount", amount),
            ("address", address),
            ("convert_to", convert_to.flatten()),
            ("tag", tag.flatten()),
            ("end_user_reference", reference.flatten()),
        ];
        let mut obj = serde_json::Map::new();
        for (name, value) in fields {
            if let Some(v) = value {
                obj.insert(name.into(), v);
            }
        }
        Value::Object(obj)
    })
}

/// A request that passes parsing: it is created, held, over a limit, short of funds or a
/// repeat, as the service decides.
fn well_formed() -> impl Strategy<Value = Value> {
    (
        "[a-z0-9_]{1,12}",
        proptest::sample::select(PAYOUTS.to_vec()),
        "(0\\.0[1-9]|[1-9]|1[0-9]|2[0-9]{2})",
    )
        .prop_map(|(id, (currency, address), amount)| {
            json!({"foreign_id": id, "currency": currency, "amount": amount, "address": address})
        })
}

/// Raw bodies: random bytes, JSON of any shape, withdrawal-like objects, and the same
/// damaged (cut, a byte changed), deeply nested, oversized or oddly encoded.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let damaged = (
        withdrawal_like(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(|(v, at, byte, cut)| {
            let mut b = v.to_string().into_bytes();
            let i = at.index(b.len().max(1)).min(b.len().saturating_sub(1));
            if cut {
                b.truncate(i);
            } else if !b.is_empty() {
                b[i] = byte;
            }
            b
        });
    let nested = (1usize..3000, any::<bool>()).prop_map(|(depth, arrays)| {
        let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
        let mut s = open.repeat(depth);
        s.push('1');
        s.push_str(&close.repeat(depth));
        s.into_bytes()
    });
    let oddities = proptest::sample::select(vec![
        "",
        "   ",
        "null",
        "\u{feff}{}",
        "{\"foreign_id\": \"\\ud800\"}",
        "{\"amount\": 1e999999}",
        "{\"amount\": \"1e999999\", \"currency\": \"BTC\"}",
        "{\"foreign_id\": \"a\", \"foreign_id\": \"b\"}",
        "{\"foreign_id\": \"a\u{0}b\", \"currency\": \"BTC\", \"amount\": \"1\", \"address\": \"x\"}",
        "{\"currency\": {\"$ne\": null}}",
        "[]",
        "\"string\"",
        "123",
    ])
    .prop_map(|s| s.as_bytes().to_vec());
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..300),
        3 => any_json().prop_map(|v| v.to_string().into_bytes()),
        12 => withdrawal_like().prop_map(|v| v.to_string().into_bytes()),
        3 => well_formed().prop_map(|v| v.to_string().into_bytes()),
        3 => damaged,
        1 => nested,
        2 => oddities,
        1 => (65_000usize..70_000).prop_map(|n| {
            let mut b = b"{\"foreign_id\":\"".to_vec();
            b.resize(n, b'x');
            b.extend_from_slice(b"\"}");
            b
        }),
    ]
}

/// How a request is (or is not) signed.
#[derive(Debug, Clone)]
enum Signing {
    Right,
    RightUppercase,
    RightPadded,
    Aliases,
    WrongSecret,
    OtherBody,
    NoKey,
    NoSignature,
    UnknownKey,
    Garbage(Vec<u8>, Vec<u8>),
    Long,
}

fn signing() -> impl Strategy<Value = Signing> {
    let header_bytes = prop::collection::vec(
        prop_oneof![8 => 0x20u8..0x7f, 1 => Just(b'\t'), 2 => 0x80u8..=0xff],
        0..80,
    );
    prop_oneof![
        30 => Just(Signing::Right),
        1 => Just(Signing::RightUppercase),
        1 => Just(Signing::RightPadded),
        1 => Just(Signing::Aliases),
        1 => Just(Signing::WrongSecret),
        1 => Just(Signing::OtherBody),
        1 => Just(Signing::NoKey),
        1 => Just(Signing::NoSignature),
        1 => Just(Signing::UnknownKey),
        2 => (header_bytes.clone(), header_bytes).prop_map(|(k, s)| Signing::Garbage(k, s)),
        1 => Just(Signing::Long),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::of(proptest::sample::select(vec![
        "application/json",
        "application/json; charset=utf-16",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "*/*",
    ]))
}

fn path() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        8 => Just("/api/v2/withdrawal/crypto"),
        1 => Just("/api/v2/withdrawal/status"),
        1 => Just("/api/v2/withdrawal/cancel"),
    ]
}

fn headers(app: &TestApp, signing: &Signing, body: &[u8]) -> Vec<(&'static str, HeaderValue)> {
    let (key, secret) = (app.creds.api_key.as_str(), app.creds.api_secret.as_str());
    let v = |s: &str| HeaderValue::from_str(s).expect("header value");
    let right = sign(secret, body);
    match signing {
        Signing::Right => vec![
            ("X-Processing-Key", v(key)),
            ("X-Processing-Signature", v(&right)),
        ],
        Signing::RightUppercase => vec![
            ("X-Processing-Key", v(key)),
            ("X-Processing-Signature", v(&right.to_uppercase())),
        ],
        Signing::RightPadded => vec![
            ("X-Processing-Key", v(&format!(" {key}\t"))),
            ("X-Processing-Signature", v(&format!("  {right} "))),
        ],
        Signing::Aliases => vec![
            ("X-Process-Key", v(key)),
            ("X-Process-Signature", v(&right)),
        ],
        Signing::WrongSecret => vec![
            ("X-Processing-Key", v(key)),
            ("X-Processing-Signature", v(&sign("not the secret", body))),
        ],
        Signing::OtherBody => vec![
            ("X-Processing-Key", v(key)),
            ("X-Processing-Signature", v(&sign(secret, b"{}"))),
        ],
        Signing::NoKey => vec![("X-Processing-Signature", v(&right))],
        Signing::NoSignature => vec![("X-Processing-Key", v(key))],
        Signing::UnknownKey => vec![
            ("X-Processing-Key", v("ck_unknown")),
            ("X-Processing-Signature", v(&right)),
        ],
        Signing::Garbage(k, s) => vec![
            (
                "X-Processing-Key",
                HeaderValue::from_bytes(k).expect("header bytes"),
            ),
            (
                "X-Processing-Signature",
                HeaderValue::from_bytes(s).expect("header bytes"),
            ),
        ],
        Signing::Long => vec![
            ("X-Processing-Key", v(&key.repeat(20))),
            ("X-Processing-Signature", v(&right.repeat(20))),
        ],
    }
}

/// A documented answer: a JSON object carrying `data`, `message` (+ `error_code` beyond 403)
/// or a non-empty `errors` map.
fn check_answer(status: u16, v: &Value) -> Result<(), String> {
    let shape_ok = match status {
        200 => v["data"].is_object(),
        401 | 403 => v["message"].is_string(),
        422 => v["errors"].as_object().is_some_and(|e| {
            !e.is_empty()
                && e.values()
                    .all(|m| m.as_str().is_some_and(|m| !m.is_empty()))
        }),
        400 | 404 | 413 => v["message"].is_string() && v["error_code"].is_string(),
        _ => false,
    };
    if shape_ok {
        Ok(())
    } else {
        Err(format!("{status} with an undocumented body {v}"))
    }
}

#[tokio::test]
async fn garbage_in_never_gives_a_server_error_or_a_non_json_answer() {
    let app = spawn_app().await;
    for (currency, amount) in [
        ("BTC", "1"),
        ("LTC", "100"),
        ("ETH", "10"),
        ("EUR", "10000"),
    ] {
        app.credit(currency, amount).await;
    }
    let count: usize = std::env::var("CS_FUZZ_HTTP_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = match std::env::var("CS_FUZZ_SEED") {
        Ok(s) => s.parse().expect("CS_FUZZ_SEED is a number"),
        Err(_) => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("random");
            u64::from_le_bytes(b)
        }
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = (body(), signing(), content_type(), path());
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..count {
        let (body, signing, content_type, path) = strategy
            .new_tree(&mut runner)
            .expect("generate a request")
            .current();
        let mut req = app.http.post(app.url(path)).body(body.clone());
        for (name, value) in headers(&app, &signing, &body) {
            req = req.header(name, value);
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("?").to_string());
        let text = r.text().await.expect("answer");
        let what = || {
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            format!(
                "request {i} (CS_FUZZ_SEED={seed}): POST {path} {signing:?} content-type {content_type:?}, body {shown:?}"
            )
        };
        assert!(status < 500, "{}: answered {status} {text}", what());
        assert_eq!(
            ct.as_deref(),
            Some("application/json"),
            "{}: {text}",
            what()
        );
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", what()));
        if let Err(e) = check_answer(status, &v) {
            panic!("{}: {e}", what());
        }
        *statuses.entry(status).or_default() += 1;
    }
    eprintln!("{count} requests (CS_FUZZ_SEED={seed}): {statuses:?}");
    // Refusals and successes alike left the app healthy and the balance sane.
    let (code, v) = app.post_json("/accounts/list", &json!({})).await;
    assert_eq!(code, 200, "{v}");
    let (available, held) = app.balance("BTC").await;
    assert!(
        !available.starts_with('-') && !held.starts_with('-'),
        "{available} {held}"
    );
    for reached in [200, 400, 401, 413, 422] {
        assert!(
            statuses.contains_key(&reached),
            "no {reached} in {statuses:?}"
        );
    }
}

#[tokio::test]
async fn errors_raised_before_the_endpoint_are_json_too() {
    let app = spawn_app().await;
    // Over the 64 KiB limit: actix refuses it before the handler; it was a text/plain 413.
    let big = format!("{{\"foreign_id\":\"{}\"}}", "x".repeat(70_000));
    let r = app.post("/withdrawal/crypto", &big).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_code"], "payload_too_large", "{v}");
    // A method the path does not take (schemathesis' unsupported_method check): it was 404.
    for (method, path, allowed) in [
        ("GET", "/api/v2/withdrawal/crypto", "POST"),
        ("TRACE", "/api/v2/balances", "POST"),
        ("POST", "/api/v2/ping", "GET"),
    ] {
        let r = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allowed, "{method} {path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error_code"], "method_not_allowed", "{v}");
    }
    let r = app
        .http
        .get(app.url("/api/v2/addresses/take"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
