//! Search fields at run time: client arguments → a backend-neutral
//! [`SearchQuery`], the backend's hits → a Relay connection whose nodes the
//! plan hydrates; and the `MERGE` strategy, which answers the same field
//! from the index's sources without the index (k-way merge of per-source
//! sorted pages, every source's offset sealed in the cursor).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_graphql_value::{ConstValue, Name};
use serde_json::{json, Map, Value};

use super::input::Variables;
use super::{ErrorCode, FetchError};
use crate::plan::{search_key_alias, ArgBinding, SearchFetch, SEARCH_TYPE_KEY};
use crate::readmodel::{document_id, entity_of, Change, ChangeOp};
use crate::schema::{named_type, IndexDef, IndexSource, Supergraph, TypeDefKind};
use crate::search::{
    CursorCodec, FieldValue, Filter, Hit, Page, SearchBackend, SearchError, SearchQuery, SortKey,
    SortPosition, MAX_OFFSET_WINDOW, TYPE_FIELD,
};

/// The largest `first` a search field accepts.
pub const MAX_PAGE_SIZE: usize = 1000;
/// A filter input field with this name is full-text over every searchable field.
pub const TEXT_FILTER: &str = "text";

/// How a search field is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// From the search index (the default).
    Index,
    /// By merging the index's sources, without the index.
    Merge,
}

/// Everything search fields need at run time; one per gateway.
pub struct SearchContext {
    pub backend: Arc<dyn SearchBackend>,
    codec: CursorCodec,
    strategies: HashMap<String, Strategy>,
    /// Where hits whose entity is gone are reported (read repair).
    repairs: Option<tokio::sync::mpsc::Sender<Change>>,
    /// When each index last applied a change, as the backend keeps it.
    applied: Arc<parking_lot::Mutex<HashMap<String, Applied>>>,
    /// Whether each index's backfill had finished when last read.
    built: parking_lot::Mutex<HashMap<String, Built>>,
}

/// An index's build state as last read from its checkpoint.
struct Built {
    live: bool,
    read: Instant,
}

/// How long an index found built is trusted before its checkpoint is read
/// again (`sync backfill --restart` rebuilds it in place).
const BUILT_RECHECK: Duration = Duration::from_secs(5);

/// An index's last applied change as last read from the backend.
struct Applied {
    at: Option<SystemTime>,
    read: Instant,
    refreshing: bool,
}

/// How often the stored last applied change of an index is read again.
const APPLIED_REFRESH: Duration = Duration::from_secs(1);
/// How long the first read of it may hold up a response.
const APPLIED_FIRST_READ: Duration = Duration::from_millis(250);
/// A stored stamp read longer ago than this is not reported: read again
/// first (a refresh only runs after a request, so after an idle spell the
/// stamp was as old as the spell: an `ageMs` a minute behind).
const APPLIED_STALE: Duration = Duration::from_secs(5);

impl SearchContext {
    /// `strategies` maps root field names to their strategy (default `Index`).
    pub fn new(
        backend: Arc<dyn SearchBackend>,
        cursor_secret: &[u8],
        strategies: HashMap<String, Strategy>,
    ) -> Self {
        Self {
            backend,
            codec: CursorCodec::new(cursor_secret),
            strategies,
            repairs: None,
            applied: Arc::default(),
            built: Default::default(),
        }
    }

    /// When `index` last applied a change: by this process (its sync), or
    /// by any other writer whose stamp the backend keeps (`tessera sync
    /// run` workers beside an OpenSearch cluster). The stored stamp is read
    /// once per index on the first request, then refreshed in the background
    /// at most once a second; a response waits for it again only after the
    /// gateway was idle for [`APPLIED_STALE`].
    pub async fn last_applied(&self, index: &str) -> Option<SystemTime> {
        let local = crate::telemetry::metrics().last_applied(index);
        let stored = {
            let mut applied = self.applied.lock();
            match applied.get_mut(index) {
                // Read long ago (the gateway was idle): as stale as the
                // idle spell, it is read again now, as the first time.
                Some(entry) if entry.read.elapsed() >= APPLIED_STALE => None,
                Some(entry) => {
                    if entry.read.elapsed() >= APPLIED_REFRESH && !entry.refreshing {
                        entry.refreshing = true;
                        let backend = Arc::clone(&self.backend);
                        let applied = Arc::clone(&self.applied);
                        let index = index.to_owned();
                        tokio::spawn(async move {
                            let at = read_applied(backend.as_ref(), &index, None).await;
                            applied.lock().insert(
                                index,
                                Applied {
                                    at,
                                    read: Instant::now(),
                                    refreshing: false,
                                },
                            );
                        });
                    }
                    Some(entry.at)
                }
                None => None,
            }
        };
        let stored = match stored {
            Some(at) => at,
            None => {
                let at = read_applied(self.backend.as_ref(), index, Some(APPLIED_FIRST_READ)).await;
                self.applied.lock().insert(
                    index.to_owned(),
                    Applied {
                        at,
                        read: Instant::now(),
                        refreshing: false,
                    },
                );
                at
            }
        };
        local.max(stored)
    }

