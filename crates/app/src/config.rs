//! Settings, from flags or the environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// The service's settings. Every flag can also come from the
/// environment variable named beside it.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "app",
    about = "A service on the aggregate repository framework, over HTTP."
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Postgres to serve from; without it the service keeps everything in
    /// memory (and loses it on exit).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// A streaming replica of that database to serve reads (`get`, `list`)
    /// from. A client that sends back the `Causality-Token` of its last
    /// answer never reads older data than its own writes; other reads may
    /// lag the primary by the replica's delay.
    #[arg(long, env = "REPLICA_URL", hide_env_values = true)]
    pub replica_url: Option<String>,

    /// What `DATABASE_URL` (and `REPLICA_URL`) reach: Postgres or a
    /// session-pooling PgBouncer (`session`), or a PgBouncer in transaction
    /// mode (`transaction`, which needs `SESSION_DATABASE_URL`).
    #[arg(long, env = "DB_POOLING", value_enum, default_value_t = Pooling::Session)]
    pub pooling: Pooling,

    /// Postgres past any transaction pooler, for what needs a server
    /// session of its own: the migrations and the outbox relay (`LISTEN`,
    /// its leader lock). Defaults to `DATABASE_URL`.
    #[arg(long, env = "SESSION_DATABASE_URL", hide_env_values = true)]
    pub session_url: Option<String>,

    /// Most pooled database connections.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub max_connections: u32,

    /// Idle database connections kept open.
    #[arg(long, env = "DB_MIN_IDLE")]
    pub min_idle: Option<u32>,

    /// How long a request waits for a pooled connection before 503, in ms.
    #[arg(long, env = "DB_CONNECTION_TIMEOUT_MS", default_value_t = 500)]
    pub connection_timeout_ms: u64,

    /// The whole budget of one request, in ms; past it the answer is 504.
    #[arg(long, env = "REQUEST_DEADLINE_MS", default_value_t = 2000)]
    pub request_deadline_ms: u64,

    /// RabbitMQ to publish domain events to
    /// (`amqp://guest:guest@127.0.0.1:5672/%2f`). Set with a database URL,
    /// the service runs the outbox relay beside the API; unset, events wait
    /// in the outbox until a relay runs (`app relay`).
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,

    /// The topic exchange domain events are published to; consumers'
    /// queues are named after it (`<exchange>.<consumer>`).
    #[arg(long, env = "EVENTS_EXCHANGE", default_value = "domain_events")]
    pub events_exchange: String,

    /// How logs are written to stdout: `text` (coloured only when stdout
    /// is a terminal) or `json` (one object per line). `RUST_LOG` sets
    /// their level and filters (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Instead of serving, run a command.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// What a database URL reaches (`storage::Pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooling {
    /// A server session per connection.
    Session,
    /// A server session per transaction.
    Transaction,
}

/// What to run instead of the API.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Publish the outbox's events to RabbitMQ until stopped (SIGINT or
    /// SIGTERM), without serving HTTP. Any number may run; one publishes.
    Relay,
    /// Move the messages a consumer parked (its handler kept failing, or
    /// they were no event) back to its queue, once the handler is fixed.
    /// Needs `AMQP_URL`.
    Unpark {
        /// The consumer's queue (`<exchange>.<consumer>`); its parked
        /// messages wait in `<queue>.parked`.
        queue: String,
    },
    // example-only: begin
    /// The example's one-off commands.
    #[command(flatten)]
    Example(crate::example::cli::Command),
    // example-only: end
}

impl Config {
    /// The per-request deadline.
    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }

    /// Where the migrations and the relay connect: `SESSION_DATABASE_URL`,
    /// else `DATABASE_URL` unless that is a transaction pooler.
    ///
    /// # Errors
    /// Under transaction pooling without `SESSION_DATABASE_URL`.
    pub fn session_url(&self) -> anyhow::Result<Option<&str>> {
        match (&self.session_url, self.pooling) {
            (Some(url), _) => Ok(Some(url)),
            (None, Pooling::Session) => Ok(self.database_url.as_deref()),
            (None, Pooling::Transaction) => anyhow::bail!(
                "DB_POOLING=transaction needs SESSION_DATABASE_URL (or --session-url): the \
                 migrations and the outbox relay need a server session of their own, past the pooler"
            ),
        }
    }

    /// The relay's settings, when both the database and the broker are set.
    /// The relay declares the queues of the service's consumers, so their
    /// events wait for them from the first one on.
    ///
    /// # Errors
    /// As [`Self::session_url`].
    pub fn relay_config(&self) -> anyhow::Result<Option<relay::RelayConfig>> {
        Ok(match (self.session_url()?, &self.amqp_url) {
            (Some(database), Some(amqp)) => {
                let mut config = relay::RelayConfig::new(database, amqp);
                config.exchange.clone_from(&self.events_exchange);
                config.queues = crate::example::consumers::queues(&config.exchange); // example-only
                Some(config)
            }
            _ => None,
        })
    }

    /// The store settings these flags describe. The store's own deadline is
    /// the request's, so a database operation never outlives its request.
    pub fn store_config(&self) -> storage::StoreConfig {
        storage::StoreConfig {
            max_connections: self.max_connections,
            min_idle: self.min_idle,
            connection_timeout: Duration::from_millis(self.connection_timeout_ms),
            deadline: self.request_deadline(),
            pooling: match self.pooling {
                Pooling::Session => storage::Pooling::Session,
                Pooling::Transaction => storage::Pooling::Transaction,
            },
            ..storage::StoreConfig::default()
        }
    }
}

/// `url` with its password replaced, fit for logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable url>".to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_the_password_and_keeps_the_rest() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/app?sslmode=require"),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/postgres"),
            "postgres://postgres@127.0.0.1/postgres"
        );
        assert_eq!(redact("nonsense"), "<unparseable url>");
    }

    #[test]
    fn defaults_are_local_and_fail_fast() {
        let config = Config::parse_from(["app"]);
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.request_deadline(), Duration::from_secs(2));
        assert_eq!(
            config.store_config().connection_timeout,
            Duration::from_millis(500)
        );
    }
}
