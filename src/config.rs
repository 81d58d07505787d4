//! Typed configuration (`tessera.toml`), its defaults and its validation.
//!
//! Rules (after Apollo Router's): unknown keys are errors, every section has a
//! real default, durations are human-readable (`"5s"`), and a bad value gets
//! one line that says where it is and what to write instead. Environment
//! variables override the file (see `docs/config.md`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// The whole configuration.
///
/// ```toml
/// [server]
/// listen = "127.0.0.1:4000"
///
/// [subgraphs.members]
/// url = "http://127.0.0.1:4001/graphql"
/// timeout = "5s"
///
/// [execution]
/// max_batch_size = 500
/// forward_headers = ["authorization", "accept-language"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub subgraphs: BTreeMap<String, SubgraphConfig>,
    pub execution: ExecutionConfig,
    pub search: SearchConfig,
    pub sync: SyncConfig,
    pub limits: LimitsConfig,
    pub security: SecurityConfig,
    pub traffic: TrafficConfig,
    pub telemetry: TelemetryConfig,
    pub supergraph: SupergraphConfig,
    /// `subgraphs` holds the nine demo services because the file names no
    /// `[subgraphs]`: a supergraph's own URLs replace them.
    #[serde(skip)]
    demo_subgraphs: bool,
}

/// An Apollo Federation 2 supergraph to serve instead of schema.graphql
/// (`tessera serve --supergraph FILE` does the same). Subgraph URLs come
/// from its `@join__graph(url:)`; `[subgraphs.<name>]` overrides them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupergraphConfig {
    pub path: Option<PathBuf>,
}

/// What one operation may ask (docs/operations.md, "Limits"). Each refusal
/// has its own code and costs no subgraph request; 0 turns a limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, in bytes (`413 PAYLOAD_TOO_LARGE`).
    pub max_body_bytes: usize,
    /// Lexical tokens of the query text, counted before it is parsed.
    pub max_tokens: usize,
    /// Nesting of selection sets (introspection fields not counted).
    pub max_depth: usize,
    /// Aliased fields in the operation, fragments expanded.
    pub max_aliases: usize,
    /// Fields of the root selection set, fragments expanded.
    pub max_root_fields: usize,
    /// Directives used in the document.
    pub max_directives: usize,
    /// Estimated cost: each object a field returns counts 1, multiplied by
    /// the sizes of the lists around it (`first`/`limit`/`last` arguments,
    /// else `default_list_size`).
    pub max_cost: u64,
    /// The size assumed for a list field without a size argument.
    pub default_list_size: u64,
    /// The longest a whole request may take (`504 GATEWAY_TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            max_tokens: 15_000,
            max_depth: 15,
            max_aliases: 30,
            max_root_fields: 20,
            max_directives: 50,
            max_cost: 100_000,
            default_list_size: 10,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Who may call the gateway, and what it shows (docs/operations.md, "Security").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Origins a browser may call from (`["*"]`: any); none: same-origin only.
    pub cors_origins: Vec<String>,
    /// Refuse GETs and simple POSTs without a header a cross-site form
    /// cannot send (`content-type: application/json`, or any of
    /// `csrf_headers`), as Apollo's CSRF prevention does.
    pub csrf_prevention: bool,
    pub csrf_headers: Vec<String>,
    /// Answer `__schema`/`__type`.
    pub introspection: bool,
    /// Serve the GraphiQL playground on `GET /graphql` for browsers.
    pub playground: bool,
    /// Put the internal detail of errors in `extensions.detail` (development only).
    pub expose_error_details: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            csrf_prevention: true,
            csrf_headers: vec![
                "x-apollo-operation-name".into(),
                "apollo-require-preflight".into(),
            ],
            introspection: true,
            playground: true,
            expose_error_details: false,
        }
    }
}

