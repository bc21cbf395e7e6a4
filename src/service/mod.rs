//! The business operations: thin handlers and workers call these; these call `db`.

pub mod alerts;
pub mod approval_links;
pub mod approvals;
pub mod claims;
pub mod confirmation;
pub mod exchange;
pub mod payouts;
pub mod people;
pub mod pricing;
pub mod projects;
pub mod settings;
pub mod slack;
pub mod team;
pub mod tiers;
pub mod withdrawals;
