//! The withdrawals pages: the filtered, paginated list, one withdrawal's detail (timeline,
//! callback deliveries, approving or declining it) and the owner's "re-send callback".

mod decide;
pub use decide::MAX_NOTE;
mod detail;
mod filters;

use super::error::PageError;
use super::{page_context, render};
use crate::auth::session::SignedIn;
use crate::clock::rfc3339;
use crate::db::withdrawal_list::{self as wl, Cursor, ListRow, PAGE_SIZE};
use crate::domain::money::Currency;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use filters::RawQuery;
use rust_decimal::Decimal;
use serde_json::{Value, json};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/withdrawals", web::get().to(list))
        .route("/withdrawals/{id}", web::get().to(detail::page))
        .route("/withdrawals/{id}/approve", web::post().to(decide::approve))
        .route("/withdrawals/{id}/decline", web::post().to(decide::decline))
        .route(
            "/withdrawals/{id}/callbacks/{job_id}/resend",
            web::post().to(detail::resend),
        );
}

/// An amount at its currency's scale ("0.01000000" for BTC).
pub fn amount_text(currency: &str, amount: Decimal) -> String {
    match Currency::parse(currency) {
        Some(c) => c.format(amount),
        None => amount.to_string(),
    }
}

/// One withdrawal as a line of a table (the list and the dashboard).
pub fn row_json(r: &ListRow) -> Value {
    json!({
        "id": r.id,
        "foreign_id": r.foreign_id,
        "currency": r.currency,
        "amount": amount_text(&r.currency, r.amount),
        "address": r.address,
        "tag": r.tag,
        "end_user_reference": r.end_user_reference,
        "status": r.status.merchant_status(),
        "error": r.error,
        "created": rfc3339(r.created_at),
        "source": r.source.as_ref().map(|(currency, amount)| json!({
            "currency": currency,
            "amount": amount_text(currency, *amount),
        })),
    })
}

async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
) -> Result<HttpResponse, PageError> {
    let raw = RawQuery::parse(req.query_string());
    let mut ctx = page_context(&s, "withdrawals");
    ctx.insert("q", &raw);
    ctx.insert("filtered", &raw.is_filtered());
    ctx.insert("statuses", &filters::STATUSES);
    ctx.insert("currencies", &filters::currency_choices());
    ctx.insert("page_size", &PAGE_SIZE);
    ctx.insert("newest", &raw.link(Cursor::Newest));
    match filters::parse(&raw) {
        Ok(parsed) => {
            let page = wl::list(
                &state.db,
                &s.project.id,
                &parsed.filter,
                parsed.cursor,
                PAGE_SIZE,
            )
            .await?;
            let rows: Vec<Value> = page.rows.iter().map(row_json).collect();
            ctx.insert("rows", &rows);
            ctx.insert("errors", &Vec::<String>::new());
            ctx.insert("at_newest", &(parsed.cursor == Cursor::Newest));
            ctx.insert("older", &page.older.map(|id| raw.link(Cursor::Before(id))));
            ctx.insert("newer", &page.newer.map(|id| raw.link(Cursor::After(id))));
            render("withdrawals/list.html", &ctx)
        }
        Err(errors) => {
            ctx.insert("rows", &Vec::<Value>::new());
            ctx.insert("errors", &errors);
            ctx.insert("at_newest", &true);
            ctx.insert("older", &None::<String>);
            ctx.insert("newer", &None::<String>);
            let mut resp = render("withdrawals/list.html", &ctx)?;
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            Ok(resp)
        }
    }
}
