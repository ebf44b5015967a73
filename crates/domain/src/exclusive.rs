//! Keyed exclusive access: one holder per key, across several transactions.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::RepositoryError;

/// Locks by key (say `user:42`), held across any number of operations and
/// transactions until released. Exclusion is cooperative: it holds only
/// against others who lock the same key.
///
/// Use it when a sequence of steps for one key cannot be one transaction:
/// a step talks to another system in between (a payment provider, a mail
/// server), or the steps must commit one by one so their effects are
/// visible early. When the steps fit in one transaction, a unit of work is
/// simpler and stronger: prefer it.
pub trait ExclusiveAccess: Send + Sync {
    /// Proof of holding a key. Dropping it releases the key too (on
    /// Postgres by discarding its connection); [`Self::unlock`] is cheaper.
    type Guard: Send + std::fmt::Debug + 'static;

    /// Waits at most `wait` for `key` to be free, then holds it.
    /// `Timeout` if someone else held it all that time.
    fn lock(
        &self,
        key: &str,
        wait: Duration,
    ) -> impl Future<Output = Result<Self::Guard, RepositoryError>> + Send;

    /// Releases the key.
    fn unlock(&self, guard: Self::Guard) -> impl Future<Output = ()> + Send;
}

/// In-process keyed locks, for [`InMemoryStore`](crate::InMemoryStore).
#[derive(Debug, Clone, Default)]
pub struct KeyedLocks {
    keys: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Holds one key of a [`KeyedLocks`] until dropped.
#[derive(Debug)]
pub struct KeyGuard(
    #[expect(dead_code, reason = "held for its Drop")] tokio::sync::OwnedMutexGuard<()>,
);

impl ExclusiveAccess for KeyedLocks {
    type Guard = KeyGuard;

    async fn lock(&self, key: &str, wait: Duration) -> Result<KeyGuard, RepositoryError> {
        let lock = {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            // Forget keys nobody holds or waits for, so the map stays small.
            keys.retain(|_, lock| Arc::strong_count(lock) > 1);
            Arc::clone(keys.entry(key.to_owned()).or_default())
        };
        tokio::time::timeout(wait, lock.lock_owned())
            .await
            .map(KeyGuard)
            .map_err(|_| RepositoryError::Timeout)
    }

    async fn unlock(&self, guard: KeyGuard) {
        drop(guard);
    }
}
