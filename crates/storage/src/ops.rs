//! One attempt of each write, on a connection the caller provides: a pooled
//! one for a repository operation, or a unit of work's, where the
//! transactions below become savepoints.

use diesel::connection::TransactionManagerStatus;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};
use domain::{Aggregate, Created, RepositoryError, Timestamp, TxToken, Updated};
use uuid::Uuid;

use crate::classify::is_connection_fault;
use crate::flight::{self, End};
use crate::mapping::Mapping;
use crate::retry::Fail;
use crate::tokens;

type Agg<M> = <M as Mapping>::Aggregate;
type IdOf<M> = <Agg<M> as Aggregate>::Id;

/// Loads the aggregate or answers `NotFound`.
pub(crate) async fn load<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    id: IdOf<M>,
) -> Result<Agg<M>, Fail<E>> {
    M::load(conn, id)
        .await?
        .ok_or_else(|| Fail::Done(RepositoryError::not_found(Agg::<M>::KIND, id)))
}

/// Claims the token and inserts, in one transaction; or, if the token was
/// claimed before, answers from it. A lost COMMIT reply is retried: the
/// token makes the retry find what the first attempt stored.
///
/// Outside a unit, two round trips: BEGIN, a lookup of the token (for a
/// replay), the claim and the inserts in one flight, then COMMIT. A claim
/// made before fails the claim, which aborts the transaction (the inserts
/// after it cost nothing); the replay then rolls back and loads what the
/// token names in the second flight.
pub(crate) async fn create<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    token: TxToken,
    aggregate: &Agg<M>,
    now: Timestamp,
) -> Result<Created<Agg<M>>, Fail<E>> {
    if !outside_transaction(conn) {
        return create_in_savepoint::<M, E>(conn, token, aggregate, now).await;
    }
    let request = Claim::new::<M>(aggregate);
    flight::open(conn);
    let shared = &*conn;
    let (kind, id, fingerprint) = (request.kind, request.id, &request.fingerprint);
    let (begun, (found, claimed, inserted)) = flight::begin_with(shared, async {
        tokio::join!(
            tokens::find(shared, kind, token),
            tokens::claim_or_fail(shared, kind, token, id, fingerprint, now),
            M::insert(shared, aggregate),
        )
    })
    .await;
    let found = match (begun, claimed) {
        (Ok(()), Ok(())) => match inserted {
            Ok(()) => return commit_create::<M, E>(conn, aggregate).await,
            Err(error) => Err(Fail::Db(error)),
        },
        (Ok(()), Err(error)) if tokens::claimed_before(&error) => found.map_err(Fail::Db),
        (Err(error), _) | (_, Err(error)) => Err(Fail::Db(error)),
    };
    let stored = match &found {
        Ok(Some((stored_id, fingerprint))) if *fingerprint == request.fingerprint => {
            Some((*stored_id).into())
        }
        _ => None,
    };
    // Roll back, and in the same flight load what the token names.
    let (rolled_back, loaded) = flight::end_with(shared, End::RollBack, async {
        match stored {
            Some(stored_id) => M::load(shared, stored_id).await,
            None => Ok(None),
        }
    })
    .await;
    rolled_back?;
    flight::closed(conn);
    match found? {
        Some((_, fingerprint)) if fingerprint != request.fingerprint => {
            Err(Fail::Done(RepositoryError::TokenMismatch {
                kind: request.kind,
                token,
            }))
        }
        Some(_) => match loaded? {
            Some(stored) => Ok(Created::Replayed(stored)),
            None => Err(Fail::Done(RepositoryError::not_found(
                request.kind,
                aggregate.id(),
            ))),
        },
        // Claimed by a transaction that committed after our lookup ran:
        // look again.
        None => Err(Fail::VersionMiss),
    }
}

