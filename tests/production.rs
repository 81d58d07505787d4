//! Ready for production traffic: operation limits, one error model with
//! request ids, resilience against dead and slow services, `/ready`,
//! `/metrics`, and a playground that needs no internet.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{proxy, Stack};
use serde_json::{json, Value};

const SCHEMA: &str = include_str!("../schema.graphql");

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

async fn total_requests(stack: &Stack) -> u64 {
    stack.requests().await.values().sum()
}

#[tokio::test]
async fn abusive_operations_are_refused_with_their_code_and_no_subgraph_request() {
    let stack = Stack::start().await;
    let deep = format!(
        "{{ contracts(limit: 1) {{ member {{ {} name {} }} }} }}",
        "contracts(limit: 1) { member { ".repeat(8),
        "} } ".repeat(8)
    );
    let aliases = format!(
        "{{ staff(id: 1) {{ {} }} }}",
        (0..40).map(|i| format!("a{i}: id")).collect::<Vec<_>>().join(" ")
    );
    let roots = format!(
        "{{ {} }}",
        (0..25)
            .map(|i| format!("f{i}: __typename"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let directives = format!("{{ staff(id: 1) {{ id {} }} }}", "@include(if: true) ".repeat(60));
    // A 1 MB alias bomb: refused on its token count, before parsing.
    let bomb = format!("{{ {} }}", "a: __typename ".repeat(80_000));
    let costly =
        "{ contracts(limit: 5000) { id settlements { id } member { name accounts { id } } } }".to_string();
    // 6 KB of nested list literal, within the token limit: it overflowed the
    // parser's stack and aborted the whole process.
    let nested_values = format!(
        "{{ staff(id: {}1{}) {{ id }} }}",
        "[".repeat(3000),
        "]".repeat(3000)
    );
    let cases = [
        (deep, "MAX_DEPTH_LIMIT"),
        (aliases, "MAX_ALIASES_LIMIT"),
        (roots, "MAX_ROOT_FIELDS_LIMIT"),
        (directives, "MAX_DIRECTIVES_LIMIT"),
        (bomb, "MAX_TOKENS_LIMIT"),
        (costly, "COST_ESTIMATED_TOO_EXPENSIVE"),
        (nested_values, "MAX_DEPTH_LIMIT"),
    ];
    stack.reset_stats().await;
    for (query, expected) in cases {
        let (status, body) = stack.post(json!({ "query": query })).await;
        assert_eq!(status, 400, "{expected}: {body}");
        assert_eq!(code(&body), expected, "{body}");
        assert!(body.get("data").is_none(), "{body}");
        assert!(body["errors"][0]["extensions"]["requestId"].is_string(), "{body}");
    }
    // The cost of a variable-sized list is known only with the variables.
    let query = "query($n: Int) { contracts(limit: $n) { id settlements { id } } }";
    let (status, body) = stack
        .post(json!({ "query": query, "variables": { "n": 50_000 } }))
        .await;
    assert_eq!(
        (status, code(&body)),
        (400, "COST_ESTIMATED_TOO_EXPENSIVE"),
        "{body}"
    );
    assert_eq!(total_requests(&stack).await, 0, "a refusal asks no service");

    let (status, body) = stack
        .post(json!({ "query": query, "variables": { "n": 2 } }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["contracts"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_body_too_large_gets_a_graphql_shaped_413() {
    let stack = Stack::start().await;
    let huge = json!({ "query": format!("{{ __typename }} # {}", "x".repeat(3 * 1024 * 1024)) });
    let response = stack
        .client
        .post(&stack.gateway)
        .json(&huge)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "a GraphQL body, not plain text"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(code(&body), "PAYLOAD_TOO_LARGE", "{body}");
}

#[tokio::test]
async fn the_estimated_cost_is_shown_when_asked() {
    let stack = Stack::start().await;
    let query = "query($n: Int) { contracts(limit: $n) { id member { name } } }";
    let cost = |n: u64| {
        let stack = &stack;
        async move {
            let (_, body) = stack
                .post_with(
                    json!({ "query": query, "variables": { "n": n } }),
                    &[("tessera-include-cost", "true")],
                )
                .await;
            body["extensions"]["cost"]["estimated"]
                .as_u64()
                .expect("estimated cost")
        }
    };
    // Each contract and its member count 1: 2 per row.
    assert_eq!(cost(10).await, 20);
    assert_eq!(cost(100).await, 200);
    let (_, plain) = stack
        .post(json!({ "query": query, "variables": { "n": 1 } }))
        .await;
    assert!(plain.get("extensions").is_none(), "only when asked: {plain}");
}

#[tokio::test]
async fn every_response_names_its_request() {
    let stack = Stack::start().await;
    let response = stack
        .client
        .post(&stack.gateway)
        .header("x-request-id", "trace-me-42")
        .json(&json!({ "query": "{ nope }" }))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["requestId"], "trace-me-42");

    let response = stack
        .client
        .post(&stack.gateway)
        .json(&json!({ "query": "{ staff(id: 1) { id } }" }))
        .send()
        .await
        .expect("answer");
    let made_up = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(made_up.len(), 32, "a fresh id: {made_up}");
}

#[tokio::test]
async fn identical_queries_in_flight_are_sent_once() {
    let stack = Stack::start().await;
    stack.faults("staff", json!({ "latency_ms": 300 })).await;
    stack.reset_stats().await;
    let query = json!({ "query": "{ staff(id: 3) { id name } }" });
    let answers = futures::future::join_all((0..6).map(|_| stack.post(query.clone()))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(body["data"]["staff"]["id"], "3", "{body}");
    }
    let staff = stack.stats("staff").await["requests"].as_u64().unwrap_or(0);
    assert_eq!(staff, 1, "six identical queries in flight, one request");

    // Mutations are never shared.
    let mutation = json!({ "query": "mutation { updateStaff(id: 3, name: \"Grace\") { id } }" });
    stack.reset_stats().await;
    let answers = futures::future::join_all((0..2).map(|_| stack.post(mutation.clone()))).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(stack.stats("staff").await["requests"].as_u64(), Some(2));
}

#[tokio::test]
async fn a_service_killed_under_load_fails_fast_and_is_served_again_within_a_second() {
    let mut stack = Stack::start().await;
    let staff = proxy(&stack.config.subgraphs["staff"].url).await;
    let mut config = stack.config.clone();
    config.subgraphs.get_mut("staff").expect("staff").url = staff.url.clone();
    let gateway = Arc::new(tessera::build_gateway(&config, SCHEMA).expect("gateway"));
    let url = stack.serve(gateway).await;
    let query = json!({ "query": "{ contracts(limit: 20) { id manager { name } member { name } } }" });

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = (0..8).map(|_| {
        let (client, url, query, stop) = (
            stack.client.clone(),
            url.clone(),
            query.clone(),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .json(&query)
                    .send()
                    .await
                    .expect("gateway answers");
                let status = response.status().as_u16();
                let body: Value = response.json().await.expect("json");
                answers.push((started, status, body));
            }
            answers
        })
    });
    let load: Vec<_> = load.collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    staff.set_up(false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let back = Instant::now();
    staff.set_up(true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut served_again: Option<Duration> = None;
    let mut failed_while_down = 0;
    for task in load {
        for (started, status, body) in task.await.expect("load task") {
            assert_eq!(status, 200, "no gateway error status: {body}");
            let rows = body["data"]["contracts"].as_array().expect("rows");
            assert_eq!(rows.len(), 20, "{body}");
            assert!(
                rows.iter().all(|r| r["member"]["name"].is_string()),
                "the other services' fields are still served: {body}"
            );
            let managers = rows.iter().all(|r| r["manager"]["name"].is_string());
            if !managers {
                failed_while_down += 1;
                let errors = body["errors"].as_array().expect("errors");
                assert_eq!(errors.len(), 1, "one error for the failed fetch: {body}");
            }
            if started > back && !managers {
                let after = started - back;
                assert!(
                    after < Duration::from_secs(1),
                    "staff still failing {after:?} after it came back"
                );
            }
            if started > back && managers {
                served_again = Some(served_again.map_or(started - back, |d| d.min(started - back)));
            }
        }
    }
    assert!(failed_while_down > 0, "the outage was seen");
    let served_again = served_again.expect("staff served again");
    assert!(served_again < Duration::from_secs(1), "{served_again:?}");
}

/// `/ready` waits for every index's first backfill to finish: an index
/// created (its alias set) but not built answers nothing yet, and a load
/// balancer sending it traffic got a part of the matches.
#[tokio::test]
async fn ready_waits_until_every_index_is_built() {
    let mut stack = Stack::start_with(common::StackOptions {
        search: true,
        ..common::StackOptions::default()
    })
    .await;
    let app = tessera::app(&stack.config, stack.search.as_ref().expect("search")).expect("app");
    let base = stack
        .serve_app(app)
        .await
        .trim_end_matches("/graphql")
        .to_string();
    let ready = || {
        let (client, url) = (stack.client.clone(), format!("{base}/ready"));
        async move {
            let response = client.get(url).send().await.expect("answer");
            (response.status().as_u16(), response.text().await.expect("text"))
        }
    };
    stack
        .syncer()
        .ensure_index("contracts")
        .await
        .expect("index created");
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("index contracts: not built yet"), "{body}");
    stack.backfill_all().await;
    let (status, body) = ready().await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn ready_reports_dead_services_and_metrics_are_exported() {
    let (stack, url) = Stack::with_app().await;
    let base = url.trim_end_matches("/graphql").to_string();
    let get = |path: &str| {
        let (client, url) = (stack.client.clone(), format!("{base}{path}"));
        async move {
            let response = client.get(url).send().await.expect("answer");
            (response.status().as_u16(), response.text().await.expect("text"))
        }
    };
    let (status, body) = get("/ready").await;
    assert_eq!(status, 200, "{body}");

    stack.faults("settlements", json!({ "down": true })).await;
    let (status, body) = get("/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("settlements"), "{body}");
    let (status, _) = get("/health").await;
    assert_eq!(status, 200, "alive while not ready");
    stack.faults("settlements", json!({ "down": false })).await;

    let response = stack
        .client
        .post(&url)
        .json(&json!({ "query": "query Page { contracts(limit: 3) { id member { name } } }", "operationName": "Page" }))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    // A search-backed field says how fresh its index is.
    let body = stack
        .post_to(
            &url,
            json!({ "query": "{ contractSearch(first: 1) { edges { node { id } } } }" }),
        )
        .await;
    let contracts = &body["extensions"]["indexes"]["contracts"];
    assert!(
        contracts["lastApplied"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.split('.').nth(1).is_none_or(|ms| ms.len() <= 4)),
        "to the millisecond: {body}"
    );
    assert!(contracts["ageMs"].is_u64(), "{body}");

    // Names of operations that are in no document, or no name at all, are
    // no labels (a refused request's name took one of the 200 for good).
    for name in [
        "NoSuchOperation".to_owned(),
        "L".repeat(5_000),
        "two words".to_owned(),
    ] {
        let body = stack
            .post_to(
                &url,
                json!({ "query": "query Page { staffCount }", "operationName": name }),
            )
            .await;
        assert!(body["errors"].is_array(), "{body}");
    }

    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    for unwanted in ["NoSuchOperation", "LLLLLLLL", "two words"] {
        assert!(!metrics.contains(unwanted), "{unwanted} in:\n{metrics}");
    }
    for expected in [
        "tessera_request_duration_seconds_count{operation=\"Page\",outcome=\"ok\"}",
        "tessera_subgraph_request_duration_seconds_count{subgraph=\"members\",outcome=\"ok\"}",
        "tessera_subgraph_batch_size_count{subgraph=\"members\"}",
        "tessera_plan_cache_total{result=\"miss\"}",
        "tessera_index_documents{index=\"contracts\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} in:\n{metrics}");
    }
}

/// A client that trickles its request in holds nothing up: a body has the
/// request timeout to arrive (then 408), headers as long at most (then the
/// connection closes), and after the shutdown signal the requests in
/// flight get the request timeout and a few seconds, then the server
/// stops. Half a body used to keep a connection, and a shutdown, waiting
/// for as long as the client liked.
#[tokio::test]
async fn a_client_that_never_finishes_sending_holds_nothing_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start().await;
    let mut config = stack.config.clone();
    config.limits.request_timeout = Duration::from_secs(1);
    let gateway = Arc::new(tessera::build_gateway(&config, SCHEMA).expect("gateway"));
    let app = tessera::http::App {
        options: Arc::new(tessera::http::HttpOptions::from_config(&config)),
        ..tessera::http::App::new(gateway)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tessera::serve_app(listener, app, async {
        let _ = stopped.await;
    }));
    let answer = |mut stream: tokio::net::TcpStream| async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };

    // Half a body: 408, with a GraphQL body, within the request timeout.
    let started = Instant::now();
    let mut half_body = tokio::net::TcpStream::connect(addr).await.expect("connect");
    half_body
        .write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\":")
        .await
        .expect("write");
    let text = answer(half_body).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Half the headers: the connection is closed.
    let started = Instant::now();
    let mut half_headers = tokio::net::TcpStream::connect(addr).await.expect("connect");
    half_headers
        .write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .expect("write");
    answer(half_headers).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A shutdown with a trickling client connected ends all the same.
    let mut trickling = tokio::net::TcpStream::connect(addr).await.expect("connect");
    trickling
        .write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("write");
    let started = Instant::now();
    stop.send(()).expect("stop");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .expect("joined")
        .expect("served");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    drop(trickling);
}

/// While the gateway starts (indexes open or build, minutes for a big
/// backfill), its port already answers: `/health` 200 for a liveness probe,
/// everything else 503, each answer closing its connection; then the same
/// listener serves the gateway. The port used to refuse connections until
/// the indexes were built.
#[tokio::test]
async fn the_port_answers_health_while_the_gateway_starts() {
    let stack = Stack::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (started, starting) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(tessera::serve_starting(listener, async {
        let _ = starting.await;
    }));
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .expect("health answers");
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["connection"], "close");
    let early = client
        .post(format!("http://{addr}/graphql"))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .expect("graphql answers");
    assert_eq!(early.status(), 503);
    let body: Value = early.json().await.expect("json");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("starting")),
        "{body}"
    );

    started.send(()).expect("started");
    let listener = serving.await.expect("joined").expect("the listener comes back");
    let gateway = Arc::new(tessera::build_gateway(&stack.config, SCHEMA).expect("gateway"));
    tokio::spawn(tessera::serve(listener, gateway, std::future::pending()));
    let body: Value = client
        .post(format!("http://{addr}/graphql"))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .expect("graphql answers")
        .json()
        .await
        .expect("json");
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
}

