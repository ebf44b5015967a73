//! Postgres repositories for the domain's [`Repository`](domain::Repository)
//! contract, on diesel + diesel-async with a bb8 pool.
//!
//! Every transaction is opened and closed here. A template user writes a
//! [`Mapping`] per aggregate (plain diesel queries, no transactions) and gets
//! a [`PgRepository`] from a [`Store`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use domain::Repository;
//! use storage::{Store, StoreConfig, mappings::OrderMapping};
//!
//! let url = "postgres://postgres@127.0.0.1:5432/postgres";
//! storage::migrate(url).await?;
//! let store = Store::new(url, StoreConfig::default());
//! let orders = store.repository::<OrderMapping>();
//! # let id = domain::example::OrderId::generate();
//! orders.update(id, |order| order.place(domain::Timestamp::now())).await?;
//! # Ok(()) }
//! ```
//!
//! # What each operation costs
//! Round trips (RT) to the server, for the example mappings:
//!
//! | operation | statements | RT | why |
//! | --- | --- | --- | --- |
//! | `get` | 1 `SELECT` (root joined to children) | 1 | one statement reads one consistent snapshot |
//! | `list` | 1 `SELECT` | 1 | keyset page joined to children |
//! | `update` | `SELECT`; `BEGIN`; root `UPDATE .. WHERE version = $old` + changed child writes; `COMMIT` | 4 | the load is optimistic, outside any transaction, so the closure never runs with a transaction open; the version check makes the write safe; the mapping pipelines its writes into one RT |
//! | `create` | `BEGIN`; `INSERT` token `ON CONFLICT DO NOTHING`; root and child `INSERT`s; `COMMIT` | 4-5 | the token must be claimed in the create's transaction so a lost COMMIT reply is recoverable |
//! | `delete` | 1 `DELETE` (children cascade) | 1 | |
//!
//! A conflict or transient fault adds a whole attempt. With
//! [`Recycling::Verified`] every operation pays one more RT for `SELECT 1`.
//!
//! # Faults
//! Serialization failures (40001, also at COMMIT), deadlocks (40P01), lock
//! timeouts (55P03) and broken connections (57P01, 25P03, closed sockets) are
//! retried with full-jitter exponential backoff, at most
//! [`StoreConfig::max_attempts`] times and never past
//! [`StoreConfig::deadline`], which also bounds the pool wait and is set as
//! each connection's `statement_timeout`. A unique violation on the root's
//! primary key is `AlreadyExists`; on another constraint, `Duplicate` naming
//! it. A future dropped half-way (a timeout, a client gone) leaves its
//! connection inside a transaction, which the pool sees as broken and closes
//! instead of handing it out again.
#![deny(missing_docs)]

mod classify;
mod config;
mod error;
mod exclusive;
mod mapping;
pub mod mappings;
mod migrate;
mod ops;
mod repository;
mod retry;
pub mod schema;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;
mod unit_of_work;

pub use config::{Recycling, StoreConfig};
pub use error::StoreError;
pub use exclusive::PgKeyGuard;
pub use mapping::{Mapped, Mapping, version_from_db, version_to_db};
pub use migrate::migrate;
pub use repository::PgRepository;
pub use store::Store;
pub use unit_of_work::PgTx;

/// Re-exported so mappings written outside this crate use the same versions.
pub use diesel;
/// Re-exported so mappings written outside this crate use the same versions.
pub use diesel_async;
