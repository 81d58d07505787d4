//! Apollo Federation 2 supergraphs → [`Supergraph`].
//!
//! A supergraph (as `@apollo/composition` or `@theguild/federation-composition`
//! write it) says with `@join__*` directives which subgraph resolves each
//! field. It is read in three steps: the Federation facts are collected from
//! the directives; the document is stripped of them (and of `@inaccessible`
//! elements), its root fields delegated in Tessera's own dialect, and loaded
//! like schema.graphql; then every field of a subgraph type is marked
//! [`Resolver::Federated`] with the subgraphs that resolve it. What the
//! planner does not handle is refused here, with the line and why.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_graphql::parser::types::{
    ConstDirective, DocumentOperations, FieldDefinition, Selection, SelectionSet, ServiceDocument, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::parser::{Pos, Positioned};
use async_graphql_value::{ConstValue, Name};

use super::load::{load_document, SchemaError};
use super::{
    EntityKey, FederatedField, FederatedType, Federation, FieldDef, FieldGraph, FieldSet, FieldSetItem,
    InterfaceObject, Resolver, RootGraph, Supergraph, TypeDefKind,
};

/// A supergraph declares its subgraphs as the values of `enum join__Graph`.
pub(super) fn is_supergraph(doc: &ServiceDocument) -> bool {
    doc.definitions
        .iter()
        .any(|d| matches!(d, TypeSystemDefinition::Type(t) if t.node.name.node == "join__Graph"))
}

/// Specs whose directives only say how the supergraph was composed; a
/// `@link` to any other spec `for: SECURITY` or `for: EXECUTION` asks the
/// gateway to enforce something it does not, and is refused.
const COMPOSITION_SPECS: &[&str] = &["link", "join", "inaccessible", "tag"];
/// Directives the client schema keeps.
const KEPT_DIRECTIVES: &[&str] = &["deprecated", "specifiedBy", "oneOf"];

/// `@join__type`s and memberships of one type, by subgraph name.
#[derive(Default)]
struct TypeFacts {
    graphs: Vec<String>,
    /// `(graph, key field set, where)` of resolvable keys.
    keys: Vec<(String, String, Pos)>,
    /// `(graph, interface)` from `@join__implements`.
    implements: Vec<(String, Name)>,
    /// `(graph, member)` from `@join__unionMember`.
    members: Vec<(String, Name)>,
    /// Subgraphs that have this interface as an object type (`@interfaceObject`).
    interface_objects: Vec<String>,
}

/// One `@join__field`, its field sets still text.
#[derive(Clone)]
struct FieldFacts {
    graph: String,
    /// `type:`, the field's type in that subgraph.
    ty: Option<String>,
    external: bool,
    requires: Option<(String, Pos)>,
    provides: Option<(String, Pos)>,
}

pub(super) fn load(mut doc: ServiceDocument) -> Result<Supergraph, Vec<SchemaError>> {
    let mut reader = Reader::default();
    reader.graphs(&doc);
    let roots = reader.roots(&doc);
    let inaccessible: HashSet<Name> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            TypeSystemDefinition::Type(t) if has(&t.node.directives, "inaccessible") => {
                Some(t.node.name.node.clone())
            }
            _ => None,
        })
        .collect();
    doc.definitions.retain(|d| match d {
        TypeSystemDefinition::Directive(_) => false,
        TypeSystemDefinition::Schema(_) => true,
        TypeSystemDefinition::Type(t) => {
            let name = t.node.name.node.as_str();
            !(name.starts_with("join__") || name.starts_with("link__") || inaccessible.contains(name))
        }
    });
    for def in &mut doc.definitions {
        match def {
            TypeSystemDefinition::Schema(schema) => {
                reader.links(&schema.node.directives);
                schema.node.directives.clear();
            }
            TypeSystemDefinition::Type(t) => {
                let is_root = roots.contains(&t.node.name.node);
                reader.type_definition(&mut t.node, is_root, &inaccessible);
            }
            TypeSystemDefinition::Directive(_) => {}
        }
    }
    if !reader.errors.is_empty() {
        reader.errors.sort_by_key(|e| e.pos);
        return Err(reader.errors);
    }
    let mut supergraph = load_document(&doc)?;
    reader.annotate(&mut supergraph)?;
    Ok(supergraph)
}

