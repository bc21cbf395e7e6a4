//! The signed-in user's own account: password change and active sessions.

use super::error::PageError;
use super::{page_context, redirect, render};
use crate::api::origin;
use crate::auth::session::{self, SignedIn};
use crate::auth::{csrf, password};
use crate::clock::rfc3339;
use crate::db::audit::{self, Actor};
use crate::db::sessions::{self as sdb, Stage};
use crate::db::{DbError, users};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/account/password", web::get().to(password_page))
        .route("/account/password", web::post().to(password_submit))
        .route("/account/sessions", web::get().to(sessions_page))
        .route("/account/sessions/end", web::post().to(end_session))
        .route("/account/notifications", web::get().to(notifications_page))
        .route(
            "/account/notifications",
            web::post().to(notifications_submit),
        );
}

async fn notifications_page(
    state: web::Data<AppState>,
    s: SignedIn,
    q: web::Query<DoneQuery>,
) -> Result<HttpResponse, PageError> {
    let mut ctx = page_context(&s, "account");
    ctx.insert("email_alerts", &s.user.email_alerts);
    ctx.insert("outcome_alerts", &s.user.outcome_alerts);
    ctx.insert("can_approve", &s.user.can_use_withdrawal_rights());
    ctx.insert(
        "approver_from",
        &s.user.approval_held_until(state.now()).map(rfc3339),
    );
    ctx.insert("done", &q.done.is_some());
    render("account/notifications.html", &ctx)
}

/// Checkboxes: a ticked box is sent, an unticked one is absent.
#[derive(Deserialize)]
pub struct NotificationsForm {
    csrf: String,
    email_alerts: Option<String>,
    outcome_alerts: Option<String>,
}

async fn notifications_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    form: web::Form<NotificationsForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &form.csrf)?;
    let (email_alerts, outcome_alerts) =
        (form.email_alerts.is_some(), form.outcome_alerts.is_some());
    let now = state.now();
    let mut tx = state.db.begin().await?;
    users::set_alerts(&mut tx, &s.user.id, email_alerts, outcome_alerts, now).await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &s.project.id,
            actor: &Actor::User(s.user.id.clone()),
            action: "user.notifications_changed",
            subject: format!("user:{}", s.user.id),
            details: serde_json::json!({
                "before": {"email_alerts": s.user.email_alerts, "outcome_alerts": s.user.outcome_alerts},
                "after": {"email_alerts": email_alerts, "outcome_alerts": outcome_alerts},
            }),
            origin: &origin(&req),
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(redirect("/account/notifications?done=1"))
}

fn password_form(s: &SignedIn, error: Option<&str>, done: bool) -> Result<HttpResponse, PageError> {
    let mut ctx = page_context(s, "account");
    ctx.insert("error", &error);
    ctx.insert("done", &done);
    render("account/password.html", &ctx)
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

async fn password_page(s: SignedIn, q: web::Query<DoneQuery>) -> Result<HttpResponse, PageError> {
    password_form(&s, None, q.done.is_some())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
    csrf: String,
}

async fn password_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &form.csrf)?;
    let refuse = |m: &str| -> Result<HttpResponse, PageError> {
        let mut r = password_form(&s, Some(m), false)?;
        *r.status_mut() = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
        Ok(r)
    };
    if !password::verify(
        SecretString::from(form.current.clone()),
        s.user.password_hash.clone(),
    )
    .await
    {
        return refuse("Your current password is not right.");
    }
    if form.new != form.confirm {
        return refuse("The new password and its confirmation differ.");
    }
    if let Err(m) = password::check_policy(&form.new, &s.user.email) {
        return refuse(&format!("The new password {m}."));
    }
    let hash = password::hash(SecretString::from(form.new.clone()))
        .await
        .map_err(PageError::internal)?;
    let now = state.now();
    let mut tx = state.db.begin().await?;
    // Bumps the session generation: every session of this user ends, this one included.
    users::set_password(&mut tx, &s.user.id, &hash, now).await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &s.project.id,
            actor: &Actor::User(s.user.id.clone()),
            action: "user.password_changed",
            subject: format!("user:{}", s.user.id),
            details: serde_json::json!({}),
            origin: &origin(&req),
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    // Keep the person who just changed it signed in, on a fresh session of the new generation.
    let user = users::by_id(&state.db, &s.user.id)
        .await?
        .ok_or(PageError::NotFound)?;
    let (cookie, _) = session::start(
        &state,
        &req,
        Some(&user),
        Stage::Full,
        Some(&s.session),
        true,
    )
    .await?;
    let mut resp = redirect("/account/password?done=1");
    let _ = resp.add_cookie(&cookie);
    Ok(resp)
}

async fn sessions_page(state: web::Data<AppState>, s: SignedIn) -> Result<HttpResponse, PageError> {
    let idle = i64::try_from(state.settings.sessions.idle_minutes).unwrap_or(30) * 60_000;
    let rows = sdb::active_for_user(&state.db, &s.user.id, state.now(), idle).await?;
    let list: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                // The hash identifies a session to end without revealing its cookie.
                "id": r.id_hash,
                "current": r.id_hash == s.session.id_hash,
                "started": rfc3339(r.created_at),
                "last_seen": rfc3339(r.last_seen_at),
                "ip": r.ip,
                "user_agent": r.user_agent,
            })
        })
        .collect();
    let mut ctx = page_context(&s, "account");
    ctx.insert("sessions", &list);
    render("account/sessions.html", &ctx)
}

#[derive(Deserialize)]
pub struct EndForm {
    id: String,
    csrf: String,
}

async fn end_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    form: web::Form<EndForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &form.csrf)?;
    if !sdb::end_for_user(&state.db, &s.user.id, &form.id, state.now()).await? {
        return Err(PageError::NotFound);
    }
    Ok(redirect(if form.id == s.session.id_hash {
        "/login"
    } else {
        "/account/sessions"
    }))
}
