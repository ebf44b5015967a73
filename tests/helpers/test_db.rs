//! A throwaway Postgres database per test, migrated, and dropped when the
//! test ends (also when it fails).

use std::sync::Arc;

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use domain::{
    Aggregate, Created, Page, PageRequest, Repository, RepositoryError, TxToken, Updated,
};
use storage::{Mapped, Mapping, PgRepository, PgStore, Pooling, StoreConfig};

/// Where the tests find Postgres: `DATABASE_URL`, or the local default.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A PgBouncer in transaction mode in front of that server
/// (`PGBOUNCER_URL`; `scripts/test` sets it for its second pass, after
/// `scripts/pgbouncer up`). When set, the stores the helpers build connect
/// through it, under [`Pooling::Transaction`]; setup and fault injection
/// still connect directly.
pub fn pgbouncer_url() -> Option<String> {
    std::env::var("PGBOUNCER_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// A connection to the server's administrative database (`DATABASE_URL`).
pub async fn admin_connection() -> AsyncPgConnection {
    storage::connect(&admin_url())
        .await
        .expect("connect to DATABASE_URL")
}

/// A database of its own for one test. Dropping it drops the database.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// Creates and migrates a fresh database.
    ///
    /// # Panics
    /// When Postgres cannot be reached: these tests need one, and say how to
    /// get it instead of passing silently.
    pub async fn new() -> Arc<Self> {
        let db = Self::empty().await;
        storage::migrate(&db.url)
            .await
            .expect("migrate the test database");
        let mut conn = storage::connect(&db.url).await.expect("connect");
        conn.batch_execute(storage::testing::CREATE_TABLES)
            .await
            .expect("create the test aggregates' tables");
        db
    }

    /// Creates a fresh database and leaves it empty: no migration ran.
    ///
    /// # Panics
    /// As [`Self::new`].
    pub async fn empty() -> Arc<Self> {
        let admin = admin_url();
        let mut conn = storage::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "this test needs PostgreSQL at {admin} ({e}). Start the local one with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
                 or set DATABASE_URL; `scripts/test` does the former for you."
            )
        });
        let name = format!("itest_{}", uuid::Uuid::new_v4().simple());
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let url = database_url(&admin, &name);
        Arc::new(Self { name, url })
    }

    /// The database's URL, direct to the server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where stores reach the database: through the PgBouncer of
    /// [`pgbouncer_url`] when there is one, else directly; and how.
    pub fn store_url(&self) -> (String, Pooling) {
        match pgbouncer_url() {
            Some(bouncer) => (database_url(&bouncer, &self.name), Pooling::Transaction),
            None => (self.url.clone(), Pooling::Session),
        }
    }

    /// A store on this database (through PgBouncer under
    /// [`pgbouncer_url`]).
    pub fn store(&self, config: StoreConfig) -> PgStore {
        let (url, pooling) = self.store_url();
        PgStore::new(&url, StoreConfig { pooling, ..config })
    }

    /// Runs `sql` (statements without results) on a connection of its own.
    pub async fn execute(&self, sql: &str) {
        self.connect()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A plain connection outside any pool, for setting up faults.
    pub async fn connect(&self) -> AsyncPgConnection {
        storage::connect(&self.url).await.expect("connect")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on async
        // work: use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = storage::connect(&admin_url()).await?;
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// `admin_url` with its database name replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let base = match base.rsplit_once('/') {
        Some((server, _)) if server.contains("//") && !server.ends_with('/') => server,
        _ => base.trim_end_matches('/'),
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A repository that keeps its test database alive as long as any clone of
/// it: the contract suite takes repositories by value.
#[derive(Debug)]
pub struct WithDb<R> {
    repo: R,
    db: Arc<TestDb>,
}

impl<R: Clone> Clone for WithDb<R> {
    fn clone(&self) -> Self {
        Self {
            repo: self.repo.clone(),
            db: Arc::clone(&self.db),
        }
    }
}

impl<M: Mapping> WithDb<PgRepository<M>>
where
    M::Aggregate: Mapped<Mapping = M>,
{
    /// The repository of `M` on a fresh database, with default settings.
    pub async fn fresh() -> Self {
        let db = TestDb::new().await;
        let repo = db
            .store(StoreConfig::default())
            .repository::<M::Aggregate>();
        Self { repo, db }
    }
}

impl<R> WithDb<R> {
    /// The database under the repository.
    pub fn db(&self) -> &Arc<TestDb> {
        &self.db
    }
}

impl<A: Aggregate, R: Repository<A>> Repository<A> for WithDb<R> {
    async fn create(&self, token: TxToken, aggregate: A) -> Result<Created<A>, RepositoryError> {
        self.repo.create(token, aggregate).await
    }

    async fn get(&self, id: A::Id) -> Result<A, RepositoryError> {
        self.repo.get(id).await
    }

    async fn get_by(&self, key: domain::UniqueKey) -> Result<A, RepositoryError> {
        self.repo.get_by(key).await
    }

    async fn update_by<T, E, F>(
        &self,
        key: domain::UniqueKey,
        f: F,
    ) -> Result<Updated<A, T>, RepositoryError<E>>
    where
        F: FnMut(&mut A) -> Result<T, E> + Send,
        T: Send,
        E: Send,
    {
        self.repo.update_by(key, f).await
    }

    async fn update<T, E, F>(&self, id: A::Id, f: F) -> Result<Updated<A, T>, RepositoryError<E>>
    where
        F: FnMut(&mut A) -> Result<T, E> + Send,
        T: Send,
        E: Send,
    {
        self.repo.update(id, f).await
    }

    async fn delete(&self, id: A::Id) -> Result<(), RepositoryError> {
        self.repo.delete(id).await
    }

    async fn list(&self, page: PageRequest<A::Id>) -> Result<Page<A>, RepositoryError> {
        self.repo.list(page).await
    }

    async fn events(&self, id: A::Id) -> Result<Vec<domain::StoredEvent>, RepositoryError> {
        self.repo.events(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            database_url("postgres://u:p@h:5432/postgres", "t1"),
            "postgres://u:p@h:5432/t1"
        );
        assert_eq!(
            database_url("postgres://h/postgres?sslmode=disable", "t1"),
            "postgres://h/t1?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://h:5432", "t1"),
            "postgres://h:5432/t1"
        );
    }
}

/// Counts of this database's server sessions, from `pg_stat_activity`.
#[derive(Debug, diesel::QueryableByName)]
pub struct Sessions {
    /// Sessions in any state.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub total: i64,
    /// Sessions sitting inside a transaction while no statement runs.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub idle_in_transaction: i64,
    /// Sessions running a statement.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub active: i64,
}

impl TestDb {
    /// This database's sessions, other than the one asking.
    pub async fn sessions(&self) -> Sessions {
        use diesel_async::RunQueryDsl;
        let mut conn = self.connect().await;
        diesel::sql_query(
            "SELECT count(*) AS total, \
                    count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS idle_in_transaction, \
                    count(*) FILTER (WHERE state = 'active') AS active \
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .get_result(&mut conn)
        .await
        .expect("read pg_stat_activity")
    }

    /// Terminates every other session on this database, as a crash or a
    /// failover would. Returns how many it ended.
    pub async fn terminate_backends(&self) -> usize {
        use diesel_async::RunQueryDsl;
        let mut conn = self.connect().await;
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut conn)
        .await
        .expect("terminate backends")
    }
}

/// A [`PgStore`] that keeps its test database alive, for unit-of-work suites.
#[derive(Debug, Clone)]
pub struct StoreWithDb {
    store: PgStore,
    db: Arc<TestDb>,
}

impl StoreWithDb {
    /// A store with default settings on a fresh database.
    pub async fn fresh() -> Self {
        Self::fresh_with(StoreConfig::default()).await
    }

    /// A store with these settings on a fresh database.
    pub async fn fresh_with(config: StoreConfig) -> Self {
        let db = TestDb::new().await;
        Self {
            store: db.store(config),
            db,
        }
    }

    /// The store.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// The database under the store.
    pub fn db(&self) -> &Arc<TestDb> {
        &self.db
    }
}

impl domain::UnitOfWork for StoreWithDb {
    type Tx = storage::PgTx;

    async fn run<T, E, F>(&self, work: F) -> Result<T, RepositoryError<E>>
    where
        F: for<'t> FnMut(
                &'t mut storage::PgTx,
            ) -> domain::BoxFuture<'t, Result<T, RepositoryError<E>>>
            + Send,
        T: Send,
        E: Send,
    {
        self.store.run(work).await
    }

    async fn run_once<T, E, F>(
        &self,
        key: TxToken,
        request: domain::Fingerprint,
        work: F,
    ) -> Result<domain::Keyed<T>, RepositoryError<E>>
    where
        F: for<'t> FnMut(
                &'t mut storage::PgTx,
            ) -> domain::BoxFuture<'t, Result<T, RepositoryError<E>>>
            + Send,
        T: serde::Serialize + serde::de::DeserializeOwned + Send,
        E: Send,
    {
        self.store.run_once(key, request, work).await
    }

    async fn read<T, E, F>(&self, work: F) -> Result<T, RepositoryError<E>>
    where
        F: for<'t> FnMut(
                &'t mut storage::PgTx,
            ) -> domain::BoxFuture<'t, Result<T, RepositoryError<E>>>
            + Send,
        T: Send,
        E: Send,
    {
        self.store.read(work).await
    }
}

