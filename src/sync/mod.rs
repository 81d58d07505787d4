//! Keeping search indexes in sync with the legacy services (DESIGN.md,
//! "Sync"), embedded: no broker needed.
//!
//! - **Backfill** lists every row of each indexed type page by page, builds
//!   the documents through the executor and writes each page together with a
//!   checkpoint, so a killed backfill resumes where it stopped.
//! - **Poll** asks every indexed type and every type denormalized into a
//!   document for rows updated after the watermark (minus an overlap, for
//!   clock skew and same-millisecond writes), rebuilds the documents they
//!   touch and moves the watermark.
//! - **Changes** ([`Syncer::apply`]): rows a service announced (its change
//!   events) or a search found gone (read repair) are rebuilt at once,
//!   deletes included, with every document that denormalizes them.
//! - **Scan** ([`Syncer::scan`]): deletes for services that announce
//!   nothing. Only ids are listed; a document whose row, or one of whose
//!   denormalized rows, is gone is deleted or rebuilt. A listing pages by
//!   offset, so a row deleted while it pages makes it skip a live one: a
//!   document missing from a listing (in a scan or a reconcile) is deleted
//!   only once a read by id finds no row, and kept when that read fails.
//! - **Reconcile** rebuilds every document from the sources and writes those
//!   that differ: the safety net for anything the others missed.
//!
//! A failed step writes nothing past its last good checkpoint and is tried
//! again. [`SyncError::is_transient`] tells an outage (the index or a
//! service unreachable, too slow, answering 5xx, its circuit open: the same
//! step can succeed later) from a failure about what was asked (a service's
//! error for a row, a row that does not fit the schema): the Kafka worker
//! keeps retrying the first and dead-letters events only for the second.
//!
//! A document's version is the time its rows were read (microseconds). Every rebuild reads
//! current state, so the latest read is the newest document, whether a row
//! was changed, added or deleted; the backend skips a write older than what
//! it holds, so concurrent rebuilds cannot go back in time. Which documents
//! a changed row touches is found through the `_refs_<Type>` fields of the
//! read model (`readmodel`). This module owns sync policy; documents are
//! built by `readmodel`, stored through `search::SearchBackend`.

pub mod events;
mod freshness;
pub mod kafka;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, Mutex};

use crate::exec::{Executor, Internal, RunError};
use crate::readmodel::documents::Listing;
use crate::readmodel::documents::{self, json_id};
use crate::readmodel::{
    document_id, entity_of, index_spec, refs_field, DocumentBuilder, Position, Relation, RelationKind,
};
pub use crate::readmodel::{Change, ChangeOp};
use crate::schema::{Changes, IndexDef, Supergraph};
use crate::search::{
    Document, FieldValue, Filter, SearchBackend, SearchError, WriteOp, WriteOutcome, ID_FIELD, TYPE_FIELD,
    VERSION_FIELD,
};
pub use events::{EventError, ServiceEvent};
pub use freshness::{Freshness, NotYet};

/// Why a sync step failed. The step is retried by the next poll; nothing
/// is written past the last good checkpoint. [`SyncError::is_transient`]
/// tells an outage (retry the same step) from a failure about the rows or
/// events it was given (the Kafka worker dead-letters those).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("index `{index}` is not declared in schema.graphql (declared: {known})")]
    UnknownIndex { index: String, known: String },
    /// A service answered about what was asked (an error for a row, a row
    /// that does not fit the schema), or the sync cannot ask it at all.
    #[error("reading {what} failed: {message}")]
    Source { what: String, message: String },
    /// A service could not be reached, did not answer in time, answered
    /// HTTP 5xx or its circuit is open: nothing was learnt about the rows.
    #[error("reading {what} failed: {message}")]
    SourceUnavailable { what: String, message: String },
    #[error(
        "index `{index}` was built from another version of schema.graphql ({differences}); \
         rebuild it with `tessera sync reindex {index}` (blue/green: searches keep working meanwhile)"
    )]
    SpecMismatch { index: String, differences: String },
    #[error("cannot {action} `{index}`: {reason}")]
    Alias {
        action: &'static str,
        index: String,
        reason: String,
    },
    #[error(transparent)]
    Index(#[from] SearchError),
}

impl SyncError {
    /// A read through the executor that failed: unavailable when a fetch
    /// failed for a reason about its service rather than the rows.
    fn read(what: String, e: RunError) -> Self {
        if e.transient {
            SyncError::SourceUnavailable {
                what,
                message: e.message,
            }
        } else {
            SyncError::Source {
                what,
                message: e.message,
            }
        }
    }

    /// Whether the step failed because the index or a service could not do
    /// anything just then (unreachable, too slow, failing as a whole: see
    /// [`SearchError::is_transient`], `FetchError::is_transient`), not
    /// because of what it was asked: the same step can succeed later, and
    /// says nothing about the events it applied. Everything else (a service's
    /// answer about a row, a document the index refuses, a setup error) is
    /// not.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::SourceUnavailable { .. } => true,
            SyncError::Index(e) => e.is_transient(),
            SyncError::UnknownIndex { .. }
            | SyncError::Source { .. }
            | SyncError::SpecMismatch { .. }
            | SyncError::Alias { .. } => false,
        }
    }
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
        /// The index held every document when this backfill began (a
        /// rebuild in place of a built index): it answers meanwhile. A
        /// first build does not, until it ends.
        #[serde(default)]
        complete: bool,
    },
    /// Built; changes after `watermark` are not indexed yet.
    Live { watermark: String },
}

impl Checkpoint {
    /// Whether the checkpoint an index stores (as the backend keeps it)
    /// says its backfill has finished: only then does it hold every document.
    pub fn is_built(stored: Option<&str>) -> bool {
        stored
            .and_then(|raw| serde_json::from_str::<Checkpoint>(raw).ok())
            .is_some_and(|c| {
                matches!(
                    c,
                    Checkpoint::Live { .. } | Checkpoint::Backfill { complete: true, .. }
                )
            })
    }
}

/// What a backfill reports as it goes.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
    pub elapsed: Duration,
}

/// What one sync step did to an index.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// Documents written.
    pub written: usize,
    /// Documents deleted.
    pub deleted: usize,
    /// Documents that already matched their rows (reconcile only).
    pub unchanged: usize,
    /// Writes not applied because the index held a newer version (another
    /// rebuild read the rows later) or a delete found nothing to delete.
    pub skipped: usize,
    /// Documents the index refused; each is logged with its id and reason
    /// and kept in [`Syncer::rejected`].
    pub failed: usize,
}

