//! Faults that reach beyond one test: a process-wide failpoint and a
//! restart of the PostgreSQL server. The tests here run one at a time.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use domain::testing::{ContractSubject, Counter, CounterId};
use domain::{Aggregate, Nested, Repository, RepositoryError, TxExt, TxToken, UnitOfWork, Version};
use integration_tests::{OwnCluster, Pair, StoreWithDb, TestDb};
use storage::StoreConfig;

/// Held by each test for its whole run. tokio's mutex works across the
/// tests' separate runtimes, and a panicking test does not poison it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_write_replies_are_settled_by_token_or_version() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scenario = fail::FailScenario::setup();
    let db = TestDb::new().await;
    let repo = db.store(StoreConfig::default()).repository::<Counter>();
    let sample = Counter::sample(CounterId::generate(), 1);

    fail::cfg("storage::commit-reply-lost", "1*return").unwrap();
    let created = repo.create(TxToken::generate(), sample.clone()).await;
    let created = created.expect("the retry finds what the first attempt committed");
    assert!(
        created.is_new(),
        "the aggregate is this call's, not a replay of another request"
    );
    let created = created.into_aggregate();
    assert_eq!(created.id(), sample.id());
    assert_eq!(created.version(), Version::INITIAL);

    // An update cannot be retried blindly: once it may have landed (the
    // version moved), its outcome is reported unknown, and re-reading shows
    // it landed exactly once.
    fail::cfg("storage::commit-reply-lost", "1*return").unwrap();
    let updated = repo
        .update(sample.id(), |c| {
            c.value += 1;
            Ok::<_, Infallible>(())
        })
        .await;
    assert!(
        matches!(updated, Err(RepositoryError::OutcomeUnknown)),
        "{updated:?}"
    );
    let stored = repo.get(sample.id()).await.unwrap();
    assert_eq!((stored.value, stored.version()), (1, Version::new(2)));

    // Broken before it landed, the version has not moved: the retry runs
    // the closure again on the same state, and the update lands once.
    fail::cfg("storage::write-lost-before", "1*return").unwrap();
    let updated = repo
        .update(sample.id(), |c| {
            c.value += 1;
            Ok::<_, Infallible>(())
        })
        .await
        .expect("a write that never landed is retried");
    assert_eq!(
        (updated.aggregate.value, updated.aggregate.version()),
        (2, Version::new(3))
    );

    let page = repo.list(domain::PageRequest::first(10)).await.unwrap();
    assert_eq!(page.items.len(), 1, "never a second row");
    scenario.teardown();
}

/// A unit that creates something whose COMMIT reply is lost asks its
/// token whether it landed: if it did, the caller gets the unit's answer;
/// if the connection broke before the COMMIT, the unit runs again. Either
/// way exactly one aggregate exists. A unit that claimed no token cannot
/// tell, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_whose_commit_reply_is_lost_is_resolved_by_its_token() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scenario = fail::FailScenario::setup();
    let store = StoreWithDb::fresh().await;
    let create_in_a_unit = |id: CounterId| {
        let store = store.clone();
        async move {
            store
                .run(|tx| {
                    Box::pin(async move {
                        let counter = Counter::sample(id, 1);
                        let created = tx
                            .of::<Counter>()
                            .create(TxToken::generate(), counter)
                            .await?;
                        Ok::<_, RepositoryError>(created.into_aggregate())
                    })
                })
                .await
        }
    };

    for failpoint in [
        "storage::unit-commit-reply-lost",
        "storage::unit-commit-lost-before",
    ] {
        fail::cfg(failpoint, "1*return").unwrap();
        let id = CounterId::generate();
        let created = create_in_a_unit(id).await;
        assert!(created.is_ok(), "{failpoint}: {created:?}");
        assert!(
            store.store().repository::<Counter>().get(id).await.is_ok(),
            "{failpoint}"
        );
    }
    let all = store
        .store()
        .repository::<Counter>()
        .list(domain::PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2, "each unit landed exactly once");

    fail::cfg("storage::unit-commit-reply-lost", "1*return").unwrap();
    let id = all.items[0].id();
    let updated = store
        .run(|tx| {
            Box::pin(async move {
                let bumped = tx
                    .of::<Counter>()
                    .update(id, |c| {
                        c.value += 1;
                        Ok::<_, Infallible>(())
                    })
                    .await?;
                Ok::<_, RepositoryError>(bumped.aggregate)
            })
        })
        .await;
    assert!(
        matches!(updated, Err(RepositoryError::OutcomeUnknown)),
        "{updated:?}"
    );
    scenario.teardown();
}