    /// Whether `index` can answer: its backfill has finished. An index whose
    /// first build is running, or was stopped half-way, holds part of its
    /// documents; served, it answered a fraction of the matches (a
    /// `totalCount` of 50,000 for 120,000) with no error.
    async fn ensure_built(&self, index: &str) -> Result<(), FetchError> {
        if let Some(built) = self.built.lock().get(index) {
            if built.live && built.read.elapsed() < BUILT_RECHECK {
                return Ok(());
            }
        }
        let raw = self.backend.checkpoint(index).await.map_err(from_search_error)?;
        let live = crate::sync::Checkpoint::is_built(raw.as_deref());
        self.built.lock().insert(
            index.to_owned(),
            Built {
                live,
                read: Instant::now(),
            },
        );
        if live {
            Ok(())
        } else {
            Err(FetchError::Search {
                message: "the search index is not built yet".into(),
                code: ErrorCode::SearchUnavailable,
                detail: None,
            })
        }
    }

    /// Reports hits whose entity is gone to `repairs`, whose reader
    /// rebuilds (here: deletes) their documents.
    pub fn with_repairs(mut self, repairs: tokio::sync::mpsc::Sender<Change>) -> Self {
        self.repairs = Some(repairs);
        self
    }

    /// Never waits: when the repair queue is full the next sync pass
    /// catches the stale documents anyway.
    pub(super) fn report_gone(&self, gone: Vec<(String, String)>) {
        let Some(repairs) = &self.repairs else { return };
        for (type_name, id) in gone {
            tracing::debug!(%type_name, %id, "search hit whose entity is gone; repairing its document");
            let _ = repairs.try_send(Change {
                type_name,
                id,
                op: ChangeOp::Delete,
            });
        }
    }

    pub fn strategy(&self, field: &str) -> Strategy {
        self.strategies.get(field).copied().unwrap_or(Strategy::Index)
    }
}

/// The backend's stamp of `index`'s last applied change; `None` when it
/// keeps none, fails or (with `budget`) is slow: freshness is reported
/// when known, never a reason to fail a response.
async fn read_applied(
    backend: &dyn SearchBackend,
    index: &str,
    budget: Option<Duration>,
) -> Option<SystemTime> {
    let read = backend.last_applied(index);
    let result = match budget {
        Some(budget) => match tokio::time::timeout(budget, read).await {
            Ok(result) => result,
            Err(_) => return None,
        },
        None => read.await,
    };
    result
        .inspect_err(
            |e| tracing::debug!(%index, error = %e, "could not read the index's last applied change"),
        )
        .ok()
        .flatten()
}

fn bad_input(message: impl Into<String>) -> FetchError {
    FetchError::Search {
        message: message.into(),
        code: ErrorCode::BadUserInput,
        detail: None,
    }
}

fn from_search_error(e: SearchError) -> FetchError {
    if e.is_client_error() {
        return bad_input(e.to_string());
    }
    let (message, code) = match e {
        SearchError::Unavailable { .. } => ("the search index is unavailable", ErrorCode::SearchUnavailable),
        // Never built (no backfill yet), or its alias removed: nothing to ask yet.
        SearchError::UnknownIndex { .. } => {
            ("the search index is not built yet", ErrorCode::SearchUnavailable)
        }
        _ => ("the search index failed to answer", ErrorCode::SearchBackendError),
    };
    FetchError::Search {
        message: message.into(),
        code,
        detail: Some(e.to_string()),
    }
}

/// The search field's arguments, variables substituted (unset variables and
/// explicit nulls are absent), input objects completed with their fields'
/// defaults.
fn arguments(schema: &Supergraph, bindings: &[ArgBinding], vars: &Variables) -> HashMap<String, ConstValue> {
    let mut out = HashMap::new();
    for b in bindings {
        let value = super::input::without_unset(&b.value, vars)
            .into_const_with(|name| {
                Ok::<_, std::convert::Infallible>(vars.get(&name).cloned().unwrap_or(ConstValue::Null))
            })
            .unwrap_or(ConstValue::Null);
        let value = match (value, &b.def.default) {
            (ConstValue::Null, Some(default)) if matches!(b.value, async_graphql_value::Value::Variable(ref v) if !vars.contains_key(v)) => {
                default.clone().into_const().unwrap_or(ConstValue::Null)
            }
            (v, _) => v,
        };
        if value != ConstValue::Null {
            out.insert(
                b.var.clone(),
                super::input::with_input_defaults(schema, &b.def.ty, value),
            );
        }
    }
    out
}

/// A client query, read from the field's arguments.
struct ClientQuery {
    query: SearchQuery,
    first: usize,
    after: Option<String>,
    offset: Option<usize>,
}

