//! The queue and the two-step finalize of seed 004:
//! `GET /withdrawals`, `GET /withdrawals/{id}`, `PATCH /withdrawals/{id}/status`.
//!
//! `PENDING -> PROCESSING` claims the withdrawal for the caller for 15 minutes;
//! `PROCESSING -> COMPLETED` is the caller's approval and `PROCESSING -> REJECTED` their
//! decline (`adminNote` is the note), both only while the caller holds the claim; there is no
//! jump from PENDING to COMPLETED. `PROCESSING -> PENDING` hands the claim back. When an
//! approval is recorded but more are needed, the claim is released so the next approver can
//! claim it, and the answer says how many approvals it has and needs.

use super::auth::authenticate;
use super::error::{AdminError, AdminErrorBody};
use super::view::{self, AdminWithdrawal};
use crate::api::{RawBody, origin};
use crate::clock::rfc3339;
use crate::db::activity::Names;
use crate::db::admin_api as qdb;
use crate::db::approvals as adb;
use crate::db::users::User;
use crate::db::withdrawal_list as wl;
use crate::db::withdrawals::Withdrawal;
use crate::domain::approval::Decision;
use crate::domain::panel_status::PanelStatus;
use crate::service::approvals::{self as approvals, Channel, DecisionRequest, Outcome};
use crate::service::claims::{self, Release};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, get, patch, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;
pub const MAX_NOTE_CHARS: usize = 1000;

#[derive(Debug, Serialize, ToSchema)]
pub struct WithdrawalList {
    /// Newest first.
    pub data: Vec<AdminWithdrawal>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"status": "PROCESSING", "adminNote": "reviewing"}))]
pub struct StatusChange {
    /// `PROCESSING` (claim), `COMPLETED` (approve), `REJECTED` (decline) or `PENDING` (hand
    /// the claim back).
    pub status: String,
    /// Kept with the claim or the decision (a decline's reason); at most 1000 characters.
    #[serde(rename = "adminNote", default)]
    pub admin_note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusChangeResult {
    /// `claimed`, `released`, `approved` (handed to the payout rail), `approval_recorded`
    /// (more approvals needed; the claim was released) or `declined`.
    pub outcome: String,
    /// What happened, for people.
    pub message: String,
    pub withdrawal: AdminWithdrawal,
}

/// Ids in paths are positive integers; anything else names nothing.
fn path_id(req: &HttpRequest) -> Result<i64, AdminError> {
    req.match_info()
        .get("id")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| AdminError::not_found("withdrawal"))
}

/// The caller's project's withdrawal `id`; another project's is not found.
async fn load(state: &AppState, user: &User, id: i64) -> Result<Withdrawal, AdminError> {
    wl::get(&state.db, &user.project_id, id)
        .await?
        .ok_or_else(|| AdminError::not_found("withdrawal"))
}

async fn present(
    state: &AppState,
    w: &Withdrawal,
    names: &Names,
    caller: &User,
) -> Result<AdminWithdrawal, AdminError> {
    let mut one = present_page(state, std::slice::from_ref(w), names, caller).await?;
    one.pop()
        .ok_or_else(|| AdminError::from(crate::db::corrupt("withdrawals", "not presented")))
}

