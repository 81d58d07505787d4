//! Operation → [`QueryPlan`]: which subgraph requests to make, in what order,
//! and how to shape their answers into the client's response.
//!
//! Planning is pure: no I/O, no async. A plan is data (fetches with their
//! subgraph query text printed once, and a projection tree) and is cached by
//! operation text by the caller. The executor (`exec`) runs it.

mod build;
mod display;
mod federation;
mod normalize;
mod search;
mod siblings;

use async_graphql::parser::types::Type;
use async_graphql_value::{Name, Value};

pub use build::plan;
pub(crate) use build::variable_definitions;
pub use normalize::{Condition, Include, MAX_CONDITION_ALTERNATIVES, MAX_FRAGMENT_DEPTH};

use crate::schema::InputValueDef;

pub type FetchId = usize;

#[derive(Debug)]
pub struct QueryPlan {
    pub kind: OperationKind,
    pub operation_name: Option<Name>,
    pub variables: Vec<VariableDef>,
    /// Every fetch; `FetchId` indexes this.
    pub fetches: Vec<Fetch>,
    /// Fetches that need no parent: run concurrently for a query, in order for a mutation.
    pub roots: Vec<FetchId>,
    /// How to build `data` from the fetched objects.
    pub output: Vec<RootField>,
    /// The operation selects `__schema` or `__type`: answered by async-graphql.
    pub has_introspection: bool,
    /// Some field is a [`FieldKind::Nested`]: the projection keeps the
    /// objects it is writing (an ancestor gives that field's key).
    pub has_nested: bool,
    /// Bytes of `data` the last run of this plan wrote: the next one's
    /// buffer starts that big instead of growing (and copying) to it.
    pub response_size: std::sync::atomic::AtomicUsize,
    /// The response keys the gateway made for itself (`_k_member_id`,
    /// `_key`, `_typename`, `_r_…`): never the client's.
    pub internal_keys: std::collections::HashSet<Name>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
}

#[derive(Debug, Clone)]
pub struct VariableDef {
    pub name: Name,
    pub ty: Type,
    pub default: Option<async_graphql_value::ConstValue>,
    /// Used where a non-null value is expected (its type nullable, allowed
    /// by a default): an explicit `null` is refused.
    pub non_null_usage: bool,
}

/// One step of a plan: a request to one subgraph (for keyed fetches, one per
/// chunk of keys) or one search.
#[derive(Debug)]
pub struct Fetch {
    pub id: FetchId,
    pub kind: FetchKind,
    /// Field arguments of the selection, sent as variables `$_a0…` (for a
    /// search, the search field's arguments by name).
    pub arguments: Vec<ArgBinding>,
    /// Skip the fetch when this does not hold (it sits under `@include`/`@skip`).
    pub include: Include,
    pub children: Vec<FetchId>,
}

impl Fetch {
    /// The subgraph request this fetch makes; `None` for a search.
    pub fn query(&self) -> Option<&SubgraphQuery> {
        match &self.kind {
            FetchKind::Root(query)
            | FetchKind::Lookup(query, _)
            | FetchKind::Join(query, _)
            | FetchKind::Entities(query, _) => Some(query),
            FetchKind::Search(_) => None,
        }
    }
}

#[derive(Debug)]
pub enum FetchKind {
    /// A root field (or several, for queries) of the subgraph.
    Root(SubgraphQuery),
    /// Entities by key through a root field of the owning service, one
    /// result per key (`@lookup`).
    Lookup(SubgraphQuery, KeyedFetch),
    /// Rows grouped by a foreign key through a list field, a list per key (`@join`).
    Join(SubgraphQuery, KeyedFetch),
    /// Entities by key through Apollo Federation's `_entities(representations:)`.
    Entities(SubgraphQuery, EntityFetch),
    /// A search field answered from an index (or by merging its sources).
    Search(SearchFetch),
}

