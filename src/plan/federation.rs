//! Planning across the subgraphs of an Apollo Federation supergraph.
//!
//! A field of an entity that the subgraph being asked does not resolve
//! (or resolves only with fields it `@requires`) is fetched from another
//! subgraph with `_entities`: the fields of one object that go to the same
//! subgraph share one entity fetch, whose representations (the entity's key
//! and what the fields require) the parent's request prints under internal
//! aliases. The executor deduplicates representations and batches them, one
//! request per subgraph and step of the plan; the projection reads the
//! fields back as [`FieldKind::Hydrated`], the path search hits take.
//!
//! A `@requires` whose fields the current subgraph cannot give is met
//! through another subgraph first: the field is planned inside a hop to a
//! subgraph that resolves the required fields, from where it hops on.

use std::sync::Arc;

use indexmap::IndexMap;

use async_graphql::parser::types::{BaseType, SelectionSet as AstSelectionSet, Type};
use async_graphql::Name;

use super::build::{conditions, unresolvable, variable_definitions, Builder, FetchBuf, Scope};
use super::normalize::{CollectedField, Include};
use super::{
    EntityFetch, Fetch, FetchId, FetchKind, FieldKind, FieldNode, KeyInput, ParentKey, PlanError,
    Representation, RepresentationField, Representations, SelectionSet, SubgraphQuery, TypeNames,
};
use crate::schema::{
    EntityKey, FederatedField, FederatedType, FieldDef, FieldGraph, FieldSetItem, InterfaceObject, Resolver,
};

/// Subgraphs in a row one field may need (each giving the next what it requires).
const MAX_CHAINED_HOPS: usize = 4;

/// Where a field's entity hop goes first.
struct Route<'a> {
    graph: String,
    /// Fields of the object the representation carries.
    requires: Vec<FieldSetItem>,
    /// Fields resolved there whose requirements `requires` carries.
    met: Vec<Name>,
    /// The subgraph the field goes on to from there.
    onward: Option<String>,
    /// What the field requires there, when no one subgraph gives it from
    /// here: fetched as a selection first (see [`Representation::assembled`]).
    assembled: Vec<&'a AstSelectionSet>,
    /// The key, when no one subgraph gives it from here: assembled too.
    key: Option<&'a EntityKey>,
}

/// Fields of one object that one subgraph resolves, planned as one entity fetch.
pub(super) struct Hop<'c, 'a> {
    graph: String,
    /// `(slot in the parent's field list, response key, field)`.
    fields: Vec<(usize, &'c Name, &'c CollectedField<'a>)>,
    /// What those fields `@requires`, added to the representations.
    requires: Vec<FieldSetItem>,
    /// Fields resolved there whose requirements `requires` carries.
    met: Vec<Name>,
    /// Subgraphs some of the fields hop on to from there: they need fields
    /// that subgraph resolves first (a key, their `@requires`).
    onward: Vec<String>,
    /// Requirements fetched as selections of the objects first.
    assembled: Vec<&'a AstSelectionSet>,
    /// The key the representations are assembled by, when no one subgraph gives one.
    key: Option<&'a EntityKey>,
}

/// Fields whose hop goes where another hop of the same object goes next
/// ride along with it: one request to that subgraph instead of two
/// (`inStock` goes with `shippingEstimate`, after the price and weight it
/// requires). Fields that require something stay where their requirements are.
pub(super) fn merge_hops<'c, 'a>(mut hops: Vec<Hop<'c, 'a>>) -> Vec<Hop<'c, 'a>> {
    let mut i = 0;
    while i < hops.len() {
        let target = hops[i].graph.clone();
        let rides = hops[i].requires.is_empty()
            && hops[i].assembled.is_empty()
            && hops
                .iter()
                .any(|h| h.graph != target && h.onward.contains(&target));
        if rides {
            let hop = hops.remove(i);
            if let Some(carrier) = hops.iter_mut().find(|h| h.onward.contains(&target)) {
                carrier.fields.extend(hop.fields);
                carrier.met.extend(hop.met);
            }
        } else {
            i += 1;
        }
    }
    hops
}

/// A field of a value object that no subgraph can be asked for by the
/// object's own key (`products { category { details } }`, where the only
/// subgraph with `details` has `Category` without a key): it waits in
/// [`Builder::nested`] for the nearest entity above, whose `_entities`
/// fetch from a subgraph that resolves the fields leading down to it asks
/// for them and the field (`...on Product{category{details}}`). The
/// projection reads it as [`FieldKind::Nested`].
pub(super) struct Nested<'a> {
    /// The fields from the entity down to the object: each with its
    /// response key and the type that has it (filled in on the way up).
    pub(super) chain: Vec<(Name, CollectedField<'a>, Name)>,
    /// The object's type.
    type_name: Name,
    key: Name,
    field: CollectedField<'a>,
    /// Why it cannot be planned where it is: the plan's error if no entity above takes it.
    pub(super) error: PlanError,
}

/// What the selection of the objects a hop starts from already holds.
#[derive(Default)]
pub(super) struct ParentSelection {
    /// Representation fields printed for earlier hops (two hops from the
    /// same objects share what they both send).
    pub(super) printed: Vec<String>,
    /// Leaves the client asked for, printed bare (`upc`): a representation
    /// reads them from there.
    pub(super) plain: Vec<Name>,
}

impl<'a> Builder<'a> {
    /// Files a field the scope's subgraph does not resolve into the hop to
    /// the subgraph that will (one already chosen for this object, if it can).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn entity_hop<'c>(
        &self,
        scope: Scope<'_>,
        type_name: &Name,
        slot: usize,
        key: &'c Name,
        cf: &'c CollectedField<'a>,
        hops: &mut Vec<Hop<'c, 'a>>,
    ) -> Result<(), PlanError> {
        let field_name = &cf.field.node.name.node;
        let here = scope.printed_subgraph()?;
        if scope.hops > MAX_CHAINED_HOPS {
            return Err(unresolvable(format!(
                "{type_name}.{field_name}: more than {MAX_CHAINED_HOPS} subgraphs in a row would be needed to resolve it"
            )));
        }
        let preferred: Vec<&str> = hops.iter().map(|h| h.graph.as_str()).collect();
        // A chain of hops that would not get there (each hop needing the
        // next for what it lacks, round and round) gives way to assembling
        // what the field needs from several subgraphs here.
        let route = match self.route(scope, type_name, field_name, &preferred, MAX_CHAINED_HOPS) {
            Some(route) if self.arrives(scope, type_name, field_name, &route, MAX_CHAINED_HOPS) => {
                Some(route)
            }
            chained => self
                .assembled_route(scope, type_name, field_name, MAX_CHAINED_HOPS)
                .or(chained),
        };
        let Some(route) = route else {
            return Err(unresolvable(format!(
                "{type_name}.{field_name}: no subgraph can resolve it from \"{here}\" (none that resolves it can be given a key of {type_name} and the fields it requires)"
            )));
        };
        // One representation cannot carry a field with two sets of arguments
        // (`price(currency: "USD")` and `price(currency: "EUR")`): a
        // requirement that conflicts with a hop's goes in a hop of its own.
        let conflicts = |hop: &Hop<'_, '_>| {
            route.requires.iter().any(|r| {
                hop.requires
                    .iter()
                    .any(|h| h.name == r.name && (h.arguments != r.arguments || h.selection != r.selection))
            }) || route.assembled.iter().any(|r| {
                hop.assembled
                    .iter()
                    .any(|h| !std::ptr::eq(*h, *r) && shares_a_field(h, r))
                    || hop.requires.iter().any(|h| selects(r, &h.name))
            }) || route
                .requires
                .iter()
                .any(|r| hop.assembled.iter().any(|h| selects(h, &r.name)))
        };
        let same_key = |hop: &Hop<'_, '_>| match (hop.key, route.key) {
            (None, None) => true,
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            _ => false,
        };
        let hop = match hops
            .iter()
            .position(|h| h.graph == route.graph && !conflicts(h) && same_key(h))
        {
            Some(i) => &mut hops[i],
            None => {
                hops.push(Hop {
                    graph: route.graph,
                    fields: Vec::new(),
                    requires: Vec::new(),
                    met: Vec::new(),
                    onward: Vec::new(),
                    assembled: Vec::new(),
                    key: route.key,
                });
                hops.last_mut().unwrap_or_else(|| unreachable!("just pushed"))
            }
        };
        hop.fields.push((slot, key, cf));
        hop.met.extend(route.met);
        for set in route.assembled {
            if !hop.assembled.iter().any(|s| std::ptr::eq(*s, set)) {
                hop.assembled.push(set);
            }
        }
        if let Some(onward) = route.onward {
            if !hop.onward.contains(&onward) {
                hop.onward.push(onward);
            }
        }
        for item in route.requires {
            if !hop.requires.contains(&item) {
                hop.requires.push(item);
            }
        }
        Ok(())
    }

