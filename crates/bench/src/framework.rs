//! The framework: repositories from a `Store`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use domain::example::{
    Account, AccountId, Cents, OrderId, OrderLine, PersonName, Profile, Quantity, Sku, User,
    UserId, Username,
};
use domain::{Repository, Timestamp, TxExt, TxToken, UnitOfWork};
use storage::PgRepository;
use storage::example::{OrderMapping, UserMapping};
use uuid::Uuid;

use crate::contender::Contender;
use crate::measure::Counters;

#[derive(Clone)]
pub struct Framework {
    users: PgRepository<UserMapping>,
    orders: PgRepository<OrderMapping>,
    store: storage::PgStore,
    counters: Arc<Counters>,
}

impl Framework {
    pub fn new(store: &storage::PgStore, counters: Arc<Counters>) -> Self {
        Self {
            users: store.repository::<User>(),
            orders: store.repository::<domain::example::Order>(),
            store: store.clone(),
            counters,
        }
    }
}

#[cfg(test)]
impl Framework {
    /// An update of the user found by `username`, its unique key (for the
    /// round-trip count).
    pub async fn update_by_username(&self, username: &str) -> anyhow::Result<()> {
        let now = Timestamp::now();
        let key = domain::UniqueKey::new(User::USERNAME_KEY, username);
        self.users
            .update_by(key, |user| {
                user.welcome_newcomer(1, now);
                Ok::<_, std::convert::Infallible>(())
            })
            .await?;
        Ok(())
    }
}

impl Contender for Framework {
    async fn get(&self, id: Uuid) -> anyhow::Result<()> {
        self.users.get(UserId::from(id)).await?;
        Ok(())
    }

    async fn update(&self, id: Uuid) -> anyhow::Result<()> {
        let now = Timestamp::now();
        self.users
            .update(UserId::from(id), |user| {
                self.counters.attempts.fetch_add(1, Ordering::Relaxed);
                user.welcome_newcomer(1, now);
                Ok::<_, std::convert::Infallible>(())
            })
            .await?;
        Ok(())
    }

    async fn create(&self, token: Uuid, id: Uuid, username: String) -> anyhow::Result<()> {
        let profile = Profile {
            first_name: PersonName::parse("First")?,
            last_name: PersonName::parse("Last")?,
        };
        let user = User::register(
            UserId::from(id),
            Username::parse(&username)?,
            profile,
            Timestamp::now(),
        );
        self.users.create(TxToken::from(token), user).await?;
        Ok(())
    }

    async fn add_line(&self, order: Uuid) -> anyhow::Result<()> {
        let line = OrderLine {
            sku: Sku::parse("SKU-X")?,
            quantity: Quantity::new(1)?,
            unit_price: Cents::new(100)?,
        };
        let now = Timestamp::now();
        self.orders
            .update(OrderId::from(order), |o| {
                self.counters.attempts.fetch_add(1, Ordering::Relaxed);
                o.add_line(line.clone(), now)
            })
            .await?;
        Ok(())
    }

    async fn transfer(&self, from: Uuid, to: Uuid) -> anyhow::Result<()> {
        let (from, to) = (AccountId::from(from), AccountId::from(to));
        self.store
            .run(|tx| {
                self.counters.attempts.fetch_add(1, Ordering::Relaxed);
                Box::pin(async move {
                    tx.of::<Account>().update(from, |a| a.withdraw(1)).await?;
                    tx.of::<Account>().update(to, |a| a.deposit(1)).await?;
                    Ok::<_, domain::RepositoryError<domain::example::AccountError>>(())
                })
            })
            .await?;
        Ok(())
    }
}
