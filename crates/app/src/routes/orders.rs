//! `/orders`: opening, extending, placing and cancelling orders.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::example::{
    Action, Cents, Order, OrderError, OrderId, OrderLine, Quantity, Sku, User, UserId,
    register_user,
};
use domain::{
    Aggregate, Created, Repository, RepositoryError, Timestamp, TxExt, TxToken, UnitOfWork,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::extract::{ApiJson, IdempotencyKey, IfMatch, etag};
use crate::persistence::{Persistence, on_backend};
use crate::problem::{ApiError, ErrorBody};
use crate::routes::AppState;
use crate::routes::users::NewUser;
use crate::views::{LineView, OrderView, UserView};

/// An order to open.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Who orders; must exist.
    pub user_id: Uuid,
    /// At most 100; may be empty (a draft).
    pub lines: Vec<LineView>,
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
    params(("Idempotency-Key" = Option<String>, Header, description = "A uuid; makes the request safe to retry")),
    responses((status = 201, body = OrderView, headers(("ETag" = String))), (status = 400, body = ErrorBody),
        (status = 422, description = "Invalid line, unknown user, or the key was used for another body", body = ErrorBody)))]
pub async fn create_order(
    State(state): State<AppState>,
    IdempotencyKey(token): IdempotencyKey,
    ApiJson(form): ApiJson<NewOrder>,
) -> Result<impl IntoResponse, ApiError> {
    let lines = form
        .lines
        .iter()
        .map(parse_line)
        .collect::<Result<Vec<_>, _>>()?;
    let now = Timestamp::now();
    let user_id = UserId::from(form.user_id);
    let draft = Order::open(OrderId::generate(), user_id, lines, now)?;
    let order = on_backend!(&state.backend, |store| {
        store
            .run(|tx| {
                let draft = draft.clone();
                Box::pin(async move {
                    match tx.of::<User>().get(user_id).await {
                        Err(RepositoryError::NotFound { .. }) => {
                            return Err(RepositoryError::Domain(ApiError::validation(format!(
                                "user_id: no user {user_id}"
                            ))));
                        }
                        other => other?,
                    };
                    let order = tx.of::<Order>().create(token, draft).await?;
                    if let Created::New(order) = &order {
                        let entry = Action::about(order, "order.created", now);
                        tx.of::<Action>()
                            .create(token.derive("order.created"), entry)
                            .await?;
                    }
                    Ok::<_, RepositoryError<ApiError>>(order)
                })
            })
            .await
    })?
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
    params(("Idempotency-Key" = Option<String>, Header, description = "A uuid; makes the request safe to retry")),
    responses((status = 201, body = UserOrder), (status = 400, body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody),
        (status = 422, description = "Invalid field, or the key was used for another body", body = ErrorBody)))]
pub async fn create_user_with_order(
    State(state): State<AppState>,
    IdempotencyKey(token): IdempotencyKey,
    ApiJson(form): ApiJson<NewUserOrder>,
) -> Result<(StatusCode, Json<UserOrder>), ApiError> {
    let newcomer = form.user.parse()?;
    let lines = form
        .lines
        .iter()
        .map(parse_line)
        .collect::<Result<Vec<_>, _>>()?;
    let now = Timestamp::now();
    let order_id = OrderId::generate();
    let made = on_backend!(&state.backend, |store| {
        store
            .run(|tx| {
                let (newcomer, lines) = (newcomer.clone(), lines.clone());
                Box::pin(async move {
                    let user = register_user(tx, token, newcomer, now)
                        .await?
                        .into_aggregate();
                    let draft =
                        Order::open(order_id, user.id(), lines, now).map_err(ApiError::from)?;
                    let order = tx
                        .of::<Order>()
                        .create(token.derive("first order"), draft)
                        .await?;
                    if let Created::New(order) = &order {
                        let entry = Action::about(order, "order.created", now);
                        tx.of::<Action>()
                            .create(token.derive("order.created"), entry)
                            .await?;
                    }
                    let order = order.into_aggregate();
                    Ok::<_, RepositoryError<ApiError>>(UserOrder {
                        user: UserView::of(&user),
                        order: OrderView::of(&order),
                    })
                })
            })
            .await
    })?;
    Ok((StatusCode::CREATED, Json(made)))
}

/// An order.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = String, Path)),
    responses((status = 200, body = OrderView, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id: OrderId = id.parse()?;
    let order = on_backend!(&state.backend, |store| store.orders().get(id).await)?;
    Ok((etag(order.version()), Json(OrderView::of(&order))))
}

/// Adds a line to a draft.
#[utoipa::path(post, path = "/orders/{id}/lines", tag = "orders", request_body = LineView,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody),
        (status = 409, description = "Not a draft", body = ErrorBody), (status = 412, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn add_line(
    State(state): State<AppState>,
    Path(id): Path<String>,
    if_match: IfMatch,
    ApiJson(line): ApiJson<LineView>,
) -> Result<impl IntoResponse, ApiError> {
    let line = parse_line(&line)?;
    change_order(
        &state,
        &id,
        if_match,
        "order.line_added",
        move |order, now| order.add_line(line.clone(), now),
    )
    .await
}

/// Places a non-empty draft.
#[utoipa::path(post, path = "/orders/{id}/place", tag = "orders",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody),
        (status = 409, description = "Empty, or not a draft", body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn place_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<impl IntoResponse, ApiError> {
    change_order(&state, &id, if_match, "order.placed", Order::place).await
}

/// Cancels an order that is not cancelled yet.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody),
        (status = 409, description = "Already cancelled", body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn cancel_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<impl IntoResponse, ApiError> {
    change_order(&state, &id, if_match, "order.cancelled", Order::cancel).await
}

/// Applies one order rule and logs `what`, in one transaction.
async fn change_order(
    state: &AppState,
    id: &str,
    if_match: IfMatch,
    what: &'static str,
    change: impl Fn(&mut Order, Timestamp) -> Result<(), OrderError> + Clone + Send + Sync + 'static,
) -> Result<Response, ApiError> {
    let id: OrderId = id.parse()?;
    let now = Timestamp::now();
    let view = on_backend!(&state.backend, |store| {
        store
            .run(|tx| {
                let (if_match, change) = (if_match.clone(), change.clone());
                Box::pin(async move {
                    let order = tx
                        .of::<Order>()
                        .update(id, |order| {
                            if_match.check(order.version())?;
                            change(order, now)?;
                            Ok::<_, ApiError>(())
                        })
                        .await?
                        .aggregate;
                    let entry = Action::about(&order, what, now);
                    tx.of::<Action>().create(TxToken::generate(), entry).await?;
                    Ok::<_, RepositoryError<ApiError>>(OrderView::of(&order))
                })
            })
            .await
    })?;
    Ok((etag(domain::Version::new(view.version)), Json(view)).into_response())
}
