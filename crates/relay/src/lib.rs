//! The outbox relay: publishes the events that repositories store in the
//! `outbox` table (in the same transaction as each change) to a `RabbitMQ`
//! topic exchange.
//!
//! What it promises:
//! * **At least once.** An event is marked published only after the broker
//!   confirmed it. A relay that dies between the confirm and the mark
//!   publishes the event again when it (or another) starts: consumers
//!   deduplicate on the message id, the event id (an inbox).
//! * **In order per aggregate.** Events go out in the order they were
//!   stored, which for one aggregate is the order of its versions. After a
//!   failure the unconfirmed tail of a batch is published again, so a
//!   consumer may see an event again after later ones of the same
//!   aggregate; its inbox drops the repeat.
//! * **One active relay.** Any number may run; the one holding a session
//!   advisory lock publishes, the others wait and take over within their
//!   poll interval when its session ends (a crash included).
//! * **No tight polling.** An idle relay waits for a `NOTIFY outbox` (a
//!   trigger sends it when events are stored) or, at most, its poll
//!   interval.
//! * **A broker that is down loses nothing**: the events wait in the outbox
//!   while the relay backs off (100 ms doubling to 5 s by default).
//! * **Shutdown between batches**: a batch in flight is confirmed and
//!   marked before [`run`] returns.
//! * Published events are purged after [`RelayConfig::retention`], in
//!   bounded statements.
//!
//! Metrics (through the [`metrics`] facade, kept when the application
//! installs a recorder): `relay_events_published_total` (counter),
//! `relay_publishing` (gauge: 1 while this relay holds the outbox) and, for
//! consumers, `relay_consumer_parked_total` (counter, by `queue`: alert on
//! it, parked messages wait for someone to look).

mod broker;
mod config;
mod consumer;
mod outbox;
mod parked;
mod topology;

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use config::RelayConfig;
pub use consumer::{ConsumerConfig, consume};
pub use outbox::lag;
pub use parked::{UnparkError, unpark};
pub use topology::{QueueBinding, declare};

use broker::Broker;
use outbox::Session;

/// What a relay is doing, for health checks and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayState {
    /// Connecting to the database.
    Starting,
    /// Another relay publishes; this one waits to take over.
    Standby,
    /// Publishing (or waiting for events to publish).
    Publishing,
    /// The broker cannot be reached; events wait in the outbox.
    BrokerDown(String),
    /// The database cannot be reached.
    DatabaseDown(String),
    /// [`run`] returned.
    Stopped,
}

/// A relay's state and how many events it published since it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatus {
    /// What it is doing.
    pub state: RelayState,
    /// Events confirmed by the broker and marked published.
    pub published: u64,
}

/// Runs a relay until `shutdown` completes, reporting on `status`.
/// Failures of the database or the broker are waited out, with backoff;
/// it returns only on shutdown.
pub async fn run(
    config: RelayConfig,
    shutdown: impl Future<Output = ()>,
    status: watch::Sender<RelayStatus>,
) {
    tokio::pin!(shutdown);
    let mut relay = Relay {
        config,
        status,
        published: 0,
        backoff: Backoff::default(),
    };
    relay.set(RelayState::Starting);
    // Shutdown is heard wherever the relay waits, never inside a batch.
    relay.sessions(&mut shutdown).await;
    relay.set(RelayState::Stopped);
}

/// Describes the relay's metrics to the installed recorder (their `# HELP`
/// lines); call it once, after installing one.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "relay_events_published_total",
        "Events the broker confirmed and the relay marked published"
    );
    metrics::describe_gauge!("relay_publishing", "1 while this relay holds the outbox");
    metrics::describe_counter!(
        "relay_consumer_parked_total",
        "Messages a consumer parked in its queue's parked queue (a handler kept failing, or no event)"
    );
}

/// A watch channel for [`run`]'s status, starting out [`RelayState::Starting`].
pub fn status_channel() -> (watch::Sender<RelayStatus>, watch::Receiver<RelayStatus>) {
    watch::channel(RelayStatus {
        state: RelayState::Starting,
        published: 0,
    })
}

struct Relay {
    config: RelayConfig,
    status: watch::Sender<RelayStatus>,
    published: u64,
    backoff: Backoff,
}

/// How a session with the database ended.
enum Ended {
    Database(domain::BoxError),
    Shutdown,
}

impl Relay {
    fn set(&self, state: RelayState) {
        let publishing = if state == RelayState::Publishing {
            1.0
        } else {
            0.0
        };
        metrics::gauge!("relay_publishing").set(publishing);
        let published = self.published;
        self.status.send_if_modified(move |status| {
            let changed = status.state != state || status.published != published;
            *status = RelayStatus { state, published };
            changed
        });
    }

