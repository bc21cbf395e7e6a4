//! Messages that leave the service: merchant callbacks, email (approval requests with their
//! links, outcomes, account notices), the operator gate, Slack.

pub mod approval_email;
pub mod callback;
pub mod callback_payload;
pub mod email;
pub mod gate;
pub mod outbound;
pub mod slack;
pub mod slack_send;