fn read_query(
    schema: &Supergraph,
    def: &IndexDef,
    bindings: &[ArgBinding],
    vars: &Variables,
    count: bool,
) -> Result<ClientQuery, FetchError> {
    let args = arguments(schema, bindings, vars);
    let first = match args.get("first") {
        None => 20,
        Some(ConstValue::Number(n)) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n <= MAX_PAGE_SIZE)
            .ok_or_else(|| bad_input(format!("`first` must be between 0 and {MAX_PAGE_SIZE}, got {n}")))?,
        Some(other) => return Err(bad_input(format!("`first` must be an integer, got {other}"))),
    };
    let after = match args.get("after") {
        None => None,
        Some(ConstValue::String(s)) => Some(s.clone()),
        Some(other) => return Err(bad_input(format!("`after` must be a cursor string, got {other}"))),
    };
    let offset = match args.get("page") {
        None => None,
        Some(ConstValue::Number(n)) => {
            let page = n
                .as_u64()
                .filter(|p| *p >= 1)
                .ok_or_else(|| bad_input(format!("`page` counts from 1, got {n}")))?;
            let offset = usize::try_from(page - 1)
                .unwrap_or(usize::MAX)
                .saturating_mul(first);
            if offset.saturating_add(first) > MAX_OFFSET_WINDOW {
                return Err(from_search_error(SearchError::WindowTooLarge {
                    max: MAX_OFFSET_WINDOW,
                    asked: offset.saturating_add(first),
                }));
            }
            Some(offset)
        }
        Some(other) => return Err(bad_input(format!("`page` must be an integer, got {other}"))),
    };
    if after.is_some() && offset.is_some() {
        return Err(bad_input(
            "use either `after` (cursor paging) or `page` (offset paging), not both",
        ));
    }
    let mut filters = Vec::new();
    if let Some(filter) = args.get("filter") {
        let binding = bindings.iter().find(|b| b.var == "filter");
        let input_type = binding.map(|b| named_type(&b.def.ty).clone());
        if let (Some(input_type), ConstValue::Object(fields)) = (input_type, filter) {
            read_filters(schema, def, &input_type, fields, &mut filters)?;
        }
    }
    let mut sort = Vec::new();
    // `orderBy: []` or `null` asks for no order in particular: the field's
    // default order, as when it is left out (both strategies then agree;
    // the index sorted by id alone and MERGE refused it).
    let default_order = || {
        bindings
            .iter()
            .find(|b| b.var == "orderBy")
            .and_then(|b| Some((b, b.def.default.clone()?.into_const()?)))
            .map(|(b, d)| super::input::with_input_defaults(schema, &b.def.ty, d))
    };
    let order = match args.get("orderBy") {
        None => default_order(),
        Some(ConstValue::List(items)) if items.is_empty() => default_order(),
        other => other.cloned(),
    };
    if let Some(order) = &order {
        let items: Vec<&ConstValue> = match order {
            ConstValue::List(items) => items.iter().collect(),
            single => vec![single],
        };
        for item in items {
            let ConstValue::Object(o) = item else {
                return Err(bad_input("each `orderBy` item is an object {field, direction}"));
            };
            let field = match o.get("field") {
                Some(ConstValue::Enum(e)) => camel_case(e),
                Some(ConstValue::String(s)) => camel_case(s),
                _ => return Err(bad_input("an `orderBy` item needs `field`")),
            };
            let descending = matches!(o.get("direction"), Some(ConstValue::Enum(d)) if d.as_str() == "DESC");
            sort.push(SortKey { field, descending });
        }
    }
    // Ties go by id in the direction of the last key, as the legacy services
    // order their lists; so the MERGE strategy and the index agree.
    if sort.last().is_none_or(|k| k.field != crate::search::ID_FIELD) {
        let descending = sort.last().is_some_and(|k| k.descending);
        sort.push(SortKey {
            field: crate::search::ID_FIELD.into(),
            descending,
        });
    }
    let page = match offset {
        Some(offset) => Page::Offset {
            offset,
            limit: (first + 1).min(MAX_OFFSET_WINDOW - offset),
        },
        None => Page::After {
            first: first + 1,
            after: None,
        },
    };
    // At the end of the offset window there is no room for the one hit more
    // that says whether another page exists: the count tells instead.
    let count = count || offset.is_some_and(|o| o + first >= MAX_OFFSET_WINDOW);
    Ok(ClientQuery {
        query: SearchQuery {
            filters,
            sort,
            page,
            count,
        },
        first,
        after,
        offset,
    })
}

/// `MANAGER_NAME` → `managerName`; `ID` → `id`.
fn camel_case(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, part) in value.split('_').filter(|p| !p.is_empty()).enumerate() {
        let lower = part.to_ascii_lowercase();
        if i == 0 {
            out.push_str(&lower);
        } else {
            let mut chars = lower.chars();
            if let Some(c) = chars.next() {
                out.push(c.to_ascii_uppercase());
                out.extend(chars);
            }
        }
    }
    out
}

fn field_value(def: &IndexDef, field: &str, value: &ConstValue) -> Result<FieldValue, FetchError> {
    Ok(match value {
        ConstValue::Null => FieldValue::Null,
        ConstValue::Boolean(b) => FieldValue::Bool(*b),
        ConstValue::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::I64(i),
            None => FieldValue::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        ConstValue::String(s) => FieldValue::Str(s.clone()),
        // `_type` holds type names; filters name them by enum values (POST → Post).
        ConstValue::Enum(e) if field == TYPE_FIELD => FieldValue::Str(
            def.sources
                .iter()
                .find(|s| s.entity.eq_ignore_ascii_case(e))
                .map(|s| s.entity.to_string())
                .unwrap_or_else(|| e.to_string()),
        ),
        ConstValue::Enum(e) => FieldValue::Str(e.to_string()),
        other => {
            return Err(bad_input(format!(
                "filter `{field}` takes a single value, got {other}"
            )))
        }
    })
}

