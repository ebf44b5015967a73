//! Contract rules for units of work, on the suite's own aggregates. Each
//! check expects a store that holds no counters or ledgers yet.

use std::convert::Infallible;

use super::{ContractSubject, Counter, CounterId, Ledger, LedgerId, Refused};
use crate::{
    Aggregate, Created, Nested, Repository, RepositoryError, Store, StoreExt, Stores, Transaction,
    TxExt, TxToken, Version,
};

/// A store whose units reach the suite's aggregates.
pub trait TestStore: Store + Stores<Counter> + Stores<Ledger> {}

impl<S: Store + Stores<Counter> + Stores<Ledger>> TestStore for S {}

type Result<T, E = Infallible> = std::result::Result<T, RepositoryError<E>>;

/// Every aggregate of type `A`, read on one snapshot.
async fn all<A: Aggregate, S: TestStore + Stores<A>>(store: &S) -> Vec<A> {
    store
        .read(|tx| Box::pin(async move { tx.of::<A>().all().await }))
        .await
        .expect("read every aggregate")
}

/// An update closure that appends `amount` to a ledger.
fn append(amount: i64) -> impl FnOnce(&mut Ledger) -> std::result::Result<(), Infallible> {
    move |ledger| {
        ledger.entries.push(amount);
        Ok(())
    }
}

/// Opens a ledger and logs it with a counter, unless the token says that
/// was done already: the shape of every "create and record it" use case.
async fn open_and_log<Tx>(tx: &mut Tx, token: TxToken, ledger: Ledger) -> Result<Created<Ledger>>
where
    Tx: Transaction<Ledger> + Transaction<Counter>,
{
    let created = tx.of::<Ledger>().create(token, ledger).await?;
    if let Created::New(ledger) = &created {
        let log = Counter::sample(CounterId::generate(), 0);
        let log = Counter {
            label: format!("opened {}", ledger.owner),
            ..log
        };
        tx.of::<Counter>().create(token.derive("log"), log).await?;
    }
    Ok(created)
}

async fn open<S: TestStore>(store: &S, token: TxToken, owner: &str) -> Result<Created<Ledger>> {
    store
        .run(|tx| {
            let ledger = Ledger::open(LedgerId::generate(), owner);
            Box::pin(open_and_log(tx, token, ledger))
        })
        .await
}

/// A unit that opens a ledger, appends to it and logs it commits all
/// three writes, and its reads see its own writes.
pub async fn a_unit_commits_all_of_its_writes<S: TestStore>(store: S) {
    let ledger = store
        .run(|tx| {
            Box::pin(async move {
                let ledger = Ledger::open(LedgerId::generate(), "ada");
                let created = open_and_log(tx, TxToken::generate(), ledger).await?;
                let id = created.aggregate().id();
                tx.of::<Ledger>().update(id, append(5)).await?;
                let seen = tx.of::<Ledger>().get(id).await?;
                Result::<_>::Ok(seen)
            })
        })
        .await
        .expect("the unit commits");
    assert_eq!(ledger.entries, vec![5], "the unit read its own write");
    assert_eq!(ledger.version(), Version::new(2));
    assert_eq!(all::<Ledger, _>(&store).await, vec![ledger]);
    let log = all::<Counter, _>(&store).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].label, "opened ada");
}

