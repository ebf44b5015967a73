//! Keyed exclusive access: one holder per key, across several transactions.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

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
///
/// A hold lasts at most the store's maximum hold (`max_lock_hold`, 30 s by
/// default), so a stuck holder cannot block its key for ever. A holder that
/// outlived it has lost the key, perhaps to someone else: it learns so from
/// [`Self::still_held`] (ask before acting on the key) and from
/// [`Self::unlock`], both `LockLost`.
pub trait ExclusiveAccess: Send + Sync {
    /// Proof of holding a key. Dropping it releases the key too (on
    /// Postgres by discarding its session); [`Self::unlock`] is cheaper.
    type Guard: Send + std::fmt::Debug + 'static;

    /// Waits at most `wait` for `key` to be free, then holds it.
    /// `Timeout` if someone else held it all that time.
    fn lock(
        &self,
        key: &str,
        wait: Duration,
    ) -> impl Future<Output = Result<Self::Guard, RepositoryError>> + Send;

    /// `Ok` while the guard still holds its key; `LockLost` once the hold
    /// expired. Ask before acting on what the key protects.
    fn still_held(
        &self,
        guard: &mut Self::Guard,
    ) -> impl Future<Output = Result<(), RepositoryError>> + Send;

    /// Releases the key; `LockLost` if the hold had already expired (what
    /// was done under it since may have overlapped another holder).
    fn unlock(
        &self,
        guard: Self::Guard,
    ) -> impl Future<Output = Result<(), RepositoryError>> + Send;
}

/// In-process keyed locks, for [`InMemoryStore`](crate::InMemoryStore):
/// the same contract as Postgres's, holds expiring after `max_hold`.
#[derive(Debug, Clone)]
pub struct KeyedLocks {
    keys: Arc<Mutex<HashMap<String, Hold>>>,
    released: Arc<tokio::sync::Notify>,
    max_hold: Duration,
}

/// Who holds a key, and until when.
#[derive(Debug, Clone, Copy)]
struct Hold {
    generation: u64,
    until: Instant,
}

/// Holds one key of a [`KeyedLocks`] until released, dropped or expired.
#[derive(Debug)]
pub struct KeyGuard {
    key: String,
    generation: u64,
    locks: KeyedLocks,
}

impl Drop for KeyGuard {
    /// Frees the key, unless the hold expired and someone else has it now.
    fn drop(&mut self) {
        let mut keys = self.locks.keys();
        if keys
            .get(&self.key)
            .is_some_and(|hold| hold.generation == self.generation)
        {
            keys.remove(&self.key);
        }
        drop(keys);
        self.locks.released.notify_waiters();
    }
}

impl Default for KeyedLocks {
    fn default() -> Self {
        Self::with_max_hold(Duration::from_secs(30))
    }
}

impl KeyedLocks {
    /// Locks whose holds expire after `max_hold`.
    pub fn with_max_hold(max_hold: Duration) -> Self {
        Self {
            keys: Arc::default(),
            released: Arc::default(),
            max_hold,
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hold>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `key` if it is free or its hold expired; otherwise says until
    /// when the current hold lasts.
    fn try_take(&self, key: &str, generation: &mut u64) -> Result<KeyGuard, Instant> {
        let now = Instant::now();
        let mut keys = self.keys();
        keys.retain(|_, hold| hold.until > now);
        if let Some(hold) = keys.get(key) {
            return Err(hold.until);
        }
        *generation += 1;
        let hold = Hold {
            generation: *generation,
            until: now + self.max_hold,
        };
        keys.insert(key.to_owned(), hold);
        Ok(KeyGuard {
            key: key.to_owned(),
            generation: hold.generation,
            locks: self.clone(),
        })
    }

    fn held(&self, guard: &KeyGuard) -> bool {
        self.keys()
            .get(&guard.key)
            .is_some_and(|hold| hold.generation == guard.generation && hold.until > Instant::now())
    }
}

fn lost(key: &str) -> RepositoryError {
    RepositoryError::LockLost {
        key: key.chars().take(64).collect(),
    }
}

impl ExclusiveAccess for KeyedLocks {
    type Guard = KeyGuard;

    async fn lock(&self, key: &str, wait: Duration) -> Result<KeyGuard, RepositoryError> {
        static GENERATION: Mutex<u64> = Mutex::new(0);
        let give_up = Instant::now() + wait;
        loop {
            // Registered before looking, so a release in between still wakes us.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let taken = {
                let mut generation = GENERATION.lock().unwrap_or_else(PoisonError::into_inner);
                self.try_take(key, &mut generation)
            };
            let held_until = match taken {
                Ok(guard) => return Ok(guard),
                Err(until) => until,
            };
            if Instant::now() >= give_up {
                return Err(RepositoryError::Timeout);
            }
            // Woken by a release, by the hold's expiry, or by giving up.
            let _ = tokio::time::timeout_at(held_until.min(give_up), released).await;
        }
    }

    async fn still_held(&self, guard: &mut KeyGuard) -> Result<(), RepositoryError> {
        if self.held(guard) {
            Ok(())
        } else {
            Err(lost(&guard.key))
        }
    }

    async fn unlock(&self, guard: KeyGuard) -> Result<(), RepositoryError> {
        let outcome = if self.held(&guard) {
            Ok(())
        } else {
            Err(lost(&guard.key))
        };
        drop(guard); // frees the key
        outcome
    }
}
