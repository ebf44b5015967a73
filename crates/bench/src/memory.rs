//! The in-memory repository's speed: what the contract suite and domain
//! tests pay per operation.

use std::sync::Arc;
use std::time::Duration;

use domain::testing::{ContractSubject, Counter, CounterId};
use domain::{InMemoryRepository, Repository, TxToken};
use rand::Rng;

use crate::measure::{self, Counters, Figures};

/// Figures for get, update and create on 10 000 counters, one task each.
pub async fn bench(duration: Duration) -> Vec<(&'static str, Figures)> {
    let repo = InMemoryRepository::<Counter>::new();
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
    let create = measure::run(1, duration, &counters, move |_, n| {
        let repo = repo.clone();
        async move {
            repo.create(
                TxToken::generate(),
                Counter::sample(CounterId::generate(), n),
            )
            .await?;
            Ok(())
        }
    })
    .await;
    vec![
        ("get", get),
        ("update", update),
        ("create (with token)", create),
    ]
}
