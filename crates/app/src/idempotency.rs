//! Binds an `Idempotency-Key` to the one request it was first sent with:
//! the same method, path, query and body (JSON compared by value, not by
//! spelling). The same key with any other request answers 422
//! `token_mismatch` before a handler runs, whatever that request would
//! create. A retry of the same request passes, and the use case's tokens
//! then replay what the first attempt stored.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::{Fingerprint, TxToken};
use serde_json::Value;

use crate::app_store::AppStore;
use crate::problem::ApiError;
use crate::router::BODY_LIMIT;

/// The middleware; [`router`](crate::router::router) puts it on every
/// route that matched.
pub async fn bind_idempotency_key<S: AppStore>(
    State(store): State<S>,
    request: Request,
    next: Next,
) -> Response {
    if request.method().is_safe() {
        return next.run(request).await;
    }
    let Some(header) = request.headers().get("idempotency-key") else {
        return next.run(request).await;
    };
    let key: TxToken = match header.to_str().map(str::parse) {
        Ok(Ok(key)) => key,
        Ok(Err(invalid)) => return ApiError::from(invalid).into_response(),
        Err(_) => return ApiError::malformed("Idempotency-Key must be ASCII").into_response(),
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return ApiError::too_large().into_response();
    };
    let request_fingerprint = fingerprint(parts.method.as_str(), &parts.uri.to_string(), &bytes);
    if let Err(error) = store.bind_key(key, request_fingerprint).await {
        return ApiError::from(error).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// What a request asked for: its method, target and body, the body as a
/// JSON value when it is one (so key order and spacing do not count).
fn fingerprint(method: &str, target: &str, body: &[u8]) -> Fingerprint {
    match serde_json::from_slice::<Value>(body) {
        Ok(json) => Fingerprint::of(&(method, target, canonical(json))),
        Err(_) => Fingerprint::of(&(method, target, body)),
    }
}

/// `value` with every object's keys in sorted order, whatever order the
/// JSON map type keeps.
fn canonical(value: Value) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

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
