//! Turning Withdrawal Confirmation on and off, exactly as seed 000 says: enabling needs an
//! owner, the feature disabled, two users with withdrawal rights, a fresh TOTP code and the
//! confirmation of the project's primary account email; disabling needs an owner, the feature
//! enabled, a fresh TOTP code, an approving user among the others with withdrawal rights,
//! and the confirmation of both their addresses. Requests expire after 30 minutes; either
//! side may cancel. Every step is in the audit log; the outcome is emailed to every owner.
//!
//! The caller checks the TOTP code (`web::step_up::check`) before asking here.

use crate::clock::{MINUTE_MS, rfc3339};
use crate::crypto::{random_token, sha256_hex};
use crate::db::activity::Names;
use crate::db::audit::{self, Actor, Origin};
use crate::db::confirmation::{self as cdb, Request};
use crate::db::users::{self, User};
use crate::db::{DbError, Tx, projects};
use crate::domain::confirmation::{
    FeatureState, RequestKind, may_request_disable, may_request_enable,
};
use crate::notify::email;
use crate::state::AppState;
use serde_json::json;

/// How long a request (and its links) stays open.
pub const REQUEST_TTL_MS: i64 = 30 * MINUTE_MS;

#[derive(Debug, thiserror::Error)]
pub enum ConfirmationError {
    /// Refused, with the reason to show.
    #[error("{0}")]
    Refused(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
}

fn refused(m: impl Into<String>) -> ConfirmationError {
    ConfirmationError::Refused(m.into())
}

/// Where the feature stands, for the settings page.
#[derive(Debug, Clone)]
pub struct Standing {
    pub state: FeatureState,
    pub request: Option<RequestView>,
}

#[derive(Debug, Clone)]
pub struct RequestView {
    pub id: i64,
    pub kind: RequestKind,
    pub requested_by: String,
    pub requested_by_id: String,
    pub approver: Option<String>,
    pub approver_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Addresses whose confirmation is still awaited / already given.
    pub awaiting: Vec<String>,
    pub confirmed: Vec<String>,
}

async fn view(state: &AppState, r: &Request) -> Result<RequestView, DbError> {
    let names = Names::load(&state.db, &r.project_id).await?;
    let links = cdb::links(&state.db, r.id).await?;
    let (confirmed, awaiting): (Vec<_>, Vec<_>) =
        links.into_iter().partition(|l| l.confirmed_at.is_some());
    Ok(RequestView {
        id: r.id,
        kind: r.kind,
        requested_by: names.describe("user", &r.requested_by),
        requested_by_id: r.requested_by.clone(),
        approver: r.approver_id.as_deref().map(|a| names.describe("user", a)),
        approver_id: r.approver_id.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        awaiting: awaiting.into_iter().map(|l| l.email).collect(),
        confirmed: confirmed.into_iter().map(|l| l.email).collect(),
    })
}

pub async fn standing(state: &AppState, project_id: &str) -> Result<Standing, ConfirmationError> {
    expire_due(state).await?;
    let project = projects::get(&state.db, project_id)
        .await?
        .ok_or(ConfirmationError::NotFound)?;
    let open = cdb::open(&state.db, project_id).await?;
    let request = match &open {
        Some(r) => Some(view(state, r).await?),
        None => None,
    };
    Ok(Standing {
        state: FeatureState::of(project.withdrawal_confirmation, open.map(|r| r.kind)),
        request,
    })
}

fn entry<'a>(
    project_id: &'a str,
    actor: &'a Actor,
    action: &'a str,
    request_id: i64,
    details: serde_json::Value,
    origin: &'a Origin,
) -> audit::Entry<'a> {
    audit::Entry {
        project_id,
        actor,
        action,
        subject: format!("withdrawal_confirmation:{request_id}"),
        details,
        origin,
    }
}