    /// Database sessions, one after another, until shutdown.
    async fn sessions(&mut self, shutdown: &mut (impl Future<Output = ()> + Unpin)) {
        loop {
            let ended = match Session::open(&self.config.database_url).await {
                Ok(session) => self.lead(session, shutdown).await,
                Err(error) => Ended::Database(error),
            };
            match ended {
                Ended::Shutdown => return,
                Ended::Database(error) => {
                    tracing::warn!(%error, "relay: the database is unreachable; retrying");
                    self.set(RelayState::DatabaseDown(error.to_string()));
                    if self.pause(shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits for the leadership, then publishes, both on `session`.
    async fn lead(
        &mut self,
        mut session: Session,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Ended {
        loop {
            match session.try_lead().await {
                Ok(true) => break,
                Ok(false) if self.status.borrow().state != RelayState::Standby => {
                    tracing::info!("relay: standing by (another relay holds the outbox)");
                    self.set(RelayState::Standby);
                }
                Ok(false) => {}
                Err(error) => return Ended::Database(error.into()),
            }
            let poll = self.config.poll;
            tokio::select! {
                () = &mut *shutdown => return Ended::Shutdown,
                () = tokio::time::sleep(poll) => {}
            }
        }
        tracing::info!("relay: publishing (this relay holds the outbox)");
        self.backoff = Backoff::default();
        let mut purged_at = Instant::now();
        loop {
            let broker = match Broker::connect(
                &self.config.amqp_url,
                &self.config.exchange,
                &self.config.queues,
            )
            .await
            {
                Ok(broker) => broker,
                Err(error) => {
                    if let Err(error) = self.broker_down(&error.to_string(), shutdown).await {
                        return error;
                    }
                    continue;
                }
            };
            self.set(RelayState::Publishing);
            loop {
                if purged_at.elapsed() >= self.config.purge_every {
                    purged_at = Instant::now();
                    match session
                        .purge(self.config.retention, self.config.purge_batch)
                        .await
                    {
                        Ok(0) => {}
                        Ok(purged) => tracing::info!(purged, "relay: purged published events"),
                        Err(error) => return Ended::Database(error.into()),
                    }
                }
                let batch = match session.pending(self.config.batch).await {
                    Ok(batch) => batch,
                    Err(error) => return Ended::Database(error.into()),
                };
                if batch.is_empty() {
                    let poll = self.config.poll;
                    tokio::select! {
                        () = &mut *shutdown => return Ended::Shutdown,
                        _ = session.wait(poll) => {}
                    }
                    continue;
                }
                // Not raced with shutdown: a batch is confirmed and marked
                // whole, or its unconfirmed tail left for the next run.
                let (confirmed, failure) =
                    broker.publish(&batch, self.config.confirm_timeout).await;
                let seqs: Vec<i64> = batch[..confirmed].iter().map(|e| e.seq).collect();
                if !seqs.is_empty() {
                    if let Err(error) = session.mark_published(&seqs).await {
                        return Ended::Database(error.into());
                    }
                    self.published += seqs.len() as u64;
                    metrics::counter!("relay_events_published_total").increment(seqs.len() as u64);
                    self.set(RelayState::Publishing);
                }
                if let Some(failure) = failure {
                    if let Err(error) = self.broker_down(&failure.to_string(), shutdown).await {
                        return error;
                    }
                    break;
                }
                self.backoff = Backoff::default();
            }
        }
    }

    /// Reports the broker down and waits out the backoff.
    async fn broker_down(
        &mut self,
        why: &str,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<(), Ended> {
        tracing::warn!(
            why,
            "relay: the broker is unreachable; events wait in the outbox"
        );
        self.set(RelayState::BrokerDown(why.to_owned()));
        if self.pause(shutdown).await {
            Err(Ended::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Sleeps the next backoff step; whether shutdown came first.
    async fn pause(&mut self, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> bool {
        let pause = self
            .backoff
            .next(self.config.min_backoff, self.config.max_backoff);
        tokio::select! {
            () = &mut *shutdown => true,
            () = tokio::time::sleep(pause) => false,
        }
    }
}

/// Exponential backoff, reset by a success.
#[derive(Debug, Default)]
struct Backoff(u32);

impl Backoff {
    fn next(&mut self, min: Duration, max: Duration) -> Duration {
        let pause = min.saturating_mul(1 << self.0.min(16)).min(max);
        self.0 += 1;
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let mut backoff = Backoff::default();
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let pauses: Vec<u128> = (0..6).map(|_| backoff.next(min, max).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
    }
}
