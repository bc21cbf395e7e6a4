//! The owner's changes to the team: inviting people, accepting an invitation, changing a
//! user's role and withdrawal rights, resetting their second factor, removing them. Every
//! change is audited in its own transaction; every reduction of rights passes
//! `people::check_rights_reduction` (the last owner stays; Withdrawal Confirmation keeps two
//! usable approvers) while the project's row is locked, so two owners acting at once cannot
//! both pass the guard.

use crate::auth::password;
use crate::crypto::{random_token, sha256_hex};
use crate::db::audit::{self, Actor, Origin};
use crate::db::users::{self, NewUser, Role, User};
use crate::db::{DbError, invites, project_settings};
use crate::notify::email;
use crate::service::people::{self, INVITE_TTL_MS, PeopleError};
use crate::state::AppState;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    /// Bad input, shown next to the field it names; nothing was changed.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A rule refused the change (shown as is); nothing was changed.
    #[error("{0}")]
    Refused(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
}

impl From<PeopleError> for TeamError {
    fn from(e: PeopleError) -> Self {
        match e {
            PeopleError::Refused(m) => TeamError::Refused(m),
            e @ PeopleError::Throttled { .. } => TeamError::Refused(e.to_string()),
            PeopleError::Db(d) => TeamError::Db(d),
            PeopleError::Internal(m) => TeamError::Internal(m),
        }
    }
}

impl From<crate::crypto::CryptoError> for TeamError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        TeamError::Internal(e.to_string())
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> TeamError {
    TeamError::Invalid {
        field,
        message: message.into(),
    }
}

fn user_json(u: &User) -> serde_json::Value {
    json!({"role": u.role.as_str(), "withdrawal_rights": u.has_withdrawal_rights()})
}

/// A user of the acting owner's project, or not found (ids of other projects included).
async fn target(state: &AppState, by: &User, user_id: &str) -> Result<User, TeamError> {
    users::in_project(&state.db, &by.project_id, user_id)
        .await?
        .filter(|u| u.status != "removed")
        .ok_or(TeamError::NotFound)
}

/// The approval power a change of role and rights gives someone who had none (withdrawal
/// rights, alone or with the owner role), described for the other approvers; `None` when they
/// gain none. Making an approver an owner is not a new approver: they already were a second
/// person the others accepted.
fn power_gained(before: Option<&User>, role: Role, rights: bool) -> Option<&'static str> {
    let had_rights = before.is_some_and(User::has_withdrawal_rights);
    match (role, rights || role == Role::Owner) {
        _ if had_rights => None,
        (Role::Owner, _) => Some("the owner role, with withdrawal rights"),
        (Role::Member, true) => Some("withdrawal rights"),
        (Role::Member, false) => None,
    }
}

/// `user` just gained approval power (`power`), granted by `granted_by` (id, email). While Withdrawal
/// Confirmation is on, an owner could otherwise invite an identity they control and approve
/// their own withdrawals with it at once; so the new approver may decide only after
/// `withdrawals.new_approver_hold_hours`, and every other approver is emailed now, so that a
/// second person can revoke the grant in time. Granted while the feature is off (or with the
/// hold set to 0), no hold applies. Written in the caller's transaction.
async fn hold_new_approver(
    state: &AppState,
    tx: &mut crate::db::Tx<'_>,
    user: &User,
    granted_by: (&str, &str),
    power: &str,
    origin: &Origin,
    now: i64,
) -> Result<(), TeamError> {
    let (granter_id, granter_email) = granted_by;
    let project = crate::db::projects::get(&state.db, &user.project_id)
        .await?
        .ok_or(TeamError::NotFound)?;
    let hours = state.settings.withdrawals.new_approver_hold_hours;
    if !project.withdrawal_confirmation || hours == 0 {
        users::set_approver_from(tx, &user.id, None).await?;
        return Ok(());
    }
    let hold_ms = i64::try_from(hours)
        .unwrap_or(i64::MAX / crate::clock::HOUR_MS)
        .saturating_mul(crate::clock::HOUR_MS);
    let from = now.saturating_add(hold_ms);
    users::set_approver_from(tx, &user.id, Some(from)).await?;
    let mut ctx = tera::Context::new();
    ctx.insert("granted_by", granter_email);
    ctx.insert("email", &user.email);
    ctx.insert("power", power);
    ctx.insert("project", &project.name);
    ctx.insert("from", &crate::clock::rfc3339(from));
    ctx.insert("hours", &hours);
    ctx.insert(
        "link",
        &format!(
            "{}/users/{}",
            state.settings.base_url.trim_end_matches('/'),
            user.id
        ),
    );
    let others = users::list_in(tx, &user.project_id).await?;
    let mut told = Vec::new();
    for other in others
        .iter()
        .filter(|o| o.id != user.id && o.id != granter_id && o.can_use_withdrawal_rights())
    {
        let mail = email::render(
            "approver_added",
            &other.email,
            &format!(
                "{}: {} can approve withdrawals from {}",
                project.name,
                user.email,
                crate::clock::rfc3339(from)
            ),
            &ctx,
        )
        .map_err(|e| TeamError::Internal(e.to_string()))?;
        email::queue(
            tx,
            &user.project_id,
            &mail,
            format!("approver_added:{}:{now}:{}", user.id, other.id),
            now,
        )
        .await?;
        told.push(other.email.clone());
    }
    audit::append(
        tx,
        &audit::Entry {
            project_id: &user.project_id,
            actor: &Actor::User(granter_id.to_string()),
            action: "user.approver_held",
            subject: format!("user:{}", user.id),
            details: json!({
                "email": user.email,
                "power": power,
                "approver_from": crate::clock::rfc3339(from),
                "hold_hours": hours,
                "emailed": told,
            }),
            origin,
        },
        now,
    )
    .await?;
    Ok(())
}

