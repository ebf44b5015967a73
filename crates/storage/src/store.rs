//! The connection pool and the settings every repository of a database
//! shares.

use std::sync::Arc;

use diesel::QueryResult;
use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection as _, RecyclingMethod,
};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, SimpleAsyncConnection};
use domain::BoxFuture;
use std::convert::Infallible;

use domain::{Fingerprint, RepositoryError, Store, Stores, TxToken};

use crate::config::{Recycling, StoreConfig};
use crate::mapping::Mapped;
use crate::repository::PgRepository;
use crate::retry::{Fail, Retry, Target, within_deadline};

/// A pooled connection of the store.
pub(crate) type Conn = PooledConnection<'static, AsyncPgConnection>;

/// A Postgres database: its pool and settings. Cheap to clone; hand it to
/// [`PgStore::repository`] for each aggregate's repository.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: Pool<AsyncPgConnection>,
    /// Sessions holding keyed locks, apart from the operations' pool.
    pub(crate) locks: Pool<AsyncPgConnection>,
    /// A read replica, when given: `get`, `list` and `events` read there
    /// (`causality`).
    pub(crate) replica: Option<Pool<AsyncPgConnection>>,
    /// How far the replica was last seen to have replayed.
    pub(crate) replica_seen: crate::causality::SeenReplayed,
    pub(crate) config: StoreConfig,
    /// How transactions begin, and whether a statement may run alone.
    pub(crate) sessions: crate::session::Sessions,
    /// The rows this process's units are writing (`write_order`).
    pub(crate) write_claims: Arc<crate::write_order::WriteClaims>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL holds the password: never print it.
        f.debug_struct("PgStore")
            .field("pool", &self.inner.pool.state())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Builds the pools: one for operations, and a separate one, of
    /// `max_lock_connections`, for the sessions that hold keyed locks.
    /// Opens no connection up front unless `min_idle` asks for some, so a
    /// service starts even while its database is down and reports
    /// `Unavailable` until it is back.
    pub fn new(database_url: &str, config: StoreConfig) -> Self {
        Self::build(database_url, None, config)
    }

    fn build(database_url: &str, replica_url: Option<&str>, config: StoreConfig) -> Self {
        let sessions = crate::session::Sessions::new(&config, database_url);
        let pool_of =
            |url, max_size, min_idle| build_pool(url, &config, &sessions, max_size, min_idle);
        let replica = replica_url.map(|url| pool_of(url, config.max_connections, Some(0)));
        let pool = pool_of(database_url, config.max_connections, config.min_idle);
        let locks = pool_of(database_url, config.max_lock_connections.max(1), Some(0));
        Self {
            inner: Arc::new(Inner {
                pool,
                locks,
                replica,
                replica_seen: crate::causality::SeenReplayed::default(),
                config,
                sessions,
                write_claims: Arc::default(),
            }),
        }
    }

    /// As [`Self::new`], with a streaming replica of the database at
    /// `replica_url` serving `get`, `list` and `events` (a pool of the same
    /// size). Reads in a [`crate::causality::scope`] never miss the scope's
    /// writes: the replica serves them once it has replayed past them
    /// (waiting up to `replica_wait`), the primary otherwise. Other reads may
    /// lag the primary by the replica's delay. Units of work and the reads
    /// of updates stay on the primary.
    pub fn with_replica(database_url: &str, replica_url: &str, config: StoreConfig) -> Self {
        Self::build(database_url, Some(replica_url), config)
    }

    /// The repository of `A`, on this store.
    pub fn repository<A: Mapped>(&self) -> PgRepository<A::Mapping> {
        PgRepository::new(self.clone())
    }

    /// The settings.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// How this store's transactions begin (`session`).
    pub(crate) fn sessions(&self) -> &crate::session::Sessions {
        &self.inner.sessions
    }

    /// Connections open and idle right now, for health checks and tests.
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.inner.pool.state();
        (state.connections, state.idle_connections)
    }

    /// Whether the database answers a trivial query within the deadline.
    pub async fn ping(&self) -> Result<(), RepositoryError> {
        self.call("ping", |c| {
            let mut on = c;
            Box::pin(async move { on.batch_execute("SELECT 1").await })
        })
        .await
    }

    /// A store call that is no repository operation (a health check, the
    /// outbox's lag, a key's binding): `work` on a pooled
    /// connection, as a repository operation runs: under the deadline,
    /// measured, a transient fault (a killed backend, a broken connection)
    /// retried, and every failure classified the same way (`Unavailable`,
    /// `Timeout`, ..), never a bare storage failure for weather.
    pub(crate) async fn call<T>(
        &self,
        op: &'static str,
        work: impl for<'c> Fn(&'c AsyncPgConnection) -> BoxFuture<'c, QueryResult<T>>,
    ) -> Result<T, RepositoryError> {
        self.call_with(op, || async {
            let mut conn = self.connection().await.map_err(Fail::Done)?;
            Ok(self.sessions().alone(&mut conn, |c| work(c)).await?)
        })
        .await
    }

    /// [`Self::call`] for an `attempt` that takes its own connection and
    /// decides more than a statement's fault (`Fail::Done` is final,
    /// `Fail::VersionMiss` tries again).
    pub(crate) async fn call_with<T, Attempt>(
        &self,
        op: &'static str,
        mut attempt: impl FnMut() -> Attempt,
    ) -> Result<T, RepositoryError>
    where
        Attempt: Future<Output = Result<T, Fail<Infallible>>>,
    {
        let config = self.config();
        let measured = crate::metrics::Op {
            kind: STORE_KIND,
            op,
        };
        let span = tracing::debug_span!("store_call", op);
        within_deadline(config, (measured, span), async {
            let mut retry = Retry {
                target: Target {
                    kind: STORE_KIND,
                    id: op.to_owned(),
                    primary_key: "",
                },
                config,
                attempts: 1,
            };
            loop {
                match attempt().await {
                    Ok(done) => return Ok(done),
                    Err(failure) => retry.after(failure).await?,
                }
            }
        })
        .await
    }

    /// Forgets transaction tokens (and idempotency keys, with their units'
    /// answers) and inbox records older than the configured retention, in
    /// batches of at most [`Self::PURGE_BATCH`], each its own statement; a
    /// token younger than the retention is never removed. Returns how many
    /// went.
    ///
    /// The batches share one connection, each bounded by the statement
    /// timeout (the deadline), not the whole purge: a backlog of any size
    /// drains. A batch's fault is judged as every operation's: a transient
    /// one is retried on a fresh connection, with backoff, at most
    /// `max_attempts` times.
    pub async fn purge_expired_tokens(&self) -> Result<usize, RepositoryError> {
        let config = &self.inner.config;
        let cutoff = (config.clock.now() - config.token_retention).as_datetime();
        let mut conn = self.connection::<Infallible>().await?;
        let mut purged = 0;
        for statement in [
            crate::tokens::PURGE_BATCH,
            crate::answers::PURGE_BATCH,
            crate::inbox::PURGE_BATCH,
        ] {
            loop {
                let deleted = self.purge_batch(&mut conn, statement, cutoff).await?;
                purged += deleted;
                if i64::try_from(deleted).unwrap_or(i64::MAX) < Self::PURGE_BATCH {
                    break;
                }
            }
        }
        Ok(purged)
    }

    /// One batch of a purge on `conn` (replaced by a fresh one when a
    /// transient fault is retried).
    async fn purge_batch(
        &self,
        conn: &mut Conn,
        statement: &'static str,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, RepositoryError> {
        use diesel::sql_types::{BigInt, Timestamptz};
        use diesel_async::RunQueryDsl;
        let mut retry = Retry {
            target: Target {
                kind: STORE_KIND,
                id: "purge".to_owned(),
                primary_key: "",
            },
            config: self.config(),
            attempts: 1,
        };
        loop {
            let deleted = self
                .sessions()
                .alone(conn, move |c| {
                    let delete = diesel::sql_query(statement)
                        .bind::<Timestamptz, _>(cutoff)
                        .bind::<BigInt, _>(Self::PURGE_BATCH);
                    Box::pin(async move { delete.execute(&mut &*c).await })
                })
                .await;
            match deleted {
                Ok(deleted) => return Ok(deleted),
                Err(error) => {
                    retry.after(Fail::<Infallible>::Db(error)).await?;
                    *conn = self.connection().await?;
                }
            }
        }
    }

    /// The most tokens one purge statement deletes.
    pub const PURGE_BATCH: i64 = 5_000;

    /// A session for a keyed lock, from the lock pool, or `Unavailable`
    /// after `connection_timeout` when `max_lock_connections` keys are held.
    pub(crate) async fn lock_connection(&self) -> Result<Conn, RepositoryError> {
        pooled(&self.inner.locks, "locks").await
    }

    /// A pooled connection, or `Unavailable` after `connection_timeout`.
    pub(crate) async fn connection<E>(&self) -> Result<Conn, RepositoryError<E>> {
        pooled(&self.inner.pool, "operations").await
    }

    /// A connection to read from: the replica's when there is one and it
    /// has replayed up to the running causality scope's position (waiting
    /// up to `replica_wait`), else the primary's.
    pub(crate) async fn read_connection<E>(&self) -> Result<Conn, RepositoryError<E>> {
        let Some(replica) = &self.inner.replica else {
            return self.connection().await;
        };
        let Ok(mut conn) = pooled::<E>(replica, "replica").await else {
            return self.connection().await; // the replica is down: read the primary
        };
        let Some(floor) = crate::causality::floor() else {
            return Ok(conn);
        };
        let seen = &self.inner.replica_seen;
        let give_up = tokio::time::Instant::now() + self.inner.config.replica_wait;
        loop {
            if seen.covers(floor) {
                metrics::counter!("storage_replica_reads_total", "served_by" => "replica")
                    .increment(1);
                return Ok(conn);
            }
            match self
                .sessions()
                .alone(&mut conn, |c| Box::pin(crate::causality::replayed(c)))
                .await
            {
                Ok(Some(at)) => seen.saw(at),
                Ok(None) | Err(_) => break, // no replica after all, or it broke
            }
            if seen.covers(floor) {
                continue;
            }
            if tokio::time::Instant::now() >= give_up {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        metrics::counter!("storage_replica_reads_total", "served_by" => "primary").increment(1);
        drop(conn);
        self.connection().await
    }

    /// After a write committed inside a causality scope, on a store with a
    /// replica: raises the scope to the primary's log position (one
    /// statement). Without a replica or a scope there is nothing to do.
    pub(crate) async fn note_write(&self) {
        if self.inner.replica.is_none() || !crate::causality::in_scope() {
            return;
        }
        let Ok(mut conn) = self.connection::<Infallible>().await else {
            return;
        };
        match self
            .sessions()
            .alone(&mut conn, |c| Box::pin(crate::causality::position(c)))
            .await
        {
            Ok(at) => crate::causality::wrote(at),
            Err(error) => tracing::warn!(%error, "could not read the log position after a write"),
        }
    }

    /// Sets the pool gauges (`storage_pool_connections`,
    /// `storage_pool_idle_connections`, see [`crate::metrics`]) to the
    /// pools' state now; call it before metrics are read.
    pub fn record_pool_gauges(&self) {
        crate::metrics::pool_state("operations", &self.inner.pool.state());
        crate::metrics::pool_state("locks", &self.inner.locks.state());
        if let Some(replica) = &self.inner.replica {
            crate::metrics::pool_state("replica", &replica.state());
        }
    }
}

/// A connection of `pool` (named `name` in metrics), or `Unavailable` after
/// its `connection_timeout`.
async fn pooled<E>(
    pool: &Pool<AsyncPgConnection>,
    name: &'static str,
) -> Result<Conn, RepositoryError<E>> {
    let wait = crate::metrics::PoolWait::start(name);
    pool.get_owned().await.map_err(|e| {
        wait.timed_out();
        RepositoryError::Unavailable(Box::new(e))
    })
}

impl Store for PgStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), RepositoryError> {
        PgStore::ping(self).await
    }

    async fn purge_expired_tokens(&self) -> Result<usize, RepositoryError> {
        PgStore::purge_expired_tokens(self).await
    }

    /// One `SELECT` on the outbox's index of unpublished events.
    async fn outbox_lag(&self) -> Result<Option<std::time::Duration>, RepositoryError> {
        self.call("outbox_lag", |c| Box::pin(crate::outbox::lag(c)))
            .await
    }

    /// One `INSERT .. ON CONFLICT DO NOTHING` into `tx_tokens` under the
    /// reserved kind `$request`; on a conflict, one `SELECT` to compare.
    async fn bind_key(&self, key: TxToken, request: Fingerprint) -> Result<(), RepositoryError> {
        self.call_with("bind_key", || self.try_bind_key(key, request))
            .await
    }
}

