//! Units of work on Postgres: one SERIALIZABLE transaction per attempt,
//! re-run whole on conflicts and transient faults. Its updates wait in
//! the process until COMMIT, which they travel with (`kept_writes`).

use std::collections::BTreeSet;
use std::convert::Infallible;

use diesel::QueryResult;
use diesel::connection::{TransactionDepthChange, TransactionManagerStatus};
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, SimpleAsyncConnection, TransactionManager,
};
use domain::{
    Aggregate, BoxFuture, Clock, Created, Fingerprint, Keyed, Nested, RepositoryError, RunOnce,
    StoredEvent, Transaction, TxToken, UnitOfWork, Updated, Version,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::classify::is_connection_fault;
use crate::flight::{self, Guard};
use crate::kept_writes::KeptWrites;
use crate::mapping::{Mapped, Mapping};
use crate::ops;
use crate::repository::target;
use crate::retry::{Fail, Retry, RetryAs, Target, within_deadline};
use crate::store::{Conn, PgStore};
use crate::write_order::{Claims, row_key};
use crate::writes::Writes;

/// The transaction handle of a [`PgStore`] unit of work. Operations on it run
/// inside the unit's transaction (their own transactions become savepoints).
/// When one meets a conflict or a transient fault, the handle remembers it
/// and the unit is rolled back and re-run, whatever the closure did with
/// the error it got.
pub struct PgTx {
    conn: Conn,
    store: PgStore,
    fault: Option<RetryAs>,
    /// The tokens this attempt claimed (its key first, then its creates'),
    /// none from a nested part that rolled back: if its COMMIT reply is
    /// lost, any of them tells whether it landed.
    claimed: Vec<(&'static str, TxToken)>,
    /// The answer of a unit run with a key, which its COMMIT carries.
    answer: Option<crate::answers::Answer>,
    /// The rows this attempt writes, claimed in process (`write_order`).
    rows: Claims,
    /// Stamps the tokens its creates claim.
    clock: Clock,
    /// Its updates, until COMMIT (or another statement) takes them.
    kept: KeptWrites,
    /// What the transaction may do: a read unit writes at once (and
    /// fails), keeping nothing.
    access: Access,
    /// No statement has carried the unit's BEGIN yet: the first load takes
    /// it along (`PgTx::load`), anything else sends it first.
    unopened: bool,
    /// The failure of a kept write flushed before another operation: it
    /// failed the unit's transaction, and ends the unit.
    broken: Option<RepositoryError>,
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
    /// An attempt of a unit of `store`, on `conn`, with `rows` claimed.
    fn new(store: &PgStore, conn: Conn, rows: Claims, access: Access) -> Self {
        Self {
            conn,
            store: store.clone(),
            fault: None,
            claimed: Vec::new(),
            answer: None,
            rows,
            clock: store.config().clock.clone(),
            kept: KeptWrites::default(),
            access,
            unopened: true,
            broken: None,
        }
    }

    /// Ends the attempt: returns its connection to the pool, releases its
    /// rows and says which ones the next attempt should take first.
    fn end(self) -> BTreeSet<String> {
        self.rows.into_wanted()
    }

    /// Claims the row `id` of `A` for this attempt before it is written;
    /// if another unit of this process holds it, the attempt is doomed and
    /// re-run once that unit is done.
    fn claim<A: Aggregate, E>(&mut self, id: &A::Id) -> Result<(), RepositoryError<E>> {
        if self.rows.try_claim(row_key(A::KIND, id)) {
            return Ok(());
        }
        self.fault.get_or_insert(RetryAs::Queued);
        Err(RepositoryError::Conflict {
            kind: A::KIND,
            id: id.to_string(),
            attempts: 1,
        })
    }

    /// The unit's BEGIN, with its settings.
    fn begin(&self) -> &str {
        let sessions = self.store.sessions();
        match self.access {
            Access::ReadWrite => sessions.begin_serializable(),
            Access::ReadOnly => sessions.begin_read_only(),
        }
    }

    /// Readies the unit's transaction for a statement other than a load:
    /// sends its BEGIN if no statement carried it yet, then its kept
    /// updates (see [`Self::flush`]).
    async fn ready<E>(&mut self) -> Result<(), RepositoryError<E>> {
        if self.unopened {
            self.unopened = false;
            let mut on: &AsyncPgConnection = &self.conn;
            let begun = on.batch_execute(self.begin()).await;
            self.absorb::<(), Infallible>(&unit_target(), begun.map_err(Fail::Db))
                .map_err(RepositoryError::widen)?;
        }
        self.flush().await
    }

    /// Claims `once`'s key, if the unit has one, as its first statement,
    /// in the flight of its BEGIN. `None`: the unit is to run. Else the
    /// answer of the unit that committed with the key before (or
    /// `TokenMismatch`, asked for another request). A failure is absorbed
    /// as the unit's.
    async fn claim_key<T, E>(
        &mut self,
        once: Option<&RunOnce<T>>,
    ) -> Result<Option<Result<T, RepositoryError<E>>>, RepositoryError<E>> {
        let Some(once) = once else {
            return Ok(None);
        };
        let claimed = self.try_claim_key(once).await;
        self.absorb(&unit_target(), claimed)
    }

    async fn try_claim_key<T, E>(
        &mut self,
        once: &RunOnce<T>,
    ) -> Result<Option<Result<T, RepositoryError<E>>>, Fail<E>> {
        self.unopened = false;
        let now = self.clock.now();
        let shared: &AsyncPgConnection = &self.conn;
        let claim = crate::answers::claim(shared, once.key, &once.request, now);
        let (begun, claimed) = flight::begin_with(shared, self.begin(), claim).await;
        begun?;
        if claimed? {
            self.claimed.push((crate::answers::UNIT_KIND, once.key));
            return Ok(None);
        }
        match crate::answers::find(&self.conn, once.key).await? {
            Some((request, answer)) => Ok(Some(once.replay(request, &answer))),
            // Claimed, then purged in between: try again.
            None => Err(Fail::VersionMiss),
        }
    }

    /// With a key, keeps the unit's answer for its COMMIT to store; an
    /// answer that cannot be kept fails the unit.
    fn keep_answer<T, E>(
        &mut self,
        once: Option<&RunOnce<T>>,
        outcome: Result<T, RepositoryError<E>>,
    ) -> Result<T, RepositoryError<E>> {
        let (Some(once), Ok(value)) = (once, &outcome) else {
            return outcome;
        };
        let json = once.encode(value)?;
        let (key, at) = (once.key, self.clock.now());
        self.answer = Some(crate::answers::Answer { key, json, at });
        outcome
    }

    /// Loads `M`'s aggregate `id`; the unit's first load carries its BEGIN
    /// in the same flight.
    async fn load<M: Mapping, E>(
        &mut self,
        id: <M::Aggregate as Aggregate>::Id,
    ) -> Result<M::Aggregate, Fail<E>> {
        if !self.unopened {
            let (conn, sessions) = self.parts();
            return ops::load::<M, E>(conn, sessions, id).await;
        }
        self.unopened = false;
        let shared: &AsyncPgConnection = &self.conn;
        let (begun, found) = flight::begin_with(shared, self.begin(), M::load(shared, id)).await;
        begun?;
        found?.ok_or_else(|| Fail::Done(RepositoryError::not_found(M::Aggregate::KIND, id)))
    }

    /// Sends the kept updates, in one round trip, before a statement that
    /// must see them or come after them. A failure fails the unit's
    /// transaction: retried as the unit, or, when final, the unit's
    /// outcome whatever the closure makes of the error it gets.
    async fn flush<E>(&mut self) -> Result<(), RepositoryError<E>> {
        let mut writes = Writes::new();
        let Some((roots, target)) = self.kept.list(&mut writes) else {
            return Ok(());
        };
        let written = writes.send(&self.conn).await.matched(roots);
        self.kept.clear();
        let failure = match written {
            Ok(true) => return Ok(()),
            Ok(false) => Fail::VersionMiss,
            Err(error) => Fail::Db(error),
        };
        match self.absorb::<(), Infallible>(&target, Err(failure)) {
            Err(error) if self.fault.is_none() => {
                let told = RepositoryError::Storage(
                    format!("an earlier update of this unit failed: {error}").into(),
                );
                self.broken.get_or_insert(error);
                Err(told)
            }
            other => other.map_err(RepositoryError::widen),
        }
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
        // The savepoint comes after every earlier write, and a failure
        // rolls back only what `work` wrote.
        if let Err(error) = self.ready::<Infallible>().await {
            tracing::debug!(%error, "the unit failed before a nested part");
            return work(self).await;
        }
        let opened = AnsiTransactionManager::begin_transaction(self.conn()).await;
        if let Err(error) = opened {
            // The unit's transaction is unusable: `work` will fail, and the
            // recorded fault re-runs the unit. Closing nothing here keeps
            // the outer transaction's state for the unit to roll back.
            self.fault.get_or_insert(RetryAs::Connection(error));
            return work(self).await;
        }
        let claimed = self.claimed.len();
        let result = work(self).await;
        if result.is_ok() {
            // A failure is recorded, and ends the unit.
            let _ = self.flush::<Infallible>().await;
        }
        self.kept.clear(); // after a failure, rolled back with the savepoint
        let released = result.is_ok() && self.broken.is_none() && self.fault.is_none();
        let closed = if released {
            AnsiTransactionManager::commit_transaction(self.conn()).await
        } else {
            // The tokens claimed inside go with the savepoint: none of
            // them can tell whether the unit landed.
            self.claimed.truncate(claimed);
            AnsiTransactionManager::rollback_transaction(self.conn()).await
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
        self.ready().await?;
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
        self.ready().await?;
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
        if let Some(kept) = self.kept.latest::<A::Mapping>(id) {
            return Ok(kept.clone());
        }
        let result = self.load::<A::Mapping, Infallible>(id).await;
        self.absorb(&target::<A::Mapping>(id), result)
    }

    /// One indexed read in the unit's transaction; an aggregate the unit
    /// changed is answered as it kept it.
    async fn get_by(&mut self, key: domain::UniqueKey) -> Result<A, RepositoryError> {
        let target = target::<A::Mapping>(&key);
        self.ready().await?;
        let (conn, sessions) = self.parts();
        let found = ops::load_by::<A::Mapping, Infallible>(conn, sessions, &key).await;
        let found = self.absorb(&target, found)?;
        Ok(match self.kept.latest::<A::Mapping>(found.id()) {
            Some(kept) => kept.clone(),
            None => found,
        })
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
        if self.access == Access::ReadOnly {
            self.ready().await?;
            let (conn, sessions) = self.parts();
            let result =
                ops::update::<A::Mapping, R, E>(conn, sessions, id, f, &mut None, now).await;
            return self.absorb(&target::<A::Mapping>(id), result);
        }
        let target = target::<A::Mapping>(id);
        let old = if let Some(kept) = self.kept.latest::<A::Mapping>(id) {
            kept.clone()
        } else {
            let loaded = self.load::<A::Mapping, E>(id).await;
            self.absorb(&target, loaded)?
        };
        let (new, output, events) = self.absorb(&target, ops::modify(&old, f, now))?;
        if old.unique_keys() == new.unique_keys() {
            self.kept.keep::<A::Mapping>(old, new.clone(), events);
            return Ok(Updated {
                aggregate: new,
                output,
            });
        }
        // A unique key changed: written now, so that a taken one fails
        // this call (`Duplicate`), which the closure may handle.
        self.ready().await?;
        let pair = [(old, new)];
        let (conn, sessions) = self.parts();
        let written = ops::write_all::<A::Mapping, E>(conn, sessions, &pair, &events).await;
        self.absorb(&target, written)?;
        let [(_, aggregate)] = pair;
        Ok(Updated { aggregate, output })
    }

    async fn delete(&mut self, id: A::Id) -> Result<(), RepositoryError> {
        self.claim::<A, Infallible>(&id)?;
        self.ready().await?;
        let (conn, sessions) = self.parts();
        let result = ops::delete::<A::Mapping, Infallible>(conn, sessions, id).await;
        self.absorb(&target::<A::Mapping>(id), result)
    }

    async fn all(&mut self) -> Result<Vec<A>, RepositoryError> {
        self.ready().await?;
        let result: QueryResult<Vec<A>> = A::Mapping::load_page(self.conn(), None, i64::MAX).await;
        self.absorb(&target::<A::Mapping>("*"), result.map_err(Fail::Db))
    }

    async fn save_all(&mut self, changed: Vec<A>) -> Result<(), RepositoryError> {
        for a in &changed {
            self.claim::<A, Infallible>(&a.id())?;
        }
        self.ready().await?;
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
        self.run_once_or_more(None, work)
            .await
            .map(Keyed::into_inner)
    }

    /// As `run`, the unit's transaction claiming the key first (in the
    /// flight of its BEGIN) and storing the answer with its COMMIT.
    async fn run_once<T, E, F>(
        &self,
        key: TxToken,
        request: Fingerprint,
        work: F,
    ) -> Result<Keyed<T>, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut PgTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Serialize + DeserializeOwned + Send,
        E: Send,
    {
        self.run_once_or_more(Some(RunOnce::new(key, request)), work)
            .await
    }

    /// One REPEATABLE READ, READ ONLY transaction: a snapshot that takes no
    /// predicate locks, so it cannot make SERIALIZABLE writers fail.
    async fn read<T, E, F>(&self, work: F) -> Result<T, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut PgTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Send,
        E: Send,
    {
        self.attempts(Access::ReadOnly, None, work)
            .await
            .map(Keyed::into_inner)
    }
}

impl PgStore {
    /// A read-write unit, under a key or not.
    async fn run_once_or_more<T, E, F>(
        &self,
        once: Option<RunOnce<T>>,
        work: F,
    ) -> Result<Keyed<T>, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut PgTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Send,
        E: Send,
    {
        let done = self.attempts(Access::ReadWrite, once, work).await;
        if matches!(done, Ok(Keyed::First(_))) {
            self.note_write().await;
        }
        done
    }
}

/// What a failure of the unit itself (not of one of its operations) is
/// reported as.
fn unit_target() -> Target {
    Target {
        kind: "unit of work",
        id: String::new(),
        primary_key: "",
    }
}

/// What a unit's transaction may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// SERIALIZABLE.
    ReadWrite,
    /// REPEATABLE READ, READ ONLY.
    ReadOnly,
}

impl PgStore {
    /// Runs `work` in transactions of `access`, until it commits, fails for
    /// good, or retries or the deadline run out; with `once`, only if no
    /// unit committed with its key before (`UnitOfWork::run_once`).
    async fn attempts<T, E, F>(
        &self,
        access: Access,
        once: Option<RunOnce<T>>,
        mut work: F,
    ) -> Result<Keyed<T>, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut PgTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Send,
        E: Send,
    {
        let config = self.config();
        let attempts = async {
            let mut retry = Retry {
                target: unit_target(),
                config,
                attempts: 1,
            };
            // The rows the last attempt wrote or lost to another unit: the
            // next one waits for them first, in order (`write_order`).
            let mut wanted = BTreeSet::new();
            // An earlier attempt's COMMIT reply was lost: an answer found
            // under the key now is most likely that attempt's own.
            let mut reply_lost = false;
            loop {
                let rows = self.inner.write_claims.take_in_order(wanted).await;
                let conn = self.connection::<Infallible>().await?;
                let mut tx = PgTx::new(self, conn, rows, access);
                // Every path that backs off drops `tx` first: a unit waiting
                // to retry must not hold a pooled connection while it sleeps,
                // or waiting units starve the pool.
                // The unit's BEGIN travels with its first statement
                // (`PgTx::load`, `PgTx::ready`); from here on the connection
                // counts as inside the transaction (a dropped unit's then
                // leaves the pool).
                if let Err(error) = enter_transaction(tx.conn()) {
                    wanted = tx.end();
                    retry.after(Fail::<Infallible>::Db(error)).await?;
                    continue;
                }
                let mut outcome = match tx.claim_key(once.as_ref()).await {
                    Ok(None) => domain::__private::within_unit(work(&mut tx)).await,
                    Ok(Some(answered)) => {
                        tx.roll_back().await;
                        let keyed = if reply_lost {
                            Keyed::First
                        } else {
                            Keyed::Replayed
                        };
                        return Ok(answered.map(keyed));
                    }
                    Err(error) => Err(error),
                };
                if let Some(error) = tx.broken.take() {
                    outcome = Err(error.widen());
                }
                let outcome = tx.keep_answer(once.as_ref(), outcome);
                match (outcome, tx.fault.take()) {
                    (_, Some(retry_as)) => {
                        tx.roll_back().await;
                        wanted = tx.end();
                        retry.again::<Infallible>(retry_as).await?;
                    }
                    (Err(error), None) => {
                        tx.roll_back().await;
                        return Ok(Err(error));
                    }
                    (Ok(value), None) => match settle_commit(&mut tx).await {
                        (Ok(()), _) => return Ok(Ok(Keyed::First(value))),
                        // Past the deadline, the COMMIT was cancelled and
                        // its reply awaited: it failed, so nothing landed,
                        // unless the connection broke before the reply.
                        (Err(Fail::Db(error) | Fail::ReplyLost(error)), true)
                            if is_connection_fault(&error) =>
                        {
                            // With a key, a retry by the caller is safe.
                            return Err(if once.is_some() {
                                RepositoryError::Timeout
                            } else {
                                RepositoryError::OutcomeUnknown
                            });
                        }
                        (Err(_), true) => return Err(RepositoryError::Timeout),
                        (Err(Fail::Db(error) | Fail::ReplyLost(error)), false)
                            if is_connection_fault(&error) =>
                        {
                            // The COMMIT reply is lost. A token the unit
                            // claimed exists if and only if it landed.
                            let claimed = std::mem::take(&mut tx.claimed);
                            wanted = tx.end();
                            let landed = self.landed(&claimed).await;
                            if landed == Some(true) {
                                return Ok(Ok(Keyed::First(value)));
                            }
                            if landed.is_none() && once.is_none() {
                                return Err(RepositoryError::OutcomeUnknown);
                            }
                            // Not landed; or, with a key, the next
                            // attempt's claim tells.
                            reply_lost = true;
                            retry
                                .again::<Infallible>(RetryAs::Connection(error))
                                .await?;
                        }
                        (Err(failure), false) => {
                            wanted = tx.end();
                            retry.after(failure).await?;
                        }
                    },
                }
            }
        };
        let measured = crate::metrics::Op {
            kind: "unit",
            op: "run",
        };
        let span = tracing::debug_span!("unit_of_work");
        within_deadline(config, (measured, span), async {
            attempts.await.unwrap_or_else(|error| Err(error.widen()))
        })
        .await
    }
}

impl PgStore {
    /// Whether a unit whose COMMIT reply was lost landed, told by the first
    /// token it claimed (its key's, if it has one; none that a nested part
    /// rolled back); `None` when it claimed none or the store cannot say.
    async fn landed(&self, claimed: &[(&'static str, TxToken)]) -> Option<bool> {
        let (kind, token) = *claimed.first()?;
        let mut conn = self.connection::<Infallible>().await.ok()?;
        crate::tokens::is_claimed(&mut conn, self.sessions(), kind, token)
            .await
            .ok()
    }
}

/// The unit's COMMIT ([`commit`]), settled at the deadline as a
/// repository write is (`flight::Guard::settle`): past it, the server is
/// asked to cancel the COMMIT and its reply is awaited, so that the unit
/// never lands after its `Timeout`; dropped on the way (its caller gone),
/// the COMMIT is cancelled. Returns whether the deadline passed.
async fn settle_commit(tx: &mut PgTx) -> (Result<(), Fail<Infallible>>, bool) {
    let guard = Guard::watch(&tx.conn, tx.store.sessions());
    let settled = guard.settle(commit(tx)).await;
    guard.disarm();
    settled
}

/// The unit's COMMIT, in one flight with its kept updates. The failpoints
/// (for tests) lose its reply after it landed, or break the connection
/// before it was sent.
async fn commit(tx: &mut PgTx) -> Result<(), Fail<Infallible>> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::unit-commit-lost-before", |_| {
        Err(Fail::Db(lost_connection(
            "failpoint: connection lost before COMMIT",
        )))
    });
    if tx.unopened {
        // No statement went out: nothing to commit.
        leave_transaction(tx.conn());
    } else if tx.kept.is_empty() && tx.answer.is_none() {
        AnsiTransactionManager::commit_transaction(tx.conn()).await?;
    } else {
        send_with_commit(&tx.kept, tx.answer.as_ref(), &mut tx.conn).await?;
    }
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::unit-commit-reply-lost", |_| {
        Err(Fail::Db(lost_connection("failpoint: COMMIT reply lost")))
    });
    Ok(())
}