#[derive(Default)]
struct Reader {
    /// `join__Graph` enum value → subgraph name.
    graph_names: HashMap<Name, String>,
    urls: BTreeMap<String, String>,
    types: HashMap<Name, TypeFacts>,
    fields: HashMap<(Name, Name), Vec<FieldFacts>>,
    root_graphs: HashMap<(Name, Name), Vec<RootGraph>>,
    /// `@inaccessible` fields of object types: not in the client schema.
    hidden: Vec<(Name, Positioned<FieldDefinition>)>,
    /// `@join__field`s of interface fields: which subgraphs resolve them
    /// (for an `@interfaceObject`, on every implementation).
    interface_fields: HashMap<(Name, Name), Vec<FieldFacts>>,
    /// Fields of object types marked with a bare `@join__field`: no subgraph
    /// resolves them on the object; an `@interfaceObject` of one of its
    /// interfaces does.
    via_interface: HashMap<(Name, Name), Pos>,
    errors: Vec<SchemaError>,
}

impl Reader {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(SchemaError::new(pos, message));
    }

    fn graphs(&mut self, doc: &ServiceDocument) {
        for def in &doc.definitions {
            let TypeSystemDefinition::Type(t) = def else {
                continue;
            };
            if t.node.name.node != "join__Graph" {
                continue;
            }
            let TypeKind::Enum(e) = &t.node.kind else {
                self.error(t.pos, "join__Graph must be an enum of the subgraphs");
                continue;
            };
            for value in &e.values {
                let Some(d) = find(&value.node.directives, "join__graph") else {
                    self.error(value.pos, "a join__Graph value needs @join__graph(name:, url:)");
                    continue;
                };
                let name =
                    string_arg(&d.node, "name").unwrap_or_else(|| value.node.value.node.to_lowercase());
                if let Some(url) = string_arg(&d.node, "url") {
                    self.urls.insert(name.clone(), url);
                }
                self.graph_names.insert(value.node.value.node.clone(), name);
            }
        }
    }

    fn roots(&self, doc: &ServiceDocument) -> Vec<Name> {
        let mut roots = vec![Name::new("Query"), Name::new("Mutation")];
        for def in &doc.definitions {
            if let TypeSystemDefinition::Schema(s) = def {
                roots = [&s.node.query, &s.node.mutation]
                    .into_iter()
                    .flatten()
                    .map(|n| n.node.clone())
                    .collect();
            }
        }
        roots
    }

    /// The subgraph a `graph:` argument names.
    fn graph(&mut self, d: &Positioned<ConstDirective>) -> Option<String> {
        let value = d.node.get_argument("graph")?;
        let name = match &value.node {
            ConstValue::Enum(n) => self.graph_names.get(n).cloned(),
            _ => None,
        };
        if name.is_none() {
            self.error(value.pos, format!("{} is not a value of join__Graph", value.node));
        }
        name
    }

    fn links(&mut self, directives: &[Positioned<ConstDirective>]) {
        for d in directives.iter().filter(|d| d.node.name.node == "link") {
            let Some(url) = string_arg(&d.node, "url") else {
                continue;
            };
            let spec = url
                .trim_end_matches('/')
                .rsplit('/')
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let purpose = d.node.get_argument("for").map(|p| p.node.to_string());
            if !COMPOSITION_SPECS.contains(&spec.as_str()) && purpose.is_some() {
                self.error(
                    d.pos,
                    format!(
                        "@link(url: \"{url}\", for: {}) asks the gateway to enforce `{spec}`, which Tessera does not support",
                        purpose.unwrap_or_default()
                    ),
                );
            }
            if spec == "join" && url.ends_with("/v0.1") {
                self.error(
                    d.pos,
                    "a Federation 1 supergraph (join v0.1): compose it again with Federation 2",
                );
            }
        }
    }

    fn type_definition(
        &mut self,
        t: &mut async_graphql::parser::types::TypeDefinition,
        is_root: bool,
        inaccessible: &HashSet<Name>,
    ) {
        let name = t.name.node.clone();
        let mut facts = TypeFacts::default();
        for d in &t.directives {
            match d.node.name.node.as_str() {
                "join__type" => {
                    let Some(graph) = self.graph(d) else { continue };
                    if bool_arg(&d.node, "isInterfaceObject") {
                        if !matches!(t.kind, TypeKind::Interface(_)) {
                            self.error(
                                d.pos,
                                format!(
                                    "{name}: isInterfaceObject on a type that is not an interface (a subgraph's @interfaceObject stands for an interface of the supergraph)"
                                ),
                            );
                        }
                        facts.interface_objects.push(graph.clone());
                    }
                    if let Some(key) = string_arg(&d.node, "key") {
                        let resolvable = d
                            .node
                            .get_argument("resolvable")
                            .is_none_or(|v| v.node != ConstValue::Boolean(false));
                        if resolvable {
                            facts.keys.push((graph.clone(), key, d.pos));
                        }
                    }
                    if !facts.graphs.contains(&graph) {
                        facts.graphs.push(graph);
                    }
                }
                "join__implements" => {
                    let Some(graph) = self.graph(d) else { continue };
                    if let Some(interface) = string_arg(&d.node, "interface") {
                        facts.implements.push((graph, Name::new(interface)));
                    }
                }
                "join__unionMember" => {
                    let Some(graph) = self.graph(d) else { continue };
                    if let Some(member) = string_arg(&d.node, "member") {
                        facts.members.push((graph, Name::new(member)));
                    }
                }
                "join__owner" => self.error(
                    d.pos,
                    "@join__owner is Federation 1: compose the supergraph again with Federation 2",
                ),
                "join__directive" => self.error(
                    d.pos,
                    "@join__directive (a subgraph directive the gateway must apply) is not supported",
                ),
                _ => {}
            }
        }
        keep_client_directives(&mut t.directives);
        match &mut t.kind {
            TypeKind::Object(o) => {
                o.implements.retain(|i| !inaccessible.contains(&i.node));
                // Hidden from clients, but keys and requirements may name them.
                let (hidden, shown): (Vec<_>, Vec<_>) = std::mem::take(&mut o.fields)
                    .into_iter()
                    .partition(|f| has(&f.node.directives, "inaccessible"));
                o.fields = shown;
                for mut f in hidden {
                    self.field(&name, &mut f.node, &facts, false);
                    self.hidden.push((name.clone(), f));
                }
                for f in &mut o.fields {
                    self.field(&name, &mut f.node, &facts, is_root);
                }
            }
            TypeKind::Interface(i) => {
                i.implements.retain(|i| !inaccessible.contains(&i.node));
                i.fields.retain(|f| !has(&f.node.directives, "inaccessible"));
                for f in &mut i.fields {
                    let graphs = self.join_fields(&name, &f.node);
                    self.interface_fields
                        .insert((name.clone(), f.node.name.node.clone()), graphs);
                    strip_field(&mut f.node);
                }
            }
            TypeKind::Union(u) => u.members.retain(|m| !inaccessible.contains(&m.node)),
            TypeKind::Enum(e) => {
                e.values.retain(|v| !has(&v.node.directives, "inaccessible"));
                for v in &mut e.values {
                    keep_client_directives(&mut v.node.directives);
                }
            }
            TypeKind::InputObject(i) => {
                i.fields.retain(|f| !has(&f.node.directives, "inaccessible"));
                for f in &mut i.fields {
                    keep_client_directives(&mut f.node.directives);
                }
            }
            TypeKind::Scalar => {}
        }
        self.types.insert(name, facts);
    }

    /// The `@join__field(graph:)`s of a field, its field sets still text.
    fn join_fields(&mut self, parent: &Name, f: &FieldDefinition) -> Vec<FieldFacts> {
        let mut graphs = Vec::new();
        for d in f.directives.iter().filter(|d| d.node.name.node == "join__field") {
            for unsupported in ["contextArguments", "overrideLabel"] {
                if d.node.get_argument(unsupported).is_some() {
                    self.error(
                        d.pos,
                        format!(
                            "{parent}.{}: @join__field({unsupported}:) is not supported yet",
                            f.name.node
                        ),
                    );
                }
            }
            // A bare `@join__field` marks a field an @interfaceObject resolves.
            if d.node.get_argument("graph").is_none() {
                continue;
            }
            let Some(graph) = self.graph(d) else { continue };
            let field_set = |arg: &str| {
                d.node.get_argument(arg).and_then(|v| match &v.node {
                    ConstValue::String(s) => Some((s.clone(), v.pos)),
                    _ => None,
                })
            };
            graphs.push(FieldFacts {
                graph,
                ty: string_arg(&d.node, "type"),
                // A field another subgraph took over (`@override`) only serves
                // keys and requirements where it was.
                external: bool_arg(&d.node, "external") || bool_arg(&d.node, "usedOverridden"),
                requires: field_set("requires"),
                provides: field_set("provides"),
            });
        }
        graphs
    }

    /// Records a field's `@join__field`s and leaves it in Tessera's dialect:
    /// a root field delegated to the first subgraph that resolves it.
    fn field(&mut self, parent: &Name, f: &mut FieldDefinition, facts: &TypeFacts, is_root: bool) {
        let mut graphs = self.join_fields(parent, f);
        let bare = f
            .directives
            .iter()
            .find(|d| d.node.name.node == "join__field" && d.node.arguments.is_empty());
        if let (true, Some(d)) = (graphs.is_empty(), bare) {
            self.via_interface
                .insert((parent.clone(), f.name.node.clone()), d.pos);
        } else if graphs.is_empty() {
            graphs = facts
                .graphs
                .iter()
                .map(|graph| FieldFacts {
                    graph: graph.clone(),
                    ty: None,
                    external: false,
                    requires: None,
                    provides: None,
                })
                .collect();
        }
        strip_field(f);
        if is_root {
            let Some(chosen) = graphs.iter().find(|g| !g.external) else {
                self.error(
                    f.name.pos,
                    format!("{parent}.{}: no subgraph resolves it", f.name.node),
                );
                return;
            };
            let graph = chosen.graph.clone();
            // A `@provides` only saves hops: one that cannot be read is not used.
            let alternatives = graphs
                .iter()
                .filter(|g| !g.external)
                .map(|g| RootGraph {
                    graph: g.graph.clone(),
                    provides: g
                        .provides
                        .as_ref()
                        .and_then(|(p, _)| parse_field_set(p).ok())
                        .unwrap_or_default(),
                })
                .collect();
            self.root_graphs
                .insert((parent.clone(), f.name.node.clone()), alternatives);
            let pos = f.name.pos;
            let arg = |name: &str, value: &str| {
                (
                    Positioned::new(Name::new(name), pos),
                    Positioned::new(ConstValue::String(value.to_string()), pos),
                )
            };
            f.directives.push(Positioned::new(
                ConstDirective {
                    name: Positioned::new(Name::new("delegate"), pos),
                    arguments: vec![arg("subgraph", &graph), arg("field", &f.name.node)],
                },
                pos,
            ));
            return;
        }
        self.fields.insert((parent.clone(), f.name.node.clone()), graphs);
    }

    /// Puts the Federation facts into the loaded model.
    fn annotate(mut self, supergraph: &mut Supergraph) -> Result<(), Vec<SchemaError>> {
        let mut members = HashSet::new();
        for (name, facts) in &self.types {
            let Some(def) = supergraph.types.get(name) else {
                continue;
            };
            match &def.kind {
                TypeDefKind::Object(object) => {
                    let declared: Vec<&(String, Name)> = facts.implements.iter().collect();
                    if declared.is_empty() {
                        // No @join__implements: the type implements its interfaces wherever it is.
                        for graph in &facts.graphs {
                            for interface in &object.implements {
                                members.insert((interface.clone(), graph.clone(), name.clone()));
                            }
                        }
                    }
                    for (graph, interface) in declared {
                        members.insert((interface.clone(), graph.clone(), name.clone()));
                    }
                }
                TypeDefKind::Union(union) => {
                    if facts.members.is_empty() {
                        for member in &union.members {
                            for graph in self.types.get(member).map(|f| &f.graphs[..]).unwrap_or_default() {
                                members.insert((name.clone(), graph.clone(), member.clone()));
                            }
                        }
                    }
                    for (graph, member) in &facts.members {
                        members.insert((name.clone(), graph.clone(), member.clone()));
                    }
                }
                _ => {}
            }
        }
        let roots: Vec<Name> = std::iter::once(supergraph.query_type.clone())
            .chain(supergraph.mutation_type.clone())
            .collect();
        let mut errors = std::mem::take(&mut self.errors);
        for (type_name, f) in std::mem::take(&mut self.hidden) {
            if let Some(TypeDefKind::Object(object)) =
                supergraph.types.get_mut(&type_name).map(|t| &mut t.kind)
            {
                object.fields.insert(
                    f.node.name.node.clone(),
                    FieldDef {
                        name: f.node.name.node.clone(),
                        ty: f.node.ty.node.clone(),
                        args: Default::default(),
                        resolver: Resolver::Owned {
                            source: f.node.name.node.to_string(),
                            global_id: None,
                        },
                        pos: f.pos,
                    },
                );
            }
        }
        for (name, def) in supergraph.types.iter_mut() {
            if roots.contains(name) {
                continue;
            }
            let TypeDefKind::Object(object) = &mut def.kind else {
                continue;
            };
            let Some(facts) = self.types.get(name) else {
                continue;
            };
            let mut keys = entity_keys(name, &facts.keys, None, &mut errors);
            // A subgraph that knows one of its interfaces as an object type
            // resolves it by that interface's key, named as the interface.
            for interface in &object.implements {
                let Some(of) = self.types.get(interface) else {
                    continue;
                };
                let by_object: Vec<_> = of
                    .keys
                    .iter()
                    .filter(|(graph, _, _)| of.interface_objects.contains(graph))
                    .cloned()
                    .collect();
                keys.extend(entity_keys(interface, &by_object, Some(interface), &mut errors));
            }
            object.federated = Some(Box::new(FederatedType {
                graphs: facts.graphs.clone(),
                keys,
            }));
            for (field_name, field) in object.fields.iter_mut() {
                let field_key = (name.clone(), field_name.clone());
                let Some(mut graphs) = self.fields.remove(&field_key) else {
                    continue;
                };
                if let Some(pos) = self.via_interface.get(&field_key) {
                    for interface in &object.implements {
                        let Some(of) = self.types.get(interface) else {
                            continue;
                        };
                        let on_interface = self
                            .interface_fields
                            .get(&(interface.clone(), field_name.clone()));
                        graphs.extend(
                            on_interface
                                .into_iter()
                                .flatten()
                                .filter(|g| of.interface_objects.contains(&g.graph))
                                .cloned(),
                        );
                    }
                    if graphs.is_empty() {
                        errors.push(SchemaError::new(
                            *pos,
                            format!(
                                "{name}.{field_name}: no subgraph resolves it, on it or on its interfaces"
                            ),
                        ));
                    }
                }
                let mut parsed = Vec::with_capacity(graphs.len());
                for g in graphs {
                    let mut set = |which: &str, text: Option<(String, Pos)>| {
                        let (text, pos) = text?;
                        parse_field_set(&text)
                            .map_err(|why| {
                                errors.push(SchemaError::new(
                                    pos,
                                    format!("{name}.{field_name} @{which}(fields: \"{text}\"): {why}"),
                                ))
                            })
                            .ok()
                    };
                    let requires_selection = g.requires.as_ref().and_then(|(text, _)| selection_of(text));
                    let requires = set("requires", g.requires);
                    // A `@provides` only saves hops: one that cannot be read is not used.
                    let provides = g.provides.and_then(|(text, _)| parse_field_set(&text).ok());
                    let subgraph_type =
                        g.ty.filter(|t| *t != field.ty.to_string())
                            .and_then(|t| async_graphql::parser::types::Type::new(&t));
                    parsed.push(FieldGraph {
                        graph: g.graph,
                        subgraph_type,
                        external: g.external,
                        requires,
                        requires_selection,
                        provides,
                    });
                }
                field.resolver = Resolver::Federated(Box::new(FederatedField { graphs: parsed }));
            }
        }
        let interface_objects = self
            .types
            .iter()
            .filter(|(_, facts)| !facts.interface_objects.is_empty())
            .map(|(name, facts)| {
                let by_owners: Vec<_> = facts
                    .keys
                    .iter()
                    .filter(|(graph, _, _)| !facts.interface_objects.contains(graph))
                    .cloned()
                    .collect();
                let object = InterfaceObject {
                    graphs: facts.interface_objects.clone(),
                    keys: entity_keys(name, &by_owners, None, &mut errors),
                    entity: FederatedType {
                        graphs: facts.graphs.clone(),
                        keys: entity_keys(name, &facts.keys, None, &mut errors),
                    },
                };
                (name.clone(), object)
            })
            .collect::<HashMap<_, _>>();
        // Fields of such an interface are resolved on the interface itself
        // (by the subgraphs that know it as an object type, or that have it
        // with a key) when its objects' implementations are not known.
        for (name, object) in &interface_objects {
            let Some(TypeDefKind::Interface(interface)) = supergraph.types.get_mut(name).map(|t| &mut t.kind)
            else {
                continue;
            };
            for (field_name, field) in interface.fields.iter_mut() {
                let facts = self
                    .interface_fields
                    .remove(&(name.clone(), field_name.clone()))
                    .unwrap_or_default();
                let graphs = if facts.is_empty() {
                    object
                        .entity
                        .graphs
                        .iter()
                        .map(|graph| FieldGraph {
                            graph: graph.clone(),
                            external: false,
                            requires: None,
                            requires_selection: None,
                            provides: None,
                            subgraph_type: None,
                        })
                        .collect()
                } else {
                    facts
                        .into_iter()
                        .map(|g| FieldGraph {
                            graph: g.graph,
                            external: g.external,
                            requires_selection: g.requires.as_ref().and_then(|(text, _)| selection_of(text)),
                            requires: g.requires.and_then(|(text, _)| parse_field_set(&text).ok()),
                            provides: g.provides.and_then(|(text, _)| parse_field_set(&text).ok()),
                            subgraph_type: None,
                        })
                        .collect()
                };
                field.resolver = Resolver::Federated(Box::new(FederatedField { graphs }));
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.pos);
            return Err(errors);
        }
        supergraph.subgraphs = self.graph_names.values().cloned().collect();
        supergraph.federation = Some(Box::new(Federation {
            urls: self.urls,
            members,
            root_graphs: self.root_graphs,
            interface_objects,
        }));
        Ok(())
    }
}

