//! The executor against an in-memory `Fetcher`: subgraph answers shaped on
//! purpose (out of order, with holes, with item errors) to check how they
//! are mapped back, without a network.

use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tessera::exec::{Executor, FetchError, Fetcher, SubgraphRequest, SubgraphResponse};
use tessera::schema::Supergraph;

type Handler = dyn Fn(&str, &str, &Map<String, Value>) -> Value + Send + Sync;
/// (subgraph, document, variables) of each request.
type Log = Vec<(String, String, Map<String, Value>)>;

/// Answers each request with `handler(subgraph, query, variables)` and records it.
struct FakeFetcher {
    handler: Box<Handler>,
    log: Mutex<Log>,
}

impl Fetcher for FakeFetcher {
    fn fetch<'a>(
        &'a self,
        request: SubgraphRequest<'a>,
    ) -> BoxFuture<'a, Result<SubgraphResponse, FetchError>> {
        let answer = (self.handler)(request.subgraph, request.query, &request.variables);
        self.log.lock().push((
            request.subgraph.to_string(),
            request.query.to_string(),
            request.variables.clone(),
        ));
        Box::pin(async move {
            let body = serde_json::to_vec(&answer).map_err(|e| FetchError::InvalidResponse {
                subgraph: "fake".into(),
                reason: e.to_string(),
            })?;
            SubgraphResponse::from_body("fake", body)
        })
    }
}

async fn run(query: &str, max_batch: usize, handler: Box<Handler>) -> (Value, Log) {
    let schema = Arc::new(Supergraph::parse(include_str!("../schema.graphql")).expect("schema"));
    let fetcher = Arc::new(FakeFetcher {
        handler,
        log: Mutex::new(Vec::new()),
    });
    let executor = Executor::new(Arc::clone(&schema), fetcher.clone(), max_batch);
    let doc = async_graphql::parser::parse_query(query).expect("parses");
    let plan = tessera::plan::plan(&schema, &doc, None).expect("plans");
    let vars = tessera::exec::coerce_variables(&schema, &plan.variables, &Map::new()).expect("vars");
    let execution = executor.execute(&plan, &vars, &Default::default(), None).await;
    let body = tessera::exec::response_body(Some(&execution.data), &execution.errors, None);
    let log = fetcher.log.lock().clone();
    (serde_json::from_slice(&body).expect("response is JSON"), log)
}

fn relay(id: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("MemberNode:{id}"))
}

/// Contracts 1..=4 pointing at members 10, 11, 10, 12.
fn contracts_then_members(members: impl Fn(&[Value]) -> Value + Send + Sync + 'static) -> Box<Handler> {
    Box::new(move |subgraph, _query, vars| match subgraph {
        "contracts" => json!({ "data": { "contracts": [
            { "id": 1, "_k_member_id": 10 }, { "id": 2, "_k_member_id": 11 }, { "id": 3, "_k_member_id": 10 }, { "id": 4, "_k_member_id": 12 }
        ] } }),
        "members" => members(vars["_keys"].as_array().expect("keys")),
        other => panic!("unexpected subgraph {other}"),
    })
}

#[tokio::test]
async fn keyed_results_match_by_key_not_position() {
    // The service answers in reverse order and without member 11.
    let handler = contracts_then_members(|keys| {
        assert_eq!(keys.len(), 3, "keys are deduplicated: {keys:?}");
        let mut items: Vec<Value> = keys
            .iter()
            .filter(|k| **k != json!(relay(11)))
            .map(|k| json!({ "_key": k, "name": format!("member {}", k.as_str().unwrap_or_default()) }))
            .collect();
        items.reverse();
        json!({ "data": { "membersByIds": items } })
    });
    let (body, log) = run("{ contracts { id member { name } } }", 500, handler).await;
    assert_eq!(log.len(), 2, "one request per subgraph");
    let rows = body["data"]["contracts"].as_array().expect("rows");
    assert_eq!(rows[0]["member"]["name"], format!("member {}", relay(10)));
    assert_eq!(rows[1]["member"], Value::Null, "a hole is null, not the next row");
    assert_eq!(rows[2]["member"]["name"], format!("member {}", relay(10)));
    assert_eq!(rows[3]["member"]["name"], format!("member {}", relay(12)));
    assert!(
        body.get("errors").is_none(),
        "a missing nullable entity is not an error: {body}"
    );
}

#[tokio::test]
async fn an_item_error_lands_on_the_items_that_reference_it() {
    let handler = contracts_then_members(|keys| {
        let items: Vec<Value> = keys
            .iter()
            .map(|k| {
                if *k == json!(relay(10)) {
                    json!({ "_key": k, "name": null })
                } else {
                    json!({ "_key": k, "name": "ok" })
                }
            })
            .collect();
        let bad = keys
            .iter()
            .position(|k| *k == json!(relay(10)))
            .expect("member 10 asked");
        json!({ "data": { "membersByIds": items },
                "errors": [{ "message": "name is private", "path": ["membersByIds", bad, "name"] }] })
    });
    let (body, _) = run("{ contracts { id member { name } } }", 500, handler).await;
    let rows = body["data"]["contracts"].as_array().expect("rows");
    // `name` is non-null, so member 10 becomes null where it is referenced…
    assert_eq!(rows[0]["member"], Value::Null);
    assert_eq!(rows[2]["member"], Value::Null);
    // …and nowhere else.
    assert_eq!(rows[1]["member"]["name"], "ok");
    let paths: Vec<&Value> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| &e["path"])
        .collect();
    assert_eq!(
        paths,
        vec![
            &json!(["contracts", 0, "member", "name"]),
            &json!(["contracts", 2, "member", "name"])
        ]
    );
    assert_eq!(body["errors"][0]["extensions"]["subgraph"], "members");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "DOWNSTREAM_SERVICE_ERROR"
    );
}