/// A store on a fresh database holding one counter at zero.
async fn a_store_with_a_tally() -> (StoreWithDb, CounterId) {
    let store = StoreWithDb::fresh().await;
    let tally = Counter::sample(CounterId::generate(), 0);
    let id = tally.id();
    let counters = store.store().repository::<Counter>();
    counters
        .create(TxToken::generate(), tally)
        .await
        .expect("create the tally");
    (store, id)
}

/// A unit whose COMMIT reply is lost asks a token it kept whether it
/// landed: not one claimed inside a nested part that rolled back, which
/// would say "no" for a unit that landed and run it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_is_settled_by_a_token_the_unit_kept_not_a_rolled_back_one() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scenario = fail::FailScenario::setup();
    let (store, tally_id) = a_store_with_a_tally().await;
    let counters = store.store().repository::<Counter>();

    fail::cfg("storage::unit-commit-reply-lost", "1*return").unwrap();
    let done = store
        .run(|tx| {
            Box::pin(async move {
                let failed: Result<(), RepositoryError> = tx
                    .nested(|tx| {
                        Box::pin(async move {
                            let inside = Counter::sample(CounterId::generate(), 1);
                            tx.of::<Counter>()
                                .create(TxToken::generate(), inside)
                                .await?;
                            Err(RepositoryError::Conflict {
                                kind: "test",
                                id: String::new(),
                                attempts: 1,
                            })
                        })
                    })
                    .await;
                assert!(failed.is_err());
                let kept = Counter::sample(CounterId::generate(), 2);
                tx.of::<Counter>().create(TxToken::generate(), kept).await?;
                tx.of::<Counter>()
                    .update(tally_id, |c| {
                        c.value += 1;
                        Ok::<_, Infallible>(())
                    })
                    .await?;
                Ok::<_, RepositoryError>(())
            })
        })
        .await;
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(
        counters.get(tally_id).await.unwrap().value,
        1,
        "the unit landed once"
    );
    scenario.teardown();
}

/// A unit run under a key never answers `OutcomeUnknown`: a lost COMMIT
/// reply, or a connection lost before COMMIT, is settled by the key, and
/// the unit applies exactly once, even one that claimed no other token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_unit_whose_commit_reply_is_lost_applies_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scenario = fail::FailScenario::setup();
    let (store, id) = a_store_with_a_tally().await;
    let counters = store.store().repository::<Counter>();
    let bump = |key: TxToken| {
        let store = store.clone();
        async move {
            store
                .run_once(key, domain::Fingerprint::of(&("bump", id)), |tx| {
                    Box::pin(async move {
                        let bumped = tx
                            .of::<Counter>()
                            .update(id, |c| {
                                c.value += 1;
                                Ok::<_, Infallible>(())
                            })
                            .await?;
                        Ok::<_, RepositoryError>(bumped.aggregate.value)
                    })
                })
                .await
        }
    };
    let mut expected = 0;
    for failpoint in [
        "storage::unit-commit-reply-lost",
        "storage::unit-commit-lost-before",
    ] {
        fail::cfg(failpoint, "1*return").unwrap();
        let key = TxToken::generate();
        let answered = bump(key).await;
        expected += 1;
        assert_eq!(
            answered.ok(),
            Some(domain::Keyed::First(expected)),
            "{failpoint}"
        );
        assert_eq!(
            counters.get(id).await.unwrap().value,
            expected,
            "{failpoint}"
        );
        let retried = bump(key).await;
        assert_eq!(
            retried.ok(),
            Some(domain::Keyed::Replayed(expected)),
            "{failpoint}"
        );
        assert_eq!(
            counters.get(id).await.unwrap().value,
            expected,
            "{failpoint}"
        );
    }
    scenario.teardown();
}

