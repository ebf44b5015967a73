//! Lock-ordered retries: how units of one process that write the same rows
//! stop deadlocking and starving each other.
//!
//! Every row a unit writes is first claimed here, in process, without
//! waiting. A unit that finds a row claimed by another unit is doomed
//! anyway (under SERIALIZABLE it would wait for the row lock and then fail
//! with 40001, or deadlock if the other unit wants one of its rows), so it
//! gives up at once, before touching the server. Its next attempt first
//! takes every row it wanted, waiting in one global order (sorted keys)
//! and before it opens a transaction, so its snapshot is taken after the
//! rows are free. Waiting in one order cannot deadlock; the queue is FIFO,
//! so no unit starves; the rows stay claimed until the attempt ends.
//!
//! A repository update takes its one row the same way, waiting, for each
//! attempt from its load to its write: updates of one row in one process
//! take turns instead of making each other miss versions, and a unit
//! finding the row taken queues behind the update as behind a unit. The
//! update holds no other row and takes no connection before its turn, so
//! the two kinds of writer cannot wait for each other in a cycle.
//!
//! This only orders writers of one process. Writers of other processes are
//! still kept apart by Postgres (version checks, row locks), and units'
//! deadlocks broken after `StoreConfig::lock_wait`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The key that names `kind`'s row `id` for claims: units and repository
/// updates must name a row alike to keep each other out.
pub(crate) fn row_key(kind: &str, id: impl std::fmt::Display) -> String {
    format!("{kind}:{id}")
}

/// One process's claims on rows, by [`row_key`].
#[derive(Default)]
pub(crate) struct WriteClaims {
    rows: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// The rows one attempt of a unit holds, and the ones it wanted.
pub(crate) struct Claims {
    process: Arc<WriteClaims>,
    held: BTreeMap<String, OwnedMutexGuard<()>>,
    /// Every row this attempt wrote or tried to: what its next attempt
    /// takes up front.
    wanted: BTreeSet<String>,
}

impl WriteClaims {
    /// Takes `keys` in sorted order, waiting for each: the start of an
    /// attempt that already lost to other units once.
    pub(crate) async fn take_in_order(self: &Arc<Self>, keys: BTreeSet<String>) -> Claims {
        let mut held = BTreeMap::new();
        for key in keys {
            let guard = self.wait_for(&key).await;
            held.insert(key, guard);
        }
        Claims {
            process: Arc::clone(self),
            wanted: held.keys().cloned().collect(),
            held,
        }
    }

    /// Takes the one row `key`, waiting for its holder: a repository
    /// update's turn on its row, until the returned [`Turn`] drops.
    pub(crate) async fn take<'k>(self: &Arc<Self>, key: &'k str) -> Turn<'k> {
        let guard = self.wait_for(key).await;
        Turn {
            process: Arc::clone(self),
            key,
            guard: Some(guard),
        }
    }

    fn row(&self, key: &str) -> Arc<AsyncMutex<()>> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(row) = rows.get(key) {
            return Arc::clone(row);
        }
        Arc::clone(rows.entry(key.to_owned()).or_default())
    }

    /// Waits for the row `key` and holds it. A wait dropped unfinished
    /// (its caller's deadline, a client gone) forgets the row if no one
    /// else holds or awaits it: its holder may have left while this wait
    /// was the last one queued, and found the row still awaited.
    async fn wait_for(&self, key: &str) -> OwnedMutexGuard<()> {
        let row = self.row(key);
        let waiting = Waiting {
            process: self,
            key,
            row: Some(Arc::clone(&row)),
        };
        // Dropped unfinished, the lock's future (and its handle on the
        // row) goes first, `waiting` after it: the reverse of their order.
        let guard = row.lock_owned().await;
        waiting.finish();
        guard
    }

    /// Drops `handle` (a held row's guard, or a handle on the row) and
    /// forgets `key` if no one holds or awaits it any more. Under the
    /// map's lock: a handle dropped outside it could leave the row behind,
    /// its last other user having seen the handle still alive.
    fn let_go<H>(&self, key: &str, handle: H) {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        drop(handle);
        if rows.get(key).is_some_and(|row| Arc::strong_count(row) == 1) {
            rows.remove(key);
        }
    }
}

/// A wait for a row under way (see [`WriteClaims::wait_for`]).
struct Waiting<'a> {
    process: &'a WriteClaims,
    key: &'a str,
    /// This wait's handle on the row; `None` once the row is held.
    row: Option<Arc<AsyncMutex<()>>>,
}

impl Waiting<'_> {
    /// The row is held: its holder's release forgets it.
    fn finish(mut self) {
        self.row = None;
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(row) = self.row.take() {
            self.process.let_go(self.key, row);
        }
    }
}

