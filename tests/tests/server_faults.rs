//! Faults that reach beyond one test: a process-wide failpoint and a
//! restart of the PostgreSQL server. The tests here run one at a time.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use domain::testing::{ContractSubject, Counter, CounterId};
use domain::{Aggregate, Repository, RepositoryError, TxToken, Version};
use integration_tests::TestDb;
use storage::StoreConfig;

/// Held by each test for its whole run. tokio's mutex works across the
/// tests' separate runtimes, and a panicking test does not poison it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_commit_reply_is_lost_is_retried_into_the_stored_aggregate() {
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

    // An update cannot be retried blindly: its outcome is reported unknown,
    // and re-reading shows it landed exactly once.
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

    let page = repo.list(domain::PageRequest::first(10)).await.unwrap();
    assert_eq!(page.items.len(), 1, "never a second row");
    scenario.teardown();
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
