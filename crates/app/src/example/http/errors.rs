//! How the example's refusals answer over HTTP.

use domain::example::{AccountError, InvalidLine, InvalidName, InvalidUsername, OrderError};

use crate::example::use_cases::accounts::AccountRefusal;

use crate::example::use_cases::orders::OrderRefusal;
use crate::example::use_cases::users::UserRefusal;
use crate::problem::ApiError;

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::TooManyLines => Self::validation(error.to_string()),
            _ => Self::conflict(error.to_string()),
        }
    }
}

impl From<OrderRefusal> for ApiError {
    fn from(refusal: OrderRefusal) -> Self {
        match refusal {
            OrderRefusal::Rule(error) => error.into(),
            OrderRefusal::Stale(stale) => stale.into(),
            OrderRefusal::UnknownUser(id) => unknown_user(id),
        }
    }
}

impl From<AccountRefusal> for ApiError {
    fn from(refusal: AccountRefusal) -> Self {
        match refusal {
            AccountRefusal::Rule(error @ AccountError::Insufficient { .. }) => {
                Self::conflict(error.to_string())
            }
            AccountRefusal::Rule(error) => Self::validation(error.to_string()),
            AccountRefusal::UnknownUser(id) => unknown_user(id),
            AccountRefusal::SameAccount => Self::validation(refusal.to_string()),
        }
    }
}

impl From<UserRefusal> for ApiError {
    fn from(refusal: UserRefusal) -> Self {
        match refusal {
            UserRefusal::Stale(stale) => stale.into(),
        }
    }
}

/// 404: the request names a user that does not exist (it is well-formed,
/// and would be accepted once the user does).
fn unknown_user(id: domain::example::UserId) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("user {id} not found"),
    )
}

macro_rules! validation_errors {
    ($($error:ty),+) => {$(
        impl From<$error> for ApiError {
            fn from(error: $error) -> Self {
                Self::validation(error.to_string())
            }
        }
    )+};
}
validation_errors!(InvalidUsername, InvalidName, InvalidLine);
