//! The business operations: thin handlers and workers call these; these call `db`.

pub mod alerts;
pub mod approval_links;
pub mod approvals;
pub mod exchange;
pub mod people;
pub mod pricing;
pub mod projects;
pub mod settings;
pub mod team;
pub mod withdrawals;
