//! Writes the client's JSON response in one synchronous pass over the fetched
//! subgraph data, following the plan's projection: aliases, `__typename`,
//! abstract types, ID and Relay id conversion, and spec null propagation (a
//! null in a non-null position nulls the nearest nullable ancestor; the
//! buffer is rewound to where that ancestor's value began).

use std::collections::HashSet;

use async_graphql::parser::types::{BaseType, Type};

use super::error::{ErrorCode, GraphQLError, PathSegment, SubgraphError};
use super::input::Variables;
use super::keys;
use super::run::{FetchResult, Found, Run};
use super::tape::{Fields, Held, Node, Number};
use crate::plan::{
    FieldKind, FieldNode, MergePart, ParentKey, RootSource, Scalar, SelectionSet, TypeNames, SEARCH_TYPE_KEY,
};

/// A value that must not be null was null: its parent has to become null.
struct Bubble;

/// A value to complete: a value of an answer, or the rows a join found
/// (kept where they came, possibly in several answers).
#[derive(Clone, Copy)]
enum Val<'a> {
    Node(Node<'a>),
    Rows(&'a [Held]),
}

impl<'a> Val<'a> {
    fn null() -> Val<'static> {
        Val::Node(Node::null())
    }

    fn empty_list() -> Val<'static> {
        Val::Rows(&[])
    }

    fn is_null(self) -> bool {
        matches!(self, Val::Node(n) if n.is_null())
    }

    /// The items of a list, `None` for any other value.
    fn items(self) -> Option<ListItems<'a>> {
        match self {
            Val::Node(n) if n.is_array() => Some(ListItems::Array(n.items())),
            Val::Node(_) => None,
            Val::Rows(rows) => Some(ListItems::Rows(rows.iter())),
        }
    }
}

enum ListItems<'a> {
    Array(super::tape::Items<'a>),
    Rows(std::slice::Iter<'a, Held>),
}

impl<'a> Iterator for ListItems<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        match self {
            ListItems::Array(items) => items.next(),
            ListItems::Rows(rows) => rows.next().map(Held::node),
        }
    }
}

/// Order of merged items: numbers by value, strings (RFC 3339 timestamps
/// included) lexicographically, nulls (and absent values) last.
fn compare_json(a: Option<Node<'_>>, b: Option<Node<'_>>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let a = a.filter(|n| !n.is_null());
    let b = b.filter(|n| !n.is_null());
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Greater,
        (_, None) => Ordering::Less,
        (Some(a), Some(b)) => match (a.as_number(), b.as_number(), a.as_str(), b.as_str()) {
            (Some(x), Some(y), _, _) => x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal),
            (_, _, Some(x), Some(y)) => x.cmp(y),
            _ => Ordering::Equal,
        },
    }
}

