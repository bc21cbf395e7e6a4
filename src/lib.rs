//! Countersign: dual authorization for crypto withdrawals.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin_api;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod notify;
pub mod payout;
pub mod rates;
pub mod service;
pub mod startup;
pub mod state;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod web;
pub mod worker;
