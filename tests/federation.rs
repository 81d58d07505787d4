//! Tessera serving an Apollo Federation 2 supergraph
//! (`subgraphs/federation/supergraph.graphql`) in front of the four Federation
//! subgraphs of the subgraphs crate, over real HTTP: answers checked against
//! the subgraphs' data, and the requests each operation costs counted.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use tessera::config::{Config, SubgraphConfig};
use tessera_subgraphs::{RunningService, Service, ServiceOptions};

const SUPERGRAPH: &str = include_str!("../subgraphs/federation/supergraph.graphql");

struct Federation {
    services: HashMap<&'static str, RunningService>,
    gateway: String,
    client: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// The supergraph's name for a subgraph of the crate.
fn graph(service: Service) -> &'static str {
    match service {
        Service::FedUsers => "users",
        Service::FedProducts => "products",
        Service::FedInventory => "inventory",
        Service::FedReviews => "reviews",
        other => panic!("{other} is not a Federation subgraph"),
    }
}

impl Federation {
    async fn start() -> Self {
        let running = tessera_subgraphs::spawn_set(
            &Service::FEDERATION,
            "127.0.0.1".parse().expect("ip"),
            0,
            &ServiceOptions::default(),
        )
        .await
        .expect("subgraphs start");
        let mut config = Config::default();
        let mut services = HashMap::new();
        for service in running {
            let name = graph(service.service);
            config.subgraphs.insert(
                name.to_string(),
                SubgraphConfig {
                    url: service.url(),
                    timeout: std::time::Duration::from_secs(5),
                },
            );
            services.insert(name, service);
        }
        let gateway = tessera::build_gateway(&config, SUPERGRAPH).expect("the supergraph serves");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(tessera::serve(listener, Arc::new(gateway), async {
            let _ = rx.await;
        }));
        Self {
            services,
            gateway: format!("http://{addr}/graphql"),
            client: reqwest::Client::new(),
            _shutdown: tx,
        }
    }

    async fn post(&self, query: &str, variables: Value) -> Value {
        self.client
            .post(&self.gateway)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("gateway answers")
            .json()
            .await
            .expect("gateway answers JSON")
    }

    async fn data(&self, query: &str, variables: Value) -> Value {
        let body = self.post(query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    async fn stats(&self) -> HashMap<&'static str, Value> {
        let mut out = HashMap::new();
        for (name, service) in &self.services {
            let stats: Value = self
                .client
                .get(format!("http://{}/stats", service.addr))
                .send()
                .await
                .expect("stats")
                .json()
                .await
                .expect("stats JSON");
            out.insert(*name, stats);
        }
        out
    }

    async fn reset_stats(&self) {
        for service in self.services.values() {
            self.client
                .post(format!("http://{}/stats/reset", service.addr))
                .send()
                .await
                .expect("stats reset");
        }
    }

    /// Requests each subgraph received since the last reset.
    async fn requests(&self) -> HashMap<&'static str, u64> {
        self.stats()
            .await
            .into_iter()
            .map(|(name, s)| (name, s["requests"].as_u64().unwrap_or(0)))
            .collect()
    }
}

// The subgraphs' data, written out again here (see subgraphs/src/services/federation.rs).
fn user_name(id: usize) -> String {
    let first = [
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Leslie",
    ];
    let last = ["Lovelace", "Hopper", "Turing", "Liskov", "Knuth"];
    format!("{} {}", first[id % 8], last[id % 5])
}

fn review_product(review: usize) -> usize {
    ((review - 1) * 7) % 50 + 1
}

fn product_reviews(product: usize) -> Vec<usize> {
    (1..=400).filter(|r| review_product(*r) == product).collect()
}

fn shipping_estimate(product: usize) -> i64 {
    let (price, weight) = (
        100 + (product as i64 * 373) % 1900,
        1 + (product as i64 * 13) % 100,
    );
    if price > 1000 {
        0
    } else {
        weight / 2
    }
}

const FIVE_LEVELS: &str = "query($n: Int!) { users(first: $n) { id name username reviews { id body author { username } product { upc name price inStock shippingEstimate reviews { id author { id name username } } } } } }";

