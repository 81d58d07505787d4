//! Runs a plan's fetches: roots first (concurrently for queries, in order for
//! mutations), then each fetch's children as soon as it has answered. A keyed
//! fetch gathers every key its parent returned, deduplicates them, and asks
//! the request's loader for that (subgraph, selection), which sends one
//! request per chunk of `max_batch_size` keys, chunks concurrently.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dataloader::cached::Loader;
use dataloader::BatchFn;
use futures::future::{join_all, BoxFuture};
use indexmap::IndexSet;
use parking_lot::Mutex;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

use super::client::{Fetcher, RawError, SubgraphRequest, SubgraphResponse};
use super::error::{ErrorCode, FetchError, PathSegment, SubgraphError};
use super::input::{
    checked_subgraph_variables, subgraph_variables, unset_variables, without_unset_arguments, Variables,
};
use super::keys;
use super::tape::{Held, Identity, Node, Tape};
use crate::plan::{
    EntityFetch, Fetch, FetchKind, KeyInput, KeyStrategy, KeyedFetch, OperationKind, QueryPlan,
    Representations, SubgraphQuery,
};
use crate::schema::Supergraph;

/// What one fetch produced.
#[derive(Debug)]
pub enum FetchResult {
    /// Its `@include`/`@skip` condition did not hold.
    Skipped,
    /// A root fetch: the subgraph's `data` and errors (paths are client paths).
    Root(Result<Held, FetchError>, Vec<RawError>),
    /// Keyed results (looked up once per parent object).
    Keyed(Keyed),
}

/// The results of a keyed fetch.
#[derive(Debug, Default)]
pub struct Keyed {
    /// By canonical key.
    pub entries: FastMap<Arc<str>, Loaded>,
    /// By the parent object that gave the key, for keys that are built
    /// (`_entities` representations): the projection finds them without
    /// building the representation a second time.
    pub by_parent: FastMap<Identity, Loaded>,
    /// Errors met fetching what an object's representation requires (a
    /// nullable required field that failed): the fields that needed it
    /// carry them. Empty but for assembled representations.
    pub requirement_errors: FastMap<Identity, Vec<super::error::GraphQLError>>,
}

/// One key's result: the entity (lookup) or the array of rows (join), with the
/// errors the subgraph reported inside it; or the failure of its batch.
pub type Loaded = Result<Arc<Entry>, Arc<FetchError>>;

#[derive(Debug, Default)]
pub struct Entry {
    pub value: Found,
    pub errors: Vec<SubgraphError>,
}

/// What one key found, kept in the answer it came in.
#[derive(Debug, Default)]
pub enum Found {
    /// Nothing (a hole, or null).
    #[default]
    Nothing,
    /// The entity (lookups).
    One(Held),
    /// The rows that hold the key (joins), in answer order, possibly from several pages.
    Rows(Vec<Held>),
}

/// Shared by every fetch of one request.
pub struct Run<'r> {
    pub executor: &'r super::Executor,
    pub schema: &'r Supergraph,
    pub plan: &'r QueryPlan,
    pub fetcher: &'r Arc<dyn Fetcher>,
    pub variables: &'r Variables,
    pub headers: &'r HeaderMap,
    pub max_batch_size: usize,
    pub results: Vec<OnceLock<FetchResult>>,
    loaders: Mutex<FastMap<LoaderId<'r>, KeyLoader>>,
    in_flight: Mutex<InFlight>,
}

/// Wall time during which at least one subgraph fetch was outstanding: the
/// request's time minus this is the gateway's own overhead.
#[derive(Default)]
struct InFlight {
    count: usize,
    since: Option<Instant>,
    total: Duration,
}

/// Keys are hashed several times each on their way through a batch: a fast
/// hash (seeded per process) where the maps are ours to choose.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A fetch's keys, deduplicated, in the order the parent objects gave them.
type KeySet = IndexSet<Arc<str>, foldhash::fast::RandomState>;

/// What a keyed fetch found in its parent's objects.
struct CollectedKeys {
    keys: KeySet,
    /// For built keys (representations): each object and the index of its key.
    holders: Vec<(Identity, usize)>,
    /// Objects whose representation could not be assembled, with why.
    unbuilt: Vec<(Identity, Loaded)>,
    /// Objects whose representation was assembled despite errors (a
    /// nullable required field that failed), with them.
    requirement_errors: Vec<(Identity, Vec<super::error::GraphQLError>)>,
}
type KeyLoader = Loader<LoaderKey, Loaded, BatchLoader, FastMap<LoaderKey, Loaded>>;

