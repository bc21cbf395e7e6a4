//! Approving by email link. The link's token only says *which* withdrawal and *whose* link;
//! it proves nothing about who opens it. So:
//!
//! - opening it (GET, HEAD) reads and never writes: mail scanners open links;
//! - only the addressee, signed in with password and TOTP, sees what is being signed, and
//!   decides with a fresh TOTP code (the handler checks the code);
//! - anybody else learns only that a decision waits (and must sign in), or that the link is
//!   unknown, spent or foreign: never the withdrawal's details;
//! - the link is used in the same transaction as the vote ([`approvals::decide_with_link`]):
//!   a refused or failed decision leaves it usable, a recorded one spends it, and once the
//!   withdrawal has left `pending` (decided here, in the browser, by the admin API, expired)
//!   every link to it is void whatever its own state.

use crate::clock::rfc3339;
use crate::crypto::sha256_hex;
use crate::db::DbError;
use crate::db::activity::Names;
use crate::db::approvals::{self as adb, Link};
use crate::db::audit::Origin;
use crate::db::users::{self, User};
use crate::db::withdrawals::{self as wdb, Withdrawal};
use crate::domain::approval::{Decision, Ineligible, eligibility};
use crate::domain::withdrawal::Status;
use crate::service::alerts::voter;
use crate::service::approvals::{self, Channel, DecideError, DecisionRequest, Outcome};
use crate::state::AppState;

/// Tokens are 43 characters of URL-safe base64; anything much longer names nothing and is
/// not worth hashing.
const MAX_TOKEN_LEN: usize = 128;

/// Why a link cannot be used now, in the words its page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such link (mistyped, cut off, or never issued).
    Unknown,
    /// Spent: the decision made with it was recorded at `at`.
    Used {
        at: i64,
    },
    Expired {
        at: i64,
    },
    /// The withdrawal no longer waits. `how` ("approved by alice@… at …") only for the
    /// addressee; others learn no more than that.
    Ended {
        how: Option<String>,
    },
    /// Signed in as someone else. `addressee` is named only to a user of the same project.
    Foreign {
        addressee: Option<String>,
    },
    Ineligible(Ineligible),
    AlreadyVoted {
        decision: Decision,
        at: i64,
    },
    /// Another refusal of the decision itself (e.g. an admin's claim), as its message.
    Other(String),
}

impl Refusal {
    /// A page's title for it.
    pub fn title(&self) -> &'static str {
        match self {
            Refusal::Unknown => "Link not found",
            Refusal::Used { .. } => "Link already used",
            Refusal::Expired { .. } => "Link expired",
            Refusal::Ended { .. } => "Already decided",
            Refusal::Foreign { .. } => "Not your link",
            Refusal::Ineligible(_) => "You cannot decide this withdrawal",
            Refusal::AlreadyVoted { .. } => "You already decided",
            Refusal::Other(_) => "Cannot decide now",
        }
    }

    /// What happened and what to do, in one or two sentences.
    pub fn message(&self) -> String {
        match self {
            Refusal::Unknown => "This approval link is not valid. Check that you opened the whole link from the email.".into(),
            Refusal::Used { at } => format!(
                "This link was used at {} and works only once. Open the withdrawal from the dashboard to see where it stands.",
                rfc3339(*at)
            ),
            Refusal::Expired { at } => format!(
                "This link expired at {}, with the withdrawal's time to be decided.",
                rfc3339(*at)
            ),
            Refusal::Ended { how: Some(how) } => {
                format!("This withdrawal was {how}; nothing is left to decide, and this link no longer works.")
            }
            Refusal::Ended { how: None } => {
                "This withdrawal no longer waits for a decision, so this link no longer works.".into()
            }
            Refusal::Foreign { addressee: Some(a) } => format!(
                "This link was sent to {a}; sign in as {a} to use it. Nothing was changed."
            ),
            Refusal::Foreign { addressee: None } => {
                "This link was not sent to you: it belongs to another project. Nothing was changed.".into()
            }
            Refusal::Ineligible(i) => format!("You cannot decide it: {i}."),
            Refusal::AlreadyVoted { decision, at } => format!(
                "You already {}d this withdrawal at {}.",
                decision.as_str(),
                rfc3339(*at)
            ),
            Refusal::Other(m) => format!("{m}."),
        }
    }

    /// 404 for a link that names nothing, 410 for one that is spent, 403 for the wrong
    /// person, 409 for a decision that clashes with another.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::Unknown => 404,
            Refusal::Used { .. } | Refusal::Expired { .. } | Refusal::Ended { .. } => 410,
            Refusal::Foreign { .. } | Refusal::Ineligible(_) => 403,
            Refusal::AlreadyVoted { .. } | Refusal::Other(_) => 409,
        }
    }
}

/// A usable link opened by its addressee.
#[derive(Debug, Clone)]
pub struct Ready {
    pub link: Link,
    pub withdrawal: Withdrawal,
}

