//! Settings of a [`PgStore`](crate::PgStore): pool, deadline, retries, tokens.

use std::time::Duration;

/// How the pool checks a connection when handing it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recycling {
    /// No round trip: hand out any connection whose socket is open and that
    /// has no transaction left open. A connection that broke in the pool
    /// fails its first statement, which is retried on a fresh connection.
    Fast,
    /// `SELECT 1` on every checkout: one extra round trip per operation.
    Verified,
}

/// What a pooled connection of the store is on the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// A server session of its own for as long as it is open: a direct
    /// connection, or a pooler in session mode. Its settings are set once,
    /// and each statement is prepared once per connection.
    #[default]
    Session,
    /// A server session only until its transaction ends: PgBouncer in
    /// transaction mode. Every statement then runs inside a transaction
    /// (a lone one gets its own `BEGIN` and `COMMIT`), the settings are set
    /// with `SET LOCAL` in each, and no statement stays prepared. The
    /// pooler must deallocate what a transaction prepared when it ends
    /// (PgBouncer: `server_reset_query = DEALLOCATE ALL` with
    /// `server_reset_query_always = 1`; `scripts/pgbouncer` sets both).
    /// Keyed locks hold their transaction, and so their server session,
    /// while held. Whatever needs a session of its own (migrations, the
    /// outbox relay's `LISTEN` and leader lock) must connect past the
    /// pooler.
    Transaction,
}

/// Everything a [`PgStore`](crate::PgStore) can be tuned with. `Default` gives
/// settings fit for a small service and for tests.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Most keys held at once through [`ExclusiveAccess`](domain::ExclusiveAccess):
    /// each held key keeps a session of its own, taken from a separate pool
    /// of this size, so held keys never starve requests of connections.
    pub max_lock_connections: u32,
    /// Idle connections the pool keeps ready (`None`: as many as it has).
    pub min_idle: Option<u32>,
    /// How long an operation waits for a pooled connection before failing
    /// with `Unavailable`. Keep it short: failing fast beats queueing.
    pub connection_timeout: Duration,
    /// Close connections idle for this long.
    pub idle_timeout: Option<Duration>,
    /// Close connections this old, so server-side state cannot pile up.
    pub max_lifetime: Option<Duration>,
    /// How the pool checks connections on checkout.
    pub recycling: Recycling,
    /// Whether a connection is a server session or, through a
    /// transaction-pooling PgBouncer, only a transaction.
    pub pooling: Pooling,
    /// The whole budget of one repository operation: pool wait, statements,
    /// retries and backoff. Also set as the connections' `statement_timeout`.
    pub deadline: Duration,
    /// The longest a statement waits for a row lock before it gives up
    /// (55P03) and its operation or unit is retried with jitter. Units that
    /// lock the same rows in opposite orders deadlock, and Postgres only
    /// detects that after `deadlock_timeout` (1 s by default, which only a
    /// superuser may change); this turns such a wait into a quick retry
    /// within the deadline. Set as each connection's `lock_timeout`.
    pub lock_wait: Duration,
    /// Most times an operation runs (including the first) when it meets
    /// transient faults or optimistic-lock conflicts.
    pub max_attempts: u32,
    /// First retry backoff; doubles per attempt up to [`Self::max_backoff`],
    /// each sleep drawn uniformly from zero to that bound (full jitter).
    pub base_backoff: Duration,
    /// Upper bound of one backoff sleep.
    pub max_backoff: Duration,
    /// How long a transaction token is remembered: a create retried later
    /// than this may create a second aggregate. Stripe keeps keys for 24 h.
    pub token_retention: Duration,
    /// The longest a keyed lock ([`ExclusiveAccess`](domain::ExclusiveAccess))
    /// is held: past it the server ends the lock's session, which frees it,
    /// so a forgotten or stuck holder cannot block its key for ever.
    pub max_lock_hold: Duration,
    /// With a read replica ([`PgStore::with_replica`](crate::PgStore::with_replica)):
    /// how long a read carrying a causality position waits for the replica
    /// to replay up to it before the primary serves it instead.
    pub replica_wait: Duration,
    /// What tokens and idempotency keys are stamped with and their age
    /// judged by: the system clock, or in tests a manual one
    /// ([`Clock::manual`](domain::Clock::manual)) so expiry needs no wait.
    pub clock: domain::Clock,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            max_lock_connections: 4,
            min_idle: None,
            connection_timeout: Duration::from_millis(500),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            recycling: Recycling::Fast,
            pooling: Pooling::Session,
            deadline: Duration::from_secs(2),
            lock_wait: Duration::from_millis(50),
            max_attempts: 20,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(100),
            token_retention: Duration::from_secs(24 * 3600),
            max_lock_hold: Duration::from_secs(30),
            replica_wait: Duration::from_millis(50),
            clock: domain::Clock::system(),
        }
    }
}
