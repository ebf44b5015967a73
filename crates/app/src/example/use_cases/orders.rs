//! Opening, extending, placing and cancelling orders; each change logged in
//! the same unit of work.

use domain::example::{
    Action, Order, OrderError, OrderId, OrderLine, Profile, User, UserId, Username, register_user,
};
use domain::{
    Aggregate, Created, DomainError, Fingerprint, IfVersion, Repository, RepositoryError,
    StaleVersion, StoreExt, Timestamp, Transaction, TxExt, TxToken,
};

use crate::example::ExampleStore;

/// Why an order use case refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRefusal {
    /// An order rule said no.
    #[error(transparent)]
    Rule(#[from] OrderError),
    /// The order moved past the version the caller expected.
    #[error(transparent)]
    Stale(#[from] StaleVersion),
    /// The order would belong to a user that does not exist.
    #[error("no user {0}")]
    UnknownUser(UserId),
}

impl DomainError for OrderRefusal {}

/// A change to an order, as a rule of [`Order`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum OrderChange {
    /// Append a line to a draft.
    AddLine(OrderLine),
    /// Place a non-empty draft.
    Place,
    /// Cancel an order that is not cancelled yet.
    Cancel,
}

impl OrderChange {
    /// The action-log entry of this change.
    pub fn what(&self) -> &'static str {
        match self {
            Self::AddLine(_) => "order.line_added",
            Self::Place => "order.placed",
            Self::Cancel => "order.cancelled",
        }
    }

    fn apply(self, order: &mut Order, now: Timestamp) -> Result<(), OrderError> {
        match self {
            Self::AddLine(line) => order.add_line(line, now),
            Self::Place => order.place(now),
            Self::Cancel => order.cancel(now),
        }
    }
}

/// Opens a draft for an existing user and logs `order.created`, once: a
/// retry with the same token replays.
pub async fn open<S: ExampleStore>(
    store: &S,
    token: TxToken,
    user_id: UserId,
    lines: Vec<OrderLine>,
    now: Timestamp,
) -> Result<Created<Order>, RepositoryError<OrderRefusal>> {
    let draft =
        Order::open(OrderId::generate(), user_id, lines, now).map_err(OrderRefusal::from)?;
    store
        .run(|tx| Box::pin(open_for_existing_user(tx, token, draft.clone(), now)))
        .await
}

async fn open_for_existing_user<Tx>(
    tx: &mut Tx,
    token: TxToken,
    draft: Order,
    now: Timestamp,
) -> Result<Created<Order>, RepositoryError<OrderRefusal>>
where
    Tx: Transaction<User> + Transaction<Order> + Transaction<Action>,
{
    let user_id = draft.user_id();
    match tx.of::<User>().get(user_id).await {
        Err(RepositoryError::NotFound { .. }) => {
            return Err(RepositoryError::Domain(OrderRefusal::UnknownUser(user_id)));
        }
        other => other?,
    };
    Ok(open_and_log(tx, token, draft, now).await?)
}

async fn open_and_log<Tx>(
    tx: &mut Tx,
    token: TxToken,
    draft: Order,
    now: Timestamp,
) -> Result<Created<Order>, RepositoryError>
where
    Tx: Transaction<Order> + Transaction<Action>,
{
    let created = tx.of::<Order>().create(token, draft).await?;
    if let Created::New(order) = &created {
        let entry = Action::about(order, "order.created", now);
        tx.of::<Action>()
            .create(token.derive("order.created"), entry)
            .await?;
    }
    Ok(created)
}

/// Registers a user and opens their first order in one unit: both or
/// neither, and a retry with the same token replays both.
pub async fn open_with_new_user<S: ExampleStore>(
    store: &S,
    token: TxToken,
    (username, profile): (Username, Profile),
    lines: Vec<OrderLine>,
    now: Timestamp,
) -> Result<(Created<User>, Created<Order>), RepositoryError<OrderRefusal>> {
    if lines.len() > Order::MAX_LINES {
        return Err(RepositoryError::Domain(OrderError::TooManyLines.into()));
    }
    store
        .run(|tx| {
            let newcomer =
                User::register(UserId::generate(), username.clone(), profile.clone(), now);
            Box::pin(register_with_order(tx, token, newcomer, lines.clone(), now))
        })
        .await
}

