//! The planner proper: walks the operation once, printing each subgraph's
//! selection as it goes and recording how to project the answers back.
//!
//! Root fields of a query are grouped into one fetch per subgraph; mutation
//! root fields get one fetch each, run in order. A `@ref` or `@join` field
//! becomes a child fetch keyed by values its parent fetch must return, so the
//! planner adds those key fields to the parent's selection under internal
//! aliases that cannot collide with the client's response keys.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet as AstSelectionSet,
};
use async_graphql::parser::Positioned;
use async_graphql::Name;

use super::federation::{merge_hops, Hop, Nested, ParentSelection};
use super::normalize::{CollectedField, Collector, Condition, Include};
use super::{
    ArgBinding, EntityFetch, Fetch, FetchId, FetchKind, FieldKind, FieldNode, KeyInput, KeyStrategy,
    KeyedFetch, MergePart, OperationKind, ParentKey, PlanError, QueryPlan, Representations, RootField,
    RootSource, Scalar, SelectionSet, SubgraphQuery, TypeNames, VariableDef,
};
use crate::schema::{
    named_type, FieldDef, FieldSetItem, LookupStrategy, Resolver, RootGraph, Supergraph, TypeDefKind,
};

/// Plans the operation named `operation_name` (or the only one) of a document
/// that async-graphql has already validated against the supergraph.
pub fn plan(
    schema: &Supergraph,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
) -> Result<QueryPlan, PlanError> {
    let mut shared = Vec::new();
    let first = plan_choosing(schema, doc, operation_name, &RootChoices::default(), &mut shared);
    if !matches!(first, Err(PlanError::Unresolvable { .. })) || shared.is_empty() {
        return first;
    }
    // Root fields that several subgraphs resolve: from another of them the
    // rest of the selection may be reachable (a `@provides` there, say).
    // Each combination of choices in turn, the first that plans wins.
    let total: usize = shared.iter().map(|(_, n)| *n).product();
    for combination in 1..total.min(MAX_ROOT_CHOICES) {
        let mut rest = combination;
        let by_key = shared
            .iter()
            .map(|(field, n)| {
                let choice = rest % n;
                rest /= n;
                (field.clone(), choice)
            })
            .collect();
        let choices = RootChoices { by_key, split: false };
        if let Ok(plan) = plan_choosing(schema, doc, operation_name, &choices, &mut Vec::new()) {
            return Ok(plan);
        }
    }
    // None answers the whole selection: each field of the root field's
    // object asked of a subgraph that resolves it, the answers put together.
    let split = RootChoices {
        by_key: HashMap::new(),
        split: true,
    };
    plan_choosing(schema, doc, operation_name, &split, &mut Vec::new()).or(first)
}

/// Which subgraph answers the root fields several subgraphs resolve.
#[derive(Default)]
struct RootChoices {
    /// By response key, an index into the field's
    /// [`RootGraph`](crate::schema::RootGraph)s (the first otherwise).
    by_key: HashMap<Name, usize>,
    /// Split the selection of such a root field (of an object type) between
    /// the subgraphs, each asked for the fields it resolves.
    split: bool,
}

/// How many combinations of subgraphs for shared root fields are tried.
const MAX_ROOT_CHOICES: usize = 64;

