//! The outbox relay against the real broker (RabbitMQ at `AMQP_URL`,
//! default 127.0.0.1:5672): what is committed arrives, once in a quiet run
//! and at least once whatever fails, in order per aggregate.
//!
//! The tests run one at a time: one of them stops the broker.

#![expect(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::Duration;

use domain::testing::{Ledger, LedgerId, Refused};
use domain::{Repository, RepositoryError, StoredEvent, TxExt, TxToken, UnitOfWork};
use integration_tests::broker::{Delivered, RunningRelay, TestQueue};
use integration_tests::{StoreWithDb, TestDb};
use relay::RelayState;
use storage::StoreConfig;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PATIENCE: Duration = Duration::from_secs(20);

fn append(amount: i64) -> impl FnMut(&mut Ledger) -> Result<(), Infallible> {
    move |ledger| {
        ledger.append(amount);
        Ok(())
    }
}

/// The ids of `events`, as the relay sends them (message ids).
fn ids(events: &[StoredEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.to_string()).collect()
}

fn message_ids(delivered: &[Delivered]) -> Vec<String> {
    delivered.iter().map(|d| d.message_id.clone()).collect()
}

/// Events not published yet, read from the outbox.
async fn unpublished(db: &TestDb) -> i64 {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    let mut conn = db.connect().await;
    diesel::select(sql::<BigInt>(
        "(SELECT count(*) FROM outbox WHERE published_at IS NULL)",
    ))
    .get_result(&mut conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_change_publishes_nothing_and_a_committed_one_arrives_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let store = StoreWithDb::fresh().await;
    let queue = TestQueue::bind().await;
    let relay = RunningRelay::start(store.db().url(), &queue.exchange);
    let repo = store.store().repository::<Ledger>();

    let id = LedgerId::generate();
    repo.create(TxToken::generate(), Ledger::open(id, "ada"))
        .await
        .unwrap();
    repo.update(id, append(5)).await.unwrap();
    let rolled_back = LedgerId::generate();
    let failed = store
        .run(|tx| {
            Box::pin(async move {
                tx.of::<Ledger>()
                    .create(TxToken::generate(), Ledger::open(rolled_back, "bob"))
                    .await?;
                tx.of::<Ledger>().update(id, append(6)).await?;
                Err::<(), _>(RepositoryError::Domain(Refused))
            })
        })
        .await;
    assert!(failed.is_err());

    let stored = repo.events(id).await.unwrap();
    let arrived = queue.wait_for(2, PATIENCE).await;
    // Anything more would come quickly: the relay is awake and idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrived_all = queue.received();
    assert_eq!(message_ids(&arrived_all), ids(&stored), "{arrived:?}");
    assert_eq!(arrived_all[0].routing_key, "ledger.ledger_opened");
    assert_eq!(arrived_all[1].routing_key, "ledger.entry_appended");
    assert_eq!(
        arrived_all[1].body["payload"],
        serde_json::json!({ "amount": 5 })
    );
    assert_eq!(arrived_all[1].body["version"], 2);
    assert_eq!(arrived_all[1].body["aggregate_id"], id.to_string());
    assert!(repo.events(rolled_back).await.unwrap().is_empty());
    assert_eq!(unpublished(store.db()).await, 0);
    assert_eq!(relay.status.borrow().published, 2);
    relay.stop().await;
    queue.delete().await;
}

/// A relay killed after the broker confirmed a batch and before its mark
/// committed: the mark is held up by a trigger, the relay's task is
/// aborted and its database session terminated (what the death of its
/// process does). The next relay publishes the events again (same message
/// ids), and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_confirmed_by_a_relay_killed_before_marking_are_published_again() {
    let _one = ONE_AT_A_TIME.lock().await;
    let store = StoreWithDb::fresh().await;
    let queue = TestQueue::bind().await;
    let db = store.db();
    db.execute(
        "CREATE FUNCTION hold_the_mark() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$; \
         CREATE TRIGGER hold_the_mark BEFORE UPDATE ON outbox \
         FOR EACH STATEMENT EXECUTE FUNCTION hold_the_mark();",
    )
    .await;
    let repo = store.store().repository::<Ledger>();
    let id = LedgerId::generate();
    repo.create(TxToken::generate(), Ledger::open(id, "ada"))
        .await
        .unwrap();
    repo.update(id, append(1)).await.unwrap();

    let doomed = RunningRelay::start(db.url(), &queue.exchange);
    let confirmed = queue.wait_for(2, PATIENCE).await;
    assert_eq!(confirmed.len(), 2, "the broker has both events");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(unpublished(db).await, 2, "the mark is held up");
    doomed.kill();
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'UPDATE outbox SET published_at%'; \
         DROP TRIGGER hold_the_mark ON outbox;",
    )
    .await;
    assert_eq!(unpublished(db).await, 2, "the killed relay marked nothing");

    let relay = RunningRelay::start(db.url(), &queue.exchange);
    let arrived = queue.wait_for(4, PATIENCE).await;
    // Anything more would come quickly: the relay is awake and idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.stop().await;
    let stored = ids(&repo.events(id).await.unwrap());
    let twice: Vec<String> = stored.iter().chain(&stored).cloned().collect();
    assert_eq!(message_ids(&queue.received()), twice, "{arrived:?}");
    assert_eq!(unpublished(db).await, 0);
    queue.delete().await;
}

