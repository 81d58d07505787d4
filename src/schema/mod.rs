//! The supergraph model: `schema.graphql` read into typed Rust.
//!
//! This module owns the unified schema and the directives that say where each
//! field comes from (`@owner`, `@lookup`, `@source`, `@ref`, `@join`,
//! `@delegate`; see `docs/directives.md`). Every other module reads it; it
//! depends on none of them and does no I/O beyond reading the schema text it
//! is given. `check` compares the model against the subgraphs' introspection.

pub mod check;
mod federation;
pub mod index;
mod load;
mod validation_schema;

use std::collections::{BTreeSet, HashMap};

use async_graphql::parser::types::{BaseType, Type};
use async_graphql::parser::Pos;
use async_graphql_value::{Name, Value};
use indexmap::IndexMap;

pub use index::{Changes, IndexDef, IndexField, IndexSource, MergeSource, Paging, Reduce};
pub use load::SchemaError;

/// The unified schema with everything the planner needs to delegate a field.
#[derive(Debug)]
pub struct Supergraph {
    types: HashMap<Name, TypeDef>,
    query_type: Name,
    mutation_type: Option<Name>,
    subgraphs: BTreeSet<String>,
    /// Read from an Apollo Federation supergraph (`@join__*` directives).
    federation: Option<Box<Federation>>,
    /// Search indexes by name (`@index` document types).
    indexes: IndexMap<String, IndexDef>,
    /// The client-facing SDL: schema.graphql without Tessera's directives.
    client_sdl: String,
    /// async-graphql schema used only to validate operations and answer introspection.
    validator: async_graphql::dynamic::Schema,
}

#[derive(Debug)]
pub struct TypeDef {
    pub name: Name,
    pub pos: Pos,
    pub kind: TypeDefKind,
}

#[derive(Debug)]
pub enum TypeDefKind {
    Scalar,
    Object(ObjectDef),
    Interface(InterfaceDef),
    Union(UnionDef),
    Enum(Vec<Name>),
    InputObject(IndexMap<Name, InputValueDef>),
}

/// Where an object type lives and how to fetch it by key.
#[derive(Debug)]
pub struct ObjectDef {
    /// `None` for value types (connections, payloads): their fields are read
    /// from whichever subgraph response holds them.
    pub owner: Option<Owner>,
    pub lookup: Option<Lookup>,
    /// How to list the type's rows for the synchronizer.
    pub changes: Option<Box<Changes>>,
    pub fields: IndexMap<Name, FieldDef>,
    pub implements: Vec<Name>,
    /// A type of a Federation supergraph: the subgraphs that define it and its keys.
    pub federated: Option<Box<FederatedType>>,
}

/// What a Federation supergraph says about an object type.
#[derive(Debug, Default)]
pub struct FederatedType {
    /// Subgraphs that define the type (`@join__type(graph:)`).
    pub graphs: Vec<String>,
    /// Keys by which a subgraph resolves the entity (`@join__type(key:)`,
    /// `resolvable: true`), in the order the supergraph lists them.
    pub keys: Vec<EntityKey>,
}

#[derive(Debug)]
pub struct EntityKey {
    pub graph: String,
    pub fields: FieldSet,
    /// The same, as a selection set the planner can plan like a client's
    /// (when no one subgraph gives the key's fields, they are fetched so).
    pub selection: Option<async_graphql::parser::types::SelectionSet>,
    /// The `__typename` its representations carry when it is not the
    /// object's own: the interface a subgraph knows as an `@interfaceObject`
    /// (it has no idea which implementation an object is).
    pub sent_as: Option<Name>,
}

/// A Federation field set (`"id organization { id }"`), parsed.
pub type FieldSet = Vec<FieldSetItem>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSetItem {
    pub name: Name,
    /// `(currency:"USD")`, printed, or empty.
    pub arguments: String,
    pub selection: FieldSet,
    /// `... on Type { … }` in the selection: fields asked only of the
    /// objects of that type (nested fragments flattened to the innermost
    /// type, as they select the same objects).
    pub fragments: Vec<(Name, FieldSet)>,
}

