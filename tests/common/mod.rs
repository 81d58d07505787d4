//! End-to-end harness: the nine real subgraph servers and the real gateway,
//! each on an ephemeral port of 127.0.0.1, talked to over HTTP.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tessera::config::Config;
use tessera_subgraphs::{RunningService, Service, ServiceOptions};

pub struct Stack {
    pub services: HashMap<&'static str, RunningService>,
    pub gateway: String,
    pub client: reqwest::Client,
    /// The gateway's configuration (subgraph URLs of this stack).
    pub config: Config,
    /// With `StackOptions::search`: the gateway's in-memory indexes.
    pub search: Option<tessera::Tessera>,
    shutdown: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// Where the gateway under test keeps its search indexes.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Embedded, in memory.
    Tantivy,
    /// The OpenSearch server at this URL (indexes under a prefix of the test's own).
    OpenSearch(String),
}

/// The OpenSearch server of `TESSERA_TEST_OPENSEARCH_URL`; `None` (the test
/// is skipped) when unset, a failure when `CI=true`.
pub fn opensearch() -> Option<Backend> {
    match std::env::var("TESSERA_TEST_OPENSEARCH_URL") {
        Ok(url) if !url.is_empty() => Some(Backend::OpenSearch(url)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true: this test needs OpenSearch at TESSERA_TEST_OPENSEARCH_URL (scripts/services.sh up)"
            )
        }
        _ => {
            eprintln!("skipped: TESSERA_TEST_OPENSEARCH_URL is not set (scripts/services.sh up)");
            None
        }
    }
}

