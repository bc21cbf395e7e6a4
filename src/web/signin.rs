//! Signing in: password, then TOTP (or a recovery code), or enrollment for a user without
//! TOTP; signing out. Each step renews the session id (no fixation).

use super::error::PageError;
use super::{redirect, render, safe_return_path};
use crate::api::origin;
use crate::auth::session::{self, Current};
use crate::auth::{csrf, totp};
use crate::db::audit::{self, Actor};
use crate::db::sessions::{self as sdb, SessionRow, Stage};
use crate::db::users;
use crate::service::people::{self, PeopleError};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::Deserialize;
use tera::Context;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login_submit))
        .route("/login/totp", web::get().to(totp_page))
        .route("/login/totp", web::post().to(totp_submit))
        .route("/login/enroll", web::get().to(enroll_page))
        .route("/login/enroll", web::post().to(enroll_submit))
        .route("/logout", web::post().to(logout));
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// The request's session, or a new anonymous one (carrying the form's CSRF token).
pub async fn ensure_session(
    state: &AppState,
    req: &HttpRequest,
) -> Result<(Current, Option<actix_web::cookie::Cookie<'static>>), PageError> {
    if let Some(c) = session::load(state, req).await? {
        return Ok((c, None));
    }
    let (cookie, row) = session::start(state, req, None, Stage::Anon, None, false).await?;
    Ok((Current { row, user: None }, Some(cookie)))
}

fn with_cookie(
    mut resp: HttpResponse,
    cookie: Option<actix_web::cookie::Cookie<'static>>,
) -> HttpResponse {
    if let Some(c) = cookie {
        let _ = resp.add_cookie(&c);
    }
    resp
}

fn login_form(csrf: &str, error: Option<&str>, email: &str) -> Result<HttpResponse, PageError> {
    let mut ctx = Context::new();
    ctx.insert("csrf", csrf);
    ctx.insert("error", &error);
    ctx.insert("email", email);
    render("auth/login.html", &ctx)
}

async fn login_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<NextQuery>,
) -> Result<HttpResponse, PageError> {
    let (current, cookie) = ensure_session(&state, &req).await?;
    if current.row.stage == Stage::Full && current.user.is_some() {
        return Ok(redirect(&safe_return_path(q.next.as_deref())));
    }
    if q.next.is_some() {
        sdb::set_return_to(
            &state.db,
            &current.row.id_hash,
            Some(&safe_return_path(q.next.as_deref())),
        )
        .await?;
    }
    Ok(with_cookie(
        login_form(&current.row.csrf_token, None, "")?,
        cookie,
    ))
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    csrf: String,
}

async fn login_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    let Some(current) = session::load(&state, &req).await? else {
        tracing::warn!("sign-in form refused: no session cookie");
        return Err(PageError::Csrf);
    };
    csrf::check(&state, &req, &current.row, &form.csrf)?;
    let o = origin(&req);
    match people::check_password(
        &state,
        &form.email,
        SecretString::from(form.password.clone()),
        &o,
    )
    .await
    {
        Ok(user) => {
            let stage = if user.totp_enrolled() {
                Stage::Password
            } else {
                Stage::Enroll
            };
            let (cookie, _) =
                session::start(&state, &req, Some(&user), stage, Some(&current.row), false).await?;
            let to = if stage == Stage::Password {
                "/login/totp"
            } else {
                "/login/enroll"
            };
            Ok(with_cookie(redirect(to), Some(cookie)))
        }
        Err(PeopleError::Refused(m)) => {
            let mut resp = login_form(&current.row.csrf_token, Some(&m), &form.email)?;
            *resp.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
            Ok(resp)
        }
        Err(e @ PeopleError::Throttled { retry_after_secs }) => {
            let mut resp = login_form(&current.row.csrf_token, Some(&e.to_string()), &form.email)?;
            *resp.status_mut() = actix_web::http::StatusCode::TOO_MANY_REQUESTS;
            resp.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(retry_after_secs),
            );
            Ok(resp)
        }
        Err(e) => Err(PageError::internal(e)),
    }
}

/// The session at a given sign-in stage, or back to the start.
async fn at_stage(
    state: &AppState,
    req: &HttpRequest,
    stage: Stage,
) -> Result<(SessionRow, users::User), PageError> {
    match session::load(state, req).await? {
        Some(Current {
            row,
            user: Some(user),
        }) if row.stage == stage => Ok((row, user)),
        _ => Err(PageError::SignIn { return_to: None }),
    }
}