/// The kind under which request keys share the token table with creates'
/// tokens; no aggregate kind may be named so.
const REQUEST_KIND: &str = "$request";

/// What store calls that are no repository operation are measured and
/// reported as.
const STORE_KIND: &str = "store";

impl PgStore {
    async fn try_bind_key(
        &self,
        key: TxToken,
        request: Fingerprint,
    ) -> Result<(), Fail<Infallible>> {
        let mut conn = self.connection().await.map_err(Fail::Done)?;
        let conn = &mut conn;
        let id = key.as_uuid();
        let now = self.config().clock.now();
        let sessions = self.sessions();
        let fingerprint = request;
        let claimed = sessions.alone(conn, move |c| {
            Box::pin(async move {
                crate::tokens::claim(c, REQUEST_KIND, key, id, &fingerprint, now).await
            })
        });
        if claimed.await? {
            return Ok(());
        }
        // Claimed, then gone: purged in between. Try again.
        let find = sessions.alone(conn, move |c| {
            Box::pin(crate::tokens::find(c, REQUEST_KIND, key))
        });
        let Some((_, bound)) = find.await? else {
            return Err(Fail::VersionMiss);
        };
        if bound == request {
            Ok(())
        } else {
            Err(Fail::Done(RepositoryError::TokenMismatch {
                kind: "request",
                token: key,
            }))
        }
    }
}

