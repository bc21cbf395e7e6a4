//! CSRF defence for browser forms: every state-changing form carries the session's random
//! token (compared in constant time), and the request must say it comes from this service's
//! own origin. Browsers say so with `Origin`; because our pages send `Referrer-Policy:
//! no-referrer`, a browser's form POST carries `Origin: null`, so `Sec-Fetch-Site:
//! same-origin` (sent by every current browser) is accepted as the same statement. Any
//! header that names another site refuses the request; a request that says nothing is
//! refused too.

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
    let origin = header("Origin").filter(|o| o != "null");
    let fetch_site = header("Sec-Fetch-Site");
    let referer = header("Referer");
    let same_origin = match (origin, fetch_site, referer) {
        (Some(o), site, _) => o == expected && site.is_none_or(|s| s == "same-origin"),
        (None, Some(site), _) => site == "same-origin",
        (None, None, Some(r)) => {
            url::Url::parse(&r).is_ok_and(|u| u.origin().ascii_serialization() == expected)
        }
        (None, None, None) => false,
    };
    if !same_origin {
        tracing::warn!(path = %crate::startup::loggable_path(req.path()), origin = ?header("Origin"), fetch_site = ?header("Sec-Fetch-Site"), %expected, "form refused: it does not come from this site's pages");
        return Err(PageError::Csrf);
    }
    let ok: bool = session.csrf_token.as_bytes().ct_eq(token.as_bytes()).into();
    if ok && !token.is_empty() {
        Ok(())
    } else {
        tracing::warn!(path = %crate::startup::loggable_path(req.path()), "form refused: missing or wrong CSRF token");
        Err(PageError::Csrf)
    }
}
