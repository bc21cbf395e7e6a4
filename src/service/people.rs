//! People: creating and inviting users, signing in (password, then TOTP or a recovery code,
//! with lockout), enrollment, and the owner's changes to users, with their guards.

use crate::auth::{password, totp};
use crate::clock::MINUTE_MS;
use crate::crypto::{random_token, sha256_hex};
use crate::db::audit::{self, Actor, Origin};
use crate::db::users::{self, NewUser, Role, User};
use crate::db::{DbError, projects};
use crate::metrics::Factor;
use crate::notify::email;
use crate::state::AppState;
use secrecy::SecretString;
use serde_json::json;

/// Lockout: 10 wrong passwords or 5 wrong codes within 15 minutes lock the account for 15.
pub const FAILURE_WINDOW_MS: i64 = 15 * MINUTE_MS;
pub const LOCK_MS: i64 = 15 * MINUTE_MS;
pub const MAX_PASSWORD_FAILURES: i64 = 10;
pub const MAX_TOTP_FAILURES: i64 = 5;
pub const INVITE_TTL_MS: i64 = 72 * 60 * MINUTE_MS;
pub const RECOVERY_CODES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    /// Shown to the user as is.
    #[error("{0}")]
    Refused(String),
    /// Over the per-address limit on password attempts (`auth::throttle`).
    #[error(
        "Too many sign-in attempts from this address. Try again in {retry_after_secs} seconds."
    )]
    Throttled { retry_after_secs: u64 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::crypto::CryptoError> for PeopleError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        PeopleError::Internal(e.to_string())
    }
}

fn refused(m: impl Into<String>) -> PeopleError {
    PeopleError::Refused(m.into())
}

pub fn check_email(email: &str) -> Result<(), PeopleError> {
    let e = email.trim();
    let valid = e.len() <= 254
        && !e.contains(char::is_whitespace)
        && e.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        });
    if valid {
        Ok(())
    } else {
        Err(refused(format!("{e:?} is not an email address")))
    }
}

async fn audit_one(
    state: &AppState,
    project_id: &str,
    actor: &Actor,
    action: &str,
    subject: String,
    details: serde_json::Value,
    origin: &Origin,
) -> Result<(), DbError> {
    let mut tx = state.db.begin().await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id,
            actor,
            action,
            subject,
            details,
            origin,
        },
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What `user create` prints: the new user's TOTP secret, shown once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedUser {
    pub user_id: String,
    pub totp_secret: String,
    pub otpauth_url: String,
}

/// Creates an active, enrolled user (the bootstrap CLI and the demo).
pub async fn create_enrolled(
    state: &AppState,
    project_id: &str,
    email: &str,
    role: Role,
    rights: bool,
    password_text: SecretString,
    actor: &Actor,
) -> Result<CreatedUser, PeopleError> {
    check_email(email)?;
    password::check_policy(secrecy::ExposeSecret::expose_secret(&password_text), email)
        .map_err(|m| refused(format!("password {m}")))?;
    if projects::get(&state.db, project_id).await?.is_none() {
        return Err(refused(format!("no project {project_id}")));
    }
    let hash = password::hash(password_text)
        .await
        .map_err(|e| PeopleError::Internal(e.to_string()))?;
    let secret = totp::new_secret()?;
    let user_id = format!("usr_{}", random_token::<12>()?);
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let r = users::insert(
        &mut tx,
        &NewUser {
            id: &user_id,
            project_id,
            email,
            role,
            withdrawal_rights: rights,
            status: "active",
            password_hash: Some(&hash),
            totp_secret_enc: Some(&state.master_key.encrypt(&totp::base32(&secret))?),
        },
        now,
    )
    .await;
    match r {
        Err(e) if e.is_unique_violation() => {
            return Err(refused(format!("{email} is already a user")));
        }
        other => other?,
    }
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id,
            actor,
            action: "user.created",
            subject: format!("user:{user_id}"),
            details: json!({"email": email, "role": role.as_str(), "withdrawal_rights": rights || role == Role::Owner}),
            origin: &Origin::default(),
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(CreatedUser {
        otpauth_url: totp::otpauth_url(&secret, email)
            .map_err(|e| PeopleError::Internal(e.to_string()))?,
        totp_secret: totp::base32(&secret),
        user_id,
    })
}

