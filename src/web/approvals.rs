//! The approval queue (`/approvals`): the project's pending withdrawals, filtered and sorted,
//! with checkboxes to approve or decline many at once with one code (see `bulk`).

mod bulk;

use super::error::PageError;
use super::settings::crypto_currencies;
use super::withdrawals::amount_text;
use super::{page_context, render};
use crate::auth::session::SignedIn;
use crate::clock::{HOUR_MS, rfc3339};
use crate::db::activity::Names;
use crate::db::withdrawals::Withdrawal;
use crate::db::{approvals as adb, pending};
use crate::domain::approval::{Approval, Decision, eligibility, tally};
use crate::domain::money::Currency;
use crate::domain::policy::HoldReason;
use crate::service::alerts::voter;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Value, json};

/// The queue shows at most this many (the oldest: they expire first).
pub const QUEUE_CAP: i64 = 500;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/approvals", web::get().to(queue))
        .route("/approvals/bulk", web::post().to(bulk::decide));
}

/// The queue's filters and order, as typed (re-shown in the form).
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueQuery {
    pub currency: String,
    pub reason: String,
    pub mine: bool,
    pub sort: String,
}

pub const REASONS: [(&str, &str); 3] = [
    ("limit", "over a limit"),
    ("confirmation", "Withdrawal Confirmation"),
    ("tier", "approval tier"),
];

pub const SORTS: [(&str, &str); 4] = [
    ("oldest", "oldest first"),
    ("newest", "newest first"),
    ("amount", "largest value first"),
    ("currency", "by currency"),
];

impl QueueQuery {
    pub fn parse(query: &str) -> QueueQuery {
        let mut q = QueueQuery::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let v = v.trim().to_string();
            match k.as_ref() {
                "currency" => q.currency = v.to_ascii_uppercase(),
                "reason" => q.reason = v,
                "mine" => q.mine = !v.is_empty() && v != "0",
                "sort" => q.sort = v,
                _ => {}
            }
        }
        q
    }

    /// What cannot be used, in words (the page answers 400 with them).
    pub fn errors(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !self.currency.is_empty() && Currency::parse(&self.currency).is_none() {
            e.push(format!("Currency: {:?} is not a currency", self.currency));
        }
        if !self.reason.is_empty() && !REASONS.iter().any(|(k, _)| *k == self.reason) {
            e.push(format!(
                "Reason: {:?} is not one of limit, confirmation, tier",
                self.reason
            ));
        }
        if !self.sort.is_empty() && !SORTS.iter().any(|(k, _)| *k == self.sort) {
            e.push(format!(
                "Sort: {:?} is not one of oldest, newest, amount, currency",
                self.sort
            ));
        }
        e
    }

    /// The query string that shows this view again.
    pub fn link(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("currency", &self.currency),
            ("reason", &self.reason),
            ("sort", &self.sort),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if self.mine {
            s.append_pair("mine", "1");
        }
        s.finish()
    }
}

fn reason_kind(r: &HoldReason) -> &'static str {
    match r {
        HoldReason::Limit { .. } => "limit",
        HoldReason::WithdrawalConfirmation => "confirmation",
        HoldReason::Tier { .. } => "tier",
    }
}

/// "3 h 05 min", "12 min", "2 d 4 h".
pub fn duration_text(ms: i64) -> String {
    let mins = ms.max(0) / 60_000;
    let (d, h, m) = (mins / 1440, (mins / 60) % 24, mins % 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m:02} min"),
        _ => format!("{d} d {h} h"),
    }
}

fn short_address(a: &str) -> String {
    let chars: Vec<char> = a.chars().collect();
    if chars.len() <= 16 {
        return a.to_string();
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 6..].iter().collect();
    format!("{head}…{tail}")
}

struct Row {
    w: Withdrawal,
    json: Value,
    can_decide: bool,
}