/// How the gateway treats the subgraphs under failure (docs/operations.md, "Resilience").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrafficConfig {
    /// Retries of a query (never a mutation) whose connection failed.
    pub retries: u32,
    /// First retry delay (jittered, doubled for each next try).
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Consecutive failures that open a subgraph's circuit (0: never).
    pub breaker_failures: u32,
    /// How long an open circuit fails fast before one probe is let through.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Requests in flight to one subgraph; more wait their turn.
    pub max_concurrent_per_subgraph: usize,
    /// Identical query requests in flight to one subgraph share one answer.
    pub deduplicate: bool,
    /// The largest answer read from a subgraph, in bytes; a larger one is
    /// `SUBGRAPH_INVALID_RESPONSE` (read whole, one answer of a service gone
    /// wrong could take the gateway's memory).
    pub max_response_bytes: usize,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            retries: 2,
            retry_backoff: Duration::from_millis(25),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_millis(500),
            max_concurrent_per_subgraph: 256,
            deduplicate: true,
            max_response_bytes: 64 << 20,
        }
    }
}

/// Metrics (docs/operations.md, "Observability"; logs: `TESSERA_LOG_FORMAT`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Serve Prometheus metrics on `GET /metrics`.
    pub metrics: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { metrics: true }
    }
}

/// Search indexes (docs/search.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Which engine holds the indexes: "tantivy" (embedded, the default) or
    /// "opensearch" (a cluster shared by every gateway replica).
    pub backend: BackendName,
    /// The OpenSearch cluster, for `backend = "opensearch"`.
    pub opensearch: OpenSearchConfig,
    /// Where the embedded index (tantivy) keeps its files.
    pub data_dir: PathBuf,
    /// Keep indexes in memory only: nothing on disk, rebuilt on every start.
    pub in_memory: bool,
    /// Seals pagination cursors; give every gateway instance the same one.
    pub cursor_secret: String,
    /// How each search field is answered: "index" (default) or "merge"
    /// (k-way merge of the index's sources, no index needed).
    pub strategies: BTreeMap<String, StrategyName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    Tantivy,
    OpenSearch,
}

/// How to reach OpenSearch (or Elasticsearch). Credentials come from the
/// environment only: `TESSERA_OPENSEARCH_USERNAME`, `TESSERA_OPENSEARCH_PASSWORD`.
///
/// ```toml
/// [search.opensearch]
/// url = "http://127.0.0.1:9200"
/// index_prefix = "tessera_"
/// timeout = "5s"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenSearchConfig {
    pub url: String,
    /// Put before every index and alias name, so deployments can share a cluster.
    pub index_prefix: String,
    /// Per request to the cluster; slower is `SEARCH_UNAVAILABLE`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Primary shards of each new index.
    pub shards: u32,
    /// Replicas of each shard of a new index (0 on a one-node cluster).
    pub replicas: u32,
    #[serde(skip)]
    pub username: Option<String>,
    #[serde(skip)]
    pub password: Option<String>,
}

impl Default for OpenSearchConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            index_prefix: String::new(),
            timeout: Duration::from_secs(5),
            shards: 1,
            replicas: 1,
            username: None,
            password: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyName {
    Index,
    Merge,
}

/// Keeping the indexes in sync with the services (docs/search.md, "Sync").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Keep the indexes in sync inside `serve`/`demo` (and build missing
    /// indexes at start). Off on gateways whose indexes separate
    /// `tessera sync run` workers keep (OpenSearch).
    pub enabled: bool,
    /// Where changes come from: "poll" (ask the services every
    /// `poll_interval`, the embedded default) or "kafka" (the services'
    /// change events, see `[sync.kafka]`).
    pub source: SourceName,
    pub kafka: KafkaConfig,
    /// How often to ask the services for rows updated since the last poll.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often to list every id and drop (or rebuild) the documents whose
    /// rows are gone: the bound on how long a delete that no change event
    /// announced stays searchable.
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
    /// How often to rebuild everything and rewrite documents that differ.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Re-read this much before the watermark (clock skew between services).
    #[serde(with = "humantime_serde")]
    pub overlap: Duration,
    /// A mutation's response through the gateway waits until the indexes
    /// show what it changed…
    pub read_your_writes: bool,
    /// …for at most this long; then `extensions.indexUpdate` says so.
    #[serde(with = "humantime_serde")]
    pub read_your_writes_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceName {
    Poll,
    Kafka,
}

