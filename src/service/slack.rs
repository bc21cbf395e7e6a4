//! Connecting the project's Slack channel (owners, behind the settings page's step-up) and its
//! test message. The webhook URL is a credential: it is stored only encrypted, audited only in
//! its masked form, and never logged.

use super::settings::{SettingsError, locked, record};
use crate::db::audit::{Actor, Origin};
use crate::db::slack::TestSlot;
use crate::db::{DbError, projects, slack as slack_db};
use crate::notify::slack::{SlackEvent, SlackWebhookUrl, text_message};
use crate::notify::slack_send::{self, SendResult};
use crate::state::AppState;
use serde_json::json;

/// Connects the channel, or replaces the URL of the connected one.
pub async fn connect(
    state: &AppState,
    project_id: &str,
    url: &SlackWebhookUrl,
    actor: &Actor,
    origin: &Origin,
) -> Result<(), SettingsError> {
    let enc = state.master_key.encrypt(url.as_str())?;
    let webhook_id = crate::crypto::random_token::<12>()?;
    let hint = url.masked();
    let now = state.now();
    let mut tx = locked(state, project_id).await?;
    let before = slack_db::get_in(&mut tx, project_id)
        .await?
        .map(|h| h.url_hint);
    slack_db::upsert(&mut tx, project_id, &webhook_id, &enc, &hint, now).await?;
    record(
        &mut tx,
        project_id,
        actor,
        "project.slack_webhook_changed",
        format!("project:{project_id}"),
        // The masked form only: the URL itself lets anyone post to the channel.
        json!({"before": before, "after": hint}),
        origin,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// Chooses which events go to the channel (see [`SlackEvent`]); an empty choice sends
/// nothing but the test message.
pub async fn set_events(
    state: &AppState,
    project_id: &str,
    events: &[SlackEvent],
    actor: &Actor,
    origin: &Origin,
) -> Result<(), SettingsError> {
    let now = state.now();
    let before = slack_db::events(&state.db, project_id).await?;
    let after: Vec<&str> = SlackEvent::ALL
        .into_iter()
        .filter(|e| events.contains(e))
        .map(SlackEvent::as_str)
        .collect();
    let mut tx = locked(state, project_id).await?;
    slack_db::set_events(&mut tx, project_id, &after).await?;
    record(
        &mut tx,
        project_id,
        actor,
        "project.slack_events_changed",
        format!("project:{project_id}"),
        json!({"before": before, "after": after}),
        origin,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// Disconnects the channel. Messages already queued are then dropped unsent (noted on their
/// delivery). Refused when nothing is connected.
pub async fn disconnect(
    state: &AppState,
    project_id: &str,
    actor: &Actor,
    origin: &Origin,
) -> Result<(), SettingsError> {
    let now = state.now();
    let mut tx = locked(state, project_id).await?;
    let Some(before) = slack_db::get_in(&mut tx, project_id).await? else {
        return Err(SettingsError::Refused(
            "No Slack channel is connected.".into(),
        ));
    };
    slack_db::delete(&mut tx, project_id).await?;
    record(
        &mut tx,
        project_id,
        actor,
        "project.slack_webhook_changed",
        format!("project:{project_id}"),
        json!({"before": before.url_hint, "after": null}),
        origin,
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

fn not_connected() -> SettingsError {
    SettingsError::Refused("No Slack channel is connected: connect one first.".into())
}

/// At most one test message per project in this long (a button is easy to click many times,
/// and Slack answers a flood with 429 for every message of the channel, alerts included).
pub const TEST_GAP_MS: i64 = 10_000;

/// Posts a test message to the connected channel now (not through the outbox: the owner is
/// waiting for the answer), and records the outcome as the channel's latest. `Ok` carries
/// what Slack answered; a send that failed is `Ok(result)` with the error in it.
pub async fn send_test(
    state: &AppState,
    project_id: &str,
    sent_by: &str,
) -> Result<SendResult, SettingsError> {
    let db = &state.db;
    let Some(hook) = slack_db::get(db, project_id).await? else {
        return Err(not_connected());
    };
    let project = projects::get(db, project_id)
        .await?
        .ok_or(SettingsError::NotFound)?;
    let now = state.now();
    match slack_db::take_test_slot(db, project_id, &hook.webhook_id, now, TEST_GAP_MS).await? {
        TestSlot::Taken => {}
        TestSlot::Gone => return Err(not_connected()),
        TestSlot::UsedAt(at) => {
            let ago_ms = (now - at).max(0);
            let wait = (TEST_GAP_MS - ago_ms + 999) / 1000;
            let when = match ago_ms / 1000 {
                0 => "just now".to_string(),
                secs => format!("{secs} s ago"),
            };
            let plural = if wait == 1 { "" } else { "s" };
            return Err(SettingsError::Refused(format!(
                "A test message went to this channel {when}: wait {wait} more second{plural} before sending another."
            )));
        }
    }
    let url = state
        .master_key
        .decrypt(&hook.url_enc)
        .map_err(|_| SettingsError::Internal("the Slack webhook URL cannot be decrypted".into()))?;
    let message = text_message(&format!(
        "Test message from Countersign: this channel will receive the withdrawals of {} that await approval, and their outcomes. Sent by {sent_by}.",
        project.name
    ));
    let (result, _) = slack_send::post(&state.outbound, &url, &message.to_string()).await;
    let now = state.now();
    match result.error() {
        None => slack_db::record_ok(db, project_id, &hook.webhook_id, now).await?,
        Some(e) => slack_db::record_error(db, project_id, &hook.webhook_id, e, now).await?,
    }
    Ok(result)
}
