//! One attempt of each write, on a connection the caller provides: a pooled
//! one for a repository operation, sent in as few flights as it can
//! (`flight`), or a unit of work's, where each write takes a savepoint.

use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};
use domain::{
    Aggregate, Created, Fingerprint, RepositoryError, StoredEvent, Timestamp, TxToken, Updated,
};
use uuid::Uuid;

use crate::classify::is_connection_fault;
use crate::flight::{self, End, Guard, outside_transaction};
use crate::mapping::Mapping;
use crate::outbox;
use crate::retry::Fail;
use crate::session::Sessions;
use crate::tokens;
use crate::writes::Writes;

type Agg<M> = <M as Mapping>::Aggregate;
type IdOf<M> = <Agg<M> as Aggregate>::Id;

/// Loads the aggregate or answers `NotFound`.
pub(crate) async fn load<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    sessions: &Sessions,
    id: IdOf<M>,
) -> Result<Agg<M>, Fail<E>> {
    let found = if sessions.runs_alone(conn) {
        M::load(conn, id).await? // the common case, without boxing a future
    } else {
        sessions
            .alone(conn, move |c| Box::pin(M::load(c, id)))
            .await?
    };
    found.ok_or_else(|| Fail::Done(RepositoryError::not_found(Agg::<M>::KIND, id)))
}

/// The aggregate holding `key` (`Mapping::load_by`), or `NotFound`.
pub(crate) async fn load_by<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    sessions: &Sessions,
    key: &domain::UniqueKey,
) -> Result<Agg<M>, Fail<E>> {
    let owned = key.clone();
    let found = sessions
        .alone(conn, move |c| {
            Box::pin(async move { M::load_by(c, &owned).await })
        })
        .await?;
    found.ok_or_else(|| Fail::Done(RepositoryError::not_found_by(Agg::<M>::KIND, key)))
}

/// What a create claims its token with.
struct Claim {
    kind: &'static str,
    token: TxToken,
    id: Uuid,
    fingerprint: Fingerprint,
    now: Timestamp,
}

impl Claim {
    fn new<M: Mapping>(token: TxToken, aggregate: &Agg<M>, now: Timestamp) -> Self {
        Self {
            kind: Agg::<M>::KIND,
            token,
            id: aggregate.id().into(),
            fingerprint: aggregate.fingerprint(),
            now,
        }
    }

    /// The answer to a create whose token was claimed before: the stored
    /// aggregate if the request is the same, else `TokenMismatch`.
    fn replay<M: Mapping, E>(
        &self,
        stored: Option<Agg<M>>,
        (stored_id, fingerprint): (Uuid, Fingerprint),
    ) -> Result<Created<Agg<M>>, Fail<E>> {
        if fingerprint != self.fingerprint {
            return Err(Fail::Done(RepositoryError::TokenMismatch {
                kind: self.kind,
                token: self.token,
            }));
        }
        stored.map(Created::Replayed).ok_or_else(|| {
            // The aggregate the token made was deleted since.
            Fail::Done(RepositoryError::not_found(self.kind, stored_id))
        })
    }
}

/// How the first flight of a create went.
enum Attempt<E> {
    /// Every statement succeeded.
    Written,
    /// The token was claimed before, for the aggregate and request it
    /// recorded (`None`: the claim went away since, purged).
    ClaimedBefore(Option<(Uuid, Fingerprint)>),
    Failed(Fail<E>),
}

