//! Talking to subgraphs: the [`Fetcher`] trait the executor depends on, and
//! its HTTP implementation (one pooled hyper client, a timeout per
//! subgraph, configured request headers forwarded, and the resilience of
//! [`Traffic`]: retries, circuit breakers, concurrency bounds,
//! deduplication).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::error::{FetchError, PathSegment};
use super::tape::{Held, Node, Number, Tape};

/// A GraphQL request to one subgraph.
#[derive(Debug)]
pub struct SubgraphRequest<'a> {
    pub subgraph: &'a str,
    pub query: &'a str,
    pub variables: Map<String, Value>,
    /// Client headers to pass on (already filtered by configuration).
    pub headers: &'a HeaderMap,
    /// A mutation is never retried nor shared with another caller.
    pub mutation: bool,
}

/// A subgraph's GraphQL response: `data` read into a shared tape (cheap to
/// clone for deduplicated callers), `errors` as sent.
#[derive(Debug, Clone, Default)]
pub struct SubgraphResponse {
    /// `None` when the body has no `data` or `"data": null`.
    pub data: Option<Held>,
    pub errors: Vec<RawError>,
}

#[derive(Debug, Clone)]
pub struct RawError {
    pub message: String,
    pub path: Option<Vec<PathSegment>>,
    pub extensions: Option<Map<String, Value>>,
}

impl SubgraphResponse {
    /// Reads a GraphQL response body: an object with `data` (an object or
    /// null) and/or `errors` (a list of error objects).
    pub fn from_body(subgraph: &str, body: Vec<u8>) -> Result<SubgraphResponse, FetchError> {
        let invalid = |reason: String| FetchError::InvalidResponse {
            subgraph: subgraph.to_string(),
            reason,
        };
        // Validated as UTF-8 once, in bulk: read from a `&str`, serde_json
        // skips the check on each string it reads.
        let text = String::from_utf8(body)
            .map_err(|e| invalid(format!("body is not UTF-8 ({})", e.utf8_error())))?;
        let tape =
            Tape::parse(text).map_err(|e| invalid(format!("body is not a GraphQL JSON response ({e})")))?;
        let tape = Arc::new(tape);
        let root = tape.root();
        if !root.is_object() {
            return Err(invalid(
                "body is not a GraphQL JSON response (not an object)".into(),
            ));
        }
        let data = match root.get("data") {
            None => None,
            Some(d) if d.is_null() => None,
            Some(d) if d.is_object() => Some(Held::of(&tape, d)),
            Some(_) => return Err(invalid("`data` is not an object".into())),
        };
        let errors = match root.get("errors") {
            None => Vec::new(),
            Some(e) if e.is_null() => Vec::new(),
            Some(e) if e.is_array() => e
                .items()
                .map(RawError::read)
                .collect::<Result<_, _>>()
                .map_err(|why| invalid(format!("body is not a GraphQL JSON response ({why})")))?,
            Some(_) => return Err(invalid("`errors` is not a list".into())),
        };
        if data.is_none() && errors.is_empty() {
            return Err(invalid("neither `data` nor `errors` in the body".into()));
        }
        Ok(SubgraphResponse { data, errors })
    }
}

