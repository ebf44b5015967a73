//! Contract rules for keyed exclusive access.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use super::{ContractSubject, Counter, CounterId};
use crate::{Aggregate, ExclusiveAccess, Repository, RepositoryError, TxToken};

/// Two workers each run 5 read-then-write sequences (two separate
/// operations, with a pause between) under the counter's key: none is lost,
/// which without the key they would be.
pub async fn a_key_admits_one_holder_at_a_time<L, R>((locks, repo): (L, R))
where
    L: ExclusiveAccess + Clone + 'static,
    R: Repository<Counter> + Clone + 'static,
{
    let counter = repo
        .create(
            TxToken::generate(),
            Counter::sample(CounterId::generate(), 1),
        )
        .await
        .expect("create")
        .into_aggregate();
    let id = counter.id();
    let key = format!("counter:{id}");
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (locks, repo, key) = (locks.clone(), repo.clone(), key.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    let guard = locks
                        .lock(&key, Duration::from_secs(5))
                        .await
                        .expect("lock");
                    let seen = repo.get(id).await.expect("read").value;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    repo.update(id, |c| {
                        c.value = seen + 1;
                        Ok::<_, Infallible>(())
                    })
                    .await
                    .expect("write");
                    locks.unlock(guard).await.expect("released in time");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("no panic");
    }
    assert_eq!(
        repo.get(id).await.expect("get").value,
        10,
        "no step was lost"
    );
}

/// A held key makes others wait, and give up with `Timeout` after their
/// wait; other keys are free meanwhile; a dropped guard frees its key.
pub async fn a_held_key_times_out_others_and_a_dropped_guard_frees_it<L, R>((locks, _repo): (L, R))
where
    L: ExclusiveAccess + Clone + 'static,
    R: Repository<Counter> + Clone + 'static,
{
    let key = format!("user:{}", uuid::Uuid::new_v4());
    let held = locks
        .lock(&key, Duration::from_secs(1))
        .await
        .expect("lock");

    let wait = Duration::from_millis(200);
    let started = Instant::now();
    let refused = locks.lock(&key, wait).await;
    let waited = started.elapsed();
    assert!(
        matches!(refused, Err(RepositoryError::Timeout)),
        "{refused:?}"
    );
    assert!(waited >= wait, "gave up early: {waited:?}");
    assert!(
        waited < Duration::from_secs(3),
        "waited too long: {waited:?}"
    );

    let other = locks
        .lock(&format!("{key}-other"), Duration::from_millis(200))
        .await
        .expect("another key is free");
    locks.unlock(other).await.expect("released");

    drop(held);
    let again = locks
        .lock(&key, Duration::from_secs(3))
        .await
        .expect("dropping the guard freed the key");
    locks.unlock(again).await.expect("released");
}

/// A hold that outlived the store's maximum hold (these stores are built
/// with 300 ms) is lost: another locker gets the key, and the first holder
/// learns it, from `still_held` before acting and from `unlock`.
pub async fn an_expired_hold_is_lost_and_its_holder_told<L, R>((locks, _repo): (L, R))
where
    L: ExclusiveAccess + Clone + 'static,
    R: Repository<Counter> + Clone + 'static,
{
    let key = format!("account:{}", uuid::Uuid::new_v4());
    let mut first = locks
        .lock(&key, Duration::from_secs(1))
        .await
        .expect("lock");
    assert!(locks.still_held(&mut first).await.is_ok(), "held at first");

    tokio::time::sleep(Duration::from_millis(600)).await;
    let checked = locks.still_held(&mut first).await;
    assert!(
        matches!(checked, Err(RepositoryError::LockLost { .. })),
        "{checked:?}"
    );
    let second = locks
        .lock(&key, Duration::from_secs(2))
        .await
        .expect("the expired hold freed the key");
    let released = locks.unlock(first).await;
    assert!(
        matches!(released, Err(RepositoryError::LockLost { .. })),
        "{released:?}"
    );
    locks
        .unlock(second)
        .await
        .expect("the new holder releases it");
}

