//! Integrated lists end to end: the nine services, the gateway and an
//! in-memory tantivy index built by the real synchronizer.
//!
//! - walking every page by cursor returns exactly what a brute-force
//!   filter + sort of the services' own data returns (none skipped, none
//!   repeated), for generated filters, sorts and page sizes;
//! - the MERGE strategy returns the same pages as the index, also when one
//!   source holds every newest item;
//! - after writes made directly to the services, the poller converges to
//!   what a fresh backfill builds;
//! - a mutation through the gateway is visible in the very next search;
//! - bad input gets a clear error.

#[macro_use]
mod common;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use common::{random_write, Backend, Rng, Stack, StackOptions};
use serde_json::{json, Value};

async fn stack(scale: u64, backend: Backend) -> Stack {
    let stack = Stack::start_indexed(StackOptions {
        scale,
        backend,
        ..StackOptions::default()
    })
    .await;
    stack
}

fn id_num(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().expect("int id"),
        Value::String(s) => s.parse().expect("numeric id"),
        other => panic!("not an id: {other}"),
    }
}

fn member_pk(relay: &str) -> i64 {
    use base64::Engine;
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(relay)
            .expect("base64"),
    )
    .expect("utf8");
    text.split_once(':').expect("Type:id").1.parse().expect("pk")
}

/// One contract as the brute force sees it, joined here from the services.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    amount: i64,
    status: String,
    created_at: String,
    /// `None` once the manager or member row is deleted (the document's field is null).
    manager_name: Option<String>,
    member_name: Option<String>,
    member_grade: Option<String>,
    settlement_count: i64,
    settlement_total: f64,
}

async fn contract_rows(stack: &Stack) -> Vec<Row> {
    let contracts = stack
        .subgraph(
            "contracts",
            "{ contracts(limit: 10000) { id amount status member_id manager_id created_at } }",
            json!({}),
        )
        .await["contracts"]
        .as_array()
        .expect("contracts")
        .clone();
    let members = stack
        .subgraph(
            "members",
            "{ members(first: 1000) { edges { node { id name grade } } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        members["members"]["pageInfo"]["hasNextPage"],
        json!(false),
        "one page of members"
    );
    let members: HashMap<i64, Value> = members["members"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                member_pk(e["node"]["id"].as_str().expect("id")),
                e["node"].clone(),
            )
        })
        .collect();
    let staff: HashMap<i64, Value> = stack
        .subgraph("staff", "{ allStaff(limit: 1000) { id name } }", json!({}))
        .await["allStaff"]
        .as_array()
        .expect("staff")
        .iter()
        .map(|s| (id_num(&s["id"]), s.clone()))
        .collect();
    let mut settlements: HashMap<i64, (i64, f64)> = HashMap::new();
    for s in stack
        .subgraph(
            "settlements",
            "{ settlements(limit: 100000) { contractId amount } }",
            json!({}),
        )
        .await["settlements"]
        .as_array()
        .expect("settlements")
    {
        let entry = settlements.entry(id_num(&s["contractId"])).or_default();
        entry.0 += 1;
        entry.1 += s["amount"]
            .as_str()
            .expect("decimal")
            .parse::<f64>()
            .expect("number");
    }
    contracts
        .iter()
        .map(|c| {
            let id = id_num(&c["id"]);
            let member = members.get(&id_num(&c["member_id"]));
            let (count, total) = settlements.get(&id).copied().unwrap_or_default();
            Row {
                id,
                amount: c["amount"].as_i64().expect("amount"),
                status: c["status"].as_str().expect("status").into(),
                created_at: c["created_at"].as_str().expect("created_at").into(),
                manager_name: staff
                    .get(&id_num(&c["manager_id"]))
                    .map(|s| s["name"].as_str().expect("name").into()),
                member_name: member.map(|m| m["name"].as_str().expect("name").into()),
                member_grade: member.map(|m| m["grade"].as_str().expect("grade").into()),
                settlement_count: count,
                settlement_total: (total * 100.0).round() / 100.0,
            }
        })
        .collect()
}

type Predicate = Box<dyn Fn(&Row) -> bool>;

