//! All integration tests, one binary (see STYLE.md). Each test starts the real application on
//! port 0 with its own fresh database: SQLite by default, PostgreSQL when
//! `CS_TEST_POSTGRES_URL` is set (as `.ci/run` does).

mod auth;
mod balances;
mod callbacks;
mod cli;
mod concurrency;
mod exchange_withdrawals;
mod helpers;
mod openapi;
mod quotes;
mod rates;
mod schema_check;
mod validation;
mod withdrawals;