/// The hold's bound is absolute: a holder that keeps asking whether it
/// still holds the key (every 50 ms) loses it all the same once the hold
/// passes the store's 300 ms, and another locker gets the key then, not
/// only once the first holder goes quiet.
pub async fn a_holder_that_polls_still_loses_the_key_at_the_bound<L, R>((locks, _repo): (L, R))
where
    L: ExclusiveAccess + Clone + 'static,
    R: Repository<Counter> + Clone + 'static,
{
    let key = format!("account:{}", uuid::Uuid::new_v4());
    let mut first = locks
        .lock(&key, Duration::from_secs(1))
        .await
        .expect("lock");
    let taken = Instant::now();
    let waiter = {
        let (locks, key) = (locks.clone(), key.clone());
        tokio::spawn(async move {
            let second = locks.lock(&key, Duration::from_secs(2)).await;
            (second, taken.elapsed())
        })
    };
    let lost_after = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if locks.still_held(&mut first).await.is_err() {
            break taken.elapsed();
        }
        assert!(
            taken.elapsed() < Duration::from_secs(2),
            "a polling holder kept the key past its bound"
        );
    };
    assert!(
        lost_after >= Duration::from_millis(250),
        "lost early: {lost_after:?}"
    );
    let (second, second_waited) = waiter.await.expect("no panic");
    let second = second.expect("the bound freed the key for the waiter");
    assert!(
        second_waited < Duration::from_millis(1200),
        "the waiter got the key only after {second_waited:?}"
    );
    assert!(matches!(
        locks.unlock(first).await,
        Err(RepositoryError::LockLost { .. })
    ));
    locks
        .unlock(second)
        .await
        .expect("the new holder releases it");
}

/// Shared holders of a key coexist and keep an exclusive locker out; a
/// shared locker who comes while an exclusive one waits queues behind it
/// (so readers cannot starve a writer); an exclusive holder keeps shared
/// lockers out. Holds at most 3 keys at once, none longer than the 300 ms
/// these stores let a hold last.
pub async fn shared_holders_coexist_and_queue_behind_a_waiting_writer<L, R>((locks, _repo): (L, R))
where
    L: ExclusiveAccess + Clone + 'static,
    R: Repository<Counter> + Clone + 'static,
{
    let key = format!("catalog:{}", uuid::Uuid::new_v4());
    let short = Duration::from_millis(60);
    let reader = locks
        .lock_shared(&key, short)
        .await
        .expect("a free key is shared at once");
    let second = locks
        .lock_shared(&key, short)
        .await
        .expect("a shared key admits another shared holder");
    let refused = locks.lock(&key, short).await;
    assert!(
        matches!(refused, Err(RepositoryError::Timeout)),
        "an exclusive locker waits for shared holders: {refused:?}"
    );
    locks.unlock(second).await.expect("released");
    locks.unlock(reader).await.expect("released");

    let reader = locks.lock_shared(&key, short).await.expect("free again");
    let writer = tokio::spawn({
        let (locks, key) = (locks.clone(), key.clone());
        async move { locks.lock(&key, Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(60)).await; // the writer waits now
    let late = locks.lock_shared(&key, short).await;
    assert!(
        matches!(late, Err(RepositoryError::Timeout)),
        "a shared locker queues behind a waiting writer: {late:?}"
    );
    locks.unlock(reader).await.expect("released");
    let writer = writer
        .await
        .expect("no panic")
        .expect("the writer gets the key once the readers are gone");
    let kept_out = locks.lock_shared(&key, short).await;
    assert!(
        matches!(kept_out, Err(RepositoryError::Timeout)),
        "an exclusive holder keeps shared lockers out: {kept_out:?}"
    );
    locks.unlock(writer).await.expect("released");
    let after = locks
        .lock_shared(&key, short)
        .await
        .expect("free again once the writer is done");
    locks.unlock(after).await.expect("released");
}
