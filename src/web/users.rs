//! The team: everyone signed in sees who is on it; owners invite people, change roles and
//! withdrawal rights, reset a second factor and remove users. Every change asks for a fresh
//! TOTP code on the same form (see `step_up`).

use super::error::PageError;
use super::{page_context, render, step_up};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::SignedIn;
use crate::db::users::{self, Role, User};
use crate::service::people;
use crate::service::team::{self, InviteInput, TeamError};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(list_page))
        .route("/users/invite", web::post().to(invite_submit))
        .route("/users/{id}", web::get().to(detail_page))
        .route("/users/{id}/role", web::post().to(role_submit))
        .route("/users/{id}/reset-2fa", web::post().to(reset_submit))
        .route("/users/{id}/remove", web::post().to(remove_submit))
        .route("/users/{id}/resend-invite", web::post().to(resend_submit));
}

/// An error for a page: which field (by its label) and what is wrong.
pub fn form_error(label: &str, message: &str) -> Value {
    json!({"label": label, "message": message})
}

pub fn label_of(field: &str) -> &'static str {
    match field {
        "email" => "Email",
        "role" => "Role",
        "code" => "Verification code",
        "callback_url" => "Callback URL",
        "validation_url" => "Validation webhook URL",
        "base_currency" => "Base currency",
        "scope" => "Scope",
        "currency" => "Currency",
        "per_operation" => "Per operation",
        "per_hour" => "Per hour",
        "per_day" => "Per day",
        "password" => "Password",
        _ => "",
    }
}

/// A page answering 422: the request was understood but refused; nothing changed.
pub fn unprocessable(mut resp: HttpResponse) -> HttpResponse {
    *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    resp
}

fn user_json(u: &User, me: &User, now: i64) -> Value {
    json!({
        "approver_from": u.approval_held_until(now).map(crate::clock::rfc3339),
        "id": u.id,
        "email": u.email,
        "role": u.role.as_str(),
        "is_owner": u.is_owner(),
        "rights": u.has_withdrawal_rights(),
        "usable": u.can_use_withdrawal_rights(),
        "totp": u.totp_enrolled(),
        "status": u.status,
        "is_me": u.id == me.id,
        "created": crate::clock::rfc3339(u.created_at),
    })
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "invited" => "Invitation sent. The link works once and expires in 72 hours.",
        "resent" => "A new invitation was sent; earlier links no longer work.",
        "role" => "Role and rights changed. The user's sessions were ended: they sign in again.",
        "reset" => {
            "Two-factor authentication reset. The user sets it up again at their next sign-in; their sessions were ended."
        }
        "removed" => "User removed. Their sessions were ended.",
        _ => return None,
    })
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    withdrawal_rights: Option<String>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

async fn list(
    state: &AppState,
    s: &SignedIn,
    form: Option<&InviteForm>,
    error: Option<Value>,
    done: Option<&str>,
) -> Result<HttpResponse, PageError> {
    let all = users::list(&state.db, &s.project.id).await?;
    let mut ctx = page_context(s, "users");
    ctx.insert(
        "users",
        &all.iter()
            .map(|u| user_json(u, &s.user, state.now()))
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "form",
        &json!({
            "email": form.map_or("", |f| f.email.as_str()),
            "role": form.map_or("member", |f| f.role.as_str()),
            "rights": form.is_some_and(|f| f.withdrawal_rights.is_some()),
        }),
    );
    ctx.insert("error", &error);
    ctx.insert("notice", &notice(done));
    render("users/list.html", &ctx)
}

async fn list_page(
    state: web::Data<AppState>,
    s: SignedIn,
    q: web::Query<DoneQuery>,
) -> Result<HttpResponse, PageError> {
    list(&state, &s, None, None, q.done.as_deref()).await
}

async fn invite_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &form.csrf)?;
    s.require_owner()?;
    let refuse = |label: &str, m: &str| invite_refused(&state, &s, &form, form_error(label, m));
    let Some(role) = Role::parse(&form.role) else {
        return refuse("Role", "choose owner or member").await;
    };
    if let Err(e) = people::check_email(&form.email) {
        return refuse("Email", &e.to_string()).await;
    }
    if let Some(m) = step_up::check(&state, &req, &s, &form.code).await? {
        return refuse("Verification code", &m).await;
    }
    let input = InviteInput {
        email: &form.email,
        role,
        withdrawal_rights: form.withdrawal_rights.is_some(),
    };
    match team::invite(&state, &s.user, &input, &origin(&req)).await {
        Ok(_) => step_up::redirect_renewed(&state, &req, &s, "/users?done=invited").await,
        Err(TeamError::Invalid { field, message }) => refuse(label_of(field), &message).await,
        Err(TeamError::Refused(m)) => refuse("", &m).await,
        Err(e) => Err(page_error(e)),
    }
}