/// The kept updates, the answer of a unit run with a key, and COMMIT, in
/// one flight where nothing can overtake COMMIT (see `flight`).
async fn send_with_commit(
    kept: &KeptWrites,
    answer: Option<&crate::answers::Answer>,
    conn: &mut AsyncPgConnection,
) -> Result<(), Fail<Infallible>> {
    let mut writes = Writes::all_guarded();
    let roots = kept.list(&mut writes).map_or(0, |(roots, _)| roots);
    if let Some(answer) = answer {
        writes.child(answer.insert());
    }
    if !writes.in_order() {
        // A write whose binds may wait for a type lookup: its reply
        // comes before COMMIT goes.
        if !writes.send(conn).await.matched(roots)? {
            return Err(Fail::VersionMiss);
        }
        return Ok(AnsiTransactionManager::commit_transaction(conn).await?);
    }
    let shared = &*conn;
    // Polled after the writes (`join!` polls in order), so sent after them.
    let committed = flight::commit_after(shared);
    let (written, committed) = tokio::join!(writes.send(shared), committed);
    // A COMMIT that came back ended the transaction, rolling it back if a
    // write failed (a kept root that missed included).
    if matches!(&committed, Err(error) if is_connection_fault(error)) {
        AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
    } else {
        leave_transaction(conn);
    }
    if !written.matched(roots)? {
        return Err(Fail::VersionMiss);
    }
    committed?;
    Ok(())
}

