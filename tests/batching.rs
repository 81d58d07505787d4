//! No N+1: request counts read from the subgraphs' own `/stats`, and partial
//! failure when a service is slow or down.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{Stack, StackOptions};
use serde_json::{json, Value};

const PAGE: &str = "query($n: Int!) { contracts(limit: $n) {
    id memberId managerId
    member { name accounts { bankName } }
    manager { name }
    settlements { amount }
} }";

fn distinct(rows: &[Value], field: &str) -> usize {
    rows.iter()
        .filter_map(|r| r[field].as_str())
        .collect::<HashSet<_>>()
        .len()
}

async fn page_costs(stack: &Stack, n: usize) -> (Vec<Value>, HashMap<String, u64>) {
    stack.reset_stats().await;
    let data = stack.data(PAGE, json!({ "n": n })).await;
    let rows = data["contracts"].as_array().expect("rows").clone();
    assert_eq!(rows.len(), n);
    (rows, stack.requests().await)
}

/// The same relation selected twice under one parent (two aliases with
/// different selections, or a denormalized field beside the relation) is
/// one request per service, and each selection reads its own fields: the
/// two lookups were sent apart.
#[tokio::test]
async fn a_relation_selected_twice_is_one_request_per_service() {
    let stack = Stack::start().await;
    stack.reset_stats().await;
    let data = stack
        .data(
            "{ posts(first: 20) { authorName author { email accounts { bankName } } a: author { mail: email accounts { id } } } }",
            json!({}),
        )
        .await;
    let requests = stack.requests().await;
    assert_eq!(requests["members"], 1, "{requests:?}");
    assert_eq!(requests["accounts"], 1, "{requests:?}");
    let posts = data["posts"].as_array().expect("posts");
    assert_eq!(posts.len(), 20);
    for post in posts {
        let (author, a) = (&post["author"], &post["a"]);
        assert!(author["email"].is_string(), "{post}");
        assert_eq!(a["mail"], author["email"], "{post}");
        assert!(post["authorName"].is_string(), "{post}");
        let banks: Vec<_> = author["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|x| x.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
            .collect();
        assert!(
            banks
                .iter()
                .all(|k| k.as_deref() == Some(&["bankName".to_string()][..])),
            "{post}"
        );
        let ids = a["accounts"].as_array().expect("accounts");
        assert_eq!(
            ids.len(),
            author["accounts"].as_array().map_or(0, Vec::len),
            "{post}"
        );
        assert!(
            ids.iter()
                .all(|x| x["id"].is_string() && x.get("bankName").is_none()),
            "{post}"
        );
    }
    // Selections that cannot share a request (`name` is the name in one,
    // the email in the other) are sent apart, each answered as asked.
    let data = stack
        .data(
            "{ posts(first: 5) { author { name } a: author { name: email } } }",
            json!({}),
        )
        .await;
    for post in data["posts"].as_array().expect("posts") {
        let (name, email) = (&post["author"]["name"], &post["a"]["name"]);
        assert!(
            name.is_string() && email.as_str().is_some_and(|e| e.contains('@')) && name != email,
            "{post}"
        );
    }
}

#[tokio::test]
async fn a_page_costs_one_request_per_service_whatever_its_size() {
    let max_batch = 500;
    let stack = Stack::start_with(StackOptions {
        scale: 2000,
        max_batch_size: max_batch,
        ..StackOptions::default()
    })
    .await;

    let (rows, requests) = page_costs(&stack, 20).await;
    for service in ["contracts", "members", "staff", "accounts", "settlements"] {
        assert_eq!(requests[service], 1, "{service}: {requests:?}");
    }
    for service in ["posts", "products", "events", "reviews"] {
        assert_eq!(requests[service], 0, "{service}: {requests:?}");
    }
    // Staff has no batch field: one request, one alias per distinct manager.
    let staff = stack.stats("staff").await;
    assert_eq!(
        staff["fields"]["staff"]["calls"].as_u64(),
        Some(distinct(&rows, "managerId") as u64),
        "{staff}"
    );
    let members = stack.stats("members").await;
    assert_eq!(members["fields"]["membersByIds"]["calls"].as_u64(), Some(1));
    assert_eq!(
        members["fields"]["membersByIds"]["keys"].as_u64(),
        Some(distinct(&rows, "memberId") as u64)
    );

    // 1,000 rows: the same requests, more only where a key set exceeds the batch size.
    let (rows, requests) = page_costs(&stack, 1000).await;
    let chunks = |keys: usize| keys.div_ceil(max_batch) as u64;
    assert_eq!(requests["contracts"], 1);
    assert_eq!(
        requests["staff"], 1,
        "alias batching is one request: {requests:?}"
    );
    assert_eq!(
        requests["members"],
        chunks(distinct(&rows, "memberId")),
        "{requests:?}"
    );
    assert_eq!(
        requests["accounts"],
        chunks(distinct(&rows, "memberId")),
        "{requests:?}"
    );
    assert_eq!(requests["settlements"], chunks(rows.len()), "{requests:?}");
    assert!(requests.values().sum::<u64>() <= 8, "not N+1: {requests:?}");
}

#[tokio::test]
async fn an_entity_reached_twice_is_fetched_once() {
    let stack = Stack::start().await;
    stack.reset_stats().await;
    // The same members through two paths with the same selection.
    stack
        .data(
            "{ a: contracts(limit: 30) { member { name } } b: contracts(limit: 30) { member { name } } }",
            json!({}),
        )
        .await;
    let members = stack.stats("members").await;
    let a_keys = members["fields"]["membersByIds"]["keys"].as_u64().unwrap_or(0);
    stack.reset_stats().await;
    stack
        .data("{ contracts(limit: 30) { member { name } } }", json!({}))
        .await;
    let once = stack.stats("members").await["fields"]["membersByIds"]["keys"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(a_keys, once, "the second path hits the request's loader cache");
}

#[tokio::test]
async fn federation_entities_and_joins_are_batched_too() {
    let stack = Stack::start().await;
    stack.reset_stats().await;
    let data = stack
        .data(
            "{ reviews(limit: 50) { rating authorId product { name sellerId seller { name } reviews { rating } } author { name } } }",
            json!({}),
        )
        .await;
    let reviews = data["reviews"].as_array().expect("reviews");
    assert_eq!(reviews.len(), 50);
    assert!(reviews.iter().all(|r| r["product"]["name"].is_string()), "{data}");
    let requests = stack.requests().await;
    assert_eq!(requests["products"], 1, "_entities in one request: {requests:?}");
    // Authors are looked up at depth 1, sellers at depth 2 (after products):
    // one request each, and no member is asked for twice.
    assert_eq!(requests["members"], 2, "{requests:?}");
    assert_eq!(
        requests["reviews"], 2,
        "the list, then one join request: {requests:?}"
    );
    let members = stack.stats("members").await;
    let people: std::collections::HashSet<&str> = reviews
        .iter()
        .flat_map(|r| [r["authorId"].as_str(), r["product"]["sellerId"].as_str()])
        .flatten()
        .collect();
    assert_eq!(
        members["fields"]["membersByIds"]["keys"].as_u64(),
        Some(people.len() as u64),
        "{members}"
    );
    let products = stack.stats("products").await;
    assert_eq!(
        products["fields"]["_entities"]["calls"].as_u64(),
        Some(1),
        "{products}"
    );
}

#[tokio::test]
async fn a_slow_service_past_its_timeout_nulls_only_its_fields() {
    let stack = Stack::start_with(StackOptions {
        timeout: Duration::from_millis(300),
        ..StackOptions::default()
    })
    .await;
    stack.faults("staff", json!({ "latency_ms": 2000 })).await;
    let started = std::time::Instant::now();
    let (status, body) = stack
        .post(json!({ "query": "{ contracts(limit: 3) { id title manager { name } member { name } } }" }))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "the timeout bounds the request"
    );
    assert_eq!(status, 200);
    let rows = body["data"]["contracts"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{body}");
    for row in rows {
        assert!(row["title"].is_string());
        assert!(row["member"]["name"].is_string(), "other services still answer");
        assert_eq!(row["manager"], Value::Null);
    }
    // One failed fetch is one error, at the list it fed.
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], json!(["contracts"]));
    assert_eq!(errors[0]["extensions"]["code"], "SUBGRAPH_TIMEOUT");
    assert_eq!(errors[0]["extensions"]["subgraph"], "staff");
}