/// A server that writes its messages in German (a cluster of the test's
/// own, `scripts/pg-german`): a role that may set `lc_messages` gets
/// sessions that speak English, so a lock timeout is still told apart and
/// retried; a role that may not is refused at `migrate`, which names the
/// fix, instead of failing requests with 500s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_german_server_is_made_to_speak_english_or_refused_saying_why() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    const SUPERUSER: &str = "postgres://postgres@127.0.0.1:5443/postgres";
    const NO_SUPERUSER: &str = "postgres://app@127.0.0.1:5443/app";
    let _serial = ONE_AT_A_TIME.lock().await;
    let _cluster = OwnCluster::up("pg-german");

    let refused = storage::migrate(NO_SUPERUSER).await;
    assert!(
        matches!(&refused, Err(storage::StoreError::Messages(why))
            if why.contains("de_DE") && why.contains("ALTER ROLE")),
        "{refused:?}"
    );

    storage::migrate(SUPERUSER).await.expect("migrate");
    let mut admin = AsyncPgConnection::establish(SUPERUSER).await.unwrap();
    admin
        .batch_execute(storage::testing::CREATE_TABLES)
        .await
        .unwrap();
    let counters = storage::PgStore::new(SUPERUSER, StoreConfig::default()).repository::<Counter>();
    let counter = Counter::sample(CounterId::generate(), 0);
    let id = counter.id();
    counters.create(TxToken::generate(), counter).await.unwrap();
    // Another session holds the row for 300 ms: the update's lock waits
    // time out (55P03, in German on this server) and are retried.
    admin
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM counters WHERE id = '{id}' FOR UPDATE"
        ))
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        admin.batch_execute("COMMIT").await.unwrap();
    });
    let updated = counters
        .update(id, |c| {
            c.value += 1;
            Ok::<_, Infallible>(())
        })
        .await;
    release.await.unwrap();
    assert!(updated.is_ok(), "lock timeouts were retried: {updated:?}");
}

/// TLS to Postgres, on a cluster of the test's own that takes TLS only
/// (`scripts/pg-tls`): a store on `sslmode=verify-full` with the
/// cluster's CA migrates and serves, and the relay's kind of session is
/// encrypted too; a CA that did not sign the server's certificate is
/// refused, and so is plain text, each saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_and_plain_text_refused() {
    use diesel_async::SimpleAsyncConnection;
    const SERVER: &str = "postgres://postgres@127.0.0.1:5444/postgres";
    const CERTS: &str = "/var/lib/postgresql/pg-tls";
    let _serial = ONE_AT_A_TIME.lock().await;
    let _cluster = OwnCluster::up("pg-tls");

    let verified = format!("{SERVER}?sslmode=verify-full&sslrootcert={CERTS}/ca.crt");
    storage::migrate(&verified).await.expect("migrate over TLS");
    storage::connect(&verified)
        .await
        .unwrap()
        .batch_execute(storage::testing::CREATE_TABLES)
        .await
        .unwrap();
    let counters = storage::PgStore::new(&verified, StoreConfig::default()).repository::<Counter>();
    let counter = Counter::sample(CounterId::generate(), 0);
    let id = counter.id();
    counters.create(TxToken::generate(), counter).await.unwrap();
    let bumped = counters
        .update(id, |c| {
            c.value += 1;
            Ok::<_, Infallible>(())
        })
        .await
        .unwrap();
    assert_eq!(bumped.aggregate.value, 1);
    let session = storage::tls::client(&verified, |_| {}).await.unwrap();
    let row = session
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the relay's session is encrypted");

    let wrong_ca = format!("{SERVER}?sslmode=verify-full&sslrootcert={CERTS}/other-ca.crt");
    let refused = storage::connect(&wrong_ca).await.map(drop);
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("UnknownIssuer")),
        "{refused:?}"
    );
    let plain = storage::connect(SERVER).await.map(drop);
    assert!(
        matches!(&plain, Err(e) if e.to_string().contains("no encryption")),
        "{plain:?}"
    );
    let unverified = format!("{SERVER}?sslmode=require");
    assert!(
        storage::connect(&unverified).await.is_ok(),
        "require encrypts without verifying"
    );
}

