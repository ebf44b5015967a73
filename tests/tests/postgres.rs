//! The Postgres repositories under contention and faults: hot aggregates,
//! dropped futures, an exhausted pool, killed backends.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use domain::testing::{ContractSubject, Counter, CounterId, Refused};
use domain::{Aggregate, Repository, RepositoryError, TxToken, Version};
use integration_tests::{CounterMapping, TestDb};
use storage::{PgRepository, StoreConfig};

type Counters = PgRepository<CounterMapping>;

async fn new_counter(repo: &Counters) -> CounterId {
    let counter = Counter::sample(CounterId::generate(), 1);
    repo.create(TxToken::generate(), counter)
        .await
        .expect("create")
        .into_aggregate()
        .id()
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "an update closure returns a Result, even one that cannot fail"
)]
fn bump(counter: &mut Counter) -> Result<u64, Infallible> {
    counter.value += 1;
    Ok(counter.value)
}

/// Takes the row lock on a counter from outside the pool, so that writers
/// block on it until the returned connection commits.
async fn lock_row(db: &TestDb, id: CounterId) -> AsyncPgConnection {
    let mut locker = db.connect().await;
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM counters WHERE id = '{id}' FOR UPDATE;"
        ))
        .await
        .expect("lock the row");
    locker
}

/// Polls until no session of the database sits idle in a transaction.
async fn assert_no_session_left_in_a_transaction(db: &TestDb) {
    let started = Instant::now();
    loop {
        let sessions = db.sessions().await;
        if sessions.idle_in_transaction == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "sessions left inside a transaction: {sessions:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_times_fifty_concurrent_updates_on_one_hot_aggregate_lose_nothing() {
    let db = TestDb::new().await;
    // Two stores, as two service instances would have.
    let repos = [
        db.store(StoreConfig::default()).repository::<Counter>(),
        db.store(StoreConfig::default()).repository::<Counter>(),
    ];
    let id = new_counter(&repos[0]).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let repo = repos[i % 2].clone();
            tokio::spawn(async move { repo.update(id, bump).await.map(|u| u.output) })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("no panic").expect("every update lands"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<u64>>(),
        "each update saw fresh state"
    );
    let counter = repos[1].get(id).await.expect("get");
    assert_eq!(counter.value, 100);
    assert_eq!(counter.version(), Version::new(101));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_of_one_row_in_one_process_take_turns_instead_of_retrying() {
    let db = TestDb::new().await;
    // One attempt each: an update that lost a race would give up.
    let repo = db
        .store(StoreConfig {
            max_attempts: 1,
            ..StoreConfig::default()
        })
        .repository::<Counter>();
    let id = new_counter(&repo).await;
    let runs = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (repo, runs) = (repo.clone(), Arc::clone(&runs));
            tokio::spawn(async move {
                repo.update(id, |counter| {
                    runs.fetch_add(1, Ordering::Relaxed);
                    bump(counter)
                })
                .await
                .map(|u| u.output)
            })
        })
        .collect();
    for task in tasks {
        task.await
            .expect("no panic")
            .expect("no update lost a race to another of this process");
    }
    assert_eq!(runs.load(Ordering::Relaxed), 32, "each closure ran once");
    assert_eq!(repo.get(id).await.expect("get").value, 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_dropped_while_it_waits_never_lands_and_the_pool_still_works() {
    let db = TestDb::new().await;
    let store = db.store(StoreConfig {
        max_connections: 2,
        ..StoreConfig::default()
    });
    let repo = store.repository::<Counter>();
    let id = new_counter(&repo).await;

    // The update (one statement, no transaction) blocks on the row lock;
    // the caller gives up and drops the future there. The statement is
    // cancelled on the server, and its connection leaves the pool. (Had
    // the lock gone in the cancel's own round trip, the update would have
    // landed then: a caller that drops a write it sent gets no promise but
    // that nothing lands later. `Timeout` is a promise: see the next test.)
    let locker = lock_row(&db, id).await;
    let dropped = tokio::time::timeout(Duration::from_millis(300), repo.update(id, bump)).await;
    assert!(
        dropped.is_err(),
        "the update was still waiting: {dropped:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await; // the cancel lands
    drop(locker); // closing the session rolls its transaction back

    assert_no_session_left_in_a_transaction(&db).await;
    for expected in 1..=10 {
        assert_eq!(
            repo.update(id, bump)
                .await
                .map(|u| u.output)
                .expect("the pool still works"),
            expected
        );
    }
    let counter = repo.get(id).await.expect("get");
    assert_eq!(counter.value, 10, "the dropped update never landed");
    assert_eq!(counter.version(), Version::new(11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_past_its_deadline_is_a_timeout_and_writes_nothing() {
    let db = TestDb::new().await;
    let deadline = Duration::from_millis(400);
    let repo = db
        .store(StoreConfig {
            deadline,
            ..StoreConfig::default()
        })
        .repository::<Counter>();
    let id = new_counter(&repo).await;

    // The lock goes the moment the caller has its answer: a `Timeout`
    // means the write was cancelled, never that it may land.
    let locker = lock_row(&db, id).await;
    let started = Instant::now();
    let result = repo.update(id, bump).await.map(|u| u.output);
    let waited = started.elapsed();
    drop(locker);

    assert!(
        matches!(result, Err(RepositoryError::Timeout)),
        "{result:?}"
    );
    assert!(waited >= deadline, "gave up early: {waited:?}");
    assert!(waited < deadline * 3, "deadline not enforced: {waited:?}");
    assert_no_session_left_in_a_transaction(&db).await;
    assert_eq!(repo.get(id).await.expect("get").value, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_unavailable_after_the_connection_timeout() {
    let db = TestDb::new().await;
    let connection_timeout = Duration::from_millis(200);
    let repo = db
        .store(StoreConfig {
            max_connections: 1,
            connection_timeout,
            deadline: Duration::from_secs(10),
            // The premise: the only connection is stuck on a lock.
            lock_wait: Duration::from_secs(10),
            ..StoreConfig::default()
        })
        .repository::<Counter>();
    let id = new_counter(&repo).await;

    // The pool's only connection waits on a row lock held elsewhere.
    let locker = lock_row(&db, id).await;
    let holder = {
        let repo = repo.clone();
        tokio::spawn(async move { repo.update(id, bump).await.map(|u| u.output) })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let result = repo.get(id).await;
    let waited = started.elapsed();
    assert!(
        matches!(result, Err(RepositoryError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        waited >= connection_timeout,
        "failed before the timeout: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(2),
        "did not fail fast: {waited:?}"
    );

    drop(locker);
    assert_eq!(
        holder
            .await
            .expect("no panic")
            .expect("the held update lands"),
        1
    );
    assert_eq!(
        repo.get(id).await.expect("and the pool serves again").value,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backends_between_operations_are_replaced_transparently() {
    let db = TestDb::new().await;
    let store = db.store(StoreConfig {
        max_connections: 4,
        ..StoreConfig::default()
    });
    let repo = store.repository::<Counter>();
    let id = new_counter(&repo).await;

    for round in 1..=5_u64 {
        // Warm several pooled connections, then kill every one of them.
        let warm: Vec<_> = (0..4)
            .map(|_| {
                let repo = repo.clone();
                tokio::spawn(async move { repo.get(id).await })
            })
            .collect();
        for task in warm {
            task.await.expect("no panic").expect("get");
        }
        assert!(
            db.terminate_backends().await > 0,
            "there were sessions to kill"
        );

        let value = repo
            .update(id, bump)
            .await
            .map(|u| u.output)
            .expect("the next update succeeds");
        assert_eq!(value, round, "nothing half-written, nothing lost");
    }
    assert_eq!(repo.get(id).await.expect("get").version(), Version::new(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_is_unavailable_not_a_hang() {
    // Nothing listens on port 1: connecting fails at once, the pool keeps
    // retrying until its connection timeout, and the caller hears why.
    let store = storage::PgStore::new(
        "postgres://postgres@127.0.0.1:1/postgres",
        StoreConfig {
            connection_timeout: Duration::from_millis(300),
            ..StoreConfig::default()
        },
    );
    let repo = store.repository::<Counter>();
    let started = Instant::now();
    let result = repo.get(CounterId::generate()).await;
    assert!(
        matches!(result, Err(RepositoryError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        store.ping().await,
        Err(RepositoryError::Unavailable(_))
    ));
}

/// A purge drains a backlog far larger than one statement may delete within
/// the statement timeout (the deadline): it deletes in bounded batches, and
/// never a token younger than the retention. One `DELETE` of the whole
/// backlog took 125 ms here, past this test's 50 ms deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_drains_a_large_backlog_in_bounded_batches() {
    let db = TestDb::new().await;
    let mut setup = db.connect().await;
    setup
        .batch_execute(
            "INSERT INTO tx_tokens (aggregate_kind, token, aggregate_id, fingerprint, created_at) \
             SELECT 'counter', gen_random_uuid(), gen_random_uuid(), decode(repeat('00', 32), 'hex'), \
                    now() - interval '2 days' \
             FROM generate_series(1, 300000)",
        )
        .await
        .expect("an expired backlog");
    let young = db.store(StoreConfig::default()).repository::<Counter>();
    let token = TxToken::generate();
    let counter = Counter::sample(CounterId::generate(), 1);
    young
        .create(token, counter.clone())
        .await
        .expect("a young token");

    // Every purge statement must finish within this store's 50 ms.
    let short_deadline = db.store(StoreConfig {
        deadline: Duration::from_millis(50),
        ..StoreConfig::default()
    });
    let purged = short_deadline
        .purge_expired_tokens()
        .await
        .expect("the purge drains");
    assert_eq!(purged, 300_000);
    let retried = young.create(token, counter).await.expect("retry");
    assert!(!retried.is_new(), "the young token was kept");
}

/// Held keys use a budget of connections of their own: holding as many
/// keys as the request pool has connections leaves requests served (they
/// all answered 503 when each held key took a request connection), and a
/// key beyond the lock budget is `Unavailable` at once, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_keys_do_not_take_connections_from_requests() {
    use domain::ExclusiveAccess;
    let db = TestDb::new().await;
    let store = db.store(StoreConfig {
        max_connections: 2,
        max_lock_connections: 3,
        connection_timeout: Duration::from_millis(200),
        ..StoreConfig::default()
    });
    let repo = store.repository::<Counter>();
    let id = new_counter(&repo).await;
    let wait = Duration::from_secs(1);
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(
            store
                .lock(&format!("key-{n}"), wait)
                .await
                .expect("a key within the budget"),
        );
    }
    assert!(repo.get(id).await.is_ok(), "requests are still served");
    assert!(repo.update(id, bump).await.is_ok(), "and can write");
    let beyond = store.lock("key-3", wait).await;
    assert!(
        matches!(beyond, Err(RepositoryError::Unavailable(_))),
        "{beyond:?}"
    );
    for guard in held {
        store.unlock(guard).await.expect("released");
    }
    let again = store
        .lock("key-3", wait)
        .await
        .expect("the budget is free again");
    store.unlock(again).await.expect("released");
}

/// Keyed access holds across stores that share nothing but the database,
/// as the instances of a service behind a load balancer do: a key one
/// holds, exclusively, the other cannot take, shared or not, until it is
/// released; shared holds coexist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_access_excludes_across_stores_on_one_database() {
    use domain::ExclusiveAccess;
    let db = TestDb::new().await;
    let (one, other) = (
        db.store(StoreConfig::default()),
        db.store(StoreConfig::default()),
    );
    let short = Duration::from_millis(200);
    let held = one.lock("account-7", short).await.expect("free");
    let refused = other.lock("account-7", short).await;
    assert!(
        matches!(refused, Err(RepositoryError::Timeout)),
        "{refused:?}"
    );
    let refused = other.lock_shared("account-7", short).await;
    assert!(
        matches!(refused, Err(RepositoryError::Timeout)),
        "{refused:?}"
    );
    one.unlock(held).await.expect("released");
    let theirs = other
        .lock_shared("account-7", short)
        .await
        .expect("free again");
    let mine = one
        .lock_shared("account-7", short)
        .await
        .expect("shared holds coexist");
    let refused = one.lock("account-7", short).await;
    assert!(
        matches!(refused, Err(RepositoryError::Timeout)),
        "{refused:?}"
    );
    one.unlock(mine).await.expect("released");
    other.unlock(theirs).await.expect("released");
}

/// The store's metrics, read through the service's Prometheus recorder:
/// keyed holds are counted while held and timed when released, a pool
/// wait that ends without a connection is counted. (The recorder is the
/// process's: the tests beside this one add to the same series, so counts
/// are compared as "grew by at least".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_holds_and_pool_timeouts_show_in_the_metrics() {
    use domain::ExclusiveAccess;
    let metrics = app::metrics::handle();
    let read = |name: &str, label: &str| -> f64 {
        metrics
            .render()
            .lines()
            .filter(|line| line.starts_with(name) && line.contains(label))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let db = TestDb::new().await;
    let store = db.store(StoreConfig {
        max_lock_connections: 1,
        connection_timeout: Duration::from_millis(100),
        ..StoreConfig::default()
    });
    let released_before = read("storage_keyed_hold_seconds_count", r#"mode="shared""#);
    let timeouts_before = read("storage_pool_timeouts_total", r#"pool="locks""#);
    let guard = store
        .lock_shared("metrics", Duration::from_secs(1))
        .await
        .expect("held");
    assert!(read("storage_keyed_holds", r#"mode="shared""#) >= 1.0);
    let beyond = store.lock("other", Duration::from_secs(1)).await;
    assert!(
        matches!(beyond, Err(RepositoryError::Unavailable(_))),
        "{beyond:?}"
    );
    store.unlock(guard).await.expect("released");
    assert!(read("storage_keyed_hold_seconds_count", r#"mode="shared""#) >= released_before + 1.0);
    assert!(read("storage_pool_timeouts_total", r#"pool="locks""#) >= timeouts_before + 1.0);
}

/// A create sends BEGIN, its claim, its inserts and COMMIT in one flight.
/// The ledger's entries go in a statement diesel prepares afresh each time
/// (a round trip of its own before it is sent): the COMMIT must still wait
/// behind it. Were it overtaken, a create refused for an id already taken
/// would add its entries to the existing ledger, outside the transaction.
/// Each create runs on a fresh connection, where nothing is prepared yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_writes_none_of_its_rows_even_where_nothing_is_prepared() {
    use domain::testing::{Ledger, LedgerId};
    let db = TestDb::new().await;
    let first = db.store(StoreConfig::default()).repository::<Ledger>();
    let id = LedgerId::generate();
    first
        .create(TxToken::generate(), Ledger::open(id, "first"))
        .await
        .expect("create");
    for n in 0..20 {
        let mut intruder = Ledger::open(id, "second");
        intruder.entries = (0..=n).collect();
        // A store of its own: a connection that has prepared nothing.
        let repo = db.store(StoreConfig::default()).repository::<Ledger>();
        let refused = repo.create(TxToken::generate(), intruder).await;
        assert!(
            matches!(refused, Err(RepositoryError::AlreadyExists { .. })),
            "{refused:?}"
        );
    }
    let stored = first.get(id).await.expect("get");
    assert_eq!((stored.owner.as_str(), stored.entries), ("first", vec![]));
}

/// An update of a root and its child rows goes in one flight with its
/// COMMIT: when a concurrent writer moved the version in between, the
/// root's miss must fail the transaction on the server, or the COMMIT
/// queued behind the child rows would keep them. Here another writer
/// changes only the root (so the child insert itself succeeds) while the
/// first attempt's closure runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_miss_inside_a_flight_writes_none_of_its_child_rows() {
    use domain::testing::{Ledger, LedgerId};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let db = TestDb::new().await;
    let repo = db.store(StoreConfig::default()).repository::<Ledger>();
    for round in 0..5 {
        let id = LedgerId::generate();
        repo.create(TxToken::generate(), Ledger::open(id, "owner"))
            .await
            .expect("create");
        let calls = AtomicUsize::new(0);
        let updated = repo
            .update(id, |ledger| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    move_the_handle_from_elsewhere(&db, id);
                }
                ledger.entries.push(7);
                Ok::<_, Infallible>(())
            })
            .await
            .expect("update");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "round {round}: one miss, one retry"
        );
        let stored = repo.get(id).await.expect("get");
        assert_eq!(stored, updated.aggregate, "round {round}");
        assert_eq!(
            (stored.handle, stored.entries),
            (Some(format!("moved {id}")), vec![7]),
            "round {round}: the missed attempt's entry must not have landed"
        );
    }
}

/// A write that touches one table twice (the ledger deletes its entries,
/// then inserts new ones at the same keys) goes as two statements between
/// BEGIN and COMMIT: the rows are replaced whole, and a miss on the root
/// still writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_child_rows_replace_the_old_ones_whole() {
    use domain::testing::{Ledger, LedgerId};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let db = TestDb::new().await;
    let repo = db.store(StoreConfig::default()).repository::<Ledger>();
    let id = LedgerId::generate();
    let mut ledger = Ledger::open(id, "owner");
    ledger.entries = vec![1, 2, 3];
    repo.create(TxToken::generate(), ledger)
        .await
        .expect("create");
    // Not a prefix of the old entries: the mapping deletes them all and
    // inserts the new ones at positions 0 and 1, which the old rows held.
    repo.update(id, |ledger| {
        ledger.entries = vec![9, 8];
        Ok::<_, Infallible>(())
    })
    .await
    .expect("rewrite");
    assert_eq!(repo.get(id).await.expect("get").entries, vec![9, 8]);

    let calls = AtomicUsize::new(0);
    repo.update(id, |ledger| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            move_the_handle_from_elsewhere(&db, id);
        }
        ledger.entries = vec![7];
        Ok::<_, Infallible>(())
    })
    .await
    .expect("rewrite after a miss");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one miss, one retry");
    let stored = repo.get(id).await.expect("get");
    assert_eq!(
        (stored.handle, stored.entries),
        (Some(format!("moved {id}")), vec![7]),
        "the missed attempt wrote nothing"
    );
}

/// Updates the ledger's handle through a store of its own, on a thread and
/// runtime of its own, and returns once that write committed.
fn move_the_handle_from_elsewhere(db: &Arc<TestDb>, id: domain::testing::LedgerId) {
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let other = db
                    .store(StoreConfig::default())
                    .repository::<domain::testing::Ledger>();
                other
                    .update(id, |ledger| {
                        ledger.handle = Some(format!("moved {id}"));
                        Ok::<_, Infallible>(())
                    })
                    .await
                    .expect("the other writer's update");
            });
        });
    });
}

/// Makes the server refuse (XX000) any update that sets a counter to 13.
async fn refuse_thirteen(db: &TestDb) {
    db.connect()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_thirteen() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'thirteen refused' USING ERRCODE = 'XX000'; END $$; \
             CREATE TRIGGER refuse_thirteen BEFORE UPDATE ON counters FOR EACH ROW \
             WHEN (NEW.value = 13) EXECUTE FUNCTION refuse_thirteen();",
        )
        .await
        .expect("create the trigger");
}

fn set(value: u64) -> impl FnOnce(&mut Counter) -> Result<(), Infallible> {
    move |counter| {
        counter.value = value;
        Ok(())
    }
}

/// A unit over two counters at 0.
type TwoCounterUnit = for<'t> fn(
    &'t mut storage::PgTx,
    CounterId,
    CounterId,
) -> domain::BoxFuture<'t, Result<(), RepositoryError>>;

/// Runs `unit` where the server refuses any update of a counter to 13: the
/// unit fails (`Storage`), and neither counter changed.
async fn a_refused_kept_update_fails_the_unit(unit: TwoCounterUnit) {
    use domain::UnitOfWork;
    let db = TestDb::new().await;
    refuse_thirteen(&db).await;
    let store = db.store(StoreConfig::default());
    let repo: Counters = store.repository::<Counter>();
    let (a, b) = (new_counter(&repo).await, new_counter(&repo).await);
    let failed = store.run(|tx| unit(tx, a, b)).await;
    assert!(
        matches!(failed, Err(RepositoryError::Storage(_))),
        "{failed:?}"
    );
    for id in [a, b] {
        let stored = repo.get(id).await.expect("get");
        assert_eq!((stored.value, stored.version()), (0, Version::INITIAL));
    }
    assert_no_session_left_in_a_transaction(&db).await;
}

/// A unit keeps its updates until COMMIT, which they travel with: one the
/// server refuses there fails the unit, and nothing of it lands, the
/// other aggregate's update included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_update_refused_at_commit_fails_the_unit_and_writes_nothing() {
    use domain::TxExt;
    a_refused_kept_update_fails_the_unit(|tx, a, b| {
        Box::pin(async move {
            tx.of::<Counter>().update(a, set(5)).await?;
            tx.of::<Counter>().update(b, set(13)).await?;
            Ok(())
        })
    })
    .await;
}

/// A kept update goes out before any statement that could see it (here a
/// listing): refused then, it fails the listing, and the unit with it,
/// even when the closure recovers from the error and returns `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_update_refused_before_a_later_statement_fails_the_unit_whatever_the_closure_does() {
    use domain::TxExt;
    a_refused_kept_update_fails_the_unit(|tx, a, b| {
        Box::pin(async move {
            tx.of::<Counter>().update(a, set(13)).await?;
            let listed = tx.of::<Counter>().all().await;
            assert!(
                matches!(listed, Err(RepositoryError::Storage(_))),
                "{listed:?}"
            );
            tx.of::<Counter>().update(b, set(5)).await?;
            Ok(())
        })
    })
    .await;
}

/// A unit's BEGIN travels with its first statement: a unit that sends
/// none (it does nothing, or fails before its first read) sends no BEGIN
/// and no COMMIT or ROLLBACK either, and leaves its connection fit for
/// the next unit on the pool's only connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_that_send_no_statement_leave_their_connection_fit_for_the_next() {
    use domain::{TxExt, UnitOfWork};
    let db = TestDb::new().await;
    let store = db.store(StoreConfig {
        max_connections: 1,
        ..StoreConfig::default()
    });
    let repo: Counters = store.repository::<Counter>();
    let id = new_counter(&repo).await;
    for round in 0..3 {
        let nothing = store
            .run(|_tx| Box::pin(async move { Ok::<_, RepositoryError>(round) }))
            .await;
        assert_eq!(nothing.expect("an empty unit commits"), round);
        let refused = store
            .run(|_tx| Box::pin(async move { Err::<(), _>(RepositoryError::Domain(Refused)) }))
            .await;
        assert!(matches!(refused, Err(RepositoryError::Domain(Refused))));
        store
            .run(|tx| Box::pin(async move { tx.of::<Counter>().update(id, bump).await }))
            .await
            .expect("the next unit runs as usual");
    }
    let stored = repo.get(id).await.expect("get");
    assert_eq!((stored.value, stored.version()), (3, Version::new(4)));
    assert_no_session_left_in_a_transaction(&db).await;
}

/// Makes every COMMIT that follows an update of a counter take `seconds`
/// (a deferred constraint trigger that sleeps), from outside the pool.
async fn slow_commits_of_counters(db: &TestDb, seconds: f64) {
    db.connect()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$; \
             CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON counters \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();"
        ))
        .await
        .expect("a trigger that slows COMMIT");
}