/// Claims the token and inserts, atomically; or, if the token was claimed
/// before, answers from it. A lost reply is retried: the token makes the
/// retry find what the first attempt stored.
///
/// Outside a unit, one round trip: the claim, the inserts and the events
/// as one statement (`Writes` groups them; it commits by itself). Writes
/// that cannot all be one statement go between BEGIN and COMMIT in the
/// same flight instead. A token claimed before fails the claim, which
/// fails the statement (or the transaction) before any insert runs, with
/// an error that names what the token made; the replay then loads it, in
/// a second round trip.
pub(crate) async fn create<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    sessions: &Sessions,
    token: TxToken,
    aggregate: &Agg<M>,
    events: &[StoredEvent],
    now: Timestamp,
) -> Result<Created<Agg<M>>, Fail<E>> {
    let claim = Claim::new::<M>(token, aggregate, now);
    if !outside_transaction(conn) {
        return create_in_savepoint::<M, E>(conn, &claim, aggregate, events).await;
    }
    let mut writes = Writes::new();
    // First, so that a token claimed before fails the write before an
    // insert can fail on the id it made.
    let claim_token = tokens::claim_statement(claim.kind, token, claim.id, &claim.fingerprint, now);
    writes.claim(claim.kind, token.as_uuid(), claim_token);
    M::insert(&mut writes, aggregate);
    outbox::write(&mut writes, events);
    // Writes that go as one statement commit by themselves.
    let solo = writes.sends() == 1 && !sessions.needs_transaction();
    let guard = Guard::arm(conn, sessions);
    let shared = &*conn;
    let first_flight = async {
        if solo {
            let mut written = writes.send(shared).await;
            // The statement's reply is its commit's.
            let committed = Some(written.take_connection_fault().map_or(Ok(0), Err));
            (Ok(()), (written, committed))
        } else {
            // Created after the writes, so that it is polled, and sent, after them.
            let commit = writes.in_order().then(|| flight::commit_after(shared));
            flight::begin_with(shared, sessions.begin(), async {
                tokio::join!(writes.send(shared), async {
                    match commit {
                        Some(commit) => Some(commit.await),
                        None => None,
                    }
                })
            })
            .await
        }
    };
    let ((begun, (written, committed)), late) = guard.settle(first_flight).await;
    let attempt = match begun.and_then(|()| written.matched(1)) {
        Ok(_) => Attempt::Written,
        Err(error) => match tokens::claimed_before(&error) {
            Some(claimed) => Attempt::ClaimedBefore(claimed.made),
            None => Attempt::Failed(Fail::Db(error)),
        },
    };
    let stored: Option<IdOf<M>> = match &attempt {
        Attempt::ClaimedBefore(Some((stored_id, _))) => Some((*stored_id).into()),
        _ => None,
    };
    // The write committed by itself, or its COMMIT went with the flight,
    // and a replay loads in a second one; or COMMIT (ROLLBACK and the
    // replay's load) make the second flight. A connection that is no
    // session of its own (`session`) loads after.
    let landed = committed.is_some() || !late;
    let load_with_end = committed.is_none() && !sessions.needs_transaction();
    let load_stored = async {
        match stored {
            Some(stored_id) if load_with_end => M::load(shared, stored_id).await,
            _ => Ok(None),
        }
    };
    let (ended, loaded) = if let Some(committed) = committed {
        (committed.map(drop), load_stored.await)
    } else {
        let end = match attempt {
            Attempt::Written if !late => End::Commit,
            _ => End::RollBack,
        };
        flight::end_with(shared, end, load_stored).await
    };
    let sound = ended.is_ok();
    guard.landed(conn, sound);
    let loaded = match stored {
        Some(stored_id) if !load_with_end && sound => {
            sessions
                .alone(conn, move |c| Box::pin(M::load(c, stored_id)))
                .await
        }
        _ => loaded,
    };
    match (attempt, ended) {
        (Attempt::Written, Ok(())) if !landed => Err(Fail::Done(RepositoryError::Timeout)),
        (Attempt::Written, Ok(())) => {
            #[cfg(feature = "failpoints")]
            fail::fail_point!("storage::commit-reply-lost", |_| {
                Err(Fail::ReplyLost(lost_connection(
                    "failpoint: COMMIT reply lost",
                )))
            });
            Ok(Created::New(aggregate.clone()))
        }
        (Attempt::Written, Err(error)) if is_connection_fault(&error) => Err(lost(error, late)),
        (_, Err(error)) => Err(Fail::Db(error)),
        (Attempt::ClaimedBefore(Some(made)), Ok(())) => claim.replay::<M, E>(loaded?, made),
        _ if late => Err(Fail::Done(RepositoryError::Timeout)),
        // The claim went away (purged) between the insert and the lookup:
        // try again.
        (Attempt::ClaimedBefore(None), Ok(())) => Err(Fail::VersionMiss),
        (Attempt::Failed(failure), Ok(())) => Err(failure),
    }
}