/// Restarts the local cluster, as `.ci/run` starts it.
fn restart_postgres() {
    let versions = std::fs::read_dir("/etc/postgresql")
        .expect("this test restarts the local PostgreSQL: /etc/postgresql must exist");
    let version = versions
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a cluster under /etc/postgresql");
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("run pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster restart failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_unavailable_while_down_and_recovers_at_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let repo = db
        .store(StoreConfig {
            connection_timeout: Duration::from_millis(200),
            ..StoreConfig::default()
        })
        .repository::<Counter>();
    let id = repo
        .create(
            TxToken::generate(),
            Counter::sample(CounterId::generate(), 1),
        )
        .await
        .unwrap()
        .into_aggregate()
        .id();

    let load = {
        let repo = repo.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                match repo.get(id).await {
                    Ok(_) if !failures.is_empty() => return (failures, Instant::now()),
                    Ok(_) => {}
                    Err(error) => failures.push(error),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("no recovery within 20 s: {failures:?}");
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::task::spawn_blocking(restart_postgres).await.unwrap();
    let restarted = Instant::now();

    let (failures, recovered) = load.await.unwrap();
    assert!(!failures.is_empty(), "the load saw the server down");
    for failure in &failures {
        assert!(
            matches!(
                failure,
                RepositoryError::Unavailable(_) | RepositoryError::Timeout
            ),
            "while down, operations fail as Unavailable: {failure:?}"
        );
    }
    let lag = recovered.saturating_duration_since(restarted);
    assert!(
        lag < Duration::from_secs(1),
        "recovered {lag:?} after the server was back"
    );

    // Every pool slot works again: no connection stayed broken.
    let gets: Vec<_> = (0..20)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.get(id).await })
        })
        .collect();
    for get in gets {
        get.await.unwrap().expect("a working connection");
    }
}

/// Failover: a store on both hosts of a primary and its synchronous
/// standby (`target_session_attrs=read-write`) keeps creating while the
/// standby is promoted and the old primary stopped. Writes fail for a
/// moment (unavailable, timed out, or of unknown outcome: never reported
/// done when they were not), then land on the new primary, and every
/// create acknowledged before, during or after is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_synchronous_standby_loses_no_acknowledged_write() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _pair = Pair::up().await;
    let store = storage::PgStore::new(
        Pair::BOTH,
        StoreConfig {
            connection_timeout: Duration::from_millis(500),
            deadline: Duration::from_secs(2),
            ..StoreConfig::default()
        },
    );
    let repo = store.repository::<Counter>();

    // Four writers create until told to stop; each remembers what was
    // acknowledged, its longest create, and how long after the old primary
    // stopped its first create begun after that landed (on the new one).
    let stopped_at: Arc<OnceLock<Instant>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (repo, stopped_at, stop) = (repo.clone(), stopped_at.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut acknowledged, mut failed, mut back_after) = (Vec::new(), 0, None);
                let mut longest = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let counter = Counter::sample(CounterId::generate(), 1);
                    let id = counter.id();
                    let after_stop = stopped_at.get().copied();
                    let began = Instant::now();
                    let created = repo.create(TxToken::generate(), counter).await;
                    longest = longest.max(began.elapsed());
                    match created {
                        Ok(_) => {
                            acknowledged.push(id);
                            if let (Some(at), None) = (after_stop, back_after) {
                                back_after = Some(at.elapsed());
                            }
                        }
                        Err(
                            RepositoryError::Unavailable(_)
                            | RepositoryError::Timeout
                            | RepositoryError::OutcomeUnknown,
                        ) => failed += 1,
                        Err(error) => panic!("not a failover's error: {error:?}"),
                    }
                }
                (acknowledged, failed, back_after, longest)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let switching = Instant::now();
    Pair::cluster("pair_standby", &["promote"]);
    Pair::cluster("pair_primary", &["stop", "-m", "immediate"]);
    let switched = switching.elapsed();
    stopped_at.set(Instant::now()).expect("set once");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut acknowledged, mut failed) = (Vec::new(), 0);
    let (mut back_after, mut longest) = (Duration::ZERO, Duration::ZERO);
    for writer in writers {
        let (theirs, their_failures, their_return, their_longest) = writer.await.expect("a writer");
        acknowledged.extend(theirs);
        failed += their_failures;
        longest = longest.max(their_longest);
        back_after = back_after.max(
            their_return.expect("each writer landed a create on the new primary after the stop"),
        );
    }
    eprintln!(
        "failover: promoted and stopped in {switched:?}; after the stop every writer landed a \
         create within {back_after:?}; the longest create took {longest:?}; {failed} failed; \
         {} acknowledged",
        acknowledged.len()
    );
    assert!(back_after < Duration::from_secs(5), "{back_after:?}");

    let new_primary = storage::PgStore::new(Pair::STANDBY, StoreConfig::default());
    let repo = new_primary.repository::<Counter>();
    for id in &acknowledged {
        repo.get(*id)
            .await
            .unwrap_or_else(|e| panic!("acknowledged create {id} lost: {e:?}"));
    }
}