/// The user's TOTP secret (decrypted), if enrolled.
pub fn totp_secret(state: &AppState, user: &User) -> Result<Option<Vec<u8>>, PeopleError> {
    let Some(enc) = &user.totp_secret_enc else {
        return Ok(None);
    };
    let b32 = state.master_key.decrypt(enc)?;
    totp::from_base32(&b32)
        .map(Some)
        .ok_or_else(|| PeopleError::Internal("stored TOTP secret unreadable".into()))
}

/// The generic refusal for any sign-in failure: never says whether the email exists or the
/// account is locked.
pub const SIGN_IN_REFUSED: &str = "The email or password is wrong, or the account is temporarily locked. Try again in a few minutes.";

/// Step one of sign-in. Constant work whether or not the email exists.
pub async fn check_password(
    state: &AppState,
    email: &str,
    password_text: SecretString,
    origin: &Origin,
) -> Result<User, PeopleError> {
    // Before any lookup or hashing: see `auth::throttle`.
    if let Err(retry_after_secs) = state.signin_throttle.attempt(origin.ip.as_deref()) {
        state.metrics.sign_in_failed(Factor::Throttled);
        tracing::info!(
            ip = origin.ip.as_deref().unwrap_or(""),
            "sign-in attempt over the per-address limit"
        );
        return Err(PeopleError::Throttled { retry_after_secs });
    }
    let user = users::by_email(&state.db, email)
        .await?
        .filter(|u| u.status == "active");
    let ok = password::verify(
        password_text,
        user.as_ref().and_then(|u| u.password_hash.clone()),
    )
    .await;
    let now = state.now();
    let Some(user) = user else {
        state.metrics.sign_in_failed(Factor::Password);
        return Err(refused(SIGN_IN_REFUSED));
    };
    if user.is_locked(now) {
        state.metrics.sign_in_failed(Factor::Password);
        audit_one(
            state,
            &user.project_id,
            &Actor::User(user.id.clone()),
            "signin.refused_locked",
            format!("user:{}", user.id),
            json!({}),
            origin,
        )
        .await?;
        return Err(refused(SIGN_IN_REFUSED));
    }
    if !ok {
        state.metrics.sign_in_failed(Factor::Password);
        let locked = users::record_password_failure(
            &state.db,
            &user.id,
            now,
            FAILURE_WINDOW_MS,
            MAX_PASSWORD_FAILURES,
            LOCK_MS,
        )
        .await?;
        audit_one(
            state,
            &user.project_id,
            &Actor::User(user.id.clone()),
            "signin.password_failed",
            format!("user:{}", user.id),
            json!({}),
            origin,
        )
        .await?;
        if locked {
            lockout(state, &user, "password", origin).await?;
        }
        return Err(refused(SIGN_IN_REFUSED));
    }
    users::clear_password_failures(&state.db, &user.id).await?;
    Ok(user)
}

async fn lockout(
    state: &AppState,
    user: &User,
    what: &str,
    origin: &Origin,
) -> Result<(), PeopleError> {
    state.metrics.lockout();
    let now = state.now();
    let mut ctx = tera::Context::new();
    ctx.insert("email", &user.email);
    ctx.insert("what", what);
    ctx.insert("minutes", &(LOCK_MS / MINUTE_MS));
    ctx.insert("ip", &origin.ip);
    ctx.insert("base_url", &state.settings.base_url);
    let mail = email::render(
        "lockout",
        &user.email,
        "Your Countersign account was locked",
        &ctx,
    )
    .map_err(|e| PeopleError::Internal(e.to_string()))?;
    let mut tx = state.db.begin().await?;
    email::queue(
        &mut tx,
        &user.project_id,
        &mail,
        format!("lockout:{}:{now}", user.id),
        now,
    )
    .await?;
    crate::notify::slack::queue_text(
        &mut tx,
        crate::notify::slack::SlackEvent::Lockouts,
        &user.project_id,
        format!("slack:lockout:{}:{now}", user.id),
        &format!(
            "{} was locked out for {} minutes after too many wrong {}{}.",
            user.email,
            LOCK_MS / MINUTE_MS,
            if what == "code" {
                "verification codes"
            } else {
                "passwords"
            },
            origin
                .ip
                .as_deref()
                .map(|ip| format!(" (last attempt from {ip})"))
                .unwrap_or_default()
        ),
        now,
    )
    .await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &user.project_id,
            actor: &Actor::System,
            action: "signin.lockout",
            subject: format!("user:{}", user.id),
            details: json!({"after": what, "minutes": LOCK_MS / MINUTE_MS}),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    Ok(())
}

