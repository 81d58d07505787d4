//! The [`SearchBackend`] for deployments that outgrow one machine: an
//! OpenSearch (or Elasticsearch) cluster over its REST API, shared by every
//! gateway replica.
//!
//! This module owns the mapping of an [`IndexSpec`] onto an OpenSearch
//! index (`opensearch/mapping.rs`), the translation of queries into query
//! DSL (`opensearch/dsl.rs`) and the write discipline; it must not leak
//! OpenSearch's vocabulary: everything public speaks `search::*` types.
//!
//! - **Names.** Every index and alias gets the configured prefix
//!   (`index_prefix`, so several deployments can share a cluster); callers
//!   never see it.
//! - **Writes** go through `_bulk` with external versions, so an older
//!   document never overwrites a newer one whatever the order writes
//!   arrive in from several replicas. A document's version `v` is written
//!   as `2v`, a delete at `v` as `2v + 1` (`version_type=external_gte`): an
//!   upsert at `v` replaces one at `v`, a delete at `v` removes it, and an
//!   upsert at `v` after a delete at `v` is refused — the embedded
//!   backend's rules. OpenSearch keeps a delete's version for
//!   `index.gc_deletes` (60 s by default); the embedded backend keeps its
//!   last 100,000 tombstones. Every write refreshes before it returns, so a
//!   search right after it sees it.
//! - **Checkpoints** live in one small index (`<prefix>tessera_checkpoints`,
//!   a document per physical index), written after the batch they belong to
//!   was acknowledged: a crash in between replays the batch, which versions
//!   make harmless.
//! - **Failures**: a server that cannot be reached or does not answer within
//!   the timeout is [`SearchError::Unavailable`]; a document it refuses is
//!   reported in [`WriteOutcome::rejected`] with its id and reason; requests
//!   it throttles (429) are retried with backoff.

mod dsl;
mod mapping;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use parking_lot::RwLock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use self::mapping::Mapping;
use super::query::{Document, FieldValue, Filter, Hit, Page, SearchQuery, SearchResult, SortPosition};
use super::spec::{document_values, IndexSpec, Scalar, ID_FIELD};
use super::{Catalog, Rejected, SearchBackend, SearchError, WriteOp, WriteOutcome};

/// The index holding every physical index's sync checkpoint.
const CHECKPOINTS: &str = "tessera_checkpoints";
/// Ids and terms per request when listing them all.
const PAGE: usize = 10_000;
/// Tries of a request OpenSearch throttled (429).
const THROTTLE_TRIES: u32 = 5;
/// Operations per `_bulk` request of a big batch…
const BULK_CHUNK: usize = 2_500;
/// …and at most this many sent at once.
const MAX_CONCURRENT_BULKS: usize = 4;
/// A writer stamps "documents applied" on an index at most this often.
const APPLIED_STAMP_INTERVAL: Duration = Duration::from_secs(1);

/// One `_bulk` request being built: its NDJSON body, and for each action
/// the id and whether it is an upsert (else a delete).
#[derive(Default)]
struct Bulk {
    body: String,
    sent: Vec<(String, bool)>,
}

/// How to reach the cluster and lay out new indexes.
#[derive(Debug, Clone)]
pub struct OpenSearchOptions {
    /// E.g. `http://127.0.0.1:9200`.
    pub url: String,
    /// Put before every index and alias name.
    pub index_prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Per request; a server slower than this is unavailable.
    pub timeout: Duration,
    pub shards: u32,
    pub replicas: u32,
}

impl Default for OpenSearchOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            index_prefix: String::new(),
            username: None,
            password: None,
            timeout: Duration::from_secs(10),
            shards: 1,
            replicas: 1,
        }
    }
}

