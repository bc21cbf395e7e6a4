//! `POST /admin/api/token`: email, password and a fresh TOTP code for a 15-minute bearer
//! token. The same protections as the sign-in page (lockout after repeated failures, the TOTP
//! replay guard), and one generic refusal whatever failed, so the answer never tells whether
//! the email exists, the password was right or the account is locked. Recovery codes are not
//! accepted here: they are for getting back into the browser.
//!
//! Users without withdrawal rights get a token too: they can read the queue, and every claim
//! or decision is refused with `no_withdrawal_rights`.

use super::error::{AdminError, AdminErrorBody};
use crate::api::{RawBody, origin};
use crate::auth::admin_jwt;
use crate::db::DbError;
use crate::db::audit::{self, Actor};
use crate::service::people::{self, PeopleError};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, post, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"email": "alice@acme.example", "password": "correct horse battery staple", "code": "123456"}))]
pub struct TokenRequest {
    pub email: String,
    pub password: String,
    /// The current code of the user's authenticator app.
    pub code: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...", "token_type": "Bearer", "expires_in": 900}))]
pub struct TokenResponse {
    /// A JWT (HS256): send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires (900).
    pub expires_in: i64,
}

const REFUSED: &str = "The email, password or code is wrong, the code was already used, or the account is temporarily locked.";

fn refused() -> AdminError {
    AdminError::unauthorized("invalid_credentials", REFUSED)
}

#[utoipa::path(
    operation_id = "createAdminToken",
    tag = "Authentication",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "A bearer token valid for 15 minutes", body = TokenResponse),
        (status = 400, description = "`invalid_request`: the body is not the JSON object described", body = AdminErrorBody),
        (status = 401, description = "`invalid_credentials`: wrong email, password or code, a code already used, or a locked account (one answer for all)", body = AdminErrorBody),
        (status = 429, description = "`too_many_attempts`: over the per-address limit on password attempts (`sessions.signin_attempts_per_minute`); `Retry-After` and `details.retry_after_secs` say when to try again", body = AdminErrorBody),
    ),
    security(())
)]
#[post("/token")]
pub async fn create_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, AdminError> {
    let input: TokenRequest = serde_json::from_slice(&body).map_err(|_| {
        AdminError::bad_request(
            "The body must be a JSON object with string fields `email`, `password` and `code`.",
        )
    })?;
    let o = origin(&req);
    let user =
        match people::check_password(&state, &input.email, SecretString::from(input.password), &o)
            .await
        {
            Ok(u) => u,
            Err(PeopleError::Refused(_)) => return Err(refused()),
            Err(PeopleError::Throttled { retry_after_secs }) => {
                return Err(AdminError::too_many_attempts(retry_after_secs));
            }
            Err(PeopleError::Db(e)) => return Err(e.into()),
            Err(e) => return Err(AdminError::internal(e)),
        };
    if !user.totp_enrolled() {
        return Err(refused());
    }
    match people::verify_second_factor(&state, &user, &input.code, false, &o).await {
        Ok(()) => {}
        Err(PeopleError::Refused(_)) => return Err(refused()),
        Err(PeopleError::Db(e)) => return Err(e.into()),
        Err(e) => return Err(AdminError::internal(e)),
    }
    let now = state.now();
    let (token, claims) =
        admin_jwt::issue(&state.master_key, &user.id, user.session_generation, now)
            .map_err(AdminError::internal)?;
    let mut tx = state.db.begin().await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &user.project_id,
            actor: &Actor::User(user.id.clone()),
            action: "admin_api.token_issued",
            subject: format!("user:{}", user.id),
            details: json!({"jti": claims.jti, "expires": crate::clock::rfc3339(claims.exp * 1000)}),
            origin: &o,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(HttpResponse::Ok().json(TokenResponse {
        token,
        token_type: "Bearer".into(),
        expires_in: admin_jwt::TTL_MS / 1000,
    }))
}