#[tokio::test]
async fn a_service_that_is_down_or_answers_garbage_fails_partially() {
    let stack = Stack::start().await;
    stack.faults("settlements", json!({ "down": true })).await;
    stack.faults("accounts", json!({ "garbage": true })).await;
    let (status, body) = stack
        .post(json!({ "query": "{ contracts(limit: 2) { id settlements { id } member { name accounts { id } } } }" }))
        .await;
    assert_eq!(status, 200);
    let errors = body["errors"].as_array().expect("errors");
    for i in 0..2 {
        let row = &body["data"]["contracts"][i];
        assert!(row["member"]["name"].is_string(), "{body}");
        assert_eq!(row["settlements"], Value::Null);
        assert_eq!(row["member"]["accounts"], Value::Null);
    }
    // One error per failed fetch, at the list; no URL or transport detail.
    assert_eq!(errors.len(), 2, "{body}");
    let down = errors
        .iter()
        .find(|e| e["extensions"]["code"] == "SUBGRAPH_REQUEST_FAILED")
        .expect("the dead service's error");
    assert_eq!(down["path"], json!(["contracts"]));
    assert!(
        down["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"settlements\"")),
        "{down}"
    );
    let garbage = errors
        .iter()
        .find(|e| e["extensions"]["code"] == "SUBGRAPH_INVALID_RESPONSE")
        .expect("the garbage service's error");
    assert_eq!(garbage["path"], json!(["contracts"]));
    for e in errors {
        assert!(!e.to_string().contains("127.0.0.1"), "no internal detail: {e}");
        assert!(e["extensions"]["requestId"].is_string(), "{e}");
    }
}