/// A canonical key as the loader holds it. The loader's own maps hash with
/// SipHash at every step, and format every key into a message it drops
/// (`{:?}`, eagerly): the key carries its hash, computed once with a fast
/// hash seeded per process, and prints as it is, without escaping.
#[derive(Clone, PartialEq, Eq)]
pub struct LoaderKey {
    /// Shared: the loader and the batch function clone every key a few
    /// times on its way (a reference count each, not a copy).
    text: Arc<str>,
    hash: u64,
}

static KEY_HASHER: std::sync::LazyLock<foldhash::fast::RandomState> =
    std::sync::LazyLock::new(Default::default);

impl LoaderKey {
    fn new(text: Arc<str>) -> Self {
        use std::hash::BuildHasher;
        let hash = KEY_HASHER.hash_one(&*text);
        LoaderKey { text, hash }
    }
}

impl std::hash::Hash for LoaderKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl std::fmt::Debug for LoaderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Which loader a keyed fetch uses: fetches with the same subgraph,
/// document, selection and lookup field (with how its keys are sent), and
/// no arguments of their own, share one. An alias lookup's document is only
/// its header: without the field, two types looked up by alias in one
/// subgraph with the same selection shared a cache, key `3` for both.
#[derive(PartialEq, Eq, Hash)]
enum LoaderId<'r> {
    Shared {
        subgraph: &'r str,
        document: &'r str,
        selection: &'r str,
        field: &'r str,
        global_id: Option<&'r str>,
    },
    Fetch(usize),
}

impl<'r> Run<'r> {
    pub fn new(
        executor: &'r super::Executor,
        schema: &'r Supergraph,
        plan: &'r QueryPlan,
        fetcher: &'r Arc<dyn Fetcher>,
        variables: &'r Variables,
        headers: &'r HeaderMap,
        max_batch_size: usize,
    ) -> Self {
        Self {
            executor,
            schema,
            plan,
            fetcher,
            variables,
            headers,
            max_batch_size: max_batch_size.max(1),
            results: plan.fetches.iter().map(|_| OnceLock::new()).collect(),
            loaders: Mutex::new(FastMap::default()),
            in_flight: Mutex::new(InFlight::default()),
        }
    }

    /// Time spent waiting on subgraphs (overlapping fetches counted once).
    pub fn subgraph_time(&self) -> Duration {
        self.in_flight.lock().total
    }

    fn fetch_started(&self) {
        let mut f = self.in_flight.lock();
        if f.count == 0 {
            f.since = Some(Instant::now());
        }
        f.count += 1;
    }

    fn fetch_ended(&self) {
        let mut f = self.in_flight.lock();
        f.count = f.count.saturating_sub(1);
        if f.count == 0 {
            if let Some(since) = f.since.take() {
                f.total += since.elapsed();
            }
        }
    }

    pub async fn run(&self) {
        match self.plan.kind {
            OperationKind::Query => {
                join_all(self.plan.roots.iter().map(|&id| self.run_fetch(id))).await;
            }
            OperationKind::Mutation => {
                for &id in &self.plan.roots {
                    self.run_fetch(id).await;
                }
            }
        }
    }