/// Verifies a fresh TOTP code (or, when `allow_recovery`, a recovery code) for `user`: the
/// code's step must be later than the last accepted one (replay guard, one conditional
/// write); failures count toward lockout.
pub async fn verify_second_factor(
    state: &AppState,
    user: &User,
    code: &str,
    allow_recovery: bool,
    origin: &Origin,
) -> Result<(), PeopleError> {
    let now = state.now();
    let fresh = users::by_id(&state.db, &user.id)
        .await?
        .ok_or_else(|| refused(SIGN_IN_REFUSED))?;
    let secret = totp_secret(state, &fresh)?
        .ok_or_else(|| refused("Two-factor authentication is not set up for this account."))?;
    // The try is counted before the code is looked at, so that a burst of guesses sent at
    // once gets no more than MAX_TOTP_FAILURES of them checked.
    let Some(try_no) = users::take_code_try(
        &state.db,
        &user.id,
        now,
        FAILURE_WINDOW_MS,
        MAX_TOTP_FAILURES,
    )
    .await?
    else {
        state.metrics.sign_in_failed(Factor::Code);
        let locked = users::by_id(&state.db, &user.id)
            .await?
            .is_some_and(|u| u.is_locked(now));
        return Err(refused(if locked {
            "Too many wrong codes: the account is locked for a few minutes. Try again later."
        } else {
            // The window's tries are all being checked right now (a burst of requests).
            "Too many codes are being tried for this account at once. Wait a moment and try again."
        }));
    };
    let code = code.trim();
    let actor = Actor::User(user.id.clone());
    let subject = format!("user:{}", user.id);
    // A try that did not let the user in: the last one of the window locks the account.
    let failed = |action: &'static str, details: serde_json::Value, message: &'static str| {
        let (actor, subject, fresh) = (&actor, subject.clone(), &fresh);
        async move {
            state.metrics.sign_in_failed(Factor::Code);
            audit_one(
                state,
                &user.project_id,
                actor,
                action,
                subject,
                details,
                origin,
            )
            .await?;
            if try_no >= MAX_TOTP_FAILURES && action != "totp.replay_refused" {
                users::lock(&state.db, &user.id, now, LOCK_MS).await?;
                lockout(state, fresh, "code", origin).await?;
            }
            Err::<(), PeopleError>(refused(message))
        }
    };
    if let Some(step) = totp::matching_step(&secret, code, now) {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        if users::accept_totp_step(&state.db, &user.id, step, now).await? {
            return Ok(());
        }
        // A right code used before is no guess: its try is given back, so that a form sent
        // twice cannot lock anyone out.
        users::give_back_code_try(&state.db, &user.id).await?;
        return failed(
            "totp.replay_refused",
            json!({"step": step}),
            "That code was already used. Wait for the next code and try again.",
        )
        .await;
    }
    if allow_recovery && code.len() >= 10 {
        let normalized: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        if users::use_recovery_code(&state.db, &user.id, &sha256_hex(normalized.as_bytes()), now)
            .await?
        {
            users::clear_code_failures(&state.db, &user.id).await?;
            audit_one(
                state,
                &user.project_id,
                &actor,
                "totp.recovery_code_used",
                subject,
                json!({}),
                origin,
            )
            .await?;
            return Ok(());
        }
    }
    failed(
        "totp.failed",
        json!({}),
        "That code is not right. Check your authenticator app and try again.",
    )
    .await
}

/// Starts (or restarts) enrollment: a new secret, kept pending until a code confirms it.
pub async fn begin_enrollment(state: &AppState, user: &User) -> Result<Vec<u8>, PeopleError> {
    let secret = totp::new_secret()?;
    users::set_pending_totp(
        &state.db,
        &user.id,
        &state.master_key.encrypt(&totp::base32(&secret))?,
    )
    .await?;
    Ok(secret)
}