/// Federation facts about the whole supergraph.
#[derive(Debug, Default)]
pub struct Federation {
    /// `@join__graph(name:, url:)`.
    pub urls: std::collections::BTreeMap<String, String>,
    /// `(abstract type, subgraph, member)`: the member belongs to the union
    /// or implements the interface in that subgraph.
    pub members: std::collections::HashSet<(Name, String, Name)>,
    /// The subgraphs that resolve each root field, by `(root type, field)`,
    /// in the supergraph's order (the first is the one `@delegate` names),
    /// each with the `@provides` it has there.
    pub root_graphs: HashMap<(Name, Name), Vec<RootGraph>>,
    /// Interfaces some subgraph knows as an `@interfaceObject`, by name.
    pub interface_objects: HashMap<Name, InterfaceObject>,
}

/// A subgraph that resolves a root field.
#[derive(Debug)]
pub struct RootGraph {
    pub graph: String,
    /// Fields of the returned objects it resolves on this path (`@provides`).
    pub provides: FieldSet,
}

/// An interface that some subgraphs define as an object type
/// (`@interfaceObject`): their objects do not say which implementation they
/// are; a subgraph that has the interface with a `@key` does.
#[derive(Debug, Default)]
pub struct InterfaceObject {
    /// The subgraphs that have it as an object type.
    pub graphs: Vec<String>,
    /// Keys by which the subgraphs that have the interface itself (and its
    /// implementations) resolve an object of it: their `_entities` answers
    /// `__typename` with the implementation.
    pub keys: Vec<EntityKey>,
    /// The interface as an entity: every subgraph that resolves it by a key,
    /// as an interface or as an object type (its fields are
    /// [`Resolver::Federated`] with the subgraphs that resolve each).
    pub entity: FederatedType,
}

/// A field of a Federation supergraph: the subgraphs that resolve it.
#[derive(Debug, Clone)]
pub struct FederatedField {
    pub graphs: Vec<FieldGraph>,
}

/// One subgraph's view of a federated field.
#[derive(Debug, Clone)]
pub struct FieldGraph {
    pub graph: String,
    /// `@external` there: resolvable only where a `@provides` says so.
    pub external: bool,
    /// Fields of the parent the subgraph needs in the representation (`@requires`).
    pub requires: Option<FieldSet>,
    /// The same, as a selection set the planner can plan like a client's
    /// (when the fields come from several subgraphs, they are fetched so).
    pub requires_selection: Option<async_graphql::parser::types::SelectionSet>,
    /// Fields of the returned entity the subgraph resolves on this path (`@provides`).
    pub provides: Option<FieldSet>,
    /// The field's type in the subgraph, where it differs from the
    /// supergraph's (`@join__field(type:)`: `ID!` for `ID`, `Book` for `Media`).
    pub subgraph_type: Option<Type>,
}

impl FederatedField {
    /// How `graph` resolves the field, when it does (not `@external` there).
    pub fn resolved_by(&self, graph: &str) -> Option<&FieldGraph> {
        self.graphs.iter().find(|g| g.graph == graph && !g.external)
    }
}

#[derive(Debug)]
pub struct InterfaceDef {
    pub owner: Option<Owner>,
    pub fields: IndexMap<Name, FieldDef>,
}

#[derive(Debug)]
pub struct UnionDef {
    pub members: Vec<Name>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub subgraph: String,
    /// The type's name in its subgraph (`MemberNode` for `Member`).
    pub type_name: String,
}

/// How a subgraph is asked for entities by key.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub strategy: LookupStrategy,
    /// Root field of the owning subgraph (`membersByIds`, `staff`, `_entities`).
    pub field: String,
    /// Its argument that takes the key(s) (`ids`, `id`).
    pub arg: String,
    /// The argument's type in the subgraph (`[ID!]!`, `Int!`).
    pub arg_type: Type,
    /// The unified field that holds the key (`id`).
    pub key: Name,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupStrategy {
    /// One request, the keys as one list argument.
    Batch,
    /// One request, one aliased root field per key (`_0: staff(id: 1)`).
    Alias,
    /// Apollo Federation `_entities(representations:)`.
    Entities,
}

#[derive(Debug)]
pub struct FieldDef {
    pub name: Name,
    pub ty: Type,
    pub args: IndexMap<Name, InputValueDef>,
    pub resolver: Resolver,
    pub pos: Pos,
}

