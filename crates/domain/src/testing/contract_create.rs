//! Contract rules for `create`: the four idempotency outcomes and their races.

use uuid::Uuid;

use super::{ContractSubject, Ledger, LedgerId};
use crate::{Aggregate, Created, Repository, RepositoryError, TxToken, Version};

/// A fresh id of `A`'s type.
pub(super) fn new_id<A: Aggregate>() -> A::Id {
    A::Id::from(Uuid::now_v7())
}

/// A seed no other test uses, so suites can share one database.
pub(super) fn fresh_seed() -> u64 {
    Uuid::new_v4().as_u64_pair().0 >> 1
}

/// `create` stores a new aggregate and `get` returns it unchanged.
pub async fn create_then_get_returns_it<A: ContractSubject, R: Repository<A>>(repo: R) {
    let sample = A::sample(new_id::<A>(), fresh_seed());
    let created = repo
        .create(TxToken::generate(), sample.clone())
        .await
        .expect("create a new aggregate");
    assert!(created.is_new(), "a first create is new");
    let created = created.into_aggregate();
    assert_eq!(created.id(), sample.id());
    assert_eq!(created.fingerprint(), sample.fingerprint());
    let loaded = repo.get(sample.id()).await.expect("get what was created");
    assert_eq!(format!("{loaded:?}"), format!("{created:?}"));
}

/// Whatever version the caller set, a created aggregate is at version 1.
pub async fn create_stores_the_initial_version<A: ContractSubject, R: Repository<A>>(repo: R) {
    let mut sample = A::sample(new_id::<A>(), fresh_seed());
    sample.set_version(Version::new(41));
    let created = repo
        .create(TxToken::generate(), sample)
        .await
        .expect("create")
        .into_aggregate();
    assert_eq!(created.version(), Version::INITIAL);
    let loaded = repo.get(created.id()).await.expect("get");
    assert_eq!(loaded.version(), Version::INITIAL);
}

/// Same id and token again: the stored aggregate (as it is now), no write.
pub async fn retried_create_returns_the_stored_aggregate<A: ContractSubject, R: Repository<A>>(
    repo: R,
) {
    let token = TxToken::generate();
    let sample = A::sample(new_id::<A>(), fresh_seed());
    repo.create(token, sample.clone())
        .await
        .expect("first create");
    repo.update(sample.id(), ContractSubject::bump)
        .await
        .expect("update between the create and its retry");

    let retried = repo.create(token, sample.clone()).await.expect("retry");
    let Created::Replayed(retried) = retried else {
        panic!("a retry is a replay: {retried:?}");
    };
    assert_eq!(retried.id(), sample.id());
    assert_eq!(
        retried.version(),
        Version::new(2),
        "the retry wrote nothing"
    );
    assert_eq!(retried.count(), 1, "the retry returns the stored state");
}

/// A retry whose server assigned a new id (say, a retried `POST`) is still
/// the same request: it gets the first aggregate and creates nothing.
pub async fn retry_with_a_new_server_assigned_id_returns_the_first<
    A: ContractSubject,
    R: Repository<A>,
>(
    repo: R,
) {
    let token = TxToken::generate();
    let seed = fresh_seed();
    let first = repo
        .create(token, A::sample(new_id::<A>(), seed))
        .await
        .expect("first create")
        .into_aggregate();
    let second_id = new_id::<A>();
    let retried = repo
        .create(token, A::sample(second_id, seed))
        .await
        .expect("retry");
    assert!(!retried.is_new(), "a retry is a replay");
    assert_eq!(retried.aggregate().id(), first.id());
    assert!(matches!(
        repo.get(second_id).await,
        Err(RepositoryError::NotFound { .. })
    ));
}

/// Another token on an id that exists: `AlreadyExists`, nothing changes.
pub async fn other_token_on_an_existing_id_is_already_exists<
    A: ContractSubject,
    R: Repository<A>,