    fn run_fetch(&self, id: usize) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let plan: &'r QueryPlan = self.plan;
            let Some(fetch) = plan.fetches.get(id) else {
                return;
            };
            let result = if !fetch.include.holds(self.variables) {
                FetchResult::Skipped
            } else {
                self.fetch_started();
                let result = match &fetch.kind {
                    FetchKind::Root(query) => self.fetch_root(fetch, query).await,
                    FetchKind::Lookup(query, keyed) | FetchKind::Join(query, keyed) => {
                        let spec = || BatchSpec::keyed(fetch, query, keyed, self);
                        self.fetch_keyed(fetch, query, &keyed.keys, spec).await
                    }
                    FetchKind::Entities(query, entities) => {
                        let spec = || BatchSpec::entities(fetch, query, entities, self);
                        self.fetch_keyed(fetch, query, &entities.keys, spec).await
                    }
                    FetchKind::Search(search) => self.fetch_search(fetch, search).await,
                };
                self.fetch_ended();
                result
            };
            let skipped = matches!(result, FetchResult::Skipped);
            let _ = self.results[id].set(result);
            if !skipped {
                join_all(fetch.children.iter().map(|&child| self.run_fetch(child))).await;
            }
        })
    }

    async fn fetch_root(&self, fetch: &Fetch, query: &SubgraphQuery) -> FetchResult {
        let (mut variables, problems) =
            checked_subgraph_variables(self.schema, &fetch.arguments, self.variables);
        let mut refused = Vec::new();
        let mut document = std::borrow::Cow::Borrowed(query.document.as_str());
        if let Some((_, first)) = problems.first() {
            // Only the root fields whose arguments the subgraph cannot take
            // fail; the others are asked without them.
            let uses = |text: &str, var: &str| mentions(text, var);
            let (failed, kept): (Vec<_>, Vec<_>) = query.root_fields.iter().partition(|(_, range)| {
                let text = &query.selection[range.clone()];
                problems.iter().any(|(var, _)| uses(text, var))
            });
            if kept.is_empty() || failed.is_empty() {
                let error = FetchError::BadInput {
                    subgraph: query.subgraph.clone(),
                    message: first.clone(),
                };
                return FetchResult::Root(Err(error), Vec::new());
            }
            let mut selection = String::with_capacity(query.selection.len());
            let mut at = 0;
            for (key, range) in &failed {
                selection.push_str(&query.selection[at..range.start]);
                at = range.end;
                let text = &query.selection[range.clone()];
                let why = problems
                    .iter()
                    .find(|(var, _)| uses(text, var))
                    .map(|(_, why)| why.clone());
                refused.push(RawError {
                    message: why.unwrap_or_default(),
                    path: Some(vec![PathSegment::Key((*key).clone())]),
                    extensions: Some(Map::from_iter([(
                        "code".to_owned(),
                        Value::String(ErrorCode::BadUserInput.as_str().to_owned()),
                    )])),
                });
            }
            selection.push_str(&query.selection[at..]);
            let arguments: Vec<_> = fetch
                .arguments
                .iter()
                .filter(|a| uses(&selection, &a.var))
                .cloned()
                .collect();
            variables.retain(|var, _| arguments.iter().any(|a| a.var == *var));
            let keyword = match self.plan.kind {
                OperationKind::Query => "query",
                OperationKind::Mutation => "mutation",
            };
            document = std::borrow::Cow::Owned(format!(
                "{keyword}{}{{{}}}",
                crate::plan::variable_definitions(None, &arguments),
                selection.trim_start()
            ));
        }
        let unset = unset_variables(&fetch.arguments, &variables);
        if !unset.is_empty() {
            document = std::borrow::Cow::Owned(without_unset_arguments(&document, &unset).into_owned());
        }
        let response = self
            .fetcher
            .fetch(SubgraphRequest {
                subgraph: &query.subgraph,
                query: &document,
                variables,
                headers: self.headers,
                mutation: self.plan.kind == OperationKind::Mutation,
            })
            .await;
        match response {
            Ok(SubgraphResponse { data, mut errors }) => {
                errors.append(&mut refused);
                FetchResult::Root(Ok(data.unwrap_or_default()), errors)
            }
            Err(e) => FetchResult::Root(Err(e), Vec::new()),
        }
    }

    async fn fetch_search(&self, fetch: &Fetch, search: &crate::plan::SearchFetch) -> FetchResult {
        let Some(ctx) = self.executor.search() else {
            let error = FetchError::Search {
                message: format!("search index `{}` is not available on this gateway", search.index),
                code: ErrorCode::SearchUnavailable,
                detail: None,
            };
            return FetchResult::Root(Err(error), Vec::new());
        };
        let result = super::search::run(
            ctx,
            self.executor,
            search,
            &fetch.arguments,
            self.variables,
            self.headers,
        )
        .await;
        match result {
            Ok((value, degraded)) => {
                // Reported at the field (no path: the root field this fetch feeds).
                let errors = degraded
                    .map(|message| RawError {
                        message,
                        path: None,
                        extensions: Some(Map::from_iter([(
                            "code".to_owned(),
                            Value::String(ErrorCode::DownstreamServiceError.as_str().to_owned()),
                        )])),
                    })
                    .into_iter()
                    .collect();
                FetchResult::Root(Ok(Held::root(Arc::new(Tape::from_value(&value)))), errors)
            }
            Err(e) => FetchResult::Root(Err(e), Vec::new()),
        }
    }

    async fn fetch_keyed(
        &self,
        fetch: &'r Fetch,
        query: &'r SubgraphQuery,
        input: &KeyInput,
        spec: impl FnOnce() -> BatchSpec,
    ) -> FetchResult {
        let CollectedKeys {
            keys,
            holders,
            unbuilt,
            requirement_errors,
        } = self.collect_keys(input, &query.subgraph);
        let requirement_errors = requirement_errors.into_iter().collect();
        if keys.is_empty() {
            return FetchResult::Keyed(Keyed {
                by_parent: unbuilt.into_iter().collect(),
                requirement_errors,
                ..Keyed::default()
            });
        }
        let loader = self.loader(fetch, query, keys.len(), spec);
        let keys: Vec<LoaderKey> = keys.into_iter().map(LoaderKey::new).collect();
        let asked = if holders.is_empty() {
            Vec::new()
        } else {
            keys.clone()
        };
        let loaded = loader.load_many(keys).await;
        let by_parent = holders
            .into_iter()
            .filter_map(|(holder, i)| Some((holder, loaded.get(asked.get(i)?)?.clone())))
            .chain(unbuilt)
            .collect();
        // The projection looks every key up again (once per parent object), by its text.
        FetchResult::Keyed(Keyed {
            entries: loaded.into_iter().map(|(key, v)| (key.text, v)).collect(),
            by_parent,
            requirement_errors,
        })
    }

    /// Every key the parent's objects at `key_path` give, deduplicated in
    /// order; for built keys, the index of the key each object gave; and
    /// the objects whose representation could not be assembled (a field it
    /// requires failed in another subgraph), with why, for `subgraph`.
    fn collect_keys(&self, keyed: &KeyInput, subgraph: &str) -> CollectedKeys {
        let mut keys = IndexSet::default();
        let mut holders = Vec::new();
        let mut unbuilt = Vec::new();
        let mut requirement_errors = Vec::new();
        let Some(parent) = self.results.get(keyed.parent).and_then(|r| r.get()) else {
            return CollectedKeys {
                keys,
                holders,
                unbuilt,
                requirement_errors,
            };
        };
        let built = matches!(keyed.key, crate::plan::ParentKey::Representation(_));
        let (assembled, assembled_key) = match &keyed.key {
            crate::plan::ParentKey::Representation(r) if !r.assembled.is_empty() => {
                (&r.assembled[..], &r.assembled_key[..])
            }
            _ => (&[][..], &[][..]),
        };
        let mut visit = |object: Node<'_>| {
            walk(object, &keyed.key_path, &mut |holder| {
                // Most keys repeat (twenty contracts, three managers): allocate only new ones.
                let mut add = |key: &str| {
                    let index = match keys.get_index_of(key) {
                        Some(index) => index,
                        None => keys.insert_full(Arc::from(key)).0,
                    };
                    if built {
                        holders.push((holder.identity(), index));
                    }
                };
                if assembled.is_empty() {
                    keys::with_parent_key(&keyed.key, holder, add);
                    return;
                }
                // Requirements fetched from other subgraphs, as the client's
                // response would have them.
                match super::project::assembled_fields(self, holder, assembled) {
                    // An object whose assembled key has a null field cannot
                    // be identified: no representation, as for a key read
                    // from the object itself.
                    Ok((fields, _)) if keys::lacks_any(&fields, assembled_key) => {}
                    Ok((fields, errors)) => {
                        if !errors.is_empty() {
                            requirement_errors.push((holder.identity(), errors));
                        }
                        keys::with_parent_key(&keyed.key, holder, |key| {
                            add(&keys::with_fields(key, &fields))
                        });
                    }
                    // One the subgraph needs is missing: no representation,
                    // and the fields it would resolve fail with why.
                    Err(why) => unbuilt.push((
                        holder.identity(),
                        Err(Arc::new(requirement_failed(*why, subgraph))),
                    )),
                }
            });
        };
        match parent {
            FetchResult::Skipped => {}
            FetchResult::Root(Ok(data), _) => visit(data.node()),
            FetchResult::Root(Err(_), _) => {}
            FetchResult::Keyed(keyed) => {
                for entry in keyed.entries.values().filter_map(|e| e.as_ref().ok()) {
                    match &entry.value {
                        Found::Nothing => {}
                        Found::One(entity) => visit(entity.node()),
                        Found::Rows(rows) => rows.iter().for_each(|row| visit(row.node())),
                    }
                }
            }
        }
        CollectedKeys {
            keys,
            holders,
            unbuilt,
            requirement_errors,
        }
    }

    /// The request's loader for this fetch's (subgraph, selection): two paths
    /// to the same entities with the same selection share one cache, sized
    /// for the `keys` of the fetch that makes it.
    fn loader(
        &self,
        fetch: &'r Fetch,
        query: &'r SubgraphQuery,
        keys: usize,
        spec: impl FnOnce() -> BatchSpec,
    ) -> KeyLoader {
        let cache_key = if fetch.arguments.is_empty() {
            let (field, global_id) = match &fetch.kind {
                FetchKind::Lookup(_, keyed) | FetchKind::Join(_, keyed) => {
                    (keyed.field.as_str(), keyed.send_global_id.as_deref())
                }
                _ => ("", None),
            };
            LoaderId::Shared {
                subgraph: &query.subgraph,
                document: &query.document,
                selection: &query.selection,
                field,
                global_id,
            }
        } else {
            LoaderId::Fetch(fetch.id)
        };
        let mut loaders = self.loaders.lock();
        loaders
            .entry(cache_key)
            .or_insert_with(|| {
                let batch = BatchLoader {
                    fetcher: Arc::clone(self.fetcher),
                    spec: Arc::new(spec()),
                    headers: self.headers.clone(),
                    max_batch_size: self.max_batch_size,
                };
                // Chunking happens inside the batch function so chunks go out concurrently.
                // One yield before dispatching (the crate's default is ten): every
                // key of a fetch arrives in one `load_many`, and sibling fetches
                // sharing this loader add theirs in the same poll of the plan's
                // `join_all`; each further yield re-polled the whole request.
                Loader::with_cache(batch, FastMap::with_capacity_and_hasher(keys, Default::default()))
                    .with_max_batch_size(usize::MAX)
                    .with_yield_count(1)
            })
            .clone()
    }
}

