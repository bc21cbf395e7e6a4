//! The withdrawals list's query string: parsed into a filter and a page cursor, or into
//! messages that say what to fix. Parsing never fails the request: whatever arrives, the page
//! renders, with the values echoed back into the form.

use crate::clock::DAY_MS;
use crate::db::withdrawal_list::{Cursor, ListFilter};
use crate::domain::money::{Currency, CurrencyKind};
use crate::domain::withdrawal::Status;
use serde::Serialize;

/// The statuses a merchant sees (and the list filters by).
pub const STATUSES: [&str; 5] = [
    "pending",
    "processing",
    "confirmed",
    "declined",
    "cancelled",
];

/// The longest foreign id or address the API accepts.
const MAX_TEXT: usize = 128;

/// The query string as typed, trimmed; empty means "not given".
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RawQuery {
    pub status: String,
    pub currency: String,
    pub from: String,
    pub to: String,
    pub foreign_id: String,
    pub address: String,
    pub before: String,
    pub after: String,
}

impl RawQuery {
    /// Reads the known parameters (the first occurrence of each); anything else is ignored.
    pub fn parse(query_string: &str) -> RawQuery {
        let mut q = RawQuery::default();
        for (k, v) in url::form_urlencoded::parse(query_string.as_bytes()) {
            let slot = match k.as_ref() {
                "status" => &mut q.status,
                "currency" => &mut q.currency,
                "from" => &mut q.from,
                "to" => &mut q.to,
                "foreign_id" => &mut q.foreign_id,
                "address" => &mut q.address,
                "before" => &mut q.before,
                "after" => &mut q.after,
                _ => continue,
            };
            if slot.is_empty() {
                *slot = v.trim().to_string();
            }
        }
        q
    }

    /// Whether any filter (not the page position) is set.
    pub fn is_filtered(&self) -> bool {
        [
            &self.status,
            &self.currency,
            &self.from,
            &self.to,
            &self.foreign_id,
            &self.address,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }

    /// The filter part as a query string, normalized, for the pagination links.
    fn filter_pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("status", self.status.to_ascii_lowercase()),
            ("currency", self.currency.to_ascii_uppercase()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            ("foreign_id", self.foreign_id.clone()),
            ("address", self.address.clone()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    /// `/withdrawals?<these filters>&<cursor>`.
    pub fn link(&self, cursor: Cursor) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.filter_pairs() {
            s.append_pair(k, &v);
        }
        match cursor {
            Cursor::Newest => {}
            Cursor::Before(id) => {
                s.append_pair("before", &id.to_string());
            }
            Cursor::After(id) => {
                s.append_pair("after", &id.to_string());
            }
        }
        let q = s.finish();
        if q.is_empty() {
            "/withdrawals".to_string()
        } else {
            format!("/withdrawals?{q}")
        }
    }
}

/// What the query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub filter: ListFilter,
    pub cursor: Cursor,
}

/// The filter and cursor, or every problem found, each as a sentence for the page.
pub fn parse(raw: &RawQuery) -> Result<Parsed, Vec<String>> {
    let mut errors = Vec::new();
    let mut filter = ListFilter::default();
    if !raw.status.is_empty() {
        match raw.status.to_ascii_lowercase().as_str() {
            "pending" => filter.statuses = vec![Status::Pending],
            "processing" => filter.statuses = vec![Status::Approved, Status::Processing],
            "confirmed" => filter.statuses = vec![Status::Confirmed],
            "declined" => filter.statuses = vec![Status::Declined],
            "cancelled" => filter.statuses = vec![Status::Cancelled],
            _ => errors.push(format!(
                "There is no status “{}”: choose one of {}.",
                raw.status,
                STATUSES.join(", ")
            )),
        }
    }
    if !raw.currency.is_empty() {
        match Currency::parse(&raw.currency) {
            Some(c) => filter.currency = Some(c.code().to_string()),
            None => errors.push(format!("There is no currency “{}”.", raw.currency)),
        }
    }
    let from = date_param(&raw.from, "From", &mut errors);
    let to = date_param(&raw.to, "To", &mut errors);
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            errors.push("The “From” date is after the “To” date.".to_string());
        }
    }
    filter.created_from = from;
    filter.created_before = to.map(|t| t + DAY_MS);
    filter.foreign_id = text_param(&raw.foreign_id, "foreign id", &mut errors);
    filter.address = text_param(&raw.address, "address", &mut errors);
    let cursor = match (id_param(&raw.before), id_param(&raw.after)) {
        (None, None) => Cursor::Newest,
        (Some(Some(id)), None) => Cursor::Before(id),
        (None, Some(Some(id))) => Cursor::After(id),
        _ => {
            errors.push(
                "This page link is damaged; the list below starts again from the newest withdrawals."
                    .to_string(),
            );
            Cursor::Newest
        }
    };
    if errors.is_empty() {
        Ok(Parsed { filter, cursor })
    } else {
        Err(errors)
    }
}

