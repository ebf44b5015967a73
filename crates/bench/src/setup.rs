//! The benchmark database: created fresh, migrated, seeded with generated
//! rows, dropped at the end.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// A database of the benchmark's own.
pub struct BenchDb {
    pub url: String,
    admin_url: String,
    name: String,
}

impl BenchDb {
    /// Creates, migrates and seeds `users` users (each with a profile and
    /// an account) and `orders` draft orders of 3 lines.
    pub async fn create(admin_url: &str, users: u32, orders: u32) -> anyhow::Result<Self> {
        let name = format!("bench_{}", std::process::id());
        let mut admin = AsyncPgConnection::establish(admin_url).await?;
        // One statement per call: a multi-statement batch is one implicit
        // transaction, where CREATE DATABASE and VACUUM cannot run.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => anyhow::bail!("DATABASE_URL must name a database: {admin_url}"),
        };
        storage::migrate(&url).await?;
        let mut conn = AsyncPgConnection::establish(&url).await?;
        conn.batch_execute(&format!(
            "INSERT INTO users (id, version, username, score, created_at, updated_at) \
               SELECT md5('u' || i)::uuid, 1, 'user_' || i, 0, now(), now() FROM generate_series(1, {users}) i; \
             INSERT INTO user_profiles (user_id, first_name, last_name) \
               SELECT md5('u' || i)::uuid, 'First', 'Last' FROM generate_series(1, {users}) i; \
             INSERT INTO accounts (id, version, owner_id, balance_cents) \
               SELECT md5('a' || i)::uuid, 1, md5('u' || i)::uuid, 1000000000 \
               FROM generate_series(1, {users}) i;"
        ))
        .await?;
        conn.batch_execute("VACUUM ANALYZE users").await?;
        conn.batch_execute("VACUUM ANALYZE user_profiles").await?;
        conn.batch_execute("VACUUM ANALYZE accounts").await?;
        let db = Self {
            url,
            admin_url: admin_url.to_owned(),
            name,
        };
        db.reset_orders(orders).await?;
        Ok(db)
    }

    /// Puts the orders back to `orders` drafts of 3 lines, so every run
    /// starts from the same state.
    pub async fn reset_orders(&self, orders: u32) -> anyhow::Result<()> {
        let mut conn = AsyncPgConnection::establish(&self.url).await?;
        conn.batch_execute(&format!(
            "TRUNCATE orders CASCADE; \
             INSERT INTO orders (id, version, user_id, status, created_at, updated_at) \
               SELECT md5('o' || i)::uuid, 1, md5('u' || i)::uuid, 'draft', now(), now() \
               FROM generate_series(1, {orders}) i; \
             INSERT INTO order_lines (order_id, position, sku, quantity, unit_price_cents) \
               SELECT md5('o' || i)::uuid, p, 'SKU-' || p, 1, 100 \
               FROM generate_series(1, {orders}) i, generate_series(0, 2) p;"
        ))
        .await?;
        conn.batch_execute("VACUUM ANALYZE orders").await?;
        conn.batch_execute("VACUUM ANALYZE order_lines").await?;
        Ok(())
    }

    /// The ids of the seeded users and orders.
    pub async fn ids(&self) -> anyhow::Result<(Vec<uuid::Uuid>, Vec<uuid::Uuid>)> {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use storage::schema::{orders, users};
        let mut conn = AsyncPgConnection::establish(&self.url).await?;
        let user_ids = users::table.select(users::id).load(&mut conn).await?;
        let order_ids = orders::table.select(orders::id).load(&mut conn).await?;
        Ok((user_ids, order_ids))
    }

    /// The ids of the seeded accounts.
    pub async fn account_ids(&self) -> anyhow::Result<Vec<uuid::Uuid>> {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use storage::schema::accounts;
        let mut conn = AsyncPgConnection::establish(&self.url).await?;
        Ok(accounts::table.select(accounts::id).load(&mut conn).await?)
    }

    /// Drops the database.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        let mut admin = AsyncPgConnection::establish(&self.admin_url).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await?;
        Ok(())
    }
}

/// A user's stored version.
pub async fn version_of(url: &str, id: uuid::Uuid) -> anyhow::Result<i64> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use storage::schema::users;
    let mut conn = AsyncPgConnection::establish(url).await?;
    Ok(users::table
        .find(id)
        .select(users::version)
        .first(&mut conn)
        .await?)
}

/// Waits until the replica at `url` has the `users` seeded users.
pub async fn await_replica(url: &str, users: u32) -> anyhow::Result<()> {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    for _ in 0..600 {
        if let Ok(mut conn) = AsyncPgConnection::establish(url).await {
            let seeded: Result<i64, _> =
                diesel::select(sql::<BigInt>("(SELECT count(*) FROM users)"))
                    .get_result(&mut conn)
                    .await;
            if seeded.is_ok_and(|n| n >= i64::from(users)) {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("the replica at {url} did not replay the seeded users within a minute")
}