/// A representation's requirement that failed (in another subgraph, or
/// missing), as the failure of the fetch that needed it.
fn requirement_failed(why: super::error::GraphQLError, subgraph: &str) -> FetchError {
    let from = why
        .extensions
        .get("subgraph")
        .and_then(Value::as_str)
        .unwrap_or(subgraph)
        .to_string();
    let mut extensions = why.extensions;
    extensions.remove("subgraph");
    extensions
        .entry("code")
        .or_insert_with(|| Value::String(why.code.as_str().into()));
    FetchError::Downstream {
        subgraph: from,
        message: why.message,
        extensions,
    }
}

/// Calls `f` on every object reached from `value` by following `path`
/// (arrays flattened at every step).
pub fn walk<'v>(value: Node<'v>, path: &[async_graphql::Name], f: &mut dyn FnMut(Node<'v>)) {
    if value.is_array() {
        value.items().for_each(|i| walk(i, path, f));
    } else if value.is_object() {
        match path.split_first() {
            None => f(value),
            Some((head, rest)) => {
                if let Some(next) = value.get(head.as_str()) {
                    walk(next, rest, f);
                }
            }
        }
    }
}

/// Most pages one join may fetch for one chunk of keys.
const MAX_JOIN_PAGES: usize = 1000;

/// Everything a batch needs, owned, so the loader does not borrow the request.
struct BatchSpec {
    subgraph: String,
    sends: Sends,
    is_join: bool,
    document: String,
    selection: String,
    /// The field whose answer holds the results (`_entities` for representations).
    field: String,
    arg: String,
    /// The type keys are converted to (the argument's, or the key field's);
    /// `None` for built representations, which are sent as they are.
    key_type: Option<async_graphql::parser::types::Type>,
    send_global_id: Option<String>,
    /// Where results hold their key (and whose Relay id it is); `None`: by position.
    result_key: Option<(String, Option<String>)>,
    page: Option<crate::schema::JoinPage>,
    variables: Map<String, Value>,
}

