//! `GET /metrics`: the process's metrics in Prometheus' text format. The
//! store records its own through the `metrics` facade (operations by kind,
//! name and outcome, retries by cause, pool waits, waiters and timeouts,
//! keyed holds: `storage::metrics` lists them), the relay its own
//! (`relay_events_published_total`, `relay_publishing`,
//! `relay_consumer_parked_total`); this module adds
//! every request's duration by route and status, and samples the pool
//! sizes and the outbox's lag when scraped.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::app_store::AppStore;

/// Latency buckets, in seconds: 1 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's recorder, installed on first use. The `metrics` facade has
/// one recorder per process, so services built in one process (tests) share
/// it; a program embedding the service that installed its own first keeps
/// its own, and `/metrics` then shows nothing.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // `set_buckets` fails only on an empty list.
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics stays empty");
            }
            storage::metrics::describe();
            relay::describe_metrics();
            metrics::describe_histogram!(
                "http_request_duration_seconds",
                metrics::Unit::Seconds,
                "Requests, by method, route and status"
            );
            metrics::describe_gauge!(
                "outbox_lag_seconds",
                metrics::Unit::Seconds,
                "Age of the oldest event not yet published (0: none waits), at the last scrape"
            );
            handle
        })
        .clone()
}

/// Samples what is only known on demand (the pools' sizes), just before a
/// scrape; chosen at startup with the store.
#[derive(Clone)]
pub struct Sampler(pub Arc<dyn Fn() + Send + Sync>);

/// Drains histogram samples into their buckets now and then, so that their
/// memory stays bounded however rarely the service is scraped.
pub async fn upkeep(handle: PrometheusHandle, stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
        }
    }
}

/// The metrics, in the Prometheus text format (version 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus' text exposition format",
        content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics<S: AppStore>(
    State(store): State<S>,
    sampler: Option<axum::Extension<Sampler>>,
) -> Response {
    if let Some(axum::Extension(Sampler(sample))) = sampler {
        sample();
    }
    // A store that does not answer leaves the last value; `/health` says why.
    if let Ok(lag) = store.outbox_lag().await {
        metrics::gauge!("outbox_lag_seconds").set(lag.map_or(0.0, |lag| lag.as_secs_f64()));
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
        .into_response()
}

/// Records each request's duration as `http_request_duration_seconds`, by
/// method, route (the matched pattern, `/users/{id}`; `unmatched` for none)
/// and status.
pub async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_str().to_owned()
    )
    .record(started.elapsed());
    response
}