/// Parsed `(graph, key, where)`s of `type_name`; their representations name
/// `sent_as` when given.
fn entity_keys(
    type_name: &Name,
    keys: &[(String, String, Pos)],
    sent_as: Option<&Name>,
    errors: &mut Vec<SchemaError>,
) -> Vec<EntityKey> {
    let mut parsed = Vec::with_capacity(keys.len());
    for (graph, key, pos) in keys {
        match parse_field_set(key) {
            Ok(fields) => parsed.push(EntityKey {
                graph: graph.clone(),
                fields,
                selection: selection_of(key),
                sent_as: sent_as.cloned(),
            }),
            Err(why) => errors.push(SchemaError::new(
                *pos,
                format!("{type_name} key \"{key}\": {why}"),
            )),
        }
    }
    parsed
}

/// A field set (`a b { c }`) as the selection set of a query; a selection
/// with fragments also selects `__typename` (what a representation says
/// of an object of an abstract type, as Apollo Router sends it).
fn selection_of(text: &str) -> Option<SelectionSet> {
    let doc = async_graphql::parser::parse_query(format!("{{{text}}}")).ok()?;
    let mut set = match doc.operations {
        DocumentOperations::Single(op) => op.node.selection_set.node,
        DocumentOperations::Multiple(_) => return None,
    };
    with_typenames(&mut set);
    Some(set)
}