/// A relay given a consumer's queue declares it before publishing: events
/// stored before that consumer ever started wait in its queue rather than
/// being dropped as unroutable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_in_the_declared_queue_of_a_consumer_not_started_yet() {
    let _one = ONE_AT_A_TIME.lock().await;
    let store = StoreWithDb::fresh().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (exchange, queue) = (
        format!("test_events_{suffix}"),
        format!("test_queue_{suffix}"),
    );
    let mut config =
        relay::RelayConfig::new(store.db().url(), integration_tests::broker::amqp_url());
    config.exchange.clone_from(&exchange);
    config.queues = vec![relay::QueueBinding::new(queue.clone(), &["ledger.*"])];
    config.poll = Duration::from_millis(100);
    let relay = RunningRelay::start_with(config);
    let repo = store.store().repository::<Ledger>();
    let id = LedgerId::generate();
    repo.create(TxToken::generate(), Ledger::open(id, "ada"))
        .await
        .unwrap();
    repo.update(id, append(1)).await.unwrap();
    let published = tokio::time::timeout(
        PATIENCE,
        relay.status.clone().wait_for(|s| s.published == 2),
    )
    .await
    .is_ok();
    relay.stop().await;
    assert!(published, "the relay published both events");
    let waiting = integration_tests::broker::messages_waiting(&queue).await;
    integration_tests::broker::delete_exchange_and_queues(&exchange, &[&queue]).await;
    assert_eq!(waiting, 2);
}

/// The broker stops (`rabbitmqctl stop_app`) while events are being
/// stored and published, for a few seconds: the relay reports it down,
/// backs off, and once it is back every event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_for_a_while_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let store = StoreWithDb::fresh().await;
    let queue = TestQueue::bind().await;
    let mut relay = RunningRelay::start(store.db().url(), &queue.exchange);
    let repo = store.store().repository::<Ledger>();
    let id = LedgerId::generate();
    repo.create(TxToken::generate(), Ledger::open(id, "ada"))
        .await
        .unwrap();
    for n in 0..20 {
        repo.update(id, append(n)).await.unwrap();
    }
    queue.wait_for(21, PATIENCE).await;

    let stopped = BrokerStopped::now();
    for n in 20..40 {
        repo.update(id, append(n)).await.unwrap();
    }
    let down = tokio::time::timeout(
        PATIENCE,
        relay
            .status
            .wait_for(|s| matches!(s.state, RelayState::BrokerDown(_))),
    )
    .await
    .is_ok();
    assert!(down, "the relay noticed the broker is down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(stopped);

    let arrived = queue.wait_for(41, PATIENCE).await;
    relay.stop().await;
    let stored = ids(&repo.events(id).await.unwrap());
    let arrived: BTreeSet<String> = message_ids(&arrived).into_iter().collect();
    let missing: Vec<&String> = stored.iter().filter(|id| !arrived.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of 41 events never arrived",
        missing.len()
    );
    assert_eq!(unpublished(store.db()).await, 0);
    queue.delete().await;
}

