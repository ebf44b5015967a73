//! The framework's contract suites, run unchanged against every store, on
//! the suite's own aggregates: `Counter` (one table on Postgres) and
//! `Ledger` (two tables, a unique value).

use domain::testing::model::{check_against_model, start_of_time};
use domain::testing::{Counter, Ledger};
use domain::{Clock, InMemoryRepository, InMemoryStore, Simulation};
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
domain::unit_of_work_suite!(units_in_simulation, simulated());
domain::contract_suite!(
    counters_in_simulation,
    Counter,
    simulated().repository::<Counter>()
);

/// A simulated store on a new seed each run, printed so that a failure can
/// be replayed (`Simulation::seed(<seed>)`).
fn simulated() -> InMemoryStore {
    let seed = rand::random();
    eprintln!("simulation seed {seed}");
    InMemoryStore::simulated(Simulation::seed(seed))
}

/// A simulated store re-runs closures and units, injects conflicts and
/// interleaves callers; for the pure programs of the model check, none of
/// it may show: same results, same final state as the plain store.
#[test]
fn a_simulated_store_agrees_with_the_model() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let seeds = std::cell::Cell::new(0);
    check_against_model(&runtime, 500, || {
        seeds.set(seeds.get() + 1);
        let clock = Clock::manual(start_of_time());
        let store =
            InMemoryStore::simulated(Simulation::seed(seeds.get())).with_clock(clock.clone());
        std::future::ready((store, clock))
    });
}

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

/// An update closure adding one.
#[expect(clippy::unnecessary_wraps, reason = "an update closure")]
fn bump(c: &mut Counter) -> Result<(), std::convert::Infallible> {
    c.value += 1;
    Ok(())
}

/// Units are re-run under a simulation (as after a serialization failure),
/// also when the closure swallowed an injected conflict; the last run is
/// the one that counts, so the pure part of the result never changes.
#[tokio::test]
async fn a_simulation_reruns_units_and_the_last_run_counts() {
    use domain::{Repository, RepositoryError, TxExt, TxToken, UnitOfWork};
    let mut most_runs = 0;
    for seed in 0..20 {
        let store = InMemoryStore::simulated(Simulation::seed(seed));
        let id = domain::testing::CounterId::generate();
        let counter = <Counter as domain::testing::ContractSubject>::sample(id, 0);
        store
            .repository::<Counter>()
            .create(TxToken::generate(), counter)
            .await
            .expect("create");
        let runs = std::sync::atomic::AtomicU32::new(0);
        let value = store
            .run(|tx| {
                runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Box::pin(async move {
                    // A closure that ignores its errors: the store re-runs
                    // the unit anyway if one was an injected conflict.
                    let _ = tx.of::<Counter>().get(id).await;
                    let bumped = tx.of::<Counter>().update(id, bump).await?;
                    Ok::<_, RepositoryError>(bumped.aggregate.value)
                })
            })
            .await
            .expect("the last run always lands");
        assert_eq!(value, 1, "seed {seed}");
        let stored = store.repository::<Counter>().get(id).await.expect("get");
        assert_eq!(stored.value, 1, "seed {seed}: one run's write survives");
        most_runs = most_runs.max(runs.into_inner());
    }
    assert!(most_runs > 1, "some seed re-ran the unit");
}

/// Asked to lose replies, a simulation answers `OutcomeUnknown` for writes
/// that did land; creates and units that claimed a token are resolved by
/// it, as on Postgres.
#[tokio::test]
async fn a_simulation_losing_replies_answers_outcome_unknown_for_landed_writes() {
    use domain::{Repository, RepositoryError, TxExt, TxToken, UnitOfWork};
    let store = InMemoryStore::simulated(Simulation::seed(1).with_lost_replies(1.0));
    let counters = store.repository::<Counter>();
    let id = domain::testing::CounterId::generate();
    let counter = <Counter as domain::testing::ContractSubject>::sample(id, 0);
    assert!(
        counters
            .create(TxToken::generate(), counter)
            .await
            .expect("a create's token resolves a lost reply")
            .is_new()
    );
    let bumped = counters.update(id, bump).await;
    assert!(matches!(bumped, Err(RepositoryError::OutcomeUnknown)));
    assert_eq!(counters.get(id).await.expect("get").value, 1, "it landed");

    let unit = store
        .run(|tx| {
            Box::pin(async move {
                tx.of::<Counter>().update(id, bump).await?;
                Ok::<_, RepositoryError>(())
            })
        })
        .await;
    assert!(matches!(unit, Err(RepositoryError::OutcomeUnknown)));
    assert_eq!(counters.get(id).await.expect("get").value, 2, "it landed");
}