/// A create inside a unit of work: a savepoint around the claim and the
/// inserts.
async fn create_in_savepoint<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    claim: &Claim,
    aggregate: &Agg<M>,
    events: &[StoredEvent],
) -> Result<Created<Agg<M>>, Fail<E>> {
    AnsiTransactionManager::begin_transaction(conn).await?;
    let claimed = async {
        let (kind, token) = (claim.kind, claim.token);
        if !tokens::claim(conn, kind, token, claim.id, &claim.fingerprint, claim.now).await? {
            return Ok(tokens::find(conn, kind, token).await?);
        }
        let mut writes = Writes::new();
        M::insert(&mut writes, aggregate);
        outbox::write(&mut writes, events);
        writes.send(conn).await.matched(1).map_err(Fail::Db)?;
        Ok(None)
    }
    .await;
    match release(conn, claimed).await? {
        None => Ok(Created::New(aggregate.clone())),
        Some((stored_id, fingerprint)) => {
            let stored = M::load(conn, stored_id.into()).await?;
            claim.replay::<M, E>(stored, (stored_id, fingerprint))
        }
    }
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
    sessions: &Sessions,
    id: IdOf<M>,
    f: impl FnOnce(&mut Agg<M>) -> Result<R, E>,
    unsettled: &mut Option<domain::Version>,
    now: Timestamp,
) -> Result<Updated<Agg<M>, R>, Fail<E>> {
    let old = load::<M, E>(conn, sessions, id).await?;
    update_loaded::<M, R, E>(conn, sessions, old, f, unsettled, now).await
}

/// [`update`] of `old`, as just loaded (by id, or by a unique key).
pub(crate) async fn update_loaded<M: Mapping, R, E>(
    conn: &mut AsyncPgConnection,
    sessions: &Sessions,
    old: Agg<M>,
    f: impl FnOnce(&mut Agg<M>) -> Result<R, E>,
    unsettled: &mut Option<domain::Version>,
    now: Timestamp,
) -> Result<Updated<Agg<M>, R>, Fail<E>> {
    if unsettled.is_some_and(|version| version != old.version()) {
        return Err(Fail::Done(RepositoryError::OutcomeUnknown));
    }
    let (new, output, events) = modify(&old, f, now)?;
    let pair = [(old, new)];
    if let Err(failure) = write_all::<M, E>(conn, sessions, &pair, &events).await {
        if let Fail::ReplyLost(_) = &failure {
            *unsettled = Some(pair[0].0.version());
        }
        return Err(failure);
    }
    let [(_, aggregate)] = pair;
    Ok(Updated { aggregate, output })
}

/// Runs `f` on a copy of `old`: the new state (at the next version), what
/// `f` returned, and the events it recorded, stamped.
pub(crate) fn modify<A: Aggregate, R, E>(
    old: &A,
    f: impl FnOnce(&mut A) -> Result<R, E>,
    now: Timestamp,
) -> Result<(A, R, Vec<StoredEvent>), Fail<E>> {
    let id = old.id();
    let mut new = old.clone();
    let output = f(&mut new).map_err(|e| Fail::Done(RepositoryError::Domain(e)))?;
    if new.id() != id {
        return Err(Fail::Done(RepositoryError::Storage(
            format!("an update closure changed the id of {} {id}", A::KIND).into(),
        )));
    }
    new.set_version(old.version().next());
    let events = StoredEvent::stamp::<A>(id, new.version(), new.take_events(), now);
    Ok((new, output, events))
}

/// Writes each `(old, new)` pair atomically, checking that every root row
/// was still at its old version: one statement alone (it commits by
/// itself), several in a transaction whose BEGIN goes in their flight, or,
/// in a unit, inside a savepoint.
pub(crate) async fn write_all<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    sessions: &Sessions,
    pairs: &[(Agg<M>, Agg<M>)],
    events: &[StoredEvent],
) -> Result<(), Fail<E>> {
    let outside = outside_transaction(conn);
    // One aggregate's writes can go as one statement, or with their
    // COMMIT: each root matches one row or none.
    let mut writes = if outside && pairs.len() == 1 {
        Writes::guarded()
    } else {
        Writes::new()
    };
    match pairs {
        [(old, new)] => M::update(&mut writes, old, new),
        _ => M::update_many(&mut writes, pairs),
    }
    outbox::write(&mut writes, events);
    let written = if outside {
        send_top_level(conn, sessions, pairs.len(), writes).await
    } else {
        AnsiTransactionManager::begin_transaction(conn).await?;
        let written = writes.send(conn).await.matched(pairs.len());
        release(conn, written.map_err(Fail::Db)).await
    };
    match written {
        Ok(true) => Ok(()),
        Ok(false) => Err(Fail::VersionMiss),
        Err(Fail::Db(error)) if !is_connection_fault(&error) => {
            Err(settle_failed_write::<M, E>(conn, sessions, pairs, error).await)
        }
        Err(failure) => Err(failure),
    }
}