/// Runs each test body (an `async fn(Backend)`) once per search backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod tantivy {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Tantivy).await
                }
            )*
        }
        mod opensearch {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(backend) = $crate::common::opensearch() {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}

pub struct StackOptions {
    pub scale: u64,
    pub timeout: Duration,
    pub max_batch_size: usize,
    /// Serve `@search` fields from in-memory indexes (built by the test).
    pub search: bool,
    /// The services announce their writes and the synchronizer applies
    /// them at once, as in `tessera demo` (needs `search`).
    pub events: bool,
    /// Where the services announce their writes instead (Kafka).
    pub sink: Option<Arc<dyn tessera_subgraphs::ChangeSink>>,
    /// Run the synchronizer's background loop (poll, scan, reconcile), as
    /// `tessera serve` does.
    pub sync_loop: bool,
    pub backend: Backend,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            scale: 400,
            timeout: Duration::from_secs(5),
            max_batch_size: 500,
            search: false,
            events: false,
            sink: None,
            sync_loop: false,
            backend: Backend::Tantivy,
        }
    }
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn start_with(options: StackOptions) -> Self {
        let events = tessera_subgraphs::ChannelSink::new(100_000);
        let announced = events.subscribe();
        let service_options = ServiceOptions {
            scale: options.scale,
            sink: match (&options.sink, options.events) {
                (Some(sink), _) => Arc::clone(sink),
                (None, true) => Arc::new(events),
                (None, false) => Arc::new(tessera_subgraphs::NullSink),
            },
            ..ServiceOptions::default()
        };
        let running = tessera_subgraphs::spawn_all("127.0.0.1".parse().expect("ip"), 0, &service_options)
            .await
            .expect("subgraphs start");
        let mut config = Config::default();
        config.execution.max_batch_size = options.max_batch_size;
        let mut services = HashMap::new();
        for service in running {
            let sub = config
                .subgraphs
                .get_mut(service.service.name())
                .expect("configured subgraph");
            sub.url = service.url();
            sub.timeout = options.timeout;
            services.insert(service.service.name(), service);
        }
        config.search.in_memory = true;
        if let Backend::OpenSearch(url) = &options.backend {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            config.search.backend = tessera::config::BackendName::OpenSearch;
            config.search.opensearch.url = url.clone();
            config.search.opensearch.replicas = 0;
            config.search.opensearch.index_prefix = format!(
                "e2e{}x{}_",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
        }
        let (gateway, search) = if options.search {
            let built =
                tessera::build(&config, include_str!("../../schema.graphql")).expect("gateway builds");
            if options.sync_loop {
                tokio::spawn(Arc::clone(&built.syncer).run(tessera::sync::Intervals {
                    poll: Some(Duration::from_secs(5)),
                    scan: Duration::from_secs(60),
                    reconcile: Duration::from_secs(3600),
                }));
            }
            if options.events {
                tokio::spawn(tessera::sync::events::forward(
                    announced,
                    Arc::clone(built.syncer.schema()),
                    built.changes.clone(),
                ));
            }
            (Arc::clone(&built.gateway), Some(built))
        } else {
            let gateway = tessera::build_gateway(&config, include_str!("../../schema.graphql"))
                .expect("gateway builds");
            (Arc::new(gateway), None)
        };
        let mut stack = Self {
            services,
            gateway: String::new(),
            client: reqwest::Client::new(),
            config,
            search,
            shutdown: Vec::new(),
        };
        stack.gateway = stack.serve(gateway).await;
        stack
    }

    /// Serves another gateway for this stack's services; returns its URL.
    pub async fn serve(&mut self, gateway: Arc<tessera::pipeline::Gateway>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(tessera::serve(listener, gateway, async {
            let _ = rx.await;
        }));
        self.shutdown.push(tx);
        format!("http://{addr}/graphql")
    }

    /// Serves an HTTP application (a gateway with its options) for this
    /// stack's services; returns its `/graphql` URL.
    pub async fn serve_app(&mut self, app: tessera::http::App) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(tessera::serve_app(listener, app, async {
            let _ = rx.await;
        }));
        self.shutdown.push(tx);
        format!("http://{addr}/graphql")
    }

    /// A stack with search (`options.search` is turned on), every index
    /// backfilled.
    pub async fn start_indexed(options: StackOptions) -> Self {
        let stack = Self::start_with(StackOptions {
            search: true,
            ..options
        })
        .await;
        stack.backfill_all().await;
        stack
    }

    /// Backfills every index of a stack started with `search: true`.
    pub async fn backfill_all(&self) {
        for index in self.syncer().index_names() {
            self.syncer()
                .backfill(&index, false, &|_| {})
                .await
                .expect("backfill");
        }
    }

    /// A stack with search, its indexes backfilled, served as `tessera
    /// serve` serves it (`tessera::app`: limits, `/ready`, `/metrics`);
    /// with that gateway's `/graphql` URL.
    pub async fn with_app() -> (Self, String) {
        let mut stack = Self::start_indexed(StackOptions::default()).await;
        let tessera = stack.search.as_ref().expect("search");
        let app = tessera::app(&stack.config, tessera).expect("app");
        let url = stack.serve_app(app).await;
        (stack, url)
    }

    /// The syncer of a stack started with `search: true`.
    pub fn syncer(&self) -> &Arc<tessera::sync::Syncer> {
        &self
            .search
            .as_ref()
            .expect("stack started with search: true")
            .syncer
    }

    /// POSTs a query to another gateway; returns the body.
    pub async fn post_to(&self, url: &str, body: Value) -> Value {
        self.client
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("gateway answers")
            .json()
            .await
            .expect("gateway answers JSON")
    }

    /// POSTs a query; returns (HTTP status, body).
    pub async fn post(&self, body: Value) -> (u16, Value) {
        self.post_with(body, &[]).await
    }

    pub async fn post_with(&self, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.client.post(&self.gateway).json(&body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        let body = response.json().await.expect("gateway answers JSON");
        (status, body)
    }

    /// Runs a query that must succeed without errors; returns `data`.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(json!({ "query": query, "variables": variables })).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        // A mutation's response waits for the indexes; it must not give up.
        assert!(
            body.get("extensions")
                .and_then(|e| e.get("indexUpdate"))
                .is_none(),
            "the indexes did not show the mutation: {body}"
        );
        body["data"].clone()
    }

    pub fn service_base(&self, name: &str) -> String {
        format!("http://{}", self.services[name].addr)
    }

    /// Queries a subgraph directly, bypassing the gateway.
    pub async fn subgraph(&self, name: &str, query: &str, variables: Value) -> Value {
        let body: Value = self
            .client
            .post(format!("{}/graphql", self.service_base(name)))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("subgraph answers")
            .json()
            .await
            .expect("subgraph JSON");
        assert!(body.get("errors").is_none(), "subgraph {name} errors: {body}");
        body["data"].clone()
    }

    pub async fn reset_stats(&self) {
        for name in self.services.keys() {
            self.client
                .post(format!("{}/stats/reset", self.service_base(name)))
                .send()
                .await
                .expect("stats reset");
        }
    }

    pub async fn stats(&self, name: &str) -> Value {
        self.client
            .get(format!("{}/stats", self.service_base(name)))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats JSON")
    }

    /// `requests` of every service, by name.
    pub async fn requests(&self) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for name in self.services.keys() {
            let stats = self.stats(name).await;
            out.insert(name.to_string(), stats["requests"].as_u64().unwrap_or(0));
        }
        out
    }

    pub async fn faults(&self, name: &str, faults: Value) {
        let status = self
            .client
            .post(format!("{}/faults", self.service_base(name)))
            .json(&faults)
            .send()
            .await
            .expect("faults")
            .status();
        assert!(status.is_success(), "setting faults on {name}: {status}");
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
        if self.config.search.backend == tessera::config::BackendName::OpenSearch {
            let os = &self.config.search.opensearch;
            delete_indexes(&os.url, &os.index_prefix);
        }
    }
}

