//! Keyed access on Postgres: transaction-scoped advisory locks, exclusive
//! or shared.

use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{
    AnsiTransactionManager, RunQueryDsl, SimpleAsyncConnection, TransactionManager,
};
use domain::{ExclusiveAccess, RepositoryError};

use crate::classify::{Fault, Transient, classify};
use crate::metrics::Hold;
use crate::store::{Conn, PgStore};

/// Holds a key: a pooled connection inside a transaction that took
/// `pg_advisory_xact_lock` (or `pg_advisory_xact_lock_shared`) on the key's
/// hash. [`ExclusiveAccess::unlock`]
/// commits, which frees the key; a guard dropped without it leaves its
/// connection inside the transaction, so the pool closes the connection
/// and the server frees the key.
pub struct PgKeyGuard {
    conn: Conn,
    key: String,
    /// When the hold ends, whatever the holder does (`max_lock_hold` from
    /// when it was taken).
    until: tokio::time::Instant,
    /// Counts the hold in the metrics while it lasts.
    _hold: Hold,
}

impl std::fmt::Debug for PgKeyGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKeyGuard").finish_non_exhaustive()
    }
}

impl ExclusiveAccess for PgStore {
    type Guard = PgKeyGuard;

    /// One session per held key, from the lock pool (never the operations'
    /// pool); two round trips to take it.
    async fn lock(&self, key: &str, wait: Duration) -> Result<PgKeyGuard, RepositoryError> {
        self.take(key, Mode::Exclusive, wait).await
    }

    /// As [`Self::lock`], in shared mode: the server's lock queue puts a
    /// shared locker behind a waiting exclusive one, as the trait asks.
    async fn lock_shared(&self, key: &str, wait: Duration) -> Result<PgKeyGuard, RepositoryError> {
        self.take(key, Mode::Shared, wait).await
    }

    /// One round trip on the lock's own session, which also tells the
    /// server how much of the hold is left: the server ends a session that
    /// sits idle past it, which frees the key at the hold's bound even
    /// when the holder keeps asking (each question resets the idle timer,
    /// to what is left, never to a whole `max_lock_hold`).
    async fn still_held(&self, guard: &mut PgKeyGuard) -> Result<(), RepositoryError> {
        let lost = || {
            crate::metrics::hold_lost();
            RepositoryError::LockLost {
                key: guard.key.clone(),
            }
        };
        let Some(left) = guard.left() else {
            return Err(lost());
        };
        let set = format!(
            "SET LOCAL idle_in_transaction_session_timeout = {}",
            left.as_millis().max(1)
        );
        guard.conn.batch_execute(&set).await.map_err(|_| lost())
    }

    async fn unlock(&self, guard: PgKeyGuard) -> Result<(), RepositoryError> {
        let expired = guard.left().is_none();
        let PgKeyGuard {
            mut conn,
            key,
            until: _,
            _hold,
        } = guard;
        // An error means the session is gone (it outlived max_lock_hold):
        // its lock went with it, and the pool discards the connection. A
        // hold past its bound was lost even if the session lingers: the
        // commit frees the key all the same.
        let committed = AnsiTransactionManager::commit_transaction(&mut *conn).await;
        if committed.is_err() || expired {
            crate::metrics::hold_lost();
            return Err(RepositoryError::LockLost { key });
        }
        Ok(())
    }
}

impl PgKeyGuard {
    /// What is left of the hold; `None` once it passed its bound.
    fn left(&self) -> Option<Duration> {
        let left = self
            .until
            .checked_duration_since(tokio::time::Instant::now())?;
        (!left.is_zero()).then_some(left)
    }
}

impl PgStore {
    /// Takes `key` in `mode`.
    async fn take(
        &self,
        key: &str,
        mode: Mode,
        wait: Duration,
    ) -> Result<PgKeyGuard, RepositoryError> {
        let (function, mode) = match mode {
            Mode::Exclusive => ("pg_advisory_xact_lock", "exclusive"),
            Mode::Shared => ("pg_advisory_xact_lock_shared", "shared"),
        };
        let wait_ms = wait.as_millis().max(1);
        let hold_ms = self.config().max_lock_hold.as_millis().max(1);
        let take = async {
            let mut conn = self.lock_connection().await?;
            AnsiTransactionManager::begin_transaction(&mut *conn)
                .await
                .map_err(|e| failure(&e))?;
            conn.batch_execute(&format!(
                "SET LOCAL lock_timeout = {wait_ms}; \
                 SET LOCAL statement_timeout = {}; \
                 SET LOCAL idle_in_transaction_session_timeout = {hold_ms};",
                wait_ms + 1000
            ))
            .await
            .map_err(|e| failure(&e))?;
            diesel::sql_query(format!("SELECT {function}(hashtextextended($1, 0))"))
                .bind::<Text, _>(key)
                .execute(&mut *conn)
                .await
                .map_err(|e| failure(&e))?;
            Ok(PgKeyGuard {
                conn,
                key: key.chars().take(64).collect(),
                until: tokio::time::Instant::now() + self.config().max_lock_hold,
                _hold: Hold::start(mode),
            })
        };
        // The pool wait and the lock wait each have their own bound; this
        // one only guards against a server that stops answering.
        let bound = wait + self.config().connection_timeout + Duration::from_secs(1);
        tokio::time::timeout(bound, take)
            .await
            .unwrap_or(Err(RepositoryError::Timeout))
    }
}

/// How a key is held.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Exclusive,
    Shared,
}

fn failure(error: &diesel::result::Error) -> RepositoryError {
    match classify(error) {
        // 55P03: someone held the key for the whole wait.
        Fault::Transient(Transient::Contention) | Fault::Timeout => RepositoryError::Timeout,
        Fault::Transient(Transient::Connection) => {
            RepositoryError::Unavailable(error.to_string().into())
        }
        _ => RepositoryError::Storage(error.to_string().into()),
    }
}