#[tokio::test]
async fn five_levels_across_four_subgraphs_cost_one_request_per_subgraph_and_step() {
    let fed = Federation::start().await;
    fed.reset_stats().await;
    let data = fed.data(FIVE_LEVELS, json!({ "n": 3 })).await;
    let users = data["users"].as_array().expect("users");
    assert_eq!(users.len(), 3);
    for (i, user) in users.iter().enumerate() {
        let id = i + 1;
        assert_eq!(user["id"], json!(id.to_string()));
        assert_eq!(user["name"], json!(user_name(id)));
        assert_eq!(user["username"], json!(format!("user{id}")));
        let reviews = user["reviews"].as_array().expect("reviews");
        let ids: Vec<String> = ((id - 1) * 4 + 1..=id * 4).map(|r| r.to_string()).collect();
        assert_eq!(
            reviews
                .iter()
                .map(|r| r["id"].as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>(),
            ids
        );
        for review in reviews {
            let r: usize = review["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("review id");
            // @provides: the username came with the review, from reviews.
            assert_eq!(review["author"]["username"], json!(format!("user{id}")));
            let product = &review["product"];
            let p = review_product(r);
            assert_eq!(product["upc"], json!(p.to_string()));
            assert!(
                product["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(&format!("kit no. {p}"))),
                "{product}"
            );
            assert_eq!(product["inStock"], json!(!p.is_multiple_of(3)));
            // @requires: price and weight went from products to inventory.
            assert_eq!(product["shippingEstimate"], json!(shipping_estimate(p)));
            let nested: Vec<usize> = product["reviews"]
                .as_array()
                .expect("product reviews")
                .iter()
                .map(|n| {
                    let author: usize = n["author"]["id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .expect("author id");
                    assert_eq!(n["author"]["name"], json!(user_name(author)), "{n}");
                    assert_eq!(n["author"]["username"], json!(format!("user{author}")));
                    n["id"].as_str().and_then(|s| s.parse().ok()).expect("id")
                })
                .collect();
            assert_eq!(nested, product_reviews(p));
        }
    }
    let requests = fed.requests().await;
    assert_eq!(
        requests,
        HashMap::from([("users", 2), ("reviews", 1), ("products", 1), ("inventory", 1)]),
        "users (root, then names), reviews, products, inventory: one request per subgraph and step"
    );
    // Representations are deduplicated: each product and each author is asked for once.
    let stats = fed.stats().await;
    let products: std::collections::HashSet<usize> = (1..=12).map(review_product).collect();
    assert_eq!(
        stats["products"]["fields"]["_entities"]["keys"],
        json!(products.len())
    );
    assert_eq!(
        stats["inventory"]["fields"]["_entities"]["keys"],
        json!(products.len())
    );
    let authors: std::collections::HashSet<usize> = products
        .iter()
        .flat_map(|p| product_reviews(*p))
        .map(|r| (r - 1) / 4 + 1)
        .collect();
    assert_eq!(
        stats["users"]["fields"]["_entities"]["keys"],
        json!(authors.len())
    );
}

#[tokio::test]
async fn provides_needs_no_hop_and_conditions_skip_the_fetches_they_guard() {
    let fed = Federation::start().await;
    fed.reset_stats().await;
    let data = fed
        .data("{ topReviews(first: 3) { id author { username } } }", json!({}))
        .await;
    assert_eq!(data["topReviews"][2]["author"]["username"], json!("user1"));
    assert_eq!(
        fed.requests().await["users"],
        0,
        "@provides: reviews gave the username"
    );

    fed.reset_stats().await;
    let query = "query($stock: Boolean!) { topProducts(first: 3) { upc inStock @include(if: $stock) } }";
    let data = fed.data(query, json!({ "stock": false })).await;
    assert_eq!(
        data,
        json!({ "topProducts": [{ "upc": "1" }, { "upc": "2" }, { "upc": "3" }] })
    );
    assert_eq!(
        fed.requests().await["inventory"],
        0,
        "an excluded field costs no request"
    );
    let data = fed.data(query, json!({ "stock": true })).await;
    assert_eq!(data["topProducts"][2], json!({ "upc": "3", "inStock": false }));
}

#[tokio::test]
async fn a_subgraph_that_is_down_fails_only_its_fields() {
    let mut fed = Federation::start().await;
    if let Some(inventory) = fed.services.remove("inventory") {
        inventory.shutdown().await;
    }
    let body = fed
        .post(
            "{ topProducts(first: 2) { upc name shippingEstimate } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["topProducts"][1]["name"],
        json!("Desk kit no. 2"),
        "{body}"
    );
    assert_eq!(
        body["data"]["topProducts"][1]["shippingEstimate"],
        Value::Null,
        "{body}"
    );
    let errors = body["errors"].as_array().expect("errors");
    // One error for the failed fetch, at the list it fed (as the federation routers report it).
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], json!(["topProducts"]), "{body}");
    assert_eq!(errors[0]["extensions"]["subgraph"], json!("inventory"), "{body}");
}

#[test]
fn unsupported_supergraph_constructs_are_refused_with_the_line_and_why() {
    let sdl = SUPERGRAPH.replace(
        "type Review @join__type(graph: REVIEWS)",
        "type Review @join__type(graph: REVIEWS, isInterfaceObject: true)",
    );
    let errors = tessera::schema::Supergraph::parse(&sdl).expect_err("refused");
    let line = SUPERGRAPH
        .lines()
        .position(|l| l.starts_with("type Review"))
        .expect("Review")
        + 1;
    assert!(
        errors
            .iter()
            .any(|e| e.pos.line == line && e.message.contains("@interfaceObject")),
        "{errors:?}"
    );
    let sdl = SUPERGRAPH.replace(
        "@join__field(graph: PRODUCTS)\n  reviews",
        "@join__field(graph: NOWHERE)\n  reviews",
    );
    let errors = tessera::schema::Supergraph::parse(&sdl).expect_err("refused");
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("NOWHERE is not a value of join__Graph")),
        "{errors:?}"
    );
}

