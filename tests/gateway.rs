//! The gateway over real HTTP in front of the nine real services: root
//! delegation, mutations, the HTTP surface, and bad input.

mod common;

use common::{include_ladder, Stack, StackOptions};
use serde_json::{json, Value};

#[tokio::test]
async fn one_query_reads_members_contracts_and_posts() {
    let stack = Stack::start().await;
    let data = stack
        .data(
            "{ members(first: 3) { totalCount edges { node { id name grade } } }
               contracts(limit: 3) { id contractNo title amount status createdAt }
               posts(first: 3) { id title authorId createdAt } }",
            json!({}),
        )
        .await;
    let edges = data["members"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 3);
    // Relay ids become plain ids.
    assert_eq!(edges[0]["node"]["id"], "1");
    assert!(data["members"]["totalCount"].as_i64().expect("count") >= 3);
    let contracts = data["contracts"].as_array().expect("contracts");
    assert_eq!(contracts.len(), 3);
    // `id: Int` in the service is `ID` here: a string.
    assert_eq!(contracts[0]["id"], "1");
    assert!(contracts[0]["contractNo"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(data["posts"].as_array().expect("posts").len(), 3);

    // The same rows as the services hold.
    let direct = stack
        .subgraph(
            "contracts",
            "{ contracts(limit: 3) { id contract_no title amount } }",
            json!({}),
        )
        .await;
    for (ours, theirs) in contracts
        .iter()
        .zip(direct["contracts"].as_array().expect("rows"))
    {
        assert_eq!(ours["contractNo"], theirs["contract_no"]);
        assert_eq!(ours["title"], theirs["title"]);
        assert_eq!(ours["amount"], theirs["amount"]);
    }
}

/// A selection of only `__typename` asks the subgraph for `__typename`
/// (the plan answers it); an empty selection set `{}` is not GraphQL.
#[tokio::test]
async fn a_selection_of_only_typename_is_a_valid_subgraph_request() {
    let stack = Stack::start().await;
    let data = stack
        .data(
            "{ contracts(limit: 2) { __typename } contract(id: 1) { __typename member { __typename } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data,
        json!({
            "contracts": [{ "__typename": "Contract" }, { "__typename": "Contract" }],
            "contract": { "__typename": "Contract", "member": { "__typename": "Member" } }
        })
    );
}

#[tokio::test]
async fn arguments_are_renamed_and_converted() {
    let stack = Stack::start().await;
    let data = stack
        .data(
            "query($m: ID!) { member(id: $m) { id name } contracts(memberId: $m, limit: 50) { memberId } staff(id: 2) { id } }",
            json!({ "m": "5" }),
        )
        .await;
    assert_eq!(data["member"]["id"], "5");
    for c in data["contracts"].as_array().expect("contracts") {
        assert_eq!(c["memberId"], "5");
    }
    assert_eq!(data["staff"]["id"], "2");

    // Integer literals for `ID` arguments, Relay-encoded or not.
    let data = stack
        .data("{ member(id: 3) { id } contract(id: 4) { id } }", json!({}))
        .await;
    assert_eq!(data["member"]["id"], "3");
    assert_eq!(data["contract"]["id"], "4");
}

/// An argument whose variable the request leaves unset is not given
/// (spec §6.4.1): the services read a declared, unsent variable as null, so
/// the gateway sends the field without it. `phone: $p` without `$p` cleared
/// the phone.
#[tokio::test]
async fn an_argument_bound_to_an_unset_variable_is_left_out() {
    let stack = Stack::start().await;
    let set = stack
        .data(
            "mutation { updateStaff(id: 2, phone: \"010-1234-5678\") { phone } }",
            json!({}),
        )
        .await;
    assert_eq!(set["updateStaff"]["phone"], "010-1234-5678");
    let kept = stack
        .data(
            "mutation($p: String, $n: String) { updateStaff(id: 2, name: $n, phone: $p) { name phone } }",
            json!({ "n": "Kim" }),
        )
        .await;
    assert_eq!(
        kept["updateStaff"],
        json!({ "name": "Kim", "phone": "010-1234-5678" })
    );
    // Sent as null, it is cleared.
    let cleared = stack
        .data(
            "mutation($p: String) { updateStaff(id: 2, phone: $p) { phone } }",
            json!({ "p": null }),
        )
        .await;
    assert_eq!(cleared["updateStaff"]["phone"], Value::Null);
}

#[tokio::test]
async fn mutations_run_in_order_through_the_gateway() {
    let stack = Stack::start().await;
    let (status, body) = stack
        .post(json!({
            "query": "mutation($in: CreateContractInput!) {
                a: createContract(input: $in) { id title memberId amount status }
                b: updateContract(id: 1, input: { title: \"Renamed\" }) { id title }
            }",
            "variables": { "in": { "title": "새 계약", "memberId": "7", "managerId": "3", "amount": 1500000, "startDate": "2026-01-01" } }
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let created = &body["data"]["a"];
    assert_eq!(created["title"], "새 계약");
    assert_eq!(created["memberId"], "7");
    assert_eq!(created["status"], "DRAFT");
    assert_eq!(body["data"]["b"]["title"], "Renamed");
    let id = created["id"].as_str().expect("id").to_string();
    let data = stack
        .data(
            "query($id: ID!) { contract(id: $id) { title } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["contract"]["title"], "새 계약");

    let data = stack
        .data(
            "mutation { createMember(input: { name: \"Ada Lovelace\", email: \"ada@example.com\", kind: CUSTOMER }) { ok member { id name grade } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["createMember"]["ok"], true);
    assert_eq!(data["createMember"]["member"]["grade"], "BRONZE");
    let member_id = data["createMember"]["member"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(member_id.parse::<u64>().is_ok(), "plain id, got {member_id}");
    let data = stack
        .data(
            "query($id: ID!) { member(id: $id) { name } }",
            json!({ "id": member_id }),
        )
        .await;
    assert_eq!(data["member"]["name"], "Ada Lovelace");
}

#[tokio::test]
async fn get_requests_health_and_playground() {
    let stack = Stack::start().await;
    let url = format!(
        "{}?query={}",
        stack.gateway, "%7B%20staff(id%3A%201)%20%7B%20id%20%7D%20%7D"
    );
    let body: Value = stack
        .client
        .get(&url)
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(body["data"]["staff"]["id"], "1");

    // Without a header a cross-site page cannot send, a GET is refused
    // (Apollo's CSRF prevention): an <img src> must not run queries.
    let response = stack.client.get(&url).send().await.expect("GET");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "CSRF_PREVENTED");

    let page = stack
        .client
        .get(&stack.gateway)
        .header("accept", "text/html")
        .send()
        .await
        .expect("playground");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("GraphiQL") && html.contains("ContractsPage"),
        "playground with examples"
    );

    let health: Value = stack
        .client
        .get(stack.gateway.replace("/graphql", "/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "UP");

    // Mutations need POST.
    let url = format!(
        "{}?query={}",
        stack.gateway, "mutation%20%7B%20deleteStaff(id%3A%201)%20%7D"
    );
    let response = stack
        .client
        .get(&url)
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let still_there = stack.data("{ staff(id: 1) { id } }", json!({})).await;
    assert_eq!(still_there["staff"]["id"], "1");
}

#[tokio::test]
async fn introspection_and_typename_are_answered() {
    let stack = Stack::start().await;
    let data = stack
        .data(
            "{ __typename __type(name: \"Contract\") { fields { name } } contracts(limit: 1) { __typename id } }",
            json!({}),
        )
        .await;
    assert_eq!(data["__typename"], "Query");
    assert_eq!(data["contracts"][0]["__typename"], "Contract");
    let fields: Vec<&str> = data["__type"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        fields.contains(&"contractNo") && fields.contains(&"member"),
        "{fields:?}"
    );
    // Tessera's directives are not part of the client schema.
    let data = stack
        .data("{ __schema { directives { name } } }", json!({}))
        .await;
    let names: Vec<&str> = data["__schema"]["directives"]
        .as_array()
        .expect("directives")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"owner") && !names.contains(&"delegate"),
        "{names:?}"
    );

    // What GraphiQL and code generators send (graphql-js's
    // getIntrospectionQuery) is answered.
    let data = stack.data(STANDARD_INTROSPECTION, json!({})).await;
    assert!(
        data["__schema"]["types"].as_array().is_some_and(|t| t.len() > 20),
        "{data}"
    );
    // Introspection lists nested three deep multiply the answer (11 levels
    // of this answered 10 MB from 700 bytes): refused, as graphql-js does.
    let (status, body) = stack
        .post(json!({ "query": "{ __type(name: \"Post\") { interfaces { possibleTypes { interfaces { name } } } } }" }))
        .await;
    assert_eq!((status, code(&body)), (400, "MAX_DEPTH_LIMIT"), "{body}");
    let data = stack
        .data(
            "{ __type(name: \"Post\") { interfaces { possibleTypes { name } } } }",
            json!({}),
        )
        .await;
    assert!(data["__type"]["interfaces"].is_array(), "{data}");

    // Fields come in the order they were selected (spec §7.2.2), not sorted.
    let text = stack
        .client
        .post(&stack.gateway)
        .json(&json!({ "query": "{ __type(name: \"Contract\") { name kind description } }" }))
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains(r#"{"__type":{"name":"Contract","kind":"OBJECT","description":"#),
        "{text}"
    );
}

/// Field selection merging (spec §5.3.2): two fields answering under one
/// response name must be one field with one set of arguments wherever they
/// can meet on one object, and have one shape everywhere; async-graphql's
/// rule compared them only under the same type condition and never merged
/// their sub-selections, so each of these answered one field under `x`.
#[tokio::test]
async fn fields_that_cannot_merge_under_one_response_name_are_refused() {
    let stack = Stack::start().await;
    for (bad, why) in [
        (
            "{ contracts(limit: 2) { member { x: name } } contracts(limit: 2) { member { x: email } } }",
            "Fields \"contracts\" conflict because subfields \"member\" conflict because subfields \"x\" conflict because \"name\" and \"email\" are different fields",
        ),
        (
            "{ contract(id: 1) { x: title ... on Contract { x: status } } }",
            "Fields \"x\" conflict because \"title\" and \"status\" are different fields",
        ),
        (
            "{ feed(first: 2) { edges { node { x: id ... on Post { x: title } } } } }",
            "\"id\" and \"title\" are different fields",
        ),
        (
            "{ feed(first: 2) { edges { node { ... on Post { x: likeCount } ... on Event { x: location } } } } }",
            "they return conflicting types \"Int!\" and \"String!\"",
        ),
        (
            "query($a: Int, $b: Int) { contracts(limit: $a) { id } contracts(limit: $b) { title } }",
            "they have differing arguments",
        ),
        (
            "{ ...A ...B } fragment A on Query { s: staff(id: 1) { name } } fragment B on Query { s: staff(id: 1) { name: email } }",
            "subfields \"name\" conflict because \"name\" and \"email\" are different fields",
        ),
    ] {
        let (status, body) = stack.post(json!({ "query": bad })).await;
        assert_eq!((status, code(&body)), (400, "GRAPHQL_VALIDATION_FAILED"), "{bad}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{bad}: {body}");
        assert!(
            body["errors"][0]["locations"].as_array().is_some_and(|l| l.len() >= 2),
            "{bad}: {body}"
        );
    }
    // What merges: the same field and arguments (sub-selections joined),
    // the same shape on types that never meet, `__typename` anywhere.
    for (good, expected) in [
        (
            "query($n: Int) { contracts(limit: $n) { id } contracts(limit: $n) { title } }",
            json!({"n": 1}),
        ),
        (
            "{ feed(first: 3) { edges { node { ... on Post { x: title } ... on Product { x: title } ... on Event { x: location } } } } }",
            json!({}),
        ),
        (
            "{ s: staff(id: 1) { id __typename } ...F } fragment F on Query { s: staff(id: 1) { name __typename } }",
            json!({}),
        ),
    ] {
        // (No index here: the feed answers SEARCH_UNAVAILABLE, once valid.)
        let (status, body) = stack.post(json!({ "query": good, "variables": expected })).await;
        assert_eq!(status, 200, "{good}: {body}");
        assert!(
            body.get("errors").is_none() || code(&body) == "SEARCH_UNAVAILABLE",
            "{good}: {body}"
        );
    }
    let body = stack
        .data(
            "query($n: Int) { contracts(limit: $n) { id } contracts(limit: $n) { title } }",
            json!({"n": 1}),
        )
        .await;
    let row = &body["contracts"][0];
    assert!(row["id"].is_string() && row["title"].is_string(), "{body}");
}

/// An explicit `null` for a variable with a default, used where a non-null
/// value is expected, is refused (spec §6.4.1 CoerceArgumentValues) on every
/// request: only one whose plan was not cached yet was; once cached, null
/// was sent on to the service or read as `false`.
#[tokio::test]
async fn an_explicit_null_where_a_non_null_is_expected_is_refused_cached_or_not() {
    let stack = Stack::start().await;
    for (query, omitted) in [
        (
            "query($i: ID = \"1\") { contract(id: $i) { id } }",
            json!({"contract": {"id": "1"}}),
        ),
        (
            "query($s: Boolean = true) { staffCount @skip(if: $s) }",
            json!({}),
        ),
    ] {
        // Omitted, the default applies (and the plan is cached).
        let (status, body) = stack.post(json!({ "query": query })).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body["data"], omitted, "{query}: {body}");
        for _ in 0..2 {
            let (status, body) = stack
                .post(json!({ "query": query, "variables": {"i": null, "s": null} }))
                .await;
            assert_eq!((status, code(&body)), (400, "BAD_USER_INPUT"), "{query}: {body}");
        }
    }
    // Where null is allowed, it is passed.
    let (status, body) = stack
        .post(json!({ "query": "query($n: Int = 3) { contracts(limit: $n) { id } }", "variables": {"n": null} }))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn typename_takes_skip_and_include_like_any_field() {
    let stack = Stack::start().await;
    let query = "query($x: Boolean!) { __typename @include(if: $x) staffCount }";
    let (status, body) = stack
        .post(json!({ "query": query, "variables": { "x": true } }))
        .await;
    assert_eq!(status, 200, "a variable used only by __typename is used: {body}");
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
    let (_, body) = stack
        .post(json!({ "query": query, "variables": { "x": false } }))
        .await;
    assert!(body["data"].get("__typename").is_none(), "{body}");
    for (bad, why) in [
        ("{ __typename @bogus(a: 1) }", "Unknown directive"),
        ("{ __typename @skip }", "is required"),
        ("{ __typename @skip(if: $undefined) }", "is not defined"),
        ("{ __typename(x: 1) }", "Unknown argument"),
    ] {
        let (status, body) = stack.post(json!({ "query": bad })).await;
        assert_eq!(
            (status, code(&body)),
            (400, "GRAPHQL_VALIDATION_FAILED"),
            "{bad}: {body}"
        );
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{bad}: {body}"
        );
    }
}

const STANDARD_INTROSPECTION: &str = "query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}";

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

/// Apollo Client's persisted-queries link, step by step: the hash alone,
/// then the text with it once, then the hash alone again (POST and GET).
#[tokio::test]
async fn automatic_persisted_queries_follow_apollos_protocol() {
    use sha2::{Digest, Sha256};
    let stack = Stack::start().await;
    let query = "{ staff(id: 1) { id name } }";
    let hash: String = Sha256::digest(query.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });

    let (status, body) = stack.post(json!({ "extensions": extensions })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    // GraphQL over HTTP: without `data`, a graphql-response+json answer is 4xx.
    let (status, body) = stack
        .post_with(
            json!({ "extensions": extensions }),
            &[("accept", "application/graphql-response+json")],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");

    // A text that is not the hash's is refused, and not kept.
    let (status, body) = stack
        .post(json!({ "query": "{ staff(id: 2) { id } }", "extensions": extensions }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "PERSISTED_QUERY_HASH_MISMATCH", "{body}");

    // A text that does not parse is answered with its error, and not kept.
    let broken = "{ staff(id: 1) { id ";
    let broken_hash: String = Sha256::digest(broken.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let broken_extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": broken_hash } });
    let (status, body) = stack
        .post(json!({ "query": broken, "extensions": broken_extensions }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "GRAPHQL_PARSE_FAILED", "{body}");
    let (_, body) = stack.post(json!({ "extensions": broken_extensions })).await;
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");

    let (status, registered) = stack
        .post(json!({ "query": query, "extensions": extensions }))
        .await;
    assert_eq!(status, 200, "{registered}");
    assert_eq!(registered["data"]["staff"]["id"], "1", "{registered}");

    let (status, body) = stack.post(json!({ "extensions": extensions })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], registered["data"], "{body}");

    let response = stack
        .client
        .get(&stack.gateway)
        .query(&[("extensions", extensions.to_string())])
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["data"], registered["data"], "{body}");
}

#[tokio::test]
async fn bad_requests_get_spec_shaped_errors() {
    let stack = Stack::start().await;

    // GraphQL over HTTP: the media type the client accepts.
    for (accept, expected) in [
        (None, "application/json"),
        (Some("application/json"), "application/json"),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            "application/graphql-response+json",
        ),
        (Some("application/graphql-response+json;q=0"), "application/json"),
        (Some("application/graphql-response+json;Q=0"), "application/json"),
        // The weights decide, not the order.
        (
            Some("application/json;q=0.9, application/graphql-response+json;q=0.1"),
            "application/json",
        ),
        (
            Some("application/json;q=0.5, application/graphql-response+json"),
            "application/graphql-response+json",
        ),
        (Some("*/*"), "application/json"),
    ] {
        let mut request = stack
            .client
            .post(&stack.gateway)
            .json(&json!({ "query": "{ staff(id: 1) { id } }" }));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.expect("answer");
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(expected),
            "{accept:?}"
        );
    }

    // No Content-Type, or a charset the body is not read in: 415.
    for content_type in [None, Some("application/json; charset=utf-16")] {
        let mut request = stack
            .client
            .post(&stack.gateway)
            .header("apollo-require-preflight", "true")
            .body(r#"{"query":"{ staffCount }"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("answer");
        assert_eq!(response.status(), 415, "{content_type:?}");
    }
    let response = stack
        .client
        .post(&stack.gateway)
        .header("content-type", "application/json; Charset=\"UTF-8\"")
        .body(r#"{"query":"{ staffCount }"}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("vary").and_then(|v| v.to_str().ok()),
        Some("accept")
    );

    // GraphiQL is for a client that names text/html, not one that refuses it.
    for (accept, html) in [
        ("text/html,application/xhtml+xml", true),
        ("text/html;q=0, application/json", false),
    ] {
        let response = stack
            .client
            .get(&stack.gateway)
            .header("accept", accept)
            .header("apollo-require-preflight", "true")
            .send()
            .await
            .expect("answer");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            content_type.starts_with("text/html"),
            html,
            "{accept}: {content_type}"
        );
    }

    // GET: an empty parameter is an absent one; of a repeated one, the first counts.
    let response = stack
        .client
        .get(format!(
            "{}?query=%7BstaffCount%7D&operationName=&variables=&extensions=&query=%7Bnope%7D",
            stack.gateway
        ))
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body["data"]["staffCount"].is_number(), "{body}");

    // A body that is not JSON.
    let response = stack
        .client
        .post(&stack.gateway)
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(code(&body), "BAD_REQUEST");
    assert!(body.get("data").is_none());

    // A form post (what a cross-site page can send without a preflight).
    let response = stack
        .client
        .post(&stack.gateway)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("query=mutation{deleteContract(id:1)}")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(code(&body), "CSRF_PREVENTED");

    // With a preflight-forcing header it is simply the wrong media type.
    let response = stack
        .client
        .post(&stack.gateway)
        .header("content-type", "text/plain")
        .header("apollo-require-preflight", "true")
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.expect("json");
    assert_eq!(code(&body), "UNSUPPORTED_MEDIA_TYPE");

    // A compressed body is not read as (bad) JSON: the encoding is refused.
    let response = stack
        .client
        .post(&stack.gateway)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.expect("json");
    assert_eq!(code(&body), "UNSUPPORTED_MEDIA_TYPE", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("gzip")),
        "{body}"
    );

    let cases = [
        (json!({}), "BAD_REQUEST"),
        (
            json!({ "query": "{ contracts(limit: 1) { id " }),
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            json!({ "query": "{ contracts { nope } }" }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            json!({ "query": "query A { staff(id: 1) { id } }", "operationName": "B" }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            json!({ "query": "query A { staff(id: 1) { id } } query B { staff(id: 2) { id } }" }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        // Rules the parser applies are validation's all the same.
        (
            json!({ "query": "query A { staffCount } query A { staffCount }", "operationName": "A" }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            json!({ "query": "{ staffCount } query B { staffCount }" }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            json!({ "query": "{ ...F } fragment F on Query { staffCount } fragment F on Query { staffCount }" }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            json!({ "query": "query($n: Int!) { contracts(limit: $n) { id } }", "variables": { "n": "ten" } }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "query": "query($n: Int!) { contracts(limit: $n) { id } }" }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "query": "query($s: ContractStatus) { contracts(status: $s) { id } }", "variables": { "s": "SIGNED" } }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "query": "{ staff(id: 1) { id } }", "variables": [1, 2] }),
            "BAD_REQUEST",
        ),
        (
            json!({ "query": "{ staff(id: 1) { id } }", "extensions": 5 }),
            "BAD_REQUEST",
        ),
    ];
    // An operation type the schema lacks: one error, once.
    let (status, body) = stack
        .post(json!({ "query": "subscription { __typename }" }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{body}");

    // A batch and a bare value say what the body is.
    for (request, said) in [
        (
            json!([{ "query": "{ staff(id: 1) { id } }" }]),
            "batched requests",
        ),
        (json!(5), "must be a JSON object"),
    ] {
        let (status, body) = stack.post(request.clone()).await;
        assert_eq!(status, 400, "{request} → {body}");
        assert_eq!(code(&body), "BAD_REQUEST", "{request} → {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(said), "{request} → {body}");
    }
    for (request, expected) in cases {
        let (status, body) = stack.post(request.clone()).await;
        assert_eq!(status, 400, "{request} → {body}");
        assert_eq!(code(&body), expected, "{request} → {body}");
        assert!(body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    // Two operations and a name: the named one runs.
    let data = stack
        .post(json!({ "query": "query A { staff(id: 1) { id } } query B { staff(id: 2) { id } }", "operationName": "B" }))
        .await
        .1;
    assert_eq!(data["data"]["staff"]["id"], "2");
}

#[tokio::test]
async fn a_dead_subgraph_nulls_only_its_fields() {
    let stack = Stack::start().await;
    stack.faults("posts", json!({ "down": true })).await;
    let (status, body) = stack
        .post(json!({ "query": "{ posts(first: 2) { id } contracts(limit: 2) { id } }" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["contracts"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    assert_eq!(body["data"]["posts"], Value::Null);
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "SUBGRAPH_REQUEST_FAILED", "{body}");
    assert_eq!(error["extensions"]["subgraph"], "posts");
    assert_eq!(error["path"], json!(["posts"]));
}

#[tokio::test]
async fn the_plan_is_returned_on_request() {
    let stack = Stack::start().await;
    let query = json!({ "query": "{ contracts(limit: 2) { id manager { name } } }" });
    let (_, plain) = stack.post(query.clone()).await;
    assert!(plain.get("extensions").is_none());
    let (status, body) = stack.post_with(query, &[("tessera-include-plan", "true")]).await;
    assert_eq!(status, 200);
    let plan = body["extensions"]["queryPlan"].as_str().expect("plan text");
    assert!(
        plan.contains("Fetch(service: \"contracts\")") && plan.contains("Lookup(service: \"staff\", alias"),
        "{plan}"
    );
}

#[tokio::test]
async fn an_interface_across_two_services_is_merged_in_order() {
    let stack = Stack::start().await;
    let data = stack
        .data(
            "{ member(id: 3) { posts { id } products { id }
               activity { __typename id title createdAt ... on Post { likeCount } ... on Product { price } } } }",
            json!({}),
        )
        .await;
    let member = &data["member"];
    let activity = member["activity"].as_array().expect("activity");
    let posts = member["posts"].as_array().map_or(0, Vec::len);
    let products = member["products"].as_array().map_or(0, Vec::len);
    assert_eq!(activity.len(), posts + products);
    assert!(
        posts + products > 0,
        "member 3 has some activity to merge: {data}"
    );
    let dates: Vec<&str> = activity.iter().filter_map(|a| a["createdAt"].as_str()).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first: {dates:?}");
    for item in activity {
        match item["__typename"].as_str() {
            Some("Post") => assert!(item["likeCount"].is_number() && item.get("price").is_none()),
            Some("Product") => assert!(item["price"].is_string() && item.get("likeCount").is_none()),
            other => panic!("unexpected type {other:?}"),
        }
    }
}

#[test]
fn the_default_config_points_at_the_demo_ports() {
    let ours: Vec<(String, u16)> = tessera::config::DEMO_SUBGRAPHS
        .iter()
        .map(|(n, p)| (n.to_string(), *p))
        .collect();
    let theirs: Vec<(String, u16)> = tessera_subgraphs::Service::ALL
        .iter()
        .map(|s| (s.name().to_string(), s.default_port()))
        .collect();
    assert_eq!(ours, theirs);
}

#[tokio::test]
async fn exponential_fragment_expansion_is_refused_before_validation() {
    let stack = Stack::start().await;
    // Each level spreads the next twice: 2^30 fields once expanded.
    let mut query = String::from("{ contracts(limit: 1) { ...F0 } }");
    for i in 0..30 {
        query.push_str(&format!(
            " fragment F{i} on Contract {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    query.push_str(" fragment F30 on Contract { id }");
    let started = std::time::Instant::now();
    let (status, body) = stack.post(json!({ "query": query })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("expanded"),
        "{body}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered at once"
    );
}

#[tokio::test]
async fn a_fragment_chain_ending_in_an_unknown_fragment_or_a_cycle_is_refused_at_once() {
    let stack = Stack::start().await;
    // Each level spreads the next twice, and the last spreads a fragment
    // that is missing, or the first: counted as nothing, the spreads passed
    // the expansion bound and cost the checks after it 2^30 steps.
    for (tail, message) in [
        ("...Missing", "Unknown fragment: \"Missing\""),
        ("...F0", "Cannot spread fragment \"F0\""),
    ] {
        let mut query = String::from("{ contracts(limit: 1) { ...F0 } }");
        for i in 0..30 {
            query.push_str(&format!(
                " fragment F{i} on Contract {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        query.push_str(&format!(" fragment F30 on Contract {{ {tail} }}"));
        let started = std::time::Instant::now();
        let (status, body) = stack.post(json!({ "query": query })).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
        assert_eq!(body["errors"][0]["message"], message, "{body}");
        assert!(body["errors"][0]["locations"][0]["line"].is_number(), "{body}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "answered at once"
        );
    }
}

#[tokio::test]
async fn operations_graphql_js_refuses_are_refused_and_those_it_accepts_are_served() {
    let stack = Stack::start().await;
    // A default value of an unknown type panicked inside the validator (the
    // connection closed without an answer).
    for query in [
        "query ($v: [Nope] = 1) { __typename }",
        "query ($v: Int = 3000000000) { contracts(limit: 1, offset: $v) { id } }",
        "{ contractSearch(filter: \"x\", first: 1) { totalCount } }",
        "query ($x: Int @skip(if: true)) { __typename }",
        "{ __typename { x } }",
    ] {
        let (status, body) = stack.post(json!({ "query": query })).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.get("data").is_none(), "{query}: {body}");
    }
    // JSON's `2.0` and `-0` are integers, whether the plan is cached or not.
    let query = "query ($n: Int!) { contracts(limit: $n) { id } }";
    for (n, rows) in [(json!(2.0), 2), (json!(-0.0), 0), (json!(3), 3), (json!(1.0), 1)] {
        let data = stack.data(query, json!({ "n": n })).await;
        assert_eq!(
            data["contracts"].as_array().map(Vec::len),
            Some(rows),
            "{n}: {data}"
        );
    }
    // A value that is no Int is refused the same way, cached or not.
    for _ in 0..2 {
        let (status, body) = stack
            .post(json!({ "query": query, "variables": { "n": 2.5 } }))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("$n"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn conditions_nest_and_may_leave_an_object_with_nothing_selected() {
    let stack = Stack::start().await;
    // A field under two conditions of one kind (a fragment's and its own)
    // was sent with `@skip` twice, which the subgraph refused.
    let query = "query($a: Boolean!, $b: Boolean!) { contract(id: 1) { ... @skip(if: $a) { title @skip(if: $b) } id } \
                 staff(id: 1) { ... @include(if: $a) { name @include(if: $b) } id } }";
    let full = stack
        .data(
            "{ contract(id: 1) { title id } staff(id: 1) { name id } }",
            json!({}),
        )
        .await;
    for (a, b) in [(false, false), (false, true), (true, false), (true, true)] {
        let data = stack.data(query, json!({ "a": a, "b": b })).await;
        let mut contract = json!({ "id": full["contract"]["id"] });
        if !a && !b {
            contract = json!({ "title": full["contract"]["title"], "id": full["contract"]["id"] });
        }
        let mut staff = json!({ "id": full["staff"]["id"] });
        if a && b {
            staff = json!({ "name": full["staff"]["name"], "id": full["staff"]["id"] });
        }
        assert_eq!(
            data,
            json!({ "contract": contract, "staff": staff }),
            "a={a} b={b}"
        );
    }
    // Every field skipped at run time: the objects are there, empty (the
    // services answer an empty selection with null).
    let query = "query($s: Boolean!) { contract(id: 1) { id @skip(if: $s) } contracts(limit: 2) { title @skip(if: $s) } }";
    let data = stack.data(query, json!({ "s": true })).await;
    assert_eq!(data, json!({ "contract": {}, "contracts": [{}, {}] }));
}

#[tokio::test]
async fn a_key_goes_where_its_first_selection_that_holds_is() {
    let stack = Stack::start().await;
    // The response's own text: serde_json's maps here sort their keys.
    let keys = |text: &str| -> Vec<&str> {
        let mut at: Vec<(usize, &str)> = ["\"title\"", "\"id\""]
            .into_iter()
            .filter_map(|k| Some((text.find(k)?, k.trim_matches('"'))))
            .collect();
        at.sort_unstable();
        at.into_iter().map(|(_, k)| k).collect()
    };
    // §6.3.2: a skipped selection is not collected, so `id` comes after
    // `title` when its first selection is skipped (the key kept its first
    // place whatever the variables said).
    for query in [
        "query($s: Boolean!) { contract(id: 1) { id @skip(if: $s) title id } }",
        "query($s: Boolean!) { contract(id: 1) { ...F @skip(if: $s) title ...F } } fragment F on Contract { id }",
        "query($s: Boolean!) { id: staffCount @skip(if: $s) title: staffCount id: staffCount }",
    ] {
        for (skip, expected) in [(true, ["title", "id"]), (false, ["id", "title"])] {
            let text = stack
                .client
                .post(&stack.gateway)
                .json(&json!({ "query": query, "variables": { "s": skip } }))
                .send()
                .await
                .expect("answer")
                .text()
                .await
                .expect("text");
            assert!(!text.contains("errors"), "{text}");
            assert_eq!(keys(&text), expected, "{query} with s={skip}: {text}");
        }
    }
}

#[tokio::test]
async fn a_search_index_not_built_yet_is_unavailable_and_the_rest_is_served() {
    let stack = Stack::start_with(StackOptions {
        search: true,
        ..StackOptions::default()
    })
    .await;
    let (status, body) = stack
        .post(json!({ "query": "{ contractSearch(first: 1) { totalCount } staffCount }" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["contractSearch"], Value::Null, "{body}");
    assert!(body["data"]["staffCount"].is_number(), "{body}");
    assert_eq!(code(&body), "SEARCH_UNAVAILABLE", "{body}");
    assert_eq!(
        body["errors"][0]["message"], "the search index is not built yet",
        "{body}"
    );
    // Created, its first backfill not finished (running, stopped, failed):
    // still unavailable, never a part of the matches served as all of them.
    stack
        .syncer()
        .ensure_index("contracts")
        .await
        .expect("index created");
    let (_, body) = stack
        .post(json!({ "query": "{ contractSearch(first: 1) { totalCount } }" }))
        .await;
    assert_eq!(code(&body), "SEARCH_UNAVAILABLE", "{body}");
    stack
        .syncer()
        .backfill("contracts", false, &|_| {})
        .await
        .expect("backfill");
    let data = stack
        .data("{ contractSearch(first: 1) { totalCount } }", json!({}))
        .await;
    assert!(data["contractSearch"]["totalCount"].as_u64() > Some(0), "{data}");
}

#[tokio::test]
async fn a_skipped_root_field_is_not_resolved_beside_another_of_its_subgraph() {
    let stack = Stack::start().await;
    for query in [
        "query($x: Boolean!) { staff(id: 1) @include(if: $x) { name } staffCount }",
        "query($x: Boolean!) { staffCount staff(id: 1) @include(if: $x) { name } }",
    ] {
        stack.reset_stats().await;
        let data = stack.data(query, json!({ "x": false })).await;
        assert!(
            data["staffCount"].as_i64().is_some_and(|n| n > 0),
            "{query}: {data}"
        );
        assert_eq!(data.as_object().map(|o| o.len()), Some(1), "{query}: {data}");
        // One request, and in it `staff` skipped by the service itself.
        let stats = stack.stats("staff").await;
        assert_eq!(stats["requests"], 1, "{query}: {stats}");
        assert_eq!(stats["fields"]["staffCount"]["calls"], 1, "{query}: {stats}");
        assert_eq!(stats["fields"].get("staff"), None, "{query}: {stats}");

        let data = stack.data(query, json!({ "x": true })).await;
        assert!(data["staff"]["name"].is_string(), "{query}: {data}");
    }
}

/// The objects at `path` below `value` (lists flattened).
fn objects_below(value: &Value, path: &[&str]) -> Vec<Value> {
    let Some((first, rest)) = path.split_first() else {
        return vec![value.clone()];
    };
    match &value[*first] {
        Value::Array(items) => items.iter().flat_map(|item| objects_below(item, rest)).collect(),
        Value::Null => Vec::new(),
        object => objects_below(object, rest),
    }
}

#[tokio::test]
async fn a_field_reached_along_many_conditional_paths_is_answered_or_refused() {
    let stack = Stack::start().await;
    // Six levels: 12 directives, every limit met; each level's field under
    // one of its two conditions (or neither, at the bottom).
    let query = include_ladder(6);
    let variables = |bottom: bool| {
        let mut vars = serde_json::Map::new();
        for i in 0..6 {
            vars.insert(format!("v{i}_0"), json!(i % 2 == 0 || i == 5 && bottom));
            vars.insert(format!("v{i}_1"), json!(i % 2 == 1 && i != 5));
        }
        Value::Object(vars)
    };
    let started = std::time::Instant::now();
    let data = stack.data(&query, variables(true)).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let path = [
        "member",
        "contracts",
        "member",
        "contracts",
        "member",
        "contracts",
    ];
    let bottom = objects_below(&data, &path);
    assert!(!bottom.is_empty(), "member 1 has contracts: {data}");
    for contract in &bottom {
        assert_eq!(contract["member"]["id"], "1", "{data}");
    }
    let data = stack.data(&query, variables(false)).await;
    let bottom = objects_below(&data, &path);
    assert!(!bottom.is_empty(), "{data}");
    assert!(bottom.iter().all(|contract| contract == &json!({})), "{data}");

    // Eight levels of fragments spreading the next one twice, each spread
    // under its own `@include`: `id` is selected under 256 combinations.
    let mut query = format!(
        "query({}) {{ contract(id: 1) {{ ...F0 }} }}",
        (0..8)
            .map(|i| format!("$v{i}_0: Boolean!, $v{i}_1: Boolean!"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for i in 0..8 {
        query.push_str(&format!(
            " fragment F{i} on Contract {{ ...F{n} @include(if: $v{i}_0) ...F{n} @include(if: $v{i}_1) }}",
            n = i + 1
        ));
    }
    query.push_str(" fragment F8 on Contract { id }");
    let (status, body) = stack.post(json!({ "query": query })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "MAX_DIRECTIVES_LIMIT", "{body}");
    let message = body["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("`id`") && message.contains("128"), "{body}");
    assert_eq!(body["errors"][0]["locations"][0]["line"], 1, "{body}");
}

#[tokio::test]
async fn fragments_nested_deeper_than_the_planner_goes_are_refused() {
    let stack = Stack::start().await;
    // `{ ...F0 }`, F0 spreading F1, …, the last selecting `staffCount`.
    let chain = |fragments: usize| {
        let mut query = String::from("{ ...F0 }");
        for i in 0..fragments - 1 {
            query.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        query.push_str(&format!(" fragment F{} on Query {{ staffCount }}", fragments - 1));
        query
    };
    let data = stack.data(&chain(32), json!({})).await;
    assert!(data["staffCount"].is_number(), "{data}");
    // Past 64 (the planner went no deeper, and left the rest out of the
    // plan) refused with the limits, before validation (whose recursion
    // bound, 32, refuses from 33 on) and without walking 1,800 deep. Inline
    // fragments nest in the text: the parser stops at 64.
    for query in [chain(71), chain(1800)] {
        let (status, body) = stack.post(json!({ "query": query })).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(code(&body), "MAX_DEPTH_LIMIT", "{body}");
        let message = body["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains("fragments more than 64 deep"), "{body}");
        assert!(body.get("data").is_none(), "{body}");
    }
}

#[tokio::test]
async fn a_non_numeric_id_for_a_numeric_service_is_bad_input() {
    let stack = Stack::start().await;
    let (status, body) = stack
        .post(json!({ "query": "query($id: ID!) { contract(id: $id) { id } member(id: 1) { id } }", "variables": { "id": "abc" } }))
        .await;
    assert_eq!(status, 200, "{body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    assert_eq!(error["path"], json!(["contract"]), "{body}");
    assert_eq!(body["data"]["contract"], Value::Null);
    assert_eq!(body["data"]["member"]["id"], "1", "the rest is served: {body}");
    // A number past GraphQL's 32-bit Int is as unusable as letters.
    let (_, body) = stack
        .post(json!({ "query": "{ contract(id: \"99999999999\") { id } }" }))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    // Beside root fields of the same service, only that field fails: the
    // others are asked without it (they shared its request, and its error).
    stack.reset_stats().await;
    let (status, body) = stack
        .post(json!({ "query": "query($a10: ID!) { a: contract(id: \"abc\") { id } b: contracts(limit: 1) { id } c: contract(id: $a10) { title } }", "variables": { "a10": "1" } }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["a"], Value::Null, "{body}");
    assert_eq!(body["data"]["b"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(body["data"]["c"]["title"].is_string(), "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], json!(["a"]), "{body}");
    assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    assert_eq!(stack.requests().await.get("contracts"), Some(&1));
}
