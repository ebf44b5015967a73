//! `/users`: registration, profiles, deletion.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::example::{PersonName, Profile, UserId, Username};
use domain::{Aggregate, Timestamp};
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{ListParams, Page, UserStatsView, UserView};
use crate::AppStore;
use crate::example::use_cases::users;
use crate::extract::{ApiQuery, IdempotencyKey, IdempotentJson, IfMatch, etag};
use crate::problem::{ApiError, ErrorBody};

/// A person's name as sent: 1-64 characters after trimming, no control
/// characters.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(
    pattern = r"^\s*[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?\s*$"
)]
pub struct NameText(pub String);

/// Registration form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 3-32 characters of a-z, 0-9 and _; unique.
    #[schema(pattern = "^[a-z0-9_]{3,32}$", min_length = 3, max_length = 32)]
    pub username: String,
    /// Given name.
    pub first_name: NameText,
    /// Family name.
    pub last_name: NameText,
}

impl NewUser {
    /// The username and profile this form asks for, or why it cannot.
    pub fn parse(&self) -> Result<(Username, Profile), ApiError> {
        let profile = Profile {
            first_name: PersonName::parse(&self.first_name.0)?,
            last_name: PersonName::parse(&self.last_name.0)?,
        };
        Ok((Username::parse(&self.username)?, profile))
    }
}

/// Profile fields to change; absent ones stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    /// Given name.
    pub first_name: Option<NameText>,
    /// Family name.
    pub last_name: Option<NameText>,
}

/// Registers a user. In one transaction: stores the user, rescores every
/// user (one batched statement) and logs `user.created`. A retry with the
/// same `Idempotency-Key` and body answers the same user and writes nothing.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses(
        (status = 201, description = "Registered", body = UserView, headers(("ETag" = String))),
        (status = 404, description = "A retry (same key) of a registration whose user was deleted since", body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody),
        (status = 422, description = "Invalid field, or the key was used for another request", body = ErrorBody),
    ))]
pub async fn create_user<S: AppStore>(
    State(store): State<S>,
    IdempotentJson {
        key: token,
        body: form,
    }: IdempotentJson<NewUser>,
) -> Result<impl IntoResponse, ApiError> {
    let (username, profile) = form.parse()?;
    let user = users::register(&store, token, username, profile, Timestamp::now())
        .await?
        .into_aggregate();
    Ok((
        StatusCode::CREATED,
        etag(user.version()),
        Json(UserView::of(&user)),
    ))
}

/// A user.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 200, body = UserView, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
pub async fn get_user<S: AppStore>(
    State(store): State<S>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let user = users::get(&store, id.parse()?).await?;
    Ok((etag(user.version()), Json(UserView::of(&user))))
}

/// What the user's placed orders add up to. Eventually consistent: kept
/// from `order_placed` events by a consumer, so an order placed a moment
/// ago may not show yet.
#[utoipa::path(get, path = "/users/{id}/stats", tag = "users",
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 200, body = UserStatsView), (status = 404, body = ErrorBody)))]
pub async fn get_user_stats<S: AppStore>(
    State(store): State<S>,
    Path(id): Path<String>,
) -> Result<Json<UserStatsView>, ApiError> {
    let stats = crate::example::use_cases::stats::of_user(&store, id.parse()?).await?;
    Ok(Json(UserStatsView::of(&stats)))
}

/// Users in id (roughly registration) order.
#[utoipa::path(get, path = "/users", tag = "users", params(ListParams),
    responses((status = 200, body = Page<UserView>)))]
pub async fn list_users<S: AppStore>(
    State(store): State<S>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<UserView>>, ApiError> {
    let page = users::list(&store, params.page::<UserId>()?).await?;
    Ok(Json(Page::of(&page, UserView::of)))
}

/// Changes profile fields and logs `user.updated`, in one transaction.
/// With `If-Match`, only if the user is still at that version. An empty
/// patch changes nothing but still counts as a write: the version moves.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = ProfilePatch,
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = "An ETag such as \"3\"; weak tags never match")),
    responses((status = 200, body = UserView, headers(("ETag" = String))), (status = 404, body = ErrorBody),
        (status = 412, description = "The user changed since that ETag", body = ErrorBody)))]
pub async fn patch_user<S: AppStore>(
    State(store): State<S>,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    IdempotentJson { key, body: patch }: IdempotentJson<ProfilePatch>,
) -> Result<impl IntoResponse, ApiError> {
    let id: UserId = id.parse()?;
    let parse = |name: Option<NameText>| name.map(|n| PersonName::parse(&n.0)).transpose();
    let (first, last) = (parse(patch.first_name)?, parse(patch.last_name)?);
    let now = Timestamp::now();
    let user = users::change_profile(&store, key, id, expected, first, last, now).await?;
    Ok((etag(user.version()), Json(UserView::of(&user))))
}

/// Deletes a user and logs `user.deleted`, in one transaction. With
/// `If-Match`, only if the user is still at that version.
#[utoipa::path(delete, path = "/users/{id}", tag = "users",
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = "An ETag such as \"3\"; weak tags never match")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
        (status = 412, description = "The user changed since that ETag", body = ErrorBody)))]
pub async fn delete_user<S: AppStore>(
    State(store): State<S>,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<StatusCode, ApiError> {
    users::delete(&store, key, id.parse()?, expected, Timestamp::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
