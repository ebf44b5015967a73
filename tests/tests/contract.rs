//! The repository contract suite, run unchanged against every store.

use domain::example::{Order, User};
use domain::testing::Counter;
use domain::{InMemoryRepository, InMemoryStore};
use integration_tests::{CounterMapping, StoreWithDb, WithDb};
use storage::PgRepository;
use storage::mappings::{OrderMapping, UserMapping};

domain::contract_suite!(
    counters_in_memory,
    Counter,
    InMemoryRepository::<Counter>::new()
);
domain::contract_suite!(orders_in_memory, Order, InMemoryRepository::<Order>::new());

domain::contract_suite!(
    counters_on_postgres,
    Counter,
    WithDb::<PgRepository<CounterMapping>>::fresh().await
);
domain::contract_suite!(
    orders_on_postgres,
    Order,
    WithDb::<PgRepository<OrderMapping>>::fresh().await
);

domain::unit_of_work_suite!(units_in_memory, InMemoryStore::new());
domain::unit_of_work_suite!(units_on_postgres, StoreWithDb::fresh().await);

domain::exclusive_access_suite!(locks_in_memory, {
    let store = InMemoryStore::new();
    (store.clone(), store.repository::<Counter>())
});
domain::exclusive_access_suite!(locks_on_postgres, {
    let store = StoreWithDb::fresh().await;
    let counters = store.store().repository::<CounterMapping>();
    (store, counters)
});

#[tokio::test]
async fn users_in_memory_reject_a_taken_username() {
    domain::testing::contract::taken_username_is_a_duplicate(InMemoryRepository::<User>::new())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_postgres_reject_a_taken_username() {
    domain::testing::contract::taken_username_is_a_duplicate(
        WithDb::<PgRepository<UserMapping>>::fresh().await,
    )
    .await;
}
