//! The in-memory repository's speed: what the contract suite and domain
//! tests pay per operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain::example::{Account, AccountError, AccountId, UserId};
use domain::testing::{ContractSubject, Counter, CounterId};
use domain::{
    Aggregate, InMemoryRepository, InMemoryStore, Repository, RepositoryError, TxExt, TxToken,
    UnitOfWork,
};
use rand::Rng;

use crate::measure::{self, Counters, Figures};

/// Figures for get, update and create on 10 000 counters, one task each.
pub async fn bench(duration: Duration) -> Vec<(&'static str, Figures)> {
    // Behind an `Arc`, so that handing each operation the repository costs
    // one count, not a clone of its handles: the figure is the store's.
    let repo = Arc::new(InMemoryRepository::<Counter>::new());
    let mut ids = Vec::new();
    for seed in 0..10_000 {
        let counter = Counter::sample(CounterId::generate(), seed);
        ids.push(
            repo.create(TxToken::generate(), counter)
                .await
                .expect("create")
                .aggregate()
                .id,
        );
    }
    let ids = Arc::new(ids);
    let counters = Arc::new(Counters::default());
    let pick = |ids: &Arc<Vec<CounterId>>| ids[rand::rng().random_range(0..ids.len())];
    let (r, i) = (repo.clone(), ids.clone());
    let get = measure::run(1, duration, &counters, move |_, _| {
        let (repo, id) = (r.clone(), pick(&i));
        async move { Ok(repo.get(id).await.map(drop)?) }
    })
    .await;
    let (r, i) = (repo.clone(), ids.clone());
    let update = measure::run(1, duration, &counters, move |_, _| {
        let (repo, id) = (r.clone(), pick(&i));
        async move {
            repo.update(id, |c| {
                c.value += 1;
                Ok::<_, std::convert::Infallible>(())
            })
            .await?;
            Ok(())
        }
    })
    .await;
    // Numbered across the warm-up and the measured run (whose `n`s both
    // start at 0): a number used twice would be a replay, not a create.
    let next = Arc::new(AtomicU64::new(0));
    let create = measure::run(1, duration, &counters, move |_, _| {
        create_counter(repo.clone(), 1, next.fetch_add(1, Ordering::Relaxed))
    })
    .await;
    // The same into stores of at most 10 000 counters, the size of a
    // domain test's: a fresh store every 10 000 creates (dropping the full
    // one is counted too). The row above grows one store to millions,
    // where the B-tree's and the hash table's growth costs most.
    let current = Arc::new(std::sync::Mutex::new(Arc::new(
        InMemoryRepository::<Counter>::new(),
    )));
    let next = Arc::new(AtomicU64::new(0));
    let create_small = measure::run(1, duration, &counters, move |_, _| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let repo = {
            let mut current = current.lock().expect("not poisoned");
            if n.is_multiple_of(10_000) {
                *current = Arc::new(InMemoryRepository::new());
            }
            current.clone()
        };
        create_counter(repo, 2, n)
    })
    .await;
    vec![
        ("get", get),
        ("update", update),
        ("create (with token)", create),
        ("create (with token), stores of 10 000", create_small),
        (
            "unit: transfer, 300 accounts",
            transfers(300, duration, &counters).await,
        ),
        (
            "unit: transfer, 30 000 accounts",
            transfers(30_000, duration, &counters).await,
        ),
    ]
}

/// Creates counter `n` of a run, its id and token made from `(run, n)`,
/// not drawn from the OS's random source: the figure is the store's cost,
/// not `getrandom`'s.
async fn create_counter(
    repo: Arc<InMemoryRepository<Counter>>,
    run: u64,
    n: u64,
) -> anyhow::Result<()> {
    let id = CounterId::from(uuid::Uuid::from_u64_pair(run, 2 * n));
    let token = TxToken::from(uuid::Uuid::from_u64_pair(run, 2 * n + 1));
    repo.create(token, Counter::sample(id, n)).await?;
    Ok(())
}

/// A unit of work moving money between two of `accounts` accounts in an
/// `InMemoryStore`: its cost must not grow with the store, since a unit
/// undoes its own writes instead of copying whole tables.
async fn transfers(accounts: usize, duration: Duration, counters: &Arc<Counters>) -> Figures {
    let store = InMemoryStore::new();
    let repo = store.repository::<Account>();
    let owner = UserId::generate();
    let mut ids = Vec::with_capacity(accounts);
    for _ in 0..accounts {
        let mut account = Account::open(AccountId::generate(), owner);
        account.deposit(1_000_000).expect("deposit");
        let opened = repo.create(TxToken::generate(), account).await;
        ids.push(opened.expect("open").aggregate().id());
    }
    let ids = Arc::new(ids);
    measure::run(1, duration, counters, move |_, _| {
        let (store, ids) = (store.clone(), Arc::clone(&ids));
        async move {
            let from = rand::rng().random_range(0..ids.len());
            let to = (from + rand::rng().random_range(1..ids.len())) % ids.len();
            let (from, to) = (ids[from], ids[to]);
            store
                .run(|tx| {
                    Box::pin(async move {
                        tx.of::<Account>().update(from, |a| a.withdraw(1)).await?;
                        tx.of::<Account>().update(to, |a| a.deposit(1)).await?;
                        Ok::<_, RepositoryError<AccountError>>(())
                    })
                })
                .await?;
            Ok(())
        }
    })
    .await
}
