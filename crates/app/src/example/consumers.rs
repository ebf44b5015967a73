//! The example's event consumers, run beside the API: the per-user
//! spending read model (`use_cases::stats`).

use std::future::Future;

use domain::InMemoryStore;
use tokio::sync::broadcast::error::RecvError;

use super::ExampleStore;
use super::use_cases::stats;

/// The consumers' queues on `exchange`, for the relay to declare:
/// `<exchange>.user_stats`.
pub fn queues(exchange: &str) -> Vec<relay::QueueBinding> {
    vec![user_stats_queue(exchange)]
}

fn user_stats_queue(exchange: &str) -> relay::QueueBinding {
    relay::QueueBinding::new(format!("{exchange}.{}", stats::CONSUMER), stats::EVENTS)
}

/// With Postgres: consumes `order_placed` from the relay's `exchange`,
/// through the durable queue `<exchange>.user_stats`, until `stopped`
/// completes.
pub async fn on_broker<S: ExampleStore>(
    store: S,
    (amqp_url, exchange): (String, String),
    stopped: impl Future<Output = ()>,
) {
    let mut config = relay::ConsumerConfig::new(amqp_url, user_stats_queue(&exchange));
    config.exchange = exchange;
    relay::consume(config, stopped, |event| {
        let store = store.clone();
        async move { stats::on_event(&store, &event).await }
    })
    .await;
}

/// In memory: hears each event from the store's outbox as its change
/// commits, until `stopped` completes.
pub async fn in_memory(store: InMemoryStore, stopped: impl Future<Output = ()>) {
    let mut events = store.outbox().subscribe();
    tokio::pin!(stopped);
    loop {
        let event = tokio::select! {
            () = &mut stopped => return,
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                if let Err(error) = stats::on_event(&store, &event).await {
                    tracing::warn!(%error, id = %event.id, "user stats: an event was not counted");
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "user stats: fell behind the outbox; events missed");
            }
            Err(RecvError::Closed) => return,
        }
    }
}
