//! All integration tests, one binary (see STYLE.md). Each test starts the real application on
//! port 0 with its own fresh database: SQLite by default, PostgreSQL when
//! `CS_TEST_POSTGRES_URL` is set (as `.ci/run` does).

mod admin_api;
mod approval_links;
mod approvals;
mod approvals_pages;
mod audit_page;
mod auth;
mod balances;
mod browser;
mod callbacks;
mod cli;
mod concurrency;
mod confirmation;
mod edges;
mod email;
mod exchange_withdrawals;
mod fault;
mod fuzz;
mod gate;
mod hardening;
#[allow(dead_code)] // shared by the modules; not every helper is used by every build of them
mod helpers;
mod invites;
mod notifications;
mod openapi;
mod ops;
mod pages_browser;
mod pages_withdrawals;
mod payout_rail;
mod quotes;
mod rates;
mod schema_check;
mod settings;
mod setup;
mod signin;
mod slack;
mod team;
mod validation;
mod withdrawals;