/// The text of a subgraph request.
#[derive(Debug, Default)]
pub struct SubgraphQuery {
    pub subgraph: String,
    /// The printed selection set of the fetched objects (without braces for
    /// keyed fetches, which wrap it per strategy).
    pub selection: String,
    /// The complete subgraph document for every fetch but an `Alias` lookup,
    /// whose document depends on the number of keys (this is its header).
    pub document: String,
    /// A root fetch's fields: each response key and where its text is in
    /// `selection` (a field whose argument the subgraph cannot take is left
    /// out of the request, and only it fails).
    pub root_fields: Vec<(Name, std::ops::Range<usize>)>,
}

/// A root field with `@search`: its arguments become a search query; the
/// result is a connection whose nodes hold the documents' stored fields, the
/// entity id under `_k_<Type>` and the type name under `_type`.
#[derive(Debug)]
pub struct SearchFetch {
    pub index: String,
    /// The root field (`contractSearch`), for per-field strategy settings.
    pub field: Name,
    /// The client's response key: the fetch's data holds the connection under it.
    pub response_key: Name,
    /// The client selects `totalCount` (counting every match costs a visit of each).
    pub counts: bool,
}

/// The key under which a search node holds its entity's id.
pub fn search_key_alias(type_name: &str) -> Name {
    Name::new(format!("_k_{type_name}"))
}

/// The key under which a search node holds its type name.
pub const SEARCH_TYPE_KEY: &str = "_type";

/// Where a keyed fetch finds its keys (in its parent's results) and where its
/// own results hold them.
#[derive(Debug)]
pub struct KeyInput {
    pub parent: FetchId,
    /// Response keys leading from each of the parent's objects to the objects
    /// that hold the key (lists are flattened on the way).
    pub key_path: Vec<Name>,
    /// How each of those objects gives its key.
    pub key: ParentKey,
    /// Results carry their key under this alias (as a Relay id of the
    /// type, when set); `None`: results answer in the order of the keys sent
    /// (Federation `_entities`), and are matched by position.
    pub result_key: Option<(Name, Option<String>)>,
}

/// How an object of a parent fetch gives the key of what a child fetch loads for it.
#[derive(Debug, Clone)]
pub enum ParentKey {
    /// One field, printed into the parent's selection under `alias` (a Relay
    /// id of `global_id`'s type, decoded to the plain id, when set).
    Field { alias: Name, global_id: Option<String> },
    /// A Federation representation built from several fields of the object
    /// (the entity's key and the fields a `@requires` needs); its JSON text
    /// is the key.
    Representation(std::sync::Arc<Representation>),
}

/// `{"__typename": type_name, <fields>}` built from an object of the parent's answer.
#[derive(Debug)]
pub struct Representation {
    pub type_name: String,
    /// Objects at the parent's path may be of several types (an abstract
    /// selection): only those whose `__typename` (under this alias) is
    /// `type_name` have this representation.
    pub typename_alias: Option<Name>,
    /// The `__typename` sent, when not `type_name`: the interface a subgraph
    /// knows as an `@interfaceObject`.
    pub sent_as: Option<Name>,
    pub fields: Vec<RepresentationField>,
    /// Required fields no one subgraph gives (`comments(limit: 3) {
    /// authorId }`: the comments from one, each one's author from
    /// another): planned as a selection of the object, fetched before this
    /// fetch, and written into the representation as the client's
    /// response would be.
    pub assembled: Vec<FieldNode>,
    /// Those of the assembled fields that are the key: an object without
    /// one of them (null) cannot be identified, and has no representation.
    pub assembled_key: Vec<Name>,
}

/// One field of a representation: read from the parent object under
/// `alias`, sent under `name`; an object value keeps only `selection`.
#[derive(Debug)]
pub struct RepresentationField {
    pub name: String,
    pub alias: String,
    pub selection: Vec<RepresentationField>,
    /// A field of a fragment (`... on Bar { bar }`): objects of other types
    /// do not have it, and their representation leaves it out.
    pub conditional: bool,
    /// A field the subgraph `@requires`, not of the key: null is a value
    /// it is sent (an object with a null key field has no representation).
    pub required: bool,
}