#[tokio::test]
async fn big_key_sets_are_chunked_by_max_batch_size() {
    let handler = contracts_then_members(|keys| {
        let items: Vec<Value> = keys.iter().map(|k| json!({ "_key": k, "name": "n" })).collect();
        json!({ "data": { "membersByIds": items } })
    });
    let (body, log) = run("{ contracts { member { name } } }", 2, handler).await;
    let member_requests: Vec<usize> = log
        .iter()
        .filter(|(s, _, _)| s == "members")
        .map(|(_, _, v)| v["_keys"].as_array().map(Vec::len).unwrap_or(0))
        .collect();
    assert_eq!(member_requests.iter().sum::<usize>(), 3);
    assert_eq!(
        member_requests.len(),
        2,
        "3 keys in chunks of 2: {member_requests:?}"
    );
    assert!(body["data"]["contracts"]
        .as_array()
        .expect("rows")
        .iter()
        .all(|r| r["member"]["name"] == "n"));
}

#[tokio::test]
async fn a_failed_batch_nulls_each_referencing_field_with_one_error() {
    let handler =
        contracts_then_members(|_| json!({ "data": null, "errors": [{ "message": "database is down" }] }));
    let (body, _) = run("{ contracts { id member { name } } }", 500, handler).await;
    let errors = body["errors"].as_array().expect("errors");
    // One failed fetch, one error, at the list it fed (as federation routers do).
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], json!(["contracts"]));
    assert_eq!(errors[0]["message"], "database is down");
    assert!(body["data"]["contracts"]
        .as_array()
        .expect("rows")
        .iter()
        .all(|r| r["member"].is_null()));
    assert_eq!(
        body["data"]["contracts"][3]["id"], "4",
        "the contracts are still served"
    );
}

#[tokio::test]
async fn alias_lookups_send_one_request_with_one_alias_per_key() {
    let handler: Box<Handler> = Box::new(|subgraph, query, _| match subgraph {
        "contracts" => {
            json!({ "data": { "contracts": [ { "_k_manager_id": 7 }, { "_k_manager_id": 9 }, { "_k_manager_id": 7 } ] } })
        }
        "staff" => {
            assert!(
                query.contains("_0:staff(id:7)") && query.contains("_1:staff(id:9)"),
                "{query}"
            );
            json!({ "data": { "_0": { "_key": 7, "name": "seven" }, "_1": null } })
        }
        other => panic!("unexpected {other}"),
    });
    let (body, log) = run("{ contracts { manager { name } } }", 500, handler).await;
    assert_eq!(log.iter().filter(|(s, _, _)| s == "staff").count(), 1);
    assert_eq!(body["data"]["contracts"][0]["manager"]["name"], "seven");
    assert_eq!(body["data"]["contracts"][1]["manager"], Value::Null);
    assert_eq!(body["data"]["contracts"][2]["manager"]["name"], "seven");
}

#[tokio::test]
async fn garbage_from_a_subgraph_is_an_error_not_a_panic() {
    let handler: Box<Handler> = Box::new(|subgraph, _, _| match subgraph {
        "contracts" => {
            json!({ "data": { "contracts": [ { "id": 1, "title": "One", "_k_member_id": "x" } ] } })
        }
        "members" => json!({ "data": { "membersByIds": "nope" } }),
        other => panic!("unexpected {other}"),
    });
    let (body, _) = run("{ contracts { id title member { name } } }", 500, handler).await;
    // A non-numeric key for an Int argument matches nothing; the rest is served.
    assert_eq!(body["data"]["contracts"][0]["id"], "1");
    assert_eq!(body["data"]["contracts"][0]["member"], Value::Null);

    // An object for a `String!`: an error at the field, and the null goes
    // up to the nearest nullable place (the list: its items are `Contract!`).
    let handler: Box<Handler> = Box::new(|subgraph, _, _| match subgraph {
        "contracts" => json!({ "data": { "contracts": [ { "id": 1, "title": { "not": "a string" } } ] } }),
        other => panic!("unexpected {other}"),
    });
    let (body, _) = run("{ contracts { id title } }", 500, handler).await;
    assert_eq!(body["data"], json!({ "contracts": null }), "{body}");
    assert_eq!(
        body["errors"][0]["path"],
        json!(["contracts", 0, "title"]),
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "SUBGRAPH_INVALID_RESPONSE",
        "{body}"
    );
}
