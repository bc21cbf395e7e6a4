//! What the admin API answers when it says no: always `{"error": {"code", "message"}}` (plus
//! `details` where there is more to say), with a stable `code` per case. Internal detail is
//! logged, never returned.
//!
//! | status | codes |
//! | --- | --- |
//! | 400 | `invalid_request`, `invalid_transition` |
//! | 401 | `invalid_credentials` (token request), `invalid_token`, `token_expired`, `token_revoked` |
//! | 403 | `self_approval`, `no_withdrawal_rights`, `owner_required`, `new_approver_hold` |
//! | 404 | `not_found` |
//! | 409 | `not_claimed`, `claimed_by_other`, `already_decided`, `already_voted` |
//! | 429 | `too_many_attempts` (token request; `Retry-After` says when to try again) |
//! | 503 | `service_unavailable` |
//! | 500 | `internal_error` |

use crate::clock::rfc3339;
use crate::db::DbError;
use crate::domain::approval::Ineligible;
use crate::service::approvals::DecideError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// The error body of every admin API refusal.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "claimed_by_other", "message": "claimed by bob@acme.test until 2026-01-01T10:15:00Z: only they can decide it until then", "details": {"claimed_by": "bob@acme.test", "until": "2026-01-01T10:15:00Z"}}}))]
pub struct AdminErrorBody {
    pub error: AdminErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminErrorDetail {
    /// Stable: `invalid_request`, `invalid_transition`, `invalid_credentials`,
    /// `invalid_token`, `token_expired`, `token_revoked`, `self_approval`,
    /// `no_withdrawal_rights`, `owner_required`, `new_approver_hold`, `not_found`, `not_claimed`,
    /// `claimed_by_other`, `already_decided`, `already_voted`, `too_many_attempts`,
    /// `service_unavailable`, `internal_error`.
    pub code: String,
    /// For people; may change.
    pub message: String,
    /// `claimed_by_other`: `claimed_by`, `until`; `already_decided`: `status`, `by`, `at`;
    /// `too_many_attempts`: `retry_after_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
    /// Logged, never shown.
    internal: Option<String>,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> AdminError {
        AdminError {
            status,
            code,
            message: message.into(),
            details: None,
            internal: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> AdminError {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn invalid_transition(message: impl Into<String>) -> AdminError {
        Self::new(StatusCode::BAD_REQUEST, "invalid_transition", message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> AdminError {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// Over the per-address limit on password attempts (`auth::throttle`).
    pub fn too_many_attempts(retry_after_secs: u64) -> AdminError {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!(
                "Too many sign-in attempts from this address. Try again in {retry_after_secs} seconds."
            ),
        )
        .with_details(json!({"retry_after_secs": retry_after_secs}))
    }

    pub fn not_found(what: &str) -> AdminError {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn internal(detail: impl std::fmt::Display) -> AdminError {
        AdminError {
            internal: Some(detail.to_string()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error",
            )
        }
    }

    fn with_details(mut self, details: Value) -> AdminError {
        self.details = Some(details);
        self
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<DbError> for AdminError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(inner) => AdminError {
                internal: Some(inner.to_string()),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "Service temporarily unavailable, retry later",
                )
            },
            other => AdminError::internal(other),
        }
    }
}

impl From<DecideError> for AdminError {
    fn from(e: DecideError) -> Self {
        let code = e.code();
        let message = e.to_string();
        match e {
            DecideError::NotFound => AdminError::not_found("withdrawal"),
            DecideError::Ineligible(Ineligible::Held { until }) => {
                Self::new(StatusCode::FORBIDDEN, code, message)
                    .with_details(json!({"approver_from": rfc3339(until)}))
            }
            DecideError::Ineligible(_) => Self::new(StatusCode::FORBIDDEN, code, message),
            DecideError::ClaimedByOther { by, until } => {
                Self::new(StatusCode::CONFLICT, code, message)
                    .with_details(json!({"claimed_by": by, "until": rfc3339(until)}))
            }
            DecideError::AlreadyDecided { status, by, at } => {
                Self::new(StatusCode::CONFLICT, code, message).with_details(json!({
                    "status": status.as_str(), "by": by, "at": rfc3339(at)
                }))
            }
            DecideError::AlreadyVoted { .. } | DecideError::NotClaimed => {
                Self::new(StatusCode::CONFLICT, code, message)
            }
            DecideError::Db(d) => d.into(),
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(detail) = &self.internal {
            if self.status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(%detail, "admin API: service unavailable");
            } else {
                tracing::error!(%detail, "admin API: internal error");
            }
        }
        let mut res = HttpResponse::build(self.status);
        if matches!(
            self.code,
            "invalid_token" | "token_expired" | "token_revoked"
        ) {
            // RFC 6750: the client should get a new token.
            res.insert_header((
                "WWW-Authenticate",
                "Bearer realm=\"countersign-admin\", error=\"invalid_token\"",
            ));
        }
        if let Some(secs) = self
            .details
            .as_ref()
            .filter(|_| self.code == "too_many_attempts")
            .and_then(|d| d["retry_after_secs"].as_u64())
        {
            res.insert_header(("Retry-After", secs.to_string()));
        }
        res.json(AdminErrorBody {
            error: AdminErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
        })
    }
}
