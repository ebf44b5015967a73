//! Contract rules for units run under a caller's key
//! ([`UnitOfWork::run_once`](crate::UnitOfWork::run_once)), on the suite's
//! own aggregates.

use std::convert::Infallible;

use super::contract_unit::TestStore;
use super::{ContractSubject, Counter, CounterId, Refused};
use crate::{Aggregate, Fingerprint, Keyed, Repository, RepositoryError, StoreExt, TxExt, TxToken};

/// Adds `by` to the counter `id` under `key`, as a use case would: the
/// request names what it asks for.
async fn bump_once<S: TestStore>(
    store: &S,
    key: TxToken,
    id: CounterId,
    by: u64,
) -> Result<Keyed<Counter>, RepositoryError> {
    store
        .run_once(key, Fingerprint::of(&("bump", id, by)), |tx| {
            Box::pin(async move {
                let bumped = tx
                    .of::<Counter>()
                    .update(id, |c| {
                        c.value += by;
                        Ok::<_, Infallible>(())
                    })
                    .await?;
                Ok(bumped.aggregate)
            })
        })
        .await
}

async fn a_counter<S: TestStore>(store: &S) -> CounterId {
    let counter = Counter::sample(CounterId::generate(), 0);
    let id = counter.id();
    store
        .repository::<Counter>()
        .create(TxToken::generate(), counter)
        .await
        .expect("create");
    id
}

/// A unit run under a key applies once: the same key and request again
/// (a client's retry) answers what the first run answered, as it was
/// then, and writes nothing; the key with another request is refused;
/// a young key survives a purge.
pub async fn a_keyed_unit_applies_once_and_replays_its_first_answer<S: TestStore>(store: S) {
    let id = a_counter(&store).await;
    let key = TxToken::generate();
    let first = bump_once(&store, key, id, 1).await.expect("first run");
    assert!(first.is_first(), "{first:?}");
    let first = first.into_inner();
    assert_eq!(first.value, 1);

    // Someone else changes the counter meanwhile: the replay is the first
    // answer all the same, not a fresh read.
    let repo = store.repository::<Counter>();
    repo.update(id, |c| {
        c.value += 10;
        Ok::<_, Infallible>(())
    })
    .await
    .expect("another update");
    store.purge_expired_tokens().await.expect("purge");

    let again = bump_once(&store, key, id, 1).await.expect("retry");
    assert_eq!(again, Keyed::Replayed(first.clone()), "the first answer");
    assert_eq!(repo.get(id).await.expect("get").value, 11, "applied once");

    let other = bump_once(&store, key, id, 2).await;
    assert!(
        matches!(other, Err(RepositoryError::TokenMismatch { token, .. }) if token == key),
        "{other:?}"
    );
    assert_eq!(repo.get(id).await.expect("get").value, 11);
}

/// A unit under a key that fails (a refusal) commits nothing, the key's
/// claim neither: the same key runs the unit again.
pub async fn a_failed_keyed_unit_leaves_its_key_unused<S: TestStore>(store: S) {
    let id = a_counter(&store).await;
    let key = TxToken::generate();
    let request = Fingerprint::of(&("bump", id, 1));
    let refused = store
        .run_once(key, request, |tx| {
            Box::pin(async move {
                tx.of::<Counter>()
                    .update(id, |c| {
                        c.value += 1;
                        Ok::<_, Refused>(())
                    })
                    .await?;
                Err::<Counter, _>(RepositoryError::Domain(Refused))
            })
        })
        .await;
    assert!(
        matches!(refused, Err(RepositoryError::Domain(Refused))),
        "{refused:?}"
    );
    let repo = store.repository::<Counter>();
    assert_eq!(repo.get(id).await.expect("get").value, 0, "nothing written");

    let ran = bump_once(&store, key, id, 1).await.expect("runs now");
    assert!(ran.is_first(), "{ran:?}");
    assert_eq!(repo.get(id).await.expect("get").value, 1);
}

/// Concurrent units under one key (a client retrying before its first
/// request answered) apply once: every one that answers answers the same.
pub async fn concurrent_units_under_one_key_apply_once<S: TestStore>(store: S) {
    let id = a_counter(&store).await;
    let key = TxToken::generate();
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { bump_once(&store, key, id, 1).await })
        })
        .collect();
    let mut answers = Vec::new();
    for run in runs {
        match run.await.expect("no panic") {
            Ok(answer) => answers.push(answer),
            Err(RepositoryError::Conflict { .. }) => {} // retries ran out: fine
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(!answers.is_empty(), "at least one run answered");
    assert_eq!(
        answers.iter().filter(|a| a.is_first()).count(),
        1,
        "one run applied: {answers:?}"
    );
    let first = answers[0].clone().into_inner();
    assert!(answers.into_iter().all(|a| a.into_inner() == first));
    let stored = store.repository::<Counter>().get(id).await.expect("get");
    assert_eq!(stored.value, 1, "applied once");
}