/// [`plan`] with the subgraphs of shared root fields as `choices` says; the
/// root fields several subgraphs resolve are added to `shared`, with how
/// many do.
fn plan_choosing(
    schema: &Supergraph,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    choices: &RootChoices,
    shared: &mut Vec<(Name, usize)>,
) -> Result<QueryPlan, PlanError> {
    let (name, op) = select_operation(doc, operation_name)?;
    let kind = match op.node.ty {
        OperationType::Query => OperationKind::Query,
        OperationType::Mutation => OperationKind::Mutation,
        OperationType::Subscription => return Err(PlanError::Subscription),
    };
    let root_type = match kind {
        OperationKind::Query => schema.query_type().clone(),
        OperationKind::Mutation => {
            schema
                .mutation_type()
                .cloned()
                .ok_or_else(|| PlanError::Unresolvable {
                    message: "the schema has no mutations".into(),
                })?
        }
    };

    let mut taken = HashSet::new();
    response_keys(&op.node.selection_set.node, &mut taken);
    for fragment in doc.fragments.values() {
        response_keys(&fragment.node.selection_set.node, &mut taken);
    }
    let mut builder = Builder {
        schema,
        collector: Collector {
            schema,
            fragments: &doc.fragments,
        },
        fetches: Vec::new(),
        aliases: Aliases {
            taken,
            made: HashSet::new(),
        },
        nested: Vec::new(),
        has_nested: false,
        assembled_sets: 0,
        assembling: 0,
    };

    let collected = builder
        .collector
        .collect(&root_type, &[(&op.node.selection_set.node, Include::Always)])?;
    let mut output = Vec::new();
    let mut has_introspection = false;
    // Query: one fetch per subgraph, in order of first use.
    let mut open: Vec<(String, FetchId, FetchBuf)> = Vec::new();
    let mut roots = Vec::new();

    for (key, cf) in &collected {
        let field_name = cf.field.node.name.node.as_str();
        match field_name {
            "__typename" => {
                output.push(RootField {
                    source: RootSource::Static,
                    node: FieldNode::typename(key.clone(), cf.include.clone(), root_type.clone()),
                });
                continue;
            }
            "__schema" | "__type" => {
                has_introspection = true;
                output.push(RootField {
                    source: RootSource::Introspection,
                    node: FieldNode {
                        order: None,
                        response_key: key.clone(),
                        ty: nullable("__Type"),
                        include: cf.include.clone(),
                        kind: FieldKind::Typename(root_type.clone()),
                    },
                });
                continue;
            }
            _ => {}
        }
        let fdef = schema
            .field(&root_type, field_name)
            .ok_or_else(|| unresolvable(format!("{root_type}.{field_name} is not in the schema")))?;
        if let Resolver::Search { index, .. } = &fdef.resolver {
            if kind == OperationKind::Mutation {
                return Err(unresolvable(format!(
                    "{root_type}.{field_name}: @search is for queries"
                )));
            }
            let (fetch, field_kind) = builder.search_field(fdef, cf, key, index)?;
            roots.push(fetch);
            output.push(RootField {
                source: RootSource::Fetch(fetch),
                node: FieldNode {
                    order: None,
                    response_key: key.clone(),
                    ty: fdef.ty.clone(),
                    include: cf.include.clone(),
                    kind: field_kind,
                },
            });
            continue;
        }
        let Resolver::Delegate { subgraph, field } = &fdef.resolver else {
            return Err(unresolvable(format!("{root_type}.{field_name} has no @delegate")));
        };
        let root_field = (root_type.clone(), fdef.name.clone());
        let alternatives = schema
            .federation()
            .and_then(|f| f.root_graphs.get(&root_field))
            .map(|a| &a[..])
            .unwrap_or_default();
        if alternatives.len() > 1 {
            shared.push((key.clone(), alternatives.len()));
        }
        if choices.split && alternatives.len() > 1 && kind == OperationKind::Query {
            if let Some((fetch, node)) =
                builder.split_root_field(&mut open, &mut roots, fdef, cf, key, alternatives)?
            {
                output.push(RootField {
                    source: RootSource::Fetch(fetch),
                    node,
                });
                continue;
            }
        }
        let chosen = alternatives.get(choices.by_key.get(key).copied().unwrap_or(0));
        let subgraph = chosen.map_or(subgraph, |g| &g.graph);
        let provided = chosen.map(|g| &g.provides[..]).unwrap_or_default();
        let shared = kind == OperationKind::Query;
        let (fetch, buf) = builder.root_fetch(&mut open, &mut roots, subgraph, shared);
        buf.include = buf.include.or(&cf.include);
        let start = buf.text.len();
        let kind = builder.owned_field(
            buf,
            fetch,
            subgraph,
            fdef,
            cf,
            key,
            field,
            false,
            &[],
            &cf.include,
            Returned {
                provided,
                narrowed: None,
            },
        )?;
        buf.root_fields.push((key.clone(), start..buf.text.len()));
        output.push(RootField {
            source: RootSource::Fetch(fetch),
            node: FieldNode {
                order: None,
                response_key: key.clone(),
                ty: fdef.ty.clone(),
                include: cf.include.clone(),
                kind,
            },
        });
    }
    // A field no entity above could take.
    if !builder.nested.is_empty() {
        return Err(builder.nested.swap_remove(0).error);
    }

    if let Some(mut orders) = response_orders(collected.values()) {
        for root in &mut output {
            if let Some(i) = collected.get_index_of(&root.node.response_key) {
                root.node.order = Some(std::mem::take(&mut orders[i]));
            }
        }
    }
    let keyword = match kind {
        OperationKind::Query => "query",
        OperationKind::Mutation => "mutation",
    };
    for (subgraph, id, mut buf) in open {
        buf.settle_conditions();
        let document = format!(
            "{keyword}{}{{{}}}",
            variable_definitions(None, &buf.args),
            buf.text
        );
        builder.fetches[id] = Fetch {
            id,
            kind: FetchKind::Root(SubgraphQuery {
                subgraph,
                selection: buf.text,
                document,
                root_fields: buf.root_fields,
            }),
            arguments: buf.args,
            include: buf.include,
            children: std::mem::take(&mut builder.fetches[id].children),
        };
    }

    let variables = op
        .node
        .variable_definitions
        .iter()
        .map(|v| VariableDef {
            name: v.node.name.node.clone(),
            ty: v.node.var_type.node.clone(),
            // Not `default_value()`: it answers `null` for a nullable variable
            // without a default, and an omitted variable must stay unset so
            // that the argument's own default applies (spec §6.4.1).
            default: v.node.default_value.as_ref().map(|d| d.node.clone()),
            // Known from validation: the pipeline sets it.
            non_null_usage: false,
        })
        .collect();

    let mut plan = QueryPlan {
        kind,
        operation_name: name,
        variables,
        fetches: builder.fetches,
        roots,
        output,
        has_introspection,
        has_nested: builder.has_nested,
        response_size: Default::default(),
        internal_keys: builder.aliases.made,
    };
    super::siblings::merge(&mut plan);
    Ok(plan)
}

fn select_operation<'d>(
    doc: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Result<(Option<Name>, &'d Positioned<OperationDefinition>), PlanError> {
    match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), None) => Ok((None, op)),
        // Like graphql-js and Apollo Router: a name that matches nothing is an error,
        // even when the document holds one anonymous operation.
        (DocumentOperations::Single(_), Some(name)) => Err(PlanError::UnknownOperation {
            name: name.to_string(),
        }),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .get_key_value(name)
            .map(|(n, op)| (Some(n.clone()), op))
            .ok_or_else(|| PlanError::UnknownOperation {
                name: name.to_string(),
            }),
        (DocumentOperations::Multiple(ops), None) => {
            let mut iter = ops.iter();
            match (iter.next(), iter.next()) {
                (Some((n, op)), None) => Ok((Some(n.clone()), op)),
                (None, _) => Err(PlanError::NoOperation),
                _ => Err(PlanError::OperationNameRequired),
            }
        }
    }
}

/// Selection text and arguments of one fetch while it is being printed.
#[derive(Default)]
pub(super) struct FetchBuf {
    pub(super) text: String,
    pub(super) args: Vec<ArgBinding>,
    pub(super) include: Include,
    /// A root fetch's condition widens with each root field it takes, so
    /// which `@include`/`@skip` it makes redundant is known only once it
    /// has them all: each is printed, and recorded here (where, and what it
    /// tests) until [`FetchBuf::settle_conditions`]. `None`: the condition
    /// is final, and a redundant directive is not printed at all.
    pub(super) pending: Option<Vec<(Range<usize>, Condition)>>,
    /// A root fetch's fields: the response key and where its text is.
    pub(super) root_fields: Vec<(Name, Range<usize>)>,
}

impl FetchBuf {
    /// A root fetch's buffer: its directives wait for its final condition.
    fn root() -> Self {
        FetchBuf {
            pending: Some(Vec::new()),
            ..FetchBuf::default()
        }
    }

    /// Leaves out the directives that the fetch's final condition makes
    /// redundant (the fetch is not sent unless they hold), and the
    /// variables only they used.
    fn settle_conditions(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let (redundant, kept): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(_, c)| self.include.requires(c));
        if redundant.is_empty() {
            return;
        }
        let mut text = String::with_capacity(self.text.len());
        let mut at = 0;
        for (range, _) in &redundant {
            text.push_str(&self.text[at..range.start]);
            at = range.end;
        }
        text.push_str(&self.text[at..]);
        self.text = text;
        // Each position moves back by what was cut before it.
        let moved = |pos: usize| {
            pos - redundant
                .iter()
                .filter(|(r, _)| r.end <= pos)
                .map(|(r, _)| r.len())
                .sum::<usize>()
        };
        for (_, range) in &mut self.root_fields {
            *range = moved(range.start)..moved(range.end);
        }
        let unused: HashSet<String> = redundant
            .iter()
            .filter(|(_, c)| !kept.iter().any(|(_, k)| k.var == c.var))
            .map(|(_, c)| condition_variable(c))
            .collect();
        self.args.retain(|a| !unused.contains(&a.var));
    }
}

