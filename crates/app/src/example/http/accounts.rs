//! `/accounts` and `/transfers`: balances and moving money between them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::Aggregate;
use domain::example::{Account, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppStore;
use crate::example::use_cases::accounts;
use crate::extract::{IdempotentJson, etag};
use crate::problem::{ApiError, ErrorBody};

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// Identity.
    pub id: Uuid,
    /// Whose money it is.
    pub owner_id: Uuid,
    /// In cents, never negative.
    pub balance_cents: i64,
    /// Also sent as the `ETag`.
    pub version: u64,
}

impl AccountView {
    fn of(account: &Account) -> Self {
        Self {
            id: account.id().into(),
            owner_id: account.owner().into(),
            balance_cents: account.balance_cents(),
            version: account.version().get(),
        }
    }
}

/// An account to open.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// Whose account; must exist.
    pub owner_id: Uuid,
}

/// An amount of money.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    /// 1 to 1000000000000 cents.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "crate::extract::integer")]
    pub amount_cents: i64,
}

/// Money to move between two accounts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    /// The account paying.
    pub from: Uuid,
    /// The account paid; another one.
    pub to: Uuid,
    /// 1 to 1000000000000 cents.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "crate::extract::integer")]
    pub amount_cents: i64,
}

/// Both accounts after a transfer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferView {
    /// The account that paid.
    pub from: AccountView,
    /// The account that was paid.
    pub to: AccountView,
}

/// Opens an empty account for an existing user. Safe to retry with the
/// same `Idempotency-Key`.
#[utoipa::path(post, path = "/accounts", tag = "accounts", request_body = NewAccount,
    responses((status = 201, body = AccountView, headers(("ETag" = String))),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "The key was used for another request", body = ErrorBody)))]
pub async fn open_account<S: AppStore>(
    State(store): State<S>,
    IdempotentJson {
        key: token,
        body: form,
    }: IdempotentJson<NewAccount>,
) -> Result<impl IntoResponse, ApiError> {
    let account = accounts::open(&store, token, UserId::from(form.owner_id))
        .await?
        .into_aggregate();
    Ok((
        StatusCode::CREATED,
        etag(account.version()),
        Json(AccountView::of(&account)),
    ))
}

/// An account.
#[utoipa::path(get, path = "/accounts/{id}", tag = "accounts", params(("id" = Uuid, Path)),
    responses((status = 200, body = AccountView, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
pub async fn get_account<S: AppStore>(
    State(store): State<S>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let account = accounts::get(&store, id.parse()?).await?;
    Ok((etag(account.version()), Json(AccountView::of(&account))))
}

/// Adds money to an account.
#[utoipa::path(post, path = "/accounts/{id}/deposits", tag = "accounts", request_body = Amount,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AccountView, headers(("ETag" = String))), (status = 404, body = ErrorBody),
        (status = 422, description = "An amount out of range, or the balance would be too large", body = ErrorBody)))]
pub async fn deposit<S: AppStore>(
    State(store): State<S>,
    Path(id): Path<String>,
    IdempotentJson { key, body: form }: IdempotentJson<Amount>,
) -> Result<impl IntoResponse, ApiError> {
    let account = accounts::deposit(&store, key, id.parse()?, form.amount_cents).await?;
    Ok((etag(account.version()), Json(AccountView::of(&account))))
}

/// Moves money from one account to another: both change or neither.
#[utoipa::path(post, path = "/transfers", tag = "accounts", request_body = NewTransfer,
    responses((status = 200, body = TransferView), (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The paying account's balance is too low", body = ErrorBody),
        (status = 422, description = "An amount out of range, or one account twice", body = ErrorBody)))]
pub async fn transfer<S: AppStore>(
    State(store): State<S>,
    IdempotentJson { key, body: form }: IdempotentJson<NewTransfer>,
) -> Result<Json<TransferView>, ApiError> {
    let (from, to) = (form.from.into(), form.to.into());
    let (from, to) = accounts::transfer(&store, key, from, to, form.amount_cents).await?;
    Ok(Json(TransferView {
        from: AccountView::of(&from),
        to: AccountView::of(&to),
    }))
}