#[tokio::test]
async fn introspection_and_the_playground_can_be_turned_off() {
    let mut stack = Stack::start().await;
    let mut config = stack.config.clone();
    config.security.introspection = false;
    config.security.playground = false;
    let gateway = Arc::new(tessera::build_gateway(&config, SCHEMA).expect("gateway"));
    let app = tessera::http::App {
        options: Arc::new(tessera::http::HttpOptions::from_config(&config)),
        ..tessera::http::App::new(gateway)
    };
    let url = stack.serve_app(app).await;
    let body = stack
        .post_to(&url, json!({ "query": "{ __schema { types { name } } }" }))
        .await;
    assert_eq!(code(&body), "INTROSPECTION_DISABLED", "{body}");
    let body = stack.post_to(&url, json!({ "query": "{ __typename }" })).await;
    assert_eq!(
        body["data"]["__typename"], "Query",
        "__typename is not introspection"
    );
    let page = stack
        .client
        .get(&url)
        .header("accept", "text/html")
        .send()
        .await
        .expect("answer");
    assert_ne!(page.status(), 200);
}

#[tokio::test]
async fn the_playground_loads_nothing_from_the_internet() {
    let stack = Stack::start().await;
    let html = stack
        .client
        .get(&stack.gateway)
        .header("accept", "text/html")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(!html.contains("https://") && !html.contains("http://"), "{html}");
    let base = stack.gateway.trim_end_matches("/graphql");
    for (file, content_type, bytes) in tessera::http::ASSETS {
        assert!(
            html.contains(&format!("/graphiql/{file}")),
            "{file} is loaded by the page"
        );
        let response = stack
            .client
            .get(format!("{base}/graphiql/{file}"))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], *content_type);
        assert_eq!(response.bytes().await.expect("bytes").len(), bytes.len());
    }
}