/// A unit whose COMMIT is on its way when the deadline passes is
/// cancelled there and its reply awaited, as a repository write is: its
/// `Timeout` means it did not land, never that it lands afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_past_its_deadline_during_commit_is_a_timeout_and_writes_nothing() {
    use domain::{TxExt, UnitOfWork};
    let db = TestDb::new().await;
    let deadline = Duration::from_millis(400);
    let store = db.store(StoreConfig {
        deadline,
        ..StoreConfig::default()
    });
    let repo: Counters = store.repository::<Counter>();
    let id = new_counter(&repo).await;
    // COMMIT starts at about 250 ms and would end at about 550 ms, each
    // statement well inside `statement_timeout` (the deadline).
    slow_commits_of_counters(&db, 0.3).await;
    let started = Instant::now();
    let result = store
        .run(|tx| {
            Box::pin(async move {
                tx.of::<Counter>().update(id, bump).await?;
                tokio::time::sleep(Duration::from_millis(250)).await;
                Ok::<_, RepositoryError>(())
            })
        })
        .await;
    let waited = started.elapsed();
    assert!(
        matches!(result, Err(RepositoryError::Timeout)),
        "{result:?}"
    );
    assert!(waited < deadline * 3, "deadline not enforced: {waited:?}");
    // Past the time the COMMIT would have taken, had it gone on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = repo.get(id).await.expect("get");
    assert_eq!((stored.value, stored.version()), (0, Version::INITIAL));
    assert_no_session_left_in_a_transaction(&db).await;
}

/// A unit dropped while its COMMIT is on its way (its caller gone) asks
/// the server to cancel it, as a dropped repository write does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_dropped_during_its_commit_never_lands() {
    use domain::{TxExt, UnitOfWork};
    let db = TestDb::new().await;
    let store = db.store(StoreConfig::default());
    let repo: Counters = store.repository::<Counter>();
    let id = new_counter(&repo).await;
    slow_commits_of_counters(&db, 0.5).await;
    let unit = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .run(|tx| Box::pin(async move { tx.of::<Counter>().update(id, bump).await }))
                .await
        }
    });
    // COMMIT went out at once and now sleeps in the trigger.
    tokio::time::sleep(Duration::from_millis(200)).await;
    unit.abort();
    assert!(unit.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stored = repo.get(id).await.expect("get");
    assert_eq!((stored.value, stored.version()), (0, Version::INITIAL));
    assert_no_session_left_in_a_transaction(&db).await;
}