/// A gateway whose members service is `app` (a stand-in), the others as configured.
async fn with_members(app: axum::Router) -> tessera::pipeline::Gateway {
    let config = members_at(app).await;
    tessera::build_gateway(&config, include_str!("../schema.graphql")).expect("gateway")
}

/// The default configuration, its members service `app` (a stand-in, served here).
async fn members_at(app: axum::Router) -> tessera::config::Config {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = tessera::config::Config::default();
    config.subgraphs.get_mut("members").expect("members").url = format!("http://{addr}/graphql");
    config
}

/// `query`'s response body from `gateway`, POSTed with no headers.
async fn ask(gateway: &tessera::pipeline::Gateway, query: &str) -> Value {
    let response = gateway
        .handle(
            tessera::pipeline::GraphQLRequest {
                query: Some(query.into()),
                ..Default::default()
            },
            tessera::pipeline::Method::Post,
            &Default::default(),
            Default::default(),
        )
        .await;
    serde_json::from_slice(&response.body).expect("json")
}

#[tokio::test]
async fn headers_named_in_config_are_forwarded() {
    use axum::{routing::post, Json, Router};
    use std::sync::{Arc, Mutex};

    // A stand-in members service that records the headers it receives.
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = Arc::clone(&seen);
    let app = Router::new().route(
        "/graphql",
        post(move |headers: axum::http::HeaderMap| {
            let record = Arc::clone(&record);
            async move {
                let mut seen = record.lock().expect("lock");
                for (k, v) in &headers {
                    seen.push((k.to_string(), v.to_str().unwrap_or_default().to_string()));
                }
                Json(json!({ "data": { "member": { "name": "Kim" } } }))
            }
        }),
    );
    let gateway = with_members(app).await;
    let headers: axum::http::HeaderMap = [
        ("authorization", "Bearer t0ken"),
        ("accept-language", "ko-KR"),
        ("x-secret", "not forwarded"),
    ]
    .into_iter()
    .map(|(k, v)| (k.parse().expect("name"), v.parse().expect("value")))
    .collect();
    let response = gateway
        .handle(
            tessera::pipeline::GraphQLRequest {
                query: Some("{ member(id: 1) { name } }".into()),
                ..Default::default()
            },
            tessera::pipeline::Method::Post,
            &headers,
            Default::default(),
        )
        .await;
    assert_eq!(response.status, 200);
    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.contains(&("authorization".into(), "Bearer t0ken".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("accept-language".into(), "ko-KR".into())),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|(k, _)| k == "x-secret"), "{seen:?}");
}

