//! Sending a write's statements in as few round trips as ordering allows.
//!
//! BEGIN goes out in the same flight as the statements: it is sent as the
//! flight is first polled, before any of them. COMMIT joins the flight too
//! when nothing can overtake it: it is sent as a prepared statement, so it
//! queues behind any statement of the flight still being prepared (diesel
//! holds its statement cache, a fair lock, while it prepares), and a write
//! whose statements bind custom SQL types (which may first wait for a type
//! lookup) commits only once their replies are in. Otherwise a statement
//! overtaken by COMMIT would run outside the transaction.
//!
//! diesel's transaction manager does not see these transactions, nor a
//! lone statement that commits by itself. While one is out, a [`Guard`]
//! marks the connection broken and holds a way to cancel it: a flight
//! dropped half-way (a cancelled request, a deadline) sends its connection
//! out of the pool, and asks the server to cancel what still runs, so that
//! nothing lands after its caller gave up waiting (a statement that had
//! already finished by then simply landed: the caller gave up only after
//! sending it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::session::Sessions;
use diesel::QueryResult;
use diesel::connection::TransactionManagerStatus;
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
    TransactionManager,
};

/// Armed while a flight is out: see the module's documentation.
pub(crate) struct Guard(Option<Cancel>);

/// How to cancel what runs on a connection.
struct Cancel {
    token: tokio_postgres::CancelToken,
    /// A pooler's `host:port` (`Sessions::cancel_via`), when the cancel
    /// request must go by a socket held open until the pooler closes it.
    via: Option<Arc<str>>,
    /// The sessions' TLS, which the cancel request takes too.
    tls: Option<crate::tls::Tls>,
}

impl Guard {
    /// Marks `conn` (with no transaction open) broken until [`Self::landed`].
    pub(crate) fn arm(conn: &mut AsyncPgConnection, sessions: &Sessions) -> Self {
        AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
        Self::watch(conn, sessions)
    }

    /// Holds a way to cancel what runs on `conn` without marking it
    /// broken: for a flight whose transaction diesel's manager tracks (a
    /// unit's COMMIT). Dropped armed, it cancels; [`Self::disarm`] once
    /// every reply came.
    pub(crate) fn watch(conn: &AsyncPgConnection, sessions: &Sessions) -> Self {
        Self(Some(Cancel {
            token: conn.cancel_token(),
            via: sessions.cancel_via().cloned(),
            tls: sessions.cancel_tls().cloned(),
        }))
    }

    /// Every reply of a [`Self::watch`]ed flight came: nothing to cancel.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }

    /// Every reply of the flight came. If the flight ended its transaction
    /// (or had none), the connection is sound again; if it failed on the
    /// way, it stays marked and leaves the pool.
    pub(crate) fn landed(mut self, conn: &mut AsyncPgConnection, sound: bool) {
        self.0 = None;
        if sound {
            *AnsiTransactionManager::transaction_manager_status_mut(conn) =
                TransactionManagerStatus::default();
        }
    }
}

impl Guard {
    /// Awaits `flight`; if the operation's deadline passes first, asks the
    /// server to cancel it and awaits its replies all the same, so that the
    /// caller learns whether it landed: a write is never left to land after
    /// its `Timeout`. Returns whether the deadline passed.
    pub(crate) async fn settle<T>(&self, flight: impl Future<Output = T>) -> (T, bool) {
        crate::retry::settling(|deadline| async move {
            let Some(until) = deadline else {
                return (flight.await, false);
            };
            tokio::pin!(flight);
            if let Ok(replies) = tokio::time::timeout_at(until, &mut flight).await {
                return (replies, false);
            }
            if let Some(cancel) = &self.0
                && let Err(error) = cancel.send().await
            {
                tracing::warn!(%error, "could not cancel a write past its deadline");
            }
            (flight.await, true)
        })
        .await
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(cancel) = self.0.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = cancel.send().await {
                    tracing::warn!(%error, "could not cancel a dropped write");
                }
            });
        }
    }
}

impl Cancel {
    /// Asks the server to cancel what runs on the connection. Through a
    /// pooler, the request's socket stays open until the pooler closes it:
    /// PgBouncer 1.18 (Debian 12's) exits when a cancel request's client
    /// disconnects before the server side of it is done (pgbouncer issue
    /// #801, fixed in 1.20), and tokio-postgres closes its cancel socket as
    /// soon as the request is written.
    async fn send(&self) -> Result<(), String> {
        let Some(via) = &self.via else {
            let cancelled = match &self.tls {
                None => self.token.cancel_query(tokio_postgres::NoTls).await,
                Some(tls) => self.token.cancel_query(tls.0.clone()).await,
            };
            return cancelled.map_err(|e| e.to_string());
        };
        let until_closed = async {
            let stream = UntilClosed(
                tokio::net::TcpStream::connect(&**via)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            let cancelled = match &self.tls {
                None => {
                    self.token
                        .cancel_query_raw(stream, tokio_postgres::NoTls)
                        .await
                }
                Some(tls) => {
                    use tokio_postgres::tls::MakeTlsConnect;
                    let host = via.rsplit_once(':').map_or(&**via, |(host, _)| host);
                    let connect =
                        MakeTlsConnect::<UntilClosed>::make_tls_connect(&mut tls.0.clone(), host)
                            .map_err(|e| e.to_string())?;
                    self.token.cancel_query_raw(stream, connect).await
                }
            };
            cancelled.map_err(|e| e.to_string())
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), until_closed)
            .await
            .map_err(|_| "no answer to the cancel request in 5 s".to_owned())?
    }
}

/// A socket whose shutdown only waits for the peer to close it: even a
/// half-close of our side reads to PgBouncer as the client going away.
struct UntilClosed(tokio::net::TcpStream);

impl tokio::io::AsyncRead for UntilClosed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for UntilClosed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    /// Reads until the peer closes.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut scratch = [0; 64];
        loop {
            let mut buf = tokio::io::ReadBuf::new(&mut scratch);
            match std::task::ready!(tokio::io::AsyncRead::poll_read(
                Pin::new(&mut self.0),
                cx,
                &mut buf
            )) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Ok(()) => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

/// Sends `begin` (the store's `BEGIN`, see `session`) and `statements`
/// (built on `conn`) in one flight; returns BEGIN's outcome and theirs.
pub(crate) async fn begin_with<T>(
    conn: &AsyncPgConnection,
    begin: &str,
    statements: impl Future<Output = T>,
) -> (QueryResult<()>, T) {
    let mut on = conn;
    tokio::join!(on.batch_execute(begin), statements)
}

/// Whether no transaction is open on `conn`: outside a unit of work.
pub(crate) fn outside_transaction(conn: &mut AsyncPgConnection) -> bool {
    matches!(
        AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(None)
    )
}

/// A COMMIT to send after a flight's statements, in the same flight (see
/// the module's documentation). After a failed statement the server
/// answers it by rolling back.
pub(crate) fn commit_after(
    conn: &AsyncPgConnection,
) -> impl Future<Output = QueryResult<usize>> + Send + '_ {
    let mut on = conn;
    crate::cached(diesel::sql_query("COMMIT")).execute(&mut on)
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

/// How a flight's transaction ends, when it ends in a flight of its own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum End {
    Commit,
    RollBack,
}
