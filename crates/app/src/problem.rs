//! The service's one error type: every failure becomes
//! `{"error": {"code": "...", "message": "..."}}` with a fitting status.

use std::convert::Infallible;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::example::{InvalidLine, InvalidName, InvalidUsername, OrderError};
use domain::{InvalidId, InvalidToken, RepositoryError};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `validation`, `not_found`,
    /// `already_exists`, `token_mismatch`, `conflict`,
    /// `precondition_failed`, `payload_too_large`, `unsupported_media_type`,
    /// `timeout`, `unavailable`, `internal`.
    code: &'static str,
    /// For people; may change.
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 422: well-formed input that breaks a rule of the API or the domain.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }

    /// 400: input that cannot even be read (bad JSON, a malformed id).
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation", message)
    }

    /// 412: `If-Match` names a version that is no longer current.
    pub fn precondition_failed(current: domain::Version) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            format!("the resource is at version {current}, not the one If-Match names"),
        )
    }

    /// 504: the request's deadline passed.
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the request did not finish in time; a create retried with its Idempotency-Key is safe",
        )
    }

    /// 413: the body is over the limit.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is over the 64 KiB limit",
        )
    }

    /// 415: the body is not `application/json`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        )
    }

    /// 500, with nothing of the cause: that goes to the log.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side",
        )
    }

    /// 404 for a path nothing is served at.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Lets handlers' units of work refuse with an API error (`?` lifts it into
/// `RepositoryError::Domain`).
impl domain::DomainError for ApiError {}

impl From<Infallible> for ApiError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

impl<E: Into<ApiError>> From<RepositoryError<E>> for ApiError {
    fn from(error: RepositoryError<E>) -> Self {
        use RepositoryError as R;
        match error {
            R::NotFound { kind, id } => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{kind} {id} not found"),
            ),
            R::AlreadyExists { kind, id } => Self::new(
                StatusCode::CONFLICT,
                "already_exists",
                format!("{kind} {id} already exists"),
            ),
            R::Duplicate { kind, key } => Self::new(
                StatusCode::CONFLICT,
                "already_exists",
                format!("a {kind} with this {} already exists", field_of(&key)),
            ),
            R::TokenMismatch { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "token_mismatch",
                "this Idempotency-Key was already used for a different request",
            ),
            R::Conflict { kind, id, attempts } => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{kind} {id} kept changing concurrently ({attempts} attempts); try again"),
            ),
            R::Timeout => Self::timeout(),
            R::OutcomeUnknown => {
                tracing::warn!("connection lost while committing; outcome unknown");
                Self::timeout()
            }
            R::Unavailable(source) => {
                tracing::error!(%source, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; try again shortly",
                )
            }
            R::Domain(e) => e.into(),
            R::Storage(source) => {
                tracing::error!(%source, "storage failure");
                Self::internal()
            }
            _ => Self::internal(),
        }
    }
}

/// `users_username_key` -> `username`: the column a unique constraint is on.
fn field_of(constraint: &str) -> &str {
    constraint
        .trim_end_matches("_key")
        .rsplit('_')
        .next()
        .unwrap_or(constraint)
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::TooManyLines => Self::validation(error.to_string()),
            _ => Self::new(StatusCode::CONFLICT, "conflict", error.to_string()),
        }
    }
}

macro_rules! validation_errors {
    ($($error:ty),+) => {$(
        impl From<$error> for ApiError {
            fn from(error: $error) -> Self {
                Self::validation(error.to_string())
            }
        }
    )+};
}
validation_errors!(InvalidUsername, InvalidName, InvalidLine);

impl From<InvalidId> for ApiError {
    fn from(error: InvalidId) -> Self {
        Self::malformed(error.to_string())
    }
}

impl From<InvalidToken> for ApiError {
    fn from(error: InvalidToken) -> Self {
        Self::malformed(format!("Idempotency-Key: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_column_of_a_unique_constraint() {
        assert_eq!(field_of("users_username_key"), "username");
    }

    #[test]
    fn storage_failures_are_opaque() {
        let error = ApiError::from(RepositoryError::<Infallible>::Storage(
            "secret detail".into(),
        ));
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!error.message.contains("secret"));
    }
}
