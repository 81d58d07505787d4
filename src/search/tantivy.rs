//! The embedded [`SearchBackend`]: tantivy indexes on local disk (or in RAM
//! for tests), one directory per physical index, aliases in `aliases.json`.
//!
//! This module owns the mapping of an [`IndexSpec`] onto a tantivy schema,
//! the write discipline (one writer per index behind a mutex, commits off the
//! async runtime, the reader reloaded before a write returns), and the sorted
//! top-k collector that makes cursor pages cost the same at any depth. It
//! must not leak tantivy types: everything public speaks `search::*` types.
//!
//! # Layout of an index
//!
//! | spec field | tantivy fields |
//! |---|---|
//! | `id` | `id`: STRING + FAST (the delete/lookup term and the tiebreaker) |
//! | `_version` | `_version`: i64 FAST |
//! | `Keyword` (searchable, filterable or sortable) | `f<i>`: STRING + FAST (FAST only if just sortable) |
//! | `Text` | `f<i>_text`: TEXT if searchable; `f<i>`: the whole string, STRING + FAST if filterable, FAST if just sortable |
//! | `I64`, `DateTime` (ms) / `F64` | `f<i>`: i64 / f64 FAST if filterable or sortable |
//! | `Bool` | `f<i>`: bool INDEXED + FAST if filterable or sortable |
//! | whole document | `_source`: STORED bytes, the JSON minus `stored: false` fields |
//!
//! Terms record documents only (no frequencies, positions or norms:
//! nothing is scored or phrase-matched). Numbers and dates have no terms: a range reads the column (tantivy does
//! so for every fast field), and so does an equality on them (a one-value
//! range, or one pass of the column for `in`); their mostly unique values
//! made a term per document that indexing hashed, sorted and wrote (a
//! quarter of a contract backfill's indexing). Filter matches are cached
//! per segment, so the column is read once per filter and segment. Indexes
//! written before this layout (every exact field INDEXED) open as they are.
//!
//! Internal names are positional (`f3`) because spec names may hold
//! characters tantivy reads as JSON paths (`a.b`).
//!
//! Submodules: `layout` (schema and documents), `filters` (filters to
//! tantivy queries), `collector` (the sorted top-k and id collectors).
//!
//! # Sort and `search_after`
//!
//! Every sort key becomes an order-preserving `u128` per document, read from
//! the fast fields: numbers through tantivy's monotonic `u64` mapping, strings
//! through the segment's term ordinal (`2·ord + 1`), inverted for descending
//! keys, and `u128::MAX` for a missing value (so missing sorts last either
//! way). The cursor position is turned into the same encoding once per
//! segment (a string not in the segment's dictionary gets the even number
//! between its neighbours), so "strictly after the cursor" is a comparison of
//! small arrays. One pass over the matching documents keeps a heap of the
//! best `first`; a deep page costs what page 1 costs, with no skipping. The
//! per-segment winners are then merged by their real values.
//!
//! # Versions and tombstones
//!
//! Deletes leave an in-memory tombstone (`id → version`) per index so that a
//! stale upsert arriving after a delete is skipped. Tombstones are not
//! persisted and the oldest are forgotten past [`MAX_TOMBSTONES`] per index:
//! after a restart, or for very old deletes, a stale upsert can resurrect a
//! document until the next sync pass deletes it again. In-order replay from
//! the stored checkpoint is not affected (the replayed delete recreates its
//! tombstone before any later upsert of the same id).

mod collector;
mod filters;
mod layout;
mod matches;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::tantivy::index::SegmentId;
use ::tantivy::query::AllQuery;
use ::tantivy::schema::{IndexRecordOption, Value as _};
use ::tantivy::{
    DocAddress, DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, SegmentOrdinal,
    SegmentReader, TantivyDocument, Term, TERMINATED,
};
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use self::collector::{AllIds, ColumnKind, SortColumn, SortVal, SummaryCache, TopSorted};
use self::layout::{Layout, Prepared, Terms};
use self::matches::{MatchCache, Matches};
use super::query::{coerce, Document, Filter, Hit, Page, SearchQuery, SearchResult, SortPosition};
use super::spec::{FieldKind, IndexSpec, Scalar, ID_FIELD};
use super::{Rejected, SearchBackend, SearchError, WriteOp, WriteOutcome};