/// What opening a link shows.
#[derive(Debug, Clone)]
pub enum Opened {
    /// Usable, but the visitor is not signed in: say a decision waits, and offer sign-in.
    SignInFirst,
    /// Usable by the signed-in addressee: show the details and the form.
    Ready(Box<Ready>),
    Refused(Refusal),
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{}", .0.message())]
    Refused(Refusal),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn hash(token: &str) -> Option<String> {
    (!token.is_empty() && token.len() <= MAX_TOKEN_LEN).then(|| sha256_hex(token.as_bytes()))
}

/// How `w` left `pending`, for people: "approved by alice@… at …", "declined by …",
/// "expired at …", "cancelled by the merchant at …".
pub async fn how_it_ended(state: &AppState, w: &Withdrawal) -> Result<String, DbError> {
    let events = wdb::events(&state.db, w.id).await?;
    let Some(e) = events
        .iter()
        .find(|e| e.from_status.as_deref() == Some(Status::Pending.as_str()))
    else {
        return Ok(format!("already {}", w.status.as_str()));
    };
    let at = rfc3339(e.created_at);
    if e.to_status == Status::Cancelled.as_str() && w.error == "Expired" {
        return Ok(format!("not decided in time and expired at {at}"));
    }
    let names = Names::load(&state.db, &w.project_id).await?;
    let by = match e.actor_kind.as_str() {
        "api_key" => "the merchant".to_string(),
        kind => names.describe(kind, &e.actor_id),
    };
    let verb = if e.to_status == Status::Cancelled.as_str() {
        "cancelled"
    } else if e.to_status == Status::Declined.as_str() {
        "declined"
    } else {
        "approved"
    };
    Ok(format!("already {verb} by {by} at {at}"))
}

/// Opens a link for `visitor` (None: not signed in). Reads only.
pub async fn open(
    state: &AppState,
    token: &str,
    visitor: Option<&User>,
) -> Result<Opened, DbError> {
    let link = match hash(token) {
        Some(h) => adb::link(&state.db, &h).await?,
        None => None,
    };
    let Some(link) = link else {
        return Ok(Opened::Refused(Refusal::Unknown));
    };
    if let Some(v) = visitor.filter(|v| v.id != link.user_id) {
        let addressee = users::by_id(&state.db, &link.user_id).await?;
        return Ok(Opened::Refused(Refusal::Foreign {
            addressee: addressee
                .filter(|a| a.project_id == v.project_id)
                .map(|a| a.email),
        }));
    }
    let Some(w) = wdb::by_id(&state.db, link.withdrawal_id).await? else {
        return Ok(Opened::Refused(Refusal::Unknown));
    };
    if w.status != Status::Pending {
        let how = match visitor {
            Some(_) => Some(how_it_ended(state, &w).await?),
            None => None,
        };
        return Ok(Opened::Refused(Refusal::Ended { how }));
    }
    if let Some(at) = link.used_at {
        return Ok(Opened::Refused(Refusal::Used { at }));
    }
    if state.now() >= link.expires_at {
        return Ok(Opened::Refused(Refusal::Expired {
            at: link.expires_at,
        }));
    }
    let Some(user) = visitor else {
        return Ok(Opened::SignInFirst);
    };
    if user.project_id != w.project_id {
        return Ok(Opened::Refused(Refusal::Foreign { addressee: None }));
    }
    if let Err(i) = eligibility(&w.requirement, voter(&w, user, state.now())) {
        return Ok(Opened::Refused(Refusal::Ineligible(i)));
    }
    let votes = adb::votes(state.db.reader(), w.id).await?;
    if let Some(mine) = votes.iter().find(|v| v.user_id == user.id) {
        return Ok(Opened::Refused(Refusal::AlreadyVoted {
            decision: mine.decision,
            at: mine.created_at,
        }));
    }
    Ok(Opened::Ready(Box::new(Ready {
        link,
        withdrawal: w,
    })))
}

/// `user` decides through the link `token`. The caller has checked the session, the form's
/// CSRF token and a fresh TOTP code; this checks the link again (it may have changed since
/// the page was shown) and decides with the link used in the same transaction.
pub async fn decide(
    state: &AppState,
    user: &User,
    token: &str,
    decision: Decision,
    note: &str,
    origin: &Origin,
) -> Result<(Withdrawal, Outcome), LinkError> {
    let ready = match open(state, token, Some(user)).await? {
        Opened::Ready(r) => r,
        Opened::Refused(r) => return Err(LinkError::Refused(r)),
        // `open` with a visitor never asks to sign in; answer as for a foreign link.
        Opened::SignInFirst => {
            return Err(LinkError::Refused(Refusal::Foreign { addressee: None }));
        }
    };
    let Some(hash) = hash(token) else {
        return Err(LinkError::Refused(Refusal::Unknown));
    };
    let req = DecisionRequest {
        withdrawal_id: ready.withdrawal.id,
        decision,
        note: note.trim(),
        channel: Channel::Email,
        origin,
        require_claim: false,
    };
    match approvals::decide_with_link(state, user, &req, &hash).await {
        Ok(done) => Ok(done),
        Err(DecideError::Db(e)) => Err(LinkError::Db(e)),
        // Decided, used or expired since it was opened: say which, as the page would.
        Err(DecideError::NotFound | DecideError::AlreadyDecided { .. }) => {
            match open(state, token, Some(user)).await? {
                Opened::Refused(r) => Err(LinkError::Refused(r)),
                _ => Err(LinkError::Refused(Refusal::Other(
                    "the withdrawal changed while you were deciding; open the link again".into(),
                ))),
            }
        }
        Err(DecideError::Ineligible(i)) => Err(LinkError::Refused(Refusal::Ineligible(i))),
        Err(DecideError::AlreadyVoted { decision, at }) => {
            Err(LinkError::Refused(Refusal::AlreadyVoted { decision, at }))
        }
        Err(e @ (DecideError::ClaimedByOther { .. } | DecideError::NotClaimed)) => {
            Err(LinkError::Refused(Refusal::Other(e.to_string())))
        }
    }
}