/// Commits a first create. A lost reply is for the retry to settle.
async fn commit_create<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    aggregate: &Agg<M>,
) -> Result<Created<Agg<M>>, Fail<E>> {
    let (committed, ()) = flight::end_with(&*conn, End::Commit, async {}).await;
    match committed {
        Ok(()) => flight::closed(conn),
        Err(error) if is_connection_fault(&error) => return Err(Fail::ReplyLost(error)),
        Err(error) => return Err(Fail::Db(error)),
    }
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::commit-reply-lost", |_| {
        Err(Fail::ReplyLost(lost_connection(
            "failpoint: COMMIT reply lost",
        )))
    });
    Ok(Created::New(aggregate.clone()))
}

/// What a create claims its token with.
struct Claim {
    kind: &'static str,
    id: Uuid,
    fingerprint: domain::Fingerprint,
}

impl Claim {
    fn new<M: Mapping>(aggregate: &Agg<M>) -> Self {
        Self {
            kind: Agg::<M>::KIND,
            id: aggregate.id().into(),
            fingerprint: aggregate.fingerprint(),
        }
    }
}

/// A create inside a unit of work: a savepoint around the claim and the
/// inserts, one statement after the other.
async fn create_in_savepoint<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    token: TxToken,
    aggregate: &Agg<M>,
    now: Timestamp,
) -> Result<Created<Agg<M>>, Fail<E>> {
    let request = Claim::new::<M>(aggregate);
    let top_level = begin(conn).await?;
    let claimed = async {
        let (kind, id) = (request.kind, request.id);
        if tokens::claim(conn, kind, token, id, &request.fingerprint, now).await? {
            M::insert(conn, aggregate).await?;
            Ok(None)
        } else {
            Ok(tokens::find(conn, kind, token).await?)
        }
    }
    .await;
    let claimed_before = finish(conn, claimed, top_level, Fail::ReplyLost).await?;
    let Some((stored_id, stored_fingerprint)) = claimed_before else {
        return Ok(Created::New(aggregate.clone()));
    };
    if stored_fingerprint != request.fingerprint {
        return Err(Fail::Done(RepositoryError::TokenMismatch {
            kind: request.kind,
            token,
        }));
    }
    load::<M, E>(conn, stored_id.into())
        .await
        .map(Created::Replayed)
}

/// Loads, runs `f` with no transaction open (unless in a unit), and writes
/// the result under the optimistic lock.
///
/// `unsettled` is the version an earlier attempt wrote over when its reply
/// was lost (and this attempt records its own there). Still stored, that
/// version proves the write did not land, and `f` runs again; moved on, the
/// write may have landed (or another writer's did): `OutcomeUnknown`. A
/// write still running on the server when the version is read holds its
/// row lock, so this attempt's write then misses, and the next one sees the
/// version moved.
pub(crate) async fn update<M: Mapping, R, E>(
    conn: &mut AsyncPgConnection,
    id: IdOf<M>,
    f: impl FnOnce(&mut Agg<M>) -> Result<R, E>,
    unsettled: &mut Option<domain::Version>,
) -> Result<Updated<Agg<M>, R>, Fail<E>> {
    let old = load::<M, E>(conn, id).await?;
    if unsettled.is_some_and(|version| version != old.version()) {
        return Err(Fail::Done(RepositoryError::OutcomeUnknown));
    }
    let mut new = old.clone();
    let output = f(&mut new).map_err(|e| Fail::Done(RepositoryError::Domain(e)))?;
    if new.id() != id {
        return Err(Fail::Done(RepositoryError::Storage(
            format!(
                "an update closure changed the id of {} {id}",
                Agg::<M>::KIND
            )
            .into(),
        )));
    }
    new.set_version(old.version().next());
    let pair = [(old, new)];
    if let Err(failure) = write_all::<M, E>(conn, &pair).await {
        if let Fail::ReplyLost(_) = &failure {
            *unsettled = Some(pair[0].0.version());
        }
        return Err(failure);
    }
    let [(_, aggregate)] = pair;
    Ok(Updated { aggregate, output })
}

