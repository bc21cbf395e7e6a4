//! What a page answers when it cannot do what was asked: a rendered page that says what went
//! wrong and what to do, or a redirect to sign in. Never a raw 500 text; internal detail goes
//! to the log only.

use crate::db::DbError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Not signed in: go to sign-in, then back to `return_to`.
    #[error("sign-in required")]
    SignIn { return_to: Option<String> },
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("CSRF check failed")]
    Csrf,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl PageError {
    pub fn internal(e: impl std::fmt::Display) -> PageError {
        PageError::Internal(e.to_string())
    }
}

impl From<DbError> for PageError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(inner) => PageError::Unavailable(inner.to_string()),
            other => PageError::Internal(other.to_string()),
        }
    }
}

impl From<tera::Error> for PageError {
    fn from(e: tera::Error) -> Self {
        PageError::Internal(format!("template: {e:?}"))
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::SignIn { .. } => StatusCode::SEE_OTHER,
            PageError::Forbidden | PageError::Csrf => StatusCode::FORBIDDEN,
            PageError::NotFound => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, message) = match self {
            PageError::SignIn { return_to } => {
                let target = match return_to {
                    Some(r) => format!("/login?next={}", url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()),
                    None => "/login".to_string(),
                };
                return HttpResponse::SeeOther()
                    .insert_header(("Location", target))
                    .finish();
            }
            PageError::Forbidden => (
                "Not allowed",
                "Your role does not allow this. Ask an owner of your project if you need it.".to_string(),
            ),
            PageError::NotFound => (
                "Not found",
                "There is nothing here. It may have been removed, or the link is wrong.".to_string(),
            ),
            PageError::Csrf => (
                "Form expired",
                "This form was not accepted because it did not come from this page or your session changed. Go back, reload the page and try again.".to_string(),
            ),
            PageError::BadRequest(m) => ("Cannot do that", m.clone()),
            PageError::Unavailable(detail) => {
                tracing::warn!(%detail, "page unavailable");
                (
                    "Temporarily unavailable",
                    "The service cannot reach its database right now. Try again in a minute.".to_string(),
                )
            }
            PageError::Internal(detail) => {
                tracing::error!(%detail, "page failed");
                (
                    "Something went wrong",
                    "The request failed on our side and nothing was changed. Try again; if it keeps happening, tell your operator the time it happened.".to_string(),
                )
            }
        };
        let mut ctx = tera::Context::new();
        ctx.insert("title", title);
        ctx.insert("message", &message);
        ctx.insert("status", &self.status_code().as_u16());
        let body = super::TEMPLATES
            .render("errors/error.html", &ctx)
            .unwrap_or_else(|_| format!("{title}: {message}"));
        HttpResponse::build(self.status_code())
            .content_type("text/html; charset=utf-8")
            .body(body)
    }
}