/// How a batch sends its keys.
enum Sends {
    /// All keys as the list `$_keys`.
    List,
    /// One aliased field per key, keys inline.
    Aliases,
    /// `_entities` representations `{__typename, <key_field>: key}` in `$_keys`.
    Representations { type_name: String, key_field: String },
    /// `_entities` representations that are the keys themselves (JSON text).
    BuiltRepresentations,
}

impl BatchSpec {
    fn keyed(fetch: &Fetch, query: &SubgraphQuery, keyed: &KeyedFetch, run: &Run<'_>) -> Self {
        let (variables, document, selection) = Self::texts(fetch, query, run);
        Self {
            subgraph: query.subgraph.clone(),
            sends: match keyed.strategy {
                KeyStrategy::Batch => Sends::List,
                KeyStrategy::Alias => Sends::Aliases,
            },
            is_join: matches!(fetch.kind, FetchKind::Join(..)),
            document,
            selection,
            field: keyed.field.clone(),
            arg: keyed.arg.clone(),
            key_type: Some(keyed.arg_type.clone()),
            send_global_id: keyed.send_global_id.clone(),
            result_key: result_key(&keyed.keys),
            page: keyed.page.clone(),
            variables,
        }
    }

    fn entities(fetch: &Fetch, query: &SubgraphQuery, entities: &EntityFetch, run: &Run<'_>) -> Self {
        let (sends, key_type, send_global_id) = match &entities.representations {
            Representations::KeyField {
                key_field,
                key_type,
                send_global_id,
            } => (
                Sends::Representations {
                    type_name: entities.type_name.clone(),
                    key_field: key_field.clone(),
                },
                Some(key_type.clone()),
                send_global_id.clone(),
            ),
            Representations::Built => (Sends::BuiltRepresentations, None, None),
        };
        let (variables, document, selection) = Self::texts(fetch, query, run);
        Self {
            subgraph: query.subgraph.clone(),
            sends,
            is_join: false,
            document,
            selection,
            field: "_entities".into(),
            arg: "representations".into(),
            key_type,
            send_global_id,
            result_key: result_key(&entities.keys),
            page: None,
            variables,
        }
    }
}