async fn rows(
    state: &AppState,
    s: &SignedIn,
    q: &QueueQuery,
) -> Result<(Vec<Row>, usize), PageError> {
    let pending = pending::pending(&state.db, &s.project.id, QUEUE_CAP).await?;
    let loaded = pending.len();
    let mut votes = adb::votes_on_pending(&state.db, &s.project.id).await?;
    let names = Names::load(&state.db, &s.project.id).await?;
    let now = state.now();
    let mut out = Vec::new();
    for w in pending {
        let votes = votes.remove(&w.id).unwrap_or_default();
        let approvals: Vec<Approval> = votes
            .iter()
            .filter(|v| v.decision == Decision::Approve)
            .map(|v| Approval {
                by_owner: v.by_owner,
            })
            .collect();
        let t = tally(&w.requirement, &approvals);
        let mine = votes.iter().find(|v| v.user_id == s.user.id);
        let why_not = match mine {
            Some(v) => Some(format!("you already {}d it", v.decision.as_str())),
            None => eligibility(&w.requirement, voter(&w, &s.user, now))
                .err()
                .map(|e| e.to_string()),
        };
        let kinds: Vec<&str> = w.requirement.reasons.iter().map(reason_kind).collect();
        if (!q.currency.is_empty() && w.currency != q.currency)
            || (!q.reason.is_empty() && !kinds.contains(&q.reason.as_str()))
            || (q.mine && why_not.is_some())
        {
            continue;
        }
        let json = json!({
            "id": w.id,
            "foreign_id": w.foreign_id,
            "amount": amount_text(&w.currency, w.amount),
            "currency": w.currency,
            "base_value": amount_text(&w.base_currency, w.base_value),
            "base_currency": w.base_currency,
            "address": w.address,
            "short_address": short_address(&w.address),
            "reasons": w.requirement.reasons.iter().map(|r| json!({
                "kind": reason_kind(r),
                "text": r.describe(),
            })).collect::<Vec<_>>(),
            "initiator": names.describe(&w.initiator_kind, &w.initiator_id),
            "approvals": t.approvals,
            "needed": t.needed,
            "owner_needed": t.owner_needed,
            "age": duration_text(now - w.created_at),
            "created": rfc3339(w.created_at),
            "expires": w.expires_at.map(rfc3339),
            "expires_in": w.expires_at.map(|e| duration_text(e - now)),
            "expires_soon": w.expires_at.is_some_and(|e| e - now < HOUR_MS),
            "why_not": why_not,
        });
        out.push(Row {
            can_decide: why_not.is_none(),
            w,
            json,
        });
    }
    match q.sort.as_str() {
        "newest" => out.sort_by_key(|r| std::cmp::Reverse(r.w.id)),
        "amount" => out.sort_by(|a, b| {
            b.w.base_value
                .cmp(&a.w.base_value)
                .then(a.w.id.cmp(&b.w.id))
        }),
        "currency" => out.sort_by(|a, b| a.w.currency.cmp(&b.w.currency).then(a.w.id.cmp(&b.w.id))),
        _ => {} // oldest first, as loaded
    }
    Ok((out, loaded))
}

/// The queue page: with an error (a refused bulk decision, 422) and the boxes that were
/// ticked, or plain.
pub async fn queue_page(
    state: &AppState,
    s: &SignedIn,
    q: &QueueQuery,
    selected: &[i64],
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut ctx = page_context(s, "approvals");
    let errors = q.errors();
    let (rows, loaded) = if errors.is_empty() {
        rows(state, s, q).await?
    } else {
        (Vec::new(), 0)
    };
    let decidable = rows.iter().filter(|r| r.can_decide).count();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            r.json["selected"] = json!(selected.contains(&r.w.id));
            r.json
        })
        .collect();
    ctx.insert("rows", &rows);
    ctx.insert("decidable", &decidable);
    ctx.insert("q", q);
    ctx.insert("query", &q.link());
    ctx.insert(
        "filtered",
        &(!q.currency.is_empty() || !q.reason.is_empty() || q.mine),
    );
    ctx.insert("currencies", &crypto_currencies());
    ctx.insert("reasons", &REASONS);
    ctx.insert("sorts", &SORTS);
    ctx.insert("capped", &(loaded as i64 >= QUEUE_CAP));
    ctx.insert("cap", &QUEUE_CAP);
    ctx.insert("errors", &errors);
    ctx.insert("error", &error);
    ctx.insert("can_decide_any", &s.user.can_approve(state.now()));
    let mut resp = render("approvals/queue.html", &ctx)?;
    *resp.status_mut() = if errors.is_empty() {
        status
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(resp)
}

async fn queue(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
) -> Result<HttpResponse, PageError> {
    let q = QueueQuery::parse(req.query_string());
    queue_page(&state, &s, &q, &[], None, StatusCode::OK).await
}
