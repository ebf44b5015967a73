//! Contract rules for units of work, on the example domain.

use crate::example::{
    Action, Cents, Order, OrderId, PersonName, Product, ProductName, Profile, Sku, User, UserId,
    Username, expected_score_sum, register_user,
};
use crate::{
    Aggregate, Nested, RepositoryError, Timestamp, Transaction, TxExt, TxToken, UnitOfWork, Version,
};

/// A store whose units reach the example aggregates.
pub trait ExampleStore: UnitOfWork + Clone + 'static
where
    Self::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
}

impl<S> ExampleStore for S
where
    S: UnitOfWork + Clone + 'static,
    S::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
}

/// The error the suite's units return.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// From the store.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// The unit chose to fail.
    #[error("the unit gave up on purpose")]
    GaveUp,
}

fn newcomer(username: &str) -> User {
    let profile = Profile {
        first_name: PersonName::parse("Test").expect("valid"),
        last_name: PersonName::parse(username).expect("valid"),
    };
    User::register(
        UserId::generate(),
        Username::parse(username).expect("valid"),
        profile,
        Timestamp::now(),
    )
}

async fn register<S: ExampleStore>(store: &S, token: TxToken, user: User) -> Result<User, UnitError>
where
    S::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
    store
        .run(|tx| {
            let user = user.clone();
            Box::pin(async move { Ok(register_user(tx, token, user, Timestamp::now()).await?) })
        })
        .await
}

/// Every aggregate of type `A`, read on one snapshot.
async fn all<A: Aggregate, S: ExampleStore>(store: &S) -> Vec<A>
where
    S::Tx: Transaction<User>
        + Transaction<Order>
        + Transaction<Action>
        + Transaction<Product>
        + Transaction<A>,
{
    store
        .read(|tx| Box::pin(async move { Ok::<_, UnitError>(tx.of::<A>().all().await?) }))
        .await
        .expect("read every aggregate")
}

/// A unit that registers a user and opens their first order commits both,
/// with the action, and the user's version is 1.
pub async fn a_unit_commits_all_of_its_writes<S: ExampleStore>(store: S)
where
    S::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
    let token = TxToken::generate();
    let order_id = OrderId::generate();
    let (user, order) = store
        .run(|tx| {
            Box::pin(async move {
                let user = register_user(tx, token, newcomer("ada"), Timestamp::now()).await?;
                let order = Order::open(order_id, user.id(), vec![], Timestamp::now())
                    .expect("an empty draft is valid");
                let order = tx.of::<Order>().create(token, order).await?;
                Ok::<_, UnitError>((user, order))
            })
        })
        .await
        .expect("the unit commits");
    assert_eq!(user.version(), Version::INITIAL);
    assert_eq!(order.user_id(), user.id());
    let stored = all::<User, _>(&store).await;
    assert_eq!(stored.len(), 1);
    assert!(
        (stored[0].score().get() - 1.0).abs() < 1e-12,
        "the first user scores 1"
    );
    let log = all::<Action, _>(&store).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].what(), "user.created");
}

/// A unit that fails after writing leaves nothing behind: not its creates,
/// not its batch update, not its action.
pub async fn a_failing_unit_writes_nothing<S: ExampleStore>(store: S)
where
    S::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
    register(&store, TxToken::generate(), newcomer("first"))
        .await
        .expect("a first user");
    let before = all::<User, _>(&store).await;

    let order_id = OrderId::generate();
    let result = store
        .run(|tx| {
            Box::pin(async move {
                let user = register_user(
                    tx,
                    TxToken::generate(),
                    newcomer("second"),
                    Timestamp::now(),
                )
                .await?;
                let order =
                    Order::open(order_id, user.id(), vec![], Timestamp::now()).expect("valid");
                tx.of::<Order>().create(TxToken::generate(), order).await?;
                Err::<(), _>(UnitError::GaveUp)
            })
        })
        .await;
    assert!(matches!(result, Err(UnitError::GaveUp)), "{result:?}");

    assert_eq!(
        all::<User, _>(&store).await,
        before,
        "no user added, no score changed"
    );
    assert_eq!(all::<Action, _>(&store).await.len(), 1);
    let order = store
        .run(|tx| Box::pin(async move { Ok::<_, UnitError>(tx.of::<Order>().get(order_id).await) }))
        .await
        .expect("the read unit runs");
    assert!(
        matches!(order, Err(RepositoryError::NotFound { .. })),
        "{order:?}"
    );
}

