//! `/approve/{token}`: the page an approval email links to. GET and HEAD only show it (and
//! consume nothing); POST decides, with the session's CSRF token and a fresh TOTP code. The
//! rules are in `service::approval_links`.

use super::error::PageError;
use super::{page_context, render, step_up};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::{self, SignedIn};
use crate::db::activity::Names;
use crate::db::sessions::{self as sdb, Stage};
use crate::domain::approval::Decision;
use crate::notify::approval_email::details_context;
use crate::service::approval_links::{self as links, LinkError, Opened, Ready, Refusal};
use crate::service::approvals::{self, Outcome};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use tera::Context;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/approve/{token}", web::get().to(page))
        .route("/approve/{token}", web::head().to(page))
        .route("/approve/{token}", web::post().to(submit));
}

/// The visitor's full session, if any. Unlike the `SignedIn` extractor this does not send
/// anyone to sign in: the page itself says what to do.
async fn visitor(state: &AppState, req: &HttpRequest) -> Result<Option<SignedIn>, PageError> {
    let Some(current) = session::load(state, req).await? else {
        return Ok(None);
    };
    let Some(user) = current.user.filter(|_| current.row.stage == Stage::Full) else {
        return Ok(None);
    };
    Ok(SignedIn::of(state, user, current.row).await?)
}

fn path_of(token: &str) -> String {
    format!("/approve/{token}")
}

fn with_status(mut resp: HttpResponse, status: u16) -> HttpResponse {
    if let Ok(s) = StatusCode::from_u16(status) {
        *resp.status_mut() = s;
    }
    resp
}

fn refused_page(s: Option<&SignedIn>, token: &str, r: &Refusal) -> Result<HttpResponse, PageError> {
    let mut ctx = match s {
        Some(s) => page_context(s, "withdrawals"),
        None => Context::new(),
    };
    ctx.insert("title", r.title());
    ctx.insert("message", &r.message());
    // Signed out: the only way on is to sign in (and come back here).
    ctx.insert(
        "sign_in",
        &match (s, r) {
            (None, Refusal::Unknown) => None,
            (None, _) => Some(sign_in_href(token)),
            (Some(_), _) => None,
        },
    );
    ctx.insert("foreign", &matches!(r, Refusal::Foreign { .. }));
    Ok(with_status(
        render("approve/refused.html", &ctx)?,
        r.http_status(),
    ))
}

fn sign_in_href(token: &str) -> String {
    let next: String = url::form_urlencoded::byte_serialize(path_of(token).as_bytes()).collect();
    format!("/login?next={next}")
}

async fn form_page(
    state: &AppState,
    s: &SignedIn,
    ready: &Ready,
    error: Option<&str>,
    note: &str,
) -> Result<HttpResponse, PageError> {
    let w = &ready.withdrawal;
    let names = Names::load(&state.db, &w.project_id).await?;
    let (votes, tally) = approvals::standing(state, w).await?;
    let mut ctx = page_context(s, "withdrawals");
    ctx.extend(details_context(state, w, &names));
    ctx.insert("standing", &tally.describe());
    ctx.insert(
        "votes",
        &votes
            .iter()
            .map(|v| {
                json!({
                    "who": names.describe("user", &v.user_id),
                    "decision": v.decision.as_str(),
                    "at": crate::clock::rfc3339(v.created_at),
                })
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "link_expires",
        &crate::clock::rfc3339(ready.link.expires_at),
    );
    ctx.insert("error", &error);
    ctx.insert("note", note);
    render("approve/confirm.html", &ctx)
}

async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let token = path.into_inner();
    let s = visitor(&state, &req).await?;
    let opened = links::open(&state, &token, s.as_ref().map(|s| &s.user)).await?;
    match (&s, opened) {
        (_, Opened::Refused(r)) => refused_page(s.as_ref(), &token, &r),
        (Some(s), Opened::Ready(ready)) => {
            // Sign-in brought the addressee back here: the link's token need not stay in
            // the session row any longer.
            if s.session.return_to.as_deref() == Some(path_of(&token).as_str()) {
                sdb::set_return_to(&state.db, &s.session.id_hash, None).await?;
            }
            form_page(&state, s, &ready, None, "").await
        }
        (None, _) | (_, Opened::SignInFirst) => {
            let mut ctx = Context::new();
            ctx.insert("sign_in", &sign_in_href(&token));
            render("approve/sign_in.html", &ctx)
        }
    }
}

#[derive(Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
}

const MAX_NOTE: usize = 500;

async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    f: web::Form<DecideForm>,
) -> Result<HttpResponse, PageError> {
    let token = path.into_inner();
    let Some(s) = visitor(&state, &req).await? else {
        return Err(PageError::SignIn {
            return_to: Some(path_of(&token)),
        });
    };
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    let ready = match links::open(&state, &token, Some(&s.user)).await? {
        Opened::Ready(r) => r,
        Opened::Refused(r) => return refused_page(Some(&s), &token, &r),
        Opened::SignInFirst => return Err(PageError::Forbidden),
    };
    let Some(decision) = Decision::parse(&f.decision) else {
        return Err(PageError::BadRequest(
            "Choose Approve or Decline. Go back, reload the page and try again.".into(),
        ));
    };
    if f.note.chars().count() > MAX_NOTE {
        let m = format!("The note is longer than {MAX_NOTE} characters.");
        let resp = form_page(&state, &s, &ready, Some(&m), &f.note).await?;
        return Ok(with_status(resp, 422));
    }
    // The code is checked before the link is touched: a wrong or missing code leaves it
    // usable.
    if let Some(m) = step_up::check(&state, &req, &s, &f.code).await? {
        let m = format!("Verification code: {m}.");
        let resp = form_page(&state, &s, &ready, Some(&m), &f.note).await?;
        return Ok(with_status(resp, 422));
    }
    let result = links::decide(&state, &s.user, &token, decision, &f.note, &origin(&req)).await;
    // The code was verified: renew the session as after every step-up.
    let (cookie, s) = match step_up::renew(&state, &req, &s).await? {
        Some((c, renewed)) => (c, renewed),
        None => (session::removal_cookie(&state), s),
    };
    let mut resp = match result {
        Ok((w, outcome)) => {
            let mut ctx = page_context(&s, "withdrawals");
            let (title, message) = match &outcome {
                Outcome::Approved => (
                    "Approved",
                    "Your approval completed what the withdrawal needed: it goes to payout now, and the merchant is told.".to_string(),
                ),
                Outcome::Recorded(t) => (
                    "Approval recorded",
                    format!("Your approval counts; it still waits for more: {}.", t.describe()),
                ),
                Outcome::Declined => (
                    "Declined",
                    "The withdrawal is declined: the funds are released and the merchant is told.".to_string(),
                ),
            };
            ctx.insert("title", title);
            ctx.insert("message", &message);
            ctx.insert("id", &w.id);
            ctx.insert(
                "outcome",
                match outcome {
                    Outcome::Approved => "approved",
                    Outcome::Recorded(_) => "recorded",
                    Outcome::Declined => "declined",
                },
            );
            render("approve/done.html", &ctx)?
        }
        Err(LinkError::Refused(r)) => refused_page(Some(&s), &token, &r)?,
        // The session was renewed: the error page must carry the new cookie too.
        Err(LinkError::Db(e)) => actix_web::ResponseError::error_response(&PageError::from(e)),
    };
    let _ = resp.add_cookie(&cookie);
    Ok(resp)
}
