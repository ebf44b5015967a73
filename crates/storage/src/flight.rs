//! A write's transaction in as few round trips as ordering allows: BEGIN
//! goes out in the same flight as the write's statements, and COMMIT (or
//! ROLLBACK, with a read after it) once their replies have been read.
//!
//! Why COMMIT is not in the first flight too: a statement diesel has not
//! prepared on this connection yet (its first use, or a shape not cached)
//! is sent only after a `Parse` round trip, so a COMMIT sent at once could
//! overtake it, and the statement would then run outside the transaction.
//! BEGIN cannot be overtaken: it is sent as the flight is first polled,
//! before any statement of it.
//!
//! diesel's transaction manager does not see these transactions. From
//! [`open`] until [`closed`], the connection is marked broken instead: a
//! flight dropped half-way (a cancelled request, a deadline) sends its
//! connection out of the pool, and the server rolls the transaction back
//! when the session closes.

use std::future::Future;

use diesel::QueryResult;
use diesel::connection::TransactionManagerStatus;
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, SimpleAsyncConnection, TransactionManager,
};

/// Marks `conn` (with no transaction open) broken until [`closed`].
pub(crate) fn open(conn: &mut AsyncPgConnection) {
    AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
}

/// The flight's transaction ended (committed or rolled back): the
/// connection is sound again.
pub(crate) fn closed(conn: &mut AsyncPgConnection) {
    *AnsiTransactionManager::transaction_manager_status_mut(conn) =
        TransactionManagerStatus::default();
}

/// Sends BEGIN and `statements` (built on `conn`) in one flight; returns
/// BEGIN's outcome and theirs.
pub(crate) async fn begin_with<T>(
    conn: &AsyncPgConnection,
    statements: impl Future<Output = T>,
) -> (QueryResult<()>, T) {
    let mut on = conn;
    tokio::join!(on.batch_execute("BEGIN"), statements)
}

/// Sends `end` (COMMIT or ROLLBACK) and `then` (a read built on `conn`,
/// which runs after the transaction) in one flight.
pub(crate) async fn end_with<T>(
    conn: &AsyncPgConnection,
    end: End,
    then: impl Future<Output = T>,
) -> (QueryResult<()>, T) {
    let mut on = conn;
    let sql = match end {
        End::Commit => "COMMIT",
        End::RollBack => "ROLLBACK",
    };
    tokio::join!(on.batch_execute(sql), then)
}

/// How a flight's transaction ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum End {
    Commit,
    RollBack,
}