/// The change events (`sync.source = "kafka"`).
///
/// ```toml
/// [sync.kafka]
/// brokers = "127.0.0.1:9092"
/// group = "tessera-sync"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port,…`
    pub brokers: String,
    /// The consumer group of every worker of a deployment.
    pub group: String,
    /// Service `s` publishes to topic `<topic_prefix>s`.
    pub topic_prefix: String,
    /// Where events that keep failing go, with the error.
    pub dead_letter_topic: String,
    /// Tries of a failing batch before its events are tried alone (and the
    /// ones that still fail go to the dead-letter topic). An outage of the
    /// index or a service is retried until it ends instead.
    pub max_attempts: u32,
    /// First retry delay, doubled for each next try.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Events applied together.
    pub batch_size: usize,
    /// Partitions of the topics the worker creates when missing.
    pub partitions: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group: "tessera-sync".into(),
            topic_prefix: "tessera.changes.".into(),
            dead_letter_topic: "tessera.dead-letters".into(),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
            batch_size: 500,
            partitions: 4,
        }
    }
}

/// The committed default of `search.cursor_secret`: public, so only for development.
pub const DEVELOPMENT_CURSOR_SECRET: &str = "tessera-development-cursor-secret";

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            backend: BackendName::Tantivy,
            opensearch: OpenSearchConfig::default(),
            data_dir: PathBuf::from("data/index"),
            in_memory: false,
            cursor_secret: DEVELOPMENT_CURSOR_SECRET.into(),
            strategies: BTreeMap::new(),
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            source: SourceName::Poll,
            kafka: KafkaConfig::default(),
            poll_interval: Duration::from_secs(5),
            scan_interval: Duration::from_secs(60),
            reconcile_interval: Duration::from_secs(3600),
            overlap: Duration::from_secs(2),
            read_your_writes: true,
            read_your_writes_timeout: Duration::from_secs(2),
        }
    }
}

/// Where the gateway listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port of the HTTP server.
    pub listen: SocketAddr,
    /// `/ready` answers 503 when a subgraph or an index does not answer within this.
    #[serde(with = "humantime_serde")]
    pub readiness_timeout: Duration,
}

/// One subgraph's endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubgraphConfig {
    /// The subgraph's GraphQL endpoint.
    pub url: String,
    /// How long one request to it may take before its fields fail with `SUBGRAPH_TIMEOUT`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// How plans are executed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Most keys sent in one subgraph request; larger key sets are split into
    /// chunks sent concurrently.
    pub max_batch_size: usize,
    /// Prepared operations kept in memory.
    pub plan_cache_size: u64,
    /// Operation texts kept for automatic persisted queries (Apollo's
    /// protocol); 0 turns them off.
    pub apq_cache_size: u64,
    /// Client request headers passed on to every subgraph request.
    pub forward_headers: Vec<String>,
}

/// The nine demo services and their default ports (`tessera demo`, and
/// `subgraphs --service all`); a test checks this against the subgraphs crate.
pub const DEMO_SUBGRAPHS: [(&str, u16); 9] = [
    ("members", 4001),
    ("staff", 4002),
    ("contracts", 4003),
    ("accounts", 4004),
    ("settlements", 4005),
    ("posts", 4006),
    ("products", 4007),
    ("events", 4008),
    ("reviews", 4009),
];

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4000)),
            readiness_timeout: Duration::from_secs(2),
        }
    }
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 500,
            plan_cache_size: 1000,
            apq_cache_size: 1000,
            forward_headers: vec!["authorization".into(), "accept-language".into()],
        }
    }
}