/// Writes each `(old, new)` pair in one transaction, checking before COMMIT
/// that every root row was still at its old version. One pair the mapping
/// writes in one statement, outside a unit, needs no transaction: that
/// statement is sent alone.
pub(crate) async fn write_all<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    pairs: &[(Agg<M>, Agg<M>)],
) -> Result<(), Fail<E>> {
    if let [(old, new)] = pairs
        && M::updates_in_one_statement(old, new)
        && outside_transaction(conn)
    {
        return match one_statement::<M>(conn, old, new).await {
            Ok(1) => Ok(()),
            Ok(_) => Err(Fail::VersionMiss),
            Err(error) if is_connection_fault(&error) => Err(Fail::ReplyLost(error)),
            Err(error) => Err(settle_failed_write::<M, E>(conn, pairs, error).await),
        };
    }
    if outside_transaction(conn) {
        return write_in_flight::<M, E>(conn, pairs).await;
    }
    let top_level = begin(conn).await?;
    let written = written(pairs.len(), update_all::<M>(conn, pairs).await);
    match finish(conn, written, top_level, Fail::ReplyLost).await {
        Err(Fail::Db(error)) if !is_connection_fault(&error) => {
            Err(settle_failed_write::<M, E>(conn, pairs, error).await)
        }
        other => other,
    }
}

/// The mapping's writes of every pair; returns the root rows matched. One
/// aggregate takes the mapping's `update`, several its `update_many`.
async fn update_all<M: Mapping>(
    conn: &AsyncPgConnection,
    pairs: &[(Agg<M>, Agg<M>)],
) -> diesel::QueryResult<usize> {
    match pairs {
        [(old, new)] => M::update(conn, old, new).await,
        _ => M::update_many(conn, pairs).await,
    }
}

/// Whether the writes of `pairs` roots matched every one of them.
fn written<E>(pairs: usize, matched: diesel::QueryResult<usize>) -> Result<(), Fail<E>> {
    match matched {
        Ok(matched) if matched == pairs => Ok(()),
        Ok(_) => Err(Fail::VersionMiss),
        Err(error) => Err(Fail::Db(error)),
    }
}

/// Outside a unit: BEGIN and the writes in one flight, then COMMIT (or
/// ROLLBACK after a miss or a failure).
async fn write_in_flight<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    pairs: &[(Agg<M>, Agg<M>)],
) -> Result<(), Fail<E>> {
    flight::open(conn);
    let shared = &*conn;
    let (begun, matched) = flight::begin_with(shared, update_all::<M>(shared, pairs)).await;
    let written = begun
        .map_err(Fail::Db)
        .and_then(|()| written(pairs.len(), matched));
    let end = if written.is_ok() {
        End::Commit
    } else {
        End::RollBack
    };
    let (ended, ()) = flight::end_with(shared, end, async {}).await;
    match (ended, written) {
        (Ok(()), Ok(())) => {
            flight::closed(conn);
            #[cfg(feature = "failpoints")]
            fail::fail_point!("storage::commit-reply-lost", |_| {
                Err(Fail::ReplyLost(lost_connection(
                    "failpoint: COMMIT reply lost",
                )))
            });
            Ok(())
        }
        (Err(error), Ok(())) if is_connection_fault(&error) => Err(Fail::ReplyLost(error)),
        (Err(error), Ok(())) => Err(Fail::Db(error)),
        (ended, Err(Fail::Db(error))) if !is_connection_fault(&error) => {
            if ended.is_ok() {
                flight::closed(conn);
            }
            Err(settle_failed_write::<M, E>(conn, pairs, error).await)
        }
        (ended, Err(failure)) => {
            if ended.is_ok() {
                flight::closed(conn);
            }
            Err(failure)
        }
    }
}

/// The single statement of a write outside a transaction: it commits by
/// itself. The failpoints (for tests) break the connection before it is
/// sent, or lose its reply after it landed.
async fn one_statement<M: Mapping>(
    conn: &mut AsyncPgConnection,
    old: &Agg<M>,
    new: &Agg<M>,
) -> diesel::QueryResult<usize> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::write-lost-before", |_| {
        Err(lost_connection(
            "failpoint: connection lost before the write",
        ))
    });
    let cancel = CancelOnDrop::arm(conn);
    let matched = M::update(conn, old, new).await;
    cancel.disarm();
    // Returned: the connection is sound again (a broken socket is seen apart).
    *AnsiTransactionManager::transaction_manager_status_mut(conn) =
        TransactionManagerStatus::default();
    let matched = matched?;
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::commit-reply-lost", |_| {
        Err(lost_connection("failpoint: the write's reply lost"))
    });
    Ok(matched)
}

