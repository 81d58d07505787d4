//! `tessera check`: schema.graphql against each subgraph's live schema.
//!
//! Pure: it takes the subgraphs' introspection results (fetched elsewhere)
//! and walks the supergraph the way the planner will use it — every root
//! field in its subgraph, every owned field in its type there, every lookup
//! and join field with its arguments — and reports each mismatch at the
//! schema.graphql position of the element to change.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{BaseType, Type};
use async_graphql::parser::Pos;
use async_graphql_value::Name;
use serde_json::Value;

use super::{
    named_type, FieldDef, LookupStrategy, ObjectDef, Resolver, SchemaError, Supergraph, TypeDefKind,
};

/// The parts of a subgraph schema the check needs, read from introspection.
#[derive(Debug, Default)]
pub struct SubgraphSchema {
    pub query: String,
    pub mutation: Option<String>,
    pub types: HashMap<String, SubgraphType>,
}

#[derive(Debug, Default)]
pub struct SubgraphType {
    pub kind: String,
    pub fields: HashMap<String, SubgraphField>,
    pub enum_values: Vec<String>,
    pub input_fields: HashMap<String, Type>,
}

#[derive(Debug)]
pub struct SubgraphField {
    pub ty: Type,
    pub args: HashMap<String, Type>,
}

/// The standard introspection query, deep enough for `[[T!]!]!`.
pub const INTROSPECTION_QUERY: &str = r#"query TesseraCheck {
  __schema {
    queryType { name }
    mutationType { name }
    types {
      kind name
      fields(includeDeprecated: true) { name args { name type { ...T } } type { ...T } }
      inputFields { name type { ...T } }
      enumValues(includeDeprecated: true) { name }
    }
  }
}
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } }"#;

impl SubgraphSchema {
    /// Reads the `data` of [`INTROSPECTION_QUERY`].
    pub fn from_introspection(data: &Value) -> Result<Self, String> {
        let schema = data
            .get("__schema")
            .ok_or("the introspection answer has no __schema")?;
        let name = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_string);
        let query = schema.get("queryType").and_then(name).ok_or("no query type")?;
        let mutation = schema.get("mutationType").and_then(name);
        let mut types = HashMap::new();
        for t in schema.get("types").and_then(Value::as_array).ok_or("no types")? {
            let Some(type_name) = name(t) else { continue };
            let mut out = SubgraphType {
                kind: t
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                ..SubgraphType::default()
            };
            for f in t.get("fields").and_then(Value::as_array).into_iter().flatten() {
                let (Some(field_name), Some(ty)) = (name(f), f.get("type").and_then(type_ref)) else {
                    continue;
                };
                let args = f
                    .get("args")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| Some((name(a)?, a.get("type").and_then(type_ref)?)))
                    .collect();
                out.fields.insert(field_name, SubgraphField { ty, args });
            }
            for f in t
                .get("inputFields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(field_name), Some(ty)) = (name(f), f.get("type").and_then(type_ref)) {
                    out.input_fields.insert(field_name, ty);
                }
            }
            out.enum_values = t
                .get("enumValues")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(name)
                .collect();
            types.insert(type_name, out);
        }
        Ok(Self {
            query,
            mutation,
            types,
        })
    }

    fn root_field(&self, mutation: bool, field: &str) -> Option<&SubgraphField> {
        let root = if mutation {
            self.mutation.as_ref()?
        } else {
            &self.query
        };
        self.types.get(root)?.fields.get(field)
    }
}

fn type_ref(v: &Value) -> Option<Type> {
    match v.get("kind")?.as_str()? {
        "NON_NULL" => {
            let mut inner = type_ref(v.get("ofType")?)?;
            inner.nullable = false;
            Some(inner)
        }
        "LIST" => Some(Type {
            base: BaseType::List(Box::new(type_ref(v.get("ofType")?)?)),
            nullable: true,
        }),
        _ => Some(Type {
            base: BaseType::Named(Name::new(v.get("name")?.as_str()?)),
            nullable: true,
        }),
    }
}