/// Internal aliases (`_key`, `_k_member_id`, `_typename`) that no client
/// response key uses. The same base always gives the same alias within a
/// plan, so identical selections print identical documents (and share a
/// loader); two refs through the same key field share its alias.
pub(super) struct Aliases {
    taken: HashSet<Name>,
    /// Every alias made, for error paths (a subgraph's error at one is not
    /// at a field the client selected).
    made: HashSet<Name>,
}

impl Aliases {
    pub(super) fn named(&mut self, base: &str) -> Name {
        let mut candidate = Name::new(base);
        while self.taken.contains(&candidate) {
            candidate = Name::new(format!("{candidate}_"));
        }
        self.made.insert(candidate.clone());
        candidate
    }
}

/// Prints the selection of a keyed fetch into its buffer.
pub(super) type Body<'a, 'b> =
    &'b mut dyn FnMut(&mut Builder<'a>, &mut FetchBuf, Scope<'_>) -> Result<SelectionSet, PlanError>;

pub(super) struct Builder<'a> {
    pub(super) schema: &'a Supergraph,
    pub(super) collector: Collector<'a>,
    pub(super) fetches: Vec<Fetch>,
    pub(super) aliases: Aliases,
    /// Federation: fields of value objects waiting for an entity above to
    /// take them (see [`Nested`]); what is still here once the root fields
    /// are planned cannot be resolved.
    pub(super) nested: Vec<Nested<'a>>,
    /// A [`FieldKind::Nested`] was planned.
    pub(super) has_nested: bool,
    /// Hops that assembled their representations so far (each one's
    /// requirements go under aliases of its own).
    pub(super) assembled_sets: usize,
    /// Assembled requirements being planned, one inside the other.
    pub(super) assembling: usize,
}

/// Where the fields being printed sit: in which fetch, and at which path
/// below that fetch's root objects.
#[derive(Clone, Copy)]
pub(super) struct Scope<'s> {
    pub(super) fetch: FetchId,
    /// The subgraph whose response holds the objects; `None` under a search
    /// fetch, whose objects come from the index.
    pub(super) subgraph: Option<&'s str>,
    pub(super) path: &'s [Name],
    pub(super) include: &'s Include,
    /// Federation: fields of these objects a `@provides` on the way here
    /// says the subgraph resolves although they are `@external` there.
    pub(super) provided: &'s [FieldSetItem],
    /// Federation: the objects are `_entities` answers whose representations
    /// carry what these fields `@requires`.
    pub(super) requirements_met: &'s [Name],
    /// The alias under which the objects hold `__typename`, when they may be
    /// of several types (a fragment of an abstract selection).
    pub(super) typename: Option<&'s Name>,
    /// Federation: entity hops in a row that led to these objects.
    pub(super) hops: usize,
    /// Federation: the subgraph types the field that returned these objects
    /// as this one member of its abstract type: only its fragment is printed.
    pub(super) narrowed: Option<&'s Name>,
    /// Federation: the objects are another subgraph's `_entities` answers
    /// for the parent fetch's objects (an entity hop), which are the ones
    /// the client's response is written from.
    pub(super) for_parent: bool,
}

/// What Federation says about the objects a field returns, in the subgraph asked.
#[derive(Clone, Copy, Default)]
pub(super) struct Returned<'x> {
    /// Fields it resolves on this path although they are `@external` there (`@provides`).
    pub(super) provided: &'x [FieldSetItem],
    /// It types the field as this one object type where the supergraph has an abstract type.
    pub(super) narrowed: Option<&'x Name>,
}

impl<'s> Scope<'s> {
    pub(super) fn new(
        fetch: FetchId,
        subgraph: Option<&'s str>,
        path: &'s [Name],
        include: &'s Include,
    ) -> Self {
        Scope {
            fetch,
            subgraph,
            path,
            include,
            provided: &[],
            requirements_met: &[],
            typename: None,
            hops: 0,
            narrowed: None,
            for_parent: false,
        }
    }

    /// The subgraph whose request the fields in this scope are printed into.
    pub(super) fn printed_subgraph(&self) -> Result<&str, PlanError> {
        self.subgraph.ok_or_else(|| {
            unresolvable(
                "a search hit's fields are read from the index or hydrated, never printed".to_string(),
            )
        })
    }
}

impl<'a> Builder<'a> {
    /// A fetch id, taken before the fetch's selection is printed (its children
    /// are planned meanwhile); the placeholder is replaced once it is.
    pub(super) fn reserve(&mut self) -> FetchId {
        let id = self.fetches.len();
        self.fetches.push(Fetch {
            id,
            kind: FetchKind::Root(SubgraphQuery::default()),
            arguments: Vec::new(),
            include: Include::Always,
            children: Vec::new(),
        });
        id
    }

