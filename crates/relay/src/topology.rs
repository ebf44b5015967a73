//! What the relay and its consumers declare on the broker: the durable
//! topic exchange, and each consumer's durable queue with its bindings.
//! Declaring is idempotent, so both sides declare what they rely on.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

/// A consumer's durable queue and the routing keys bound to it.
///
/// A relay given the bindings of the consumers it feeds
/// ([`crate::RelayConfig::queues`]) declares them before it publishes, so
/// an event stored before its consumer ever started waits in the queue;
/// without a bound queue, the exchange drops it as unroutable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBinding {
    /// The queue's name: one per consumer, shared by its instances.
    pub queue: String,
    /// `<aggregate kind>.<event name>`, `*` and `#` wildcards allowed.
    pub routing_keys: Vec<String>,
}

impl QueueBinding {
    /// `queue`, bound to `routing_keys`.
    pub fn new(queue: impl Into<String>, routing_keys: &[&str]) -> Self {
        Self {
            queue: queue.into(),
            routing_keys: routing_keys.iter().map(|&key| key.to_owned()).collect(),
        }
    }

    /// `<queue>.parked`: where [`crate::consume`] parks the events whose
    /// handler kept failing, and messages that are no event. Declared
    /// (durable) by the consumer.
    pub fn parked_queue(&self) -> String {
        format!("{}.parked", self.queue)
    }
}

/// Declares `exchange` (durable topic) and each of `queues` (durable),
/// bound to it by their routing keys, on `channel`: what the relay and
/// [`crate::consume`] do on each connect, for code that reads the exchange
/// another way.
pub async fn declare(
    channel: &Channel,
    exchange: &str,
    queues: &[QueueBinding],
) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    for binding in queues {
        declare_queue(channel, &binding.queue).await?;
        for key in &binding.routing_keys {
            channel
                .queue_bind(
                    binding.queue.as_str().into(),
                    exchange.into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    Ok(())
}

/// Declares the durable queue `queue` (idempotent: a queue that exists is
/// left as it is).
pub(crate) async fn declare_queue(channel: &Channel, queue: &str) -> lapin::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), durable, FieldTable::default())
        .await?;
    Ok(())
}
