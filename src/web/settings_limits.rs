//! Editing one row of limits: a scope's base-currency defaults or one currency's override
//! (in that currency's own units). An empty window means no limit in that window.

use super::error::PageError;
use super::settings::{authorize, crypto_currencies, refused, show_limit};
use super::users::{form_error, unprocessable};
use super::{page_context, render, step_up};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::SignedIn;
use crate::db::audit::Actor;
use crate::db::limits;
use crate::domain::money::{Currency, CurrencyKind, parse_decimal};
use crate::domain::policy::{LimitSet, Scope};
use crate::service::projects::{self as psvc, ProjectError};
use crate::service::settings::SettingsError;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/settings/limits", web::get().to(edit_page))
        .route("/settings/limits", web::post().to(save))
        .route("/settings/limits/remove", web::post().to(remove));
}

/// Which row: a scope, and `None` for the base-currency defaults or a crypto currency.
struct Row {
    scope: Scope,
    currency: Option<Currency>,
}

fn parse_row(scope: &str, currency: &str) -> Result<Row, SettingsError> {
    let scope = Scope::parse(scope).ok_or_else(|| SettingsError::Invalid {
        field: "scope",
        message: "choose api or dashboard".into(),
    })?;
    let currency = match currency.trim() {
        "" | "default" | "*" => None,
        c => Some(
            Currency::parse(c)
                .filter(|c| c.kind() == CurrencyKind::Crypto)
                .ok_or_else(|| SettingsError::Invalid {
                    field: "currency",
                    message: format!("{c:?} is not a currency that can be withdrawn"),
                })?,
        ),
    };
    Ok(Row { scope, currency })
}

#[derive(Deserialize, Default)]
pub struct LimitsForm {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    per_operation: String,
    #[serde(default)]
    per_hour: String,
    #[serde(default)]
    per_day: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

/// The edit form for `row`, with the stored values or (after a refusal) what was typed.
async fn form(
    state: &AppState,
    s: &SignedIn,
    row: &Row,
    typed: Option<&LimitsForm>,
    error: Option<Value>,
) -> Result<HttpResponse, PageError> {
    s.require_owner()?;
    let code = row
        .currency
        .map_or(limits::DEFAULT_CURRENCY, Currency::code);
    let stored = limits::list(&state.db, &s.project.id)
        .await?
        .into_iter()
        .find(|(sc, c, _)| *sc == row.scope && c == code)
        .map(|(_, _, l)| l);
    let values = match typed {
        Some(f) => {
            json!({"per_operation": f.per_operation, "per_hour": f.per_hour, "per_day": f.per_day})
        }
        None => {
            let l = stored.unwrap_or_default();
            json!({"per_operation": show_limit(l.per_operation), "per_hour": show_limit(l.per_hour), "per_day": show_limit(l.per_day)})
        }
    };
    let mut ctx = page_context(s, "settings");
    ctx.insert("scope", row.scope.as_str());
    ctx.insert("currency", row.currency.map_or("default", Currency::code));
    let unit = row
        .currency
        .map_or(s.project.base_currency.clone(), |c| c.code().to_string());
    ctx.insert("unit", &unit);
    ctx.insert("is_default", &row.currency.is_none());
    ctx.insert("exists", &stored.is_some());
    ctx.insert("values", &values);
    ctx.insert("currencies", &crypto_currencies());
    ctx.insert("error", &error);
    render("settings/limits.html", &ctx)
}

#[derive(Deserialize)]
pub struct RowQuery {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    currency: String,
}

async fn edit_page(
    state: web::Data<AppState>,
    s: SignedIn,
    q: web::Query<RowQuery>,
) -> Result<HttpResponse, PageError> {
    s.require_owner()?;
    match parse_row(&q.scope, &q.currency) {
        Ok(row) => form(&state, &s, &row, None, None).await,
        Err(e) => refused(&state, &s, e).await,
    }
}

/// One window: empty is no limit; otherwise a plain positive decimal with no more decimals
/// than `unit` has.
fn parse_window(text: &str, unit: Currency) -> Result<Option<Decimal>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let v = parse_decimal(t).map_err(|_| {
        format!(
            "{t:?} is not a plain decimal number such as 1000 or 0.5 (leave it empty for no limit)"
        )
    })?;
    if v <= Decimal::ZERO {
        return Err("must be greater than zero (leave it empty for no limit)".into());
    }
    if v.normalize().scale() > unit.scale() {
        return Err(format!(
            "{unit} amounts have at most {} decimal places",
            unit.scale()
        ));
    }
    Ok(Some(v))
}