fn with_typenames(set: &mut SelectionSet) {
    let mut fragments = false;
    let mut typename = false;
    for item in &mut set.items {
        match &mut item.node {
            Selection::Field(f) => {
                typename |= f.node.name.node == "__typename" && f.node.alias.is_none();
                with_typenames(&mut f.node.selection_set.node);
            }
            Selection::InlineFragment(fragment) => {
                fragments = true;
                with_typenames(&mut fragment.node.selection_set.node);
            }
            Selection::FragmentSpread(_) => {}
        }
    }
    if fragments && !typename {
        let at = Pos::default();
        set.items.push(Positioned::new(
            Selection::Field(Positioned::new(
                async_graphql::parser::types::Field {
                    alias: None,
                    name: Positioned::new(Name::new("__typename"), at),
                    arguments: Vec::new(),
                    directives: Vec::new(),
                    selection_set: Positioned::new(SelectionSet::default(), at),
                },
                at,
            )),
            at,
        ));
    }
}

/// `"id organization { id }"` → its fields. Field sets name fields, never
/// aliases; a fragment (`... on Bar { bar }`) is kept for the field whose
/// selection holds it (what `@requires` of an abstract field needs).
pub(super) fn parse_field_set(text: &str) -> Result<FieldSet, String> {
    let doc = async_graphql::parser::parse_query(format!("{{{text}}}")).map_err(|e| e.to_string())?;
    let DocumentOperations::Single(op) = &doc.operations else {
        return Err("not a field set".into());
    };
    /// The fields of `set`, and its fragments (flattened) into `fragments`.
    fn items(
        set: &SelectionSet,
        fragments: &mut Vec<(Name, FieldSet)>,
        on: Option<&Name>,
    ) -> Result<FieldSet, String> {
        let mut fields = Vec::new();
        for s in &set.items {
            match &s.node {
                Selection::Field(f) if f.node.alias.is_none() => {
                    let mut inner = Vec::new();
                    let selection = items(&f.node.selection_set.node, &mut inner, None)?;
                    fields.push(FieldSetItem {
                        name: f.node.name.node.clone(),
                        arguments: arguments(&f.node.arguments),
                        selection,
                        fragments: inner,
                    });
                }
                Selection::Field(f) => {
                    return Err(format!(
                        "{}: aliases are not supported in field sets",
                        f.node.name.node
                    ))
                }
                Selection::InlineFragment(fragment) => {
                    let fragment = &fragment.node;
                    let condition = fragment.type_condition.as_ref().map(|c| &c.node.on.node);
                    match condition.or(on) {
                        // `... { a }`: the same objects.
                        None => fields.extend(items(&fragment.selection_set.node, fragments, None)?),
                        Some(type_name) => {
                            let own = items(&fragment.selection_set.node, fragments, Some(type_name))?;
                            match fragments.iter_mut().find(|(on, _)| on == type_name) {
                                Some((_, fields)) => fields.extend(own),
                                None if own.is_empty() => {}
                                None => fragments.push((type_name.clone(), own)),
                            }
                        }
                    }
                }
                Selection::FragmentSpread(_) => {
                    return Err("named fragments are not supported in field sets".into())
                }
            }
        }
        Ok(fields)
    }
    fn arguments(args: &[(Positioned<Name>, Positioned<async_graphql_value::Value>)]) -> String {
        if args.is_empty() {
            return String::new();
        }
        let printed: Vec<String> = args
            .iter()
            .map(|(n, v)| format!("{}:{}", n.node, v.node))
            .collect();
        format!("({})", printed.join(","))
    }
    let mut top_fragments = Vec::new();
    let fields = items(&op.node.selection_set.node, &mut top_fragments, None)?;
    if !top_fragments.is_empty() {
        return Err("fragments at the top of a field set are not supported".into());
    }
    if fields.is_empty() {
        return Err("an empty field set".into());
    }
    Ok(fields)
}

