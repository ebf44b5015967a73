//! Request parts, parsed into the API's types with its error format.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use domain::{TxToken, Version};
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON body; unreadable ones answer 400, ones of the wrong shape 422.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

fn json_problem(rejection: &JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::unsupported_media_type(),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::validation(rejection.body_text()),
        _ => ApiError::malformed(rejection.body_text()),
    }
}

/// Query parameters; malformed ones answer 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| ApiError::malformed(rejection.body_text()))
    }
}

/// The `Idempotency-Key` header: the create's transaction token. Without
/// one, a create gets a fresh token and is not safe to retry.
pub struct IdempotencyKey(pub TxToken);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get("idempotency-key") {
            None => Ok(Self(TxToken::generate())),
            Some(value) => {
                let text = value
                    .to_str()
                    .map_err(|_| ApiError::malformed("Idempotency-Key must be ASCII"))?;
                Ok(Self(text.parse()?))
            }
        }
    }
}

/// The `If-Match` header: the versions a conditional write accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header (or `*`): any version.
    Any,
    /// One of these versions.
    Versions(Vec<Version>),
}

impl IfMatch {
    /// `Ok` when `current` is acceptable, 412 otherwise.
    pub fn check(&self, current: Version) -> Result<(), ApiError> {
        match self {
            Self::Versions(accepted) if !accepted.contains(&current) => {
                Err(ApiError::precondition_failed(current))
            }
            _ => Ok(()),
        }
    }

    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get("if-match") else {
            return Ok(Self::Any);
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::malformed("If-Match must be ASCII"))?
            .trim();
        if text == "*" {
            return Ok(Self::Any);
        }
        text.split(',')
            .map(|tag| {
                let tag = tag.trim();
                let tag = tag.strip_prefix("W/").unwrap_or(tag);
                tag.strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(Version::new)
                    .ok_or_else(|| {
                        ApiError::malformed(format!(
                            "If-Match must hold ETags such as \"3\", got {:?}",
                            tag.chars().take(40).collect::<String>()
                        ))
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self::Versions)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Self::parse(&parts.headers)
    }
}

/// The `ETag` for a version.
pub fn etag(version: Version) -> [(axum::http::HeaderName, String); 1] {
    [(axum::http::header::ETAG, format!("\"{version}\""))]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn if_match(value: &str) -> Result<IfMatch, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert("if-match", value.parse().unwrap());
        IfMatch::parse(&headers)
    }

    #[test]
    fn reads_strong_weak_and_listed_etags() {
        assert_eq!(
            if_match("\"3\"").unwrap(),
            IfMatch::Versions(vec![Version::new(3)])
        );
        assert_eq!(
            if_match("W/\"3\", \"4\"").unwrap(),
            IfMatch::Versions(vec![Version::new(3), Version::new(4)])
        );
        assert_eq!(if_match("*").unwrap(), IfMatch::Any);
    }

    #[test]
    fn rejects_unquoted_or_non_numeric_tags() {
        assert_eq!(if_match("3").unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            if_match("\"v3\"").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_stale_version_fails_the_precondition() {
        let stale = IfMatch::Versions(vec![Version::new(2)]);
        assert_eq!(
            stale.check(Version::new(3)).unwrap_err().status(),
            StatusCode::PRECONDITION_FAILED
        );
        assert!(stale.check(Version::new(2)).is_ok());
        assert!(IfMatch::Any.check(Version::new(9)).is_ok());
    }
}
