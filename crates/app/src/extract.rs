//! Request parts, parsed into the API's types with its error format.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use domain::{Fingerprint, IfVersion, TxToken, Version};
use serde::Deserialize as _;
use serde::de::DeserializeOwned;

use crate::app_store::AppStore;
use crate::problem::ApiError;
use crate::router::BODY_LIMIT;

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

/// A write's JSON body and its `Idempotency-Key`, the key bound to this
/// request (method, target and body, the JSON compared by value) through
/// [`Store::bind_key`](domain::Store::bind_key) before the handler runs:
/// the same key with another request answers 422 `token_mismatch`. The
/// handler hands the key to its use case, which creates with it as a
/// token or runs its unit under it
/// ([`UnitOfWork::run_once`](domain::UnitOfWork::run_once)): a retry of
/// the same request then answers what the first one did and writes nothing
/// twice. Without the header the request gets a fresh key: a lost COMMIT
/// is still settled by it, but the client cannot retry safely.
pub struct IdempotentJson<T> {
    /// The request's idempotency key.
    pub key: TxToken,
    /// The body.
    pub body: T,
}

impl<S: AppStore, T: DeserializeOwned> FromRequest<S> for IdempotentJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, store: &S) -> Result<Self, ApiError> {
        let (key, request) = bind_key(request, store).await?;
        let ApiJson(body) = ApiJson::from_request(request, store).await?;
        Ok(Self { key, body })
    }
}

/// The `Idempotency-Key` of a write that takes no body (a delete, an
/// action such as "place"), bound to its request as [`IdempotentJson`]'s.
pub struct IdempotencyKey(pub TxToken);

impl<S: AppStore> FromRequest<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request(request: Request, store: &S) -> Result<Self, ApiError> {
        let (key, _) = bind_key(request, store).await?;
        Ok(Self(key))
    }
}

/// The request's `Idempotency-Key`, bound to the request, or a fresh key
/// when it has none; and the request, to read its body from.
async fn bind_key<S: AppStore>(
    request: Request,
    store: &S,
) -> Result<(TxToken, Request), ApiError> {
    let Some(header) = request.headers().get("idempotency-key") else {
        return Ok((TxToken::generate(), request));
    };
    let key: TxToken = header
        .to_str()
        .map_err(|_| ApiError::malformed("Idempotency-Key must be ASCII"))?
        .parse()?;
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::too_large())?;
    let asked = fingerprint(parts.method.as_str(), &parts.uri.to_string(), &bytes);
    store.bind_key(key, asked).await?;
    Ok((
        key,
        Request::from_parts(parts, axum::body::Body::from(bytes)),
    ))
}

/// What a request asked for: its method, target and body, the body as a
/// JSON value when it is one (so key order and spacing do not count).
fn fingerprint(method: &str, target: &str, body: &[u8]) -> Fingerprint {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => Fingerprint::of(&(method, target, canonical(json))),
        Err(_) => Fingerprint::of(&(method, target, body)),
    }
}

/// `value` with every object's keys in sorted order, whatever order the
/// JSON map type keeps.
fn canonical(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.cmp(b));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The `If-Match` header, as the versions a conditional write accepts.
///
/// If-Match uses the strong comparison (RFC 9110, 13.1.1): a weak tag
/// (`W/"2"`) never matches, and neither does anything that is not an entity
/// tag: a header holding none that matches answers 412. `*` or no header
/// accepts any version.
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
        let strong = text.split(',').filter_map(|tag| {
            // Ours are "<version>", at most 19 digits (the documented pattern).
            tag.trim()
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .filter(|t| (1..=19).contains(&t.len()))
                .and_then(|t| t.parse::<u64>().ok())
                .map(Version::new)
        });
        Ok(Self(IfVersion::OneOf(strong.collect())))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Self::parse(&parts.headers)
    }
}

/// Reads a JSON integer, also when written with a zero fraction (`2048.0`):
/// JSON Schema's `integer` admits it, and so must the service.
pub fn integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_i64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| {
                    #[expect(
                        clippy::cast_possible_truncation,
                        reason = "a whole number below 2^53 converts exactly"
                    )]
                    let whole = f as i64;
                    whole
                })
        })
        .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {number}")))
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
    fn what_is_no_entity_tag_matches_nothing() {
        for junk in ["3", "\"v3\"", "0", "\"123456789012345678901\""] {
            let parsed = if_match(junk).unwrap().0;
            assert_eq!(parsed, IfVersion::OneOf(vec![]), "{junk}");
        }
    }

    #[test]
    fn the_same_json_spelled_differently_is_the_same_request() {
        let a = fingerprint("POST", "/users", br#"{"b": 1, "a": {"y": 2, "x": [3]}}"#);
        let b = fingerprint("POST", "/users", br#"{"a":{"x":[3],"y":2},"b":1}"#);
        assert_eq!(a, b);
    }

    #[test]
    fn another_operation_or_body_is_another_request() {
        let body = br#"{"a": 1}"#;
        let first = fingerprint("POST", "/users", body);
        assert_ne!(first, fingerprint("POST", "/orders/for-new-user", body));
        assert_ne!(first, fingerprint("PATCH", "/users", body));
        assert_ne!(first, fingerprint("POST", "/users", br#"{"a": 2}"#));
        assert_ne!(first, fingerprint("POST", "/users?x=1", body));
    }
}
