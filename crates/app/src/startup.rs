//! Building the service and running it until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use domain::InMemoryStore;
use tokio::net::TcpListener;

use crate::config::{Config, redact};
use crate::metrics::Sampler;
use crate::router::router;

/// A built service: listening, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    store: &'static str,
    background: Background,
}

/// Work run beside the API (the outbox relay, event consumers): told to
/// stop when serving ends, and waited for.
#[derive(Default)]
struct Background {
    stop: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Spawns `task`, handing it a future that completes when it should stop.
    fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = self
            .stop
            .get_or_insert_with(|| tokio::sync::watch::channel(false).0);
        let mut stopped = stop.subscribe();
        let stopped = Box::pin(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        self.tasks.push(tokio::spawn(task(stopped)));
    }

    /// Tells every task to stop and waits until they did (a relay finishes
    /// its batch, a consumer the event in hand).
    async fn stop(self) {
        if let Some(stop) = self.stop {
            let _ = stop.send(true);
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl Application {
    /// Picks the store (migrating Postgres first), binds the address.
    /// The first thing it logs is which store it serves from.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let deadline = config.request_deadline();
        let (relay_status, relay_watch) = relay::status_channel();
        let mut background = Background::default();
        let metrics = crate::metrics::handle();
        background.spawn(|stopped| crate::metrics::upkeep(metrics, stopped));
        let mut sampler = None;
        let mut relay_runs = false;
        // The one place the store is chosen; everything after is generic.
        let (router, store) = match &config.database_url {
            None => {
                tracing::warn!(
                    "no DATABASE_URL: serving from the in-memory store; all data is lost on exit"
                );
                let store = InMemoryStore::new();
                tokio::spawn(purge_tokens_hourly(store.clone()));
                let consumed = store.clone(); // example-only
                background.spawn(|stopped| crate::example::consumers::in_memory(consumed, stopped)); // example-only
                (router(store, deadline), "memory")
            }
            Some(url) => {
                tracing::info!(database = %redact(url), "serving from Postgres; migrating");
                let direct = config.session_url()?.unwrap_or(url);
                storage::migrate(direct)
                    .await
                    .with_context(|| format!("migrating {}", redact(direct)))?;
                let store = match &config.replica_url {
                    Some(replica) => {
                        tracing::info!(replica = %redact(replica), "reading from a replica");
                        storage::PgStore::with_replica(url, replica, config.store_config())
                    }
                    None => storage::PgStore::new(url, config.store_config()),
                };
                tokio::spawn(purge_tokens_hourly(store.clone()));
                let pools = store.clone();
                sampler = Some(Sampler(Arc::new(move || pools.record_pool_gauges())));
                if let Some(relay_config) = config.relay_config()? {
                    tracing::info!(broker = %redact(&relay_config.amqp_url), "running the outbox relay");
                    // example-only: begin
                    let consumed = store.clone();
                    let broker = (relay_config.amqp_url.clone(), relay_config.exchange.clone());
                    background.spawn(|stopped| {
                        crate::example::consumers::on_broker(consumed, broker, stopped)
                    });
                    // example-only: end
                    background.spawn(|stopped| relay::run(relay_config, stopped, relay_status));
                    relay_runs = true;
                } else {
                    tracing::info!("no AMQP_URL: domain events wait in the outbox for `app relay`");
                }
                (router(store, deadline), "postgres")
            }
        };
        let mut router = router.layer(axum::Extension(crate::health::RelayView(
            relay_runs.then_some(relay_watch),
        )));
        if let Some(sampler) = sampler {
            router = router.layer(axum::Extension(sampler));
        }
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        Ok(Self {
            listener,
            router,
            store,
            background,
        })
    }

    /// The address it listens on (the real port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(address = %self.listener.local_addr()?, store = self.store, "listening");
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        self.background.stop().await;
        served
    }
}

/// `app relay`: publishes the outbox's events until `shutdown` completes.
pub async fn run_relay(config: &Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let relay_config = config
        .relay_config()?
        .context("the relay needs DATABASE_URL and AMQP_URL (or --database-url and --amqp-url)")?;
    tracing::info!(
        database = %redact(&relay_config.database_url),
        broker = %redact(&relay_config.amqp_url),
        "relaying the outbox"
    );
    let (status, _watch) = relay::status_channel();
    relay::run(relay_config, shutdown, status).await;
    Ok(())
}

/// `app unpark <queue>`: moves the messages parked for a consumer's queue
/// back to it (`relay::unpark`) and says how many.
///
/// # Errors
/// Without `AMQP_URL`, or when the broker fails or has no such parked queue.
pub async fn unpark(config: &Config, queue: &str) -> anyhow::Result<()> {
    let amqp_url = config
        .amqp_url
        .as_deref()
        .context("unpark needs AMQP_URL (or --amqp-url)")?;
    let moved = relay::unpark(amqp_url, queue)
        .await
        .with_context(|| format!("moving {queue}'s parked messages back"))?;
    println!("{moved} parked message(s) moved back to {queue}");
    Ok(())
}

/// Forgets transaction tokens past their retention, once an hour; never a
/// younger one (see `StoreConfig::token_retention`).
async fn purge_tokens_hourly<S: domain::Store>(store: S) {
    let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        hourly.tick().await;
        match store.purge_expired_tokens().await {
            Ok(purged) => tracing::info!(purged, "expired transaction tokens purged"),
            Err(error) => tracing::warn!(%error, "purging expired transaction tokens failed"),
        }
    }
}