impl BatchSpec {
    /// The fetch's variables, and its document and selection without the
    /// arguments whose variables the request left unset.
    fn texts(fetch: &Fetch, query: &SubgraphQuery, run: &Run<'_>) -> (Map<String, Value>, String, String) {
        let variables = subgraph_variables(run.schema, &fetch.arguments, run.variables);
        let unset = unset_variables(&fetch.arguments, &variables);
        let document = without_unset_arguments(&query.document, &unset).into_owned();
        let selection = without_unset_arguments(&query.selection, &unset).into_owned();
        (variables, document, selection)
    }
}

fn result_key(keys: &KeyInput) -> Option<(String, Option<String>)> {
    keys.result_key
        .as_ref()
        .map(|(alias, global_id)| (alias.to_string(), global_id.clone()))
}

pub struct BatchLoader {
    fetcher: Arc<dyn Fetcher>,
    spec: Arc<BatchSpec>,
    headers: HeaderMap,
    max_batch_size: usize,
}

impl BatchFn<LoaderKey, Loaded> for BatchLoader {
    async fn load(&mut self, keys: &[LoaderKey]) -> HashMap<LoaderKey, Loaded> {
        // The loader hands keys over in hash order; sorted, the same keys
        // always make the same subgraph request (stable documents and logs).
        let mut keys = keys.to_vec();
        keys.sort_unstable_by(|a, b| a.text.cmp(&b.text));
        let chunks = keys
            .chunks(self.max_batch_size)
            .map(|chunk| self.load_chunk(chunk));
        let mut out = HashMap::with_capacity(keys.len());
        for part in join_all(chunks).await {
            out.extend(part);
        }
        // The loader panics on a missing key: every key gets an entry (a hole is null).
        for key in keys {
            out.entry(key).or_insert_with(|| Ok(Arc::new(Entry::default())));
        }
        out
    }
}

impl BatchLoader {
    async fn load_chunk(&self, chunk: &[LoaderKey]) -> Vec<(LoaderKey, Loaded)> {
        let spec = &*self.spec;
        // Keys that cannot be expressed in the argument's type match nothing.
        let sendable: Vec<(&str, Value)> = match &spec.key_type {
            None => chunk
                .iter()
                .filter_map(|k| serde_json::from_str(&k.text).ok().map(|v| (&*k.text, v)))
                .collect(),
            Some(key_type) => chunk
                .iter()
                .filter_map(|k| {
                    keys::to_argument(&k.text, key_type, spec.send_global_id.as_deref())
                        .map(|v| (&*k.text, v))
                })
                .collect(),
        };
        if sendable.is_empty() {
            return Vec::new();
        }
        let mut variables = spec.variables.clone();
        let document;
        let query = match &spec.sends {
            Sends::Aliases => {
                document = alias_document(spec, &sendable);
                &document
            }
            Sends::List => {
                variables.insert(
                    "_keys".into(),
                    Value::Array(sendable.iter().map(|(_, v)| v.clone()).collect()),
                );
                &spec.document
            }
            Sends::Representations { type_name, key_field } => {
                let representations = sendable
                    .iter()
                    .map(|(_, v)| {
                        let mut r = Map::new();
                        r.insert("__typename".into(), Value::String(type_name.clone()));
                        r.insert(key_field.clone(), v.clone());
                        Value::Object(r)
                    })
                    .collect();
                variables.insert("_keys".into(), Value::Array(representations));
                &spec.document
            }
            Sends::BuiltRepresentations => {
                let representations = sendable.iter().map(|(_, v)| v.clone()).collect();
                variables.insert("_keys".into(), Value::Array(representations));
                &spec.document
            }
        };
        crate::telemetry::metrics().batch_size(&spec.subgraph, chunk.len());
        let answer = match &spec.page {
            Some(page) => self.fetch_pages(query, variables, page).await,
            None => self
                .fetcher
                .fetch(SubgraphRequest {
                    subgraph: &spec.subgraph,
                    query,
                    variables,
                    headers: &self.headers,
                    mutation: false,
                })
                .await
                .and_then(|response| {
                    let items = self.items(
                        response.data.as_ref(),
                        sendable.len(),
                        !response.errors.is_empty(),
                    )?;
                    Ok((items, response.errors))
                }),
        };
        match answer {
            Err(e) => {
                let e = Arc::new(e);
                chunk.iter().map(|k| (k.clone(), Err(Arc::clone(&e)))).collect()
            }
            Ok((items, errors)) => self.distribute(chunk, &sendable, items, errors),
        }
    }

