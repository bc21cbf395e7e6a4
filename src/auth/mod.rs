//! Who is calling: merchant API signatures (later: sessions, TOTP, admin tokens).

pub mod api_signature;
