//! Messages that leave the service: merchant callbacks, email, the operator gate (later: Slack).

pub mod callback;
pub mod callback_payload;
pub mod email;
pub mod gate;
