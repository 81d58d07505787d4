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
        let subgraph = request.subgraph.to_string();
        Box::pin(async move {
            // `null` stands for a subgraph that cannot be reached.
            if answer.is_null() {
                return Err(FetchError::Unreachable {
                    subgraph,
                    reason: "connection refused".into(),
                });
            }
            let body = serde_json::to_vec(&answer).map_err(|e| FetchError::InvalidResponse {
                subgraph: subgraph.clone(),
                reason: e.to_string(),
            })?;
            SubgraphResponse::from_body(&subgraph, body)
        })
    }
}

/// The `path` of each error of a response.
fn error_paths(body: &Value) -> Vec<&Value> {
    body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| &e["path"])
        .collect()
}

async fn run(query: &str, max_batch: usize, handler: Box<Handler>) -> (Value, Log) {
    run_on(include_str!("../schema.graphql"), query, max_batch, handler).await
}

async fn run_on(schema: &str, query: &str, max_batch: usize, handler: Box<Handler>) -> (Value, Log) {
    run_with(schema, query, Map::new(), max_batch, handler).await
}

async fn run_with(
    schema: &str,
    query: &str,
    variables: Map<String, Value>,
    max_batch: usize,
    handler: Box<Handler>,
) -> (Value, Log) {
    let schema = Arc::new(Supergraph::parse(schema).expect("schema"));
    let fetcher = Arc::new(FakeFetcher {
        handler,
        log: Mutex::new(Vec::new()),
    });
    let executor = Executor::new(Arc::clone(&schema), fetcher.clone(), max_batch);
    let doc = async_graphql::parser::parse_query(query).expect("parses");
    let plan = tessera::plan::plan(&schema, &doc, None).expect("plans");
    let vars = tessera::exec::coerce_variables(&schema, &plan.variables, &variables).expect("vars");
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

/// A lookup answered with the wrong shape is an invalid answer, at the
/// list it fed: read as nothing, it told the client there was nothing
/// (not a list, the field missing), or gave one key's entity to another
/// (an object without its key, placed by position).
#[tokio::test]
async fn a_lookup_answered_in_the_wrong_shape_is_an_error_not_nothing() {
    let shapes: [fn(&[Value]) -> Value; 3] = [
        |_| json!({ "data": { "membersByIds": { "_key": "x", "name": "not a list" } } }),
        |_| json!({ "data": {} }),
        |keys| {
            let items: Vec<Value> = keys.iter().map(|_| json!({ "name": "whose?" })).collect();
            json!({ "data": { "membersByIds": items } })
        },
    ];
    for shape in shapes {
        let (body, _) = run(
            "{ contracts { id member { name } } }",
            500,
            contracts_then_members(shape),
        )
        .await;
        let rows = body["data"]["contracts"].as_array().expect("rows");
        assert!(rows.iter().all(|r| r["member"].is_null()), "{body}");
        let errors = body["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), 1, "{body}");
        assert_eq!(
            errors[0]["extensions"]["code"], "SUBGRAPH_INVALID_RESPONSE",
            "{body}"
        );
        assert_eq!(errors[0]["path"], json!(["contracts"]), "{body}");
    }
    // Null, with no error, is no entity: a valid answer.
    let (body, _) = run(
        "{ contracts { id member { name } } }",
        500,
        contracts_then_members(|_| json!({ "data": { "membersByIds": null } })),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
}

/// An error about a whole lookup keeps the service's own code, as a root
/// field's does (it was always `DOWNSTREAM_SERVICE_ERROR`).
#[tokio::test]
async fn a_lookups_whole_failure_keeps_the_services_code() {
    let handler = contracts_then_members(
        |_| json!({ "data": { "membersByIds": null }, "errors": [{ "message": "database is down", "extensions": { "code": "DB_DOWN" } }] }),
    );
    let (body, _) = run("{ contracts { id member { name } } }", 500, handler).await;
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["extensions"]["code"], "DB_DOWN", "{body}");
    assert_eq!(errors[0]["extensions"]["subgraph"], "members", "{body}");
    assert_eq!(errors[0]["message"], "database is down", "{body}");
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
    let paths = error_paths(&body);
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
async fn an_item_error_under_a_field_filled_from_another_service_is_at_that_field() {
    // `Post.authorName` is `@from(path: "author.name")`: the member's `name`.
    let handler: Box<Handler> = Box::new(|subgraph, _query, vars| match subgraph {
        "posts" => json!({ "data": { "posts": [
            { "id": 1, "_k_authorId": 10 }, { "id": 2, "_k_authorId": 11 }
        ] } }),
        "members" => {
            let keys = vars["_keys"].as_array().expect("keys");
            let bad = keys
                .iter()
                .position(|k| *k == json!(relay(10)))
                .expect("member 10 asked");
            let items: Vec<Value> = keys
                .iter()
                .map(|k| json!({ "_key": k, "name": if *k == json!(relay(10)) { Value::Null } else { json!("ok") } }))
                .collect();
            json!({ "data": { "membersByIds": items },
                    "errors": [{ "message": "name is private", "path": ["membersByIds", bad, "name"] }] })
        }
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, _) = run("{ posts(first: 2) { id authorName } }", 500, handler).await;
    assert_eq!(body["data"]["posts"][0]["authorName"], Value::Null, "{body}");
    assert_eq!(body["data"]["posts"][1]["authorName"], "ok", "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], json!(["posts", 0, "authorName"]), "{body}");
    assert_eq!(errors[0]["extensions"]["subgraph"], "members", "{body}");
}

/// An error inside an item of a `@merge` list is at the item's place in
/// the merged, sorted list: it was filed at the item's place in its own
/// service's answer (another item's path), and a second error was made up
/// at the real one.
#[tokio::test]
async fn an_item_error_in_a_merged_list_is_at_its_place_after_sorting() {
    let handler: Box<Handler> = Box::new(|subgraph, _query, vars| {
        let key = vars.get("_keys").map(|k| k[0].clone());
        match subgraph {
            "members" => json!({ "data": { "member": { "_k_id": relay(3) } } }),
            "posts" => json!({
                "data": { "posts": [
                    { "_key": key, "_order": "2023-01-01T00:00:00Z", "title": "old post", "likeCount": null }
                ] },
                "errors": [{ "message": "likes are private", "path": ["posts", 0, "likeCount"] }]
            }),
            "products" => json!({ "data": { "products": [
                { "_key": key, "_order": "2024-02-01T00:00:00Z", "title": "newest", "price": "2.00" },
                { "_key": key, "_order": "2024-01-01T00:00:00Z", "title": "newer", "price": "1.00" }
            ] } }),
            other => panic!("unexpected subgraph {other}"),
        }
    });
    let query = "{ member(id: \"3\") { activity { __typename ... on Post { title likeCount } ... on Product { title price } } } }";
    let (body, _) = run(query, 500, handler).await;
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(
        errors[0]["path"],
        json!(["member", "activity", 2, "likeCount"]),
        "{body}"
    );
    assert_eq!(errors[0]["message"], "likes are private", "{body}");
    assert_eq!(errors[0]["extensions"]["subgraph"], "posts", "{body}");
    // `likeCount: Int!` null: the item, then the nullable list, is null.
    assert_eq!(body["data"]["member"]["activity"], Value::Null, "{body}");
}

#[tokio::test]
async fn an_int_sent_as_a_whole_float_is_an_int_and_a_fractional_id_is_refused() {
    let handler: Box<Handler> =
        Box::new(|_, _, _| json!({ "data": { "staffCount": 3.0, "staff": { "id": 1.5 } } }));
    let (body, _) = run("{ staffCount staff(id: 1) { id } }", 500, handler).await;
    assert_eq!(body["data"]["staffCount"], json!(3), "{body}");
    assert!(body["data"]["staffCount"].is_i64(), "written 3, not 3.0: {body}");
    assert_eq!(body["data"]["staff"], Value::Null, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["staff", "id"]), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "SUBGRAPH_INVALID_RESPONSE",
        "{body}"
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

/// Part of a batch came back, with an error that names no item: the keys
/// that got nothing are the failed ones (null, with the error), and those
/// that came back carry no error; they were silently null and the error was
/// filed on the members that were fine.
#[tokio::test]
async fn a_partial_batch_with_an_error_naming_no_item_fails_the_keys_it_lacks() {
    let handler = contracts_then_members(|keys| {
        let items: Vec<Value> = keys
            .iter()
            .filter(|k| **k != json!(relay(11)))
            .map(|k| json!({ "_key": k, "name": "ok" }))
            .collect();
        json!({ "data": { "membersByIds": items }, "errors": [{ "message": "shard 2 unavailable" }] })
    });
    let (body, _) = run("{ contracts { id member { name } } }", 500, handler).await;
    let rows = body["data"]["contracts"].as_array().expect("rows");
    assert_eq!(rows[0]["member"]["name"], "ok", "{body}");
    assert_eq!(rows[1]["member"], Value::Null, "{body}");
    assert_eq!(rows[3]["member"]["name"], "ok", "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["message"], "shard 2 unavailable", "{body}");
    assert_eq!(errors[0]["path"], json!(["contracts"]), "{body}");
}

/// A paged join (`Member.posts`, pages of 1,000 rows) reads on past a page
/// with an error about one row: the rows of later pages belong to other
/// keys, which it silently left empty.
#[tokio::test]
async fn a_paged_join_reads_past_a_row_error() {
    let handler: Box<Handler> = Box::new(|subgraph, _query, vars| match subgraph {
        "contracts" => json!({ "data": { "contracts": [ { "_k_member_id": 10 }, { "_k_member_id": 11 } ] } }),
        "members" => {
            let items: Vec<Value> = vars["_keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| json!({ "_key": k, "_k_id": k }))
                .collect();
            json!({ "data": { "membersByIds": items } })
        }
        "posts" => {
            // Keys go out sorted: member 10's first.
            let keys = vars["_keys"].as_array().expect("keys");
            let (first, second) = (keys[0].clone(), keys[1].clone());
            match vars["_offset"].as_u64() {
                // A full first page: member 10's posts, the first one failing.
                Some(0) => {
                    let rows: Vec<Value> = (0..1000)
                        .map(|i| json!({ "_key": first, "title": if i == 0 { Value::Null } else { json!("p") } }))
                        .collect();
                    json!({ "data": { "posts": rows },
                            "errors": [{ "message": "title withheld", "path": ["posts", 0, "title"] }] })
                }
                _ => json!({ "data": { "posts": [ { "_key": second, "title": "later" } ] } }),
            }
        }
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, log) = run("{ contracts { member { posts { title } } } }", 500, handler).await;
    assert_eq!(
        log.iter().filter(|(s, _, _)| s == "posts").count(),
        2,
        "two pages"
    );
    let rows = body["data"]["contracts"].as_array().expect("rows");
    // Member 10's list holds the failed (non-null) title: null, with the error.
    assert_eq!(rows[0]["member"]["posts"], Value::Null, "{body}");
    assert_eq!(
        rows[1]["member"]["posts"],
        json!([{ "title": "later" }]),
        "{body}"
    );
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(
        errors[0]["path"],
        json!(["contracts", 0, "member", "posts", 0, "title"]),
        "{body}"
    );
}

/// A subgraph's error at a key the gateway asked for itself
/// (`_k_member_id`) is at the object it was read for, not at a field the
/// client never selected.
#[tokio::test]
async fn an_error_at_an_internal_key_is_at_the_clients_object() {
    let handler: Box<Handler> = Box::new(|subgraph, _query, _| match subgraph {
        "contracts" => json!({
            "data": { "contracts": [ { "id": 1, "_k_member_id": null }, { "id": 2, "_k_member_id": 10 } ] },
            "errors": [{ "message": "member_id unreadable", "path": ["contracts", 0, "_k_member_id"] }]
        }),
        "members" => json!({ "data": { "membersByIds": [ { "_key": relay(10), "name": "ok" } ] } }),
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, _) = run("{ contracts { id member { name } } }", 500, handler).await;
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], json!(["contracts", 0]), "{body}");
    assert_eq!(body["data"]["contracts"][0]["member"], Value::Null, "{body}");
    assert_eq!(body["data"]["contracts"][1]["member"]["name"], "ok", "{body}");
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

/// Two types one service looks up by alias (`staff(id:)`, `desk(id:)`),
/// with the same selection: each has its own loader, where they shared one
/// (an alias lookup's document is only its header) and key 3 of one was
/// answered from the other's cache.
#[tokio::test]
async fn two_alias_lookups_of_one_service_keep_their_own_keys() {
    const SCHEMA: &str = r#"
type Query {
  tickets: [Ticket!] @delegate(subgraph: "tickets")
}
type Ticket @owner(subgraph: "tickets") {
  id: ID!
  staffId: ID!
  deskId: ID!
  staff: Staff @ref(key: "staffId")
  desk: Desk @ref(key: "deskId")
}
type Staff @owner(subgraph: "office") @lookup(field: "staff", arg: "id", argType: "Int!", strategy: ALIAS) {
  id: ID!
  name: String!
}
type Desk @owner(subgraph: "office") @lookup(field: "desk", arg: "id", argType: "Int!", strategy: ALIAS) {
  id: ID!
  name: String!
}
"#;
    let handler: Box<Handler> = Box::new(|subgraph, query, _| match subgraph {
        "tickets" => json!({ "data": { "tickets": [ { "id": "1", "_k_staffId": "3", "_k_deskId": "3" } ] } }),
        "office" => {
            let field = if query.contains("desk(") { "desk" } else { "staff" };
            json!({ "data": { "_0": { "_key": "3", "name": format!("{field} 3") } } })
        }
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, log) = run_on(
        SCHEMA,
        "{ tickets { staff { name } desk { name } } }",
        500,
        handler,
    )
    .await;
    assert_eq!(
        body["data"]["tickets"][0],
        json!({ "staff": { "name": "staff 3" }, "desk": { "name": "desk 3" } }),
        "{body}"
    );
    assert_eq!(log.iter().filter(|(s, _, _)| s == "office").count(), 2, "{log:?}");
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

const INTERFACE_OBJECTS: &str = concat!(
    include_str!("supergraphs/preamble.graphql"),
    include_str!("supergraphs/interface-objects.graphql")
);

/// The three subgraphs of `supergraphs/interface-objects.graphql`: account 1
/// is an Admin, account 2 a Customer; "billing" and "security" only know
/// them as `Account`. Each answer carries the fields under every name a plan
/// may ask them by (what a plan does not ask is not read).
fn accounts_subgraphs() -> Box<Handler> {
    Box::new(|subgraph, query, vars| {
        let keys = || vars["_keys"].as_array().expect("representations").clone();
        let id_of = |rep: &Value| rep["id"].as_str().expect("an id").to_string();
        let account = |id: &str| json!({ "id": id, "_r_id": id, "_r_Account_id": id });
        match subgraph {
            "billing" if query.contains("topAccounts") => json!({ "data": { "topAccounts": [
                { "plan": "gold", "id": "1", "_r_id": "1", "_r_Account_id": "1" },
                { "plan": "free", "id": "2", "_r_id": "2", "_r_Account_id": "2" }
            ] } }),
            "billing" => {
                let entities: Vec<Value> = keys()
                    .iter()
                    .map(|rep| {
                        assert_eq!(
                            rep["__typename"], "Account",
                            "billing knows no implementations: {rep}"
                        );
                        json!({ "plan": if id_of(rep) == "1" { "gold" } else { "free" } })
                    })
                    .collect();
                json!({ "data": { "_entities": entities } })
            }
            "accounts" if query.contains("admins") => {
                json!({ "data": { "admins": [ account("1") ] } })
            }
            "accounts" => {
                let entities: Vec<Value> = keys()
                    .iter()
                    .map(|rep| {
                        assert_eq!(rep["__typename"], "Account", "{rep}");
                        let id = id_of(rep);
                        let kind = if id == "1" { "Admin" } else { "Customer" };
                        json!({ "_typename": kind, "__typename": kind, "email": format!("{id}@example.com"), "level": 3 })
                    })
                    .collect();
                json!({ "data": { "_entities": entities } })
            }
            other => panic!("unexpected subgraph {other}: {query}"),
        }
    })
}

#[tokio::test]
async fn interface_objects_learn_their_implementation_from_the_interfaces_subgraph() {
    let query = "{ topAccounts { id plan email __typename ... on Admin { level } } }";
    let (body, log) = run_on(INTERFACE_OBJECTS, query, 500, accounts_subgraphs()).await;
    assert_eq!(
        body,
        json!({ "data": { "topAccounts": [
            { "id": "1", "plan": "gold", "email": "1@example.com", "__typename": "Admin", "level": 3 },
            { "id": "2", "plan": "free", "email": "2@example.com", "__typename": "Customer" }
        ] } })
    );
    // One request to each: the implementations' fields and the interface's
    // `email` travel in the same `_entities` request.
    let asked: Vec<&str> = log.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(asked, ["billing", "accounts"], "{log:?}");

    // Fields on the interface that the interface object resolves need no one else.
    let (body, log) = run_on(
        INTERFACE_OBJECTS,
        "{ topAccounts { id plan } }",
        500,
        accounts_subgraphs(),
    )
    .await;
    assert_eq!(
        body["data"]["topAccounts"][1],
        json!({ "id": "2", "plan": "free" })
    );
    assert_eq!(log.len(), 1, "{log:?}");
}

/// A field selected on the interface and again in a fragment on one
/// implementation, under another condition: that implementation gets it by
/// its own selections (it got the interface's, and lost the field).
#[tokio::test]
async fn an_implementations_own_selection_of_an_interface_object_field_counts() {
    let query = "query($c: Boolean!) { topAccounts { id plan @skip(if: $c) ... on Customer { plan } } }";
    for (c, admin) in [
        (true, json!({ "id": "1" })),
        (false, json!({ "id": "1", "plan": "gold" })),
    ] {
        let mut variables = Map::new();
        variables.insert("c".into(), json!(c));
        let (body, _) = run_with(INTERFACE_OBJECTS, query, variables, 500, accounts_subgraphs()).await;
        assert_eq!(
            body,
            json!({ "data": { "topAccounts": [admin, { "id": "2", "plan": "free" }] } }),
            "c={c}"
        );
    }
}

#[tokio::test]
async fn an_implementation_reaches_interface_object_fields_as_its_interface() {
    let (body, log) = run_on(
        INTERFACE_OBJECTS,
        "{ admins { id plan } }",
        500,
        accounts_subgraphs(),
    )
    .await;
    assert_eq!(
        body,
        json!({ "data": { "admins": [ { "id": "1", "plan": "gold" } ] } })
    );
    let (subgraph, document, variables) = &log[1];
    assert_eq!(subgraph, "billing");
    assert!(document.contains("...on Account{plan}"), "{document}");
    assert_eq!(
        variables["_keys"],
        json!([{ "__typename": "Account", "id": "1" }])
    );
}

#[test]
fn an_interface_object_field_out_of_reach_is_refused_when_planned() {
    // "security" has `lastLogin` but cannot resolve an account by its key.
    let schema = Supergraph::parse(INTERFACE_OBJECTS).expect("schema");
    let doc = async_graphql::parser::parse_query("{ admins { lastLogin } }").expect("parses");
    let error = tessera::plan::plan(&schema, &doc, None).expect_err("no route to security");
    assert!(error.to_string().contains("lastLogin"), "{error}");
}

/// `products` is answered by two subgraphs, each for the fields it has;
/// `Product` has no key, so nothing joins the halves but their place.
const SPLIT_ROOT: &str = concat!(
    include_str!("supergraphs/preamble.graphql"),
    r#"
enum join__Graph {
  CATALOG @join__graph(name: "catalog", url: "http://127.0.0.1:1/catalog")
  PRICING @join__graph(name: "pricing", url: "http://127.0.0.1:1/pricing")
}
type Product @join__type(graph: CATALOG) @join__type(graph: PRICING) {
  id: ID!
  name: String @join__field(graph: CATALOG)
  price: Int @join__field(graph: PRICING)
}
type Query @join__type(graph: CATALOG) @join__type(graph: PRICING) {
  products: [Product!]!
}
"#
);

#[tokio::test]
async fn a_root_field_two_subgraphs_share_is_answered_by_both_at_the_same_places() {
    let handler: Box<Handler> = Box::new(|subgraph, query, _| match subgraph {
        "catalog" => {
            assert!(!query.contains("price"), "{query}");
            json!({ "data": { "products": [ { "id": "1", "name": "kettle" }, { "id": "2", "name": "toaster" } ] } })
        }
        "pricing" => {
            assert!(!query.contains("name"), "{query}");
            json!({ "data": { "products": [ { "price": 30 }, { "price": 45 } ] } })
        }
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, log) = run_on(SPLIT_ROOT, "{ products { price id name } }", 500, handler).await;
    assert_eq!(
        body,
        json!({ "data": { "products": [
            { "price": 30, "id": "1", "name": "kettle" },
            { "price": 45, "id": "2", "name": "toaster" }
        ] } })
    );
    assert_eq!(log.len(), 2, "{log:?}");
}

#[tokio::test]
async fn an_interface_object_whose_implementation_cannot_be_learnt_is_an_error_not_a_guess() {
    // "accounts" fails: the objects' types are unknown, so the items are null
    // (the list's items are non-null: the list goes), with one error.
    let failing: Box<Handler> = Box::new(|subgraph, query, vars| match subgraph {
        "accounts" => json!({ "errors": [ { "message": "accounts is down" } ] }),
        _ => accounts_subgraphs()(subgraph, query, vars),
    });
    let query = "{ topAccounts { id __typename ... on Admin { level } } }";
    let (body, _) = run_on(INTERFACE_OBJECTS, query, 500, failing).await;
    assert_eq!(body["data"], Value::Null, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("accounts is down")),
        "{body}"
    );

    // "accounts" answers a type the supergraph does not have.
    let garbage: Box<Handler> = Box::new(|subgraph, query, vars| match subgraph {
        "accounts" => json!({ "data": { "_entities": [ { "_typename": "Robot" }, null ] } }),
        _ => accounts_subgraphs()(subgraph, query, vars),
    });
    let (body, _) = run_on(INTERFACE_OBJECTS, query, 500, garbage).await;
    assert_eq!(body["data"], Value::Null, "{body}");
    assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()), "{body}");
}

#[tokio::test]
async fn a_split_root_field_with_one_subgraph_down_says_so() {
    let handler: Box<Handler> = Box::new(|subgraph, _, _| match subgraph {
        "catalog" => json!({ "data": { "products": [ { "id": "1", "name": "kettle" } ] } }),
        "pricing" => json!({ "errors": [ { "message": "pricing is down" } ] }),
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, _) = run_on(SPLIT_ROOT, "{ products { id name price } }", 500, handler).await;
    assert_eq!(body["data"]["products"][0]["name"], "kettle", "{body}");
    assert_eq!(body["data"]["products"][0]["price"], Value::Null, "{body}");
    let errors = body["errors"].as_array().expect("an error for the missing half");
    assert!(errors.iter().any(|e| e["message"] == "pricing is down"), "{body}");

    // An answer that is not GraphQL, or none at all: one error for the
    // fetch, at the field it fed.
    for broken in [json!("garbage"), Value::Null] {
        let handler: Box<Handler> = Box::new(move |subgraph, _, _| match subgraph {
            "catalog" => json!({ "data": { "products": [ { "id": "1", "name": "kettle" } ] } }),
            _ => broken.clone(),
        });
        let (body, _) = run_on(SPLIT_ROOT, "{ products { id name price } }", 500, handler).await;
        assert_eq!(body["data"]["products"][0]["name"], "kettle", "{body}");
        let errors = body["errors"].as_array().expect("an error for the missing half");
        assert_eq!(errors.len(), 1, "{body}");
        assert_eq!(errors[0]["path"], json!(["products"]), "{body}");
        assert_eq!(errors[0]["extensions"]["subgraph"], "pricing", "{body}");
    }
}

/// One field selected twice under one parent (`member { name } m: member {
/// email }`) is one fetch; its errors are still each field's own: an error
/// in `email` is `m`'s only, and a failed fetch is reported at both places.
#[tokio::test]
async fn errors_of_a_fetch_shared_by_sibling_fields_are_each_fields_own() {
    let query = r#"{ contract(id: "1") { member { name } m: member { email } } }"#;
    let contracts = || json!({"data": {"contract": {"_k_member_id": 7}}});
    let (body, log) = run(
        query,
        100,
        Box::new(move |subgraph, _, _| match subgraph {
            "contracts" => contracts(),
            _ => json!({
                "data": {"membersByIds": [{"_key": "TWVtYmVyTm9kZTo3", "name": "Ann", "email": null}]},
                "errors": [{"message": "email hidden", "path": ["membersByIds", 0, "email"]}]
            }),
        }),
    )
    .await;
    assert_eq!(
        log.iter().filter(|(s, _, _)| s == "members").count(),
        1,
        "{log:?}"
    );
    assert_eq!(body["data"]["contract"]["member"]["name"], "Ann", "{body}");
    let paths = error_paths(&body);
    assert_eq!(paths, vec![&json!(["contract", "m", "email"])], "{body}");

    let (body, _) = run(
        query,
        100,
        Box::new(move |subgraph, _, _| match subgraph {
            "contracts" => contracts(),
            _ => Value::Null,
        }),
    )
    .await;
    let mut paths: Vec<String> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].to_string())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![r#"["contract","m"]"#, r#"["contract","member"]"#],
        "{body}"
    );
}

/// An unset variable given to two arguments is each argument's own default
/// (spec 6.4.1): they shared one subgraph variable, and the first one's default.
#[tokio::test]
async fn an_unset_variable_takes_each_arguments_own_default() {
    let (_, log) = run(
        "query($n: Int) { staffList(offset: $n, limit: $n) { id } }",
        100,
        Box::new(|_, _, _| json!({"data": {"allStaff": []}})),
    )
    .await;
    let (_, document, variables) = &log[0];
    let sent: Vec<&Value> = variables.values().collect();
    assert!(
        sent.contains(&&json!(0)) && sent.contains(&&json!(50)),
        "{document} {variables:?}"
    );
}

const NESTED: &str = concat!(
    include_str!("supergraphs/preamble.graphql"),
    include_str!("supergraphs/nested.graphql")
);

/// The three subgraphs of `supergraphs/nested.graphql`: product 1 in
/// category c1 with tags a and b, product 2 with no category and no tags.
/// `None` for "stats": it cannot be reached.
fn nested_subgraphs(stats_up: bool) -> Box<Handler> {
    Box::new(move |subgraph, query, vars| {
        let keys = || vars["_keys"].as_array().expect("representations").clone();
        match subgraph {
            "shop" => json!({ "data": { "products": [
                { "id": "1", "category": { "slug": "tools" }, "tags": [ { "label": "a" }, { "label": "b" } ] },
                { "id": "2", "category": null, "tags": [] }
            ] } }),
            "stats" if !stats_up => Value::Null,
            "stats" => {
                assert!(query.contains("...on Product{"), "{query}");
                let entities: Vec<Value> = keys()
                    .iter()
                    .map(|rep| match rep["id"].as_str() {
                        Some("1") => json!({
                            "category": { "id": "c1", "_r_id": "c1", "details": { "count": 3 } },
                            "tags": [ { "score": 5 }, { "score": null } ]
                        }),
                        _ => json!({ "category": null, "tags": [] }),
                    })
                    .collect();
                json!({ "data": { "_entities": entities } })
            }
            "catalog" => {
                assert_eq!(keys(), [json!({ "__typename": "Category", "id": "c1" })]);
                json!({ "data": { "_entities": [ { "name": "Tools" } ] } })
            }
            other => panic!("unexpected subgraph {other}: {query}"),
        }
    })
}

#[tokio::test]
async fn a_value_objects_fields_come_through_the_entity_above_from_the_subgraph_that_has_them() {
    let query = "{ products { id category { slug id name details { count } } tags { label score } } }";
    let (body, log) = run_on(NESTED, query, 500, nested_subgraphs(true)).await;
    assert_eq!(
        body,
        json!({ "data": { "products": [
            { "id": "1",
              "category": { "slug": "tools", "id": "c1", "name": "Tools", "details": { "count": 3 } },
              "tags": [ { "label": "a", "score": 5 }, { "label": "b", "score": null } ] },
            { "id": "2", "category": null, "tags": [] }
        ] } })
    );
    // One request each: "stats" is asked for the category's and the tags'
    // fields in one `_entities` fetch of the products; "catalog" by the
    // category ids "stats" gave.
    let asked: Vec<&str> = log.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(asked, ["shop", "stats", "catalog"], "{log:?}");
    let stats = &log[1];
    assert!(stats.1.contains("tags{score}"), "{}", stats.1);
    assert_eq!(
        stats.2["_keys"],
        json!([{ "__typename": "Product", "id": "1" }, { "__typename": "Product", "id": "2" }])
    );
}

#[tokio::test]
async fn a_value_objects_fields_fail_alone_when_the_subgraph_above_is_down() {
    let query = "{ products { id category { slug details { count } } tags { label score } } }";
    let (body, _) = run_on(NESTED, query, 500, nested_subgraphs(false)).await;
    assert_eq!(
        body["data"],
        json!({ "products": [
            { "id": "1", "category": { "slug": "tools", "details": null },
              "tags": [ { "label": "a", "score": null }, { "label": "b", "score": null } ] },
            { "id": "2", "category": null, "tags": [] }
        ] }),
        "{body}"
    );
    let errors = body["errors"].as_array().expect("errors");
    assert!(
        errors.iter().all(|e| e["extensions"]["subgraph"] == "stats"),
        "{body}"
    );
}

#[test]
fn a_value_objects_field_no_entity_above_can_ask_for_is_refused_when_planned() {
    // Without a key of `Product` in "stats", nothing leads to its `details`.
    let sdl = NESTED.replace(
        r#"@join__type(graph: STATS, key: "id") {"#,
        "@join__type(graph: STATS) {",
    );
    assert_ne!(sdl, NESTED);
    let schema = Supergraph::parse(&sdl).expect("schema");
    let doc = async_graphql::parser::parse_query("{ products { category { details { count } } } }")
        .expect("parses");
    let error = tessera::plan::plan(&schema, &doc, None).expect_err("no entity leads to stats");
    assert!(error.to_string().contains("Category.details"), "{error}");
}

const ASSEMBLED: &str = concat!(
    include_str!("supergraphs/preamble.graphql"),
    include_str!("supergraphs/assembled.graphql")
);

/// The two subgraphs of `supergraphs/assembled.graphql`: post p1 by u1
/// (one year of experience), p2 by u2 (ten). Each representation is
/// checked for what the field requires. `feed_authors_up: false`: "feed"
/// fails its `Author` entities.
fn assembled_subgraphs(feed_authors_up: bool) -> Box<Handler> {
    Box::new(move |subgraph, query, vars| {
        let keys = || vars["_keys"].as_array().expect("representations").clone();
        let entities = |f: &dyn Fn(&Value) -> Value| json!({ "data": { "_entities": keys().iter().map(f).collect::<Vec<_>>() } });
        let author_of = |post: &Value| if post["id"] == "p1" { "u1" } else { "u2" };
        match subgraph {
            "feed" if query.contains("feed{") => json!({ "data": { "feed": [
                { "id": "p1", "_r_id": "p1", "_q1_score": 7 },
                { "id": "p2", "_r_id": "p2", "_q1_score": 9 }
            ] } }),
            "blog" if query.contains(":comments(limit:") => {
                // Comments c1… under the alias the plan asked them by.
                let alias = query
                    .split(":comments(")
                    .next()
                    .and_then(|head| head.rsplit(['{', ' ']).next())
                    .expect("an alias")
                    .to_string();
                let limit = vars["_a0"].as_i64().expect("a limit");
                entities(&|_| {
                    let comments: Vec<Value> = (1..=limit)
                        .map(|n| json!({ "id": format!("c{n}"), "_r_id": format!("c{n}") }))
                        .collect();
                    json!({ alias.clone(): comments })
                })
            }
            "feed" if query.contains("authorId") => entities(&|comment| {
                let id = comment["id"].as_str().expect("a comment id");
                json!({ "authorId": id.replace('c', "u") })
            }),
            "blog" if query.contains("ommenter") => entities(&|post| {
                let authors: Vec<&str> = post["comments"]
                    .as_array()
                    .expect("the comments in the representation")
                    .iter()
                    .map(|c| c["authorId"].as_str().expect("each comment's author"))
                    .collect();
                match query.contains("firstCommenter") {
                    true => json!({ "firstCommenter": authors.join(",") }),
                    false => json!({ "commenters": authors.join(",") }),
                }
            }),
            "blog" if query.contains("slug") => entities(
                &|post| json!({ alias_of(query, "slug"): format!("post-{}", post["id"].as_str().expect("an id")) }),
            ),
            "stats" => entities(&|post| {
                assert_eq!(post.as_object().map(|o| o.len()), Some(3), "{post}");
                let slug = post["slug"].as_str().expect("the slug in the representation");
                let score = post["score"].as_i64().expect("the score in the representation");
                json!({ "views": if slug == "post-p1" { score * 100 } else { score } })
            }),
            "feed" if query.contains("yearsOfExperience") && !feed_authors_up => {
                json!({ "data": null, "errors": [ { "message": "authors are down" } ] })
            }
            "feed" if query.contains("yearsOfExperience") => entities(&|author| {
                assert_eq!(author["__typename"], "Author", "{author}");
                json!({ "yearsOfExperience": if author["id"] == "u1" { 1 } else { 10 } })
            }),
            "feed" if query.contains("byExpert") => entities(&|post| {
                let novice = post["byNovice"]
                    .as_bool()
                    .expect("byNovice in the representation");
                json!({ "byExpert": !novice })
            }),
            "blog" if query.contains("author{") && query.contains("byNovice") => {
                panic!("`byNovice` asked before its requirement was fetched: {query}")
            }
            "blog" if query.contains("author{") => entities(&|post| {
                let id = author_of(post);
                json!({ "_r_id": post["id"], alias_of(query, "author"): { "id": id, "_r_id": id } })
            }),
            "blog" if query.contains("byNovice") => entities(&|post| {
                let years = post["author"]["yearsOfExperience"]
                    .as_i64()
                    .expect("the author's experience in the representation");
                let key = match query.contains(":byNovice") {
                    true => alias_of(query, "byNovice"),
                    false => "byNovice".to_string(),
                };
                json!({ "_r_id": post["id"], key: years < 5 })
            }),
            other => panic!("unexpected request to {other}: {query}"),
        }
    })
}

#[tokio::test]
async fn a_requirement_no_one_subgraph_gives_is_fetched_first_and_sent_assembled() {
    let (body, log) = run_on(
        ASSEMBLED,
        "{ feed { id byNovice } }",
        500,
        assembled_subgraphs(true),
    )
    .await;
    assert_eq!(
        body,
        json!({ "data": { "feed": [ { "id": "p1", "byNovice": true }, { "id": "p2", "byNovice": false } ] } })
    );
    // The authors from "blog", their experience from "feed", then `byNovice`
    // from "blog" with both in each representation.
    let asked: Vec<&str> = log.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(asked, ["feed", "blog", "feed", "blog"], "{log:#?}");
    assert_eq!(
        log[3].2["_keys"],
        json!([
            { "__typename": "Post", "id": "p1", "author": { "yearsOfExperience": 1 } },
            { "__typename": "Post", "id": "p2", "author": { "yearsOfExperience": 10 } }
        ])
    );

    // A requirement that is itself assembled.
    let (body, log) = run_on(ASSEMBLED, "{ feed { byExpert } }", 500, assembled_subgraphs(true)).await;
    assert_eq!(
        body,
        json!({ "data": { "feed": [ { "byExpert": false }, { "byExpert": true } ] } })
    );
    assert_eq!(log.len(), 5, "{log:?}");
}

#[tokio::test]
async fn a_key_no_one_subgraph_gives_is_fetched_first_and_sent_assembled() {
    let (body, log) = run_on(ASSEMBLED, "{ feed { id views } }", 500, assembled_subgraphs(true)).await;
    assert_eq!(
        body,
        json!({ "data": { "feed": [ { "id": "p1", "views": 700 }, { "id": "p2", "views": 9 } ] } })
    );
    // The slug from "blog", the score with the posts, then "stats" by both.
    let asked: Vec<&str> = log.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(asked, ["feed", "blog", "stats"], "{log:?}");
    assert_eq!(
        log[2].2["_keys"],
        json!([
            { "__typename": "Post", "slug": "post-p1", "score": 7 },
            { "__typename": "Post", "slug": "post-p2", "score": 9 }
        ])
    );
}

#[tokio::test]
async fn two_requirements_of_one_field_with_other_arguments_are_assembled_apart() {
    let query = "{ feed { firstCommenter commenters } }";
    let (body, _) = run_on(ASSEMBLED, query, 500, assembled_subgraphs(true)).await;
    let post = json!({ "firstCommenter": "u1", "commenters": "u1,u2,u3" });
    assert_eq!(body, json!({ "data": { "feed": [post.clone(), post] } }));
}

#[tokio::test]
async fn a_requirement_that_cannot_be_fetched_fails_the_field_that_needs_it() {
    let (body, log) = run_on(
        ASSEMBLED,
        "{ feed { id byNovice } }",
        500,
        assembled_subgraphs(false),
    )
    .await;
    // `byNovice` is non-null: each post goes, the list stays; the error
    // says why (the requirement's failure), once, at the list.
    assert_eq!(body["data"], json!({ "feed": [null, null] }), "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["message"] == "authors are down"),
        "{body}"
    );
    assert!(
        errors.iter().all(|e| !e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Cannot return null")),
        "{body}"
    );
    // No representation could be assembled: "blog" is not asked for `byNovice`.
    assert_eq!(log.len(), 3, "{log:?}");
}
/// A supergraph of "feed" (whose `feed` lists the posts), "blog" and
/// `third`, with the types `types`.
fn feed_supergraph(third: &str, types: &str) -> String {
    let graph = third.to_uppercase();
    format!(
        r#"{preamble}
enum join__Graph {{
  FEED @join__graph(name: "feed", url: "http://127.0.0.1:1/feed")
  BLOG @join__graph(name: "blog", url: "http://127.0.0.1:1/blog")
  {graph} @join__graph(name: "{third}", url: "http://127.0.0.1:1/{third}")
}}
type Query @join__type(graph: FEED) @join__type(graph: BLOG) @join__type(graph: {graph}) {{
  feed: [Post] @join__field(graph: FEED)
}}
{types}"#,
        preamble = include_str!("supergraphs/preamble.graphql"),
    )
}

/// "stats" knows posts by `slug meta { a }` and its `views` requires `meta { b }`: the slug from "blog", the meta from "feed".
const KEY_AND_REQUIREMENT: &str = r#"
type Post @join__type(graph: FEED, key: "id") @join__type(graph: BLOG, key: "id") @join__type(graph: STATS, key: "slug meta { a }") {
  id: ID! @join__field(graph: FEED) @join__field(graph: BLOG)
  slug: String! @join__field(graph: BLOG) @join__field(graph: STATS)
  meta: Meta @join__field(graph: FEED) @join__field(graph: STATS)
  views: String @join__field(graph: STATS, requires: "meta { b }")
}
type Meta @join__type(graph: FEED) @join__type(graph: STATS) {
  a: String
  b: String @join__field(graph: FEED) @join__field(graph: STATS, external: true)
}
"#;

/// "blog"'s `x` requires `meta { score }`: `meta` is "feed"'s, `score` only "stats"' (where `Meta` has no key).
const VALUE_OBJECT_REQUIREMENT: &str = r#"
type Post @join__type(graph: FEED, key: "id") @join__type(graph: BLOG, key: "id") @join__type(graph: STATS, key: "id") {
  id: ID!
  meta: Meta @join__field(graph: FEED) @join__field(graph: STATS) @join__field(graph: BLOG, external: true)
  x: String @join__field(graph: BLOG, requires: "meta { score }")
}
type Meta @join__type(graph: FEED) @join__type(graph: STATS) @join__type(graph: BLOG) {
  label: String @join__field(graph: FEED)
  score: Int @join__field(graph: STATS) @join__field(graph: BLOG, external: true)
}
"#;

/// "stats"' `x` requires `media { ... on Book { isbn } ... on Movie { title } }`: the media from "blog", a book's `isbn` from "feed".
const ABSTRACT_REQUIREMENT: &str = r#"
union Media @join__type(graph: BLOG) @join__type(graph: STATS) @join__unionMember(graph: BLOG, member: "Book") @join__unionMember(graph: BLOG, member: "Movie") @join__unionMember(graph: STATS, member: "Book") @join__unionMember(graph: STATS, member: "Movie") = Book | Movie
type Post @join__type(graph: FEED, key: "id") @join__type(graph: BLOG, key: "id") @join__type(graph: STATS, key: "id") {
  id: ID!
  media: Media @join__field(graph: BLOG) @join__field(graph: STATS, external: true)
  x: String @join__field(graph: STATS, requires: "media { ... on Book { isbn } ... on Movie { title } }")
}
type Book @join__type(graph: FEED, key: "id") @join__type(graph: BLOG, key: "id") @join__type(graph: STATS, key: "id") {
  id: ID!
  isbn: String @join__field(graph: FEED) @join__field(graph: STATS, external: true)
}
type Movie @join__type(graph: BLOG, key: "id") @join__type(graph: STATS, key: "id") {
  id: ID!
  title: String @join__field(graph: BLOG) @join__field(graph: STATS, external: true)
}
"#;

/// `Post.f` requires the comments' `authorId`, which requires the comment's post's `f`.
const CYCLIC_REQUIREMENTS: &str = r#"
type Post @join__type(graph: FEED, key: "id") @join__type(graph: BLOG, key: "id") @join__type(graph: AUTH, key: "id") {
  id: ID!
  comments: [Comment!]! @join__field(graph: FEED) @join__field(graph: BLOG, external: true)
  f: String @join__field(graph: BLOG, requires: "comments { authorId }") @join__field(graph: AUTH, external: true)
}
type Comment @join__type(graph: FEED, key: "id") @join__type(graph: BLOG, key: "id") @join__type(graph: AUTH, key: "id") {
  id: ID!
  post: Post @join__field(graph: FEED) @join__field(graph: AUTH, external: true)
  authorId: ID @join__field(graph: AUTH, requires: "post { f }") @join__field(graph: BLOG, external: true)
}
"#;

/// `x` and `y` require the author's posts, `first: 1` and `first: 2`, and the `tag` another subgraph has.
const NESTED_ARGUMENT_REQUIREMENTS: &str = r#"
type Post @join__type(graph: FEED, key: "id") @join__type(graph: BLOG, key: "id") @join__type(graph: STATS, key: "id") {
  id: ID!
  author: Author @join__field(graph: FEED) @join__field(graph: STATS, external: true)
  tag: String @join__field(graph: BLOG) @join__field(graph: STATS, external: true)
  x: String @join__field(graph: STATS, requires: "author { posts(first: 1) { id } } tag")
  y: String @join__field(graph: STATS, requires: "author { posts(first: 2) { id } } tag")
}
type Author @join__type(graph: FEED) @join__type(graph: STATS) {
  posts(first: Int!): [Post!]! @join__field(graph: FEED) @join__field(graph: STATS, external: true)
}
"#;

/// The alias under which `query` asks for `field` (`_q1_meta` in `_q1_meta:meta{a b}`).
fn alias_of(query: &str, field: &str) -> String {
    let at = query
        .find(&format!(":{field}"))
        .unwrap_or_else(|| panic!("`{field}` under an alias in {query}"));
    let start = query[..at].rfind(['{', ' ']).map_or(0, |i| i + 1);
    query[start..at].to_string()
}

/// Answers every representation with `entity(representation)`.
fn entities_of(vars: &Map<String, Value>, entity: impl Fn(&Value) -> Value) -> Value {
    let keys = vars["_keys"].as_array().expect("representations");
    json!({ "data": { "_entities": keys.iter().map(entity).collect::<Vec<_>>() } })
}

#[tokio::test]
async fn a_key_and_a_requirement_selecting_one_field_send_both_its_selections() {
    let handler: Box<Handler> = Box::new(|subgraph, query, vars| match subgraph {
        "feed" => {
            let meta = alias_of(query, "meta");
            json!({ "data": { "feed": [ { "id": "p1", "_r_id": "p1", meta: { "a": "A", "b": "B" } } ] } })
        }
        "blog" => {
            let slug = alias_of(query, "slug");
            entities_of(
                vars,
                |post| json!({ slug.clone(): format!("slug-{}", post["id"].as_str().unwrap_or("?")) }),
            )
        }
        "stats" => {
            assert_eq!(
                vars["_keys"],
                json!([{ "__typename": "Post", "slug": "slug-p1", "meta": { "a": "A", "b": "B" } }])
            );
            entities_of(vars, |_| json!({ "views": "seen" }))
        }
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, _) = run_on(
        &feed_supergraph("stats", KEY_AND_REQUIREMENT),
        "{ feed { id views } }",
        500,
        handler,
    )
    .await;
    assert_eq!(
        body,
        json!({ "data": { "feed": [ { "id": "p1", "views": "seen" } ] } })
    );
}

#[tokio::test]
async fn a_value_objects_field_in_a_requirement_is_sent_with_its_value() {
    let handler: Box<Handler> = Box::new(|subgraph, query, vars| match subgraph {
        "feed" => {
            let meta = alias_of(query, "meta");
            json!({ "data": { "feed": [ { "id": "p1", "_r_id": "p1", meta: { "__typename": "Meta" } } ] } })
        }
        "stats" => {
            let meta = alias_of(query, "meta");
            entities_of(vars, |_| json!({ meta.clone(): { "score": 42 } }))
        }
        "blog" => {
            assert_eq!(
                vars["_keys"],
                json!([{ "__typename": "Post", "id": "p1", "meta": { "score": 42 } }])
            );
            entities_of(vars, |_| json!({ "x": "scored" }))
        }
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, _) = run_on(
        &feed_supergraph("stats", VALUE_OBJECT_REQUIREMENT),
        "{ feed { id x } }",
        500,
        handler,
    )
    .await;
    assert_eq!(
        body,
        json!({ "data": { "feed": [ { "id": "p1", "x": "scored" } ] } })
    );
}

#[tokio::test]
async fn a_requirement_on_an_abstract_type_says_each_objects_type() {
    let handler: Box<Handler> = Box::new(|subgraph, query, vars| match subgraph {
        "feed" if query.contains("_entities") => entities_of(
            vars,
            |book| json!({ "isbn": format!("isbn-{}", book["id"].as_str().unwrap_or("?")) }),
        ),
        "feed" => {
            json!({ "data": { "feed": [ { "id": "p1", "_r_id": "p1" }, { "id": "p2", "_r_id": "p2" } ] } })
        }
        "blog" => {
            let media = alias_of(query, "media");
            entities_of(vars, |post| match post["id"].as_str() {
                Some("p1") => {
                    json!({ media.clone(): { "_typename": "Book", "_r_Book_id": "b1", "id": "b1" } })
                }
                _ => json!({ media.clone(): { "_typename": "Movie", "title": "T" } }),
            })
        }
        "stats" => {
            assert_eq!(
                vars["_keys"],
                json!([
                    { "__typename": "Post", "id": "p1", "media": { "__typename": "Book", "isbn": "isbn-b1" } },
                    { "__typename": "Post", "id": "p2", "media": { "__typename": "Movie", "title": "T" } }
                ])
            );
            entities_of(vars, |_| json!({ "x": "typed" }))
        }
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, _) = run_on(
        &feed_supergraph("stats", ABSTRACT_REQUIREMENT),
        "{ feed { id x } }",
        500,
        handler,
    )
    .await;
    assert_eq!(
        body,
        json!({ "data": { "feed": [ { "id": "p1", "x": "typed" }, { "id": "p2", "x": "typed" } ] } })
    );
}

#[test]
fn requirements_that_need_one_another_are_refused_when_planned() {
    let schema = Supergraph::parse(&feed_supergraph("auth", CYCLIC_REQUIREMENTS)).expect("schema");
    let doc = async_graphql::parser::parse_query("{ feed { f } }").expect("parses");
    let error = tessera::plan::plan(&schema, &doc, None).expect_err("the requirements go round");
    assert!(error.to_string().contains("requirements in a row"), "{error}");
}

#[test]
fn requirements_of_one_field_with_other_arguments_below_are_asked_apart() {
    let schema = Supergraph::parse(&feed_supergraph("stats", NESTED_ARGUMENT_REQUIREMENTS)).expect("schema");
    let doc = async_graphql::parser::parse_query("{ feed { id x y } }").expect("parses");
    let plan = tessera::plan::plan(&schema, &doc, None).expect("plans");
    let root = plan.fetches[plan.roots[0]].query().expect("a subgraph request");
    // `author { posts(first: 1) }` and `author { posts(first: 2) }` under
    // one response key would be refused by the subgraph.
    let a = alias_of(&root.document, "author{posts(first:$_a0)");
    let b = alias_of(&root.document, "author{posts(first:$_a1)");
    assert_ne!(a, b, "{}", root.document);
}

#[tokio::test]
async fn a_subgraphs_error_in_a_value_objects_field_is_at_that_field_once() {
    let inner = nested_subgraphs(true);
    let handler: Box<Handler> = Box::new(move |subgraph, query, vars| {
        let mut answer = inner(subgraph, query, vars);
        if subgraph == "stats" {
            answer["errors"] = json!([
                { "message": "bad score", "path": ["_entities", 0, "tags", 1, "score"] },
                { "message": "no details", "path": ["_entities", 0, "category", "details"] }
            ]);
            answer["data"]["_entities"][0]["category"]["details"] = Value::Null;
        }
        answer
    });
    let query = "{ products { id category { slug id name details { count } } tags { label score } } }";
    let (body, _) = run_on(NESTED, query, 500, handler).await;
    assert_eq!(
        body["data"]["products"][0]["category"]["details"],
        Value::Null,
        "{body}"
    );
    assert_eq!(body["data"]["products"][0]["category"]["name"], "Tools", "{body}");
    let mut paths = error_paths(&body);
    paths.sort_by_key(|p| p.to_string());
    assert_eq!(
        paths,
        [
            &json!(["products", 0, "category", "details"]),
            &json!(["products", 0, "tags", 1, "score"])
        ],
        "{body}"
    );
}

#[tokio::test]
async fn an_object_whose_assembled_key_is_null_has_no_representation() {
    // "blog" has no slug for p2: "stats" is asked for p1 only.
    let inner = assembled_subgraphs(true);
    let handler: Box<Handler> = Box::new(move |subgraph, query, vars| {
        let mut answer = inner(subgraph, query, vars);
        if subgraph == "blog" && query.contains("slug") {
            answer["data"]["_entities"][1][alias_of(query, "slug")] = Value::Null;
        }
        answer
    });
    let (body, log) = run_on(ASSEMBLED, "{ feed { id views } }", 500, handler).await;
    assert_eq!(
        body,
        json!({ "data": { "feed": [ { "id": "p1", "views": 700 }, { "id": "p2", "views": null } ] } })
    );
    assert_eq!(
        log[2].2["_keys"],
        json!([{ "__typename": "Post", "slug": "post-p1", "score": 7 }])
    );
}

/// "blog"'s `rank` requires the `score` "feed" gives, which may be null.
const NULLABLE_REQUIREMENT: &str = r#"
type Post @join__type(graph: FEED, key: "id") @join__type(graph: BLOG, key: "id") {
  id: ID!
  score: Int @join__field(graph: FEED) @join__field(graph: BLOG, external: true)
  rank: String @join__field(graph: BLOG, requires: "score")
}
"#;

#[tokio::test]
async fn a_required_field_that_is_null_is_sent_as_null() {
    let handler: Box<Handler> = Box::new(|subgraph, query, vars| match subgraph {
        "feed" => json!({ "data": { "feed": [
            { "id": "p1", "_r_score": 3, "_r_id": "p1" },
            { "id": "p2", "_r_score": null, "_r_id": "p2" }
        ] } }),
        "blog" => {
            assert_eq!(
                vars["_keys"],
                json!([
                    { "__typename": "Post", "id": "p1", "score": 3 },
                    { "__typename": "Post", "id": "p2", "score": null }
                ]),
                "{query}"
            );
            entities_of(vars, |post| match post["score"].as_i64() {
                Some(score) => json!({ "rank": format!("r{score}") }),
                None => json!({ "rank": "unranked" }),
            })
        }
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, _) = run_on(
        &feed_supergraph("stats", NULLABLE_REQUIREMENT),
        "{ feed { id rank } }",
        500,
        handler,
    )
    .await;
    assert_eq!(
        body,
        json!({ "data": { "feed": [ { "id": "p1", "rank": "r3" }, { "id": "p2", "rank": "unranked" } ] } })
    );
}

#[tokio::test]
async fn a_required_field_that_failed_is_sent_null_and_reported_at_the_field_that_needed_it() {
    // "feed" cannot give the author of comment c2.
    let inner = assembled_subgraphs(true);
    let handler: Box<Handler> = Box::new(move |subgraph, query, vars| match subgraph {
        "feed" if query.contains("authorId") => {
            let mut answer = inner(subgraph, query, vars);
            answer["data"]["_entities"][1]["authorId"] = Value::Null;
            answer["errors"] = json!([{ "message": "no author", "path": ["_entities", 1, "authorId"] }]);
            answer
        }
        "blog" if query.contains("commenters") => entities_of(vars, |post| {
            let authors: Vec<&str> = post["comments"]
                .as_array()
                .expect("the comments in the representation")
                .iter()
                .map(|c| c["authorId"].as_str().unwrap_or("?"))
                .collect();
            json!({ "commenters": authors.join(",") })
        }),
        _ => inner(subgraph, query, vars),
    });
    let (body, _) = run_on(ASSEMBLED, "{ feed { commenters } }", 500, handler).await;
    assert_eq!(
        body["data"],
        json!({ "feed": [ { "commenters": "u1,?,u3" }, { "commenters": "u1,?,u3" } ] }),
        "{body}"
    );
    let errors = body["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e["message"] == "no author" && e["path"] == json!(["feed", 0, "commenters"])),
        "{body}"
    );
}

/// "stats"' `rank` requires the `score` only "blog" has: "blog" is asked
/// for it on the way.
const REQUIREMENT_ON_THE_WAY: &str = r#"
type Post @join__type(graph: FEED, key: "id") @join__type(graph: BLOG, key: "id") @join__type(graph: STATS, key: "id") {
  id: ID!
  score: Int @join__field(graph: BLOG) @join__field(graph: STATS, external: true)
  rank: String @join__field(graph: STATS, requires: "score")
}
"#;

#[tokio::test]
async fn an_error_in_a_field_asked_only_for_a_representation_is_the_objects() {
    let handler: Box<Handler> = Box::new(|subgraph, query, vars| match subgraph {
        "feed" => json!({ "data": { "feed": [ { "id": "p1", "_r_id": "p1" } ] } }),
        "blog" => {
            let score = alias_of(query, "score");
            json!({
                "data": { "_entities": [ { "_r_id": "p1", score.clone(): null } ] },
                "errors": [ { "message": "no score", "path": ["_entities", 0, score] } ]
            })
        }
        "stats" => {
            assert_eq!(
                vars["_keys"],
                json!([{ "__typename": "Post", "id": "p1", "score": null }])
            );
            entities_of(vars, |_| json!({ "rank": "unranked" }))
        }
        other => panic!("unexpected subgraph {other}"),
    });
    let (body, _) = run_on(
        &feed_supergraph("stats", REQUIREMENT_ON_THE_WAY),
        "{ feed { id rank } }",
        500,
        handler,
    )
    .await;
    assert_eq!(
        body["data"],
        json!({ "feed": [ { "id": "p1", "rank": "unranked" } ] }),
        "{body}"
    );
    assert_eq!(error_paths(&body), [&json!(["feed", 0])], "{body}");
    assert_eq!(body["errors"][0]["message"], "no score", "{body}");
}
