//! Accepting an invitation: the emailed link shows "choose your password" (opening it
//! consumes nothing: mail scanners open links); submitting the form activates the account,
//! uses up the link and continues with the set-up of two-factor authentication.

use super::error::PageError;
use super::render;
use super::signin::ensure_session;
use crate::api::origin;
use crate::auth::{csrf, session};
use crate::db::projects;
use crate::db::sessions::Stage;
use crate::db::users::User;
use crate::service::team::{self, AcceptError, InviteProblem};
use crate::state::AppState;
use actix_web::cookie::Cookie;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::Deserialize;
use tera::Context;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/invite/{token}", web::get().to(invite_page))
        .route("/invite/{token}", web::post().to(invite_submit));
}

fn with_cookie(mut resp: HttpResponse, cookie: Option<Cookie<'static>>) -> HttpResponse {
    if let Some(c) = cookie {
        let _ = resp.add_cookie(&c);
    }
    resp
}

fn invalid_page(problem: InviteProblem) -> Result<HttpResponse, PageError> {
    let (status, title, message) = match problem {
        InviteProblem::Unknown => (
            StatusCode::NOT_FOUND,
            "Invitation not found",
            "This invitation link is not valid. Check that you opened the whole link from the email.",
        ),
        InviteProblem::Used => (
            StatusCode::GONE,
            "Invitation already used",
            "This invitation has already been accepted. Sign in with your email address and password.",
        ),
        InviteProblem::Expired => (
            StatusCode::GONE,
            "Invitation expired",
            "This invitation has expired or was replaced by a newer one. Ask an owner of your project to send you a new invitation.",
        ),
    };
    let mut ctx = Context::new();
    ctx.insert("title", title);
    ctx.insert("message", message);
    ctx.insert("used", &(problem == InviteProblem::Used));
    let mut resp = render("auth/invite_invalid.html", &ctx)?;
    *resp.status_mut() = status;
    Ok(resp)
}

async fn form(
    state: &AppState,
    csrf_token: &str,
    user: &User,
    error: Option<&str>,
) -> Result<HttpResponse, PageError> {
    let project = projects::get(&state.db, &user.project_id)
        .await?
        .ok_or(PageError::NotFound)?;
    let mut ctx = Context::new();
    ctx.insert("csrf", csrf_token);
    ctx.insert("email", &user.email);
    ctx.insert("project_name", &project.name);
    ctx.insert("role", user.role.as_str());
    ctx.insert("rights", &user.has_withdrawal_rights());
    ctx.insert("min_len", &crate::auth::password::MIN_LEN);
    ctx.insert("error", &error);
    render("auth/invite.html", &ctx)
}

async fn invite_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let user = match team::open_invite(&state, &path)
        .await
        .map_err(super::users::page_error)?
    {
        Ok(u) => u,
        Err(problem) => return invalid_page(problem),
    };
    let (current, cookie) = ensure_session(&state, &req).await?;
    Ok(with_cookie(
        form(&state, &current.row.csrf_token, &user, None).await?,
        cookie,
    ))
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    csrf: String,
}

async fn invite_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    f: web::Form<AcceptForm>,
) -> Result<HttpResponse, PageError> {
    // The form's CSRF token belongs to the visitor's (anonymous) session from the GET.
    let Some(current) = session::load(&state, &req).await? else {
        return Err(PageError::Csrf);
    };
    csrf::check(&state, &req, &current.row, &f.csrf)?;
    let token = path.into_inner();
    match team::accept_invite(
        &state,
        &token,
        SecretString::from(f.password.clone()),
        &f.confirm,
        &origin(&req),
    )
    .await
    {
        Ok(user) => {
            let (cookie, _) = session::start(
                &state,
                &req,
                Some(&user),
                Stage::Enroll,
                Some(&current.row),
                false,
            )
            .await?;
            Ok(with_cookie(super::redirect("/login/enroll"), Some(cookie)))
        }
        Err(AcceptError::Link(problem)) => invalid_page(problem),
        Err(AcceptError::Password(m)) => {
            let user = match team::open_invite(&state, &token)
                .await
                .map_err(super::users::page_error)?
            {
                Ok(u) => u,
                Err(problem) => return invalid_page(problem),
            };
            let message = format!("Password: {m}.");
            let mut resp = form(&state, &current.row.csrf_token, &user, Some(&message)).await?;
            *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(resp)
        }
        Err(AcceptError::Other(e)) => Err(super::users::page_error(e)),
    }
}
