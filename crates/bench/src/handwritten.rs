//! Hand-written diesel-async: the same statements and transactions as the
//! framework's mappings, with no framework in between.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::example::{
    Account, AccountId, Cents, Order, OrderId, OrderLine, OrderStatus, PersonName, Profile,
    Quantity, Score, Sku, User, UserId, Username,
};
use domain::{Aggregate, Fingerprint, Timestamp, Version};
use storage::schema::{accounts, order_lines, orders, user_profiles, users};

// The framework's token table, declared here rather than borrowed: the
// baseline uses nothing of the framework but the example's schema.
diesel::table! {
    tx_tokens (aggregate_kind, token) {
        aggregate_kind -> Text,
        token -> Uuid,
        aggregate_id -> Uuid,
        fingerprint -> Bytea,
        created_at -> Timestamptz,
    }
}

// The framework's outbox: a registration stores its `user_registered`
// event, as the framework does (its trigger `NOTIFY`s the relay).
diesel::table! {
    outbox (seq) {
        seq -> BigInt,
        id -> Uuid,
        aggregate_kind -> Text,
        aggregate_id -> Uuid,
        version -> BigInt,
        name -> Text,
        payload -> Jsonb,
        occurred_at -> Timestamptz,
    }
}
use uuid::Uuid;

use crate::contender::Contender;
use crate::measure::Counters;

#[derive(Clone)]
pub struct HandWritten {
    pool: Pool<AsyncPgConnection>,
    counters: Arc<Counters>,
}

#[derive(Queryable, Selectable, Insertable, Clone)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct UserRow {
    id: Uuid,
    version: i64,
    username: String,
    score: f64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = user_profiles, check_for_backend(diesel::pg::Pg))]
struct ProfileRow {
    user_id: Uuid,
    first_name: String,
    last_name: String,
}

/// Every column, as the framework's mapping loads them.
#[derive(Queryable, Selectable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
struct OrderRow {
    id: Uuid,
    version: i64,
    user_id: Uuid,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = order_lines, check_for_backend(diesel::pg::Pg))]
struct LineRow {
    order_id: Uuid,
    position: i32,
    sku: String,
    quantity: i32,
    unit_price_cents: i64,
}

/// A lost optimistic lock inside a transaction: roll back and retry.
struct Stale;

impl From<diesel::result::Error> for Failed {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(error)
    }
}

enum Failed {
    Db(diesel::result::Error),
    Stale(Stale),
}

/// Rows to the domain's user, as the mapping does (a hand-written
/// repository maps rows to aggregates too).
fn restore_user((row, profile): (UserRow, ProfileRow)) -> anyhow::Result<User> {
    Ok(User::restore(
        UserId::from(row.id),
        Version::new(u64::try_from(row.version)?),
        Username::parse(&row.username)?,
        Profile {
            first_name: PersonName::parse(&profile.first_name)?,
            last_name: PersonName::parse(&profile.last_name)?,
        },
        Score::new(row.score)?,
        Timestamp::from(row.created_at),
        Timestamp::from(row.updated_at),
    ))
}

