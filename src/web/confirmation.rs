//! Settings → Withdrawal Confirmation: the feature's status and the one button that fits it,
//! and the pages behind the confirmation links (`/confirm/{token}`: opening one changes
//! nothing; confirming is a POST).

use super::error::PageError;
use super::signin::ensure_session;
use super::users::{form_error, unprocessable};
use super::{page_context, redirect, render, step_up};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::SignedIn;
use crate::clock::rfc3339;
use crate::db::users;
use crate::domain::confirmation::{FeatureState, RequestKind};
use crate::service::confirmation::{
    self as csvc, ConfirmationError, Confirmed, LinkView, RequestView,
};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use tera::Context;

const PAGE: &str = "/settings/withdrawal-confirmation";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(PAGE, web::get().to(settings_page))
        .route(&format!("{PAGE}/enable"), web::post().to(enable))
        .route(&format!("{PAGE}/disable"), web::post().to(disable))
        .route(&format!("{PAGE}/cancel"), web::post().to(cancel))
        .route("/confirm/{token}", web::get().to(link_page))
        .route("/confirm/{token}", web::head().to(link_page))
        .route("/confirm/{token}", web::post().to(link_confirm))
        .route("/confirm/{token}/cancel", web::post().to(link_cancel));
}

fn request_json(r: &RequestView) -> Value {
    json!({
        "id": r.id,
        "kind": r.kind.as_str(),
        "requested_by": r.requested_by,
        "requested_by_id": r.requested_by_id,
        "approver": r.approver,
        "approver_id": r.approver_id,
        "created": rfc3339(r.created_at),
        "expires": rfc3339(r.expires_at),
        "awaiting": r.awaiting,
        "confirmed": r.confirmed,
    })
}

async fn page(
    state: &AppState,
    s: &SignedIn,
    error: Option<Value>,
    notice: Option<&str>,
) -> Result<HttpResponse, PageError> {
    let standing = csvc::standing(state, &s.project.id)
        .await
        .map_err(page_error)?;
    let usable = users::count_approvers(&state.db, &s.project.id, state.now()).await?;
    let approvers: Vec<Value> = csvc::disable_approvers(state, &s.user)
        .await?
        .into_iter()
        .map(|u| json!({"id": u.id, "email": u.email, "role": u.role.as_str()}))
        .collect();
    let mut ctx = page_context(s, "settings");
    ctx.insert("status", standing.state.label());
    ctx.insert(
        "state",
        match standing.state {
            FeatureState::Disabled => "disabled",
            FeatureState::EnableRequested => "enable_requested",
            FeatureState::Enabled => "enabled",
            FeatureState::DisableRequested => "disable_requested",
        },
    );
    ctx.insert("request", &standing.request.as_ref().map(request_json));
    ctx.insert("usable_rights", &usable);
    ctx.insert("approvers", &approvers);
    ctx.insert("primary_email", &s.project.primary_email);
    ctx.insert("error", &error);
    ctx.insert("notice", &notice);
    render("settings/confirmation.html", &ctx)
}

fn page_error(e: ConfirmationError) -> PageError {
    match e {
        ConfirmationError::NotFound => PageError::NotFound,
        ConfirmationError::Db(d) => d.into(),
        ConfirmationError::Refused(m) | ConfirmationError::Internal(m) => PageError::Internal(m),
    }
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    done: Option<String>,
}

async fn settings_page(
    state: web::Data<AppState>,
    s: SignedIn,
    q: web::Query<NoticeQuery>,
) -> Result<HttpResponse, PageError> {
    let notice = match q.done.as_deref() {
        Some("enable") => Some(
            "A confirmation link went to the primary account email. The feature is enabled once it is confirmed (within 30 minutes).",
        ),
        Some("disable") => Some(
            "Confirmation links went to you and to the approving user. The feature stays enabled until both are confirmed (within 30 minutes).",
        ),
        Some("cancel") => Some("The request was cancelled."),
        _ => None,
    };
    page(&state, &s, None, notice).await
}

/// A refused step: the page again with the reason, 422.
async fn refused(
    state: &AppState,
    s: &SignedIn,
    label: &str,
    message: &str,
) -> Result<HttpResponse, PageError> {
    page(state, s, Some(form_error(label, message)), None)
        .await
        .map(unprocessable)
}

#[derive(Deserialize)]
pub struct EnableForm {
    csrf: String,
    #[serde(default)]
    code: String,
}

