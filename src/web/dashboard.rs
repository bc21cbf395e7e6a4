//! The dashboard at `/`: what is waiting, what the balances are, what happened lately.

use super::error::PageError;
use super::withdrawals::{amount_text, row_json};
use super::{page_context, render};
use crate::auth::session::SignedIn;
use crate::clock::rfc3339;
use crate::db::activity::{self, Names, Record};
use crate::db::balances;
use crate::db::withdrawal_list::{self as wl, Cursor, ListFilter};
use crate::domain::withdrawal::Status;
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

const LATEST: i64 = 10;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(dashboard));
}

/// The withdrawal an audit subject names, if it names one.
fn withdrawal_subject(subject: &str) -> Option<i64> {
    subject
        .strip_prefix("withdrawal:")
        .and_then(|id| id.parse().ok())
}

/// One audit record in words: who, what (linked to the withdrawal it is about), when.
fn activity_json(r: &Record, names: &Names) -> Value {
    let wid = withdrawal_subject(&r.subject);
    let d = &r.details;
    let text = |k: &str| d[k].as_str().unwrap_or("").to_string();
    let what = match (r.action.as_str(), wid) {
        ("withdrawal.created", Some(id)) => format!(
            "created withdrawal #{id}: {} {} ({})",
            text("amount"),
            text("currency"),
            text("status")
        ),
        ("withdrawal.status_changed", Some(id)) => {
            format!(
                "moved withdrawal #{id} from {} to {}",
                text("from"),
                text("to")
            )
        }
        ("callback.resent", Some(id)) => format!("re-sent a callback of withdrawal #{id}"),
        ("balance.credited", _) => format!(
            "credited {} {}",
            text("amount"),
            r.subject.trim_start_matches("balance:")
        ),
        (action, _) => action.replace(['.', '_'], " "),
    };
    json!({
        "who": names.describe(&r.actor_kind, &r.actor_id),
        "what": what,
        "action": r.action,
        "link": wid.map(|id| format!("/withdrawals/{id}")),
        "at": rfc3339(r.created_at),
    })
}

async fn dashboard(state: web::Data<AppState>, s: SignedIn) -> Result<HttpResponse, PageError> {
    let project = &s.project.id;
    let pending = wl::count_with_status(&state.db, project, Status::Pending).await?;
    let balances: Vec<Value> = balances::list(&state.db, project)
        .await?
        .iter()
        .map(|b| {
            json!({
                "currency": b.currency,
                "available": amount_text(&b.currency, b.available),
                "held": amount_text(&b.currency, b.held),
                "has_held": !b.held.is_zero(),
            })
        })
        .collect();
    let latest = wl::list(
        &state.db,
        project,
        &ListFilter::default(),
        Cursor::Newest,
        LATEST,
    )
    .await?;
    let latest: Vec<Value> = latest.rows.iter().map(row_json).collect();
    let names = Names::load(&state.db, project).await?;
    let activity: Vec<Value> = activity::recent(&state.db, project, LATEST)
        .await?
        .iter()
        .map(|r| activity_json(r, &names))
        .collect();
    let mut ctx = page_context(&s, "dashboard");
    ctx.insert("pending", &pending);
    ctx.insert("balances", &balances);
    // The latest withdrawals, in the table the list page uses.
    ctx.insert("rows", &latest);
    ctx.insert("activity", &activity);
    render("dashboard.html", &ctx)
}
