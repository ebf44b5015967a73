//! The bounded, jittered retry loop every repository operation runs in, and
//! the deadline around it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use domain::RepositoryError;
use futures_util::future::Either;
use rand::Rng;
use tracing::Instrument;

use crate::classify::{Fault, Transient, classify};
use crate::config::StoreConfig;
use crate::metrics::Op;

/// Why one attempt of an operation failed.
#[derive(Debug)]
pub(crate) enum Fail<E> {
    /// A statement failed; [`classify`] decides what it means.
    Db(diesel::result::Error),
    /// The optimistic lock missed: a concurrent writer stored a newer version.
    VersionMiss,
    /// A final answer: no retry can change it.
    Done(RepositoryError<E>),
    /// The connection broke before a write's outcome was known: it may have
    /// landed. Retried like any broken connection; the retry settles it, a
    /// create by its token, an update by its version.
    ReplyLost(diesel::result::Error),
}

impl<E> From<diesel::result::Error> for Fail<E> {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(error)
    }
}

/// What an operation works on, for errors and logs.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) kind: &'static str,
    pub(crate) id: String,
    pub(crate) primary_key: &'static str,
}

impl Target {
    /// Either a reason to retry or the final error.
    pub(crate) fn judge<E>(&self, failure: Fail<E>) -> Result<RetryAs, RepositoryError<E>> {
        let error = match failure {
            Fail::Done(error) => return Err(error),
            Fail::VersionMiss => return Ok(RetryAs::Conflict),
            Fail::Db(error) | Fail::ReplyLost(error) => error,
        };
        match classify(&error) {
            Fault::Transient(Transient::Contention) => Ok(RetryAs::Conflict),
            Fault::Transient(Transient::Connection) => Ok(RetryAs::Connection(error)),
            Fault::Timeout => Err(RepositoryError::Timeout),
            Fault::Unique { constraint, .. } if constraint == self.primary_key => {
                Err(RepositoryError::AlreadyExists {
                    kind: self.kind,
                    id: self.id.clone(),
                })
            }
            Fault::Unique { constraint, table } => Err(RepositoryError::Duplicate {
                kind: self.kind,
                key: declared_key(&constraint, table.as_deref()),
            }),
            Fault::Other => Err(RepositoryError::Storage(Box::new(error))),
        }
    }
}

/// The key a unique constraint enforces, as the aggregate declares it:
/// `users_username_key` on `users` enforces `username` (the name Postgres
/// gives `UNIQUE (username)`). A constraint named otherwise is reported
/// under its own name.
fn declared_key(constraint: &str, table: Option<&str>) -> String {
    table
        .and_then(|table| constraint.strip_prefix(table)?.strip_prefix('_'))
        .and_then(|rest| rest.strip_suffix("_key"))
        .filter(|key| !key.is_empty())
        .unwrap_or(constraint)
        .to_owned()
}

/// The retry state of one operation: what it works on, how many attempts.
///
/// Each operation drives it in a small loop, inside [`within_deadline`]:
/// ```ignore
/// loop {
///     match self.try_get(id).await {
///         Ok(found) => return Ok(found),
///         Err(failure) => retry.after(failure).await?,
///     }
/// }
/// ```
pub(crate) struct Retry<'a> {
    pub(crate) target: Target,
    pub(crate) config: &'a StoreConfig,
    pub(crate) attempts: u32,
}

impl Retry<'_> {
    /// After a failed attempt: sleeps a jittered backoff and returns `Ok`
    /// when another attempt is worth it, or returns the final error.
    pub(crate) async fn after<E>(&mut self, failure: Fail<E>) -> Result<(), RepositoryError<E>> {
        let retry_as = self.target.judge(failure)?;
        self.again(retry_as).await
    }

    /// Backs off before another attempt, or gives up when none is left.
    pub(crate) async fn again<E>(&mut self, retry_as: RetryAs) -> Result<(), RepositoryError<E>> {
        if self.attempts >= self.config.max_attempts {
            tracing::warn!(attempts = self.attempts, "retries exhausted");
            return Err(retry_as.give_up(&self.target, self.attempts));
        }
        tracing::debug!(attempts = self.attempts, ?retry_as, "retrying");
        crate::metrics::retried(self.target.kind, &retry_as);
        if !matches!(retry_as, RetryAs::Queued) {
            tokio::time::sleep(backoff(self.config, self.attempts)).await;
        }
        self.attempts += 1;
        Ok(())
    }
}

/// Why an attempt is worth repeating.
#[derive(Debug)]
pub(crate) enum RetryAs {
    /// Lost to a concurrent writer.
    Conflict,
    /// The connection broke.
    Connection(diesel::result::Error),
    /// A unit of this process holds a row this unit writes: the next attempt
    /// waits for it in order (`write_order`), with no backoff first.
    Queued,
}

