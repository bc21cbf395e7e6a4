//! What the merchant API answers when it says no. Stable shapes, from the seeds:
//! 401/403 `{"message": ...}`, 422 `{"errors": {field: message}}`, 400
//! `{"message": ..., "error_code": ...}` (plus `operator_code` and `operator_description` when
//! the operator gate refused). Internal detail is logged, never returned.

use crate::db::DbError;
use crate::domain::withdrawal::{FieldErrors, Refusal, RequestError};
use crate::notify::gate::GateRefusal;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// 401 `{"message":"Unauthorized"}`, 403 `{"message":"Forbidden"}` (and `ping`'s `OK`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageBody {
    pub message: String,
}

/// 400 business refusals (seed codes), 404 `resource_not_found`, 503 `service_unavailable` /
/// `rates_unavailable`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"message": "Not enough money on balance", "error_code": "balance_not_enough"}))]
pub struct ErrorBody {
    pub message: String,
    pub error_code: String,
    /// With `withdrawal_denied` only: the operator gate's code, 1 to 9 (seed 004; 3 also when
    /// the validation webhook gave no usable answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 9)]
    pub operator_code: Option<u8>,
    /// With `withdrawal_denied` only: the operator's description (or, for a code 3 the gate
    /// decided, what went wrong).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_description: Option<String>,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>, error_code: impl Into<String>) -> ErrorBody {
        ErrorBody {
            message: message.into(),
            error_code: error_code.into(),
            operator_code: None,
            operator_description: None,
        }
    }
}

/// 422: every field that is wrong, with what is wrong with it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"errors": {"amount": "must be a decimal string such as \"0.015\", not a JSON number"}}))]
pub struct FieldErrorsBody {
    /// Field name to what is wrong with it.
    pub errors: std::collections::BTreeMap<String, String>,
}

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
    /// The operator gate refused a new withdrawal (400 `withdrawal_denied`); nothing was
    /// created. Pages can show `GateRefusal::message()`.
    #[error("{0}")]
    DeniedByOperator(GateRefusal),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A refusal that will pass once a condition clears (503, with a code and reason).
    #[error("temporarily refused: {code}: {message}")]
    Temporary { code: &'static str, message: String },
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

impl From<GateRefusal> for ApiError {
    fn from(r: GateRefusal) -> Self {
        ApiError::DeniedByOperator(r)
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
            ApiError::Refused { .. } | ApiError::DeniedByOperator(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) | ApiError::Temporary { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = |m: &str| MessageBody { message: m.into() };
        let error = |m: String, code: &str| ErrorBody::new(m, code);
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized => res.json(message("Unauthorized")),
            ApiError::Forbidden => res.json(message("Forbidden")),
            ApiError::Fields(f) => res.json(FieldErrorsBody { errors: f.clone() }),
            ApiError::Refused { code, message } | ApiError::Temporary { code, message } => {
                res.json(error(message.clone(), code))
            }
            ApiError::DeniedByOperator(r) => res.json(ErrorBody {
                operator_code: Some(r.code.code()),
                operator_description: Some(r.description.clone()),
                ..error(r.message(), "withdrawal_denied")
            }),
            ApiError::NotFound(what) => {
                res.json(error(format!("{what} not found"), "resource_not_found"))
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "service unavailable");
                res.json(error(
                    "Service temporarily unavailable, retry later".into(),
                    "service_unavailable",
                ))
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                res.json(error("Internal error".into(), "internal_error"))
            }
        }
    }
}

/// A failed outgoing HTTP request (callback, Slack, rate feed, payout rail) in words, without
/// its URL: a merchant's callback or webhook URL, a feed's or a rail's, can carry a credential,
/// and these texts are logged and shown to the project's members.
pub fn describe_http_failure(e: reqwest::Error) -> String {
    if let Some(refused) = crate::notify::outbound::refusal_of(&e) {
        refused.to_string()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_redirect() {
        "redirect refused".into()
    } else {
        e.without_url().to_string()
    }
}
