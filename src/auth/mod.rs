//! Who is calling: merchant API signatures, passwords, TOTP, browser sessions and CSRF.

pub mod admin_jwt;
pub mod api_signature;
pub mod csrf;
pub mod password;
pub mod session;
pub mod throttle;
pub mod totp;