impl RawError {
    fn read(error: Node<'_>) -> Result<RawError, &'static str> {
        if !error.is_object() {
            return Err("an error that is not an object");
        }
        let present = |name| error.get(name).filter(|v| !v.is_null());
        let message = match present("message") {
            None => String::new(),
            Some(m) => m
                .as_str()
                .ok_or("an error message that is not a string")?
                .to_owned(),
        };
        let path = match present("path") {
            None => None,
            Some(p) if p.is_array() => Some(
                p.items()
                    .map(|segment| match (segment.as_str(), segment.as_number()) {
                        (Some(key), _) => Ok(PathSegment::Key(async_graphql::Name::new(key))),
                        (None, Some(Number::Int(i))) if i >= 0 => Ok(PathSegment::Index(i as usize)),
                        _ => Err("an error path segment that is neither a key nor an index"),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err("an error path that is not a list"),
        };
        let extensions = match present("extensions") {
            None => None,
            Some(e) if e.is_object() => match e.to_value() {
                Value::Object(map) => Some(map),
                _ => None,
            },
            Some(_) => return Err("error extensions that are not an object"),
        };
        Ok(RawError {
            message,
            path,
            extensions,
        })
    }
}

/// How the executor reaches subgraphs. Tests may answer from memory.
pub trait Fetcher: Send + Sync {
    fn fetch<'a>(
        &'a self,
        request: SubgraphRequest<'a>,
    ) -> BoxFuture<'a, Result<SubgraphResponse, FetchError>>;
}

/// Where a subgraph is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub timeout: Duration,
}

/// How the HTTP fetcher treats subgraphs under failure and load (`[traffic]`).
pub use crate::config::TrafficConfig as Traffic;

/// A subgraph's circuit breaker: closed (requests flow), open (fail fast
/// until `until`), then one probe decides (half-open).
#[derive(Debug)]
enum Circuit {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is in flight; the others still fail fast. Past `until` (the
    /// probe was cancelled) the next request probes.
    Probing {
        until: Instant,
    },
}

type Exchanged = BoxFuture<'static, Result<SubgraphResponse, FetchError>>;

/// A request in flight that later identical ones join. The map holds it
/// weakly: when every caller has given up on it (the client went away, its
/// request timed out), it is dropped, with the concurrency slot it held or
/// waited for, and [`Leave`] takes it out of the map. Held strongly, an
/// abandoned request was never driven again: it kept its slot for good,
/// and enough of them wedged the subgraph for every later request.
struct InFlight {
    sent: Instant,
    id: u64,
    exchange: futures::future::WeakShared<Exchanged>,
}

/// Takes a request out of the in-flight map when it ends or is dropped
/// (unless another has taken its key since).
struct Leave {
    subgraph: Arc<Subgraph>,
    key: u64,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let mut in_flight = self.subgraph.in_flight.lock();
        if in_flight.get(&self.key).is_some_and(|entry| entry.id == self.id) {
            in_flight.remove(&self.key);
        }
    }
}

static IN_FLIGHT_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Per subgraph: where, the breaker, the bound on requests in flight, and
/// the requests in flight by content (deduplication).
struct Subgraph {
    name: String,
    endpoint: Endpoint,
    /// `endpoint.url` parsed once (parsing it per request cost ~4% of a
    /// page's CPU); a URL that does not parse, or that this client cannot
    /// reach (not `http://`), fails each fetch with why.
    uri: Result<http::Uri, String>,
    circuit: Mutex<Circuit>,
    slots: Semaphore,
    /// By content; one older than the timeout is replaced, not joined.
    in_flight: Mutex<HashMap<u64, InFlight>>,
}

/// The HTTP [`Fetcher`]: one pooled client; per subgraph a timeout,
/// retries of queries on connection errors with jittered backoff, a circuit
/// breaker, a bound on concurrent requests, and deduplication of identical
/// queries in flight.
///
/// The client is hyper-util's, as Hive Router's: reqwest (kept for
/// OpenSearch) parses each request's URL twice more for its redirect
/// handling and wraps every response, about 11% of a 20-row page's
/// instructions (docs/benchmarks.md), and subgraphs are not redirected.
pub struct HttpFetcher {
    client: Client,
    subgraphs: HashMap<String, Arc<Subgraph>>,
    traffic: Traffic,
}

/// Headers that differ per request without changing the answer: left out of
/// the deduplication key.
const PER_REQUEST_HEADERS: [&str; 1] = ["traceparent"];

impl HttpFetcher {
    pub fn new(endpoints: HashMap<String, Endpoint>) -> Self {
        Self::with_traffic(endpoints, Traffic::default())
    }

    pub fn with_traffic(endpoints: HashMap<String, Endpoint>, traffic: Traffic) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let subgraphs = endpoints
            .into_iter()
            .map(|(name, endpoint)| {
                let subgraph = Subgraph {
                    name: name.clone(),
                    uri: subgraph_uri(&endpoint.url),
                    endpoint,
                    circuit: Mutex::new(Circuit::Closed { failures: 0 }),
                    slots: Semaphore::new(traffic.max_concurrent_per_subgraph.max(1)),
                    in_flight: Mutex::new(HashMap::new()),
                };
                (name, Arc::new(subgraph))
            })
            .collect();
        Self {
            client,
            subgraphs,
            traffic,
        }
    }
}

impl Fetcher for HttpFetcher {
    fn fetch<'a>(
        &'a self,
        request: SubgraphRequest<'a>,
    ) -> BoxFuture<'a, Result<SubgraphResponse, FetchError>> {
        Box::pin(async move {
            let subgraph =
                self.subgraphs
                    .get(request.subgraph)
                    .ok_or_else(|| FetchError::UnknownSubgraph {
                        subgraph: request.subgraph.to_string(),
                    })?;
            let body = serde_json::to_vec(&RequestBody {
                query: request.query,
                variables: &request.variables,
            })
            .map_err(|e| FetchError::InvalidResponse {
                subgraph: subgraph.name.clone(),
                reason: e.to_string(),
            })?;
            let mut headers = request.headers.clone();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let exchange = Exchange {
                client: self.client.clone(),
                subgraph: Arc::clone(subgraph),
                headers,
                body: body.into(),
                retries: if request.mutation { 0 } else { self.traffic.retries },
                backoff: self.traffic.retry_backoff,
                breaker: self.traffic.breaker_failures,
                cooldown: self.traffic.breaker_cooldown,
                max_response_bytes: self.traffic.max_response_bytes,
            };
            let span = tracing::info_span!("subgraph", subgraph = %subgraph.name);
            if request.mutation || !self.traffic.deduplicate {
                return tracing::Instrument::instrument(exchange.run(), span).await;
            }
            let key = dedup_key(&exchange.body, request.headers);
            let shared = {
                let mut in_flight = subgraph.in_flight.lock();
                // Upgraded only when fresh: a clone dropped here, if the
                // last, would take this lock again (in `Leave`).
                let live = in_flight
                    .get(&key)
                    .filter(|entry| entry.sent.elapsed() < subgraph.endpoint.timeout)
                    .and_then(|entry| entry.exchange.upgrade());
                if let Some(shared) = live {
                    crate::telemetry::metrics().deduplicated(&subgraph.name);
                    shared
                } else {
                    let id = IN_FLIGHT_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let leave = Leave {
                        subgraph: Arc::clone(subgraph),
                        key,
                        id,
                    };
                    let exchanged: Exchanged = async move {
                        let _leave = leave;
                        tracing::Instrument::instrument(exchange.run(), span).await
                    }
                    .boxed();
                    let shared = exchanged.shared();
                    if let Some(exchange) = shared.downgrade() {
                        let sent = Instant::now();
                        // A replaced entry is only a weak reference: dropping it drops no request.
                        in_flight.insert(key, InFlight { sent, id, exchange });
                    }
                    shared
                }
            };
            shared.await
        })
    }
}

