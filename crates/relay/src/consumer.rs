//! Consuming the relay's events: a durable queue bound to the exchange,
//! each event acknowledged once its handler succeeded and requeued when it
//! failed. Pair it with an inbox ([`domain::Inbox`]) in the handler: the
//! relay delivers at least once, the inbox makes that exactly one effect.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use domain::StoredEvent;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};

use crate::Backoff;
use crate::topology::{self, QueueBinding};

/// Where a consumer reads from.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The broker.
    pub amqp_url: String,
    /// The relay's exchange (`domain_events` by default).
    pub exchange: String,
    /// The consumer's durable queue and its routing keys: events wait in
    /// it while the consumer is away. Give the relay the same binding
    /// ([`crate::RelayConfig::queues`]) so that events stored before the
    /// consumer first started wait too.
    pub binding: QueueBinding,
    /// Events handed out before one is acknowledged.
    pub prefetch: u16,
    /// Backoff while the broker is away, and after a failed handler.
    pub min_backoff: Duration,
    /// See `min_backoff`.
    pub max_backoff: Duration,
}

impl ConsumerConfig {
    /// A consumer of `binding`'s queue, on the default exchange
    /// `domain_events`, 16 events at a time.
    pub fn new(amqp_url: impl Into<String>, binding: QueueBinding) -> Self {
        Self {
            amqp_url: amqp_url.into(),
            exchange: "domain_events".to_owned(),
            binding,
            prefetch: 16,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Hands each event of the queue to `handle` until `shutdown` completes:
/// acknowledged when `handle` succeeds, requeued (after a pause) when it
/// fails. A message that is no event is logged and dropped. The broker
/// going away is waited out, with backoff. An event being handled when
/// `shutdown` completes is finished first.
pub async fn consume<F, Fut, E>(
    config: ConsumerConfig,
    shutdown: impl Future<Output = ()>,
    handle: F,
) where
    F: Fn(StoredEvent) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    tokio::pin!(shutdown);
    let mut backoff = Backoff::default();
    loop {
        let session = match subscribe(&config).await {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!(%error, queue = %config.binding.queue, "consumer: the broker is unreachable");
                let pause = backoff.next(config.min_backoff, config.max_backoff);
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        backoff = Backoff::default();
        let (_connection, _channel, mut deliveries) = session;
        loop {
            let delivery = tokio::select! {
                () = &mut shutdown => return,
                delivery = deliveries.next() => delivery,
            };
            let Some(Ok(delivery)) = delivery else {
                break; // the connection went: subscribe again
            };
            let event: StoredEvent = match serde_json::from_slice(&delivery.data) {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(%error, queue = %config.binding.queue, "consumer: dropping a message that is no event");
                    let _ = delivery.nack(BasicNackOptions::default()).await;
                    continue;
                }
            };
            let id = event.id;
            match handle(event).await {
                Ok(()) => {
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
                Err(error) => {
                    tracing::warn!(%error, %id, queue = %config.binding.queue, "consumer: handling failed; requeued");
                    tokio::time::sleep(config.min_backoff).await;
                    let requeue = BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    };
                    let _ = delivery.nack(requeue).await;
                }
            }
        }
    }
}

/// Connects, declares the exchange and the queue, binds and subscribes.
async fn subscribe(config: &ConsumerConfig) -> lapin::Result<(Connection, Channel, Consumer)> {
    let connection = Connection::connect(&config.amqp_url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    topology::declare(
        &channel,
        &config.exchange,
        std::slice::from_ref(&config.binding),
    )
    .await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    let deliveries = channel
        .basic_consume(
            config.binding.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((connection, channel, deliveries))
}
