//! Project settings, for owners only: limits (see `settings_limits`), API keys, the callback
//! URL and webhook secret, the operator gate's validation webhook, the base currency, Slack (see
//! `settings_slack`). Every change asks for a fresh TOTP code on the same form; a new secret is
//! shown once, on the page that answers the change.

use super::error::PageError;
use super::users::{form_error, label_of, unprocessable};
use super::{page_context, render, step_up};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::SignedIn;
use crate::clock::rfc3339;
use crate::db::audit::Actor;
use crate::db::{api_keys, limits};
use crate::domain::money::{Currency, CurrencyKind};
use crate::service::settings::{self as svc, NewKey, SettingsError};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/settings", web::get().to(settings_page))
        .route("/settings/api-keys", web::post().to(create_key))
        .route("/settings/api-keys/{id}/rotate", web::post().to(rotate_key))
        .route("/settings/api-keys/{id}/revoke", web::post().to(revoke_key))
        .route("/settings/callback-url", web::post().to(callback_url))
        .route("/settings/validation-url", web::post().to(validation_url))
        .route("/settings/webhook-secret", web::post().to(rotate_webhook))
        .route("/settings/base-currency", web::post().to(base_currency));
    super::settings_limits::routes(cfg);
    super::settings_slack::routes(cfg);
    super::settings_tiers::routes(cfg);
}

pub fn show_limit(d: Option<Decimal>) -> String {
    d.map(|d| d.normalize().to_string()).unwrap_or_default()
}

/// Crypto currencies: those a withdrawal (and so a per-currency limit) can be in.
pub fn crypto_currencies() -> Vec<Value> {
    Currency::ALL
        .into_iter()
        .filter(|c| c.kind() == CurrencyKind::Crypto)
        .map(|c| json!({"code": c.code(), "name": c.display_name()}))
        .collect()
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "limits" => "Limits saved. They apply to withdrawals created from now on.",
        "override_removed" => {
            "Override removed: that currency now follows the base-currency limits."
        }
        "key_revoked" => "API key revoked. Requests signed with it are refused from now on.",
        "callback" => "Callback URL saved.",
        "validation" => "Validation webhook saved. It applies to withdrawals created from now on.",
        "slack_connected" => "Slack channel connected. Use \"Send test message\" to check it.",
        "slack_disconnected" => "Slack channel disconnected. Messages not yet sent are dropped.",
        "slack_test" => "Test message delivered to the Slack channel.",
        "slack_events" => "Saved which events go to the Slack channel.",
        "base_currency" => {
            "Base currency changed. The default limits are now read in the new currency: check them."
        }
        _ => return None,
    })
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

/// The settings page, optionally with an error (422) or a notice.
pub async fn page(
    state: &AppState,
    s: &SignedIn,
    error: Option<Value>,
    done: Option<&str>,
) -> Result<HttpResponse, PageError> {
    s.require_owner()?;
    let base = s.project.base_currency.clone();
    let rows: Vec<Value> = limits::list(&state.db, &s.project.id)
        .await?
        .into_iter()
        .map(|(scope, currency, l)| {
            let is_default = currency == limits::DEFAULT_CURRENCY;
            json!({
                "scope": scope.as_str(),
                "currency": if is_default { "default".to_string() } else { currency.clone() },
                "label": if is_default { format!("Default (in {base})") } else { format!("{currency} override (in {currency})") },
                "is_default": is_default,
                "per_operation": show_limit(l.per_operation),
                "per_hour": show_limit(l.per_hour),
                "per_day": show_limit(l.per_day),
            })
        })
        .collect();
    let signing = api_keys::signing_key_id(&state.db, &s.project.id).await?;
    let keys: Vec<Value> = api_keys::list(&state.db, &s.project.id)
        .await?
        .into_iter()
        .map(|k| {
            json!({
                "id": k.id,
                "prefix": k.key_prefix,
                "can_withdraw": k.can_withdraw,
                "created": rfc3339(k.created_at),
                "revoked": k.revoked_at.map(rfc3339),
                "signs_callbacks": signing.as_deref() == Some(k.id.as_str()),
            })
        })
        .collect();
    let bases: Vec<&str> = Currency::ALL
        .into_iter()
        .filter(|c| state.rates.rate(*c, *c).is_some())
        .map(Currency::code)
        .collect();
    let mut ctx = page_context(s, "settings");
    ctx.insert("limits", &rows);
    ctx.insert("override_currencies", &crypto_currencies());
    ctx.insert("keys", &keys);
    ctx.insert("callback_url", &s.project.callback_url);
    ctx.insert("validation_url", &s.project.validation_url);
    ctx.insert("gate_timeout_ms", &state.settings.gate.timeout_ms);
    ctx.insert("base_currencies", &bases);
    ctx.insert(
        "slack",
        &super::settings_slack::view(state, &s.project.id).await?,
    );
    let email = crate::db::email_status::get(&state.db, &s.project.id).await?;
    ctx.insert(
        "email",
        &json!({
            "last_ok_at": email.last_ok_at.map(rfc3339),
            "last_error_at": email.last_error_at.map(rfc3339),
            "last_error": email.last_error,
        }),
    );
    ctx.insert("error", &error);
    ctx.insert("notice", &notice(done));
    render("settings/index.html", &ctx)
}