async fn save(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<LimitsForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    s.require_owner()?;
    let row = match parse_row(&f.scope, &f.currency) {
        Ok(r) => r,
        Err(e) => return refused(&state, &s, e).await,
    };
    let unit = match row.currency {
        Some(c) => c,
        None => Currency::parse(&s.project.base_currency)
            .ok_or_else(|| PageError::internal("project base currency unknown"))?,
    };
    let mut set = LimitSet::default();
    for (label, text, slot) in [
        ("Per operation", &f.per_operation, &mut set.per_operation),
        ("Per hour", &f.per_hour, &mut set.per_hour),
        ("Per day", &f.per_day, &mut set.per_day),
    ] {
        match parse_window(text, unit) {
            Ok(v) => *slot = v,
            Err(m) => {
                let err = form_error(label, &m);
                return form(&state, &s, &row, Some(&f), Some(err))
                    .await
                    .map(unprocessable);
            }
        }
    }
    if let Some(m) = step_up::check(&state, &req, &s, &f.code).await? {
        let err = form_error("Verification code", &m);
        return form(&state, &s, &row, Some(&f), Some(err))
            .await
            .map(unprocessable);
    }
    let result = psvc::replace_limits(
        &state.db,
        &s.project.id,
        row.scope,
        row.currency,
        set,
        &Actor::User(s.user.id.clone()),
        &origin(&req),
        state.now(),
    )
    .await;
    match result {
        Ok(_) => step_up::redirect_renewed(&state, &req, &s, "/settings?done=limits").await,
        Err(ProjectError::Invalid(m)) => form(&state, &s, &row, Some(&f), Some(form_error("", &m)))
            .await
            .map(unprocessable),
        Err(ProjectError::Db(d)) => Err(d.into()),
        Err(e) => Err(PageError::internal(e)),
    }
}

async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<LimitsForm>,
) -> Result<HttpResponse, PageError> {
    let row = match parse_row(&f.scope, &f.currency) {
        Ok(r) => r,
        Err(e) => {
            csrf::check(&state, &req, &s.session, &f.csrf)?;
            return refused(&state, &s, e).await;
        }
    };
    let Some(currency) = row.currency else {
        csrf::check(&state, &req, &s.session, &f.csrf)?;
        let e = SettingsError::Invalid {
            field: "currency",
            message: "the base-currency limits cannot be removed; empty their windows instead"
                .into(),
        };
        return refused(&state, &s, e).await;
    };
    if let Err(resp) = authorize(&state, &req, &s, &f.csrf, &f.code).await? {
        return Ok(resp);
    }
    let result = psvc::remove_limit_override(
        &state.db,
        &s.project.id,
        row.scope,
        currency,
        &Actor::User(s.user.id.clone()),
        &origin(&req),
        state.now(),
    )
    .await;
    match result {
        Ok(()) => {
            step_up::redirect_renewed(&state, &req, &s, "/settings?done=override_removed").await
        }
        Err(ProjectError::Invalid(m)) => refused(&state, &s, SettingsError::Refused(m)).await,
        Err(ProjectError::Db(d)) => Err(d.into()),
        Err(e) => Err(PageError::internal(e)),
    }
}