    /// The items of an answer, by position: the aliased fields `_0`, `_1`…
    /// (`sent` of them), or the list the field returned. A list field that
    /// is missing (with no error to say why) or is not a list is an invalid
    /// answer: read as no items, it told the client there were none.
    fn items(&self, data: Option<&Held>, sent: usize, has_errors: bool) -> Result<Vec<Held>, FetchError> {
        let spec = &*self.spec;
        let invalid = |reason: String| FetchError::InvalidResponse {
            subgraph: spec.subgraph.clone(),
            reason,
        };
        match (&spec.sends, data) {
            // Every key sent gets its item, null when the field is missing.
            (Sends::Aliases, _) => {
                let mut alias = String::with_capacity(8);
                Ok((0..sent)
                    .map(|i| {
                        alias.clear();
                        alias.push('_');
                        alias.push_str(itoa::Buffer::new().format(i));
                        data.and_then(|d| Some(Held::of(d.tape(), d.node().get(&alias)?)))
                            .unwrap_or_default()
                    })
                    .collect())
            }
            (_, None) => Ok(Vec::new()),
            (_, Some(data)) => match data.node().get(&spec.field) {
                Some(list) if list.is_array() => {
                    Ok(list.items().map(|item| Held::of(data.tape(), item)).collect())
                }
                Some(list) if list.is_null() => Ok(Vec::new()),
                None if has_errors || data.node().is_null() => Ok(Vec::new()),
                None => Err(invalid(format!("the answer has no `{}`", spec.field))),
                Some(_) => Err(invalid(format!("`{}` is not a list", spec.field))),
            },
        }
    }

    /// Pages through a list field until a page comes back short, and returns
    /// every row (error paths shifted to match).
    async fn fetch_pages(
        &self,
        query: &str,
        variables: Map<String, Value>,
        page: &crate::schema::JoinPage,
    ) -> Result<(Vec<Held>, Vec<RawError>), FetchError> {
        let spec = &*self.spec;
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        let mut offset = 0usize;
        let mut pages = 0usize;
        loop {
            let mut vars = variables.clone();
            vars.insert("_limit".into(), Value::from(page.size));
            vars.insert("_offset".into(), Value::from(offset));
            let response = self
                .fetcher
                .fetch(SubgraphRequest {
                    subgraph: &spec.subgraph,
                    query,
                    variables: vars,
                    headers: &self.headers,
                    mutation: false,
                })
                .await?;
            let errored = !response.errors.is_empty();
            for mut error in response.errors {
                if let Some([_, PathSegment::Index(i), ..]) = error.path.as_deref_mut() {
                    *i += offset;
                }
                errors.push(error);
            }
            let page_rows = self.items(response.data.as_ref(), 0, errored)?;
            let full = page_rows.len() >= page.size;
            offset += page_rows.len();
            rows.extend(page_rows);
            // Errors about some rows do not end the listing: the rows of
            // later pages are other keys' (a page with no data is short).
            if !full {
                break;
            }
            pages += 1;
            // A service that never returns a short page must not hold the request forever.
            if pages >= MAX_JOIN_PAGES {
                return Err(FetchError::InvalidResponse {
                    subgraph: spec.subgraph.clone(),
                    reason: format!(
                        "`{}` returned {MAX_JOIN_PAGES} full pages of {} rows; giving up",
                        spec.field, page.size
                    ),
                });
            }
        }
        Ok((rows, errors))
    }

