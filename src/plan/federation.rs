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

use async_graphql::parser::types::{BaseType, Type};
use async_graphql::Name;

use super::build::{unresolvable, variable_definitions, Builder, FetchBuf, Scope};
use super::normalize::{CollectedField, Include};
use super::{
    EntityFetch, Fetch, FetchKind, FieldKind, FieldNode, KeyInput, ParentKey, PlanError, Representation,
    RepresentationField, Representations, SubgraphQuery,
};
use crate::schema::{FederatedField, FederatedType, FieldSetItem, Resolver};

/// Fields of one object that one subgraph resolves, planned as one entity fetch.
pub(super) struct Hop<'c, 'a> {
    graph: String,
    /// `(slot in the parent's field list, response key, field)`.
    fields: Vec<(usize, &'c Name, &'c CollectedField<'a>)>,
    /// What those fields `@requires`, added to the representations.
    requires: Vec<FieldSetItem>,
    /// Subgraphs some of the fields hop on to from here: they need fields
    /// this subgraph resolves first (their `@requires`).
    onward: Vec<String>,
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
            && hops
                .iter()
                .any(|h| h.graph != target && h.onward.contains(&target));
        if rides {
            let hop = hops.remove(i);
            if let Some(carrier) = hops.iter_mut().find(|h| h.onward.contains(&target)) {
                carrier.fields.extend(hop.fields);
            }
        } else {
            i += 1;
        }
    }
    hops
}