async fn register_with_order<Tx>(
    tx: &mut Tx,
    token: TxToken,
    newcomer: User,
    lines: Vec<OrderLine>,
    now: Timestamp,
) -> Result<(Created<User>, Created<Order>), RepositoryError<OrderRefusal>>
where
    Tx: Transaction<User> + Transaction<Order> + Transaction<Action>,
{
    let user = register_user(tx, token, newcomer, now).await?;
    let draft = Order::open(OrderId::generate(), user.aggregate().id(), lines, now)
        .map_err(OrderRefusal::from)?;
    let order = open_and_log(tx, token.derive("first order"), draft, now).await?;
    Ok((user, order))
}

/// One order.
pub async fn get<S: ExampleStore>(store: &S, id: OrderId) -> Result<Order, RepositoryError> {
    store.repository::<Order>().get(id).await
}

/// Applies `change` if the order is at a version `expected` accepts, and
/// logs it, once per `key`. Returns the order as stored (by the first
/// request with that key).
pub async fn change<S: ExampleStore>(
    store: &S,
    key: TxToken,
    id: OrderId,
    expected: IfVersion,
    change: OrderChange,
    now: Timestamp,
) -> Result<Order, RepositoryError<OrderRefusal>> {
    let request = Fingerprint::of(&("change_order", id, &change));
    let changed = store
        .run_once(key, request, |tx| {
            Box::pin(change_and_log(
                tx,
                id,
                (expected.clone(), change.clone()),
                now,
            ))
        })
        .await?;
    Ok(changed.into_inner())
}

async fn change_and_log<Tx: Transaction<Order> + Transaction<Action>>(
    tx: &mut Tx,
    id: OrderId,
    (expected, change): (IfVersion, OrderChange),
    now: Timestamp,
) -> Result<Order, RepositoryError<OrderRefusal>> {
    let what = change.what();
    let order = tx
        .of::<Order>()
        .update(id, |order| {
            expected.check(order.version())?;
            change.apply(order, now)?;
            Ok::<_, OrderRefusal>(())
        })
        .await?
        .aggregate;
    tx.of::<Action>()
        .create(TxToken::generate(), Action::about(&order, what, now))
        .await?;
    Ok(order)
}

#[cfg(test)]
mod tests {
    use domain::example::{Cents, OrderStatus, Quantity, Sku};
    use domain::{Aggregate, Version};

    use super::*;
    use crate::example::use_cases::fixtures::{actions, profile, registered, username};
    use domain::InMemoryStore;

    fn line(sku: &str) -> OrderLine {
        OrderLine {
            sku: Sku::parse(sku).expect("valid"),
            quantity: Quantity::new(2).expect("valid"),
            unit_price: Cents::new(150).expect("valid"),
        }
    }

    #[tokio::test]
    async fn an_order_needs_an_existing_user_and_is_logged_once() {
        for store in InMemoryStore::test_stores() {
            let now = Timestamp::now();
            let nobody = open(&store, TxToken::generate(), UserId::generate(), vec![], now).await;
            assert!(matches!(
                nobody,
                Err(RepositoryError::Domain(OrderRefusal::UnknownUser(_)))
            ));

            let ada = registered(&store, "ada").await;
            let token = TxToken::generate();
            let first = open(&store, token, ada, vec![line("PEN")], now)
                .await
                .expect("open");
            let retried = open(&store, token, ada, vec![line("PEN")], now)
                .await
                .expect("retry");
            assert!(first.is_new() && !retried.is_new());
            assert_eq!(retried.aggregate().id(), first.aggregate().id());
            assert_eq!(actions(&store).await, ["user.created", "order.created"]);
        }
    }