/// Ten registrations racing each other: every one succeeds and the scores
/// add up to what the rule gives for ten users in sequence.
pub async fn concurrent_registrations_keep_the_score_sum<S: ExampleStore>(store: S)
where
    S::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                register(&store, TxToken::generate(), newcomer(&format!("racer{i}"))).await
            })
        })
        .collect();
    for task in tasks {
        task.await
            .expect("no panic")
            .expect("every registration lands");
    }
    let registered = all::<User, _>(&store).await;
    assert_eq!(registered.len(), 10);
    let sum: f64 = registered.iter().map(|u| u.score().get()).sum();
    let expected = expected_score_sum(10);
    assert!(
        (sum - expected).abs() < 1e-9 * expected,
        "sum {sum}, expected {expected}"
    );
    assert_eq!(all::<Action, _>(&store).await.len(), 10);
}

/// A registration retried with its token (and a fresh server-assigned id)
/// returns the first user and changes no score.
pub async fn a_retried_registration_writes_nothing_twice<S: ExampleStore>(store: S)
where
    S::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
    let token = TxToken::generate();
    let first = register(&store, token, newcomer("grace"))
        .await
        .expect("register");
    register(&store, TxToken::generate(), newcomer("alan"))
        .await
        .expect("another user");
    let before = all::<User, _>(&store).await;

    let retried = register(&store, token, newcomer("grace"))
        .await
        .expect("retry");
    assert_eq!(retried.id(), first.id());
    assert_eq!(
        all::<User, _>(&store).await,
        before,
        "the retry changed nothing"
    );
    assert_eq!(all::<Action, _>(&store).await.len(), 2);

    let reused = register(&store, token, newcomer("mallory")).await;
    assert!(
        matches!(
            reused,
            Err(UnitError::Repository(RepositoryError::TokenMismatch { .. }))
        ),
        "{reused:?}"
    );
}

/// A nested unit that fails is rolled back alone when the caller recovers:
/// the outer unit's writes stay, including to aggregates the nested part
/// changed before failing; a nested unit that succeeds commits with it.
pub async fn a_recovered_nested_failure_keeps_the_rest<S: ExampleStore>(store: S)
where
    S::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
    let (failed_order, kept_order) = (OrderId::generate(), OrderId::generate());
    let user = store
        .run(|tx| {
            Box::pin(async move {
                let user =
                    register_user(tx, TxToken::generate(), newcomer("ada"), Timestamp::now())
                        .await?;
                let id = user.id();
                let recovered = tx
                    .nested(|tx| {
                        Box::pin(async move {
                            let order = Order::open(failed_order, id, vec![], Timestamp::now())
                                .expect("valid");
                            tx.of::<Order>().create(TxToken::generate(), order).await?;
                            tx.of::<User>()
                                .update(id, |u| {
                                    let inner = PersonName::parse("Inner").expect("valid");
                                    u.change_profile(Some(inner), None, Timestamp::now());
                                    Ok::<_, std::convert::Infallible>(())
                                })
                                .await?;
                            Err::<(), _>(UnitError::GaveUp)
                        })
                    })
                    .await;
                assert!(matches!(recovered, Err(UnitError::GaveUp)));
                tx.nested(|tx| {
                    Box::pin(async move {
                        let order =
                            Order::open(kept_order, id, vec![], Timestamp::now()).expect("valid");
                        tx.of::<Order>().create(TxToken::generate(), order).await?;
                        Ok::<_, UnitError>(())
                    })
                })
                .await?;
                let seen = tx.of::<User>().get(id).await?;
                assert_eq!(
                    seen.profile().first_name.as_str(),
                    "Test",
                    "the nested change is undone"
                );
                Ok::<_, UnitError>(user)
            })
        })
        .await
        .expect("the outer unit commits");

    let stored = all::<User, _>(&store).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].profile().first_name.as_str(), "Test");
    assert_eq!(stored[0].version(), user.version());
    let orders: Vec<OrderId> = all::<Order, _>(&store)
        .await
        .iter()
        .map(Aggregate::id)
        .collect();
    assert_eq!(
        orders,
        vec![kept_order],
        "only the successful nested part stays"
    );
}