/// Two relays on one outbox, writers on several aggregates, and the first
/// relay stopped half-way: every event arrives, and each aggregate's
/// events arrive in version order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_keep_each_aggregates_order_and_lose_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let store = StoreWithDb::fresh_with(StoreConfig {
        deadline: Duration::from_secs(10),
        max_attempts: 100,
        ..StoreConfig::default()
    })
    .await;
    let queue = TestQueue::bind().await;
    let first = RunningRelay::start(store.db().url(), &queue.exchange);
    let second = RunningRelay::start(store.db().url(), &queue.exchange);
    let repo = store.store().repository::<Ledger>();
    let ledgers: Vec<LedgerId> = (0..5).map(|_| LedgerId::generate()).collect();
    for id in &ledgers {
        repo.create(TxToken::generate(), Ledger::open(*id, "ada"))
            .await
            .unwrap();
    }
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (repo, ledgers) = (repo.clone(), ledgers.clone());
            tokio::spawn(async move {
                for n in 0..25 {
                    repo.update(ledgers[n % ledgers.len()], append(1))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.stop().await;
    for writer in writers {
        writer.await.unwrap();
    }
    let total = ledgers.len() * 21;
    let arrived = queue.wait_for(total, PATIENCE).await;
    second.stop().await;

    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for delivered in &arrived {
        // A repeat (at least once) is not a new arrival.
        if seen.insert(delivered.message_id.clone()) {
            let aggregate = delivered.body["aggregate_id"].as_str().unwrap().to_owned();
            let version = delivered.body["version"].as_u64().unwrap();
            versions.entry(aggregate).or_default().push(version);
        }
    }
    assert_eq!(seen.len(), total, "every event arrived");
    for (aggregate, versions) in versions {
        let expected: Vec<u64> = (1..=21).collect();
        assert_eq!(versions, expected, "ledger {aggregate}");
    }
    queue.delete().await;
}

/// The broker's application stopped until this is dropped (also when the
/// test fails half-way: the other tests need the broker).
struct BrokerStopped;

impl BrokerStopped {
    fn now() -> Self {
        rabbitmqctl("stop_app");
        Self
    }
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        let started = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .stdout(std::process::Stdio::null())
            .status();
        if !started.is_ok_and(|s| s.success()) {
            eprintln!("could not restart RabbitMQ: run `rabbitmqctl start_app`");
        }
    }
}

fn rabbitmqctl(command: &str) {
    let status = std::process::Command::new("rabbitmqctl")
        .arg(command)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("rabbitmqctl {command}: {e} (is RabbitMQ installed?)"));
    assert!(status.success(), "rabbitmqctl {command} failed");
}

/// Published events are kept for the retention, then purged in bounded
/// statements (3 rows each here) until none is left. (Unpublished events
/// are out of the purge's reach: it deletes by `published_at`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_are_purged_after_the_retention_and_no_sooner() {
    let _one = ONE_AT_A_TIME.lock().await;
    let store = StoreWithDb::fresh().await;
    let queue = TestQueue::bind().await;
    let repo = store.store().repository::<Ledger>();
    let id = LedgerId::generate();
    repo.create(TxToken::generate(), Ledger::open(id, "ada"))
        .await
        .unwrap();
    for n in 0..10 {
        repo.update(id, append(n)).await.unwrap();
    }
    let in_outbox = || async {
        use diesel::dsl::sql;
        use diesel::sql_types::BigInt;
        use diesel_async::RunQueryDsl;
        let mut conn = store.db().connect().await;
        diesel::select(sql::<BigInt>("(SELECT count(*) FROM outbox)"))
            .get_result::<i64>(&mut conn)
            .await
            .unwrap()
    };
    let relay_keeping = |retention: Duration| {
        let mut config =
            relay::RelayConfig::new(store.db().url(), integration_tests::broker::amqp_url());
        config.exchange.clone_from(&queue.exchange);
        config.poll = Duration::from_millis(50);
        config.retention = retention;
        config.purge_every = Duration::from_millis(50);
        config.purge_batch = 3;
        RunningRelay::start_with(config)
    };

    // Kept for an hour: published, and all still there.
    let relay = relay_keeping(Duration::from_secs(3600));
    assert_eq!(queue.wait_for(11, PATIENCE).await.len(), 11);
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.stop().await;
    assert_eq!((unpublished(store.db()).await, in_outbox().await), (0, 11));

    // Kept for no time: purged, 3 rows per statement, until none is left.
    let relay = relay_keeping(Duration::ZERO);
    let started = std::time::Instant::now();
    while in_outbox().await > 0 && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.stop().await;
    assert_eq!(in_outbox().await, 0, "published events are purged");
    queue.delete().await;
}