#[derive(Clone)]
pub struct OpenSearchBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    base: String,
    options: OpenSearchOptions,
    /// Specs of physical indexes (they never change once created).
    specs: RwLock<HashMap<String, Arc<Mapping>>>,
    /// When this process last stamped each physical index's `applied_at`.
    stamped: parking_lot::Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for OpenSearchBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchBackend")
            .field("url", &self.inner.base)
            .field("index_prefix", &self.inner.options.index_prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> SearchError {
    SearchError::Unavailable {
        message: e.to_string(),
    }
}

fn backend_error(index: &str, e: impl std::fmt::Display) -> SearchError {
    SearchError::Backend {
        index: index.to_owned(),
        message: e.to_string(),
    }
}

/// OpenSearch's own explanation of a failed request.
/// The `error.type` OpenSearch answers when an index being created exists.
const ALREADY_EXISTS: &str = "resource_already_exists_exception";

/// The type of the error OpenSearch answered (`error.root_cause[0].type`).
fn error_type(body: &Value) -> Option<&str> {
    let error = &body["error"];
    error["root_cause"].get(0).unwrap_or(error)["type"].as_str()
}

fn reason(body: &Value) -> String {
    let error = &body["error"];
    let root = error["root_cause"].get(0).unwrap_or(error);
    match (root["type"].as_str(), root["reason"].as_str()) {
        (Some(t), Some(r)) => format!("{t}: {r}"),
        _ => body.to_string().chars().take(300).collect(),
    }
}

fn check_name(name: &str) -> Result<(), SearchError> {
    let reason = if name.is_empty() || name.len() > 100 {
        Some("must be 1 to 100 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        Some("OpenSearch index names may only hold lowercase ASCII letters, digits, `_` and `-`")
    } else if name.starts_with(['_', '-']) {
        Some("may not start with `_` or `-`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SearchError::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        }),
        None => Ok(()),
    }
}

impl OpenSearchBackend {
    /// A client for the cluster at `options.url`. Connects lazily: use
    /// [`ping`](Self::ping) to check the cluster at start.
    pub fn new(options: OpenSearchOptions) -> Result<Self, SearchError> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(unavailable)?;
        let base = options.url.trim_end_matches('/').to_owned();
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                base,
                options,
                specs: RwLock::new(HashMap::new()),
                stamped: parking_lot::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The cluster's name and version, or why it cannot be reached.
    pub async fn ping(&self) -> Result<String, SearchError> {
        let (_, body) = self.inner.request(Method::GET, "", None).await?;
        Ok(format!(
            "{} {} {}",
            body["version"]["distribution"]
                .as_str()
                .unwrap_or("elasticsearch"),
            body["version"]["number"].as_str().unwrap_or("?"),
            body["cluster_name"].as_str().unwrap_or("?"),
        ))
    }
}

impl Inner {
    fn name(&self, logical: &str) -> String {
        format!("{}{logical}", self.options.index_prefix)
    }

    fn unprefixed<'n>(&self, name: &'n str) -> &'n str {
        name.strip_prefix(self.options.index_prefix.as_str())
            .unwrap_or(name)
    }

    /// Sends a request; `Unavailable` when the server cannot be reached,
    /// throttled requests are retried. Any answer comes back with its status.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<(StatusCode, Value), SearchError> {
        let url = format!("{}/{path}", self.base);
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=THROTTLE_TRIES {
            let mut request = self.client.request(method.clone(), &url);
            if let Some(user) = &self.options.username {
                request = request.basic_auth(user, self.options.password.as_ref());
            }
            request = match &body {
                None => request,
                Some(Body::Json(v)) => request.json(v),
                Some(Body::NdJson(text)) => request
                    .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                    .body(text.clone()),
            };
            let response = request.send().await.map_err(|e| {
                let why = if e.is_timeout() {
                    format!(
                        "did not answer within {}",
                        humantime::format_duration(self.options.timeout)
                    )
                } else {
                    format!("cannot be reached: {e}")
                };
                unavailable(format!("OpenSearch at {} {why}", self.base))
            })?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS && attempt < THROTTLE_TRIES {
                tokio::time::sleep(delay).await;
                delay *= 2;
                continue;
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| unavailable(format!("OpenSearch at {} did not answer: {e}", self.base)))?;
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|e| {
                    unavailable(format!(
                        "OpenSearch at {} answered something that is not JSON: {e}",
                        self.base
                    ))
                })?
            };
            return Ok((status, value));
        }
        Err(unavailable(
            "OpenSearch kept refusing requests (429 Too Many Requests)",
        ))
    }

    /// A request that must succeed.
    async fn ok(
        &self,
        index: &str,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Value, SearchError> {
        let (status, value) = self.request(method, path, body).await?;
        if status.is_success() {
            Ok(value)
        } else if status == StatusCode::NOT_FOUND {
            Err(SearchError::UnknownIndex {
                index: index.to_owned(),
            })
        } else {
            Err(backend_error(index, format!("{status}: {}", reason(&value))))
        }
    }

    /// The physical index (unprefixed) behind `name`.
    async fn resolve(&self, name: &str) -> Result<String, SearchError> {
        let full = self.name(name);
        let (status, body) = self.request(Method::GET, &format!("_alias/{full}"), None).await?;
        if status.is_success() {
            if let Some(index) = body.as_object().and_then(|m| m.keys().next()) {
                return Ok(self.unprefixed(index).to_owned());
            }
        }
        let (status, _) = self.request(Method::HEAD, &full, None).await?;
        if status.is_success() {
            return Ok(name.to_owned());
        }
        Err(SearchError::UnknownIndex {
            index: name.to_owned(),
        })
    }

    async fn mapping(&self, physical: &str) -> Result<Arc<Mapping>, SearchError> {
        if let Some(m) = self.specs.read().get(physical) {
            return Ok(Arc::clone(m));
        }
        let full = self.name(physical);
        let body = self
            .ok(physical, Method::GET, &format!("{full}/_mapping"), None)
            .await?;
        let (format, spec) = body
            .get(&full)
            .and_then(|m| m.get("mappings"))
            .and_then(mapping::read_meta)
            .ok_or_else(|| {
                backend_error(
                    physical,
                    "the index was not created by Tessera (its mapping has no spec)",
                )
            })?;
        if format != mapping::FORMAT {
            return Err(backend_error(
                physical,
                format!(
                    "the index has layout {format}, this Tessera writes layout {}; rebuild it with `tessera sync reindex`",
                    mapping::FORMAT
                ),
            ));
        }
        let m = Arc::new(Mapping::new(spec));
        self.specs.write().insert(physical.to_owned(), Arc::clone(&m));
        Ok(m)
    }

    async fn target(&self, name: &str) -> Result<(String, Arc<Mapping>), SearchError> {
        let physical = self.resolve(name).await?;
        let mapping = self.mapping(&physical).await?;
        Ok((physical, mapping))
    }

    async fn create_index(&self, spec: &IndexSpec, physical: &str) -> Result<(), SearchError> {
        check_name(physical)?;
        spec.validate()?;
        let full = self.name(physical);
        let (status, _) = self.request(Method::HEAD, &full, None).await?;
        let (alias_status, _) = self
            .request(Method::HEAD, &format!("_alias/{full}"), None)
            .await?;
        if status.is_success() || alias_status.is_success() {
            return Err(SearchError::AlreadyExists {
                name: physical.to_owned(),
            });
        }
        self.ensure_checkpoints().await?;
        let m = Mapping::new(spec.clone());
        let body = m.create_body(self.options.shards, self.options.replicas);
        let (status, answer) = self.request(Method::PUT, &full, Some(Body::Json(body))).await?;
        if !status.is_success() {
            if error_type(&answer) == Some(ALREADY_EXISTS) {
                return Err(SearchError::AlreadyExists {
                    name: physical.to_owned(),
                });
            }
            return Err(backend_error(
                physical,
                format!("creating the index failed: {}", reason(&answer)),
            ));
        }
        self.specs.write().insert(physical.to_owned(), Arc::new(m));
        Ok(())
    }

    /// Creates the checkpoints index unless it exists.
    async fn ensure_checkpoints(&self) -> Result<(), SearchError> {
        let full = self.name(CHECKPOINTS);
        let (status, _) = self.request(Method::HEAD, &full, None).await?;
        if status.is_success() {
            return Ok(());
        }
        let body = json!({
            "settings": {"number_of_shards": 1, "number_of_replicas": self.options.replicas},
            "mappings": {"dynamic": false, "properties": {}},
        });
        let (status, answer) = self.request(Method::PUT, &full, Some(Body::Json(body))).await?;
        if status.is_success() || error_type(&answer) == Some(ALREADY_EXISTS) {
            Ok(())
        } else {
            Err(backend_error(CHECKPOINTS, reason(&answer)))
        }
    }

    async fn drop_index(&self, physical: &str) -> Result<(), SearchError> {
        let full = self.name(physical);
        let (status, body) = self.request(Method::GET, &format!("{full}/_alias"), None).await?;
        if status == StatusCode::NOT_FOUND {
            return Err(SearchError::UnknownIndex {
                index: physical.to_owned(),
            });
        }
        if let Some(alias) = body[&full]["aliases"].as_object().and_then(|a| a.keys().next()) {
            return Err(SearchError::IndexInUse {
                index: physical.to_owned(),
                alias: self.unprefixed(alias).to_owned(),
            });
        }
        self.ok(physical, Method::DELETE, &full, None).await?;
        self.specs.write().remove(physical);
        self.stamped.lock().remove(physical);
        let checkpoints = self.name(CHECKPOINTS);
        let _ = self
            .request(
                Method::DELETE,
                &format!("{checkpoints}/_doc/{physical}?refresh=true"),
                None,
            )
            .await?;
        Ok(())
    }

    async fn point_alias(&self, alias: &str, physical: &str) -> Result<Option<String>, SearchError> {
        check_name(alias)?;
        let full_alias = self.name(alias);
        let full_index = self.name(physical);
        let (status, _) = self.request(Method::HEAD, &full_index, None).await?;
        if !status.is_success() {
            return Err(SearchError::UnknownIndex {
                index: physical.to_owned(),
            });
        }
        let (status, body) = self
            .request(Method::GET, &format!("_alias/{full_alias}"), None)
            .await?;
        let previous = if status.is_success() {
            body.as_object().and_then(|m| m.keys().next().cloned())
        } else {
            // Not an alias: it must not be an index either.
            let (status, _) = self.request(Method::HEAD, &full_alias, None).await?;
            if status.is_success() {
                return Err(SearchError::AlreadyExists {
                    name: alias.to_owned(),
                });
            }
            None
        };
        let mut actions = Vec::new();
        if let Some(old) = &previous {
            actions.push(json!({"remove": {"index": old, "alias": full_alias}}));
        }
        actions.push(json!({"add": {"index": full_index, "alias": full_alias}}));
        // One request: searches see the old index or the new one, never neither.
        self.ok(
            alias,
            Method::POST,
            "_aliases",
            Some(Body::Json(json!({"actions": actions}))),
        )
        .await?;
        Ok(previous.map(|p| self.unprefixed(&p).to_owned()))
    }

    async fn write(
        &self,
        index: &str,
        ops: Vec<WriteOp>,
        checkpoint: Option<String>,
    ) -> Result<WriteOutcome, SearchError> {
        let (physical, mapping) = self.target(index).await?;
        let full = self.name(&physical);
        let mut outcome = WriteOutcome::default();
        // Big batches go out as several `_bulk` requests at once, so the
        // cluster indexes on all its cores; an id's ops stay in one request,
        // in order.
        let chunks = ops.len().div_ceil(BULK_CHUNK).clamp(1, MAX_CONCURRENT_BULKS);
        let mut bulks: Vec<Bulk> = (0..chunks).map(|_| Bulk::default()).collect();
        for op in ops {
            let (id, line) = match op {
                WriteOp::Upsert(doc) => match mapping.source(&physical, doc) {
                    Ok((id, version, source)) => {
                        let action = json!({"index": {"_index": full, "_id": id, "version": version.saturating_mul(2), "version_type": "external_gte"}});
                        (id, format!("{action}\n{source}\n"))
                    }
                    Err(SearchError::InvalidDocument { id, reason, .. }) => {
                        outcome.rejected.push(Rejected { id, reason });
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                WriteOp::Delete { id, version } => {
                    let version = version.max(0).saturating_mul(2).saturating_add(1);
                    let action = json!({"delete": {"_index": full, "_id": id, "version": version, "version_type": "external_gte"}});
                    (id, format!("{action}\n"))
                }
            };
            let chunk = &mut bulks
                [usize::try_from(xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % chunks as u64).unwrap_or(0)];
            chunk.body.push_str(&line);
            chunk.sent.push((id, line.starts_with("{\"index\"")));
        }
        let answers = futures::future::join_all(
            bulks
                .into_iter()
                .filter(|b| !b.sent.is_empty())
                .map(|b| self.bulk(&physical, b)),
        )
        .await;
        let mut retry_later = Vec::new();
        for answer in answers {
            let (part, retry) = answer?;
            outcome.written += part.written;
            outcome.deleted += part.deleted;
            outcome.skipped += part.skipped;
            outcome.rejected.extend(part.rejected);
            retry_later.extend(retry);
        }
        if !retry_later.is_empty() {
            // The batch is safe to send again as a whole (versions), and
            // the caller does: the checkpoint must not move past it.
            return Err(backend_error(
                &physical,
                format!(
                    "OpenSearch could not take {} document(s) now (first: {}); try again",
                    retry_later.len(),
                    retry_later[0]
                ),
            ));
        }
        // The index's state document: the checkpoint, and when documents
        // were last applied (for the freshness other processes report).
        let applied = outcome.written + outcome.deleted > 0 && self.stamp_due(&physical);
        if checkpoint.is_some() || applied {
            let mut state = serde_json::Map::new();
            if let Some(checkpoint) = &checkpoint {
                state.insert("checkpoint".into(), json!(checkpoint));
            }
            if applied {
                let unix_ms = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64;
                state.insert("applied_at".into(), json!(unix_ms));
            }
            let path = format!(
                "{}/_update/{physical}?retry_on_conflict=5",
                self.name(CHECKPOINTS)
            );
            let body = Some(Body::Json(json!({"doc": state, "doc_as_upsert": true})));
            match self.ok(&physical, Method::POST, &path, body).await {
                Ok(_) => {}
                Err(e) if checkpoint.is_some() => return Err(e),
                // Only the stamp was lost: the documents are written, and
                // the next write stamps again.
                Err(e) => {
                    self.stamped.lock().remove(&physical);
                    tracing::warn!(index = %physical, error = %e, "could not stamp the index's last applied change");
                }
            }
        }
        Ok(outcome)
    }

    /// Whether this write should stamp `applied_at` (at most once per
    /// [`APPLIED_STAMP_INTERVAL`] per index and process).
    fn stamp_due(&self, physical: &str) -> bool {
        let now = Instant::now();
        let mut stamped = self.stamped.lock();
        match stamped.get(physical) {
            Some(at) if now.duration_since(*at) < APPLIED_STAMP_INTERVAL => false,
            _ => {
                stamped.insert(physical.to_owned(), now);
                true
            }
        }
    }

    /// The state document of `index`'s physical index (`None`: none yet).
    async fn state(&self, index: &str) -> Result<Option<Value>, SearchError> {
        let physical = self.resolve(index).await?;
        let path = format!("{}/_doc/{physical}", self.name(CHECKPOINTS));
        let (status, mut body) = self.request(Method::GET, &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(backend_error(&physical, reason(&body)));
        }
        Ok(Some(body["_source"].take()))
    }

    async fn last_applied(&self, index: &str) -> Result<Option<SystemTime>, SearchError> {
        let state = self.state(index).await?;
        Ok(state
            .and_then(|s| s["applied_at"].as_u64())
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
    }

    /// Sends one `_bulk` request; what it did, and the ids to send again later.
    async fn bulk(&self, physical: &str, bulk: Bulk) -> Result<(WriteOutcome, Vec<String>), SearchError> {
        let answer = self
            .ok(
                physical,
                Method::POST,
                "_bulk?refresh=true",
                Some(Body::NdJson(bulk.body)),
            )
            .await?;
        let items = answer["items"].as_array().cloned().unwrap_or_default();
        if items.len() != bulk.sent.len() {
            return Err(backend_error(
                physical,
                format!(
                    "_bulk answered {} items for {} sent",
                    items.len(),
                    bulk.sent.len()
                ),
            ));
        }
        let mut outcome = WriteOutcome::default();
        let mut retry_later = Vec::new();
        for ((id, upsert), item) in bulk.sent.into_iter().zip(items) {
            let item = if upsert { &item["index"] } else { &item["delete"] };
            let status = item["status"].as_u64().unwrap_or(0);
            match (status, item["result"].as_str()) {
                (_, Some("created" | "updated")) => outcome.written += 1,
                (_, Some("deleted")) => outcome.deleted += 1,
                (_, Some("not_found")) | (409, _) => outcome.skipped += 1,
                (429 | 500..=599, _) => retry_later.push(id),
                _ => outcome.rejected.push(Rejected {
                    id,
                    reason: reason(&json!({"error": item["error"]})),
                }),
            }
        }
        Ok((outcome, retry_later))
    }

    async fn checkpoint(&self, index: &str) -> Result<Option<String>, SearchError> {
        let state = self.state(index).await?;
        Ok(state.and_then(|s| s["checkpoint"].as_str().map(str::to_owned)))
    }

    async fn search(&self, index: &str, query: &SearchQuery) -> Result<SearchResult, SearchError> {
        let (physical, mapping) = self.target(index).await?;
        query.validate(&mapping.spec)?;
        let mut body = json!({
            "query": dsl::filters(&mapping, &query.filters)?,
            "sort": dsl::sort(&mapping, &query.sort)?,
            // Not counting lets OpenSearch skip whole blocks of documents
            // that cannot make the page (its sort optimization).
            "track_total_hits": query.count,
        });
        match &query.page {
            Page::After { first, after } => {
                body["size"] = json!(first);
                if let Some(after) = after {
                    body["search_after"] = json!(dsl::search_after(
                        &mapping,
                        &query.sort,
                        &after.values,
                        &after.id
                    )?);
                }
            }
            Page::Offset { offset, limit } => {
                body["from"] = json!(offset);
                body["size"] = json!(limit);
            }
        }
        let full = self.name(&physical);
        let answer = self
            .ok(
                &physical,
                Method::POST,
                &format!("{full}/_search"),
                Some(Body::Json(body)),
            )
            .await?;
        let total = if query.count {
            Some(answer["hits"]["total"]["value"].as_u64().unwrap_or(0))
        } else {
            None
        };
        let hits = answer["hits"]["hits"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|h| {
                let id = h["_id"].as_str().unwrap_or_default().to_owned();
                let document = mapping::document(h.get("_source"))
                    .ok_or_else(|| backend_error(&physical, format!("hit `{id}` has no stored document")))?;
                let values = query
                    .sort
                    .iter()
                    .map(|key| position_value(&mapping, &key.field, &document))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Hit {
                    position: SortPosition {
                        values,
                        id: id.clone(),
                    },
                    id,
                    document,
                })
            })
            .collect::<Result<Vec<_>, SearchError>>()?;
        Ok(SearchResult { total, hits })
    }

    async fn get(&self, index: &str, ids: &[String]) -> Result<Vec<Option<Document>>, SearchError> {
        let (physical, _) = self.target(index).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let full = self.name(&physical);
        let answer = self
            // Not realtime: a document a `_bulk` has indexed but not yet
            // refreshed is not searchable yet, so `get` must not see it either.
            .ok(
                &physical,
                Method::POST,
                &format!("{full}/_mget?realtime=false"),
                Some(Body::Json(json!({"ids": ids}))),
            )
            .await?;
        let docs = answer["docs"].as_array().cloned().unwrap_or_default();
        Ok(docs
            .iter()
            .map(|d| {
                if d["found"] == json!(true) {
                    mapping::document(d.get("_source"))
                } else {
                    None
                }
            })
            .collect())
    }

    async fn count(&self, index: &str) -> Result<u64, SearchError> {
        let physical = self.resolve(index).await?;
        let full = self.name(&physical);
        let answer = self
            .ok(&physical, Method::GET, &format!("{full}/_count"), None)
            .await?;
        Ok(answer["count"].as_u64().unwrap_or(0))
    }

    async fn ids_where(&self, index: &str, filter: &Filter) -> Result<Vec<String>, SearchError> {
        let (physical, mapping) = self.target(index).await?;
        let check = SearchQuery {
            filters: vec![filter.clone()],
            sort: Vec::new(),
            page: Page::After {
                first: 0,
                after: None,
            },
            count: true,
        };
        check.validate(&mapping.spec)?;
        let query = dsl::filters(&mapping, &check.filters)?;
        let full = self.name(&physical);
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut body = json!({"query": query, "_source": false, "size": PAGE, "sort": [{ID_FIELD: "asc"}], "track_total_hits": false});
            if let Some(after) = &after {
                body["search_after"] = json!([after]);
            }
            let answer = self
                .ok(
                    &physical,
                    Method::POST,
                    &format!("{full}/_search"),
                    Some(Body::Json(body)),
                )
                .await?;
            let hits = answer["hits"]["hits"].as_array().cloned().unwrap_or_default();
            let n = hits.len();
            out.extend(hits.iter().filter_map(|h| h["_id"].as_str().map(str::to_owned)));
            if n < PAGE {
                return Ok(out);
            }
            after = out.last().cloned();
        }
    }

    async fn terms(&self, index: &str, field: &str) -> Result<Vec<String>, SearchError> {
        let (physical, mapping) = self.target(index).await?;
        let spec = mapping.spec(field)?;
        if spec.kind != super::FieldKind::Keyword {
            return Err(SearchError::InvalidQuery {
                reason: format!("field `{field}` is {}: only keyword fields have terms", spec.kind),
            });
        }
        let name = mapping::exact_field(spec);
        let full = self.name(&physical);
        let mut out = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let mut composite = json!({"size": PAGE, "sources": [{"v": {"terms": {"field": name}}}]});
            if let Some(after) = &after {
                composite["after"] = after.clone();
            }
            let body = json!({"size": 0, "aggs": {"t": {"composite": composite}}});
            let answer = self
                .ok(
                    &physical,
                    Method::POST,
                    &format!("{full}/_search"),
                    Some(Body::Json(body)),
                )
                .await?;
            let t = &answer["aggregations"]["t"];
            let buckets = t["buckets"].as_array().cloned().unwrap_or_default();
            out.extend(
                buckets
                    .iter()
                    .filter_map(|b| b["key"]["v"].as_str().map(str::to_owned)),
            );
            match t.get("after_key") {
                Some(key) if buckets.len() == PAGE => after = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn catalog(&self) -> Result<Catalog, SearchError> {
        let prefix = &self.options.index_prefix;
        let pattern = format!("{prefix}*");
        let answer = self
            .ok(&pattern, Method::GET, &format!("{pattern}/_alias"), None)
            .await?;
        let mut catalog = Catalog::default();
        let checkpoints = self.name(CHECKPOINTS);
        for (index, body) in answer.as_object().into_iter().flatten() {
            if *index == checkpoints || !index.starts_with(prefix.as_str()) {
                continue;
            }
            let physical = self.unprefixed(index).to_owned();
            for alias in body["aliases"].as_object().into_iter().flatten().map(|(a, _)| a) {
                catalog
                    .aliases
                    .insert(self.unprefixed(alias).to_owned(), physical.clone());
            }
            catalog.indexes.push(physical);
        }
        catalog.indexes.sort();
        Ok(catalog)
    }
}

/// A hit's value for one sort key, read from its stored document the way
/// the index read it (`DateTime` as milliseconds; `Null` when missing).
fn position_value(mapping: &Mapping, field: &str, doc: &Document) -> Result<FieldValue, SearchError> {
    let spec = mapping.spec(field)?;
    let values = document_values(spec, doc.get(field)).map_err(|reason| SearchError::Backend {
        index: mapping.spec.name.clone(),
        message: reason,
    })?;
    Ok(match values.into_iter().next() {
        None => FieldValue::Null,
        Some(Scalar::Str(s)) => FieldValue::Str(s),
        Some(Scalar::I64(i)) => FieldValue::I64(i),
        Some(Scalar::F64(f)) => FieldValue::F64(f),
        Some(Scalar::Bool(b)) => FieldValue::Bool(b),
    })
}

enum Body {
    Json(Value),
    NdJson(String),
}

impl SearchBackend for OpenSearchBackend {
    fn create_index<'a>(
        &'a self,
        spec: &'a IndexSpec,
        physical: &'a str,
    ) -> BoxFuture<'a, Result<(), SearchError>> {
        Box::pin(self.inner.create_index(spec, physical))
    }

    fn drop_index<'a>(&'a self, physical: &'a str) -> BoxFuture<'a, Result<(), SearchError>> {
        Box::pin(self.inner.drop_index(physical))
    }

    fn point_alias<'a>(
        &'a self,
        alias: &'a str,
        physical: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SearchError>> {
        Box::pin(self.inner.point_alias(alias, physical))
    }

    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, SearchError>> {
        Box::pin(self.inner.resolve(name))
    }

    fn spec<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<IndexSpec, SearchError>> {
        Box::pin(async move { Ok(self.inner.target(index).await?.1.spec.clone()) })
    }

    fn write<'a>(
        &'a self,
        index: &'a str,
        ops: Vec<WriteOp>,
        checkpoint: Option<String>,
    ) -> BoxFuture<'a, Result<WriteOutcome, SearchError>> {
        Box::pin(self.inner.write(index, ops, checkpoint))
    }

    fn checkpoint<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<Option<String>, SearchError>> {
        Box::pin(self.inner.checkpoint(index))
    }

    fn last_applied<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<Option<SystemTime>, SearchError>> {
        Box::pin(self.inner.last_applied(index))
    }

    fn search<'a>(
        &'a self,
        index: &'a str,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchResult, SearchError>> {
        Box::pin(self.inner.search(index, query))
    }

    fn get<'a>(
        &'a self,
        index: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Document>>, SearchError>> {
        Box::pin(self.inner.get(index, ids))
    }

    fn count<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<u64, SearchError>> {
        Box::pin(self.inner.count(index))
    }

    fn ids_where<'a>(
        &'a self,
        index: &'a str,
        filter: &'a Filter,
    ) -> BoxFuture<'a, Result<Vec<String>, SearchError>> {
        Box::pin(self.inner.ids_where(index, filter))
    }

    fn terms<'a>(
        &'a self,
        index: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, SearchError>> {
        Box::pin(self.inner.terms(index, field))
    }

    fn catalog(&self) -> BoxFuture<'_, Result<Catalog, SearchError>> {
        Box::pin(self.inner.catalog())
    }
}
