//! The example service end to end over HTTP, on both stores: every
//! endpoint, every error code, idempotent retries, conditional writes and
//! concurrent requests.

#![expect(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed test"
)]

use integration_tests::{TestApp, code, read};
use reqwest::Method;
use serde_json::{Value, json};

/// Runs each case against the in-memory and the Postgres flavour.
macro_rules! both_stores {
    ($($case:ident),+ $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(integration_tests::TestApp::in_memory().await).await;
                }
            )+
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(integration_tests::TestApp::on_postgres().await).await;
                }
            )+
        }
    };
}

both_stores!(
    registering_returns_the_user_with_an_etag,
    a_retried_registration_answers_the_same_and_writes_once,
    a_key_reused_for_another_body_is_a_token_mismatch,
    a_taken_username_is_already_exists,
    bad_input_gets_clear_4xx_answers,
    unknown_ids_and_paths_are_not_found,
    patches_honour_if_match,
    concurrent_patches_with_one_etag_let_exactly_one_win,
    concurrent_registrations_keep_scores_consistent,
    orders_follow_their_rules,
    deleting_a_user_logs_it,
    lists_page_through_everything,
    health_and_openapi_answer,
    a_user_and_their_first_order_are_made_together_or_not_at_all,
    a_key_is_bound_to_one_operation_and_body,
    the_document_lists_exactly_the_routes_the_router_serves,
    a_weak_etag_never_matches,
    unserved_methods_answer_405_in_the_error_format,
    accounts_move_money_in_one_unit,
    every_write_is_safe_to_retry_with_its_key,
    every_write_documents_its_key_and_409,
    a_retried_registration_of_a_deleted_user_names_that_user,
);

fn new_user(username: &str) -> Value {
    json!({"username": username, "first_name": "Ada", "last_name": "Lovelace"})
}

