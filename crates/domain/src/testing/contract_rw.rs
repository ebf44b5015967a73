//! Contract rules for `get`, `update`, `delete` and `list`.

use std::collections::BTreeSet;
use std::convert::Infallible;

use super::contract_create::{fresh_seed, new_id};
use super::{ContractSubject, Refused};
use crate::{Aggregate, PageRequest, Repository, RepositoryError, TxToken, UniqueKey, Version};

async fn create_sample<A: ContractSubject, R: Repository<A>>(repo: &R) -> A {
    repo.create(TxToken::generate(), A::sample(new_id::<A>(), fresh_seed()))
        .await
        .expect("create a sample")
        .into_aggregate()
}

fn assert_not_found<T: std::fmt::Debug, E: std::fmt::Debug>(
    result: &Result<T, RepositoryError<E>>,
) {
    assert!(
        matches!(result, Err(RepositoryError::NotFound { .. })),
        "expected NotFound, got {result:?}"
    );
}

/// `get`, `update` and `delete` of an id never stored: `NotFound`, and the
/// closure never runs.
pub async fn unknown_ids_are_not_found<A: ContractSubject, R: Repository<A>>(repo: R) {
    let id = new_id::<A>();
    assert_not_found(&repo.get(id).await);
    assert_not_found(
        &repo
            .update(id, |_| -> Result<(), Infallible> {
                panic!("the closure must not run for a missing aggregate")
            })
            .await,
    );
    assert_not_found(&repo.delete(id).await);
}

/// Each successful update bumps the version by exactly one and returns the
/// aggregate as stored, with what the closure returned.
pub async fn update_returns_the_closure_output_and_bumps_the_version<
    A: ContractSubject,
    R: Repository<A>,
>(
    repo: R,
) {
    let created = create_sample::<A, R>(&repo).await;
    for round in 1..=3_u64 {
        let updated = repo
            .update(created.id(), |a| {
                a.bump()?;
                Ok::<_, Refused>(a.count())
            })
            .await
            .expect("update");
        assert_eq!(updated.output, round);
        assert_eq!(updated.aggregate.version(), Version::new(round + 1));
        assert_eq!(updated.aggregate.count(), round);
        let loaded = repo.get(created.id()).await.expect("get");
        assert_eq!(format!("{loaded:?}"), format!("{:?}", updated.aggregate));
        assert_eq!(loaded.count(), round);
    }
}

/// A closure that changes the aggregate and then fails writes nothing.
pub async fn closure_error_writes_nothing<A: ContractSubject, R: Repository<A>>(repo: R) {
    let created = create_sample::<A, R>(&repo).await;
    let result = repo
        .update(created.id(), |a| -> Result<(), Refused> {
            a.bump()?;
            Err(Refused)
        })
        .await;
    assert!(
        matches!(result, Err(RepositoryError::Domain(Refused))),
        "{result:?}"
    );
    let loaded = repo.get(created.id()).await.expect("get");
    assert_eq!(format!("{loaded:?}"), format!("{created:?}"));
}

/// A closure that panics writes nothing, the panic reaches the caller, and
/// the repository keeps working.
pub async fn closure_panic_writes_nothing_and_propagates<A, R>(repo: R)
where
    A: ContractSubject,
    R: Repository<A> + Clone + 'static,
{
    let created = create_sample::<A, R>(&repo).await;
    let id = created.id();
    let task = {
        let repo = repo.clone();
        tokio::spawn(async move {
            repo.update(id, |a| -> Result<(), Refused> {
                a.bump()?;
                panic!("a bug in a closure")
            })
            .await
        })
    };
    let joined = task.await;
    assert!(joined.is_err_and(|e| e.is_panic()), "the panic propagates");
    let loaded = repo.get(id).await.expect("the repository still works");
    assert_eq!(format!("{loaded:?}"), format!("{created:?}"));
    repo.update(id, ContractSubject::bump)
        .await
        .expect("and still writes");
}

/// Racing closures return outputs computed from the state they committed
/// on: of 20 concurrent updates that return the count they saw, those the
/// aggregate's rules accepted saw each of 0..accepted exactly once, however
/// often the repository re-ran them.
pub async fn retried_closure_sees_fresh_state<A, R>(repo: R)
where
    A: ContractSubject,
    R: Repository<A> + Clone + 'static,
{
    let id = create_sample::<A, R>(&repo).await.id();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move {
                repo.update(id, |a| {
                    let seen = a.count();
                    a.bump()?;
                    Ok::<_, Refused>(seen)
                })
                .await
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        if let Some(updated) = accepted(task.await.expect("no panic")) {
            seen.insert(updated.output);
        }
    }
    let accepted = u64::try_from(seen.len()).expect("at most 20");
    assert!(accepted >= 3, "a fresh sample takes at least 3 bumps");
    assert_eq!(seen, (0..accepted).collect::<BTreeSet<u64>>());
}

