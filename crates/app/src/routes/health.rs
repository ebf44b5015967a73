//! `/health` and `/openapi.json`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::persistence::{Persistence, on_backend};
use crate::problem::{ApiError, ErrorBody};
use crate::routes::AppState;

/// The service is up and its store answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
    /// `memory` or `postgres`.
    store: &'static str,
}

/// 200 when the store answers, 503 when it does not.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    on_backend!(&state.backend, |store| store.ping().await)?;
    Ok(Json(Health {
        status: "ok",
        store: state.backend.name(),
    }))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::ApiDoc::openapi())
}