fn read_filters(
    schema: &Supergraph,
    def: &IndexDef,
    input_type: &Name,
    fields: &indexmap::IndexMap<Name, ConstValue>,
    out: &mut Vec<Filter>,
) -> Result<(), FetchError> {
    let defs = schema.input_fields(input_type);
    for (name, value) in fields {
        if *value == ConstValue::Null {
            continue;
        }
        let Some(input) = defs.and_then(|d| d.get(name)) else {
            return Err(bad_input(format!("unknown filter `{name}`")));
        };
        let field = input.source_name.clone();
        if field == TEXT_FILTER {
            let ConstValue::String(text) = value else {
                return Err(bad_input("`text` takes a string"));
            };
            // Empty text is no condition, on the index and through MERGE alike.
            if text.trim().is_empty() {
                continue;
            }
            let spec_fields: Vec<String> = def
                .sources
                .iter()
                .flat_map(|s| s.fields.iter())
                .filter(|f| f.searchable)
                .map(|f| f.name.to_string())
                .collect::<indexmap::IndexSet<_>>()
                .into_iter()
                .collect();
            out.push(Filter::FullText {
                fields: spec_fields,
                text: text.clone(),
            });
            continue;
        }
        check_dates(schema, &input.ty, value, name)?;
        let operators = matches!(
            schema.get(named_type(&input.ty)).map(|t| &t.kind),
            Some(TypeDefKind::InputObject(_))
        );
        match value {
            ConstValue::Object(ops) if operators => {
                let (mut gte, mut gt, mut lte, mut lt) = (None, None, None, None);
                for (op, v) in ops {
                    if *v == ConstValue::Null {
                        continue;
                    }
                    match op.as_str() {
                        "eq" => out.push(Filter::Term {
                            field: field.clone(),
                            value: field_value(def, &field, v)?,
                        }),
                        "in" => out.push(Filter::In {
                            field: field.clone(),
                            values: list_values(def, &field, v)?,
                        }),
                        "prefix" => match v {
                            ConstValue::String(p) => out.push(Filter::Prefix {
                                field: field.clone(),
                                prefix: p.clone(),
                            }),
                            _ => return Err(bad_input(format!("`{name}.prefix` takes a string"))),
                        },
                        "match" => match v {
                            ConstValue::String(t) => out.push(Filter::FullText {
                                fields: vec![field.clone()],
                                text: t.clone(),
                            }),
                            _ => return Err(bad_input(format!("`{name}.match` takes a string"))),
                        },
                        "gte" => gte = Some(field_value(def, &field, v)?),
                        "gt" => gt = Some(field_value(def, &field, v)?),
                        "lte" => lte = Some(field_value(def, &field, v)?),
                        "lt" => lt = Some(field_value(def, &field, v)?),
                        other => return Err(bad_input(format!("unknown filter operator `{name}.{other}`"))),
                    }
                }
                if gte.is_some() || gt.is_some() || lte.is_some() || lt.is_some() {
                    out.push(Filter::Range {
                        field: field.clone(),
                        gte,
                        gt,
                        lte,
                        lt,
                    });
                }
            }
            ConstValue::List(_) => out.push(Filter::In {
                field: field.clone(),
                values: list_values(def, &field, &ids_as_strings(&input.ty, value))?,
            }),
            single => out.push(Filter::Term {
                field: field.clone(),
                value: field_value(def, &field, &ids_as_strings(&input.ty, single))?,
            }),
        }
    }
    Ok(())
}

/// A `Date` in a filter must be one (`2023-04-05`): the index compares
/// dates as text, so `2022-1-5` would be compared, not refused.
fn check_dates(
    schema: &Supergraph,
    ty: &async_graphql::parser::types::Type,
    value: &ConstValue,
    filter: &str,
) -> Result<(), FetchError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match value {
        ConstValue::List(items) => items.iter().try_for_each(|v| check_dates(schema, ty, v, filter)),
        ConstValue::Object(fields) => {
            let Some(defs) = schema.input_fields(named_type(ty)) else {
                return Ok(());
            };
            fields.iter().try_for_each(|(name, v)| match defs.get(name) {
                Some(def) => check_dates(schema, &def.ty, v, filter),
                None => Ok(()),
            })
        }
        ConstValue::String(s)
            if named_type(ty).as_str() == "Date" && time::Date::parse(s, &format).is_err() =>
        {
            Err(bad_input(format!(
                "filter `{filter}` takes dates written YYYY-MM-DD, got \"{s}\""
            )))
        }
        ConstValue::Null | ConstValue::String(_) => Ok(()),
        other if named_type(ty).as_str() == "Date" => Err(bad_input(format!(
            "filter `{filter}` takes dates written YYYY-MM-DD, got {other}"
        ))),
        _ => Ok(()),
    }
}

/// `ID` input accepts integer literals (spec §3.5.5): they name the same
/// entity as their decimal string, which is what the index holds.
fn ids_as_strings(ty: &async_graphql::parser::types::Type, value: &ConstValue) -> ConstValue {
    if named_type(ty).as_str() != "ID" {
        return value.clone();
    }
    match value {
        ConstValue::Number(n) => ConstValue::String(n.to_string()),
        ConstValue::List(items) => ConstValue::List(items.iter().map(|v| ids_as_strings(ty, v)).collect()),
        other => other.clone(),
    }
}

fn list_values(def: &IndexDef, field: &str, value: &ConstValue) -> Result<Vec<FieldValue>, FetchError> {
    match value {
        ConstValue::List(items) => items.iter().map(|v| field_value(def, field, v)).collect(),
        single => Ok(vec![field_value(def, field, single)?]),
    }
}

/// A hit as a node: its stored fields, its type and its entity id.
fn hit_node(hit: Hit) -> Value {
    let mut node = hit.document;
    node.remove(crate::search::VERSION_FIELD);
    node.remove(crate::search::ID_FIELD);
    if let Some((type_name, id)) = entity_of(&hit.id) {
        node.insert(search_key_alias(type_name).to_string(), Value::String(id));
        node.insert(SEARCH_TYPE_KEY.into(), Value::String(type_name.to_string()));
    }
    Value::Object(node)
}

