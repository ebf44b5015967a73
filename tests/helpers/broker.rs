//! RabbitMQ for the relay's tests: a durable queue of a test's own, bound to
//! an exchange of its own, read by a consumer that reconnects after a broker
//! restart; and a relay run beside the test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use relay::{RelayConfig, RelayStatus};
use tokio::sync::{oneshot, watch};

/// Where the tests find RabbitMQ: `AMQP_URL`, or the local default.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A message the test queue received.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The event id.
    pub message_id: String,
    /// `<aggregate kind>.<event name>`.
    pub routing_key: String,
    /// The event as JSON.
    pub body: serde_json::Value,
}

/// A durable queue bound to a fresh exchange, consumed into a list.
pub struct TestQueue {
    /// The exchange a relay under test publishes to.
    pub exchange: String,
    queue: String,
    received: Arc<Mutex<Vec<Delivered>>>,
    consumer: tokio::task::JoinHandle<()>,
}

impl TestQueue {
    /// Declares the exchange and the queue and starts consuming.
    ///
    /// # Panics
    /// When RabbitMQ cannot be reached: the relay's tests need it, and say
    /// how to start it instead of passing silently.
    pub async fn bind() -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let (exchange, queue) = (
            format!("test_events_{suffix}"),
            format!("test_queue_{suffix}"),
        );
        let channel = open(&exchange, &everything(&queue))
            .await
            .unwrap_or_else(|error| panic!("{}", unreachable(&error)));
        drop(channel);
        let received = Arc::new(Mutex::new(Vec::new()));
        let consumer = tokio::spawn(consume(exchange.clone(), queue.clone(), received.clone()));
        Self {
            exchange,
            queue,
            received,
            consumer,
        }
    }

    /// What arrived so far, in arrival order.
    pub fn received(&self) -> Vec<Delivered> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `n` messages arrived, or `within` passed;
    /// returns what arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Delivered> {
        let started = Instant::now();
        loop {
            let received = self.received();
            if received.len() >= n || started.elapsed() > within {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops consuming and deletes the queue and the exchange.
    pub async fn delete(self) {
        self.consumer.abort();
        delete_exchange_and_queues(&self.exchange, &[&self.queue]).await;
    }
}

/// Deletes what a test declared on the broker (durable, so it would stay).
pub async fn delete_exchange_and_queues(exchange: &str, queues: &[&str]) {
    if let Ok(connection) = Connection::connect(&amqp_url(), ConnectionProperties::default()).await
        && let Ok(channel) = connection.create_channel().await
    {
        for queue in queues {
            let _ = channel
                .queue_delete((*queue).into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// How many messages wait in the durable `queue`.
///
/// # Panics
/// When the broker cannot be reached or the queue does not exist.
pub async fn messages_waiting(queue: &str) -> u32 {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("queue {queue}: {e}"))
        .message_count()
}

/// What a test that needs RabbitMQ says when it cannot reach it.
fn unreachable(error: &lapin::Error) -> String {
    format!(
        "this test needs RabbitMQ at {} ({error}). Start the local one with \
         `rabbitmq-server -detached` (or `service rabbitmq-server start`), or set \
         AMQP_URL; `scripts/test` does the former for you.",
        amqp_url()
    )
}

/// Declares `exchange` and `binding`'s queue, as the relay would.
///
/// # Panics
/// When RabbitMQ cannot be reached, saying how to start it.
pub async fn declare(exchange: &str, binding: &relay::QueueBinding) {
    open(exchange, binding)
        .await
        .unwrap_or_else(|error| panic!("{}", unreachable(&error)));
}

/// Publishes `body` to `exchange` under `routing_key`, persistent, and
/// waits for the broker's confirm.
///
/// # Panics
/// When the broker cannot be reached or does not confirm.
pub async fn publish(exchange: &str, routing_key: &str, body: &[u8]) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("a confirm");
    assert!(confirmation.is_ack(), "the broker refused a message");
}

/// A message taken from a queue.
#[derive(Debug)]
pub struct Taken {
    /// Its body.
    pub body: Vec<u8>,
    /// Its headers, each value as text.
    pub headers: BTreeMap<String, String>,
}

/// Takes (and acknowledges) every message waiting in `queue`.
///
/// # Panics
/// When the broker cannot be reached or the queue does not exist.
pub async fn take_all(queue: &str) -> Vec<Taken> {
    get_all(queue, true).await
}

/// Every message waiting in `queue`, left there (taken unacknowledged,
/// then the connection closed: the broker puts them back, in order).
///
/// # Panics
/// When the broker cannot be reached or the queue does not exist.
pub async fn peek_all(queue: &str) -> Vec<Taken> {
    get_all(queue, false).await
}

async fn get_all(queue: &str, no_ack: bool) -> Vec<Taken> {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    let mut taken = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack })
        .await
        .unwrap_or_else(|e| panic!("queue {queue}: {e}"))
    {
        let headers = message
            .delivery
            .properties
            .headers()
            .iter()
            .flat_map(FieldTable::inner)
            .map(|(key, value)| {
                let text = match value {
                    AMQPValue::LongString(text) => text.to_string(),
                    other => format!("{other:?}"),
                };
                (key.to_string(), text)
            })
            .collect();
        taken.push(Taken {
            body: message.delivery.data,
            headers,
        });
    }
    let _ = connection.close(200, "done".into()).await;
    taken
}

/// Connects, declares the durable exchange and `binding`'s queue and
/// binds them.
async fn open(
    exchange: &str,
    binding: &relay::QueueBinding,
) -> lapin::Result<(Connection, Channel)> {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    relay::declare(&channel, exchange, std::slice::from_ref(binding)).await?;
    Ok((connection, channel))
}

/// A test queue's binding: every routing key.
fn everything(queue: &str) -> relay::QueueBinding {
    relay::QueueBinding::new(queue, &["#"])
}

/// Consumes `queue` into `received`, reconnecting whenever the broker
/// goes away, until aborted.
async fn consume(exchange: String, queue: String, received: Arc<Mutex<Vec<Delivered>>>) {
    loop {
        if let Ok((_connection, channel)) = open(&exchange, &everything(&queue)).await
            && let Ok(mut deliveries) = channel
                .basic_consume(
                    queue.as_str().into(),
                    "relay-test".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
        {
            while let Some(Ok(delivery)) = deliveries.next().await {
                let message_id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let body = serde_json::from_slice(&delivery.data).unwrap_or_default();
                received
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Delivered {
                        message_id,
                        routing_key: delivery.routing_key.to_string(),
                        body,
                    });
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A relay running beside a test, on the test's database and exchange.
pub struct RunningRelay {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// What the relay reports.
    pub status: watch::Receiver<RelayStatus>,
}

impl RunningRelay {
    /// Starts a relay with short waits: a 100 ms poll, backoff from 50 ms
    /// to 500 ms.
    pub fn start(database_url: &str, exchange: &str) -> Self {
        let mut config = RelayConfig::new(database_url, amqp_url());
        exchange.clone_into(&mut config.exchange);
        config.poll = Duration::from_millis(100);
        config.min_backoff = Duration::from_millis(50);
        config.max_backoff = Duration::from_millis(500);
        Self::start_with(config)
    }

    /// Starts a relay with `config`.
    pub fn start_with(config: RelayConfig) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let (status, watched) = relay::status_channel();
        let task = tokio::spawn(relay::run(
            config,
            async move {
                let _ = stopped.await;
            },
            status,
        ));
        Self {
            stop: Some(stop),
            task,
            status: watched,
        }
    }

    /// Ends the relay without letting it finish anything, wherever it is
    /// (its task is aborted), as the death of its process would.
    pub fn kill(self) {
        self.task.abort();
    }

    /// Asks the relay to stop and waits until it did.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
