//! The nine services over real HTTP on ephemeral ports: seeding, lists, ids,
//! batch fields, writes and their change events, stats, faults, Federation and
//! ordered paging.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tessera_subgraphs::{
    seed_counts, ChangeEvent, ChangeOp, ChannelSink, EventId, RunningService, Service, ServiceOptions,
    WebhookSink,
};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn of(service: &RunningService) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}", service.addr),
        }
    }

    /// The whole GraphQL response body.
    async fn gql(&self, query: &str, variables: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("service answers");
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON body")
    }

    /// `data` of a query that must not fail.
    async fn data(&self, query: &str, variables: Value) -> Value {
        let body = self.gql(query, variables).await;
        assert!(
            body.get("errors").is_none(),
            "unexpected errors for {query}: {body}"
        );
        body["data"].clone()
    }

    /// The first error's message of a query that must fail.
    async fn error(&self, query: &str, variables: Value) -> String {
        let body = self.gql(query, variables).await;
        let message = body["errors"][0]["message"].as_str();
        message
            .unwrap_or_else(|| panic!("expected an error for {query}: {body}"))
            .to_string()
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("answers");
        response.json().await.expect("JSON body")
    }

    async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

async fn start(service: Service, opts: &ServiceOptions) -> RunningService {
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    tessera_subgraphs::spawn(service, listener, opts)
        .await
        .expect("service starts")
}

fn opts(scale: u64) -> ServiceOptions {
    ServiceOptions {
        scale,
        ..ServiceOptions::default()
    }
}

/// Per service: a list query (≤ 300 rows, every field), the list's JSON path, and
/// a by-id query for `$id` answering the same fields under `one`.
fn queries(service: Service) -> (&'static str, &'static [&'static str], &'static str) {
    match service {
        Service::Members => (
            "{ members(first: 300) { edges { node { id name email phone kind grade joinedAt updatedAt } } } }",
            &["members", "edges"],
            "query($id: ID!) { one: member(id: $id) { id name email phone kind grade joinedAt updatedAt } }",
        ),
        Service::Staff => (
            "{ allStaff(limit: 300) { id name email department title phone active createdAt updatedAt } }",
            &["allStaff"],
            "query($id: Int!) { one: staff(id: $id) { id name email department title phone active createdAt updatedAt } }",
        ),
        Service::Contracts => (
            "{ contracts(limit: 300) { id contract_no title member_id manager_id amount status start_date end_date created_at updated_at } }",
            &["contracts"],
            "query($id: Int!) { one: contract(id: $id) { id contract_no title member_id manager_id amount status start_date end_date created_at updated_at } }",
        ),
        Service::Accounts => (
            "{ accounts(limit: 300) { id memberId bankName accountNumber holderName isPrimary verified createdAt updatedAt } }",
            &["accounts"],
            "query($id: Int!) { one: account(id: $id) { id memberId bankName accountNumber holderName isPrimary verified createdAt updatedAt } }",
        ),
        Service::Settlements => (
            "{ settlements(limit: 300) { id contractId amount fee status scheduledOn paidAt createdAt updatedAt } }",
            &["settlements"],
            "query($id: Int!) { one: settlement(id: $id) { id contractId amount fee status scheduledOn paidAt createdAt updatedAt } }",
        ),
        Service::Posts => (
            "{ posts(first: 300) { id authorId title body tags likeCount createdAt updatedAt } }",
            &["posts"],
            "query($id: ID!) { one: post(id: $id) { id authorId title body tags likeCount createdAt updatedAt } }",
        ),
        Service::Products => (
            "{ products(limit: 300) { id seller_id name description price category stock registered_at updated_at } }",
            &["products"],
            "query($id: ID!) { one: product(id: $id) { id seller_id name description price category stock registered_at updated_at } }",
        ),
        Service::Events => (
            "{ events(first: 300) { id hostId title description location startsAt endsAt capacity publishedAt updatedAt } }",
            &["events"],
            "query($id: ID!) { one: event(id: $id) { id hostId title description location startsAt endsAt capacity publishedAt updatedAt } }",
        ),
        Service::Reviews => (
            "{ reviews(limit: 300) { id productId authorId rating body createdAt updatedAt } }",
            &["reviews"],
            "query($id: Int!) { one: review(id: $id) { id productId authorId rating body createdAt updatedAt } }",
        ),
        federated => panic!("{federated} is a Federation subgraph, not one of the nine"),
    }
}

fn rows_at(data: &Value, path: &[&str]) -> Vec<Value> {
    let mut value = data;
    for key in path {
        value = &value[*key];
    }
    let rows = value.as_array().expect("a list").clone();
    // Relay edges hold their rows under `node`.
    rows.into_iter()
        .map(|r| r.get("node").cloned().unwrap_or(r))
        .collect()
}

async fn snapshot(running: &[RunningService]) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for service in running {
        let (list, path, _) = queries(service.service);
        out.push(rows_at(&Client::of(service).data(list, json!({})).await, path));
    }
    out
}

