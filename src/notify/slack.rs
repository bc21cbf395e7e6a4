//! Slack: the project's channel, reached through an incoming-webhook URL. This module holds the
//! pure parts (the URL as a type, its masked form, the Block Kit messages) and queues messages
//! in the outbox, in the caller's transaction. The worker sends them after commit (see
//! [`super::slack_send`] and `worker.rs`); nothing here touches the network.
//!
//! Every text that comes from outside (addresses, reasons, people's names and notes) goes into
//! `mrkdwn` only through [`escape`], so it cannot form links or mentions (`<!channel>`).

use crate::clock::HOUR_MS;
use crate::db::jobs::{self, JobKind, NewJob};
use crate::db::{DbError, Tx, slack as slack_db};
use serde_json::{Value, json};

/// A message still failing this long after it was queued is given up (the job goes dead):
/// an approval alert older than a day is no longer news.
pub const GIVE_UP_AFTER_MS: i64 = 24 * HOUR_MS;

/// A webhook URL that passed [`SlackWebhookUrl::parse`]: https with a host, or plain http to a
/// loopback host only (a local stand-in, as the tests use). It is a credential: its `Debug`
/// shows only the masked form.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackWebhookUrl(String);

impl std::fmt::Debug for SlackWebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlackWebhookUrl({})", self.masked())
    }
}

impl SlackWebhookUrl {
    /// The error says what is wrong, for the form.
    pub fn parse(s: &str) -> Result<SlackWebhookUrl, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("enter the incoming-webhook URL Slack gave you (https://hooks.slack.com/services/...)".into());
        }
        if s.len() > 2000 {
            return Err("must be at most 2000 characters".into());
        }
        let u = url::Url::parse(s).map_err(|e| format!("is not a URL ({e})"))?;
        let Some(host) = u.host() else {
            return Err("must have a host".into());
        };
        let loopback = match host {
            url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        };
        match u.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(
                    "must start with https:// (plain http is allowed only for a loopback host)"
                        .into(),
                );
            }
            other => return Err(format!("must be an https URL, not {other}:")),
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err("must not contain a user name or password".into());
        }
        if u.fragment().is_some() {
            return Err("must not contain a #fragment".into());
        }
        Ok(SlackWebhookUrl(u.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the page may show: scheme, host and port, the first path segment when the path has
    /// several (`/services/`), then only the first character of the next one:
    /// `https://hooks.slack.com/services/T…/…`. Never the query.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

fn mask(url: &str) -> String {
    let Ok(u) = url::Url::parse(url) else {
        return "…".into();
    };
    let mut out = u.origin().ascii_serialization();
    let segments: Vec<&str> = u
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let mut rest = segments.as_slice();
    if segments.len() >= 3 {
        out.push('/');
        out.push_str(segments[0]);
        rest = &segments[1..];
    }
    if let Some(first) = rest.first() {
        out.push('/');
        out.extend(first.chars().take(1));
        out.push('…');
        if rest.len() > 1 {
            out.push_str("/…");
        }
    }
    out
}

/// Escapes text from outside for Slack `mrkdwn`: `&`, `<` and `>` become entities, so the text
/// can neither open a link nor mention anyone.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// First 6 … last 6 characters of an address (the whole address when it is short).
pub fn short_address(address: &str) -> String {
    let chars: Vec<char> = address.chars().collect();
    if chars.len() <= 15 {
        return address.to_string();
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 6..].iter().collect();
    format!("{head}…{tail}")
}

/// Cuts text to Slack's limit for a field (counted in characters), marking the cut.
fn limit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A pending withdrawal, as the channel is told about it.
pub struct PendingAlert<'a> {
    pub withdrawal_id: i64,
    /// Amount with its currency, e.g. `0.5 BTC`.
    pub amount: &'a str,
    pub network: &'a str,
    pub address: &'a str,
    /// Why it is held (which limit, which rule), one line each.
    pub reasons: &'a [String],
    pub initiator: &'a str,
    pub approvals_needed: u32,
    pub owner_required: bool,
    /// The approval page.
    pub detail_url: &'a str,
}

/// What became of a withdrawal the channel was told about.
pub struct OutcomeAlert<'a> {
    pub withdrawal_id: i64,
    pub amount: &'a str,
    /// e.g. `Approved by alice@example.com`, `Declined by bob@example.com: note`, `Expired`.
    pub outcome: &'a str,
    pub detail_url: &'a str,
}

