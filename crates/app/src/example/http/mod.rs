//! The example's HTTP API: one module per resource, each handler parsing
//! the request, calling one use case and shaping the answer.

mod accounts;
mod actions;
mod errors;
mod orders;
mod products;
mod users;
pub mod views;

use utoipa_axum::router::OpenApiRouter;

use crate::AppStore;
use crate::router::route;

pub use orders::{NewOrder, NewUserOrder, UserOrder};
pub use users::{NewUser, ProfilePatch};

/// The example's routes, documented as they are registered.
pub fn routes<S: AppStore>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(route!(users::create_user))
        .routes(route!(users::list_users))
        .routes(route!(users::get_user))
        .routes(route!(users::get_user_stats))
        .routes(route!(users::patch_user))
        .routes(route!(users::delete_user))
        .routes(route!(orders::create_order))
        .routes(route!(orders::create_user_with_order))
        .routes(route!(orders::get_order))
        .routes(route!(orders::add_line))
        .routes(route!(orders::place_order))
        .routes(route!(orders::cancel_order))
        .routes(route!(actions::list_actions))
        .routes(route!(products::list_products))
        .routes(route!(accounts::open_account))
        .routes(route!(accounts::get_account))
        .routes(route!(accounts::deposit))
        .routes(route!(accounts::transfer))
}