/// Every mismatch between the supergraph and the subgraphs, in file order.
/// Subgraphs missing from `subgraphs` (unreachable) are not checked.
pub fn check(schema: &Supergraph, subgraphs: &HashMap<String, SubgraphSchema>) -> Vec<SchemaError> {
    let mut checker = Checker {
        schema,
        subgraphs,
        errors: Vec::new(),
        visited: HashSet::new(),
    };
    for (root, is_mutation) in
        std::iter::once((schema.query_type(), false)).chain(schema.mutation_type().map(|m| (m, true)))
    {
        let Some(object) = schema.object(root) else {
            continue;
        };
        for field in object.fields.values() {
            checker.root_field(field, is_mutation);
        }
    }
    // Entities no root field reaches are still checked.
    for t in schema.types() {
        if let TypeDefKind::Object(ObjectDef {
            owner: Some(owner), ..
        }) = &t.kind
        {
            checker.object(&owner.subgraph, &t.name, &owner.type_name, t.pos);
        }
    }
    checker.errors.sort_by_key(|e| e.pos);
    checker.errors.dedup();
    checker.errors
}

struct Checker<'a> {
    schema: &'a Supergraph,
    subgraphs: &'a HashMap<String, SubgraphSchema>,
    errors: Vec<SchemaError>,
    /// (subgraph, unified type) pairs already walked.
    visited: HashSet<(String, Name)>,
}

impl<'a> Checker<'a> {
    fn error(&mut self, pos: Pos, message: String) {
        self.errors.push(SchemaError::new(pos, message));
    }

    fn root_field(&mut self, field: &FieldDef, is_mutation: bool) {
        let Resolver::Delegate {
            subgraph,
            field: source,
        } = &field.resolver
        else {
            return;
        };
        let Some(sg) = self.subgraphs.get(subgraph) else {
            return;
        };
        let root_kind = if is_mutation { "Mutation" } else { "Query" };
        let Some(sg_field) = sg.root_field(is_mutation, source) else {
            self.error(
                field.pos,
                format!("subgraph \"{subgraph}\" has no {root_kind} field `{source}`: fix @delegate(field:) on {}", field.name),
            );
            return;
        };
        self.arguments(subgraph, field, source, &sg_field.args);
        self.output_type(subgraph, field, &field.ty, &sg_field.ty);
    }

    /// Each argument maps to a subgraph argument of a compatible type, and
    /// every required subgraph argument is mapped.
    fn arguments(&mut self, subgraph: &str, field: &FieldDef, source: &str, sg_args: &HashMap<String, Type>) {
        let mut mapped = HashSet::new();
        for arg in field.args.values() {
            mapped.insert(arg.source_name.as_str());
            let Some(sg_ty) = sg_args.get(&arg.source_name) else {
                self.error(
                    arg.pos,
                    format!(
                        "argument `{}` of {}: subgraph \"{subgraph}\" field `{source}` has no argument `{}` (arguments there: {}); fix @source(name:)",
                        arg.name, field.name, arg.source_name, names(sg_args.keys())
                    ),
                );
                continue;
            };
            if let Some(problem) = variable_fits(&arg.source_type, sg_ty) {
                self.error(
                    arg.pos,
                    format!(
                        "argument `{}` of {} is sent as {} but subgraph \"{subgraph}\" declares `{}: {sg_ty}` ({problem}); set @source(type: \"{sg_ty}\")",
                        arg.name, field.name, arg.source_type, arg.source_name
                    ),
                );
            }
            self.input_type(subgraph, arg.pos, &arg.ty, sg_ty);
        }
        for (name, ty) in sg_args {
            if !ty.nullable && !mapped.contains(name.as_str()) {
                self.error(
                    field.pos,
                    format!("subgraph \"{subgraph}\" field `{source}` requires argument `{name}: {ty}`, which {} does not pass", field.name),
                );
            }
        }
    }

