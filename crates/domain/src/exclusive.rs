//! Keyed access: one exclusive holder or many shared holders per key,
//! across several transactions.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::RepositoryError;

/// Locks by key (say `user:42`), held across any number of operations and
/// transactions until released. Exclusion is cooperative: it holds only
/// against others who lock the same key.
///
/// A key has one exclusive holder ([`Self::lock`]) or any number of shared
/// holders ([`Self::lock_shared`]), never both: readers who must see the
/// key's state stay still while they work share it, a writer excludes them.
/// A waiting exclusive locker is served before shared lockers who come
/// after it, so a stream of readers cannot starve a writer (Postgres's
/// lock queue does the same).
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

    /// Waits at most `wait` for `key` to be free, then holds it alone.
    /// `Timeout` if someone else held it all that time.
    fn lock(
        &self,
        key: &str,
        wait: Duration,
    ) -> impl Future<Output = Result<Self::Guard, RepositoryError>> + Send;

    /// Waits at most `wait` until no one holds `key` exclusively (or waits
    /// to), then holds it beside any other shared holders. `Timeout` if it
    /// stayed exclusively held, or awaited, all that time.
    fn lock_shared(
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
    keys: Arc<Mutex<HashMap<String, Holders>>>,
    released: Arc<tokio::sync::Notify>,
    max_hold: Duration,
}

/// Who holds one key, and how many wait to hold it alone.
#[derive(Debug, Default)]
struct Holders {
    holds: Vec<Hold>,
    exclusive_waiters: usize,
}

/// One holder of a key, and until when.
#[derive(Debug, Clone, Copy)]
struct Hold {
    generation: u64,
    until: Instant,
    shared: bool,
}

impl Holders {
    /// Until when at most a `shared` (or exclusive) locker must wait before
    /// looking again (a release wakes it earlier); `None` if it may take
    /// the key now.
    fn blocked_until(&self, shared: bool, at_most: Instant) -> Option<Instant> {
        let all = self.holds.iter();
        if !shared {
            return all.map(|hold| hold.until).min();
        }
        let exclusive = all
            .clone()
            .filter(|hold| !hold.shared)
            .map(|hold| hold.until);
        match exclusive.min() {
            Some(until) => Some(until),
            // Queued behind a waiting writer, until the holds it waits for end.
            None if self.exclusive_waiters > 0 => {
                Some(all.map(|h| h.until).min().unwrap_or(at_most))
            }
            None => None,
        }
    }
}

/// Holds one key of a [`KeyedLocks`] until released, dropped or expired.
#[derive(Debug)]
pub struct KeyGuard {
    key: String,
    generation: u64,
    locks: KeyedLocks,
}

impl Drop for KeyGuard {
    /// Frees this hold, unless it expired already.
    fn drop(&mut self) {
        self.locks.change(&self.key, |holders| {
            holders
                .holds
                .retain(|hold| hold.generation != self.generation);
        });
        self.locks.released.notify_waiters();
    }
}

/// Counts an exclusive locker as waiting for as long as it lives, so shared
/// lockers queue behind it; dropping it (the wait ended, or was cancelled)
/// lets them in again.
struct Waiting<'a> {
    locks: &'a KeyedLocks,
    key: &'a str,
}

impl<'a> Waiting<'a> {
    fn new(locks: &'a KeyedLocks, key: &'a str) -> Self {
        locks.change(key, |holders| holders.exclusive_waiters += 1);
        Self { locks, key }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.locks
            .change(self.key, |holders| holders.exclusive_waiters -= 1);
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

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, Holders>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the holders of `key`, forgetting keys no one holds or awaits.
    fn change(&self, key: &str, change: impl FnOnce(&mut Holders)) {
        let mut keys = self.keys();
        let holders = keys.entry(key.to_owned()).or_default();
        change(holders);
        if holders.holds.is_empty() && holders.exclusive_waiters == 0 {
            keys.remove(key);
        }
    }

    /// Takes `key` if nothing keeps a `shared` (or exclusive) locker out;
    /// otherwise says until when to wait at most before looking again.
    fn try_take(&self, key: &str, shared: bool) -> Result<KeyGuard, Instant> {
        static GENERATION: AtomicU64 = AtomicU64::new(0);
        let now = Instant::now();
        let mut keys = self.keys();
        let holders = keys.entry(key.to_owned()).or_default();
        holders.holds.retain(|hold| hold.until > now);
        if let Some(until) = holders.blocked_until(shared, now + self.max_hold) {
            return Err(until);
        }
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
        holders.holds.push(Hold {
            generation,
            until: now + self.max_hold,
            shared,
        });
        Ok(KeyGuard {
            key: key.to_owned(),
            generation,
            locks: self.clone(),
        })
    }

    fn held(&self, guard: &KeyGuard) -> bool {
        let now = Instant::now();
        self.keys().get(&guard.key).is_some_and(|holders| {
            holders
                .holds
                .iter()
                .any(|hold| hold.generation == guard.generation && hold.until > now)
        })
    }

    async fn take(
        &self,
        key: &str,
        shared: bool,
        wait: Duration,
    ) -> Result<KeyGuard, RepositoryError> {
        let give_up = Instant::now() + wait;
        let _waiting = (!shared).then(|| Waiting::new(self, key));
        loop {
            // Registered before looking, so a release in between still wakes us.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let blocked_until = match self.try_take(key, shared) {
                Ok(guard) => return Ok(guard),
                Err(until) => until,
            };
            if Instant::now() >= give_up {
                return Err(RepositoryError::Timeout);
            }
            // Woken by a release, by the hold's expiry, or by giving up.
            let _ = tokio::time::timeout_at(blocked_until.min(give_up), released).await;
        }
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
        self.take(key, false, wait).await
    }

    async fn lock_shared(&self, key: &str, wait: Duration) -> Result<KeyGuard, RepositoryError> {
        self.take(key, true, wait).await
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
