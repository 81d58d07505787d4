//! Integrated lists: the search index behind list fields that filter, sort
//! and paginate across data owned by several services (DESIGN.md,
//! "Integrated lists").
//!
//! Documents are denormalized JSON objects, one per entity, described by an
//! [`IndexSpec`]. Callers build a backend-neutral [`SearchQuery`] and talk to
//! a [`SearchBackend`]; [`TantivyBackend`] is the embedded implementation.
//! Cursors handed to clients are sealed by [`CursorCodec`].
//!
//! This module owns the index contract: document versions (stale writes are
//! skipped), the total sort order (`id` is the final tiebreaker), cursor
//! pagination that costs the same at any depth, physical indexes behind
//! aliases for blue/green rebuilds, and a sync checkpoint stored atomically
//! with each commit. It must not know GraphQL or subgraphs: turning field
//! arguments into a `SearchQuery` and hydrating hits belongs to the planner
//! and executor, keeping documents in sync to `sync/`. No backend type
//! (tantivy's or OpenSearch's) may appear outside its own module
//! (`tantivy.rs` with its `tantivy/` files).

#[cfg(test)]
pub(crate) mod conformance;
pub mod cursor;
pub mod opensearch;
pub mod query;
pub mod spec;
pub mod tantivy;
#[cfg(test)]
pub(crate) mod testkit;

use std::collections::BTreeMap;

use futures::future::BoxFuture;

pub use self::opensearch::{OpenSearchBackend, OpenSearchOptions};
pub use self::tantivy::TantivyBackend;
pub use cursor::{CursorCodec, CursorError};
pub use query::{
    Document, FieldValue, Filter, Hit, Page, SearchQuery, SearchResult, SortKey, SortPosition,
    MAX_OFFSET_WINDOW,
};
pub use spec::{FieldKind, FieldSpec, IndexSpec, ID_FIELD, TYPE_FIELD, VERSION_FIELD};

/// Why a search or index operation failed. `Clone`, so it can be cached or
/// shared by a loader; see [`SearchError::is_client_error`] for what may be
/// shown to clients.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    #[error("unknown search index `{index}`")]
    UnknownIndex { index: String },
    #[error("index `{index}` has no field `{field}`; its fields are: {known}")]
    UnknownField {
        index: String,
        field: String,
        known: String,
    },
    #[error("field `{field}` of index `{index}` cannot be filtered on; filterable fields: {allowed}")]
    NotFilterable {
        index: String,
        field: String,
        allowed: String,
    },
    #[error("field `{field}` of index `{index}` cannot be sorted on; sortable fields: {allowed}")]
    NotSortable {
        index: String,
        field: String,
        allowed: String,
    },
    #[error("field `{field}` of index `{index}` is not full-text searchable; searchable fields: {allowed}")]
    NotSearchable {
        index: String,
        field: String,
        allowed: String,
    },
    #[error("field `{field}` is {kind}: {usage} needs {expected}, got {got}")]
    WrongType {
        field: String,
        kind: FieldKind,
        usage: String,
        expected: String,
        got: String,
    },
    #[error("a {filter} filter cannot be used on field `{field}` ({kind}); it works on {allowed}")]
    UnsupportedFilter {
        field: String,
        kind: FieldKind,
        filter: String,
        allowed: String,
    },
    #[error("invalid search query: {reason}")]
    InvalidQuery { reason: String },
    #[error(
        "result window too large: asked for {asked} results, at most {max} can be paged by offset; \
         page with cursors (`after`) instead"
    )]
    WindowTooLarge { max: usize, asked: usize },
    #[error("the cursor position does not fit the query: {reason}")]
    BadPosition { reason: String },
    #[error("invalid spec for index `{index}`: {reason}")]
    InvalidSpec { index: String, reason: String },
    #[error("document `{id}` cannot be indexed in `{index}`: {reason}")]
    InvalidDocument {
        index: String,
        id: String,
        reason: String,
    },
    #[error("invalid index or alias name `{name}`: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("`{name}` already exists as an index or alias")]
    AlreadyExists { name: String },
    #[error("index `{index}` cannot be dropped: alias `{alias}` points to it")]
    IndexInUse { index: String, alias: String },
    #[error("search backend failure on `{index}`: {message}")]
    Backend { index: String, message: String },
    /// The backend cannot be reached or did not answer in time; searches
    /// work again once it is back.
    #[error("the search backend is unavailable: {message}")]
    Unavailable { message: String },
}

