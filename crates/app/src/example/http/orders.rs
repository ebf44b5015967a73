//! `/orders`: opening, extending, placing and cancelling orders.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::example::{Cents, OrderId, OrderLine, Quantity, Sku, UserId};
use domain::{Aggregate, IfVersion, Timestamp, TxToken};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::users::NewUser;
use super::views::{LineView, OrderView, UserView};
use crate::AppStore;
use crate::example::use_cases::orders::{self, OrderChange};
use crate::extract::{IdempotencyKey, IdempotentJson, IfMatch, etag};
use crate::problem::{ApiError, ErrorBody};

/// An order to open.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Who orders; must exist.
    pub user_id: Uuid,
    /// At most 100; may be empty (a draft).
    #[schema(max_items = 100)]
    pub lines: Vec<LineView>,
}

fn parse_lines(lines: &[LineView]) -> Result<Vec<OrderLine>, ApiError> {
    lines.iter().map(parse_line).collect()
}

fn parse_line(line: &LineView) -> Result<OrderLine, ApiError> {
    Ok(OrderLine {
        sku: Sku::parse(&line.sku)?,
        quantity: Quantity::new(line.quantity)?,
        unit_price: Cents::new(line.unit_price_cents)?,
    })
}

/// Opens a draft order for an existing user and logs `order.created`, in
/// one transaction. Safe to retry with the same `Idempotency-Key`.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = NewOrder,
    responses((status = 201, body = OrderView, headers(("ETag" = String))),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "Invalid line, or the key was used for another request", body = ErrorBody)))]
pub async fn create_order<S: AppStore>(
    State(store): State<S>,
    IdempotentJson {
        key: token,
        body: form,
    }: IdempotentJson<NewOrder>,
) -> Result<impl IntoResponse, ApiError> {
    let lines = parse_lines(&form.lines)?;
    let user = UserId::from(form.user_id);
    let order = orders::open(&store, token, user, lines, Timestamp::now())
        .await?
        .into_aggregate();
    Ok((
        StatusCode::CREATED,
        etag(order.version()),
        Json(OrderView::of(&order)),
    ))
}

/// A new user and their first order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserOrder {
    /// The user to register.
    pub user: NewUser,
    /// The first order's lines (at most 100; may be empty).
    #[schema(max_items = 100)]
    pub lines: Vec<LineView>,
}

/// The user and order made together.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOrder {
    /// The registered user.
    pub user: UserView,
    /// Their first order.
    pub order: OrderView,
}

/// Registers a user and opens their first order in one transaction: both
/// or neither. Safe to retry with the same `Idempotency-Key`.
#[utoipa::path(post, path = "/orders/for-new-user", tag = "orders", request_body = NewUserOrder,
    responses((status = 201, body = UserOrder),
        (status = 404, description = "A retry (same key) of a request whose user was deleted since", body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody),
        (status = 422, description = "Invalid field, or the key was used for another request", body = ErrorBody)))]
pub async fn create_user_with_order<S: AppStore>(
    State(store): State<S>,
    IdempotentJson {
        key: token,
        body: form,
    }: IdempotentJson<NewUserOrder>,
) -> Result<(StatusCode, Json<UserOrder>), ApiError> {
    let newcomer = form.user.parse()?;
    let lines = parse_lines(&form.lines)?;
    let (user, order) =
        orders::open_with_new_user(&store, token, newcomer, lines, Timestamp::now()).await?;
    let made = UserOrder {
        user: UserView::of(user.aggregate()),
        order: OrderView::of(order.aggregate()),
    };
    Ok((StatusCode::CREATED, Json(made)))
}

/// An order.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = Uuid, Path)),
    responses((status = 200, body = OrderView, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
pub async fn get_order<S: AppStore>(
    State(store): State<S>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let order = orders::get(&store, id.parse()?).await?;
    Ok((etag(order.version()), Json(OrderView::of(&order))))
}

/// Adds a line to a draft.
#[utoipa::path(post, path = "/orders/{id}/lines", tag = "orders", request_body = LineView,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = OrderView, headers(("ETag" = String))), (status = 404, body = ErrorBody),
        (status = 409, description = "Not a draft", body = ErrorBody), (status = 412, body = ErrorBody),
        (status = 422, description = "Invalid line, or the order is full", body = ErrorBody)))]
pub async fn add_line<S: AppStore>(
    State(store): State<S>,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    IdempotentJson { key, body: line }: IdempotentJson<LineView>,
) -> Result<impl IntoResponse, ApiError> {
    let change = OrderChange::AddLine(parse_line(&line)?);
    change_order(&store, key, &id, expected, change).await
}

/// Places a non-empty draft.
#[utoipa::path(post, path = "/orders/{id}/place", tag = "orders",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = OrderView, headers(("ETag" = String))), (status = 404, body = ErrorBody),
        (status = 409, description = "Empty, or not a draft", body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn place_order<S: AppStore>(
    State(store): State<S>,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<impl IntoResponse, ApiError> {
    change_order(&store, key, &id, expected, OrderChange::Place).await
}

/// Cancels an order that is not cancelled yet.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = OrderView, headers(("ETag" = String))), (status = 404, body = ErrorBody),
        (status = 409, description = "Already cancelled", body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn cancel_order<S: AppStore>(
    State(store): State<S>,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<impl IntoResponse, ApiError> {
    change_order(&store, key, &id, expected, OrderChange::Cancel).await
}

async fn change_order<S: AppStore>(
    store: &S,
    key: TxToken,
    id: &str,
    expected: IfVersion,
    change: OrderChange,
) -> Result<impl IntoResponse + use<S>, ApiError> {
    let id: OrderId = id.parse()?;
    let order = orders::change(store, key, id, expected, change, Timestamp::now()).await?;
    Ok((etag(order.version()), Json(OrderView::of(&order))))
}