    /// Unified input types whose subgraph counterpart is an input object: field by field.
    fn input_type(&mut self, subgraph: &str, pos: Pos, unified: &Type, sg_ty: &Type) {
        let (u_name, s_name) = (named_type(unified), named_type(sg_ty));
        let Some(fields) = self.schema.input_fields(u_name) else {
            return;
        };
        let Some(sg_type) = self
            .subgraphs
            .get(subgraph)
            .and_then(|s| s.types.get(s_name.as_str()))
        else {
            self.error(pos, format!("subgraph \"{subgraph}\" has no input type {s_name}"));
            return;
        };
        for f in fields.values() {
            match sg_type.input_fields.get(&f.source_name) {
                None => self.error(
                    f.pos,
                    format!("input field `{}`: subgraph \"{subgraph}\" input {s_name} has no field `{}`; fix @source(name:)", f.name, f.source_name),
                ),
                Some(sg_field_ty) => {
                    if let Some(problem) = variable_fits(&f.source_type, sg_field_ty) {
                        self.error(
                            f.pos,
                            format!("input field `{}` is sent as {} but subgraph \"{subgraph}\" declares {sg_field_ty} ({problem})", f.name, f.source_type),
                        );
                    }
                }
            }
        }
        for (name, ty) in &sg_type.input_fields {
            if !ty.nullable && !fields.values().any(|f| &f.source_name == name) {
                self.error(pos, format!("subgraph \"{subgraph}\" input {s_name} requires field `{name}`, which {u_name} does not have"));
            }
        }
    }

    /// The value a field returns: list shape, nullability, and the named type.
    fn output_type(&mut self, subgraph: &str, field: &FieldDef, unified: &Type, sg_ty: &Type) {
        if let Some(problem) = output_fits(self.schema, unified, sg_ty) {
            self.error(
                field.pos,
                format!(
                    "{} is `{unified}` but subgraph \"{subgraph}\" returns `{sg_ty}`: {problem}",
                    field.name
                ),
            );
            return;
        }
        let u_name = named_type(unified);
        if self.schema.object(u_name).is_some() {
            let pos = field.pos;
            self.object(subgraph, u_name, named_type(sg_ty), pos);
        }
    }

    fn object(&mut self, subgraph: &str, unified: &Name, sg_type_name: &str, pos: Pos) {
        if !self.visited.insert((subgraph.to_string(), unified.clone())) {
            return;
        }
        let schema = self.schema;
        let Some(object) = schema.object(unified) else {
            return;
        };
        let Some(sg) = self.subgraphs.get(subgraph) else {
            return;
        };
        let Some(sg_type) = sg.types.get(sg_type_name) else {
            self.error(
                pos,
                format!(
                    "subgraph \"{subgraph}\" has no type {sg_type_name} (for {unified}); fix @owner(type:)"
                ),
            );
            return;
        };
        if let Some(lookup) = &object.lookup {
            self.lookup(subgraph, unified, lookup);
        }
        for field in object.fields.values() {
            match &field.resolver {
                Resolver::Owned { source, .. } => match sg_type.fields.get(source) {
                    None => self.error(
                        field.pos,
                        format!(
                            "{unified}.{}: subgraph \"{subgraph}\" type {sg_type_name} has no field `{source}`; fix @source(name:) or add @ref/@join",
                            field.name
                        ),
                    ),
                    Some(sg_field) => {
                        let ty = sg_field.ty.clone();
                        self.output_type(subgraph, field, &field.ty, &ty);
                    }
                },
                Resolver::Join(join) => self.join(unified, field, join),
                // Their parts are checked as the @ref/@join fields they are.
                Resolver::Ref { .. }
                | Resolver::Delegate { .. }
                | Resolver::Merge { .. }
                | Resolver::Path { .. }
                | Resolver::Search { .. }
                | Resolver::Federated(_) => {}
            }
        }
    }

    fn lookup(&mut self, subgraph: &str, unified: &Name, lookup: &super::Lookup) {
        let Some(sg) = self.subgraphs.get(subgraph) else {
            return;
        };
        let Some(field) = sg.root_field(false, &lookup.field) else {
            let message = match lookup.strategy {
                LookupStrategy::Entities => format!(
                    "@lookup(strategy: ENTITIES) on {unified}: subgraph \"{subgraph}\" does not serve `_entities` (is its Federation support on?)"
                ),
                _ => format!("@lookup on {unified}: subgraph \"{subgraph}\" has no Query field `{}`", lookup.field),
            };
            self.error(lookup.pos, message);
            return;
        };
        if lookup.strategy == LookupStrategy::Entities {
            return;
        }
        match field.args.get(&lookup.arg) {
            None => self.error(
                lookup.pos,
                format!(
                    "@lookup on {unified}: `{}` has no argument `{}` (arguments: {})",
                    lookup.field,
                    lookup.arg,
                    names(field.args.keys())
                ),
            ),
            Some(ty) => {
                if let Some(problem) = variable_fits(&lookup.arg_type, ty) {
                    self.error(
                        lookup.pos,
                        format!(
                            "@lookup on {unified}: argType \"{}\" does not fit `{}: {ty}` ({problem})",
                            lookup.arg_type, lookup.arg
                        ),
                    );
                }
            }
        }
    }

