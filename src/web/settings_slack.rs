//! The settings page's Slack section: connect or replace the incoming-webhook URL, disconnect
//! (both owners only, with a fresh code), and send a test message (owners, no code: it changes
//! nothing). The URL is never shown back, only its masked form.

use super::error::PageError;
use super::settings::{authorize, page, refused};
use super::users::{form_error, unprocessable};
use super::{redirect, step_up};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::SignedIn;
use crate::clock::rfc3339;
use crate::db::audit::Actor;
use crate::db::slack as slack_db;
use crate::notify::slack::{SlackEvent, SlackWebhookUrl};
use crate::service::slack as svc;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/settings/slack", web::post().to(connect))
        .route("/settings/slack/disconnect", web::post().to(disconnect))
        .route("/settings/slack/test", web::post().to(test_message))
        .route("/settings/slack/events", web::post().to(set_events));
}

/// What the section shows: connected or not, the masked URL, the latest delivery and failure.
pub async fn view(state: &AppState, project_id: &str) -> Result<Value, PageError> {
    let hook = slack_db::get(&state.db, project_id).await?;
    let chosen = slack_db::events(&state.db, project_id).await?;
    let events: Vec<Value> = SlackEvent::ALL
        .into_iter()
        .map(|e| json!({"name": e.as_str(), "label": e.label(), "on": chosen.iter().any(|c| c == e.as_str())}))
        .collect();
    Ok(match hook {
        None => json!({"connected": false, "events": events}),
        Some(h) => json!({
            "connected": true,
            "events": events,
            "hint": h.url_hint,
            "connected_at": rfc3339(h.connected_at),
            "last_ok_at": h.last_ok_at.map(rfc3339),
            "last_error_at": h.last_error_at.map(rfc3339),
            "last_error": h.last_error,
        }),
    })
}

#[derive(Deserialize)]
pub struct ConnectForm {
    #[serde(default)]
    webhook_url: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn actor(s: &SignedIn) -> Actor {
    Actor::User(s.user.id.clone())
}

async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<ConnectForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    s.require_owner()?;
    // Check the URL before the code, so a typo does not use up the code.
    let url = match SlackWebhookUrl::parse(&f.webhook_url) {
        Ok(u) => u,
        Err(m) => {
            let err = form_error("Slack webhook URL", &m);
            return page(&state, &s, Some(err), None).await.map(unprocessable);
        }
    };
    if let Err(r) = state
        .outbound
        .policy()
        .check_url_resolving(url.as_str())
        .await
    {
        let err = form_error("Slack webhook URL", &r.reason());
        return page(&state, &s, Some(err), None).await.map(unprocessable);
    }
    if let Err(resp) = authorize(&state, &req, &s, &f.csrf, &f.code).await? {
        return Ok(resp);
    }
    match svc::connect(&state, &s.project.id, &url, &actor(&s), &origin(&req)).await {
        Ok(()) => {
            step_up::redirect_renewed(&state, &req, &s, "/settings?done=slack_connected#slack")
                .await
        }
        Err(e) => refused(&state, &s, e).await,
    }
}

async fn disconnect(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    if let Err(resp) = authorize(&state, &req, &s, &f.csrf, &f.code).await? {
        return Ok(resp);
    }
    match svc::disconnect(&state, &s.project.id, &actor(&s), &origin(&req)).await {
        Ok(()) => {
            step_up::redirect_renewed(&state, &req, &s, "/settings?done=slack_disconnected#slack")
                .await
        }
        Err(e) => refused(&state, &s, e).await,
    }
}

/// The event checkboxes: repeated `event` fields (an HTML form sends one per ticked box).
async fn set_events(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let mut csrf_token = String::new();
    let mut code = String::new();
    let mut events = Vec::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "csrf" => csrf_token = v.into_owned(),
            "code" => code = v.into_owned(),
            "event" => match SlackEvent::parse(&v) {
                Some(e) => events.push(e),
                None => {
                    let err = form_error("Slack events", &format!("unknown event {v:?}"));
                    return page(&state, &s, Some(err), None).await.map(unprocessable);
                }
            },
            _ => {}
        }
    }
    if let Err(resp) = authorize(&state, &req, &s, &csrf_token, &code).await? {
        return Ok(resp);
    }
    match svc::set_events(&state, &s.project.id, &events, &actor(&s), &origin(&req)).await {
        Ok(()) => {
            step_up::redirect_renewed(&state, &req, &s, "/settings?done=slack_events#slack").await
        }
        Err(e) => refused(&state, &s, e).await,
    }
}

/// Sends one message now and answers with the settings page: a notice when Slack took it,
/// Slack's exact answer (502) when it did not.
async fn test_message(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    s.require_owner()?;
    match svc::send_test(&state, &s.project.id, &s.user.email).await {
        Ok(result) => match result.error() {
            None => Ok(redirect("/settings?done=slack_test#slack")),
            Some(e) => {
                let err = form_error("Slack test message not delivered", e);
                let mut resp = page(&state, &s, Some(err), None).await?;
                *resp.status_mut() = StatusCode::BAD_GATEWAY;
                Ok(resp)
            }
        },
        Err(e) => refused(&state, &s, e).await,
    }
}