pub struct InviteInput<'a> {
    pub email: &'a str,
    pub role: Role,
    pub withdrawal_rights: bool,
}

/// Queues the invitation email (link `{base_url}/invite/{token}`) in the caller's
/// transaction; the token itself is stored only as its SHA-256.
async fn queue_invite(
    state: &AppState,
    tx: &mut crate::db::Tx<'_>,
    by: &User,
    invitee: &User,
    project_name: &str,
    now: i64,
) -> Result<(), TeamError> {
    let token = random_token::<32>()?;
    let token_hash = sha256_hex(token.as_bytes());
    let expires_at = now + INVITE_TTL_MS;
    invites::insert(tx, &token_hash, &invitee.id, &by.id, expires_at, now).await?;
    let mut ctx = tera::Context::new();
    ctx.insert("email", &invitee.email);
    ctx.insert("inviter", &by.email);
    ctx.insert("project", project_name);
    ctx.insert("role", invitee.role.as_str());
    ctx.insert("withdrawal_rights", &invitee.has_withdrawal_rights());
    ctx.insert("hours", &(INVITE_TTL_MS / crate::clock::HOUR_MS));
    ctx.insert(
        "link",
        &format!(
            "{}/invite/{token}",
            state.settings.base_url.trim_end_matches('/')
        ),
    );
    let mail = email::render(
        "invite",
        &invitee.email,
        &format!("You are invited to {project_name} on Countersign"),
        &ctx,
    )
    .map_err(|e| TeamError::Internal(e.to_string()))?;
    email::queue(
        tx,
        &by.project_id,
        &mail,
        format!("invite:{token_hash}"),
        now,
    )
    .await?;
    Ok(())
}

/// Invites `input.email`: a user row with status 'invited' and an emailed single-use link,
/// written together with its audit record.
pub async fn invite(
    state: &AppState,
    by: &User,
    input: &InviteInput<'_>,
    origin: &Origin,
) -> Result<String, TeamError> {
    let email_addr = input.email.trim();
    people::check_email(email_addr).map_err(|e| invalid("email", e.to_string()))?;
    let project = crate::db::projects::get(&state.db, &by.project_id)
        .await?
        .ok_or(TeamError::NotFound)?;
    let user_id = format!("usr_{}", random_token::<12>()?);
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let r = users::insert(
        &mut tx,
        &NewUser {
            id: &user_id,
            project_id: &by.project_id,
            email: email_addr,
            role: input.role,
            withdrawal_rights: input.withdrawal_rights,
            status: "invited",
            password_hash: None,
            totp_secret_enc: None,
        },
        now,
    )
    .await;
    match r {
        // Emails are unique across the installation, so this may be another project's user;
        // the message says no more than that the address is taken.
        Err(e) if e.is_unique_violation() => {
            return Err(invalid(
                "email",
                format!("{email_addr} already has a Countersign account"),
            ));
        }
        other => other?,
    }
    let invitee = User {
        id: user_id.clone(),
        project_id: by.project_id.clone(),
        email: email_addr.to_string(),
        role: input.role,
        withdrawal_rights: input.withdrawal_rights || input.role == Role::Owner,
        status: "invited".into(),
        password_hash: None,
        totp_secret_enc: None,
        totp_pending_enc: None,
        totp_last_step: 0,
        session_generation: 0,
        failed_passwords: 0,
        failed_totp: 0,
        failures_since: None,
        locked_until: None,
        email_alerts: true,
        outcome_alerts: true,
        approver_from: None,
        created_at: now,
    };
    queue_invite(state, &mut tx, by, &invitee, &project.name, now).await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &by.project_id,
            actor: &Actor::User(by.id.clone()),
            action: "user.invited",
            subject: format!("user:{user_id}"),
            details: json!({"email": email_addr, "after": user_json(&invitee)}),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    Ok(user_id)
}