async fn enable(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    form: web::Form<EnableForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &form.csrf)?;
    s.require_owner()?;
    // The seed's order: status, two users with withdrawal rights, then 2FA, then email. The
    // first two are checked again (atomically) by the request itself.
    let standing = csvc::standing(&state, &s.project.id)
        .await
        .map_err(page_error)?;
    let usable = users::count_approvers(&state.db, &s.project.id, state.now()).await?;
    if let Err(e) = crate::domain::confirmation::may_request_enable(standing.state, usable) {
        return refused(&state, &s, "", &e.to_string()).await;
    }
    if let Some(m) = step_up::check(&state, &req, &s, &form.code).await? {
        return refused(&state, &s, "Code", &m).await;
    }
    match csvc::request_enable(&state, &s.user, &origin(&req)).await {
        Ok(()) => Ok(redirect(&format!("{PAGE}?done=enable"))),
        Err(ConfirmationError::Refused(m)) => refused(&state, &s, "", &m).await,
        Err(e) => Err(page_error(e)),
    }
}

#[derive(Deserialize)]
pub struct DisableForm {
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    approver: String,
}

async fn disable(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    form: web::Form<DisableForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &form.csrf)?;
    s.require_owner()?;
    let standing = csvc::standing(&state, &s.project.id)
        .await
        .map_err(page_error)?;
    let approver_ok = csvc::disable_approvers(&state, &s.user)
        .await?
        .iter()
        .any(|u| u.id == form.approver);
    if let Err(e) = crate::domain::confirmation::may_request_disable(standing.state, approver_ok) {
        let label = if standing.state == FeatureState::Enabled {
            "Approving user"
        } else {
            ""
        };
        return refused(&state, &s, label, &e.to_string()).await;
    }
    if let Some(m) = step_up::check(&state, &req, &s, &form.code).await? {
        return refused(&state, &s, "Code", &m).await;
    }
    match csvc::request_disable(&state, &s.user, &form.approver, &origin(&req)).await {
        Ok(()) => Ok(redirect(&format!("{PAGE}?done=disable"))),
        Err(ConfirmationError::Refused(m)) => refused(&state, &s, "", &m).await,
        Err(e) => Err(page_error(e)),
    }
}

#[derive(Deserialize)]
pub struct CancelForm {
    csrf: String,
    request_id: i64,
}

async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    form: web::Form<CancelForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &form.csrf)?;
    match csvc::cancel(&state, form.request_id, &s.user, &origin(&req)).await {
        Ok(()) => Ok(redirect(&format!("{PAGE}?done=cancel"))),
        Err(ConfirmationError::Refused(m)) => refused(&state, &s, "", &m).await,
        Err(e) => Err(page_error(e)),
    }
}

fn link_problem(status: StatusCode, title: &str, message: &str) -> Result<HttpResponse, PageError> {
    let mut ctx = Context::new();
    ctx.insert("title", title);
    ctx.insert("message", message);
    let mut resp = render("confirmation/problem.html", &ctx)?;
    *resp.status_mut() = status;
    Ok(resp)
}

fn not_found() -> Result<HttpResponse, PageError> {
    link_problem(
        StatusCode::NOT_FOUND,
        "Link not found",
        "This confirmation link is not valid. Check that you opened the whole link from the email.",
    )
}

/// The link's page: what it confirms, for whom, and the form when the visitor may use it.
async fn link_view_page(
    state: &AppState,
    req: &HttpRequest,
    token: &str,
    error: Option<&str>,
    done: Option<&str>,
) -> Result<HttpResponse, PageError> {
    let view = match csvc::link_view(state, token).await {
        Ok(v) => v,
        Err(ConfirmationError::NotFound) => return not_found(),
        Err(e) => return Err(page_error(e)),
    };
    let (current, cookie) = ensure_session(state, req).await?;
    let signed_in = current
        .user
        .as_ref()
        .filter(|_| current.row.stage == crate::db::sessions::Stage::Full);
    let mut ctx = Context::new();
    fill_link_context(&mut ctx, &view, signed_in.map(|u| u.id.as_str()));
    ctx.insert("csrf", &current.row.csrf_token);
    ctx.insert("token", token);
    ctx.insert("error", &error);
    ctx.insert("done", &done);
    let mut resp = render("confirmation/link.html", &ctx)?;
    if error.is_some() {
        *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    } else if !view.open && done.is_none() {
        *resp.status_mut() = StatusCode::GONE;
    }
    if let Some(c) = cookie {
        let _ = resp.add_cookie(&c);
    }
    Ok(resp)
}