impl<A: Mapped> Stores<A> for PgStore {
    type Repository = PgRepository<A::Mapping>;

    fn repository_of(&self) -> PgRepository<A::Mapping> {
        self.repository::<A>()
    }
}

/// A pool of at most `max_size` connections, the store's settings for the
/// rest.
fn build_pool(
    database_url: &str,
    config: &StoreConfig,
    sessions: &crate::session::Sessions,
    max_size: u32,
    min_idle: Option<u32>,
) -> Pool<AsyncPgConnection> {
    Pool::builder()
        .max_size(max_size)
        .min_idle(min_idle)
        .connection_timeout(config.connection_timeout)
        .idle_timeout(config.idle_timeout)
        .max_lifetime(config.max_lifetime)
        .test_on_check_out(true)
        .error_sink(Box::new(LogSink))
        .build_unchecked(manager(database_url, config, sessions))
}

/// How the pools open and check connections: each session gets the
/// store's settings (`session`), unless only its transactions do, which
/// then keep no statement prepared.
fn manager(
    database_url: &str,
    config: &StoreConfig,
    sessions: &crate::session::Sessions,
) -> AsyncDieselConnectionManager<AsyncPgConnection> {
    let on_connect: Arc<str> = sessions.on_connect().into();
    let caches_statements = !sessions.needs_transaction();
    let reach = Arc::new(crate::tls::Reach::of(database_url));
    let mut manager_config = ManagerConfig::default();
    manager_config.custom_setup = Box::new(move |_| {
        let reach = Arc::clone(&reach);
        let on_connect = Arc::clone(&on_connect);
        Box::pin(async move {
            let reach = reach
                .as_ref()
                .as_ref()
                .map_err(|e| diesel::ConnectionError::InvalidConnectionUrl(e.clone()))?;
            let mut conn = if caches_statements {
                let mut conn = reach.connect().await?;
                crate::messages::ensure_english(&mut conn, true)
                    .await
                    .map_err(diesel::ConnectionError::BadConnection)?;
                conn
            } else {
                establish_through_transaction_pooler(reach).await?
            };
            if !on_connect.is_empty() {
                conn.batch_execute(&on_connect)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            }
            if !caches_statements {
                conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
            }
            Ok(conn)
        })
    });
    manager_config.recycling_method = match config.recycling {
        Recycling::Verified => RecyclingMethod::Verified,
        Recycling::Fast => RecyclingMethod::CustomFunction(Box::new(|conn| {
            Box::pin(async move {
                if conn.is_broken() {
                    Err(diesel::result::Error::BrokenTransactionManager)
                } else {
                    Ok(())
                }
            })
        })),
    };
    AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, manager_config)
}