#[tokio::test]
async fn seeding_is_deterministic_and_follows_the_scale() {
    let a = tessera_subgraphs::spawn_all(LOCALHOST, 0, &opts(2000))
        .await
        .expect("start");
    let b = tessera_subgraphs::spawn_all(LOCALHOST, 0, &opts(2000))
        .await
        .expect("start");
    let c = tessera_subgraphs::spawn_all(LOCALHOST, 0, &opts(4000))
        .await
        .expect("start");
    let (rows_a, rows_b, rows_c) = (snapshot(&a).await, snapshot(&b).await, snapshot(&c).await);
    for (i, service) in Service::ALL.into_iter().enumerate() {
        assert!(rows_a[i].len() >= 10, "{service}: {} rows", rows_a[i].len());
        assert_eq!(
            rows_a[i], rows_b[i],
            "{service} differs between two seeds at one scale"
        );
    }
    // Foreign keys and timestamps follow the scale; row counts match seed_counts.
    let contracts = Service::ALL
        .iter()
        .position(|s| *s == Service::Contracts)
        .expect("contracts");
    assert_ne!(rows_a[contracts], rows_c[contracts]);
    for (running, scale) in [(&a, 2000), (&c, 4000)] {
        let counts = seed_counts(scale);
        let expected = [
            counts.members,
            counts.staff,
            counts.contracts,
            counts.accounts,
            counts.settlements,
            counts.posts,
            counts.products,
            counts.events,
            counts.reviews,
        ];
        for (service, expected) in running.iter().zip(expected) {
            assert_eq!(service.rows, expected, "{} at scale {scale}", service.service);
        }
        let contracts = Client::of(&running[2])
            .data("{ contracts_count }", json!({}))
            .await;
        assert_eq!(contracts["contracts_count"], json!(scale));
    }
    assert_eq!(seed_counts(2000).members, 500);
}

#[tokio::test]
async fn every_service_answers_a_list_and_a_by_id_query() {
    let running = tessera_subgraphs::spawn_all(LOCALHOST, 0, &opts(1000))
        .await
        .expect("start");
    for service in &running {
        let client = Client::of(service);
        let (list, path, by_id) = queries(service.service);
        let rows = rows_at(&client.data(list, json!({})).await, path);
        assert!(!rows.is_empty(), "{}", service.service);
        for row in rows.iter().take(3) {
            let one = client.data(by_id, json!({ "id": row["id"] })).await;
            assert_eq!(&one["one"], row, "{}", service.service);
        }
        let health = reqwest::get(format!("http://{}/health", service.addr))
            .await
            .expect("health");
        assert_eq!(health.text().await.expect("body"), "ok");
    }
}

