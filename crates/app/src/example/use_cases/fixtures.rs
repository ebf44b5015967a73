//! Values the use-case tests share. The stores they run on are the
//! framework's: [`domain::InMemoryStore::test_stores`].

use domain::example::{Action, PersonName, Profile, UserId, Username};
use domain::{Aggregate, PageRequest, Repository, StoreExt, Timestamp, TxToken};

use crate::example::ExampleStore;

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
