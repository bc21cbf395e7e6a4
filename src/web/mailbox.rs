//! The development mailbox: when no SMTP server is configured, mail is kept here and shown at
//! `/dev/mailbox`, links clickable, so every email flow can be followed in one browser. It is
//! not served at all when SMTP is configured, nor when `base_url` is not a loopback address:
//! the mail holds invitation links, and a public installation that forgot its SMTP settings
//! must not publish them.

use super::error::PageError;
use super::render;
use crate::clock::rfc3339;
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use sqlx::Row;
use tera::Context;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dev/mailbox", web::get().to(list))
        .route("/dev/mailbox/{id}", web::get().to(show));
}

/// Whether the mailbox page is served (see the module documentation).
pub fn served(state: &AppState) -> bool {
    let loopback = url::Url::parse(&state.settings.base_url).is_ok_and(|u| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    });
    state.mailer.is_dev_mailbox() && loopback
}

fn enabled(state: &AppState) -> Result<(), PageError> {
    if served(state) {
        Ok(())
    } else {
        Err(PageError::NotFound)
    }
}

async fn list(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    enabled(&state)?;
    let rows = sqlx::query(
        "SELECT id, to_addr, subject, created_at FROM dev_mailbox ORDER BY id DESC LIMIT 200",
    )
    .fetch_all(state.db.reader())
    .await
    .map_err(crate::db::DbError::from)?;
    let mails: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.try_get::<i64, _>("id").unwrap_or_default(),
                "to": r.try_get::<String, _>("to_addr").unwrap_or_default(),
                "subject": r.try_get::<String, _>("subject").unwrap_or_default(),
                "at": rfc3339(r.try_get::<i64, _>("created_at").unwrap_or_default()),
            })
        })
        .collect();
    let mut ctx = Context::new();
    ctx.insert("mails", &mails);
    render("dev/mailbox.html", &ctx)
}

async fn show(state: web::Data<AppState>, path: web::Path<i64>) -> Result<HttpResponse, PageError> {
    enabled(&state)?;
    let row = sqlx::query(
        "SELECT to_addr, subject, text_body, created_at FROM dev_mailbox WHERE id = $1",
    )
    .bind(path.into_inner())
    .fetch_optional(state.db.reader())
    .await
    .map_err(crate::db::DbError::from)?
    .ok_or(PageError::NotFound)?;
    let text: String = row.try_get("text_body").map_err(crate::db::DbError::from)?;
    // Links are made clickable from the plain-text part (escaped by the template), never by
    // trusting the HTML part.
    let parts: Vec<_> = text
        .split_inclusive(char::is_whitespace)
        .map(|w| {
            let t = w.trim_end();
            let is_link = t.starts_with("http://") || t.starts_with("https://");
            serde_json::json!({"text": w, "link": is_link.then_some(t)})
        })
        .collect();
    let mut ctx = Context::new();
    ctx.insert(
        "to",
        &row.try_get::<String, _>("to_addr")
            .map_err(crate::db::DbError::from)?,
    );
    ctx.insert(
        "subject",
        &row.try_get::<String, _>("subject")
            .map_err(crate::db::DbError::from)?,
    );
    ctx.insert(
        "at",
        &rfc3339(
            row.try_get::<i64, _>("created_at")
                .map_err(crate::db::DbError::from)?,
        ),
    );
    ctx.insert("parts", &parts);
    render("dev/message.html", &ctx)
}