fn field(label: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": limit(&format!("*{label}*\n{value}"), 2000)})
}

fn button(text: &str, url: &str, action_id: String, primary: bool) -> Value {
    let mut b = json!({
        "type": "button",
        "text": {"type": "plain_text", "text": limit(text, 75)},
        "url": url,
        "action_id": action_id,
    });
    if primary {
        b["style"] = json!("primary");
    }
    b
}

/// The Block Kit message for a withdrawal awaiting approval: a header with the amount, the
/// facts an approver needs, and a button to the approval page.
pub fn pending_message(a: &PendingAlert<'_>) -> Value {
    let id = a.withdrawal_id;
    let reasons = if a.reasons.is_empty() {
        "approval required".to_string()
    } else {
        a.reasons
            .iter()
            .map(|r| escape(r))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut approvals = a.approvals_needed.to_string();
    if a.owner_required {
        approvals.push_str(" (owner required)");
    }
    let address = escape(&short_address(a.address)).replace('`', "'");
    json!({
        "text": escape(&format!("Withdrawal #{id} of {} awaiting approval", a.amount)),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text",
                "text": limit(&format!("Awaiting approval: {}", a.amount), 150)}},
            {"type": "section", "fields": [
                field("Withdrawal", &format!("#{id}")),
                field("Network", &escape(a.network)),
                field("Address", &format!("`{address}`")),
                field(if a.reasons.len() > 1 { "Reasons" } else { "Reason" }, &reasons),
                field("Initiated by", &escape(a.initiator)),
                field("Approvals needed", &approvals),
            ]},
            {"type": "actions", "elements": [
                button(&format!("Review withdrawal #{id}"), a.detail_url, format!("open_withdrawal_{id}"), true),
            ]},
        ],
    })
}

/// The follow-up once the withdrawal is decided.
pub fn outcome_message(a: &OutcomeAlert<'_>) -> Value {
    let id = a.withdrawal_id;
    let summary = format!("Withdrawal #{id} of {}: {}", a.amount, a.outcome);
    json!({
        "text": escape(&summary),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": limit(&format!(
                "*Withdrawal #{id} of {}*\n{}", escape(a.amount), escape(a.outcome)), 3000)}},
            {"type": "actions", "elements": [
                button(&format!("View withdrawal #{id}"), a.detail_url, format!("open_withdrawal_{id}"), false),
            ]},
        ],
    })
}

/// A plain notice (feature changes, lockouts).
pub fn text_message(text: &str) -> Value {
    let text = escape(text);
    json!({
        "text": limit(&text, 3000),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": limit(&text, 3000)}}],
    })
}

/// Queues a pending-withdrawal alert (dedupe key `slack:pending:{id}`). Does nothing when
/// the project has no Slack channel connected.
/// What a project can choose to send to its channel (Settings → Slack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackEvent {
    /// A withdrawal waiting for approval.
    Pending,
    /// How a pending withdrawal ended.
    Outcomes,
    /// Withdrawal Confirmation turned on or off.
    Feature,
    /// A user locked out after failed sign-ins.
    Lockouts,
}