impl SearchError {
    /// Whether the index failed as a whole rather than refused what was
    /// asked: it could not be reached, did not answer in time, or answered
    /// with an error of its own (an error status, an I/O error). The same
    /// request can succeed later. A document it refuses is not an error
    /// ([`WriteOutcome::rejected`]).
    pub fn is_transient(&self) -> bool {
        match self {
            SearchError::Unavailable { .. } | SearchError::Backend { .. } => true,
            SearchError::UnknownIndex { .. }
            | SearchError::UnknownField { .. }
            | SearchError::NotFilterable { .. }
            | SearchError::NotSortable { .. }
            | SearchError::NotSearchable { .. }
            | SearchError::WrongType { .. }
            | SearchError::UnsupportedFilter { .. }
            | SearchError::InvalidQuery { .. }
            | SearchError::WindowTooLarge { .. }
            | SearchError::BadPosition { .. }
            | SearchError::InvalidSpec { .. }
            | SearchError::InvalidDocument { .. }
            | SearchError::InvalidName { .. }
            | SearchError::AlreadyExists { .. }
            | SearchError::IndexInUse { .. } => false,
        }
    }

    /// Whether the client's query caused this (and the message may be shown
    /// to it) rather than the index or the gateway.
    pub fn is_client_error(&self) -> bool {
        match self {
            SearchError::UnknownField { .. }
            | SearchError::NotFilterable { .. }
            | SearchError::NotSortable { .. }
            | SearchError::NotSearchable { .. }
            | SearchError::WrongType { .. }
            | SearchError::UnsupportedFilter { .. }
            | SearchError::InvalidQuery { .. }
            | SearchError::WindowTooLarge { .. }
            | SearchError::BadPosition { .. } => true,
            SearchError::UnknownIndex { .. }
            | SearchError::InvalidSpec { .. }
            | SearchError::InvalidDocument { .. }
            | SearchError::InvalidName { .. }
            | SearchError::AlreadyExists { .. }
            | SearchError::IndexInUse { .. }
            | SearchError::Backend { .. }
            | SearchError::Unavailable { .. } => false,
        }
    }
}

/// The physical indexes of a backend and where its aliases point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Physical index names, sorted.
    pub indexes: Vec<String>,
    /// Alias → the physical index it points to.
    pub aliases: BTreeMap<String, String>,
}

/// One change to an index.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Insert or replace the document with the document's `id`, unless the
    /// index already holds a higher `_version` of it or it was deleted at
    /// its `_version` or later. An equal version is rewritten, so dependency
    /// rebuilds (a manager renamed) can refresh denormalized fields without
    /// bumping the entity's own version.
    Upsert(Document),
    /// Remove `id` if the indexed document's `_version` is at most
    /// `version`, and refuse later upserts up to that version.
    Delete { id: String, version: i64 },
}

/// What a write did. Every op is counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Documents added or replaced.
    pub written: usize,
    /// Documents removed.
    pub deleted: usize,
    /// Ops that changed no document: stale versions, and deletes of ids that
    /// were not indexed (which still record the delete's version).
    pub skipped: usize,
    /// Documents the index refused (they do not fit its mappings); the
    /// rest of the batch was written.
    pub rejected: Vec<Rejected>,
}

/// A document an index refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub id: String,
    pub reason: String,
}

