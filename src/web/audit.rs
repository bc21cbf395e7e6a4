//! The audit log, for everyone signed in to the project: filter by who, what and when; page
//! back by sequence number; download the same selection as CSV (UTC times).

use super::error::PageError;
use super::users::{form_error, unprocessable};
use super::{page_context, render};
use crate::auth::session::SignedIn;
use crate::clock::{DAY_MS, rfc3339};
use crate::db::audit_list::{self, Filter, Record};
use crate::db::{api_keys, users};
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

pub const PAGE_SIZE: i64 = 50;
const CSV_BATCH: i64 = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit", web::get().to(audit_page))
        .route("/audit.csv", web::get().to(audit_csv));
}

#[derive(Deserialize, Default, Clone)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    before: Option<i64>,
}

impl AuditQuery {
    /// The filters as a query string (for the next page and the CSV link).
    fn query_string(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("actor", &self.actor)
            .append_pair("action", &self.action)
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .finish()
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` (UTC) to the epoch-ms start of that day.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&d) || y < 1970 {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY_MS)
}

/// The query as a filter, or the label and message of the field that is wrong.
fn filter_of(q: &AuditQuery) -> Result<Filter, (&'static str, String)> {
    let mut f = Filter::default();
    match q.actor.trim() {
        "" => {}
        a => {
            let (kind, id) = a.split_once(':').map_or((a, None), |(k, i)| (k, Some(i)));
            if !matches!(kind, "user" | "api_key" | "system" | "cli") {
                return Err(("Actor", format!("{a:?} is not an actor")));
            }
            f.actor_kind = Some(kind.to_string());
            f.actor_id = id.filter(|i| !i.is_empty()).map(str::to_string);
        }
    }
    let action = q.action.trim();
    if action.chars().count() > 100 {
        return Err(("Action", "must be at most 100 characters".into()));
    }
    f.action_prefix = (!action.is_empty()).then(|| action.to_string());
    let date = |label: &'static str, s: &str| -> Result<Option<i64>, (&'static str, String)> {
        if s.trim().is_empty() {
            return Ok(None);
        }
        parse_date(s)
            .map(Some)
            .ok_or_else(|| (label, format!("{s:?} is not a date like 2026-11-21")))
    };
    f.from = date("From", &q.from)?;
    f.until = date("To", &q.to)?.map(|t| t + DAY_MS);
    if let (Some(a), Some(b)) = (f.from, f.until) {
        if a >= b {
            return Err(("To", "must not be before From".into()));
        }
    }
    Ok(f)
}

/// Who an actor is, in words: a user's email, an API key's prefix.
struct Names {
    users: HashMap<String, String>,
    keys: HashMap<String, String>,
}

impl Names {
    async fn load(state: &AppState, project_id: &str) -> Result<Names, PageError> {
        Ok(Names {
            users: users::list(&state.db, project_id)
                .await?
                .into_iter()
                .map(|u| (u.id, u.email))
                .collect(),
            keys: api_keys::list(&state.db, project_id)
                .await?
                .into_iter()
                .map(|k| (k.id, format!("API key {}…", k.key_prefix)))
                .collect(),
        })
    }

    fn of(&self, r: &Record) -> String {
        match r.actor_kind.as_str() {
            "user" => self
                .users
                .get(&r.actor_id)
                .cloned()
                .unwrap_or_else(|| format!("user {}", r.actor_id)),
            "api_key" => self
                .keys
                .get(&r.actor_id)
                .cloned()
                .unwrap_or_else(|| format!("API key {}", r.actor_id)),
            "cli" => "command line".into(),
            other => other.to_string(),
        }
    }

    /// The choices of the actor filter.
    fn options(&self) -> Vec<Value> {
        let mut v = vec![
            json!({"value": "", "label": "Anyone"}),
            json!({"value": "user", "label": "Any user"}),
        ];
        let mut users: Vec<_> = self.users.iter().collect();
        users.sort_by(|a, b| a.1.cmp(b.1));
        v.extend(
            users
                .into_iter()
                .map(|(id, email)| json!({"value": format!("user:{id}"), "label": email})),
        );
        v.push(json!({"value": "api_key", "label": "Any API key"}));
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_by(|a, b| a.1.cmp(b.1));
        v.extend(
            keys.into_iter()
                .map(|(id, label)| json!({"value": format!("api_key:{id}"), "label": label})),
        );
        v.push(json!({"value": "system", "label": "The system"}));
        v.push(json!({"value": "cli", "label": "The command line"}));
        v
    }
}

async fn audit_page(
    state: web::Data<AppState>,
    s: SignedIn,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, PageError> {
    let names = Names::load(&state, &s.project.id).await?;
    let mut ctx = page_context(&s, "audit");
    ctx.insert(
        "q",
        &json!({"actor": q.actor, "action": q.action, "from": q.from, "to": q.to}),
    );
    ctx.insert("actors", &names.options());
    ctx.insert("query", &q.query_string());
    let filter = match filter_of(&q) {
        Ok(f) => f,
        Err((label, m)) => {
            ctx.insert("error", &form_error(label, &m));
            ctx.insert("records", &Vec::<Value>::new());
            ctx.insert("next_before", &None::<i64>);
            return render("audit/index.html", &ctx).map(unprocessable);
        }
    };
    let mut rows =
        audit_list::page(&state.db, &s.project.id, &filter, q.before, PAGE_SIZE + 1).await?;
    let more = rows.len() > usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX));
    let records: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "at": rfc3339(r.created_at),
                "actor": names.of(r),
                "actor_kind": r.actor_kind,
                "action": r.action,
                "subject": r.subject,
                "details": r.details,
                "ip": r.ip,
            })
        })
        .collect();
    ctx.insert("error", &None::<Value>);
    ctx.insert("records", &records);
    ctx.insert("paged", &q.before.is_some());
    ctx.insert(
        "next_before",
        &more.then(|| rows.last().map(|r| r.seq)).flatten(),
    );
    render("audit/index.html", &ctx)
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break, quotes
/// doubled. A field a spreadsheet would run as a formula (`=`, `+`, `-`, `@`) gets a leading
/// `'`.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_line(out: &mut String, fields: &[&str]) {
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

async fn audit_csv(
    state: web::Data<AppState>,
    s: SignedIn,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, PageError> {
    let filter =
        filter_of(&q).map_err(|(label, m)| PageError::BadRequest(format!("{label}: {m}")))?;
    let names = Names::load(&state, &s.project.id).await?;
    let mut out = String::new();
    csv_line(
        &mut out,
        &[
            "seq",
            "time_utc",
            "actor_kind",
            "actor_id",
            "actor",
            "action",
            "subject",
            "details",
            "ip",
            "user_agent",
            "hash",
        ],
    );
    let mut before = q.before;
    loop {
        let rows = audit_list::page(&state.db, &s.project.id, &filter, before, CSV_BATCH).await?;
        for r in &rows {
            csv_line(
                &mut out,
                &[
                    &r.seq.to_string(),
                    &rfc3339(r.created_at),
                    &r.actor_kind,
                    &r.actor_id,
                    &names.of(r),
                    &r.action,
                    &r.subject,
                    &r.details,
                    r.ip.as_deref().unwrap_or(""),
                    r.user_agent.as_deref().unwrap_or(""),
                    &r.hash,
                ],
            );
        }
        match rows.last() {
            Some(last) if i64::try_from(rows.len()).unwrap_or(0) == CSV_BATCH => {
                before = Some(last.seq);
            }
            _ => break,
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"audit-{}.csv\"", s.project.id),
        ))
        .body(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_escaping() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2023-08-07"), Some(1_691_366_400_000));
        assert_eq!(parse_date("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_date("2001-02-29"), None);
        assert_eq!(parse_date("2023-13-01"), None);
        assert_eq!(parse_date("23-08-07"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn filters() {
        let q = AuditQuery {
            actor: "user:usr_1".into(),
            action: "user.".into(),
            from: "2023-08-07".into(),
            to: "2023-08-07".into(),
            before: None,
        };
        let f = filter_of(&q).unwrap();
        assert_eq!(f.actor_kind.as_deref(), Some("user"));
        assert_eq!(f.actor_id.as_deref(), Some("usr_1"));
        assert_eq!(f.until, Some(1_691_366_400_000 + DAY_MS));
        let bad = AuditQuery {
            actor: "robot".into(),
            ..AuditQuery::default()
        };
        assert_eq!(filter_of(&bad).unwrap_err().0, "Actor");
        let backwards = AuditQuery {
            from: "2023-08-08".into(),
            to: "2023-08-07".into(),
            ..AuditQuery::default()
        };
        assert_eq!(filter_of(&backwards).unwrap_err().0, "To");
    }
}
