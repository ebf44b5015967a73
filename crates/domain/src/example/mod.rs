//! The example domain the app serves: users with profiles and scores, orders
//! with lines, and an action log. It shows how a template user writes value
//! objects (parse, don't validate), aggregates whose methods hold the business
//! rules, and typed domain errors.

mod account;
mod action;
mod order;
mod order_line;
mod product;
mod profile;
mod registration;
mod score;
mod user;
mod user_stats;
mod username;

pub use account::{Account, AccountError, AccountId};
pub use action::{Action, ActionId};
pub use order::{Order, OrderError, OrderId, OrderStatus};
pub use order_line::{Cents, InvalidLine, OrderLine, Quantity, Sku};
pub use product::{InvalidProductName, Product, ProductId, ProductName};
pub use profile::{InvalidName, PersonName, Profile};
pub use registration::{expected_score_sum, register_user};
pub use score::{InvalidScore, Score};
pub use user::{User, UserId};
pub use user_stats::UserStats;
pub use username::{InvalidUsername, Username};
