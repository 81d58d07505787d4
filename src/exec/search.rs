//! Search fields at run time: client arguments → a backend-neutral
//! [`SearchQuery`], the backend's hits → a Relay connection whose nodes the
//! plan hydrates; and the `MERGE` strategy, which answers the same field
//! from the index's sources without the index (k-way merge of per-source
//! sorted pages, every source's offset sealed in the cursor).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql_value::{ConstValue, Name};
use serde_json::{json, Map, Value};

use super::input::Variables;
use super::FetchError;
use crate::plan::{search_key_alias, ArgBinding, SearchFetch, SEARCH_TYPE_KEY};
use crate::schema::{named_type, IndexDef, IndexSource, Reduce, Supergraph, TypeDefKind};
use crate::search::{
    CursorCodec, FieldKind, FieldSpec, FieldValue, Filter, Hit, IndexSpec, Page, SearchBackend, SearchError,
    SearchQuery, SortKey, SortPosition, MAX_OFFSET_WINDOW, TYPE_FIELD,
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
}

impl SearchContext {
    /// `strategies` maps root field names to their strategy (default `Index`).
    pub fn new(
        backend: Arc<dyn SearchBackend>,
        cursor_secret: u64,
        strategies: HashMap<String, Strategy>,
    ) -> Self {
        Self {
            backend,
            codec: CursorCodec::new(cursor_secret),
            strategies,
        }
    }

    pub fn strategy(&self, field: &str) -> Strategy {
        self.strategies.get(field).copied().unwrap_or(Strategy::Index)
    }
}

/// The backend spec of an index: every document type's fields, plus `_type`.
pub fn index_spec(def: &IndexDef, schema: &Supergraph) -> IndexSpec {
    let mut fields: Vec<FieldSpec> = Vec::new();
    let mut seen = HashSet::new();
    for source in &def.sources {
        for f in &source.fields {
            if !seen.insert(f.name.clone()) {
                continue;
            }
            let kind = match (f.reduce, f.type_name.as_str()) {
                (Some(Reduce::Count), _) => FieldKind::I64,
                (Some(Reduce::Sum), "Int") => FieldKind::I64,
                (Some(Reduce::Sum), _) => FieldKind::F64,
                (None, "String") if f.searchable => FieldKind::Text,
                (None, "Int") => FieldKind::I64,
                (None, "Float") => FieldKind::F64,
                (None, "Boolean") => FieldKind::Bool,
                (None, "DateTime") => FieldKind::DateTime,
                // ID, String, enums, Date (ISO dates sort as text), Decimal strings.
                _ => FieldKind::Keyword,
            };
            let _ = schema;
            fields.push(FieldSpec {
                name: f.name.to_string(),
                kind,
                searchable: f.searchable,
                filterable: f.filterable,
                sortable: f.sortable,
                stored: true,
            });
        }
    }
    fields.push(FieldSpec::new(TYPE_FIELD, FieldKind::Keyword).filterable());
    IndexSpec::new(def.name.clone(), fields)
}

/// The document id of entity `id` of `type_name`: `Contract:00000000000000000042`.
/// Numeric ids are zero-padded so that the id order (the final tiebreaker)
/// is the numeric order every legacy service sorts by.
pub fn document_id(type_name: &str, id: &str) -> String {
    if !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        format!("{type_name}:{id:0>20}")
    } else {
        format!("{type_name}:{id}")
    }
}

/// The entity type and id behind a document id.
pub fn entity_of(doc_id: &str) -> Option<(&str, String)> {
    let (type_name, id) = doc_id.split_once(':')?;
    if id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        let trimmed = id.trim_start_matches('0');
        Some((
            type_name,
            if trimmed.is_empty() {
                "0".into()
            } else {
                trimmed.into()
            },
        ))
    } else {
        Some((type_name, id.to_string()))
    }
}

fn bad_input(message: impl Into<String>) -> FetchError {
    FetchError::Search {
        message: message.into(),
        code: "BAD_USER_INPUT",
    }
}

fn from_search_error(e: SearchError) -> FetchError {
    if e.is_client_error() {
        bad_input(e.to_string())
    } else {
        FetchError::Search {
            message: e.to_string(),
            code: "SEARCH_BACKEND_ERROR",
        }
    }
}