type Client = hyper_util::client::legacy::Client<HttpConnector, Full<bytes::Bytes>>;

/// A body's buffer is sized up front by its Content-Length up to this; past
/// it, it grows as the body arrives (a wrong header costs no memory).
const MAX_PRESIZED_BODY: usize = 16 << 20;

/// A subgraph's URL as the client sends it, or why it cannot.
fn subgraph_uri(url: &str) -> Result<http::Uri, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("\"{url}\" is not a URL ({e})"))?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "\"{url}\": subgraphs are reached over plain HTTP (put a TLS-terminating proxy beside the gateway for an https service)"
        ));
    }
    parsed
        .as_str()
        .parse()
        .map_err(|e| format!("\"{url}\" is not a URL ({e})"))
}

/// The JSON body of a subgraph request, written straight from the plan's
/// document and the variables (no intermediate `Value`).
#[derive(serde::Serialize)]
struct RequestBody<'a> {
    query: &'a str,
    variables: &'a Map<String, Value>,
}

fn dedup_key(body: &[u8], headers: &HeaderMap) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(body);
    for (name, value) in headers {
        if PER_REQUEST_HEADERS.contains(&name.as_str()) {
            continue;
        }
        hasher.update(&[0]);
        hasher.update(name.as_str().as_bytes());
        hasher.update(&[1]);
        hasher.update(value.as_bytes());
    }
    hasher.digest()
}

/// One request to a subgraph with its retries, owning what it needs (it
/// may be shared by deduplicated callers).
struct Exchange {
    client: Client,
    subgraph: Arc<Subgraph>,
    headers: HeaderMap,
    body: bytes::Bytes,
    retries: u32,
    backoff: Duration,
    breaker: u32,
    cooldown: Duration,
    max_response_bytes: usize,
}

