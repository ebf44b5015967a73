//! The router: the framework's routes (health, metrics, the OpenAPI
//! document), the application's, and the layers every request passes: body
//! limit, per-request deadline, request metrics, request ids and request
//! logs.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::path::Paths;
use utoipa_axum::PathItemExt as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use crate::app_store::AppStore;
use crate::problem::ApiError;
use crate::{health, metrics, openapi};

/// The largest request body accepted; larger ones answer 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The whole service on `store`. Every route is registered through
/// `routes!`, which documents it in `/openapi.json` too.
pub fn router<S: AppStore>(store: S, deadline: Duration) -> Router {
    let (routes, api) = OpenApiRouter::with_openapi(openapi::base())
        .routes(route!(health::health))
        .routes(documented(
            openapi::__path_openapi_json,
            openapi::openapi_json,
        ))
        .routes(route!(metrics::metrics))
        .merge(crate::example::http::routes()) // example-only
        .split_for_parts();
    let api = Arc::new(openapi::finish(api));
    routes
        // Routes only: an unknown path or method answers 404 or 405 whatever
        // the header holds.
        .route_layer(middleware::from_fn(causality_scope))
        .fallback(|| async { ApiError::no_route() })
        .layer(middleware::map_response(method_not_allowed_as_json))
        .layer(axum::Extension(api))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(deadline, enforce_deadline))
        .layer(middleware::from_fn(metrics::record_request))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    // Failed requests are logged once, by `ApiError`, at a
                    // level that tells a bug (500) from the store's weather.
                    TraceLayer::new_for_http().on_failure(()).make_span_with(
                        |request: &Request| {
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
                        },
                    ),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(store)
}

/// Routes a handler generic over the store `S` (in scope where it is
/// called) at the path and methods its `#[utoipa::path]` states, and
/// documents it with that: `router.routes(route!(users::get_user))` (a
/// module and a handler), one name per route. utoipa-axum's `routes!` does the same for plain
/// handlers, but cannot name the store type of a generic one.
macro_rules! route {
    ($module:ident :: $handler:ident) => {
        ::utoipa_axum::paste! {
            $crate::router::documented($module::[<__path_ $handler>], $module::$handler::<S>)
        }
    };
}
pub(crate) use route;

/// `handler` routed at the path and methods its `#[utoipa::path]` states,
/// and documented with it (what [`route!`] expands to).
#[expect(
    clippy::needless_pass_by_value,
    reason = "handlers are fn items, free to clone; by value keeps every call site plain"
)]
pub fn documented<Doc, H, T, S>(_doc: Doc, handler: H) -> UtoipaMethodRouter<S>
where
    Doc: utoipa::Path + utoipa::__dev::SchemaReferences + for<'t> utoipa::__dev::Tags<'t>,
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    let methods = Doc::methods();
    let mut operation = Doc::operation();
    let tags = Doc::tags();
    if !tags.is_empty() {
        let operation_tags = operation.tags.get_or_insert_with(Vec::new);
        operation_tags.extend(tags.iter().map(ToString::to_string));
    }
    let router = methods.iter().fold(MethodRouter::new(), |router, method| {
        router.on(method.to_method_filter(), handler.clone())
    });
    let mut paths = Paths::new();
    paths.add_path_operation(Doc::path(), methods, operation);
    let mut schemas = Vec::new();
    Doc::schemas(&mut schemas);
    (schemas, paths, router)
}

/// axum's own 405 carries the `Allow` header a client needs; this keeps
/// it and puts the error format in the body.
async fn method_not_allowed_as_json(response: Response) -> Response {
    if response.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(axum::http::header::ALLOW).cloned();
    let mut answer = ApiError::method_not_allowed().into_response();
    if let Some(allow) = allow {
        answer
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    answer
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

/// The header a client carries its causality token in, both ways.
pub const CAUSALITY_TOKEN: &str = "Causality-Token";

/// Runs the request in a causality scope (`storage::causality`) starting
/// at the client's `Causality-Token`: with a read replica, its reads see
/// at least what that token covers, and its writes raise it. The answer
/// carries the scope's highest position back.
async fn causality_scope(request: Request, next: Next) -> Response {
    let floor = match request.headers().get(CAUSALITY_TOKEN) {
        None => None,
        Some(value) => match value.to_str().ok().map(str::parse) {
            Some(Ok(token)) => Some(token),
            _ => {
                return ApiError::malformed(format!(
                    "{CAUSALITY_TOKEN}: {}",
                    storage::causality::NotAPosition
                ))
                .into_response();
            }
        },
    };
    let (mut response, seen) = storage::causality::scope(floor, next.run(request)).await;
    if let Some(seen) = seen
        && let Ok(value) = axum::http::HeaderValue::from_str(&seen.to_string())
    {
        response.headers_mut().insert(CAUSALITY_TOKEN, value);
    }
    response
}
