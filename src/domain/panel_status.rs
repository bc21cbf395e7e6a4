//! The admin API's status vocabulary (seed 004's management panel): `PENDING`,
//! `PROCESSING`, `COMPLETED`, `REJECTED`, `CANCELLED`, `EXPIRED`, mapped onto our statuses.
//!
//! - `PENDING`: waiting for approval and nobody holds it;
//! - `PROCESSING`: waiting for approval and an admin holds an unexpired claim on it;
//! - `COMPLETED`: approved (or needed no approval): handed to the payout rail, paid or being
//!   paid (the internal status tells which);
//! - `REJECTED`: declined;
//! - `EXPIRED`: left pending too long;
//! - `CANCELLED`: cancelled by the merchant, or the payout failed.

use crate::domain::withdrawal::Status;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PanelStatus {
    Pending,
    Processing,
    Completed,
    Rejected,
    Cancelled,
    Expired,
}

/// The `error` an expired withdrawal carries (the merchant callback's text).
pub const EXPIRED_ERROR: &str = "Expired";

impl PanelStatus {
    pub const ALL: [PanelStatus; 6] = [
        PanelStatus::Pending,
        PanelStatus::Processing,
        PanelStatus::Completed,
        PanelStatus::Rejected,
        PanelStatus::Cancelled,
        PanelStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PanelStatus::Pending => "PENDING",
            PanelStatus::Processing => "PROCESSING",
            PanelStatus::Completed => "COMPLETED",
            PanelStatus::Rejected => "REJECTED",
            PanelStatus::Cancelled => "CANCELLED",
            PanelStatus::Expired => "EXPIRED",
        }
    }

    /// Case-insensitive.
    pub fn parse(s: &str) -> Option<PanelStatus> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// The panel status of a withdrawal in `status` with merchant-visible `error`, `claimed`
    /// meaning an unexpired claim holds now.
    pub fn of(status: Status, error: &str, claimed: bool) -> PanelStatus {
        match status {
            Status::Pending if claimed => PanelStatus::Processing,
            Status::Pending => PanelStatus::Pending,
            Status::Approved | Status::Processing | Status::Confirmed => PanelStatus::Completed,
            Status::Declined => PanelStatus::Rejected,
            Status::Cancelled if error == EXPIRED_ERROR => PanelStatus::Expired,
            Status::Cancelled => PanelStatus::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_status() {
        use PanelStatus as P;
        assert_eq!(P::of(Status::Pending, "", false), P::Pending);
        assert_eq!(P::of(Status::Pending, "", true), P::Processing);
        for s in [Status::Approved, Status::Processing, Status::Confirmed] {
            assert_eq!(P::of(s, "", false), P::Completed);
        }
        assert_eq!(
            P::of(Status::Declined, "Declined by user ID:u", false),
            P::Rejected
        );
        assert_eq!(P::of(Status::Cancelled, "Expired", false), P::Expired);
        assert_eq!(
            P::of(Status::Cancelled, "Cancelled by merchant", false),
            P::Cancelled
        );
        assert_eq!(P::parse("pending"), Some(P::Pending));
        assert_eq!(P::parse(" Processing "), Some(P::Processing));
        assert_eq!(P::parse("approved"), None);
    }
}
