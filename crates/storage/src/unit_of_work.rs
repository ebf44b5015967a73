//! Units of work on Postgres: one SERIALIZABLE transaction per attempt,
//! re-run whole on conflicts and transient faults.

use std::collections::BTreeSet;
use std::convert::Infallible;

use diesel::QueryResult;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};
use domain::{
    Aggregate, BoxFuture, Clock, Created, Nested, RepositoryError, StoredEvent, Transaction,
    TxToken, UnitOfWork, Updated, Version,
};
use tracing::Instrument;

use crate::classify::is_connection_fault;
use crate::mapping::{Mapped, Mapping};
use crate::ops;
use crate::repository::target;
use crate::retry::{Fail, Retry, RetryAs, Target};
use crate::store::{Conn, PgStore};
use crate::write_order::Claims;

/// The transaction handle of a [`PgStore`] unit of work. Operations on it run
/// inside the unit's transaction (their own transactions become savepoints).
/// When one meets a conflict or a transient fault, the handle remembers it
/// and the unit is rolled back and re-run, whatever the closure did with
/// the error it got.
pub struct PgTx {
    conn: Conn,
    store: PgStore,
    fault: Option<RetryAs>,
    /// The tokens this attempt's creates claimed: if its COMMIT reply is
    /// lost, any of them tells whether it landed.
    claimed: Vec<(&'static str, TxToken)>,
    /// The rows this attempt writes, claimed in process (`write_order`).
    rows: Claims,
    /// Stamps the tokens its creates claim.
    clock: Clock,
}

impl std::fmt::Debug for PgTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTx")
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

impl PgTx {
    fn conn(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }

    /// The connection, and how its store's transactions begin.
    fn parts(&mut self) -> (&mut AsyncPgConnection, &crate::session::Sessions) {
        (&mut self.conn, self.store.sessions())
    }

    /// Turns a failed attempt into the error the closure sees, remembering
    /// retryable ones for the unit.
    fn absorb<T, E>(
        &mut self,
        target: &Target,
        result: Result<T, Fail<E>>,
    ) -> Result<T, RepositoryError<E>> {
        result.map_err(|failure| match target.judge(failure) {
            Err(error) => error,
            Ok(retry_as) => {
                let error = match &retry_as {
                    RetryAs::Conflict | RetryAs::Queued => RepositoryError::Conflict {
                        kind: target.kind,
                        id: target.id.clone(),
                        attempts: 1,
                    },
                    RetryAs::Connection(e) => RepositoryError::Unavailable(e.to_string().into()),
                };
                self.fault.get_or_insert(retry_as);
                error
            }
        })
    }
}

impl PgTx {
    /// Ends the attempt: returns its connection to the pool, releases its
    /// rows and says which ones the next attempt should take first.
    fn end(self) -> BTreeSet<String> {
        self.rows.into_wanted()
    }

    /// Claims the row `id` of `A` for this attempt before it is written;
    /// if another unit of this process holds it, the attempt is doomed and
    /// re-run once that unit is done.
    fn claim<A: Aggregate, E>(&mut self, id: &A::Id) -> Result<(), RepositoryError<E>> {
        if self.rows.try_claim(format!("{}:{id}", A::KIND)) {
            return Ok(());
        }
        self.fault.get_or_insert(RetryAs::Queued);
        Err(RepositoryError::Conflict {
            kind: A::KIND,
            id: id.to_string(),
            attempts: 1,
        })
    }
}

impl Nested for PgTx {
    /// A SAVEPOINT: released when `work` succeeds, rolled back to when it
    /// fails. A conflict inside it still re-runs the whole unit.
    async fn nested<T, E, F>(&mut self, work: F) -> Result<T, E>
    where
        F: for<'t> FnOnce(&'t mut Self) -> BoxFuture<'t, Result<T, E>> + Send,
        T: Send,
        E: Send,
    {
        let opened = AnsiTransactionManager::begin_transaction(self.conn()).await;
        if let Err(error) = opened {
            // The unit's transaction is unusable: `work` will fail, and the
            // recorded fault re-runs the unit. Closing nothing here keeps
            // the outer transaction's state for the unit to roll back.
            self.fault.get_or_insert(RetryAs::Connection(error));
            return work(self).await;
        }
        let result = work(self).await;
        let closed = match &result {
            Ok(_) => AnsiTransactionManager::commit_transaction(self.conn()).await,
            Err(_) => AnsiTransactionManager::rollback_transaction(self.conn()).await,
        };
        if let Err(error) = closed {
            self.fault.get_or_insert(RetryAs::Connection(error));
        }
        result
    }
}