/// `tessera serve` started in `dir` (its `tessera.toml`, if any, and none of
/// this environment's Tessera variables) until it exits; `dir` is removed.
async fn serve_in(dir: &std::path::Path) -> std::process::Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--listen", "127.0.0.1:0", "--schema"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .current_dir(dir)
        .env_remove("TESSERA_CURSOR_SECRET")
        .env_remove("TESSERA_CONFIG")
        .env_remove("TESSERA_SEARCH_BACKEND")
        .output()
        .await
        .expect("tessera runs");
    let _ = std::fs::remove_dir_all(dir);
    output
}

#[tokio::test]
async fn serve_refuses_the_public_development_cursor_secret() {
    let dir = std::env::temp_dir().join(format!("tessera-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let output = serve_in(&dir).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cursor_secret"), "{stderr}");
    // Nor one too short to be a key (a cursor would give it away offline).
    std::fs::create_dir_all(&dir).expect("temp dir");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--listen", "127.0.0.1:0", "--schema"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .current_dir(&dir)
        .env("TESSERA_CURSOR_SECRET", "a")
        .env_remove("TESSERA_CONFIG")
        .output()
        .await
        .expect("tessera serve");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 32"), "{stderr}");
}

#[tokio::test]
async fn a_start_up_failure_names_its_cause_once() {
    // The index directory's place is taken by a file.
    let dir = std::env::temp_dir().join(format!("tessera-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("index"), b"not a directory").expect("file");
    std::fs::write(
        dir.join("tessera.toml"),
        "[search]\ndata_dir = \"index\"\ncursor_secret = \"a-long-test-secret-for-this-one-start\"\n",
    )
    .expect("config");
    let output = serve_in(&dir).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(line.contains("cannot open the search index"), "{line}");
    assert_eq!(line.matches("search backend failure").count(), 1, "{line}");
}

/// Spans go to an OTLP/HTTP collector (here a fake one that keeps what it
/// gets) in the caller's trace: `tessera serve` with the standard
/// OpenTelemetry variables, in front of this stack's services.
#[tokio::test]
async fn spans_are_exported_over_otlp_in_the_callers_trace() {
    use axum::{body::Bytes, routing::post, Router};
    let stack = Stack::start().await;
    let received: Arc<parking_lot::Mutex<Vec<(String, Bytes)>>> = Arc::default();
    let kept = Arc::clone(&received);
    let collector = Router::new().route(
        "/v1/traces",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                kept.lock().push((content_type, body));
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let collector_url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let dir = std::env::temp_dir().join(format!("tessera-otlp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("tessera.toml");
    std::fs::write(&config, "[search]\nin_memory = true\n[sync]\nenabled = false\n").expect("config");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .arg("--schema")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .env("TESSERA_CURSOR_SECRET", "otlp-test-secret-of-at-least-32-bytes")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url)
        .env("OTEL_SERVICE_NAME", "tessera-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    for (name, sub) in &stack.config.subgraphs {
        command.env(format!("TESSERA_SUBGRAPH_{}_URL", name.to_uppercase()), &sub.url);
    }
    let mut gateway = command.spawn().expect("tessera serve");
    let url = format!("http://127.0.0.1:{port}/graphql");
    // Served once started (it answers 503 while it starts; `/ready` waits
    // for indexes this one never builds).
    common::eventually(Duration::from_secs(30), "the gateway to serve", || {
        let client = stack.client.clone();
        let url = url.clone();
        async move {
            client
                .post(url)
                .json(&json!({ "query": "{ __typename }" }))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = stack
        .client
        .post(&url)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({ "query": "{ contracts(limit: 2) { id member { name } } }" }))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);

    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let contains = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    common::eventually(
        Duration::from_secs(15),
        "spans of the caller's trace at the collector",
        || {
            let received = Arc::clone(&received);
            let trace_bytes = trace_bytes.clone();
            async move {
                let got = received.lock();
                let all: Vec<u8> = got.iter().flat_map(|(_, b)| b.to_vec()).collect();
                got.iter().all(|(t, _)| t == "application/x-protobuf")
                    && contains(&all, &trace_bytes)
                    && [&b"request"[..], b"plan", b"subgraph", b"tessera-under-test"]
                        .iter()
                        .all(|name| contains(&all, name))
            }
        },
    )
    .await;
    let _ = gateway.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request every caller gave up on lets go of its subgraph slot. Held in
/// the deduplication map, abandoned requests were never driven again and
/// kept their slots for good: enough of them wedged the subgraph, and every
/// later request touching it timed out.
#[tokio::test]
async fn requests_given_up_on_free_their_subgraph_slots() {
    let mut stack = Stack::start().await;
    let mut config = stack.config.clone();
    config.traffic.max_concurrent_per_subgraph = 2;
    config.limits.request_timeout = Duration::from_millis(300);
    let gateway = Arc::new(tessera::build_gateway(&config, SCHEMA).expect("gateway"));
    let url = stack.serve(gateway).await;
    stack.faults("contracts", json!({ "latency_ms": 3000 })).await;
    // Distinct requests (no two deduplicated), each given up at 300 ms: two
    // holding the slots, the others waiting for one.
    for id in 1..=4 {
        let query = format!("{{ contract(id: {id}) {{ id }} }}");
        let body = stack.post_to(&url, json!({ "query": query })).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "GATEWAY_TIMEOUT",
            "{body}"
        );
    }
    stack.faults("contracts", json!({ "latency_ms": 0 })).await;
    let body = stack
        .post_to(&url, json!({ "query": "{ contract(id: 9) { id } staffCount }" }))
        .await;
    assert_eq!(body["data"]["contract"]["id"], "9", "{body}");
    assert!(body["data"]["staffCount"].is_number(), "{body}");
}

/// `tessera plan` prints the plan of an operation the gateway would take,
/// and refuses, with the validator's message, one it would refuse: an
/// argument the field does not have was dropped from the plan silently.
#[tokio::test]
async fn plan_refuses_what_a_request_would_be_refused() {
    let plan = |operation: &'static str| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "plan",
                "--schema",
                concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"),
                operation,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("TESSERA_CONFIG")
            .output()
            .await
            .expect("tessera plan")
    };
    let output = plan("query($id: ID!) { contract(id: $id) { id member { name } } }").await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("membersByIds"));
    for (operation, why) in [
        ("{ contracts(first: 2) { id } }", "Unknown argument \"first\""),
        (
            "query($a: Int = \"x\") { contracts(limit: $a) { id } }",
            "default value of \"$a\"",
        ),
    ] {
        let output = plan(operation).await;
        assert!(!output.status.success(), "{operation} was planned");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(why), "{operation}: {stderr}");
    }
}

#[test]
fn a_cli_report_to_a_reader_that_stopped_reading_ends_quietly() {
    // `tessera plan … | head -1`: the pipe is closed before the plan is printed.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["plan", "--schema"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .arg("{ contracts { id title } }")
        .env_remove("TESSERA_CONFIG")
        .stdout(writer)
        .output()
        .expect("tessera plan runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
