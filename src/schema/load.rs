//! schema.graphql → [`Supergraph`]: reads Tessera's directives and checks that
//! they agree with each other (a `@ref` key exists, a `@join` target has the
//! field it joins on, every root field is delegated, …). Checks against the
//! live subgraphs live in `check`.

use std::collections::{BTreeSet, HashMap};

use async_graphql::parser::types::{
    ConstDirective, FieldDefinition, InputValueDefinition, ServiceDocument, Type, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::parser::{parse_schema, Pos, Positioned};
use async_graphql_value::{ConstValue, Name};
use indexmap::IndexMap;

use super::index::{self, IndexDef};
use super::{
    named_type, validation_schema, FieldDef, InputValueDef, InterfaceDef, Join, JoinPage, Lookup,
    LookupStrategy, ObjectDef, Owner, Resolver, Supergraph, TypeDef, TypeDefKind, UnionDef,
};

/// A problem in schema.graphql, at the line and column of the element to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}: {message}", pos.line, pos.column)]
pub struct SchemaError {
    pub pos: Pos,
    pub message: String,
}

impl SchemaError {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            pos,
            message: message.into(),
        }
    }
}

/// Directives Tessera reads; everything else except the built-ins is an error,
/// so a typo (`@onwer`) does not silently change how a field resolves.
const TESSERA_DIRECTIVES: &[&str] = &[
    "owner",
    "lookup",
    "source",
    "ref",
    "join",
    "merge",
    "delegate",
    "search",
    "changes",
    "index",
    "mergeSource",
    "searchable",
    "filterable",
    "sortable",
    "denormalize",
    "from",
];
const BUILTIN_DIRECTIVES: &[&str] = &["deprecated", "specifiedBy", "oneOf"];
const BUILTIN_SCALARS: &[&str] = &["Int", "Float", "String", "Boolean", "ID"];

pub(super) fn load(sdl: &str) -> Result<Supergraph, Vec<SchemaError>> {
    let doc = parse_schema(sdl).map_err(|e| {
        let pos = e.positions().next().unwrap_or_default();
        vec![SchemaError::new(pos, format!("syntax error: {e}"))]
    })?;
    if super::federation::is_supergraph(&doc) {
        return super::federation::load(doc);
    }
    load_document(&doc)
}

/// A parsed schema in Tessera's dialect (or a supergraph translated to it).
pub(super) fn load_document(doc: &ServiceDocument) -> Result<Supergraph, Vec<SchemaError>> {
    let mut loader = Loader::default();
    let mut query_type: Name = Name::new("Query");
    let mut mutation_type: Option<Name> = None;
    let mut explicit_mutation = false;

    for def in &doc.definitions {
        match def {
            TypeSystemDefinition::Schema(schema) => {
                if let Some(q) = &schema.node.query {
                    query_type = q.node.clone();
                }
                if let Some(m) = &schema.node.mutation {
                    mutation_type = Some(m.node.clone());
                    explicit_mutation = true;
                }
                if let Some(s) = &schema.node.subscription {
                    loader.error(s.pos, "subscriptions are not supported by Tessera yet");
                }
            }
            TypeSystemDefinition::Directive(d) => loader.error(
                d.pos,
                format!(
                    "directive @{} is declared in schema.graphql; Tessera's directives are built in (see docs/directives.md), remove the declaration",
                    d.node.name.node
                ),
            ),
            TypeSystemDefinition::Type(t) => {
                if t.node.extend {
                    loader.error(t.pos, "`extend type` is not supported: declare each type once");
                }
                if loader.names.insert(t.node.name.node.clone(), t.pos).is_some() {
                    loader.error(t.pos, format!("type {} is declared twice", t.node.name.node));
                }
            }
        }
    }
    if !explicit_mutation && loader.names.contains_key("Mutation") {
        mutation_type = Some(Name::new("Mutation"));
    }
    if !loader.names.contains_key(&query_type) {
        loader.error(
            Pos::default(),
            format!("the query type {query_type} is not declared"),
        );
    }

    let roots: Vec<&Name> = std::iter::once(&query_type)
        .chain(mutation_type.as_ref())
        .collect();
    for def in &doc.definitions {
        if let TypeSystemDefinition::Type(t) = def {
            if is_document_type(&t.node) {
                if let Some((index, source)) = index::document_type(&t.node, t.pos, &mut loader.errors) {
                    loader
                        .indexes
                        .entry(index.clone())
                        .or_insert_with(|| IndexDef {
                            name: index,
                            sources: Vec::new(),
                        })
                        .sources
                        .push(source);
                }
                continue;
            }
            let is_root = roots.contains(&&t.node.name.node);
            let ty = loader.type_def(&t.node, t.pos, is_root);
            loader.types.insert(t.node.name.node.clone(), ty);
        }
    }
    loader.check_references();
    loader.check_indexes();

    if !loader.errors.is_empty() {
        loader.errors.sort_by_key(|e| e.pos);
        return Err(loader.errors);
    }

    let validator = validation_schema::build(doc, &query_type, mutation_type.as_ref())
        .map_err(|e| vec![SchemaError::new(Pos::default(), e)])?;
    let client_sdl = validator.sdl();
    Ok(Supergraph {
        types: loader.types,
        query_type,
        mutation_type,
        subgraphs: loader.subgraphs,
        federation: None,
        indexes: loader.indexes,
        client_sdl,
        validator,
    })
}