    /// A field no hop from here reaches (`error` says why): it waits for an
    /// entity above to take it ([`Nested`]). Its node keeps its place until
    /// then; a plan never keeps it ([`plan`](super::plan) refuses what is still waiting).
    pub(super) fn wait_for_entity_above(
        &mut self,
        scope: Scope<'_>,
        type_name: &Name,
        key: &Name,
        cf: &CollectedField<'a>,
        fdef: &FieldDef,
        error: PlanError,
    ) -> Result<FieldNode, PlanError> {
        // Under an abstract type the fields above are planned per member:
        // the path down from an entity would not say which.
        if scope.typename.is_some() {
            return Err(error);
        }
        self.nested.push(Nested {
            chain: Vec::new(),
            type_name: type_name.clone(),
            key: key.clone(),
            field: cf.clone(),
            error,
        });
        Ok(FieldNode {
            order: None,
            response_key: key.clone(),
            ty: fdef.ty.clone(),
            include: cf.include.clone(),
            kind: FieldKind::Nested {
                fetch: FetchId::MAX,
                key: ParentKey::Field {
                    alias: key.clone(),
                    global_id: None,
                },
                up: 0,
                path: Vec::new(),
                inner: Box::new(FieldKind::Typename(type_name.clone())),
            },
        })
    }