fn strip_field(f: &mut FieldDefinition) {
    keep_client_directives(&mut f.directives);
    f.arguments.retain(|a| !has(&a.node.directives, "inaccessible"));
    for a in &mut f.arguments {
        keep_client_directives(&mut a.node.directives);
    }
}

fn keep_client_directives(directives: &mut Vec<Positioned<ConstDirective>>) {
    directives.retain(|d| KEPT_DIRECTIVES.contains(&d.node.name.node.as_str()));
}

fn has(directives: &[Positioned<ConstDirective>], name: &str) -> bool {
    find(directives, name).is_some()
}

fn find<'a>(
    directives: &'a [Positioned<ConstDirective>],
    name: &str,
) -> Option<&'a Positioned<ConstDirective>> {
    directives.iter().find(|d| d.node.name.node == name)
}

fn string_arg(d: &ConstDirective, name: &str) -> Option<String> {
    match &d.get_argument(name)?.node {
        ConstValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn bool_arg(d: &ConstDirective, name: &str) -> bool {
    matches!(
        d.get_argument(name).map(|v| &v.node),
        Some(ConstValue::Boolean(true))
    )
}

#[cfg(test)]
mod tests {
    use super::parse_field_set;

    #[test]
    fn field_sets_parse_nested_and_refuse_what_representations_cannot_carry() {
        let set = parse_field_set("id organization { id }").expect("parses");
        assert_eq!(set.len(), 2);
        assert_eq!(set[1].name.as_str(), "organization");
        assert_eq!(set[1].selection[0].name.as_str(), "id");
        assert!(parse_field_set("a: id").is_err());
        let priced = parse_field_set("price(currency: \"USD\") weight").expect("arguments");
        assert_eq!(priced[0].arguments, "(currency:\"USD\")");
        assert!(parse_field_set("... on Book { id }").is_err());
        let abstract_ = parse_field_set("data { foo ... on Bar { bar ... on Baz { baz } } ... { foo2 } }")
            .expect("fragments");
        let data = &abstract_[0];
        let names = |set: &[super::FieldSetItem]| set.iter().map(|i| i.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&data.selection), ["foo", "foo2"]);
        let fragments: Vec<(String, Vec<String>)> = data
            .fragments
            .iter()
            .map(|(on, set)| (on.to_string(), names(set)))
            .collect();
        assert_eq!(
            fragments,
            [
                ("Baz".to_string(), vec!["baz".to_string()]),
                ("Bar".to_string(), vec!["bar".to_string()])
            ]
        );
        assert!(parse_field_set("").is_err());
    }
}