/// Deletes the aggregate: one statement, alone outside a unit. Returns
/// whether a root row went.
pub(crate) async fn delete<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    sessions: &Sessions,
    id: IdOf<M>,
) -> Result<(), Fail<E>> {
    let mut writes = Writes::new();
    M::delete(&mut writes, id);
    let deleted = if outside_transaction(conn) {
        send_top_level(conn, sessions, 1, writes).await?
    } else {
        writes.send(conn).await.matched(1)?
    };
    if deleted {
        Ok(())
    } else {
        Err(Fail::Done(RepositoryError::not_found(Agg::<M>::KIND, id)))
    }
}

/// Sends `writes` outside a transaction. Whether the roots matched
/// `expected` rows (`Ok(false)` on a miss).
///
/// One statement goes alone (it commits by itself): a lone write, or
/// guarded writes that `Writes` groups into one statement. Several go in a
/// transaction whose BEGIN travels with them; so does its COMMIT when the
/// roots are guarded (a miss then fails the transaction on the server, see
/// [`Writes::guarded`]) and nothing can overtake it
/// ([`Writes::in_order`]). Otherwise COMMIT (or ROLLBACK, after a miss)
/// follows their replies: an unguarded root that matched no row fails
/// nothing on the server, and the child writes would commit.
///
/// A connection fault after a write may have landed is `ReplyLost`. The
/// failpoints (for tests) break the connection before a lone statement,
/// or lose the reply of a write that landed.
async fn send_top_level<E>(
    conn: &mut AsyncPgConnection,
    sessions: &Sessions,
    expected: usize,
    mut writes: Writes<'_>,
) -> Result<bool, Fail<E>> {
    // A lone write, or guarded ones, keep nothing after a miss: they may
    // commit as they land.
    let commits_as_landed = writes.len() == 1 || writes.roots_guarded();
    let alone = commits_as_landed && writes.sends() == 1 && !sessions.needs_transaction();
    let with_commit = !alone && commits_as_landed && writes.in_order();
    let guard = Guard::arm(conn, sessions);
    let shared = &*conn;
    if alone || with_commit {
        let (outcome, sound) = if alone {
            send_alone(&guard, shared, writes, expected).await
        } else {
            send_with_commit(&guard, shared, sessions, writes, expected).await
        };
        guard.landed(conn, sound);
        return outcome;
    }
    let (first_flight, late) = guard
        .settle(flight::begin_with(
            shared,
            sessions.begin(),
            writes.send(shared),
        ))
        .await;
    let (begun, written) = first_flight;
    let written = begun.and_then(|()| written.matched(expected));
    let end = if matches!(written, Ok(true)) && !late {
        End::Commit
    } else {
        End::RollBack
    };
    let ((ended, ()), late) = match end {
        End::Commit => guard.settle(flight::end_with(shared, end, async {})).await,
        End::RollBack => (flight::end_with(shared, end, async {}).await, late),
    };
    guard.landed(conn, ended.is_ok());
    match (end, ended, written) {
        // COMMIT is sent only after every write succeeded.
        (End::Commit, Ok(()), _) => reply_lost_failpoint("failpoint: COMMIT reply lost"),
        (End::Commit, Err(error), _) if is_connection_fault(&error) => Err(lost(error, late)),
        (End::RollBack, Ok(()), _) if late => Err(Fail::Done(RepositoryError::Timeout)),
        (End::RollBack, Ok(()), written) => written.map_err(Fail::Db),
        // A failed COMMIT, or a failed write whose ROLLBACK did not come
        // back either (the write's error says more).
        (_, Err(error), Ok(_)) | (_, Err(_), Err(error)) => Err(Fail::Db(error)),
    }
}

