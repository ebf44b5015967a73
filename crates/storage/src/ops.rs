//! One attempt of each write, on a connection the caller provides: a pooled
//! one for a repository operation, or a unit of work's, where the
//! transactions below become savepoints.

use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};
use domain::{Aggregate, Created, RepositoryError, Timestamp, TxToken, Updated};
use uuid::Uuid;

use crate::classify::is_connection_fault;
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
pub(crate) async fn create<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    token: TxToken,
    aggregate: &Agg<M>,
    now: Timestamp,
) -> Result<Created<Agg<M>>, Fail<E>> {
    let fingerprint = aggregate.fingerprint();
    let id: Uuid = aggregate.id().into();
    let top_level = begin(conn).await?;
    let claimed = async {
        if tokens::claim(conn, Agg::<M>::KIND, token, id, &fingerprint, now).await? {
            M::insert(conn, aggregate).await?;
            Ok(None)
        } else {
            Ok(Some(tokens::find(conn, Agg::<M>::KIND, token).await?))
        }
    }
    .await;
    let claimed_before = finish(conn, claimed, top_level, Fail::CreateCommitLost).await?;
    let Some((stored_id, stored_fingerprint)) = claimed_before else {
        return Ok(Created::New(aggregate.clone()));
    };
    if stored_fingerprint != fingerprint {
        return Err(Fail::Done(RepositoryError::TokenMismatch {
            kind: Agg::<M>::KIND,
            token,
        }));
    }
    load::<M, E>(conn, stored_id.into())
        .await
        .map(Created::Replayed)
}

/// Loads, runs `f` with no transaction open (unless in a unit), and writes
/// the result under the optimistic lock.
pub(crate) async fn update<M: Mapping, R, E>(
    conn: &mut AsyncPgConnection,
    id: IdOf<M>,
    f: impl FnOnce(&mut Agg<M>) -> Result<R, E>,
) -> Result<Updated<Agg<M>, R>, Fail<E>> {
    let old = load::<M, E>(conn, id).await?;
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
    write_all::<M, E>(conn, &pair).await?;
    let [(_, aggregate)] = pair;
    Ok(Updated { aggregate, output })
}

/// Writes each `(old, new)` pair in one transaction, checking before COMMIT
/// that every root row was still at its old version.
pub(crate) async fn write_all<M: Mapping, E>(
    conn: &mut AsyncPgConnection,
    pairs: &[(Agg<M>, Agg<M>)],
) -> Result<(), Fail<E>> {
    let top_level = begin(conn).await?;
    // One aggregate takes the mapping's typed update, whose prepared
    // statement diesel caches; `update_many` overrides may be `sql_query`
    // batches, which are prepared afresh each time.
    let matched = match pairs {
        [(old, new)] => M::update(conn, old, new).await,
        _ => M::update_many(conn, pairs).await,
    };
    let written = match matched {
        Ok(matched) if matched == pairs.len() => Ok(()),
        Ok(_) => Err(Fail::VersionMiss),
        Err(error) => Err(Fail::Db(error)),
    };
    let lost_commit = |_| Fail::Done(RepositoryError::OutcomeUnknown);
    match finish(conn, written, top_level, lost_commit).await {
        Err(Fail::Db(error)) if !is_connection_fault(&error) => {
            // A write can fail because a concurrent writer changed the rows
            // it touches (say, took the line position it appends). If a
            // version moved, that is a conflict to retry.
            let ids: Vec<_> = pairs.iter().map(|(old, _)| old.id()).collect();
            let now = M::load_many(conn, &ids).await?;
            let moved = pairs.iter().any(|(old, _)| {
                !now.iter()
                    .any(|a| a.id() == old.id() && a.version() == old.version())
            });
            Err(if moved {
                Fail::VersionMiss
            } else {
                Fail::Db(error)
            })
        }
        other => other,
    }
}

/// Opens a transaction, or a savepoint inside an open one. Returns whether
/// it is the outermost transaction, whose COMMIT decides the outcome.
async fn begin<E>(conn: &mut AsyncPgConnection) -> Result<bool, Fail<E>> {
    let top_level = matches!(
        AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(None)
    );
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
                    Err(lost_commit(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::ClosedConnection,
                        Box::new("connection closed (failpoint: commit reply lost)".to_owned()),
                    )))
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
