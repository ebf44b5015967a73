//! The JSON the API sends and accepts.

use chrono::{DateTime, Utc};
use domain::example::{Action, Order, User, UserStats};
use domain::{Aggregate, AggregateId, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::problem::ApiError;

/// What a user's placed orders add up to, counted from `order_placed`
/// events: eventually consistent, it follows the orders by the time the
/// relay and the consumer take (usually milliseconds).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserStatsView {
    /// The user.
    pub user_id: Uuid,
    /// Orders placed (cancellations do not subtract).
    #[schema(minimum = 0)]
    pub orders_placed: i64,
    /// The sum of their totals when placed, in cents.
    #[schema(minimum = 0)]
    pub total_spent_cents: i64,
}

impl UserStatsView {
    /// `stats` as counted.
    pub fn of(stats: &UserStats) -> Self {
        Self {
            user_id: stats.user().into(),
            orders_placed: stats.orders_placed(),
            total_spent_cents: stats.total_spent_cents(),
        }
    }
}

/// A user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Identity.
    pub id: Uuid,
    /// 3-32 characters of a-z, 0-9 and _; unique.
    pub username: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// The community score.
    pub score: f64,
    /// Also sent as the `ETag`.
    pub version: u64,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl UserView {
    /// `user` as stored.
    pub fn of(user: &User) -> Self {
        Self {
            id: user.id().into(),
            username: user.username().as_str().to_owned(),
            first_name: user.profile().first_name.as_str().to_owned(),
            last_name: user.profile().last_name.as_str().to_owned(),
            score: user.score().get(),
            version: user.version().get(),
            created_at: user.created_at().as_datetime(),
            updated_at: user.updated_at().as_datetime(),
        }
    }
}

/// One order line.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineView {
    /// 1-32 characters of A-Z, 0-9 and -.
    #[schema(pattern = "^[A-Z0-9-]{1,32}$", min_length = 1, max_length = 32)]
    pub sku: String,
    /// 1 to 10000.
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(deserialize_with = "crate::extract::integer")]
    pub quantity: i64,
    /// 0 to 1000000000.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "crate::extract::integer")]
    pub unit_price_cents: i64,
}

/// An order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// Identity.
    pub id: Uuid,
    /// Who ordered.
    pub user_id: Uuid,
    /// `draft`, `placed` or `cancelled`.
    pub status: String,
    /// In the order they were added.
    pub lines: Vec<LineView>,
    /// Sum of quantity x unit price.
    pub total_cents: i64,
    /// Also sent as the `ETag`.
    pub version: u64,
    /// Opening time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl OrderView {
    /// `order` as stored.
    pub fn of(order: &Order) -> Self {
        Self {
            id: order.id().into(),
            user_id: order.user_id().into(),
            status: order.status().as_str().to_owned(),
            lines: order
                .lines()
                .iter()
                .map(|line| LineView {
                    sku: line.sku.as_str().to_owned(),
                    quantity: i64::from(line.quantity.get()),
                    unit_price_cents: line.unit_price.get(),
                })
                .collect(),
            total_cents: order.total_cents(),
            version: order.version().get(),
            created_at: order.created_at().as_datetime(),
            updated_at: order.updated_at().as_datetime(),
        }
    }
}

/// An action log entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionView {
    /// Identity; ids grow with time.
    pub id: Uuid,
    /// What happened, e.g. `user.created`.
    pub what: String,
    /// `user` or `order`.
    pub aggregate_kind: String,
    /// Which one.
    pub aggregate_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
}

impl ActionView {
    /// The entry as sent.
    pub fn of(action: &Action) -> Self {
        Self {
            id: action.id().into(),
            what: action.what().to_owned(),
            aggregate_kind: action.aggregate_kind().to_owned(),
            aggregate_id: action.aggregate_id(),
            at: action.at().as_datetime(),
        }
    }
}

/// One page of a list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items, in id order.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<Uuid>,
}

impl<T> Page<T> {
    /// The API page for a repository page.
    pub fn of<A: Aggregate>(page: &domain::Page<A>, view: impl Fn(&A) -> T) -> Self {
        Self {
            items: page.items.iter().map(view).collect(),
            next_after: page.next.and_then(|next| next.cursor()).map(Into::into),
        }
    }
}

/// Keyset pagination parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many items, 1 to 100 (larger values are capped); default 20.
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The `next_after` of the previous page.
    #[param(value_type = Option<Uuid>)]
    pub after: Option<String>,
}

impl ListParams {
    /// The most items one page returns.
    pub const MAX_LIMIT: i64 = 100;

    /// The repository page these parameters ask for.
    pub fn page<Id: AggregateId + std::str::FromStr<Err = domain::InvalidId>>(
        &self,
    ) -> Result<PageRequest<Id>, ApiError> {
        let limit = match self.limit {
            Some(..=0) => return Err(ApiError::malformed("limit must be at least 1")),
            Some(limit) => limit.min(Self::MAX_LIMIT),
            None => 20,
        };
        let page = PageRequest::first(usize::try_from(limit).unwrap_or(1));
        match &self.after {
            Some(after) => Ok(page.after(after.parse()?)),
            None => Ok(page),
        }
    }
}
