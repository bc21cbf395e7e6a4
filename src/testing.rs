//! Shared by the property tests (the `props` modules next to the code they check).

use proptest::test_runner::Config;

/// `default` cases per property, or `PROPTEST_CASES` when set (to fuzz longer, e.g. in a
/// nightly job: `PROPTEST_CASES=100000 cargo test props`).
pub fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        ..Config::default()
    }
}