async fn invite_refused(
    state: &AppState,
    s: &SignedIn,
    form: &InviteForm,
    e: Value,
) -> Result<HttpResponse, PageError> {
    list(state, s, Some(form), Some(e), None)
        .await
        .map(unprocessable)
}

pub fn page_error(e: TeamError) -> PageError {
    match e {
        TeamError::NotFound => PageError::NotFound,
        TeamError::Db(d) => d.into(),
        other => PageError::internal(other),
    }
}

/// A user of the signed-in owner's project (another project's id is not found).
async fn target(state: &AppState, s: &SignedIn, id: &str) -> Result<User, PageError> {
    s.require_owner()?;
    users::in_project(&state.db, &s.project.id, id)
        .await?
        .filter(|u| u.status != "removed")
        .ok_or(PageError::NotFound)
}

fn detail(
    state: &AppState,
    s: &SignedIn,
    user: &User,
    error: Option<Value>,
) -> Result<HttpResponse, PageError> {
    let mut ctx = page_context(s, "users");
    ctx.insert("user", &user_json(user, &s.user, state.now()));
    ctx.insert("error", &error);
    render("users/detail.html", &ctx)
}

async fn detail_page(
    state: web::Data<AppState>,
    s: SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let user = target(&state, &s, &path).await?;
    detail(&state, &s, &user, None)
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
    withdrawal_rights: Option<String>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

/// Renders a refused change on the user's page (422).
fn refused(
    state: &AppState,
    s: &SignedIn,
    user: &User,
    e: TeamError,
) -> Result<HttpResponse, PageError> {
    let err = match e {
        TeamError::Invalid { field, message } => form_error(label_of(field), &message),
        TeamError::Refused(m) => form_error("", &m),
        other => return Err(page_error(other)),
    };
    detail(state, s, user, Some(err)).map(unprocessable)
}

fn code_refused(
    state: &AppState,
    s: &SignedIn,
    user: &User,
    m: String,
) -> Result<HttpResponse, PageError> {
    detail(state, s, user, Some(form_error("Verification code", &m))).map(unprocessable)
}

async fn role_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &form.csrf)?;
    let user = target(&state, &s, &path).await?;
    let Some(role) = Role::parse(&form.role) else {
        return refused(
            &state,
            &s,
            &user,
            TeamError::Invalid {
                field: "role",
                message: "choose owner or member".into(),
            },
        );
    };
    if let Some(m) = step_up::check(&state, &req, &s, &form.code).await? {
        return code_refused(&state, &s, &user, m);
    }
    let rights = form.withdrawal_rights.is_some();
    match team::change_role_and_rights(&state, &s.user, &user.id, role, rights, &origin(&req)).await
    {
        Ok(_) => step_up::redirect_renewed(&state, &req, &s, "/users?done=role").await,
        Err(e) => refused(&state, &s, &user, e),
    }
}

/// The one-click actions on a user, each behind CSRF, the project scope and a fresh code.
#[derive(Clone, Copy)]
enum Action {
    Reset2fa,
    Remove,
    ResendInvite,
}

async fn act(
    state: &AppState,
    req: &HttpRequest,
    s: &SignedIn,
    id: &str,
    form: &CodeForm,
    action: Action,
) -> Result<HttpResponse, PageError> {
    csrf::check(state, req, &s.session, &form.csrf)?;
    let user = target(state, s, id).await?;
    if let Some(m) = step_up::check(state, req, s, &form.code).await? {
        return code_refused(state, s, &user, m);
    }
    let o = origin(req);
    let (result, done) = match action {
        Action::Reset2fa => (team::reset_2fa(state, &s.user, &user.id, &o).await, "reset"),
        Action::Remove => (
            team::remove_user(state, &s.user, &user.id, &o).await,
            "removed",
        ),
        Action::ResendInvite => (
            team::resend_invite(state, &s.user, &user.id, &o).await,
            "resent",
        ),
    };
    match result {
        Ok(_) => step_up::redirect_renewed(state, req, s, &format!("/users?done={done}")).await,
        Err(e) => refused(state, s, &user, e),
    }
}

async fn reset_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    path: web::Path<String>,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    act(&state, &req, &s, &path, &form, Action::Reset2fa).await
}

async fn remove_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    path: web::Path<String>,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    act(&state, &req, &s, &path, &form, Action::Remove).await
}

async fn resend_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    path: web::Path<String>,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    act(&state, &req, &s, &path, &form, Action::ResendInvite).await
}