impl domain::Inbox for PgTx {
    /// One `INSERT .. ON CONFLICT DO NOTHING` into `inbox`, in the unit's
    /// transaction.
    async fn first_delivery(
        &mut self,
        consumer: &'static str,
        event: uuid::Uuid,
    ) -> Result<bool, RepositoryError> {
        let target = Target {
            kind: "inbox entry",
            id: format!("{consumer}:{event}"),
            primary_key: "inbox_pkey",
        };
        let now = self.clock.now();
        let recorded = crate::inbox::record(self.conn(), consumer, event, now).await;
        self.absorb(&target, recorded.map_err(Fail::Db))
    }
}

impl<A: Mapped> Transaction<A> for PgTx {
    async fn create(
        &mut self,
        token: TxToken,
        aggregate: A,
    ) -> Result<Created<A>, RepositoryError> {
        let mut aggregate = aggregate;
        aggregate.set_version(Version::INITIAL);
        let now = self.clock.now();
        let events = StoredEvent::stamp::<A>(
            aggregate.id(),
            Version::INITIAL,
            aggregate.take_events(),
            now,
        );
        let (conn, sessions) = self.parts();
        let result =
            ops::create::<A::Mapping, Infallible>(conn, sessions, token, &aggregate, &events, now)
                .await;
        if let Ok(Created::New(_)) = &result {
            self.claimed.push((A::KIND, token));
        }
        self.absorb(&target::<A::Mapping>(aggregate.id()), result)
    }

    async fn get(&mut self, id: A::Id) -> Result<A, RepositoryError> {
        let (conn, sessions) = self.parts();
        let result = ops::load::<A::Mapping, Infallible>(conn, sessions, id).await;
        self.absorb(&target::<A::Mapping>(id), result)
    }

    async fn update<R, E, F>(
        &mut self,
        id: A::Id,
        f: F,
    ) -> Result<Updated<A, R>, RepositoryError<E>>
    where
        F: FnOnce(&mut A) -> Result<R, E> + Send,
        R: Send,
        E: Send,
    {
        self.claim::<A, E>(&id)?;
        // Inside the unit's transaction no reply is lost on its own: the
        // unit settles a lost COMMIT.
        let now = self.clock.now();
        let (conn, sessions) = self.parts();
        let result = ops::update::<A::Mapping, R, E>(conn, sessions, id, f, &mut None, now).await;
        self.absorb(&target::<A::Mapping>(id), result)
    }

    async fn delete(&mut self, id: A::Id) -> Result<(), RepositoryError> {
        self.claim::<A, Infallible>(&id)?;
        let (conn, sessions) = self.parts();
        let result = ops::delete::<A::Mapping, Infallible>(conn, sessions, id).await;
        self.absorb(&target::<A::Mapping>(id), result)
    }

    async fn all(&mut self) -> Result<Vec<A>, RepositoryError> {
        let result: QueryResult<Vec<A>> = A::Mapping::load_page(self.conn(), None, i64::MAX).await;
        self.absorb(&target::<A::Mapping>("*"), result.map_err(Fail::Db))
    }

    async fn save_all(&mut self, changed: Vec<A>) -> Result<(), RepositoryError> {
        for a in &changed {
            self.claim::<A, Infallible>(&a.id())?;
        }
        let now = self.clock.now();
        let (conn, sessions) = self.parts();
        let result = save_all::<A::Mapping>(conn, sessions, changed, now).await;
        self.absorb(&target::<A::Mapping>("*"), result)
    }
}

/// Pairs each changed aggregate with its stored state (one statement for
/// the mappings that override `load_many`) and writes them all.
async fn save_all<M: Mapping>(
    conn: &mut AsyncPgConnection,
    sessions: &crate::session::Sessions,
    changed: Vec<M::Aggregate>,
    now: domain::Timestamp,
) -> Result<(), Fail<Infallible>> {
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<_> = changed.iter().map(Aggregate::id).collect();
    let stored = M::load_many(conn, &ids).await?;
    let mut pairs = Vec::with_capacity(changed.len());
    let mut events = Vec::new();
    for mut new in changed {
        let id = new.id();
        let Some(old) = stored.iter().find(|a| a.id() == id) else {
            return Err(Fail::Done(RepositoryError::not_found(
                M::Aggregate::KIND,
                id,
            )));
        };
        if old.version() != new.version() {
            return Err(Fail::VersionMiss);
        }
        new.set_version(old.version().next());
        let recorded = new.take_events();
        events.extend(StoredEvent::stamp::<M::Aggregate>(
            id,
            new.version(),
            recorded,
            now,
        ));
        pairs.push((old.clone(), new));
    }
    ops::write_all::<M, Infallible>(conn, sessions, &pairs, &events).await
}

impl UnitOfWork for PgStore {
    type Tx = PgTx;

    /// One SERIALIZABLE transaction per attempt.
    async fn run<T, E, F>(&self, work: F) -> Result<T, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut PgTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Send,
        E: Send,
    {
        let done = self
            .attempts(self.sessions().begin_serializable(), work)
            .await;
        if done.is_ok() {
            self.note_write().await;
        }
        done
    }

