//! The example's Postgres mappings round-trip every field, on both stores
//! alike. Removed with the example by `scripts/strip-example`.

use std::convert::Infallible;

use domain::example::Account;
use domain::example::{Action, PersonName, Profile, User, UserId, Username};
use domain::{
    Aggregate, Created, InMemoryRepository, PageRequest, Repository, Timestamp, TxToken, Version,
};
use integration_tests::{TestDb, WithDb};
use storage::example::AccountMapping;
use storage::{PgRepository, StoreConfig};

// The README's walk-through aggregate, a one-table mapping of a few lines,
// honours the whole repository contract on both stores.
domain::contract_suite!(
    accounts_in_memory,
    Account,
    InMemoryRepository::<Account>::new()
);
domain::contract_suite!(
    accounts_on_postgres,
    Account,
    WithDb::<PgRepository<AccountMapping>>::fresh().await
);

fn name(s: &str) -> PersonName {
    PersonName::parse(s).expect("a valid name")
}

fn ada() -> User {
    let profile = Profile {
        first_name: name("Ada"),
        last_name: name("Lovelace"),
    };
    User::register(
        UserId::generate(),
        Username::parse("ada").expect("valid"),
        profile,
        Timestamp::now(),
    )
}

/// Registers, renames and rescores a user; returns what `get` says.
async fn user_story(repo: &impl Repository<User>) -> User {
    let user = repo
        .create(TxToken::generate(), ada())
        .await
        .expect("create")
        .into_aggregate();
    let changed = repo
        .update(user.id(), |u| {
            Ok::<_, Infallible>(u.change_profile(Some(name("Augusta")), None, Timestamp::now()))
        })
        .await
        .expect("change the profile");
    assert!(changed.output);
    repo.update(user.id(), |u| {
        u.welcome_newcomer(0, Timestamp::now());
        u.welcome_newcomer(1, Timestamp::now());
        Ok::<_, Infallible>(())
    })
    .await
    .expect("rescore");
    repo.get(user.id()).await.expect("get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_store_their_profile_and_score_like_the_in_memory_store() {
    let db = TestDb::new().await;
    let on_postgres = user_story(&db.store(StoreConfig::default()).repository::<User>()).await;
    let in_memory = user_story(&InMemoryRepository::new()).await;

    assert_eq!(on_postgres.profile().first_name.as_str(), "Augusta");
    assert_eq!(on_postgres.profile().last_name.as_str(), "Lovelace");
    assert!((on_postgres.score().get() - 1.5).abs() < 1e-12);
    assert_eq!(on_postgres.version(), Version::new(3));
    assert_eq!(on_postgres.profile(), in_memory.profile());
    assert_eq!(on_postgres.score(), in_memory.score());
    assert_eq!(on_postgres.version(), in_memory.version());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_stored_once_per_token_and_listed_in_order() {
    let db = TestDb::new().await;
    let repo = db.store(StoreConfig::default()).repository::<Action>();
    let subject = ada();
    let token = TxToken::generate();
    let first = repo
        .create(
            token,
            Action::about(&subject, "user.created", Timestamp::now()),
        )
        .await
        .expect("append");
    let retried = repo
        .create(
            token,
            Action::about(&subject, "user.created", Timestamp::now()),
        )
        .await
        .expect("retry");
    let first = first.into_aggregate();
    assert_eq!(
        retried,
        Created::Replayed(first.clone()),
        "a retried append returns the first entry"
    );
    let second = repo
        .create(
            TxToken::generate(),
            Action::about(&subject, "user.renamed", Timestamp::now()),
        )
        .await
        .expect("append")
        .into_aggregate();

    let page = repo.list(PageRequest::first(10)).await.expect("list");
    assert_eq!(page.items, vec![first, second]);
    assert!(page.next.is_none());
}

/// A product is found by its SKU, its declared unique key, on both stores:
/// on Postgres through `table_mapping!`'s `unique { sku }`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_is_found_by_its_sku_on_both_stores() {
    use domain::UniqueKey;
    use domain::example::{Cents, Product, ProductName, Sku};
    async fn found_by_sku<R: Repository<Product>>(repo: R) {
        let pen = Product::new(
            Sku::parse("PEN-1").expect("valid"),
            ProductName::parse("Pen").expect("valid"),
            Cents::new(150).expect("valid"),
        );
        let stored = repo
            .create(TxToken::generate(), pen)
            .await
            .expect("create")
            .into_aggregate();
        let found = repo
            .get_by(UniqueKey::new(Product::SKU_KEY, "PEN-1"))
            .await
            .expect("found by its SKU");
        assert_eq!(found, stored);
        let missing = repo.get_by(UniqueKey::new(Product::SKU_KEY, "INK-9")).await;
        assert!(
            matches!(missing, Err(domain::RepositoryError::NotFound { .. })),
            "{missing:?}"
        );
    }
    found_by_sku(InMemoryRepository::<Product>::new()).await;
    let db = TestDb::new().await;
    found_by_sku(db.store(StoreConfig::default()).repository::<Product>()).await;
}