impl SyncReport {
    fn add(&mut self, other: SyncReport) {
        self.written += other.written;
        self.deleted += other.deleted;
        self.unchanged += other.unchanged;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }

    pub fn changed(&self) -> bool {
        self.written + self.deleted + self.failed > 0
    }
}

/// A document an index refused, kept for the operator (newest last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedDocument {
    pub index: String,
    pub id: String,
    pub reason: String,
}

/// How many refused documents [`Syncer::rejected`] keeps.
const MAX_REJECTED: usize = 1000;

/// The longest wait between two tries of changes kept during an outage
/// (the in-process follower's and the Kafka worker's).
pub const MAX_OUTAGE_BACKOFF: Duration = Duration::from_secs(10);

/// Documents a backfill writes (and commits) at once: few, large segments
/// merge less, and a crash re-reads at most this many rows.
const BACKFILL_BATCH: usize = 50_000;
/// Offset pages a backfill asks a service for at once.
const PAGES_IN_FLIGHT: usize = 2;

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

/// How often the background loop ([`Syncer::run`]) does each step.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    /// `None`: no polling (change events arrive through Kafka).
    pub poll: Option<Duration>,
    pub scan: Duration,
    pub reconcile: Duration,
}

/// A listing and its planned query.
type PreparedListing = (Listing, Internal);

/// One entity type of an index, with what the sync needs of it, made once.
struct SourceModel {
    builder: DocumentBuilder,
    changes: Option<Changes>,
    /// The root field reading one row by id (`contract(id:)`).
    by_id: Option<String>,
}

struct IndexModel {
    name: String,
    sources: Vec<SourceModel>,
    /// Counts every source's rows (for a backfill's progress), if each can.
    counts: Option<Internal>,
}

/// What [`Syncer::reindex`] did.
#[derive(Debug, Clone)]
pub struct Reindexed {
    /// The physical index the alias pointed to before (kept for rollback).
    pub previous: Option<String>,
    /// The physical index it points to now.
    pub current: String,
    /// Documents the backfill wrote.
    pub documents: u64,
    /// What the catch-up with the changes made during the backfill did.
    pub caught_up: SyncReport,
    /// Physical indexes older than `previous`, dropped.
    pub dropped: Vec<String>,
}

/// One physical index, for `tessera sync status`.
#[derive(Debug, Clone)]
pub struct IndexStatus {
    pub physical: String,
    /// Aliases pointing to it (the index a search field reads is live).
    pub aliases: Vec<String>,
    pub documents: u64,
    pub checkpoint: Option<Checkpoint>,
    /// How far behind the services it may be: now minus the watermark.
    pub lag: Option<Duration>,
}

/// The physical indexes of logical index `name`: `name_v1`, `name_v2`, …
fn version_of(name: &str, physical: &str) -> Option<u64> {
    physical.strip_prefix(name)?.strip_prefix("_v")?.parse().ok()
}

/// Synchronizes every index of the schema.
pub struct Syncer {
    executor: Arc<Executor>,
    backend: Arc<dyn SearchBackend>,
    options: SyncOptions,
    indexes: Vec<IndexModel>,
    /// One lock per index: polls, scans, reconciles and rebuilds of an
    /// index never interleave.
    locks: HashMap<String, Mutex<()>>,
    rejected: parking_lot::Mutex<Vec<RejectedDocument>>,
    /// The sync's own queries, parsed and planned once: listings by
    /// (type, selection), reads by id by (type, selection, how many ids).
    listings: parking_lot::Mutex<HashMap<(String, String), Arc<PreparedListing>>>,
    by_id: parking_lot::Mutex<HashMap<(String, String, usize), Arc<Internal>>>,
}

impl Syncer {
    /// A synchronizer for every index of the executor's schema. Every query
    /// it sends is prepared here, so a declaration that cannot be queried
    /// stops the start with the reason.
    pub fn new(
        executor: Arc<Executor>,
        backend: Arc<dyn SearchBackend>,
        options: SyncOptions,
    ) -> Result<Self, SyncError> {
        let schema = executor.schema();
        let indexes: Vec<IndexModel> = schema
            .indexes()
            .map(|def| IndexModel {
                name: def.name.clone(),
                sources: def
                    .sources
                    .iter()
                    .map(|source| SourceModel {
                        builder: DocumentBuilder::new(schema, source),
                        changes: schema
                            .object(&source.entity)
                            .and_then(|o| o.changes.as_deref())
                            .cloned(),
                        by_id: schema.get_by_id_field(&source.entity).map(|f| f.name.to_string()),
                    })
                    .collect(),
                counts: None,
            })
            .collect();
        let mut indexes = indexes;
        for model in &mut indexes {
            let fields: Option<Vec<&String>> = model
                .sources
                .iter()
                .map(|s| s.changes.as_ref().and_then(|c| c.count_field.as_ref()))
                .collect();
            if let Some(fields) = fields {
                let text = fields
                    .iter()
                    .enumerate()
                    .fold(String::from("{"), |text, (i, f)| text + &format!(" c{i}:{f}"))
                    + "}";
                model.counts = Some(
                    executor
                        .prepare(&text)
                        .map_err(|m| Self::internal_error(&format!("{} row counts", model.name), m))?,
                );
            }
        }
        let locks = indexes.iter().map(|d| (d.name.clone(), Mutex::new(()))).collect();
        let syncer = Self {
            executor,
            backend,
            options,
            indexes,
            locks,
            rejected: parking_lot::Mutex::new(Vec::new()),
            listings: parking_lot::Mutex::new(HashMap::new()),
            by_id: parking_lot::Mutex::new(HashMap::new()),
        };
        syncer.prepare_all()?;
        Ok(syncer)
    }

