//! How a relay reaches the database and the broker, and how hard it tries.

use std::time::Duration;

use crate::QueueBinding;

/// A relay's settings. [`RelayConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The database whose `outbox` table is relayed.
    pub database_url: String,
    /// The broker, `amqp://user:password@host:port/vhost` (`%2f` for `/`).
    pub amqp_url: String,
    /// The durable topic exchange events are published to, with the
    /// routing key `<aggregate kind>.<event name>` (`order.order_placed`).
    pub exchange: String,
    /// The queues of the consumers this relay feeds, declared and bound
    /// before it publishes, so their events wait for them even before they
    /// first start (the exchange drops an event no queue is bound for).
    pub queues: Vec<QueueBinding>,
    /// Events published per batch: one query, one wait for the broker's
    /// confirms, one update marking them.
    pub batch: i64,
    /// How long an idle relay waits for a notification before it looks at
    /// the outbox anyway (a notification can be lost with its connection).
    pub poll: Duration,
    /// Backoff after a failure, doubled up to `max_backoff`, while the
    /// broker or the database is down.
    pub min_backoff: Duration,
    /// See `min_backoff`.
    pub max_backoff: Duration,
    /// How long the broker may take to confirm a batch before the relay
    /// gives up on the connection (and publishes the batch again).
    pub confirm_timeout: Duration,
    /// How long published events stay in the outbox (for audit and
    /// replays) before the purge removes them.
    pub retention: Duration,
    /// How often the purge runs, and how many rows one of its statements
    /// removes at most.
    pub purge_every: Duration,
    /// See `purge_every`.
    pub purge_batch: i64,
}

impl RelayConfig {
    /// The defaults: exchange `domain_events` (no queues declared), batches of 500, a 1 s poll,
    /// backoff from 100 ms to 5 s, published events kept 7 days.
    pub fn new(database_url: impl Into<String>, amqp_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            amqp_url: amqp_url.into(),
            exchange: "domain_events".to_owned(),
            queues: Vec::new(),
            batch: 500,
            poll: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            confirm_timeout: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 3600),
            purge_every: Duration::from_secs(60),
            purge_batch: 5000,
        }
    }
}
