//! Values the use-case tests share.

use domain::example::{Action, PersonName, Profile, UserId, Username};
use domain::{
    Aggregate, InMemoryStore, PageRequest, Repository, Simulation, StoreExt, Timestamp, TxToken,
};

use crate::example::ExampleStore;

/// The seeds every use-case test is simulated with.
pub const SEEDS: [u64; 4] = [1, 2, 3, 4];

/// The stores every use-case test runs on: the plain in-memory store, then
/// simulations on [`SEEDS`], which re-run closures and units, inject
/// conflicts and interleave callers as Postgres may. A use case whose
/// closures are not pure fails on them.
pub fn stores() -> impl Iterator<Item = InMemoryStore> {
    let simulated = SEEDS.map(|seed| InMemoryStore::simulated(Simulation::seed(seed)));
    std::iter::once(InMemoryStore::new()).chain(simulated)
}

pub fn name(text: &str) -> PersonName {
    PersonName::parse(text).expect("a valid name")
}

pub fn username(text: &str) -> Username {
    Username::parse(text).expect("a valid username")
}

pub fn profile(first: &str) -> Profile {
    Profile {
        first_name: name(first),
        last_name: name("Tester"),
    }
}

/// What the action log says happened, oldest first.
pub async fn actions<S: ExampleStore>(store: &S) -> Vec<String> {
    let page = store
        .repository::<Action>()
        .list(PageRequest::first(1000))
        .await
        .expect("read the action log");
    page.items.iter().map(|a| a.what().to_owned()).collect()
}

/// Registers a user named `name`; returns its id.
pub async fn registered<S: ExampleStore>(store: &S, name: &str) -> UserId {
    super::users::register(
        store,
        TxToken::generate(),
        username(name),
        profile(name),
        Timestamp::now(),
    )
    .await
    .expect("register")
    .aggregate()
    .id()
}