/// One generated search: the GraphQL arguments and the same thing as a predicate and order.
struct Case {
    filter: Value,
    order: Vec<(&'static str, bool)>,
    keep: Predicate,
}

fn generate(rng: &mut Rng, rows: &[Row]) -> Case {
    let statuses = ["DRAFT", "ACTIVE", "EXPIRED", "TERMINATED"];
    let (filter, keep): (Value, Predicate) = match rng.below(6) {
        0 => (json!({}), Box::new(|_| true)),
        1 => {
            let a = statuses[rng.below(4)];
            let b = statuses[rng.below(4)];
            (
                json!({"status": [a, b]}),
                Box::new(move |r: &Row| r.status == a || r.status == b),
            )
        }
        2 => {
            let lo = rows[rng.below(rows.len())].amount;
            (
                json!({"amount": {"gte": lo}}),
                Box::new(move |r: &Row| r.amount >= lo),
            )
        }
        3 => {
            let named: Vec<&String> = rows.iter().filter_map(|r| r.manager_name.as_ref()).collect();
            let first: String = named[rng.below(named.len())].chars().take(1).collect();
            let p = first.clone();
            (
                json!({"managerName": {"prefix": first}}),
                Box::new(move |r: &Row| r.manager_name.as_deref().is_some_and(|n| n.starts_with(&p))),
            )
        }
        4 => {
            let grade = ["BRONZE", "SILVER", "GOLD", "VIP"][rng.below(4)];
            let min = rng.below(3) as i64;
            (
                json!({"memberGrade": [grade], "settlementCount": {"gte": min}}),
                Box::new(move |r: &Row| {
                    r.member_grade.as_deref() == Some(grade) && r.settlement_count >= min
                }),
            )
        }
        _ => {
            let lo = rows[rng.below(rows.len())].amount;
            let hi = rows[rng.below(rows.len())].amount;
            (
                json!({"amount": {"gt": lo.min(hi), "lte": lo.max(hi)}, "status": ["ACTIVE"]}),
                Box::new(move |r: &Row| {
                    r.amount > lo.min(hi) && r.amount <= lo.max(hi) && r.status == "ACTIVE"
                }),
            )
        }
    };
    let orders: [&[(&str, bool)]; 6] = [
        &[("AMOUNT", true)],
        &[("MANAGER_NAME", false)],
        &[("CREATED_AT", true)],
        &[("SETTLEMENT_TOTAL", true)],
        &[("MEMBER_NAME", false), ("AMOUNT", true)],
        &[("SETTLEMENT_COUNT", false), ("CREATED_AT", false)],
    ];
    Case {
        filter,
        order: orders[rng.below(orders.len())].to_vec(),
        keep,
    }
}

/// The order of one sort key; a missing value sorts last in either direction.
fn compare(a: &Row, b: &Row, field: &str, desc: bool) -> Ordering {
    let directed = |o: Ordering| if desc { o.reverse() } else { o };
    let names = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) => directed(x.cmp(y)),
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
    };
    match field {
        "AMOUNT" => directed(a.amount.cmp(&b.amount)),
        "MANAGER_NAME" => names(&a.manager_name, &b.manager_name),
        "MEMBER_NAME" => names(&a.member_name, &b.member_name),
        "CREATED_AT" => directed(a.created_at.cmp(&b.created_at)),
        "SETTLEMENT_TOTAL" => directed(a.settlement_total.total_cmp(&b.settlement_total)),
        "SETTLEMENT_COUNT" => directed(a.settlement_count.cmp(&b.settlement_count)),
        other => panic!("no comparator for {other}"),
    }
}

/// The brute force: filter, sort by the keys, ties by id in the last key's direction.
fn expected(rows: &[Row], case: &Case) -> Vec<i64> {
    let mut kept: Vec<&Row> = rows.iter().filter(|r| (case.keep)(r)).collect();
    let last_desc = case.order.last().is_some_and(|(_, d)| *d);
    kept.sort_by(|a, b| {
        for (field, desc) in &case.order {
            let o = compare(a, b, field, *desc);
            if o != Ordering::Equal {
                return o;
            }
        }
        let o = a.id.cmp(&b.id);
        if last_desc {
            o.reverse()
        } else {
            o
        }
    });
    kept.iter().map(|r| r.id).collect()
}

const SEARCH: &str = "query($f: ContractFilter, $o: [ContractOrder!], $n: Int, $a: String, $p: Int) {
  contractSearch(filter: $f, orderBy: $o, first: $n, after: $a, page: $p) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node { id amount } }
  }
}";

fn order_arg(case: &Case) -> Value {
    Value::Array(
        case.order
            .iter()
            .map(|(f, d)| json!({"field": f, "direction": if *d { "DESC" } else { "ASC" }}))
            .collect(),
    )
}

fn ids(page: &Value) -> Vec<i64> {
    page["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| id_num(&e["node"]["id"]))
        .collect()
}

/// Walks `case` page by page (cursor mode) and jumps to page 2 (offset
/// mode); both must match the brute force.
async fn check_case(stack: &Stack, rows: &[Row], case: &Case, size: usize, round: usize) {
    let want = expected(rows, case);
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let vars = json!({"f": case.filter, "o": order_arg(case), "n": size, "a": after});
        let page = stack.data(SEARCH, vars).await["contractSearch"].clone();
        assert_eq!(page["totalCount"], json!(want.len()), "round {round}: totalCount");
        assert_eq!(page["pageInfo"]["hasPreviousPage"], json!(after.is_some()));
        let page_ids = ids(&page);
        assert!(page_ids.len() <= size);
        got.extend(page_ids);
        pages += 1;
        assert!(pages <= want.len() + 2, "round {round}: the walk does not end");
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    assert_eq!(
        got, want,
        "round {round}: filter {} order {:?} page size {size}",
        case.filter, case.order
    );
    // Offset mode: page 2 is the same slice.
    let vars = json!({"f": case.filter, "o": order_arg(case), "n": size, "p": 2});
    let page = stack.data(SEARCH, vars).await["contractSearch"].clone();
    let from = size.min(want.len());
    let to = (2 * size).min(want.len());
    assert_eq!(
        ids(&page),
        want[from..to].to_vec(),
        "round {round}: page 2 by offset"
    );
}

async fn every_cursor_walk_matches_a_brute_force_sort(backend: Backend) {
    let stack = stack(300, backend.clone()).await;
    let rows = contract_rows(&stack).await;
    assert_eq!(rows.len(), 300);
    let mut rng = Rng(0x5eed_cafe);
    for round in 0..14 {
        let case = generate(&mut rng, &rows);
        let size = 1 + rng.below(40);
        check_case(&stack, &rows, &case, size, round).await;
    }
    // Random writes, deletes among them, straight to the services; once
    // polled and scanned, every walk matches the new truth.
    for step in 0..60 {
        random_write(&stack, &mut rng, step, 300).await;
    }
    for index in ["contracts", "feed"] {
        stack.syncer().poll(index).await.expect("poll");
        stack.syncer().scan(index).await.expect("scan");
    }
    let rows = contract_rows(&stack).await;
    for round in 14..24 {
        let case = generate(&mut rng, &rows);
        let size = 1 + rng.below(40);
        check_case(&stack, &rows, &case, size, round).await;
    }
}

async fn a_search_page_costs_one_request_per_joined_service(backend: Backend) {
    let stack = stack(300, backend.clone()).await;
    stack.reset_stats().await;
    let data = stack
        .data(
            "{ contractSearch(first: 20, orderBy: [{field: AMOUNT, direction: DESC}]) {
                edges { node { id title amount member { name accounts { bankName } } manager { name } settlements { amount } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["contractSearch"]["edges"].as_array().map(Vec::len), Some(20));
    let requests = stack.requests().await;
    for service in ["members", "staff", "accounts", "settlements"] {
        assert_eq!(requests[service], 1, "{service}: {requests:?}");
    }
    // Every contract field asked for is in the document.
    assert_eq!(requests["contracts"], 0, "{requests:?}");
}

const FEED: &str = "query($f: FeedFilter, $o: [FeedOrder!], $n: Int, $a: String) {
  feed(filter: $f, orderBy: $o, first: $n, after: $a) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { __typename id createdAt authorName } }
  }
}";

