//! Knowing, in a repository call, that it was made from inside a unit of
//! work's closure: the one place stores decide to refuse it.

use std::future::Future;

use crate::error::RepositoryError;

tokio::task_local! {
    static IN_UNIT: &'static str;
}

/// Runs `work` (a unit's closure future) marked as inside a unit of work.
#[doc(hidden)]
pub fn within_unit<F: Future>(work: F) -> impl Future<Output = F::Output> {
    IN_UNIT.scope("unit of work", work)
}

/// `Storage` when called from inside a unit of work: a repository call
/// there would run outside the unit's transaction (not rolled back with it,
/// not seeing its writes) and, in memory, wait for the unit for ever.
#[doc(hidden)]
pub fn refuse_inside_unit<E>(kind: &'static str) -> Result<(), RepositoryError<E>> {
    match IN_UNIT.try_with(|_| ()) {
        Ok(()) => Err(RepositoryError::Storage(
            format!(
                "a {kind} repository was called inside a unit of work: use tx.of::<{kind}>() \
                 so the operation is part of the unit"
            )
            .into(),
        )),
        Err(_) => Ok(()),
    }
}