    /// Prepares every query shape the sync sends (reads by id for one id;
    /// other counts are prepared as first met, from the same text).
    fn prepare_all(&self) -> Result<(), SyncError> {
        let schema = self.schema();
        for model in &self.indexes {
            for source in &model.sources {
                let entity = source.builder.entity();
                if source.changes.is_some() {
                    self.listing(entity, source.builder.selection())?;
                    self.listing(entity, "id")?;
                }
                if let Some(get) = &source.by_id {
                    self.by_id_query(entity, get, source.builder.selection(), 1)?;
                }
                for relation in source.builder.relations() {
                    if schema
                        .object(&relation.target)
                        .and_then(|o| o.changes.as_ref())
                        .is_none()
                    {
                        continue;
                    }
                    self.listing(&relation.target, "id")?;
                    if let RelationKind::Join { on } = &relation.kind {
                        self.listing(&relation.target, &format!("id {on}"))?;
                        if let Some(get) = schema.get_by_id_field(&relation.target) {
                            self.by_id_query(&relation.target, &get.name, on, 1)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn internal_error(what: &str, message: String) -> SyncError {
        SyncError::Source {
            what: format!("the sync's query for {what}"),
            message,
        }
    }

    /// How `type_name`'s rows are listed (its `@changes`).
    fn changes_of(&self, type_name: &str) -> Result<&crate::schema::Changes, SyncError> {
        self.schema()
            .object(type_name)
            .and_then(|o| o.changes.as_deref())
            .ok_or_else(|| SyncError::Source {
                what: type_name.to_string(),
                message: "the type has no @changes".into(),
            })
    }

    /// The prepared listing of `type_name`'s rows reading `selection`.
    fn listing(&self, type_name: &str, selection: &str) -> Result<Arc<PreparedListing>, SyncError> {
        let key = (type_name.to_string(), selection.to_string());
        if let Some(found) = self.listings.lock().get(&key) {
            return Ok(Arc::clone(found));
        }
        let changes = self.changes_of(type_name)?;
        let listing = Listing::new(self.schema(), changes, selection);
        let query = self
            .executor
            .prepare(&listing.text)
            .map_err(|m| Self::internal_error(&format!("{type_name} rows"), m))?;
        let prepared = Arc::new((listing, query));
        self.listings.lock().insert(key, Arc::clone(&prepared));
        Ok(prepared)
    }

    /// The prepared read of `n` rows of `type_name` by id through `get`.
    fn by_id_query(
        &self,
        type_name: &str,
        get: &str,
        selection: &str,
        n: usize,
    ) -> Result<Arc<Internal>, SyncError> {
        let key = (type_name.to_string(), selection.to_string(), n);
        if let Some(found) = self.by_id.lock().get(&key) {
            return Ok(Arc::clone(found));
        }
        let id_type = self
            .schema()
            .field(self.schema().query_type(), get)
            .and_then(|f| f.args.get("id"))
            .map(|a| a.ty.to_string())
            .unwrap_or_else(|| "ID!".into());
        let text = documents::by_id_query(get, &id_type, n, selection);
        let query = Arc::new(
            self.executor
                .prepare(&text)
                .map_err(|m| Self::internal_error(&format!("{type_name} by id"), m))?,
        );
        self.by_id.lock().insert(key, Arc::clone(&query));
        Ok(query)
    }

    /// One page of `type_name`'s rows (updated after `since`, when set),
    /// and where the next starts.
    async fn page(
        &self,
        type_name: &str,
        selection: &str,
        position: &Position,
        since: Option<&str>,
    ) -> Result<(Vec<serde_json::Map<String, Value>>, Option<Position>), SyncError> {
        let prepared = self.listing(type_name, selection)?;
        let (listing, query) = &*prepared;
        let data = self
            .executor
            .run(
                query,
                &listing.variables(position, since),
                &reqwest::header::HeaderMap::new(),
            )
            .await
            .map_err(|e| SyncError::read(format!("{type_name} rows"), e))?;
        Ok(documents::page_rows(&listing.changes, position, data))
    }

    pub fn schema(&self) -> &Arc<Supergraph> {
        self.executor.schema()
    }

    fn model(&self, name: &str) -> Result<&IndexModel, SyncError> {
        self.indexes
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| SyncError::UnknownIndex {
                index: name.into(),
                known: self.index_names().join(", "),
            })
    }

    fn def(&self, name: &str) -> Result<&IndexDef, SyncError> {
        self.schema().index(name).ok_or_else(|| SyncError::UnknownIndex {
            index: name.into(),
            known: self.index_names().join(", "),
        })
    }

    pub fn index_names(&self) -> Vec<String> {
        self.indexes.iter().map(|d| d.name.clone()).collect()
    }

    /// The most recent documents an index refused (at most 1,000).
    pub fn rejected(&self) -> Vec<RejectedDocument> {
        self.rejected.lock().clone()
    }

    async fn lock(&self, index: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.locks.get(index) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// Checks that the live index was built from this schema's declaration
    /// (an index that does not exist yet is fine: it is built at start).
    pub async fn check(&self, name: &str) -> Result<(), SyncError> {
        self.check_target(name, name).await
    }

    /// [`check`](Self::check) of `target`, the alias or a physical index of `name`.
    async fn check_target(&self, name: &str, target: &str) -> Result<(), SyncError> {
        let want = index_spec(self.def(name)?, self.schema());
        let have = match self.backend.spec(target).await {
            Ok(spec) => spec,
            Err(SearchError::UnknownIndex { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if have == want {
            return Ok(());
        }
        let mut differences = Vec::new();
        for f in &want.fields {
            match have.fields.iter().find(|h| h.name == f.name) {
                None => differences.push(format!("`{}` is new", f.name)),
                Some(h) if h != f => differences.push(format!("`{}` changed", f.name)),
                Some(_) => {}
            }
        }
        for h in &have.fields {
            if !want.fields.iter().any(|f| f.name == h.name) {
                differences.push(format!("`{}` is gone", h.name));
            }
        }
        if differences.is_empty() {
            differences.push("the fields are in another order".into());
        }
        Err(SyncError::SpecMismatch {
            index: target.to_string(),
            differences: differences.join(", "),
        })
    }

    /// Creates the index (`<name>_v1` behind alias `<name>`) unless it exists.
    pub async fn ensure_index(&self, name: &str) -> Result<(), SyncError> {
        let def = self.def(name)?;
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

    /// Writes `ops` (with `checkpoint`), counting what happened; documents
    /// the index refused are logged and kept, never silently dropped.
    async fn write(
        &self,
        index: &str,
        ops: Vec<WriteOp>,
        checkpoint: Option<String>,
    ) -> Result<SyncReport, SyncError> {
        if ops.is_empty() && checkpoint.is_none() {
            return Ok(SyncReport::default());
        }
        let outcome = self.backend.write(index, ops, checkpoint).await?;
        Ok(self.record(index, outcome))
    }

    fn record(&self, index: &str, outcome: WriteOutcome) -> SyncReport {
        let failed = outcome.rejected.len();
        if failed > 0 {
            let mut kept = self.rejected.lock();
            for r in outcome.rejected {
                tracing::error!(index, id = %r.id, reason = %r.reason, "the index refused a document");
                kept.push(RejectedDocument {
                    index: index.to_string(),
                    id: r.id,
                    reason: r.reason,
                });
            }
            let excess = kept.len().saturating_sub(MAX_REJECTED);
            kept.drain(..excess);
        }
        let logical = self
            .indexes
            .iter()
            .find(|m| m.name == index || version_of(&m.name, index).is_some())
            .map_or(index, |m| m.name.as_str());
        crate::telemetry::metrics().applied(logical, (outcome.written + outcome.deleted) as u64);
        SyncReport {
            written: outcome.written,
            deleted: outcome.deleted,
            unchanged: 0,
            skipped: outcome.skipped,
            failed,
        }
    }

    /// Rows of the index's sources, for progress.
    async fn total(&self, model: &IndexModel) -> Option<u64> {
        let data = self
            .executor
            .run(
                model.counts.as_ref()?,
                &serde_json::Map::new(),
                &reqwest::header::HeaderMap::new(),
            )
            .await
            .ok()?;
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
        let model = self.model(name)?;
        let _guard = self.lock(name).await;
        self.backfill_into(model, name, restart, progress).await
    }

    /// [`backfill`](Self::backfill) of `model` into `target` (the alias or
    /// a physical index), the index's lock held.
    async fn backfill_into(
        &self,
        model: &IndexModel,
        target: &str,
        restart: bool,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<u64, SyncError> {
        let started_at = Instant::now();
        let previous = self.checkpoint(target).await?;
        let complete = match &previous {
            Some(Checkpoint::Live { .. }) => true,
            Some(Checkpoint::Backfill { complete, .. }) => *complete,
            None => false,
        };
        let (mut source_index, mut offset, mut done, started) = match previous {
            Some(Checkpoint::Backfill {
                source,
                offset,
                done,
                started,
                ..
            }) if !restart => (source, offset, done, started),
            _ => (0, 0, 0, now_rfc3339()),
        };
        let total = self.total(model).await;
        progress(Progress {
            done,
            total,
            elapsed: started_at.elapsed(),
        });
        while let Some(source) = model.sources.get(source_index) {
            let changes = changes_of(source)?;
            let position = match changes.paging {
                crate::schema::Paging::Offset { .. } => Position::Offset(offset),
                crate::schema::Paging::Cursor { .. } => Position::Cursor(None),
            };
            // Batch N is written while batch N + 1 is read and built: the
            // index and the services work at the same time.
            let mut page = self.fetch_batch(source, &position).await?;
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
                            complete,
                        },
                        false,
                    ),
                    Some(Position::Offset(o)) => (
                        Checkpoint::Backfill {
                            source: source_index,
                            offset: *o,
                            done,
                            started: started.clone(),
                            complete,
                        },
                        false,
                    ),
                    _ if source_index + 1 < model.sources.len() => (
                        Checkpoint::Backfill {
                            source: source_index + 1,
                            offset: 0,
                            done,
                            started: started.clone(),
                            complete,
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
                let ops = docs.into_iter().map(WriteOp::Upsert).collect();
                let write = self.write(target, ops, checkpoint);
                let prefetch = async {
                    match &next {
                        Some(p) if !finished => Some(self.fetch_batch(source, p).await),
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

    /// Pages of `source`'s rows from `position` as documents, until
    /// [`BACKFILL_BATCH`] or the end, and where the next batch starts.
    /// Offset pages are read [`PAGES_IN_FLIGHT`] at a time (their positions
    /// are known in advance), so the services prepare one page while the
    /// gateway builds another; cursor pages wait for the previous cursor.
    async fn fetch_batch(
        &self,
        source: &SourceModel,
        position: &Position,
    ) -> Result<(Vec<Document>, Option<Position>), SyncError> {
        let changes = changes_of(source)?;
        let (mut docs, mut next) = match position {
            Position::Offset(start) => {
                let size = changes.page_size.max(1);
                let pages = BACKFILL_BATCH.div_ceil(size);
                let mut fetched = futures::stream::iter(0..pages)
                    .map(|i| self.fetch_page(source, Position::Offset(start + i * size)))
                    .buffered(PAGES_IN_FLIGHT);
                let (mut docs, mut next) = (Vec::new(), None);
                while let Some(page) = fetched.next().await {
                    let (more, after) = page?;
                    docs.extend(more);
                    next = after;
                    // The end: a page already asked for beyond it can only
                    // hold rows added since the backfill started, which the
                    // live watermark catches; it is dropped.
                    if next.is_none() {
                        break;
                    }
                }
                (docs, next)
            }
            Position::Cursor(_) => self.fetch_page(source, position.clone()).await?,
        };
        while docs.len() < BACKFILL_BATCH {
            let Some(position) = next.take() else { break };
            let (more, after) = self.fetch_page(source, position).await?;
            docs.extend(more);
            next = after;
        }
        Ok((docs, next))
    }

    /// One page of `source`'s rows as documents, and where the next starts:
    /// built straight from the answer's bytes.
    async fn fetch_page(
        &self,
        source: &SourceModel,
        position: Position,
    ) -> Result<(Vec<Document>, Option<Position>), SyncError> {
        let read_at = now_version();
        let entity = source.builder.entity();
        let prepared = self.listing(entity, source.builder.selection())?;
        let (listing, query) = &*prepared;
        let data = self
            .executor
            .run_bytes(
                query,
                &listing.variables(&position, None),
                &reqwest::header::HeaderMap::new(),
            )
            .await
            .map_err(|e| SyncError::read(format!("{entity} rows"), e))?;
        documents::page_documents(&source.builder, &listing.changes, &position, &data, read_at).map_err(
            |message| SyncError::Source {
                what: format!("{entity} rows"),
                message,
            },
        )
    }

    /// Rebuilds what changed since the watermark and moves it. An index that
    /// was never built is backfilled first.
    pub async fn poll(&self, name: &str) -> Result<SyncReport, SyncError> {
        self.ensure_index(name).await?;
        let model = self.model(name)?;
        let _guard = self.lock(name).await;
        self.poll_into(model, name).await
    }

    /// [`poll`](Self::poll) of `model` into `target`, the index's lock held.
    async fn poll_into(&self, model: &IndexModel, target: &str) -> Result<SyncReport, SyncError> {
        if let Some(backfilled) = self.finish_backfill(model, target).await? {
            return Ok(backfilled);
        }
        let watermark = match self.checkpoint(target).await? {
            Some(Checkpoint::Live { watermark }) => watermark,
            _ => return Ok(SyncReport::default()),
        };
        self.poll_since(model, target, &watermark).await
    }

    /// An index never built, or whose backfill did not finish, is
    /// backfilled (resumed) first: a poll has no watermark to start from,
    /// and a scan or reconcile would rebuild every document without
    /// recording the index as built (the next poll backfilled it again).
    /// `None` for a built index; the backfill's documents otherwise.
    async fn finish_backfill(
        &self,
        model: &IndexModel,
        target: &str,
    ) -> Result<Option<SyncReport>, SyncError> {
        if matches!(self.checkpoint(target).await?, Some(Checkpoint::Live { .. })) {
            return Ok(None);
        }
        tracing::info!(index = %target, "the index is not built yet: backfilling it first");
        let documents = self.backfill_into(model, target, false, &|_| {}).await?;
        Ok(Some(SyncReport {
            written: usize::try_from(documents).unwrap_or(usize::MAX),
            ..SyncReport::default()
        }))
    }

    /// Applies to `target` what changed since `watermark` (less the
    /// overlap), and records the poll's start as its watermark.
    async fn poll_since(
        &self,
        model: &IndexModel,
        target: &str,
        watermark: &str,
    ) -> Result<SyncReport, SyncError> {
        let name = target;
        let now = now_rfc3339();
        let since = minus(watermark, self.options.overlap);
        let mut report = SyncReport::default();
        let mut rebuild: Vec<BTreeSet<String>> = vec![BTreeSet::new(); model.sources.len()];
        // Rows of denormalized types changed since the watermark, by type and selection.
        let mut polled: HashMap<String, Vec<serde_json::Map<String, Value>>> = HashMap::new();
        for (slot, source) in model.sources.iter().enumerate() {
            // The source's own rows: their documents straight from the listing.
            let changes = changes_of(source)?;
            let read_at = now_version();
            let rows = self
                .list(
                    source.builder.entity(),
                    changes,
                    Some(&since),
                    source.builder.selection(),
                )
                .await?;
            let ops = rows
                .into_iter()
                .filter_map(|r| source.builder.build(r, read_at))
                .map(WriteOp::Upsert)
                .collect();
            report.add(self.write(name, ops, None).await?);
            for relation in source.builder.relations() {
                let Some(tchanges) = self
                    .schema()
                    .object(&relation.target)
                    .and_then(|o| o.changes.as_ref())
                else {
                    continue;
                };
                let selection = match &relation.kind {
                    RelationKind::Ref { .. } => "id".to_string(),
                    RelationKind::Join { on } => format!("id {on}"),
                };
                let cache_key = format!("{}\u{0}{selection}", relation.target);
                if !polled.contains_key(&cache_key) {
                    let rows = self
                        .list(&relation.target, tchanges, Some(&since), &selection)
                        .await?;
                    polled.insert(cache_key.clone(), rows);
                }
                let rows = &polled[&cache_key];
                if rows.is_empty() {
                    continue;
                }
                let ids: Vec<String> = rows
                    .iter()
                    .filter_map(|r| r.get("id").and_then(json_id))
                    .collect();
                rebuild[slot].extend(self.holders(name, source, relation, &ids).await?);
                if let RelationKind::Join { on } = &relation.kind {
                    rebuild[slot].extend(rows.iter().filter_map(|r| r.get(on.as_str()).and_then(json_id)));
                }
            }
        }
        for (slot, ids) in rebuild.into_iter().enumerate() {
            let ids: Vec<String> = ids.into_iter().collect();
            report.add(self.rebuild_locked(name, &model.sources[slot], &ids).await?);
        }
        let checkpoint = serde_json::to_string(&Checkpoint::Live { watermark: now }).ok();
        self.write(name, Vec::new(), checkpoint).await?;
        Ok(report)
    }

    /// The entities of `source` whose documents hold one of the `relation`
    /// rows `ids`: through the `_refs` field, and through the key field of a
    /// reference (a row created after the document pointed at its id).
    async fn holders(
        &self,
        index: &str,
        source: &SourceModel,
        relation: &Relation,
        ids: &[String],
    ) -> Result<BTreeSet<String>, SyncError> {
        let mut out = BTreeSet::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let values: Vec<FieldValue> = ids.iter().map(|id| FieldValue::Str(id.clone())).collect();
        let mut fields = vec![refs_field(&relation.target)];
        if let RelationKind::Ref { key } = &relation.kind {
            fields.push(key.to_string());
        }
        for field in fields {
            let filter = Filter::In {
                field,
                values: values.clone(),
            };
            for doc_id in self.backend.ids_where(index, &filter).await? {
                if let Some((t, id)) = entity_of(&doc_id) {
                    if t == source.builder.entity() {
                        out.insert(id);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every row of `type_name` (updated after `since`, when set).
    async fn list(
        &self,
        type_name: &str,
        changes: &Changes,
        since: Option<&str>,
        selection: &str,
    ) -> Result<Vec<serde_json::Map<String, Value>>, SyncError> {
        let mut out = Vec::new();
        let mut position = Position::start(changes);
        loop {
            let (rows, next) = self.page(type_name, selection, &position, since).await?;
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
        let model = self.model(name)?;
        let Some(source) = model.sources.iter().find(|s| s.builder.entity() == entity) else {
            return Ok(SyncReport::default());
        };
        let _guard = self.lock(name).await;
        self.rebuild_locked(name, source, ids).await
    }

    async fn rebuild_locked(
        &self,
        index: &str,
        source: &SourceModel,
        ids: &[String],
    ) -> Result<SyncReport, SyncError> {
        let entity = source.builder.entity();
        let mut report = SyncReport::default();
        if ids.is_empty() {
            return Ok(report);
        }
        let Some(get) = &source.by_id else {
            return Err(SyncError::Source {
                what: entity.to_string(),
                message: format!(
                    "no root field `{}(id: ID!)` to rebuild documents by id",
                    entity.to_ascii_lowercase()
                ),
            });
        };
        for chunk in ids.chunks(self.options.rebuild_batch.max(1)) {
            let read_at = now_version();
            let rows = self
                .rows_by_id(entity, get, chunk, source.builder.selection())
                .await?;
            let ops = chunk
                .iter()
                .zip(rows)
                .filter_map(|(id, row)| match row {
                    Some(row) => source.builder.build(row, read_at).map(WriteOp::Upsert),
                    None => Some(WriteOp::Delete {
                        id: document_id(entity, id),
                        version: read_at,
                    }),
                })
                .collect();
            report.add(self.write(index, ops, None).await?);
        }
        Ok(report)
    }

    /// Rows `ids` of `type_name` read through root field `get`, in order
    /// (`None` where the row does not exist).
    async fn rows_by_id(
        &self,
        type_name: &str,
        get: &str,
        ids: &[String],
        selection: &str,
    ) -> Result<Vec<Option<serde_json::Map<String, Value>>>, SyncError> {
        let query = self.by_id_query(type_name, get, selection, ids.len())?;
        let variables = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("i{i}"), Value::String(id.clone())))
            .collect();
        let mut data = self
            .executor
            .run(&query, &variables, &reqwest::header::HeaderMap::new())
            .await
            .map_err(|e| SyncError::read(format!("{type_name} by id"), e))?;
        Ok((0..ids.len())
            .map(|i| match data.remove(&format!("r{i}")) {
                Some(Value::Object(row)) => Some(row),
                _ => None,
            })
            .collect())
    }

    /// Applies changed rows to every index: the documents of those rows and
    /// every document that denormalizes one of them are rebuilt from current
    /// state (deleted where the row is gone). Changes of types no index
    /// reads are ignored.
    pub async fn apply(&self, changes: &[Change]) -> Result<SyncReport, SyncError> {
        let mut report = SyncReport::default();
        let mut by_type: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for c in changes {
            by_type
                .entry(c.type_name.as_str())
                .or_default()
                .insert(c.id.as_str());
        }
        for model in &self.indexes {
            let reads = |t: &str| {
                model
                    .sources
                    .iter()
                    .any(|s| s.builder.entity() == t || s.builder.relations().iter().any(|r| r.target == t))
            };
            if !by_type.keys().any(|t| reads(t)) {
                continue;
            }
            let _guard = self.lock(&model.name).await;
            for source in &model.sources {
                let mut ids: BTreeSet<String> = by_type
                    .get(source.builder.entity())
                    .map(|ids| ids.iter().map(|id| id.to_string()).collect())
                    .unwrap_or_default();
                for relation in source.builder.relations() {
                    let Some(changed) = by_type.get(relation.target.as_str()) else {
                        continue;
                    };
                    let changed: Vec<String> = changed.iter().map(|id| id.to_string()).collect();
                    ids.extend(self.holders(&model.name, source, relation, &changed).await?);
                    // A row created or moved under another parent is in no
                    // document yet: its join key names the parent.
                    if let RelationKind::Join { on } = &relation.kind {
                        if let Some(get) = self.schema().get_by_id_field(&relation.target) {
                            let rows = self.rows_by_id(&relation.target, &get.name, &changed, on).await?;
                            ids.extend(
                                rows.iter()
                                    .flatten()
                                    .filter_map(|r| r.get(on.as_str()).and_then(json_id)),
                            );
                        }
                    }
                }
                let ids: Vec<String> = ids.into_iter().collect();
                report.add(self.rebuild_locked(&model.name, source, &ids).await?);
            }
        }
        Ok(report)
    }

    /// Compares ids only: documents whose row is not listed are read by id
    /// and deleted where the row is gone, rows without a document are
    /// built, documents that denormalize a row that is gone are rebuilt. For
    /// services that announce no change events (and after a backfill, whose
    /// offset paging skips rows deleted meanwhile); it costs one listing of
    /// ids per type and a read of the rows that differ, not a rebuild.
    pub async fn scan(&self, name: &str) -> Result<SyncReport, SyncError> {
        self.ensure_index(name).await?;
        let model = self.model(name)?;
        let _guard = self.lock(name).await;
        if let Some(backfilled) = self.finish_backfill(model, name).await? {
            return Ok(backfilled);
        }
        self.scan_into(model, name).await
    }

    /// [`scan`](Self::scan) of `model` into `target`, the index's lock held.
    async fn scan_into(&self, model: &IndexModel, target: &str) -> Result<SyncReport, SyncError> {
        let name = target;
        let began = Instant::now();
        let mut report = SyncReport::default();
        let mut live: HashMap<String, HashSet<String>> = HashMap::new();
        // Entities whose document and listing disagree, rebuilt from a read
        // by id (deleted only where that read finds no row). A listing paged
        // by offset skips a live row when an earlier one is deleted while it
        // pages: a document the listing lacks is only a candidate, and a row
        // without a document may be one a backfill skipped the same way.
        let mut mismatched: Vec<Vec<String>> = Vec::with_capacity(model.sources.len());
        for source in &model.sources {
            let entity = source.builder.entity();
            let ids = self.live_ids(entity, &mut live).await?;
            let filter = Filter::Term {
                field: TYPE_FIELD.into(),
                value: FieldValue::Str(entity.to_string()),
            };
            let indexed: HashSet<String> = self.backend.ids_where(name, &filter).await?.into_iter().collect();
            let unlisted = indexed
                .iter()
                .filter_map(|doc_id| entity_of(doc_id).map(|(_, id)| id))
                .filter(|id| !ids.contains(id));
            let unindexed = ids
                .iter()
                .filter(|id| !indexed.contains(&document_id(entity, id)))
                .cloned();
            mismatched.push(unlisted.chain(unindexed).collect());
        }
        for (source, mut stale) in model.sources.iter().zip(mismatched) {
            for relation in source.builder.relations() {
                let ids = self.live_ids(&relation.target, &mut live).await?;
                let missing: Vec<String> = self
                    .backend
                    .terms(name, &refs_field(&relation.target))
                    .await?
                    .into_iter()
                    .filter(|id| !ids.contains(id))
                    .collect();
                stale.extend(self.holders(name, source, relation, &missing).await?);
            }
            stale.sort();
            stale.dedup();
            report.add(self.rebuild_locked(name, source, &stale).await?);
        }
        tracing::debug!(index = name, took = ?began.elapsed(), deleted = report.deleted, rebuilt = report.written, "scan");
        Ok(report)
    }

    /// Every id of `type_name`, listed once per scan.
    async fn live_ids<'l>(
        &self,
        type_name: &str,
        live: &'l mut HashMap<String, HashSet<String>>,
    ) -> Result<&'l HashSet<String>, SyncError> {
        if !live.contains_key(type_name) {
            let changes = self.changes_of(type_name)?;
            let rows = self.list(type_name, changes, None, "id").await?;
            let ids = rows
                .iter()
                .filter_map(|r| r.get("id").and_then(json_id))
                .collect();
            live.insert(type_name.to_string(), ids);
        }
        Ok(&live[type_name])
    }

    /// Rebuilds every document from the sources: writes those that differ
    /// from the index; those the listings did not show are read by id and
    /// deleted where the row is gone.
    pub async fn reconcile(&self, name: &str) -> Result<SyncReport, SyncError> {
        self.ensure_index(name).await?;
        let model = self.model(name)?;
        let _guard = self.lock(name).await;
        if let Some(backfilled) = self.finish_backfill(model, name).await? {
            return Ok(backfilled);
        }
        let started = now_version();
        let mut report = SyncReport::default();
        let mut seen: HashSet<String> = HashSet::new();
        for source in &model.sources {
            let changes = changes_of(source)?;
            let mut position = Position::start(changes);
            loop {
                let (docs, next) = self.fetch_page(source, position.clone()).await?;
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
                        if tracing::enabled!(tracing::Level::DEBUG) {
                            let fields: Vec<&String> = doc
                                .iter()
                                .filter(|(k, v)| {
                                    *k != VERSION_FIELD
                                        && old
                                            .as_ref()
                                            .and_then(|o| o.get(*k))
                                            .is_none_or(|w| !values_equal(v, w))
                                })
                                .map(|(k, _)| k)
                                .collect();
                            tracing::debug!(index = name, id = ?doc.get(ID_FIELD), ?fields, missing = old.is_none(), "reconcile rewrites a document");
                        }
                        changed.push(WriteOp::Upsert(doc));
                    }
                }
                report.add(self.write(name, changed, None).await?);
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
        // A document the listings did not show is only a candidate (an
        // offset listing skips a live row when an earlier one is deleted
        // while it pages): it is rebuilt from a read by id, so deleted only
        // where that read finds no row, and kept when the read fails.
        let mut unlisted: Vec<Vec<String>> = vec![Vec::new(); model.sources.len()];
        let mut foreign = Vec::new();
        for doc_id in self.backend.ids_where(name, &all).await? {
            if seen.contains(&doc_id) {
                continue;
            }
            let slot = entity_of(&doc_id).and_then(|(t, id)| {
                model
                    .sources
                    .iter()
                    .position(|s| s.builder.entity() == t)
                    .map(|slot| (slot, id))
            });
            match slot {
                Some((slot, id)) => unlisted[slot].push(id),
                // Of no type the index reads: nothing can rebuild it. Only
                // documents not rewritten since the reconcile started go.
                None => foreign.push(WriteOp::Delete {
                    id: doc_id,
                    version: started,
                }),
            }
        }
        report.add(self.write(name, foreign, None).await?);
        for (source, ids) in model.sources.iter().zip(unlisted) {
            report.add(self.rebuild_locked(name, source, &ids).await?);
        }
        Ok(report)
    }

    /// Blue/green rebuild: builds `<name>_v<N+1>` from the services beside
    /// the live index (which keeps being synced), catches up with what
    /// changed meanwhile, then points the alias at it in one step; searches
    /// read the old index until then, never a half-built one. The previous
    /// index is kept for [`rollback`](Self::rollback); older ones are dropped.
    pub async fn reindex(
        &self,
        name: &str,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Reindexed, SyncError> {
        let model = self.model(name)?;
        let def = self.def(name)?;
        let catalog = self.backend.catalog().await?;
        let next_version = catalog
            .indexes
            .iter()
            .filter_map(|p| version_of(name, p))
            .max()
            .unwrap_or(0)
            + 1;
        let next = format!("{name}_v{next_version}");
        self.backend
            .create_index(&index_spec(def, self.schema()), &next)
            .await?;
        let documents = self.backfill_into(model, &next, true, progress).await?;
        // The live index is synced meanwhile; the new one catches up from
        // its backfill's start (updates) and by an id scan (deletes)…
        let mut caught_up = self.poll_into(model, &next).await?;
        caught_up.add(self.scan_into(model, &next).await?);
        // …and once more with this process's sync steps held, right before
        // the swap, so the gap it leaves is as short as a poll…
        let _guard = self.lock(name).await;
        let before_swap = now_rfc3339();
        caught_up.add(self.poll_into(model, &next).await?);
        let previous = self.backend.point_alias(name, &next).await?;
        // …and once after it: what other writers (a Kafka worker, another
        // gateway's poll) applied to the old index until the swap is read
        // again into the new one. (Deletes in that gap reach the new index
        // with the next scan or event.)
        caught_up.add(self.poll_since(model, &next, &before_swap).await?);
        let mut dropped = Vec::new();
        for old in &catalog.indexes {
            let older = version_of(name, old).is_some_and(|v| v < next_version);
            if older && Some(old) != previous.as_ref() {
                match self.backend.drop_index(old).await {
                    Ok(()) => dropped.push(old.clone()),
                    Err(e) => tracing::warn!(index = %old, error = %e, "an old index could not be dropped"),
                }
            }
        }
        Ok(Reindexed {
            previous,
            current: next,
            documents,
            caught_up,
            dropped,
        })
    }

    /// Points the alias back at the index before the current one, after
    /// bringing it up to date (it was not synced since the swap). Returns
    /// `(now live, was live)`.
    pub async fn rollback(&self, name: &str) -> Result<(String, String), SyncError> {
        let model = self.model(name)?;
        let catalog = self.backend.catalog().await?;
        let refuse = |reason: String| SyncError::Alias {
            action: "roll back",
            index: name.to_string(),
            reason,
        };
        let current = catalog
            .aliases
            .get(name)
            .cloned()
            .ok_or_else(|| refuse("it has no alias yet (build it first)".into()))?;
        let current_version = version_of(name, &current).unwrap_or(0);
        let previous = catalog
            .indexes
            .iter()
            .filter(|p| version_of(name, p).is_some_and(|v| v < current_version))
            .max_by_key(|p| version_of(name, p))
            .cloned()
            .ok_or_else(|| refuse(format!("no index older than `{current}` is kept")))?;
        // The gateway refuses to start on an index of another declaration:
        // rolled back to with this schema, it would not start again.
        if let Err(SyncError::SpecMismatch { differences, .. }) = self.check_target(name, &previous).await {
            return Err(refuse(format!(
                "`{previous}` was built from another version of schema.graphql ({differences}); roll back with the schema it was built from"
            )));
        }
        let _guard = self.lock(name).await;
        let before_swap = now_rfc3339();
        self.poll_into(model, &previous).await?;
        self.scan_into(model, &previous).await?;
        self.backend.point_alias(name, &previous).await?;
        // What other writers applied to the index rolled away from until
        // the swap, read again (as in `reindex`).
        self.poll_since(model, &previous, &before_swap).await?;
        Ok((previous, current))
    }

    /// Records that `index` holds every change made up to `at` (epoch
    /// milliseconds): a change-event worker that has applied everything
    /// published until then says so, where a poll would have moved the
    /// watermark (else `sync status` and `tessera_index_lag_seconds` only
    /// grew). Never moves a watermark back, nor marks an index not built.
    pub async fn mark_current(&self, index: &str, at: i64) -> Result<(), SyncError> {
        let _guard = self.lock(index).await;
        let Some(Checkpoint::Live { watermark }) = self.checkpoint(index).await? else {
            return Ok(());
        };
        if crate::search::spec::parse_datetime_millis(&watermark).is_some_and(|w| w >= at) {
            return Ok(());
        }
        let checkpoint = Checkpoint::Live {
            watermark: format_millis(at),
        };
        self.write(index, Vec::new(), serde_json::to_string(&checkpoint).ok())
            .await?;
        Ok(())
    }

    /// Every physical index of the schema's indexes, with its aliases,
    /// document count and how far behind it may be.
    pub async fn status(&self) -> Result<Vec<IndexStatus>, SyncError> {
        let catalog = self.backend.catalog().await?;
        let mut out = Vec::new();
        for physical in &catalog.indexes {
            if !self
                .indexes
                .iter()
                .any(|m| version_of(&m.name, physical).is_some())
            {
                continue;
            }
            let checkpoint = self.checkpoint(physical).await?;
            let lag = match &checkpoint {
                Some(Checkpoint::Live { watermark }) => crate::search::spec::parse_datetime_millis(watermark)
                    .and_then(|w| u64::try_from(now_millis() - w).ok())
                    .map(Duration::from_millis),
                _ => None,
            };
            out.push(IndexStatus {
                physical: physical.clone(),
                aliases: catalog
                    .aliases
                    .iter()
                    .filter(|(_, p)| *p == physical)
                    .map(|(a, _)| a.clone())
                    .collect(),
                documents: self.backend.count(physical).await?,
                checkpoint,
                lag,
            });
        }
        Ok(out)
    }

    /// Applies changes as they arrive (the services' change events, read
    /// repairs from search), a batch at a time, until every sender is gone.
    pub async fn follow(self: Arc<Self>, mut changes: mpsc::Receiver<Change>) {
        const BATCH: usize = 1000;
        while let Some(first) = changes.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match changes.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.apply_followed(&batch).await;
        }
    }

    /// Applies one batch of followed changes, as the Kafka worker does: an
    /// outage ([`SyncError::is_transient`]) keeps the batch, tried again
    /// with a backoff doubling up to [`MAX_OUTAGE_BACKOFF`] for as long as
    /// it lasts (the senders wait meanwhile; events missed by then are the
    /// next scan's and reconcile's). A batch that keeps failing for one of
    /// its changes is applied change by change, so the rest go through;
    /// only a change that fails alone is given up, logged, and left to the
    /// next scan or reconcile.
    async fn apply_followed(&self, batch: &[Change]) {
        const TRIES: u32 = 3;
        let mut delay = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            let error = match self.apply(batch).await {
                Ok(r) => {
                    if r.changed() {
                        tracing::debug!(
                            changes = batch.len(),
                            written = r.written,
                            deleted = r.deleted,
                            "changes applied"
                        );
                    }
                    return;
                }
                Err(e) if e.is_transient() => e,
                Err(e) if tries + 1 < TRIES => {
                    tries += 1;
                    e
                }
                Err(e) if batch.len() == 1 => {
                    tracing::error!(error = %e, change = ?batch[0],
                        "a change cannot be applied; the next scan or reconcile repairs it");
                    return;
                }
                Err(_) => match self.apply_one_by_one(batch).await {
                    Ok(()) => return,
                    Err(outage) => outage,
                },
            };
            tracing::warn!(error = %error, changes = batch.len(), retry_in = ?delay,
                "applying changes failed; they are kept and tried again");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_OUTAGE_BACKOFF);
        }
    }

    /// Applies `batch` a change at a time; a change that fails is logged
    /// and given up. Stops at an outage, returning it.
    async fn apply_one_by_one(&self, batch: &[Change]) -> Result<(), SyncError> {
        for change in batch {
            match self.apply(std::slice::from_ref(change)).await {
                Ok(_) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => tracing::error!(error = %e, ?change,
                    "a change cannot be applied; the next scan or reconcile repairs it"),
            }
        }
        Ok(())
    }

    /// Polls every `poll` interval (when set; with change events there is
    /// nothing to poll for), scans for deletes every `scan` and reconciles
    /// every `reconcile`, until the task is dropped. Failures are logged and
    /// retried next time.
    pub async fn run(self: Arc<Self>, intervals: Intervals) {
        let mut last_scan = Instant::now();
        let mut last_reconcile = Instant::now();
        let tick = intervals.poll.unwrap_or(intervals.scan).min(intervals.scan);
        loop {
            tokio::time::sleep(tick).await;
            let reconcile = last_reconcile.elapsed() >= intervals.reconcile;
            let scan = !reconcile && last_scan.elapsed() >= intervals.scan;
            let step = match (reconcile, scan, intervals.poll.is_some()) {
                (true, _, _) => "reconcile",
                (_, true, _) => "scan",
                (_, _, true) => "poll",
                _ => continue,
            };
            for name in self.index_names() {
                let result = match step {
                    "reconcile" => self.reconcile(&name).await,
                    "scan" if intervals.poll.is_some() => match self.poll(&name).await {
                        Ok(mut r) => self.scan(&name).await.map(|s| {
                            r.add(s);
                            r
                        }),
                        Err(e) => Err(e),
                    },
                    "scan" => self.scan(&name).await,
                    _ => self.poll(&name).await,
                };
                match result {
                    Ok(r) if r.changed() => tracing::info!(
                        index = %name, step, written = r.written, deleted = r.deleted, failed = r.failed,
                        "index synced"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(index = %name, step, error = %e, "sync failed; retrying next time")
                    }
                }
            }
            if reconcile {
                last_reconcile = Instant::now();
                last_scan = Instant::now();
            } else if scan {
                last_scan = Instant::now();
            }
        }
    }
}

fn changes_of(source: &SourceModel) -> Result<&Changes, SyncError> {
    source.changes.as_ref().ok_or_else(|| SyncError::Source {
        what: source.builder.entity().to_string(),
        message: "the type has no @changes".into(),
    })
}

/// Equal apart from the version (the time of the read).
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

/// A document version: the time its rows are read, in microseconds since
/// the epoch (fine enough that a read after an answer has a larger one).
pub fn now_version() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch.
pub fn now_millis() -> i64 {
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