async fn settings_page(
    state: web::Data<AppState>,
    s: SignedIn,
    q: web::Query<DoneQuery>,
) -> Result<HttpResponse, PageError> {
    page(&state, &s, None, q.done.as_deref()).await
}

/// What a refused change answers: the settings page with the reason, 422.
pub async fn refused(
    state: &AppState,
    s: &SignedIn,
    e: SettingsError,
) -> Result<HttpResponse, PageError> {
    let err = match e {
        SettingsError::Invalid { field, message } => form_error(label_of(field), &message),
        SettingsError::Refused(m) => form_error("", &m),
        SettingsError::NotFound => return Err(PageError::NotFound),
        SettingsError::Db(d) => return Err(d.into()),
        SettingsError::Internal(m) => return Err(PageError::Internal(m)),
    };
    page(state, s, Some(err), None).await.map(unprocessable)
}

/// The common start of every change: same-origin form, an owner, a fresh code. `Err(resp)`
/// is the answer to send instead (the refusal page).
pub async fn authorize(
    state: &AppState,
    req: &HttpRequest,
    s: &SignedIn,
    csrf_token: &str,
    code: &str,
) -> Result<Result<(), HttpResponse>, PageError> {
    csrf::check(state, req, &s.session, csrf_token)?;
    s.require_owner()?;
    match step_up::check(state, req, s, code).await? {
        None => Ok(Ok(())),
        Some(m) => Ok(Err(page(
            state,
            s,
            Some(form_error("Verification code", &m)),
            None,
        )
        .await
        .map(unprocessable)?)),
    }
}

fn actor(s: &SignedIn) -> Actor {
    Actor::User(s.user.id.clone())
}

/// A page showing new secrets once (never cached). The session id is renewed first, so the
/// page's own forms carry the new session's CSRF token.
async fn secret_page(
    state: &AppState,
    req: &HttpRequest,
    s: &SignedIn,
    title: &str,
    items: Value,
    note: &str,
) -> Result<HttpResponse, PageError> {
    let renewed = step_up::renew(state, req, s).await?;
    let shown = renewed.as_ref().map_or(s, |(_, r)| r);
    let mut ctx = page_context(shown, "settings");
    ctx.insert("title", title);
    ctx.insert("items", &items);
    ctx.insert("note", note);
    let mut resp = render("settings/secret.html", &ctx)?;
    if let Some((c, _)) = renewed {
        let _ = resp.add_cookie(&c);
    }
    Ok(resp)
}

fn key_items(k: &NewKey) -> Value {
    json!([
        {"id": "api-key", "label": "API key (X-Processing-Key)", "value": k.api_key},
        {"id": "api-secret", "label": "API secret (signs requests: X-Processing-Signature)", "value": k.api_secret},
    ])
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct NewKeyForm {
    can_withdraw: Option<String>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

async fn create_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<NewKeyForm>,
) -> Result<HttpResponse, PageError> {
    if let Err(resp) = authorize(&state, &req, &s, &f.csrf, &f.code).await? {
        return Ok(resp);
    }
    let can_withdraw = f.can_withdraw.is_some();
    match svc::create_api_key(&state, &s.project.id, can_withdraw, &actor(&s), &origin(&req))
        .await
    {
        Ok(k) => {
            secret_page(&state, &req, &s, "New API key", key_items(&k),
                "Copy both now: the secret is shown only once. Requests signed with this key work straight away.").await
        }
        Err(e) => refused(&state, &s, e).await,
    }
}

async fn rotate_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    path: web::Path<String>,
    f: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    if let Err(resp) = authorize(&state, &req, &s, &f.csrf, &f.code).await? {
        return Ok(resp);
    }
    match svc::rotate_api_key(&state, &s.project.id, &path, &actor(&s), &origin(&req)).await {
        Ok(k) => {
            secret_page(&state, &req, &s, "API key rotated", key_items(&k),
                "The old key no longer works. Put this key and secret in your backend now: the secret is shown only once.").await
        }
        Err(e) => refused(&state, &s, e).await,
    }
}