/// A store reading from a replica that applies a second late: inside a
/// causality scope (a request carrying its token) a read never misses the
/// scope's own writes, the primary serving it while the replica is behind
/// and the replica once it caught up; outside a scope, a read right after
/// a write is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_never_hides_a_clients_own_writes() {
    use storage::causality;
    let _serial = ONE_AT_A_TIME.lock().await;
    let pair = Pair::up().await;
    pair.delay_standby(Duration::from_secs(1)).await;
    let metrics = app::metrics::handle();
    let served_by = |by: &str| -> f64 {
        metrics
            .render()
            .lines()
            .filter(|line| {
                line.starts_with("storage_replica_reads_total")
                    && line.contains(&format!("served_by=\"{by}\""))
            })
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let store = storage::PgStore::with_replica(
        Pair::PRIMARY,
        Pair::STANDBY,
        StoreConfig {
            replica_wait: Duration::from_millis(50),
            ..StoreConfig::default()
        },
    );
    let repo = store.repository::<Counter>();

    // Outside any scope: the replica, a second behind, misses the create.
    let unseen = Counter::sample(CounterId::generate(), 1);
    repo.create(TxToken::generate(), unseen.clone())
        .await
        .expect("created");
    let stale = repo.get(unseen.id()).await;
    assert!(
        matches!(stale, Err(RepositoryError::NotFound { .. })),
        "{stale:?}"
    );

    // In a scope: the write's position makes the read wait, then go to
    // the primary.
    let from_primary = served_by("primary");
    let mine = Counter::sample(CounterId::generate(), 1);
    let (read, token) = causality::scope(None, async {
        repo.create(TxToken::generate(), mine.clone())
            .await
            .expect("created");
        repo.get(mine.id()).await
    })
    .await;
    assert_eq!(read.expect("its own write").id(), mine.id());
    let token = token.expect("the write's position");
    assert!(served_by("primary") > from_primary);

    // The next request carries the token: still read-your-writes.
    let (read, _) = causality::scope(Some(token), repo.get(mine.id())).await;
    assert_eq!(read.expect("its own write").version(), Version::INITIAL);

    // Once the replica caught up, it serves the same request.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let from_replica = served_by("replica");
    let (read, _) = causality::scope(Some(token), repo.get(mine.id())).await;
    assert_eq!(read.expect("replayed").id(), mine.id());
    assert!(served_by("replica") > from_replica);
}