impl Default for Config {
    /// The nine demo services on 127.0.0.1:4001…4009.
    fn default() -> Self {
        let subgraphs = DEMO_SUBGRAPHS
            .iter()
            .map(|(name, port)| {
                (
                    name.to_string(),
                    SubgraphConfig {
                        url: format!("http://127.0.0.1:{port}/graphql"),
                        timeout: default_timeout(),
                    },
                )
            })
            .collect();
        Self {
            server: ServerConfig::default(),
            subgraphs,
            execution: ExecutionConfig::default(),
            search: SearchConfig::default(),
            sync: SyncConfig::default(),
            limits: LimitsConfig::default(),
            security: SecurityConfig::default(),
            traffic: TrafficConfig::default(),
            telemetry: TelemetryConfig::default(),
            supergraph: SupergraphConfig::default(),
            demo_subgraphs: true,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file is an error only when `required`.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Self::default().finish()
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            // `path:line:col: message (the line)`: the line names the key.
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                let source = text.lines().nth(line - 1).unwrap_or_default().trim();
                (line, column, source)
            });
            ConfigError::Parse {
                path: match at {
                    Some((line, column, _)) => format!("{path}:{line}:{column}"),
                    None => path.to_string(),
                },
                message: match at {
                    Some((_, _, source)) if !source.is_empty() => {
                        format!("{} (in `{source}`)", e.message().trim_end())
                    }
                    _ => e.message().trim_end().to_string(),
                },
            }
        })?;
        config.demo_subgraphs =
            toml::from_str::<toml::Table>(text).is_ok_and(|t| !t.contains_key("subgraphs"));
        config.finish()
    }

    /// Applies environment overrides, then validates.
    fn finish(mut self) -> Result<Self, ConfigError> {
        if let Ok(listen) = std::env::var("TESSERA_LISTEN") {
            self.server.listen = listen.parse().map_err(|_| ConfigError::Invalid {
                key: "TESSERA_LISTEN".into(),
                message: format!("\"{listen}\" is not an address like 127.0.0.1:4000"),
            })?;
        }
        if let Ok(backend) = std::env::var("TESSERA_SEARCH_BACKEND") {
            self.search.backend = match backend.as_str() {
                "tantivy" => BackendName::Tantivy,
                "opensearch" => BackendName::OpenSearch,
                other => {
                    return Err(ConfigError::Invalid {
                        key: "TESSERA_SEARCH_BACKEND".into(),
                        message: format!(
                            "\"{other}\" is not a search backend; write \"tantivy\" or \"opensearch\""
                        ),
                    })
                }
            };
        }
        if let Ok(enabled) = std::env::var("TESSERA_SYNC_ENABLED") {
            self.sync.enabled = match enabled.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => {
                    return Err(ConfigError::Invalid {
                        key: "TESSERA_SYNC_ENABLED".into(),
                        message: format!("\"{other}\" is not true or false"),
                    })
                }
            };
        }
        if let Ok(brokers) = std::env::var("TESSERA_KAFKA_BROKERS") {
            self.sync.kafka.brokers = brokers;
        }
        if let Ok(source) = std::env::var("TESSERA_SYNC_SOURCE") {
            self.sync.source = match source.as_str() {
                "poll" => SourceName::Poll,
                "kafka" => SourceName::Kafka,
                other => {
                    return Err(ConfigError::Invalid {
                        key: "TESSERA_SYNC_SOURCE".into(),
                        message: format!("\"{other}\" is not a change source; write \"poll\" or \"kafka\""),
                    })
                }
            };
        }
        if let Ok(secret) = std::env::var("TESSERA_CURSOR_SECRET") {
            self.search.cursor_secret = secret;
        }
        if let Ok(url) = std::env::var("TESSERA_OPENSEARCH_URL") {
            self.search.opensearch.url = url;
        }
        self.search.opensearch.username = std::env::var("TESSERA_OPENSEARCH_USERNAME").ok();
        self.search.opensearch.password = std::env::var("TESSERA_OPENSEARCH_PASSWORD").ok();
        for (name, subgraph) in &mut self.subgraphs {
            let var = format!("TESSERA_SUBGRAPH_{}_URL", name.to_uppercase());
            if let Ok(url) = std::env::var(&var) {
                subgraph.url = url;
            }
        }
        self.validate()?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, subgraph) in &self.subgraphs {
            let parsed = reqwest::Url::parse(&subgraph.url).map_err(|e| ConfigError::Invalid {
                key: format!("subgraphs.{name}.url"),
                message: format!(
                    "\"{}\" is not a URL ({e}); write e.g. \"http://127.0.0.1:4001/graphql\"",
                    subgraph.url
                ),
            })?;
            // The subgraph client speaks plain HTTP (a TLS stack is not built
            // in): an https URL would fail every request at run time.
            if parsed.scheme() != "http" {
                return Err(ConfigError::Invalid {
                    key: format!("subgraphs.{name}.url"),
                    message: format!(
                        "\"{}\" must start with http:// (subgraphs are reached over plain HTTP; put a TLS-terminating proxy beside the gateway for an https service)",
                        subgraph.url
                    ),
                });
            }
            if subgraph.timeout.is_zero() {
                return Err(ConfigError::Invalid {
                    key: format!("subgraphs.{name}.timeout"),
                    message: "must be more than zero, e.g. \"5s\"".into(),
                });
            }
        }
        if self.execution.max_batch_size == 0 {
            return Err(ConfigError::Invalid {
                key: "execution.max_batch_size".into(),
                message: "must be at least 1".into(),
            });
        }
        for (key, interval) in [
            ("sync.poll_interval", self.sync.poll_interval),
            ("sync.scan_interval", self.sync.scan_interval),
            ("sync.reconcile_interval", self.sync.reconcile_interval),
        ] {
            if interval.is_zero() {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: "must be more than zero, e.g. \"5s\"".into(),
                });
            }
        }
        if self.search.backend == BackendName::OpenSearch {
            let os = &self.search.opensearch;
            let parsed = reqwest::Url::parse(&os.url).map_err(|e| ConfigError::Invalid {
                key: "search.opensearch.url".into(),
                message: format!(
                    "\"{}\" is not a URL ({e}); write e.g. \"http://127.0.0.1:9200\"",
                    os.url
                ),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::Invalid {
                    key: "search.opensearch.url".into(),
                    message: format!("\"{}\" must start with http:// or https://", os.url),
                });
            }
            if os.timeout.is_zero() {
                return Err(ConfigError::Invalid {
                    key: "search.opensearch.timeout".into(),
                    message: "must be more than zero, e.g. \"5s\"".into(),
                });
            }
            if os.shards == 0 {
                return Err(ConfigError::Invalid {
                    key: "search.opensearch.shards".into(),
                    message: "must be at least 1".into(),
                });
            }
            if !os
                .index_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
                || os.index_prefix.starts_with(['_', '-'])
            {
                return Err(ConfigError::Invalid {
                    key: "search.opensearch.index_prefix".into(),
                    message: format!(
                        "\"{}\": OpenSearch index names take lowercase letters, digits, `_` and `-`, not first",
                        os.index_prefix
                    ),
                });
            }
        }
        let k = &self.sync.kafka;
        for (key, value) in [
            ("sync.kafka.brokers", &k.brokers),
            ("sync.kafka.group", &k.group),
            ("sync.kafka.dead_letter_topic", &k.dead_letter_topic),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: "must not be empty".into(),
                });
            }
        }
        if k.max_attempts == 0 || k.batch_size == 0 || k.partitions == 0 {
            return Err(ConfigError::Invalid {
                key: "sync.kafka".into(),
                message: "max_attempts, batch_size and partitions must be at least 1".into(),
            });
        }
        if self.search.cursor_secret.is_empty() {
            return Err(ConfigError::Invalid {
                key: "search.cursor_secret".into(),
                message: "must not be empty".into(),
            });
        }
        for (key, headers) in [
            ("execution.forward_headers", &self.execution.forward_headers),
            ("security.csrf_headers", &self.security.csrf_headers),
        ] {
            for header in headers {
                if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        message: format!("\"{header}\" is not an HTTP header name"),
                    });
                }
            }
        }
        for origin in &self.security.cors_origins {
            let valid = origin == "*"
                || reqwest::Url::parse(origin).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https") && u.path() == "/" && !origin.ends_with('/')
                });
            if !valid {
                return Err(ConfigError::Invalid {
                    key: "security.cors_origins".into(),
                    message: format!(
                        "\"{origin}\" is not an origin; write e.g. \"https://admin.example.com\" or \"*\""
                    ),
                });
            }
        }
        for (key, value, example) in [
            ("limits.request_timeout", self.limits.request_timeout, "30s"),
            ("traffic.breaker_cooldown", self.traffic.breaker_cooldown, "500ms"),
            ("server.readiness_timeout", self.server.readiness_timeout, "2s"),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: format!("must be more than zero, e.g. \"{example}\""),
                });
            }
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "limits.max_body_bytes".into(),
                message: format!(
                    "{} is too small for any GraphQL request; write at least 1024",
                    self.limits.max_body_bytes
                ),
            });
        }
        if self.traffic.max_response_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "traffic.max_response_bytes".into(),
                message: format!(
                    "{} is too small for a GraphQL answer; write at least 1024",
                    self.traffic.max_response_bytes
                ),
            });
        }
        if self.traffic.max_concurrent_per_subgraph == 0 {
            return Err(ConfigError::Invalid {
                key: "traffic.max_concurrent_per_subgraph".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The development cursor secret (the default): fine for `tessera demo`
    /// and tests, refused by `tessera serve`.
    pub fn uses_development_secret(&self) -> bool {
        self.search.cursor_secret == DEVELOPMENT_CURSOR_SECRET
    }

    /// Adds the subgraphs a Federation supergraph declares
    /// (`@join__graph(url:)`) that the configuration does not name itself;
    /// `[subgraphs.<name>]` and `TESSERA_SUBGRAPH_<NAME>_URL` override them.
    pub fn declare_subgraphs<'a>(
        &mut self,
        declared: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<(), ConfigError> {
        let mut declared = declared.into_iter().peekable();
        if declared.peek().is_some() && self.demo_subgraphs {
            // The nine demo services' default endpoints never shadow a supergraph's own.
            let defaults = Config::default().subgraphs;
            self.subgraphs
                .retain(|name, s| defaults.get(name).is_none_or(|d| d.url != s.url));
            self.demo_subgraphs = false;
        }
        for (name, url) in declared {
            if self.subgraphs.contains_key(name) {
                continue;
            }
            let var = format!("TESSERA_SUBGRAPH_{}_URL", name.to_uppercase());
            let url = std::env::var(&var).unwrap_or_else(|_| url.clone());
            self.subgraphs.insert(
                name.clone(),
                SubgraphConfig {
                    url,
                    timeout: default_timeout(),
                },
            );
        }
        self.validate()
    }

    /// Checks that every subgraph the schema names has an endpoint, and
    /// that every `[subgraphs.<name>]` written is one the schema names (a
    /// misspelt table was ignored, and its URL with it).
    pub fn check_subgraphs<'a>(
        &self,
        names: impl IntoIterator<Item = &'a String> + Clone,
    ) -> Result<(), ConfigError> {
        if !self.demo_subgraphs {
            if let Some(unknown) = self
                .subgraphs
                .keys()
                .find(|k| !names.clone().into_iter().any(|n| n == *k))
            {
                let known: Vec<&str> = names.clone().into_iter().map(String::as_str).collect();
                return Err(ConfigError::Invalid {
                    key: format!("subgraphs.{unknown}"),
                    message: format!(
                        "the schema sends nothing to a subgraph of that name (its subgraphs: {})",
                        known.join(", ")
                    ),
                });
            }
        }
        // An environment is shared: a variable for no subgraph is a warning.
        for (var, _) in std::env::vars() {
            let Some(upper) = var
                .strip_prefix("TESSERA_SUBGRAPH_")
                .and_then(|v| v.strip_suffix("_URL"))
            else {
                continue;
            };
            if !names.clone().into_iter().any(|n| n.to_uppercase() == upper) {
                tracing::warn!(%var, "the schema sends nothing to a subgraph of that name; the variable is ignored");
            }
        }
        for name in names {
            if !self.subgraphs.contains_key(name) {
                return Err(ConfigError::Invalid {
                    key: format!("subgraphs.{name}"),
                    message: format!(
                        "schema.graphql sends fields to subgraph \"{name}\", but the configuration has no [subgraphs.{name}] with its url"
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_config_is_valid() {
        let text = include_str!("../tessera.toml");
        let config = Config::from_toml(text, "tessera.toml").expect("tessera.toml is valid");
        assert_eq!(config.subgraphs.len(), 9);
    }

    #[test]
    fn a_value_of_the_wrong_form_is_placed_by_line_and_column_with_its_line() {
        let err = Config::from_toml("[server]\n# the address\nlisten = \"notanaddr\"\n", "t.toml")
            .expect_err("bad address");
        let text = err.to_string();
        assert!(text.starts_with("t.toml:3:10: "), "{text}");
        assert!(text.contains("(in `listen = \"notanaddr\"`)"), "{text}");
    }

    #[test]
    fn a_zero_timeout_is_refused_under_its_own_key() {
        for (text, key) in [
            ("[limits]\nrequest_timeout = \"0s\"\n", "limits.request_timeout: "),
            (
                "[server]\nreadiness_timeout = \"0s\"\n",
                "server.readiness_timeout: ",
            ),
        ] {
            let err = Config::from_toml(text, "t.toml").expect_err("zero");
            assert!(err.to_string().starts_with(key), "{err}");
        }
    }

    #[test]
    fn a_subgraph_table_the_schema_does_not_name_is_refused() {
        let config = Config::from_toml(
            "[subgraphs.products]\nurl = \"http://127.0.0.1:1/graphql\"\n[subgraphs.prodcuts]\nurl = \"http://127.0.0.1:2/graphql\"\n",
            "t.toml",
        )
        .expect("parses");
        let names = std::collections::BTreeSet::from(["products".to_string()]);
        let err = config.check_subgraphs(&names).expect_err("misspelt table");
        assert!(err.to_string().starts_with("subgraphs.prodcuts: "), "{err}");
        // The built-in demo subgraphs are not the user's to misspell.
        assert!(Config::default()
            .check_subgraphs(&std::collections::BTreeSet::from(["members".to_string()]))
            .is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::from_toml("[server]\nlisten_on = \"x\"\n", "t.toml").expect_err("unknown key");
        assert!(err.to_string().contains("listen_on"), "{err}");
        let err = Config::from_toml("[subgraphs.a]\nurl = \"nope\"\n", "t.toml").expect_err("bad url");
        assert!(err.to_string().starts_with("subgraphs.a.url:"), "{err}");
        let err = Config::from_toml("[subgraphs.a]\nurl = \"https://x/graphql\"\n", "t.toml")
            .expect_err("https cannot be reached");
        assert!(err.to_string().contains("plain HTTP"), "{err}");
        let err = Config::from_toml(
            "[subgraphs.a]\nurl = \"http://x/graphql\"\ntimeout = \"soon\"\n",
            "t.toml",
        )
        .expect_err("bad duration");
        assert!(err.to_string().contains("t.toml"), "{err}");
        let err = Config::from_toml("[execution]\nmax_batch_size = 0\n", "t.toml").expect_err("zero batch");
        assert!(err.to_string().contains("max_batch_size"), "{err}");
        let err =
            Config::from_toml("[traffic]\nmax_response_bytes = 10\n", "t.toml").expect_err("tiny bound");
        assert!(err.to_string().contains("traffic.max_response_bytes"), "{err}");
    }
}