    /// Takes the fields waiting below these objects (those raised since
    /// `mark`) that a subgraph can give through them: these objects are
    /// entities it resolves by a key they give, and it resolves the fields
    /// leading down and the field (or reaches it in one more hop). One
    /// `_entities` fetch per subgraph; the others wait on, for the entity above.
    pub(super) fn nested_fetches(
        &mut self,
        buf: &mut FetchBuf,
        scope: Scope<'_>,
        type_name: &Name,
        mark: usize,
        slots: &mut [Option<FieldNode>],
        parent: &mut ParentSelection,
    ) -> Result<(), PlanError> {
        if self.nested.len() <= mark {
            return Ok(());
        }
        if scope.typename.is_some() {
            return Err(self.nested.swap_remove(mark).error);
        }
        // An entity hop's objects stand for the parent's, which take them.
        if scope.for_parent || scope.subgraph.is_none() {
            return Ok(());
        }
        let Ok(entity) = self.entity(type_name) else {
            return Ok(());
        };
        let mut by_graph: Vec<(String, Vec<Nested<'a>>)> = Vec::new();
        let mut i = mark;
        while i < self.nested.len() {
            let waiting = &self.nested[i];
            let graph = match waiting.chain.is_empty() {
                true => None,
                false => self.nested_graph(scope, type_name, entity, waiting),
            };
            let Some(graph) = graph else {
                i += 1;
                continue;
            };
            let waiting = self.nested.remove(i);
            match by_graph.iter_mut().find(|(g, _)| *g == graph) {
                Some((_, all)) => all.push(waiting),
                None => by_graph.push((graph, vec![waiting])),
            }
        }
        for (graph, waiting) in by_graph {
            self.nested_fetch(buf, scope, type_name, entity, graph, waiting, slots, parent)?;
        }
        Ok(())
    }

    /// The subgraph that gives `waiting` through these objects: one that
    /// resolves it, else one from where it is one hop on.
    fn nested_graph(
        &self,
        scope: Scope<'_>,
        type_name: &Name,
        entity: &'a FederatedType,
        waiting: &Nested<'a>,
    ) -> Option<String> {
        let field = &waiting.field.field.node.name.node;
        let resolves = |graph: &str, on: &Name, name: &Name| {
            self.federated(on, name)
                .and_then(|f| f.resolved_by(graph))
                .is_some_and(|g| g.requires.is_none())
        };
        let leads = |graph: &str| {
            self.given_key(scope, type_name, entity, graph).is_some()
                && waiting
                    .chain
                    .iter()
                    .all(|(_, cf, on)| resolves(graph, on, &cf.field.node.name.node))
        };
        let resolvers = self
            .federated(&waiting.type_name, field)
            .into_iter()
            .flat_map(|f| &f.graphs);
        if let Some(g) = resolvers
            .filter(|g| resolves(&g.graph, &waiting.type_name, field))
            .find(|g| leads(&g.graph))
        {
            return Some(g.graph.clone());
        }
        let graphs = self.schema.federation()?.urls.keys();
        graphs
            .filter(|g| leads(g))
            .find(|g| {
                let there = Scope::new(scope.fetch, Some(g), &[], scope.include);
                self.route(there, &waiting.type_name, field, &[], MAX_CHAINED_HOPS)
                    .is_some()
            })
            .cloned()
    }

    /// Plans the `_entities` fetch from `graph` that gives the `waiting`
    /// fields through these objects, and puts each in its place below.
    #[allow(clippy::too_many_arguments)]
    fn nested_fetch(
        &mut self,
        buf: &mut FetchBuf,
        scope: Scope<'_>,
        type_name: &Name,
        entity: &'a FederatedType,
        graph: String,
        waiting: Vec<Nested<'a>>,
        slots: &mut [Option<FieldNode>],
        parent: &mut ParentSelection,
    ) -> Result<(), PlanError> {
        let key = self
            .given_key(scope, type_name, entity, &graph)
            .ok_or_else(|| unresolvable(format!("{type_name}: no key of it for \"{graph}\"")))?;
        let parent_key = self.representation(
            buf,
            scope,
            type_name,
            &key.fields,
            key.sent_as.clone(),
            &key.fields.iter().map(|f| f.name.clone()).collect::<Vec<Name>>(),
            (Vec::new(), Vec::new()),
            parent,
        );
        let entity_type = key.sent_as.as_ref().unwrap_or(type_name);
        let id = self.reserve();
        self.fetches[scope.fetch].children.push(id);
        let under = |w: &Nested<'_>| {
            w.chain
                .iter()
                .fold(w.field.include.clone(), |all, (_, cf, _)| all.and(&cf.include))
        };
        let wanted = waiting.iter().fold(Include::Never, |any, w| any.or(&under(w)));
        let include = scope.include.and(&wanted);
        let mut hop_buf = FetchBuf {
            include: include.clone(),
            ..FetchBuf::default()
        };
        // Fields waiting below the same fields are asked together.
        let mut groups: Vec<Vec<Nested<'a>>> = Vec::new();
        for w in waiting {
            let same = |g: &&mut Vec<Nested<'a>>| {
                g[0].chain.len() == w.chain.len() && g[0].chain.iter().zip(&w.chain).all(|(a, b)| a.0 == b.0)
            };
            match groups.iter_mut().find(same) {
                Some(group) => group.push(w),
                None => groups.push(vec![w]),
            }
        }
        for group in &groups {
            let chain = &group[0].chain;
            for (key, cf, on) in chain {
                let name = &cf.field.node.name.node;
                let fdef = self
                    .schema
                    .field(on, name)
                    .ok_or_else(|| unresolvable(format!("{on}.{name} is not in the schema")))?;
                if !hop_buf.text.is_empty() && !hop_buf.text.ends_with('{') {
                    hop_buf.text.push(' ');
                }
                if key != name {
                    hop_buf.text.push_str(key);
                    hop_buf.text.push(':');
                }
                hop_buf.text.push_str(name);
                self.arguments(&mut hop_buf, fdef, cf);
                conditions(&mut hop_buf, &cf.include);
                hop_buf.text.push('{');
            }
            let path: Vec<Name> = chain.iter().map(|(key, _, _)| key.clone()).collect();
            let there = Scope {
                hops: scope.hops + 1,
                ..Scope::new(id, Some(&graph), &path, &include)
            };
            let fields: Vec<(&Name, &CollectedField<'a>)> =
                group.iter().map(|w| (&w.key, &w.field)).collect();
            let below = self.nested.len();
            let nodes = self.fields_from(&mut hop_buf, there, &group[0].type_name, fields.into_iter())?;
            if self.nested.len() > below {
                return Err(self.nested.swap_remove(below).error);
            }
            for _ in chain {
                hop_buf.text.push('}');
            }
            for (w, node) in group.iter().zip(nodes) {
                let at = waiting_node(slots, &w.chain, &w.key).ok_or_else(|| {
                    unresolvable(format!("{type_name}: the place of `{}` below is lost", w.key))
                })?;
                self.has_nested = true;
                at.kind = FieldKind::Nested {
                    fetch: id,
                    key: parent_key.clone(),
                    up: w.chain.len(),
                    path: path.clone(),
                    inner: Box::new(node.kind),
                };
            }
        }
        let selection = format!("...on {entity_type}{{{}}}", hop_buf.text);
        let keys = KeyInput {
            parent: scope.fetch,
            key_path: scope.path.to_vec(),
            key: parent_key,
            result_key: None,
        };
        self.store_entities(
            id,
            graph,
            entity_type.to_string(),
            hop_buf,
            &selection,
            keys,
            include,
        );
        Ok(())
    }

