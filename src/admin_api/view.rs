//! What the admin API shows of a withdrawal: everything an admin signs for (amount,
//! currency, network, address, tag, who started it, why it is held), where the approvals
//! stand, who holds the claim, and the status in the panel's vocabulary next to ours.

use crate::clock::rfc3339;
use crate::db::activity::Names;
use crate::db::approvals::{Claim, Vote};
use crate::db::users::User;
use crate::db::withdrawals::Withdrawal;
use crate::domain::approval::Tally;
use crate::domain::panel_status::PanelStatus;
use crate::domain::withdrawal::Status;
use crate::service::alerts::may_decide;
use crate::web::withdrawals::amount_text;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminWithdrawal {
    pub id: i64,
    /// The merchant's id for it.
    pub foreign_id: String,
    /// `PENDING`, `PROCESSING` (claimed), `COMPLETED`, `REJECTED`, `CANCELLED` or `EXPIRED`.
    #[schema(
        pattern = "^(PENDING|PROCESSING|COMPLETED|REJECTED|CANCELLED|EXPIRED)$",
        example = "PENDING"
    )]
    pub status: String,
    /// Ours: `pending`, `approved`, `processing` (payout in flight), `confirmed`, `declined`,
    /// `cancelled`.
    #[schema(example = "pending")]
    pub internal_status: String,
    /// What the merchant API and callbacks say.
    #[schema(example = "pending")]
    pub merchant_status: String,
    /// Paid out, in `currency`.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$", example = "0.01500000")]
    pub amount: String,
    /// Every fee, in `currency`.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub fee: String,
    pub currency: String,
    pub network: String,
    pub address: String,
    pub tag: Option<String>,
    pub end_user_reference: Option<String>,
    /// Its value in the project's base currency when created.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub base_value: String,
    pub base_currency: String,
    /// With exchange: the balance debited and how much of it.
    pub paid_from: Option<PaidFrom>,
    pub initiator: Initiator,
    /// Why it waits for approval (which limit, which rule); empty when it needed none.
    pub reasons: Vec<String>,
    pub approvals: Approvals,
    /// Approvals and declines so far, oldest first.
    pub votes: Vec<VoteView>,
    /// Who holds it (`PROCESSING`), while pending.
    pub claim: Option<ClaimView>,
    /// Whether the caller may claim and decide it now.
    pub can_decide: bool,
    /// The merchant-visible error ("Declined by user ID:…", "Expired", …); empty if none.
    pub error: String,
    pub txid: Option<String>,
    #[schema(example = "2026-01-01T10:00:00Z")]
    pub created_at: String,
    pub updated_at: String,
    /// When a pending withdrawal expires.
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaidFrom {
    pub currency: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Initiator {
    /// `api_key` (merchant API) or `user` (dashboard payout).
    pub kind: String,
    pub id: String,
    /// The user's email, or the API key's visible prefix.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Approvals {
    /// Approvals recorded.
    pub have: u32,
    /// Distinct approvers needed (0: none was needed).
    pub need: u32,
    /// An owner's approval is still needed (over a limit).
    pub owner_needed: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VoteView {
    pub user_id: String,
    pub user: String,
    /// `approve` or `decline`.
    pub decision: String,
    /// `web`, `bulk`, `email` or `admin_api`.
    pub channel: String,
    pub note: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClaimView {
    pub user_id: String,
    pub user: String,
    pub until: String,
    /// Held by the caller.
    pub yours: bool,
}

/// Where a withdrawal's decision stands: `votes` and `tally` as
/// `service::approvals::standing` gives them; `claim` as it holds now.
pub struct Standing<'a> {
    pub votes: &'a [Vote],
    pub tally: &'a Tally,
    pub claim: Option<&'a Claim>,
}

/// `w` as `caller` sees it at `now`.
pub fn withdrawal(
    w: &Withdrawal,
    standing: &Standing<'_>,
    names: &Names,
    caller: &User,
    now: i64,
) -> AdminWithdrawal {
    let Standing {
        votes,
        tally,
        claim,
    } = *standing;
    let claim = claim.filter(|_| w.status == Status::Pending);
    let voted = votes.iter().any(|v| v.user_id == caller.id);
    let free_or_mine = claim.is_none_or(|c| c.user_id == caller.id);
    AdminWithdrawal {
        id: w.id,
        foreign_id: w.foreign_id.clone(),
        status: PanelStatus::of(w.status, &w.error, claim.is_some())
            .as_str()
            .to_string(),
        internal_status: w.status.as_str().to_string(),
        merchant_status: w.status.merchant_status().to_string(),
        amount: amount_text(&w.currency, w.amount),
        fee: amount_text(&w.currency, w.total_fee()),
        currency: w.currency.clone(),
        network: w.network.clone(),
        address: w.address.clone(),
        tag: w.tag.clone(),
        end_user_reference: w.end_user_reference.clone(),
        base_value: amount_text(&w.base_currency, w.base_value),
        base_currency: w.base_currency.clone(),
        paid_from: w.exchange.as_ref().map(|x| PaidFrom {
            currency: x.from_currency.clone(),
            amount: amount_text(&x.from_currency, x.from_amount),
        }),
        initiator: Initiator {
            kind: w.initiator_kind.clone(),
            id: w.initiator_id.clone(),
            name: names.describe(&w.initiator_kind, &w.initiator_id),
        },
        reasons: w.requirement.reasons.iter().map(|r| r.describe()).collect(),
        approvals: Approvals {
            have: tally.approvals,
            need: tally.needed,
            owner_needed: tally.owner_needed,
        },
        votes: votes
            .iter()
            .map(|v| VoteView {
                user_id: v.user_id.clone(),
                user: names.describe("user", &v.user_id),
                decision: v.decision.as_str().to_string(),
                channel: v.channel.clone(),
                note: v.note.clone(),
                at: rfc3339(v.created_at),
            })
            .collect(),
        claim: claim.map(|c| ClaimView {
            user_id: c.user_id.clone(),
            user: names.describe("user", &c.user_id),
            until: rfc3339(c.until),
            yours: c.user_id == caller.id,
        }),
        can_decide: w.status == Status::Pending
            && may_decide(w, caller, now)
            && !voted
            && free_or_mine,
        error: w.error.clone(),
        txid: w.txid.clone(),
        created_at: rfc3339(w.created_at),
        updated_at: rfc3339(w.updated_at),
        expires_at: (w.status == Status::Pending)
            .then_some(w.expires_at.map(rfc3339))
            .flatten(),
    }
}