/// A legacy keyed fetch: a root field of the owning service that takes keys.
#[derive(Debug)]
pub struct KeyedFetch {
    pub keys: KeyInput,
    pub strategy: KeyStrategy,
    /// The subgraph's field (`membersByIds`, `staff`) and its key argument (`ids`, `id`).
    pub field: String,
    pub arg: String,
    pub arg_type: Type,
    /// Keys sent to the subgraph are encoded as Relay ids of this type.
    pub send_global_id: Option<String>,
    /// Joins through a paginated list field: the document takes `$_limit`
    /// and `$_offset`, and pages are fetched until one comes back short.
    pub page: Option<crate::schema::JoinPage>,
}

/// How a legacy keyed fetch passes its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStrategy {
    /// All keys as one list argument (`$_keys`).
    Batch,
    /// One aliased root field per key (`_0: staff(id: 1)`).
    Alias,
}

/// An Apollo Federation entity fetch: `_entities` with one representation per key.
#[derive(Debug)]
pub struct EntityFetch {
    pub keys: KeyInput,
    /// The entity's type name in the subgraph (the inline fragment).
    pub type_name: String,
    pub representations: Representations,
}

/// How a key becomes a representation.
#[derive(Debug)]
pub enum Representations {
    /// `@lookup(strategy: ENTITIES)` on a legacy schema: `{__typename, <key_field>: key}`,
    /// the key converted to the key field's type (or a Relay id of `send_global_id`'s type).
    KeyField {
        key_field: String,
        key_type: Type,
        send_global_id: Option<String>,
    },
    /// A Federation supergraph: the key is the representation itself
    /// ([`ParentKey::Representation`]).
    Built,
}

/// A subgraph variable bound to a client argument (literal, variable or default).
#[derive(Debug, Clone)]
pub struct ArgBinding {
    pub var: String,
    pub value: Value,
    pub def: InputValueDef,
}

/// A root field of the client's operation and the fetch that answers it.
#[derive(Debug)]
pub struct RootField {
    pub source: RootSource,
    pub node: FieldNode,
}

#[derive(Debug, Clone, Copy)]
pub enum RootSource {
    Fetch(FetchId),
    /// `__typename` of the root type.
    Static,
    /// `__schema` / `__type`.
    Introspection,
}

/// The projection of one selection set, per concrete runtime type.
#[derive(Debug, Default, Clone)]
pub struct SelectionSet {
    /// For a concrete type a single entry; for an interface or union, one per
    /// possible type (chosen at run time by `__typename`).
    pub by_type: Vec<(Name, Vec<FieldNode>)>,
    /// Set for abstract types: where the concrete type name comes from (the
    /// alias that holds it, and whose names it uses).
    pub abstract_source: Option<(TypeNames, Name)>,
}

/// Whose type names an object's `__typename` (or search `_type`) is in.
#[derive(Debug, Clone)]
pub enum TypeNames {
    /// The subgraph's own names, mapped to unified names at run time.
    Subgraph(String),
    /// Unified names already (search hits).
    Unified,
    /// The objects are of an interface their subgraph knows as an
    /// `@interfaceObject`, which cannot tell implementations apart: the
    /// names are those of the entity `fetch` found for each object (by
    /// `key`), in `subgraph`, a subgraph that has the interface itself.
    Entity {
        fetch: FetchId,
        key: ParentKey,
        subgraph: String,
    },
}

#[derive(Debug, Clone)]
pub struct FieldNode {
    pub response_key: Name,
    pub ty: Type,
    pub include: Include,
    pub kind: FieldKind,
    /// Set on every field of a set whose response order depends on the
    /// variables: this field's occurrences (see `build::response_orders`).
    pub order: Option<Occurrences>,
}

/// A field's occurrences in its selection set: each one's place (in
/// document order, fragments expanded) and its condition.
pub type Occurrences = Box<[(u32, Include)]>;