    #[tokio::test]
    async fn orders_follow_their_rules_and_every_change_is_logged() {
        for store in InMemoryStore::test_stores() {
            let now = Timestamp::now();
            let ada = registered(&store, "ada").await;
            let id = open(&store, TxToken::generate(), ada, vec![], now)
                .await
                .expect("open")
                .aggregate()
                .id();
            let empty = change(
                &store,
                TxToken::generate(),
                id,
                IfVersion::Any,
                OrderChange::Place,
                now,
            )
            .await;
            assert!(matches!(
                empty,
                Err(RepositoryError::Domain(OrderRefusal::Rule(
                    OrderError::Empty
                )))
            ));
            change(
                &store,
                TxToken::generate(),
                id,
                IfVersion::Any,
                OrderChange::AddLine(line("INK")),
                now,
            )
            .await
            .expect("add a line");
            let stale = change(
                &store,
                TxToken::generate(),
                id,
                IfVersion::exactly(Version::INITIAL),
                OrderChange::Place,
                now,
            )
            .await;
            assert!(matches!(
                stale,
                Err(RepositoryError::Domain(OrderRefusal::Stale(_)))
            ));
            let placed = change(
                &store,
                TxToken::generate(),
                id,
                IfVersion::exactly(Version::new(2)),
                OrderChange::Place,
                now,
            )
            .await
            .expect("place");
            assert_eq!(placed.status(), OrderStatus::Placed);
            assert_eq!(
                actions(&store).await,
                [
                    "user.created",
                    "order.created",
                    "order.line_added",
                    "order.placed"
                ]
            );
        }
    }

    /// The events the domain records reach the outbox once each, whatever
    /// the simulation re-runs: what the relay and the read models rely on.
    #[tokio::test]
    async fn placing_and_cancelling_an_order_record_their_events_once() {
        for store in InMemoryStore::test_stores() {
            let now = Timestamp::now();
            let ada = registered(&store, "ada").await;
            let id = open(&store, TxToken::generate(), ada, vec![line("PEN")], now)
                .await
                .expect("open")
                .aggregate()
                .id();
            let place = || {
                change(
                    &store,
                    TxToken::generate(),
                    id,
                    IfVersion::Any,
                    OrderChange::Place,
                    now,
                )
            };
            place().await.expect("place");
            assert!(place().await.is_err(), "placed once");
            change(
                &store,
                TxToken::generate(),
                id,
                IfVersion::Any,
                OrderChange::Cancel,
                now,
            )
            .await
            .expect("cancel");
            let events: Vec<(String, serde_json::Value)> = store
                .outbox()
                .events()
                .into_iter()
                .map(|e| (e.name, e.payload))
                .collect();
            assert_eq!(
                events,
                [
                    (
                        "user_registered".to_owned(),
                        serde_json::json!({ "username": "ada" })
                    ),
                    (
                        "order_placed".to_owned(),
                        serde_json::json!({ "user_id": ada, "total_cents": 300, "lines": 1 })
                    ),
                    (
                        "order_cancelled".to_owned(),
                        serde_json::json!({ "user_id": ada, "was": "placed" })
                    ),
                ]
            );
        }
    }

    #[tokio::test]
    async fn a_user_and_their_first_order_come_together_or_not_at_all() {
        for store in InMemoryStore::test_stores() {
            let now = Timestamp::now();
            let token = TxToken::generate();
            let (user, order) = open_with_new_user(
                &store,
                token,
                (username("grace"), profile("Grace")),
                vec![line("PEN")],
                now,
            )
            .await
            .expect("both");
            assert_eq!(order.aggregate().user_id(), user.aggregate().id());
            let (user_again, order_again) = open_with_new_user(
                &store,
                token,
                (username("grace"), profile("Grace")),
                vec![line("PEN")],
                now,
            )
            .await
            .expect("retry");
            assert!(!user_again.is_new() && !order_again.is_new());
            assert_eq!(order_again.aggregate().id(), order.aggregate().id());

            let too_many = vec![line("PEN"); Order::MAX_LINES + 1];
            let refused = open_with_new_user(
                &store,
                TxToken::generate(),
                (username("alan"), profile("Alan")),
                too_many,
                now,
            )
            .await;
            assert!(matches!(
                refused,
                Err(RepositoryError::Domain(OrderRefusal::Rule(
                    OrderError::TooManyLines
                )))
            ));
            assert_eq!(
                actions(&store).await,
                ["user.created", "order.created"],
                "nothing of the refused registration was written"
            );
        }
    }
}
