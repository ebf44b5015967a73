//! The real service on port 0, and a client for it.

use std::sync::Arc;

use app::{Application, Config};
use clap::Parser;
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::TestDb;

/// A running service. Dropping it shuts the service down.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// A client with no pooling surprises.
    pub client: Client,
    /// The database, for the Postgres flavour.
    pub db: Option<Arc<TestDb>>,
    _shutdown: oneshot::Sender<()>,
}

impl TestApp {
    /// The service on the in-memory store.
    pub async fn in_memory() -> Self {
        Self::spawn(&[], None).await
    }

    /// The service on a fresh Postgres database.
    pub async fn on_postgres() -> Self {
        Self::on_postgres_with(&[]).await
    }

    /// The service on a fresh Postgres database, with extra flags.
    pub async fn on_postgres_with(flags: &[&str]) -> Self {
        let db = TestDb::new().await;
        Self::spawn(flags, Some(db)).await
    }

    /// The service on the database at `url` (which outlives it), with
    /// extra flags.
    pub async fn on_database(url: &str, flags: &[&str]) -> Self {
        Self::start(flags, Some(url.to_owned()), None).await
    }

    /// On a test database, through PgBouncer when the tests run through
    /// it (`pgbouncer_url`).
    async fn spawn(flags: &[&str], db: Option<Arc<TestDb>>) -> Self {
        let Some(test_db) = &db else {
            return Self::start(flags, None, db).await;
        };
        let (url, pooling) = test_db.store_url();
        let direct = test_db.url().to_owned();
        let mut flags = flags.to_vec();
        if pooling == storage::Pooling::Transaction {
            flags.extend(["--pooling", "transaction", "--session-url", &direct]);
        }
        Self::start(&flags, Some(url), db).await
    }

    async fn start(flags: &[&str], database_url: Option<String>, db: Option<Arc<TestDb>>) -> Self {
        let mut args = vec!["app", "--bind", "127.0.0.1:0"];
        args.extend(flags);
        let mut config = Config::parse_from(args);
        // Explicitly, not by flag: clap would fall back to DATABASE_URL from
        // the environment, which `scripts/test` sets for the storage tests.
        config.database_url = database_url;
        if !flags.contains(&"--amqp-url") {
            // Nor a broker the developer's environment names.
            config.amqp_url = None;
        }
        let application = Application::build(config).await.expect("build the service");
        let address = format!("http://{}", application.local_addr().expect("bound"));
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            address,
            client: Client::new(),
            db,
            _shutdown: shutdown,
        }
    }

    /// A request to `path`.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET")
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("POST")
    }
}

/// The status, the `ETag` and the JSON body of a response.
pub async fn read(response: Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let text = response.text().await.expect("a body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, etag, body)
}

/// The `error.code` of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

impl TestApp {
    /// The operations `/openapi.json` documents, as `(METHOD, /path)`,
    /// after checking each against the router: every documented operation
    /// is served (not answered by the 404 or 405 fallback) and every other
    /// method on a documented path answers 405.
    pub async fn documented_operations(&self) -> std::collections::BTreeSet<(String, String)> {
        let (status, _, spec) = read(self.get("/openapi.json").await).await;
        assert_eq!(status, 200, "{spec}");
        let mut documented = std::collections::BTreeSet::new();
        let id = "01a2009b-ee73-73b3-90c1-2ea260aa2187";
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
                let is_documented = item.get(method.to_lowercase()).is_some();
                let method_ = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
                let url = path.replace("{id}", id);
                let response = self
                    .request(method_, &url)
                    .json(&serde_json::json!({}))
                    .send();
                let response = response.await.expect("a response");
                let status = response.status().as_u16();
                // `/metrics` answers in text: only errors must be JSON here.
                let text = response.text().await.expect("a body");
                let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                let fell_through = (status == 404
                    && body["error"]["message"] == "no such endpoint")
                    || status == 405;
                assert_eq!(
                    !fell_through, is_documented,
                    "{method} {path}: {status} {body}"
                );
                if fell_through {
                    assert_eq!(
                        code(&body),
                        if status == 405 {
                            "method_not_allowed"
                        } else {
                            "not_found"
                        }
                    );
                } else {
                    documented.insert((method.to_owned(), path.clone()));
                }
            }
        }
        documented
    }
}
