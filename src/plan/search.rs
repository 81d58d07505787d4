//! Planning `@search` root fields: the connection is read from the search
//! fetch's result under canonical field names, and each node is *hydrated*.
//! Fields the document holds are read from it; a `@ref`/`@join` whose key the
//! document holds becomes a keyed fetch straight from the hits; every other
//! field is read from one lookup of the entity by id (per node type), so a
//! page costs one request per service whatever its size.

use async_graphql::parser::types::SelectionSet as AstSelectionSet;
use async_graphql::Name;

use super::build::{unresolvable, Builder, Scope};
use super::normalize::{CollectedField, Include};
use super::{
    search_key_alias, ArgBinding, Fetch, FetchId, FetchKind, FieldKind, FieldNode, ParentKey, PlanError,
    Scalar, SearchFetch, SelectionSet, TypeNames, SEARCH_TYPE_KEY,
};
use crate::schema::{named_type, FieldDef, IndexDef, Resolver};

impl<'a> Builder<'a> {
    /// Plans a `@search` root field: a search fetch and the projection of its connection.
    pub(super) fn search_field(
        &mut self,
        fdef: &FieldDef,
        cf: &CollectedField<'a>,
        key: &Name,
        index: &str,
    ) -> Result<(FetchId, FieldKind), PlanError> {
        let schema = self.schema;
        let def = schema
            .index(index)
            .ok_or_else(|| unresolvable(format!("no index named `{index}`")))?;
        let id = self.reserve();
        let mut arguments = Vec::new();
        for (name, arg) in &fdef.args {
            let value = match cf.field.node.get_argument(name) {
                Some(v) => v.node.clone(),
                None => match &arg.default {
                    Some(d) => d.clone(),
                    None => continue,
                },
            };
            arguments.push(ArgBinding {
                var: name.to_string(),
                value,
                def: arg.clone(),
            });
        }
        let path = vec![key.clone()];
        let selection = self.connection(def, id, &path, named_type(&fdef.ty), &cf.selections, &cf.include)?;
        let counts = selection
            .by_type
            .iter()
            .flat_map(|(_, fields)| fields)
            .any(|f| matches!(&f.kind, FieldKind::Leaf { data_key, .. } if data_key == "totalCount"));
        let children = std::mem::take(&mut self.fetches[id].children);
        self.fetches[id] = Fetch {
            id,
            kind: FetchKind::Search(SearchFetch {
                index: index.to_string(),
                field: fdef.name.clone(),
                response_key: key.clone(),
                counts,
            }),
            arguments,
            include: cf.include.clone(),
            children,
        };
        Ok((
            id,
            FieldKind::Object {
                data_key: key.clone(),
                selection,
            },
        ))
    }