>(
    repo: R,
) {
    let sample = A::sample(new_id::<A>(), fresh_seed());
    repo.create(TxToken::generate(), sample.clone())
        .await
        .expect("create");
    let again = repo.create(TxToken::generate(), sample.clone()).await;
    assert!(
        matches!(again, Err(RepositoryError::AlreadyExists { .. })),
        "{again:?}"
    );
    let other_payload = A::sample(sample.id(), fresh_seed());
    let again = repo.create(TxToken::generate(), other_payload).await;
    assert!(
        matches!(again, Err(RepositoryError::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(
        repo.get(sample.id()).await.expect("get").version(),
        Version::INITIAL
    );
}

/// A token reused for another payload (same id or not): `TokenMismatch`.
pub async fn token_reused_for_another_payload_is_a_mismatch<
    A: ContractSubject,
    R: Repository<A>,
>(
    repo: R,
) {
    let token = TxToken::generate();
    let sample = A::sample(new_id::<A>(), fresh_seed());
    repo.create(token, sample.clone()).await.expect("create");

    for other in [
        A::sample(sample.id(), fresh_seed()),
        A::sample(new_id::<A>(), fresh_seed()),
    ] {
        let other_id = other.id();
        let result = repo.create(token, other).await;
        assert!(
            matches!(result, Err(RepositoryError::TokenMismatch { token: t, .. }) if t == token),
            "{result:?}"
        );
        if other_id != sample.id() {
            assert!(matches!(
                repo.get(other_id).await,
                Err(RepositoryError::NotFound { .. })
            ));
        }
    }
    let stored = repo.get(sample.id()).await.expect("get");
    assert_eq!(stored.fingerprint(), sample.fingerprint());
}

/// A token stays spent after its aggregate is deleted: a late retry gets
/// `NotFound` naming the aggregate the token made, instead of resurrecting
/// it, also when the retry carries a fresh server-assigned id.
pub async fn retry_after_delete_is_not_found<A: ContractSubject, R: Repository<A>>(repo: R) {
    let token = TxToken::generate();
    let seed = fresh_seed();
    let sample = A::sample(new_id::<A>(), seed);
    repo.create(token, sample.clone()).await.expect("create");
    repo.delete(sample.id()).await.expect("delete");
    let retried = repo.create(token, A::sample(new_id::<A>(), seed)).await;
    let original = sample.id().to_string();
    assert!(
        matches!(&retried, Err(RepositoryError::NotFound { id, .. }) if *id == original),
        "{retried:?} should name {original}"
    );
    assert!(matches!(
        repo.get(sample.id()).await,
        Err(RepositoryError::NotFound { .. })
    ));
}

/// Ten creates racing with one token (each with its own server-assigned id):
/// every caller gets the same aggregate and exactly one exists.
pub async fn racing_creates_with_one_token_store_one<A, R>(repo: R)
where
    A: ContractSubject,
    R: Repository<A> + Clone + 'static,
{
    let token = TxToken::generate();
    let seed = fresh_seed();
    let ids: Vec<A::Id> = (0..10).map(|_| new_id::<A>()).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let repo = repo.clone();
            let sample = A::sample(*id, seed);
            tokio::spawn(async move { repo.create(token, sample).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut new = 0;
    for task in tasks {
        let created = task.await.expect("no panic").expect("every racer succeeds");
        new += usize::from(created.is_new());
        winners.push(created.aggregate().id());
    }
    assert_eq!(new, 1, "one racer stored, the others replayed");
    winners.dedup();
    assert_eq!(
        winners.len(),
        1,
        "all racers got one aggregate: {winners:?}"
    );
    let mut stored = 0;
    for id in ids {
        if repo.get(id).await.is_ok() {
            stored += 1;
        }
    }
    assert_eq!(stored, 1, "exactly one aggregate was stored");
}

/// Two samples of one seed hold the same unique values: the second create
/// is `Duplicate` under a key the aggregate declares (named as declared on
/// every store: a Postgres constraint named otherwise fails this, and so
/// does a missing one), and writes nothing. An aggregate that declares no
/// key stores both: no store invents a uniqueness of its own.
pub async fn samples_sharing_unique_values_are_refused_under_the_declared_key<
    A: ContractSubject,
    R: Repository<A>,
>(
    repo: R,
) {
    let seed = fresh_seed();
    let first = A::sample(new_id::<A>(), seed);
    repo.create(TxToken::generate(), first)
        .await
        .expect("first");
    let second = A::sample(new_id::<A>(), seed);
    let (second_id, declared) = (second.id(), second.unique_keys());
    let result = repo.create(TxToken::generate(), second).await;
    if declared.is_empty() {
        assert!(result.is_ok(), "no key is declared: {result:?}");
        return;
    }
    let names: Vec<&str> = declared.iter().map(|key| key.name).collect();
    assert!(
        matches!(&result, Err(RepositoryError::Duplicate { kind, key })
            if *kind == A::KIND && names.contains(&key.as_str())),
        "{result:?}: expected Duplicate under one of {names:?}"
    );
    assert!(matches!(
        repo.get(second_id).await,
        Err(RepositoryError::NotFound { .. })
    ));
}

/// A unique value another aggregate holds: `Duplicate` naming the key,
/// nothing written; once the holder is deleted the value is free again.
pub async fn taken_unique_value_is_a_duplicate<R: Repository<Ledger>>(repo: R) {
    let handle = format!("handle-{}", fresh_seed());
    let holding = |owner: &str| Ledger {
        handle: Some(handle.clone()),
        ..Ledger::open(LedgerId::generate(), owner)
    };
    let holder = repo
        .create(TxToken::generate(), holding("ada"))
        .await
        .expect("first holder")
        .into_aggregate();
    let taken = holding("grace");
    let taken_id = taken.id();
    let result = repo.create(TxToken::generate(), taken).await;
    assert!(
        matches!(&result, Err(RepositoryError::Duplicate { key, .. }) if key == Ledger::HANDLE_KEY),
        "{result:?}"
    );
    assert!(matches!(
        repo.get(taken_id).await,
        Err(RepositoryError::NotFound { .. })
    ));
    let moved = repo
        .update(holder.id(), |ledger| {
            ledger.handle = Some(format!("{handle}-moved"));
            Ok::<_, RepositoryError>(())
        })
        .await;
    assert!(moved.is_ok(), "{moved:?}");
    repo.create(TxToken::generate(), holding("grace"))
        .await
        .expect("the value is free once its holder let go of it");
}
