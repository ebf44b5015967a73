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
use crate::router::documented;

pub use orders::{NewOrder, NewUserOrder, UserOrder};
pub use users::{NewUser, ProfilePatch};

/// The example's routes, documented as they are registered.
pub fn routes<S: AppStore>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(documented(
            users::__path_create_user,
            users::create_user::<S>,
        ))
        .routes(documented(users::__path_list_users, users::list_users::<S>))
        .routes(documented(users::__path_get_user, users::get_user::<S>))
        .routes(documented(
            users::__path_get_user_stats,
            users::get_user_stats::<S>,
        ))
        .routes(documented(users::__path_patch_user, users::patch_user::<S>))
        .routes(documented(
            users::__path_delete_user,
            users::delete_user::<S>,
        ))
        .routes(documented(
            orders::__path_create_order,
            orders::create_order::<S>,
        ))
        .routes(documented(
            orders::__path_create_user_with_order,
            orders::create_user_with_order::<S>,
        ))
        .routes(documented(orders::__path_get_order, orders::get_order::<S>))
        .routes(documented(orders::__path_add_line, orders::add_line::<S>))
        .routes(documented(
            orders::__path_place_order,
            orders::place_order::<S>,
        ))
        .routes(documented(
            orders::__path_cancel_order,
            orders::cancel_order::<S>,
        ))
        .routes(documented(
            actions::__path_list_actions,
            actions::list_actions::<S>,
        ))
        .routes(documented(
            products::__path_list_products,
            products::list_products::<S>,
        ))
        .routes(documented(
            accounts::__path_open_account,
            accounts::open_account::<S>,
        ))
        .routes(documented(
            accounts::__path_get_account,
            accounts::get_account::<S>,
        ))
        .routes(documented(accounts::__path_deposit, accounts::deposit::<S>))
        .routes(documented(
            accounts::__path_transfer,
            accounts::transfer::<S>,
        ))
}
