//! What the service needs from a store, implemented by the in-memory store
//! and by Postgres; the service picks one at start.

use std::future::Future;

use domain::example::{Action, Order, Product, User};
use domain::{InMemoryStore, Repository, RepositoryError, Transaction, UnitOfWork};

/// The example domain's repositories and units of work on one store.
pub trait Persistence:
    UnitOfWork<
        Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
    > + Sync
{
    /// Users.
    fn users(&self) -> impl Repository<User>;
    /// Orders.
    fn orders(&self) -> impl Repository<Order>;
    /// The action log.
    fn actions(&self) -> impl Repository<Action>;
    /// Whether the store answers.
    fn ping(&self) -> impl Future<Output = Result<(), RepositoryError>> + Send;
}

impl Persistence for InMemoryStore {
    fn users(&self) -> impl Repository<User> {
        self.repository::<User>()
    }

    fn orders(&self) -> impl Repository<Order> {
        self.repository::<Order>()
    }

    fn actions(&self) -> impl Repository<Action> {
        self.repository::<Action>()
    }

    async fn ping(&self) -> Result<(), RepositoryError> {
        Ok(())
    }
}

impl Persistence for storage::PgStore {
    fn users(&self) -> impl Repository<User> {
        self.repository::<User>()
    }

    fn orders(&self) -> impl Repository<Order> {
        self.repository::<Order>()
    }

    fn actions(&self) -> impl Repository<Action> {
        self.repository::<Action>()
    }

    async fn ping(&self) -> Result<(), RepositoryError> {
        storage::PgStore::ping(self).await
    }
}

/// The store this instance serves from.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Everything in memory; lost on exit.
    Memory(InMemoryStore),
    /// Postgres.
    Postgres(storage::PgStore),
}

impl Backend {
    /// A short name for logs and the health check.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Runs `$body` with `$store` bound to the backend's concrete store, so
/// handlers stay plain functions while use-cases are generic.
macro_rules! on_backend {
    ($backend:expr, |$store:ident| $body:expr) => {
        match $backend {
            $crate::persistence::Backend::Memory($store) => $body,
            $crate::persistence::Backend::Postgres($store) => $body,
        }
    };
}
pub(crate) use on_backend;