/// One row a repository update holds for one attempt (see
/// [`WriteClaims::take`]).
pub(crate) struct Turn<'k> {
    process: Arc<WriteClaims>,
    key: &'k str,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            self.process.let_go(self.key, guard);
        }
    }
}

impl Claims {
    /// Claims `key` for this attempt without waiting; `false` if another
    /// unit holds it.
    pub(crate) fn try_claim(&mut self, key: String) -> bool {
        if self.held.contains_key(&key) {
            return true;
        }
        self.wanted.insert(key.clone());
        let row = self.process.row(&key);
        if let Ok(guard) = Arc::clone(&row).try_lock_owned() {
            self.held.insert(key, guard);
            return true;
        }
        // The holder may have left since, and found the row still in this
        // handle's hands.
        self.process.let_go(&key, row);
        false
    }

    /// Releases the held rows; returns the ones the next attempt takes.
    pub(crate) fn into_wanted(mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.wanted)
    }
}

impl Drop for Claims {
    fn drop(&mut self) {
        for (key, guard) in std::mem::take(&mut self.held) {
            self.process.let_go(&key, guard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|k| (*k).to_owned()).collect()
    }

    #[tokio::test]
    async fn a_claimed_row_is_refused_to_others_until_released() {
        let claims = Arc::new(WriteClaims::default());
        let mut first = claims.take_in_order(BTreeSet::new()).await;
        let mut second = claims.take_in_order(BTreeSet::new()).await;
        assert!(first.try_claim("a:1".into()));
        assert!(first.try_claim("a:1".into()), "a holder may claim again");
        assert!(!second.try_claim("a:1".into()));
        assert_eq!(second.into_wanted(), keys(&["a:1"]));
        drop(first);
        let mut third = claims.take_in_order(BTreeSet::new()).await;
        assert!(third.try_claim("a:1".into()));
    }

    #[tokio::test]
    async fn a_turn_on_a_row_shuts_out_units_and_later_turns_until_dropped() {
        let claims = Arc::new(WriteClaims::default());
        let turn = claims.take("a:1").await;
        let mut unit = claims.take_in_order(BTreeSet::new()).await;
        assert!(!unit.try_claim("a:1".into()), "the turn holds the row");
        let next = tokio::spawn({
            let claims = Arc::clone(&claims);
            async move { drop(claims.take("a:1").await) }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await; // lets the second turn run
        }
        assert!(!next.is_finished(), "a second turn waits for the first");
        drop(turn);
        next.await.expect("the second turn comes");
        drop(unit);
        assert!(claims.rows.lock().unwrap().is_empty(), "nothing left held");
    }

    #[tokio::test]
    async fn a_waiter_cancelled_after_the_release_forgets_the_row() {
        let claims = Arc::new(WriteClaims::default());
        let turn = claims.take("a:1").await;
        let ordered = claims.take_in_order(keys(&["b:2"])).await;
        let waiters = [
            tokio::spawn({
                let claims = Arc::clone(&claims);
                async move { drop(claims.take("a:1").await) }
            }),
            tokio::spawn({
                let claims = Arc::clone(&claims);
                async move { drop(claims.take_in_order(keys(&["b:2"])).await) }
            }),
        ];
        for _ in 0..10 {
            tokio::task::yield_now().await; // lets both waiters queue
        }
        // The holders leave, handing their rows to the waiters, which are
        // cancelled before they run again (a deadline firing then).
        drop(turn);
        drop(ordered);
        for waiter in &waiters {
            waiter.abort();
        }
        for waiter in waiters {
            assert!(waiter.await.unwrap_err().is_cancelled());
        }
        assert!(claims.rows.lock().unwrap().is_empty(), "no row left behind");
    }

    #[tokio::test]
    async fn released_rows_are_forgotten() {
        let claims = Arc::new(WriteClaims::default());
        let held = claims.take_in_order(keys(&["a:1", "b:2"])).await;
        assert_eq!(claims.rows.lock().unwrap().len(), 2);
        drop(held);
        assert!(claims.rows.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn taking_in_order_waits_for_the_holder() {
        let claims = Arc::new(WriteClaims::default());
        let held = claims.take_in_order(keys(&["a:1"])).await;
        let waiter = tokio::spawn({
            let claims = Arc::clone(&claims);
            async move {
                claims
                    .take_in_order(keys(&["a:1", "b:2"]))
                    .await
                    .into_wanted()
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        assert_eq!(waiter.await.unwrap(), keys(&["a:1", "b:2"]));
    }
}