impl Exchange {
    async fn run(self) -> Result<SubgraphResponse, FetchError> {
        let metrics = crate::telemetry::metrics();
        let name = &self.subgraph.name;
        let mut attempt = 0;
        loop {
            let probe = match self.admit() {
                Ok(probe) => probe,
                Err(open) => {
                    metrics.subgraph_request(name, "circuit_open", Duration::ZERO);
                    return Err(open);
                }
            };
            let started = Instant::now();
            let result = {
                // The semaphore is never closed.
                let _slot = self.subgraph.slots.acquire().await;
                self.attempt().await
            };
            let outcome = match &result {
                Ok((_, false)) => "ok",
                Ok((_, true)) => "error",
                Err(FetchError::Unreachable { .. }) => "unreachable",
                Err(FetchError::Timeout { .. }) => "timeout",
                Err(_) => "error",
            };
            metrics.subgraph_request(name, outcome, started.elapsed());
            let server_failed = matches!(
                result,
                Ok((_, true))
                    | Err(FetchError::Unreachable { .. }
                        | FetchError::Timeout { .. }
                        | FetchError::HttpStatus { status: 500.., .. })
            );
            self.settle(server_failed, probe);
            let result = result.map(|(response, _)| response);
            match result {
                Err(FetchError::Unreachable { .. }) if attempt < self.retries => {
                    attempt += 1;
                    metrics.retried(name);
                    // Full jitter between half and one and a half times the backoff.
                    let base = self.backoff.saturating_mul(1 << (attempt - 1).min(10));
                    let jitter = 0.5 + f64::from(uuid::Uuid::new_v4().as_u128() as u32) / f64::from(u32::MAX);
                    tokio::time::sleep(base.mul_f64(jitter)).await;
                }
                result => return result,
            }
        }
    }

    /// Whether the circuit lets this request through (`Ok(true)`: as the
    /// half-open probe).
    fn admit(&self) -> Result<bool, FetchError> {
        if self.breaker == 0 {
            return Ok(false);
        }
        let mut circuit = self.subgraph.circuit.lock();
        match *circuit {
            Circuit::Closed { .. } => Ok(false),
            Circuit::Open { until } | Circuit::Probing { until } if Instant::now() >= until => {
                *circuit = Circuit::Probing {
                    until: Instant::now() + self.subgraph.endpoint.timeout,
                };
                Ok(true)
            }
            Circuit::Open { .. } | Circuit::Probing { .. } => Err(FetchError::CircuitOpen {
                subgraph: self.subgraph.name.clone(),
            }),
        }
    }

    /// Counts a failure of the service (not of one request's content).
    /// `failed`: the service failed (unreachable, timed out, a 5xx status,
    /// with a GraphQL body or not).
    fn settle(&self, failed: bool, probe: bool) {
        if self.breaker == 0 {
            return;
        }
        let mut circuit = self.subgraph.circuit.lock();
        let next = match (&*circuit, failed) {
            (_, false) => Circuit::Closed { failures: 0 },
            (Circuit::Closed { failures }, true) if failures + 1 < self.breaker => Circuit::Closed {
                failures: failures + 1,
            },
            // A probe that failed, or one failure too many.
            (Circuit::Probing { .. }, true) if !probe => return,
            _ => Circuit::Open {
                until: Instant::now() + self.cooldown,
            },
        };
        let (was_open, is_open) = (
            !matches!(*circuit, Circuit::Closed { .. }),
            !matches!(next, Circuit::Closed { .. }),
        );
        if was_open != is_open {
            if is_open {
                tracing::warn!(subgraph = %self.subgraph.name, "circuit opened: requests fail fast for {}", humantime::format_duration(self.cooldown));
            } else {
                tracing::info!(subgraph = %self.subgraph.name, "circuit closed: the subgraph answers again");
            }
            crate::telemetry::metrics().circuit(&self.subgraph.name, is_open);
        }
        *circuit = next;
    }