/// A nested failure that the caller propagates rolls back the whole unit.
pub async fn an_unrecovered_nested_failure_rolls_back_everything<S: ExampleStore>(store: S)
where
    S::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
    let result = store
        .run(|tx| {
            Box::pin(async move {
                let user =
                    register_user(tx, TxToken::generate(), newcomer("ada"), Timestamp::now())
                        .await?;
                let id = user.id();
                tx.nested(|tx| {
                    Box::pin(async move {
                        let order = Order::open(OrderId::generate(), id, vec![], Timestamp::now())
                            .expect("valid");
                        tx.of::<Order>().create(TxToken::generate(), order).await?;
                        Err::<(), _>(UnitError::GaveUp)
                    })
                })
                .await?;
                Ok::<_, UnitError>(())
            })
        })
        .await;
    assert!(matches!(result, Err(UnitError::GaveUp)), "{result:?}");
    assert!(all::<User, _>(&store).await.is_empty());
    assert!(all::<Order, _>(&store).await.is_empty());
    assert!(all::<Action, _>(&store).await.is_empty());
}

/// Catalog `version`: products `first..first + 30`, all at one price.
fn catalog(first: u32, price: i64) -> Vec<Product> {
    (first..first + 30)
        .map(|n| {
            Product::new(
                Sku::parse(&format!("SKU-{n}")).expect("valid"),
                ProductName::parse(&format!("Product {n}")).expect("valid"),
                Cents::new(price).expect("valid"),
            )
        })
        .collect()
}

/// What a reader sees: each product's sku and price, sorted.
fn seen(products: &[Product]) -> Vec<(String, i64)> {
    let mut seen: Vec<_> = products
        .iter()
        .map(|p| (p.sku().as_str().to_owned(), p.price().get()))
        .collect();
    seen.sort();
    seen
}

async fn import<S: ExampleStore>(store: &S, products: Vec<Product>) -> crate::Replaced
where
    S::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
    store
        .run(|tx| {
            let products = products.clone();
            Box::pin(async move {
                Ok::<_, UnitError>(
                    tx.of::<Product>()
                        .replace_all(TxToken::generate(), products)
                        .await?,
                )
            })
        })
        .await
        .expect("import")
}

/// Replacing a whole set while readers read: every read sees exactly the
/// old set or exactly the new one, never a mix; an import of a set with a
/// duplicate changes nothing.
pub async fn replacing_a_set_shows_readers_old_or_new_never_a_mix<S: ExampleStore>(store: S)
where
    S::Tx: Transaction<User> + Transaction<Order> + Transaction<Action> + Transaction<Product>,
{
    let (old, new) = (catalog(0, 100), catalog(10, 250));
    let first = import(&store, old.clone()).await;
    assert_eq!(
        first,
        crate::Replaced {
            created: 30,
            ..Default::default()
        }
    );
    let (old_view, new_view) = (seen(&old), seen(&new));

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            let (old_view, new_view) = (old_view.clone(), new_view.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let view = seen(&all::<Product, _>(&store).await);
                    assert!(
                        view == old_view || view == new_view,
                        "a mixed catalog: {view:?}"
                    );
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    for round in 0..10 {
        let (target, expected) = if round % 2 == 0 {
            (&new, 20)
        } else {
            (&old, 20)
        };
        let report = import(&store, target.clone()).await;
        assert_eq!(
            (report.created, report.updated, report.deleted),
            (10, expected, 10)
        );
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.expect("no panic") > 0, "the reader read");
    }

    let mut twice = new.clone();
    twice.push(new[0].clone());
    let result = store
        .run(|tx| {
            let twice = twice.clone();
            Box::pin(async move {
                Ok::<_, UnitError>(
                    tx.of::<Product>()
                        .replace_all(TxToken::generate(), twice)
                        .await?,
                )
            })
        })
        .await;
    assert!(
        matches!(
            result,
            Err(UnitError::Repository(RepositoryError::AlreadyExists { .. }))
        ),
        "{result:?}"
    );
    assert_eq!(
        seen(&all::<Product, _>(&store).await),
        old_view,
        "nothing changed"
    );
}
