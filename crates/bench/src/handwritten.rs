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
use domain::Fingerprint;
use storage::schema::{order_lines, orders, tx_tokens, user_profiles, users};
use uuid::Uuid;

use crate::contender::{Contender, next_score};
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
#[expect(
    dead_code,
    reason = "selected like the mapping does; only version is used"
)]
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
        Self::load_user(&mut conn, id).await?;
        Ok(())
    }

    async fn update(&self, id: Uuid) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        loop {
            let (mut user, _profile) = Self::load_user(&mut conn, id).await?;
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let old_version = user.version;
            user.version += 1;
            user.score = next_score(user.score);
            user.updated_at = Utc::now();
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
                    let (root, child) = tokio::join!(root, child);
                    root?;
                    child?;
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
            Self::load_user(&mut conn, stored).await?;
        }
        Ok(())
    }

    async fn add_line(&self, order: Uuid) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        loop {
            let rows: Vec<(OrderRow, Option<LineRow>)> = orders::table
                .left_join(order_lines::table)
                .filter(orders::id.eq(order))
                .order(order_lines::position)
                .select((OrderRow::as_select(), Option::<LineRow>::as_select()))
                .load(&mut conn)
                .await?;
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let version = <[_]>::first(&rows).map_or(0, |(o, _)| o.version);
            let position = i32::try_from(rows.iter().filter(|(_, l)| l.is_some()).count())?;
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
                        orders::status.eq("draft"),
                        orders::updated_at.eq(Utc::now()),
                    ))
                    .execute(&mut &*shared);
                    let line = diesel::insert_into(order_lines::table)
                        .values(LineRow {
                            order_id: order,
                            position,
                            sku: "SKU-X".into(),
                            quantity: 1,
                            unit_price_cents: 100,
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
}
