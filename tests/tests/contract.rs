//! The repository contract suite, run against every store.

use domain::InMemoryRepository;
use domain::example::Order;
use domain::testing::Counter;

domain::contract_suite!(
    counters_in_memory,
    Counter,
    InMemoryRepository::<Counter>::new()
);
domain::contract_suite!(orders_in_memory, Order, InMemoryRepository::<Order>::new());

#[tokio::test]
async fn users_in_memory_reject_a_taken_username() {
    domain::testing::contract::taken_username_is_a_duplicate(InMemoryRepository::new()).await;
}
