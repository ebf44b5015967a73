//! `/actions`: the action log.

use axum::Json;
use axum::extract::State;
use domain::Repository;
use domain::example::ActionId;

use crate::extract::ApiQuery;
use crate::persistence::{Persistence, on_backend};
use crate::problem::{ApiError, ErrorBody};
use crate::routes::AppState;
use crate::views::{ActionView, ListParams, Page};

/// The action log, oldest first.
#[utoipa::path(get, path = "/actions", tag = "actions", params(ListParams),
    responses((status = 200, body = Page<ActionView>), (status = 400, body = ErrorBody)))]
pub async fn list_actions(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<ActionView>>, ApiError> {
    let request = params.page::<ActionId>()?;
    let page = on_backend!(&state.backend, |store| store.actions().list(request).await)?;
    Ok(Json(Page::of(&page, ActionView::of)))
}