#[cfg(feature = "failpoints")]
fn lost_connection(why: &str) -> diesel::result::Error {
    diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::ClosedConnection,
        Box::new(why.to_owned()),
    )
}

impl PgTx {
    /// Rolls the unit's transaction back, if its BEGIN went out.
    async fn roll_back(&mut self) {
        if self.unopened {
            leave_transaction(self.conn());
            return;
        }
        if let Err(error) = AnsiTransactionManager::rollback_transaction(self.conn()).await {
            tracing::debug!(%error, "rollback failed; the connection will be discarded");
        }
    }
}

/// Marks `conn` as inside a transaction whose BEGIN is yet to be sent.
fn enter_transaction(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    match AnsiTransactionManager::transaction_manager_status_mut(conn) {
        TransactionManagerStatus::Valid(status) => {
            status.change_transaction_depth(TransactionDepthChange::IncreaseDepth)
        }
        TransactionManagerStatus::InError => Err(diesel::result::Error::BrokenTransactionManager),
    }
}

/// Marks `conn` as outside any transaction again: its BEGIN never went
/// out, or its COMMIT ended it.
fn leave_transaction(conn: &mut AsyncPgConnection) {
    *AnsiTransactionManager::transaction_manager_status_mut(conn) =
        TransactionManagerStatus::default();
}
