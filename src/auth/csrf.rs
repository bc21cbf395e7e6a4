//! CSRF defence for browser forms: every state-changing form carries the session's random
//! token (compared in constant time), and the request's `Origin` (or, failing that,
//! `Referer`) must be this service's own origin.

use crate::db::sessions::SessionRow;
use crate::state::AppState;
use crate::web::error::PageError;
use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

pub fn check(
    state: &AppState,
    req: &HttpRequest,
    session: &SessionRow,
    token: &str,
) -> Result<(), PageError> {
    let expected = state.settings.origin();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let same_origin = match (header("Origin"), header("Referer")) {
        (Some(o), _) => o == expected,
        (None, Some(r)) => {
            url::Url::parse(&r).is_ok_and(|u| u.origin().ascii_serialization() == expected)
        }
        (None, None) => false,
    };
    if !same_origin {
        return Err(PageError::Csrf);
    }
    let ok: bool = session.csrf_token.as_bytes().ct_eq(token.as_bytes()).into();
    if ok && !token.is_empty() {
        Ok(())
    } else {
        Err(PageError::Csrf)
    }
}
