//! What a write tells its caller besides "it worked".

/// What [`Repository::create`](crate::Repository::create) did.
///
/// A create retried with its token (a client retrying a request whose
/// answer it never saw) finds the aggregate the first attempt stored. The
/// caller must then not repeat the create's side effects (log it again,
/// rescore everyone again): match on this instead of comparing ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Created<A> {
    /// Stored by this call, at [`Version::INITIAL`](crate::Version::INITIAL).
    New(A),
    /// Stored earlier by a request with the same token and the same
    /// fingerprint: this call wrote nothing. The aggregate is as stored now.
    Replayed(A),
}

impl<A> Created<A> {
    /// Whether this call stored the aggregate (so its side effects are due).
    pub fn is_new(&self) -> bool {
        matches!(self, Self::New(_))
    }

    /// The aggregate, new or replayed.
    pub fn aggregate(&self) -> &A {
        match self {
            Self::New(a) | Self::Replayed(a) => a,
        }
    }

    /// The aggregate, new or replayed.
    pub fn into_aggregate(self) -> A {
        match self {
            Self::New(a) | Self::Replayed(a) => a,
        }
    }

    /// Applies `f` to the aggregate, keeping whether it was new.
    pub fn map<B>(self, f: impl FnOnce(A) -> B) -> Created<B> {
        match self {
            Self::New(a) => Created::New(f(a)),
            Self::Replayed(a) => Created::Replayed(f(a)),
        }
    }
}

/// What [`Repository::update`](crate::Repository::update) stored and what
/// its closure returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated<A, R> {
    /// The aggregate as stored by this update, at its new version.
    pub aggregate: A,
    /// What the closure returned.
    pub output: R,
}

/// What [`UnitOfWork::run_once`](crate::UnitOfWork::run_once) did: ran the
/// unit, or found that a unit with the same key had committed before and
/// answered with what that one returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Keyed<T> {
    /// This call ran the unit, and it committed.
    First(T),
    /// A unit with this key committed earlier (a client's retry, or a
    /// COMMIT whose reply was lost): this call wrote nothing and returns
    /// that unit's answer, as it was then.
    Replayed(T),
}

impl<T> Keyed<T> {
    /// Whether this call ran the unit (so its side effects are due).
    pub fn is_first(&self) -> bool {
        matches!(self, Self::First(_))
    }

    /// The answer, first or replayed.
    pub fn into_inner(self) -> T {
        match self {
            Self::First(answer) | Self::Replayed(answer) => answer,
        }
    }
}