/// The order to write `fields` in for the request's `variables`: the
/// collected order, unless the fields carry occurrences, then by each
/// field's first occurrence that holds. Indices into `fields`.
pub fn response_order<T>(
    fields: &[T],
    node: impl Fn(&T) -> &FieldNode,
    variables: &std::collections::HashMap<Name, async_graphql_value::ConstValue>,
) -> Option<Vec<usize>> {
    // Only when every field carries its occurrences (fields made outside
    // the collected set, as an entity hop's, carry none): one without
    // would have no place, and must not be left out.
    if !fields.iter().all(|f| node(f).order.is_some()) {
        return None;
    }
    let mut placed: Vec<(u32, usize)> = fields
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let first = node(f)
                .order
                .as_deref()?
                .iter()
                .find(|(_, include)| include.holds(variables))?;
            Some((first.0, i))
        })
        .collect();
    placed.sort_unstable();
    Some(placed.into_iter().map(|(_, i)| i).collect())
}

impl FieldNode {
    /// `__typename` of an object of type `type_name`.
    pub fn typename(response_key: Name, include: Include, type_name: Name) -> Self {
        FieldNode {
            response_key,
            ty: Type {
                base: async_graphql::parser::types::BaseType::Named(Name::new("String")),
                nullable: false,
            },
            include,
            kind: FieldKind::Typename(type_name),
            order: None,
        }
    }
}

/// The type of a leaf, as far as the gateway checks what a subgraph sent
/// for it: a built-in scalar must be a value of its kind (GraphQL's result
/// coercion); a custom scalar is passed on as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Id,
    String,
    Int,
    Float,
    Boolean,
    Custom,
}

impl Scalar {
    pub fn of(type_name: &str) -> Scalar {
        match type_name {
            "ID" => Scalar::Id,
            "String" => Scalar::String,
            "Int" => Scalar::Int,
            "Float" => Scalar::Float,
            "Boolean" => Scalar::Boolean,
            _ => Scalar::Custom,
        }
    }
}

#[derive(Debug, Clone)]
pub enum FieldKind {
    /// The object's concrete type name.
    Typename(Name),
    Leaf {
        data_key: Name,
        /// The subgraph value is a Relay id: decode to the plain id.
        global_id: bool,
        /// What the value must be; an `ID`'s numbers are written as strings.
        scalar: Scalar,
    },
    /// A value of an enum: the subgraph may know more values than the client
    /// schema (a legacy service that gained one; Federation: `@inaccessible`
    /// values, values only some subgraphs define): one the client schema does
    /// not know is null, with an error.
    EnumLeaf {
        data_key: Name,
        enum_type: Name,
        /// The client schema's values of `enum_type`, read once at planning.
        values: Vec<Name>,
    },
    Object {
        data_key: Name,
        selection: SelectionSet,
    },
    /// The edges of a search connection: a list of `Object`s, except that
    /// a hit whose entity the hydration found gone (deleted since it was
    /// indexed) is left out, and reported for repair.
    SearchEdges {
        data_key: Name,
        selection: SelectionSet,
    },
    /// Many-to-one: look the parent's key up in the fetch's results.
    Ref {
        fetch: FetchId,
        key: ParentKey,
        selection: SelectionSet,
    },
    /// One-to-many: the list grouped under the parent's key.
    Join {
        fetch: FetchId,
        key: ParentKey,
        selection: SelectionSet,
    },
    /// A field of an object the parent only identifies (a search hit, or a
    /// Federation entity whose field another subgraph resolves): read from
    /// the entity `fetch` returned for the parent's key.
    Hydrated {
        fetch: FetchId,
        key: ParentKey,
        inner: Box<FieldKind>,
    },
    /// A field of a value object that only another subgraph resolves, and
    /// only through the entity `up` objects above (Federation: the object
    /// has no key there, `products { category { details } }` with
    /// `details` in a subgraph that has `Category` without a key): read
    /// from the entity `fetch` found for that ancestor's key, down the
    /// fields the client's path takes from it (asked under the keys in
    /// `path`) and the same list positions.
    Nested {
        fetch: FetchId,
        key: ParentKey,
        up: usize,
        path: Vec<Name>,
        inner: Box<FieldKind>,
    },
    /// A field of a root field's object that another subgraph answers (a
    /// root field several subgraphs resolve, its selection split between
    /// them): read from root fetch `fetch` at the same path.
    Sibling {
        fetch: FetchId,
        inner: Box<FieldKind>,
    },
    /// A list of an abstract type gathered from several keyed fetches (one
    /// per member type, each in its own service), optionally ordered.
    Merge {
        parts: Vec<MergePart>,
        descending: bool,
    },
}