/// Crypto currencies, for the filter's choices.
pub fn currency_choices() -> Vec<&'static str> {
    Currency::ALL
        .into_iter()
        .filter(|c| c.kind() == CurrencyKind::Crypto)
        .map(Currency::code)
        .collect()
}

fn date_param(v: &str, label: &str, errors: &mut Vec<String>) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    let parsed = parse_date(v);
    if parsed.is_none() {
        errors.push(format!(
            "“{label}” must be a calendar date written like 2026-01-31 (UTC); “{v}” is not."
        ));
    }
    parsed
}

fn text_param(v: &str, label: &str, errors: &mut Vec<String>) -> Option<String> {
    if v.is_empty() {
        None
    } else if v.chars().count() > MAX_TEXT {
        errors.push(format!(
            "The {label} is longer than any the API accepts ({MAX_TEXT} characters)."
        ));
        None
    } else {
        Some(v.to_string())
    }
}

/// None: not given; Some(None): given but not a positive id.
fn id_param(v: &str) -> Option<Option<i64>> {
    if v.is_empty() {
        return None;
    }
    Some(v.parse::<i64>().ok().filter(|id| *id > 0))
}

/// Midnight UTC (epoch ms) of a `YYYY-MM-DD` date, if it is a real date.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if y < 1 || d < 1 || d > days_in_month {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY_MS)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::rfc3339;

    #[test]
    fn dates_are_utc_midnights_and_only_real_ones() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(
            parse_date("2000-02-29").map(rfc3339).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(
            parse_date("2023-08-07").map(rfc3339).as_deref(),
            Some("2023-08-07T00:00:00Z")
        );
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "2026-01-0x",
            "+026-01-01",
            "0000-01-01",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_date_range_covers_whole_days() {
        let raw = RawQuery {
            from: "2026-03-01".into(),
            to: "2026-03-01".into(),
            ..Default::default()
        };
        let p = parse(&raw).unwrap();
        assert_eq!(
            p.filter.created_from.map(rfc3339).as_deref(),
            Some("2026-03-01T00:00:00Z")
        );
        assert_eq!(
            p.filter.created_before.map(rfc3339).as_deref(),
            Some("2026-03-02T00:00:00Z")
        );
    }

    #[test]
    fn processing_means_both_stored_states() {
        let raw = RawQuery {
            status: "Processing".into(),
            currency: "btc".into(),
            ..Default::default()
        };
        let p = parse(&raw).unwrap();
        assert_eq!(
            p.filter.statuses,
            vec![Status::Approved, Status::Processing]
        );
        assert_eq!(p.filter.currency.as_deref(), Some("BTC"));
    }

    #[test]
    fn every_problem_is_named() {
        let raw = RawQuery {
            status: "approved".into(),
            currency: "DOGE".into(),
            from: "2026-02-30".into(),
            to: "yesterday".into(),
            before: "abc".into(),
            ..Default::default()
        };
        let e = parse(&raw).unwrap_err();
        assert_eq!(e.len(), 5, "{e:?}");
        let inverted = RawQuery {
            from: "2026-03-02".into(),
            to: "2026-03-01".into(),
            ..Default::default()
        };
        assert_eq!(parse(&inverted).unwrap_err().len(), 1);
        let both = RawQuery {
            before: "5".into(),
            after: "3".into(),
            ..Default::default()
        };
        assert!(parse(&both).is_err());
    }

    #[test]
    fn links_keep_the_filters_and_encode_them() {
        let raw = RawQuery::parse("status=pending&currency=btc&foreign_id=a%26b+c&before=9&junk=1");
        assert_eq!(raw.before, "9");
        assert_eq!(
            raw.link(Cursor::After(5)),
            "/withdrawals?status=pending&currency=BTC&foreign_id=a%26b+c&after=5"
        );
        assert_eq!(RawQuery::default().link(Cursor::Newest), "/withdrawals");
    }
}