    /// The answer, and whether it came with a server error status (5xx):
    /// a GraphQL body with errors is kept, but the service failed.
    async fn attempt(&self) -> Result<(SubgraphResponse, bool), FetchError> {
        let subgraph = self.subgraph.name.as_str();
        let endpoint = &self.subgraph.endpoint;
        let mut headers = self.headers.clone();
        if let Some(caller) = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::telemetry::TraceContext::parse)
        {
            // This fetch's own span, when spans are exported.
            if let Ok(v) = HeaderValue::from_str(&crate::telemetry::outgoing_traceparent(&caller)) {
                headers.insert("traceparent", v);
            }
        }
        let uri = self
            .subgraph
            .uri
            .clone()
            .map_err(|reason| FetchError::Unreachable {
                subgraph: subgraph.to_string(),
                reason,
            })?;
        let mut request = http::Request::new(Full::new(self.body.clone()));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let unreachable = |e: &dyn std::error::Error| FetchError::Unreachable {
            subgraph: subgraph.to_string(),
            reason: error_chain(e),
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| unreachable(&e))?;
            let status = response.status();
            // Read into one buffer sized by Content-Length: collecting into
            // `Bytes` and converting copied a body read in several chunks twice.
            let size = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            let too_large = || FetchError::InvalidResponse {
                subgraph: subgraph.to_string(),
                reason: format!(
                    "the answer is larger than traffic.max_response_bytes ({} bytes)",
                    self.max_response_bytes
                ),
            };
            if size > self.max_response_bytes {
                return Err(too_large());
            }
            let mut bytes = Vec::with_capacity(size.min(MAX_PRESIZED_BODY));
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame.map_err(|e| unreachable(&e))?.data_ref() {
                    if bytes.len() + data.len() > self.max_response_bytes {
                        return Err(too_large());
                    }
                    bytes.extend_from_slice(data);
                }
            }
            if !status.is_success() {
                // A GraphQL server may answer errors with 4xx/5xx and a GraphQL body.
                if let Ok(parsed) = SubgraphResponse::from_body(subgraph, bytes) {
                    if !parsed.errors.is_empty() {
                        return Ok((parsed, status.is_server_error()));
                    }
                }
                return Err(FetchError::HttpStatus {
                    subgraph: subgraph.to_string(),
                    status: status.as_u16(),
                });
            }
            SubgraphResponse::from_body(subgraph, bytes).map(|parsed| (parsed, false))
        };
        match tokio::time::timeout(endpoint.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                subgraph: subgraph.to_string(),
                after: endpoint.timeout,
            }),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    // The client's Display hides the cause ("client error (Connect)"); the sources say why.
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    reason
}

/// Keeps the client headers named in configuration (case-insensitive).
pub fn forwarded_headers(names: &[HeaderName], incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in names {
        for value in incoming.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_bodies_are_read_or_refused_with_a_reason() {
        let parse = |body: &[u8]| SubgraphResponse::from_body("s", body.to_vec());
        let ok = parse(br#"{"data":{"a":"caf\u00e9 \"q\"","b":[1,{"c":null}]},"errors":[{"message":"m","path":["a",0],"extensions":{"code":"X"}}]}"#)
            .expect("parses");
        let data = ok.data.expect("data");
        assert_eq!(data.node().get("a").and_then(|a| a.as_str()), Some("café \"q\""));
        assert_eq!(
            data.node().to_json(),
            r#"{"a":"café \"q\"","b":[1,{"c":null}]}"#.as_bytes()
        );
        let error = &ok.errors[0];
        assert_eq!(error.message, "m");
        assert_eq!(
            error.path.as_deref(),
            Some(
                &[
                    PathSegment::Key(async_graphql::Name::new("a")),
                    PathSegment::Index(0)
                ][..]
            )
        );
        assert_eq!(
            error.extensions.as_ref().and_then(|e| e.get("code")),
            Some(&Value::from("X"))
        );
        assert!(parse(br#"{"data":null,"errors":[{"message":"down"}]}"#)
            .expect("parses")
            .data
            .is_none());
        let refused = |body: &[u8]| match parse(body) {
            Err(FetchError::InvalidResponse { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(refused(b"{\"data\":{\"a\":\"\xff\xfe\"}}").contains("not UTF-8"));
        assert!(refused(b"<html>busy</html>").contains("not a GraphQL JSON response"));
        assert!(refused(b"{}").contains("neither"));
        assert!(refused(br#"{"data":[1]}"#).contains("not an object"));
        assert!(refused(br#"[1]"#).contains("not an object"));
        assert!(refused(br#"{"data":{},"errors":"no"}"#).contains("not a list"));
        assert!(refused(br#"{"errors":[{"message":"m","path":[-1]}]}"#).contains("path segment"));
        assert!(refused(br#"{"data":{"a":1}} trailing"#).contains("not a GraphQL JSON response"));
    }

    #[tokio::test]
    async fn a_subgraph_url_that_does_not_parse_fails_its_fetches_with_why() {
        let endpoint = Endpoint {
            url: "http//missing-colon".into(),
            timeout: Duration::from_secs(1),
        };
        let fetcher = HttpFetcher::new(HashMap::from([("a".to_string(), endpoint)]));
        let headers = HeaderMap::new();
        let result = fetcher
            .fetch(SubgraphRequest {
                subgraph: "a",
                query: "{ x }",
                variables: Map::new(),
                headers: &headers,
                mutation: false,
            })
            .await;
        match result {
            Err(FetchError::Unreachable { subgraph, reason }) => {
                assert_eq!(subgraph, "a");
                assert!(reason.contains("is not a URL"), "{reason}");
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }
}