/// Deletes remembered per index to refuse stale upserts (see the module
/// docs); about 100 bytes each.
pub const MAX_TOMBSTONES: usize = 100_000;
/// The indexing arena of each index's single writer thread. One thread: the
/// gateway shares its cores with request handling.
const WRITER_MEMORY_BYTES: usize = 128_000_000;
const ALIASES_FILE: &str = "aliases.json";
const SPEC_FILE: &str = "tessera-spec.json";
const ID_COLUMN: &str = "id";
const VERSION_COLUMN: &str = "_version";
const SOURCE_COLUMN: &str = "_source";

/// The embedded tantivy backend. Cheap to clone (shares its indexes).
#[derive(Clone)]
pub struct TantivyBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` for [`TantivyBackend::in_memory`].
    root: Option<PathBuf>,
    catalog: RwLock<Catalog>,
    /// Serializes create/drop/alias changes so their name checks and file
    /// writes cannot interleave; searches and writes never take it.
    admin: Mutex<()>,
}

#[derive(Default)]
struct Catalog {
    indexes: HashMap<String, Arc<Handle>>,
    aliases: BTreeMap<String, String>,
}

/// One open physical index.
struct Handle {
    physical: String,
    spec: IndexSpec,
    layout: Layout,
    index: Index,
    reader: IndexReader,
    writer: Mutex<WriterState>,
    /// Copied out of the commit payload so readers need not wait for the
    /// writer lock, which is held for whole commits.
    checkpoint: RwLock<Option<String>>,
    /// Block bounds of sort columns, for pages that skip.
    summaries: Arc<SummaryCache>,
    /// Filter clauses' matches per segment.
    matches: Arc<MatchCache>,
}

/// The smallest and largest id of a segment (`None`: it holds no ids).
type IdRange = Option<(Vec<u8>, Vec<u8>)>;

struct WriterState {
    /// `None` once the index is dropped.
    writer: Option<IndexWriter>,
    tombstones: Tombstones,
    /// The smallest and largest id of each segment (`None`: no ids), so a
    /// write looks an id up only in the segments whose range holds it: a
    /// backfill writes ids in order, past every segment's range.
    id_ranges: HashMap<SegmentId, IdRange>,
}

/// What the commit payload holds (tantivy stores it in `meta.json`,
/// atomically with the commit's documents).
#[derive(Serialize, Deserialize, Default)]
struct CommitPayload {
    checkpoint: Option<String>,
}

/// The smallest and largest id in `segment` (deleted documents included),
/// from its id column's sorted dictionary.
fn id_range(segment: &SegmentReader) -> ::tantivy::Result<IdRange> {
    let Some(column) = segment.fast_fields().str(ID_COLUMN)? else {
        return Ok(None);
    };
    let dictionary = column.dictionary();
    let Some(last) = dictionary.num_terms().checked_sub(1) else {
        return Ok(None);
    };
    let (mut min, mut max) = (Vec::new(), Vec::new());
    if !dictionary.ord_to_term(0, &mut min)? || !dictionary.ord_to_term(last as u64, &mut max)? {
        // Unreadable bounds: every id may be there (no UTF-8 byte is 0xFF).
        return Ok(Some((Vec::new(), vec![u8::MAX])));
    }
    Ok(Some((min, max)))
}

fn backend_error(index: &str, e: impl Display) -> SearchError {
    SearchError::Backend {
        index: index.to_owned(),
        message: e.to_string(),
    }
}

async fn blocking<T: Send + 'static>(
    index: &str,
    f: impl FnOnce() -> Result<T, SearchError> + Send + 'static,
) -> Result<T, SearchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| backend_error(index, format!("search worker failed: {e}")))?
}

impl TantivyBackend {
    /// Opens (creating if needed) the indexes under `dir`: every
    /// subdirectory holding an index, and `dir/aliases.json`. Blocking: call
    /// it at startup or inside `spawn_blocking`.
    pub fn open(dir: &Path) -> Result<Self, SearchError> {
        let root_name = dir.display().to_string();
        let fail = |e: std::io::Error| backend_error(&root_name, e);
        std::fs::create_dir_all(dir).map_err(fail)?;
        let mut catalog = Catalog::default();
        for entry in std::fs::read_dir(dir).map_err(fail)? {
            let path = entry.map_err(fail)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if !path.join(SPEC_FILE).is_file() {
                continue;
            }
            if !path.join("meta.json").is_file() {
                // A create that stopped between writing the spec and the
                // index: nothing was ever written to it.
                tracing::warn!(index = %name, "skipping an index directory without meta.json");
                continue;
            }
            let spec_text = std::fs::read(path.join(SPEC_FILE)).map_err(|e| backend_error(&name, e))?;
            let spec: IndexSpec = serde_json::from_slice(&spec_text)
                .map_err(|e| backend_error(&name, format!("{SPEC_FILE}: {e}")))?;
            let index = Index::open_in_dir(&path).map_err(|e| backend_error(&name, e))?;
            let handle = Handle::open(name.clone(), spec, index)?;
            catalog.indexes.insert(name, Arc::new(handle));
        }
        let aliases_path = dir.join(ALIASES_FILE);
        if aliases_path.is_file() {
            let text = std::fs::read(&aliases_path).map_err(fail)?;
            catalog.aliases = serde_json::from_slice(&text)
                .map_err(|e| backend_error(&root_name, format!("{ALIASES_FILE}: {e}")))?;
        }
        Ok(TantivyBackend {
            inner: Arc::new(Inner {
                root: Some(dir.to_owned()),
                catalog: RwLock::new(catalog),
                admin: Mutex::new(()),
            }),
        })
    }

    /// A backend whose indexes and aliases live in RAM only (tests).
    pub fn in_memory() -> Self {
        TantivyBackend {
            inner: Arc::new(Inner {
                root: None,
                catalog: RwLock::new(Catalog::default()),
                admin: Mutex::new(()),
            }),
        }
    }

    fn handle(&self, name: &str) -> Result<Arc<Handle>, SearchError> {
        let catalog = self.inner.catalog.read();
        let physical = catalog.aliases.get(name).map_or(name, String::as_str);
        catalog
            .indexes
            .get(physical)
            .cloned()
            .ok_or_else(|| SearchError::UnknownIndex {
                index: name.to_owned(),
            })
    }
}

fn check_name(name: &str) -> Result<(), SearchError> {
    let reason = if name.is_empty() || name.len() > 100 {
        Some("must be 1 to 100 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        // Names become directory names: no dots, slashes or spaces.
        Some("may only hold ASCII letters, digits, `_` and `-`")
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

/// Writes `bytes` to `path` so that readers see the old or the new content,
/// never a torn file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Inner {
    fn create_index(&self, spec: IndexSpec, physical: String) -> Result<(), SearchError> {
        check_name(&physical)?;
        spec.validate()?;
        let _admin = self.admin.lock();
        {
            let catalog = self.catalog.read();
            if catalog.indexes.contains_key(&physical) || catalog.aliases.contains_key(&physical) {
                return Err(SearchError::AlreadyExists { name: physical });
            }
        }
        let (schema, _) = Layout::build(&spec, Terms::Needed);
        let fail = |e: &dyn Display| backend_error(&physical, e);
        let index = match &self.root {
            None => Index::create_in_ram(schema),
            Some(root) => {
                let dir = root.join(&physical);
                if dir.exists() {
                    return Err(SearchError::AlreadyExists { name: physical });
                }
                std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
                let spec_json = serde_json::to_vec_pretty(&spec).map_err(|e| fail(&e))?;
                write_atomically(&dir.join(SPEC_FILE), &spec_json).map_err(|e| fail(&e))?;
                Index::create_in_dir(&dir, schema).map_err(|e| fail(&e))?
            }
        };
        let handle = Handle::open(physical.clone(), spec, index)?;
        self.catalog.write().indexes.insert(physical, Arc::new(handle));
        Ok(())
    }

    fn drop_index(&self, physical: &str) -> Result<(), SearchError> {
        let _admin = self.admin.lock();
        let handle = {
            let mut catalog = self.catalog.write();
            if let Some((alias, _)) = catalog.aliases.iter().find(|(_, target)| *target == physical) {
                return Err(SearchError::IndexInUse {
                    index: physical.to_owned(),
                    alias: alias.clone(),
                });
            }
            catalog
                .indexes
                .remove(physical)
                .ok_or_else(|| SearchError::UnknownIndex {
                    index: physical.to_owned(),
                })?
        };
        // Stop the writer (and its merge threads) before removing its files;
        // searches still holding the handle keep their open segments.
        let writer = handle.writer.lock().writer.take();
        if let Some(writer) = writer {
            writer
                .wait_merging_threads()
                .map_err(|e| backend_error(physical, e))?;
        }
        if let Some(root) = &self.root {
            std::fs::remove_dir_all(root.join(physical)).map_err(|e| backend_error(physical, e))?;
        }
        Ok(())
    }

    fn point_alias(&self, alias: &str, physical: &str) -> Result<Option<String>, SearchError> {
        check_name(alias)?;
        let _admin = self.admin.lock();
        let mut aliases = {
            let catalog = self.catalog.read();
            if catalog.indexes.contains_key(alias) {
                return Err(SearchError::AlreadyExists {
                    name: alias.to_owned(),
                });
            }
            if !catalog.indexes.contains_key(physical) {
                return Err(SearchError::UnknownIndex {
                    index: physical.to_owned(),
                });
            }
            catalog.aliases.clone()
        };
        let previous = aliases.insert(alias.to_owned(), physical.to_owned());
        if let Some(root) = &self.root {
            let json = serde_json::to_vec_pretty(&aliases).map_err(|e| backend_error(alias, e))?;
            write_atomically(&root.join(ALIASES_FILE), &json).map_err(|e| backend_error(alias, e))?;
        }
        // The file is in place before anyone can resolve the new target, so
        // a crash never leaves searches on an index the file does not name.
        self.catalog.write().aliases = aliases;
        Ok(previous)
    }
}

// ---------------------------------------------------------------------------
// Writes

/// What the index knows about an id, for the version rules.
#[derive(Debug, Clone, Copy)]
enum Known {
    Live(i64),
    Deleted(i64),
    Absent,
}

/// Recent deletes per index: `id → (version, sequence)`, forgetting the
/// oldest past [`MAX_TOMBSTONES`].
#[derive(Default)]
struct Tombstones {
    versions: HashMap<String, (i64, u64)>,
    order: VecDeque<(u64, String)>,
    next: u64,
}

impl Tombstones {
    fn get(&self, id: &str) -> Option<i64> {
        self.versions.get(id).map(|(v, _)| *v)
    }

    fn insert(&mut self, id: String, version: i64) {
        let seq = self.next;
        self.next += 1;
        self.versions.insert(id.clone(), (version, seq));
        self.order.push_back((seq, id));
        while self.versions.len() > MAX_TOMBSTONES {
            let Some((seq, id)) = self.order.pop_front() else {
                break;
            };
            if self.versions.get(&id).map(|(_, s)| *s) == Some(seq) {
                self.versions.remove(&id);
            }
        }
        // Re-deleted and resurrected ids leave stale queue entries; compact
        // when they dominate so the queue stays proportional to the map.
        if self.order.len() > 2 * self.versions.len().max(1024) {
            let versions = &self.versions;
            self.order
                .retain(|(seq, id)| versions.get(id).map(|(_, s)| s) == Some(seq));
        }
    }

    fn remove(&mut self, id: &str) {
        self.versions.remove(id);
    }
}

impl Handle {
    fn open(physical: String, spec: IndexSpec, mut index: Index) -> Result<Handle, SearchError> {
        let fail = |e: &dyn Display| backend_error(&physical, e);
        // Segments are searched in parallel (one page scans every match of
        // every segment), on up to four threads shared by all searches.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        if threads > 1 {
            index.set_multithread_executor(threads).map_err(|e| fail(&e))?;
        }
        // Indexes built before column-only numbers keep their layout until
        // a reindex; queries read whichever the files have.
        let layout = [Terms::Needed, Terms::Every]
            .into_iter()
            .map(|terms| Layout::build(&spec, terms))
            .find(|(schema, _)| index.schema() == *schema)
            .map(|(_, layout)| layout)
            .ok_or_else(|| fail(&"the index files do not match its spec; rebuild the index"))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| fail(&e))?;
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .map_err(|e| fail(&e))?;
        let payload = index.load_metas().map_err(|e| fail(&e))?.payload;
        let checkpoint = match payload {
            None => None,
            Some(p) => {
                serde_json::from_str::<CommitPayload>(&p)
                    .map_err(|e| fail(&format!("commit payload: {e}")))?
                    .checkpoint
            }
        };
        Ok(Handle {
            physical,
            spec,
            layout,
            index,
            reader,
            writer: Mutex::new(WriterState {
                writer: Some(writer),
                tombstones: Tombstones::default(),
                id_ranges: HashMap::new(),
            }),
            checkpoint: RwLock::new(checkpoint),
            summaries: Arc::default(),
            matches: Arc::default(),
        })
    }

    fn fail(&self, e: impl Display) -> SearchError {
        backend_error(&self.physical, e)
    }

    #[tracing::instrument(skip_all, level = "trace", fields(index = %self.physical, ops = ops.len()))]
    fn write(&self, ops: Vec<WriteOp>, checkpoint: Option<String>) -> Result<WriteOutcome, SearchError> {
        // Check every document before touching the writer: one that does
        // not fit the spec is rejected alone, the others are written.
        let mut outcome = WriteOutcome::default();
        let mut prepared = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                WriteOp::Upsert(doc) => match self.layout.document(&self.spec, &self.physical, doc) {
                    Ok(p) => prepared.push(p),
                    Err(SearchError::InvalidDocument { id, reason, .. }) => {
                        outcome.rejected.push(Rejected { id, reason })
                    }
                    Err(e) => return Err(e),
                },
                WriteOp::Delete { id, version } => prepared.push(Prepared::Delete { id, version }),
            }
        }

        let mut state = self.writer.lock();
        let WriterState {
            writer,
            tombstones,
            id_ranges,
        } = &mut *state;
        let writer = writer
            .as_mut()
            .ok_or_else(|| self.fail("the index was dropped"))?;
        // Every commit reloads the reader before the lock is released, so
        // this snapshot holds every committed version.
        let searcher = self.reader.searcher();
        let ranges = self.id_ranges(&searcher, id_ranges)?;
        let mut batch: HashMap<String, Known> = HashMap::new();
        let applied = || -> Result<(), SearchError> {
            for op in prepared {
                match op {
                    Prepared::Upsert { id, version, doc } => {
                        let known = self.known(&searcher, &ranges, tombstones, &batch, &id)?;
                        let newer = match known {
                            Known::Live(v) => version >= v,
                            Known::Deleted(v) => version > v,
                            Known::Absent => true,
                        };
                        if !newer {
                            outcome.skipped += 1;
                            continue;
                        }
                        // Delete-then-add in one writer: the delete's opstamp
                        // precedes the add's, so only the old copy goes.
                        // Only a live copy needs it: every write commits
                        // under this lock, so none is pending elsewhere, and
                        // tantivy applies each delete term to every segment.
                        if let Known::Live(_) = known {
                            writer.delete_term(Term::from_field_text(self.layout.id, &id));
                        }
                        writer.add_document(doc).map_err(|e| self.fail(e))?;
                        batch.insert(id, Known::Live(version));
                        outcome.written += 1;
                    }
                    Prepared::Delete { id, version } => {
                        match self.known(&searcher, &ranges, tombstones, &batch, &id)? {
                            Known::Live(v) if v <= version => {
                                writer.delete_term(Term::from_field_text(self.layout.id, &id));
                                outcome.deleted += 1;
                            }
                            Known::Live(_) => {
                                outcome.skipped += 1;
                                continue;
                            }
                            Known::Deleted(v) if v >= version => {
                                outcome.skipped += 1;
                                continue;
                            }
                            Known::Deleted(_) | Known::Absent => outcome.skipped += 1,
                        }
                        batch.insert(id, Known::Deleted(version));
                    }
                }
            }
            if outcome.written + outcome.deleted == 0 && checkpoint.is_none() {
                return Ok(());
            }
            let payload = CommitPayload {
                checkpoint: checkpoint.clone().or_else(|| self.checkpoint.read().clone()),
            };
            let payload = serde_json::to_string(&payload).map_err(|e| self.fail(e))?;
            let mut commit = writer.prepare_commit().map_err(|e| self.fail(e))?;
            commit.set_payload(&payload);
            commit.commit().map_err(|e| self.fail(e))?;
            Ok(())
        };
        if let Err(e) = applied() {
            // Drop whatever this batch added so the next batch starts clean.
            if let Err(rollback) = writer.rollback() {
                tracing::error!(index = %self.physical, error = %rollback, "rollback after a failed write failed");
            }
            return Err(e);
        }
        // The batch is committed: only now do its deletes become tombstones.
        for (id, known) in batch {
            match known {
                Known::Deleted(v) => tombstones.insert(id, v),
                Known::Live(_) => tombstones.remove(&id),
                Known::Absent => {}
            }
        }
        if checkpoint.is_some() {
            *self.checkpoint.write() = checkpoint;
        }
        self.reader.reload().map_err(|e| self.fail(e))?;
        Ok(outcome)
    }

    /// Each segment's id range (by segment ordinal), from `cache` or its
    /// id column's dictionary; `cache` keeps only the current segments.
    fn id_ranges(
        &self,
        searcher: &Searcher,
        cache: &mut HashMap<SegmentId, IdRange>,
    ) -> Result<Vec<IdRange>, SearchError> {
        let segments = searcher.segment_readers();
        cache.retain(|id, _| segments.iter().any(|s| s.segment_id() == *id));
        segments
            .iter()
            .map(|segment| {
                if let Some(range) = cache.get(&segment.segment_id()) {
                    return Ok(range.clone());
                }
                let range = id_range(segment).map_err(|e| self.fail(e))?;
                cache.insert(segment.segment_id(), range.clone());
                Ok(range)
            })
            .collect()
    }

    fn known(
        &self,
        searcher: &Searcher,
        ranges: &[IdRange],
        tombstones: &Tombstones,
        batch: &HashMap<String, Known>,
        id: &str,
    ) -> Result<Known, SearchError> {
        if let Some(known) = batch.get(id) {
            return Ok(*known);
        }
        let may_hold = |ord: usize| match ranges.get(ord) {
            Some(Some((min, max))) => (min.as_slice()..=max.as_slice()).contains(&id.as_bytes()),
            Some(None) => false,
            None => true,
        };
        if let Some((segment, doc)) = self.find(searcher, id, may_hold)? {
            let version = searcher
                .segment_reader(segment)
                .fast_fields()
                .column_opt::<i64>(VERSION_COLUMN)
                .map_err(|e| self.fail(e))?
                .and_then(|c| c.first(doc))
                .ok_or_else(|| self.fail(format!("document `{id}` has no _version")))?;
            return Ok(Known::Live(version));
        }
        Ok(tombstones.get(id).map_or(Known::Absent, Known::Deleted))
    }

    /// The live document with this id, by its postings (no scoring, no
    /// collector: this runs once per written document), in the segments
    /// `may_hold` names by ordinal.
    fn find(
        &self,
        searcher: &Searcher,
        id: &str,
        may_hold: impl Fn(usize) -> bool,
    ) -> Result<Option<(SegmentOrdinal, DocId)>, SearchError> {
        let term = Term::from_field_text(self.layout.id, id);
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            if !may_hold(ord) {
                continue;
            }
            let inverted = segment.inverted_index(self.layout.id).map_err(|e| self.fail(e))?;
            let Some(mut postings) = inverted
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(|e| self.fail(e))?
            else {
                continue;
            };
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if !segment.is_deleted(doc) {
                    let ord = SegmentOrdinal::try_from(ord).map_err(|e| self.fail(e))?;
                    return Ok(Some((ord, doc)));
                }
                doc = postings.advance();
            }
        }
        Ok(None)
    }

    fn source(&self, searcher: &Searcher, addr: DocAddress) -> Result<Document, SearchError> {
        let doc: TantivyDocument = searcher.doc(addr).map_err(|e| self.fail(e))?;
        let bytes = doc
            .get_first(self.layout.source)
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| self.fail("a document has no stored source"))?;
        serde_json::from_slice(bytes).map_err(|e| self.fail(format!("stored source: {e}")))
    }

    fn get(&self, ids: &[String]) -> Result<Vec<Option<Document>>, SearchError> {
        let searcher = self.reader.searcher();
        ids.iter()
            .map(|id| {
                self.find(&searcher, id, |_| true)?
                    .map(|(segment, doc)| self.source(&searcher, DocAddress::new(segment, doc)))
                    .transpose()
            })
            .collect()
    }

    // -----------------------------------------------------------------------
    // Queries

    #[tracing::instrument(skip_all, level = "trace", fields(index = %self.physical))]
    fn search(&self, query: &SearchQuery) -> Result<SearchResult, SearchError> {
        query.validate(&self.spec)?;
        let clauses = query
            .filters
            .iter()
            .map(|f| Ok((f, self.filter(f)?)))
            .collect::<Result<Vec<_>, SearchError>>()?;
        let mut keys = Vec::with_capacity(query.sort.len() + 1);
        for key in &query.sort {
            let layout = self.layout.field(&key.field)?;
            let (_, column) = self.layout.exact(&key.field)?;
            keys.push(SortColumn {
                column: column.to_owned(),
                kind: ColumnKind::of(layout.spec.kind),
                descending: key.descending,
            });
        }
        if !query.sort.iter().any(|k| k.field == ID_FIELD) {
            keys.push(SortColumn {
                column: ID_COLUMN.to_owned(),
                kind: ColumnKind::Str,
                descending: false,
            });
        }
        let (k, skip, after) = match &query.page {
            Page::After { first, after } => (*first, 0, after.as_ref()),
            Page::Offset { offset, limit } => (offset.saturating_add(*limit), *offset, None),
        };
        let after = after.map(|pos| self.position_values(query, pos)).transpose()?;
        let searcher = self.reader.searcher();
        let matches =
            Matches::new(&searcher, clauses, Arc::clone(&self.matches)).map_err(|e| self.fail(e))?;
        let collector = TopSorted::new(keys, after, k, matches, Some(Arc::clone(&self.summaries)));
        // The collector reads matches from the filters' cached bitsets.
        let (total, top) = searcher
            .search(&AllQuery, &collector)
            .and_then(|fruit| fruit)
            .map_err(|e| self.fail(e))?;
        let hits = top
            .into_iter()
            .skip(skip)
            .map(|c| {
                let document = self.source(&searcher, c.addr)?;
                let values = c
                    .values
                    .into_iter()
                    .take(query.sort.len())
                    .map(SortVal::into_field_value)
                    .collect();
                Ok(Hit {
                    id: c.id.clone(),
                    position: SortPosition { values, id: c.id },
                    document,
                })
            })
            .collect::<Result<_, SearchError>>()?;
        Ok(SearchResult {
            total: query.count.then_some(total),
            hits,
        })
    }

    /// The cursor position as comparable values, one per applied sort key.
    fn position_values(&self, query: &SearchQuery, pos: &SortPosition) -> Result<Vec<SortVal>, SearchError> {
        let mut values = Vec::with_capacity(query.sort.len() + 1);
        for (key, value) in query.sort.iter().zip(&pos.values) {
            let spec = &self.layout.field(&key.field)?.spec;
            values.push(match coerce(spec, value, "a sort position")? {
                None => SortVal::Missing,
                Some(Scalar::Str(s)) => SortVal::Str(s),
                Some(Scalar::I64(i)) => SortVal::I64(i),
                Some(Scalar::F64(f)) => SortVal::F64(f),
                Some(Scalar::Bool(b)) => SortVal::Bool(b),
            });
        }
        if !query.sort.iter().any(|k| k.field == ID_FIELD) {
            values.push(SortVal::Str(pos.id.clone()));
        }
        Ok(values)
    }

    fn ids_where(&self, filter: &Filter) -> Result<Vec<String>, SearchError> {
        let check = SearchQuery {
            filters: vec![filter.clone()],
            sort: Vec::new(),
            page: Page::After {
                first: 0,
                after: None,
            },
            count: true,
        };
        check.validate(&self.spec)?;
        let query = self.filters(&check.filters)?;
        let searcher = self.reader.searcher();
        searcher
            .search(query.as_ref(), &AllIds)
            .and_then(|fruit| fruit)
            .map_err(|e| self.fail(e))
    }

    /// The distinct terms of a keyword field, from each segment's column
    /// dictionary (terms of deleted documents linger until segments merge).
    fn terms(&self, field: &str) -> Result<Vec<String>, SearchError> {
        let layout = self.layout.field(field)?;
        if layout.spec.kind != FieldKind::Keyword {
            return Err(SearchError::InvalidQuery {
                reason: format!(
                    "field `{field}` is {}: only keyword fields have terms",
                    layout.spec.kind
                ),
            });
        }
        // The column's dictionary: every keyword has one, a term index
        // only if it is filtered on.
        let (_, column) = self.layout.exact(field)?;
        let searcher = self.reader.searcher();
        let mut out = std::collections::BTreeSet::new();
        for segment in searcher.segment_readers() {
            let Some(values) = segment.fast_fields().str(column).map_err(|e| self.fail(e))? else {
                continue;
            };
            let mut stream = values.dictionary().stream().map_err(|e| self.fail(e))?;
            while stream.advance() {
                if let Ok(term) = std::str::from_utf8(stream.key()) {
                    out.insert(term.to_owned());
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

// ---------------------------------------------------------------------------
// The trait

impl SearchBackend for TantivyBackend {
    fn create_index<'a>(
        &'a self,
        spec: &'a IndexSpec,
        physical: &'a str,
    ) -> BoxFuture<'a, Result<(), SearchError>> {
        let inner = self.inner.clone();
        let (spec, name) = (spec.clone(), physical.to_owned());
        Box::pin(blocking(physical, move || inner.create_index(spec, name)))
    }

    fn drop_index<'a>(&'a self, physical: &'a str) -> BoxFuture<'a, Result<(), SearchError>> {
        let inner = self.inner.clone();
        let name = physical.to_owned();
        Box::pin(blocking(physical, move || inner.drop_index(&name)))
    }

    fn point_alias<'a>(
        &'a self,
        alias: &'a str,
        physical: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SearchError>> {
        let inner = self.inner.clone();
        let (a, p) = (alias.to_owned(), physical.to_owned());
        Box::pin(blocking(alias, move || inner.point_alias(&a, &p)))
    }

    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, SearchError>> {
        let result = self.handle(name).map(|h| h.physical.clone());
        Box::pin(async move { result })
    }

    fn spec<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<IndexSpec, SearchError>> {
        let result = self.handle(index).map(|h| h.spec.clone());
        Box::pin(async move { result })
    }

    fn write<'a>(
        &'a self,
        index: &'a str,
        ops: Vec<WriteOp>,
        checkpoint: Option<String>,
    ) -> BoxFuture<'a, Result<WriteOutcome, SearchError>> {
        Box::pin(async move {
            let handle = self.handle(index)?;
            blocking(index, move || handle.write(ops, checkpoint)).await
        })
    }

    fn checkpoint<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<Option<String>, SearchError>> {
        let result = self.handle(index).map(|h| h.checkpoint.read().clone());
        Box::pin(async move { result })
    }

    fn search<'a>(
        &'a self,
        index: &'a str,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchResult, SearchError>> {
        Box::pin(async move {
            let handle = self.handle(index)?;
            let query = query.clone();
            blocking(index, move || handle.search(&query)).await
        })
    }

    fn get<'a>(
        &'a self,
        index: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Document>>, SearchError>> {
        Box::pin(async move {
            let handle = self.handle(index)?;
            let ids = ids.to_vec();
            blocking(index, move || handle.get(&ids)).await
        })
    }

    fn count<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<u64, SearchError>> {
        let result = self.handle(index).map(|h| h.reader.searcher().num_docs());
        Box::pin(async move { result })
    }

    fn ids_where<'a>(
        &'a self,
        index: &'a str,
        filter: &'a Filter,
    ) -> BoxFuture<'a, Result<Vec<String>, SearchError>> {
        Box::pin(async move {
            let handle = self.handle(index)?;
            let filter = filter.clone();
            blocking(index, move || handle.ids_where(&filter)).await
        })
    }

    fn catalog(&self) -> BoxFuture<'_, Result<super::Catalog, SearchError>> {
        Box::pin(async move {
            let catalog = self.inner.catalog.read();
            let mut indexes: Vec<String> = catalog.indexes.keys().cloned().collect();
            indexes.sort();
            Ok(super::Catalog {
                indexes,
                aliases: catalog
                    .aliases
                    .iter()
                    .map(|(a, p)| (a.clone(), p.clone()))
                    .collect(),
            })
        })
    }

    fn terms<'a>(
        &'a self,
        index: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, SearchError>> {
        Box::pin(async move {
            let handle = self.handle(index)?;
            let field = field.to_owned();
            blocking(index, move || handle.terms(&field)).await
        })
    }
}