/// One statement, which commits by itself; and whether the connection is
/// sound after it.
async fn send_alone<E>(
    guard: &Guard,
    conn: &AsyncPgConnection,
    writes: Writes<'_>,
    expected: usize,
) -> (Result<bool, Fail<E>>, bool) {
    #[cfg(feature = "failpoints")]
    if fail::eval("storage::write-lost-before", |_| ()).is_some() {
        let lost = lost_connection("failpoint: connection lost before the write");
        return (Err(Fail::ReplyLost(lost)), false);
    }
    let (written, late) = guard.settle(writes.send(conn)).await;
    let written = written.matched(expected);
    let sound = !matches!(&written, Err(error) if is_connection_fault(error));
    let outcome = match written {
        Err(error) if is_connection_fault(&error) => Err(lost(error, late)),
        Ok(true) => reply_lost_failpoint("failpoint: the write's reply lost"),
        _ if late => Err(Fail::Done(RepositoryError::Timeout)),
        written => written.map_err(Fail::Db),
    };
    (outcome, sound)
}

/// BEGIN, the writes (their roots guarded) and COMMIT in one flight. The
/// server answers COMMIT by rolling back when a write failed, a root's
/// miss included; every reply then tells what happened.
async fn send_with_commit<E>(
    guard: &Guard,
    shared: &AsyncPgConnection,
    sessions: &Sessions,
    writes: Writes<'_>,
    expected: usize,
) -> (Result<bool, Fail<E>>, bool) {
    // Created after the writes, so that it is polled, and sent, after them.
    let commit = flight::commit_after(shared);
    let flight = flight::begin_with(shared, sessions.begin(), async {
        tokio::join!(writes.send(shared), commit)
    });
    let ((begun, (written, committed)), late) = guard.settle(flight).await;
    let written = begun.and_then(|()| written.matched(expected));
    // A COMMIT that came back, failed or not, ended the transaction.
    let sound = !matches!(&committed, Err(error) if is_connection_fault(error));
    let outcome = match (committed, written) {
        (Err(error), _) | (_, Err(error)) if is_connection_fault(&error) => Err(lost(error, late)),
        (Ok(_), Ok(true)) => reply_lost_failpoint("failpoint: COMMIT reply lost"),
        _ if late => Err(Fail::Done(RepositoryError::Timeout)),
        (Ok(_), written) => written.map_err(Fail::Db),
        // COMMIT failed: the write's error says more, if there is one.
        (Err(_), Err(error)) | (Err(error), Ok(_)) => Err(Fail::Db(error)),
    };
    (outcome, sound)
}

/// `Ok(true)`: a write that landed; or, under the failpoint
/// `storage::commit-reply-lost` (for tests), its reply lost.
#[cfg_attr(
    not(feature = "failpoints"),
    expect(clippy::unnecessary_wraps, unused_variables)
)]
fn reply_lost_failpoint<E>(why: &str) -> Result<bool, Fail<E>> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::commit-reply-lost", |_| {
        Err(Fail::ReplyLost(lost_connection(why)))
    });
    Ok(true)
}

/// A connection fault after a write may have landed: the retry settles it
/// (`ReplyLost`), unless the deadline has passed, and nothing will.
fn lost<E>(error: diesel::result::Error, late: bool) -> Fail<E> {
    if late {
        Fail::Done(RepositoryError::OutcomeUnknown)
    } else {
        Fail::ReplyLost(error)
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
    sessions: &Sessions,
    pairs: &[(Agg<M>, Agg<M>)],
    error: diesel::result::Error,
) -> Fail<E> {
    let ids: Vec<_> = pairs.iter().map(|(old, _)| old.id()).collect();
    let now = match sessions
        .alone(conn, move |c| {
            Box::pin(async move { M::load_many(c, &ids).await })
        })
        .await
    {
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

/// Releases the savepoint a write inside a unit took after success, rolls
/// back to it after failure. A rollback that fails leaves the connection
/// marked broken, so the pool closes it (and the unit re-runs).
async fn release<T, E>(
    conn: &mut AsyncPgConnection,
    outcome: Result<T, Fail<E>>,
) -> Result<T, Fail<E>> {
    match outcome {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(failure) => {
            if let Err(error) = AnsiTransactionManager::rollback_transaction(conn).await {
                tracing::debug!(%error, "rollback failed; the connection will be discarded");
            }
            Err(failure)
        }
    }
}