/// Sends a new invitation to a user who has not accepted yet; earlier links stop working.
pub async fn resend_invite(
    state: &AppState,
    by: &User,
    user_id: &str,
    origin: &Origin,
) -> Result<User, TeamError> {
    let invitee = target(state, by, user_id).await?;
    if invitee.status != "invited" {
        return Err(TeamError::Refused(format!(
            "{} has already accepted the invitation.",
            invitee.email
        )));
    }
    let project = crate::db::projects::get(&state.db, &by.project_id)
        .await?
        .ok_or(TeamError::NotFound)?;
    let now = state.now();
    let mut tx = state.db.begin().await?;
    invites::expire_for_user(&mut tx, &invitee.id, now).await?;
    queue_invite(state, &mut tx, by, &invitee, &project.name, now).await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &by.project_id,
            actor: &Actor::User(by.id.clone()),
            action: "user.invite_resent",
            subject: format!("user:{}", invitee.id),
            details: json!({"email": invitee.email}),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    Ok(invitee)
}

/// Why an invitation link does not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteProblem {
    Unknown,
    Used,
    /// Expired, or replaced by a newer invitation.
    Expired,
}

/// The invited user behind a link, if the link still works. Reads only: opening the link
/// consumes nothing.
pub async fn open_invite(
    state: &AppState,
    token: &str,
) -> Result<Result<User, InviteProblem>, TeamError> {
    if token.len() > 100 {
        return Ok(Err(InviteProblem::Unknown));
    }
    let Some(invite) = invites::by_token_hash(&state.db, &sha256_hex(token.as_bytes())).await?
    else {
        return Ok(Err(InviteProblem::Unknown));
    };
    let user = users::by_id(&state.db, &invite.user_id).await?;
    let now = state.now();
    Ok(match user {
        _ if invite.used_at.is_some() => Err(InviteProblem::Used),
        Some(u) if u.status == "active" => Err(InviteProblem::Used),
        _ if invite.expires_at <= now => Err(InviteProblem::Expired),
        Some(u) if u.status == "invited" => Ok(u),
        _ => Err(InviteProblem::Unknown),
    })
}

pub enum AcceptError {
    /// The link no longer works.
    Link(InviteProblem),
    /// The password is not acceptable (shown on the form).
    Password(String),
    Other(TeamError),
}

impl From<TeamError> for AcceptError {
    fn from(e: TeamError) -> Self {
        AcceptError::Other(e)
    }
}

impl From<DbError> for AcceptError {
    fn from(e: DbError) -> Self {
        AcceptError::Other(e.into())
    }
}

/// Accepts an invitation: sets the password, activates the user and uses up the link, in one
/// transaction. The caller then starts the enrollment of the second factor.
pub async fn accept_invite(
    state: &AppState,
    token: &str,
    new_password: SecretString,
    confirm: &str,
    origin: &Origin,
) -> Result<User, AcceptError> {
    let user = open_invite(state, token)
        .await?
        .map_err(AcceptError::Link)?;
    if new_password.expose_secret() != confirm {
        return Err(AcceptError::Password(
            "the password and its confirmation differ".into(),
        ));
    }
    password::check_policy(new_password.expose_secret(), &user.email)
        .map_err(|m| AcceptError::Password(format!("the password {m}")))?;
    let hash = password::hash(new_password)
        .await
        .map_err(|e| TeamError::Internal(e.to_string()))?;
    let now = state.now();
    let mut tx = state.db.begin().await?;
    if !invites::consume(&mut tx, &sha256_hex(token.as_bytes()), now).await?
        || !users::activate(&mut tx, &user.id, &hash, now).await?
    {
        // Someone else used it first (or it expired meanwhile): nothing is written.
        return Err(AcceptError::Link(InviteProblem::Used));
    }
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &user.project_id,
            actor: &Actor::User(user.id.clone()),
            action: "user.invite_accepted",
            subject: format!("user:{}", user.id),
            details: json!({"email": user.email}),
            origin,
        },
        now,
    )
    .await
    .map_err(TeamError::from)?;
    if let Some(power) = power_gained(None, user.role, user.withdrawal_rights) {
        // The inviter, as the other approvers know them (a removed inviter by id).
        let inviter_id = invites::by_token_hash(&state.db, &sha256_hex(token.as_bytes()))
            .await?
            .map(|i| i.created_by)
            .unwrap_or_default();
        let inviter_email = users::by_id(&state.db, &inviter_id)
            .await?
            .map_or_else(|| format!("user {inviter_id}"), |u| u.email);
        let granted_by = (inviter_id.as_str(), inviter_email.as_str());
        hold_new_approver(state, &mut tx, &user, granted_by, power, origin, now).await?;
    }
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    Ok(users::by_id(&state.db, &user.id)
        .await?
        .ok_or(TeamError::NotFound)?)
}

