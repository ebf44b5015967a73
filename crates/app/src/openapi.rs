//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use crate::routes;

/// The API description served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Example service",
        description = "Users, orders and an action log, on the aggregate repository framework. \
            Errors are {\"error\": {\"code\", \"message\"}}; versions travel as ETag / If-Match; \
            creates take an Idempotency-Key."
    ),
    paths(
        routes::create_user,
        routes::get_user,
        routes::list_users,
        routes::patch_user,
        routes::delete_user,
        routes::create_order,
        routes::get_order,
        routes::add_line,
        routes::place_order,
        routes::cancel_order,
        routes::list_actions,
        routes::health,
        routes::openapi,
    )
)]
pub struct ApiDoc;