    /// Files each returned object under its own key (never by position
    /// alone), and each subgraph error under the key of the item it names.
    fn distribute(
        &self,
        chunk: &[LoaderKey],
        sent: &[(&str, Value)],
        items: Vec<Held>,
        errors: Vec<RawError>,
    ) -> Vec<(LoaderKey, Loaded)> {
        let spec = &*self.spec;
        let mut entries: FastMap<Arc<str>, Entry> =
            FastMap::with_capacity_and_hasher(sent.len(), Default::default());
        // (key, index in its group) of each item, by position in the response list.
        let mut positions: Vec<Option<(Arc<str>, usize)>> = Vec::with_capacity(items.len());
        let aliased = matches!(spec.sends, Sends::Aliases);
        for (i, item) in items.into_iter().enumerate() {
            // Aliased fields are the keys sent at their position; lookups
            // answer in request order, so a null item's key is the one sent there.
            let fallback = if aliased || !spec.is_join {
                sent.get(i).map(|(k, _)| *k)
            } else {
                None
            };
            let read = spec.result_key.as_ref().map(|(alias, global_id)| {
                keys::with_canonical(item.node().get(alias)?, global_id.as_deref(), |k| Arc::from(k))
            });
            let key: Option<Arc<str>> = match read {
                Some(Some(key)) => Some(key),
                // An object without the key it was asked for cannot be placed:
                // taken by its position, a reordered answer gave one key's
                // entity to another.
                Some(None) if !item.node().is_null() => {
                    let failure = Arc::new(FetchError::InvalidResponse {
                        subgraph: spec.subgraph.clone(),
                        reason: format!("item {i} of `{}` has no key", spec.field),
                    });
                    return chunk
                        .iter()
                        .map(|k| (k.clone(), Err(Arc::clone(&failure))))
                        .collect();
                }
                _ => fallback.map(Arc::from),
            };
            let Some(key) = key else {
                positions.push(None);
                continue;
            };
            let entry = entries.entry(key.clone()).or_default();
            let index = if spec.is_join {
                match &mut entry.value {
                    Found::Rows(rows) => {
                        rows.push(item);
                        rows.len() - 1
                    }
                    other => {
                        *other = Found::Rows(vec![item]);
                        0
                    }
                }
            } else {
                if !item.node().is_null() {
                    entry.value = Found::One(item);
                }
                0
            };
            positions.push(Some((key, index)));
        }
        let mut whole_failure = None;
        for error in errors {
            let path = error.path.clone().unwrap_or_default();
            let (position, rest) = match (&spec.sends, path.as_slice()) {
                (Sends::Aliases, [PathSegment::Key(alias), rest @ ..]) => (
                    alias.strip_prefix('_').and_then(|i| i.parse::<usize>().ok()),
                    rest,
                ),
                (_, [PathSegment::Key(_), PathSegment::Index(i), rest @ ..]) => (Some(*i), rest),
                _ => (None, &[][..]),
            };
            let target = position.and_then(|p| positions.get(p).cloned().flatten());
            let subgraph_error = SubgraphError {
                message: error.message.clone(),
                path: rest.to_vec(),
                extensions: error.extensions.clone().unwrap_or_default(),
            };
            match target {
                Some((key, index)) => {
                    let mut e = subgraph_error;
                    if spec.is_join {
                        e.path.insert(0, PathSegment::Index(index));
                    }
                    entries.entry(key).or_default().errors.push(e);
                }
                // An error about the whole field fails every key of the chunk.
                None => whole_failure = Some(error),
            }
        }
        let mut failed_keys = Vec::new();
        if let Some(error) = whole_failure {
            // The keys that got nothing are the ones it failed (a silent
            // null or empty list otherwise); when every key got something,
            // it is reported on each of them.
            let missing: Vec<&LoaderKey> = chunk.iter().filter(|k| !entries.contains_key(&*k.text)).collect();
            if missing.is_empty() {
                for entry in entries.values_mut() {
                    entry.errors.push(SubgraphError {
                        message: error.message.clone(),
                        path: Vec::new(),
                        extensions: error.extensions.clone().unwrap_or_default(),
                    });
                }
            } else {
                let failure = Arc::new(FetchError::Downstream {
                    subgraph: spec.subgraph.clone(),
                    message: error.message,
                    extensions: error.extensions.unwrap_or_default(),
                });
                failed_keys = missing
                    .into_iter()
                    .map(|key| (key.clone(), Err(Arc::clone(&failure))))
                    .collect();
            }
        }
        entries
            .into_iter()
            .map(|(key, entry)| (LoaderKey::new(key), Ok(Arc::new(entry))))
            .chain(failed_keys)
            .collect()
    }
}

/// Whether the printed `text` uses the variable `$var` (not only one whose
/// name starts with it: `$_a1` in `$_a10`).
fn mentions(text: &str, var: &str) -> bool {
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix(var) {
            if !after.starts_with(|c: char| c == '_' || c.is_ascii_alphanumeric()) {
                return true;
            }
        }
    }
    false
}

/// `query($_a0:…){_0:staff(id:7){…} _1:staff(id:9){…}}` with the keys
/// inline, so any number of keys is one request. For this strategy the plan's
/// `document` holds just the operation header with its variable definitions.
fn alias_document(spec: &BatchSpec, keys: &[(&str, Value)]) -> String {
    use std::fmt::Write;
    let mut doc = String::with_capacity(
        spec.document.len() + 2 + keys.len() * (spec.selection.len() + spec.field.len() + 24),
    );
    doc.push_str(&spec.document);
    doc.push('{');
    for (i, (_, value)) in keys.iter().enumerate() {
        let _ = write!(
            doc,
            "_{i}:{}({}:{}){{{}}} ",
            spec.field, spec.arg, value, spec.selection
        );
    }
    doc.push('}');
    doc
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn a_variable_is_mentioned_by_its_whole_name() {
        assert!(mentions("a:contract(id:$_a1){id}", "_a1"));
        assert!(mentions("x(a:$_a10,b:$_a1)", "_a1"));
        assert!(!mentions("x(a:$_a10)", "_a1"));
        assert!(!mentions("x(a:\"_a1\")", "_a1"));
        assert!(mentions("x @skip(if:$_if_x)", "_if_x"));
    }
}
