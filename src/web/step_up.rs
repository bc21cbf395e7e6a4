//! Step-up for sensitive changes: the form carries a fresh TOTP code, checked with the replay
//! guard; after the change the session id is renewed, as at sign-in.

use super::error::PageError;
use crate::api::origin;
use crate::auth::session::{self, SignedIn};
use crate::db::sessions::Stage;
use crate::db::users;
use crate::service::people::{self, PeopleError};
use crate::state::AppState;
use actix_web::HttpRequest;
use actix_web::cookie::Cookie;

/// Checks the code. `Ok(Some(message))` is a refusal to show on the form (wrong, reused or
/// missing code; locked account).
pub async fn check(
    state: &AppState,
    req: &HttpRequest,
    s: &SignedIn,
    code: &str,
) -> Result<Option<String>, PageError> {
    if code.trim().is_empty() {
        return Ok(Some(
            "enter the current 6-digit code from your authenticator app to confirm this change"
                .into(),
        ));
    }
    match people::verify_second_factor(state, &s.user, code, false, &origin(req)).await {
        Ok(()) => Ok(None),
        Err(PeopleError::Refused(m)) => Ok(Some(m)),
        Err(e) => Err(PageError::internal(e)),
    }
}

/// A new session id for the signed-in user after a verified change, of their current
/// generation (a change to their own role ended the old one), with the `SignedIn` it makes
/// (for a page rendered after the change: its forms need the new CSRF token). None when the
/// user can no longer sign in.
pub async fn renew(
    state: &AppState,
    req: &HttpRequest,
    s: &SignedIn,
) -> Result<Option<(Cookie<'static>, SignedIn)>, PageError> {
    let Some(user) = users::by_id(&state.db, &s.user.id)
        .await?
        .filter(|u| u.status == "active")
    else {
        return Ok(None);
    };
    let (cookie, row) =
        session::start(state, req, Some(&user), Stage::Full, Some(&s.session), true).await?;
    let renewed = SignedIn {
        user,
        session: row,
        project: s.project.clone(),
        pending: s.pending,
    };
    Ok(Some((cookie, renewed)))
}

/// A see-other redirect carrying the renewed session cookie.
pub async fn redirect_renewed(
    state: &AppState,
    req: &HttpRequest,
    s: &SignedIn,
    to: &str,
) -> Result<actix_web::HttpResponse, PageError> {
    let mut resp = super::redirect(to);
    match renew(state, req, s).await? {
        Some((c, _)) => {
            let _ = resp.add_cookie(&c);
        }
        None => {
            let _ = resp.add_cookie(&session::removal_cookie(state));
        }
    }
    Ok(resp)
}
