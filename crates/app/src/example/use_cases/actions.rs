//! Reading the action log.

use domain::example::{Action, ActionId};
use domain::{Page, PageRequest, Repository, RepositoryError, StoreExt};

use crate::example::ExampleStore;

/// A page of the action log, oldest first.
pub async fn list<S: ExampleStore>(
    store: &S,
    page: PageRequest<ActionId>,
) -> Result<Page<Action>, RepositoryError> {
    store.repository::<Action>().list(page).await
}