#[derive(Default)]
struct Loader {
    names: HashMap<Name, Pos>,
    types: HashMap<Name, TypeDef>,
    subgraphs: BTreeSet<String>,
    indexes: IndexMap<String, IndexDef>,
    errors: Vec<SchemaError>,
}

impl Loader {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(SchemaError::new(pos, message));
    }

    fn type_def(
        &mut self,
        t: &async_graphql::parser::types::TypeDefinition,
        pos: Pos,
        is_root: bool,
    ) -> TypeDef {
        let name = t.name.node.clone();
        let allowed: &[&str] = match &t.kind {
            TypeKind::Object(_) => &["owner", "lookup", "changes"],
            TypeKind::Interface(_) => &["owner"],
            _ => &[],
        };
        self.check_directives(&t.directives, allowed, &format!("type {name}"));
        let kind = match &t.kind {
            TypeKind::Scalar => TypeDefKind::Scalar,
            TypeKind::Enum(e) => {
                TypeDefKind::Enum(e.values.iter().map(|v| v.node.value.node.clone()).collect())
            }
            TypeKind::Union(u) => TypeDefKind::Union(UnionDef {
                members: u.members.iter().map(|m| m.node.clone()).collect(),
            }),
            TypeKind::InputObject(i) => {
                let fields = i
                    .fields
                    .iter()
                    .map(|f| (f.node.name.node.clone(), self.input_value(&f.node, f.pos)))
                    .collect();
                TypeDefKind::InputObject(fields)
            }
            TypeKind::Object(o) => {
                let owner = self.owner(&t.directives, &name);
                let lookup = self.lookup(&t.directives, &name, owner.as_ref());
                let changes = find(&t.directives, "changes")
                    .and_then(|d| index::changes(&name, d, &mut self.errors))
                    .map(Box::new);
                let fields = o
                    .fields
                    .iter()
                    .map(|f| {
                        (
                            f.node.name.node.clone(),
                            self.field(&f.node, f.pos, &name, is_root),
                        )
                    })
                    .collect();
                TypeDefKind::Object(ObjectDef {
                    owner,
                    lookup,
                    changes,
                    fields,
                    implements: o.implements.iter().map(|i| i.node.clone()).collect(),
                    federated: None,
                })
            }
            TypeKind::Interface(i) => {
                let owner = self.owner(&t.directives, &name);
                let fields = i
                    .fields
                    .iter()
                    .map(|f| (f.node.name.node.clone(), self.field(&f.node, f.pos, &name, false)))
                    .collect();
                TypeDefKind::Interface(InterfaceDef { owner, fields })
            }
        };
        TypeDef { name, pos, kind }
    }

    fn check_directives(&mut self, directives: &[Positioned<ConstDirective>], allowed: &[&str], on: &str) {
        for d in directives {
            let name = d.node.name.node.as_str();
            if BUILTIN_DIRECTIVES.contains(&name) || allowed.contains(&name) {
                continue;
            }
            let message = if TESSERA_DIRECTIVES.contains(&name) {
                format!(
                    "@{name} cannot be used on {on}; allowed here: {}",
                    list_directives(allowed)
                )
            } else {
                format!(
                    "unknown directive @{name} on {on}; Tessera's directives are {}",
                    list_directives(TESSERA_DIRECTIVES)
                )
            };
            self.error(d.pos, message);
        }
    }

    fn owner(&mut self, directives: &[Positioned<ConstDirective>], type_name: &Name) -> Option<Owner> {
        let d = find(directives, "owner")?;
        let subgraph = self.required_str(d, "subgraph")?;
        self.subgraphs.insert(subgraph.clone());
        let type_name = opt_str(&d.node, "type").unwrap_or_else(|| type_name.to_string());
        Some(Owner { subgraph, type_name })
    }

    fn lookup(
        &mut self,
        directives: &[Positioned<ConstDirective>],
        type_name: &Name,
        owner: Option<&Owner>,
    ) -> Option<Lookup> {
        let d = find(directives, "lookup")?;
        if owner.is_none() {
            self.error(
                d.pos,
                format!("@lookup on {type_name} needs @owner(subgraph: …) on the same type"),
            );
        }
        let strategy = match opt_str(&d.node, "strategy").as_deref() {
            None | Some("BATCH") => LookupStrategy::Batch,
            Some("ALIAS") => LookupStrategy::Alias,
            Some("ENTITIES") => LookupStrategy::Entities,
            Some(other) => {
                self.error(
                    d.pos,
                    format!("@lookup(strategy: {other}) is unknown; use BATCH, ALIAS or ENTITIES"),
                );
                LookupStrategy::Batch
            }
        };
        let key = Name::new(opt_str(&d.node, "key").unwrap_or_else(|| "id".to_string()));
        let (field, arg, arg_type) = if strategy == LookupStrategy::Entities {
            (
                "_entities".to_string(),
                "representations".to_string(),
                Type::new("[_Any!]!")?,
            )
        } else {
            let field = self.required_str(d, "field")?;
            let arg = self.required_str(d, "arg")?;
            let arg_type = self.required_type(d, "argType")?;
            (field, arg, arg_type)
        };
        Some(Lookup {
            strategy,
            field,
            arg,
            arg_type,
            key,
            pos: d.pos,
        })
    }

    fn field(&mut self, f: &FieldDefinition, pos: Pos, parent: &Name, is_root: bool) -> FieldDef {
        let name = f.name.node.clone();
        let allowed: &[&str] = if is_root {
            &["delegate", "search"]
        } else {
            &["source", "ref", "join", "merge", "from"]
        };
        self.check_directives(&f.directives, allowed, &format!("field {parent}.{name}"));
        let args = f
            .arguments
            .iter()
            .map(|a| (a.node.name.node.clone(), self.input_value(&a.node, a.pos)))
            .collect();
        let resolver = self.resolver(f, pos, parent, is_root);
        FieldDef {
            name,
            ty: f.ty.node.clone(),
            args,
            resolver,
            pos,
        }
    }

    fn resolver(&mut self, f: &FieldDefinition, pos: Pos, parent: &Name, is_root: bool) -> Resolver {
        let name = &f.name.node;
        let fallback = Resolver::Owned {
            source: name.to_string(),
            global_id: None,
        };
        if is_root {
            if let Some(d) = find(&f.directives, "search") {
                return match self.required_str(d, "index") {
                    Some(index) => Resolver::Search { index, pos: d.pos },
                    None => fallback,
                };
            }
            let Some(d) = find(&f.directives, "delegate") else {
                self.error(
                    pos,
                    format!("root field {parent}.{name} needs @delegate(subgraph: \"…\", field: \"…\") to say which service answers it"),
                );
                return fallback;
            };
            let Some(subgraph) = self.required_str(d, "subgraph") else {
                return fallback;
            };
            self.subgraphs.insert(subgraph.clone());
            let field = opt_str(&d.node, "field").unwrap_or_else(|| name.to_string());
            return Resolver::Delegate { subgraph, field };
        }
        if let Some(d) = find(&f.directives, "ref") {
            return match self.required_str(d, "key") {
                Some(key) => Resolver::Ref { key: Name::new(key) },
                None => fallback,
            };
        }
        if let Some(d) = find(&f.directives, "join") {
            let (Some(field), Some(arg), Some(arg_type), Some(on)) = (
                self.required_str(d, "field"),
                self.required_str(d, "arg"),
                self.required_type(d, "argType"),
                self.required_str(d, "on"),
            ) else {
                return fallback;
            };
            // The subgraph defaults to the owner of the joined type; resolved in check_references.
            let subgraph = opt_str(&d.node, "subgraph").unwrap_or_default();
            if !subgraph.is_empty() {
                self.subgraphs.insert(subgraph.clone());
            }
            let page = self.join_page(d);
            return Resolver::Join(Join {
                subgraph,
                field,
                arg,
                arg_type,
                on: Name::new(on),
                key: Name::new(opt_str(&d.node, "key").unwrap_or_else(|| "id".to_string())),
                page,
                pos: d.pos,
            });
        }
        if let Some(d) = find(&f.directives, "from") {
            let Some(path) = self.required_str(d, "path") else {
                return fallback;
            };
            let parsed = path.split_once('.').and_then(|(relation, leaf)| {
                let selection = async_graphql::parser::parse_query(format!("{{{leaf}}}")).ok()?;
                Some((Name::new(relation), Name::new(leaf), selection))
            });
            return match parsed {
                Some((relation, leaf, selection)) if !leaf.contains('.') => Resolver::Path {
                    relation,
                    leaf,
                    selection: Box::new(selection),
                },
                _ => {
                    self.error(
                        d.pos,
                        format!("@from(path: \"{path}\") must be `relation.field`, e.g. \"author.name\""),
                    );
                    fallback
                }
            };
        }
        if let Some(d) = find(&f.directives, "merge") {
            let fields: Vec<Name> = match d.node.get_argument("fields").map(|v| &v.node) {
                Some(ConstValue::List(items)) => items
                    .iter()
                    .filter_map(|i| match i {
                        ConstValue::String(s) => Some(Name::new(s)),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if fields.is_empty() {
                self.error(d.pos, "@merge needs `fields`: the sibling @ref/@join fields to merge, e.g. [\"posts\", \"products\"]");
                return fallback;
            }
            return Resolver::Merge {
                fields,
                order_by: opt_str(&d.node, "orderBy").map(Name::new),
                descending: matches!(
                    d.node.get_argument("descending").map(|v| &v.node),
                    Some(ConstValue::Boolean(true))
                ),
            };
        }
        let source = find(&f.directives, "source");
        Resolver::Owned {
            source: source
                .and_then(|d| opt_str(&d.node, "name"))
                .unwrap_or_else(|| name.to_string()),
            global_id: source.and_then(|d| opt_str(&d.node, "globalId")),
        }
    }

    /// `limitArg`, `offsetArg` and `pageSize` of a `@join`: all three or none.
    fn join_page(&mut self, d: &Positioned<ConstDirective>) -> Option<JoinPage> {
        let limit = opt_str(&d.node, "limitArg");
        let offset = opt_str(&d.node, "offsetArg");
        let size = match d.node.get_argument("pageSize").map(|v| &v.node) {
            Some(ConstValue::Number(n)) => n.as_u64().filter(|n| *n > 0),
            Some(_) => {
                self.error(d.pos, "@join(pageSize:) must be a positive integer");
                return None;
            }
            None => None,
        };
        match (limit, offset, size) {
            (Some(limit_arg), Some(offset_arg), Some(size)) => Some(JoinPage {
                limit_arg,
                offset_arg,
                size: usize::try_from(size).unwrap_or(usize::MAX),
            }),
            (None, None, None) => None,
            _ => {
                self.error(
                    d.pos,
                    "@join pages through a list field only with all of limitArg, offsetArg and pageSize",
                );
                None
            }
        }
    }

    fn input_value(&mut self, v: &InputValueDefinition, pos: Pos) -> InputValueDef {
        self.check_directives(&v.directives, &["source"], &format!("argument {}", v.name.node));
        let source = find(&v.directives, "source");
        let source_type = match source.and_then(|d| opt_str(&d.node, "type")) {
            Some(text) => Type::new(&text).unwrap_or_else(|| {
                self.error(pos, format!("@source(type: \"{text}\") is not a GraphQL type"));
                v.ty.node.clone()
            }),
            None => v.ty.node.clone(),
        };
        InputValueDef {
            name: v.name.node.clone(),
            ty: v.ty.node.clone(),
            default: v.default_value.as_ref().map(|d| d.node.clone().into_value()),
            source_name: source
                .and_then(|d| opt_str(&d.node, "name"))
                .unwrap_or_else(|| v.name.node.to_string()),
            source_type,
            global_id: source.and_then(|d| opt_str(&d.node, "globalId")),
            pos,
        }
    }

    fn required_str(&mut self, d: &Positioned<ConstDirective>, arg: &str) -> Option<String> {
        let value = opt_str(&d.node, arg);
        if value.is_none() {
            self.error(
                d.pos,
                format!("@{} needs the string argument `{arg}`", d.node.name.node),
            );
        }
        value
    }

    fn required_type(&mut self, d: &Positioned<ConstDirective>, arg: &str) -> Option<Type> {
        let text = self.required_str(d, arg)?;
        let ty = Type::new(&text);
        if ty.is_none() {
            self.error(
                d.pos,
                format!("@{}({arg}: \"{text}\") is not a GraphQL type", d.node.name.node),
            );
        }
        ty
    }

    /// Cross-type consistency: every name resolves, every key exists.
    fn check_references(&mut self) {
        let mut errors = Vec::new();
        let mut join_subgraphs = Vec::new();
        for t in self.types.values() {
            let fields = match &t.kind {
                TypeDefKind::Object(o) => &o.fields,
                TypeDefKind::Interface(i) => &i.fields,
                TypeDefKind::Union(u) => {
                    for m in &u.members {
                        if !matches!(self.types.get(m).map(|t| &t.kind), Some(TypeDefKind::Object(_))) {
                            errors.push(SchemaError::new(
                                t.pos,
                                format!("union {} member {m} is not an object type", t.name),
                            ));
                        }
                    }
                    continue;
                }
                TypeDefKind::InputObject(fields) => {
                    for f in fields.values() {
                        self.check_type_exists(&f.ty, f.pos, &mut errors);
                    }
                    continue;
                }
                _ => continue,
            };
            if let TypeDefKind::Object(o) = &t.kind {
                if let Some(lookup) = &o.lookup {
                    if !o.fields.contains_key(&lookup.key) {
                        errors.push(SchemaError::new(
                            lookup.pos,
                            format!("@lookup key `{}` is not a field of {}", lookup.key, t.name),
                        ));
                    }
                }
                for i in &o.implements {
                    if !matches!(
                        self.types.get(i).map(|t| &t.kind),
                        Some(TypeDefKind::Interface(_))
                    ) {
                        errors.push(SchemaError::new(
                            t.pos,
                            format!("{} implements {i}, which is not an interface", t.name),
                        ));
                    }
                }
            }
            for f in fields.values() {
                self.check_type_exists(&f.ty, f.pos, &mut errors);
                for a in f.args.values() {
                    self.check_type_exists(&a.ty, a.pos, &mut errors);
                }
                let target = named_type(&f.ty);
                match &f.resolver {
                    Resolver::Ref { key } => {
                        if fields
                            .get(key)
                            .is_some_and(|k| !matches!(k.resolver, Resolver::Owned { .. }))
                        {
                            errors.push(SchemaError::new(
                                f.pos,
                                format!("@ref(key: \"{key}\") on {}.{}: the key must be a plain field of {}, not a @ref or @join", t.name, f.name, t.name),
                            ));
                        }
                        if !fields.contains_key(key) {
                            errors.push(SchemaError::new(
                                f.pos,
                                format!(
                                    "@ref(key: \"{key}\") on {}.{}: {} has no field `{key}`",
                                    t.name, f.name, t.name
                                ),
                            ));
                        }
                        match self.types.get(target).map(|t| &t.kind) {
                            Some(TypeDefKind::Object(ObjectDef { lookup: Some(_), .. })) => {}
                            Some(_) => errors.push(SchemaError::new(
                                f.pos,
                                format!("{}.{} is a @ref to {target}, which has no @lookup: add @lookup to type {target}", t.name, f.name),
                            )),
                            None => {}
                        }
                    }
                    Resolver::Join(join) => {
                        if !fields.contains_key(&join.key) {
                            errors.push(SchemaError::new(
                                f.pos,
                                format!(
                                    "@join(key: \"{}\") on {}.{}: {} has no field `{}`",
                                    join.key, t.name, f.name, t.name, join.key
                                ),
                            ));
                        }
                        match self.types.get(target).map(|t| &t.kind) {
                            Some(TypeDefKind::Object(target_obj)) => {
                                if target_obj
                                    .fields
                                    .get(&join.on)
                                    .is_some_and(|k| !matches!(k.resolver, Resolver::Owned { .. }))
                                {
                                    errors.push(SchemaError::new(
                                        f.pos,
                                        format!("@join(on: \"{}\") on {}.{}: {target}.{} must be a plain field holding the key, not a @ref or @join", join.on, t.name, f.name, join.on),
                                    ));
                                }
                                if !target_obj.fields.contains_key(&join.on) {
                                    errors.push(SchemaError::new(
                                        f.pos,
                                        format!(
                                            "@join(on: \"{}\") on {}.{}: {target} has no field `{}`",
                                            join.on, t.name, f.name, join.on
                                        ),
                                    ));
                                }
                                if join.subgraph.is_empty() {
                                    match &target_obj.owner {
                                        Some(owner) => join_subgraphs.push((t.name.clone(), f.name.clone(), owner.subgraph.clone())),
                                        None => errors.push(SchemaError::new(
                                            f.pos,
                                            format!("@join on {}.{}: {target} has no @owner, so say @join(subgraph: …)", t.name, f.name),
                                        )),
                                    }
                                }
                            }
                            Some(_) => errors.push(SchemaError::new(
                                f.pos,
                                format!(
                                    "@join on {}.{} must return a list of an object type",
                                    t.name, f.name
                                ),
                            )),
                            None => {}
                        }
                    }
                    Resolver::Path { relation, leaf, .. } => {
                        let target = fields.get(relation).and_then(|r| match &r.resolver {
                            Resolver::Ref { .. } => Some(named_type(&r.ty)),
                            _ => None,
                        });
                        let leaf_ok = target.is_some_and(|t| {
                            matches!(
                                self.types.get(t).map(|t| &t.kind),
                                Some(TypeDefKind::Object(o)) if matches!(o.fields.get(leaf).map(|l| &l.resolver), Some(Resolver::Owned { .. }))
                            )
                        });
                        if !leaf_ok {
                            errors.push(SchemaError::new(
                                f.pos,
                                format!("@from(path: \"{relation}.{leaf}\") on {}.{}: `{relation}` must be a @ref field of {} whose type has a plain field `{leaf}`", t.name, f.name, t.name),
                            ));
                        }
                    }
                    Resolver::Merge {
                        fields: parts,
                        order_by,
                        ..
                    } => {
                        let possible: Vec<&Name> = match self.types.get(target).map(|t| &t.kind) {
                            Some(TypeDefKind::Interface(_)) => self
                                .types
                                .values()
                                .filter(|t| matches!(&t.kind, TypeDefKind::Object(o) if o.implements.contains(target)))
                                .map(|t| &t.name)
                                .collect(),
                            Some(TypeDefKind::Union(u)) => u.members.iter().collect(),
                            _ => {
                                errors.push(SchemaError::new(f.pos, format!("@merge on {}.{} must return a list of an interface or union", t.name, f.name)));
                                continue;
                            }
                        };
                        for part in parts {
                            match fields.get(part) {
                                Some(p) if matches!(p.resolver, Resolver::Ref { .. } | Resolver::Join(_)) => {
                                    if !possible.contains(&named_type(&p.ty)) {
                                        errors.push(SchemaError::new(
                                            f.pos,
                                            format!(
                                                "@merge on {}.{}: {part} returns {}, which is not a {target}",
                                                t.name,
                                                f.name,
                                                named_type(&p.ty)
                                            ),
                                        ));
                                    }
                                }
                                _ => errors.push(SchemaError::new(
                                    f.pos,
                                    format!(
                                        "@merge on {}.{}: `{part}` must be a @ref or @join field of {}",
                                        t.name, f.name, t.name
                                    ),
                                )),
                            }
                        }
                        if let Some(order) = order_by {
                            for member in &possible {
                                let has = matches!(self.types.get(*member).map(|t| &t.kind), Some(TypeDefKind::Object(o)) if matches!(o.fields.get(order).map(|f| &f.resolver), Some(Resolver::Owned { .. })));
                                if !has {
                                    errors.push(SchemaError::new(
                                        f.pos,
                                        format!("@merge(orderBy: \"{order}\") on {}.{}: {member} has no plain field `{order}`", t.name, f.name),
                                    ));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for (type_name, field_name, subgraph) in join_subgraphs {
            if let Some(TypeDef {
                kind: TypeDefKind::Object(o),
                ..
            }) = self.types.get_mut(&type_name)
            {
                if let Some(FieldDef {
                    resolver: Resolver::Join(join),
                    ..
                }) = o.fields.get_mut(&field_name)
                {
                    join.subgraph = subgraph;
                }
            }
        }
        self.errors.extend(errors);
    }

    /// Index declarations agree with the types they read from.
    fn check_indexes(&mut self) {
        let mut errors = Vec::new();
        for index in self.indexes.values() {
            for src in &index.sources {
                let entity = match self.types.get(&src.entity).map(|t| &t.kind) {
                    Some(TypeDefKind::Object(o)) if o.owner.is_some() => o,
                    _ => {
                        errors.push(SchemaError::new(
                            src.pos,
                            format!(
                                "@index(type: \"{}\") on {}: {} must be an object type with @owner",
                                src.entity, src.doc_type, src.entity
                            ),
                        ));
                        continue;
                    }
                };
                if entity.changes.is_none() {
                    errors.push(SchemaError::new(
                        src.pos,
                        format!("{} is indexed by {}: add @changes(field:, since:, …) to type {} so the synchronizer can list its rows", src.entity, src.doc_type, src.entity),
                    ));
                }
                for f in &src.fields {
                    let at = format!("{}.{}", src.doc_type, f.name);
                    if f.searchable && !matches!(f.type_name.as_str(), "String" | "ID") {
                        errors.push(SchemaError::new(
                            f.pos,
                            format!(
                                "{at} is {} and cannot be @searchable; only String and ID fields can",
                                f.type_name
                            ),
                        ));
                    }
                    let Some(path) = &f.path else {
                        match entity.fields.get(&f.name) {
                            Some(FieldDef { resolver: Resolver::Owned { .. }, ty, .. })
                                if named_type(ty) == &f.type_name => {}
                            Some(FieldDef { ty, .. }) => errors.push(SchemaError::new(
                                f.pos,
                                format!("{at} copies {}.{}, which is a {} and not a plain field of type {}; use @denormalize(path:) for joined data", src.entity, f.name, ty, f.type_name),
                            )),
                            None => errors.push(SchemaError::new(
                                f.pos,
                                format!("{at}: {} has no field `{}`; copy an entity field by its name, or use @denormalize(path: \"…\")", src.entity, f.name),
                            )),
                        }
                        continue;
                    };
                    let relation = path.first().and_then(|hop| entity.fields.get(hop));
                    let target = match relation.map(|r| &r.resolver) {
                        Some(Resolver::Ref { key }) => {
                            if !src.field(key).is_some_and(|k| k.path.is_none() && k.filterable) {
                                errors.push(SchemaError::new(
                                    f.pos,
                                    format!("{at} is denormalized through {}.{}: add `{key}` to {} as @filterable, so a change to the referenced row finds the documents to rebuild", src.entity, path[0], src.doc_type),
                                ));
                            }
                            relation.map(|r| named_type(&r.ty))
                        }
                        Some(Resolver::Join(join)) => {
                            if join.key.as_str() != "id" {
                                errors.push(SchemaError::new(
                                    f.pos,
                                    format!("{at}: only joins on the entity's id can be denormalized"),
                                ));
                            }
                            relation.map(|r| named_type(&r.ty))
                        }
                        _ => {
                            errors.push(SchemaError::new(
                                f.pos,
                                format!("@denormalize(path: \"{}\") on {at}: the first step must be a @ref or @join field of {}", path.iter().map(|p| p.as_str()).collect::<Vec<_>>().join("."), src.entity),
                            ));
                            continue;
                        }
                    };
                    let Some(target) = target else { continue };
                    match (path.len(), f.reduce) {
                        (1, Some(index::Reduce::Count)) => {}
                        (2, _) => {
                            let leaf = self.types.get(target).and_then(|t| match &t.kind {
                                TypeDefKind::Object(o) => o.fields.get(&path[1]),
                                _ => None,
                            });
                            if !matches!(leaf.map(|l| &l.resolver), Some(Resolver::Owned { .. })) {
                                errors.push(SchemaError::new(
                                    f.pos,
                                    format!("{at}: {target} has no plain field `{}`", path[1]),
                                ));
                            }
                        }
                        _ => errors.push(SchemaError::new(
                            f.pos,
                            format!(
                                "{at}: a path is `relation.field` (or a relation alone with reduce: COUNT)"
                            ),
                        )),
                    }
                    if !matches!(
                        self.types.get(target).map(|t| &t.kind),
                        Some(TypeDefKind::Object(ObjectDef { changes: Some(_), .. }))
                    ) {
                        errors.push(SchemaError::new(
                            f.pos,
                            format!("{at} is denormalized from {target}: add @changes to type {target} so the poller sees its updates"),
                        ));
                    }
                }
            }
            if let Some(first) = index.sources.first() {
                for other in &index.sources[1..] {
                    for f in &other.fields {
                        if let Some(g) = first.field(&f.name) {
                            if (g.type_name.as_str(), g.searchable, g.filterable, g.sortable)
                                != (f.type_name.as_str(), f.searchable, f.filterable, f.sortable)
                            {
                                errors.push(SchemaError::new(
                                    f.pos,
                                    format!("{}.{} must have the same type and flags as {}.{}: both feed index `{}`", other.doc_type, f.name, first.doc_type, g.name, index.name),
                                ));
                            }
                        }
                    }
                }
            }
        }
        for t in self.types.values() {
            if let TypeDefKind::Object(o) = &t.kind {
                for f in o.fields.values() {
                    if let Resolver::Search { index, pos } = &f.resolver {
                        if !self.indexes.contains_key(index) {
                            errors.push(SchemaError::new(*pos, format!("@search(index: \"{index}\") on {}.{}: no document type declares @index(name: \"{index}\")", t.name, f.name)));
                        }
                    }
                }
            }
        }
        self.errors.extend(errors);
    }

    fn check_type_exists(&self, ty: &Type, pos: Pos, errors: &mut Vec<SchemaError>) {
        let name = named_type(ty);
        if !BUILTIN_SCALARS.contains(&name.as_str()) && !self.types.contains_key(name) {
            errors.push(SchemaError::new(pos, format!("unknown type {name}")));
        }
    }
}

/// A type carrying `@index` describes documents, not a type of the client schema.
pub(super) fn is_document_type(t: &async_graphql::parser::types::TypeDefinition) -> bool {
    t.directives.iter().any(|d| d.node.name.node == "index")
}

fn find<'a>(
    directives: &'a [Positioned<ConstDirective>],
    name: &str,
) -> Option<&'a Positioned<ConstDirective>> {
    directives.iter().find(|d| d.node.name.node == name)
}

fn opt_str(d: &ConstDirective, arg: &str) -> Option<String> {
    match d.get_argument(arg).map(|v| &v.node) {
        Some(ConstValue::String(s)) => Some(s.clone()),
        Some(ConstValue::Enum(s)) => Some(s.to_string()),
        _ => None,
    }
}

fn list_directives(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("@{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_mistakes_are_reported_with_line_and_column() {
        let sdl = include_str!("../../schema.graphql");
        let cases = [
            (
                "member: Member @ref(key: \"memberId\")",
                "member: Member @ref(key: \"memberKey\")",
                "memberKey",
            ),
            (
                "@owner(subgraph: \"staff\")",
                "@onwer(subgraph: \"staff\")",
                "unknown directive @onwer",
            ),
            ("on: \"contractId\")", "on: \"contract\")", "contract"),
            ("@delegate(subgraph: \"reviews\")\n}", "\n}", "needs @delegate"),
        ];
        for (from, to, expected) in cases {
            assert!(sdl.contains(from), "{from}");
            let broken = sdl.replacen(from, to, 1);
            let errors = match super::super::Supergraph::parse(&broken) {
                Ok(_) => panic!("{from} → {to} must be rejected"),
                Err(errors) => errors,
            };
            let text = crate::format_schema_errors("schema.graphql", &errors);
            assert!(text.contains(expected), "{expected}: {text}");
            assert!(text.starts_with("schema.graphql:"), "{text}");
            assert!(errors.iter().all(|e| e.pos.line > 0), "{text}");
        }
    }
}
