//! The browser app: server-rendered pages (tera templates embedded at build time), usable
//! without JavaScript. Every response carries a strict Content-Security-Policy.

pub mod account;
pub mod approvals;
pub mod approve;
pub mod audit;
pub mod confirmation;
pub mod dashboard;
pub mod error;
pub mod invite;
pub mod mailbox;
pub mod payouts;
pub mod settings;
pub mod settings_limits;
pub mod settings_slack;
pub mod settings_tiers;
pub mod setup;
pub mod signin;
pub mod step_up;
pub mod users;
pub mod withdrawals;

use crate::auth::session::SignedIn;
use actix_web::{HttpRequest, HttpResponse, web};
use error::PageError;
use std::sync::LazyLock;
use tera::{Context, Tera};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// All templates, compiled once. A template that fails to parse is a build defect; the error
/// names it at start-up (see `check_templates`).
pub static TEMPLATES: LazyLock<Tera> = LazyLock::new(|| {
    let mut t = Tera::default();
    let entries: Vec<(&str, &str)> = embedded::TEMPLATES.to_vec();
    if let Err(e) = t.add_raw_templates(entries) {
        tracing::error!(error = ?e, "templates failed to compile");
    }
    t.autoescape_on(vec![".html"]);
    t
});

/// Fails start-up when a template does not compile.
pub fn check_templates() -> Result<(), String> {
    let mut t = Tera::default();
    t.add_raw_templates(embedded::TEMPLATES.to_vec())
        .map_err(|e| format!("{e:?}"))
}

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'";

pub fn render(name: &str, ctx: &Context) -> Result<HttpResponse, PageError> {
    let body = TEMPLATES.render(name, ctx)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body))
}

/// The context every signed-in page starts from: who is signed in, their project, the CSRF
/// token for forms, and the navigation.
pub fn page_context(s: &SignedIn, active: &str) -> Context {
    let mut ctx = Context::new();
    ctx.insert(
        "me",
        &serde_json::json!({
            "id": s.user.id,
            "email": s.user.email,
            "role": s.user.role.as_str(),
            "is_owner": s.user.is_owner(),
            "withdrawal_rights": s.user.has_withdrawal_rights(),
        }),
    );
    ctx.insert(
        "project",
        &serde_json::json!({
            "id": s.project.id,
            "name": s.project.name,
            "base_currency": s.project.base_currency,
        }),
    );
    ctx.insert("csrf", &s.session.csrf_token);
    ctx.insert("active", active);
    ctx.insert("pending_count", &s.pending);
    ctx
}

/// See-other redirect (after a POST).
pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", to))
        .finish()
}

/// Only same-site relative paths are followed after sign-in (no open redirect): a path that
/// starts with one `/` and holds nothing but visible ASCII other than `\`. Browsers drop tabs
/// and line breaks from a URL and read `\` as `/`, so `/\t/evil.example` or `/\evil.example`
/// in a `Location` would take them to another site.
pub fn safe_return_path(p: Option<&str>) -> String {
    match p {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

async fn static_file(req: HttpRequest) -> HttpResponse {
    let name = req.match_info().query("file");
    match embedded::STATIC.iter().find(|(n, _)| *n == name) {
        Some((n, body)) => {
            let ct = if n.ends_with(".css") {
                "text/css; charset=utf-8"
            } else if n.ends_with(".js") {
                "text/javascript; charset=utf-8"
            } else if n.ends_with(".svg") {
                "image/svg+xml"
            } else {
                "text/plain; charset=utf-8"
            };
            HttpResponse::Ok()
                .content_type(ct)
                .insert_header(("Cache-Control", "public, max-age=3600"))
                .body(*body)
        }
        None => HttpResponse::NotFound().finish(),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // A form that does not parse (a missing or malformed field) gets a page, not plain text.
    cfg.app_data(
        web::FormConfig::default()
            .limit(64 * 1024)
            .error_handler(|e, _| {
                PageError::BadRequest(format!(
                    "The form could not be read ({e}). Go back, reload the page and try again."
                ))
                .into()
            }),
    );
    cfg.route("/static/{file:.*}", web::get().to(static_file));
    signin::routes(cfg);
    account::routes(cfg);
    mailbox::routes(cfg);
    setup::routes(cfg);
    users::routes(cfg);
    invite::routes(cfg);
    approve::routes(cfg);
    settings::routes(cfg);
    confirmation::routes(cfg);
    audit::routes(cfg);
    dashboard::routes(cfg);
    withdrawals::routes(cfg);
    approvals::routes(cfg);
    payouts::routes(cfg);
}