/// The connection object. A page without edges has no `endCursor` to go on
/// from, so it never says `hasNextPage` (`first: 0` asks for `totalCount` only).
fn connection(edges: Vec<(String, Value)>, has_next: bool, has_previous: bool, total: Option<u64>) -> Value {
    let has_next = has_next && !edges.is_empty();
    let start = edges
        .first()
        .map(|(c, _)| Value::String(c.clone()))
        .unwrap_or(Value::Null);
    let end = edges
        .last()
        .map(|(c, _)| Value::String(c.clone()))
        .unwrap_or(Value::Null);
    json!({
        "totalCount": total,
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": start,
            "endCursor": end,
        },
        "edges": edges.into_iter().map(|(cursor, node)| json!({"cursor": cursor, "node": node})).collect::<Vec<_>>(),
    })
}

/// Runs a search fetch: the connection under the client's response key,
/// and why part of it is missing, if it is (a MERGE page served without
/// the fields another service failed to give).
pub(super) async fn run(
    ctx: &SearchContext,
    executor: &super::Executor,
    search: &SearchFetch,
    bindings: &[ArgBinding],
    vars: &Variables,
    headers: &reqwest::header::HeaderMap,
) -> Result<(Value, Option<String>), FetchError> {
    let schema = executor.schema();
    let def = schema.index(&search.index).ok_or_else(|| {
        from_search_error(SearchError::UnknownIndex {
            index: search.index.clone(),
        })
    })?;
    let mut client = read_query(schema, def, bindings, vars, search.counts)?;
    let (connection, degraded) = match ctx.strategy(&search.field) {
        Strategy::Index => (search_index(ctx, def, &mut client).await?, None),
        Strategy::Merge => merge(ctx, executor, def, &client, headers).await?,
    };
    let mut data = Map::new();
    data.insert(search.response_key.to_string(), connection);
    Ok((Value::Object(data), degraded))
}

async fn search_index(
    ctx: &SearchContext,
    def: &IndexDef,
    client: &mut ClientQuery,
) -> Result<Value, FetchError> {
    ctx.ensure_built(&def.name).await?;
    if let Some(cursor) = &client.after {
        let position = ctx
            .codec
            .decode(cursor, &def.name, &client.query)
            .map_err(|e| bad_input(e.to_string()))?;
        client.query.page = Page::After {
            first: client.first + 1,
            after: Some(position),
        };
    }
    let result = ctx
        .backend
        .search(&def.name, &client.query)
        .await
        .map_err(from_search_error)?;
    // Pages ask for one hit more than they show; at the end of the offset
    // window there is no room for it, and only the count can tell.
    let has_next = match (client.offset, result.total) {
        (Some(offset), Some(total)) => (offset + client.first) < usize::try_from(total).unwrap_or(usize::MAX),
        _ => result.hits.len() > client.first,
    };
    let has_previous = client.after.is_some() || client.offset.is_some_and(|o| o > 0);
    let edges = result
        .hits
        .into_iter()
        .take(client.first)
        .map(|hit| {
            let cursor = ctx.codec.encode(&def.name, &client.query, &hit.position);
            (cursor, hit_node(hit))
        })
        .collect();
    Ok(connection(edges, has_next, has_previous, result.total))
}

/// Where a MERGE source's next page starts, sealed in every cursor.
#[derive(Debug, Clone, PartialEq)]
enum SourcePosition {
    /// Rows already seen, for a source that can only page by offset.
    Offset(usize),
    /// After the last row seen (sort value as the service wrote it, id),
    /// for a source that can bound its sort field: a row added or deleted
    /// before it shifts nothing. `ties`: rows seen with that same value.
    After { value: String, id: String, ties: usize },
}

impl SourcePosition {
    fn start() -> Self {
        SourcePosition::Offset(0)
    }

    fn encode(&self, out: &mut Vec<FieldValue>) {
        let as_i64 = |n: usize| FieldValue::I64(i64::try_from(n).unwrap_or(i64::MAX));
        match self {
            SourcePosition::Offset(n) => {
                out.extend([FieldValue::I64(0), as_i64(*n), FieldValue::Null, FieldValue::Null])
            }
            SourcePosition::After { value, id, ties } => out.extend([
                FieldValue::I64(1),
                as_i64(*ties),
                FieldValue::Str(value.clone()),
                FieldValue::Str(id.clone()),
            ]),
        }
    }

    fn decode(values: &[FieldValue]) -> Option<Self> {
        let count = |v: &FieldValue| match v {
            FieldValue::I64(i) => usize::try_from(*i).ok(),
            _ => None,
        };
        match values {
            [FieldValue::I64(0), n, FieldValue::Null, FieldValue::Null] => {
                Some(SourcePosition::Offset(count(n)?))
            }
            [FieldValue::I64(1), ties, FieldValue::Str(value), FieldValue::Str(id)] => {
                Some(SourcePosition::After {
                    value: value.clone(),
                    id: id.clone(),
                    ties: count(ties)?,
                })
            }
            _ => None,
        }
    }
}

/// Values per source in a MERGE cursor.
const POSITION_VALUES: usize = 4;
/// Asks per source for one MERGE page. One is the rule; another is needed
/// only when rows were added at the position's own sort value.
const MAX_MERGE_ROUNDS: usize = 8;

