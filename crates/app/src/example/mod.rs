//! The example application, apart from the service skeleton:
//! `scripts/strip-example` deletes this folder and the lines marked
//! `example-only` that wire it in.

pub mod catalog_file;
pub mod cli;
pub mod consumers;
pub mod http;
pub mod use_cases;

use domain::example::{Account, Action, Order, Product, User, UserStats};
use domain::{Store, Stores};

/// A store holding the example's aggregates: the one place they are
/// listed. An aggregate added to the example adds a line here, and the
/// service's wiring needs no edit.
pub trait ExampleStore:
    Store
    + Stores<User>
    + Stores<Order>
    + Stores<Action>
    + Stores<Product>
    + Stores<Account>
    + Stores<UserStats>
{
}

impl<S> ExampleStore for S where
    S: Store
        + Stores<User>
        + Stores<Order>
        + Stores<Action>
        + Stores<Product>
        + Stores<Account>
        + Stores<UserStats>
{
}