/// The pending enrollment secret, if any.
pub fn pending_secret(state: &AppState, user: &User) -> Result<Option<Vec<u8>>, PeopleError> {
    let Some(enc) = &user.totp_pending_enc else {
        return Ok(None);
    };
    Ok(totp::from_base32(&state.master_key.decrypt(enc)?))
}

/// Confirms enrollment with a code (burning its step) and returns the new recovery codes,
/// shown once.
pub async fn confirm_enrollment(
    state: &AppState,
    user: &User,
    code: &str,
    origin: &Origin,
) -> Result<Vec<String>, PeopleError> {
    let now = state.now();
    let (Some(enc), Some(secret)) = (user.totp_pending_enc.clone(), pending_secret(state, user)?)
    else {
        return Err(refused("Enrollment expired; scan the new code below."));
    };
    let Some(step) = totp::matching_step(&secret, code, now) else {
        return Err(refused(
            "That code is not right. Check the time on your phone and try the current code.",
        ));
    };
    // 12 hex digits (48 bits) each, shown as xxxx-xxxx-xxxx; stored hashed, dashes stripped.
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            crate::crypto::random_bytes::<6>().map(|b| {
                let h = hex::encode(b);
                format!("{}-{}-{}", &h[0..4], &h[4..8], &h[8..12])
            })
        })
        .collect::<Result<_, _>>()?;
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| sha256_hex(c.replace('-', "").as_bytes()))
        .collect();
    let mut tx = state.db.begin().await?;
    if !users::confirm_totp(
        &mut tx,
        &user.id,
        &enc,
        i64::try_from(step).unwrap_or(i64::MAX),
        now,
    )
    .await?
    {
        return Err(refused(
            "That code was already used. Wait for the next code.",
        ));
    }
    users::replace_recovery_codes(&mut tx, &user.id, &hashes).await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &user.project_id,
            actor: &Actor::User(user.id.clone()),
            action: "totp.enrolled",
            subject: format!("user:{}", user.id),
            details: json!({}),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(codes)
}

/// Whether a change that takes withdrawal rights away from `user` (removal, revoking the
/// right, resetting 2FA, demotion) is allowed: the last owner stays, and while Withdrawal
/// Confirmation is on at least two people must keep usable rights.
pub async fn check_rights_reduction(
    state: &AppState,
    user: &User,
    keeps_owner: bool,
    keeps_usable_rights: bool,
) -> Result<(), PeopleError> {
    if user.is_owner()
        && user.status == "active"
        && !keeps_owner
        && users::count_owners(&state.db, &user.project_id).await? <= 1
    {
        return Err(refused(
            "This is the project's last owner: make someone else an owner first.",
        ));
    }
    // A new approver still held does not count yet, on either side of the comparison.
    let now = state.now();
    if user.can_approve(now) && !keeps_usable_rights {
        let project = projects::get(&state.db, &user.project_id)
            .await?
            .ok_or_else(|| refused("no such project"))?;
        if project.withdrawal_confirmation
            && users::count_approvers(&state.db, &user.project_id, now).await? <= 2
        {
            return Err(refused(
                "Withdrawal Confirmation is enabled and needs at least two users with withdrawal rights: add another one first, or disable the feature.",
            ));
        }
    }
    Ok(())
}

/// Resets a user's second factor (they enroll again at next sign-in; their sessions end).
pub async fn reset_second_factor(
    state: &AppState,
    user: &User,
    actor: &Actor,
    origin: &Origin,
) -> Result<(), PeopleError> {
    check_rights_reduction(state, user, true, false).await?;
    let now = state.now();
    let mut tx = state.db.begin().await?;
    users::reset_totp(&mut tx, &user.id, now).await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &user.project_id,
            actor,
            action: "user.2fa_reset",
            subject: format!("user:{}", user.id),
            details: json!({"email": user.email}),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

pub async fn reset_second_factor_by_email(
    state: &AppState,
    email: &str,
    actor: &Actor,
) -> Result<(), PeopleError> {
    let user = users::by_email(&state.db, email)
        .await?
        .filter(|u| u.status != "removed")
        .ok_or_else(|| refused(format!("no user {email}")))?;
    reset_second_factor(state, &user, actor, &Origin::default()).await
}
