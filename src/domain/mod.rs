//! Pure domain logic: no I/O, no clock reads, no sqlx.

pub mod address;
pub mod approval;
pub mod confirmation;
pub mod exchange;
pub mod money;
pub mod panel_status;
pub mod policy;
pub mod withdrawal;
