//! Approval tiers (`/settings/tiers`), for owners: per scope, "at or above AMOUNT of the base
//! currency, N distinct approvers". Adding and removing each ask for a fresh code, renew the
//! session id and are audited (`service::tiers`).

use super::error::PageError;
use super::{page_context, render, step_up};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::SignedIn;
use crate::db::approvals;
use crate::db::audit::Actor;
use crate::domain::money::Currency;
use crate::domain::policy::Tier;
use crate::service::settings::SettingsError;
use crate::service::tiers::{self, MAX_APPROVERS};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/settings/tiers", web::get().to(tiers_page))
        .route("/settings/tiers", web::post().to(add))
        .route("/settings/tiers/remove", web::post().to(remove));
}

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct TierForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    min: String,
    #[serde(default)]
    approvers: String,
    #[serde(default)]
    code: String,
}

/// Field name to what is wrong with it ("form" for the form as a whole).
type Errors = BTreeMap<String, String>;

fn base(s: &SignedIn) -> Result<Currency, PageError> {
    Currency::parse(&s.project.base_currency)
        .ok_or_else(|| PageError::internal("project base currency unknown"))
}

async fn page(
    state: &AppState,
    s: &SignedIn,
    typed: Option<&TierForm>,
    errors: &Errors,
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    s.require_owner()?;
    let mut rows: Vec<(String, rust_decimal::Decimal, u32)> =
        approvals::tiers(&state.db, &s.project.id)
            .await?
            .into_iter()
            .map(|(scope, t)| (scope.as_str().to_string(), t.min_base_amount, t.approvers))
            .collect();
    rows.sort();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(scope, min, n)| {
            json!({"scope": scope, "min": min.normalize().to_string(), "approvers": n})
        })
        .collect();
    let mut shown = typed.cloned().unwrap_or_else(|| TierForm {
        scope: "api".into(),
        approvers: "2".into(),
        ..TierForm::default()
    });
    shown.code.clear();
    shown.csrf.clear();
    let mut ctx = page_context(s, "settings");
    ctx.insert("tiers", &rows);
    ctx.insert("f", &shown);
    ctx.insert("errors", errors);
    ctx.insert("notice", &notice);
    ctx.insert("max_approvers", &MAX_APPROVERS);
    let mut resp = render("settings/tiers.html", &ctx)?;
    *resp.status_mut() = status;
    Ok(resp)
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

async fn tiers_page(
    state: web::Data<AppState>,
    s: SignedIn,
    q: web::Query<DoneQuery>,
) -> Result<HttpResponse, PageError> {
    let notice = match q.done.as_deref() {
        Some("set") => Some("Tier saved. It applies to withdrawals created from now on."),
        Some("removed") => Some("Tier removed."),
        _ => None,
    };
    page(&state, &s, None, &Errors::new(), notice, StatusCode::OK).await
}

/// A refusal shown on the page (422), or the error to raise.
async fn refused(
    state: &AppState,
    s: &SignedIn,
    f: &TierForm,
    e: SettingsError,
) -> Result<HttpResponse, PageError> {
    let mut errors = Errors::new();
    match e {
        SettingsError::Invalid { field, message } => errors.insert(field.into(), message),
        SettingsError::Refused(m) => errors.insert("form".into(), m),
        SettingsError::NotFound => return Err(PageError::NotFound),
        SettingsError::Db(d) => return Err(d.into()),
        SettingsError::Internal(m) => return Err(PageError::Internal(m)),
    };
    page(
        state,
        s,
        Some(f),
        &errors,
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

async fn code_refused(
    state: &AppState,
    req: &HttpRequest,
    s: &SignedIn,
    f: &TierForm,
) -> Result<Option<HttpResponse>, PageError> {
    match step_up::check(state, req, s, &f.code).await? {
        None => Ok(None),
        Some(m) => refused(
            state,
            s,
            f,
            SettingsError::Invalid {
                field: "code",
                message: m,
            },
        )
        .await
        .map(Some),
    }
}

async fn add(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<TierForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    s.require_owner()?;
    let parsed = tiers::parse_scope(&f.scope).and_then(|scope| {
        let min = tiers::parse_min(
            &f.min,
            base(&s).map_err(|e| SettingsError::Internal(e.to_string()))?,
        )?;
        let approvers = tiers::parse_approvers(&f.approvers)?;
        Ok((
            scope,
            Tier {
                min_base_amount: min,
                approvers,
            },
        ))
    });
    let (scope, tier) = match parsed {
        Ok(p) => p,
        Err(e) => return refused(&state, &s, &f, e).await,
    };
    if let Some(resp) = code_refused(&state, &req, &s, &f).await? {
        return Ok(resp);
    }
    let actor = Actor::User(s.user.id.clone());
    match tiers::set(&state, &s.project.id, scope, tier, &actor, &origin(&req)).await {
        Ok(()) => step_up::redirect_renewed(&state, &req, &s, "/settings/tiers?done=set").await,
        Err(e) => refused(&state, &s, &f, e).await,
    }
}

async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<TierForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    s.require_owner()?;
    let parsed = tiers::parse_scope(&f.scope).and_then(|scope| {
        let min = tiers::parse_min(
            &f.min,
            base(&s).map_err(|e| SettingsError::Internal(e.to_string()))?,
        )?;
        Ok((scope, min))
    });
    let (scope, min) = match parsed {
        Ok(p) => p,
        Err(e) => return refused(&state, &s, &f, e).await,
    };
    if let Some(resp) = code_refused(&state, &req, &s, &f).await? {
        return Ok(resp);
    }
    let actor = Actor::User(s.user.id.clone());
    match tiers::remove(&state, &s.project.id, scope, min, &actor, &origin(&req)).await {
        Ok(()) => step_up::redirect_renewed(&state, &req, &s, "/settings/tiers?done=removed").await,
        Err(e) => refused(&state, &s, &f, e).await,
    }
}