impl<'a> Builder<'a> {
    /// Files a field the scope's subgraph does not resolve into the hop to
    /// the subgraph that will (one already chosen for this object, if it can).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn entity_hop<'c>(
        &self,
        scope: Scope<'_>,
        type_name: &Name,
        field: &FederatedField,
        slot: usize,
        key: &'c Name,
        cf: &'c CollectedField<'a>,
        hops: &mut Vec<Hop<'c, 'a>>,
    ) -> Result<(), PlanError> {
        let field_name = cf.field.node.name.node.as_str();
        let here = scope.printed_subgraph()?;
        let entity = self.entity(type_name)?;
        let has_key = |graph: &str| entity.keys.iter().any(|k| k.graph == graph);
        let gives = |set: &[FieldSetItem]| set.iter().all(|i| self.resolvable_in(scope, type_name, &i.name));
        let direct: Vec<(&str, &[FieldSetItem])> = field
            .graphs
            .iter()
            .filter(|g| !g.external && has_key(&g.graph))
            .filter_map(|g| match &g.requires {
                None => Some((g.graph.as_str(), &[][..])),
                Some(required) if gives(required) => Some((g.graph.as_str(), &required[..])),
                Some(_) => None,
            })
            .collect();
        let chosen = direct
            .iter()
            .find(|(graph, _)| hops.iter().any(|h| h.graph == *graph))
            .or(direct.first())
            .map(|(graph, required)| (graph.to_string(), required.to_vec(), None));
        // Requirements this subgraph cannot give: go through a subgraph that can first.
        let chosen = chosen.or_else(|| {
            field
                .graphs
                .iter()
                .filter(|g| !g.external && has_key(&g.graph))
                .find_map(|g| {
                    let required = g.requires.as_ref()?;
                    entity
                        .graphs
                        .iter()
                        .filter(|c| c.as_str() != here && has_key(c))
                        .find(|c| required.iter().all(|i| self.resolves(type_name, &i.name, c)))
                        .map(|c| (c.clone(), Vec::new(), Some(g.graph.clone())))
                })
        });
        let Some((graph, requires, onward)) = chosen else {
            return Err(unresolvable(format!(
                "{type_name}.{field_name}: no subgraph can resolve it from \"{here}\" (none that resolves it has a key of {type_name} and the fields it requires)"
            )));
        };
        let hop = match hops.iter().position(|h| h.graph == graph) {
            Some(i) => &mut hops[i],
            None => {
                hops.push(Hop {
                    graph,
                    fields: Vec::new(),
                    requires: Vec::new(),
                    onward: Vec::new(),
                });
                hops.last_mut().unwrap_or_else(|| unreachable!("just pushed"))
            }
        };
        hop.fields.push((slot, key, cf));
        if let Some(onward) = onward {
            if !hop.onward.contains(&onward) {
                hop.onward.push(onward);
            }
        }
        for item in requires {
            if !hop.requires.contains(&item) {
                hop.requires.push(item);
            }
        }
        Ok(())
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
        printed: &mut Vec<String>,
    ) -> Result<(), PlanError> {
        let here = scope.printed_subgraph()?.to_string();
        let entity = self.entity(type_name)?;
        let key = entity
            .keys
            .iter()
            .filter(|k| k.graph == hop.graph)
            .find(|k| {
                k.fields
                    .iter()
                    .all(|i| self.resolvable_in(scope, type_name, &i.name))
            })
            .ok_or_else(|| {
                unresolvable(format!(
                    "{type_name}: \"{here}\" cannot give any key by which \"{}\" resolves it",
                    hop.graph
                ))
            })?;
        let mut items: Vec<FieldSetItem> = key.fields.clone();
        for item in hop.requires {
            if !items.iter().any(|i| i.name == item.name) {
                items.push(item);
            }
        }
        let mut fields = Vec::with_capacity(items.len());
        for item in &items {
            let alias = self.aliases.named(&format!("_r_{}", item.name));
            // Two hops from the same objects share what they both send.
            let mut field = format!("{alias}:{}", item.name);
            print_field_set(&mut field, &item.selection);
            if !printed.contains(&field) {
                if !buf.text.is_empty() && !buf.text.ends_with('{') {
                    buf.text.push(' ');
                }
                buf.text.push_str(&field);
                printed.push(field);
            }
            fields.push(RepresentationField {
                name: item.name.to_string(),
                alias: alias.to_string(),
                selection: representation_fields(&item.selection),
            });
        }
        let parent_key = ParentKey::Representation(Arc::new(Representation {
            type_name: type_name.to_string(),
            typename_alias: scope.typename.cloned(),
            fields,
        }));

        let id = self.reserve();
        self.fetches[scope.fetch].children.push(id);
        let wanted = hop
            .fields
            .iter()
            .fold(Include::Never, |any, (_, _, cf)| any.or(&cf.include));
        let include = scope.include.and(&wanted);
        let mut hop_buf = FetchBuf {
            text: String::new(),
            args: Vec::new(),
            include: include.clone(),
        };
        let hop_scope = Scope {
            requirements_met: true,
            ..Scope::new(id, Some(&hop.graph), &[], &include)
        };
        let collected: Vec<(&Name, &CollectedField<'a>)> =
            hop.fields.iter().map(|(_, key, cf)| (*key, *cf)).collect();
        let nodes = self.fields_from(&mut hop_buf, hop_scope, type_name, collected.into_iter())?;

        let representations = Type {
            base: BaseType::List(Box::new(Type {
                base: BaseType::Named(Name::new("_Any")),
                nullable: false,
            })),
            nullable: false,
        };
        let document = format!(
            "query{}{{_entities(representations:$_keys){{...on {type_name}{{{}}}}}}}",
            variable_definitions(Some(&representations), &hop_buf.args),
            hop_buf.text
        );
        let children = std::mem::take(&mut self.fetches[id].children);
        self.fetches[id] = Fetch {
            id,
            kind: FetchKind::Entities(
                SubgraphQuery {
                    subgraph: hop.graph,
                    selection: hop_buf.text,
                    document,
                },
                EntityFetch {
                    keys: KeyInput {
                        parent: scope.fetch,
                        key_path: scope.path.to_vec(),
                        key: parent_key.clone(),
                        result_key: None,
                    },
                    type_name: type_name.to_string(),
                    representations: Representations::Built,
                },
            ),
            arguments: hop_buf.args,
            include,
            children,
        };
        for ((slot, _, _), node) in hop.fields.iter().zip(nodes) {
            slots[*slot] = Some(FieldNode {
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

    fn entity(&self, type_name: &Name) -> Result<&'a FederatedType, PlanError> {
        self.schema
            .object(type_name)
            .and_then(|o| o.federated.as_deref())
            .ok_or_else(|| unresolvable(format!("{type_name} is not a type of the supergraph's subgraphs")))
    }

    /// Whether the scope's subgraph gives `field` of its objects (resolves
    /// it without requirements, or a `@provides` on the way says it does).
    fn resolvable_in(&self, scope: Scope<'_>, type_name: &Name, field: &str) -> bool {
        scope.provided.iter().any(|p| p.name == field)
            || scope
                .subgraph
                .is_some_and(|here| self.resolves(type_name, field, here))
    }

    /// Whether `graph` resolves `field` of `type_name` with no requirements.
    fn resolves(&self, type_name: &Name, field: &str, graph: &str) -> bool {
        match self.schema.field(type_name, field).map(|f| &f.resolver) {
            Some(Resolver::Federated(f)) => f.resolved_by(graph).is_some_and(|g| g.requires.is_none()),
            _ => false,
        }
    }
}

/// ` {a b{c}}` of a nested field set (nothing for a leaf).
fn print_field_set(text: &mut String, set: &[FieldSetItem]) {
    if set.is_empty() {
        return;
    }
    text.push('{');
    for (i, item) in set.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(&item.name);
        print_field_set(text, &item.selection);
    }
    text.push('}');
}

fn representation_fields(set: &[FieldSetItem]) -> Vec<RepresentationField> {
    set.iter()
        .map(|item| RepresentationField {
            name: item.name.to_string(),
            alias: item.name.to_string(),
            selection: representation_fields(&item.selection),
        })
        .collect()
}
