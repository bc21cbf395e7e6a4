//! Email: every message is a pair of templates (`templates/email/NAME.txt` and `.html`),
//! rendered when it is queued, written to the outbox in the caller's transaction, and sent
//! by the worker over SMTP (lettre) with retries. With no SMTP host configured, mail goes to
//! the built-in development mailbox (`/dev/mailbox`) instead.

use crate::config::SmtpSettings;
use crate::db::jobs::{self, JobKind, NewJob};
use crate::db::{Db, DbError, Tx};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A rendered message, as stored in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("template {0}: {1}")]
    Template(String, String),
    #[error("bad address {0:?}")]
    Address(String),
    #[error("SMTP: {0}")]
    Smtp(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Renders `email/{template}.txt` and `.html` with `ctx`.
pub fn render(
    template: &str,
    to: &str,
    subject: &str,
    ctx: &tera::Context,
) -> Result<Email, EmailError> {
    let t = &crate::web::TEMPLATES;
    let text = t
        .render(&format!("email/{template}.txt"), ctx)
        .map_err(|e| EmailError::Template(template.into(), format!("{e:?}")))?;
    let html = t
        .render(&format!("email/{template}.html"), ctx)
        .map_err(|e| EmailError::Template(template.into(), format!("{e:?}")))?;
    Ok(Email {
        to: to.to_string(),
        subject: subject.to_string(),
        text,
        html,
    })
}

/// Queues a rendered email in the caller's transaction. `dedupe_key` makes the queueing
/// idempotent (one email per event and recipient).
pub async fn queue(
    tx: &mut Tx<'_>,
    project_id: &str,
    email: &Email,
    dedupe_key: String,
    now: i64,
) -> Result<(), DbError> {
    jobs::enqueue(
        tx,
        &NewJob {
            kind: JobKind::Email,
            project_id,
            withdrawal_id: None,
            dedupe_key,
            payload: serde_json::to_string(email).unwrap_or_default(),
            run_at: now,
            deadline: Some(now + 72 * crate::clock::HOUR_MS),
        },
        now,
    )
    .await
}

/// Where mail goes.
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    DevMailbox,
}

impl Mailer {
    pub fn from_settings(s: &SmtpSettings) -> Result<Mailer, EmailError> {
        let Some(host) = s.host.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(Mailer::DevMailbox);
        };
        let security = s.security.as_deref().unwrap_or("starttls");
        let smtp = |e: lettre::transport::smtp::Error| EmailError::Smtp(e.to_string());
        let mut builder = match security {
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(smtp)?,
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(smtp)?,
        };
        let default_port = match security {
            "tls" => 465,
            "none" => 25,
            _ => 587,
        };
        builder = builder
            .port(s.port.unwrap_or(default_port))
            .timeout(Some(Duration::from_secs(20)));
        if let (Some(user), Some(pass)) = (&s.username, &s.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                pass.expose_secret().to_string(),
            ));
        }
        let from_text = s
            .from
            .clone()
            .unwrap_or_else(|| format!("Countersign <countersign@{host}>"));
        let from = from_text
            .parse::<Mailbox>()
            .map_err(|_| EmailError::Address(from_text.clone()))?;
        Ok(Mailer::Smtp {
            transport: builder.build(),
            from,
        })
    }

    pub fn is_dev_mailbox(&self) -> bool {
        matches!(self, Mailer::DevMailbox)
    }

    /// Sends one message (or stores it in the dev mailbox).
    pub async fn send(&self, db: &Db, email: &Email, now: i64) -> Result<(), EmailError> {
        match self {
            Mailer::DevMailbox => {
                sqlx::query(
                    "INSERT INTO dev_mailbox (to_addr, subject, text_body, html_body, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&email.to)
                .bind(&email.subject)
                .bind(&email.text)
                .bind(&email.html)
                .bind(now)
                .execute(db.writer())
                .await
                .map_err(DbError::from)?;
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let to = email
                    .to
                    .parse::<Mailbox>()
                    .map_err(|_| EmailError::Address(email.to.clone()))?;
                let msg = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&email.subject)
                    .multipart(MultiPart::alternative_plain_html(
                        email.text.clone(),
                        email.html.clone(),
                    ))
                    .map_err(|e| EmailError::Smtp(e.to_string()))?;
                transport
                    .send(msg)
                    .await
                    .map_err(|e| EmailError::Smtp(e.to_string()))?;
                Ok(())
            }
        }
    }
}
