//! Building the service and running it until told to stop.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use domain::InMemoryStore;
use tokio::net::TcpListener;

use crate::config::{Config, redact};
use crate::router::router;

/// A built service: listening, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    store: &'static str,
}

impl Application {
    /// Picks the store (migrating Postgres first), binds the address.
    /// The first thing it logs is which store it serves from.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let deadline = config.request_deadline();
        // The one place the store is chosen; everything after is generic.
        let (router, store) = match &config.database_url {
            None => {
                tracing::warn!(
                    "no DATABASE_URL: serving from the in-memory store; all data is lost on exit"
                );
                let store = InMemoryStore::new();
                tokio::spawn(purge_tokens_hourly(store.clone()));
                (router(store, deadline), "memory")
            }
            Some(url) => {
                tracing::info!(database = %redact(url), "serving from Postgres; migrating");
                storage::migrate(url)
                    .await
                    .with_context(|| format!("migrating {}", redact(url)))?;
                let store = storage::PgStore::new(url, config.store_config());
                tokio::spawn(purge_tokens_hourly(store.clone()));
                (router(store, deadline), "postgres")
            }
        };
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        Ok(Self {
            listener,
            router,
            store,
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
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
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
