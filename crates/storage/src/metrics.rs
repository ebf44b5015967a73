//! What the store reports through the [`metrics`] facade: every name it
//! records is here. Nothing is kept unless the application installs a
//! recorder (the service exports them at `GET /metrics`); without one each
//! call is a few loads and a branch.
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `storage_operation_duration_seconds` | histogram | `kind`, `op`, `outcome` |
//! | `storage_retries_total` | counter | `kind`, `cause` (`conflict`, `connection`, `queued`) |
//! | `storage_pool_wait_seconds` | histogram | `pool` (`operations`, `locks`, `replica`) |
//! | `storage_pool_waiters` | gauge | `pool` |
//! | `storage_pool_timeouts_total` | counter | `pool` |
//! | `storage_pool_connections`, `storage_pool_idle_connections` | gauge | `pool`; sampled by [`crate::PgStore::record_pool_gauges`] |
//! | `storage_keyed_holds` | gauge | `mode` (`exclusive`, `shared`) |
//! | `storage_keyed_hold_seconds` | histogram | `mode` |
//! | `storage_keyed_holds_lost_total` | counter | |
//! | `storage_replica_reads_total` | counter | `served_by` (`replica`, `primary`): reads carrying a causality position |

use std::time::Instant;

use domain::RepositoryError;

use crate::retry::RetryAs;

/// Describes the store's metrics to the installed recorder (their `# HELP`
/// lines); call it once, after installing one.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "storage_operation_duration_seconds",
        Unit::Seconds,
        "Repository operations and units of work, retries and pool waits included"
    );
    describe_counter!("storage_retries_total", "Attempts repeated, by cause");
    describe_histogram!(
        "storage_pool_wait_seconds",
        Unit::Seconds,
        "Waits for a pooled connection"
    );
    describe_gauge!(
        "storage_pool_waiters",
        "Callers waiting for a pooled connection"
    );
    describe_counter!(
        "storage_pool_timeouts_total",
        "Waits for a pooled connection that ended without one (503)"
    );
    describe_gauge!(
        "storage_pool_connections",
        "Connections open, at the last scrape"
    );
    describe_gauge!(
        "storage_pool_idle_connections",
        "Connections idle, at the last scrape"
    );
    describe_gauge!("storage_keyed_holds", "Keys held right now");
    describe_histogram!(
        "storage_keyed_hold_seconds",
        Unit::Seconds,
        "How long keys were held"
    );
    describe_counter!(
        "storage_replica_reads_total",
        "Reads carrying a causality position, by who served them"
    );
    describe_counter!(
        "storage_keyed_holds_lost_total",
        "Holds that expired before their holder released them"
    );
}

/// An operation being measured: its aggregate kind and its name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    pub(crate) kind: &'static str,
    pub(crate) op: &'static str,
}

/// Records how an operation ended and how long it took.
pub(crate) fn finished<T, E>(op: Op, started: Instant, result: &Result<T, RepositoryError<E>>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(error) => outcome(error),
    };
    metrics::histogram!(
        "storage_operation_duration_seconds",
        "kind" => op.kind, "op" => op.op, "outcome" => outcome
    )
    .record(started.elapsed());
}

/// A short, stable name for how an operation failed.
fn outcome<E>(error: &RepositoryError<E>) -> &'static str {
    match error {
        RepositoryError::NotFound { .. } => "not_found",
        RepositoryError::AlreadyExists { .. } => "already_exists",
        RepositoryError::Duplicate { .. } => "duplicate",
        RepositoryError::TokenMismatch { .. } => "token_mismatch",
        RepositoryError::Conflict { .. } => "conflict",
        RepositoryError::Timeout => "timeout",
        RepositoryError::OutcomeUnknown => "outcome_unknown",
        RepositoryError::LockLost { .. } => "lock_lost",
        RepositoryError::Unavailable(_) => "unavailable",
        RepositoryError::Domain(_) => "refused",
        RepositoryError::Storage(_) => "storage",
        _ => "other",
    }
}

/// Records a retry of an operation on `kind`.
pub(crate) fn retried(kind: &'static str, cause: &RetryAs) {
    let cause = match cause {
        RetryAs::Conflict => "conflict",
        RetryAs::Connection(_) => "connection",
        RetryAs::Queued => "queued",
    };
    metrics::counter!("storage_retries_total", "kind" => kind, "cause" => cause).increment(1);
}

/// A caller waiting for a connection of `pool`: counted among the waiters
/// until dropped, which records the wait.
pub(crate) struct PoolWait {
    pool: &'static str,
    started: Instant,
}

impl PoolWait {
    pub(crate) fn start(pool: &'static str) -> Self {
        metrics::gauge!("storage_pool_waiters", "pool" => pool).increment(1.0);
        Self {
            pool,
            started: Instant::now(),
        }
    }

    /// The wait ended without a connection.
    pub(crate) fn timed_out(&self) {
        metrics::counter!("storage_pool_timeouts_total", "pool" => self.pool).increment(1);
    }
}

impl Drop for PoolWait {
    fn drop(&mut self) {
        metrics::gauge!("storage_pool_waiters", "pool" => self.pool).decrement(1.0);
        metrics::histogram!("storage_pool_wait_seconds", "pool" => self.pool)
            .record(self.started.elapsed());
    }
}

/// Sets the pool gauges from `state`.
pub(crate) fn pool_state(pool: &'static str, state: &bb8::State) {
    metrics::gauge!("storage_pool_connections", "pool" => pool).set(state.connections);
    metrics::gauge!("storage_pool_idle_connections", "pool" => pool).set(state.idle_connections);
}

/// A keyed hold, counted while it lasts.
#[derive(Debug)]
pub(crate) struct Hold {
    mode: &'static str,
    started: Instant,
}

impl Hold {
    pub(crate) fn start(mode: &'static str) -> Self {
        metrics::gauge!("storage_keyed_holds", "mode" => mode).increment(1.0);
        Self {
            mode,
            started: Instant::now(),
        }
    }
}

/// A holder learnt that its hold expired.
pub(crate) fn hold_lost() {
    metrics::counter!("storage_keyed_holds_lost_total").increment(1);
}

impl Drop for Hold {
    fn drop(&mut self) {
        metrics::gauge!("storage_keyed_holds", "mode" => self.mode).decrement(1.0);
        metrics::histogram!("storage_keyed_hold_seconds", "mode" => self.mode)
            .record(self.started.elapsed());
    }
}