/// How the value of a field is obtained.
#[derive(Debug, Clone)]
pub enum Resolver {
    /// Read from the parent object's subgraph response, under `source`.
    Owned {
        source: String,
        /// The subgraph serves a Relay global id of this type; the supergraph
        /// exposes the plain id.
        global_id: Option<String>,
    },
    /// Many-to-one: `key` is a field of the parent holding the target's key;
    /// the target type's `@lookup` fetches it.
    Ref { key: Name },
    /// One-to-many: every target row whose `on` equals the parent's `key`.
    Join(Join),
    /// A root field delegated to a subgraph's root field.
    Delegate { subgraph: String, field: String },
    /// A leaf read through a `@ref` of the same type (`author.name`): the
    /// referenced entity is looked up (batched) and one of its fields
    /// returned. `selection` is `{ leaf }`, parsed once, for the planner.
    Path {
        relation: Name,
        leaf: Name,
        selection: Box<async_graphql::parser::types::ExecutableDocument>,
    },
    /// A root field answered from a search index (or, without it, by merging
    /// the index's sources).
    Search { index: String, pos: Pos },
    /// A field of a Federation supergraph, resolved by one or several subgraphs.
    Federated(Box<FederatedField>),
    /// A list of an interface or union whose members live in different
    /// services: the concatenation of sibling `@ref`/`@join` fields,
    /// optionally ordered by a field every member has.
    Merge {
        fields: Vec<Name>,
        order_by: Option<Name>,
        descending: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Join {
    pub subgraph: String,
    pub field: String,
    pub arg: String,
    pub arg_type: Type,
    /// Field of the target type that holds the parent's key.
    pub on: Name,
    /// Field of the parent type whose value is the join key.
    pub key: Name,
    /// The join field is a paginated list: fetch page after page until one
    /// comes back short, so no row is cut off by the service's page limit.
    pub page: Option<JoinPage>,
    /// Where the `@join` directive is, for messages.
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinPage {
    pub limit_arg: String,
    pub offset_arg: String,
    pub size: usize,
}

/// An argument or input field, with its name and type in the subgraph.
#[derive(Debug, Clone)]
pub struct InputValueDef {
    pub name: Name,
    pub ty: Type,
    pub default: Option<Value>,
    pub source_name: String,
    pub source_type: Type,
    pub global_id: Option<String>,
    pub pos: Pos,
}

impl Supergraph {
    /// Reads schema.graphql. Errors carry `line:col` of the offending element.
    pub fn parse(sdl: &str) -> Result<Self, Vec<SchemaError>> {
        load::load(sdl)
    }

    pub fn query_type(&self) -> &Name {
        &self.query_type
    }

    pub fn mutation_type(&self) -> Option<&Name> {
        self.mutation_type.as_ref()
    }

    /// The root type of an operation of type `ty` (none for subscriptions,
    /// which the gateway does not serve).
    pub fn root_type(&self, ty: async_graphql::parser::types::OperationType) -> Option<&Name> {
        use async_graphql::parser::types::OperationType;
        match ty {
            OperationType::Query => Some(self.query_type()),
            OperationType::Mutation => self.mutation_type(),
            OperationType::Subscription => None,
        }
    }

    pub fn get(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    pub fn types(&self) -> impl Iterator<Item = &TypeDef> {
        self.types.values()
    }

    pub fn object(&self, name: &str) -> Option<&ObjectDef> {
        match &self.types.get(name)?.kind {
            TypeDefKind::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Every subgraph named by a directive.
    pub fn subgraphs(&self) -> &BTreeSet<String> {
        &self.subgraphs
    }

    /// The supergraph's Federation facts; `None` for schema.graphql.
    /// The `@interfaceObject` facts of `interface`, when `subgraph` has it
    /// as an object type.
    pub fn interface_object(&self, interface: &str, subgraph: &str) -> Option<&InterfaceObject> {
        let object = self.federation.as_ref()?.interface_objects.get(interface)?;
        object.graphs.iter().any(|g| g == subgraph).then_some(object)
    }

    pub fn federation(&self) -> Option<&Federation> {
        self.federation.as_deref()
    }

    /// The subgraph URLs a supergraph declares (`@join__graph(url:)`).
    pub fn declared_urls(&self) -> impl Iterator<Item = (&String, &String)> {
        self.federation.iter().flat_map(|f| f.urls.iter())
    }

    /// Whether `subgraph` can return `member` where `abstract_type` is
    /// expected: always in schema.graphql (ownership decides), and in a
    /// supergraph when the subgraph declares the membership.
    pub fn member_in(&self, abstract_type: &Name, subgraph: &str, member: &Name) -> bool {
        match &self.federation {
            None => true,
            Some(f) => f
                .members
                .contains(&(abstract_type.clone(), subgraph.to_string(), member.clone())),
        }
    }

    pub fn indexes(&self) -> impl Iterator<Item = &IndexDef> {
        self.indexes.values()
    }

    pub fn index(&self, name: &str) -> Option<&IndexDef> {
        self.indexes.get(name)
    }

    /// The root field of the query type that fetches one `type_name` by
    /// `id` (`contract(id: ID!): Contract`), for rebuilding documents by id.
    pub fn get_by_id_field(&self, type_name: &str) -> Option<&FieldDef> {
        let query = self.object(&self.query_type)?;
        query.fields.values().find(|f| {
            named_type(&f.ty) == type_name
                && !is_list(&f.ty)
                && f.args.len() == 1
                && f.args.get("id").is_some_and(|a| !a.ty.nullable)
                && matches!(f.resolver, Resolver::Delegate { .. })
        })
    }

    pub fn client_sdl(&self) -> &str {
        &self.client_sdl
    }

    pub fn validator(&self) -> &async_graphql::dynamic::Schema {
        &self.validator
    }

    /// Field definition on an object or interface type.
    pub fn field(&self, type_name: &str, field: &str) -> Option<&FieldDef> {
        match &self.types.get(type_name)?.kind {
            TypeDefKind::Object(o) => o.fields.get(field),
            TypeDefKind::Interface(i) => i.fields.get(field),
            _ => None,
        }
    }

    /// Concrete object types a value of `type_name` can have.
    pub fn possible_types(&self, type_name: &str) -> Vec<&Name> {
        match self.types.get(type_name).map(|t| &t.kind) {
            Some(TypeDefKind::Object(_)) => self
                .types
                .get_key_value(type_name)
                .map(|(k, _)| vec![k])
                .unwrap_or_default(),
            Some(TypeDefKind::Union(u)) => u.members.iter().collect(),
            Some(TypeDefKind::Interface(_)) => {
                let mut names: Vec<&Name> = self
                    .types
                    .values()
                    .filter_map(|t| match &t.kind {
                        TypeDefKind::Object(o) if o.implements.iter().any(|i| i == type_name) => {
                            Some(&t.name)
                        }
                        _ => None,
                    })
                    .collect();
                names.sort();
                names
            }
            _ => Vec::new(),
        }
    }

    pub fn is_abstract(&self, type_name: &str) -> bool {
        matches!(
            self.types.get(type_name).map(|t| &t.kind),
            Some(TypeDefKind::Interface(_) | TypeDefKind::Union(_))
        )
    }

    /// The unified name of a type as a subgraph spells it in `__typename`.
    pub fn unified_type_name(&self, subgraph: &str, subgraph_type: &str) -> Option<&Name> {
        self.types.values().find_map(|t| match &t.kind {
            TypeDefKind::Object(ObjectDef {
                owner: Some(owner), ..
            }) if owner.subgraph == subgraph && owner.type_name == subgraph_type => Some(&t.name),
            TypeDefKind::Object(ObjectDef { owner: None, .. }) if t.name == subgraph_type => Some(&t.name),
            _ => None,
        })
    }

    /// Input fields of an input object type.
    pub fn input_fields(&self, type_name: &str) -> Option<&IndexMap<Name, InputValueDef>> {
        match &self.types.get(type_name)?.kind {
            TypeDefKind::InputObject(fields) => Some(fields),
            _ => None,
        }
    }
}

/// The innermost named type of `[[T!]]!`.
pub fn named_type(ty: &Type) -> &Name {
    match &ty.base {
        BaseType::Named(name) => name,
        BaseType::List(inner) => named_type(inner),
    }
}

pub fn is_list(ty: &Type) -> bool {
    matches!(ty.base, BaseType::List(_))
}