async fn walk_feed(
    stack: &Stack,
    url: &str,
    filter: &Value,
    desc: bool,
    size: usize,
) -> (Vec<String>, Value) {
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    let mut total;
    loop {
        let vars = json!({
            "f": filter,
            "o": [{"field": "CREATED_AT", "direction": if desc { "DESC" } else { "ASC" }}],
            "n": size,
            "a": after,
        });
        let body = stack
            .post_to(url, json!({"query": FEED, "variables": vars}))
            .await;
        assert!(body.get("errors").is_none(), "{body}");
        let page = &body["data"]["feed"];
        total = page["totalCount"].clone();
        for e in page["edges"].as_array().expect("edges") {
            // Every item has its author, seller or host: from the document
            // (index) or through a batched lookup (MERGE).
            assert!(e["node"]["authorName"].is_string(), "{e}");
            got.push(format!(
                "{}:{}",
                e["node"]["__typename"].as_str().expect("type"),
                e["node"]["id"].as_str().expect("id")
            ));
        }
        assert!(got.len() <= 100_000);
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    (got, total)
}

/// The feed by brute force: (createdAt, type, numeric id) in the direction asked.
async fn feed_rows(stack: &Stack) -> Vec<(String, String, i64)> {
    let mut rows = Vec::new();
    for p in stack
        .subgraph("posts", "{ posts(first: 1000) { id createdAt } }", json!({}))
        .await["posts"]
        .as_array()
        .expect("posts")
    {
        rows.push((
            p["createdAt"].as_str().expect("t").to_string(),
            "Post".to_string(),
            id_num(&p["id"]),
        ));
    }
    for p in stack
        .subgraph(
            "products",
            "{ products(limit: 1000) { id registered_at } }",
            json!({}),
        )
        .await["products"]
        .as_array()
        .expect("products")
    {
        rows.push((
            p["registered_at"].as_str().expect("t").to_string(),
            "Product".to_string(),
            id_num(&p["id"]),
        ));
    }
    for e in stack
        .subgraph("events", "{ events(first: 1000) { id publishedAt } }", json!({}))
        .await["events"]
        .as_array()
        .expect("events")
    {
        rows.push((
            e["publishedAt"].as_str().expect("t").to_string(),
            "Event".to_string(),
            id_num(&e["id"]),
        ));
    }
    rows
}

fn feed_expected(rows: &[(String, String, i64)], types: Option<&[&str]>, desc: bool) -> Vec<String> {
    let mut kept: Vec<&(String, String, i64)> = rows
        .iter()
        .filter(|r| types.is_none_or(|t| t.contains(&r.1.as_str())))
        .collect();
    kept.sort_by(|a, b| {
        let o = a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    kept.iter().map(|r| format!("{}:{}", r.1, r.2)).collect()
}

async fn merge_and_index_return_the_same_pages_even_when_skewed(backend: Backend) {
    let mut stack = stack(150, backend.clone()).await;
    let merge_url = merge_gateway(&mut stack).await;
    let index_url = stack.gateway.clone();

    // Skew: the newest 25 items all come from one service.
    for i in 0..25 {
        stack
            .subgraph(
                "posts",
                "mutation($t: String!) { createPost(authorId: \"1\", title: $t, body: \"skew\") { id } }",
                json!({"t": format!("skewed post {i}")}),
            )
            .await;
    }
    stack.syncer().poll("feed").await.expect("poll");
    let rows = feed_rows(&stack).await;

    let filters: [(Value, Option<&[&str]>); 3] = [
        (json!({}), None),
        (json!({"types": ["POST"]}), Some(&["Post"])),
        (
            json!({"types": ["PRODUCT", "EVENT"]}),
            Some(&["Product", "Event"]),
        ),
    ];
    for (filter, types) in &filters {
        for desc in [true, false] {
            let want = feed_expected(&rows, *types, desc);
            for size in [1, 7, 30] {
                let (by_index, index_total) = walk_feed(&stack, &index_url, filter, desc, size).await;
                let (by_merge, merge_total) = walk_feed(&stack, &merge_url, filter, desc, size).await;
                assert_eq!(by_index, want, "index: filter {filter} desc {desc} size {size}");
                assert_eq!(by_merge, want, "merge: filter {filter} desc {desc} size {size}");
                assert_eq!(index_total, json!(want.len()));
                assert_eq!(merge_total, json!(want.len()));
            }
        }
    }
    // The first page is all skew.
    let (first, _) = walk_feed(&stack, &merge_url, &json!({}), true, 500).await;
    assert!(
        first[..25].iter().all(|k| k.starts_with("Post:")),
        "{:?}",
        &first[..25]
    );

    // MERGE cannot filter by what only the index holds: a clear error.
    let body = stack
        .post_to(
            &merge_url,
            json!({"query": "{ feed(filter: {authorName: {prefix: \"김\"}}) { totalCount } }"}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("index"),
        "{body}"
    );
}

async fn the_poller_and_the_id_scan_converge_to_a_fresh_backfill(backend: Backend) {
    let stack = stack(200, backend.clone()).await;
    let mut rng = Rng(0xfeed_beef);
    for step in 0..80 {
        random_write(&stack, &mut rng, step, 200).await;
        // Poll now and then, as the background poller would.
        if step % 20 == 19 {
            for index in ["contracts", "feed"] {
                stack.syncer().poll(index).await.expect("poll");
            }
        }
    }
    // No reconcile: polling sees every change, the id scan every delete.
    for index in ["contracts", "feed"] {
        stack.syncer().poll(index).await.expect("poll");
        stack.syncer().scan(index).await.expect("scan");
    }
    stack.assert_indexes_match_a_fresh_backfill().await;
}

async fn a_mutation_through_the_gateway_is_searchable_at_once(backend: Backend) {
    // As `serve` runs it: the poller in the background, woken by the wait.
    let stack = Stack::start_indexed(StackOptions {
        scale: 100,
        sync_loop: true,
        backend,
        ..StackOptions::default()
    })
    .await;
    let search = "query($t: String!) { contractSearch(filter: {text: $t}) { totalCount edges { node { id title } } } }";
    let created = stack
        .data(
            "mutation { createContract(input: {title: \"Zebracorn rollout\", memberId: 3, managerId: 2, amount: 5, startDate: \"2026-03-01\"}) { id } }",
            json!({}),
        )
        .await;
    let id = created["createContract"]["id"].as_str().expect("id").to_string();
    let found = stack.data(search, json!({"t": "zebracorn"})).await;
    assert_eq!(found["contractSearch"]["totalCount"], 1, "{found}");
    assert_eq!(found["contractSearch"]["edges"][0]["node"]["id"], json!(id));

    stack
        .data(
            "mutation($id: ID!) { updateContract(id: $id, input: {title: \"Quokka rollout\"}) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        stack.data(search, json!({"t": "zebracorn"})).await["contractSearch"]["totalCount"],
        0
    );
    assert_eq!(
        stack.data(search, json!({"t": "quokka"})).await["contractSearch"]["totalCount"],
        1
    );

    stack
        .data(
            "mutation($id: ID!) { deleteContract(id: $id) }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        stack.data(search, json!({"t": "quokka"})).await["contractSearch"]["totalCount"],
        0
    );

    // A renamed manager is found under the new name at once.
    stack
        .data(
            "mutation { updateStaff(id: 2, name: \"Renamed Manager\") { id } }",
            json!({}),
        )
        .await;
    let renamed = stack
        .data(
            "{ contractSearch(filter: {managerName: {eq: \"Renamed Manager\"}}) { totalCount } }",
            json!({}),
        )
        .await;
    let direct = stack
        .subgraph("contracts", "{ contracts_count(manager_id: 2) }", json!({}))
        .await;
    assert_eq!(
        renamed["contractSearch"]["totalCount"], direct["contracts_count"],
        "{renamed}"
    );

    // A row joined to a parent that has no document (the service took a
    // settlement for a contract it does not have): nothing to wait for.
    let (status, body) = stack
        .post(json!({ "query": "mutation { createSettlement(contractId: \"999998\", amount: \"1.00\", scheduledOn: \"2026-12-01\") { id } }" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["createSettlement"]["id"].is_string(), "{body}");
    assert!(body["extensions"].get("indexUpdate").is_none(), "{body}");
}

async fn bad_search_input_gets_a_clear_error(backend: Backend) {
    let stack = stack(100, backend.clone()).await;
    let first = stack
        .data(
            "{ contractSearch(first: 2) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
    let cursor = first["contractSearch"]["pageInfo"]["endCursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    let mut tampered = cursor.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");

    let cases: Vec<(String, &str, &str)> = vec![
        (
            "{ contractSearch(orderBy: [{field: SHOE_SIZE}]) { totalCount } }".into(),
            "BAD_USER_INPUT",
            "SHOE_SIZE",
        ),
        (
            "{ contractSearch(after: \"not a cursor!\") { totalCount } }".into(),
            "BAD_USER_INPUT",
            "malformed",
        ),
        (
            "{ contractSearch(filter: {startDate: {gte: \"2022-1-5\"}}) { totalCount } }".into(),
            "BAD_USER_INPUT",
            "YYYY-MM-DD",
        ),
        (
            format!("{{ contractSearch(after: \"{tampered}\") {{ totalCount }} }}"),
            "BAD_USER_INPUT",
            "cursor",
        ),
        (
            format!(
                "{{ contractSearch(after: \"{cursor}\", orderBy: [{{field: AMOUNT}}]) {{ totalCount }} }}"
            ),
            "BAD_USER_INPUT",
            "different query",
        ),
        (
            "{ contractSearch(first: 100, page: 200) { totalCount } }".into(),
            "BAD_USER_INPUT",
            "10000",
        ),
        (
            "{ contractSearch(first: 5000) { totalCount } }".into(),
            "BAD_USER_INPUT",
            "first",
        ),
        (
            "{ contractSearch(filter: {amount: {gte: \"lots\"}}) { totalCount } }".into(),
            "BAD_USER_INPUT",
            "amount",
        ),
        (
            format!("{{ contractSearch(after: \"{cursor}\", page: 2) {{ totalCount }} }}"),
            "BAD_USER_INPUT",
            "either",
        ),
    ];
    for (query, code, mentions) in cases {
        let (status, body) = stack.post(json!({ "query": query })).await;
        assert!(status == 200 || status == 400, "{query}: HTTP {status}");
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], code, "{query}: {body}");
        assert!(
            error["message"].as_str().expect("message").contains(mentions),
            "{query}: {body}"
        );
    }
}

async fn every_playground_example_answers_without_errors(backend: Backend) {
    let stack = stack(300, backend.clone()).await;
    for example in tessera::http::EXAMPLES {
        let data = stack.data(example, json!({})).await;
        assert!(
            data.as_object().is_some_and(|d| !d.is_empty()),
            "{example}: {data}"
        );
    }
    let searched = stack.data(tessera::http::EXAMPLES[0], json!({})).await;
    assert!(
        searched["contractSearch"]["totalCount"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "the example search finds contracts: {searched}"
    );
}

async fn an_interrupted_backfill_resumes_from_its_checkpoint(backend: Backend) {
    let stack = Stack::start_with(StackOptions {
        scale: 200,
        search: true,
        backend,
        ..StackOptions::default()
    })
    .await;
    let syncer = Arc::clone(stack.syncer());
    // Stop the backfill right after its first page is written, as a kill would.
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let stop = tokio::sync::Notify::new();
    let progress = |_: tessera::sync::Progress| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            stop.notify_one();
        }
    };
    tokio::select! {
        r = syncer.backfill("feed", false, &progress) => panic!("the backfill should have been stopped: {r:?}"),
        _ = stop.notified() => {}
    }
    let checkpoint = syncer.checkpoint("feed").await.expect("checkpoint");
    let Some(tessera::sync::Checkpoint::Backfill {
        done,
        source,
        complete,
        ..
    }) = checkpoint
    else {
        panic!("an interrupted backfill leaves its position: {checkpoint:?}");
    };
    assert!(done > 0 && source > 0, "first source written: {checkpoint:?}");
    // A first build half done holds a part of the documents: not served.
    assert!(!complete);
    let feed = json!({"query": "{ feed(first: 1) { totalCount } }"});
    let half = stack.post_to(&stack.gateway, feed.clone()).await;
    assert_eq!(
        half["errors"][0]["extensions"]["code"], "SEARCH_UNAVAILABLE",
        "{half}"
    );

    // Resumed: starts at the checkpoint, not from zero, and completes.
    let first_report = std::sync::Mutex::new(None);
    let total = syncer
        .backfill("feed", false, &|p| {
            first_report.lock().expect("lock").get_or_insert(p.done);
        })
        .await
        .expect("resumed backfill");
    assert_eq!(*first_report.lock().expect("lock"), Some(done));
    assert!(matches!(
        syncer.checkpoint("feed").await.expect("checkpoint"),
        Some(tessera::sync::Checkpoint::Live { .. })
    ));
    let index = &stack.search.as_ref().expect("search").backend;
    assert_eq!(index.count("feed").await.expect("count"), total);
    let expected = feed_rows(&stack).await.len() as u64;
    assert_eq!(total, expected);

    // Rebuilt in place (a backfill of a built index) and stopped half-way:
    // it still holds every document, and is served meanwhile.
    calls.store(0, std::sync::atomic::Ordering::SeqCst);
    tokio::select! {
        r = syncer.backfill("feed", true, &progress) => panic!("the backfill should have been stopped: {r:?}"),
        _ = stop.notified() => {}
    }
    let checkpoint = syncer.checkpoint("feed").await.expect("checkpoint");
    assert!(
        matches!(
            checkpoint,
            Some(tessera::sync::Checkpoint::Backfill { complete: true, .. })
        ),
        "{checkpoint:?}"
    );
    let served = stack.post_to(&stack.gateway, feed).await;
    assert_eq!(served["data"]["feed"]["totalCount"], total, "{served}");
}

#[tokio::test]
async fn feed_items_name_their_author_seller_or_host() {
    let stack = Stack::start().await;
    let data = stack
        .data(
            r#"{ post(id: "1") { authorName author { name } }
                 product(id: "1") { authorName seller { name } }
                 event(id: "1") { authorName host { name } } }"#,
            json!({}),
        )
        .await;
    assert!(data["post"]["authorName"].is_string(), "{data}");
    assert_eq!(data["post"]["authorName"], data["post"]["author"]["name"]);
    assert_eq!(data["product"]["authorName"], data["product"]["seller"]["name"]);
    assert_eq!(data["event"]["authorName"], data["event"]["host"]["name"]);
}

/// A gateway answering `feed` by MERGE, beside the stack's index gateway.
async fn merge_gateway(stack: &mut Stack) -> String {
    let mut config = stack.config.clone();
    config
        .search
        .strategies
        .insert("feed".into(), tessera::config::StrategyName::Merge);
    let merge = tessera::build(&config, include_str!("../schema.graphql")).expect("merge gateway");
    stack.serve(Arc::clone(&merge.gateway)).await
}

async fn an_omitted_variable_means_the_arguments_default(backend: Backend) {
    let mut stack = stack(100, backend.clone()).await;
    let merge_url = merge_gateway(&mut stack).await;
    let index_url = stack.gateway.clone();
    let selection = "totalCount pageInfo { hasNextPage } edges { node { __typename id } }";
    let cases = [
        ("contractSearch", "filter", "ContractFilter"),
        ("contractSearch", "orderBy", "[ContractOrder!]"),
        ("contractSearch", "first", "Int"),
        ("contractSearch", "after", "String"),
        ("contractSearch", "page", "Int"),
        ("feed", "filter", "FeedFilter"),
        ("feed", "orderBy", "[FeedOrder!]"),
        ("feed", "first", "Int"),
        ("feed", "after", "String"),
        ("feed", "page", "Int"),
    ];
    for (field, arg, ty) in cases {
        let urls: &[&str] = if field == "feed" {
            &[&index_url, &merge_url]
        } else {
            &[&index_url]
        };
        for url in urls {
            let plain = stack
                .post_to(
                    url,
                    json!({"query": format!("{{ {field}(first: 5) {{ {selection} }} }}")}),
                )
                .await;
            let first = if arg == "first" { "" } else { "first: 5, " };
            let with_var = format!("query($v: {ty}) {{ {field}({first}{arg}: $v) {{ {selection} }} }}");
            let omitted = stack
                .post_to(url, json!({"query": with_var, "variables": {}}))
                .await;
            assert!(plain.get("errors").is_none(), "{plain}");
            if arg == "first" {
                // Omitted `first` is its default, 20.
                let default = stack
                    .post_to(url, json!({"query": format!("{{ {field} {{ {selection} }} }}")}))
                    .await;
                // `data` only: `extensions.indexes` carries an age in ms.
                assert_eq!(omitted["data"], default["data"], "{field}({arg}: $v) on {url}");
                assert_eq!(omitted["data"][field]["edges"].as_array().map(Vec::len), Some(20));
            } else {
                assert_eq!(
                    omitted["data"], plain["data"],
                    "{field}({arg}: $v) with $v omitted on {url}"
                );
                assert!(omitted.get("errors").is_none(), "{omitted}");
            }
        }
    }
    // The default order is newest first.
    let newest = stack
        .data("query($o: [ContractOrder!]) { contractSearch(first: 2, orderBy: $o) { edges { node { id createdAt } } } }", json!({}))
        .await;
    let edges = newest["contractSearch"]["edges"].as_array().expect("edges");
    assert!(
        edges[0]["node"]["createdAt"].as_str() >= edges[1]["node"]["createdAt"].as_str(),
        "{newest}"
    );
    // An order item that leaves `direction` out means its default (DESC for
    // the feed), however the item is written: a literal, a variable, or a
    // variable's default (the literal used to sort oldest first).
    let feed = "edges { node { __typename id createdAt } }";
    let asks = [
        json!({"query": format!("{{ feed(first: 5, orderBy: [{{field: CREATED_AT, direction: DESC}}]) {{ {feed} }} }}")}),
        json!({"query": format!("{{ feed(first: 5, orderBy: [{{field: CREATED_AT}}]) {{ {feed} }} }}")}),
        json!({"query": format!("{{ feed(first: 5, orderBy: {{field: CREATED_AT}}) {{ {feed} }} }}")}),
        json!({"query": format!("query($o: [FeedOrder!]) {{ feed(first: 5, orderBy: $o) {{ {feed} }} }}"),
               "variables": {"o": [{"field": "CREATED_AT"}]}}),
        json!({"query": format!("query($o: [FeedOrder!] = [{{field: CREATED_AT}}]) {{ feed(first: 5, orderBy: $o) {{ {feed} }} }}")}),
        json!({"query": format!("query($d: SortDirection) {{ feed(first: 5, orderBy: [{{field: CREATED_AT, direction: $d}}]) {{ {feed} }} }}")}),
        // No order in particular: the field's default (newest first), on
        // the index and through MERGE alike.
        json!({"query": format!("{{ feed(first: 5, orderBy: []) {{ {feed} }} }}")}),
        json!({"query": format!("{{ feed(first: 5, orderBy: null) {{ {feed} }} }}")}),
        json!({"query": format!("{{ feed(first: 5, orderBy: [{{field: CREATED_AT, direction: null}}]) {{ {feed} }} }}")}),
        json!({"query": format!("{{ feed(first: 5) {{ {feed} }} }}")}),
        // Empty text is no condition.
        json!({"query": format!("{{ feed(first: 5, filter: {{text: \"\"}}) {{ {feed} }} }}")}),
        json!({"query": format!("{{ feed(first: 5, filter: {{text: \"  \"}}) {{ {feed} }} }}")}),
    ];
    for url in [&index_url, &merge_url] {
        let expected = stack.post_to(url, asks[0].clone()).await;
        let dates: Vec<&str> = expected["data"]["feed"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .filter_map(|e| e["node"]["createdAt"].as_str())
            .collect();
        assert!(
            dates.len() == 5 && dates.windows(2).all(|w| w[0] >= w[1]),
            "{expected}"
        );
        for ask in &asks[1..] {
            let answer = stack.post_to(url, ask.clone()).await;
            assert_eq!(answer["data"], expected["data"], "{ask} on {url}");
        }
    }
}

async fn merge_pages_by_key_so_writes_between_pages_repeat_or_skip_nothing(backend: Backend) {
    let mut stack = stack(150, backend.clone()).await;
    let merge_url = merge_gateway(&mut stack).await;
    // Posts and events can bound their sort field: keyed pages.
    let filter = json!({"types": ["POST", "EVENT"]});
    for desc in [true, false] {
        let before = feed_expected(&feed_rows(&stack).await, Some(&["Post", "Event"]), desc);
        let mut got: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        let mut created = Vec::new();
        let mut deleted_unseen = None;
        for page in 0.. {
            let vars = json!({
                "f": filter,
                "o": [{"field": "CREATED_AT", "direction": if desc { "DESC" } else { "ASC" }}],
                "n": 7,
                "a": after,
            });
            let body = stack
                .post_to(&merge_url, json!({"query": FEED, "variables": vars}))
                .await;
            assert!(body.get("errors").is_none(), "{body}");
            let feed = &body["data"]["feed"];
            for e in feed["edges"].as_array().expect("edges") {
                got.push(format!(
                    "{}:{}",
                    e["node"]["__typename"].as_str().expect("t"),
                    e["node"]["id"].as_str().expect("id")
                ));
            }
            if page == 0 {
                // Between pages 1 and 2: three new posts (the newest of all),
                // one post already seen and one not yet seen are deleted.
                for i in 0..3 {
                    let made = stack
                        .write(
                            "posts",
                            "mutation($t: String!) { createPost(authorId: \"1\", title: $t, body: \"between pages\") { id } }",
                            json!({"t": format!("between pages {i}")}),
                        )
                        .await;
                    created.push(format!("Post:{}", made["createPost"]["id"].as_str().expect("id")));
                }
                let seen = got
                    .iter()
                    .find(|k| k.starts_with("Post:"))
                    .expect("a post on page 1")
                    .clone();
                let unseen = before[20..]
                    .iter()
                    .find(|k| k.starts_with("Post:"))
                    .expect("a later post")
                    .clone();
                for key in [&seen, &unseen] {
                    stack
                        .write(
                            "posts",
                            "mutation($id: ID!) { deletePost(id: $id) }",
                            json!({"id": key.trim_start_matches("Post:")}),
                        )
                        .await;
                }
                deleted_unseen = Some(unseen);
            }
            if feed["pageInfo"]["hasNextPage"] != json!(true) {
                break;
            }
            after = feed["pageInfo"]["endCursor"].as_str().map(str::to_string);
        }
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            got.len(),
            "desc {desc}: an item came twice: {got:?}"
        );
        let mut want: Vec<String> = before
            .iter()
            .filter(|k| Some(*k) != deleted_unseen.as_ref())
            .cloned()
            .collect();
        if !desc {
            // Ascending, the new posts come after everything seen: they are on later pages.
            want.extend(created.iter().cloned());
        }
        assert_eq!(got, want, "desc {desc}");
        for index in ["feed"] {
            stack.syncer().poll(index).await.expect("poll");
        }
    }
}

async fn id_filters_take_integers_and_an_empty_page_has_no_next(backend: Backend) {
    let mut stack = stack(100, backend.clone()).await;
    let merge_url = merge_gateway(&mut stack).await;
    let ints = stack
        .data(
            "{ contractSearch(filter: {memberId: [1, 2]}) { totalCount } }",
            json!({}),
        )
        .await;
    let strings = stack
        .data(
            "{ contractSearch(filter: {memberId: [\"1\", \"2\"]}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(ints, strings);
    assert!(ints["contractSearch"]["totalCount"].as_u64() > Some(0), "{ints}");
    let one = stack
        .data(
            "{ contractSearch(filter: {managerId: 3}) { totalCount } }",
            json!({}),
        )
        .await;
    assert!(one["contractSearch"]["totalCount"].as_u64() > Some(0), "{one}");

    for (url, field) in [
        (stack.gateway.clone(), "contractSearch"),
        (stack.gateway.clone(), "feed"),
        (merge_url, "feed"),
    ] {
        let body = stack
            .post_to(
                &url,
                json!({"query": format!("{{ {field}(first: 0) {{ totalCount edges {{ cursor }} pageInfo {{ hasNextPage endCursor }} }} }}")}),
            )
            .await;
        assert!(body.get("errors").is_none(), "{body}");
        let page = &body["data"][field];
        assert_eq!(page["edges"], json!([]));
        assert_eq!(
            page["pageInfo"],
            json!({"hasNextPage": false, "endCursor": null}),
            "{field} on {url}"
        );
        assert!(page["totalCount"].as_u64() > Some(0));
    }
}

/// `hasNextPage` does not depend on its siblings: at the end of the
/// 10,000-hit offset window (no room for the hit more a page asks for) it
/// was false unless `totalCount` was selected too.
#[tokio::test]
async fn has_next_page_at_the_end_of_the_offset_window_needs_no_total_count() {
    let stack = stack(10_020, Backend::Tantivy).await;
    for (page, first) in [(10, 1000), (5000, 2), (10_000, 1)] {
        let alone = stack
            .data(
                &format!(
                    "{{ contractSearch(page: {page}, first: {first}) {{ pageInfo {{ hasNextPage }} }} }}"
                ),
                json!({}),
            )
            .await;
        let counted = stack
            .data(
                &format!("{{ contractSearch(page: {page}, first: {first}) {{ totalCount pageInfo {{ hasNextPage }} }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(
            alone["contractSearch"]["pageInfo"]["hasNextPage"],
            json!(true),
            "{page}: {alone}"
        );
        assert_eq!(
            counted["contractSearch"]["pageInfo"],
            alone["contractSearch"]["pageInfo"]
        );
        assert!(alone["contractSearch"].get("totalCount").is_none(), "{alone}");
    }
}

/// A service MERGE lists that fails says which and how, as any field of
/// its own does (`SUBGRAPH_REQUEST_FAILED`, `extensions.subgraph`), where
/// every failure read "a service did not answer" as DOWNSTREAM_SERVICE_ERROR;
/// and a MERGE answer does not report an index's freshness it never read.
#[tokio::test]
async fn a_merge_source_that_fails_is_named_with_its_code() {
    let mut stack = stack(60, Backend::Tantivy).await;
    let merge_url = merge_gateway(&mut stack).await;
    // Healthy: only the index says how fresh it is (MERGE reads the services).
    let feed = json!({"query": "{ feed(first: 2) { edges { node { id } } } }"});
    let merged = stack.post_to(&merge_url, feed.clone()).await;
    assert!(merged.get("errors").is_none(), "{merged}");
    assert!(merged["extensions"]["indexes"].get("feed").is_none(), "{merged}");
    let indexed = stack.post_to(&stack.gateway, feed).await;
    assert!(
        indexed["extensions"]["indexes"]["feed"]["ageMs"].is_u64(),
        "{indexed}"
    );
    stack.faults("events", json!({"down": true})).await;
    let body = stack
        .post_to(
            &merge_url,
            json!({"query": "{ feed(first: 2) { edges { node { id } } } events(first: 1) { id } }"}),
        )
        .await;
    let errors = body["errors"].as_array().expect("errors");
    let at = |field: &str| {
        errors
            .iter()
            .find(|e| e["path"][0] == field)
            .unwrap_or_else(|| panic!("no error at {field}: {body}"))
    };
    for field in ["feed", "events"] {
        assert_eq!(
            at(field)["extensions"]["code"],
            "SUBGRAPH_REQUEST_FAILED",
            "{body}"
        );
        assert_eq!(at(field)["extensions"]["subgraph"], "events", "{body}");
    }
    assert!(
        at("feed")["message"]
            .as_str()
            .is_some_and(|m| m.contains("events")),
        "{body}"
    );
}

/// A poll, scan or reconcile of an index never built backfills it, says
/// how many documents it wrote, and leaves it built: a scan or reconcile
/// rebuilt every document without recording that (the next poll backfilled
/// it all again), and a poll reported 0 written.
#[tokio::test]
async fn sync_steps_on_an_index_never_built_backfill_it_first() {
    for step in ["poll", "scan", "reconcile"] {
        let stack = Stack::start_with(StackOptions {
            scale: 40,
            search: true,
            ..StackOptions::default()
        })
        .await;
        let syncer = stack.syncer();
        let report = match step {
            "poll" => syncer.poll("contracts").await,
            "scan" => syncer.scan("contracts").await,
            _ => syncer.reconcile("contracts").await,
        }
        .expect("step");
        assert_eq!(report.written, 40, "{step}: {report:?}");
        assert!(
            matches!(
                syncer.checkpoint("contracts").await.expect("checkpoint"),
                Some(tessera::sync::Checkpoint::Live { .. })
            ),
            "{step}"
        );
        let again = syncer.poll("contracts").await.expect("poll");
        assert_eq!(again.written, 0, "{step}, then a poll: {again:?}");
    }
}

on_both_backends!(
    every_cursor_walk_matches_a_brute_force_sort,
    a_search_page_costs_one_request_per_joined_service,
    merge_and_index_return_the_same_pages_even_when_skewed,
    the_poller_and_the_id_scan_converge_to_a_fresh_backfill,
    a_mutation_through_the_gateway_is_searchable_at_once,
    bad_search_input_gets_a_clear_error,
    every_playground_example_answers_without_errors,
    an_interrupted_backfill_resumes_from_its_checkpoint,
    an_omitted_variable_means_the_arguments_default,
    merge_pages_by_key_so_writes_between_pages_repeat_or_skip_nothing,
    id_filters_take_integers_and_an_empty_page_has_no_next,
);

/// A field selected twice, the first time under a variable condition,
/// beside fields the search plan builds itself: every field is answered
/// (ordering the keys by the variables dropped the fields that carried no
/// order), in the order the first selection that holds gives.
#[tokio::test]
async fn a_conditional_repeat_beside_search_fields_loses_no_field() {
    let stack = Stack::start_indexed(StackOptions::default()).await;
    for query in [
        "query($c: Boolean!) { contractSearch(first: 2) { totalCount @include(if: $c) totalCount edges { cursor node { id title } } } }",
        "query($c: Boolean!) { contractSearch(first: 2) { edges { node { title @include(if: $c) title id member { name } } } } }",
        "query($c: Boolean!) { feed(first: 3) { edges { node { __typename @skip(if: $c) __typename ... on Post { id title } ... on Event { id } ... on Product { id } } } } }",
    ] {
        let plain = query
            .replace("query($c: Boolean!) ", "")
            .replace("@include(if: $c)", "")
            .replace("@skip(if: $c)", "");
        let all = stack.data(&plain, json!({})).await;
        for c in [true, false] {
            let data = stack.data(query, json!({ "c": c })).await;
            assert_eq!(data, all, "{query} with c={c}");
        }
    }
}

/// A MERGE page whose denormalized fields (a post's author's name) come
/// from a service that is down is served without them, with one error at
/// the field: it failed whole, though the sources answered.
#[tokio::test]
async fn a_merge_page_is_served_when_only_a_denormalizing_service_fails() {
    let mut stack = stack(60, Backend::Tantivy).await;
    let url = merge_gateway(&mut stack).await;
    let query =
        json!({ "query": "{ feed(first: 5) { edges { node { __typename id title authorName } } } }" });
    let healthy = stack.post_to(&url, query.clone()).await;
    assert!(healthy.get("errors").is_none(), "{healthy}");

    stack.faults("members", json!({ "down": true })).await;
    stack.faults("staff", json!({ "down": true })).await;
    let body = stack.post_to(&url, query.clone()).await;
    let edges = body["data"]["feed"]["edges"]
        .as_array()
        .expect("the page is served");
    let expected = healthy["data"]["feed"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), expected.len(), "{body}");
    for (edge, want) in edges.iter().zip(expected) {
        assert_eq!(edge["node"]["id"], want["node"]["id"], "{body}");
        assert_eq!(edge["node"]["title"], want["node"]["title"], "{body}");
        assert_eq!(edge["node"]["authorName"], Value::Null, "{body}");
    }
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], json!(["feed"]), "{body}");

    // A source itself down fails the page, as before.
    stack.faults("posts", json!({ "down": true })).await;
    let body = stack.post_to(&url, query).await;
    assert_eq!(body["data"]["feed"], Value::Null, "{body}");
}