/// Sets a user's role and withdrawal rights; their sessions end. Owners always have
/// withdrawal rights.
pub async fn change_role_and_rights(
    state: &AppState,
    by: &User,
    user_id: &str,
    role: Role,
    rights: bool,
    origin: &Origin,
) -> Result<User, TeamError> {
    let rights = rights || role == Role::Owner;
    let now = state.now();
    let mut tx = state.db.begin().await?;
    project_settings::lock(&state.db, &mut tx, &by.project_id).await?;
    // Read after the lock: a concurrent change has either committed or waits for us.
    let before = target(state, by, user_id).await?;
    if before.role == role && before.has_withdrawal_rights() == rights {
        return Err(TeamError::Refused(format!(
            "{} already has this role and these rights: nothing to change.",
            before.email
        )));
    }
    let keeps_owner = role == Role::Owner;
    people::check_rights_reduction(state, &before, keeps_owner, rights).await?;
    users::set_role_and_rights(&mut tx, &before.id, role, rights, now).await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &by.project_id,
            actor: &Actor::User(by.id.clone()),
            action: "user.role_changed",
            subject: format!("user:{}", before.id),
            details: json!({
                "email": before.email,
                "before": user_json(&before),
                "after": {"role": role.as_str(), "withdrawal_rights": rights},
            }),
            origin,
        },
        now,
    )
    .await?;
    // An invited user gains the power when they accept (see `accept_invite`).
    if before.status == "active"
        && let Some(power) = power_gained(Some(&before), role, rights)
    {
        let granted_by = (by.id.as_str(), by.email.as_str());
        hold_new_approver(state, &mut tx, &before, granted_by, power, origin, now).await?;
    }
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    Ok(before)
}

/// Resets a user's second factor: they enroll again at their next sign-in; their sessions
/// end. Not one's own: an owner who lost their device asks another owner (or the operator
/// runs `countersign user reset-2fa`).
pub async fn reset_2fa(
    state: &AppState,
    by: &User,
    user_id: &str,
    origin: &Origin,
) -> Result<User, TeamError> {
    let user = target(state, by, user_id).await?;
    if user.id == by.id {
        return Err(TeamError::Refused(
            "You cannot reset your own two-factor authentication here: ask another owner.".into(),
        ));
    }
    if !user.totp_enrolled() {
        return Err(TeamError::Refused(format!(
            "{} has no two-factor authentication set up: nothing to reset.",
            user.email
        )));
    }
    people::reset_second_factor(state, &user, &Actor::User(by.id.clone()), origin).await?;
    Ok(user)
}

/// Removes a user: they cannot sign in any more, their sessions and invitations end, and
/// their email address is free again. Not oneself: another owner removes you, so nobody locks
/// themselves out by mistake.
pub async fn remove_user(
    state: &AppState,
    by: &User,
    user_id: &str,
    origin: &Origin,
) -> Result<User, TeamError> {
    if user_id == by.id {
        return Err(TeamError::Refused(
            "You cannot remove yourself: ask another owner to do it.".into(),
        ));
    }
    let now = state.now();
    let mut tx = state.db.begin().await?;
    project_settings::lock(&state.db, &mut tx, &by.project_id).await?;
    let user = target(state, by, user_id).await?;
    people::check_rights_reduction(state, &user, false, false).await?;
    users::remove(&mut tx, &user.id, now).await?;
    invites::expire_for_user(&mut tx, &user.id, now).await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &by.project_id,
            actor: &Actor::User(by.id.clone()),
            action: "user.removed",
            subject: format!("user:{}", user.id),
            details: json!({"email": user.email, "before": user_json(&user), "status_before": user.status}),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(user)
}
