//! Messages that leave the service: merchant callbacks (later: email, Slack).

pub mod callback;
pub mod callback_payload;
pub mod email;
