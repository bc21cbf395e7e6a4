//! Turning Withdrawal Confirmation on and off, exactly as seed 000 says: enabling needs an
//! owner, the feature disabled, two users with withdrawal rights, a fresh TOTP code and the
//! confirmation of the project's primary account email; disabling needs an owner, the feature
//! enabled, a fresh TOTP code, an approving user among the others with withdrawal rights,
//! and the confirmation of both their addresses. Requests expire after 30 minutes; either
//! side may cancel. Every step is in the audit log; the outcome is emailed to every owner.
//!
//! The caller checks the TOTP code (`web::step_up::check`) before asking here.

use crate::clock::MINUTE_MS;
use crate::db::activity::Names;
use crate::db::audit::{self, Actor, Origin};
use crate::db::confirmation::{self as cdb, Request};
use crate::db::users::{self, User};
use crate::db::{DbError, Tx, projects};
use crate::domain::confirmation::{
    FeatureState, RequestKind, may_request_disable, may_request_enable,
};
use crate::state::AppState;
use serde_json::json;

mod links;
use links::send_link;
pub use links::{Confirmed, LinkView, confirm, link_view};

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

/// Opens the request row, or says why not (a unique index keeps one per project).
async fn open_request(
    tx: &mut Tx<'_>,
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
    let usable = users::count_approvers(&state.db, &owner.project_id, state.now()).await?;
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
        .filter(|u| u.id != owner.id && u.can_approve(state.now()))
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