/// A field selected twice, the first time under a variable condition, in
/// sets whose fields come from several subgraphs: every field is answered,
/// in the order the first selection that holds gives (ordering the keys by
/// the variables left out the fields planned without their occurrences).
#[tokio::test]
async fn a_conditional_repeat_loses_no_field_across_subgraphs() {
    let fed = Federation::start().await;
    for query in [
        "query($c: Boolean!) { topProducts(first: 3) { inStock @include(if: $c) inStock name upc shippingEstimate } }",
        "query($c: Boolean!) { topProducts(first: 3) { __typename @skip(if: $c) __typename upc reviews { id } } }",
        "query($c: Boolean!) { me { username @include(if: $c) username id reviews { product { name inStock } } } }",
        "query($c: Boolean!) { topReviews(first: 2) { author { name @skip(if: $c) name username } id } }",
    ] {
        let plain = query
            .replace("query($c: Boolean!) ", "")
            .replace("@include(if: $c)", "")
            .replace("@skip(if: $c)", "");
        let all = fed.data(&plain, json!({})).await;
        for c in [true, false] {
            let data = fed.data(query, json!({ "c": c })).await;
            assert_eq!(data, all, "{query} with c={c}");
        }
    }
}

/// `/ready` asks the supergraph's subgraphs, not the nine demo services a
/// configuration without `[subgraphs]` tables defaults to.
#[tokio::test]
async fn ready_asks_the_supergraphs_own_subgraphs() {
    let federation = Federation::start().await;
    let mut config = Config::default();
    config.search.in_memory = true;
    for (name, service) in &federation.services {
        config.subgraphs.insert(
            name.to_string(),
            SubgraphConfig {
                url: service.url(),
                timeout: std::time::Duration::from_secs(5),
            },
        );
    }
    let built = tessera::build(&config, SUPERGRAPH).expect("the supergraph serves");
    let app = tessera::app(&config, &built).expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(tessera::serve_app(listener, app, std::future::pending()));
    let response = federation
        .client
        .get(format!("http://{addr}/ready"))
        .send()
        .await
        .expect("ready answers");
    let status = response.status();
    let body = response.text().await.expect("body");
    assert_eq!(status, 200, "{body}");
}