async fn register(app: &TestApp, username: &str) -> Value {
    let (status, _, body) = read(app.post("/users", &new_user(username)).await).await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn register_with_key(app: &TestApp, key: &str, body: &Value) -> (u16, Option<String>, Value) {
    keyed(app, Method::POST, "/users", key, body).await
}

async fn count(app: &TestApp, path: &str) -> usize {
    let (status, _, body) = read(app.get(&format!("{path}?limit=100")).await).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().expect("items").len()
}

async fn registering_returns_the_user_with_an_etag(app: TestApp) {
    let (status, etag, body) = read(app.post("/users", &new_user("ada")).await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    assert_eq!(body["username"], "ada");
    assert_eq!(body["score"], 1.0);

    let id = body["id"].as_str().expect("an id");
    let (status, etag, fetched) = read(app.get(&format!("/users/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(etag.as_deref(), Some("\"1\""));
    assert_eq!(fetched, body);
}

async fn a_retried_registration_answers_the_same_and_writes_once(app: TestApp) {
    let key = "6a1f9f2e-6a4b-4a51-9a7c-3d2f8b1c0e11";
    let (first_status, _, first) = register_with_key(&app, key, &new_user("grace")).await;
    let (again_status, _, again) = register_with_key(&app, key, &new_user("grace")).await;
    assert_eq!((first_status, again_status), (201, 201));
    assert_eq!(again, first, "the same response");
    assert_eq!(count(&app, "/users").await, 1);
    assert_eq!(count(&app, "/actions").await, 1, "one user.created");
}

async fn a_key_reused_for_another_body_is_a_token_mismatch(app: TestApp) {
    let key = "0d4e4a58-1b7f-4f5e-8a3e-7c9b2d6f1a22";
    register_with_key(&app, key, &new_user("alan")).await;
    let (status, _, body) = register_with_key(&app, key, &new_user("turing")).await;
    assert_eq!(status, 422);
    assert_eq!(code(&body), "token_mismatch");
    assert_eq!(count(&app, "/users").await, 1);
}

async fn a_key_is_bound_to_one_operation_and_body(app: TestApp) {
    let key = "3b0c1f6e-2d4a-4c8e-9f1a-5e7d9c2b4a60";
    let (status, _, first) = register_with_key(&app, key, &new_user("ada")).await;
    assert_eq!(status, 201, "{first}");
    let other_operation = json!({"user": new_user("grace"), "lines": []});
    let (status, _, body) = read(
        app.request(Method::POST, "/orders/for-new-user")
            .header("Idempotency-Key", key)
            .json(&other_operation)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (422, "token_mismatch"), "{body}");
    let same_user_other_route = json!({"user": new_user("ada"), "lines": []});
    let (status, _, body) = read(
        app.request(Method::POST, "/orders/for-new-user")
            .header("Idempotency-Key", key)
            .json(&same_user_other_route)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (422, "token_mismatch"), "{body}");
    assert_eq!(count(&app, "/users").await, 1);
    assert_eq!(count(&app, "/actions").await, 1, "no order was opened");

    // The same request again, its JSON spelled differently, is a retry.
    let respelled = json!({"last_name": "Lovelace", "first_name": "Ada", "username": "ada"});
    let (status, _, again) = register_with_key(&app, key, &respelled).await;
    assert_eq!((status, &again), (201, &first));
}

/// Every operation of the example, as the router serves it.
const EXAMPLE_OPERATIONS: [(&str, &str); 18] = [
    ("POST", "/users"),
    ("GET", "/users"),
    ("GET", "/users/{id}"),
    ("PATCH", "/users/{id}"),
    ("DELETE", "/users/{id}"),
    ("POST", "/orders"),
    ("POST", "/orders/for-new-user"),
    ("GET", "/orders/{id}"),
    ("POST", "/orders/{id}/lines"),
    ("POST", "/orders/{id}/place"),
    ("POST", "/orders/{id}/cancel"),
    ("GET", "/actions"),
    ("GET", "/products"),
    ("POST", "/accounts"),
    ("GET", "/accounts/{id}"),
    ("POST", "/accounts/{id}/deposits"),
    ("POST", "/transfers"),
    ("GET", "/users/{id}/stats"),
];

/// The document and the router agree (`documented_operations` checks
/// every documented operation against the router, and every other method
/// on a documented path), and the example's operations are all there.
/// Routes are registered and documented in one call (`documented`), so a
/// team's new route joins the document without an edit here.
async fn the_document_lists_exactly_the_routes_the_router_serves(app: TestApp) {
    let documented = app.documented_operations().await;
    for (method, path) in EXAMPLE_OPERATIONS {
        let operation = (method.to_owned(), path.to_owned());
        assert!(
            documented.contains(&operation),
            "{method} {path} is documented and served"
        );
    }
}

async fn a_weak_etag_never_matches(app: TestApp) {
    let user = register(&app, "ada").await;
    let path = format!("/users/{}", user["id"].as_str().unwrap());
    for if_match in ["W/\"1\"", "W/\"1\", W/\"2\""] {
        let (status, _, body) = read(
            app.request(Method::PATCH, &path)
                .header("If-Match", if_match)
                .json(&json!({"first_name": "Augusta"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (412, "precondition_failed"),
            "{if_match}"
        );
    }
}

async fn unserved_methods_answer_405_in_the_error_format(app: TestApp) {
    for (method, path) in [(Method::PUT, "/users"), (Method::DELETE, "/orders")] {
        let (status, _, body) = read(app.request(method, path).send().await.unwrap()).await;
        assert_eq!((status, code(&body)), (405, "method_not_allowed"), "{path}");
    }
}

async fn accounts_move_money_in_one_unit(app: TestApp) {
    let owner = register(&app, "ada").await;
    let open = |key: &'static str| {
        let body = json!({"owner_id": owner["id"]});
        let app = &app;
        async move {
            let request = app
                .request(Method::POST, "/accounts")
                .header("Idempotency-Key", key);
            read(request.json(&body).send().await.unwrap()).await
        }
    };
    let (status, _, a) = open("5d1e0c3a-1f2b-4c3d-8e4f-5a6b7c8d9e01").await;
    assert_eq!(status, 201, "{a}");
    let (_, _, again) = open("5d1e0c3a-1f2b-4c3d-8e4f-5a6b7c8d9e01").await;
    assert_eq!(again, a, "a retried open replays");
    let (_, _, b) = open("5d1e0c3a-1f2b-4c3d-8e4f-5a6b7c8d9e02").await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());

    let deposit = json!({"amount_cents": 500});
    let (status, etag, body) =
        read(app.post(&format!("/accounts/{a}/deposits"), &deposit).await).await;
    assert_eq!(
        (status, etag.as_deref(), &body["balance_cents"]),
        (200, Some("\"2\""), &json!(500))
    );

    let transfer = |amount: i64| json!({"from": a, "to": b, "amount_cents": amount});
    let (status, _, moved) = read(app.post("/transfers", &transfer(200)).await).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        (
            &moved["from"]["balance_cents"],
            &moved["to"]["balance_cents"]
        ),
        (&json!(300), &json!(200))
    );

    let (status, _, body) = read(app.post("/transfers", &transfer(301)).await).await;
    assert_eq!(
        (status, code(&body)),
        (409, "conflict"),
        "insufficient: {body}"
    );
    let (status, _, body) = read(
        app.post(
            "/transfers",
            &json!({"from": a, "to": a, "amount_cents": 1}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code(&body)), (422, "validation"));
    let (status, _, body) = read(app.post("/transfers", &transfer(0)).await).await;
    assert_eq!((status, code(&body)), (422, "validation"));
    let (_, _, account) = read(app.get(&format!("/accounts/{b}")).await).await;
    assert_eq!(
        account["balance_cents"], 200,
        "refused transfers moved nothing"
    );
}

/// `method path` with `body` (none when `Null`) under `key`.
async fn keyed(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let mut request = app.request(method, path).header("Idempotency-Key", key);
    if !body.is_null() {
        request = request.json(body);
    }
    read(request.send().await.unwrap()).await
}

/// Every write route takes an `Idempotency-Key`: a retry with the same key
/// and request answers exactly what the first did (status, ETag, body) and
/// applies nothing twice, even after others changed what it wrote; the
/// key with another request is `token_mismatch`.
async fn every_write_is_safe_to_retry_with_its_key(app: TestApp) {
    let user = register(&app, "ada").await;
    let user_id = user["id"].as_str().unwrap().to_owned();
    let open = |n: u32| {
        let body = json!({"owner_id": user_id});
        let app = &app;
        async move {
            let key = format!("7d1e0c3a-1f2b-4c3d-8e4f-5a6b7c8d9e0{n}");
            keyed(app, Method::POST, "/accounts", &key, &body).await.2["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (a, b) = (open(1).await, open(2).await);
    let deposits = format!("/accounts/{a}/deposits");
    let transfer = json!({"from": a, "to": b, "amount_cents": 200});
    let order = read(
        app.post(
            "/orders",
            &json!({"user_id": user_id, "lines": [{"sku": "PEN", "quantity": 1, "unit_price_cents": 150}]}),
        )
        .await,
    )
    .await
    .2;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let line = json!({"sku": "INK", "quantity": 1, "unit_price_cents": 500});
    let writes = [
        (Method::POST, deposits.clone(), json!({"amount_cents": 500})),
        (Method::POST, "/transfers".to_owned(), transfer),
        (
            Method::PATCH,
            format!("/users/{user_id}"),
            json!({"first_name": "Augusta"}),
        ),
        (Method::POST, format!("/orders/{order_id}/lines"), line),
        (
            Method::POST,
            format!("/orders/{order_id}/place"),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/orders/{order_id}/cancel"),
            Value::Null,
        ),
        (Method::DELETE, format!("/users/{user_id}"), Value::Null),
    ];
    for (n, (method, path, body)) in writes.into_iter().enumerate() {
        let key = format!("9a1e0c3a-1f2b-4c3d-8e4f-5a6b7c8d9e{n:02}");
        let first = keyed(&app, method.clone(), &path, &key, &body).await;
        assert!(first.0 < 300, "{method} {path}: {first:?}");
        if path == deposits {
            // Someone else deposits meanwhile: the retry still answers
            // what the first request did.
            let other = read(app.post(&deposits, &json!({"amount_cents": 1})).await).await;
            assert_eq!(other.0, 200, "{other:?}");
        }
        let retried = keyed(&app, method.clone(), &path, &key, &body).await;
        assert_eq!(retried, first, "{method} {path}: the retry replays");
        let other_body = json!({"amount_cents": 7});
        let (status, _, mismatch) = keyed(&app, method.clone(), &path, &key, &other_body).await;
        assert_eq!(
            (status, code(&mismatch)),
            (422, "token_mismatch"),
            "{method} {path}: {mismatch}"
        );
    }
    let (_, _, a) = read(app.get(&format!("/accounts/{a}")).await).await;
    let (_, _, b) = read(app.get(&format!("/accounts/{b}")).await).await;
    assert_eq!(
        (&a["balance_cents"], &b["balance_cents"]),
        (&json!(301), &json!(200)),
        "each deposit and the transfer applied once"
    );
    let (_, _, actions) = read(app.get("/actions?limit=100").await).await;
    let logged = |what: &str| {
        actions["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["what"] == what)
            .count()
    };
    for what in [
        "user.updated",
        "order.line_added",
        "order.placed",
        "order.cancelled",
        "user.deleted",
    ] {
        assert_eq!(logged(what), 1, "{what} logged once: {actions}");
    }
}

/// The document says of every write that it takes an `Idempotency-Key`
/// and may answer 409 when concurrent writers won every retry.
async fn every_write_documents_its_key_and_409(app: TestApp) {
    let (_, _, spec) = read(app.get("/openapi.json").await).await;
    let mut writes = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch", "delete"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            writes += 1;
            assert!(
                operation["responses"].get("409").is_some(),
                "{method} {path} documents no 409"
            );
            let takes_key = operation["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == "Idempotency-Key"));
            assert!(takes_key, "{method} {path} documents no Idempotency-Key");
        }
    }
    assert!(writes >= 10, "{writes} writes documented");
}

/// A registration retried with its key after its user was deleted answers
/// 404 naming that user, on every store (not a fresh id the client never
/// saw).
async fn a_retried_registration_of_a_deleted_user_names_that_user(app: TestApp) {
    let key = "4c2d1e0f-3a4b-4c5d-8e6f-7a8b9c0d1e2f";
    let (status, _, user) = register_with_key(&app, key, &new_user("ada")).await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap();
    let deleted = app
        .request(Method::DELETE, &format!("/users/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let (status, _, body) = register_with_key(&app, key, &new_user("ada")).await;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(id), "{message} should name {id}");
}

async fn a_taken_username_is_already_exists(app: TestApp) {
    register(&app, "ada").await;
    let (status, _, body) = read(app.post("/users", &new_user("ada")).await).await;
    assert_eq!(status, 409);
    assert_eq!(code(&body), "already_exists");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("username"),
        "{body}"
    );
}

async fn bad_input_gets_clear_4xx_answers(app: TestApp) {
    let cases: Vec<(Value, u16)> = vec![
        (
            json!({"username": "Ada!", "first_name": "A", "last_name": "B"}),
            422,
        ),
        (
            json!({"username": "ada", "first_name": " ", "last_name": "B"}),
            422,
        ),
        (
            json!({"username": "ada", "first_name": "A".repeat(65), "last_name": "B"}),
            422,
        ),
        (json!({"username": "ada", "first_name": "A"}), 422),
        (
            json!({"username": "ada", "first_name": "A", "last_name": "B", "admin": true}),
            422,
        ),
        (
            json!({"username": 7, "first_name": "A", "last_name": "B"}),
            422,
        ),
    ];
    for (body, expected) in cases {
        let (status, _, answer) = read(app.post("/users", &body).await).await;
        assert_eq!(status, expected, "{body} -> {answer}");
        assert_eq!(code(&answer), "validation", "{answer}");
    }

    let raw = |body: &'static str, content_type: &'static str| {
        app.request(Method::POST, "/users")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, _, answer) = read(raw("{not json", "application/json").await.unwrap()).await;
    assert_eq!((status, code(&answer)), (400, "validation"));
    let (status, _, answer) = read(raw("{}", "text/plain").await.unwrap()).await;
    assert_eq!((status, code(&answer)), (415, "unsupported_media_type"));

    let huge = json!({"username": "ada", "first_name": "x".repeat(70_000), "last_name": "B"});
    let (status, _, answer) = read(app.post("/users", &huge).await).await;
    assert_eq!((status, code(&answer)), (413, "payload_too_large"));

    let (status, _, answer) = register_with_key(&app, "not-a-uuid", &new_user("ada")).await;
    assert_eq!((status, code(&answer)), (400, "validation"));

    let (status, _, answer) = read(app.get("/users/not-a-uuid").await).await;
    assert_eq!((status, code(&answer)), (400, "validation"));
    let (status, _, answer) = read(app.get("/users?limit=0").await).await;
    assert_eq!(
        (status, code(&answer)),
        (400, "validation"),
        "the schema says >= 1"
    );
    let (status, _, answer) = read(app.get("/users?after=nope").await).await;
    assert_eq!((status, code(&answer)), (400, "validation"));
    let (status, _, answer) = read(app.get("/users?limit=-1").await).await;
    assert_eq!((status, code(&answer)), (400, "validation"));
    assert_eq!(count(&app, "/users").await, 0, "nothing was written");
}

async fn unknown_ids_and_paths_are_not_found(app: TestApp) {
    let missing = "01a2009b-ee73-73b3-90c1-2ea260aa2187";
    for path in [
        format!("/users/{missing}"),
        format!("/orders/{missing}"),
        "/nowhere".to_owned(),
    ] {
        let (status, _, body) = read(app.get(&path).await).await;
        assert_eq!((status, code(&body)), (404, "not_found"), "{path}");
    }
    let (status, _, body) = read(
        app.request(Method::PATCH, &format!("/users/{missing}"))
            .json(&json!({"first_name": "X"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, _, body) = read(
        app.post(&format!("/orders/{missing}/place"), &json!(null))
            .await,
    )
    .await;
    assert_eq!((status, code(&body)), (404, "not_found"));
}

async fn patch(
    app: &TestApp,
    id: &str,
    if_match: Option<&str>,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let mut request = app
        .request(Method::PATCH, &format!("/users/{id}"))
        .json(body);
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    read(request.send().await.expect("PATCH")).await
}

async fn patches_honour_if_match(app: TestApp) {
    let user = register(&app, "ada").await;
    let id = user["id"].as_str().unwrap();

    let (status, etag, body) =
        patch(&app, id, Some("\"1\""), &json!({"first_name": "Augusta"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    assert_eq!(body["first_name"], "Augusta");
    assert_eq!(body["last_name"], "Lovelace");

    let (status, _, body) = patch(&app, id, Some("\"1\""), &json!({"first_name": "Ada"})).await;
    assert_eq!((status, code(&body)), (412, "precondition_failed"));
    // Not an entity tag: it matches nothing (RFC 9110, 13.1.1).
    let (status, _, body) = patch(&app, id, Some("one"), &json!({"first_name": "Ada"})).await;
    assert_eq!((status, code(&body)), (412, "precondition_failed"));

    let (_, etag, body) = read(app.get(&format!("/users/{id}")).await).await;
    assert_eq!(etag.as_deref(), Some("\"2\""));
    assert_eq!(
        body["first_name"], "Augusta",
        "failed patches changed nothing"
    );
    let (_, _, log) = read(app.get("/actions").await).await;
    let whats: Vec<_> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["what"].clone())
        .collect();
    assert_eq!(whats, vec![json!("user.created"), json!("user.updated")]);
}

async fn concurrent_patches_with_one_etag_let_exactly_one_win(app: TestApp) {
    let user = register(&app, "ada").await;
    let id = user["id"].as_str().unwrap().to_owned();
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (app, id) = (app.clone(), id.clone());
            tokio::spawn(async move {
                patch(
                    &app,
                    &id,
                    Some("\"1\""),
                    &json!({"first_name": format!("Writer{i}")}),
                )
                .await
                .0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 412, 412, 412, 412, 412, 412, 412]);
    let (_, etag, _) = read(app.get(&format!("/users/{id}")).await).await;
    assert_eq!(etag.as_deref(), Some("\"2\""));
}

async fn concurrent_registrations_keep_scores_consistent(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                read(app.post("/users", &new_user(&format!("racer{i}"))).await).await
            })
        })
        .collect();
    for task in tasks {
        let (status, _, body) = task.await.unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let (_, _, page) = read(app.get("/users?limit=100").await).await;
    let scores: Vec<f64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 10);
    let sum: f64 = scores.iter().sum();
    let expected = domain::example::expected_score_sum(10);
    assert!(
        (sum - expected).abs() < 1e-9,
        "sum {sum}, expected {expected}"
    );
}

async fn orders_follow_their_rules(app: TestApp) {
    let user = register(&app, "ada").await;
    let user_id = user["id"].as_str().unwrap();
    let line = json!({"sku": "PEN", "quantity": 2, "unit_price_cents": 150});

    let (status, _, body) = read(
        app.post(
            "/orders",
            &json!({"user_id": "01a2009b-ee73-73b3-90c1-2ea260aa2187", "lines": []}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (404, "not_found"),
        "unknown user: {body}"
    );
    let (status, _, body) = read(app.post("/orders", &json!({"user_id": user_id, "lines": [{"sku": "pen", "quantity": 1, "unit_price_cents": 1}]})).await).await;
    assert_eq!(
        (status, code(&body)),
        (422, "validation"),
        "bad sku: {body}"
    );
    let too_many: Vec<Value> = (0..101).map(|_| line.clone()).collect();
    let (status, _, body) = read(
        app.post("/orders", &json!({"user_id": user_id, "lines": too_many}))
            .await,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (422, "validation"),
        "101 lines: {body}"
    );

    let (status, etag, order) = read(
        app.post("/orders", &json!({"user_id": user_id, "lines": []}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let id = order["id"].as_str().unwrap();

    let (status, _, body) =
        read(app.post(&format!("/orders/{id}/place"), &json!(null)).await).await;
    assert_eq!(
        (status, code(&body)),
        (409, "conflict"),
        "empty order: {body}"
    );

    let (status, etag, body) = read(app.post(&format!("/orders/{id}/lines"), &line).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    assert_eq!(body["total_cents"], 300);

    let (status, _, body) = read(
        app.request(Method::POST, &format!("/orders/{id}/place"))
            .header("If-Match", "\"1\"")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (412, "precondition_failed"));
    let (status, _, body) =
        read(app.post(&format!("/orders/{id}/place"), &json!(null)).await).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("placed")));

    let (status, _, body) = read(app.post(&format!("/orders/{id}/lines"), &line).await).await;
    assert_eq!((status, code(&body)), (409, "conflict"), "placed: {body}");
    let (status, _, body) = read(
        app.post(&format!("/orders/{id}/cancel"), &json!(null))
            .await,
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
    let (status, _, body) = read(
        app.post(&format!("/orders/{id}/cancel"), &json!(null))
            .await,
    )
    .await;
    assert_eq!((status, code(&body)), (409, "conflict"), "twice: {body}");

    let (status, etag, body) = read(app.get(&format!("/orders/{id}")).await).await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"4\"")));
    assert_eq!(body["lines"].as_array().unwrap().len(), 1);
    let (_, _, log) = read(app.get("/actions").await).await;
    let whats: Vec<_> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["what"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        whats,
        [
            "user.created",
            "order.created",
            "order.line_added",
            "order.placed",
            "order.cancelled"
        ]
    );
}

async fn deleting_a_user_logs_it(app: TestApp) {
    let user = register(&app, "ada").await;
    let id = user["id"].as_str().unwrap();
    let stale = app
        .request(Method::DELETE, &format!("/users/{id}"))
        .header("If-Match", "\"7\"")
        .send()
        .await
        .unwrap();
    assert_eq!(read(stale).await.0, 412);
    let deleted = app
        .request(Method::DELETE, &format!("/users/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert_eq!(read(app.get(&format!("/users/{id}")).await).await.0, 404);
    let again = app
        .request(Method::DELETE, &format!("/users/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(read(again).await.0, 404);
    let (_, _, log) = read(app.get("/actions").await).await;
    assert_eq!(log["items"][1]["what"], "user.deleted");
}

async fn lists_page_through_everything(app: TestApp) {
    for name in ["u_one", "u_two", "u_three"] {
        register(&app, name).await;
    }
    let (_, _, first) = read(app.get("/users?limit=2").await).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let after = first["next_after"].as_str().expect("a next page");
    let (_, _, second) = read(app.get(&format!("/users?limit=2&after={after}")).await).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert!(second["next_after"].is_null());
    let (_, _, capped) = read(app.get("/users?limit=100000").await).await;
    assert_eq!(capped["items"].as_array().unwrap().len(), 3);
}

async fn a_user_and_their_first_order_are_made_together_or_not_at_all(app: TestApp) {
    let line = json!({"sku": "PEN", "quantity": 2, "unit_price_cents": 150});
    let too_many: Vec<Value> = (0..101).map(|_| line.clone()).collect();
    let (status, _, body) = read(
        app.post(
            "/orders/for-new-user",
            &json!({"user": new_user("ada"), "lines": too_many}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code(&body)), (422, "validation"), "{body}");
    assert_eq!(
        count(&app, "/users").await,
        0,
        "no user without their order"
    );

    let key = "9b1d7c55-0f3e-4d8a-b6a1-52e0c4f7a9d3";
    let form = json!({"user": new_user("ada"), "lines": [line]});
    let send = || {
        app.request(Method::POST, "/orders/for-new-user")
            .header("Idempotency-Key", key)
            .json(&form)
            .send()
    };
    let (status, _, made) = read(send().await.unwrap()).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["order"]["user_id"], made["user"]["id"]);
    assert_eq!(made["order"]["total_cents"], 300);
    let (status, _, again) = read(send().await.unwrap()).await;
    assert_eq!(status, 201);
    assert_eq!(again, made, "a retry answers the same");
    assert_eq!(count(&app, "/users").await, 1);
    let (_, _, log) = read(app.get("/actions").await).await;
    let whats: Vec<_> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["what"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(whats, ["user.created", "order.created"]);
    let order_id = made["order"]["id"].as_str().unwrap();
    assert_eq!(
        read(app.get(&format!("/orders/{order_id}")).await).await.0,
        200
    );
}

async fn health_and_openapi_answer(app: TestApp) {
    let (status, _, body) = read(app.get("/health").await).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _, spec) = read(app.get("/openapi.json").await).await;
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/users",
        "/users/{id}",
        "/orders",
        "/orders/{id}/place",
        "/actions",
        "/health",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the spec"
        );
    }
}

mod metrics {
    //! `GET /metrics`, scraped after a few requests on Postgres. The
    //! recorder is the process's, shared with the tests running beside
    //! this one, so counts are at least what this test caused.

    use super::*;

    /// The value of the first series named `name` carrying every label of
    /// `labels` (`key="value"`), in Prometheus' text format.
    fn value(scraped: &str, name: &str, labels: &[&str]) -> Option<f64> {
        scraped.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|label| rest.contains(label)))
                .then(|| value.parse().ok())
                .flatten()
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_shows_requests_operations_the_pool_and_the_outbox() {
        let app = TestApp::on_postgres().await;
        let user = register(&app, "ada").await;
        let id = user["id"].as_str().unwrap();
        assert_eq!(read(app.get(&format!("/users/{id}")).await).await.0, 200);
        assert_eq!(read(app.get("/nowhere").await).await.0, 404);

        let response = app.get("/metrics").await;
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let scraped = response.text().await.unwrap();
        let at_least_one = |name: &str, labels: &[&str]| {
            let found = value(&scraped, name, labels);
            assert!(
                found.is_some_and(|v| v >= 1.0),
                "{name}{labels:?} = {found:?} in:\n{scraped}"
            );
        };
        at_least_one(
            "http_request_duration_seconds_count",
            &[r#"method="POST""#, r#"route="/users""#, r#"status="201""#],
        );
        at_least_one(
            "http_request_duration_seconds_count",
            &[r#"route="/users/{id}""#, r#"status="200""#],
        );
        at_least_one(
            "http_request_duration_seconds_count",
            &[r#"route="unmatched""#, r#"status="404""#],
        );
        at_least_one(
            "storage_operation_duration_seconds_count",
            &[r#"kind="user""#, r#"op="get""#, r#"outcome="ok""#],
        );
        at_least_one(
            "storage_operation_duration_seconds_count",
            &[r#"kind="unit""#, r#"op="run""#, r#"outcome="ok""#],
        );
        at_least_one("storage_pool_wait_seconds_count", &[r#"pool="operations""#]);
        at_least_one("storage_pool_connections", &[r#"pool="operations""#]);
        // The registration's event waits in the outbox: no relay runs.
        assert!(
            value(&scraped, "outbox_lag_seconds", &[]).is_some(),
            "outbox_lag_seconds missing:\n{scraped}"
        );
        assert!(
            scraped.contains("storage_operation_duration_seconds_bucket{"),
            "operation latencies are histograms"
        );
    }
}

mod replica {
    //! Reads from a replica that applies a second late (`scripts/pg-pair`,
    //! `--replica-url`): a client sending back its `Causality-Token` reads
    //! its own writes; one that does not may read stale.

    use integration_tests::Pair;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_carrying_its_causality_token_reads_its_own_writes() {
        let pair = Pair::up().await;
        pair.delay_standby(std::time::Duration::from_secs(1)).await;
        let app = TestApp::on_database(Pair::PRIMARY, &["--replica-url", Pair::STANDBY]).await;

        let response = app.post("/users", &new_user("ada")).await;
        let token = response.headers()["causality-token"]
            .to_str()
            .unwrap()
            .to_owned();
        let (status, _, user) = read(response).await;
        assert_eq!(status, 201, "{user}");
        let path = format!("/users/{}", user["id"].as_str().unwrap());

        let carrying = app
            .request(Method::GET, &path)
            .header("Causality-Token", &token)
            .send()
            .await
            .unwrap();
        let echoed = carrying.headers()["causality-token"]
            .to_str()
            .unwrap()
            .to_owned();
        let (status, _, body) = read(carrying).await;
        assert_eq!((status, &body), (200, &user), "with its token");
        assert_eq!(echoed, token, "a read passes the token on");

        let (status, _, body) = read(app.get(&path).await).await;
        assert_eq!(
            (status, code(&body)),
            (404, "not_found"),
            "without a token, the lagging replica answers"
        );

        let (status, _, body) = read(
            app.request(Method::GET, &path)
                .header("Causality-Token", "yesterday")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, code(&body)), (400, "validation"), "{body}");
    }
}

mod postgres_faults {
    //! 504 and 503, which only a real database can be made to produce.

    use diesel_async::SimpleAsyncConnection;

    use super::*;

    /// `/health` while every backend is killed every 20 ms: 200 or 503,
    /// never 500. Every store call goes through the retries and the
    /// classification repository operations use.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_never_answers_500_while_backends_are_killed() {
        let app = TestApp::on_postgres().await;
        let db = app.db.clone().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let killer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    db.terminate_backends().await;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            })
        };
        let mut statuses = std::collections::BTreeMap::new();
        let mut failures = Vec::new();
        for _ in 0..400 {
            let (status, _, body) = read(app.get("/health").await).await;
            *statuses.entry(status).or_insert(0) += 1;
            if status != 200 && status != 503 {
                failures.push(body);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        killer.await.unwrap();
        assert!(failures.is_empty(), "{statuses:?}: {failures:?}");
        assert!(statuses.get(&200).is_some_and(|&ok| ok > 0), "{statuses:?}");
    }

    /// Clients moving money with keys while every backend is killed every
    /// 20 ms, each retrying every answer but 200 with the same key: every
    /// balance ends exactly as the acknowledged transfers say, the total is
    /// unchanged, and no transfer ever answers `outcome_unknown` or 500.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyed_transfers_apply_once_while_backends_are_killed() {
        const ACCOUNTS: usize = 4;
        const CLIENTS: usize = 4;
        const TRANSFERS: usize = 25;
        let app = std::sync::Arc::new(TestApp::on_postgres().await);
        let owner = register(&app, "ada").await;
        let mut accounts = Vec::new();
        for _ in 0..ACCOUNTS {
            let (_, _, account) = read(
                app.post("/accounts", &json!({"owner_id": owner["id"]}))
                    .await,
            )
            .await;
            let id = account["id"].as_str().unwrap().to_owned();
            let deposits = format!("/accounts/{id}/deposits");
            let (status, _, _) =
                read(app.post(&deposits, &json!({"amount_cents": 1000})).await).await;
            assert_eq!(status, 200);
            accounts.push(id);
        }
        let db = app.db.clone().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let killer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut killed = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    killed += db.terminate_backends().await;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                killed
            })
        };
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (app, accounts) = (app.clone(), accounts.clone());
                tokio::spawn(async move {
                    let mut acknowledged = Vec::new();
                    let mut unsafe_answers = Vec::new();
                    for n in 0..TRANSFERS {
                        let from = (client + n) % ACCOUNTS;
                        let to = (from + 1 + n % (ACCOUNTS - 1)) % ACCOUNTS;
                        let amount = 1 + (client * TRANSFERS + n) % 40;
                        let body = json!({"from": accounts[from], "to": accounts[to], "amount_cents": amount});
                        let key = uuid::Uuid::new_v4().to_string();
                        for _ in 0..200 {
                            let (status, _, answer) =
                                keyed(&app, Method::POST, "/transfers", &key, &body).await;
                            if status == 200 {
                                acknowledged.push((from, to, amount));
                                break;
                            }
                            if status == 500 || code(&answer) == "outcome_unknown" {
                                unsafe_answers.push(answer);
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                    }
                    (acknowledged, unsafe_answers)
                })
            })
            .collect();
        let mut expected = vec![1000_i64; ACCOUNTS];
        let mut landed = 0;
        for client in clients {
            let (acknowledged, unsafe_answers) = client.await.unwrap();
            assert!(unsafe_answers.is_empty(), "{unsafe_answers:?}");
            for (from, to, amount) in acknowledged {
                let amount = i64::try_from(amount).unwrap();
                expected[from] -= amount;
                expected[to] += amount;
                landed += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let terminated = killer.await.unwrap();
        assert_eq!(
            landed,
            CLIENTS * TRANSFERS,
            "every transfer acknowledged in the end"
        );
        assert!(terminated > 0, "backends were killed");
        let mut balances = Vec::new();
        for id in &accounts {
            let (_, _, account) = read(app.get(&format!("/accounts/{id}")).await).await;
            balances.push(account["balance_cents"].as_i64().unwrap());
        }
        assert_eq!(
            balances, expected,
            "each acknowledged transfer applied exactly once"
        );
        assert_eq!(balances.iter().sum::<i64>(), 1000 * 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_past_its_deadline_is_a_504_and_changes_nothing() {
        let app = TestApp::on_postgres_with(&["--request-deadline-ms", "300"]).await;
        let user = register(&app, "ada").await;
        let id = user["id"].as_str().unwrap();
        let db = app.db.clone().unwrap();
        let mut locker = db.connect().await;
        locker
            .batch_execute(&format!(
                "BEGIN; SELECT 1 FROM users WHERE id = '{id}' FOR UPDATE;"
            ))
            .await
            .unwrap();
        let (status, _, body) = patch(&app, id, None, &json!({"first_name": "Late"})).await;
        assert_eq!((status, code(&body)), (504, "timeout"), "{body}");
        drop(locker);
        let (_, _, body) = read(app.get(&format!("/users/{id}")).await).await;
        assert_eq!(body["first_name"], "Ada");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_refusing_connections_is_a_503() {
        let app = TestApp::on_postgres_with(&["--connection-timeout-ms", "200"]).await;
        let db = app.db.clone().unwrap();
        let name = db.url().rsplit('/').next().unwrap().to_owned();
        let mut admin = integration_tests::test_db::admin_connection().await;
        admin
            .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .await
            .unwrap();
        let (status, _, body) = read(app.get("/health").await).await;
        admin
            .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .await
            .unwrap();
        if integration_tests::test_db::pgbouncer_url().is_some() {
            // PgBouncer keeps the service's connections open: it fails the
            // statement once its own login to the server has failed
            // (`server login has been failing`, 503), or holds it until
            // the request runs out of time (504), whichever comes first.
            assert!(
                [(503, "unavailable"), (504, "timeout")].contains(&(status, code(&body))),
                "{body}"
            );
        } else {
            assert_eq!((status, code(&body)), (503, "unavailable"), "{body}");
        }
        // Back within a second (a new connection may take longer than the
        // 200 ms pool wait on a loaded machine, so allow a few tries);
        // behind PgBouncer, once it tries to log in again
        // (`server_login_retry`, 1 s in `scripts/pgbouncer`).
        let tries = if integration_tests::test_db::pgbouncer_url().is_some() {
            40
        } else {
            10
        };
        let mut status = 0;
        for _ in 0..tries {
            status = read(app.get("/health").await).await.0;
            if status == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(
            status, 200,
            "healthy again once the database accepts connections"
        );
    }
}

mod catalog {
    //! `app catalog import FILE` and `GET /products`.

    use super::*;

    fn write(name: &str, content: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("{}-{name}", uuid::Uuid::new_v4()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_import_replaces_the_catalog_and_a_corrupt_file_changes_nothing() {
        let app = TestApp::on_postgres().await;
        let mut config = <app::Config as clap::Parser>::parse_from(["app"]);
        config.database_url = Some(app.db.as_ref().unwrap().url().to_owned());

        let first = write(
            "first.csv",
            "sku,name,price_cents\nPEN,Pen,150\nINK,Ink,500\n",
        );
        let report = app::example::catalog_file::import_file(&config, &first)
            .await
            .unwrap();
        assert_eq!((report.created, report.deleted), (2, 0));
        let second = write(
            "second.json",
            r#"[{"sku":"PEN","name":"Pen","price_cents":175},{"sku":"PAD","name":"Pad","price_cents":90}]"#,
        );
        let report = app::example::catalog_file::import_file(&config, &second)
            .await
            .unwrap();
        assert_eq!((report.created, report.updated, report.deleted), (1, 1, 1));

        let expected = json!([
            {"sku": "PAD", "name": "Pad", "price_cents": 90},
            {"sku": "PEN", "name": "Pen", "price_cents": 175},
        ]);
        let (status, _, products) = read(app.get("/products").await).await;
        assert_eq!((status, &products), (200, &expected));

        let corrupt = write(
            "corrupt.csv",
            "sku,name,price_cents\nNEW,New,1\nBAD,Bad,-5\n",
        );
        let error = app::example::catalog_file::import_file(&config, &corrupt)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 3"), "{error}");
        let (_, _, products) = read(app.get("/products").await).await;
        assert_eq!(products, expected, "a corrupt file changed nothing");

        config.database_url = None;
        let error = app::example::catalog_file::import_file(&config, &first)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("DATABASE_URL"), "{error}");
        for path in [first, second, corrupt] {
            std::fs::remove_file(path).unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_in_memory_catalog_starts_empty() {
        let app = TestApp::in_memory().await;
        let (status, _, products) = read(app.get("/products").await).await;
        assert_eq!((status, products), (200, json!([])));
    }
}

mod events {
    //! Domain events leaving the service: the per-user spending read model
    //! (`GET /users/{id}/stats`), kept from `order_placed` events, in memory
    //! (the outbox's in-process channel) and on Postgres (the relay and
    //! RabbitMQ). Eventually consistent, so the tests wait for it.

    use std::time::{Duration, Instant};

    use super::*;

    /// Registers `username` and places two orders (3.00 and 1.50); returns
    /// the user's id.
    async fn two_placed_orders(app: &TestApp, username: &str) -> String {
        let user = register(app, username).await;
        let user_id = user["id"].as_str().unwrap().to_owned();
        for quantity in [2, 1] {
            let lines = json!([{"sku": "PEN", "quantity": quantity, "unit_price_cents": 150}]);
            let (status, _, order) = read(
                app.post("/orders", &json!({"user_id": user_id, "lines": lines}))
                    .await,
            )
            .await;
            assert_eq!(status, 201, "{order}");
            let id = order["id"].as_str().unwrap();
            let (status, _, body) =
                read(app.post(&format!("/orders/{id}/place"), &json!(null)).await).await;
            assert_eq!(status, 200, "{body}");
        }
        user_id
    }

    /// Polls the user's stats until they count `orders`, for at most 15 s.
    async fn stats_once_counted(app: &TestApp, user_id: &str, orders: i64) -> Value {
        let started = Instant::now();
        loop {
            let (code, _, counted) = read(app.get(&format!("/users/{user_id}/stats")).await).await;
            assert_eq!(code, 200, "{counted}");
            if counted["orders_placed"] == orders || started.elapsed() > Duration::from_secs(15) {
                return counted;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn placed_orders_show_in_the_users_stats_in_memory() {
        let app = TestApp::in_memory().await;
        let user_id = two_placed_orders(&app, "ada").await;
        let counted = stats_once_counted(&app, &user_id, 2).await;
        assert_eq!(
            counted,
            json!({"user_id": user_id, "orders_placed": 2, "total_spent_cents": 450})
        );
        let (status, _, body) = read(
            app.get("/users/01a2009b-ee73-73b3-90c1-2ea260aa2187/stats")
                .await,
        )
        .await;
        assert_eq!((status, code(&body)), (404, "not_found"));
    }

    /// Through the relay and RabbitMQ (an exchange of the test's own), then
    /// as if the relay had died after the broker confirmed and before it
    /// marked the events: they are delivered again, and the inbox keeps
    /// the count right.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn placed_orders_show_in_the_users_stats_through_rabbitmq_once() {
        let exchange = format!("test_events_{}", uuid::Uuid::new_v4().simple());
        let amqp = integration_tests::broker::amqp_url();
        let app =
            TestApp::on_postgres_with(&["--amqp-url", &amqp, "--events-exchange", &exchange]).await;
        let (_, _, health) = read(app.get("/health").await).await;
        assert!(health["relay"].is_string(), "{health}");
        let user_id = two_placed_orders(&app, "ada").await;
        let stats = stats_once_counted(&app, &user_id, 2).await;
        assert_eq!(stats["total_spent_cents"], 450, "{stats}");

        let db = app.db.as_ref().expect("on Postgres");
        db.execute("UPDATE outbox SET published_at = NULL").await;
        let started = Instant::now();
        loop {
            let (_, _, health) = read(app.get("/health").await).await;
            if health["outbox_lag_ms"].is_null() || started.elapsed() > Duration::from_secs(15) {
                assert!(health["outbox_lag_ms"].is_null(), "republished: {health}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The consumer takes milliseconds per event; give it ample time.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stats = stats_once_counted(&app, &user_id, 2).await;
        assert_eq!(
            (
                stats["orders_placed"].as_i64(),
                stats["total_spent_cents"].as_i64()
            ),
            (Some(2), Some(450)),
            "redelivered events counted twice: {stats}"
        );
        // The service's consumer stopped first, or it would declare its
        // queues again.
        drop(app);
        tokio::time::sleep(Duration::from_millis(300)).await;
        integration_tests::broker::delete_exchange_and_queues(
            &exchange,
            &[
                &format!("{exchange}.user_stats"),
                &format!("{exchange}.user_stats.parked"),
            ],
        )
        .await;
    }
}