/// Rows to the domain's order, as the mapping does.
fn restore_order(rows: Vec<(OrderRow, Option<LineRow>)>) -> anyhow::Result<Order> {
    let mut rows = rows.into_iter().peekable();
    let Some((order, _)) = rows.peek() else {
        anyhow::bail!("no such order");
    };
    let (id, version, user_id, status) =
        (order.id, order.version, order.user_id, order.status.clone());
    let (created_at, updated_at) = (order.created_at, order.updated_at);
    let lines = rows
        .filter_map(|(_, line)| line)
        .map(|line| {
            Ok(OrderLine {
                sku: Sku::parse(&line.sku)?,
                quantity: Quantity::new(line.quantity.into())?,
                unit_price: Cents::new(line.unit_price_cents)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Order::restore(
        OrderId::from(id),
        Version::new(u64::try_from(version)?),
        UserId::from(user_id),
        lines,
        OrderStatus::parse(&status).ok_or_else(|| anyhow::anyhow!("bad status {status}"))?,
        Timestamp::from(created_at),
        Timestamp::from(updated_at),
    ))
}

impl HandWritten {
    pub async fn new(
        url: &str,
        max_connections: u32,
        counters: Arc<Counters>,
    ) -> anyhow::Result<Self> {
        // The same checkout as the framework's default: no round trip, but
        // no connection with a closed socket or an open transaction.
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::CustomFunction(Box::new(|conn| {
            Box::pin(async move {
                if PoolableConnection::is_broken(conn) {
                    Err(diesel::result::Error::BrokenTransactionManager)
                } else {
                    Ok(())
                }
            })
        }));
        let pool = Pool::builder()
            .max_size(max_connections)
            .connection_timeout(std::time::Duration::from_secs(5))
            .build(AsyncDieselConnectionManager::new_with_config(url, config))
            .await?;
        Ok(Self { pool, counters })
    }

    async fn load_user(
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<(UserRow, ProfileRow)> {
        users::table
            .inner_join(user_profiles::table)
            .filter(users::id.eq(id))
            .select((UserRow::as_select(), ProfileRow::as_select()))
            .first(conn)
            .await
    }
}

impl Contender for HandWritten {
    async fn get(&self, id: Uuid) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        restore_user(Self::load_user(&mut conn, id).await?)?;
        Ok(())
    }

    async fn update(&self, id: Uuid) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        loop {
            let mut user = restore_user(Self::load_user(&mut conn, id).await?)?;
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let old_version = i64::try_from(user.version().get())?;
            user.welcome_newcomer(1, Timestamp::now());
            let user = UserRow {
                id,
                version: old_version + 1,
                username: user.username().as_str().to_owned(),
                score: user.score().get(),
                created_at: user.created_at().as_datetime(),
                updated_at: user.updated_at().as_datetime(),
            };
            let written = conn
                .transaction(async |conn| {
                    let matched = diesel::update(
                        users::table
                            .filter(users::id.eq(id))
                            .filter(users::version.eq(old_version)),
                    )
                    .set((
                        users::version.eq(user.version),
                        users::username.eq(&user.username),
                        users::score.eq(user.score),
                        users::updated_at.eq(user.updated_at),
                    ))
                    .execute(conn)
                    .await?;
                    if matched == 1 {
                        Ok(())
                    } else {
                        Err(Failed::Stale(Stale))
                    }
                })
                .await;
            match written {
                Ok(()) => return Ok(()),
                Err(Failed::Stale(Stale)) => {}
                Err(Failed::Db(error)) => return Err(error.into()),
            }
        }
    }

    async fn create(&self, token: Uuid, id: Uuid, username: String) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        let fingerprint = Fingerprint::of(&(&username, "First", "Last"));
        let now = Utc::now();
        let user = UserRow {
            id,
            version: 1,
            username,
            score: 0.0,
            created_at: now,
            updated_at: now,
        };
        let profile = ProfileRow {
            user_id: id,
            first_name: "First".into(),
            last_name: "Last".into(),
        };
        let claimed_before: Option<Uuid> = conn
            .transaction(async |conn| {
                let claimed = diesel::insert_into(tx_tokens::table)
                    .values((
                        tx_tokens::aggregate_kind.eq("user"),
                        tx_tokens::token.eq(token),
                        tx_tokens::aggregate_id.eq(id),
                        tx_tokens::fingerprint.eq(fingerprint.as_bytes().as_slice()),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                if claimed == 1 {
                    let shared: &AsyncPgConnection = conn;
                    let root = diesel::insert_into(users::table)
                        .values(user.clone())
                        .execute(&mut &*shared);
                    let child = diesel::insert_into(user_profiles::table)
                        .values(&profile)
                        .execute(&mut &*shared);
                    let event = diesel::insert_into(outbox::table)
                        .values((
                            outbox::id.eq(Uuid::now_v7()),
                            outbox::aggregate_kind.eq("user"),
                            outbox::aggregate_id.eq(id),
                            outbox::version.eq(1_i64),
                            outbox::name.eq("user_registered"),
                            outbox::payload.eq(serde_json::json!({ "username": user.username })),
                            outbox::occurred_at.eq(now),
                        ))
                        .execute(&mut &*shared);
                    let (root, child, event) = tokio::join!(root, child, event);
                    root?;
                    child?;
                    event?;
                    Ok::<_, diesel::result::Error>(None)
                } else {
                    let stored = tx_tokens::table
                        .find(("user", token))
                        .select(tx_tokens::aggregate_id)
                        .first(conn)
                        .await?;
                    Ok(Some(stored))
                }
            })
            .await?;
        if let Some(stored) = claimed_before {
            restore_user(Self::load_user(&mut conn, stored).await?)?;
        }
        Ok(())
    }

    async fn add_line(&self, order: Uuid) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        let line = OrderLine {
            sku: Sku::parse("SKU-X")?,
            quantity: Quantity::new(1)?,
            unit_price: Cents::new(100)?,
        };
        loop {
            let rows: Vec<(OrderRow, Option<LineRow>)> = orders::table
                .left_join(order_lines::table)
                .filter(orders::id.eq(order))
                .order(order_lines::position)
                .select((OrderRow::as_select(), Option::<LineRow>::as_select()))
                .load(&mut conn)
                .await?;
            let mut aggregate = restore_order(rows)?;
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let version = i64::try_from(aggregate.version().get())?;
            let position = i32::try_from(aggregate.lines().len())?;
            aggregate.add_line(line.clone(), Timestamp::now())?;
            let written = conn
                .transaction(async |conn| {
                    let shared: &AsyncPgConnection = conn;
                    let root = diesel::update(
                        orders::table
                            .filter(orders::id.eq(order))
                            .filter(orders::version.eq(version)),
                    )
                    .set((
                        orders::version.eq(version + 1),
                        orders::status.eq(aggregate.status().as_str()),
                        orders::updated_at.eq(aggregate.updated_at().as_datetime()),
                    ))
                    .execute(&mut &*shared);
                    let added = &aggregate.lines()[aggregate.lines().len() - 1];
                    let line = diesel::insert_into(order_lines::table)
                        .values(LineRow {
                            order_id: order,
                            position,
                            sku: added.sku.as_str().to_owned(),
                            quantity: i32::try_from(added.quantity.get()).unwrap_or(i32::MAX),
                            unit_price_cents: added.unit_price.get(),
                        })
                        .execute(&mut &*shared);
                    let (root, line) = tokio::join!(root, line);
                    match root? {
                        1 => line.map(drop).map_err(Failed::Db),
                        _ => Err(Failed::Stale(Stale)),
                    }
                })
                .await;
            match written {
                Ok(()) => return Ok(()),
                Err(Failed::Stale(Stale)) => {}
                Err(Failed::Db(error)) => return Err(error.into()),
            }
        }
    }

    async fn transfer(&self, from: Uuid, to: Uuid) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        loop {
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let moved = conn
                .build_transaction()
                .serializable()
                .run(async |conn| {
                    let mut both = Vec::with_capacity(2);
                    for id in [from, to] {
                        let (version, owner, balance): (i64, Uuid, i64) = accounts::table
                            .find(id)
                            .select((
                                accounts::version,
                                accounts::owner_id,
                                accounts::balance_cents,
                            ))
                            .first(conn)
                            .await?;
                        let version = Version::new(u64::try_from(version)?);
                        both.push(Account::restore(
                            AccountId::from(id),
                            version,
                            UserId::from(owner),
                            balance,
                        ));
                    }
                    both[0].withdraw(1)?;
                    both[1].deposit(1)?;
                    for account in &both {
                        let version = i64::try_from(account.version().get())?;
                        diesel::update(accounts::table.find(Uuid::from(account.id())))
                            .set((
                                accounts::version.eq(version + 1),
                                accounts::balance_cents.eq(account.balance_cents()),
                            ))
                            .execute(conn)
                            .await?;
                    }
                    anyhow::Ok(())
                })
                .await;
            match moved {
                Ok(()) => return Ok(()),
                Err(error)
                    if matches!(
                        error.downcast_ref::<diesel::result::Error>(),
                        Some(diesel::result::Error::DatabaseError(
                            diesel::result::DatabaseErrorKind::SerializationFailure,
                            _
                        ))
                    ) => {}
                Err(error) => return Err(error),
            }
        }
    }
}