/// A unit's updates build on each other: a second update of an aggregate
/// starts from the first's result, a read sees both, and what commits is
/// the last state, with every update's events at its own version.
pub async fn a_unit_builds_on_its_own_updates<S: TestStore>(store: S) {
    let (first, second) = (
        open(&store, TxToken::generate(), "first").await,
        open(&store, TxToken::generate(), "second").await,
    );
    let first = first.expect("a ledger").into_aggregate().id();
    let second = second.expect("a ledger").into_aggregate().id();
    let seen = store
        .run(|tx| {
            Box::pin(async move {
                let add = |amount| {
                    move |l: &mut Ledger| {
                        l.append(amount);
                        Ok::<_, Infallible>(())
                    }
                };
                tx.of::<Ledger>().update(first, add(1)).await?;
                tx.of::<Ledger>().update(second, add(7)).await?;
                let again = tx.of::<Ledger>().update(first, add(2)).await?;
                let seen = tx.of::<Ledger>().get(first).await?;
                Result::<_>::Ok((again.aggregate, seen))
            })
        })
        .await
        .expect("the unit commits");
    let (returned, seen) = seen;
    assert_eq!(
        returned.entries,
        vec![1, 2],
        "the second update saw the first"
    );
    assert_eq!(returned.version(), Version::new(3));
    assert_eq!(seen, returned, "the read saw both updates");
    let stored = all::<Ledger, _>(&store).await;
    let of = |id| stored.iter().find(|l| l.id() == id).expect("stored");
    assert_eq!(
        (of(first).entries.clone(), of(first).version()),
        (vec![1, 2], Version::new(3))
    );
    assert_eq!(
        (of(second).entries.clone(), of(second).version()),
        (vec![7], Version::new(2))
    );
    let events = store
        .repository::<Ledger>()
        .events(first)
        .await
        .expect("events");
    let appended: Vec<(u64, serde_json::Value)> = events
        .iter()
        .filter(|e| e.name == "entry_appended")
        .map(|e| (e.version.get(), e.payload.clone()))
        .collect();
    assert_eq!(
        appended,
        vec![
            (2, serde_json::json!({ "amount": 1 })),
            (3, serde_json::json!({ "amount": 2 }))
        ],
        "each update's event, once, at the version it made"
    );
}

/// A unique value already taken fails the update that claims it, at the
/// call, inside a unit too: the closure may recover, and the unit commits
/// its other updates, those before the refused one included.
pub async fn a_taken_unique_value_fails_its_update_inside_a_unit<S: TestStore>(store: S) {
    let holder = open(&store, TxToken::generate(), "holder").await;
    let holder = holder.expect("a ledger").into_aggregate().id();
    let other = open(&store, TxToken::generate(), "other").await;
    let other = other.expect("a ledger").into_aggregate().id();
    let take = |handle: &'static str| {
        move |l: &mut Ledger| {
            l.handle = Some(handle.to_owned());
            Ok::<_, Infallible>(())
        }
    };
    store
        .run(|tx| Box::pin(async move { tx.of::<Ledger>().update(holder, take("taken")).await }))
        .await
        .expect("the handle is free");
    let refused = store
        .run(|tx| {
            Box::pin(async move {
                tx.of::<Ledger>().update(other, append(4)).await?;
                let refused = tx.of::<Ledger>().update(other, take("taken")).await;
                tx.of::<Ledger>().update(other, append(6)).await?;
                Result::<_>::Ok(refused.map(drop))
            })
        })
        .await
        .expect("the unit commits");
    assert!(
        matches!(&refused, Err(RepositoryError::Duplicate { key, .. }) if *key == Ledger::HANDLE_KEY),
        "{refused:?}"
    );
    let stored = all::<Ledger, _>(&store).await;
    let other = stored.iter().find(|l| l.id() == other).expect("stored");
    assert_eq!(other.entries, vec![4, 6]);
    assert_eq!(other.handle, None);
    assert_eq!(other.version(), Version::new(3));
}

/// A unit that fails after writing leaves nothing behind: not its create,
/// not its update of an existing aggregate, not its log entry.
pub async fn a_failing_unit_writes_nothing<S: TestStore>(store: S) {
    let first = open(&store, TxToken::generate(), "first")
        .await
        .expect("a first ledger")
        .into_aggregate()
        .id();
    let before = (
        all::<Ledger, _>(&store).await,
        all::<Counter, _>(&store).await,
    );

    let second = LedgerId::generate();
    let result = store
        .run(|tx| {
            Box::pin(async move {
                let ledger = Ledger::open(second, "second");
                open_and_log(tx, TxToken::generate(), ledger).await?;
                tx.of::<Ledger>().update(first, append(1)).await?;
                Result::<(), Refused>::Err(RepositoryError::Domain(Refused))
            })
        })
        .await;
    assert!(
        matches!(result, Err(RepositoryError::Domain(Refused))),
        "{result:?}"
    );
    let after = (
        all::<Ledger, _>(&store).await,
        all::<Counter, _>(&store).await,
    );
    assert_eq!(after, before, "nothing was written");
    let read = store
        .run(|tx| Box::pin(async move { Result::<_>::Ok(tx.of::<Ledger>().get(second).await) }))
        .await
        .expect("the read unit runs");
    assert!(
        matches!(read, Err(RepositoryError::NotFound { .. })),
        "{read:?}"
    );
}

