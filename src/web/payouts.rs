//! Manual payouts (`/payouts/new`): a user with withdrawal rights fills in a withdrawal and
//! confirms it with a fresh code. The form is read by the merchant API's parser, created by
//! the same `create` (dashboard limits, the user as initiator), and refused before anything
//! is created when nobody else could approve it (see `service::payouts`).

use super::error::PageError;
use super::settings::crypto_currencies;
use super::{page_context, render, step_up};
use crate::api::origin;
use crate::auth::csrf;
use crate::auth::session::SignedIn;
use crate::crypto::random_token;
use crate::domain::withdrawal::{FieldErrors, NewWithdrawal, RequestError};
use crate::error::ApiError;
use crate::service::payouts::{self, PayoutError};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/payouts/new", web::get().to(new_page))
        .route("/payouts", web::post().to(create));
}

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct PayoutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    end_user_reference: String,
    #[serde(default)]
    foreign_id: String,
    /// Made when the form is shown: a form sent twice creates one payout.
    #[serde(default)]
    generated_id: String,
    #[serde(default)]
    code: String,
}

fn require_rights(s: &SignedIn) -> Result<(), PageError> {
    if s.user.can_use_withdrawal_rights() {
        Ok(())
    } else {
        Err(PageError::Forbidden)
    }
}

fn new_id() -> Result<String, PageError> {
    Ok(format!(
        "dash-{}",
        random_token::<9>().map_err(PageError::internal)?
    ))
}

/// The form with what was typed, field errors next to their fields, and a message above.
fn form(
    s: &SignedIn,
    f: &PayoutForm,
    fields: &FieldErrors,
    message: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut ctx = page_context(s, "payouts");
    let mut shown = f.clone();
    shown.code.clear();
    shown.csrf.clear();
    ctx.insert("f", &shown);
    ctx.insert("fields", fields);
    ctx.insert("message", &message);
    ctx.insert("currencies", &crypto_currencies());
    let mut resp = render("payouts/new.html", &ctx)?;
    *resp.status_mut() = status;
    Ok(resp)
}

async fn new_page(s: SignedIn) -> Result<HttpResponse, PageError> {
    require_rights(&s)?;
    let f = PayoutForm {
        generated_id: new_id()?,
        ..PayoutForm::default()
    };
    form(&s, &f, &FieldErrors::new(), None, StatusCode::OK)
}

/// The form as the merchant API's JSON body, so one parser reads both.
fn as_request(f: &PayoutForm) -> Value {
    let mut body = Map::new();
    let foreign_id = if f.foreign_id.trim().is_empty() {
        f.generated_id.trim()
    } else {
        f.foreign_id.trim()
    };
    for (k, v) in [
        ("foreign_id", foreign_id),
        ("currency", f.currency.trim()),
        ("amount", f.amount.trim()),
        ("address", f.address.trim()),
        ("tag", f.tag.trim()),
        ("end_user_reference", f.end_user_reference.trim()),
    ] {
        body.insert(k.into(), Value::String(v.into()));
    }
    Value::Object(body)
}

/// Which form field an API refusal code is about (`None`: the form as a whole).
fn field_of(code: &str) -> Option<&'static str> {
    match code {
        "coin_not_supported" => Some("currency"),
        "invalid_amount" | "amount_too_low" => Some("amount"),
        "invalid_address" => Some("address"),
        "duplication_request" => Some("foreign_id"),
        _ => None,
    }
}

fn one(field: &str, message: String) -> FieldErrors {
    let mut e = FieldErrors::new();
    e.insert(field.into(), message);
    e
}

async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    s: SignedIn,
    f: web::Form<PayoutForm>,
) -> Result<HttpResponse, PageError> {
    csrf::check(&state, &req, &s.session, &f.csrf)?;
    require_rights(&s)?;
    let mut f = f.into_inner();
    if f.generated_id.trim().is_empty() {
        f.generated_id = new_id()?;
    }
    let refused = StatusCode::UNPROCESSABLE_ENTITY;
    let parsed = match NewWithdrawal::parse(&as_request(&f)) {
        Ok(p) => p,
        Err(RequestError::Fields(e)) => return form(&s, &f, &e, None, refused),
        Err(RequestError::Refused(r)) => {
            return match field_of(r.code) {
                Some(field) => form(&s, &f, &one(field, r.message), None, refused),
                None => form(&s, &f, &FieldErrors::new(), Some(r.message), refused),
            };
        }
    };
    // Learn that nobody could approve it before asking for a code.
    let answer = |e: PayoutError| match e {
        PayoutError::NoRights => Err(PageError::Forbidden),
        PayoutError::NoApprover(m) => form(&s, &f, &FieldErrors::new(), Some(m), refused),
        PayoutError::Refused(ApiError::Fields(e)) => form(&s, &f, &e, None, refused),
        PayoutError::Refused(ApiError::Refused { code, message }) => match field_of(code) {
            Some(field) => form(&s, &f, &one(field, message), None, refused),
            None => form(
                &s,
                &f,
                &FieldErrors::new(),
                Some(format!("{message} ({code})")),
                refused,
            ),
        },
        PayoutError::Refused(ApiError::Temporary { code, message }) => form(
            &s,
            &f,
            &FieldErrors::new(),
            Some(format!("{message} ({code})")),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        PayoutError::Refused(ApiError::DeniedByOperator(r)) => form(
            &s,
            &f,
            &FieldErrors::new(),
            Some(format!("{} (withdrawal_denied)", r.message())),
            refused,
        ),
        PayoutError::Refused(ApiError::Unavailable(d)) => Err(PageError::Unavailable(d)),
        PayoutError::Refused(other) => Err(PageError::internal(other)),
    };
    if let Err(e) = payouts::check_approvable(&state, &s.project, &s.user, &parsed).await {
        return answer(e);
    }
    if let Some(m) = step_up::check(&state, &req, &s, &f.code).await? {
        return form(&s, &f, &one("code", m), None, refused);
    }
    match payouts::create(&state, &s.project, &s.user, parsed, &origin(&req)).await {
        Ok(w) => {
            step_up::redirect_renewed(
                &state,
                &req,
                &s,
                &format!("/withdrawals/{}?created=1", w.id),
            )
            .await
        }
        Err(e) => answer(e),
    }
}