/// A search index store. Every method taking `index` accepts an alias or a
/// physical index name. Writes are durable and visible to searches when
/// their future resolves ("read your writes").
///
/// Object-safe, for `Arc<dyn SearchBackend>`: methods return boxed futures,
/// like `exec::Fetcher`.
pub trait SearchBackend: Send + Sync {
    /// Creates an empty physical index from `spec`.
    fn create_index<'a>(
        &'a self,
        spec: &'a IndexSpec,
        physical: &'a str,
    ) -> BoxFuture<'a, Result<(), SearchError>>;

    /// Deletes a physical index no alias points to.
    fn drop_index<'a>(&'a self, physical: &'a str) -> BoxFuture<'a, Result<(), SearchError>>;

    /// Points `alias` at `physical` in one step (searches see either the old
    /// or the new index, never neither); returns the index it pointed to.
    fn point_alias<'a>(
        &'a self,
        alias: &'a str,
        physical: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SearchError>>;

    /// The physical index `name` (an alias or physical name) stands for.
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, SearchError>>;

    /// The spec the index was created from.
    fn spec<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<IndexSpec, SearchError>>;

    /// Applies `ops` in order and commits them together with `checkpoint`
    /// (kept as is when `None`). A document that does not fit the index is
    /// rejected alone (see [`WriteOutcome::rejected`]); the others are written.
    fn write<'a>(
        &'a self,
        index: &'a str,
        ops: Vec<WriteOp>,
        checkpoint: Option<String>,
    ) -> BoxFuture<'a, Result<WriteOutcome, SearchError>>;

    /// The checkpoint stored by the last write that set one.
    fn checkpoint<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<Option<String>, SearchError>>;

    /// When any process last wrote or deleted a document of `index`, where
    /// the engine keeps that with the index (OpenSearch: the checkpoints
    /// index, stamped at most once a second per writer). `None` where it
    /// does not: the embedded index has a single writer, the gateway's own
    /// process, which knows it already.
    fn last_applied<'a>(
        &'a self,
        index: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::time::SystemTime>, SearchError>> {
        let _ = index;
        Box::pin(async { Ok(None) })
    }

    fn search<'a>(
        &'a self,
        index: &'a str,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchResult, SearchError>>;

    /// The documents with these ids, in the same order (`None` where absent).
    fn get<'a>(
        &'a self,
        index: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Document>>, SearchError>>;

    /// How many documents the index holds.
    fn count<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<u64, SearchError>>;

    /// Every id matching `filter`, unpaged and unordered: for dependency
    /// rebuilds ("every contract whose managerId is 7").
    fn ids_where<'a>(
        &'a self,
        index: &'a str,
        filter: &'a Filter,
    ) -> BoxFuture<'a, Result<Vec<String>, SearchError>>;

    /// The distinct values of keyword field `field`, unordered. May include
    /// values that only deleted documents held: confirm with
    /// [`ids_where`](Self::ids_where) before acting on one.
    fn terms<'a>(&'a self, index: &'a str, field: &'a str)
        -> BoxFuture<'a, Result<Vec<String>, SearchError>>;

    /// Every physical index and alias.
    fn catalog(&self) -> BoxFuture<'_, Result<Catalog, SearchError>>;

    /// [`write`](Self::write) of upserts only.
    fn upsert_with_checkpoint<'a>(
        &'a self,
        index: &'a str,
        docs: Vec<Document>,
        checkpoint: Option<String>,
    ) -> BoxFuture<'a, Result<WriteOutcome, SearchError>> {
        self.write(index, docs.into_iter().map(WriteOp::Upsert).collect(), checkpoint)
    }

    fn upsert<'a>(
        &'a self,
        index: &'a str,
        docs: Vec<Document>,
    ) -> BoxFuture<'a, Result<WriteOutcome, SearchError>> {
        self.upsert_with_checkpoint(index, docs, None)
    }

    /// Deletes `ids` at `version` (see [`WriteOp::Delete`]).
    fn delete<'a>(
        &'a self,
        index: &'a str,
        ids: Vec<String>,
        version: i64,
    ) -> BoxFuture<'a, Result<WriteOutcome, SearchError>> {
        let ops = ids
            .into_iter()
            .map(|id| WriteOp::Delete { id, version })
            .collect();
        self.write(index, ops, None)
    }
}