impl SlackEvent {
    pub const ALL: [SlackEvent; 4] = [
        SlackEvent::Pending,
        SlackEvent::Outcomes,
        SlackEvent::Feature,
        SlackEvent::Lockouts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SlackEvent::Pending => "pending",
            SlackEvent::Outcomes => "outcomes",
            SlackEvent::Feature => "feature",
            SlackEvent::Lockouts => "lockouts",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SlackEvent::Pending => "Withdrawals awaiting approval",
            SlackEvent::Outcomes => "Their outcomes (approved, declined, expired, cancelled)",
            SlackEvent::Feature => "Withdrawal Confirmation turned on or off",
            SlackEvent::Lockouts => "Users locked out after failed sign-ins",
        }
    }

    pub fn parse(s: &str) -> Option<SlackEvent> {
        SlackEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

pub async fn queue_pending(
    tx: &mut Tx<'_>,
    project_id: &str,
    alert: &PendingAlert<'_>,
    now: i64,
) -> Result<(), DbError> {
    let key = format!("slack:pending:{}", alert.withdrawal_id);
    let message = pending_message(alert);
    queue(
        tx,
        SlackEvent::Pending,
        project_id,
        Some(alert.withdrawal_id),
        key,
        &message,
        now,
    )
    .await
}

/// Queues the outcome follow-up (dedupe key `slack:outcome:{id}`). Does nothing when the
/// project has no Slack channel connected.
pub async fn queue_outcome(
    tx: &mut Tx<'_>,
    project_id: &str,
    alert: &OutcomeAlert<'_>,
    now: i64,
) -> Result<(), DbError> {
    let key = format!("slack:outcome:{}", alert.withdrawal_id);
    let message = outcome_message(alert);
    queue(
        tx,
        SlackEvent::Outcomes,
        project_id,
        Some(alert.withdrawal_id),
        key,
        &message,
        now,
    )
    .await
}

/// Queues a plain notice under the caller's dedupe key. Does nothing when the project has no
/// Slack channel connected.
pub async fn queue_text(
    tx: &mut Tx<'_>,
    event: SlackEvent,
    project_id: &str,
    dedupe_key: String,
    text: &str,
    now: i64,
) -> Result<(), DbError> {
    queue(
        tx,
        event,
        project_id,
        None,
        dedupe_key,
        &text_message(text),
        now,
    )
    .await
}

async fn queue(
    tx: &mut Tx<'_>,
    event: SlackEvent,
    project_id: &str,
    withdrawal_id: Option<i64>,
    dedupe_key: String,
    message: &Value,
    now: i64,
) -> Result<(), DbError> {
    if !slack_db::wants(tx, project_id, event.as_str()).await? {
        return Ok(());
    }
    jobs::enqueue(
        tx,
        &NewJob {
            kind: JobKind::Slack,
            project_id,
            withdrawal_id,
            dedupe_key,
            // The exact body: every retry sends the same bytes.
            payload: message.to_string(),
            run_at: now,
            deadline: Some(now + GIVE_UP_AFTER_MS),
        },
        now,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_https_or_loopback_http() {
        let ok =
            SlackWebhookUrl::parse(" https://hooks.slack.com/services/T0001/B0002/XXXXsecret ")
                .unwrap();
        assert_eq!(
            ok.as_str(),
            "https://hooks.slack.com/services/T0001/B0002/XXXXsecret"
        );
        assert_eq!(ok.masked(), "https://hooks.slack.com/services/T…/…");
        assert!(!format!("{ok:?}").contains("XXXXsecret"));
        for local in [
            "http://127.0.0.1:4000/hook",
            "http://localhost/x",
            "http://[::1]:9/x",
        ] {
            assert!(SlackWebhookUrl::parse(local).is_ok(), "{local}");
        }
        assert_eq!(
            SlackWebhookUrl::parse("http://127.0.0.1:4000/hook")
                .unwrap()
                .masked(),
            "http://127.0.0.1:4000/h…"
        );
        for (bad, says) in [
            ("", "enter the incoming-webhook URL"),
            ("hooks.slack.com/services/x", "is not a URL"),
            (
                "http://hooks.slack.com/services/x",
                "must start with https://",
            ),
            ("ftp://hooks.slack.com/x", "must be an https URL"),
            ("https://user:pw@hooks.slack.com/x", "user name or password"),
            ("mailto:ops@acme.test", "host"),
        ] {
            let e = SlackWebhookUrl::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn text_from_outside_cannot_link_or_mention() {
        assert_eq!(
            escape("<!channel> & <https://evil|click>"),
            "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;"
        );
        assert_eq!(
            short_address("tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm"),
            "tb1qur…rxswgm"
        );
        assert_eq!(short_address("short"), "short");
    }

    #[test]
    fn outcome_note_is_escaped() {
        let m = outcome_message(&OutcomeAlert {
            withdrawal_id: 7,
            amount: "1 ETH",
            outcome: "Declined by bob@acme.test: <!here> no",
            detail_url: "https://cs.example/withdrawals/7",
        });
        let text = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(
            text,
            "*Withdrawal #7 of 1 ETH*\nDeclined by bob@acme.test: &lt;!here&gt; no"
        );
        assert!(!m.to_string().contains("<!here>"));
    }
}