/// Drops every OpenSearch index under `prefix`, best effort and blocking
/// (from `Drop`, where nothing async can run to completion).
fn delete_indexes(url: &str, prefix: &str) {
    use std::io::{Read, Write};
    let Some(host) = url.strip_prefix("http://").map(|h| h.trim_end_matches('/')) else {
        return;
    };
    if let Ok(mut stream) = std::net::TcpStream::connect(host) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "DELETE /{prefix}*?expand_wildcards=all HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            let _ = stream.read_to_end(&mut Vec::new());
        }
    }
}

/// Every document of an index, by id.
pub async fn documents(backend: &dyn tessera::search::SearchBackend, index: &str) -> HashMap<String, Value> {
    let all = tessera::search::Filter::Range {
        field: tessera::search::ID_FIELD.into(),
        gte: None,
        gt: None,
        lte: None,
        lt: None,
    };
    let ids = backend.ids_where(index, &all).await.expect("ids");
    let docs = backend.get(index, &ids).await.expect("docs");
    // A document deleted between the two reads is simply not there.
    ids.into_iter()
        .zip(docs)
        .filter_map(|(id, doc)| doc.map(|d| (id, Value::Object(d))))
        .collect()
}

impl Stack {
    /// Asserts that every index of this stack's gateway holds exactly what
    /// a fresh backfill of the same services builds (versions aside: they
    /// are the times the rows were read).
    pub async fn assert_indexes_match_a_fresh_backfill(&self) {
        if let Err(difference) = self.indexes_match_a_fresh_backfill().await {
            panic!("{difference}");
        }
    }

    /// The first difference between the indexes and a fresh backfill.
    pub async fn indexes_match_a_fresh_backfill(&self) -> Result<(), String> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut config = self.config.clone();
        config.search.in_memory = true;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        config
            .search
            .opensearch
            .index_prefix
            .insert_str(0, &format!("fresh{n}"));
        let fresh = tessera::build(&config, include_str!("../../schema.graphql")).expect("fresh");
        let synced = &*self
            .search
            .as_ref()
            .expect("stack started with search: true")
            .backend;
        let mut result = Ok(());
        for index in ["contracts", "feed"] {
            fresh
                .syncer
                .backfill(index, false, &|_| {})
                .await
                .expect("backfill");
            let mut synced = documents(synced, index).await;
            let rebuilt = documents(&*fresh.backend, index).await;
            for (id, doc) in &rebuilt {
                let mut a = synced.remove(id).unwrap_or(Value::Null);
                let mut b = doc.clone();
                a.as_object_mut().map(|o| o.remove("_version"));
                b.as_object_mut().map(|o| o.remove("_version"));
                if a != b && result.is_ok() {
                    result = Err(format!("{index}: document {id}: indexed {a}, rows say {b}"));
                }
            }
            if !synced.is_empty() && result.is_ok() {
                result = Err(format!(
                    "{index}: documents whose rows are gone: {:?}",
                    synced.keys()
                ));
            }
        }
        if config.search.backend == tessera::config::BackendName::OpenSearch {
            delete_indexes(
                &config.search.opensearch.url,
                &config.search.opensearch.index_prefix,
            );
        }
        result
    }

    /// Runs a mutation on a service directly (never through the gateway).
    pub async fn write(&self, service: &str, mutation: &str, variables: Value) -> Value {
        self.subgraph(service, mutation, variables).await
    }

    /// Retitles contract `id` at its service.
    pub async fn retitle(&self, id: i64, title: &str) {
        self.write(
            "contracts",
            "mutation($id: Int!, $t: String!) { update_contract(id: $id, input: {title: $t}) { id } }",
            json!({"id": id, "t": title}),
        )
        .await;
    }
}

/// Waits until `check` holds, up to `within`; panics with `what` otherwise.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A small deterministic generator (xorshift), so failures replay.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn relay(id: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("MemberNode:{id}"))
}