/// Each declared unique key finds its holder (`get_by`), as stored; a value
/// nobody holds, or a key the aggregate does not declare, is `NotFound`.
pub async fn get_by_finds_the_holder_of_each_declared_key<A: ContractSubject, R: Repository<A>>(
    repo: R,
) {
    let created = create_sample::<A, R>(&repo).await;
    let stored = repo.get(created.id()).await.expect("get");
    for key in created.unique_keys() {
        let found = repo.get_by(key.clone()).await;
        let found = found.unwrap_or_else(|e| panic!("get_by {key:?}: {e:?}"));
        assert_eq!(format!("{found:?}"), format!("{stored:?}"), "{key:?}");
        let nobody = repo
            .get_by(UniqueKey::new(key.name, "nobody holds this"))
            .await;
        assert_not_found(&nobody);
    }
    let undeclared = repo.get_by(UniqueKey::new("no_such_key", "x")).await;
    assert_not_found(&undeclared);
}

/// `update_by` changes the holder of each declared key as `update` does
/// (one version more, the closure's output back); a value nobody holds is
/// `NotFound` and runs no closure.
pub async fn update_by_changes_the_holder_of_each_declared_key<
    A: ContractSubject,
    R: Repository<A>,
>(
    repo: R,
) {
    let created = create_sample::<A, R>(&repo).await;
    let mut version = created.version();
    for key in created.unique_keys() {
        let updated = repo
            .update_by(key.clone(), |a| {
                a.bump()?;
                Ok::<_, Refused>(a.count())
            })
            .await
            .unwrap_or_else(|e| panic!("update_by {key:?}: {e:?}"));
        version = version.next();
        assert_eq!(updated.aggregate.id(), created.id(), "{key:?}");
        assert_eq!(updated.aggregate.version(), version);
        assert_eq!(updated.output, updated.aggregate.count());
        let nobody = UniqueKey::new(key.name, "nobody holds this");
        let missing = repo
            .update_by(nobody, |_| -> Result<(), Refused> {
                panic!("no holder, no closure")
            })
            .await;
        assert!(
            matches!(missing, Err(RepositoryError::NotFound { .. })),
            "{missing:?}"
        );
    }
    assert_eq!(
        repo.get(created.id()).await.expect("get").version(),
        version
    );
}

/// `delete` removes the aggregate; a second delete is `NotFound`.
pub async fn delete_removes<A: ContractSubject, R: Repository<A>>(repo: R) {
    let created = create_sample::<A, R>(&repo).await;
    repo.delete(created.id()).await.expect("delete");
    assert_not_found(&repo.get(created.id()).await);
    assert_not_found(&repo.delete(created.id()).await);
}

/// Paging with a small limit visits every aggregate once, in id order, and
/// ends with a page that has no `next`.
pub async fn list_pages_through_everything_in_id_order<A: ContractSubject, R: Repository<A>>(
    repo: R,
) {
    let mut mine = BTreeSet::new();
    for _ in 0..7 {
        mine.insert(create_sample::<A, R>(&repo).await.id());
    }
    let mut request = Some(PageRequest::first(3));
    let mut listed = Vec::new();
    let mut pages = 0;
    while let Some(page_request) = request {
        let page = repo.list(page_request).await.expect("list");
        assert!(page.items.len() <= 3);
        listed.extend(page.items.iter().map(Aggregate::id));
        request = page.next;
        pages += 1;
        assert!(pages < 100_000, "paging must terminate");
    }
    assert!(
        listed.windows(2).all(|w| w[0] < w[1]),
        "strictly id-ordered"
    );
    let seen: BTreeSet<_> = listed.into_iter().filter(|id| mine.contains(id)).collect();
    assert_eq!(seen, mine, "every aggregate listed exactly once");
}

/// 50 concurrent bumps of one aggregate: none that the aggregate's rules
/// accepted is lost (its count and version say exactly how many), and none
/// passes a rule that refused it (a limit holds under concurrency).
pub async fn concurrent_updates_lose_nothing<A, R>(repo: R)
where
    A: ContractSubject,
    R: Repository<A> + Clone + 'static,
{
    let id = create_sample::<A, R>(&repo).await.id();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.update(id, ContractSubject::bump).await })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted +=
            u64::from(super::contract_rw::accepted(task.await.expect("no panic")).is_some());
    }
    assert!(accepted >= 3, "a fresh sample takes at least 3 bumps");
    let loaded = repo.get(id).await.expect("get");
    assert_eq!(loaded.count(), accepted);
    assert_eq!(loaded.version(), Version::new(accepted + 1));
}

/// An update's outcome: `Some` when it landed, `None` when the aggregate's
/// rules refused it; any other failure fails the check.
pub(crate) fn accepted<A, R: std::fmt::Debug>(
    outcome: Result<crate::Updated<A, R>, RepositoryError<Refused>>,
) -> Option<crate::Updated<A, R>>
where
    A: std::fmt::Debug,
{
    match outcome {
        Ok(updated) => Some(updated),
        Err(RepositoryError::Domain(Refused)) => None,
        Err(other) => panic!("update: {other:?}"),
    }
}
