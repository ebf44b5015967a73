//! Three processes of the service on one database (through PgBouncer in
//! `scripts/test`'s second pass), driven at once, as behind a load
//! balancer: idempotency keys, If-Match and units of work
//! hold across them, and a request retried on another instance gets the
//! same answer. Each instance is the real binary (`CARGO_BIN_EXE_app`),
//! started on port 0 and ended by its process id when the test ends.

#![expect(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed test"
)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use integration_tests::{TestDb, read};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One running process of the service.
struct Instance {
    base: String,
    client: Client,
    // Killed when dropped (`kill_on_drop`).
    _process: Child,
}

impl Instance {
    /// Starts the binary on `db` (through PgBouncer when the tests run
    /// through it) and waits for its "listening" log line.
    async fn start(db: &TestDb) -> Self {
        let (url, pooling) = db.store_url();
        let pooling = match pooling {
            storage::Pooling::Session => "session",
            storage::Pooling::Transaction => "transaction",
        };
        let mut process = Command::new(env!("CARGO_BIN_EXE_app"))
            .args(["--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", url)
            .env("DB_POOLING", pooling)
            .env("SESSION_DATABASE_URL", db.url())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("AMQP_URL")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let Ok(log) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if log["fields"]["message"] == "listening" {
                    return log["fields"]["address"].as_str().unwrap().to_owned();
                }
            }
            panic!("the instance exited before listening");
        })
        .await
        .expect("the instance listens within 30 s");
        // Keep draining its logs, or it blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            base: format!("http://{address}"),
            client: Client::new(),
            _process: process,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> (u16, Option<String>, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> (u16, Option<String>, Value) {
        read(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

async fn three_instances() -> (Arc<TestDb>, Vec<Arc<Instance>>) {
    let db = TestDb::new().await;
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Arc::new(Instance::start(&db).await));
    }
    (db, instances)
}

/// Three instances started at the same moment on an empty database all
/// come up and serve: they migrate in turns, under the migration lock
/// (without it, concurrent `CREATE TABLE`s fail all but one instance's
/// start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_starting_at_once_on_an_empty_database_all_serve() {
    let db = TestDb::empty().await;
    let instances = futures_util::future::join_all((0..3).map(|_| Instance::start(&db))).await;
    for instance in &instances {
        let (status, _, health) = instance.get("/health").await;
        assert_eq!(status, 200, "{health}");
        let (status, _, user) = instance
            .send(Method::POST, "/users", None, &[], &json!({"username": format!("u{}", rand_suffix()), "first_name": "A", "last_name": "B"}))
            .await;
        assert_eq!(status, 201, "{user}");
    }
}

/// Text logs written to a pipe (a file, a collector) carry no colour
/// codes, and `--help` names the log settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_into_a_pipe_have_no_colour_codes() {
    let help = Command::new(env!("CARGO_BIN_EXE_app"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("LOG_FORMAT") && help.contains("RUST_LOG"),
        "{help}"
    );

    let mut process = Command::new(env!("CARGO_BIN_EXE_app"))
        .args(["--bind", "127.0.0.1:0"])
        .env_remove("LOG_FORMAT")
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.contains("listening");
            seen.push(line);
            if done {
                return seen;
            }
        }
        panic!("exited before listening: {seen:?}");
    })
    .await
    .expect("listens within 30 s");
    for line in &listening {
        assert!(!line.contains('\x1b'), "a colour code in {line:?}");
    }
}

/// A few characters to keep usernames apart.
fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_database_agree() {
    let (_db, instances) = three_instances().await;
    let (user, etag) = one_key_answers_the_same_everywhere(&instances).await;
    one_if_match_wins_across_instances(&instances, &user, &etag).await;
    transfers_from_every_instance_all_land(&instances, &user).await;
}

