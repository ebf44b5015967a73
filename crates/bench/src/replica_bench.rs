//! Reads with and without a read replica (`--replica-url`): `get` on the
//! primary alone, from the replica, and from the replica with a causality
//! token (each read checks the replica's replay position first).
//! `scripts/bench-replica` runs it on a pair of its own (`scripts/pg-pair`).

use std::sync::Arc;
use std::time::Duration;

use domain::Repository;
use domain::example::{User, UserId};
use rand::Rng;
use storage::causality::{self, Causality};
use storage::{PgStore, StoreConfig};
use uuid::Uuid;

use crate::measure::{self, Counters, Figures};

/// How reads were served.
pub const MODES: [&str; 3] = ["primary only", "replica, no token", "replica, with a token"];

/// `get` figures per mode at `tasks` tasks, on the database at `primary`
/// (seeded with `users`) and its replica at `replica`.
pub async fn bench(
    (primary, replica): (&str, &str),
    users: Arc<Vec<Uuid>>,
    (tasks, connections): (usize, u32),
    duration: Duration,
) -> anyhow::Result<Vec<(&'static str, Figures)>> {
    let config = StoreConfig {
        max_connections: connections,
        ..StoreConfig::default()
    };
    let alone = PgStore::new(primary, config.clone());
    let with_replica = PgStore::with_replica(primary, replica, config);
    // A position every read must wait for: the primary's now, which the
    // replica has replayed (nothing is written meanwhile).
    let token = causality::scope(None, async {
        with_replica
            .repository::<User>()
            .update(UserId::from(users[0]), |_| {
                Ok::<_, std::convert::Infallible>(())
            })
            .await
    })
    .await;
    let (updated, token) = token;
    updated?;
    let token = token.ok_or_else(|| anyhow::anyhow!("a write in a scope records a position"))?;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the replica replay it
    let counters = Arc::new(Counters::default());
    let mut figures = Vec::new();
    for (mode, store, token) in [
        (MODES[0], alone, None),
        (MODES[1], with_replica.clone(), None),
        (MODES[2], with_replica, Some(token)),
    ] {
        figures.push((
            mode,
            run(store, users.clone(), tasks, duration, &counters, token).await,
        ));
    }
    Ok(figures)
}

async fn run(
    store: PgStore,
    users: Arc<Vec<Uuid>>,
    tasks: usize,
    duration: Duration,
    counters: &Arc<Counters>,
    token: Option<Causality>,
) -> Figures {
    let repo = store.repository::<User>();
    measure::run(tasks, duration, counters, move |_, _| {
        let repo = repo.clone();
        let id = UserId::from(users[rand::rng().random_range(0..users.len())]);
        async move {
            let (got, _) = causality::scope(token, repo.get(id)).await;
            got?;
            Ok(())
        }
    })
    .await
}
