//! The per-user spending read model, kept from `order_placed` events by a
//! consumer that handles each event once (the inbox). Eventually
//! consistent: a placed order shows once the relay published its event and
//! the consumer counted it.

use std::convert::Infallible;

use domain::example::{User, UserId, UserStats};
use domain::{
    Inbox, Repository, RepositoryError, StoreExt, StoredEvent, Transaction, TxExt, TxToken,
};

use crate::example::ExampleStore;

/// The consumer's name in the inbox, and its queue's on the broker.
pub const CONSUMER: &str = "user_stats";

/// The events it consumes (routing keys on the broker).
pub const EVENTS: &[&str] = &["order.order_placed"];

/// Counts `event` into its user's stats, if it is an `order_placed` seen
/// for the first time: the inbox record and the count commit together.
/// Other events are ignored.
pub async fn on_event<S: ExampleStore>(
    store: &S,
    event: &StoredEvent,
) -> Result<(), RepositoryError> {
    if event.name != "order_placed" {
        return Ok(());
    }
    let payload = (
        event.payload["user_id"]
            .as_str()
            .and_then(|id| id.parse::<UserId>().ok()),
        event.payload["total_cents"].as_i64(),
    );
    let (Some(user), Some(total_cents)) = payload else {
        return Err(RepositoryError::Storage(
            format!(
                "order_placed {} carries no user_id and total_cents",
                event.id
            )
            .into(),
        ));
    };
    let id = event.id;
    store
        .run(|tx| Box::pin(count_once(tx, id, user, total_cents)))
        .await
}

async fn count_once<Tx: Transaction<UserStats> + Inbox>(
    tx: &mut Tx,
    event: uuid::Uuid,
    user: UserId,
    total_cents: i64,
) -> Result<(), RepositoryError> {
    if !tx.first_delivery(CONSUMER, event).await? {
        return Ok(());
    }
    let counted = tx
        .of::<UserStats>()
        .update(user, |stats| {
            stats.count_order(total_cents);
            Ok::<_, Infallible>(())
        })
        .await;
    match counted {
        Ok(_) => Ok(()),
        // The user's first order. Two first orders counted at once: the
        // second create fails, its unit rolls back (inbox record too), and
        // the consumer's retry counts it as an update.
        Err(RepositoryError::NotFound { .. }) => {
            let mut stats = UserStats::none(user);
            stats.count_order(total_cents);
            tx.of::<UserStats>()
                .create(TxToken::from(event), stats)
                .await?;
            Ok(())
        }
        Err(error) => Err(error.widen()),
    }
}

/// A user's stats as counted so far: zero before the first counted order;
/// `NotFound` for an unknown user.
pub async fn of_user<S: ExampleStore>(
    store: &S,
    user: UserId,
) -> Result<UserStats, RepositoryError> {
    store.repository::<User>().get(user).await?;
    match store.repository::<UserStats>().get(user).await {
        Err(RepositoryError::NotFound { .. }) => Ok(UserStats::none(user)),
        stats => stats,
    }
}

#[cfg(test)]
mod tests {
    use domain::Timestamp;

    use super::*;
    use crate::example::use_cases::fixtures::registered;
    use domain::InMemoryStore;

    fn placed(user: UserId, total_cents: i64) -> StoredEvent {
        StoredEvent {
            id: uuid::Uuid::now_v7(),
            aggregate_kind: "order".to_owned(),
            aggregate_id: uuid::Uuid::now_v7(),
            version: domain::Version::new(2),
            name: "order_placed".to_owned(),
            payload: serde_json::json!({ "user_id": user, "total_cents": total_cents, "lines": 1 }),
            occurred_at: Timestamp::now(),
        }
    }

    #[tokio::test]
    async fn each_placed_order_counts_once_however_often_it_is_delivered() {
        for store in InMemoryStore::test_stores() {
            let ada = registered(&store, "ada").await;
            assert_eq!(
                of_user(&store, ada).await.expect("stats").orders_placed(),
                0
            );
            let (first, second) = (placed(ada, 300), placed(ada, 150));
            for event in [&first, &first, &second, &first, &second] {
                on_event(&store, event).await.expect("counted");
            }
            let stats = of_user(&store, ada).await.expect("stats");
            assert_eq!((stats.orders_placed(), stats.total_spent_cents()), (2, 450));
            let unknown = of_user(&store, UserId::generate()).await;
            assert!(matches!(unknown, Err(RepositoryError::NotFound { .. })));
        }
    }
}