/// One source's rows for a MERGE page, in the source's order, strictly
/// after its position.
struct SourceRows<'d> {
    source: &'d IndexSource,
    slot: usize,
    rows: Vec<Map<String, Value>>,
    /// The source may hold more rows after `rows`.
    more: bool,
}

/// The arguments that ask a source for the page after `position`: limit,
/// offset, order and (keyed) the inclusive bound on the sort field.
fn page_args(
    m: &crate::schema::MergeSource,
    descending: bool,
    position: &SourcePosition,
    limit: usize,
    skip: usize,
) -> String {
    let order_args = if descending { &m.desc } else { &m.asc };
    let mut args = format!("{}:{limit}", m.limit_arg);
    let offset = match position {
        SourcePosition::Offset(n) => n + skip,
        SourcePosition::After { value, .. } => {
            let bound = if descending { &m.lte_arg } else { &m.gte_arg };
            if let Some(bound) = bound {
                args.push_str(&format!(",{bound}:{}", Value::String(value.clone())));
            }
            skip
        }
    };
    args.push_str(&format!(",{}:{offset}", m.offset_arg));
    for (name, value) in order_args {
        args.push_str(&format!(",{name}:{value}"));
    }
    args
}

/// The fields a MERGE node is served from: those copied from the entity,
/// and (`with_paths`) denormalized ones the entity exposes with the same
/// `@from` path, which other services answer.
fn merge_selection(schema: &Supergraph, source: &IndexSource, with_paths: bool) -> String {
    let mut selection = String::from("id");
    for f in source.fields.iter().filter(|f| {
        f.path.is_none()
            || with_paths && matches!(
                schema.field(&source.entity, &f.name).map(|e| &e.resolver),
                Some(crate::schema::Resolver::Path { relation, leaf, .. })
                    if f.reduce.is_none() && f.path.as_deref() == Some(&[relation.clone(), leaf.clone()][..])
            )
    }) {
        selection.push(' ');
        selection.push_str(&f.name);
    }
    selection
}