pub struct Projector<'a, 'r> {
    run: &'a Run<'r>,
    variables: &'a Variables,
    out: Vec<u8>,
    path: Vec<PathSegment>,
    pub errors: Vec<GraphQLError>,
    /// Paths already carrying an error, so a null there adds no second one.
    error_paths: HashSet<Vec<PathSegment>>,
    /// `(path, message)` of the entity errors recorded: each once, found in
    /// one lookup (a subgraph sending many errors made this quadratic).
    entity_errors_seen: HashSet<(Option<Vec<PathSegment>>, String)>,
    /// Search hits left out because their entity is gone: `(type, id)`.
    gone: Vec<(String, String)>,
    /// Keyed fetches whose failure has been reported.
    /// Failed fetches already reported, with where: a fetch merged from
    /// sibling fields fails each of them, reported at each one's place.
    failed_fetches: HashSet<(usize, Vec<PathSegment>)>,
    /// The entity the last hydrated field found: `(fetch, parent object,
    /// entity)`. Several fields of one object read the same entity; its key
    /// (a representation, for Federation) is built and looked up once.
    last_entity: Option<LastEntity<'a>>,
    /// The objects being written, outermost first, each with the length
    /// of the path where it is: a [`FieldKind::Nested`] field reads its
    /// entity by the key of one of them.
    objects: Vec<(Node<'a>, usize)>,
}

/// `(fetch, the parent object it was found for, the entity, its errors)`.
type LastEntity<'a> = (usize, super::tape::Identity, Fields<'a>, &'a [SubgraphError]);

/// What the current field is to an entity a keyed fetch found: the entity
/// itself, or one of its fields (by the key it has in the entity).
#[derive(Clone, Copy)]
enum Reads<'k> {
    /// The current field is the entity; with the selection it reads, when
    /// the fetch may hold other fields' too (merged from sibling fields).
    Entity(Option<&'k SelectionSet>),
    Field(&'k str),
    /// The caller places the entity's errors itself (a `@merge` item's
    /// place is known only once the parts are sorted).
    Later,
}

/// What the projection wrote.
pub struct Projected {
    pub data: Vec<u8>,
    pub errors: Vec<GraphQLError>,
    /// Search hits left out because their entity is gone: `(type, id)`.
    pub gone: Vec<(String, String)>,
}

impl<'a, 'r> Projector<'a, 'r> {
    pub fn new(run: &'a Run<'r>, variables: &'a Variables, capacity: usize) -> Self {
        Self {
            run,
            variables,
            out: Vec::with_capacity(capacity),
            path: Vec::new(),
            errors: Vec::new(),
            error_paths: HashSet::new(),
            entity_errors_seen: HashSet::new(),
            gone: Vec::new(),
            failed_fetches: HashSet::new(),
            last_entity: None,
            objects: Vec::new(),
        }
    }

    /// Writes `data` (an object, or `null` when a non-null root field failed).
    /// `introspection` holds async-graphql's answer for `__schema`/`__type`.
    pub fn write_data(mut self, introspection: Option<&super::Introspection>) -> Projected {
        let start = self.out.len();
        if self.write_root(introspection).is_err() {
            self.out.truncate(start);
            self.out.extend_from_slice(b"null");
        }
        Projected {
            data: self.out,
            errors: self.errors,
            gone: self.gone,
        }
    }

    fn write_root(&mut self, introspection: Option<&super::Introspection>) -> Result<(), Bubble> {
        let run = self.run;
        // Errors a subgraph reported for its root fields: their paths are the
        // client's, since root fetches use the client's response keys.
        for (id, result) in run.results.iter().enumerate() {
            if let Some(FetchResult::Root(_, errors)) = result.get() {
                let subgraph = run.plan.fetches[id].query().map(|q| q.subgraph.as_str());
                for raw in errors {
                    let error = SubgraphError {
                        message: raw.message.clone(),
                        path: raw.path.clone().unwrap_or_default(),
                        extensions: raw.extensions.clone().unwrap_or_default(),
                    };
                    // An error about the whole request belongs to every root field it served.
                    let bases: Vec<Vec<PathSegment>> = if error.path.is_empty() {
                        run.plan
                            .output
                            .iter()
                            .filter(|r| {
                                matches!(r.source, RootSource::Fetch(f) if f == id)
                                    || has_sibling(&r.node, id)
                            })
                            .map(|r| vec![PathSegment::Key(r.node.response_key.clone())])
                            .collect()
                    } else {
                        vec![Vec::new()]
                    };
                    for base in bases {
                        let mut error = error.to_client(subgraph, &base);
                        self.at_client_fields(&mut error);
                        if let Some(p) = &error.path {
                            self.error_paths.insert(p.clone());
                        }
                        self.errors.push(error);
                    }
                }
            }
        }
        self.out.push(b'{');
        let mut first = true;
        let order = crate::plan::response_order(&run.plan.output, |r| &r.node, self.variables);
        for root in in_order(&run.plan.output, order.as_deref()) {
            let node = &root.node;
            if !node.include.holds(self.variables) {
                continue;
            }
            self.key(&mut first, &node.response_key);
            self.path.push(PathSegment::Key(node.response_key.clone()));
            let result = match root.source {
                RootSource::Static => {
                    self.typename(node);
                    Ok(())
                }
                RootSource::Introspection => {
                    let value = introspection
                        .and_then(|m| m.get(node.response_key.as_str()))
                        .map_or("null", |raw| raw.get());
                    self.out.extend_from_slice(value.as_bytes());
                    Ok(())
                }
                RootSource::Fetch(id) => self.write_root_field(id, node),
            };
            self.path.pop();
            result?;
        }
        self.out.push(b'}');
        Ok(())
    }

    fn write_root_field(&mut self, fetch: usize, node: &FieldNode) -> Result<(), Bubble> {
        let run = self.run;
        let value = match run.results.get(fetch).and_then(|r| r.get()) {
            Some(FetchResult::Root(Ok(data), _)) => data.node().get(node.response_key.as_str()),
            Some(FetchResult::Root(Err(error), _)) => {
                self.error(GraphQLError::from_fetch(error));
                None
            }
            _ => None,
        };
        self.complete(&node.ty, Val::Node(value.unwrap_or(Node::null())), &node.kind)
    }

    fn key(&mut self, first: &mut bool, key: &str) {
        if !*first {
            self.out.push(b',');
        }
        *first = false;
        self.out.push(b'"');
        // Response keys are GraphQL names: nothing to escape.
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn raw(&mut self, value: Val<'_>) {
        match value {
            Val::Node(node) => node.write(&mut self.out),
            Val::Rows(rows) => {
                self.out.push(b'[');
                for (i, row) in rows.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    row.node().write(&mut self.out);
                }
                self.out.push(b']');
            }
        }
    }

    fn error(&mut self, error: GraphQLError) {
        let error = error.with_path(self.path.clone());
        self.error_paths.insert(self.path.clone());
        self.errors.push(error);
    }

    /// Writes a value of type `ty`, or `null` if `ty` is nullable and the value
    /// cannot be completed; otherwise the parent must become null.
    fn complete(&mut self, ty: &Type, value: Val<'a>, kind: &FieldKind) -> Result<(), Bubble> {
        let start = self.out.len();
        match self.complete_non_null(ty, value, kind) {
            Ok(()) => Ok(()),
            Err(bubble) => {
                self.out.truncate(start);
                if ty.nullable {
                    self.out.extend_from_slice(b"null");
                    Ok(())
                } else {
                    Err(bubble)
                }
            }
        }
    }

    fn complete_non_null(&mut self, ty: &Type, value: Val<'a>, kind: &FieldKind) -> Result<(), Bubble> {
        if value.is_null() {
            if !ty.nullable && !self.error_paths.contains(&self.path) {
                let message = format!(
                    "Cannot return null for non-nullable field at {}",
                    display_path(&self.path)
                );
                // The subgraph answered null (or nothing) where the schema
                // promises a value; a failed fetch has its error already.
                self.error(GraphQLError::new(message, ErrorCode::SubgraphInvalidResponse));
            }
            return Err(Bubble);
        }
        match &ty.base {
            BaseType::List(inner) => {
                let Some(items) = value.items() else {
                    self.error(GraphQLError::new(
                        "a subgraph returned a non-list value for a list field",
                        ErrorCode::SubgraphInvalidResponse,
                    ));
                    return Err(Bubble);
                };
                if let FieldKind::SearchEdges { selection, .. } = kind {
                    // A hit whose entity is gone is left out (and repaired),
                    // never a reason to fail the page.
                    let mut kept = Vec::new();
                    for edge in items {
                        match self.gone_hit(edge, selection) {
                            Some(hit) => self.gone.push(hit),
                            None => kept.push(edge),
                        }
                    }
                    return self.write_list(inner, kept.into_iter(), kind);
                }
                self.write_list(inner, items, kind)
            }
            BaseType::Named(_) => match kind {
                FieldKind::Merge { .. }
                | FieldKind::Hydrated { .. }
                | FieldKind::Nested { .. }
                | FieldKind::Sibling { .. } => {
                    self.error(GraphQLError::new(
                        "a merged or hydrated field in a nested position",
                        ErrorCode::InternalServerError,
                    ));
                    Err(Bubble)
                }
                FieldKind::Leaf {
                    global_id, scalar, ..
                } => {
                    let Val::Node(node) = value else {
                        self.raw(value);
                        return Ok(());
                    };
                    if (*scalar == Scalar::Id || *global_id)
                        && keys::write_id_output(node, *global_id, &mut self.out)
                    {
                        return Ok(());
                    }
                    if let Some(refusal) = scalar_refusal(*scalar, node) {
                        self.error(GraphQLError::new(refusal, ErrorCode::SubgraphInvalidResponse));
                        return Err(Bubble);
                    }
                    match (scalar, node.as_number()) {
                        // An Int sent as `3.0` is written `3`, as graphql-js serializes it.
                        (Scalar::Int, Some(Number::Float(f))) => {
                            self.out
                                .extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
                        }
                        _ => node.write(&mut self.out),
                    }
                    Ok(())
                }
                FieldKind::EnumLeaf {
                    enum_type, values, ..
                } => {
                    let known = match value {
                        Val::Node(node) => node
                            .as_str()
                            .is_some_and(|v| values.iter().any(|known| known.as_str() == v)),
                        Val::Rows(_) => false,
                    };
                    if !known {
                        let shown = match value {
                            Val::Node(node) => format!("{node:?}"),
                            Val::Rows(_) => "a list".to_owned(),
                        };
                        self.error(GraphQLError::new(
                            format!("Enum \"{enum_type}\" cannot represent value: {shown}"),
                            ErrorCode::SubgraphInvalidResponse,
                        ));
                        return Err(Bubble);
                    }
                    self.raw(value);
                    Ok(())
                }
                FieldKind::Object { selection, .. }
                | FieldKind::SearchEdges { selection, .. }
                | FieldKind::Ref { selection, .. }
                | FieldKind::Join { selection, .. } => match value {
                    Val::Node(object) if object.is_object() => self.write_object(object, selection),
                    _ => {
                        self.error(GraphQLError::new(
                            "a subgraph returned a non-object value for an object field",
                            ErrorCode::SubgraphInvalidResponse,
                        ));
                        Err(Bubble)
                    }
                },
                FieldKind::Typename(name) => {
                    let _ = serde_json::to_writer(&mut self.out, name.as_str());
                    Ok(())
                }
            },
        }
    }

    fn write_list(
        &mut self,
        inner: &Type,
        items: impl Iterator<Item = Node<'a>>,
        kind: &FieldKind,
    ) -> Result<(), Bubble> {
        self.out.push(b'[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.path.push(PathSegment::Index(i));
            let r = self.complete(inner, Val::Node(item), kind);
            self.path.pop();
            r?;
        }
        self.out.push(b']');
        Ok(())
    }

    /// `(type, id)` of the hit in `edge` if its hydration found no entity
    /// (and no error): the row was deleted after it was indexed.
    fn gone_hit(&self, edge: Node<'a>, edges: &SelectionSet) -> Option<(String, String)> {
        let run = self.run;
        let fields = edges.by_type.first().map(|(_, f)| f)?;
        for field in fields {
            let FieldKind::Object { data_key, selection } = &field.kind else {
                continue;
            };
            let Some(node) = edge.get(data_key.as_str()).filter(|n| n.is_object()) else {
                continue;
            };
            let Some(type_name) = node.get(SEARCH_TYPE_KEY).and_then(Node::as_str) else {
                continue;
            };
            let Some((_, node_fields)) = selection.by_type.iter().find(|(t, _)| t == type_name) else {
                continue;
            };
            let hydration = node_fields.iter().find_map(|f| match &f.kind {
                FieldKind::Hydrated { fetch, key, .. } => Some((*fetch, key)),
                _ => None,
            });
            let Some((fetch, key)) = hydration else {
                continue;
            };
            let Some(key) = keys::with_parent_key(key, node, str::to_owned) else {
                continue;
            };
            if let Some(FetchResult::Keyed(keyed)) = run.results.get(fetch).and_then(|r| r.get()) {
                if let Some(Ok(entry)) = keyed.entries.get(key.as_str()) {
                    if matches!(entry.value, Found::Nothing) && entry.errors.is_empty() {
                        return Some((type_name.to_string(), key));
                    }
                }
            }
        }
        None
    }

    fn write_object(&mut self, object: Node<'a>, selection: &SelectionSet) -> Result<(), Bubble> {
        let fields = match &selection.abstract_source {
            None => selection.by_type.first().map(|(_, f)| f),
            Some((names, alias)) => {
                let unified = match names {
                    TypeNames::Unified => object
                        .get(alias.as_str())
                        .and_then(Node::as_str)
                        .and_then(|t| self.run.schema.get(t))
                        .map(|t| &t.name),
                    TypeNames::Subgraph(subgraph) => object
                        .get(alias.as_str())
                        .and_then(Node::as_str)
                        .and_then(|t| self.run.schema.unified_type_name(subgraph, t)),
                    TypeNames::Entity { fetch, key, subgraph } => {
                        let recorded = self.errors.len();
                        let entity = match self.keyed_value(object, *fetch, key, false, Reads::Entity(None)) {
                            Val::Node(entity) if entity.is_object() => entity,
                            _ => {
                                if self.errors.len() == recorded {
                                    self.error(GraphQLError::new(
                                        format!("\"{subgraph}\" did not resolve this object of an interface"),
                                        ErrorCode::SubgraphInvalidResponse,
                                    ));
                                }
                                return Err(Bubble);
                            }
                        };
                        entity
                            .get(alias.as_str())
                            .and_then(Node::as_str)
                            .and_then(|t| self.run.schema.unified_type_name(subgraph, t))
                    }
                };
                unified.and_then(|u| selection.by_type.iter().find(|(t, _)| t == u).map(|(_, f)| f))
            }
        };
        let Some(fields) = fields else {
            self.error(GraphQLError::new(
                "a subgraph returned an object of a type this schema does not know here",
                ErrorCode::SubgraphInvalidResponse,
            ));
            return Err(Bubble);
        };
        let nested = self.run.plan.has_nested;
        if nested {
            self.objects.push((object, self.path.len()));
        }
        let written = self.write_fields(object, fields);
        if nested {
            self.objects.pop();
        }
        written
    }

    #[inline]
    fn write_fields(&mut self, object: Node<'a>, fields: &[FieldNode]) -> Result<(), Bubble> {
        self.out.push(b'{');
        let mut first = true;
        let mut values = Fields::new(object);
        let order = crate::plan::response_order(fields, |f| f, self.variables);
        for field in in_order(fields, order.as_deref()) {
            if !field.include.holds(self.variables) {
                continue;
            }
            self.key(&mut first, &field.response_key);
            self.path.push(PathSegment::Key(field.response_key.clone()));
            let result = self.write_kind(&mut values, &field.ty, &field.kind);
            self.path.pop();
            result?;
        }
        self.out.push(b'}');
        Ok(())
    }

    fn write_kind(&mut self, values: &mut Fields<'a>, ty: &Type, kind: &FieldKind) -> Result<(), Bubble> {
        let object = values.object();
        match kind {
            FieldKind::Typename(name) => {
                let _ = serde_json::to_writer(&mut self.out, name.as_str());
                Ok(())
            }
            FieldKind::Leaf { data_key, .. }
            | FieldKind::EnumLeaf { data_key, .. }
            | FieldKind::Object { data_key, .. }
            | FieldKind::SearchEdges { data_key, .. } => {
                let value = values.get(data_key.as_str()).unwrap_or(Node::null());
                self.complete(ty, Val::Node(value), kind)
            }
            FieldKind::Hydrated { fetch, key, inner } => {
                let parent = object.identity();
                let reads = Reads::Field(inner.data_key().unwrap_or_default());
                let entity = match self.last_entity {
                    Some((f, p, entity, errors)) if f == *fetch && p == parent => {
                        self.entity_errors(*fetch, errors, reads);
                        Some((entity, errors))
                    }
                    _ => match self.keyed_entry(object, *fetch, key, false, reads) {
                        (Val::Node(entity), errors) if entity.is_object() => {
                            Some((Fields::new(entity), errors))
                        }
                        // Not kept: each field records its own failure.
                        _ => None,
                    },
                };
                match entity {
                    Some((mut entity, errors)) => {
                        let result = self.write_kind(&mut entity, ty, inner);
                        // The next field of this object likely reads the same entity, further on.
                        self.last_entity = Some((*fetch, parent, entity, errors));
                        result
                    }
                    None => self.complete(ty, Val::null(), inner),
                }
            }
            FieldKind::Nested {
                fetch,
                key,
                up,
                path,
                inner,
            } => match self.nested_parent(*fetch, key, *up, path, inner.data_key()) {
                Some(parent) => self.write_kind(&mut Fields::new(parent), ty, inner),
                None => self.complete(ty, Val::null(), inner),
            },
            FieldKind::Sibling { fetch, inner } => match self.sibling_parent(*fetch) {
                Some(parent) => self.write_kind(&mut Fields::new(parent), ty, inner),
                None => self.complete(ty, Val::null(), inner),
            },
            FieldKind::Ref {
                fetch,
                key,
                selection,
            }
            | FieldKind::Join {
                fetch,
                key,
                selection,
            } => {
                let is_join = matches!(kind, FieldKind::Join { .. });
                let value = self.keyed_value(object, *fetch, key, is_join, Reads::Entity(Some(selection)));
                self.complete(ty, value, kind)
            }
            FieldKind::Merge { parts, descending } => self.write_merge(object, ty, kind, parts, *descending),
        }
    }

    /// The object at the current path (less its last key) in the answer of
    /// root fetch `fetch`: where a sibling field of a split root field is.
    fn sibling_parent(&mut self, fetch: usize) -> Option<Node<'a>> {
        let run: &'a Run<'r> = self.run;
        let data = match run.results.get(fetch).and_then(|r| r.get()) {
            Some(FetchResult::Root(Ok(data), _)) => data,
            Some(FetchResult::Root(Err(failure), _)) => {
                // One error per failed fetch, at the root field it fed.
                let root: Vec<PathSegment> = self.path.first().cloned().into_iter().collect();
                if self.failed_fetches.insert((fetch, root.clone())) {
                    self.errors
                        .push(GraphQLError::from_fetch(failure).with_path(root));
                }
                self.error_paths.insert(self.path.clone());
                return None;
            }
            _ => return None,
        };
        let (_, to_parent) = self.path.split_last()?;
        let mut node = data.node();
        for segment in to_parent {
            node = match segment {
                PathSegment::Key(key) => node.get(key.as_str())?,
                PathSegment::Index(i) => node.items().nth(*i)?,
            };
        }
        node.is_object().then_some(node)
    }

    /// The object that holds the current field in the entity `fetch` found
    /// for the key of the object `up` levels above: down from the entity
    /// along the client's path from there (its fields asked under the keys
    /// in `path`, and its list positions). The subgraph's errors about the
    /// field, or a field on the way down to it, are recorded at their place.
    fn nested_parent(
        &mut self,
        fetch: usize,
        key: &ParentKey,
        up: usize,
        path: &[async_graphql::Name],
        field_key: Option<&str>,
    ) -> Option<Node<'a>> {
        let at = self.objects.len().checked_sub(up + 1)?;
        let (ancestor, from) = self.objects[at];
        let (entity, errors) = self.keyed_entry(ancestor, fetch, key, false, Reads::Later);
        // The client's path below the ancestor, in the keys the fetch asked by.
        let below = self.path.get(from..).unwrap_or_default();
        let mut keys = path.iter();
        let here: Vec<PathSegment> = below
            .iter()
            .enumerate()
            .map(|(i, segment)| match segment {
                PathSegment::Index(n) => PathSegment::Index(*n),
                PathSegment::Key(k) if i + 1 == below.len() => {
                    PathSegment::Key(field_key.map_or_else(|| k.clone(), async_graphql::Name::new))
                }
                PathSegment::Key(k) => PathSegment::Key(keys.next().unwrap_or(k).clone()),
            })
            .collect();
        let subgraph = self.run.plan.fetches[fetch].query().map(|q| q.subgraph.as_str());
        for e in errors {
            let at = if here.starts_with(&e.path) {
                self.path[..from + e.path.len()].to_vec()
            } else if e.path.starts_with(&here) {
                let mut at = self.path.clone();
                at.extend(e.path[here.len()..].iter().cloned());
                at
            } else {
                continue;
            };
            let mut error = e.to_client(subgraph, &[]);
            error.path = Some(at);
            self.entity_error(error);
        }
        let mut node = match entity {
            Val::Node(entity) if entity.is_object() => entity,
            _ => return None,
        };
        let (_, to_parent) = here.split_last()?;
        for segment in to_parent {
            node = match segment {
                PathSegment::Key(key) => node.get(key.as_str())?,
                PathSegment::Index(i) => node.items().nth(*i)?,
            };
        }
        node.is_object().then_some(node)
    }

