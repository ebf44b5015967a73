//! Request parts, parsed into the API's types with its error format.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use domain::{IfVersion, TxToken, Version};
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

/// The `If-Match` header, as the versions a conditional write accepts.
///
/// If-Match uses the strong comparison (RFC 9110, 13.1.1): a weak tag
/// (`W/"2"`) never matches, so a header of weak tags only accepts nothing
/// and the write answers 412. `*` or no header accepts any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfMatch(pub IfVersion);

impl IfMatch {
    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get("if-match") else {
            return Ok(Self(IfVersion::Any));
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::malformed("If-Match must be ASCII"))?
            .trim();
        if text == "*" {
            return Ok(Self(IfVersion::Any));
        }
        let mut strong = Vec::new();
        for tag in text.split(',').map(str::trim) {
            let (weak, tag) = match tag.strip_prefix("W/") {
                Some(tag) => (true, tag),
                None => (false, tag),
            };
            let version = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::malformed(format!(
                        "If-Match must hold ETags such as \"3\", got {:?}",
                        tag.chars().take(40).collect::<String>()
                    ))
                })?;
            if !weak {
                strong.push(Version::new(version));
            }
        }
        Ok(Self(IfVersion::OneOf(strong)))
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
    fn reads_listed_etags_and_any() {
        assert_eq!(
            if_match("\"3\"").unwrap(),
            IfMatch(IfVersion::exactly(Version::new(3)))
        );
        assert_eq!(
            if_match("\"3\", \"4\"").unwrap(),
            IfMatch(IfVersion::OneOf(vec![Version::new(3), Version::new(4)]))
        );
        assert_eq!(if_match("*").unwrap(), IfMatch(IfVersion::Any));
    }

    #[test]
    fn a_weak_tag_never_matches() {
        let weak = if_match("W/\"2\"").unwrap().0;
        assert!(weak.check(Version::new(2)).is_err(), "strong comparison");
        let mixed = if_match("W/\"2\", \"3\"").unwrap().0;
        assert!(mixed.check(Version::new(2)).is_err());
        assert!(mixed.check(Version::new(3)).is_ok());
    }

    #[test]
    fn rejects_unquoted_or_non_numeric_tags() {
        assert_eq!(if_match("3").unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            if_match("\"v3\"").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