impl domain::ExclusiveAccess for StoreWithDb {
    type Guard = storage::PgKeyGuard;

    async fn lock(
        &self,
        key: &str,
        wait: std::time::Duration,
    ) -> Result<Self::Guard, RepositoryError> {
        self.store.lock(key, wait).await
    }

    async fn lock_shared(
        &self,
        key: &str,
        wait: std::time::Duration,
    ) -> Result<Self::Guard, RepositoryError> {
        self.store.lock_shared(key, wait).await
    }

    async fn still_held(&self, guard: &mut Self::Guard) -> Result<(), RepositoryError> {
        self.store.still_held(guard).await
    }

    async fn unlock(&self, guard: Self::Guard) -> Result<(), RepositoryError> {
        self.store.unlock(guard).await
    }
}

impl domain::Store for StoreWithDb {
    fn name(&self) -> &'static str {
        self.store.name()
    }

    async fn ping(&self) -> Result<(), RepositoryError> {
        self.store.ping().await
    }

    async fn bind_key(
        &self,
        key: TxToken,
        request: domain::Fingerprint,
    ) -> Result<(), RepositoryError> {
        self.store.bind_key(key, request).await
    }

    async fn purge_expired_tokens(&self) -> Result<usize, RepositoryError> {
        self.store.purge_expired_tokens().await
    }

    async fn outbox_lag(&self) -> Result<Option<std::time::Duration>, RepositoryError> {
        self.store.outbox_lag().await
    }
}

impl<A: Mapped> domain::Stores<A> for StoreWithDb {
    type Repository = PgRepository<A::Mapping>;

    fn repository_of(&self) -> Self::Repository {
        self.store.repository::<A>()
    }
}