async fn revoke_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    path: web::Path<String>,
    f: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    if let Err(resp) = authorize(&state, &req, &s, &f.csrf, &f.code).await? {
        return Ok(resp);
    }
    match svc::revoke_api_key(&state, &s.project.id, &path, &actor(&s), &origin(&req)).await {
        Ok(_) => step_up::redirect_renewed(&state, &req, &s, "/settings?done=key_revoked").await,
        Err(e) => refused(&state, &s, e).await,
    }
}

#[derive(Deserialize)]
pub struct CallbackForm {
    #[serde(default)]
    callback_url: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

async fn callback_url(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<CallbackForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    s.require_owner()?;
    // Check the URL before the code, so a typo does not use up the code.
    let url = f.callback_url.trim();
    if let Err(e) = svc::check_callback_target(&state, url).await {
        return refused(&state, &s, e).await;
    }
    if let Err(resp) = authorize(&state, &req, &s, &f.csrf, &f.code).await? {
        return Ok(resp);
    }
    match svc::set_callback_url(&state, &s.project.id, url, &actor(&s), &origin(&req)).await {
        Ok(()) => step_up::redirect_renewed(&state, &req, &s, "/settings?done=callback").await,
        Err(e) => refused(&state, &s, e).await,
    }
}

#[derive(Deserialize)]
pub struct ValidationForm {
    #[serde(default)]
    validation_url: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

async fn validation_url(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<ValidationForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    s.require_owner()?;
    // Check the URL before the code, so a typo does not use up the code.
    if let Err(e) = svc::check_validation_target(&state, &f.validation_url).await {
        return refused(&state, &s, e).await;
    }
    if let Err(resp) = authorize(&state, &req, &s, &f.csrf, &f.code).await? {
        return Ok(resp);
    }
    match svc::set_validation_url(
        &state,
        &s.project.id,
        &f.validation_url,
        &actor(&s),
        &origin(&req),
    )
    .await
    {
        Ok(()) => step_up::redirect_renewed(&state, &req, &s, "/settings?done=validation").await,
        Err(e) => refused(&state, &s, e).await,
    }
}

async fn rotate_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    if let Err(resp) = authorize(&state, &req, &s, &f.csrf, &f.code).await? {
        return Ok(resp);
    }
    match svc::rotate_webhook_secret(&state, &s.project.id, &actor(&s), &origin(&req)).await {
        Ok(secret) => {
            let items = json!([{"id": "webhook-secret", "label": "Webhook secret (Standard Webhooks: webhook-signature)", "value": secret}]);
            secret_page(&state, &req, &s, "New webhook secret", items,
                "Callbacks are signed with this secret from now on, retries of earlier ones included. Update your receiver now: the secret is shown only once.").await
        }
        Err(e) => refused(&state, &s, e).await,
    }
}

#[derive(Deserialize)]
pub struct BaseForm {
    #[serde(default)]
    base_currency: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

async fn base_currency(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<BaseForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    s.require_owner()?;
    if Currency::parse(&f.base_currency).is_none() {
        let e = SettingsError::Invalid {
            field: "base_currency",
            message: format!("{:?} is not a currency", f.base_currency),
        };
        return refused(&state, &s, e).await;
    }
    if let Err(resp) = authorize(&state, &req, &s, &f.csrf, &f.code).await? {
        return Ok(resp);
    }
    match svc::set_base_currency(
        &state,
        &s.project.id,
        &f.base_currency,
        &actor(&s),
        &origin(&req),
    )
    .await
    {
        Ok(()) => step_up::redirect_renewed(&state, &req, &s, "/settings?done=base_currency").await,
        Err(e) => refused(&state, &s, e).await,
    }
}
