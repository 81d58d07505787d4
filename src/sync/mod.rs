//! Keeping search indexes in sync with the legacy services (DESIGN.md,
//! "Sync"), embedded: no broker, the services are polled.
//!
//! - **Backfill** lists every row of each indexed type page by page, builds
//!   the documents through the executor and writes each page together with a
//!   checkpoint, so a killed backfill resumes where it stopped.
//! - **Poll** asks every indexed type and every type denormalized into a
//!   document for rows updated after the watermark (minus an overlap, for
//!   clock skew and same-millisecond writes), rebuilds the documents they
//!   touch (a renamed manager: every contract whose `managerId` is theirs,
//!   found through the index) and moves the watermark.
//! - **Reconcile** rebuilds every document from the sources, writes those
//!   that differ and deletes those whose row is gone; it catches what polling
//!   cannot see (deleted rows).
//! - **Read-your-writes**: [`Syncer::after_mutation`] polls at once and
//!   rebuilds the entity a mutation named by `id`, before the response.
//!
//! Documents carry a version (the newest `updatedAt` of the rows they were
//! built from); the backend skips a write older than what it holds, so
//! concurrent rebuilds cannot go back in time. This module owns sync
//! policy; documents are built in `documents`, stored through
//! `search::SearchBackend`.

pub mod documents;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::exec::search::{document_id, entity_of, index_spec};
use crate::exec::{Executor, Variables};
use crate::plan::{FetchKind, OperationKind, QueryPlan};
use crate::schema::{named_type, IndexDef, IndexSource, Resolver, Supergraph};
use crate::search::{
    Document, FieldValue, Filter, SearchBackend, SearchError, WriteOp, ID_FIELD, VERSION_FIELD,
};
use documents::Position;

/// Why a sync step failed. The step is retried by the next poll; nothing
/// is written past the last good checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("index `{index}` is not declared in schema.graphql (declared: {known})")]
    UnknownIndex { index: String, known: String },
    #[error("reading {what} failed: {message}")]
    Source { what: String, message: String },
    #[error(transparent)]
    Index(#[from] SearchError),
}

/// Sync state stored with each commit of an index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Checkpoint {
    /// A backfill in progress: `source` (index into the index's sources)
    /// has been listed up to `offset`.
    Backfill {
        source: usize,
        offset: usize,
        done: u64,
        /// Watermark to poll from once the backfill ends (when it started).
        started: String,
    },
    /// Built; changes after `watermark` are not indexed yet.
    Live { watermark: String },
}

/// What a backfill reports as it goes.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
    pub elapsed: Duration,
}

/// What one poll or reconcile did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub written: usize,
    pub deleted: usize,
    pub unchanged: usize,
}

/// Sync settings (see `config::SyncConfig`).
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Rows re-read before the watermark on each poll.
    pub overlap: Duration,
    /// Ids per rebuild query.
    pub rebuild_batch: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            overlap: Duration::from_secs(2),
            rebuild_batch: 200,
        }
    }
}

/// Synchronizes every index of the schema.
pub struct Syncer {
    executor: Arc<Executor>,
    backend: Arc<dyn SearchBackend>,
    options: SyncOptions,
    /// One lock per index: polls, reconciles and read-your-writes rebuilds
    /// of an index never interleave.
    locks: HashMap<String, Mutex<()>>,
}

impl Syncer {
    pub fn new(executor: Arc<Executor>, backend: Arc<dyn SearchBackend>, options: SyncOptions) -> Self {
        let locks = executor
            .schema()
            .indexes()
            .map(|d| (d.name.clone(), Mutex::new(())))
            .collect();
        Self {
            executor,
            backend,
            options,
            locks,
        }
    }

    fn schema(&self) -> &Supergraph {
        self.executor.schema()
    }

