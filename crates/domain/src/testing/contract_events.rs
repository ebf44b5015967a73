//! Contract rules for domain events: stored with their change, in the same
//! transaction, exactly once, on the suite's `Ledger` (whose `open` and
//! `append` record events).

use std::convert::Infallible;

use serde_json::json;

use super::contract_unit::TestStore;
use super::{Ledger, LedgerId, Refused};
use crate::{Inbox, Nested, Repository, RepositoryError, StoreExt, StoredEvent, TxExt, TxToken};

type Result<T, E = Infallible> = std::result::Result<T, RepositoryError<E>>;

/// Each event as (name, version, payload), for comparing.
fn summary(events: &[StoredEvent]) -> Vec<(&str, u64, serde_json::Value)> {
    events
        .iter()
        .map(|e| (e.name.as_str(), e.version.get(), e.payload.clone()))
        .collect()
}

/// An update closure that appends `amount` to a ledger (and records it).
fn append(amount: i64) -> impl FnMut(&mut Ledger) -> std::result::Result<(), Infallible> {
    move |ledger| {
        ledger.append(amount);
        Ok(())
    }
}

/// A create stores the events its aggregate recorded, at version 1, and an
/// update its own, at the version it stored; a replayed create stores
/// nothing more; neither the returned nor the stored aggregate still holds
/// events.
pub async fn events_are_stored_with_their_change_once<S: TestStore>(store: S) {
    let repo = store.repository::<Ledger>();
    let (id, token) = (LedgerId::generate(), TxToken::generate());
    let created = repo.create(token, Ledger::open(id, "ada")).await;
    assert!(created.expect("create").aggregate().events.is_empty());
    let replayed = repo.create(token, Ledger::open(id, "ada")).await;
    assert!(replayed.expect("replay").aggregate().events.is_empty());
    let updated = repo.update(id, append(5)).await.expect("update");
    assert!(updated.aggregate.events.is_empty());
    assert!(repo.get(id).await.expect("get").events.is_empty());

    let events = repo.events(id).await.expect("events");
    assert_eq!(
        summary(&events),
        vec![
            ("ledger_opened", 1, json!({ "owner": "ada" })),
            ("entry_appended", 2, json!({ "amount": 5 })),
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.aggregate_kind == "ledger" && e.aggregate_id == id.as_uuid())
    );
    assert_ne!(
        events[0].id, events[1].id,
        "each event has an id of its own"
    );
    assert!(
        repo.events(LedgerId::generate())
            .await
            .expect("events")
            .is_empty()
    );
}

/// A closure that refuses records nothing; closures re-run after a
/// conflict record their events once: 8 tasks appending 3 times each store
/// 24 `entry_appended` events, one per version.
pub async fn refused_and_rerun_closures_record_nothing_extra<S: TestStore>(store: S) {
    let repo = store.repository::<Ledger>();
    let id = LedgerId::generate();
    repo.create(TxToken::generate(), Ledger::open(id, "ada"))
        .await
        .expect("create");
    let refused = repo
        .update(id, |ledger| {
            ledger.append(9);
            std::result::Result::<(), _>::Err(Refused)
        })
        .await;
    assert!(matches!(refused, Err(RepositoryError::Domain(Refused))));

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let repo = store.repository::<Ledger>();
                for _ in 0..3 {
                    repo.update(id, append(1)).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no panic");
    }
    let events = repo.events(id).await.expect("events");
    let versions: Vec<u64> = events
        .iter()
        .filter(|e| e.name == "entry_appended")
        .map(|e| e.version.get())
        .collect();
    assert_eq!(versions, (2..=25).collect::<Vec<u64>>(), "{events:?}");
    assert_eq!(events.len(), 25, "the opening, then one per append");
}

/// A unit's events are stored with the rest of its writes: none when it
/// fails, and none of a nested part that fails, while the rest commit.
pub async fn a_units_events_commit_and_roll_back_with_it<S: TestStore>(store: S) {
    let id = LedgerId::generate();
    let failed = store
        .run(|tx| {
            Box::pin(async move {
                let ledger = Ledger::open(id, "ada");
                tx.of::<Ledger>()
                    .create(TxToken::generate(), ledger)
                    .await?;
                tx.of::<Ledger>().update(id, append(1)).await?;
                Result::<(), Refused>::Err(RepositoryError::Domain(Refused))
            })
        })
        .await;
    assert!(matches!(failed, Err(RepositoryError::Domain(Refused))));
    let repo = store.repository::<Ledger>();
    assert!(repo.events(id).await.expect("events").is_empty());

    let token = TxToken::generate();
    let refused = store
        .run(|tx| {
            Box::pin(async move {
                tx.of::<Ledger>()
                    .create(token, Ledger::open(id, "ada"))
                    .await?;
                let nested = tx
                    .nested(|tx| {
                        Box::pin(async move {
                            tx.of::<Ledger>().update(id, append(2)).await?;
                            Result::<(), Refused>::Err(RepositoryError::Domain(Refused))
                        })
                    })
                    .await;
                // Judged after the unit, which may re-run this attempt.
                let refused = matches!(nested, Err(RepositoryError::Domain(Refused)));
                tx.of::<Ledger>().update(id, append(3)).await?;
                Result::<_>::Ok(refused)
            })
        })
        .await
        .expect("the unit commits");
    assert!(refused, "the nested part's error came back");
    assert_eq!(
        summary(&repo.events(id).await.expect("events")),
        vec![
            ("ledger_opened", 1, json!({ "owner": "ada" })),
            ("entry_appended", 2, json!({ "amount": 3 })),
        ]
    );
}

/// Whether `consumer` sees `event` for the first time, in a unit of its own
/// that fails afterwards when `fail` is set.
pub(crate) async fn deliver<S: TestStore>(
    store: &S,
    consumer: &'static str,
    event: uuid::Uuid,
    fail: bool,
) -> Result<bool, Refused> {
    store
        .run(|tx| {
            Box::pin(async move {
                let first = tx.first_delivery(consumer, event).await?;
                if fail {
                    return Err(RepositoryError::Domain(Refused));
                }
                Ok(first)
            })
        })
        .await
}

/// The inbox: an event is a first delivery once per consumer; the record
/// rolls back with a unit that fails; of concurrent deliveries of one
/// event, exactly one has its effect.
pub async fn a_consumer_handles_each_event_once<S: TestStore>(store: S) {
    let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    assert!(
        deliver(&store, "stats", first, false)
            .await
            .expect("first delivery")
    );
    assert!(
        !deliver(&store, "stats", first, false)
            .await
            .expect("redelivery")
    );
    assert!(
        deliver(&store, "mailer", first, false)
            .await
            .expect("another consumer")
    );
    let failed = deliver(&store, "stats", second, true).await;
    assert!(matches!(failed, Err(RepositoryError::Domain(Refused))));
    assert!(
        deliver(&store, "stats", second, false)
            .await
            .expect("after a rollback")
    );

    let id = LedgerId::generate();
    store
        .repository::<Ledger>()
        .create(TxToken::generate(), Ledger::open(id, "ada"))
        .await
        .expect("create");
    let event = uuid::Uuid::new_v4();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .run(|tx| {
                        Box::pin(async move {
                            if tx.first_delivery("stats", event).await? {
                                tx.of::<Ledger>().update(id, append(1)).await?;
                            }
                            Result::<_>::Ok(())
                        })
                    })
                    .await
                    .expect("a delivery");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no panic");
    }
    let ledger = store.repository::<Ledger>().get(id).await.expect("get");
    assert_eq!(ledger.entries, vec![1], "one of six deliveries took effect");
}