    fn join(&mut self, parent: &Name, field: &FieldDef, join: &super::Join) {
        let Some(sg) = self.subgraphs.get(&join.subgraph) else {
            return;
        };
        let Some(sg_field) = sg.root_field(false, &join.field) else {
            self.error(
                join.pos,
                format!(
                    "@join on {parent}.{}: subgraph \"{}\" has no Query field `{}`",
                    field.name, join.subgraph, join.field
                ),
            );
            return;
        };
        match sg_field.args.get(&join.arg) {
            None => self.error(
                join.pos,
                format!(
                    "@join on {parent}.{}: `{}` has no argument `{}` (arguments: {})",
                    field.name,
                    join.field,
                    join.arg,
                    names(sg_field.args.keys())
                ),
            ),
            Some(ty) => {
                if let Some(problem) = variable_fits(&join.arg_type, ty) {
                    self.error(
                        join.pos,
                        format!(
                            "@join on {parent}.{}: argType \"{}\" does not fit `{}: {ty}` ({problem})",
                            field.name, join.arg_type, join.arg
                        ),
                    );
                }
            }
        }
        if let Some(page) = &join.page {
            for arg in [&page.limit_arg, &page.offset_arg] {
                if !sg_field.args.contains_key(arg) {
                    self.error(
                        join.pos,
                        format!(
                            "@join on {parent}.{}: `{}` has no paging argument `{arg}`",
                            field.name, join.field
                        ),
                    );
                }
            }
        }
        if !matches!(sg_field.ty.base, BaseType::List(_)) {
            self.error(
                join.pos,
                format!(
                    "@join on {parent}.{}: `{}` returns `{}`, not a list",
                    field.name, join.field, sg_field.ty
                ),
            );
        }
    }
}

/// Can a variable of type `var` (what Tessera declares) be used where the
/// subgraph expects `arg`? `None` when it can.
fn variable_fits(var: &Type, arg: &Type) -> Option<String> {
    if !arg.nullable && var.nullable {
        return Some("the subgraph requires a non-null value".into());
    }
    match (&var.base, &arg.base) {
        (BaseType::List(v), BaseType::List(a)) => variable_fits(v, a),
        (BaseType::Named(v), BaseType::Named(a)) if v == a => None,
        (BaseType::Named(v), BaseType::Named(a)) => Some(format!("{v} is not {a}")),
        _ => Some("list shapes differ".into()),
    }
}

/// Can a subgraph value of type `sg` be served as `unified`? `None` when it can.
fn output_fits(schema: &Supergraph, unified: &Type, sg: &Type) -> Option<String> {
    if !unified.nullable && sg.nullable {
        return Some("the subgraph may return null for a non-null field".into());
    }
    match (&unified.base, &sg.base) {
        (BaseType::List(u), BaseType::List(s)) => output_fits(schema, u, s),
        (BaseType::Named(u), BaseType::Named(s)) => {
            let ok = match u.as_str() {
                "ID" => matches!(s.as_str(), "ID" | "Int" | "String"),
                "String" => matches!(s.as_str(), "String" | "ID"),
                "Int" | "Float" | "Boolean" => u == s,
                _ => match schema.get(u).map(|t| &t.kind) {
                    Some(TypeDefKind::Object(ObjectDef {
                        owner: Some(owner), ..
                    })) => owner.type_name == s.as_str(),
                    Some(TypeDefKind::Scalar | TypeDefKind::Enum(_)) => u == s,
                    // Value types and abstract types: their fields are checked where they are walked.
                    _ => true,
                },
            };
            (!ok).then(|| format!("{s} cannot be served as {u}"))
        }
        _ => Some("list shapes differ".into()),
    }
}

fn names<'n>(names: impl Iterator<Item = &'n String>) -> String {
    let mut v: Vec<&str> = names.map(String::as_str).collect();
    v.sort_unstable();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
