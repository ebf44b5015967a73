//! Counting round trips: a TCP relay between the clients and Postgres that
//! counts a flight each time a client speaks after the server has spoken.
//! Statements pipelined into one write are one flight; a statement sent
//! only after the previous reply arrived is another. The bench measures
//! round trips through the relay in a pass of its own, so the relay's
//! extra hop never touches the throughput figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Flights sent through every relay of this process.
pub static FLIGHTS: AtomicU64 = AtomicU64::new(0);

/// A relay listening on a port of its own; stops with the process.
pub struct Relay {
    /// `database_url` with the relay in place of the server.
    pub url: String,
}

impl Relay {
    /// Relays to the server of `database_url` (`postgres://user@host:port/db`).
    pub async fn start(database_url: &str) -> anyhow::Result<Self> {
        let (scheme_user, rest) = database_url
            .split_once('@')
            .ok_or_else(|| anyhow::anyhow!("the database URL names no host: {database_url}"))?;
        let (server, database) = rest.split_once('/').unwrap_or((rest, ""));
        let server = server.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("{scheme_user}@{}/{database}", listener.local_addr()?);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    if let Ok(upstream) = TcpStream::connect(&server).await {
                        relay(client, upstream).await;
                    }
                });
            }
        });
        Ok(Self { url })
    }
}

/// Copies both ways until either side closes, counting the client's turns.
async fn relay(client: TcpStream, server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    // The client's first bytes start a flight too.
    let server_spoke = Arc::new(AtomicBool::new(true));
    let heard = server_spoke.clone();
    let up = async move {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
            if heard.swap(false, Ordering::AcqRel) {
                FLIGHTS.fetch_add(1, Ordering::Relaxed);
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = from_server.read(&mut buf).await {
            server_spoke.store(true, Ordering::Release);
            if to_client.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = up => {},
        () = down => {},
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::contender::Contender;

    /// Both tests count [`FLIGHTS`], which every relay of the process adds
    /// to: one at a time.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn database_url() -> String {
        std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
    }

    /// Needs the local Postgres (`DATABASE_URL`, default 127.0.0.1:5432).
    /// One thread: the client's connection task then runs only once both
    /// queries are queued, as it does inside diesel-async's connections.
    #[tokio::test]
    async fn a_pipelined_pair_is_one_flight_and_a_sequential_pair_two() {
        let _one = ONE_AT_A_TIME.lock().await;
        let relay = Relay::start(&database_url()).await.expect("relay");
        let (client, connection) = tokio_postgres::connect(&relay.url, tokio_postgres::NoTls)
            .await
            .expect("connect through the relay (is Postgres up? see README)");
        tokio::spawn(connection);
        let select = client.prepare("SELECT 1").await.expect("prepare");

        let before = FLIGHTS.load(Ordering::Relaxed);
        client.query(&select, &[]).await.expect("first");
        client.query(&select, &[]).await.expect("second");
        let sequential = FLIGHTS.load(Ordering::Relaxed) - before;

        let before = FLIGHTS.load(Ordering::Relaxed);
        let (a, b) = tokio::join!(client.query(&select, &[]), client.query(&select, &[]));
        a.and(b).expect("pipelined");
        let pipelined = FLIGHTS.load(Ordering::Relaxed) - before;
        assert_eq!((sequential, pipelined), (2, 1));
    }

    /// The round trips the README promises, on warm connections (each
    /// statement prepared once): a get 1, an update 2 (the load, then its
    /// write), one with child rows too, a create 1, a replayed create 2.
    #[tokio::test]
    async fn framework_operations_take_the_promised_round_trips() {
        let _one = ONE_AT_A_TIME.lock().await;
        let db = crate::setup::BenchDb::create(&database_url(), 4, 2)
            .await
            .expect("a scratch database (is Postgres up? see README)");
        let relay = Relay::start(&db.url).await.expect("relay");
        let store = storage::PgStore::new(
            &relay.url,
            storage::StoreConfig {
                max_connections: 1,
                ..storage::StoreConfig::default()
            },
        );
        let framework = crate::framework::Framework::new(&store, Arc::default());
        let (users, orders) = db.ids().await.expect("ids");
        let (user, order) = (users[0], orders[0]);
        let (token, id) = (Uuid::now_v7(), Uuid::now_v7());

        let mut counted = Vec::new();
        for (name, expected) in [
            ("get", 1),
            ("update", 2),
            ("update by key", 2),
            ("order update", 2),
            ("create", 1),
            ("replayed create", 2),
        ] {
            let mut flights = 0;
            for round in 0..4 {
                let before = FLIGHTS.load(Ordering::Relaxed);
                match name {
                    "get" => framework.get(user).await,
                    "update" => framework.update(user).await,
                    "update by key" => framework.update_by_username("user_1").await,
                    "order update" => framework.add_line(order).await,
                    "create" => {
                        let name = format!("fresh_{round}_{}", std::process::id());
                        framework.create(Uuid::now_v7(), Uuid::now_v7(), name).await
                    }
                    _ => framework.create(token, id, "replayed".to_owned()).await,
                }
                .unwrap_or_else(|error| panic!("{name}: {error:#}"));
                // The first round prepares the statements.
                if round > 0 {
                    flights += FLIGHTS.load(Ordering::Relaxed) - before;
                }
            }
            counted.push((name, flights, expected));
        }
        db.drop_database().await.expect("drop the scratch database");
        for (name, flights, expected) in &counted {
            assert_eq!(
                *flights,
                3 * expected,
                "{name}: {flights} round trips in 3 operations, promised {expected} each; \
                 all (name, round trips in 3, promised each): {counted:?}"
            );
        }
    }
}