/// Connects through a transaction pooler. diesel-async sets the session's
/// time zone and encoding with prepared statements, which such a pooler
/// can only route inside a transaction: they run inside one here, and so
/// does the check of the server's message language (`messages`), which
/// cannot set it: a `SET` would not stay with the pooler's session.
async fn establish_through_transaction_pooler(
    reach: &crate::tls::Reach,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let bad = |e: tokio_postgres::Error| {
        diesel::ConnectionError::BadConnection(crate::tls::with_causes(&e))
    };
    let client = reach.client(|_| {}).await.map_err(bad)?;
    client.batch_execute("BEGIN").await.map_err(bad)?;
    let mut conn = AsyncPgConnection::try_from(client).await?;
    crate::messages::ensure_english(&mut conn, false)
        .await
        .map_err(diesel::ConnectionError::BadConnection)?;
    conn.batch_execute("COMMIT")
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// bb8 sends connect and validation errors to a sink that drops them by
/// default, leaving pool timeouts without a visible cause; log them instead.
#[derive(Debug, Clone, Copy)]
struct LogSink;

impl<E: std::fmt::Display> bb8::ErrorSink<E> for LogSink {
    fn sink(&self, error: E) {
        tracing::warn!(%error, "database connection failed");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<E>> {
        Box::new(*self)
    }
}
