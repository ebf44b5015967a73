//! `/actions`: the action log.

use axum::Json;
use axum::extract::State;
use domain::example::ActionId;

use super::views::{ActionView, ListParams, Page};
use crate::AppStore;
use crate::example::use_cases::actions;
use crate::extract::ApiQuery;
use crate::problem::ApiError;

/// The action log, oldest first.
#[utoipa::path(get, path = "/actions", tag = "actions", params(ListParams),
    responses((status = 200, body = Page<ActionView>)))]
pub async fn list_actions<S: AppStore>(
    State(store): State<S>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<ActionView>>, ApiError> {
    let page = actions::list(&store, params.page::<ActionId>()?).await?;
    Ok(Json(Page::of(&page, ActionView::of)))
}