fn code_form(csrf: &str, error: Option<&str>) -> Result<HttpResponse, PageError> {
    let mut ctx = Context::new();
    ctx.insert("csrf", csrf);
    ctx.insert("error", &error);
    render("auth/totp.html", &ctx)
}

async fn totp_page(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, PageError> {
    let (row, _) = at_stage(&state, &req, Stage::Password).await?;
    code_form(&row.csrf_token, None)
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
    csrf: String,
}

async fn complete_sign_in(
    state: &AppState,
    req: &HttpRequest,
    row: &SessionRow,
    user: &users::User,
) -> Result<HttpResponse, PageError> {
    let (cookie, full) =
        session::start(state, req, Some(user), Stage::Full, Some(row), true).await?;
    let mut tx = state.db.begin().await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &user.project_id,
            actor: &Actor::User(user.id.clone()),
            action: "signin.succeeded",
            subject: format!("user:{}", user.id),
            details: serde_json::json!({}),
            origin: &origin(req),
        },
        state.now(),
    )
    .await?;
    tx.commit().await.map_err(crate::db::DbError::from)?;
    Ok(with_cookie(
        redirect(&safe_return_path(full.return_to.as_deref())),
        Some(cookie),
    ))
}

async fn totp_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    let (row, user) = at_stage(&state, &req, Stage::Password).await?;
    csrf::check(&state, &req, &row, &form.csrf)?;
    match people::verify_second_factor(&state, &user, &form.code, true, &origin(&req)).await {
        Ok(()) => complete_sign_in(&state, &req, &row, &user).await,
        Err(PeopleError::Refused(m)) => {
            let mut resp = code_form(&row.csrf_token, Some(&m))?;
            *resp.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
            Ok(resp)
        }
        Err(e) => Err(PageError::internal(e)),
    }
}

fn enroll_form(
    row: &SessionRow,
    user: &users::User,
    secret: &[u8],
    error: Option<&str>,
) -> Result<HttpResponse, PageError> {
    let mut ctx = Context::new();
    ctx.insert("csrf", &row.csrf_token);
    ctx.insert("error", &error);
    ctx.insert("email", &user.email);
    ctx.insert("secret", &totp::base32(secret));
    ctx.insert(
        "qr",
        &totp::qr_data_uri(secret, &user.email).map_err(PageError::internal)?,
    );
    ctx.insert(
        "otpauth",
        &totp::otpauth_url(secret, &user.email).map_err(PageError::internal)?,
    );
    render("auth/enroll.html", &ctx)
}

async fn enroll_page(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, PageError> {
    let (row, user) = at_stage(&state, &req, Stage::Enroll).await?;
    let secret = match people::pending_secret(&state, &user).map_err(PageError::internal)? {
        Some(s) => s,
        None => people::begin_enrollment(&state, &user)
            .await
            .map_err(PageError::internal)?,
    };
    enroll_form(&row, &user, &secret, None)
}

async fn enroll_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    let (row, user) = at_stage(&state, &req, Stage::Enroll).await?;
    csrf::check(&state, &req, &row, &form.csrf)?;
    match people::confirm_enrollment(&state, &user, &form.code, &origin(&req)).await {
        Ok(codes) => {
            let user = users::by_id(&state.db, &user.id)
                .await?
                .ok_or(PageError::NotFound)?;
            let (cookie, full) =
                session::start(&state, &req, Some(&user), Stage::Full, Some(&row), true).await?;
            let mut ctx = Context::new();
            ctx.insert("codes", &codes);
            ctx.insert("next", &safe_return_path(full.return_to.as_deref()));
            Ok(with_cookie(
                render("auth/recovery_codes.html", &ctx)?,
                Some(cookie),
            ))
        }
        Err(PeopleError::Refused(m)) => {
            let secret = people::pending_secret(&state, &user)
                .map_err(PageError::internal)?
                .ok_or_else(|| PageError::internal("no pending secret"))?;
            let mut resp = enroll_form(&row, &user, &secret, Some(&m))?;
            *resp.status_mut() = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
            Ok(resp)
        }
        Err(e) => Err(PageError::internal(e)),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    if let Some(current) = session::load(&state, &req).await? {
        csrf::check(&state, &req, &current.row, &form.csrf)?;
        sdb::end(&state.db, &current.row.id_hash, state.now()).await?;
    }
    let mut resp = redirect("/login");
    let _ = resp.add_cookie(&session::removal_cookie(&state));
    Ok(resp)
}
