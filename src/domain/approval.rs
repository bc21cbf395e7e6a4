//! Who may decide a pending withdrawal, and when its approvals are enough. Pure: callers
//! gather the requirement (stored with the withdrawal at creation), the votes so far and the
//! voter, and ask here.

use crate::clock::rfc3339;
use crate::domain::policy::ApprovalRequirement;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Decline,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Decline => "decline",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "approve" => Some(Decision::Approve),
            "decline" => Some(Decision::Decline),
            _ => None,
        }
    }
}

/// What the deciding person is, at the moment of deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voter {
    pub is_initiator: bool,
    pub is_owner: bool,
    /// Has withdrawal rights, TOTP enrolled, active.
    pub has_rights: bool,
    /// Gained approval power while Withdrawal Confirmation was on, and may decide only from
    /// this instant (epoch ms), which has not come yet.
    pub held_until: Option<i64>,
}

/// Why someone may not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    #[error("you initiated this withdrawal: a different person must decide it")]
    Initiator,
    #[error("you do not have withdrawal rights (with two-factor authentication enrolled)")]
    NoRights,
    #[error("it is over a limit: only an owner can decide it")]
    OwnerRequired,
    #[error(
        "your approval rights are new: while Withdrawal Confirmation is on, a new approver may decide from {}",
        rfc3339(*.until)
    )]
    Held { until: i64 },
}

/// Whether `voter` may approve or decline a withdrawal with requirement `req`. A decline is
/// final, so it takes the same eligibility as an approval that would count. A member's
/// approval counts when an owner is not required, or when more than one approver is (the
/// remaining place can still go to an owner).
pub fn eligibility(req: &ApprovalRequirement, voter: Voter) -> Result<(), Ineligible> {
    if voter.is_initiator {
        return Err(Ineligible::Initiator);
    }
    if !voter.has_rights {
        return Err(Ineligible::NoRights);
    }
    if let Some(until) = voter.held_until {
        return Err(Ineligible::Held { until });
    }
    if req.owner_required && !voter.is_owner && req.approvals < 2 {
        return Err(Ineligible::OwnerRequired);
    }
    Ok(())
}

/// One approval recorded so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    pub by_owner: bool,
}

/// Where a withdrawal's approvals stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub approvals: u32,
    pub needed: u32,
    pub owner_needed: bool,
}

impl Tally {
    pub fn is_met(&self) -> bool {
        self.approvals >= self.needed && !self.owner_needed
    }

    /// "1 of 2 approvals; an owner's approval still needed".
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} of {} approval{}",
            self.approvals,
            self.needed,
            if self.needed == 1 { "" } else { "s" }
        );
        if self.owner_needed {
            s.push_str("; an owner's approval still needed");
        }
        s
    }
}

/// Counts approvals (one per person: the schema keeps one vote per user).
pub fn tally(req: &ApprovalRequirement, approvals: &[Approval]) -> Tally {
    let count = u32::try_from(approvals.len()).unwrap_or(u32::MAX);
    Tally {
        approvals: count,
        needed: req.approvals,
        owner_needed: req.owner_required && !approvals.iter().any(|a| a.by_owner),
    }
}

