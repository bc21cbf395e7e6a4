//! First run: on an empty database `serve` prints a one-time setup link. It leads to creating
//! the first project and its owner; the owner then enrolls TOTP like everyone else. There is
//! no default password anywhere.

use super::error::PageError;
use super::render;
use crate::api::origin;
use crate::auth::session::{self};
use crate::auth::{csrf, password};
use crate::crypto::{random_token, sha256_hex};
use crate::db::audit::{self, Actor};
use crate::db::sessions::Stage;
use crate::db::users::{self, NewUser, Role};
use crate::db::{Db, DbError};
use crate::service::projects::{self as psvc, NewProjectInput};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::Deserialize;
use sqlx::Row;
use tera::Context;

pub const SETUP_TTL_MS: i64 = 24 * crate::clock::HOUR_MS;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/setup/{token}", web::get().to(page))
        .route("/setup/{token}", web::post().to(submit));
}

/// Creates a setup token when nobody can sign in yet; returns it (to print) or None.
pub async fn token_if_first_run(db: &Db, now: i64) -> Result<Option<String>, DbError> {
    if users::any_user(db).await? {
        return Ok(None);
    }
    let token =
        random_token::<32>().map_err(|e| DbError::Query(sqlx::Error::Protocol(e.to_string())))?;
    sqlx::query(
        "INSERT INTO setup_tokens (token_hash, expires_at, created_at) VALUES ($1, $2, $3)",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(now + SETUP_TTL_MS)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(Some(token))
}

async fn token_valid(state: &AppState, token: &str) -> Result<bool, PageError> {
    if users::any_user(&state.db).await? {
        return Ok(false);
    }
    let row = sqlx::query(
        "SELECT expires_at FROM setup_tokens WHERE token_hash = $1 AND used_at IS NULL",
    )
    .bind(sha256_hex(token.as_bytes()))
    .fetch_optional(state.db.reader())
    .await
    .map_err(DbError::from)?;
    Ok(row
        .and_then(|r| r.try_get::<i64, _>("expires_at").ok())
        .is_some_and(|exp| exp > state.now()))
}

fn form(
    csrf: &str,
    token: &str,
    error: Option<&str>,
    values: &SetupForm,
) -> Result<HttpResponse, PageError> {
    let mut ctx = Context::new();
    ctx.insert("csrf", csrf);
    ctx.insert("token", token);
    ctx.insert("error", &error);
    ctx.insert(
        "v",
        &serde_json::json!({
            "project_name": values.project_name, "primary_email": values.primary_email,
            "email": values.email, "base_currency": values.base_currency,
        }),
    );
    render("setup/setup.html", &ctx)
}

#[derive(Deserialize, Default)]
pub struct SetupForm {
    #[serde(default)]
    project_name: String,
    #[serde(default)]
    primary_email: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    base_currency: String,
    #[serde(default)]
    csrf: String,
}

async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    if !token_valid(&state, &path).await? {
        return Err(PageError::BadRequest("This setup link is not valid: it was used already, it expired, or the installation is set up. Restart `countersign serve` on an empty database for a new link, or sign in.".into()));
    }
    let (current, cookie) = super::signin::ensure_session(&state, &req).await?;
    let defaults = SetupForm {
        base_currency: "EUR".into(),
        ..SetupForm::default()
    };
    let mut resp = form(&current.row.csrf_token, &path, None, &defaults)?;
    if let Some(c) = cookie {
        let _ = resp.add_cookie(&c);
    }
    Ok(resp)
}

async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    f: web::Form<SetupForm>,
) -> Result<HttpResponse, PageError> {
    let Some(current) = session::load(&state, &req).await? else {
        return Err(PageError::Csrf);
    };
    csrf::check(&state, &req, &current.row, &f.csrf)?;
    if !token_valid(&state, &path).await? {
        return Err(PageError::BadRequest(
            "This setup link is not valid any more.".into(),
        ));
    }
    let refuse = |m: String| -> Result<HttpResponse, PageError> {
        let mut r = form(&current.row.csrf_token, &path, Some(&m), &f)?;
        *r.status_mut() = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
        Ok(r)
    };
    if let Err(e) = crate::service::people::check_email(&f.email) {
        return refuse(format!("Your email: {e}"));
    }
    if let Err(m) = password::check_policy(&f.password, &f.email) {
        return refuse(format!("Password {m}."));
    }
    let hash = password::hash(SecretString::from(f.password.clone()))
        .await
        .map_err(PageError::internal)?;
    let now = state.now();
    // Claim the token first (conditional write): two racing submissions cannot both set up.
    let claimed = sqlx::query(
        "UPDATE setup_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
    )
    .bind(now)
    .bind(sha256_hex(path.as_bytes()))
    .execute(state.db.writer())
    .await
    .map_err(DbError::from)?
    .rows_affected()
        == 1;
    if !claimed {
        return Err(PageError::BadRequest(
            "This setup link was just used.".into(),
        ));
    }
    let creds = match psvc::create(
        &state.db,
        &state.master_key,
        &NewProjectInput {
            name: &f.project_name,
            primary_email: &f.primary_email,
            base_currency: if f.base_currency.is_empty() {
                "EUR"
            } else {
                &f.base_currency
            },
            callback_url: None,
        },
        now,
    )
    .await
    {
        Ok(c) => c,
        Err(psvc::ProjectError::Invalid(m)) => {
            // Give the link back so the form can be corrected.
            sqlx::query("UPDATE setup_tokens SET used_at = NULL WHERE token_hash = $1")
                .bind(sha256_hex(path.as_bytes()))
                .execute(state.db.writer())
                .await
                .map_err(DbError::from)?;
            return refuse(format!("Project: {m}"));
        }
        Err(e) => return Err(PageError::internal(e)),
    };
    let user_id = format!("usr_{}", random_token::<12>().map_err(PageError::internal)?);
    let mut tx = state.db.begin().await?;
    users::insert(
        &mut tx,
        &NewUser {
            id: &user_id,
            project_id: &creds.project_id,
            email: &f.email,
            role: Role::Owner,
            withdrawal_rights: true,
            status: "active",
            password_hash: Some(&hash),
            totp_secret_enc: None,
        },
        now,
    )
    .await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &creds.project_id,
            actor: &Actor::User(user_id.clone()),
            action: "setup.completed",
            subject: format!("user:{user_id}"),
            details: serde_json::json!({"email": f.email.trim(), "role": "owner"}),
            origin: &origin(&req),
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    let user = users::by_id(&state.db, &user_id)
        .await?
        .ok_or(PageError::NotFound)?;
    let (cookie, _) = session::start(
        &state,
        &req,
        Some(&user),
        Stage::Enroll,
        Some(&current.row),
        false,
    )
    .await?;
    let mut ctx = Context::new();
    ctx.insert("creds", &creds);
    let mut resp = render("setup/done.html", &ctx)?;
    let _ = resp.add_cookie(&cookie);
    Ok(resp)
}
