//! Browser sessions, stored server-side. The cookie (`cs_session`) holds only a random
//! 256-bit id; the database holds its SHA-256, the user, the stage of sign-in, the CSRF token
//! and the timestamps that enforce the idle and absolute timeouts. A session is renewed (new
//! id, old one ended) at every sign-in step and every TOTP step-up, and it dies with the user's
//! `session_generation` (password, role, rights or 2FA change, removal).

use crate::crypto::{random_token, sha256_hex};
use crate::db::sessions::{self, SessionRow, Stage};
use crate::db::users::{self, User};
use crate::db::{DbError, projects};
use crate::state::AppState;
use crate::web::error::PageError;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

pub const COOKIE: &str = "cs_session";
/// Writing `last_seen_at` on every request would make every page view a write; once a minute
/// is precise enough for a 30-minute idle timeout.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A live session and, when signed in, its user.
#[derive(Debug, Clone)]
pub struct Current {
    pub row: SessionRow,
    pub user: Option<User>,
}

pub(crate) fn idle_ms(state: &AppState) -> i64 {
    i64::try_from(state.settings.sessions.idle_minutes).unwrap_or(30) * 60_000
}

fn absolute_ms(state: &AppState) -> i64 {
    i64::try_from(state.settings.sessions.absolute_hours).unwrap_or(12) * 3_600_000
}

/// Loads the request's session if it is alive: not ended, within both timeouts, and (for a
/// user) of the user's current generation with the user still active.
pub async fn load(state: &AppState, req: &HttpRequest) -> Result<Option<Current>, DbError> {
    let Some(cookie) = req.cookie(COOKIE) else {
        return Ok(None);
    };
    let hash = sha256_hex(cookie.value().as_bytes());
    let Some(row) = sessions::get(&state.db, &hash).await? else {
        return Ok(None);
    };
    let now = state.now();
    if now >= row.absolute_expiry || now - row.last_seen_at > idle_ms(state) {
        sessions::end(&state.db, &hash, now).await?;
        return Ok(None);
    }
    let user = match &row.user_id {
        Some(id) => {
            let user = users::by_id(&state.db, id).await?;
            match user {
                Some(u) if u.session_generation == row.generation && u.status == "active" => {
                    Some(u)
                }
                _ => {
                    sessions::end(&state.db, &hash, now).await?;
                    return Ok(None);
                }
            }
        }
        None => None,
    };
    if now - row.last_seen_at > TOUCH_EVERY_MS {
        sessions::touch(&state.db, &hash, now).await?;
    }
    Ok(Some(Current { row, user }))
}

/// Starts a new session (ending `previous`, if any) and returns the cookie to set.
pub async fn start(
    state: &AppState,
    req: &HttpRequest,
    user: Option<&User>,
    stage: Stage,
    previous: Option<&SessionRow>,
    verified_now: bool,
) -> Result<(Cookie<'static>, SessionRow), PageError> {
    let now = state.now();
    let raw = random_token::<32>().map_err(PageError::internal)?;
    let origin = crate::api::origin(req);
    let row = SessionRow {
        id_hash: sha256_hex(raw.as_bytes()),
        user_id: user.map(|u| u.id.clone()),
        stage,
        generation: user.map_or(0, |u| u.session_generation),
        csrf_token: random_token::<32>().map_err(PageError::internal)?,
        return_to: previous.and_then(|p| p.return_to.clone()),
        created_at: now,
        last_seen_at: now,
        // An anonymous or half-signed-in session is short-lived; the absolute timeout runs
        // from full sign-in and survives step-up renewals.
        absolute_expiry: match (stage, previous) {
            (Stage::Full, Some(p)) if p.stage == Stage::Full => p.absolute_expiry,
            (Stage::Full, _) => now + absolute_ms(state),
            _ => now + idle_ms(state),
        },
        verified_at: verified_now.then_some(now),
        ip: origin.ip,
        user_agent: origin.user_agent,
    };
    sessions::insert(&state.db, &row).await?;
    if let Some(p) = previous {
        sessions::end(&state.db, &p.id_hash, now).await?;
    }
    Ok((cookie(state, raw), row))
}

pub fn cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.https())
        .finish()
}

pub fn removal_cookie(state: &AppState) -> Cookie<'static> {
    let mut c = cookie(state, String::new());
    c.make_removal();
    c
}

/// A signed-in user (full session) of a project, for every page behind sign-in. Without one,
/// the visitor is sent to sign in and brought back afterwards.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub session: SessionRow,
    pub project: projects::Project,
    /// The project's pending withdrawals, for the navigation's count.
    pub pending: i64,
}

impl SignedIn {
    /// The signed-in view of a full session of `user` (None if their project is gone).
    pub async fn of(
        state: &AppState,
        user: User,
        session: SessionRow,
    ) -> Result<Option<SignedIn>, DbError> {
        let Some(project) = projects::get(&state.db, &user.project_id).await? else {
            return Ok(None);
        };
        let pending = crate::db::withdrawal_list::count_with_status(
            &state.db,
            &project.id,
            crate::domain::withdrawal::Status::Pending,
        )
        .await?;
        Ok(Some(SignedIn {
            user,
            session,
            project,
            pending,
        }))
    }

    pub fn require_owner(&self) -> Result<(), PageError> {
        if self.user.is_owner() {
            Ok(())
        } else {
            Err(PageError::Forbidden)
        }
    }
}

impl FromRequest for SignedIn {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| PageError::internal("no state"))?
                .clone();
            let return_to = (req.method() == actix_web::http::Method::GET)
                .then(|| req.uri().path_and_query().map(|p| p.to_string()))
                .flatten();
            let current = load(&state, &req).await?;
            match current {
                Some(Current {
                    row,
                    user: Some(user),
                }) if row.stage == Stage::Full => SignedIn::of(&state, user, row)
                    .await?
                    .ok_or_else(|| PageError::internal("user without project")),
                _ => Err(PageError::SignIn { return_to }),
            }
        })
    }
}