    /// The connection, edge and page-info types: plain values under their field names.
    fn connection(
        &mut self,
        def: &IndexDef,
        fetch: FetchId,
        path: &[Name],
        type_name: &Name,
        sets: &[(&'a AstSelectionSet, Include)],
        include: &Include,
    ) -> Result<SelectionSet, PlanError> {
        let schema = self.schema;
        let collected = self.collector.collect(type_name, sets)?;
        let mut nodes = Vec::with_capacity(collected.len());
        for (key, cf) in &collected {
            let field_name = &cf.field.node.name.node;
            if field_name == "__typename" {
                nodes.push(FieldNode::typename(
                    key.clone(),
                    cf.include.clone(),
                    type_name.clone(),
                ));
                continue;
            }
            let fdef = schema
                .field(type_name, field_name)
                .ok_or_else(|| unresolvable(format!("{type_name}.{field_name} is not in the schema")))?;
            let named = named_type(&fdef.ty);
            let include = include.and(&cf.include);
            let mut child = path.to_vec();
            child.push(field_name.clone());
            let kind = if self.is_leaf(named) {
                FieldKind::Leaf {
                    data_key: field_name.clone(),
                    global_id: false,
                    scalar: Scalar::of(named),
                }
            } else if schema.is_abstract(named) || def.source(named).is_some() {
                FieldKind::Object {
                    data_key: field_name.clone(),
                    selection: self.search_node(def, fetch, &child, named, &cf.selections, &include)?,
                }
            } else {
                let selection = self.connection(def, fetch, &child, named, &cf.selections, &include)?;
                // A list of edges: objects with a field holding a hit.
                let holds_hits = schema.object(named).is_some_and(|o| {
                    o.fields.values().any(|f| {
                        let t = named_type(&f.ty);
                        schema.is_abstract(t) || def.source(t).is_some()
                    })
                });
                if holds_hits && crate::schema::is_list(&fdef.ty) {
                    FieldKind::SearchEdges {
                        data_key: field_name.clone(),
                        selection,
                    }
                } else {
                    FieldKind::Object {
                        data_key: field_name.clone(),
                        selection,
                    }
                }
            };
            nodes.push(FieldNode {
                order: None,
                response_key: key.clone(),
                ty: fdef.ty.clone(),
                include: cf.include.clone(),
                kind,
            });
        }
        Ok(SelectionSet {
            by_type: vec![(type_name.clone(), nodes)],
            abstract_source: None,
        })
    }

    /// A hit's node, per entity type the index holds.
    fn search_node(
        &mut self,
        def: &IndexDef,
        fetch: FetchId,
        path: &[Name],
        type_name: &Name,
        sets: &[(&'a AstSelectionSet, Include)],
        include: &Include,
    ) -> Result<SelectionSet, PlanError> {
        let schema = self.schema;
        let mut by_type = Vec::new();
        for entity in schema.possible_types(type_name) {
            let Some(source) = def.source(entity) else {
                continue;
            };
            let object = schema
                .object(entity)
                .ok_or_else(|| unresolvable(format!("{entity} is not an object type")))?;
            let lookup_key = object.lookup.as_ref().map(|l| l.key.as_str()).unwrap_or("id");
            let key_alias = search_key_alias(entity);
            let collected = self.collector.collect(entity, sets)?;
            let mut slots: Vec<Option<FieldNode>> = Vec::with_capacity(collected.len());
            let mut hydrate: Vec<(usize, &Name, &CollectedField<'a>)> = Vec::new();
            for (key, cf) in &collected {
                let field_name = &cf.field.node.name.node;
                if field_name == "__typename" {
                    slots.push(Some(FieldNode::typename(
                        key.clone(),
                        cf.include.clone(),
                        entity.clone(),
                    )));
                    continue;
                }
                let fdef = schema
                    .field(entity, field_name)
                    .ok_or_else(|| unresolvable(format!("{entity}.{field_name} is not in the schema")))?;
                let named = named_type(&fdef.ty);
                let field_include = include.and(&cf.include);
                let scope = Scope::new(fetch, None, path, &field_include);
                // A `@from` path the document denormalized the same way.
                let denormalized = match &fdef.resolver {
                    Resolver::Path { relation, leaf, .. } => source.field(field_name).is_some_and(|f| {
                        f.reduce.is_none()
                            && f.path
                                .as_deref()
                                .is_some_and(|p| p.len() == 2 && &p[0] == relation && &p[1] == leaf)
                    }),
                    _ => false,
                };
                let kind = match &fdef.resolver {
                    _ if denormalized => Some(FieldKind::Leaf {
                        data_key: field_name.clone(),
                        global_id: false,
                        scalar: Scalar::of(named),
                    }),
                    Resolver::Owned { .. } if self.is_leaf(named) && field_name == lookup_key => {
                        Some(FieldKind::Leaf {
                            data_key: key_alias.clone(),
                            global_id: false,
                            scalar: Scalar::Id,
                        })
                    }
                    Resolver::Owned { .. }
                        if self.is_leaf(named) && source.holds_entity_field(field_name) =>
                    {
                        Some(FieldKind::Leaf {
                            data_key: field_name.clone(),
                            global_id: false,
                            scalar: Scalar::of(named),
                        })
                    }
                    Resolver::Ref { key: ref_key } if source.holds_entity_field(ref_key) => {
                        let key = ParentKey::Field {
                            alias: ref_key.clone(),
                            global_id: None,
                        };
                        let (f, selection, _) =
                            self.keyed_fetch(scope, &key, fdef, cf, &field_include, None, None)?;
                        Some(FieldKind::Ref {
                            fetch: f,
                            key,
                            selection,
                        })
                    }
                    Resolver::Join(join)
                        if join.key == lookup_key || source.holds_entity_field(&join.key) =>
                    {
                        let key = ParentKey::Field {
                            alias: if join.key == lookup_key {
                                key_alias.clone()
                            } else {
                                join.key.clone()
                            },
                            global_id: None,
                        };
                        let (f, selection, _) =
                            self.keyed_fetch(scope, &key, fdef, cf, &field_include, Some(join), None)?;
                        Some(FieldKind::Join {
                            fetch: f,
                            key,
                            selection,
                        })
                    }
                    Resolver::Path {
                        relation, selection, ..
                    } if schema.field(entity, relation).is_some_and(
                        |r| matches!(&r.resolver, Resolver::Ref { key } if source.holds_entity_field(key)),
                    ) =>
                    {
                        let relation = schema.field(entity, relation).ok_or_else(|| {
                            unresolvable(format!("{entity}.{relation} is not in the schema"))
                        })?;
                        let Resolver::Ref { key: ref_key } = &relation.resolver else {
                            return Err(unresolvable(format!("{entity}.{} is not a @ref", relation.name)));
                        };
                        Some(self.path_field(
                            scope,
                            ParentKey::Field {
                                alias: ref_key.clone(),
                                global_id: None,
                            },
                            relation,
                            cf,
                            selection,
                            &field_include,
                        )?)
                    }
                    _ => {
                        hydrate.push((slots.len(), key, cf));
                        None
                    }
                };
                slots.push(kind.map(|kind| FieldNode {
                    order: None,
                    response_key: key.clone(),
                    ty: fdef.ty.clone(),
                    include: cf.include.clone(),
                    kind,
                }));
            }
            if !hydrate.is_empty() {
                let scope = Scope::new(fetch, None, path, include);
                let fields: Vec<(&Name, &CollectedField<'a>)> =
                    hydrate.iter().map(|(_, key, cf)| (*key, *cf)).collect();
                let hit_key = ParentKey::Field {
                    alias: key_alias.clone(),
                    global_id: None,
                };
                let (lookup, selection, _) = self.keyed_fetch_with(
                    scope,
                    &hit_key,
                    entity,
                    include,
                    None,
                    None,
                    &mut |b, buf, scope| {
                        let nodes = b.fields_from(buf, scope, entity, fields.iter().copied())?;
                        Ok(SelectionSet {
                            by_type: vec![(entity.clone(), nodes)],
                            abstract_source: None,
                        })
                    },
                )?;
                let planned = selection
                    .by_type
                    .into_iter()
                    .next()
                    .map(|(_, f)| f)
                    .unwrap_or_default();
                for ((slot, _, _), node) in hydrate.iter().zip(planned) {
                    slots[*slot] = Some(FieldNode {
                        order: None,
                        response_key: node.response_key,
                        ty: node.ty,
                        include: node.include,
                        kind: FieldKind::Hydrated {
                            fetch: lookup,
                            key: hit_key.clone(),
                            inner: Box::new(node.kind),
                        },
                    });
                }
            }
            by_type.push((entity.clone(), slots.into_iter().flatten().collect()));
        }
        Ok(SelectionSet {
            by_type,
            abstract_source: schema
                .is_abstract(type_name)
                .then(|| (TypeNames::Unified, Name::new(SEARCH_TYPE_KEY))),
        })
    }
}
