//! The Withdrawal Confirmation feature's states (seed 000): `disabled` → enable requested →
//! `enabled` → disable requested → `disabled`. Pure: the caller reads the project's flag and
//! its open request, asks here what may happen, and writes the answer.

/// Where the feature stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureState {
    Disabled,
    /// Waiting for the primary account email's confirmation.
    EnableRequested,
    Enabled,
    /// Waiting for the requester's and the approver's confirmations.
    DisableRequested,
}

impl FeatureState {
    /// The flag and the kind of the open request (if any) make the state.
    pub fn of(enabled: bool, open_request: Option<RequestKind>) -> FeatureState {
        match (enabled, open_request) {
            (false, Some(RequestKind::Enable)) => FeatureState::EnableRequested,
            (true, Some(RequestKind::Disable)) => FeatureState::DisableRequested,
            (true, _) => FeatureState::Enabled,
            (false, _) => FeatureState::Disabled,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            FeatureState::Disabled => "Disabled",
            FeatureState::EnableRequested => "Enable requested",
            FeatureState::Enabled => "Enabled",
            FeatureState::DisableRequested => "Disable requested",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Enable,
    Disable,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Enable => "enable",
            RequestKind::Disable => "disable",
        }
    }

    pub fn parse(s: &str) -> Option<RequestKind> {
        match s {
            "enable" => Some(RequestKind::Enable),
            "disable" => Some(RequestKind::Disable),
            _ => None,
        }
    }
}

/// Why a request cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Withdrawal Confirmation is {}: it can only be {} from {}", .state.label(), .wanted, .needed)]
    WrongState {
        state: FeatureState,
        wanted: &'static str,
        needed: &'static str,
    },
    #[error(
        "Withdrawal Confirmation needs at least two users with withdrawal rights (with two-factor authentication enrolled); this project has {0}. Invite another user with withdrawal rights first."
    )]
    TooFewApprovers(usize),
    #[error("only owners can turn Withdrawal Confirmation on or off")]
    NotOwner,
    #[error("choose the approving user among the other users with withdrawal rights")]
    BadApprover,
}

/// Whether an owner may ask to enable the feature now (seed: status Disabled, at least two
/// users with withdrawal rights).
pub fn may_request_enable(state: FeatureState, usable_rights: usize) -> Result<(), Refusal> {
    if state != FeatureState::Disabled {
        return Err(Refusal::WrongState {
            state,
            wanted: "enabled",
            needed: "Disabled",
        });
    }
    if usable_rights < 2 {
        return Err(Refusal::TooFewApprovers(usable_rights));
    }
    Ok(())
}

/// Whether an owner may ask to disable the feature now (seed: status Enabled, an approving
/// user who is someone else with withdrawal rights).
pub fn may_request_disable(state: FeatureState, approver_ok: bool) -> Result<(), Refusal> {
    if state != FeatureState::Enabled {
        return Err(Refusal::WrongState {
            state,
            wanted: "disabled",
            needed: "Enabled",
        });
    }
    if !approver_ok {
        return Err(Refusal::BadApprover);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_flag_and_open_request() {
        assert_eq!(FeatureState::of(false, None), FeatureState::Disabled);
        assert_eq!(
            FeatureState::of(false, Some(RequestKind::Enable)),
            FeatureState::EnableRequested
        );
        assert_eq!(FeatureState::of(true, None), FeatureState::Enabled);
        assert_eq!(
            FeatureState::of(true, Some(RequestKind::Disable)),
            FeatureState::DisableRequested
        );
    }

    #[test]
    fn enable_needs_disabled_and_two_approvers() {
        assert_eq!(
            may_request_enable(FeatureState::Disabled, 1),
            Err(Refusal::TooFewApprovers(1))
        );
        assert!(may_request_enable(FeatureState::Disabled, 2).is_ok());
        assert!(matches!(
            may_request_enable(FeatureState::EnableRequested, 3),
            Err(Refusal::WrongState { .. })
        ));
        assert!(may_request_enable(FeatureState::Enabled, 3).is_err());
    }

    #[test]
    fn disable_needs_enabled_and_another_approver() {
        assert!(may_request_disable(FeatureState::Enabled, true).is_ok());
        assert_eq!(
            may_request_disable(FeatureState::Enabled, false),
            Err(Refusal::BadApprover)
        );
        assert!(may_request_disable(FeatureState::Disabled, true).is_err());
        assert!(may_request_disable(FeatureState::DisableRequested, true).is_err());
    }
}