/// The in-memory outbox tells subscribers of each event once its change
/// committed, in order: a failed unit's events never reach them.
#[tokio::test]
async fn in_memory_subscribers_see_committed_events_only() {
    use domain::testing::LedgerId;
    use domain::{Repository, RepositoryError, TxExt, TxToken, UnitOfWork};
    let store = InMemoryStore::new();
    let mut events = store.outbox().subscribe();
    let repo = store.repository::<Ledger>();
    let (kept, dropped) = (LedgerId::generate(), LedgerId::generate());
    repo.create(TxToken::generate(), Ledger::open(kept, "ada"))
        .await
        .expect("create");
    let failed = store
        .run(|tx| {
            Box::pin(async move {
                tx.of::<Ledger>()
                    .create(TxToken::generate(), Ledger::open(dropped, "bob"))
                    .await?;
                Err::<(), _>(RepositoryError::Domain(domain::testing::Refused))
            })
        })
        .await;
    assert!(failed.is_err());
    store
        .run(|tx| {
            Box::pin(async move {
                tx.of::<Ledger>()
                    .update(kept, |l| {
                        l.append(4);
                        Ok::<_, std::convert::Infallible>(())
                    })
                    .await?;
                Ok::<_, RepositoryError>(())
            })
        })
        .await
        .expect("the unit commits");
    let mut received = Vec::new();
    while let Ok(event) = events.try_recv() {
        received.push((event.name, event.aggregate_id, event.version.get()));
    }
    let kept = kept.as_uuid();
    assert_eq!(
        received,
        vec![
            ("ledger_opened".to_owned(), kept, 1),
            ("entry_appended".to_owned(), kept, 2),
        ]
    );
    assert_eq!(store.outbox().events().len(), 2);
}

/// The suite catches a Postgres schema that does not enforce a declared
/// unique key, or enforces it under a constraint named otherwise (the
/// stores would then name the key differently).
mod the_suite_catches_a_unique_key {
    use super::*;
    use domain::testing::contract::samples_sharing_unique_values_are_refused_under_the_declared_key as rule;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[should_panic(expected = "expected Duplicate under one of")]
    async fn missing_in_postgres() {
        let repo = WithDb::<PgRepository<LedgerMapping>>::fresh().await;
        repo.db()
            .execute("ALTER TABLE ledgers DROP CONSTRAINT ledgers_handle_key")
            .await;
        rule::<Ledger, _>(repo).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[should_panic(expected = "expected Duplicate under one of")]
    async fn named_otherwise_in_postgres() {
        let repo = WithDb::<PgRepository<LedgerMapping>>::fresh().await;
        repo.db()
            .execute("ALTER TABLE ledgers RENAME CONSTRAINT ledgers_handle_key TO handle_unique")
            .await;
        rule::<Ledger, _>(repo).await;
    }
}

/// An aggregate whose own rule limits change (a member holds at most three
/// loans) runs the whole suite through that rule: no test-only path
/// around it. Its concurrency checks count the bumps the rule accepted.
mod limited {
    use domain::testing::{ContractSubject, Refused};
    use domain::{Aggregate, Fingerprint, InMemoryRepository, Version};

    domain::aggregate_id!(
        /// Identifies a member.
        pub struct MemberId;
    );

    /// A library member and the books they hold.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Member {
        id: MemberId,
        version: Version,
        name: String,
        loans: u64,
    }

    impl Member {
        /// Lends one more book, up to three.
        fn borrow(&mut self) -> Result<(), Refused> {
            if self.loans == 3 {
                return Err(Refused);
            }
            self.loans += 1;
            Ok(())
        }
    }

    impl Aggregate for Member {
        domain::aggregate_basics!(id: MemberId, kind: "member");

        fn fingerprint(&self) -> Fingerprint {
            Fingerprint::of(&self.name)
        }
    }

    impl ContractSubject for Member {
        fn sample(id: MemberId, seed: u64) -> Self {
            let name = format!("member {seed}");
            Self {
                id,
                version: Version::INITIAL,
                name,
                loans: 0,
            }
        }

        fn bump(&mut self) -> Result<(), Refused> {
            self.borrow()
        }

        fn count(&self) -> u64 {
            self.loans
        }
    }

    domain::contract_suite!(
        members_in_memory,
        Member,
        InMemoryRepository::<Member>::new()
    );
}