    /// The first hop toward a subgraph that resolves `field`: that subgraph,
    /// when this one gives it a key and what the field requires there (the
    /// requirements travel in the representation); otherwise the first hop
    /// of the route to one of those missing inputs, from where the field is
    /// planned again and goes on.
    fn route(
        &self,
        scope: Scope<'_>,
        type_name: &Name,
        field: &Name,
        preferred: &[&str],
        depth: usize,
    ) -> Option<Route<'a>> {
        let federated = self.federated(type_name, field)?;
        let entity = self.entity(type_name).ok()?;
        let here = scope.subgraph?;
        let gives_here = |item: &FieldSetItem| self.gives(scope, type_name, item);
        let keyed = |graph: &str| self.given_key(scope, type_name, entity, graph).is_some();
        let resolvers: Vec<&FieldGraph> = federated.graphs.iter().filter(|g| !g.external).collect();
        let direct = resolvers
            .iter()
            .filter(|g| keyed(&g.graph) && g.requires.iter().flatten().all(gives_here));
        if let Some(g) = direct
            .clone()
            .find(|g| preferred.contains(&g.graph.as_str()))
            .or_else(|| direct.clone().next())
        {
            let requires = g.requires.clone().unwrap_or_default();
            let met = if requires.is_empty() {
                Vec::new()
            } else {
                vec![field.clone()]
            };
            return Some(Route {
                graph: g.graph.clone(),
                requires,
                met,
                onward: None,
                assembled: Vec::new(),
                key: None,
            });
        }
        if depth == 0 {
            return None;
        }
        resolvers.iter().find_map(|g| {
            let missing = if keyed(&g.graph) {
                g.requires.iter().flatten().find(|i| !gives_here(i))?
            } else {
                entity
                    .keys
                    .iter()
                    .filter(|k| k.graph == g.graph)
                    .flat_map(|k| &k.fields)
                    .find(|i| !gives_here(i))?
            };
            let first = self.route(scope, type_name, &missing.name, &[], depth - 1)?;
            (first.graph != here).then(|| Route {
                onward: Some(g.graph.clone()),
                ..first
            })
        })
    }

    /// Whether `route` gets to a subgraph that resolves `field`: it goes
    /// there, or to a subgraph from where a route does, within `depth` hops.
    fn arrives(
        &self,
        scope: Scope<'_>,
        type_name: &Name,
        field: &Name,
        route: &Route<'a>,
        depth: usize,
    ) -> bool {
        if route.onward.is_none() {
            return true;
        }
        let there = Scope {
            subgraph: Some(&route.graph),
            requirements_met: &route.met,
            provided: &[],
            typename: None,
            ..scope
        };
        depth > 0
            && self
                .route(there, type_name, field, &[], depth - 1)
                .is_some_and(|next| self.arrives(there, type_name, field, &next, depth - 1))
    }

    /// A subgraph that resolves `field` with requirements no one subgraph
    /// gives from here but each of whose fields some subgraph does
    /// (`comments(limit: 3) { authorId }`: the comments from one, each
    /// comment's `authorId` from another), or by a key no one subgraph
    /// gives (`id pid category { id tag }`: `pid` from one, the category
    /// from another): they are planned as a selection of these objects,
    /// fetched first, and the representation is assembled from the answers.
    fn assembled_route(
        &self,
        scope: Scope<'_>,
        type_name: &Name,
        field: &Name,
        depth: usize,
    ) -> Option<Route<'a>> {
        let federated = self.federated(type_name, field)?;
        let entity = self.entity(type_name).ok()?;
        let keyed = |graph: &str| self.given_key(scope, type_name, entity, graph).is_some();
        let reachable = |item: &FieldSetItem| {
            let top = FieldSetItem {
                selection: Vec::new(),
                fragments: Vec::new(),
                ..item.clone()
            };
            self.gives(scope, type_name, &top)
                || self
                    .route(scope, type_name, &item.name, &[], MAX_CHAINED_HOPS)
                    .is_some()
                // A requirement that is itself assembled (`byExpert` needs
                // `byNovice`, which needs `author { yearsOfExperience }`).
                || depth > 0
                    && self
                        .assembled_route(scope, type_name, &item.name, depth - 1)
                        .is_some()
        };
        federated.graphs.iter().filter(|g| !g.external).find_map(|g| {
            let mut assembled = Vec::new();
            if let Some(requires) = &g.requires {
                if !requires.iter().all(reachable) {
                    return None;
                }
                assembled.push(g.requires_selection.as_ref()?);
            }
            let key = match keyed(&g.graph) {
                // By a key given here: only the requirements are assembled.
                true if assembled.is_empty() => return None,
                true => None,
                false => {
                    let key = entity
                        .keys
                        .iter()
                        .filter(|k| k.graph == g.graph)
                        .find(|k| k.fields.iter().all(reachable))?;
                    assembled.insert(0, key.selection.as_ref()?);
                    Some(key)
                }
            };
            Some(Route {
                graph: g.graph.clone(),
                requires: Vec::new(),
                met: match g.requires {
                    Some(_) => vec![field.clone()],
                    None => Vec::new(),
                },
                onward: None,
                assembled,
                key,
            })
        })
    }

    /// Plans the requirements of a hop that no one subgraph gives
    /// ([`Builder::assembled_route`]) as a selection of the scope's
    /// objects: the fields (under the names the representation sends),
    /// and the fetch the hop must wait for. The fetches they need run one
    /// after the other, the hop after the last.
    fn assemble(
        &mut self,
        buf: &mut FetchBuf,
        scope: Scope<'_>,
        type_name: &Name,
        sets: &[&'a AstSelectionSet],
    ) -> Result<(Vec<FieldNode>, FetchId), PlanError> {
        if sets.is_empty() {
            return Ok((Vec::new(), scope.fetch));
        }
        let mark = self.fetches.len();
        // One selection of them all: a field two of them select (a key's
        // `meta { a }`, a requirement's `meta { b }`) is asked once, with
        // both sub-selections, as the client's fields merge.
        let sets: Vec<(&'a AstSelectionSet, Include)> =
            sets.iter().map(|set| (*set, Include::Always)).collect();
        let collected = self.collector.collect(type_name, &sets)?;
        // Under aliases of this hop's own: the client may select the same
        // fields with other arguments, and so may another hop's requirements.
        self.assembled_sets += 1;
        let aliases: Vec<Name> = collected
            .keys()
            .map(|name| self.aliases.named(&format!("_q{}_{name}", self.assembled_sets)))
            .collect();
        // Requirements that need one another (`f` needs the comments'
        // `authorId`, which needs the post's `f`) cannot go round for ever.
        if self.assembling >= MAX_CHAINED_HOPS {
            return Err(unresolvable(format!(
                "{type_name}: more than {MAX_CHAINED_HOPS} requirements in a row, each needing the next, would be needed"
            )));
        }
        self.assembling += 1;
        let nodes = self.fields_from(buf, scope, type_name, aliases.iter().zip(collected.values()));
        self.assembling -= 1;
        let nodes = nodes?;
        let assembled = nodes
            .into_iter()
            .zip(collected.keys())
            .map(|(node, name)| FieldNode {
                response_key: name.clone(),
                order: None,
                ..node
            })
            .collect();
        let planned: Vec<FetchId> = (mark..self.fetches.len()).collect();
        for &id in std::iter::once(&scope.fetch).chain(&planned) {
            self.fetches[id].children.retain(|&child| child < mark);
        }
        let mut last = scope.fetch;
        for id in planned {
            self.fetches[last].children.push(id);
            last = id;
        }
        Ok((assembled, last))
    }

    /// Plans one hop: prints the representation's fields into the parent's
    /// selection, the hop's fields into an `_entities` fetch, and fills their slots.
    pub(super) fn entity_fetch(
        &mut self,
        buf: &mut FetchBuf,
        scope: Scope<'_>,
        type_name: &Name,
        hop: Hop<'_, 'a>,
        slots: &mut [Option<FieldNode>],
        parent: &mut ParentSelection,
    ) -> Result<(), PlanError> {
        let here = scope.printed_subgraph()?.to_string();
        let entity = self.entity(type_name)?;
        let given = || self.given_key(scope, type_name, entity, &hop.graph);
        // An assembled key travels with the assembled fields.
        let (key, mut items) = match hop.key {
            Some(key) => (key, Vec::new()),
            None => {
                let key = given().ok_or_else(|| {
                    unresolvable(format!(
                        "{type_name}: \"{here}\" cannot give any key by which \"{}\" resolves it",
                        hop.graph
                    ))
                })?;
                (key, key.fields.clone())
            }
        };
        for item in hop.requires {
            merge_item(&mut items, item);
        }
        let (assembled, after) = self.assemble(buf, scope, type_name, &hop.assembled)?;
        let key_names = || key.fields.iter().map(|f| f.name.clone()).collect::<Vec<Name>>();
        // The key travels with the assembled fields, or is read from the objects.
        let (assembled_key, identifying) = match hop.key {
            Some(_) => (key_names(), Vec::new()),
            None => (Vec::new(), key_names()),
        };
        let parent_key = self.representation(
            buf,
            scope,
            type_name,
            &items,
            key.sent_as.clone(),
            &identifying,
            (assembled, assembled_key),
            parent,
        );
        // The type the subgraph knows these objects as.
        let entity_type = key.sent_as.as_ref().unwrap_or(type_name);

        let id = self.reserve();
        self.fetches[after].children.push(id);
        let wanted = hop
            .fields
            .iter()
            .fold(Include::Never, |any, (_, _, cf)| any.or(&cf.include));
        let include = scope.include.and(&wanted);
        let mut hop_buf = FetchBuf {
            include: include.clone(),
            ..FetchBuf::default()
        };
        let hop_scope = Scope {
            requirements_met: &hop.met,
            hops: scope.hops + 1,
            for_parent: true,
            ..Scope::new(id, Some(&hop.graph), &[], &include)
        };
        let collected: Vec<(&Name, &CollectedField<'a>)> =
            hop.fields.iter().map(|(_, key, cf)| (*key, *cf)).collect();
        let nodes = self.fields_from(&mut hop_buf, hop_scope, type_name, collected.into_iter())?;

        if hop_buf.text.is_empty() {
            hop_buf.text.push_str("__typename");
        }
        let selection = format!("...on {entity_type}{{{}}}", hop_buf.text);
        let keys = KeyInput {
            parent: scope.fetch,
            key_path: scope.path.to_vec(),
            key: parent_key.clone(),
            result_key: None,
        };
        self.store_entities(
            id,
            hop.graph,
            entity_type.to_string(),
            hop_buf,
            &selection,
            keys,
            include,
        );
        for ((slot, _, _), node) in hop.fields.iter().zip(nodes) {
            slots[*slot] = Some(FieldNode {
                order: None,
                response_key: node.response_key,
                ty: node.ty,
                include: node.include,
                kind: FieldKind::Hydrated {
                    fetch: id,
                    key: parent_key.clone(),
                    inner: Box::new(node.kind),
                },
            });
        }
        Ok(())
    }

    /// Prints what a representation of the scope's objects carries (`items`)
    /// into their selection, and returns the key that reads it back (and
    /// writes the `assembled` fields).
    #[allow(clippy::too_many_arguments)]
    fn representation(
        &mut self,
        buf: &mut FetchBuf,
        scope: Scope<'_>,
        type_name: &Name,
        items: &[FieldSetItem],
        sent_as: Option<Name>,
        identifying: &[Name],
        (assembled, assembled_key): (Vec<FieldNode>, Vec<Name>),
        parent: &mut ParentSelection,
    ) -> ParentKey {
        let mut fields = Vec::with_capacity(items.len());
        for item in items {
            // A scalar the client's selection already asks of these objects,
            // under its own name, is read from there: the subgraph is not
            // asked for it twice.
            let shared = scope.typename.is_none()
                && item.arguments.is_empty()
                && item.selection.is_empty()
                && item.fragments.is_empty()
                && parent.plain.contains(&item.name);
            if shared {
                fields.push(RepresentationField {
                    name: item.name.to_string(),
                    alias: item.name.to_string(),
                    selection: Vec::new(),
                    conditional: false,
                    required: !identifying.contains(&item.name),
                });
                continue;
            }
            // In a fragment of an abstract selection, the same field of two
            // types may have two types: aliases per type keep them apart.
            let alias = match scope.typename {
                Some(_) => self.aliases.named(&format!("_r_{type_name}_{}", item.name)),
                None => self.aliases.named(&format!("_r_{}", item.name)),
            };
            // Two hops from the same objects share what they both send.
            fields.push(RepresentationField {
                required: !identifying.contains(&item.name),
                ..representation_field(buf, &alias, item, &mut parent.printed)
            });
        }
        ParentKey::Representation(Arc::new(Representation {
            type_name: type_name.to_string(),
            typename_alias: scope.typename.cloned(),
            sent_as,
            fields,
            assembled,
            assembled_key,
        }))
    }

    /// Objects of an interface that their subgraph knows as an
    /// `@interfaceObject`: it cannot tell which implementation each is. The
    /// fields selected on the interface itself are resolved on it (here, or
    /// by a hop keyed by the interface); what depends on the implementation
    /// (`__typename`, fragments on it) is asked, by the interface's key, of
    /// a subgraph that has the interface and its implementations, whose
    /// `_entities` answer names each object's type.
    pub(super) fn interface_object_selection(
        &mut self,
        buf: &mut FetchBuf,
        scope: Scope<'_>,
        interface: &Name,
        sets: &[(&'a AstSelectionSet, Include)],
        object: &'a InterfaceObject,
    ) -> Result<SelectionSet, PlanError> {
        let here = scope.printed_subgraph()?.to_string();
        let is_typename = |cf: &CollectedField<'_>| cf.field.node.name.node == "__typename";
        let on_interface = self.collector.collect(interface, sets)?;
        let mut common: Vec<(&Name, &CollectedField<'a>)> =
            on_interface.iter().filter(|(_, cf)| !is_typename(cf)).collect();
        let members: Vec<(&Name, IndexMap<Name, CollectedField<'a>>)> = self
            .schema
            .possible_types(interface)
            .into_iter()
            .map(|member| Ok((member, self.collector.collect(member, sets)?)))
            .collect::<Result<_, PlanError>>()?;
        let by_implementation = members.iter().any(|(_, fields)| {
            fields.iter().any(|(key, cf)| {
                is_typename(cf) || !common.iter().any(|(k, on)| *k == key && same_selections(on, cf))
            })
        });
        if !by_implementation {
            let nodes = self.fields_from(buf, scope, interface, common.into_iter())?;
            return Ok(SelectionSet {
                by_type: vec![(interface.clone(), nodes)],
                abstract_source: None,
            });
        }
        let key = object.keys.first().ok_or_else(|| {
            unresolvable(format!(
                "{interface}: \"{here}\" has it as an @interfaceObject and no subgraph that has the interface resolves it by a key"
            ))
        })?;
        // What the subgraph asked for the implementations resolves (and
        // this one does not) is asked with them: one request, not two.
        let resolves = |graph: &str, cf: &CollectedField<'_>| {
            matches!(
                self.schema.field(interface, &cf.field.node.name.node).map(|f| &f.resolver),
                Some(Resolver::Federated(f)) if f.resolved_by(graph).is_some()
            )
        };
        common.retain(|(_, cf)| resolves(&here, cf) || !resolves(&key.graph, cf));
        let common_keys: Vec<Name> = common.iter().map(|(key, _)| (*key).clone()).collect();
        let common_nodes = self.fields_from(buf, scope, interface, common.into_iter())?;
        let mut fields = Vec::with_capacity(key.fields.len());
        for item in &key.fields {
            let alias = self.aliases.named(&format!("_r_{interface}_{}", item.name));
            fields.push(representation_field(buf, &alias, item, &mut Vec::new()));
        }
        let parent_key = ParentKey::Representation(Arc::new(Representation {
            type_name: interface.to_string(),
            typename_alias: None,
            sent_as: None,
            fields,
            assembled: Vec::new(),
            assembled_key: Vec::new(),
        }));
        let id = self.reserve();
        self.fetches[scope.fetch].children.push(id);
        let mut hop_buf = FetchBuf {
            include: scope.include.clone(),
            ..FetchBuf::default()
        };
        let hop_scope = Scope {
            hops: scope.hops + 1,
            for_parent: true,
            ..Scope::new(id, Some(&key.graph), &[], scope.include)
        };
        let by_owner = self.abstract_selection(&mut hop_buf, hop_scope, interface, sets, &common_keys)?;
        let selection = hop_buf.text.clone();
        let keys = KeyInput {
            parent: scope.fetch,
            key_path: scope.path.to_vec(),
            key: parent_key.clone(),
            result_key: None,
        };
        let graph = key.graph.clone();
        self.store_entities(
            id,
            graph,
            interface.to_string(),
            hop_buf,
            &selection,
            keys,
            scope.include.clone(),
        );
        let Some((TypeNames::Subgraph(owner), alias)) = by_owner.abstract_source else {
            return Err(unresolvable(format!(
                "{interface}: \"{}\" does not have it as an interface",
                key.graph
            )));
        };
        // Per implementation, its fields in the client's order: those on the
        // interface from above, the others from the owner's answer.
        let mut by_type = Vec::with_capacity(by_owner.by_type.len());
        for (member, nodes) in by_owner.by_type {
            let mut owned = nodes.into_iter().map(|node| match node.kind {
                FieldKind::Typename(_) => node,
                kind => FieldNode {
                    kind: FieldKind::Hydrated {
                        fetch: id,
                        key: parent_key.clone(),
                        inner: Box::new(kind),
                    },
                    ..node
                },
            });
            let order = members
                .iter()
                .find(|(m, _)| **m == member)
                .map(|(_, fields)| fields);
            let mut merged = Vec::new();
            for (key, cf) in order.into_iter().flat_map(|fields| fields.iter()) {
                match common_keys.iter().position(|k| k == key) {
                    // Selected on this implementation as on the interface.
                    Some(i) if on_interface.get(key).is_some_and(|on| same_selections(on, cf)) => {
                        merged.push(common_nodes[i].clone())
                    }
                    // Selected again in a fragment on this implementation
                    // (more sub-fields, another condition): planned with
                    // all of this implementation's selections, beside the
                    // interface's (the subgraph merges the two).
                    Some(_) => {
                        merged.extend(self.fields_from(buf, scope, interface, std::iter::once((key, cf)))?)
                    }
                    None => merged.extend(owned.next()),
                }
            }
            by_type.push((member, merged));
        }
        Ok(SelectionSet {
            by_type,
            abstract_source: Some((
                TypeNames::Entity {
                    fetch: id,
                    key: parent_key,
                    subgraph: owner,
                },
                alias,
            )),
        })
    }

    /// Puts the `_entities` fetch `id` in place of its placeholder: the
    /// representations sent to `graph` as `$_keys`, `selection` inside.
    #[allow(clippy::too_many_arguments)]
    fn store_entities(
        &mut self,
        id: FetchId,
        graph: String,
        type_name: String,
        buf: FetchBuf,
        selection: &str,
        keys: KeyInput,
        include: Include,
    ) {
        let representations = Type {
            base: BaseType::List(Box::new(Type {
                base: BaseType::Named(Name::new("_Any")),
                nullable: false,
            })),
            nullable: false,
        };
        let document = format!(
            "query{}{{_entities(representations:$_keys){{{selection}}}}}",
            variable_definitions(Some(&representations), &buf.args),
        );
        let children = std::mem::take(&mut self.fetches[id].children);
        self.fetches[id] = Fetch {
            id,
            kind: FetchKind::Entities(
                SubgraphQuery {
                    subgraph: graph,
                    selection: buf.text,
                    document,
                    root_fields: Vec::new(),
                },
                EntityFetch {
                    keys,
                    type_name,
                    representations: Representations::Built,
                },
            ),
            arguments: buf.args,
            include,
            children,
        };
    }

    /// A field selected on an interface that some subgraph knows as an
    /// `@interfaceObject` is planned per implementation; one that no
    /// subgraph can resolve from here is refused as a whole even when no
    /// implementation would reach it (as the Federation routers do).
    pub(super) fn interface_fields_resolvable(
        &self,
        scope: Scope<'_>,
        interface: &Name,
        sets: &[(&'a AstSelectionSet, Include)],
    ) -> Result<(), PlanError> {
        let Some(federation) = self.schema.federation() else {
            return Ok(());
        };
        if !federation.interface_objects.contains_key(interface) {
            return Ok(());
        }
        let here = scope.printed_subgraph()?;
        for (_, cf) in self.collector.collect(interface, sets)? {
            let name = &cf.field.node.name.node;
            let Some(Resolver::Federated(federated)) =
                self.schema.field(interface, name).map(|f| &f.resolver)
            else {
                continue;
            };
            if federated.resolved_by(here).is_none()
                && self
                    .route(scope, interface, name, &[], MAX_CHAINED_HOPS)
                    .is_none()
            {
                return Err(unresolvable(format!(
                    "{interface}.{name}: no subgraph can resolve it from \"{here}\""
                )));
            }
        }
        Ok(())
    }

    /// A key by which `graph` resolves `entity` that the scope's objects give.
    fn given_key(
        &self,
        scope: Scope<'_>,
        type_name: &Name,
        entity: &'a FederatedType,
        graph: &str,
    ) -> Option<&'a EntityKey> {
        entity
            .keys
            .iter()
            .find(|k| k.graph == graph && k.fields.iter().all(|i| self.gives(scope, type_name, i)))
    }

    fn entity(&self, type_name: &Name) -> Result<&'a FederatedType, PlanError> {
        let interface = || {
            let objects = &self.schema.federation()?.interface_objects;
            objects.get(type_name).map(|o| &o.entity)
        };
        self.schema
            .object(type_name)
            .and_then(|o| o.federated.as_deref())
            .or_else(interface)
            .ok_or_else(|| unresolvable(format!("{type_name} is not a type of the supergraph's subgraphs")))
    }

    /// Whether the scope's subgraph gives `item` of its objects: resolves it
    /// (without requirements, or with them carried in the representations
    /// these objects came from), or a `@provides` on the way says it does;
    /// and, for an object, every field of the item's selection.
    fn gives(&self, scope: Scope<'_>, type_name: &Name, item: &FieldSetItem) -> bool {
        // Every subgraph answers `__typename` of what it returns.
        if item.name == "__typename" {
            return true;
        }
        if let Some(provided) = scope.provided.iter().find(|p| p.name == item.name) {
            return item
                .selection
                .iter()
                .all(|sub| provided.selection.iter().any(|p| p.name == sub.name));
        }
        scope.subgraph.is_some_and(|here| {
            let resolved = self
                .federated(type_name, &item.name)
                .and_then(|f| f.resolved_by(here))
                .is_some_and(|g| g.requires.is_none() || scope.requirements_met.contains(&item.name));
            resolved && self.nested_resolves(here, type_name, item)
        })
    }

    /// Whether `graph` resolves `item` of `type_name` (and its selection) with no requirements.
    fn resolves(&self, graph: &str, type_name: &Name, item: &FieldSetItem) -> bool {
        if item.name == "__typename" {
            return true;
        }
        self.federated(type_name, &item.name)
            .and_then(|f| f.resolved_by(graph))
            .is_some_and(|g| g.requires.is_none())
            && self.nested_resolves(graph, type_name, item)
    }

    fn nested_resolves(&self, graph: &str, type_name: &Name, item: &FieldSetItem) -> bool {
        if item.selection.is_empty() && item.fragments.is_empty() {
            return true;
        }
        let Some(def) = self.schema.field(type_name, &item.name) else {
            return false;
        };
        let nested = crate::schema::named_type(&def.ty);
        let of = |type_name: &Name, sub: &FieldSetItem| {
            sub.name == "__typename" || self.field_resolves(graph, type_name, sub)
        };
        item.selection.iter().all(|sub| of(nested, sub))
            && item.fragments.iter().all(|(on, subs)| {
                // An `@inaccessible` type is not in the schema: its objects
                // are the parent subgraph's own values, which it answers.
                self.schema.get(on).is_none() || subs.iter().all(|sub| of(on, sub))
            })
    }

    /// Whether `graph` gives `sub`, a field of a nested object of `type_name`.
    fn field_resolves(&self, graph: &str, type_name: &Name, sub: &FieldSetItem) -> bool {
        match self.schema.field(type_name, &sub.name).map(|f| &f.resolver) {
            Some(Resolver::Federated(_)) => self.resolves(graph, type_name, sub),
            // A value type's own fields come with it.
            Some(_) => true,
            None => false,
        }
    }

    fn federated(&self, type_name: &Name, field: &str) -> Option<&'a FederatedField> {
        match self.schema.field(type_name, field).map(|f| &f.resolver) {
            Some(Resolver::Federated(f)) => Some(f),
            _ => None,
        }
    }
}

/// Whether two field sets select a field of the same name at their top
/// (a representation carries one value under each name).
fn shares_a_field(a: &AstSelectionSet, b: &AstSelectionSet) -> bool {
    b.items.iter().any(|s| match &s.node {
        async_graphql::parser::types::Selection::Field(f) => selects(a, &f.node.name.node),
        _ => false,
    })
}

/// Whether a field set selects the field `name` at its top.
fn selects(set: &AstSelectionSet, name: &Name) -> bool {
    set.items.iter().any(
        |s| matches!(&s.node, async_graphql::parser::types::Selection::Field(f) if f.node.name.node == *name),
    )
}

/// The node of the field `key` waiting below the slots' objects, down `chain`.
fn waiting_node<'n>(
    slots: &'n mut [Option<FieldNode>],
    chain: &[(Name, CollectedField<'_>, Name)],
    key: &Name,
) -> Option<&'n mut FieldNode> {
    let ((first, _, _), rest) = chain.split_first()?;
    let mut node = slots.iter_mut().flatten().find(|n| n.response_key == *first)?;
    for (next, _, _) in rest {
        node = object_fields(&mut node.kind)?
            .iter_mut()
            .find(|n| n.response_key == *next)?;
    }
    object_fields(&mut node.kind)?
        .iter_mut()
        .find(|n| n.response_key == *key)
}

/// The fields of the object a field's value is (of one concrete type).
fn object_fields(kind: &mut FieldKind) -> Option<&mut Vec<FieldNode>> {
    match kind {
        FieldKind::Object { selection, .. } => match selection.by_type.as_mut_slice() {
            [(_, fields)] => Some(fields),
            _ => None,
        },
        FieldKind::Hydrated { inner, .. }
        | FieldKind::Nested { inner, .. }
        | FieldKind::Sibling { inner, .. } => object_fields(inner),
        _ => None,
    }
}

/// ` {a b{c}}` of a nested field set (nothing for a leaf); with fragments,
/// ` {a ...on B{b} __typename}`.
fn print_field_set(text: &mut String, set: &[FieldSetItem], fragments: &[(Name, Vec<FieldSetItem>)]) {
    if set.is_empty() && fragments.is_empty() {
        return;
    }
    text.push('{');
    for (i, item) in set.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(&item.name);
        text.push_str(&item.arguments);
        print_field_set(text, &item.selection, &item.fragments);
    }
    for (on, fields) in fragments {
        if text.len() > 1 && !text.ends_with('{') {
            text.push(' ');
        }
        text.push_str("...on ");
        text.push_str(on);
        print_field_set(text, fields, &[]);
    }
    if !fragments.is_empty() {
        text.push_str(" __typename");
    }
    text.push('}');
}

/// What a representation carries of a nested field set: its fields, the
/// fields of its fragments where the object has them (only objects of the
/// fragment's type do), and `__typename` when there are fragments.
/// Prints `alias:item` into the parent's selection (once: `printed` holds
/// what hops from the same objects printed before) and returns the
/// representation field that reads it back.
fn representation_field(
    buf: &mut FetchBuf,
    alias: &Name,
    item: &FieldSetItem,
    printed: &mut Vec<String>,
) -> RepresentationField {
    let mut alias = alias.clone();
    let field = loop {
        let mut field = format!("{alias}:{}{}", item.name, item.arguments);
        print_field_set(&mut field, &item.selection, &item.fragments);
        // The same field with other arguments, for another hop: its own alias.
        let taken = printed.iter().any(|p| {
            p.strip_prefix(alias.as_str())
                .is_some_and(|rest| rest.starts_with(':'))
                && *p != field
        });
        if !taken {
            break field;
        }
        alias = Name::new(format!("{alias}_"));
    };
    if !printed.contains(&field) {
        if !buf.text.is_empty() && !buf.text.ends_with('{') {
            buf.text.push(' ');
        }
        buf.text.push_str(&field);
        printed.push(field);
    }
    RepresentationField {
        name: item.name.to_string(),
        alias: alias.to_string(),
        selection: representation_fields(&item.selection, &item.fragments),
        conditional: false,
        required: false,
    }
}

fn representation_fields(
    set: &[FieldSetItem],
    fragments: &[(Name, Vec<FieldSetItem>)],
) -> Vec<RepresentationField> {
    let field = |name: &str, selection, conditional| RepresentationField {
        name: name.to_string(),
        alias: name.to_string(),
        selection,
        conditional,
        required: false,
    };
    let nested = |item: &FieldSetItem| representation_fields(&item.selection, &item.fragments);
    let mut fields: Vec<RepresentationField> = set.iter().map(|i| field(&i.name, nested(i), false)).collect();
    for item in fragments.iter().flat_map(|(_, items)| items) {
        if !fields.iter().any(|f| f.name == item.name.as_str()) {
            fields.push(field(&item.name, nested(item), true));
        }
    }
    if !fragments.is_empty() {
        fields.push(field("__typename", Vec::new(), false));
    }
    fields
}

/// Adds `item` to `set`; a field already there (by name) takes the union of
/// both selections and fragments (two requirements of one field, or a key
/// and a requirement, travel as one).
fn merge_item(set: &mut Vec<FieldSetItem>, item: FieldSetItem) {
    let Some(there) = set.iter_mut().find(|i| i.name == item.name) else {
        set.push(item);
        return;
    };
    for sub in item.selection {
        merge_item(&mut there.selection, sub);
    }
    for (on, fields) in item.fragments {
        match there.fragments.iter_mut().find(|(o, _)| *o == on) {
            Some((_, own)) => fields.into_iter().for_each(|f| merge_item(own, f)),
            None => there.fragments.push((on, fields)),
        }
    }
}

/// Two collections of one response key select the same: the same
/// sub-selections under the same conditions.
fn same_selections(a: &CollectedField<'_>, b: &CollectedField<'_>) -> bool {
    a.include == b.include
        && a.selections.len() == b.selections.len()
        && a.selections
            .iter()
            .zip(&b.selections)
            .all(|((x, xi), (y, yi))| std::ptr::eq(*x, *y) && xi == yi)
}
