//! The OpenAPI document, built from the router itself (utoipa-axum), so a
//! route cannot be served undocumented; the error answers every operation
//! can give are added here once instead of on every handler.

use std::sync::Arc;

use axum::{Extension, Json};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{KnownFormat, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{OpenApi as _, ToSchema};

use crate::problem::ErrorBody;

/// What the document says about the service as a whole.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Example service",
        description = "On the aggregate repository framework. Errors are \
            {\"error\": {\"code\", \"message\"}}; versions travel as ETag / If-Match \
            (strong comparison); creates take an Idempotency-Key, bound to one request."
    ),
    components(schemas(ErrorBody))
)]
struct Base;

/// The document's starting point, before the routes add their paths.
pub fn base() -> OpenApi {
    Base::openapi()
}

/// What an `If-Match` header may hold: `*` or a list of entity tags, strong or
/// weak (weak ones never match).
pub const IF_MATCH_PATTERN: &str = r#"^\s*(\*|(W/)?"[0-9]{1,19}"(\s*,\s*(W/)?"[0-9]{1,19}")*)\s*$"#;

/// Adds to every operation the error answers the service's layers can give
/// whatever the handler does: 500, 503 and 504 everywhere; 400 where there
/// are parameters; 400, 413, 415 and 422 where there is a body; to every
/// write (POST, PUT, PATCH, DELETE) the `Idempotency-Key` it takes
/// (`extract::IdempotentJson`, `extract::IdempotencyKey`), 409 (concurrent
/// writers won every bounded retry) and 422 (the key was sent with another
/// request). And states the skeleton's headers the same way everywhere: a
/// header is a string, present or absent, never null.
pub fn finish(mut api: OpenApi) -> OpenApi {
    let shared = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    utoipa::openapi::Content::new(Some(Ref::from_schema_name(ErrorBody::name()))),
                )
                .build(),
        )
    };
    for item in api.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ];
        for (operation, write) in operations {
            let Some(operation) = operation else {
                continue;
            };
            if write {
                take_idempotency_key(operation);
            }
            describe_headers(operation);
            carry_causality(operation);
            let has_body = operation.request_body.is_some();
            let has_params = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let mut add = |status: &str, description: &str| {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| shared(description));
            };
            if has_body || has_params {
                add(
                    "400",
                    "Unreadable input: malformed JSON, id, header or query",
                );
            }
            if has_body {
                add("413", "The body is over 64 KiB");
                add("415", "The body is not application/json");
                add("422", "A field breaks a rule");
            }
            if write {
                add(
                    "409",
                    "Concurrent writers won every bounded retry (`conflict`): try again",
                );
                add("422", "The Idempotency-Key was used for another request");
            }
            add("500", "A bug: details are in the log only");
            add("503", "The store is unavailable; try again shortly");
            add(
                "504",
                "Past the deadline (`timeout`) or lost while committing (`outcome_unknown`)",
            );
        }
    }
    api
}

/// What a causality token looks like: a log position, in hexadecimal.
const CAUSALITY_PATTERN: &str = "^[0-9A-Fa-f]{1,16}$";

/// Every operation takes and answers a `Causality-Token` (the router's
/// `causality_scope`).
fn carry_causality(operation: &mut Operation) {
    use utoipa::openapi::Required;
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::path::ParameterBuilder;
    let schema = || {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some(CAUSALITY_PATTERN))
            .build()
    };
    operation.parameters.get_or_insert_with(Vec::new).push(
        ParameterBuilder::new()
            .name(crate::router::CAUSALITY_TOKEN)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "The `Causality-Token` of an earlier answer: with a read replica, this \
                     request sees at least what that answer did",
            ))
            .schema(Some(schema()))
            .build(),
    );
    for (status, response) in &mut operation.responses.responses {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            response.headers.insert(
                crate::router::CAUSALITY_TOKEN.to_owned(),
                HeaderBuilder::new()
                    .schema(schema())
                    .description(Some(
                        "The highest log position this exchange saw; send it back to read \
                         your writes",
                    ))
                    .build(),
            );
        }
    }
}

/// The `Idempotency-Key` every write takes, unless its handler documents
/// it itself.
fn take_idempotency_key(operation: &mut Operation) {
    use utoipa::openapi::Required;
    use utoipa::openapi::path::ParameterBuilder;
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    if parameters.iter().any(|p| p.name == IDEMPOTENCY_KEY) {
        return;
    }
    parameters.push(
        ParameterBuilder::new()
            .name(IDEMPOTENCY_KEY)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes the request safe to retry: bound to this method, target and body, \
                 a retry answers what the first request did and writes nothing twice",
            ))
            .build(),
    );
}

/// The header a write's idempotency key travels in.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The schemas of the headers the skeleton's extractors read.
fn describe_headers(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.parameter_in != ParameterIn::Header {
            continue;
        }
        let schema = ObjectBuilder::new().schema_type(SchemaType::Type(Type::String));
        let schema = match parameter.name.as_str() {
            IDEMPOTENCY_KEY => schema.format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            "If-Match" => schema.pattern(Some(IF_MATCH_PATTERN)),
            _ => schema,
        };
        parameter.schema = Some(RefOr::T(schema.build().into()));
    }
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json(Extension(api): Extension<Arc<OpenApi>>) -> Json<OpenApi> {
    Json(OpenApi::clone(&api))
}