#[tokio::test]
async fn relay_ids_round_trip_and_batches_keep_order_and_holes() {
    let members = start(Service::Members, &opts(1000)).await;
    let client = Client::of(&members);
    let page = client
        .data("{ members(first: 3) { edges { node { id name } } } }", json!({}))
        .await;
    let ids: Vec<String> = rows_at(&page, &["members", "edges"])
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_string())
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&ids[0])
        .expect("base64");
    assert_eq!(String::from_utf8(decoded).expect("utf8"), "MemberNode:1");
    let node = client
        .data(
            "query($id: ID!) { node(id: $id) { __typename id ... on MemberNode { name } } }",
            json!({ "id": ids[2] }),
        )
        .await;
    assert_eq!(node["node"]["__typename"], "MemberNode");
    assert_eq!(node["node"]["id"], json!(ids[2]));

    let unknown = base64::engine::general_purpose::STANDARD.encode("MemberNode:999999");
    let other_type = base64::engine::general_purpose::STANDARD.encode("Staff:1");
    let batch = client
        .data(
            "query($ids: [ID!]!) { membersByIds(ids: $ids) { id } }",
            json!({ "ids": [ids[2], "not-an-id", unknown, other_type, ids[0]] }),
        )
        .await;
    assert_eq!(
        batch["membersByIds"],
        json!([{ "id": ids[2] }, null, null, null, { "id": ids[0] }])
    );
    assert!(client
        .error("{ member(id: \"garbage\") { id } }", json!({}))
        .await
        .contains("MemberNode"));
    let far = base64::engine::general_purpose::STANDARD.encode(format!("arrayconnection:{}", u64::MAX));
    let past_the_end = client
        .data(
            "query($a: String) { members(after: $a) { edges { cursor } pageInfo { hasNextPage endCursor } } }",
            json!({ "a": far }),
        )
        .await;
    assert_eq!(
        past_the_end["members"],
        json!({ "edges": [], "pageInfo": { "hasNextPage": false, "endCursor": null } })
    );
    let second = client
        .data(
            "query($a: String) { members(first: 2, after: $a) { edges { cursor node { id } } } }",
            json!({ "a": base64::engine::general_purpose::STANDARD.encode("arrayconnection:0") }),
        )
        .await;
    assert_eq!(
        second["members"]["edges"][0]["node"]["id"],
        json!(ids[1]),
        "after continues at offset + 1"
    );

    let contracts = start(Service::Contracts, &opts(1000)).await;
    let batch = Client::of(&contracts)
        .data("{ contracts_by_ids(ids: [3, 999999, 1, 3]) { id } }", json!({}))
        .await;
    assert_eq!(
        batch["contracts_by_ids"],
        json!([{ "id": 3 }, null, { "id": 1 }, { "id": 3 }])
    );
}

/// `batch` answers exactly the rows of `list` whose `key` is in `keys`.
async fn assert_flat_batch(client: &Client, list: &str, batch: &str, key: &str, keys: Value) {
    let all = client.data(list, json!({})).await;
    let all = all
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_array)
        .expect("list");
    let wanted: HashSet<String> = keys
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k.to_string().replace('"', ""))
        .collect();
    let expected: Vec<&Value> = all
        .iter()
        .filter(|row| wanted.contains(&row[key].to_string().replace('"', "")))
        .collect();
    let got = client.data(batch, json!({ "keys": keys })).await;
    let got = got
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_array)
        .expect("batch");
    assert!(!expected.is_empty(), "{batch}: the test needs some matching rows");
    assert_eq!(got.iter().collect::<Vec<_>>(), expected, "{batch}");
}

#[tokio::test]
async fn one_to_many_batches_answer_exactly_the_rows_with_those_keys() {
    let running = tessera_subgraphs::spawn_all(LOCALHOST, 0, &opts(1000))
        .await
        .expect("start");
    let client = |s: Service| Client::of(running.iter().find(|r| r.service == s).expect("running"));
    assert_flat_batch(
        &client(Service::Accounts),
        "{ accounts(limit: 100000) { id memberId bankName } }",
        "query($keys: [Int!]!) { accountsByMemberIds(memberIds: $keys) { id memberId bankName } }",
        "memberId",
        json!([1, 2, 3, 5, 8, 13, 21, 34, 99999]),
    )
    .await;
    assert_flat_batch(
        &client(Service::Settlements),
        "{ settlements(limit: 100000) { id contractId amount status } }",
        "query($keys: [Int!]!) { settlementsByContractIds(contractIds: $keys) { id contractId amount status } }",
        "contractId",
        json!([4, 1, 9, 16, 25, 36, 49]),
    )
    .await;
    assert_flat_batch(
        &client(Service::Reviews),
        "{ reviews(limit: 100000) { id productId rating } }",
        "query($keys: [ID!]!) { reviewsByProductIds(productIds: $keys) { id productId rating } }",
        "productId",
        json!(["1", "2", "3", "10", "20"]),
    )
    .await;
    assert_flat_batch(
        &client(Service::Reviews),
        "{ reviews(limit: 100000) { id authorId rating } }",
        "query($keys: [Int!]!) { reviewsByAuthorIds(authorIds: $keys) { id authorId rating } }",
        "authorId",
        json!((1..60).collect::<Vec<_>>()),
    )
    .await;
    let filtered = client(Service::Contracts)
        .data(
            "{ contracts(member_ids: [1, 2, 3], limit: 10000) { member_id } }",
            json!({}),
        )
        .await;
    let members: HashSet<i64> = filtered["contracts"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|c| c["member_id"].as_i64())
        .collect();
    assert!(
        !members.is_empty() && members.is_subset(&HashSet::from([1, 2, 3])),
        "{members:?}"
    );
}