/// Makes one link, stores its hash and queues its email in `tx`.
#[allow(clippy::too_many_arguments)]
async fn send_link(
    state: &AppState,
    tx: &mut Tx,
    request: i64,
    kind: RequestKind,
    role: &str,
    to: &str,
    user_id: Option<&str>,
    requester: &User,
    project_name: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), ConfirmationError> {
    let token = random_token::<32>().map_err(|e| ConfirmationError::Internal(e.to_string()))?;
    cdb::insert_link(
        tx,
        &sha256_hex(token.as_bytes()),
        request,
        role,
        to,
        user_id,
    )
    .await?;
    let mut ctx = tera::Context::new();
    ctx.insert("kind", kind.as_str());
    ctx.insert("role", role);
    ctx.insert("project", project_name);
    ctx.insert("requester", &requester.email);
    ctx.insert("expires", &rfc3339(expires_at));
    ctx.insert(
        "link",
        &format!(
            "{}/confirm/{token}",
            state.settings.base_url.trim_end_matches('/')
        ),
    );
    let subject = format!(
        "Confirm: {} Withdrawal Confirmation for {project_name}",
        if kind == RequestKind::Enable {
            "enable"
        } else {
            "disable"
        }
    );
    let mail = email::render("confirmation_request", to, &subject, &ctx)
        .map_err(|e| ConfirmationError::Internal(e.to_string()))?;
    email::queue(
        tx,
        &requester.project_id,
        &mail,
        format!("confirmation:{request}:{role}"),
        now,
    )
    .await?;
    audit::append(
        tx,
        &entry(
            &requester.project_id,
            &Actor::System,
            "withdrawal_confirmation.email_sent",
            request,
            json!({"to": to, "role": role}),
            &Origin::default(),
        ),
        now,
    )
    .await?;
    Ok(())
}