    /// The value a `@ref` (entity or null) or `@join` (list, empty when no
    /// row has the key) resolves to for `object`, recording the errors the
    /// subgraph reported inside it (those `reads` concerns: see
    /// [`Projector::entity_errors`]) or the failure of its batch.
    fn keyed_value(
        &mut self,
        object: Node<'_>,
        fetch: usize,
        key: &ParentKey,
        is_join: bool,
        reads: Reads<'_>,
    ) -> Val<'a> {
        self.keyed_entry(object, fetch, key, is_join, reads).0
    }

    /// [`Projector::keyed_value`], and the errors the entity came with.
    fn keyed_entry(
        &mut self,
        object: Node<'_>,
        fetch: usize,
        key: &ParentKey,
        is_join: bool,
        reads: Reads<'_>,
    ) -> (Val<'a>, &'a [SubgraphError]) {
        let run: &'a Run<'r> = self.run;
        let keyed = match run.results.get(fetch).and_then(|r| r.get()) {
            Some(FetchResult::Keyed(keyed)) => Some(keyed),
            _ => None,
        };
        // What the object's representation required failed, though not so
        // that it could not be sent: the field that needed it says so.
        if let Some(errors) = keyed
            .filter(|k| !k.requirement_errors.is_empty())
            .and_then(|k| k.requirement_errors.get(&object.identity()))
        {
            for error in errors {
                let mut error = error.clone();
                error.path = Some(self.path.clone());
                self.entity_error(error);
            }
        }
        let found = match keyed.and_then(|k| k.by_parent.get(&object.identity())) {
            // The representation this object gave, found when keys were collected.
            Some(loaded) => Some(Some(loaded)),
            None => keys::with_parent_key(key, object, |key| keyed.and_then(|k| k.entries.get(key))),
        };
        let has_key = found.is_some();
        let loaded = found.flatten();
        let value = match loaded {
            Some(Ok(entry)) => {
                self.entity_errors(fetch, &entry.errors, reads);
                let value = match &entry.value {
                    Found::Nothing if is_join => Val::empty_list(),
                    Found::Nothing => Val::null(),
                    Found::One(entity) => Val::Node(entity.node()),
                    Found::Rows(rows) => Val::Rows(rows),
                };
                return (value, &entry.errors);
            }
            Some(Err(failure)) => {
                // One error per failed fetch, at the list it fed (as the
                // federation routers report it), not one per row.
                let list = self
                    .path
                    .iter()
                    .position(|p| matches!(p, PathSegment::Index(_)))
                    .unwrap_or(self.path.len());
                let at = self.path[..list].to_vec();
                if self.failed_fetches.insert((fetch, at.clone())) {
                    self.errors.push(GraphQLError::from_fetch(failure).with_path(at));
                }
                self.error_paths.insert(self.path.clone());
                Val::null()
            }
            // No key, or no row has it: a join is empty, a reference is null.
            None if is_join && has_key => Val::empty_list(),
            None => Val::null(),
        };
        (value, &[])
    }

    /// Records the errors a subgraph reported inside an entity (their paths
    /// relative to it). `Reads::Entity`: the current field is the entity,
    /// every error is under it. `Reads::Field(key)`: the current field is
    /// the entity's field `key`, filled into the object that asked for it
    /// (`@from`, a search hit's hydrated fields): errors under `key` are
    /// under the current field, errors under another field are left to the
    /// field that reads it, errors without a path are the current field's.
    fn entity_errors(&mut self, fetch: usize, errors: &'a [SubgraphError], reads: Reads<'_>) {
        if errors.is_empty() {
            return;
        }
        let subgraph = self.run.plan.fetches[fetch].query().map(|q| q.subgraph.as_str());
        for e in errors {
            let error = match reads {
                Reads::Later => return,
                Reads::Entity(Some(selection)) if !reads_error(selection, &e.path) => continue,
                Reads::Entity(_) => e.to_client(subgraph, &self.path),
                Reads::Field(key) => match e.path.split_first() {
                    None => e.to_client(subgraph, &self.path),
                    Some((PathSegment::Key(first), rest)) if first.as_str() == key => {
                        let mut error = e.to_client(subgraph, &self.path);
                        let mut path = self.path.clone();
                        path.extend(rest.iter().cloned());
                        error.path = Some(path);
                        error
                    }
                    // Under a field the gateway asked for itself (what a
                    // representation further on needs, `_r_category`): the
                    // object's, as the client selected no such field.
                    Some((PathSegment::Key(first), _)) if self.run.plan.internal_keys.contains(first) => {
                        let object = &self.path[..self.path.len().saturating_sub(1)];
                        e.to_client(subgraph, object)
                    }
                    Some(_) => continue,
                },
            };
            self.entity_error(error);
        }
    }

    /// Cuts an error's path before the first key the gateway made for
    /// itself (a subgraph's error at `_k_member_id`, `_key`, `_r_…`): the
    /// client selected no such field; the error is at the object it was
    /// read for.
    fn at_client_fields(&self, error: &mut GraphQLError) {
        let internal = &self.run.plan.internal_keys;
        if let Some(path) = &mut error.path {
            if let Some(at) = path
                .iter()
                .position(|p| matches!(p, PathSegment::Key(k) if internal.contains(k)))
            {
                path.truncate(at);
            }
        }
    }

    /// Records an error a subgraph reported inside an entity, once: several
    /// fields may read the same entity.
    fn entity_error(&mut self, mut error: GraphQLError) {
        self.at_client_fields(&mut error);
        if !self
            .entity_errors_seen
            .insert((error.path.clone(), error.message.clone()))
        {
            return;
        }
        if let Some(p) = &error.path {
            self.error_paths.insert(p.clone());
        }
        self.errors.push(error);
    }

    /// A list of an abstract type gathered from several keyed fetches.
    fn write_merge<'p>(
        &mut self,
        object: Node<'a>,
        ty: &Type,
        kind: &FieldKind,
        parts: &'p [MergePart],
        descending: bool,
    ) -> Result<(), Bubble> {
        // Each item with its part, and the errors its subgraph reported
        // inside it (paths relative to the item).
        let mut items: Vec<(Node<'a>, &'p MergePart, Vec<&'a SubgraphError>)> = Vec::new();
        let mut failed = false;
        for part in parts {
            let (value, errors) = self.keyed_entry(object, part.fetch, &part.key, part.is_join, Reads::Later);
            match value.items() {
                // A join's errors start with the row's index in its group.
                Some(rows) => items.extend(rows.enumerate().map(|(i, r)| {
                    let own = errors
                        .iter()
                        .filter(|e| e.path.first() == Some(&PathSegment::Index(i)))
                        .collect();
                    (r, part, own)
                })),
                // keyed_entry marks the path of a value that failed.
                None if value.is_null() => failed |= self.error_paths.contains(&self.path),
                None => {
                    if let Val::Node(entity) = value {
                        items.push((entity, part, errors.iter().collect()));
                    }
                }
            }
        }
        // A part that failed makes the list incomplete: null with the error, not a silent gap.
        if failed {
            return self.complete(ty, Val::null(), kind);
        }
        if parts.iter().any(|p| p.order_alias.is_some()) {
            let order = |(item, part, _): &(Node<'a>, &MergePart, Vec<&SubgraphError>)| {
                part.order_alias.as_ref().and_then(|a| item.get(a.as_str()))
            };
            items.sort_by(|a, b| {
                let ordering = compare_json(order(a), order(b));
                if descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
        }
        let BaseType::List(inner) = &ty.base else {
            self.error(GraphQLError::new(
                "@merge on a field that is not a list",
                ErrorCode::InternalServerError,
            ));
            return self.complete(ty, Val::null(), kind);
        };
        let start = self.out.len();
        self.out.push(b'[');
        for (i, (item, part, errors)) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.path.push(PathSegment::Index(i));
            // The item's errors at its place in the merged list.
            let subgraph = self.run.plan.fetches[part.fetch]
                .query()
                .map(|q| q.subgraph.as_str());
            for e in errors {
                let mut error = e.to_client(subgraph, &self.path);
                if part.is_join {
                    let mut path = self.path.clone();
                    path.extend(e.path.iter().skip(1).cloned());
                    error.path = Some(path);
                }
                self.entity_error(error);
            }
            let r = self.complete(inner, Val::Node(*item), &part.item);
            self.path.pop();
            if r.is_err() {
                self.out.truncate(start);
                return if ty.nullable {
                    self.out.extend_from_slice(b"null");
                    Ok(())
                } else {
                    Err(Bubble)
                };
            }
        }
        self.out.push(b']');
        Ok(())
    }

    fn typename(&mut self, field: &FieldNode) {
        if let FieldKind::Typename(name) = &field.kind {
            let _ = serde_json::to_writer(&mut self.out, name.as_str());
        }
    }
}

/// The JSON object of a representation's `fields` fetched from other
/// subgraphs ([`Representation::assembled`](crate::plan::Representation))
/// for `object`, as the client's response would have them, with the
/// errors met on the way (a nullable one that failed); when a non-null one
/// is missing, the first error met on the way.
pub(super) fn assembled_fields<'a>(
    run: &'a Run<'_>,
    object: Node<'a>,
    fields: &[FieldNode],
) -> Result<(String, Vec<GraphQLError>), Box<GraphQLError>> {
    let mut projector = Projector::new(run, run.variables, 64);
    // The entity may give a nested field its key.
    projector.objects.push((object, 0));
    let written = projector.write_fields(object, fields);
    match (written, String::from_utf8(projector.out)) {
        (Ok(()), Ok(text)) => Ok((text, projector.errors)),
        _ => Err(Box::new(projector.errors.into_iter().next().unwrap_or_else(
            || {
                GraphQLError::new(
                    "a field this one requires could not be fetched",
                    ErrorCode::SubgraphInvalidResponse,
                )
            },
        ))),
    }
}