/// The search field's arguments, variables substituted (unset variables and
/// explicit nulls are absent).
fn arguments(bindings: &[ArgBinding], vars: &Variables) -> HashMap<String, ConstValue> {
    let mut out = HashMap::new();
    for b in bindings {
        let value = b
            .value
            .clone()
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
            out.insert(b.var.clone(), value);
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
) -> Result<ClientQuery, FetchError> {
    let args = arguments(bindings, vars);
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
    if let Some(order) = args.get("orderBy") {
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
    Ok(ClientQuery {
        query: SearchQuery { filters, sort, page },
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
                values: list_values(def, &field, value)?,
            }),
            single => out.push(Filter::Term {
                field: field.clone(),
                value: field_value(def, &field, single)?,
            }),
        }
    }
    Ok(())
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

fn connection(edges: Vec<(String, Value)>, has_next: bool, has_previous: bool, total: Option<u64>) -> Value {
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

/// Runs a search fetch: the connection under the client's response key.
pub(super) async fn run(
    ctx: &SearchContext,
    executor: &super::Executor,
    search: &SearchFetch,
    bindings: &[ArgBinding],
    vars: &Variables,
    headers: &reqwest::header::HeaderMap,
) -> Result<Value, FetchError> {
    let schema = executor.schema();
    let def = schema.index(&search.index).ok_or_else(|| {
        from_search_error(SearchError::UnknownIndex {
            index: search.index.clone(),
        })
    })?;
    let mut client = read_query(schema, def, bindings, vars)?;
    let connection = match ctx.strategy(&search.field) {
        Strategy::Index => search_index(ctx, def, &mut client).await?,
        Strategy::Merge => merge(ctx, executor, def, &client, headers).await?,
    };
    let mut data = Map::new();
    data.insert(search.response_key.to_string(), connection);
    Ok(Value::Object(data))
}

async fn search_index(
    ctx: &SearchContext,
    def: &IndexDef,
    client: &mut ClientQuery,
) -> Result<Value, FetchError> {
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
    let has_next = match client.offset {
        Some(offset) => (offset + client.first) < usize::try_from(result.total).unwrap_or(usize::MAX),
        None => result.hits.len() > client.first,
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
    Ok(connection(edges, has_next, has_previous, Some(result.total)))
}

/// One source's rows for a MERGE page, in the source's order.
struct SourceRows<'d> {
    source: &'d IndexSource,
    slot: usize,
    rows: Vec<Map<String, Value>>,
}

/// The client's forwarded headers go to the sources, as for any other fetch.
async fn merge(
    ctx: &SearchContext,
    executor: &super::Executor,
    def: &IndexDef,
    client: &ClientQuery,
    headers: &reqwest::header::HeaderMap,
) -> Result<Value, FetchError> {
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
    let offsets: Vec<usize> = match &client.after {
        None => vec![0; def.sources.len()],
        Some(cursor) => {
            let position = ctx
                .codec
                .decode(cursor, &merge_name, &client.query)
                .map_err(|e| bad_input(e.to_string()))?;
            if position.values.len() != def.sources.len() {
                return Err(bad_input(
                    "the cursor does not fit this field; start again without a cursor",
                ));
            }
            position
                .values
                .iter()
                .map(|v| match v {
                    FieldValue::I64(i) => usize::try_from(*i).map_err(|_| bad_input("bad cursor position")),
                    _ => Err(bad_input("bad cursor position")),
                })
                .collect::<Result<_, _>>()?
        }
    };

    // One unified query for every source's page and count: one request per service.
    let mut text = String::from("{");
    let mut active = Vec::new();
    let mut counts_known = true;
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
        let order_args = if sort_key.descending { &m.desc } else { &m.asc };
        let mut args = format!(
            "{}:{},{}:{}",
            m.limit_arg,
            client.first + 1,
            m.offset_arg,
            offsets[slot]
        );
        for (name, value) in order_args {
            args.push_str(&format!(",{name}:{value}"));
        }
        // The fields a node is served from: those copied from the entity,
        // and denormalized ones the entity exposes with the same `@from` path.
        let schema = executor.schema();
        let mut selection = String::from("id");
        for f in source.fields.iter().filter(|f| {
            f.path.is_none()
                || matches!(
                    schema.field(&source.entity, &f.name).map(|e| &e.resolver),
                    Some(crate::schema::Resolver::Path { relation, leaf, .. })
                        if f.reduce.is_none() && f.path.as_deref() == Some(&[relation.clone(), leaf.clone()][..])
                )
        }) {
            selection.push(' ');
            selection.push_str(&f.name);
        }
        text.push_str(&format!(" items{slot}:{}({args}){{{selection}}}", m.field));
        match &m.count_field {
            Some(count) => text.push_str(&format!(" count{slot}:{count}")),
            None => counts_known = false,
        }
        active.push(slot);
    }
    text.push('}');
    let data = if active.is_empty() {
        Map::new()
    } else {
        executor
            .query_value(&text, headers)
            .await
            .map_err(|message| FetchError::Search {
                message: format!("merging the sources failed: {message}"),
                code: "DOWNSTREAM_SERVICE_ERROR",
            })?
    };
    let mut sources: Vec<SourceRows> = Vec::new();
    let mut total: u64 = 0;
    for slot in active {
        let rows = match data.get(&format!("items{slot}")) {
            Some(Value::Array(rows)) => rows.iter().filter_map(|r| r.as_object().cloned()).collect(),
            _ => Vec::new(),
        };
        total += data
            .get(&format!("count{slot}"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        sources.push(SourceRows {
            source: &def.sources[slot],
            slot,
            rows,
        });
    }

    // k-way merge by (sort value, document id), both in the sort direction.
    let key_of = |s: &SourceRows, row: &Map<String, Value>| -> (FieldValue, String) {
        let value = sort_value(row.get(sort_key.field.as_str()));
        let id = row.get("id").map(json_id).unwrap_or_default();
        (value, document_id(&s.source.entity, &id))
    };
    let mut cursors: Vec<usize> = vec![0; sources.len()];
    let mut position = offsets.clone();
    let mut edges = Vec::with_capacity(client.first);
    while edges.len() < client.first {
        let mut best: Option<(usize, (FieldValue, String))> = None;
        for (i, s) in sources.iter().enumerate() {
            let Some(row) = s.rows.get(cursors[i]) else {
                continue;
            };
            let key = key_of(s, row);
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
        position[s.slot] += 1;
        let mut node = row.clone();
        let id = row.get("id").map(json_id).unwrap_or_default();
        node.insert(search_key_alias(&s.source.entity).to_string(), Value::String(id));
        node.insert(SEARCH_TYPE_KEY.into(), Value::String(s.source.entity.to_string()));
        let cursor = ctx.codec.encode(
            &merge_name,
            &client.query,
            &SortPosition {
                values: position
                    .iter()
                    .map(|p| FieldValue::I64(i64::try_from(*p).unwrap_or(i64::MAX)))
                    .collect(),
                id: "merge".into(),
            },
        );
        edges.push((cursor, Value::Object(node)));
    }
    let has_next = sources.iter().enumerate().any(|(i, s)| s.rows.len() > cursors[i]);
    Ok(connection(
        edges,
        has_next,
        client.after.is_some(),
        counts_known.then_some(total),
    ))
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

    #[test]
    fn document_ids_pad_numbers_and_round_trip() {
        assert_eq!(document_id("Post", "42"), "Post:00000000000000000042");
        assert_eq!(
            entity_of("Post:00000000000000000042"),
            Some(("Post", "42".into()))
        );
        assert_eq!(entity_of("Post:00000000000000000000"), Some(("Post", "0".into())));
        assert_eq!(document_id("Member", "abc"), "Member:abc");
        assert_eq!(entity_of("Member:abc"), Some(("Member", "abc".into())));
        assert!(document_id("P", "9") < document_id("P", "10"));
    }

    #[test]
    fn enum_values_become_field_names() {
        assert_eq!(camel_case("MANAGER_NAME"), "managerName");
        assert_eq!(camel_case("ID"), "id");
        assert_eq!(camel_case("CREATED_AT"), "createdAt");
    }
}