fn fill_link_context(ctx: &mut Context, v: &LinkView, signed_in_id: Option<&str>) {
    let needs_user = v.user_id.is_some();
    let is_addressee = v
        .user_id
        .as_deref()
        .is_some_and(|u| Some(u) == signed_in_id);
    ctx.insert("kind", v.kind.as_str());
    ctx.insert("enable", &(v.kind == RequestKind::Enable));
    ctx.insert("email", &v.email);
    ctx.insert("open", &v.open);
    ctx.insert("status", &v.status);
    ctx.insert("confirmed", &v.confirmed);
    ctx.insert("needs_sign_in", &(needs_user && signed_in_id.is_none()));
    ctx.insert(
        "wrong_user",
        &(needs_user && signed_in_id.is_some() && !is_addressee),
    );
    ctx.insert(
        "may_confirm",
        &(v.open && !v.confirmed && (!needs_user || is_addressee)),
    );
    ctx.insert("may_cancel", &(v.open && is_addressee));
    // A disable link's page names the people involved only to its addressee; the enable link
    // is the primary account email's, and whoever holds it may confirm it.
    ctx.insert("show_details", &(!needs_user || is_addressee));
    ctx.insert("request", &request_json(&v.request));
}

async fn link_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    link_view_page(&state, &req, &path, None, None).await
}

#[derive(Deserialize)]
pub struct LinkForm {
    csrf: String,
}

/// The visitor's session for a link POST: CSRF-checked; `Some(user)` when fully signed in.
async fn link_visitor(
    state: &AppState,
    req: &HttpRequest,
    csrf_token: &str,
) -> Result<Option<crate::db::users::User>, PageError> {
    let Some(current) = crate::auth::session::load(state, req).await? else {
        return Err(PageError::BadRequest(
            "Your session has ended. Open the link from the email again.".into(),
        ));
    };
    csrf::check(state, req, &current.row, csrf_token)?;
    Ok(current
        .user
        .filter(|_| current.row.stage == crate::db::sessions::Stage::Full))
}

async fn link_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<LinkForm>,
) -> Result<HttpResponse, PageError> {
    let user = link_visitor(&state, &req, &form.csrf).await?;
    match csvc::confirm(&state, &path, user.as_ref(), &origin(&req)).await {
        Ok(Confirmed::Completed(kind)) => {
            let done = if kind == RequestKind::Enable {
                "Confirmed: Withdrawal Confirmation is now enabled."
            } else {
                "Confirmed: Withdrawal Confirmation is now disabled."
            };
            link_view_page(&state, &req, &path, None, Some(done)).await
        }
        Ok(Confirmed::Waiting) => {
            link_view_page(
                &state,
                &req,
                &path,
                None,
                Some("Confirmed. The other confirmation is still awaited."),
            )
            .await
        }
        Err(ConfirmationError::NotFound) => not_found(),
        Err(ConfirmationError::Refused(m)) => {
            link_view_page(&state, &req, &path, Some(&m), None).await
        }
        Err(e) => Err(page_error(e)),
    }
}

async fn link_cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<LinkForm>,
) -> Result<HttpResponse, PageError> {
    let Some(user) = link_visitor(&state, &req, &form.csrf).await? else {
        return link_view_page(
            &state,
            &req,
            &path,
            Some("Sign in to cancel this request."),
            None,
        )
        .await;
    };
    let view = match csvc::link_view(&state, &path).await {
        Ok(v) => v,
        Err(ConfirmationError::NotFound) => return not_found(),
        Err(e) => return Err(page_error(e)),
    };
    if view.user_id.as_deref() != Some(user.id.as_str()) {
        let m = "This link was sent to someone else: only its addressee can cancel the request with it.";
        return link_view_page(&state, &req, &path, Some(m), None).await;
    }
    match csvc::cancel(&state, view.request.id, &user, &origin(&req)).await {
        Ok(()) => {
            link_view_page(
                &state,
                &req,
                &path,
                None,
                Some("The request was cancelled."),
            )
            .await
        }
        Err(ConfirmationError::Refused(m)) => {
            link_view_page(&state, &req, &path, Some(&m), None).await
        }
        Err(e) => Err(page_error(e)),
    }
}