/// Ten units race, each reading every counter, creating one more whose
/// value is how many it saw, and bumping every one it saw. Run one at a
/// time, that leaves every counter at 9: a unit that missed a concurrent
/// one's counter (a phantom) or lost its bump shows as another value.
pub async fn concurrent_units_are_serializable<S: TestStore>(store: S) {
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .run(|tx| {
                        Box::pin(async move {
                            let seen = tx.of::<Counter>().all().await?;
                            let mut fresh = Counter::sample(CounterId::generate(), 0);
                            fresh.value = seen.len() as u64;
                            tx.of::<Counter>()
                                .create(TxToken::generate(), fresh)
                                .await?;
                            let bumped = seen
                                .into_iter()
                                .map(|mut c| {
                                    c.value += 1;
                                    c
                                })
                                .collect();
                            tx.of::<Counter>().save_all(bumped).await?;
                            Result::<_>::Ok(())
                        })
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no panic").expect("every unit lands");
    }
    let values: Vec<u64> = all::<Counter, _>(&store)
        .await
        .iter()
        .map(|c| c.value)
        .collect();
    assert_eq!(values, vec![9; 10], "as if the units ran one at a time");
}

/// A unit retried with its token replays: it returns the ledger the first
/// run opened and writes nothing, not even its log entry; the token reused
/// for another ledger is a mismatch.
pub async fn a_retried_unit_writes_nothing_twice<S: TestStore>(store: S) {
    let token = TxToken::generate();
    let first = open(&store, token, "grace").await.expect("open");
    assert!(first.is_new());
    let before = (
        all::<Ledger, _>(&store).await,
        all::<Counter, _>(&store).await,
    );

    let retried = open(&store, token, "grace").await.expect("retry");
    let Created::Replayed(retried) = retried else {
        panic!("a retry is a replay: {retried:?}");
    };
    assert_eq!(retried.id(), first.aggregate().id());
    let after = (
        all::<Ledger, _>(&store).await,
        all::<Counter, _>(&store).await,
    );
    assert_eq!(after, before, "the retry wrote nothing");

    let reused = open(&store, token, "mallory").await;
    assert!(
        matches!(reused, Err(RepositoryError::TokenMismatch { .. })),
        "{reused:?}"
    );
}

/// A nested unit that fails is rolled back alone when the caller recovers:
/// the outer unit's writes stay, including to aggregates the nested part
/// changed before failing; a nested unit that succeeds commits with it.
pub async fn a_recovered_nested_failure_keeps_the_rest<S: TestStore>(store: S) {
    let (failed, kept) = (LedgerId::generate(), LedgerId::generate());
    let outer = store
        .run(|tx| {
            Box::pin(async move {
                let outer = tx
                    .of::<Ledger>()
                    .create(
                        TxToken::generate(),
                        Ledger::open(LedgerId::generate(), "outer"),
                    )
                    .await?
                    .into_aggregate();
                let id = outer.id();
                let recovered = tx
                    .nested(|tx| {
                        Box::pin(async move {
                            tx.of::<Ledger>()
                                .create(TxToken::generate(), Ledger::open(failed, "failed"))
                                .await?;
                            tx.of::<Ledger>().update(id, append(7)).await?;
                            Result::<(), Refused>::Err(RepositoryError::Domain(Refused))
                        })
                    })
                    .await;
                // Judged after the unit: an attempt that meets a conflict
                // sees it here instead, and is re-run.
                let refused = matches!(recovered, Err(RepositoryError::Domain(Refused)));
                tx.nested(|tx| {
                    Box::pin(async move {
                        tx.of::<Ledger>()
                            .create(TxToken::generate(), Ledger::open(kept, "kept"))
                            .await?;
                        Result::<_>::Ok(())
                    })
                })
                .await?;
                let seen = tx.of::<Ledger>().get(id).await?;
                Result::<_>::Ok((outer, refused, seen.entries.is_empty()))
            })
        })
        .await
        .expect("the outer unit commits");
    let (outer, refused, undone) = outer;
    assert!(refused, "the nested part's error came back");
    assert!(undone, "the nested change is undone");

    let mut stored: Vec<(LedgerId, usize)> = all::<Ledger, _>(&store)
        .await
        .iter()
        .map(|l| (l.id(), l.entries.len()))
        .collect();
    stored.sort();
    let mut expected = vec![(outer.id(), 0), (kept, 0)];
    expected.sort();
    assert_eq!(stored, expected, "only the successful nested part stays");
}

/// After a recovered nested failure, the outer unit's later writes still
/// roll back with it: also to a type the nested part was the first to touch.
pub async fn writes_after_a_recovered_nested_failure_roll_back_with_the_unit<S: TestStore>(
    store: S,
) {
    let result = store
        .run(|tx| {
            Box::pin(async move {
                let recovered = tx
                    .nested(|tx| {
                        Box::pin(async move {
                            let first = Counter::sample(CounterId::generate(), 1);
                            tx.of::<Counter>()
                                .create(TxToken::generate(), first)
                                .await?;
                            Result::<(), Refused>::Err(RepositoryError::Domain(Refused))
                        })
                    })
                    .await;
                assert!(recovered.is_err());
                let later = Counter::sample(CounterId::generate(), 2);
                tx.of::<Counter>()
                    .create(TxToken::generate(), later)
                    .await?;
                Result::<(), Refused>::Err(RepositoryError::Domain(Refused))
            })
        })
        .await;
    assert!(matches!(result, Err(RepositoryError::Domain(Refused))));
    assert!(
        all::<Counter, _>(&store).await.is_empty(),
        "the failed unit left nothing"
    );
}

/// A repository call made inside a unit (instead of `tx.of::<A>()`) would
/// run outside the unit's transaction: every store refuses it at once with
/// `Storage` (in memory it used to wait for the unit for ever).
pub async fn a_repository_call_inside_a_unit_is_refused<S: TestStore>(store: S) {
    let outside = store.clone();
    let unit = store.run(|_tx| {
        let outside = outside.clone();
        Box::pin(async move {
            let counter = Counter::sample(CounterId::generate(), 1);
            let created = outside
                .repository::<Counter>()
                .create(TxToken::generate(), counter)
                .await;
            Result::<_>::Ok(created)
        })
    });
    let answered = tokio::time::timeout(std::time::Duration::from_secs(5), unit)
        .await
        .expect("refused at once, not a wait for the unit");
    let created = answered.expect("the unit itself runs");
    assert!(
        matches!(created, Err(RepositoryError::Storage(_))),
        "{created:?}"
    );
    assert!(all::<Counter, _>(&store).await.is_empty());
    let after = store
        .repository::<Counter>()
        .list(crate::PageRequest::first(1))
        .await;
    assert!(
        after.is_ok(),
        "outside a unit the repository works: {after:?}"
    );
}

/// On a store that keeps tokens for no time at all, a purge forgets them,
/// and the inbox's records with them: the same token then creates again,
/// and the same event is a first delivery again (the documented limit of
/// retention).
pub async fn expired_tokens_are_forgotten<S: TestStore>(store: S) {
    use super::contract_events::deliver;
    let token = TxToken::generate();
    let first = Counter::sample(CounterId::generate(), 1);
    let repo = store.repository::<Counter>();
    assert!(repo.create(token, first).await.expect("create").is_new());
    let event = uuid::Uuid::new_v4();
    assert!(
        deliver(&store, "stats", event, false)
            .await
            .expect("delivered")
    );
    let purged = store.purge_expired_tokens().await.expect("purge");
    assert!(purged >= 2, "purged {purged}");
    assert!(
        deliver(&store, "stats", event, false)
            .await
            .expect("delivered"),
        "a forgotten inbox record lets the event in again"
    );
    let again = Counter::sample(CounterId::generate(), 1);
    let created = repo.create(token, again).await.expect("create again");
    assert!(
        created.is_new(),
        "a forgotten token creates anew: {created:?}"
    );
}

/// On a store with the default retention (a day), a purge keeps a token
/// claimed just now, and an inbox record made just now: a retry still
/// replays, a redelivery still has no effect.
pub async fn young_tokens_survive_a_purge<S: TestStore>(store: S) {
    use super::contract_events::deliver;
    let token = TxToken::generate();
    let repo = store.repository::<Counter>();
    let counter = Counter::sample(CounterId::generate(), 1);
    repo.create(token, counter.clone()).await.expect("create");
    let event = uuid::Uuid::new_v4();
    assert!(
        deliver(&store, "stats", event, false)
            .await
            .expect("delivered")
    );
    store.purge_expired_tokens().await.expect("purge");
    let retried = repo.create(token, counter).await.expect("retry");
    assert!(!retried.is_new(), "the token is still remembered");
    assert!(
        !deliver(&store, "stats", event, false)
            .await
            .expect("delivered"),
        "and so is the inbox record"
    );
}

/// A nested failure that the caller propagates rolls back the whole unit.
pub async fn an_unrecovered_nested_failure_rolls_back_everything<S: TestStore>(store: S) {
    let result = store
        .run(|tx| {
            Box::pin(async move {
                open_and_log(
                    tx,
                    TxToken::generate(),
                    Ledger::open(LedgerId::generate(), "a"),
                )
                .await?;
                tx.nested(|tx| {
                    Box::pin(async move {
                        tx.of::<Counter>()
                            .create(
                                TxToken::generate(),
                                Counter::sample(CounterId::generate(), 1),
                            )
                            .await?;
                        Result::<(), Refused>::Err(RepositoryError::Domain(Refused))
                    })
                })
                .await?;
                Result::<_, Refused>::Ok(())
            })
        })
        .await;
    assert!(
        matches!(result, Err(RepositoryError::Domain(Refused))),
        "{result:?}"
    );
    assert!(all::<Ledger, _>(&store).await.is_empty());
    assert!(all::<Counter, _>(&store).await.is_empty());
}

/// A read unit is read-only on every store: a write through it fails
/// (`Storage`, as Postgres refuses it) and leaves nothing behind.
pub async fn a_read_unit_refuses_writes<S: TestStore>(store: S) {
    let existing = open(&store, TxToken::generate(), "ada")
        .await
        .expect("a ledger")
        .into_aggregate()
        .id();
    let before = all::<Ledger, _>(&store).await;
    let created = store
        .read(|tx| {
            Box::pin(async move {
                let counter = Counter::sample(CounterId::generate(), 1);
                tx.of::<Counter>()
                    .create(TxToken::generate(), counter)
                    .await?;
                Result::<_>::Ok(())
            })
        })
        .await;
    assert!(
        matches!(created, Err(RepositoryError::Storage(_))),
        "{created:?}"
    );
    let updated = store
        .read(|tx| Box::pin(async move { tx.of::<Ledger>().update(existing, append(9)).await }))
        .await;
    assert!(
        matches!(updated, Err(RepositoryError::Storage(_))),
        "{updated:?}"
    );
    assert_eq!(
        all::<Ledger, _>(&store).await,
        before,
        "nothing was written"
    );
    assert_eq!(
        all::<Counter, _>(&store).await.len(),
        1,
        "only the log entry of the open"
    );
}

/// Set `first`: counters labelled `item first..first + 30`, all at `value`.
fn set(first: u32, value: u64) -> Vec<Counter> {
    (first..first + 30)
        .map(|n| {
            let label = format!("item {n}");
            Counter {
                // Ids derived from the label: an item keeps its id across sets.
                id: CounterId::from(uuid::Uuid::new_v5(&uuid::Uuid::nil(), label.as_bytes())),
                version: Version::INITIAL,
                label,
                value,
            }
        })
        .collect()
}

/// What a reader sees: each counter's label and value, sorted.
fn seen(counters: &[Counter]) -> Vec<(String, u64)> {
    let mut seen: Vec<_> = counters
        .iter()
        .map(|c| (c.label.clone(), c.value))
        .collect();
    seen.sort();
    seen
}

async fn replace<S: TestStore>(store: &S, desired: Vec<Counter>) -> Result<crate::Replaced> {
    store
        .run(|tx| {
            let desired = desired.clone();
            Box::pin(async move {
                tx.of::<Counter>()
                    .replace_all(TxToken::generate(), desired)
                    .await
            })
        })
        .await
}

/// Replacing a whole set while readers read: every read sees exactly the
/// old set or exactly the new one, never a mix; a set with an id twice
/// changes nothing.
pub async fn replacing_a_set_shows_readers_old_or_new_never_a_mix<S: TestStore>(store: S) {
    let (old, new) = (set(0, 100), set(10, 250));
    let first = replace(&store, old.clone()).await.expect("first import");
    assert_eq!(
        first,
        crate::Replaced {
            created: 30,
            ..Default::default()
        }
    );
    let (old_view, new_view) = (seen(&old), seen(&new));

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The imports start once every reader has read once, so that readers
    // overlap them however the runtime schedules the tasks.
    let started = std::sync::Arc::new(tokio::sync::Barrier::new(3));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, done, started) = (store.clone(), done.clone(), started.clone());
            let (old_view, new_view) = (old_view.clone(), new_view.clone());
            tokio::spawn(async move {
                let check = |view: Vec<(String, u64)>| {
                    assert!(
                        view == old_view || view == new_view,
                        "a mixed set: {view:?}"
                    );
                };
                check(seen(&all::<Counter, _>(&store).await));
                started.wait().await;
                let mut reads = 1;
                loop {
                    check(seen(&all::<Counter, _>(&store).await));
                    reads += 1;
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        return reads;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    started.wait().await;
    for round in 0..10 {
        let target = if round % 2 == 0 { &new } else { &old };
        let report = replace(&store, target.clone()).await.expect("import");
        tokio::task::yield_now().await;
        assert_eq!(
            (report.created, report.updated, report.deleted),
            (10, 20, 10)
        );
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        assert!(
            reader.await.expect("no panic") > 1,
            "the reader read during the imports"
        );
    }

    let mut twice = new.clone();
    twice.push(new[0].clone());
    let result = replace(&store, twice).await;
    assert!(
        matches!(result, Err(RepositoryError::AlreadyExists { .. })),
        "{result:?}"
    );
    assert_eq!(
        seen(&all::<Counter, _>(&store).await),
        old_view,
        "nothing changed"
    );
}

/// Inside a unit, `get_by` finds an aggregate by a declared key, as the
/// unit changed it so far.
pub async fn a_unit_finds_an_aggregate_by_its_key<S: TestStore>(store: S) {
    let ledger = Ledger::sample(LedgerId::generate(), super::contract_create::fresh_seed());
    let (id, key) = (ledger.id(), ledger.unique_keys().remove(0));
    store
        .repository::<Ledger>()
        .create(TxToken::generate(), ledger)
        .await
        .expect("create");
    let found = store
        .run(|tx| {
            let key = key.clone();
            Box::pin(async move {
                tx.of::<Ledger>().update(id, append(5)).await?;
                tx.of::<Ledger>().get_by(key).await
            })
        })
        .await
        .expect("the unit finds it");
    assert_eq!((found.id(), found.entries.clone()), (id, vec![5]));
}
