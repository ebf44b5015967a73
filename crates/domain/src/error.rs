//! The one error type every repository returns.

use std::convert::Infallible;
use std::error::Error as StdError;

use crate::token::TxToken;

/// A boxed error from below the repository (a driver, a pool), kept as the
/// source so logs show the cause while callers match on the variant.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a repository operation failed. `E` is the error type of an update
/// closure; operations without one use the default, [`Infallible`].
///
/// Every variant says how a caller should handle it. Only [`Self::Conflict`],
/// [`Self::Timeout`] and [`Self::Unavailable`] are worth retrying by the caller:
/// the repository has already retried transient faults within the deadline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError<E = Infallible> {
    /// No aggregate has this id (or it was deleted). Maps to HTTP 404.
    #[error("{kind} {id} not found")]
    NotFound {
        /// The aggregate kind.
        kind: &'static str,
        /// The id looked up.
        id: String,
    },

    /// `create` with an id that already exists under another token (or none).
    /// Maps to HTTP 409.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// The aggregate kind.
        kind: &'static str,
        /// The id that exists.
        id: String,
    },

    /// Another aggregate already holds a value declared unique by
    /// [`Aggregate::unique_keys`](crate::Aggregate::unique_keys), e.g. a
    /// taken username. Nothing was written. Maps to HTTP 409.
    #[error("{kind} with this {key} already exists")]
    Duplicate {
        /// The aggregate kind.
        kind: &'static str,
        /// The unique constraint's name.
        key: String,
    },

    /// The token was already used for a different create request (another
    /// payload or another aggregate). Nothing was written. A client bug, not a
    /// race: maps to HTTP 422; do not retry with the same token.
    #[error("transaction token {token} was already used for a different {kind}")]
    TokenMismatch {
        /// The aggregate kind.
        kind: &'static str,
        /// The reused token.
        token: TxToken,
    },

    /// Concurrent writers kept changing the aggregate and the repository's
    /// bounded retries ran out. Nothing was written. Maps to HTTP 409; the
    /// caller may retry later.
    #[error("{kind} {id} kept changing concurrently; gave up after {attempts} attempts")]
    Conflict {
        /// The aggregate kind.
        kind: &'static str,
        /// The contended id.
        id: String,
        /// How many times the closure ran.
        attempts: u32,
    },

    /// The operation's deadline passed (pool wait, statements and retries
    /// included). The write may or may not have happened: retry a create with
    /// the same token to find out. Maps to HTTP 504.
    #[error("the operation did not finish before its deadline")]
    Timeout,

    /// The connection broke while the write was being committed: it may or
    /// may not have landed. Re-read the aggregate (its version tells), or
    /// retry a create with the same token, which is always safe. Maps to
    /// HTTP 504 like `Timeout`.
    #[error("the store stopped answering while committing; the write may or may not have landed")]
    OutcomeUnknown,

    /// A keyed lock's hold expired (past the store's maximum hold) before
    /// its holder released it: someone else may have held the key since,
    /// so what was done under it may have overlapped. Maps to HTTP 409;
    /// re-check the state before going on.
    #[error("the hold on key {key:?} expired before it was released")]
    LockLost {
        /// The key.
        key: String,
    },

    /// No working connection to the store could be had in time (pool
    /// exhausted, database down). Nothing was written. Maps to HTTP 503.
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),

    /// The update closure refused the change; nothing was written. The
    /// domain's own error decides the status (usually 409 or 422).
    #[error(transparent)]
    Domain(E),

    /// Anything else the store reported: a bug or a schema mismatch, not
    /// something to retry. Maps to HTTP 500; log it.
    #[error("storage failure")]
    Storage(#[source] BoxError),
}

impl<E> RepositoryError<E> {
    /// Converts the closure error type, keeping every other variant.
    pub fn map_domain<F>(self, f: impl FnOnce(E) -> F) -> RepositoryError<F> {
        match self {
            Self::NotFound { kind, id } => RepositoryError::NotFound { kind, id },
            Self::AlreadyExists { kind, id } => RepositoryError::AlreadyExists { kind, id },
            Self::Duplicate { kind, key } => RepositoryError::Duplicate { kind, key },
            Self::TokenMismatch { kind, token } => RepositoryError::TokenMismatch { kind, token },
            Self::Conflict { kind, id, attempts } => {
                RepositoryError::Conflict { kind, id, attempts }
            }
            Self::Timeout => RepositoryError::Timeout,
            Self::OutcomeUnknown => RepositoryError::OutcomeUnknown,
            Self::LockLost { key } => RepositoryError::LockLost { key },
            Self::Unavailable(source) => RepositoryError::Unavailable(source),
            Self::Domain(e) => RepositoryError::Domain(f(e)),
            Self::Storage(source) => RepositoryError::Storage(source),
        }
    }

    /// `NotFound` for aggregate kind `kind` and id `id`.
    pub fn not_found(kind: &'static str, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// `NotFound` for a lookup by a unique key that no aggregate holds,
    /// worded the same by every store (`user with username "ada"`).
    pub fn not_found_by(kind: &'static str, key: &crate::UniqueKey) -> Self {
        Self::not_found(kind, format_args!("with {key}"))
    }
}

impl RepositoryError<Infallible> {
    /// Widens an error from an operation without a closure, so it can travel
    /// with the errors of one that has.
    pub fn widen<E>(self) -> RepositoryError<E> {
        self.map_domain(|never| match never {})
    }
}

/// Marks the error type of business rules (`OrderError`, say), so that `?`
/// works on everything a use case calls:
///
/// * a rule's `Err(e)` becomes [`RepositoryError::Domain`]`(e)`;
/// * an error of an operation without a closure (`get`, `create`, ...)
///   keeps its variant.
///
/// A use case then returns `Result<T, RepositoryError<OrderError>>`, with no
/// error enum of its own:
///
/// ```
/// use domain::{DomainError, RepositoryError};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("an order holds at most 100 lines")]
/// struct TooManyLines;
/// impl DomainError for TooManyLines {}
///
/// fn rule() -> Result<(), TooManyLines> { Err(TooManyLines) }
/// fn load() -> Result<u32, RepositoryError> { Ok(7) }
///
/// fn use_case() -> Result<u32, RepositoryError<TooManyLines>> {
///     let n = load()?;
///     rule()?;
///     Ok(n)
/// }
/// assert!(matches!(use_case(), Err(RepositoryError::Domain(TooManyLines))));
/// ```
///
/// (A blanket `From` for every error type is impossible in Rust: it would
/// overlap with `From<T> for T`. The marker makes the two impls disjoint.)
pub trait DomainError {}

impl<E: DomainError> From<E> for RepositoryError<E> {
    fn from(error: E) -> Self {
        Self::Domain(error)
    }
}

impl<E: DomainError> From<RepositoryError> for RepositoryError<E> {
    fn from(error: RepositoryError) -> Self {
        error.widen()
    }
}
