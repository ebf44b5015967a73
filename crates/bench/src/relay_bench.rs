//! The outbox relay's speed: 10 000 events from concurrent use cases (orders
//! opened and placed through the service's use cases, each a unit of work
//! with its action-log entry; placing stores an `order_placed` event),
//! published by one relay to RabbitMQ and consumed from a queue of the
//! bench's own. Measures
//! publish throughput and each event's end-to-end lag, from the moment its
//! change was stored to the moment a consumer received it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::example::use_cases::orders::{self, OrderChange};
use domain::example::{
    Cents, OrderLine, PersonName, Profile, Quantity, Sku, User, UserId, Username,
};
use domain::{Aggregate, IfVersion, Repository, Timestamp, TxToken};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

/// What a relay is started from.
type Parts = (
    relay::RelayConfig,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::watch::Sender<relay::RelayStatus>,
);

/// What one run measured.
pub struct RelayFigures {
    pub events: usize,
    pub writers: usize,
    /// Live: from the first registration to the last event received.
    /// Backlog: from the relay's start to the last event received.
    pub elapsed: Duration,
    /// How long the registrations took.
    pub writes: Duration,
    pub lag_p50: Duration,
    pub lag_p99: Duration,
}

/// Registers `events` users from `writers` tasks on `database_url` (a
/// migrated database) and waits for every event: with the relay running
/// all along (`live`), or started once every registration is stored (a
/// backlog to drain).
pub async fn bench(
    database_url: &str,
    amqp_url: &str,
    (events, writers): (usize, usize),
    live: bool,
) -> anyhow::Result<RelayFigures> {
    let queue = BenchQueue::bind(amqp_url).await?;
    let (lags, consumer) = queue.collect().await?;

    let mut config = relay::RelayConfig::new(database_url, amqp_url);
    config.exchange.clone_from(&queue.exchange);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (status, _) = relay::status_channel();
    let spawn = |(config, stopped, status): Parts| {
        tokio::spawn(relay::run(
            config,
            async move { drop(stopped.await) },
            status,
        ))
    };
    let mut pending = Some((config, stopped, status));
    let mut running = if live {
        pending.take().map(spawn)
    } else {
        None
    };

    let mut started = Instant::now();
    let expected = place_orders(database_url, events, writers).await?;
    let written_in = started.elapsed();
    if let Some(parts) = pending.take() {
        started = Instant::now();
        running = Some(spawn(parts));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrived(&lags).len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    if let Some(running) = running {
        running.await?;
    }
    consumer.abort();
    queue.delete().await;

    let mut lags = arrived(&lags);
    anyhow::ensure!(
        lags.len() == expected,
        "{} of {expected} events arrived within 120 s",
        lags.len()
    );
    lags.sort_unstable();
    Ok(RelayFigures {
        events: expected,
        writers,
        elapsed,
        writes: written_in,
        lag_p50: lags[lags.len() / 2],
        lag_p99: lags[lags.len() * 99 / 100],
    })
}

/// The lags of the events received so far.
fn arrived(lags: &Mutex<Vec<Duration>>) -> Vec<Duration> {
    lags.lock().map_or_else(|_| Vec::new(), |lags| lags.clone())
}

/// From each of `writers` tasks: registers a user, then opens and places
/// `events / writers` orders through the service's use cases (each a unit
/// of work with its action log; placing records `order_placed`). Returns
/// how many events that stored (one per user and one per placed order).
async fn place_orders(database_url: &str, events: usize, writers: usize) -> anyhow::Result<usize> {
    // Units creating into a fresh, small database conflict often under
    // SERIALIZABLE (their token lookups share index pages): room to retry.
    let config = storage::StoreConfig {
        max_attempts: 1000,
        deadline: Duration::from_secs(30),
        ..storage::StoreConfig::default()
    };
    let store = storage::PgStore::new(database_url, config);
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let profile = Profile {
                    first_name: PersonName::parse("First")?,
                    last_name: PersonName::parse("Last")?,
                };
                let user = User::register(
                    UserId::generate(),
                    Username::parse(&format!("writer_{writer}"))?,
                    profile,
                    Timestamp::now(),
                );
                let user = store
                    .repository::<User>()
                    .create(TxToken::generate(), user)
                    .await?
                    .into_aggregate()
                    .id();
                for _ in 0..events / writers {
                    let line = OrderLine {
                        sku: Sku::parse("SKU-X")?,
                        quantity: Quantity::new(1)?,
                        unit_price: Cents::new(100)?,
                    };
                    let opened = orders::open(
                        &store,
                        TxToken::generate(),
                        user,
                        vec![line],
                        Timestamp::now(),
                    )
                    .await?;
                    let id = opened.into_aggregate().id();
                    orders::change(
                        &store,
                        TxToken::generate(),
                        id,
                        IfVersion::Any,
                        OrderChange::Place,
                        Timestamp::now(),
                    )
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(writers + events / writers * writers)
}

/// An exchange and a queue bound to all of it, of the bench's own.
struct BenchQueue {
    _connection: Connection,
    channel: lapin::Channel,
    exchange: String,
    queue: String,
}

impl BenchQueue {
    async fn bind(amqp_url: &str) -> anyhow::Result<Self> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let (exchange, queue) = (
            format!("bench_events_{suffix}"),
            format!("bench_queue_{suffix}"),
        );
        let connection = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let binding = relay::QueueBinding::new(queue.clone(), &["#"]);
        relay::declare(&channel, &exchange, &[binding]).await?;
        Ok(Self {
            _connection: connection,
            channel,
            exchange,
            queue,
        })
    }

    /// Consumes the queue, noting each event's lag: from the time its
    /// change was stored to the time it arrived.
    async fn collect(
        &self,
    ) -> anyhow::Result<(Arc<Mutex<Vec<Duration>>>, tokio::task::JoinHandle<()>)> {
        let mut deliveries = self
            .channel
            .basic_consume(
                self.queue.as_str().into(),
                "bench".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let lags = Arc::new(Mutex::new(Vec::new()));
        let collected = lags.clone();
        let consumer = tokio::spawn(async move {
            while let Some(Ok(delivery)) = deliveries.next().await {
                let received = chrono::Utc::now();
                let body: serde_json::Value =
                    serde_json::from_slice(&delivery.data).unwrap_or_default();
                let stored = body["occurred_at"]
                    .as_str()
                    .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
                if let Some(stored) = stored {
                    let lag = (received - stored.to_utc()).to_std().unwrap_or_default();
                    collected.lock().map(|mut lags| lags.push(lag)).ok();
                }
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        });
        Ok((lags, consumer))
    }

    async fn delete(self) {
        let _ = self
            .channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = self
            .channel
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
    }
}