/// Opens the request row, or says why not (a unique index keeps one per project).
async fn open_request(
    tx: &mut Tx,
    owner: &User,
    kind: RequestKind,
    approver: Option<&str>,
    origin: &Origin,
    now: i64,
) -> Result<i64, ConfirmationError> {
    let id = match cdb::insert(
        tx,
        &owner.project_id,
        kind,
        &owner.id,
        approver,
        now + REQUEST_TTL_MS,
        now,
    )
    .await
    {
        Ok(id) => id,
        Err(e) if e.is_unique_violation() => {
            return Err(refused(
                "Another Withdrawal Confirmation request is already in progress.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let actor = Actor::User(owner.id.clone());
    for (action, details) in [
        (
            "withdrawal_confirmation.requested",
            json!({"kind": kind.as_str(), "approver": approver}),
        ),
        ("withdrawal_confirmation.2fa_passed", json!({})),
    ] {
        audit::append(
            tx,
            &entry(&owner.project_id, &actor, action, id, details, origin),
            now,
        )
        .await?;
    }
    Ok(id)
}

/// Step 4 of enabling: the link to the primary account email.
pub async fn request_enable(
    state: &AppState,
    owner: &User,
    origin: &Origin,
) -> Result<(), ConfirmationError> {
    if !owner.is_owner() {
        return Err(refused(
            "Only owners can turn Withdrawal Confirmation on or off.",
        ));
    }
    let current = standing(state, &owner.project_id).await?;
    let usable = users::count_usable_rights(&state.db, &owner.project_id).await?;
    may_request_enable(current.state, usable).map_err(|e| refused(e.to_string()))?;
    let project = projects::get(&state.db, &owner.project_id)
        .await?
        .ok_or(ConfirmationError::NotFound)?;
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let id = open_request(&mut tx, owner, RequestKind::Enable, None, origin, now).await?;
    send_link(
        state,
        &mut tx,
        id,
        RequestKind::Enable,
        "primary",
        &project.primary_email,
        None,
        owner,
        &project.name,
        now + REQUEST_TTL_MS,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    Ok(())
}

/// The people an owner may choose as the approving user of a disable request.
pub async fn disable_approvers(state: &AppState, owner: &User) -> Result<Vec<User>, DbError> {
    Ok(users::list(&state.db, &owner.project_id)
        .await?
        .into_iter()
        .filter(|u| u.id != owner.id && u.can_use_withdrawal_rights())
        .collect())
}

/// Steps 3 and 4 of disabling: the chosen approver, and a link to each of the two.
pub async fn request_disable(
    state: &AppState,
    owner: &User,
    approver_id: &str,
    origin: &Origin,
) -> Result<(), ConfirmationError> {
    if !owner.is_owner() {
        return Err(refused(
            "Only owners can turn Withdrawal Confirmation on or off.",
        ));
    }
    let current = standing(state, &owner.project_id).await?;
    let approver = disable_approvers(state, owner)
        .await?
        .into_iter()
        .find(|u| u.id == approver_id);
    may_request_disable(current.state, approver.is_some()).map_err(|e| refused(e.to_string()))?;
    let Some(approver) = approver else {
        return Err(refused("Choose the approving user."));
    };
    let project = projects::get(&state.db, &owner.project_id)
        .await?
        .ok_or(ConfirmationError::NotFound)?;
    let now = state.now();
    let expires = now + REQUEST_TTL_MS;
    let mut tx = state.db.begin().await?;
    let id = open_request(
        &mut tx,
        owner,
        RequestKind::Disable,
        Some(&approver.id),
        origin,
        now,
    )
    .await?;
    for (role, who) in [("requester", owner), ("approver", &approver)] {
        send_link(
            state,
            &mut tx,
            id,
            RequestKind::Disable,
            role,
            &who.email,
            Some(&who.id),
            owner,
            &project.name,
            expires,
            now,
        )
        .await?;
    }
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    Ok(())
}

/// What a confirmation link is for, to show on its page (opening it changes nothing).
#[derive(Debug, Clone)]
pub struct LinkView {
    pub kind: RequestKind,
    pub role: String,
    pub email: String,
    pub user_id: Option<String>,
    pub project_id: String,
    pub request: RequestView,
    pub open: bool,
    pub status: String,
    pub confirmed: bool,
}

pub async fn link_view(state: &AppState, token: &str) -> Result<LinkView, ConfirmationError> {
    expire_due(state).await?;
    let link = cdb::link(&state.db, &sha256_hex(token.as_bytes()))
        .await?
        .ok_or(ConfirmationError::NotFound)?;
    let mut tx = state.db.begin().await?;
    let request = cdb::lock(&state.db, &mut tx, link.request_id)
        .await?
        .ok_or(ConfirmationError::NotFound)?;
    drop(tx);
    Ok(LinkView {
        kind: request.kind,
        role: link.role,
        email: link.email,
        user_id: link.user_id,
        project_id: request.project_id.clone(),
        open: request.status == "open",
        status: request.status.clone(),
        confirmed: link.confirmed_at.is_some(),
        request: view(state, &request).await?,
    })
}

/// What a confirmation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// Every link is confirmed: the feature changed.
    Completed(RequestKind),
    /// This one counted; others are still awaited.
    Waiting,
}

/// Confirms one link. Disable links need `signed_in` to be their addressee; the enable link
/// goes to the primary account email, which need not be a user.
pub async fn confirm(
    state: &AppState,
    token: &str,
    signed_in: Option<&User>,
    origin: &Origin,
) -> Result<Confirmed, ConfirmationError> {
    let hash = sha256_hex(token.as_bytes());
    let link = cdb::link(&state.db, &hash)
        .await?
        .ok_or(ConfirmationError::NotFound)?;
    if let Some(uid) = &link.user_id {
        if signed_in.map(|u| &u.id) != Some(uid) {
            return Err(refused(format!(
                "This link was sent to {}: sign in as {} to confirm it.",
                link.email, link.email
            )));
        }
    }
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let request = cdb::lock(&state.db, &mut tx, link.request_id)
        .await?
        .ok_or(ConfirmationError::NotFound)?;
    if request.status != "open" {
        return Err(refused(format!("This request was {}.", request.status)));
    }
    if request.expires_at <= now {
        drop(tx);
        expire_due(state).await?;
        return Err(refused(
            "This request expired: start a new one in Settings.",
        ));
    }
    let actor = match signed_in {
        Some(u) => Actor::User(u.id.clone()),
        None => Actor::System,
    };
    let Some(remaining) = cdb::confirm_link(&mut tx, &hash, now).await? else {
        return Err(refused("This link was already used."));
    };
    audit::append(
        &mut tx,
        &entry(
            &request.project_id,
            &actor,
            "withdrawal_confirmation.confirmed",
            request.id,
            json!({"email": link.email, "role": link.role}),
            origin,
        ),
        now,
    )
    .await?;
    if remaining > 0 {
        tx.commit().await.map_err(DbError::from)?;
        return Ok(Confirmed::Waiting);
    }
    let on = request.kind == RequestKind::Enable;
    if on {
        let usable = users::list_in(&mut tx, &request.project_id)
            .await?
            .iter()
            .filter(|u| u.can_use_withdrawal_rights())
            .count();
        if usable < 2 {
            return Err(refused(format!(
                "Withdrawal Confirmation needs at least two users with withdrawal rights; the project now has {usable}. Invite another one, then confirm again."
            )));
        }
    }
    cdb::set_flag(&mut tx, &request.project_id, on).await?;
    cdb::close(&mut tx, request.id, "completed", None, now).await?;
    let action = if on {
        "withdrawal_confirmation.enabled"
    } else {
        "withdrawal_confirmation.disabled"
    };
    audit::append(
        &mut tx,
        &entry(
            &request.project_id,
            &actor,
            action,
            request.id,
            json!({}),
            origin,
        ),
        now,
    )
    .await?;
    tell_owners(state, &mut tx, &request, on, now).await?;
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    Ok(Confirmed::Completed(request.kind))
}

/// Every owner hears that the feature changed.
async fn tell_owners(
    state: &AppState,
    tx: &mut Tx,
    request: &Request,
    on: bool,
    now: i64,
) -> Result<(), ConfirmationError> {
    let people = users::list_in(tx, &request.project_id).await?;
    let names = Names::load_in(tx, &request.project_id).await?;
    let by = match request.approver_id.as_deref() {
        Some(a) => format!(
            "requested by {}, confirmed by {}",
            names.describe("user", &request.requested_by),
            names.describe("user", a)
        ),
        None => format!(
            "requested by {}, confirmed by the primary account email",
            names.describe("user", &request.requested_by)
        ),
    };
    crate::notify::slack::queue_text(
        tx,
        crate::notify::slack::SlackEvent::Feature,
        &request.project_id,
        format!("slack:confirmation:{}", request.id),
        &format!(
            "Withdrawal Confirmation is now {} ({by}).",
            if on {
                "enabled: every withdrawal needs a second person's approval"
            } else {
                "disabled"
            }
        ),
        now,
    )
    .await?;
    for owner in people
        .iter()
        .filter(|u| u.is_owner() && u.status == "active")
    {
        let mut ctx = tera::Context::new();
        ctx.insert("on", &on);
        ctx.insert("requester", &names.describe("user", &request.requested_by));
        ctx.insert(
            "approver",
            &request
                .approver_id
                .as_deref()
                .map(|a| names.describe("user", a)),
        );
        ctx.insert(
            "link",
            &format!(
                "{}/settings/withdrawal-confirmation",
                state.settings.base_url.trim_end_matches('/')
            ),
        );
        let subject = if on {
            "Withdrawal Confirmation is now enabled"
        } else {
            "Withdrawal Confirmation is now disabled"
        };
        let mail = email::render("confirmation_changed", &owner.email, subject, &ctx)
            .map_err(|e| ConfirmationError::Internal(e.to_string()))?;
        email::queue(
            tx,
            &request.project_id,
            &mail,
            format!("confirmation_changed:{}:{}", request.id, owner.id),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Cancels an open request: an enable request by any owner, a disable request by its
/// requester or its approver.
pub async fn cancel(
    state: &AppState,
    request_id: i64,
    by: &User,
    origin: &Origin,
) -> Result<(), ConfirmationError> {
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let request = cdb::lock(&state.db, &mut tx, request_id)
        .await?
        .filter(|r| r.project_id == by.project_id)
        .ok_or(ConfirmationError::NotFound)?;
    let allowed = match request.kind {
        RequestKind::Enable => by.is_owner(),
        RequestKind::Disable => {
            by.id == request.requested_by || request.approver_id.as_deref() == Some(&by.id)
        }
    };
    if !allowed {
        return Err(refused(match request.kind {
            RequestKind::Enable => "Only an owner can cancel this request.",
            RequestKind::Disable => {
                "Only the requester or the approving user can cancel this request."
            }
        }));
    }
    if !cdb::close(&mut tx, request.id, "cancelled", Some(&by.id), now).await? {
        return Err(refused(format!(
            "This request was {} already.",
            request.status
        )));
    }
    audit::append(
        &mut tx,
        &entry(
            &request.project_id,
            &Actor::User(by.id.clone()),
            "withdrawal_confirmation.cancelled",
            request.id,
            json!({"kind": request.kind.as_str()}),
            origin,
        ),
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// Closes open requests past their 30 minutes. Returns how many.
pub async fn expire_due(state: &AppState) -> Result<usize, DbError> {
    let now = state.now();
    let mut n = 0;
    for request in cdb::expired(&state.db, now, 100).await? {
        let mut tx = state.db.begin().await?;
        if !cdb::close(&mut tx, request.id, "expired", None, now).await? {
            continue;
        }
        audit::append(
            &mut tx,
            &entry(
                &request.project_id,
                &Actor::System,
                "withdrawal_confirmation.expired",
                request.id,
                json!({"kind": request.kind.as_str()}),
                &Origin::default(),
            ),
            now,
        )
        .await?;
        tx.commit().await.map_err(DbError::from)?;
        n += 1;
    }
    Ok(n)
}