/// The client's forwarded headers go to the sources, as for any other fetch.
async fn merge(
    ctx: &SearchContext,
    executor: &super::Executor,
    def: &IndexDef,
    client: &ClientQuery,
    headers: &reqwest::header::HeaderMap,
) -> Result<(Value, Option<String>), FetchError> {
    if client.offset.is_some() {
        return Err(bad_input(
            "the MERGE strategy pages by cursor only (`first`/`after`), not by `page`",
        ));
    }
    // Which sources: all, or those a `_type` filter names.
    let mut types: Option<Vec<String>> = None;
    for filter in &client.query.filters {
        match filter {
            Filter::Term { field, value } if field == TYPE_FIELD => types = Some(vec![value_str(value)]),
            Filter::In { field, values } if field == TYPE_FIELD => {
                types = Some(values.iter().map(value_str).collect())
            }
            other => {
                return Err(bad_input(format!(
                    "this field is answered by merging its sources (strategy MERGE), which can only filter by type; {} needs the search index",
                    describe_filter(other)
                )))
            }
        }
    }
    let sort_key =
        match client.query.sort.as_slice() {
            [key, tiebreak]
                if tiebreak.field == crate::search::ID_FIELD && tiebreak.descending == key.descending =>
            {
                key
            }
            _ => return Err(bad_input(
                "the MERGE strategy sorts by one field (the sources' own order); drop the other sort keys",
            )),
        };
    let merge_name = format!("{}#merge", def.name);
    let mut positions: Vec<SourcePosition> = match &client.after {
        None => vec![SourcePosition::start(); def.sources.len()],
        Some(cursor) => {
            let position = ctx
                .codec
                .decode(cursor, &merge_name, &client.query)
                .map_err(|e| bad_input(e.to_string()))?;
            if position.values.len() != def.sources.len() * POSITION_VALUES {
                return Err(bad_input(
                    "the cursor does not fit this field; start again without a cursor",
                ));
            }
            position
                .values
                .chunks(POSITION_VALUES)
                .map(|v| SourcePosition::decode(v).ok_or_else(|| bad_input("bad cursor position")))
                .collect::<Result<_, _>>()?
        }
    };

    let schema = executor.schema();
    let mut active = Vec::new();
    for (slot, source) in def.sources.iter().enumerate() {
        if types
            .as_ref()
            .is_some_and(|t| !t.iter().any(|t| t == source.entity.as_str()))
        {
            continue;
        }
        let Some(m) = &source.merge else {
            return Err(bad_input(format!(
                "{} has no @mergeSource, so this field cannot be answered without the index",
                source.doc_type
            )));
        };
        if m.sort_field.as_str() != sort_key.field {
            return Err(bad_input(format!(
                "the MERGE strategy can only sort by `{}`",
                m.sort_field
            )));
        }
        if let Some(max) = m.max_limit {
            if client.first >= max {
                return Err(bad_input(format!(
                    "without the index (strategy MERGE) a page holds at most {} items; ask for fewer with `first`",
                    max.saturating_sub(1)
                )));
            }
        }
        active.push((slot, source, m));
    }

    // Each source's rows strictly after its position: one unified query for
    // every source's page and count (one request per service); a keyed
    // source whose page was all rows already seen is asked again further on.
    let fetch = |requests: Vec<(usize, String, String)>, counts: bool, with_paths: bool| {
        let asks_nothing = requests.is_empty() && !counts;
        let mut text = String::from("{");
        for (slot, field, args) in &requests {
            let selection = merge_selection(schema, &def.sources[*slot], with_paths);
            text.push_str(&format!(" items{slot}:{field}({args}){{{selection}}}"));
        }
        if counts {
            for (slot, _, m) in &active {
                if let Some(count) = &m.count_field {
                    text.push_str(&format!(" count{slot}:{count}"));
                }
            }
        }
        text.push('}');
        async move {
            if asks_nothing {
                return Ok(Map::new());
            }
            executor
                .query_value(&text, headers)
                .await
                .map_err(|e| FetchError::Source {
                    message: format!("merging the sources failed: {}", e.message),
                    code: e.code,
                    subgraph: e.subgraph,
                    transient: e.transient,
                })
        }
    };
    let source_subgraphs: Vec<&str> = active
        .iter()
        .filter_map(|(_, source, _)| schema.object(&source.entity)?.owner.as_ref())
        .map(|owner| owner.subgraph.as_str())
        .collect();
    let mut with_paths = true;
    let mut degraded = None;
    let wanted = client.first + 1;
    let mut sources: Vec<SourceRows> = active
        .iter()
        .map(|(slot, source, _)| SourceRows {
            source,
            slot: *slot,
            rows: Vec::new(),
            more: true,
        })
        .collect();
    // Rows each source returned so far this page (offset of the next ask).
    let mut returned = vec![0usize; sources.len()];
    let mut total: Option<u64> = active.is_empty().then_some(0);
    for round in 0..MAX_MERGE_ROUNDS {
        let mut requests = Vec::new();
        let mut limits = HashMap::new();
        for (i, (slot, _, m)) in active.iter().enumerate() {
            if !sources[i].more || sources[i].rows.len() >= wanted {
                continue;
            }
            // Rows at the position's own value come back again: ask for them too.
            let ties = match &positions[*slot] {
                SourcePosition::After { ties, .. } if round == 0 => *ties,
                _ => 0,
            };
            let limit = (wanted - sources[i].rows.len() + ties).min(m.max_limit.unwrap_or(usize::MAX));
            requests.push((
                *slot,
                m.field.clone(),
                page_args(m, sort_key.descending, &positions[*slot], limit, returned[i]),
            ));
            limits.insert(*slot, limit);
        }
        if requests.is_empty() && total.is_some() {
            break;
        }
        let mut data = match fetch(requests.clone(), total.is_none(), with_paths).await {
            Ok(data) => data,
            // A service that only a denormalized field reads (a post's
            // author's name) failed: the page is served without those
            // fields, with one error, rather than not at all.
            Err(FetchError::Source {
                message,
                subgraph: Some(subgraph),
                ..
            }) if with_paths && !source_subgraphs.contains(&subgraph.as_str()) => {
                with_paths = false;
                degraded = Some(format!(
                    "fields read from other services are null on this page ({message})"
                ));
                fetch(requests, total.is_none(), false).await?
            }
            Err(e) => return Err(e),
        };
        if total.is_none() {
            let counts: Option<Vec<u64>> = active
                .iter()
                .map(|(slot, _, _)| data.get(&format!("count{slot}")).and_then(Value::as_u64))
                .collect();
            total = Some(counts.map_or(u64::MAX, |c| c.iter().sum()));
        }
        for (i, (slot, source, _)) in active.iter().enumerate() {
            let Some(limit) = limits.get(slot) else { continue };
            let rows: Vec<Map<String, Value>> = match data.remove(&format!("items{slot}")) {
                Some(Value::Array(rows)) => rows
                    .into_iter()
                    .filter_map(|r| match r {
                        Value::Object(o) => Some(o),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            returned[i] += rows.len();
            sources[i].more = rows.len() >= *limit;
            let position = &positions[*slot];
            sources[i]
                .rows
                .extend(rows.into_iter().filter(|row| match position {
                    SourcePosition::Offset(_) => true,
                    SourcePosition::After { value, id, .. } => {
                        let last = (
                            sort_value(Some(&Value::String(value.clone()))),
                            document_id(&source.entity, id),
                        );
                        let ord = compare_keys(&row_key(source, row, &sort_key.field), &last);
                        if sort_key.descending {
                            ord == Ordering::Less
                        } else {
                            ord == Ordering::Greater
                        }
                    }
                }));
        }
    }
    let total = total.filter(|t| *t != u64::MAX);

    // k-way merge by (sort value, document id), both in the sort direction.
    let mut cursors: Vec<usize> = vec![0; sources.len()];
    let mut edges = Vec::with_capacity(client.first);
    while edges.len() < client.first {
        let mut best: Option<(usize, (FieldValue, String))> = None;
        for (i, s) in sources.iter().enumerate() {
            let Some(row) = s.rows.get(cursors[i]) else {
                continue;
            };
            let key = row_key(s.source, row, &sort_key.field);
            let better = match &best {
                None => true,
                Some((_, b)) => {
                    let ord = compare_keys(&key, b);
                    if sort_key.descending {
                        ord == Ordering::Greater
                    } else {
                        ord == Ordering::Less
                    }
                }
            };
            if better {
                best = Some((i, key));
            }
        }
        let Some((i, _)) = best else { break };
        let s = &sources[i];
        let row = &s.rows[cursors[i]];
        cursors[i] += 1;
        let id = row.get("id").map(json_id).unwrap_or_default();
        let keyed = s.source.merge.as_ref().is_some_and(|m| {
            if sort_key.descending {
                m.lte_arg.is_some()
            } else {
                m.gte_arg.is_some()
            }
        });
        let next = match &positions[s.slot] {
            _ if keyed => {
                let value = match row.get(sort_key.field.as_str()) {
                    Some(Value::String(v)) => v.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let ties = match &positions[s.slot] {
                    SourcePosition::After {
                        value: last, ties, ..
                    } if *last == value => ties + 1,
                    _ => 1,
                };
                SourcePosition::After {
                    value,
                    id: id.clone(),
                    ties,
                }
            }
            SourcePosition::Offset(n) => SourcePosition::Offset(n + 1),
            SourcePosition::After { .. } => SourcePosition::Offset(1),
        };
        positions[s.slot] = next;
        let mut node = row.clone();
        node.insert(search_key_alias(&s.source.entity).to_string(), Value::String(id));
        node.insert(SEARCH_TYPE_KEY.into(), Value::String(s.source.entity.to_string()));
        let mut values = Vec::with_capacity(positions.len() * POSITION_VALUES);
        positions.iter().for_each(|p| p.encode(&mut values));
        let cursor = ctx.codec.encode(
            &merge_name,
            &client.query,
            &SortPosition {
                values,
                id: "merge".into(),
            },
        );
        edges.push((cursor, Value::Object(node)));
    }
    let has_next = sources
        .iter()
        .enumerate()
        .any(|(i, s)| s.rows.len() > cursors[i] || (s.more && s.rows.len() < wanted));
    Ok((
        connection(edges, has_next, client.after.is_some(), total),
        degraded,
    ))
}

/// A row's place in the merge: its sort value and document id.
fn row_key(source: &IndexSource, row: &Map<String, Value>, sort_field: &str) -> (FieldValue, String) {
    let value = sort_value(row.get(sort_field));
    let id = row.get("id").map(json_id).unwrap_or_default();
    (value, document_id(&source.entity, &id))
}

fn value_str(v: &FieldValue) -> String {
    match v {
        FieldValue::Str(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn describe_filter(f: &Filter) -> String {
    match f {
        Filter::Term { field, .. }
        | Filter::In { field, .. }
        | Filter::Range { field, .. }
        | Filter::Prefix { field, .. } => format!("a filter on `{field}`"),
        Filter::FullText { .. } => "full-text search".into(),
    }
}

fn json_id(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A sort value as the index compares it: timestamps as milliseconds.
fn sort_value(v: Option<&Value>) -> FieldValue {
    match v {
        None | Some(Value::Null) => FieldValue::Null,
        Some(Value::String(s)) => match crate::search::spec::parse_datetime_millis(s) {
            Some(ms) => FieldValue::I64(ms),
            None => FieldValue::Str(s.clone()),
        },
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => FieldValue::I64(i),
            None => FieldValue::F64(n.as_f64().unwrap_or(0.0)),
        },
        Some(Value::Bool(b)) => FieldValue::Bool(*b),
        Some(other) => FieldValue::Str(other.to_string()),
    }
}

fn compare_keys(a: &(FieldValue, String), b: &(FieldValue, String)) -> Ordering {
    let by_value = match (&a.0, &b.0) {
        (FieldValue::I64(x), FieldValue::I64(y)) => x.cmp(y),
        (FieldValue::F64(x), FieldValue::F64(y)) => x.total_cmp(y),
        (FieldValue::Str(x), FieldValue::Str(y)) => x.cmp(y),
        (FieldValue::Bool(x), FieldValue::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    };
    by_value.then_with(|| a.1.cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After an idle spell the stored stamp of another writer is read
    /// again before it is reported: it was reported as old as the spell.
    #[tokio::test]
    async fn the_last_applied_change_of_another_writer_is_fresh_after_an_idle_spell() {
        use crate::search::{OpenSearchBackend, OpenSearchOptions};
        let Some(url) = crate::search::conformance::opensearch_url() else {
            return;
        };
        let options = OpenSearchOptions {
            url,
            index_prefix: crate::search::conformance::unique_prefix(),
            replicas: 0,
            ..OpenSearchOptions::default()
        };
        let writer = |options: &OpenSearchOptions| OpenSearchBackend::new(options.clone()).expect("backend");
        let first = writer(&options);
        first
            .create_index(&crate::search::testkit::spec(), "c_v1")
            .await
            .expect("index");
        first.point_alias("c", "c_v1").await.expect("alias");
        let doc = |id: &str| {
            serde_json::json!({"id": id, "_version": 1})
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        first.upsert("c", vec![doc("a")]).await.expect("write");
        let ctx = SearchContext::new(Arc::new(writer(&options)), b"secret", HashMap::new());
        let before = ctx.last_applied("c").await.expect("a stamp");
        tokio::time::sleep(APPLIED_STALE + Duration::from_millis(500)).await;
        writer(&options).upsert("c", vec![doc("b")]).await.expect("write");
        let after = ctx.last_applied("c").await.expect("a stamp");
        assert!(
            after.duration_since(before).unwrap_or_default() >= APPLIED_STALE,
            "{before:?} then {after:?}"
        );
    }

    #[test]
    fn enum_values_become_field_names() {
        assert_eq!(camel_case("MANAGER_NAME"), "managerName");
        assert_eq!(camel_case("ID"), "id");
        assert_eq!(camel_case("CREATED_AT"), "createdAt");
    }
}