impl RetryAs {
    /// The error to report when no attempt is left.
    pub(crate) fn give_up<E>(self, target: &Target, attempts: u32) -> RepositoryError<E> {
        match self {
            Self::Conflict | Self::Queued => RepositoryError::Conflict {
                kind: target.kind,
                id: target.id.clone(),
                attempts,
            },
            Self::Connection(error) => RepositoryError::Unavailable(Box::new(error)),
        }
    }
}

/// Runs an operation's retry loop under its deadline, in a tracing span,
/// and records its outcome and duration ([`crate::metrics`]).
/// When the deadline passes the loop's future is dropped wherever it was; a
/// connection it left inside a transaction is discarded by the pool, never
/// reused.
///
/// Except while a write is out that would still land after a drop (a lone
/// statement, or a flight that carries its COMMIT): that write settles its
/// outcome itself at the deadline ([`settling`]), and the operation gets
/// up to [`SETTLE`] more to hear it.
pub(crate) fn within_deadline<T, E>(
    config: &StoreConfig,
    (measured, span): (Op, tracing::Span),
    work: impl Future<Output = Result<T, RepositoryError<E>>>,
) -> impl Future<Output = Result<T, RepositoryError<E>>> {
    let started = std::time::Instant::now();
    let deadline = Arc::new(Deadline {
        until: tokio::time::Instant::now() + config.deadline,
        writing: AtomicBool::new(false),
    });
    let timer = Box::pin(tokio::time::sleep_until(deadline.until));
    // Boxed, so that the future is kept once (not twice, as an `async fn`
    // taking it would: every repository future was twice the size), and
    // boxed first: moved into the scope first, a create's future (kilobytes)
    // was copied twice per call.
    let work = DEADLINE.scope(deadline.clone(), Box::pin(work));
    async move {
        let work = std::pin::pin!(work);
        let result = match futures_util::future::select(work, timer).await {
            Either::Left((done, _)) => done,
            Either::Right(((), work)) if deadline.writing.load(Ordering::Acquire) => {
                tokio::time::timeout(SETTLE, work)
                    .await
                    .unwrap_or(Err(RepositoryError::Timeout))
            }
            Either::Right(_) => Err(RepositoryError::Timeout),
        };
        crate::metrics::finished(measured, started, &result);
        result
    }
    .instrument(span)
}

/// The running operation's deadline, and whether a write that must settle
/// its outcome is out.
#[derive(Debug)]
pub(crate) struct Deadline {
    pub(crate) until: tokio::time::Instant,
    writing: AtomicBool,
}

tokio::task_local! {
    static DEADLINE: Arc<Deadline>;
}

/// How long past its deadline an operation may take to learn how a write
/// it had sent ended (the server's answer to a cancel).
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

/// Runs `write` (which must settle its own outcome by the deadline it is
/// given) while telling the operation's deadline to wait for it; `None`
/// for the deadline outside a repository operation.
pub(crate) async fn settling<T, F: Future<Output = T>>(
    write: impl FnOnce(Option<tokio::time::Instant>) -> F,
) -> T {
    let Ok(deadline) = DEADLINE.try_with(Arc::clone) else {
        return write(None).await;
    };
    deadline.writing.store(true, Ordering::Release);
    let done = write(Some(deadline.until)).await;
    deadline.writing.store(false, Ordering::Release);
    done
}

/// Full jitter: uniform in `0..=min(max, base * 2^(attempt-1))`, so racing
/// writers spread out instead of colliding again in lockstep.
fn backoff(config: &StoreConfig, attempt: u32) -> Duration {
    let ceiling = config
        .base_backoff
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(config.max_backoff);
    ceiling.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constraint_named_as_postgres_names_it_reports_the_declared_key() {
        let key = declared_key;
        assert_eq!(key("users_username_key", Some("users")), "username");
        assert_eq!(
            key("stock_items_order_ref_key", Some("stock_items")),
            "order_ref"
        );
        assert_eq!(key("sku_unique", Some("stock_items")), "sku_unique");
        assert_eq!(key("users_username_key", None), "users_username_key");
        assert_eq!(key("users__key", Some("users")), "users__key");
    }

    #[test]
    fn backoff_grows_but_stays_under_the_cap() {
        let config = StoreConfig::default();
        for attempt in 1..40 {
            let cap = config
                .base_backoff
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(config.max_backoff);
            for _ in 0..20 {
                assert!(backoff(&config, attempt) <= cap);
            }
        }
    }

    #[test]
    fn backoff_is_jittered() {
        let config = StoreConfig::default();
        let samples: std::collections::BTreeSet<_> = (0..50).map(|_| backoff(&config, 5)).collect();
        assert!(samples.len() > 10, "{samples:?}");
    }
}
