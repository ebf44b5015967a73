//! The framework's contract suites, run unchanged against every store, on
//! the suite's own aggregates: `Counter` (one table on Postgres) and
//! `Ledger` (two tables, a unique value).

use domain::testing::{Counter, Ledger};
use domain::{InMemoryRepository, InMemoryStore};
use integration_tests::{CounterMapping, LedgerMapping, StoreWithDb, WithDb};
use storage::PgRepository;

domain::contract_suite!(
    counters_in_memory,
    Counter,
    InMemoryRepository::<Counter>::new()
);
domain::contract_suite!(
    ledgers_in_memory,
    Ledger,
    InMemoryRepository::<Ledger>::new()
);
domain::contract_suite!(
    counters_on_postgres,
    Counter,
    WithDb::<PgRepository<CounterMapping>>::fresh().await
);
domain::contract_suite!(
    ledgers_on_postgres,
    Ledger,
    WithDb::<PgRepository<LedgerMapping>>::fresh().await
);

domain::unit_of_work_suite!(units_in_memory, InMemoryStore::new());
domain::unit_of_work_suite!(units_on_postgres, StoreWithDb::fresh().await);

domain::exclusive_access_suite!(locks_in_memory, {
    let store = InMemoryStore::new().with_max_lock_hold(std::time::Duration::from_millis(300));
    (store.clone(), store.repository::<Counter>())
});
domain::exclusive_access_suite!(locks_on_postgres, {
    let store = StoreWithDb::fresh_with(storage::StoreConfig {
        max_lock_hold: std::time::Duration::from_millis(300),
        ..storage::StoreConfig::default()
    })
    .await;
    let counters = store.store().repository::<Counter>();
    (store, counters)
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_in_memory() {
    let store = InMemoryStore::with_token_retention(std::time::Duration::ZERO);
    domain::testing::contract::expired_tokens_are_forgotten(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_on_postgres() {
    let config = storage::StoreConfig {
        token_retention: std::time::Duration::ZERO,
        ..storage::StoreConfig::default()
    };
    domain::testing::contract::expired_tokens_are_forgotten(StoreWithDb::fresh_with(config).await)
        .await;
}

#[tokio::test]
async fn ledgers_in_memory_reject_a_taken_unique_value() {
    domain::testing::contract::taken_unique_value_is_a_duplicate(
        InMemoryRepository::<Ledger>::new(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledgers_on_postgres_reject_a_taken_unique_value() {
    domain::testing::contract::taken_unique_value_is_a_duplicate(
        WithDb::<PgRepository<LedgerMapping>>::fresh().await,
    )
    .await;
}
