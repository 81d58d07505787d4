//! Talking to subgraphs: the [`Fetcher`] trait the executor depends on, and
//! its HTTP implementation (one pooled reqwest client, a timeout per subgraph,
//! configured request headers forwarded).

use std::collections::HashMap;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{FetchError, PathSegment};

/// A GraphQL request to one subgraph.
#[derive(Debug)]
pub struct SubgraphRequest<'a> {
    pub subgraph: &'a str,
    pub query: &'a str,
    pub variables: Map<String, Value>,
    /// Client headers to pass on (already filtered by configuration).
    pub headers: &'a HeaderMap,
}

/// A subgraph's GraphQL response, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct SubgraphResponse {
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub errors: Vec<RawError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawError {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub path: Option<Vec<PathSegment>>,
    #[serde(default)]
    pub extensions: Option<Map<String, Value>>,
}

impl<'de> Deserialize<'de> for PathSegment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Index(usize),
            Key(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Index(i) => PathSegment::Index(i),
            Raw::Key(k) => PathSegment::Key(k.into()),
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

/// The HTTP [`Fetcher`].
pub struct HttpFetcher {
    client: reqwest::Client,
    endpoints: HashMap<String, Endpoint>,
}

impl HttpFetcher {
    pub fn new(endpoints: HashMap<String, Endpoint>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { client, endpoints })
    }
}

impl Fetcher for HttpFetcher {
    fn fetch<'a>(
        &'a self,
        request: SubgraphRequest<'a>,
    ) -> BoxFuture<'a, Result<SubgraphResponse, FetchError>> {
        Box::pin(async move {
            let subgraph = request.subgraph;
            let endpoint = self
                .endpoints
                .get(subgraph)
                .ok_or_else(|| FetchError::UnknownSubgraph {
                    subgraph: subgraph.to_string(),
                })?;
            let body = serde_json::to_vec(&serde_json::json!({
                "query": request.query,
                "variables": request.variables,
            }))
            .map_err(|e| FetchError::InvalidResponse {
                subgraph: subgraph.to_string(),
                reason: e.to_string(),
            })?;
            let mut headers = request.headers.clone();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let send = self.client.post(&endpoint.url).headers(headers).body(body).send();
            let exchange = async {
                let response = send.await.map_err(|e| FetchError::Unreachable {
                    subgraph: subgraph.to_string(),
                    reason: reqwest_reason(&e),
                })?;
                let status = response.status();
                let bytes = response.bytes().await.map_err(|e| FetchError::Unreachable {
                    subgraph: subgraph.to_string(),
                    reason: reqwest_reason(&e),
                })?;
                if !status.is_success() {
                    // A GraphQL server may answer errors with 4xx/5xx and a GraphQL body.
                    if let Ok(parsed) = serde_json::from_slice::<SubgraphResponse>(&bytes) {
                        if !parsed.errors.is_empty() {
                            return Ok(parsed);
                        }
                    }
                    return Err(FetchError::HttpStatus {
                        subgraph: subgraph.to_string(),
                        status: status.as_u16(),
                    });
                }
                parse_response(subgraph, &bytes)
            };
            match tokio::time::timeout(endpoint.timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(FetchError::Timeout {
                    subgraph: subgraph.to_string(),
                    after: endpoint.timeout,
                }),
            }
        })
    }
}

fn parse_response(subgraph: &str, bytes: &[u8]) -> Result<SubgraphResponse, FetchError> {
    let parsed: SubgraphResponse =
        serde_json::from_slice(bytes).map_err(|e| FetchError::InvalidResponse {
            subgraph: subgraph.to_string(),
            reason: format!("body is not a GraphQL JSON response ({e})"),
        })?;
    if parsed.data.is_none() && parsed.errors.is_empty() {
        return Err(FetchError::InvalidResponse {
            subgraph: subgraph.to_string(),
            reason: "neither `data` nor `errors` in the body".into(),
        });
    }
    if matches!(parsed.data, Some(ref d) if !d.is_object() && !d.is_null()) {
        return Err(FetchError::InvalidResponse {
            subgraph: subgraph.to_string(),
            reason: "`data` is not an object".into(),
        });
    }
    Ok(parsed)
}

fn reqwest_reason(e: &reqwest::Error) -> String {
    // reqwest's Display hides the cause ("error sending request"); the source says why.
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
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