fn display_path(path: &[PathSegment]) -> String {
    path.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(".")
}

/// Why `value` cannot be a `scalar` (graphql-js's wording), if it cannot: a
/// built-in scalar's value must be of its kind (an `Int` a whole number in
/// 32 bits); a custom scalar takes any value.
fn scalar_refusal(scalar: Scalar, value: Node<'_>) -> Option<String> {
    let fits = match scalar {
        Scalar::Custom => return None,
        Scalar::String => value.as_str().is_some(),
        Scalar::Id => {
            value.as_str().is_some() || matches!(value.as_number(), Some(Number::Int(_) | Number::UInt(_)))
        }
        Scalar::Boolean => value.as_bool().is_some(),
        Scalar::Float => value.as_number().is_some(),
        Scalar::Int => match value.as_number() {
            Some(Number::Int(i)) => i32::try_from(i).is_ok(),
            Some(Number::UInt(u)) => i32::try_from(u).is_ok(),
            Some(Number::Float(f)) => {
                f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX)
            }
            None => false,
        },
    };
    (!fits).then(|| {
        let what = match scalar {
            Scalar::String => "String cannot represent value",
            Scalar::Id => "ID cannot represent value",
            Scalar::Boolean => "Boolean cannot represent a non boolean value",
            Scalar::Float => "Float cannot represent non numeric value",
            _ => "Int cannot represent non 32-bit signed integer value",
        };
        format!("{what}: {value:?}")
    })
}