    fn index(&self, name: &str) -> Result<&IndexDef, SyncError> {
        self.schema().index(name).ok_or_else(|| SyncError::UnknownIndex {
            index: name.into(),
            known: self
                .schema()
                .indexes()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub fn index_names(&self) -> Vec<String> {
        self.schema().indexes().map(|d| d.name.clone()).collect()
    }

    async fn lock(&self, index: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.locks.get(index) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// Creates the index (`<name>_v1` behind alias `<name>`) unless it exists.
    pub async fn ensure_index(&self, name: &str) -> Result<(), SyncError> {
        let def = self.index(name)?;
        if self.backend.resolve(name).await.is_ok() {
            return Ok(());
        }
        let physical = format!("{name}_v1");
        let spec = index_spec(def, self.schema());
        match self.backend.create_index(&spec, &physical).await {
            Ok(()) | Err(SearchError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.backend.point_alias(name, &physical).await?;
        Ok(())
    }

    pub async fn checkpoint(&self, index: &str) -> Result<Option<Checkpoint>, SyncError> {
        let raw = self.backend.checkpoint(index).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    async fn query(&self, what: &str, text: &str) -> Result<serde_json::Map<String, Value>, SyncError> {
        self.executor
            .query_value(text, &reqwest::header::HeaderMap::new())
            .await
            .map_err(|message| SyncError::Source {
                what: what.to_string(),
                message,
            })
    }

    /// Rows of the index's sources, for progress.
    async fn total(&self, def: &IndexDef) -> Option<u64> {
        let mut text = String::from("{");
        for (i, source) in def.sources.iter().enumerate() {
            let changes = self.schema().object(&source.entity)?.changes.as_ref()?;
            text.push_str(&format!(" c{i}:{}", changes.count_field.as_ref()?));
        }
        text.push('}');
        let data = self.query("row counts", &text).await.ok()?;
        Some(data.values().filter_map(Value::as_u64).sum())
    }

    /// Builds the index from every row of its sources, resuming from the
    /// checkpoint of an interrupted backfill (`restart` ignores it).
    pub async fn backfill(
        &self,
        name: &str,
        restart: bool,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<u64, SyncError> {
        self.ensure_index(name).await?;
        let def = self.index(name)?;
        let _guard = self.lock(name).await;
        let started_at = Instant::now();
        let (mut source_index, mut offset, mut done, started) = match self.checkpoint(name).await? {
            Some(Checkpoint::Backfill {
                source,
                offset,
                done,
                started,
            }) if !restart => (source, offset, done, started),
            _ => (0, 0, 0, now_rfc3339()),
        };
        let total = self.total(def).await;
        progress(Progress {
            done,
            total,
            elapsed: started_at.elapsed(),
        });
        while let Some(source) = def.sources.get(source_index) {
            let changes = self.changes(source)?;
            let selection = documents::selection(self.schema(), source);
            let position = match changes.paging {
                crate::schema::Paging::Offset { .. } => Position::Offset(offset),
                crate::schema::Paging::Cursor { .. } => Position::Cursor(None),
            };
            // Page N is written while page N + 1 is read and built: the
            // index and the services work at the same time.
            let mut page = self.fetch_page(source, changes, &position, &selection).await?;
            loop {
                let (docs, next) = page;
                done += docs.len() as u64;
                let (checkpoint, finished) = match &next {
                    // A cursor listing resumes from the start of its source.
                    Some(Position::Cursor(_)) => (
                        Checkpoint::Backfill {
                            source: source_index,
                            offset: 0,
                            done,
                            started: started.clone(),
                        },
                        false,
                    ),
                    Some(Position::Offset(o)) => (
                        Checkpoint::Backfill {
                            source: source_index,
                            offset: *o,
                            done,
                            started: started.clone(),
                        },
                        false,
                    ),
                    _ if source_index + 1 < def.sources.len() => (
                        Checkpoint::Backfill {
                            source: source_index + 1,
                            offset: 0,
                            done,
                            started: started.clone(),
                        },
                        true,
                    ),
                    _ => (
                        Checkpoint::Live {
                            watermark: started.clone(),
                        },
                        true,
                    ),
                };
                let checkpoint = serde_json::to_string(&checkpoint).ok();
                let write = self.backend.upsert_with_checkpoint(name, docs, checkpoint);
                let prefetch = async {
                    match &next {
                        Some(p) if !finished => Some(self.fetch_page(source, changes, p, &selection).await),
                        _ => None,
                    }
                };
                let (written, fetched) = tokio::join!(write, prefetch);
                written?;
                progress(Progress {
                    done,
                    total,
                    elapsed: started_at.elapsed(),
                });
                match fetched {
                    Some(fetched) => page = fetched?,
                    None => break,
                }
            }
            source_index += 1;
            offset = 0;
        }
        Ok(done)
    }

    /// One page of `source`'s rows as documents, and where the next starts.
    async fn fetch_page(
        &self,
        source: &IndexSource,
        changes: &crate::schema::Changes,
        position: &Position,
        selection: &str,
    ) -> Result<(Vec<Document>, Option<Position>), SyncError> {
        let text = documents::page_query(changes, position, None, selection);
        let data = self.query(&format!("{} rows", source.entity), &text).await?;
        let (rows, next) = documents::page_rows(changes, position, data);
        let docs = rows.iter().filter_map(|r| documents::build(source, r)).collect();
        Ok((docs, next))
    }

    fn changes<'s>(&'s self, source: &IndexSource) -> Result<&'s crate::schema::Changes, SyncError> {
        self.schema()
            .object(&source.entity)
            .and_then(|o| o.changes.as_deref())
            .ok_or_else(|| SyncError::Source {
                what: source.entity.to_string(),
                message: "the type has no @changes".into(),
            })
    }

    /// Rebuilds what changed since the watermark and moves it. An index that
    /// was never built is backfilled first.
    pub async fn poll(&self, name: &str) -> Result<SyncReport, SyncError> {
        let watermark = match self.checkpoint(name).await? {
            Some(Checkpoint::Live { watermark }) => watermark,
            _ => {
                self.backfill(name, false, &|_| {}).await?;
                return Ok(SyncReport::default());
            }
        };
        let def = self.index(name)?;
        let _guard = self.lock(name).await;
        let now = now_rfc3339();
        let since = minus(&watermark, self.options.overlap);
        let mut report = SyncReport::default();
        // Entity id sets to rebuild, per source.
        let mut rebuild: Vec<HashSet<String>> = vec![HashSet::new(); def.sources.len()];
        let mut polled: HashMap<String, Vec<serde_json::Map<String, Value>>> = HashMap::new();
        for (slot, source) in def.sources.iter().enumerate() {
            // The source's own rows: their documents straight from the listing.
            let changes = self.changes(source)?;
            let selection = documents::selection(self.schema(), source);
            let rows = self
                .list(&source.entity, changes, Some(&since), &selection)
                .await?;
            let docs: Vec<Document> = rows.iter().filter_map(|r| documents::build(source, r)).collect();
            let outcome = self.backend.upsert(name, docs).await?;
            report.written += outcome.written;
            report.unchanged += outcome.skipped;
            // Rows of types denormalized into the documents.
            for relation in relations(source) {
                let Some(rfield) = self.schema().field(&source.entity, relation) else {
                    continue;
                };
                let target = named_type(&rfield.ty).to_string();
                let (selection, key) = match &rfield.resolver {
                    Resolver::Ref { key } => ("id".to_string(), Some(key.clone())),
                    Resolver::Join(join) => (format!("id {}", join.on), None),
                    _ => continue,
                };
                let cache_key = format!("{target}\u{0}{selection}");
                if !polled.contains_key(&cache_key) {
                    let Some(tchanges) = self.schema().object(&target).and_then(|o| o.changes.as_ref())
                    else {
                        continue;
                    };
                    let rows = self.list(&target, tchanges, Some(&since), &selection).await?;
                    polled.insert(cache_key.clone(), rows);
                }
                let rows = &polled[&cache_key];
                if rows.is_empty() {
                    continue;
                }
                match (&rfield.resolver, key) {
                    (Resolver::Ref { .. }, Some(key)) => {
                        let ids: Vec<FieldValue> = rows
                            .iter()
                            .filter_map(|r| r.get("id"))
                            .map(|v| FieldValue::Str(json_str(v)))
                            .collect();
                        let filter = Filter::In {
                            field: key.to_string(),
                            values: ids,
                        };
                        for doc_id in self.backend.ids_where(name, &filter).await? {
                            if let Some((t, id)) = entity_of(&doc_id) {
                                if t == source.entity.as_str() {
                                    rebuild[slot].insert(id);
                                }
                            }
                        }
                    }
                    (Resolver::Join(join), _) => {
                        for r in rows {
                            if let Some(v) = r.get(join.on.as_str()) {
                                rebuild[slot].insert(json_str(v));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for (slot, ids) in rebuild.into_iter().enumerate() {
            let ids: Vec<String> = ids.into_iter().collect();
            let r = self.rebuild_locked(def, slot, &ids).await?;
            report.written += r.written;
            report.deleted += r.deleted;
            report.unchanged += r.unchanged;
        }
        let checkpoint = serde_json::to_string(&Checkpoint::Live { watermark: now }).ok();
        self.backend.write(name, Vec::new(), checkpoint).await?;
        Ok(report)
    }

    /// Every row of `type_name` (updated after `since`, when set).
    async fn list(
        &self,
        type_name: &str,
        changes: &crate::schema::Changes,
        since: Option<&str>,
        selection: &str,
    ) -> Result<Vec<serde_json::Map<String, Value>>, SyncError> {
        let mut out = Vec::new();
        let mut position = Position::start(changes);
        loop {
            let text = documents::page_query(changes, &position, since, selection);
            let data = self.query(&format!("{type_name} rows"), &text).await?;
            let (rows, next) = documents::page_rows(changes, &position, data);
            out.extend(rows);
            match next {
                Some(p) => position = p,
                None => return Ok(out),
            }
        }
    }

    /// Rebuilds the documents of entities `ids` of `entity` from current
    /// source state: written where the row exists, deleted where it is gone.
    pub async fn rebuild(&self, name: &str, entity: &str, ids: &[String]) -> Result<SyncReport, SyncError> {
        let def = self.index(name)?;
        let Some(slot) = def.sources.iter().position(|s| s.entity == entity) else {
            return Ok(SyncReport::default());
        };
        let _guard = self.lock(name).await;
        self.rebuild_locked(def, slot, ids).await
    }

    async fn rebuild_locked(
        &self,
        def: &IndexDef,
        slot: usize,
        ids: &[String],
    ) -> Result<SyncReport, SyncError> {
        let source = &def.sources[slot];
        let mut report = SyncReport::default();
        let Some(get) = self.schema().get_by_id_field(&source.entity) else {
            return Err(SyncError::Source {
                what: source.entity.to_string(),
                message: format!(
                    "no root field `{}(id: ID!)` to rebuild documents by id",
                    source.entity.to_ascii_lowercase()
                ),
            });
        };
        let selection = documents::selection(self.schema(), source);
        for chunk in ids.chunks(self.options.rebuild_batch.max(1)) {
            let mut text = String::from("{");
            for (i, id) in chunk.iter().enumerate() {
                text.push_str(&format!(
                    " r{i}:{}(id:{}){{{selection}}}",
                    get.name,
                    Value::String(id.clone())
                ));
            }
            text.push('}');
            let data = self.query(&format!("{} by id", source.entity), &text).await?;
            let now = now_millis();
            let mut ops = Vec::with_capacity(chunk.len());
            for (i, id) in chunk.iter().enumerate() {
                match data.get(&format!("r{i}")).and_then(Value::as_object) {
                    Some(row) => {
                        if let Some(doc) = documents::build(source, row) {
                            ops.push(WriteOp::Upsert(doc));
                        }
                    }
                    None => ops.push(WriteOp::Delete {
                        id: document_id(&source.entity, id),
                        version: now,
                    }),
                }
            }
            let outcome = self.backend.write(&def.name, ops, None).await?;
            report.written += outcome.written;
            report.deleted += outcome.deleted;
            report.unchanged += outcome.skipped;
        }
        Ok(report)
    }

    /// Rebuilds every document from the sources: writes those that differ
    /// from the index, deletes those whose row is gone.
    pub async fn reconcile(&self, name: &str) -> Result<SyncReport, SyncError> {
        self.ensure_index(name).await?;
        let def = self.index(name)?;
        let _guard = self.lock(name).await;
        let started = now_millis();
        let mut report = SyncReport::default();
        let mut seen: HashSet<String> = HashSet::new();
        for source in &def.sources {
            let changes = self.changes(source)?;
            let selection = documents::selection(self.schema(), source);
            let mut position = Position::start(changes);
            loop {
                let text = documents::page_query(changes, &position, None, &selection);
                let data = self.query(&format!("{} rows", source.entity), &text).await?;
                let (rows, next) = documents::page_rows(changes, &position, data);
                let docs: Vec<Document> = rows.iter().filter_map(|r| documents::build(source, r)).collect();
                let ids: Vec<String> = docs
                    .iter()
                    .filter_map(|d| d.get(ID_FIELD).and_then(Value::as_str))
                    .map(str::to_string)
                    .collect();
                let indexed = self.backend.get(name, &ids).await?;
                let mut changed = Vec::new();
                for (doc, old) in docs.into_iter().zip(indexed) {
                    if let Some(id) = doc.get(ID_FIELD).and_then(Value::as_str) {
                        seen.insert(id.to_string());
                    }
                    if old.as_ref().is_some_and(|o| same_document(o, &doc)) {
                        report.unchanged += 1;
                    } else {
                        changed.push(doc);
                    }
                }
                if !changed.is_empty() {
                    report.written += self.backend.upsert(name, changed).await?.written;
                }
                match next {
                    Some(p) => position = p,
                    None => break,
                }
            }
        }
        let all = Filter::Range {
            field: ID_FIELD.into(),
            gte: None,
            gt: None,
            lte: None,
            lt: None,
        };
        let gone: Vec<String> = self
            .backend
            .ids_where(name, &all)
            .await?
            .into_iter()
            .filter(|id| !seen.contains(id))
            .collect();
        if !gone.is_empty() {
            // Only documents not rewritten since the reconcile started.
            report.deleted += self.backend.delete(name, gone, started).await?.deleted;
        }
        Ok(report)
    }

    /// Read-your-writes: after a mutation through the gateway, poll every
    /// index and rebuild the entities the mutation named by `id`.
    pub async fn after_mutation(&self, plan: &QueryPlan, variables: &Variables) -> Result<(), SyncError> {
        if plan.kind != OperationKind::Mutation {
            return Ok(());
        }
        let mut named: Vec<(String, String)> = Vec::new(); // (subgraph, id)
        for fetch in &plan.fetches {
            if !matches!(fetch.kind, FetchKind::Root) {
                continue;
            }
            for arg in &fetch.arguments {
                if arg.def.name.as_str() != "id" {
                    continue;
                }
                let value = match &arg.value {
                    async_graphql_value::Value::Variable(v) => variables.get(v).cloned(),
                    other => other.clone().into_const(),
                };
                if let Some(v) = value.and_then(|v| v.into_json().ok()) {
                    named.push((fetch.subgraph.clone(), json_str(&v)));
                }
            }
        }
        for name in self.index_names() {
            self.poll(&name).await?;
            let def = self.index(&name)?;
            for source in &def.sources {
                let owner = self
                    .schema()
                    .object(&source.entity)
                    .and_then(|o| o.owner.as_ref());
                let ids: Vec<String> = named
                    .iter()
                    .filter(|(subgraph, _)| owner.is_some_and(|o| &o.subgraph == subgraph))
                    .map(|(_, id)| id.clone())
                    .collect();
                if !ids.is_empty() {
                    self.rebuild(&name, &source.entity, &ids).await?;
                }
            }
        }
        Ok(())
    }

    /// Polls every `interval` and reconciles every `reconcile_every`, until
    /// the task is dropped. Failures are logged and retried next time.
    pub async fn run(self: Arc<Self>, interval: Duration, reconcile_every: Duration) {
        let mut last_reconcile = Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            let reconcile = last_reconcile.elapsed() >= reconcile_every;
            for name in self.index_names() {
                let result = if reconcile {
                    self.reconcile(&name).await
                } else {
                    self.poll(&name).await
                };
                match result {
                    Ok(r) if r.written + r.deleted > 0 => {
                        tracing::info!(index = %name, written = r.written, deleted = r.deleted, "index synced")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(index = %name, error = %e, "sync failed; retrying next time"),
                }
            }
            if reconcile {
                last_reconcile = Instant::now();
            }
        }
    }
}

/// The first steps of the source's denormalized paths.
fn relations(source: &IndexSource) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for f in &source.fields {
        if let Some(first) = f.path.as_ref().and_then(|p| p.first()) {
            if !out.contains(&first.as_str()) {
                out.push(first.as_str());
            }
        }
    }
    out
}

/// Equal apart from the version (a dependency rebuild may carry another one).
fn same_document(a: &Document, b: &Document) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| k == VERSION_FIELD || b.get(k).is_some_and(|w| values_equal(v, w)))
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn json_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn now_millis() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn now_rfc3339() -> String {
    format_millis(now_millis())
}

fn format_millis(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `watermark` minus `overlap`, as RFC 3339.
fn minus(watermark: &str, overlap: Duration) -> String {
    let ms = crate::search::spec::parse_datetime_millis(watermark).unwrap_or(0);
    format_millis(ms - i64::try_from(overlap.as_millis()).unwrap_or(0))
}
