//! What the store may count on a server session for, by
//! [`Pooling`]: with a transaction-pooling PgBouncer, nothing outlives a
//! transaction.
//!
//! PgBouncer (Debian's 1.18) hands the client a server session when a
//! transaction starts and takes it back when it ends; a statement outside a
//! transaction is a transaction of its own. diesel-async prepares every
//! statement under a name in one exchange and runs it in the next, so
//! outside a transaction the two could reach different sessions (`prepared
//! statement "s3" does not exist`). Under [`Pooling::Transaction`] the store
//! therefore runs every statement inside a transaction, keeps no statement
//! prepared, and sets its timeouts with `SET LOCAL` in each transaction's
//! `BEGIN` instead of once per connection.

use std::sync::Arc;

use diesel::result::Error;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use domain::BoxFuture;

use crate::config::{Pooling, StoreConfig};
use crate::flight::{self, Guard};

/// How this store opens transactions, and whether a statement may run
/// outside one.
#[derive(Debug)]
pub(crate) struct Sessions {
    /// Set once per connection (`Pooling::Session`), else empty.
    on_connect: String,
    /// `BEGIN`, with the `SET LOCAL`s under `Pooling::Transaction`.
    begin: String,
    serializable: String,
    read_only: String,
    transaction_pooled: bool,
    /// Where cancel requests go through a pooler (`host:port`), under
    /// `Pooling::Transaction`: see `flight::Guard`.
    cancel_via: Option<Arc<str>>,
    /// The TLS a cancel request travels with, as the sessions do
    /// (`tls`).
    cancel_tls: Option<crate::tls::Tls>,
}

impl Sessions {
    pub(crate) fn new(config: &StoreConfig, database_url: &str) -> Self {
        let deadline_ms = config.deadline.as_millis();
        let lock_wait_ms = config.lock_wait.as_millis().max(1);
        // A statement can never outlive its operation's deadline, a lock
        // wait (a deadlock, say) is retried long before it, and a
        // transaction left open by a vanished client is ended by the server
        // instead of holding locks forever.
        let settings = |scope: &str| {
            format!(
                "SET {scope}statement_timeout = {deadline_ms}; \
                 SET {scope}lock_timeout = {lock_wait_ms}; \
                 SET {scope}idle_in_transaction_session_timeout = {};",
                deadline_ms * 5
            )
        };
        let transaction_pooled = config.pooling == Pooling::Transaction;
        let (on_connect, local) = if transaction_pooled {
            (String::new(), format!("; {}", settings("LOCAL ")))
        } else {
            (settings(""), String::new())
        };
        let cancel_via = transaction_pooled
            .then(|| tcp_address(database_url))
            .flatten();
        let cancel_tls = crate::tls::Reach::of(database_url)
            .ok()
            .and_then(|reach| reach.tls);
        Self {
            cancel_via,
            cancel_tls,
            on_connect,
            begin: format!("BEGIN{local}"),
            serializable: format!("BEGIN ISOLATION LEVEL SERIALIZABLE{local}"),
            read_only: format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY{local}"),
            transaction_pooled,
        }
    }

    /// The settings a new connection gets (empty: none).
    pub(crate) fn on_connect(&self) -> &str {
        &self.on_connect
    }

    /// Opens a transaction with the store's settings.
    pub(crate) fn begin(&self) -> &str {
        &self.begin
    }

    /// Opens a unit of work's transaction.
    pub(crate) fn begin_serializable(&self) -> &str {
        &self.serializable
    }

    /// Opens a read unit's transaction.
    pub(crate) fn begin_read_only(&self) -> &str {
        &self.read_only
    }

    /// Where cancel requests must go by a socket the store holds open
    /// until the pooler closes it (see `flight::Guard`), if anywhere.
    pub(crate) fn cancel_tls(&self) -> Option<&crate::tls::Tls> {
        self.cancel_tls.as_ref()
    }

    pub(crate) fn cancel_via(&self) -> Option<&Arc<str>> {
        self.cancel_via.as_ref()
    }

    /// Whether a statement outside a transaction needs one of its own
    /// (and, so, whether no statement may stay prepared on a connection).
    pub(crate) fn needs_transaction(&self) -> bool {
        self.transaction_pooled
    }

    /// Whether a lone statement on `conn` may run as it is: it commits by
    /// itself, or a transaction is open.
    pub(crate) fn runs_alone(&self, conn: &mut AsyncPgConnection) -> bool {
        !self.transaction_pooled || !flight::outside_transaction(conn)
    }

    /// Runs `work` (statements, in any number of round trips) on `conn`:
    /// as it is where a statement may run alone or a transaction is open;
    /// else inside a transaction of its own, whose `BEGIN` goes with its
    /// first statements and whose `COMMIT` (`ROLLBACK` after a failure)
    /// follows their replies.
    pub(crate) async fn alone<T, E: From<Error>>(
        &self,
        conn: &mut AsyncPgConnection,
        work: impl for<'c> FnOnce(&'c AsyncPgConnection) -> BoxFuture<'c, Result<T, E>>,
    ) -> Result<T, E> {
        if self.runs_alone(conn) {
            return work(conn).await;
        }
        let guard = Guard::arm(conn, self);
        let shared = &*conn;
        let (begun, done) = flight::begin_with(shared, &self.begin, work(shared)).await;
        let end = if begun.is_ok() && done.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = (&mut &*shared).batch_execute(end).await;
        guard.landed(conn, ended.is_ok());
        begun?;
        let done = done?;
        ended?;
        Ok(done)
    }
}

/// The first TCP `host:port` of a connection URL (none for a Unix socket).
fn tcp_address(database_url: &str) -> Option<Arc<str>> {
    let config: tokio_postgres::Config = database_url.parse().ok()?;
    let host = match config.get_hosts().first()? {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => return None,
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Some(format!("{host}:{port}").into())
}
