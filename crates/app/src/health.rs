//! `/health`: whether the service's store answers.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app_store::AppStore;
use crate::problem::{ApiError, ErrorBody};

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
pub async fn health<S: AppStore>(State(store): State<S>) -> Result<Json<Health>, ApiError> {
    store.ping().await?;
    Ok(Json(Health {
        status: "ok",
        store: store.name(),
    }))
}
