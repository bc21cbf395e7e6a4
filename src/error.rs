//! What the merchant API answers when it says no. Stable shapes, from the seeds:
//! 401/403 `{"message": ...}`, 422 `{"errors": {field: message}}`, 400
//! `{"message": ..., "error_code": ...}`. Internal detail is logged, never returned.

use crate::db::DbError;
use crate::domain::withdrawal::{FieldErrors, Refusal, RequestError};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("invalid fields: {0:?}")]
    Fields(FieldErrors),
    #[error("refused: {code}: {message}")]
    Refused { code: &'static str, message: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Refused {
            code,
            message: message.into(),
        }
    }

    pub fn field(name: &str, message: impl Into<String>) -> ApiError {
        let mut e = FieldErrors::new();
        e.insert(name.to_string(), message.into());
        ApiError::Fields(e)
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(inner) => ApiError::Unavailable(inner.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::Refused {
            code: r.code,
            message: r.message,
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Fields(f) => ApiError::Fields(f),
            RequestError::Refused(r) => r.into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Fields(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Refused { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            ApiError::Unauthorized => json!({"message": "Unauthorized"}),
            ApiError::Forbidden => json!({"message": "Forbidden"}),
            ApiError::Fields(f) => json!({"errors": f}),
            ApiError::Refused { code, message } => json!({"message": message, "error_code": code}),
            ApiError::NotFound(what) => {
                json!({"message": format!("{what} not found"), "error_code": "resource_not_found"})
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "service unavailable");
                json!({"message": "Service temporarily unavailable, retry later", "error_code": "service_unavailable"})
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                json!({"message": "Internal error", "error_code": "internal_error"})
            }
        };
        HttpResponse::build(self.status_code()).json(body)
    }
}