/// One random write straight to a service (never through the gateway):
/// updates, creates and deletes of indexed and denormalized rows.
pub async fn random_write(stack: &Stack, rng: &mut Rng, step: usize, scale: usize) {
    let id = 1 + rng.below(scale) as i64;
    let (service, mutation, vars) = match rng.below(12) {
        0 => (
            "contracts",
            "mutation($id: Int!, $t: String!) { update_contract(id: $id, input: {title: $t, amount: 4242}) { id } }",
            json!({"id": id, "t": format!("changed {step}")}),
        ),
        1 => (
            "contracts",
            "mutation($m: Int!, $s: Int!) { create_contract(input: {title: \"new one\", member_id: $m, manager_id: $s, amount: 7, start_date: \"2026-01-01\"}) { id } }",
            json!({"m": 1 + rng.below(50), "s": 1 + rng.below(10)}),
        ),
        2 => (
            "staff",
            "mutation($id: Int!, $n: String!) { updateStaff(id: $id, name: $n) { id } }",
            json!({"id": 1 + rng.below(10), "n": format!("담당자 {step}")}),
        ),
        3 => (
            "members",
            "mutation($id: ID!, $n: String!) { updateMember(id: $id, input: {name: $n}) { ok } }",
            json!({"id": relay(1 + rng.below(50) as i64), "n": format!("회원 {step}")}),
        ),
        4 => (
            "settlements",
            "mutation($c: Int!) { createSettlement(contractId: $c, amount: \"1000.50\", scheduledOn: \"2026-02-01\") { id } }",
            json!({"c": id}),
        ),
        5 => (
            "posts",
            "mutation($id: ID!, $t: String!) { updatePost(id: $id, title: $t) { id } }",
            json!({"id": (1 + rng.below(100)).to_string(), "t": format!("post {step}")}),
        ),
        6 => ("contracts", "mutation($id: Int!) { delete_contract(id: $id) }", json!({"id": id})),
        7 => (
            "settlements",
            "mutation($id: Int!) { deleteSettlement(id: $id) }",
            json!({"id": 1 + rng.below(2 * scale)}),
        ),
        8 => (
            "staff",
            "mutation($id: Int!) { deleteStaff(id: $id) }",
            json!({"id": 1 + rng.below(10)}),
        ),
        9 => (
            "members",
            "mutation($id: ID!) { deleteMember(id: $id) { ok } }",
            json!({"id": relay(1 + rng.below(50) as i64)}),
        ),
        10 => (
            "products",
            "mutation($id: ID!) { delete_product(id: $id) }",
            json!({"id": (1 + rng.below(scale / 2)).to_string()}),
        ),
        _ => (
            "posts",
            "mutation($id: ID!) { deletePost(id: $id) }",
            json!({"id": (1 + rng.below(scale)).to_string()}),
        ),
    };
    stack.write(service, mutation, vars).await;
}

pub fn all_services() -> impl Iterator<Item = Service> {
    Service::ALL.into_iter()
}

/// A TCP proxy that can be cut: a server that goes away (connections
/// refused or reset) and comes back, without touching the real one.
pub struct Proxy {
    pub url: String,
    pub up: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A proxy to `target` (`http://host:port[/…]`); its URL keeps the path.
pub async fn proxy(target: &str) -> Proxy {
    use std::sync::atomic::{AtomicBool, Ordering};
    let rest = target.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let host = host.to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let url = if path.is_empty() {
        format!("http://{addr}")
    } else {
        format!("http://{addr}/{path}")
    };
    let up = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&up);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if !flag.load(Ordering::Relaxed) {
                continue; // dropped: connection reset
            }
            let target = host.clone();
            let flag = Arc::clone(&flag);
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = async { while flag.load(Ordering::Relaxed) { tokio::time::sleep(Duration::from_millis(20)).await } } => {}
                    }
                }
            });
        }
    });
    Proxy { url, up }
}

/// `levels` fragments from `member(id: "1")` down, Member → contracts →
/// Contract → member → …, each selecting the next level twice, each time
/// under its own `@include`: a field `k` levels down is reached along 2^k
/// paths.
pub fn include_ladder(levels: usize) -> String {
    let mut variables = Vec::new();
    let mut fragments = String::new();
    for i in 0..levels {
        variables.push(format!("$v{i}_0: Boolean!, $v{i}_1: Boolean!"));
        let (on, field) = if i % 2 == 0 {
            ("Member", "contracts")
        } else {
            ("Contract", "member")
        };
        let next = if i + 1 < levels {
            format!("...L{}", i + 1)
        } else {
            "id".to_string()
        };
        fragments.push_str(&format!(
            " fragment L{i} on {on} {{ {field} @include(if: $v{i}_0) {{ {next} }} {field} @include(if: $v{i}_1) {{ {next} }} }}"
        ));
    }
    format!(
        "query({}) {{ member(id: \"1\") {{ ...L0 }} }}{fragments}",
        variables.join(", ")
    )
}
