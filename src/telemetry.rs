//! What the gateway says about itself: Prometheus metrics (`/metrics`),
//! request spans with W3C trace context passed on to the subgraphs, and the
//! per-index freshness figures.
//!
//! The metrics are process-wide (one registry, like Prometheus' default
//! one): the fetcher, the plan cache and the sync record into [`metrics()`]
//! without being handed a handle. Every record is a few atomic operations.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::pipeline::GraphQLResponse;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubgraphLabels {
    subgraph: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubgraphLabel {
    subgraph: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IndexLabel {
    index: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabel {
    result: &'static str,
}

/// Operation names become label values; past this many distinct ones they
/// are counted as `other` (a client must not grow the registry at will).
const MAX_OPERATION_NAMES: usize = 200;

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
    subgraph_requests: Family<SubgraphLabels, Histogram>,
    batch_sizes: Family<SubgraphLabel, Histogram>,
    plan_cache: Family<CacheLabel, Counter>,
    breaker_open: Family<SubgraphLabel, Gauge>,
    deduplicated: Family<SubgraphLabel, Counter>,
    retries: Family<SubgraphLabel, Counter>,
    index_documents: Family<IndexLabel, Gauge>,
    index_last_applied: Family<IndexLabel, Gauge>,
    index_lag: Family<IndexLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    changes_applied: Family<IndexLabel, Counter>,
    dead_letters: Counter,
    operation_names: Mutex<HashSet<String>>,
    /// Per index: when a change was last applied by this process.
    last_applied: Mutex<std::collections::HashMap<String, SystemTime>>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("tessera");
        let requests =
            Family::<RequestLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "request_duration_seconds",
            "GraphQL requests by operation name and outcome (ok, errors, refused)",
            requests.clone(),
        );
        let subgraph_requests =
            Family::<SubgraphLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "subgraph_request_duration_seconds",
            "Requests to subgraphs by subgraph and outcome (ok, error, timeout, unreachable, circuit_open)",
            subgraph_requests.clone(),
        );
        let batch_sizes =
            Family::<SubgraphLabel, Histogram>::new_with_constructor(size_histogram as fn() -> Histogram);
        registry.register(
            "subgraph_batch_size",
            "Keys per batched subgraph request",
            batch_sizes.clone(),
        );
        let plan_cache = Family::<CacheLabel, Counter>::default();
        registry.register(
            "plan_cache",
            "Plan cache lookups by result (hit, miss)",
            plan_cache.clone(),
        );
        let breaker_open = Family::<SubgraphLabel, Gauge>::default();
        registry.register(
            "subgraph_circuit_open",
            "1 while a subgraph's circuit breaker is open (requests fail fast)",
            breaker_open.clone(),
        );
        let deduplicated = Family::<SubgraphLabel, Counter>::default();
        registry.register(
            "subgraph_deduplicated",
            "Subgraph requests answered by an identical request already in flight",
            deduplicated.clone(),
        );
        let retries = Family::<SubgraphLabel, Counter>::default();
        registry.register(
            "subgraph_retries",
            "Subgraph query requests retried after a connection error",
            retries.clone(),
        );
        let index_documents = Family::<IndexLabel, Gauge>::default();
        registry.register(
            "index_documents",
            "Documents in each live index",
            index_documents.clone(),
        );
        let index_last_applied = Family::<IndexLabel, Gauge>::default();
        registry.register(
            "index_last_applied_timestamp_seconds",
            "When this process last applied a change to each index (Unix time)",
            index_last_applied.clone(),
        );
        let index_lag = Family::<IndexLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "index_lag_seconds",
            "How far behind the services each index may be (now minus its sync watermark)",
            index_lag.clone(),
        );
        let changes_applied = Family::<IndexLabel, Counter>::default();
        registry.register(
            "index_changes_applied",
            "Documents written or deleted by the sync, per index",
            changes_applied.clone(),
        );
        let dead_letters = Counter::default();
        registry.register(
            "sync_dead_letters",
            "Change events sent to the dead-letter topic",
            dead_letters.clone(),
        );
        Self {
            registry,
            requests,
            subgraph_requests,
            batch_sizes,
            plan_cache,
            breaker_open,
            deduplicated,
            retries,
            index_documents,
            index_last_applied,
            index_lag,
            changes_applied,
            dead_letters,
            operation_names: Mutex::new(HashSet::new()),
            last_applied: Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub fn subgraph_request(&self, subgraph: &str, outcome: &'static str, took: Duration) {
        self.subgraph_requests
            .get_or_create(&SubgraphLabels {
                subgraph: subgraph.to_owned(),
                outcome,
            })
            .observe(took.as_secs_f64());
    }

    pub fn batch_size(&self, subgraph: &str, keys: usize) {
        self.batch_sizes
            .get_or_create(&SubgraphLabel {
                subgraph: subgraph.to_owned(),
            })
            .observe(keys as f64);
    }

    pub fn plan_cache(&self, hit: bool) {
        self.plan_cache
            .get_or_create(&CacheLabel {
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    pub fn circuit(&self, subgraph: &str, open: bool) {
        self.breaker_open
            .get_or_create(&SubgraphLabel {
                subgraph: subgraph.to_owned(),
            })
            .set(i64::from(open));
    }

    pub fn deduplicated(&self, subgraph: &str) {
        self.deduplicated
            .get_or_create(&SubgraphLabel {
                subgraph: subgraph.to_owned(),
            })
            .inc();
    }

    pub fn retried(&self, subgraph: &str) {
        self.retries
            .get_or_create(&SubgraphLabel {
                subgraph: subgraph.to_owned(),
            })
            .inc();
    }

    /// The sync wrote or deleted `documents` of `index` (a logical name).
    pub fn applied(&self, index: &str, documents: u64) {
        if documents == 0 {
            return;
        }
        let now = SystemTime::now();
        self.last_applied.lock().insert(index.to_owned(), now);
        let label = IndexLabel {
            index: index.to_owned(),
        };
        self.changes_applied.get_or_create(&label).inc_by(documents);
        let unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.index_last_applied
            .get_or_create(&label)
            .set(i64::try_from(unix).unwrap_or(i64::MAX));
    }

    /// When this process last applied a change to `index`.
    pub fn last_applied(&self, index: &str) -> Option<SystemTime> {
        self.last_applied.lock().get(index).copied()
    }

    pub fn dead_lettered(&self) {
        self.dead_letters.inc();
    }

    fn request(&self, operation: Option<&str>, outcome: &'static str, took: Duration) {
        let operation = match operation.and_then(operation_label) {
            None => String::new(),
            Some(name) => {
                let mut names = self.operation_names.lock();
                if names.contains(name) {
                    name.to_owned()
                } else if outcome != "refused" && names.len() < MAX_OPERATION_NAMES {
                    // Only an operation that ran takes one of the labels: a
                    // refused request's name may be in no document at all.
                    names.insert(name.to_owned());
                    name.to_owned()
                } else {
                    "other".to_owned()
                }
            }
        };
        self.requests
            .get_or_create(&RequestLabels { operation, outcome })
            .observe(took.as_secs_f64());
    }

    fn set_index(&self, index: &str, documents: u64, lag: Option<Duration>) {
        let label = IndexLabel {
            index: index.to_owned(),
        };
        self.index_documents
            .get_or_create(&label)
            .set(i64::try_from(documents).unwrap_or(i64::MAX));
        if let Some(lag) = lag {
            self.index_lag.get_or_create(&label).set(lag.as_secs_f64());
        }
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The request-level telemetry of one gateway: whether `/metrics` is served,
/// and where the index figures come from.
pub struct Telemetry {
    enabled: bool,
    syncer: Option<Arc<crate::sync::Syncer>>,
}

impl Telemetry {
    pub fn new(enabled: bool, syncer: Option<Arc<crate::sync::Syncer>>) -> Self {
        Self { enabled, syncer }
    }

    pub fn disabled() -> Self {
        Self::new(false, None)
    }

    /// The metrics in the OpenMetrics text format (`None`: turned off).
    /// Index figures are read from the indexes at each scrape.
    pub async fn render(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let m = metrics();
        if let Some(syncer) = &self.syncer {
            match syncer.status().await {
                Ok(statuses) => {
                    for status in statuses.iter().filter(|s| !s.aliases.is_empty()) {
                        for alias in &status.aliases {
                            m.set_index(alias, status.documents, status.lag);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "metrics: the index figures could not be read"),
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).ok()?;
        Some(text)
    }

    /// The span of one request, in the caller's trace when it sent a W3C
    /// `traceparent` (exported over OTLP when [`init_tracing`] set it up).
    pub fn request_span(
        &self,
        request_id: &str,
        operation: Option<&str>,
        headers: &axum::http::HeaderMap,
    ) -> tracing::Span {
        let trace = TraceContext::from_headers(headers);
        let span = tracing::info_span!(
            "request",
            request_id,
            operation = operation.and_then(operation_label).unwrap_or(""),
            trace_id = %trace.trace_id_hex(),
        );
        if trace.parent_id != 0 {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let parent = opentelemetry::trace::SpanContext::new(
                opentelemetry::trace::TraceId::from_bytes(trace.trace_id.to_be_bytes()),
                opentelemetry::trace::SpanId::from_bytes(trace.parent_id.to_be_bytes()),
                if trace.sampled {
                    opentelemetry::trace::TraceFlags::SAMPLED
                } else {
                    opentelemetry::trace::TraceFlags::default()
                },
                true,
                opentelemetry::trace::TraceState::default(),
            );
            // A no-op unless traces are exported.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
        }
        span
    }

    pub fn record_request(&self, operation: Option<&str>, response: &GraphQLResponse, took: Duration) {
        let outcome = match response.status {
            200 if response.has_errors => "errors",
            200 => "ok",
            _ => "refused",
        };
        metrics().request(operation, outcome, took);
    }
}

/// The longest operation name used as a metric label or span field.
const MAX_OPERATION_LABEL: usize = 128;

/// `name` when it can be an operation's name (a GraphQL name, not too
/// long): it is client input, sent before anything checks it (a 500 KB
/// `operationName` grew `/metrics` by 9 MB per request).
fn operation_label(name: &str) -> Option<&str> {
    let mut bytes = name.bytes();
    let starts = bytes.next().is_some_and(|b| b == b'_' || b.is_ascii_alphabetic());
    (starts && name.len() <= MAX_OPERATION_LABEL && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric()))
        .then_some(name)
}

/// The `traceparent` for a request made inside the current span: that
/// span's own context when traces are exported (so the callee's spans nest
/// under it), else a child of the request's trace context.
pub fn outgoing_traceparent(fallback: &TraceContext) -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let own = span.span_context();
    if own.is_valid() {
        return traceparent(
            u128::from_be_bytes(own.trace_id().to_bytes()),
            u64::from_be_bytes(own.span_id().to_bytes()),
            own.trace_flags().to_u8(),
        );
    }
    fallback.child_header()
}

/// `00-<trace id>-<span id>-<flags>` in lowercase hex, written directly:
/// one per subgraph request, where `format!` cost ~2,000 instructions.
fn traceparent(trace_id: u128, span_id: u64, flags: u8) -> String {
    fn hex(out: &mut String, value: u128, digits: u32) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for i in (0..digits).rev() {
            out.push(char::from(HEX[((value >> (4 * i)) & 0xf) as usize]));
        }
    }
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    hex(&mut out, trace_id, 32);
    out.push('-');
    hex(&mut out, u128::from(span_id), 16);
    out.push('-');
    hex(&mut out, u128::from(flags), 2);
    out
}

/// The layer that turns `tracing` spans into exported OpenTelemetry spans.
pub type OtlpLayer<S> = tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

/// Exports spans over OTLP/HTTP (protobuf) when the standard OpenTelemetry
/// variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SERVICE_NAME`, `OTEL_BSP_*`
/// as the SDK reads them): the layer to add to the subscriber, and the
/// provider to flush at exit. `None` when tracing export is not configured.
pub fn otlp_layer<S>() -> Result<Option<(OtlpLayer<S>, opentelemetry_sdk::trace::SdkTracerProvider)>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry::trace::TracerProvider;
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|e| !e.is_empty()));
    if !configured {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("the OTLP trace exporter cannot be built: {e}"))?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "tessera".into()))
                .build(),
        )
        .build();
    let tracer = provider.tracer("tessera");
    Ok(Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        provider,
    )))
}