/// [`present`] for a page of withdrawals: their votes and claims read in two queries, not two
/// per withdrawal.
async fn present_page(
    state: &AppState,
    rows: &[Withdrawal],
    names: &Names,
    caller: &User,
) -> Result<Vec<AdminWithdrawal>, AdminError> {
    let ids: Vec<i64> = rows.iter().map(|w| w.id).collect();
    let mut votes = adb::votes_on(&state.db, &ids).await?;
    let now = state.now();
    let claims = adb::claims_on(&state.db, &ids, now).await?;
    Ok(rows
        .iter()
        .map(|w| {
            let (votes, tally) = approvals::standing_of(w, votes.remove(&w.id).unwrap_or_default());
            let standing = view::Standing {
                votes: &votes,
                tally: &tally,
                claim: claims.get(&w.id),
            };
            view::withdrawal(w, &standing, names, caller, now)
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[utoipa::path(
    operation_id = "listWithdrawals",
    tag = "Withdrawals",
    params(
        ("status" = Option<String>, Query, description = "`PENDING` (waiting, unclaimed), `PROCESSING` (claimed), `COMPLETED`, `REJECTED`, `CANCELLED` or `EXPIRED`, any case; absent: all"),
        ("limit" = Option<i64>, Query, description = "1 to 100, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of the project's withdrawals, newest first", body = WithdrawalList),
        (status = 400, description = "`invalid_request`: an unknown status, a bad limit or cursor", body = AdminErrorBody),
        (status = 401, description = "`invalid_token`, `token_expired`, `token_revoked`", body = AdminErrorBody),
    ),
    security(("Bearer" = []))
)]
#[get("/withdrawals")]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AdminError> {
    let user = authenticate(&state, &req).await?;
    let q = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|_| AdminError::bad_request("The query string could not be read."))?
        .into_inner();
    let status = match q.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) if s.eq_ignore_ascii_case("all") => None,
        Some(s) => Some(PanelStatus::parse(s).ok_or_else(|| {
            AdminError::bad_request(format!(
                "Unknown status {s:?}: use PENDING, PROCESSING, COMPLETED, REJECTED, CANCELLED or EXPIRED."
            ))
        })?),
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| AdminError::bad_request(format!("limit must be 1 to {MAX_LIMIT}")))?,
    };
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| AdminError::bad_request("cursor is not one this API gave"))?,
        ),
    };
    let page = qdb::list(
        &state.db,
        &user.project_id,
        status,
        before,
        limit,
        state.now(),
    )
    .await?;
    let names = Names::load(&state.db, &user.project_id).await?;
    let data = present_page(&state, &page.rows, &names, &user).await?;
    Ok(HttpResponse::Ok().json(WithdrawalList {
        data,
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}

#[utoipa::path(
    operation_id = "getWithdrawal",
    tag = "Withdrawals",
    params(("id" = i64, Path, description = "The withdrawal's id")),
    responses(
        (status = 200, body = AdminWithdrawal),
        (status = 401, description = "`invalid_token`, `token_expired`, `token_revoked`", body = AdminErrorBody),
        (status = 404, description = "`not_found`: no such withdrawal in the caller's project", body = AdminErrorBody),
    ),
    security(("Bearer" = []))
)]
#[get("/withdrawals/{id}")]
pub async fn detail(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AdminError> {
    let user = authenticate(&state, &req).await?;
    let w = load(&state, &user, path_id(&req)?).await?;
    let names = Names::load(&state.db, &user.project_id).await?;
    Ok(HttpResponse::Ok().json(present(&state, &w, &names, &user).await?))
}

fn parse_change(body: &[u8]) -> Result<(PanelStatus, String), AdminError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| AdminError::bad_request("The body must be a JSON object."))?;
    let change: StatusChange = serde_json::from_value(v).map_err(|_| {
        AdminError::bad_request(
            "The body must be {\"status\": \"PROCESSING\" | \"COMPLETED\" | \"REJECTED\" | \"PENDING\", \"adminNote\": \"...\"}.",
        )
    })?;
    let status = PanelStatus::parse(&change.status).ok_or_else(|| {
        AdminError::bad_request(format!(
            "Unknown status {:?}: use PROCESSING, COMPLETED, REJECTED or PENDING.",
            change.status
        ))
    })?;
    let note = change.admin_note.unwrap_or_default().trim().to_string();
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(AdminError::bad_request(format!(
            "adminNote is longer than {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok((status, note))
}

#[utoipa::path(
    operation_id = "changeWithdrawalStatus",
    tag = "Withdrawals",
    params(("id" = i64, Path, description = "The withdrawal's id")),
    request_body = StatusChange,
    responses(
        (status = 200, description = "Done; `outcome` says what happened (an approval that is not yet enough leaves the withdrawal PENDING, with `approvals.have` < `approvals.need`)", body = StatusChangeResult),
        (status = 400, description = "`invalid_request` (unknown status, bad body), `invalid_transition` (CANCELLED and EXPIRED are not set by admins)", body = AdminErrorBody),
        (status = 401, description = "`invalid_token`, `token_expired`, `token_revoked`", body = AdminErrorBody),
        (status = 403, description = "`self_approval`, `no_withdrawal_rights`, `owner_required`, `new_approver_hold`", body = AdminErrorBody),
        (status = 404, description = "`not_found`", body = AdminErrorBody),
        (status = 409, description = "`not_claimed` (claim it first: no jump from PENDING to COMPLETED), `claimed_by_other` (with who and until when), `already_decided` (with by whom and when), `already_voted`", body = AdminErrorBody),
    ),
    security(("Bearer" = []))
)]
#[patch("/withdrawals/{id}/status")]
pub async fn change_status(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: RawBody,
) -> Result<HttpResponse, AdminError> {
    let user = authenticate(&state, &req).await?;
    let id = path_id(&req)?;
    let (target, note) = parse_change(&body)?;
    let o = origin(&req);
    let decide = |decision: Decision| DecisionRequest {
        withdrawal_id: id,
        decision,
        note: &note,
        channel: Channel::AdminApi,
        origin: &o,
        require_claim: true,
    };
    let (outcome, message) = match target {
        PanelStatus::Processing => {
            let c = claims::claim(&state, &user, id, &note, &o).await?;
            (
                "claimed",
                format!(
                    "Claimed by you until {}: finalize it with COMPLETED or REJECTED before then.",
                    rfc3339(c.until)
                ),
            )
        }
        PanelStatus::Pending => {
            claims::release(&state, &user, id, Release::ByHolder, &note, &o).await?;
            ("released", "Claim handed back.".to_string())
        }
        PanelStatus::Completed => {
            match claims::finalize(&state, &user, &decide(Decision::Approve))
                .await?
                .1
            {
                Outcome::Approved => (
                    "approved",
                    "Approved: it goes to the payout rail.".to_string(),
                ),
                Outcome::Recorded(t) => {
                    // The caller cannot vote again: the claim goes back for the next approver.
                    // (Not holding it any more is fine: it expired in between.)
                    match claims::release(&state, &user, id, Release::AfterApproval, &note, &o)
                        .await
                    {
                        Ok(()) | Err(approvals::DecideError::NotClaimed) => {}
                        Err(approvals::DecideError::AlreadyDecided { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                    (
                        "approval_recorded",
                        format!(
                            "Your approval is recorded: {}. The claim was released so the next approver can claim it.",
                            t.describe()
                        ),
                    )
                }
                Outcome::Declined => ("declined", "Declined.".to_string()),
            }
        }
        PanelStatus::Rejected => {
            claims::finalize(&state, &user, &decide(Decision::Decline)).await?;
            (
                "declined",
                "Declined: the held funds are released.".to_string(),
            )
        }
        PanelStatus::Cancelled | PanelStatus::Expired => {
            return Err(AdminError::invalid_transition(format!(
                "{} is not set by admins (the merchant cancels, the system expires): use PROCESSING, COMPLETED, REJECTED or PENDING.",
                target.as_str()
            )));
        }
    };
    let w = load(&state, &user, id).await?;
    let names = Names::load(&state.db, &user.project_id).await?;
    Ok(HttpResponse::Ok().json(StatusChangeResult {
        outcome: outcome.to_string(),
        message,
        withdrawal: present(&state, &w, &names, &user).await?,
    }))
}