/// A lone statement runs and commits on the server whether or not its
/// caller still waits: dropped while it waits for a row lock, it would land
/// later. This guard, alive while the statement is out, covers that: it
/// marks the connection broken, so a drop sends it out of the pool rather
/// than back in, and on a drop it asks the server to cancel the statement
/// (from a connection of its own, as the protocol wants). A statement that
/// had already finished by then has simply landed: its caller gave up only
/// after sending it.
struct CancelOnDrop(Option<tokio_postgres::CancelToken>);

impl CancelOnDrop {
    fn arm(conn: &mut AsyncPgConnection) -> Self {
        AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
        Self(Some(conn.cancel_token()))
    }

    /// The statement's reply came: nothing to cancel.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(token) = self.0.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = token.cancel_query(tokio_postgres::NoTls).await {
                    tracing::warn!(%error, "could not cancel a dropped write");
                }
            });
        }
    }
}

#[cfg(feature = "failpoints")]
fn lost_connection(why: &str) -> diesel::result::Error {
    diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::ClosedConnection,
        Box::new(why.to_owned()),
    )
}

/// A write can fail because a concurrent writer changed the rows it
/// touches (say, took the line position it appends): if a version moved,
/// that is a conflict to retry; otherwise the error stands.
async fn settle_failed_write<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    pairs: &[(Agg<M>, Agg<M>)],
    error: diesel::result::Error,
) -> Fail<E> {
    let ids: Vec<_> = pairs.iter().map(|(old, _)| old.id()).collect();
    let now = match M::load_many(conn, &ids).await {
        Ok(now) => now,
        Err(error) => return Fail::Db(error),
    };
    let moved = pairs.iter().any(|(old, _)| {
        !now.iter()
            .any(|a| a.id() == old.id() && a.version() == old.version())
    });
    if moved {
        Fail::VersionMiss
    } else {
        Fail::Db(error)
    }
}

/// Whether no transaction is open on `conn`: outside a unit of work.
fn outside_transaction(conn: &mut AsyncPgConnection) -> bool {
    matches!(
        AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(None)
    )
}

/// Opens a transaction, or a savepoint inside an open one. Returns whether
/// it is the outermost transaction, whose COMMIT decides the outcome.
async fn begin<E>(conn: &mut AsyncPgConnection) -> Result<bool, Fail<E>> {
    let top_level = outside_transaction(conn);
    AnsiTransactionManager::begin_transaction(conn).await?;
    Ok(top_level)
}

/// Commits after success, rolls back after failure. A connection fault at
/// the outermost COMMIT means the outcome is unknown: `lost_commit` says
/// what that is worth to the caller. A rollback that fails leaves the
/// connection marked broken, so the pool closes it.
async fn finish<T, E>(
    conn: &mut AsyncPgConnection,
    outcome: Result<T, Fail<E>>,
    top_level: bool,
    lost_commit: impl FnOnce(diesel::result::Error) -> Fail<E>,
) -> Result<T, Fail<E>> {
    match outcome {
        Ok(value) => match AnsiTransactionManager::commit_transaction(conn).await {
            Ok(()) if top_level => {
                // For tests: the COMMIT landed but its reply is "lost".
                #[cfg(feature = "failpoints")]
                fail::fail_point!("storage::commit-reply-lost", |_| {
                    Err(lost_commit(lost_connection("failpoint: COMMIT reply lost")))
                });
                Ok(value)
            }
            Ok(()) => Ok(value),
            Err(error) if top_level && is_connection_fault(&error) => Err(lost_commit(error)),
            Err(error) => Err(Fail::Db(error)),
        },
        Err(failure) => {
            if let Err(error) = AnsiTransactionManager::rollback_transaction(conn).await {
                tracing::debug!(%error, "rollback failed; the connection will be discarded");
            }
            Err(failure)
        }
    }
}
