//! Who is calling the admin API: `Authorization: Bearer <jwt>` only (the merchant API's key
//! and signature mean nothing here). The token must verify (see `auth::admin_jwt`), its user
//! must exist, be active and still be at the token's session generation.

use super::error::AdminError;
use crate::auth::admin_jwt::{self, TokenError};
use crate::db::users::{self, User};
use crate::state::AppState;
use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;

/// The bearer token of a request, if it carries one.
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The signed-in admin of a request.
pub async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<User, AdminError> {
    let Some(token) = bearer(req) else {
        return Err(AdminError::unauthorized(
            "invalid_token",
            "An `Authorization: Bearer <token>` header is required: get a token from POST /admin/api/token.",
        ));
    };
    let claims = match admin_jwt::verify(&state.master_key, token, state.now()) {
        Ok(c) => c,
        Err(TokenError::Expired) => {
            return Err(AdminError::unauthorized(
                "token_expired",
                "The token has expired: get a new one from POST /admin/api/token.",
            ));
        }
        Err(TokenError::Invalid) | Err(TokenError::Issue(_)) => {
            return Err(AdminError::unauthorized(
                "invalid_token",
                "The bearer token is not valid.",
            ));
        }
    };
    let revoked = || {
        AdminError::unauthorized(
            "token_revoked",
            "The token is no longer valid (the user's password, role, rights or two-factor \
             authentication changed, or the user was removed): get a new one.",
        )
    };
    let user = users::by_id(&state.db, &claims.sub)
        .await?
        .filter(|u| u.status == "active")
        .ok_or_else(revoked)?;
    if user.session_generation != claims.generation {
        return Err(revoked());
    }
    Ok(user)
}