impl FieldKind {
    /// The key the field's value has in the object it is read from.
    pub fn data_key(&self) -> Option<&str> {
        match self {
            FieldKind::Leaf { data_key, .. }
            | FieldKind::EnumLeaf { data_key, .. }
            | FieldKind::Object { data_key, .. }
            | FieldKind::SearchEdges { data_key, .. } => Some(data_key.as_str()),
            FieldKind::Hydrated { inner, .. }
            | FieldKind::Nested { inner, .. }
            | FieldKind::Sibling { inner, .. } => inner.data_key(),
            _ => None,
        }
    }
}

/// One source of a [`FieldKind::Merge`]: a `@ref` or `@join` to one concrete type.
#[derive(Debug, Clone)]
pub struct MergePart {
    pub fetch: FetchId,
    pub key: ParentKey,
    pub is_join: bool,
    /// The concrete type's projection (a `FieldKind::Object`).
    pub item: Box<FieldKind>,
    /// Alias of the ordering field in each fetched object.
    pub order_alias: Option<Name>,
}

/// Why an operation cannot be planned (after validation passed, so these are
/// mostly schema gaps).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlanError {
    #[error("unknown operation named \"{name}\"")]
    UnknownOperation { name: String },
    #[error("the document has several operations: say which one to run with `operationName`")]
    OperationNameRequired,
    #[error("the document has no operation")]
    NoOperation,
    #[error("subscriptions are not supported")]
    Subscription,
    #[error("{message}")]
    Unresolvable { message: String },
    /// Fragments nest deeper than [`MAX_FRAGMENT_DEPTH`].
    #[error("the operation nests fragments more than {max} deep (a fragment inside a fragment, no field between); at most {max} are allowed")]
    FragmentsTooDeep { max: usize, pos: async_graphql::Pos },
    /// A field is selected under more combinations of `@skip`/`@include`
    /// conditions than [`MAX_CONDITION_ALTERNATIVES`].
    #[error("the operation selects `{field}` under more than {max} different combinations of @skip/@include conditions; at most {max} are allowed")]
    TooManyConditions {
        field: String,
        max: usize,
        pos: async_graphql::Pos,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(key: &str, order: Option<Vec<(u32, Include)>>) -> FieldNode {
        FieldNode {
            order: order.map(Vec::into_boxed_slice),
            ..FieldNode::typename(Name::new(key), Include::Always, Name::new("T"))
        }
    }

    #[test]
    fn fields_are_ordered_by_the_variables_only_when_each_has_its_occurrences() {
        let skipped = Include::When(vec![vec![Condition {
            var: Name::new("s"),
            expected: false,
        }]]);
        let skip = std::collections::HashMap::from([(
            Name::new("s"),
            async_graphql_value::ConstValue::Boolean(true),
        )]);
        // `a @skip(if: $s) b a`: with `s`, b comes first.
        let fields = [
            field("a", Some(vec![(0, skipped), (2, Include::Always)])),
            field("b", Some(vec![(1, Include::Always)])),
        ];
        assert_eq!(response_order(&fields, |f| f, &skip), Some(vec![1, 0]));
        // A field planned without its occurrences: the collected order, every field kept.
        let fields = [fields[0].clone(), field("c", None)];
        assert_eq!(response_order(&fields, |f| f, &skip), None);
    }
}
