//! Mappings of the example domain's aggregates, and the model for writing
//! your own.

mod account;
mod action;
mod order;
mod product;
mod user;
mod user_stats;

pub use account::AccountMapping;
pub use action::ActionMapping;
pub use order::OrderMapping;
pub use product::ProductMapping;
pub use user::UserMapping;
pub use user_stats::UserStatsMapping;

use domain::Timestamp;

/// Reads a timestamp column back into the domain's type.
fn ts(at: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from(at)
}

/// A value the database's constraints guarantee is valid but that failed to
/// parse anyway: the schema and the domain disagree.
fn corrupt(what: &str, error: impl std::fmt::Display) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(format!("stored {what} is invalid: {error}").into())
}