    /// The root fetch of `subgraph` that fields are printed into: the one
    /// already open when `shared` (a query's root fields share one fetch per
    /// subgraph), a new one otherwise.
    fn root_fetch<'o>(
        &mut self,
        open: &'o mut Vec<(String, FetchId, FetchBuf)>,
        roots: &mut Vec<FetchId>,
        subgraph: &str,
        shared: bool,
    ) -> (FetchId, &'o mut FetchBuf) {
        let slot = match open.iter().position(|(s, _, _)| shared && s == subgraph) {
            Some(slot) => slot,
            None => {
                let id = self.reserve();
                roots.push(id);
                open.push((subgraph.to_string(), id, FetchBuf::root()));
                open.len() - 1
            }
        };
        let (_, fetch, buf) = &mut open[slot];
        (*fetch, buf)
    }

    /// A root field of an object type that several subgraphs resolve, none
    /// all of its selection: each field of the object asked of the first of
    /// them that resolves it, in that subgraph's root fetch; the answers are
    /// read together at the same path. `None` for an abstract type or a leaf.
    #[allow(clippy::type_complexity)]
    fn split_root_field(
        &mut self,
        open: &mut Vec<(String, FetchId, FetchBuf)>,
        roots: &mut Vec<FetchId>,
        fdef: &'a FieldDef,
        cf: &CollectedField<'a>,
        key: &Name,
        alternatives: &'a [crate::schema::RootGraph],
    ) -> Result<Option<(FetchId, FieldNode)>, PlanError> {
        let named = named_type(&fdef.ty);
        if self.schema.object(named).is_none() {
            return Ok(None);
        }
        let collected = self.collector.collect(named, &cf.selections)?;
        let resolves = |field: &str, graph: &str| match self.schema.field(named, field).map(|f| &f.resolver) {
            Some(Resolver::Federated(f)) => f.resolved_by(graph).is_some(),
            _ => true,
        };
        let mut parts: Vec<(usize, Vec<(&Name, &CollectedField<'a>)>)> = Vec::new();
        for (field_key, field) in &collected {
            let name = field.field.node.name.node.as_str();
            let graph = match name {
                "__typename" => 0,
                _ => alternatives
                    .iter()
                    .position(|g| resolves(name, &g.graph))
                    .unwrap_or(0),
            };
            match parts.iter_mut().find(|(g, _)| *g == graph) {
                Some((_, fields)) => fields.push((field_key, field)),
                None => parts.push((graph, vec![(field_key, field)])),
            }
        }
        let path = vec![key.clone()];
        let mut answered: Vec<(Name, FieldNode)> = Vec::new();
        let mut primary = None;
        for (graph, fields) in parts {
            let RootGraph { graph, provides } = &alternatives[graph];
            let (fetch, buf) = self.root_fetch(open, roots, graph, true);
            buf.include = buf.include.or(&cf.include);
            let start = buf.text.len();
            if !buf.text.is_empty() && !buf.text.ends_with('{') {
                buf.text.push(' ');
            }
            if *key != fdef.name {
                buf.text.push_str(key);
                buf.text.push(':');
            }
            buf.text.push_str(&fdef.name);
            self.arguments(buf, fdef, cf);
            conditions(buf, &cf.include);
            buf.text.push('{');
            let open = buf.text.len();
            let scope = Scope {
                provided: provides,
                ..Scope::new(fetch, Some(graph), &path, &cf.include)
            };
            let keys: Vec<Name> = fields.iter().map(|(k, _)| (*k).clone()).collect();
            let nodes = self.fields_from(buf, scope, named, fields.into_iter())?;
            close_selection(&mut buf.text, open);
            buf.root_fields.push((key.clone(), start..buf.text.len()));
            let first = *primary.get_or_insert(fetch);
            for (field_key, node) in keys.into_iter().zip(nodes) {
                let node = match first == fetch {
                    true => node,
                    false => FieldNode {
                        kind: FieldKind::Sibling {
                            fetch,
                            inner: Box::new(node.kind),
                        },
                        ..node
                    },
                };
                answered.push((field_key, node));
            }
        }
        let Some(primary) = primary else {
            return Ok(None);
        };
        // The client's order.
        let mut fields = Vec::with_capacity(answered.len());
        for field_key in collected.keys() {
            if let Some(i) = answered.iter().position(|(k, _)| k == field_key) {
                fields.push(answered.swap_remove(i).1);
            }
        }
        let node = FieldNode {
            order: None,
            response_key: key.clone(),
            ty: fdef.ty.clone(),
            include: cf.include.clone(),
            kind: FieldKind::Object {
                data_key: key.clone(),
                selection: SelectionSet {
                    by_type: vec![(named.clone(), fields)],
                    abstract_source: None,
                },
            },
        };
        Ok(Some((primary, node)))
    }

    /// A field read from the current subgraph object: prints it and, for
    /// composite types, its sub-selection.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn owned_field(
        &mut self,
        buf: &mut FetchBuf,
        fetch: FetchId,
        subgraph: &str,
        fdef: &FieldDef,
        cf: &CollectedField<'a>,
        key: &Name,
        source: &str,
        global_id: bool,
        path: &[Name],
        include: &Include,
        returned: Returned<'_>,
    ) -> Result<FieldKind, PlanError> {
        if !buf.text.is_empty() && !buf.text.ends_with('{') {
            buf.text.push(' ');
        }
        if key.as_str() != source {
            buf.text.push_str(key);
            buf.text.push(':');
        }
        buf.text.push_str(source);
        self.arguments(buf, fdef, cf);
        conditions(buf, &cf.include);
        let named = named_type(&fdef.ty);
        if let Some(TypeDefKind::Enum(values)) = self.schema.get(named).map(|t| &t.kind) {
            return Ok(FieldKind::EnumLeaf {
                data_key: key.clone(),
                enum_type: named.clone(),
                values: values.clone(),
            });
        }
        if self.is_leaf(named) {
            return Ok(FieldKind::Leaf {
                data_key: key.clone(),
                global_id,
                scalar: Scalar::of(named),
            });
        }
        let mut child_path = path.to_vec();
        child_path.push(key.clone());
        buf.text.push('{');
        let open = buf.text.len();
        let selection = self.selection(
            buf,
            Scope {
                provided: returned.provided,
                narrowed: returned.narrowed,
                ..Scope::new(fetch, Some(subgraph), &child_path, include)
            },
            named,
            &cf.selections,
        )?;
        close_selection(&mut buf.text, open);
        Ok(FieldKind::Object {
            data_key: key.clone(),
            selection,
        })
    }

    pub(super) fn is_leaf(&self, named: &str) -> bool {
        match self.schema.get(named).map(|t| &t.kind) {
            None => true, // built-in scalar
            Some(TypeDefKind::Scalar | TypeDefKind::Enum(_)) => true,
            Some(_) => false,
        }
    }

    /// Prints `(arg:$_a0, …)` for the arguments the client gave or that have a default.
    pub(super) fn arguments(&mut self, buf: &mut FetchBuf, fdef: &FieldDef, cf: &CollectedField<'a>) {
        let mut first = true;
        for (name, def) in &fdef.args {
            let value = match cf.field.node.get_argument(name) {
                Some(v) => v.node.clone(),
                None => match &def.default {
                    Some(d) => d.clone(),
                    None => continue,
                },
            };
            // The same value for the same argument type is the same
            // variable: a field printed twice in one fetch (an interface
            // object's field again for one implementation) must have the
            // same arguments, or the subgraph refuses the two as conflicting.
            // The defaults too: an unset variable takes each argument's own
            // (`offset: $n, limit: $n` without `$n` is 0 and 50, not 0 and 0).
            let same = buf.args.iter().find(|b| {
                b.value == value
                    && b.def.default == def.default
                    && b.def.ty == def.ty
                    && b.def.source_type == def.source_type
                    && b.def.global_id == def.global_id
            });
            let var = match same {
                Some(binding) => binding.var.clone(),
                None => {
                    let var = format!("_a{}", buf.args.len());
                    buf.args.push(ArgBinding {
                        var: var.clone(),
                        value,
                        def: def.clone(),
                    });
                    var
                }
            };
            buf.text.push(if first { '(' } else { ',' });
            first = false;
            buf.text.push_str(&def.source_name);
            buf.text.push_str(":$");
            buf.text.push_str(&var);
        }
        if !first {
            buf.text.push(')');
        }
    }

    /// Prints the fields of a selection set on `type_name` (no braces) and
    /// returns its projection.
    pub(super) fn selection(
        &mut self,
        buf: &mut FetchBuf,
        scope: Scope<'_>,
        type_name: &Name,
        sets: &[(&'a AstSelectionSet, Include)],
    ) -> Result<SelectionSet, PlanError> {
        if !self.schema.is_abstract(type_name) {
            let fields = self.fields(buf, scope, type_name, sets)?;
            return Ok(SelectionSet {
                by_type: vec![(type_name.clone(), fields)],
                abstract_source: None,
            });
        }
        let subgraph = scope.printed_subgraph()?;
        if let Some(object) = self.schema.interface_object(type_name, subgraph) {
            return self.interface_object_selection(buf, scope, type_name, sets, object);
        }
        self.interface_fields_resolvable(scope, type_name, sets)?;
        self.abstract_selection(buf, scope, type_name, sets, &[])
    }

    /// The selection on an abstract type: `__typename` and a fragment per
    /// member the subgraph has, each with the fields collected for that
    /// member but those under the response keys in `skip`.
    pub(super) fn abstract_selection(
        &mut self,
        buf: &mut FetchBuf,
        scope: Scope<'_>,
        type_name: &Name,
        sets: &[(&'a AstSelectionSet, Include)],
        skip: &[Name],
    ) -> Result<SelectionSet, PlanError> {
        let subgraph = scope.printed_subgraph()?;
        let alias = self.aliases.named("_typename");
        buf.text.push_str(&alias);
        buf.text.push_str(":__typename");
        let mut by_type = Vec::new();
        for possible in self.schema.possible_types(type_name) {
            if scope.narrowed.is_some_and(|only| only != possible) {
                continue;
            }
            let Some(object) = self.schema.object(possible) else {
                continue;
            };
            let subgraph_name = match &object.owner {
                Some(owner) if owner.subgraph == subgraph => owner.type_name.clone(),
                // Owned elsewhere: this subgraph cannot return it.
                Some(_) => continue,
                None if scope.narrowed.is_none() && !self.schema.member_in(type_name, subgraph, possible) => {
                    continue
                }
                None => possible.to_string(),
            };
            buf.text.push_str(" ...on ");
            buf.text.push_str(&subgraph_name);
            buf.text.push('{');
            let open = buf.text.len();
            let scope = Scope {
                typename: Some(&alias),
                narrowed: None,
                ..scope
            };
            let collected = self.collector.collect(possible, sets)?;
            let kept: Vec<_> = collected.iter().filter(|(key, _)| !skip.contains(key)).collect();
            let fields = self.fields_from(buf, scope, possible, kept.into_iter())?;
            close_selection(&mut buf.text, open);
            by_type.push((possible.clone(), fields));
        }
        Ok(SelectionSet {
            by_type,
            abstract_source: Some((TypeNames::Subgraph(subgraph.to_string()), alias)),
        })
    }

    fn fields(
        &mut self,
        buf: &mut FetchBuf,
        scope: Scope<'_>,
        type_name: &Name,
        sets: &[(&'a AstSelectionSet, Include)],
    ) -> Result<Vec<FieldNode>, PlanError> {
        let collected = self.collector.collect(type_name, sets)?;
        self.fields_from(buf, scope, type_name, collected.iter())
    }

    pub(super) fn fields_from<'c>(
        &mut self,
        buf: &mut FetchBuf,
        scope: Scope<'_>,
        type_name: &Name,
        collected: impl ExactSizeIterator<Item = (&'c Name, &'c CollectedField<'a>)>,
    ) -> Result<Vec<FieldNode>, PlanError>
    where
        'a: 'c,
    {
        // A slot per field, in the client's order; fields another subgraph
        // resolves (Federation) are filled once their entity fetches are planned.
        let mut slots: Vec<Option<FieldNode>> = Vec::with_capacity(collected.len());
        let collected: Vec<_> = collected.collect();
        let orders = response_orders(collected.iter().map(|(_, cf)| *cf));
        let mut hops: Vec<Hop<'c, 'a>> = Vec::new();
        let waiting_before = self.nested.len();
        let mut plain: Vec<Name> = Vec::new();
        for (key, cf) in collected {
            let field_name = cf.field.node.name.node.as_str();
            if field_name == "__typename" {
                slots.push(Some(FieldNode::typename(
                    key.clone(),
                    cf.include.clone(),
                    type_name.clone(),
                )));
                continue;
            }
            let fdef = self
                .schema
                .field(type_name, field_name)
                .ok_or_else(|| unresolvable(format!("{type_name}.{field_name} is not in the schema")))?;
            let include = scope.include.and(&cf.include);
            let kind = match &fdef.resolver {
                Resolver::Owned { source, global_id } => self.owned_field(
                    buf,
                    scope.fetch,
                    scope.printed_subgraph()?,
                    fdef,
                    cf,
                    key,
                    source,
                    global_id.is_some(),
                    scope.path,
                    &include,
                    Returned::default(),
                )?,
                Resolver::Ref { key: key_field } => {
                    let key = self.key_field(buf, type_name, key_field)?;
                    let (fetch, selection, _) =
                        self.keyed_fetch(scope, &key, fdef, cf, &include, None, None)?;
                    FieldKind::Ref {
                        fetch,
                        key,
                        selection,
                    }
                }
                Resolver::Join(join) => {
                    let key = self.key_field(buf, type_name, &join.key)?;
                    let (fetch, selection, _) =
                        self.keyed_fetch(scope, &key, fdef, cf, &include, Some(join), None)?;
                    FieldKind::Join {
                        fetch,
                        key,
                        selection,
                    }
                }
                Resolver::Merge {
                    fields: parts,
                    order_by,
                    descending,
                } => {
                    let mut merged = Vec::with_capacity(parts.len());
                    for part in parts {
                        let pdef = self.schema.field(type_name, part).ok_or_else(|| {
                            unresolvable(format!("{type_name}.{part} is not in the schema"))
                        })?;
                        let (key_field, join) = match &pdef.resolver {
                            Resolver::Ref { key } => (key, None),
                            Resolver::Join(join) => (&join.key, Some(join)),
                            _ => {
                                return Err(unresolvable(format!(
                                    "{type_name}.{part} is neither @ref nor @join"
                                )))
                            }
                        };
                        let part_key = self.key_field(buf, type_name, key_field)?;
                        // The client's selection on the abstract type, collected for this member type.
                        let (fetch, selection, order_alias) =
                            self.keyed_fetch(scope, &part_key, pdef, cf, &include, join, order_by.as_ref())?;
                        merged.push(MergePart {
                            fetch,
                            key: part_key,
                            is_join: join.is_some(),
                            item: Box::new(FieldKind::Object {
                                data_key: key.clone(),
                                selection,
                            }),
                            order_alias,
                        });
                    }
                    FieldKind::Merge {
                        parts: merged,
                        descending: *descending,
                    }
                }
                Resolver::Path {
                    relation, selection, ..
                } => {
                    let rdef = self.schema.field(type_name, relation).ok_or_else(|| {
                        unresolvable(format!("{type_name}.{relation} is not in the schema"))
                    })?;
                    let Resolver::Ref { key: key_field } = &rdef.resolver else {
                        return Err(unresolvable(format!("{type_name}.{relation} is not a @ref")));
                    };
                    let key = self.key_field(buf, type_name, key_field)?;
                    self.path_field(scope, key, rdef, cf, selection, &include)?
                }
                Resolver::Federated(federated) => {
                    let here = scope.printed_subgraph()?;
                    let resolved = federated
                        .resolved_by(here)
                        .filter(|g| g.requires.is_none() || scope.requirements_met.contains(key_name(cf)));
                    let local = resolved
                        .map(|g| g.provides.as_deref().unwrap_or_default())
                        .or_else(|| {
                            let provided = scope.provided.iter().find(|p| p.name == field_name);
                            provided.map(|p| &p.selection[..])
                        });
                    // In a fragment of an abstract selection, a field the
                    // subgraph types differently than the supergraph could
                    // clash with the same key of a sibling type: own alias.
                    let printed = match (scope.typename, resolved) {
                        (Some(_), Some(g)) if g.subgraph_type.is_some() => {
                            self.aliases.named(&format!("_{type_name}_{key}"))
                        }
                        _ => key.clone(),
                    };
                    // The subgraph returns one member of the supergraph's abstract type.
                    let narrowed = resolved
                        .and_then(|g| g.subgraph_type.as_ref())
                        .map(named_type)
                        .filter(|n| {
                            self.schema.object(n).is_some() && self.schema.is_abstract(named_type(&fdef.ty))
                        });
                    match local {
                        Some(provided) => {
                            let below = self.nested.len();
                            let kind = self.owned_field(
                                buf,
                                scope.fetch,
                                here,
                                fdef,
                                cf,
                                &printed,
                                field_name,
                                false,
                                scope.path,
                                &include,
                                Returned { provided, narrowed },
                            )?;
                            // Fields below waiting for an entity above: this field leads there.
                            for waiting in &mut self.nested[below..] {
                                waiting
                                    .chain
                                    .insert(0, (key.clone(), cf.clone(), type_name.clone()));
                            }
                            kind
                        }
                        None => {
                            match self.entity_hop(scope, type_name, slots.len(), key, cf, &mut hops) {
                                Ok(()) => slots.push(None),
                                Err(error) => slots.push(Some(
                                    self.wait_for_entity_above(scope, type_name, key, cf, fdef, error)?,
                                )),
                            }
                            continue;
                        }
                    }
                }
                Resolver::Delegate { .. } | Resolver::Search { .. } => {
                    return Err(unresolvable(format!(
                        "{type_name}.{field_name} uses @delegate or @search, which only root fields may use"
                    )))
                }
            };
            // A leaf printed bare (`upc`, no alias, arguments or condition)
            // is also what a representation of these objects may read.
            let bare = matches!(kind, FieldKind::Leaf { .. } | FieldKind::EnumLeaf { .. })
                && key.as_str() == field_name
                && fdef.args.is_empty()
                && cf.include == Include::Always
                && matches!(&fdef.resolver, Resolver::Federated(_));
            if bare {
                plain.push(key.clone());
            }
            slots.push(Some(FieldNode {
                order: None,
                response_key: key.clone(),
                ty: fdef.ty.clone(),
                include: cf.include.clone(),
                kind,
            }));
        }
        let mut parent = ParentSelection {
            printed: Vec::new(),
            plain,
        };
        for hop in merge_hops(hops) {
            self.entity_fetch(buf, scope, type_name, hop, &mut slots, &mut parent)?;
        }
        self.nested_fetches(buf, scope, type_name, waiting_before, &mut slots, &mut parent)?;
        if let Some(orders) = orders {
            for (slot, order) in slots.iter_mut().zip(orders) {
                if let Some(node) = slot {
                    node.order = Some(order);
                }
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// A `@from(path: "relation.leaf")` field: the relation's entity looked
    /// up by key (batched like any `@ref`), and its one leaf read from it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn path_field(
        &mut self,
        scope: Scope<'_>,
        key: ParentKey,
        relation: &'a FieldDef,
        cf: &CollectedField<'a>,
        selection: &'a async_graphql::parser::types::ExecutableDocument,
        include: &Include,
    ) -> Result<FieldKind, PlanError> {
        let DocumentOperations::Single(op) = &selection.operations else {
            return Err(unresolvable(format!(
                "@from on {} has no selection",
                relation.name
            )));
        };
        let leaf = CollectedField {
            field: cf.field,
            selections: vec![(&op.node.selection_set.node, Include::Always)],
            include: cf.include.clone(),
            occurrences: Vec::new(),
        };
        let (fetch, planned, _) = self.keyed_fetch(scope, &key, relation, &leaf, include, None, None)?;
        let inner = planned
            .by_type
            .into_iter()
            .next()
            .and_then(|(_, fields)| fields.into_iter().next())
            .map(|node| node.kind)
            .ok_or_else(|| unresolvable(format!("@from through {} selects nothing", relation.name)))?;
        Ok(FieldKind::Hydrated {
            fetch,
            key,
            inner: Box::new(inner),
        })
    }

    /// Adds the field holding a join/lookup key to the parent's selection under a fresh alias.
    fn key_field(
        &mut self,
        buf: &mut FetchBuf,
        type_name: &Name,
        key_field: &Name,
    ) -> Result<ParentKey, PlanError> {
        let Some(FieldDef {
            resolver: Resolver::Owned { source, global_id },
            ..
        }) = self.schema.field(type_name, key_field)
        else {
            return Err(unresolvable(format!(
                "{type_name}.{key_field} is used as a key but is not a plain field of {type_name}"
            )));
        };
        let alias = self.aliases.named(&format!("_k_{source}"));
        if !buf.text.is_empty() && !buf.text.ends_with('{') {
            buf.text.push(' ');
        }
        buf.text.push_str(&alias);
        buf.text.push(':');
        buf.text.push_str(source);
        Ok(ParentKey::Field {
            alias,
            global_id: global_id.clone(),
        })
    }

    /// A child fetch for a `@ref` (join = None) or `@join` field.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn keyed_fetch(
        &mut self,
        parent: Scope<'_>,
        key: &ParentKey,
        fdef: &FieldDef,
        cf: &CollectedField<'a>,
        include: &Include,
        join: Option<&crate::schema::Join>,
        order_by: Option<&Name>,
    ) -> Result<(FetchId, SelectionSet, Option<Name>), PlanError> {
        let target = named_type(&fdef.ty);
        let sets = &cf.selections;
        let args = join.map(|j| (j, fdef, cf));
        self.keyed_fetch_with(
            parent,
            key,
            target,
            include,
            args,
            order_by,
            &mut |b, buf, scope| b.selection(buf, scope, target, sets),
        )
    }

    /// A keyed fetch of `target` whose selection `body` prints.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn keyed_fetch_with(
        &mut self,
        parent: Scope<'_>,
        key: &ParentKey,
        target: &Name,
        include: &Include,
        join: Option<(&crate::schema::Join, &FieldDef, &CollectedField<'a>)>,
        order_by: Option<&Name>,
        body: Body<'a, '_>,
    ) -> Result<(FetchId, SelectionSet, Option<Name>), PlanError> {
        let join_args = join.map(|(_, fdef, cf)| (fdef, cf));
        let join = join.map(|(j, _, _)| j);
        let object = self
            .schema
            .object(target)
            .ok_or_else(|| unresolvable(format!("{target} is not an object type")))?;
        let owner = object
            .owner
            .as_ref()
            .ok_or_else(|| unresolvable(format!("{target} has no @owner")))?;
        let (subgraph, strategy, field, arg, arg_type, result_key_field, send_global_id) = match join {
            None => {
                let lookup = object
                    .lookup
                    .as_ref()
                    .ok_or_else(|| unresolvable(format!("{target} has no @lookup")))?;
                let gid = self.global_id_of(target, &lookup.key);
                (
                    owner.subgraph.clone(),
                    lookup.strategy,
                    lookup.field.clone(),
                    lookup.arg.clone(),
                    lookup.arg_type.clone(),
                    lookup.key.clone(),
                    gid,
                )
            }
            Some(join) => (
                join.subgraph.clone(),
                LookupStrategy::Batch,
                join.field.clone(),
                join.arg.clone(),
                join.arg_type.clone(),
                join.on.clone(),
                None,
            ),
        };
        let Some(FieldDef {
            resolver:
                Resolver::Owned {
                    source: key_source,
                    global_id: result_key_global_id,
                },
            ty: key_type,
            ..
        }) = self.schema.field(target, &result_key_field)
        else {
            return Err(unresolvable(format!(
                "{target}.{result_key_field} is used as a key but is not a plain field of {target}"
            )));
        };
        let key_source = key_source.clone();
        let result_key_global_id = result_key_global_id.clone();

        let id = self.reserve();
        self.fetches[parent.fetch].children.push(id);
        let result_key_alias = self.aliases.named("_key");
        let mut buf = FetchBuf {
            text: format!("{result_key_alias}:{key_source}"),
            include: include.clone(),
            ..FetchBuf::default()
        };
        // A merged list is ordered by a field the client may not select.
        let order_alias = match order_by {
            Some(order) => match self.schema.field(target, order).map(|f| &f.resolver) {
                Some(Resolver::Owned { source, .. }) => {
                    let alias = self.aliases.named("_order");
                    buf.text.push_str(&format!(" {alias}:{source}"));
                    Some(alias)
                }
                _ => {
                    return Err(unresolvable(format!(
                        "{target}.{order} cannot order a merged list"
                    )))
                }
            },
            None => None,
        };
        // Arguments of a join field are passed to the subgraph's join field.
        let mut extra_args = String::new();
        if let Some((fdef, cf)) = join_args {
            let mut arg_buf = FetchBuf::default();
            self.arguments(&mut arg_buf, fdef, cf);
            buf.args = arg_buf.args;
            extra_args = arg_buf.text;
        }
        let selection = body(self, &mut buf, Scope::new(id, Some(&subgraph), &[], include))?;

        let page = join.and_then(|j| j.page.clone());
        let mut var_defs = variable_definitions(Some(&arg_type), &buf.args);
        let mut page_args = String::new();
        if let Some(page) = &page {
            var_defs.insert_str(var_defs.len() - 1, ",$_limit:Int,$_offset:Int");
            page_args = format!(",{}:$_limit,{}:$_offset", page.limit_arg, page.offset_arg);
        }
        let extra = extra_args
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .map(|s| format!(",{s}"))
            .unwrap_or_default();
        let document = match strategy {
            LookupStrategy::Batch => format!(
                "query{var_defs}{{{field}({arg}:$_keys{page_args}{extra}){{{}}}}}",
                buf.text
            ),
            LookupStrategy::Entities => format!(
                "query{var_defs}{{_entities(representations:$_keys){{...on {}{{{}}}}}}}",
                owner.type_name, buf.text
            ),
            // The body is built per request (one aliased field per key); this is its header.
            LookupStrategy::Alias => format!("query{}", variable_definitions(None, &buf.args)),
        };
        let keys = KeyInput {
            parent: parent.fetch,
            key_path: parent.path.to_vec(),
            key: key.clone(),
            result_key: Some((result_key_alias, result_key_global_id)),
        };
        let query = SubgraphQuery {
            root_fields: Vec::new(),
            subgraph,
            selection: buf.text,
            document,
        };
        let kind = match strategy {
            LookupStrategy::Entities => FetchKind::Entities(
                query,
                EntityFetch {
                    keys,
                    type_name: owner.type_name.clone(),
                    representations: Representations::KeyField {
                        key_field: key_source,
                        key_type: key_type.clone(),
                        send_global_id,
                    },
                },
            ),
            LookupStrategy::Batch | LookupStrategy::Alias => {
                let keyed = KeyedFetch {
                    keys,
                    strategy: if strategy == LookupStrategy::Alias {
                        KeyStrategy::Alias
                    } else {
                        KeyStrategy::Batch
                    },
                    field,
                    arg,
                    arg_type,
                    send_global_id,
                    page,
                };
                if join.is_some() {
                    FetchKind::Join(query, keyed)
                } else {
                    FetchKind::Lookup(query, keyed)
                }
            }
        };
        let children = std::mem::take(&mut self.fetches[id].children);
        self.fetches[id] = Fetch {
            id,
            kind,
            arguments: buf.args,
            include: include.clone(),
            children,
        };
        Ok((id, selection, order_alias))
    }

    fn global_id_of(&self, type_name: &Name, field: &Name) -> Option<String> {
        match self.schema.field(type_name, field).map(|f| &f.resolver) {
            Some(Resolver::Owned { global_id, .. }) => global_id.clone(),
            _ => None,
        }
    }
}

/// Forwards a field's `@include`/`@skip` to the subgraph, so that a skipped
/// field is neither resolved there nor a source of errors. One conjunction
/// of conditions prints as directives; a field reached under alternative
/// conditions (two fragments) is fetched, and the projection leaves it out.
pub(super) fn conditions(buf: &mut FetchBuf, include: &Include) {
    let Include::When(alternatives) = include else {
        return;
    };
    let [all] = alternatives.as_slice() else {
        return;
    };
    let boolean = async_graphql::parser::types::Type {
        base: async_graphql::parser::types::BaseType::Named(Name::new("Boolean")),
        nullable: false,
    };
    // `@skip` and `@include` may each appear once on a field (§5.7.3): a
    // conjunction of more is printed as its first of each kind, and the
    // projection, which checks every field's whole condition, drops what
    // the others exclude (the subgraph answers a little more).
    let (mut skip, mut include) = (false, false);
    for condition in all {
        // Conditions of the whole fetch are checked before it is sent; a
        // root fetch's are known once all its fields are printed.
        if buf.pending.is_none() && buf.include.requires(condition) {
            continue;
        }
        let printed = if condition.expected {
            &mut include
        } else {
            &mut skip
        };
        if std::mem::replace(printed, true) {
            continue;
        }
        let var = condition_variable(condition);
        if !buf.args.iter().any(|a| a.var == var) {
            buf.args.push(ArgBinding {
                var: var.clone(),
                value: async_graphql_value::Value::Variable(condition.var.clone()),
                def: crate::schema::InputValueDef {
                    name: condition.var.clone(),
                    ty: boolean.clone(),
                    default: None,
                    source_name: condition.var.to_string(),
                    source_type: boolean.clone(),
                    global_id: None,
                    pos: async_graphql::parser::Pos::default(),
                },
            });
        }
        let start = buf.text.len();
        buf.text.push_str(if condition.expected {
            "@include(if:$"
        } else {
            "@skip(if:$"
        });
        buf.text.push_str(&var);
        buf.text.push(')');
        if let Some(pending) = &mut buf.pending {
            pending.push((start..buf.text.len(), condition.clone()));
        }
    }
}

/// The subgraph variable that carries the client's variable a condition tests.
fn condition_variable(condition: &Condition) -> String {
    format!("_if_{}", condition.var)
}

/// `($_keys:[Int!]!,$_a0:String)`, or nothing when there are no variables.
pub(crate) fn variable_definitions(
    keys: Option<&async_graphql::parser::types::Type>,
    args: &[ArgBinding],
) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(ty) = keys {
        parts.push(format!("$_keys:{ty}"));
    }
    for a in args {
        parts.push(format!("${}:{}", a.var, a.def.source_type));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("({})", parts.join(","))
    }
}

fn response_keys(set: &AstSelectionSet, out: &mut HashSet<Name>) {
    for s in &set.items {
        match &s.node {
            Selection::Field(f) => {
                out.insert(f.node.response_key().node.clone());
                response_keys(&f.node.selection_set.node, out);
            }
            Selection::InlineFragment(i) => response_keys(&i.node.selection_set.node, out),
            Selection::FragmentSpread(_) => {}
        }
    }
}

/// Closes the selection set opened at `open`. One the subgraph is asked
/// nothing in (the client selected only `__typename`, answered by the plan)
/// asks for `__typename`, as an empty selection set is not GraphQL; so does
/// one with a condition in it, which may select nothing at run time: a
/// service answering `{}` as `null` there (graphene's, async-graphql's do)
/// would make the object look missing.
pub(super) fn close_selection(text: &mut String, open: usize) {
    if text.ends_with('{') {
        text.push_str("__typename");
    } else if !selects_a_field_always(&text[open..]) {
        text.push_str(" __typename");
    }
    text.push('}');
}

/// Whether a printed selection set (`a b@skip(if:$x) c:d(e:"f g"){h}`, no
/// braces around it) has a field without a condition at its top level; an
/// inline fragment may select nothing for some types.
fn selects_a_field_always(set: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut item_start, mut conditional) = (true, false);
    // An inline fragment (`...on A{b}`) ends at its closing brace.
    let (mut fragment, mut braced) = (false, false);
    for b in set.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' if depth == 0 => {
                braced = true;
                depth += 1;
            }
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            b' ' | b',' if depth == 0 && (braced || !fragment) => {
                if !item_start && !conditional && !fragment {
                    return true;
                }
                (item_start, conditional, fragment, braced) = (true, false, false, false);
            }
            b'@' if depth == 0 => conditional = true,
            b'.' if depth == 0 && item_start => fragment = true,
            _ if depth == 0 => item_start = false,
            _ => {}
        }
    }
    !item_start && !conditional && !fragment
}

/// Each field's occurrences, when the response order of the set they make
/// up depends on the variables: a field whose first occurrence may be
/// skipped while a later one is not goes where the first that holds is
/// (§6.3.2). `None`: the collected order is the response order.
fn response_orders<'c, 'a: 'c>(
    fields: impl Iterator<Item = &'c CollectedField<'a>> + Clone,
) -> Option<Vec<crate::plan::Occurrences>> {
    let moves = fields.clone().any(|f| {
        f.occurrences.len() > 1
            && f.occurrences
                .first()
                .is_some_and(|(_, first)| *first != f.include)
    });
    moves.then(|| fields.map(|f| f.occurrences.clone().into_boxed_slice()).collect())
}

fn key_name<'c>(cf: &'c CollectedField<'_>) -> &'c Name {
    &cf.field.node.name.node
}

pub(super) fn unresolvable(message: String) -> PlanError {
    PlanError::Unresolvable { message }
}

fn nullable(name: &str) -> async_graphql::parser::types::Type {
    async_graphql::parser::types::Type {
        base: async_graphql::parser::types::BaseType::Named(Name::new(name)),
        nullable: true,
    }
}

#[cfg(test)]
mod tests {
    use super::selects_a_field_always;

    #[test]
    fn a_selection_with_a_field_under_no_condition_selects_it_always() {
        for always in [
            "id",
            "a@skip(if:$x) b",
            "c:d(e:\"f @g\"){h@skip(if:$x)}",
            "x(s:\"a\\\" b\") y@skip(if:$z)",
        ] {
            assert!(selects_a_field_always(always), "{always}");
        }
        for maybe_nothing in [
            "a@skip(if:$x)",
            "a@skip(if:$x) b(c:1)@include(if:$y){d}",
            "...on A{b}",
            "",
        ] {
            assert!(!selects_a_field_always(maybe_nothing), "{maybe_nothing}");
        }
    }
}
