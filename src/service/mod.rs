//! The business operations: thin handlers and workers call these; these call `db`.

pub mod exchange;
pub mod pricing;
pub mod projects;
pub mod withdrawals;