#[tokio::test]
async fn writes_emit_versioned_change_events_and_show_up_in_polls() {
    let sink = Arc::new(ChannelSink::new(64));
    let mut events = sink.subscribe();
    let opts = ServiceOptions {
        scale: 1000,
        sink: sink.clone(),
        ..ServiceOptions::default()
    };
    let contracts = start(Service::Contracts, &opts).await;
    let client = Client::of(&contracts);
    let created = client
        .data(
            r#"mutation { create_contract(input: { title: "강남 오피스 청소 용역", member_id: 7, manager_id: 2,
                amount: 1500000, start_date: "2025-01-01" }) { id status updated_at } }"#,
            json!({}),
        )
        .await["create_contract"]
        .clone();
    assert_eq!(created["status"], "DRAFT");
    let id = created["id"].as_i64().expect("id");
    assert_eq!(id, 1001, "ids continue after the seed");
    let updated = client
        .data(
            r#"mutation($id: Int!) { update_contract(id: $id, input: { status: ACTIVE, end_date: "2025-12-31" }) {
                id status end_date updated_at } }"#,
            json!({ "id": id }),
        )
        .await["update_contract"]
        .clone();
    assert_eq!(updated["status"], "ACTIVE");
    assert!(updated["updated_at"].as_str() > created["updated_at"].as_str());
    let polled = client
        .data(
            "query($t: DateTime) { contracts(updated_after: $t) { id } contracts_count(updated_after: $t) }",
            json!({ "t": created["updated_at"] }),
        )
        .await;
    assert_eq!(polled["contracts"], json!([{ "id": id }]));
    assert_eq!(polled["contracts_count"], json!(1));
    let bad_dates = client
        .error(
            "mutation($id: Int!) { update_contract(id: $id, input: { end_date: \"2020-01-01\" }) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert!(bad_dates.contains("end_date"), "{bad_dates}");
    let deleted = client
        .data(
            "mutation($id: Int!) { delete_contract(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(deleted["delete_contract"], json!(true));
    let again = client
        .data(
            "mutation($id: Int!) { delete_contract(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(again["delete_contract"], json!(false));
    let missing = client
        .data(
            r#"mutation { update_contract(id: 999999, input: { title: "x" }) { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(missing["update_contract"], Value::Null);

    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("event")
            .expect("open");
        seen.push(event);
    }
    assert!(
        events.try_recv().is_err(),
        "no events for failed or missing writes"
    );
    let shape: Vec<(ChangeOp, u64)> = seen.iter().map(|e| (e.op, e.version)).collect();
    assert_eq!(
        shape,
        [
            (ChangeOp::Create, 1),
            (ChangeOp::Update, 2),
            (ChangeOp::Delete, 3)
        ]
    );
    for event in &seen {
        assert_eq!(
            (event.service.as_str(), event.type_name.as_str()),
            ("contracts", "Contract")
        );
        assert_eq!(event.id, EventId::Int(id));
    }
    assert!(seen.windows(2).all(|w| w[0].at < w[1].at));

    // members: payloads, Relay ids in events, ok=false on a missing row.
    let members = start(Service::Members, &opts).await;
    let client = Client::of(&members);
    let created = client
        .data(
            r#"mutation { createMember(input: { name: "김민준", email: "minjun@example.com", kind: CUSTOMER }) { ok member { id grade } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(created["createMember"]["ok"], json!(true));
    assert_eq!(created["createMember"]["member"]["grade"], "BRONZE");
    let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("event")
        .expect("open");
    assert_eq!(
        event.id,
        EventId::Str(
            created["createMember"]["member"]["id"]
                .as_str()
                .expect("id")
                .to_string()
        )
    );
    let missing = base64::engine::general_purpose::STANDARD.encode("MemberNode:999999");
    let update = client
        .data(
            "mutation($id: ID!) { updateMember(id: $id, input: { grade: VIP }) { ok member { id } } deleteMember(id: $id) { ok deletedId } }",
            json!({ "id": missing }),
        )
        .await;
    assert_eq!(
        update,
        json!({ "updateMember": { "ok": false, "member": null }, "deleteMember": { "ok": false, "deletedId": null } })
    );
}

#[tokio::test]
async fn stats_count_requests_operations_and_root_fields() {
    let staff = start(Service::Staff, &opts(1000)).await;
    let client = Client::of(&staff);
    let data = client
        .data("{ a: staff(id: 1) { id } b: staff(id: 2) { id } }", json!({}))
        .await;
    assert_eq!(data, json!({ "a": { "id": 1 }, "b": { "id": 2 } }));
    let stats = client.get_json("/stats").await;
    assert_eq!(stats["service"], "staff");
    assert_eq!(stats["requests"], json!(1));
    assert_eq!(stats["operations"], json!(1));
    assert_eq!(stats["fields"]["staff"], json!({ "calls": 2, "keys": 2 }));
    let (status, reset) = client.post_json("/stats/reset", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        reset,
        json!({ "service": "staff", "requests": 0, "operations": 0, "fields": {} })
    );

    let members = start(Service::Members, &opts(1000)).await;
    let client = Client::of(&members);
    let ids: Vec<String> = (1..=4)
        .map(|pk| base64::engine::general_purpose::STANDARD.encode(format!("MemberNode:{pk}")))
        .collect();
    client
        .data(
            "query($ids: [ID!]!) { membersByIds(ids: $ids) { id } members(first: 1) { totalCount } }",
            json!({ "ids": ids }),
        )
        .await;
    let stats = client.get_json("/stats").await;
    assert_eq!(stats["fields"]["membersByIds"], json!({ "calls": 1, "keys": 4 }));
    assert_eq!(stats["fields"]["members"], json!({ "calls": 1, "keys": 0 }));
}

#[tokio::test]
async fn faults_take_a_service_down_break_it_and_slow_it() {
    let staff = start(Service::Staff, &opts(1000)).await;
    let client = Client::of(&staff);
    let query = json!({ "query": "{ staff(id: 1) { id } }" });
    let post = || {
        client
            .http
            .post(format!("{}/graphql", client.base))
            .json(&query)
            .send()
    };

    let (status, faults) = client.post_json("/faults", json!({ "down": true })).await;
    assert_eq!(status, 200);
    assert_eq!(
        faults,
        json!({ "latency_ms": 0, "error_ratio": 0.0, "down": true, "garbage": false, "error_when": null })
    );
    let response = post().await.expect("answers");
    assert_eq!(response.status(), 503);
    assert!(response.text().await.expect("body").contains("503"));

    client
        .post_json("/faults", json!({ "down": false, "error_ratio": 1.0 }))
        .await;
    let response = post().await.expect("answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL_SERVER_ERROR");

    client
        .post_json("/faults", json!({ "error_ratio": 0.0, "garbage": true }))
        .await;
    let response = post().await.expect("answers");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "garbage must not parse: {text}"
    );

    client
        .post_json("/faults", json!({ "garbage": false, "latency_ms": 150 }))
        .await;
    let started = Instant::now();
    assert_eq!(post().await.expect("answers").status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.get_json("/faults").await["latency_ms"], json!(150));

    let (status, _) = client.post_json("/faults", json!({ "error_ratio": 2.0 })).await;
    assert_eq!(status, 400);
    let (status, _) = client.post_json("/faults", json!({ "nonsense": true })).await;
    assert!((400..500).contains(&status), "{status}");
    let stats = client.get_json("/stats").await;
    assert_eq!(stats["requests"], json!(4), "faulted requests count too");
    assert_eq!(stats["operations"], json!(1), "only the slow one ran");

    // events is slow by itself when asked to be; the others never are.
    let slow = ServiceOptions {
        scale: 1000,
        base_latency: Duration::from_millis(120),
        ..ServiceOptions::default()
    };
    let events = start(Service::Events, &slow).await;
    let started = Instant::now();
    Client::of(&events).data("{ eventsTotal }", json!({})).await;
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn products_speak_federation_only_when_asked() {
    let products = start(Service::Products, &opts(1000)).await;
    let client = Client::of(&products);
    let data = client
        .data(
            r#"query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { id name } } }"#,
            json!({ "r": [
                { "__typename": "Product", "id": "3" },
                { "__typename": "Product", "id": "1" },
                { "__typename": "Product", "id": "999999" }
            ] }),
        )
        .await;
    let entities = data["_entities"].as_array().expect("list");
    assert_eq!(entities.len(), 3);
    assert_eq!(
        (entities[0]["id"].clone(), entities[1]["id"].clone()),
        (json!("3"), json!("1"))
    );
    assert_eq!(entities[2], Value::Null);
    let sdl = client.data("{ _service { sdl } }", json!({})).await;
    assert!(sdl["_service"]["sdl"]
        .as_str()
        .expect("sdl")
        .contains("@key(fields: \"id\")"));
    let stats = client.get_json("/stats").await;
    assert_eq!(stats["fields"]["_entities"], json!({ "calls": 1, "keys": 3 }));

    let plain = start(
        Service::Products,
        &ServiceOptions {
            scale: 1000,
            federation: false,
            ..ServiceOptions::default()
        },
    )
    .await;
    let client = Client::of(&plain);
    let error = client
        .error(
            r#"{ _entities(representations: [{ __typename: "Product", id: "1" }]) { __typename } }"#,
            json!({}),
        )
        .await;
    assert!(error.contains("_entities"), "{error}");
    assert!(client
        .error("{ _service { sdl } }", json!({}))
        .await
        .contains("_service"));
    let ordered = client
        .data(
            r#"{ products(limit: 3, order_by: "-registered_at") { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(ordered["products"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn bad_input_is_a_graphql_error() {
    let running = tessera_subgraphs::spawn_all(LOCALHOST, 0, &opts(1000))
        .await
        .expect("start");
    let client = |s: Service| Client::of(running.iter().find(|r| r.service == s).expect("running"));
    let cases = [
        (Service::Contracts, "{ contracts(limit: 10001) { id } }", "limit"),
        (
            Service::Contracts,
            r#"{ contracts(updated_after: "yesterday") { id } }"#,
            "yesterday",
        ),
        (
            Service::Members,
            "{ members(first: 1001) { totalCount } }",
            "first",
        ),
        (
            Service::Members,
            r#"{ members(after: "bm9wZQ==") { totalCount } }"#,
            "cursor",
        ),
        (Service::Staff, "{ allStaff(offset: -1) { id } }", "offset"),
        (Service::Posts, r#"{ post(id: "abc") { id } }"#, "abc"),
        (
            Service::Products,
            r#"{ products(order_by: "price") { id } }"#,
            "-registered_at",
        ),
        (
            Service::Reviews,
            r#"mutation { createReview(productId: "1", authorId: 1, rating: 6, body: "x") { id } }"#,
            "rating",
        ),
        (
            Service::Settlements,
            r#"mutation { createSettlement(contractId: 1, amount: "1.234", scheduledOn: "2025-01-01") { id } }"#,
            "decimal",
        ),
        (
            Service::Events,
            r#"mutation { createEvent(hostId: 1, title: "t", location: "l", startsAt: "2025-01-02T00:00:00Z", endsAt: "2025-01-01T00:00:00Z") { id } }"#,
            "endsAt",
        ),
    ];
    for (service, query, mention) in cases {
        let message = client(service).error(query, json!({})).await;
        assert!(message.contains(mention), "{service}: {query} -> {message}");
    }
}

#[tokio::test]
async fn posts_pages_walk_created_at_desc_consistently() {
    let posts = start(Service::Posts, &opts(1000)).await;
    let client = Client::of(&posts);
    // Posts created now share whole-second timestamps: ties to break by id.
    for i in 0..6 {
        client
            .data(
                "mutation($t: String!) { createPost(authorId: \"1\", title: $t, body: \"b\", tags: [\"tie\"]) { id } }",
                json!({ "t": format!("tie {i}") }),
            )
            .await;
    }
    let all = client
        .data("{ posts(first: 1000) { id createdAt } }", json!({}))
        .await["posts"]
        .as_array()
        .expect("rows")
        .clone();
    assert_eq!(all.len(), 506);
    let bound = all[300]["createdAt"].as_str().expect("time").to_string();
    let key = |p: &Value| {
        (
            p["createdAt"].as_str().unwrap_or("").to_string(),
            p["id"].as_str().unwrap_or("").parse::<i64>().unwrap_or(0),
        )
    };
    let mut expected: Vec<(String, i64)> = all.iter().map(key).filter(|(t, _)| *t <= bound).collect();
    expected.sort_by(|a, b| b.cmp(a));
    let count = client
        .data(
            "query($b: DateTime) { postsCount(createdAtLte: $b) }",
            json!({ "b": bound }),
        )
        .await;
    assert_eq!(count["postsCount"], json!(expected.len()));

    // Offset pages under a fixed bound.
    let mut by_skip = Vec::new();
    for skip in (0..).step_by(37) {
        let page = client
            .data(
                "query($b: DateTime, $s: Int) { posts(first: 37, skip: $s, createdAtLte: $b, orderBy: CREATED_AT_DESC) { id createdAt } }",
                json!({ "b": bound, "s": skip }),
            )
            .await["posts"]
            .as_array()
            .expect("rows")
            .clone();
        if page.is_empty() {
            break;
        }
        by_skip.extend(page.iter().map(key));
    }
    assert_eq!(by_skip, expected);

    // Keyset pages: the next bound is the last time seen, skipping the rows of that time already seen.
    let mut by_key: Vec<(String, i64)> = Vec::new();
    let mut bound_now = bound.clone();
    loop {
        let seen_at_bound = by_key.iter().rev().take_while(|(t, _)| *t == bound_now).count();
        let page = client
            .data(
                "query($b: DateTime, $s: Int) { posts(first: 50, skip: $s, createdAtLte: $b, orderBy: CREATED_AT_DESC) { id createdAt } }",
                json!({ "b": bound_now, "s": seen_at_bound }),
            )
            .await["posts"]
            .as_array()
            .expect("rows")
            .clone();
        if page.is_empty() {
            break;
        }
        by_key.extend(page.iter().map(key));
        bound_now = by_key.last().map(|(t, _)| t.clone()).unwrap_or_default();
    }
    assert_eq!(by_key, expected);

    // The ties among the new posts come out by id descending, then ascending.
    let newest = client
        .data(
            "{ posts(first: 6, orderBy: CREATED_AT_DESC) { id createdAt } }",
            json!({}),
        )
        .await["posts"]
        .as_array()
        .expect("rows")
        .iter()
        .map(key)
        .collect::<Vec<_>>();
    let mut sorted = newest.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(newest, sorted);
    let oldest_first = client
        .data(
            "{ posts(first: 5, orderBy: CREATED_AT_ASC) { id createdAt } }",
            json!({}),
        )
        .await["posts"]
        .as_array()
        .expect("rows")
        .iter()
        .map(key)
        .collect::<Vec<_>>();
    let mut asc = all.iter().map(key).collect::<Vec<_>>();
    asc.sort();
    assert_eq!(oldest_first, asc[..5]);
}

#[tokio::test]
async fn the_webhook_sink_posts_events_and_never_blocks_writes() {
    use axum::{extract::State, http::StatusCode, routing::post, Json, Router};

    // A receiver that refuses the first delivery: the sink must retry it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ChangeEvent>();
    let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = Router::new()
        .route(
            "/hook",
            post(
                |State((tx, refused)): State<(
                    tokio::sync::mpsc::UnboundedSender<ChangeEvent>,
                    Arc<std::sync::atomic::AtomicBool>,
                )>,
                 Json(event): Json<ChangeEvent>| async move {
                    if !refused.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let _ = tx.send(event);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state((tx, refused));
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let sink = Arc::new(WebhookSink::spawn(hook, 16));
    let staff = start(
        Service::Staff,
        &ServiceOptions {
            scale: 1000,
            sink: sink.clone(),
            ..ServiceOptions::default()
        },
    )
    .await;
    let client = Client::of(&staff);
    let created = client
        .data(r#"mutation { createStaff(name: "Grace Kim", email: "grace@tessera.co.kr", department: "정산팀", title: "대리") { id } }"#, json!({}))
        .await;
    let id = created["createStaff"]["id"].as_i64().expect("id");
    let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("delivered")
        .expect("open");
    assert_eq!(
        (event.service.as_str(), event.id.clone(), event.op, event.version),
        ("staff", EventId::Int(id), ChangeOp::Create, 1)
    );

    // A dead webhook: writes still answer at once; overflow is counted, not waited for.
    let dead = Arc::new(WebhookSink::spawn("http://127.0.0.1:9/nowhere", 2));
    let staff = start(
        Service::Staff,
        &ServiceOptions {
            scale: 1000,
            sink: dead.clone(),
            ..ServiceOptions::default()
        },
    )
    .await;
    let client = Client::of(&staff);
    let started = Instant::now();
    for i in 0..10 {
        client
            .data(
                &format!("mutation {{ updateStaff(id: 1, title: \"t{i}\") {{ id }} }}"),
                json!({}),
            )
            .await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(dead.dropped() >= 6, "dropped {}", dead.dropped());
}