    /// One REPEATABLE READ, READ ONLY transaction: a snapshot that takes no
    /// predicate locks, so it cannot make SERIALIZABLE writers fail.
    async fn read<T, E, F>(&self, work: F) -> Result<T, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut PgTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Send,
        E: Send,
    {
        self.attempts(self.sessions().begin_read_only(), work).await
    }
}

impl PgStore {
    /// Runs `work` in transactions opened with `begin`, until it commits,
    /// fails for good, or retries or the deadline run out.
    async fn attempts<T, E, F>(&self, begin: &str, mut work: F) -> Result<T, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut PgTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Send,
        E: Send,
    {
        let config = self.config();
        let attempts = async {
            let mut retry = Retry {
                target: Target {
                    kind: "unit of work",
                    id: String::new(),
                    primary_key: "",
                },
                config,
                attempts: 1,
            };
            // The rows the last attempt wrote or lost to another unit: the
            // next one waits for them first, in order (`write_order`).
            let mut wanted = BTreeSet::new();
            loop {
                let rows = self.inner.write_claims.take_in_order(wanted).await;
                let conn = self.connection::<Infallible>().await?;
                let mut tx = PgTx {
                    conn,
                    store: self.clone(),
                    fault: None,
                    claimed: Vec::new(),
                    rows,
                    clock: config.clock.clone(),
                };
                // Every path that backs off drops `tx` first: a unit waiting
                // to retry must not hold a pooled connection while it sleeps,
                // or waiting units starve the pool.
                if let Err(error) =
                    AnsiTransactionManager::begin_transaction_sql(tx.conn(), begin).await
                {
                    wanted = tx.end();
                    retry.after(Fail::<Infallible>::Db(error)).await?;
                    continue;
                }
                let outcome = domain::__private::within_unit(work(&mut tx)).await;
                match (outcome, tx.fault.take()) {
                    (_, Some(retry_as)) => {
                        roll_back(tx.conn()).await;
                        wanted = tx.end();
                        retry.again::<Infallible>(retry_as).await?;
                    }
                    (Err(error), None) => {
                        roll_back(tx.conn()).await;
                        return Ok(Err(error));
                    }
                    (Ok(value), None) => match commit(tx.conn()).await {
                        Ok(()) => return Ok(Ok(value)),
                        Err(error) if is_connection_fault(&error) => {
                            // The COMMIT reply is lost. A token the unit
                            // claimed exists if and only if it landed.
                            let claimed = std::mem::take(&mut tx.claimed);
                            wanted = tx.end();
                            match self.landed(&claimed).await {
                                Some(true) => return Ok(Ok(value)),
                                Some(false) => {
                                    retry
                                        .again::<Infallible>(RetryAs::Connection(error))
                                        .await?;
                                }
                                None => return Err(RepositoryError::OutcomeUnknown),
                            }
                        }
                        Err(error) => {
                            wanted = tx.end();
                            retry.after(Fail::<Infallible>::Db(error)).await?;
                        }
                    },
                }
            }
        };
        let span = tracing::debug_span!("unit_of_work");
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(config.deadline, attempts)
            .instrument(span)
            .await
        {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => Err(error.widen()),
            Err(_) => Err(RepositoryError::Timeout),
        };
        let measured = crate::metrics::Op {
            kind: "unit",
            op: "run",
        };
        crate::metrics::finished(measured, started, &result);
        result
    }
}

impl PgStore {
    /// Whether a unit whose COMMIT reply was lost landed, told by the first
    /// token it claimed; `None` when it claimed none or the store cannot say.
    async fn landed(&self, claimed: &[(&'static str, TxToken)]) -> Option<bool> {
        let (kind, token) = *claimed.first()?;
        let mut conn = self.connection::<Infallible>().await.ok()?;
        crate::tokens::is_claimed(&mut conn, self.sessions(), kind, token)
            .await
            .ok()
    }
}

/// The unit's COMMIT. The failpoints (for tests) lose its reply after it
/// landed, or break the connection before it was sent.
async fn commit(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::unit-commit-lost-before", |_| {
        Err(lost_connection("failpoint: connection lost before COMMIT"))
    });
    AnsiTransactionManager::commit_transaction(conn).await?;
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::unit-commit-reply-lost", |_| {
        Err(lost_connection("failpoint: COMMIT reply lost"))
    });
    Ok(())
}

#[cfg(feature = "failpoints")]
fn lost_connection(why: &str) -> diesel::result::Error {
    diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::ClosedConnection,
        Box::new(why.to_owned()),
    )
}

async fn roll_back(conn: &mut AsyncPgConnection) {
    if let Err(error) = AnsiTransactionManager::rollback_transaction(conn).await {
        tracing::debug!(%error, "rollback failed; the connection will be discarded");
    }
}