/// A consumer whose handler keeps failing on one event parks that event
/// in `<queue>.parked` after `max_attempts` tries, with why in a header,
/// and goes on with the rest; a message that is no event is parked at
/// once; the events that succeed are handled once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_parks_what_keeps_failing_and_moves_on() {
    use integration_tests::broker::{delete_exchange_and_queues, peek_all, publish};
    use std::sync::{Arc, Mutex};
    let _one = ONE_AT_A_TIME.lock().await;
    // The service's Prometheus recorder, installed before the consumer
    // counts anything.
    let metrics = app::metrics::handle();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (exchange, queue) = (
        format!("test_events_{suffix}"),
        format!("test_queue_{suffix}"),
    );
    let binding = relay::QueueBinding::new(queue.clone(), &["ledger.*"]);
    let parked = binding.parked_queue();
    // Declared before publishing, so that nothing is unroutable.
    integration_tests::broker::declare(&exchange, &binding).await;
    let (first, doomed, last) = (event("opened"), event("cursed"), event("opened"));
    for sent in [&first, &doomed, &last] {
        let body = serde_json::to_vec(sent).unwrap();
        publish(&exchange, &format!("ledger.{}", sent.name), &body).await;
    }
    publish(&exchange, "ledger.opened", b"not an event").await;

    let mut config =
        relay::ConsumerConfig::new(integration_tests::broker::amqp_url(), binding.clone());
    config.exchange.clone_from(&exchange);
    config.min_backoff = Duration::from_millis(10);
    config.max_backoff = Duration::from_millis(40);
    config.max_attempts = 3;
    let tries: Arc<Mutex<BTreeMap<uuid::Uuid, u32>>> = Arc::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = {
        let (tries, doomed) = (tries.clone(), doomed.id);
        tokio::spawn(relay::consume(
            config,
            async move {
                let _ = stopped.await;
            },
            move |event| {
                *tries.lock().unwrap().entry(event.id).or_default() += 1;
                async move {
                    if event.id == doomed {
                        Err("this handler cannot take it")
                    } else {
                        Ok(())
                    }
                }
            },
        ))
    };
    // Once the consumer has handled anything, it has declared the parked
    // queue (it does before it consumes).
    let started = std::time::Instant::now();
    while tries.lock().unwrap().is_empty() && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while integration_tests::broker::messages_waiting(&parked).await < 2
        && started.elapsed() < PATIENCE
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A moment more: nothing must be tried again once parked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(());
    consumer.await.unwrap();
    let waiting = integration_tests::broker::messages_waiting(&queue).await;
    let taken = peek_all(&parked).await;
    let (moved, back) = unpark_all(&queue).await;
    let still_parked = integration_tests::broker::messages_waiting(&parked).await;
    delete_exchange_and_queues(&exchange, &[&queue, &parked]).await;

    let tries = tries.lock().unwrap().clone();
    assert_eq!(
        tries,
        BTreeMap::from([(first.id, 1), (doomed.id, 3), (last.id, 1)])
    );
    assert_eq!(waiting, 0, "the queue moved on");
    // The message that is no event is parked first: the failing event
    // is tried again, after a pause, behind it.
    let bodies = texts(&taken);
    assert_eq!(
        bodies,
        [
            "not an event".to_owned(),
            serde_json::to_string(&doomed).unwrap()
        ]
    );
    assert!(
        taken[0].headers["x-parked-because"].contains("expected"),
        "{taken:?}"
    );
    assert_eq!(
        taken[1].headers["x-parked-because"],
        "this handler cannot take it"
    );
    assert_eq!(taken[1].headers["x-parked-routing-key"], "ledger.cursed");
    // Unparked, they are back in the queue as they came, headers gone.
    assert_eq!((moved, still_parked), (2, 0));
    assert_eq!(texts(&back), bodies);
    assert!(back.iter().all(|t| t.headers.is_empty()), "{back:?}");
    let counted = format!("relay_consumer_parked_total{{queue=\"{queue}\"}} 2");
    assert!(
        metrics.render().contains(&counted),
        "{counted} in\n{}",
        metrics.render()
    );
}

/// A ledger event named `name`, as the relay would publish it.
fn event(name: &str) -> StoredEvent {
    StoredEvent {
        id: uuid::Uuid::now_v7(),
        aggregate_kind: "ledger".to_owned(),
        aggregate_id: uuid::Uuid::now_v7(),
        version: domain::Version::INITIAL,
        name: name.to_owned(),
        payload: serde_json::json!({}),
        occurred_at: domain::Timestamp::now(),
    }
}

/// Unparking a queue no consumer ever ran on says so, instead of a bare
/// broker error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparking_a_queue_no_consumer_ran_on_says_so() {
    let _one = ONE_AT_A_TIME.lock().await;
    let queue = format!("test_queue_{}", uuid::Uuid::new_v4().simple());
    let refused = relay::unpark(&integration_tests::broker::amqp_url(), &queue).await;
    assert!(
        matches!(&refused, Err(relay::UnparkError::NoParkedQueue(parked)) if *parked == format!("{queue}.parked")),
        "{refused:?}"
    );
}

/// Moves what is parked for `queue` back to it (`relay::unpark`); returns
/// how many moved and takes what is then in `queue`.
async fn unpark_all(queue: &str) -> (u64, Vec<integration_tests::broker::Taken>) {
    let moved = relay::unpark(&integration_tests::broker::amqp_url(), queue)
        .await
        .unwrap();
    (moved, integration_tests::broker::take_all(queue).await)
}

/// The bodies of `messages`, as text.
fn texts(messages: &[integration_tests::broker::Taken]) -> Vec<String> {
    messages
        .iter()
        .map(|t| String::from_utf8_lossy(&t.body).into_owned())
        .collect()
}