/// W3C trace context (`traceparent`): the trace a request belongs to, passed
/// on to every subgraph request with a span id of its own.
#[derive(Debug, Clone, Copy)]
pub struct TraceContext {
    pub trace_id: u128,
    pub parent_id: u64,
    pub sampled: bool,
}

impl TraceContext {
    /// The caller's context, or a new trace.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Self {
        headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(|| Self {
                trace_id: rand_u128(),
                parent_id: 0,
                sampled: false,
            })
    }

    /// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2
            || version == "ff"
            || trace.len() != 32
            || parent.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let parent_id = u64::from_str_radix(parent, 16).ok().filter(|p| *p != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The `traceparent` of a child span (a subgraph request).
    pub fn child_header(&self) -> String {
        let span = loop {
            let id = rand_u128() as u64;
            if id != 0 {
                break id;
            }
        };
        traceparent(self.trace_id, span, u8::from(self.sampled))
    }
}

/// Trace and span ids need to be unique, not secret: a thread-local
/// generator, not a system call per id (uuid's v4 asked the kernel).
fn rand_u128() -> u128 {
    fastrand::u128(..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_headers_are_w3c_shaped_and_keep_the_trace() {
        assert_eq!(
            traceparent(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                1
            ),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let caller =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("parses");
        let child = caller.child_header();
        assert!(
            child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{child}"
        );
        assert!(child.ends_with("-01") && child.len() == 55, "{child}");
        let again = TraceContext::parse(&child).expect("a child parses");
        assert_eq!(again.trace_id, caller.trace_id);
        assert_ne!(child, caller.child_header(), "each child has its own span id");
    }
}
