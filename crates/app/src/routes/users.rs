//! `/users`: registration, profiles, deletion.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::example::{Action, PersonName, Profile, User, UserId, Username, register_user};
use domain::{Aggregate, Repository, RepositoryError, Timestamp, TxExt, TxToken, UnitOfWork};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::extract::{ApiJson, ApiQuery, IdempotencyKey, IfMatch, etag};
use crate::persistence::{Persistence, on_backend};
use crate::problem::{ApiError, ErrorBody};
use crate::routes::AppState;
use crate::views::{ListParams, Page, UserView};

/// Registration form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 3-32 characters of a-z, 0-9 and _.
    pub username: String,
    /// 1-64 characters.
    pub first_name: String,
    /// 1-64 characters.
    pub last_name: String,
}

impl NewUser {
    /// The user this form registers, with a fresh id, or why it cannot.
    pub fn parse(&self) -> Result<User, ApiError> {
        let profile = Profile {
            first_name: PersonName::parse(&self.first_name)?,
            last_name: PersonName::parse(&self.last_name)?,
        };
        let username = Username::parse(&self.username)?;
        Ok(User::register(
            UserId::generate(),
            username,
            profile,
            Timestamp::now(),
        ))
    }
}

/// Profile fields to change; absent ones stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    /// 1-64 characters.
    pub first_name: Option<String>,
    /// 1-64 characters.
    pub last_name: Option<String>,
}

/// Registers a user. In one transaction: stores the user, rescores every
/// user (one batched statement) and logs `user.created`. A retry with the
/// same `Idempotency-Key` and body answers the same user and writes nothing.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    params(("Idempotency-Key" = Option<String>, Header, description = "A uuid; makes the request safe to retry")),
    responses(
        (status = 201, description = "Registered", body = UserView, headers(("ETag" = String))),
        (status = 400, body = ErrorBody), (status = 409, description = "Username taken", body = ErrorBody),
        (status = 422, description = "Invalid field, or the key was used for another body", body = ErrorBody),
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    IdempotencyKey(token): IdempotencyKey,
    ApiJson(form): ApiJson<NewUser>,
) -> Result<impl IntoResponse, ApiError> {
    let profile = Profile {
        first_name: PersonName::parse(&form.first_name)?,
        last_name: PersonName::parse(&form.last_name)?,
    };
    let now = Timestamp::now();
    let newcomer = User::register(
        UserId::generate(),
        Username::parse(&form.username)?,
        profile,
        now,
    );
    let user = on_backend!(&state.backend, |store| {
        store
            .run(|tx| {
                let newcomer = newcomer.clone();
                Box::pin(async move {
                    Ok::<_, RepositoryError<ApiError>>(
                        register_user(tx, token, newcomer, now).await?,
                    )
                })
            })
            .await
    })?
    .into_aggregate();
    Ok((
        StatusCode::CREATED,
        etag(user.version()),
        Json(UserView::of(&user)),
    ))
}

/// A user.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The user's uuid")),
    responses((status = 200, body = UserView, headers(("ETag" = String))), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id: UserId = id.parse()?;
    let user = on_backend!(&state.backend, |store| store.users().get(id).await)?;
    Ok((etag(user.version()), Json(UserView::of(&user))))
}

/// Users in id (roughly registration) order.
#[utoipa::path(get, path = "/users", tag = "users", params(ListParams),
    responses((status = 200, body = Page<UserView>), (status = 400, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<UserView>>, ApiError> {
    let request = params.page::<UserId>()?;
    let page = on_backend!(&state.backend, |store| store.users().list(request).await)?;
    Ok(Json(Page::of(&page, UserView::of)))
}

/// Changes profile fields and logs `user.updated`, in one transaction.
/// With `If-Match`, only if the user is still at that version.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = ProfilePatch,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "An ETag")),
    responses((status = 200, body = UserView, headers(("ETag" = String))), (status = 404, body = ErrorBody),
        (status = 412, description = "Stale If-Match", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    if_match: IfMatch,
    ApiJson(patch): ApiJson<ProfilePatch>,
) -> Result<impl IntoResponse, ApiError> {
    let id: UserId = id.parse()?;
    let first = patch
        .first_name
        .as_deref()
        .map(PersonName::parse)
        .transpose()?;
    let last = patch
        .last_name
        .as_deref()
        .map(PersonName::parse)
        .transpose()?;
    if first.is_none() && last.is_none() {
        return Err(ApiError::validation("send first_name, last_name or both"));
    }
    let now = Timestamp::now();
    let view = on_backend!(&state.backend, |store| {
        store
            .run(|tx| {
                let (if_match, first, last) = (if_match.clone(), first.clone(), last.clone());
                Box::pin(async move {
                    let user = tx
                        .of::<User>()
                        .update(id, |user| {
                            if_match.check(user.version())?;
                            user.change_profile(first, last, now);
                            Ok::<_, ApiError>(())
                        })
                        .await?
                        .aggregate;
                    let entry = Action::about(&user, "user.updated", now);
                    tx.of::<Action>().create(TxToken::generate(), entry).await?;
                    Ok::<_, RepositoryError<ApiError>>(UserView::of(&user))
                })
            })
            .await
    })?;
    Ok((etag(domain::Version::new(view.version)), Json(view)))
}

/// Deletes a user and logs `user.deleted`, in one transaction. With
/// `If-Match`, only if the user is still at that version.
#[utoipa::path(delete, path = "/users/{id}", tag = "users",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
        (status = 412, body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<StatusCode, ApiError> {
    let id: UserId = id.parse()?;
    let now = Timestamp::now();
    on_backend!(&state.backend, |store| {
        store
            .run(|tx| {
                let if_match = if_match.clone();
                Box::pin(async move {
                    let user = tx.of::<User>().get(id).await?;
                    if_match.check(user.version())?;
                    tx.of::<User>().delete(id).await?;
                    let entry = Action::about(&user, "user.deleted", now);
                    tx.of::<Action>().create(TxToken::generate(), entry).await?;
                    Ok::<_, RepositoryError<ApiError>>(())
                })
            })
            .await
    })?;
    Ok(StatusCode::NO_CONTENT)
}
