//! Consuming the relay's events: a durable queue bound to the exchange,
//! each event acknowledged once its handler succeeded and requeued when it
//! failed. Pair it with an inbox ([`domain::Inbox`]) in the handler: the
//! relay delivers at least once, the inbox makes that exactly one effect.
//!
//! An event whose handler keeps failing (a bug, data the handler cannot
//! take) is not retried forever: after [`ConsumerConfig::max_attempts`] it
//! is parked in the queue's parked queue ([`QueueBinding::parked_queue`]),
//! where it waits for someone to look, and the queue moves on. So is a
//! message that is no event. Parked is not lost: moved back to the queue
//! ([`crate::unpark`]; the service's `app unpark <queue>`), it is handled
//! again.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use domain::StoredEvent;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};

use crate::Backoff;
use crate::parked::park;
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
    /// Backoff while the broker is away, and after a failed handler
    /// (doubling with each failure of the same event; the consumer
    /// handles nothing meanwhile, which is what a database that is down
    /// calls for).
    pub min_backoff: Duration,
    /// See `min_backoff`.
    pub max_backoff: Duration,
    /// Failed handlings of one event, by this consumer, before it is
    /// parked ([`QueueBinding::parked_queue`]). Counted in the process: with
    /// several instances, an event may be tried up to this many times by
    /// each.
    pub max_attempts: u32,
}

impl ConsumerConfig {
    /// A consumer of `binding`'s queue, on the default exchange
    /// `domain_events`, 16 events at a time, parking an event after 10
    /// failed handlings (21 s of pauses between them).
    pub fn new(amqp_url: impl Into<String>, binding: QueueBinding) -> Self {
        Self {
            amqp_url: amqp_url.into(),
            exchange: "domain_events".to_owned(),
            binding,
            prefetch: 16,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_attempts: 10,
        }
    }
}

/// Hands each event of the queue to `handle` until `shutdown` completes:
/// acknowledged when `handle` succeeds, requeued (after a pause) when it
/// fails, parked after [`ConsumerConfig::max_attempts`] failures. A
/// message that is no event is logged and parked. The broker going away
/// is waited out, with backoff. An event being handled when `shutdown`
/// completes is finished first.
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
    let mut failures = Failures::default();
    let queue = &config.binding.queue;
    loop {
        let session = match subscribe(&config).await {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!(%error, %queue, "consumer: the broker is unreachable");
                let pause = backoff.next(config.min_backoff, config.max_backoff);
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        backoff = Backoff::default();
        let (_connection, channel, mut deliveries) = session;
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
                    tracing::error!(%error, %queue, "consumer: parking a message that is no event");
                    park(&channel, &config, delivery, error.to_string()).await;
                    continue;
                }
            };
            let id = event.id;
            match handle(event).await {
                Ok(()) => {
                    failures.forget(id);
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
                Err(error) => {
                    let failed = failures.add(id);
                    if failed >= config.max_attempts {
                        tracing::error!(%error, %id, %queue, failed, "consumer: handling failed; parked");
                        if park(&channel, &config, delivery, error.to_string()).await {
                            failures.forget(id);
                        }
                        continue;
                    }
                    tracing::warn!(%error, %id, %queue, failed, "consumer: handling failed; requeued");
                    let pause = Backoff(failed - 1).next(config.min_backoff, config.max_backoff);
                    let stopping = tokio::select! {
                        () = &mut shutdown => true,
                        () = tokio::time::sleep(pause) => false,
                    };
                    let _ = delivery.nack(REQUEUE).await;
                    if stopping {
                        return;
                    }
                }
            }
        }
    }
}

/// Back to the queue, to be handled again.
pub(crate) const REQUEUE: BasicNackOptions = BasicNackOptions {
    multiple: false,
    requeue: true,
};

/// How many times each event failed here since it last succeeded or was
/// parked. An event requeued to another instance and never seen again
/// here leaves its count behind: past `LIMIT` events, the counts start
/// over (an event then gets a few more attempts, never fewer).
#[derive(Default)]
struct Failures(HashMap<uuid::Uuid, u32>);

impl Failures {
    const LIMIT: usize = 10_000;

    fn add(&mut self, id: uuid::Uuid) -> u32 {
        if self.0.len() >= Self::LIMIT && !self.0.contains_key(&id) {
            self.0.clear();
        }
        let failed = self.0.entry(id).or_default();
        *failed += 1;
        *failed
    }

    fn forget(&mut self, id: uuid::Uuid) {
        self.0.remove(&id);
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
    topology::declare_queue(&channel, &config.binding.parked_queue()).await?;
    // Parking is confirmed before the event is acknowledged.
    channel
        .confirm_select(ConfirmSelectOptions::default())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_per_event_until_forgotten_and_start_over_past_the_limit() {
        let mut failures = Failures::default();
        let (one, other) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        assert_eq!([failures.add(one), failures.add(one)], [1, 2]);
        assert_eq!(failures.add(other), 1);
        failures.forget(one);
        assert_eq!(failures.add(one), 1);
        for _ in 2..Failures::LIMIT {
            failures.add(uuid::Uuid::now_v7());
        }
        assert_eq!(failures.add(other), 2, "a known event keeps its count");
        assert_eq!(failures.add(uuid::Uuid::now_v7()), 1);
        assert_eq!(failures.0.len(), 1, "past the limit, the counts start over");
    }
}