/// Whether the people in `voters` (everyone of the project, the initiator marked) could ever
/// meet `req`: enough distinct eligible people, an owner among them when one is required.
/// `None` when they could; otherwise how many eligible people there are. A new approver's
/// hold ends by itself, so a held voter counts here.
pub fn unmet_by(req: &ApprovalRequirement, voters: &[Voter]) -> Option<usize> {
    if !req.is_needed() {
        return None;
    }
    let eligible: Vec<&Voter> = voters
        .iter()
        .filter(|v| {
            let after_hold = Voter {
                held_until: None,
                ..**v
            };
            eligibility(req, after_hold).is_ok()
        })
        .collect();
    let enough = u32::try_from(eligible.len()).unwrap_or(u32::MAX) >= req.approvals;
    let owner_ok = !req.owner_required || eligible.iter().any(|v| v.is_owner);
    if enough && owner_ok {
        None
    } else {
        Some(eligible.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(approvals: u32, owner_required: bool) -> ApprovalRequirement {
        ApprovalRequirement {
            approvals,
            owner_required,
            reasons: vec![],
        }
    }

    const MEMBER: Voter = Voter {
        is_initiator: false,
        is_owner: false,
        has_rights: true,
        held_until: None,
    };
    const OWNER: Voter = Voter {
        is_initiator: false,
        is_owner: true,
        has_rights: true,
        held_until: None,
    };

    #[test]
    fn the_initiator_never_decides() {
        let me = Voter {
            is_initiator: true,
            ..OWNER
        };
        assert_eq!(eligibility(&req(1, false), me), Err(Ineligible::Initiator));
    }

    #[test]
    fn over_a_limit_one_approval_needs_an_owner() {
        assert_eq!(
            eligibility(&req(1, true), MEMBER),
            Err(Ineligible::OwnerRequired)
        );
        assert_eq!(eligibility(&req(1, true), OWNER), Ok(()));
        // With two places, a member may fill one.
        assert_eq!(eligibility(&req(2, true), MEMBER), Ok(()));
        let no_rights = Voter {
            has_rights: false,
            ..MEMBER
        };
        assert_eq!(
            eligibility(&req(1, false), no_rights),
            Err(Ineligible::NoRights)
        );
    }

    #[test]
    fn a_new_approver_waits_out_the_hold_but_counts_as_a_future_approver() {
        let held = Voter {
            held_until: Some(1_800_000_000_000),
            ..OWNER
        };
        let refused = eligibility(&req(1, false), held).unwrap_err();
        assert_eq!(
            refused,
            Ineligible::Held {
                until: 1_800_000_000_000
            }
        );
        assert!(
            refused.to_string().ends_with("from 2027-01-15T08:00:00Z"),
            "{refused}"
        );
        // Not being the initiator and having rights are checked first.
        let held_initiator = Voter {
            is_initiator: true,
            ..held
        };
        assert_eq!(
            eligibility(&req(1, false), held_initiator),
            Err(Ineligible::Initiator)
        );
        // Once the hold is over they can meet the requirement.
        let me = Voter {
            is_initiator: true,
            ..OWNER
        };
        assert_eq!(unmet_by(&req(1, true), &[me, held]), None);
    }

    #[test]
    fn a_requirement_nobody_else_can_meet_is_named() {
        let me = Voter {
            is_initiator: true,
            ..OWNER
        };
        assert_eq!(unmet_by(&req(0, false), &[me]), None);
        assert_eq!(unmet_by(&req(1, false), &[me]), Some(0));
        assert_eq!(unmet_by(&req(1, false), &[me, MEMBER]), None);
        // Over a limit: a member alone cannot approve.
        assert_eq!(unmet_by(&req(1, true), &[me, MEMBER]), Some(0));
        assert_eq!(unmet_by(&req(1, true), &[me, MEMBER, OWNER]), None);
        // Two approvers needed, owner among them: two members are not enough.
        assert_eq!(unmet_by(&req(2, true), &[me, MEMBER, MEMBER]), Some(2));
        assert_eq!(unmet_by(&req(2, true), &[me, MEMBER, OWNER]), None);
    }

    #[test]
    fn one_owner_approval_satisfies_limit_and_confirmation() {
        let t = tally(&req(1, true), &[Approval { by_owner: true }]);
        assert!(t.is_met());
        let t = tally(&req(2, true), &[Approval { by_owner: false }]);
        assert!(!t.is_met());
        assert_eq!(
            t.describe(),
            "1 of 2 approvals; an owner's approval still needed"
        );
        let two_members = [Approval { by_owner: false }, Approval { by_owner: false }];
        assert!(!tally(&req(2, true), &two_members).is_met());
        assert!(tally(&req(2, false), &two_members).is_met());
    }
}
