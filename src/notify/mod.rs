//! Messages that leave the service: merchant callbacks, email, Slack.

pub mod callback;
pub mod callback_payload;
pub mod email;
pub mod slack;
pub mod slack_send;
