//! Messages that leave the service: merchant callbacks, email (approval requests with their
//! links, outcomes, account notices), Slack.

pub mod approval_email;
pub mod callback;
pub mod callback_payload;
pub mod email;
