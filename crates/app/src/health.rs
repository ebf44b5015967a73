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
    /// How long the oldest domain event not yet published has waited, in
    /// milliseconds; `null` when none waits.
    #[schema(minimum = 0)]
    outbox_lag_ms: Option<u64>,
    /// What the outbox relay running in this process does (`publishing`,
    /// `standby`, `broker down: ..`), or `null` when none runs here.
    relay: Option<String>,
}

/// The relay run beside the API, if any, as `/health` reports it.
#[derive(Debug, Clone)]
pub struct RelayView(pub Option<tokio::sync::watch::Receiver<relay::RelayStatus>>);

/// 200 when the store answers, 503 when it does not.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn health<S: AppStore>(
    State(store): State<S>,
    relay: Option<axum::Extension<RelayView>>,
) -> Result<Json<Health>, ApiError> {
    store.ping().await?;
    let lag = store.outbox_lag().await?;
    let relay = relay
        .and_then(|axum::Extension(view)| view.0)
        .map(|watch| describe(&watch.borrow().state));
    Ok(Json(Health {
        status: "ok",
        store: store.name(),
        outbox_lag_ms: lag.map(|lag| u64::try_from(lag.as_millis()).unwrap_or(u64::MAX)),
        relay,
    }))
}

fn describe(state: &relay::RelayState) -> String {
    use relay::RelayState;
    match state {
        RelayState::Starting => "starting".to_owned(),
        RelayState::Standby => "standby".to_owned(),
        RelayState::Publishing => "publishing".to_owned(),
        RelayState::BrokerDown(why) => format!("broker down: {why}"),
        RelayState::DatabaseDown(why) => format!("database down: {why}"),
        RelayState::Stopped => "stopped".to_owned(),
    }
}