/// One key, sent to every instance at once and then again one by one: one
/// user, and the same answer everywhere. Returns its id and `ETag`.
async fn one_key_answers_the_same_everywhere(instances: &[Arc<Instance>]) -> (String, String) {
    let key = "0b6f3c52-7a1d-4e9b-9c2f-4d8e1a7b3c01";
    let ada = json!({"username": "ada", "first_name": "Ada", "last_name": "Lovelace"});
    let mut answers = futures_util::future::join_all(
        instances
            .iter()
            .map(|i| i.send(Method::POST, "/users", Some(key), &[], &ada)),
    )
    .await;
    for instance in instances {
        answers.push(
            instance
                .send(Method::POST, "/users", Some(key), &[], &ada)
                .await,
        );
    }
    let first = answers[0].clone();
    assert_eq!(first.0, 201, "{first:?}");
    for answer in &answers {
        assert_eq!(answer, &first, "a retry on any instance answers the same");
    }
    let (_, _, users) = instances[2].get("/users").await;
    assert_eq!(users["items"].as_array().unwrap().len(), 1, "{users}");
    (first.2["id"].as_str().unwrap().to_owned(), first.1.unwrap())
}

/// Three instances patch the same version at once: one wins, the others
/// answer 412.
async fn one_if_match_wins_across_instances(instances: &[Arc<Instance>], user: &str, etag: &str) {
    let path = format!("/users/{user}");
    let patches = futures_util::future::join_all(instances.iter().enumerate().map(|(n, i)| {
        let body = json!({"first_name": format!("Augusta{n}")});
        let path = &path;
        async move {
            i.send(Method::PATCH, path, None, &[("If-Match", etag)], &body)
                .await
                .0
        }
    }))
    .await;
    let mut statuses = patches.clone();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412, 412], "{patches:?}");
}

/// Units of work across processes: transfers both ways between two
/// accounts from all three instances at once; all land, none is lost.
async fn transfers_from_every_instance_all_land(instances: &[Arc<Instance>], owner: &str) {
    let mut accounts = Vec::new();
    for (n, instance) in instances.iter().take(2).enumerate() {
        let key = format!("0b6f3c52-7a1d-4e9b-9c2f-4d8e1a7b3c1{n}");
        let (status, _, account) = instance
            .send(
                Method::POST,
                "/accounts",
                Some(&key),
                &[],
                &json!({"owner_id": owner}),
            )
            .await;
        assert_eq!(status, 201, "{account}");
        let account = account["id"].as_str().unwrap().to_owned();
        let deposit = json!({"amount_cents": 10_000});
        let path = format!("/accounts/{account}/deposits");
        let (status, _, body) = instance
            .send(Method::POST, &path, None, &[], &deposit)
            .await;
        assert_eq!(status, 200, "{body}");
        accounts.push(account);
    }
    let workers: Vec<_> = instances
        .iter()
        .enumerate()
        .map(|(n, instance)| {
            let (instance, accounts) = (instance.clone(), accounts.clone());
            tokio::spawn(async move {
                let mut moved = 0_i64; // out of accounts[0], net
                for t in 0..20_usize {
                    let (from, to) = if (n + t) % 2 == 0 { (0, 1) } else { (1, 0) };
                    let amount = i64::try_from(1 + (n * 20 + t) % 7).unwrap();
                    let body =
                        json!({"from": accounts[from], "to": accounts[to], "amount_cents": amount});
                    let (status, _, answer) = instance
                        .send(Method::POST, "/transfers", None, &[], &body)
                        .await;
                    assert_eq!(status, 200, "transfer {n}/{t}: {answer}");
                    moved += if from == 0 { amount } else { -amount };
                }
                moved
            })
        })
        .collect();
    let mut moved = 0;
    for worker in workers {
        moved += worker.await.unwrap();
    }
    let mut balances = Vec::new();
    for (instance, account) in instances.iter().zip(&accounts) {
        let (status, _, account) = instance.get(&format!("/accounts/{account}")).await;
        assert_eq!(status, 200, "{account}");
        balances.push(account["balance_cents"].as_i64().unwrap());
    }
    assert_eq!(balances, [10_000 - moved, 10_000 + moved]);
}