/// Whether root field `node`'s object has fields another root fetch answers
/// (a split root field): that fetch's errors are about it.
fn has_sibling(node: &FieldNode, fetch: usize) -> bool {
    let FieldKind::Object { selection, .. } = &node.kind else {
        return false;
    };
    selection
        .by_type
        .iter()
        .flat_map(|(_, fields)| fields)
        .any(|f| matches!(f.kind, FieldKind::Sibling { fetch: f2, .. } if f2 == fetch))
}

/// `items` in `order` (indices) when there is one, else as they are.
fn in_order<'i, T>(items: &'i [T], order: Option<&'i [usize]>) -> impl Iterator<Item = &'i T> {
    let (all, some) = match order {
        None => (Some(items.iter()), None),
        Some(order) => (None, Some(order.iter().filter_map(|&i| items.get(i)))),
    };
    all.into_iter().flatten().chain(some.into_iter().flatten())
}

/// Whether an error inside an entity (its path relative to the entity, or
/// to a join's rows) is about a field `selection` reads: a fetch merged
/// from sibling fields (`member { name } m: member { email }`) holds the
/// other's fields too, and an error in `email` is not `member`'s. Errors
/// without a field, or in the gateway's own keys, are every reader's.
fn reads_error(selection: &SelectionSet, path: &[PathSegment]) -> bool {
    let first = path.iter().find_map(|p| match p {
        PathSegment::Key(k) => Some(k.as_str()),
        PathSegment::Index(_) => None,
    });
    match first {
        None => true,
        Some(key) if key.starts_with('_') => true,
        Some(key) => selection
            .by_type
            .iter()
            .flat_map(|(_, fields)| fields)
            .any(|f| f.kind.data_key() == Some(key) || f.response_key.as_str() == key),
    }
}
