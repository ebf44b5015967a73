//! Raw tokio-postgres with the fewest round trips: no transactions at all;
//! each write is one atomic statement (CTEs where two tables change).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use domain::Fingerprint;
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

use crate::contender::{Contender, next_score};
use crate::measure::Counters;

#[derive(Clone)]
pub struct Raw {
    clients: Arc<Vec<Connection>>,
    next: Arc<AtomicUsize>,
    counters: Arc<Counters>,
}

const LOAD_USER: &str = "SELECT u.id, u.version, u.username, u.score, u.created_at, u.updated_at, \
     p.first_name, p.last_name FROM users u JOIN user_profiles p ON p.user_id = u.id WHERE u.id = $1";
const UPDATE_USER: &str = "UPDATE users SET version = $3, score = $4, updated_at = now() \
     WHERE id = $1 AND version = $2";
const CREATE_USER: &str = "WITH claimed AS ( \
       INSERT INTO tx_tokens (aggregate_kind, token, aggregate_id, fingerprint) VALUES ('user', $1, $2, $3) \
       ON CONFLICT DO NOTHING RETURNING aggregate_id), \
     created AS ( \
       INSERT INTO users (id, version, username, score, created_at, updated_at) \
       SELECT aggregate_id, 1, $4, 0, now(), now() FROM claimed RETURNING id), \
     profiled AS ( \
       INSERT INTO user_profiles (user_id, first_name, last_name) \
       SELECT id, 'First', 'Last' FROM created RETURNING user_id) \
     INSERT INTO outbox (id, aggregate_kind, aggregate_id, version, name, payload, occurred_at) \
     SELECT $5, 'user', user_id, 1, 'user_registered', jsonb_build_object('username', $4::text), now() \
     FROM profiled";
const FIND_TOKEN: &str = "SELECT u.id, u.version, u.username, u.score, p.first_name, p.last_name \
     FROM tx_tokens t JOIN users u ON u.id = t.aggregate_id JOIN user_profiles p ON p.user_id = u.id \
     WHERE t.aggregate_kind = 'user' AND t.token = $1";
const LOAD_ORDER: &str = "SELECT o.version, l.position FROM orders o \
     LEFT JOIN order_lines l ON l.order_id = o.id WHERE o.id = $1 ORDER BY l.position";
const APPEND_LINE: &str = "WITH bumped AS ( \
       UPDATE orders SET version = $2 + 1, updated_at = now() WHERE id = $1 AND version = $2 RETURNING id) \
     INSERT INTO order_lines (order_id, position, sku, quantity, unit_price_cents) \
     SELECT id, $3, 'SKU-X', 1, 100 FROM bumped";

const TRANSFER: &str = "UPDATE accounts SET version = version + 1, \
     balance_cents = balance_cents + CASE WHEN id = $1 THEN -1 ELSE 1 END \
     WHERE id IN ($1, $2)";

/// A client and its statements, prepared once: each query is then one
/// round trip (a `&str` query would be prepared again on every call).
struct Connection {
    client: Client,
    load_user: Statement,
    update_user: Statement,
    create_user: Statement,
    find_token: Statement,
    load_order: Statement,
    append_line: Statement,
    transfer: Statement,
}

impl Connection {
    async fn open(url: &str) -> anyhow::Result<Self> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("raw connection ended: {error}");
            }
        });
        Ok(Self {
            load_user: client.prepare(LOAD_USER).await?,
            update_user: client.prepare(UPDATE_USER).await?,
            create_user: client.prepare(CREATE_USER).await?,
            find_token: client.prepare(FIND_TOKEN).await?,
            load_order: client.prepare(LOAD_ORDER).await?,
            append_line: client.prepare(APPEND_LINE).await?,
            transfer: client.prepare(TRANSFER).await?,
            client,
        })
    }
}

impl Raw {
    pub async fn new(
        url: &str,
        connections: usize,
        counters: Arc<Counters>,
    ) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            clients.push(Connection::open(url).await?);
        }
        Ok(Self {
            clients: Arc::new(clients),
            next: Arc::new(AtomicUsize::new(0)),
            counters,
        })
    }

    /// A connection, round robin; counts the statement about to be sent.
    fn client(&self) -> &Connection {
        self.counters.statements.fetch_add(1, Ordering::Relaxed);
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[index]
    }
}

impl Contender for Raw {
    async fn get(&self, id: Uuid) -> anyhow::Result<()> {
        let c = self.client();
        c.client.query_one(&c.load_user, &[&id]).await?;
        Ok(())
    }

    async fn update(&self, id: Uuid) -> anyhow::Result<()> {
        loop {
            let c = self.client();
            let row = c.client.query_one(&c.load_user, &[&id]).await?;
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let (version, score): (i64, f64) = (row.get(1), row.get(3));
            let c = self.client();
            let matched = c
                .client
                .execute(
                    &c.update_user,
                    &[&id, &version, &(version + 1), &next_score(score)],
                )
                .await?;
            if matched == 1 {
                return Ok(());
            }
        }
    }

    async fn create(&self, token: Uuid, id: Uuid, username: String) -> anyhow::Result<()> {
        let fingerprint = Fingerprint::of(&(&username, "First", "Last"));
        let c = self.client();
        let created = c
            .client
            .execute(
                &c.create_user,
                &[
                    &token,
                    &id,
                    &fingerprint.as_bytes().as_slice(),
                    &username,
                    &Uuid::now_v7(), // the user_registered event, as the framework stores it
                ],
            )
            .await?;
        if created == 0 {
            let c = self.client();
            c.client.query_one(&c.find_token, &[&token]).await?;
        }
        Ok(())
    }

    async fn add_line(&self, order: Uuid) -> anyhow::Result<()> {
        loop {
            let c = self.client();
            let rows = c.client.query(&c.load_order, &[&order]).await?;
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let version: i64 = rows.first().map_or(0, |r| r.get(0));
            let lines = rows
                .iter()
                .filter(|r| r.get::<_, Option<i32>>(1).is_some())
                .count();
            let position = i32::try_from(lines)?;
            let c = self.client();
            let appended = c
                .client
                .execute(&c.append_line, &[&order, &version, &position])
                .await?;
            if appended == 1 {
                return Ok(());
            }
        }
    }

    /// One statement, atomic by itself: the schema's
    /// `CHECK (balance_cents >= 0)` refuses an overdraft, as the domain's
    /// `withdraw` does.
    async fn transfer(&self, from: Uuid, to: Uuid) -> anyhow::Result<()> {
        let c = self.client();
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        let moved = c.client.execute(&c.transfer, &[&from, &to]).await?;
        anyhow::ensure!(moved == 2, "a transfer between missing accounts");
        Ok(())
    }
}
