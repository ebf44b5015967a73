//! What a failed statement means for the operation: retry it, give up with a
//! typed error, or report a storage failure.
//!
//! diesel-async keeps SQLSTATE only for a few typed kinds (unique violation,
//! serialization failure); the rest arrive as `Unknown` with the server's
//! message. Those are matched on Postgres' English message texts, which
//! every session of the store speaks: `messages` checks each new one, and
//! sets `lc_messages` or refuses the session.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// The meaning of a database error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Worth running the operation again: 40001, 40P01, 55P03, or a
    /// connection that broke (57P01, 25P03, closed socket).
    Transient(Transient),
    /// `statement_timeout` (57014) fired: the deadline is spent.
    Timeout,
    /// 23505 on the named constraint, of the named table.
    Unique {
        constraint: String,
        table: Option<String>,
    },
    /// Anything else.
    Other,
}

/// Which kind of transient fault, for the error returned when retries run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transient {
    /// Another transaction won (serialization failure, deadlock, lock timeout).
    Contention,
    /// The connection is gone (terminated backend, server restart, network).
    Connection,
}

pub(crate) fn classify(error: &DieselError) -> Fault {
    let DieselError::DatabaseError(kind, info) = error else {
        return Fault::Other;
    };
    match kind {
        DatabaseErrorKind::SerializationFailure => Fault::Transient(Transient::Contention),
        DatabaseErrorKind::UniqueViolation => Fault::Unique {
            constraint: info.constraint_name().unwrap_or_default().to_owned(),
            table: info.table_name().map(str::to_owned),
        },
        DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
            Fault::Transient(Transient::Connection)
        }
        _ => classify_message(info.message()),
    }
}

/// Whether the connection itself failed (nothing more can be sent on it).
pub(crate) fn is_connection_fault(error: &DieselError) -> bool {
    classify(error) == Fault::Transient(Transient::Connection)
}

fn classify_message(message: &str) -> Fault {
    const CONTENTION: [&str; 3] = [
        "deadlock detected",                       // 40P01
        "canceling statement due to lock timeout", // 55P03
        "could not serialize access",              // 40001 raised at COMMIT
    ];
    const CONNECTION: [&str; 11] = [
        "terminating connection", // 57P01 admin shutdown, 25P03 idle in transaction
        "connection closed",      // socket closed under us
        "the database system is", // 57P03 starting up / shutting down
        "server closed the connection",
        "connection reset",
        "broken pipe",
        // PgBouncer (08P01), which then closes the client's connection:
        // the server session under it died, or none can be had.
        "server conn crashed",
        "invalid server parameter", // died while PgBouncer applied settings
        "pgbouncer cannot connect to server",
        "server login has been failing",
        "query_wait_timeout",
    ];
    let lower = message.to_ascii_lowercase();
    if lower.contains("canceling statement due to statement timeout") {
        Fault::Timeout
    } else if CONTENTION.iter().any(|m| lower.contains(m)) {
        Fault::Transient(Transient::Contention)
    } else if CONNECTION.iter().any(|m| lower.contains(m)) {
        Fault::Transient(Transient::Connection)
    } else {
        Fault::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlocks_lock_timeouts_and_commit_time_serialization_failures_are_contention() {
        for message in [
            "deadlock detected",
            "canceling statement due to lock timeout",
            "could not serialize access due to read/write dependencies among transactions",
        ] {
            assert_eq!(
                classify_message(message),
                Fault::Transient(Transient::Contention),
                "{message}"
            );
        }
    }

    #[test]
    fn terminated_backends_closed_sockets_and_pooler_losses_are_connection_faults() {
        for message in [
            "terminating connection due to administrator command",
            "terminating connection due to idle-in-transaction timeout",
            "connection closed",
            "the database system is shutting down",
            "server conn crashed?",
            "invalid server parameter",
        ] {
            assert_eq!(
                classify_message(message),
                Fault::Transient(Transient::Connection),
                "{message}"
            );
        }
    }

    #[test]
    fn a_statement_timeout_is_a_timeout_not_a_retry() {
        assert_eq!(
            classify_message("canceling statement due to statement timeout"),
            Fault::Timeout
        );
    }

    #[test]
    fn anything_else_is_a_storage_failure() {
        assert_eq!(
            classify_message("relation \"users\" does not exist"),
            Fault::Other
        );
        assert_eq!(classify(&DieselError::NotFound), Fault::Other);
    }
}
