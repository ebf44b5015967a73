//! The service's one error type: every failure becomes
//! `{"error": {"code": "...", "message": "..."}}` with a fitting status.
//!
//! Errors are logged once, when they become a response, so a fault that a
//! unit of work retried away never shows up as an error line.

use std::convert::Infallible;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::{BoxError, InvalidId, InvalidToken, RepositoryError, StaleVersion};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The cause, for the log only (never sent).
    source: Option<BoxError>,
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
    /// `method_not_allowed`, `already_exists`, `token_mismatch`, `conflict`,
    /// `precondition_failed`, `payload_too_large`, `unsupported_media_type`,
    /// `timeout`, `outcome_unknown`, `unavailable`, `internal`.
    code: &'static str,
    /// For people; may change.
    message: String,
}

impl ApiError {
    /// An error answer with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            source: None,
        }
    }

    fn caused_by(mut self, source: BoxError) -> Self {
        self.source = Some(source);
        self
    }

    /// 422: well-formed input that breaks a rule of the API or the domain.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }

    /// 400: input that cannot even be read (bad JSON, a malformed id).
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation", message)
    }

    /// 409: the request conflicts with the resource's state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
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

    /// 405 for a method the path does not serve.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not serve that method; /openapi.json lists the ones it does",
        )
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
        let cause = self.source.as_ref().map(ToString::to_string);
        if self.status.is_server_error() {
            // 500 is a bug or a schema mismatch; 503/504 are the store's
            // weather, already retried within the deadline.
            if self.status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(code = self.code, cause, "request failed");
            } else {
                tracing::warn!(code = self.code, cause, "request failed");
            }
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

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
                format!("a {kind} with this {key} already exists"),
            ),
            R::TokenMismatch { .. } => token_mismatch(),
            R::Conflict { kind, id, attempts } => Self::conflict(format!(
                "{kind} {id} kept changing concurrently ({attempts} attempts); try again"
            )),
            R::Timeout => Self::timeout(),
            R::LockLost { .. } => Self::conflict(
                "the request's hold on its key expired before it finished; re-read and retry",
            ),
            R::OutcomeUnknown => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "outcome_unknown",
                "the store stopped answering while committing: the change may or may not have \
                 been made. Re-read the resource before retrying (a create retried with its \
                 Idempotency-Key is always safe)",
            ),
            R::Unavailable(source) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is unavailable; try again shortly",
            )
            .caused_by(source),
            R::Domain(e) => e.into(),
            R::Storage(source) => Self::internal().caused_by(source),
            _ => Self::internal(),
        }
    }
}

/// 422: an Idempotency-Key already used for a different request.
pub fn token_mismatch() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "token_mismatch",
        "this Idempotency-Key was already used for a different request",
    )
}

impl From<StaleVersion> for ApiError {
    fn from(stale: StaleVersion) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            format!(
                "the resource is at version {}, not the one If-Match names",
                stale.current
            ),
        )
    }
}

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
    fn a_duplicate_names_the_key_as_declared() {
        let error = ApiError::from(RepositoryError::<Infallible>::Duplicate {
            kind: "stock item",
            key: "order_ref".to_owned(),
        });
        assert_eq!(error.status, StatusCode::CONFLICT);
        assert_eq!(
            error.message,
            "a stock item with this order_ref already exists"
        );
    }

    #[test]
    fn storage_failures_are_opaque() {
        let error = ApiError::from(RepositoryError::<Infallible>::Storage(
            "secret detail".into(),
        ));
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!error.message.contains("secret"));
    }

    /// Records the level of every event.
    struct Levels(std::sync::Arc<std::sync::Mutex<Vec<tracing::Level>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Levels {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.lock().unwrap().push(*event.metadata().level());
        }
    }

    #[test]
    fn a_store_fault_is_logged_once_when_answered_and_never_as_an_error() {
        use tracing_subscriber::layer::SubscriberExt;
        let levels = std::sync::Arc::default();
        let subscriber =
            tracing_subscriber::registry().with(Levels(std::sync::Arc::clone(&levels)));
        tracing::subscriber::with_default(subscriber, || {
            let error = ApiError::from(RepositoryError::<Infallible>::Unavailable(
                "connection reset".into(),
            ));
            assert!(
                levels.lock().unwrap().is_empty(),
                "converting logs nothing: a unit of work may still retry the fault away"
            );
            assert_eq!(
                error.into_response().status(),
                StatusCode::SERVICE_UNAVAILABLE
            );
        });
        assert_eq!(*levels.lock().unwrap(), [tracing::Level::WARN]);
    }

    #[test]
    fn an_unknown_outcome_has_its_own_code_and_says_to_re_read() {
        let error = ApiError::from(RepositoryError::<Infallible>::OutcomeUnknown);
        assert_eq!(error.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(error.code, "outcome_unknown");
        assert!(error.message.contains("Re-read"), "{}", error.message);
        assert_ne!(error.message, ApiError::timeout().message);
    }
}
