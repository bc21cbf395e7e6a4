//! The emailed links of Withdrawal Confirmation requests: making and sending them, showing
//! what one confirms, confirming it, and telling the owners when the feature changed.

use super::{ConfirmationError, RequestView, entry, expire_due, refused, view};
use crate::clock::rfc3339;
use crate::crypto::{random_token, sha256_hex};
use crate::db::activity::Names;
use crate::db::audit::{self, Actor, Origin};
use crate::db::confirmation::{self as cdb, Request};
use crate::db::users::{self, User};
use crate::db::{DbError, Tx};
use crate::domain::confirmation::RequestKind;
use crate::notify::email;
use crate::state::AppState;
use serde_json::json;

/// Makes one link, stores its hash and queues its email in `tx`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn send_link(
    state: &AppState,
    tx: &mut Tx<'_>,
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
    // Showing a link only reads: no write transaction on a GET.
    let request = cdb::get(&state.db, link.request_id)
        .await?
        .ok_or(ConfirmationError::NotFound)?;
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
            return Err(refused(
                "This link was sent to someone else: sign in as its addressee to confirm it.",
            ));
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
            .filter(|u| u.can_approve(now))
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
    tx: &mut Tx<'_>,
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
