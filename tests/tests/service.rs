//! The service skeleton over HTTP, on both stores: what stays when the
//! example is stripped. The example's own endpoints are tested in `http`.

use integration_tests::{TestApp, code, read};
use reqwest::Method;

async fn health_answers_with_the_store_it_serves_from(app: TestApp, store: &str) {
    let (status, _, body) = read(app.get("/health").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["store"].as_str()),
        (Some("ok"), Some(store))
    );
}

async fn the_document_matches_the_router(app: TestApp) {
    let documented = app.documented_operations().await;
    for framework_route in [
        ("GET", "/health"),
        ("GET", "/openapi.json"),
        ("GET", "/metrics"),
    ] {
        let route = (framework_route.0.to_owned(), framework_route.1.to_owned());
        assert!(documented.contains(&route), "{route:?} is documented");
    }
}

async fn unknown_paths_and_methods_answer_in_the_error_format(app: TestApp) {
    let (status, _, body) = read(app.get("/nowhere").await).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, _, body) = read(
        app.request(Method::DELETE, "/health")
            .send()
            .await
            .expect("DELETE"),
    )
    .await;
    assert_eq!((status, code(&body)), (405, "method_not_allowed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory() {
    health_answers_with_the_store_it_serves_from(TestApp::in_memory().await, "memory").await;
    the_document_matches_the_router(TestApp::in_memory().await).await;
    unknown_paths_and_methods_answer_in_the_error_format(TestApp::in_memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let app = TestApp::on_postgres().await;
    health_answers_with_the_store_it_serves_from(app, "postgres").await;
    the_document_matches_the_router(TestApp::on_postgres().await).await;
    unknown_paths_and_methods_answer_in_the_error_format(TestApp::on_postgres().await).await;
}