#[tokio::test]
async fn a_leaf_of_the_wrong_kind_is_an_error_not_passed_on() {
    use axum::{routing::post, Json, Router};

    // A stand-in members service whose values do not fit their types.
    let app = Router::new().route(
        "/graphql",
        post(|| async {
            Json(json!({ "data": { "member": {
                "name": "Kim", "phone": 5, "email": ["kim@example.com"], "joinedAt": { "any": "thing" },
                "grade": "PLATINUM"
            } } }))
        }),
    );
    let gateway = with_members(app).await;
    let run = |query: &'static str| ask(&gateway, query);

    // A nullable String given a number: null, and why. A custom scalar
    // (DateTime) is the service's to shape: passed on as it came.
    let body = run("{ member(id: 1) { name phone joinedAt } }").await;
    assert_eq!(
        body["data"],
        json!({ "member": { "name": "Kim", "phone": null, "joinedAt": { "any": "thing" } } }),
        "{body}"
    );
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], json!(["member", "phone"]));
    assert_eq!(errors[0]["extensions"]["code"], "SUBGRAPH_INVALID_RESPONSE");
    assert_eq!(errors[0]["message"], "String cannot represent value: 5");

    // A non-null String given a list: its object becomes null.
    let body = run("{ member(id: 1) { name email } }").await;
    assert_eq!(body["data"], json!({ "member": null }), "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["member", "email"]), "{body}");
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{body}");

    // An enum value the schema does not list (the service gained one).
    let body = run("{ member(id: 1) { name grade } }").await;
    assert_eq!(body["data"], json!({ "member": null }), "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["member", "grade"]), "{body}");
    assert_eq!(
        body["errors"][0]["message"], "Enum \"MemberGrade\" cannot represent value: \"PLATINUM\"",
        "{body}"
    );
}

/// A 5xx answer is a failure of the service even with a GraphQL body: it
/// counts toward the circuit breaker (five of them open it, the default),
/// where it was taken as an ordinary answer with errors.
#[tokio::test]
async fn a_server_error_with_a_graphql_body_counts_toward_the_breaker() {
    use axum::{http::StatusCode, routing::post, Json, Router};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let asked = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&asked);
    let app = Router::new().route(
        "/graphql",
        post(move || {
            count.fetch_add(1, Ordering::Relaxed);
            async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({ "data": null, "errors": [{ "message": "database is down" }] })),
                )
            }
        }),
    );
    let gateway = with_members(app).await;
    let query = "{ member(id: 1) { name } }";
    for _ in 0..5 {
        let body = ask(&gateway, query).await;
        assert_eq!(body["errors"][0]["message"], "database is down", "{body}");
    }
    let body = ask(&gateway, query).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "SUBGRAPH_UNAVAILABLE",
        "{body}"
    );
    assert_eq!(asked.load(Ordering::Relaxed), 5, "the open circuit fails fast");
}

/// An answer larger than `traffic.max_response_bytes` is an invalid answer
/// at the field it fed, not read whole (a 200 MB answer was, and served).
#[tokio::test]
async fn a_subgraph_answer_past_the_size_bound_is_refused() {
    use axum::{routing::post, Json, Router};
    let app = Router::new().route(
        "/graphql",
        post(|| async { Json(json!({ "data": { "member": { "name": "x".repeat(8_192) } } })) }),
    );
    let mut config = members_at(app).await;
    let answer = |config: &tessera::config::Config| {
        let gateway = tessera::build_gateway(config, include_str!("../schema.graphql")).expect("gateway");
        async move { ask(&gateway, "{ member(id: 1) { name } }").await }
    };
    let body = answer(&config).await;
    assert_eq!(
        body["data"]["member"]["name"].as_str().map(str::len),
        Some(8_192),
        "{body}"
    );
    config.traffic.max_response_bytes = 4_096;
    let body = answer(&config).await;
    assert_eq!(body["data"]["member"], Value::Null, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "SUBGRAPH_INVALID_RESPONSE",
        "{body}"
    );
}
