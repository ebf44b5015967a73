//! The router: endpoints, body limit, per-request deadline, request ids and
//! request logs.

mod actions;
mod health;
mod orders;
mod products;
pub(crate) mod users;

pub use actions::*;
pub use health::*;
pub use orders::*;
pub use products::*;
pub use users::*;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::persistence::Backend;
use crate::problem::ApiError;

/// The largest request body accepted; larger ones answer 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Where the data lives.
    pub backend: Backend,
}

/// The whole API.
pub fn router(state: AppState, deadline: Duration) -> Router {
    Router::new()
        .route("/users", post(create_user).get(list_users))
        .route(
            "/users/{id}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/orders", post(create_order))
        .route("/orders/for-new-user", post(create_user_with_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/lines", post(add_line))
        .route("/orders/{id}/place", post(place_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/actions", get(list_actions))
        .route("/products", get(list_products))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::no_route() })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(deadline, enforce_deadline))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request| {
                        let request_id = request
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        tracing::info_span!(
                            "request",
                            method = %request.method(),
                            path = %request.uri().path(),
                            request_id
                        )
                    }),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}

/// Answers 504 when a request outlives its deadline. The handler's future is
/// dropped; the repositories make sure that leaves no transaction open.
async fn enforce_deadline(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout().into_response(),
    }
}
