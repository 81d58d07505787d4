//! "Field Selection Merging" (GraphQL spec §5.3.2) where async-graphql
//! 7.2's rule stops: it compares two fields of one response name only when
//! they sit under the same type condition, by name and arguments, and never
//! merges their sub-selections. So `{ contracts { member { x: name } }
//! contracts { member { x: email } } }`, `{ contract(id: 1) { x: title ...
//! on Contract { x: status } } }` and `... on Post { x: likeCount } ... on
//! Product { x: price }` passed validation, and the answer silently carried
//! one of the two fields under `x`.
//!
//! The check is the linear form of the spec's algorithm that apollo-compiler
//! and graphql-java use (not graphql-js's pairwise one, quadratic in fields
//! of one name): the fields of one response name are compared with the
//! first of them, then their sub-selections are merged into one set and
//! checked the same way, level by level.
//!
//! - SameResponseShape: every field of the set returns the same shape
//!   (lists and non-null in the same places, the same scalar or enum at the
//!   leaves), whatever its parent type.
//! - SameForCommonParents: fields that can meet on one object (the same
//!   parent object type, or an interface or union parent) are the same
//!   field with the same arguments.
//!
//! Runs after async-graphql's validation (fields, fragments and their type
//! conditions are known to exist); directives are not looked at, as the
//! spec says.

use std::collections::HashSet;

use async_graphql::parser::types::{BaseType, ExecutableDocument, Field, Selection, SelectionSet, Type};
use async_graphql::{Pos, Positioned};
use async_graphql_value::Name;
use indexmap::IndexMap;

use crate::exec::{ErrorCode, GraphQLError, Location};
use crate::schema::{named_type, Supergraph, TypeDefKind};

/// Fields collected (fragments expanded) past which a document is refused
/// rather than checked: a few kilobytes of fragments spread in fragments
/// expand exponentially, in operations the limits do not measure (only the
/// one to run is).
const MAX_COLLECTED: usize = 100_000;

/// A field as reached from a selection set, fragments expanded.
#[derive(Clone, Copy)]
struct Reached<'d> {
    /// The type the field is selected on (the enclosing type condition).
    parent: Option<&'d str>,
    field: &'d Positioned<Field>,
    /// Its type in the schema; `None` for what the schema does not define
    /// (introspection fields).
    ty: Option<&'d Type>,
}

/// Why two fields cannot be merged, in graphql-js's words, with where.
struct Conflict {
    /// The response name the reason is about.
    name: String,
    reason: String,
    at: Vec<Pos>,
}

/// Every selection that cannot be merged, in every operation of `doc`.
pub fn check(schema: &Supergraph, doc: &ExecutableDocument) -> Result<(), Vec<GraphQLError>> {
    let mut merge = Merge {
        schema,
        doc,
        collected: 0,
    };
    let mut errors = Vec::new();
    for (_, operation) in doc.operations.iter() {
        let root = schema.root_type(operation.node.ty);
        let mut groups = IndexMap::new();
        merge.collect(
            &operation.node.selection_set.node,
            root.map(Name::as_str),
            &mut groups,
            &mut HashSet::new(),
        );
        for (name, fields) in &groups {
            // Names and arguments first, as graphql-js reports them.
            let checked = merge
                .same_for_common_parents(name, fields)
                .and_then(|()| merge.same_response_shape(name, fields));
            if merge.collected > MAX_COLLECTED {
                return Err(vec![GraphQLError::new(
                    format!(
                        "The operation expands to more than {MAX_COLLECTED} fields (fragments spread in fragments); it cannot be checked for conflicting fields"
                    ),
                    ErrorCode::GraphqlValidationFailed,
                )]);
            }
            if let Err(conflict) = checked {
                let mut error = GraphQLError::new(
                    format!(
                        "Fields \"{}\" conflict because {}. Use different aliases on the fields to fetch both if this was intentional.",
                        conflict.name, conflict.reason
                    ),
                    ErrorCode::GraphqlValidationFailed,
                );
                error.locations = conflict.at.iter().copied().map(Location::from).collect();
                errors.push(error);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

struct Merge<'d> {
    schema: &'d Supergraph,
    doc: &'d ExecutableDocument,
    /// Fields collected so far, against [`MAX_COLLECTED`].
    collected: usize,
}

type Groups<'d> = IndexMap<&'d str, Vec<Reached<'d>>>;

impl<'d> Merge<'d> {
    /// The fields of `set` (fragments expanded, each once) by response name.
    fn collect(
        &mut self,
        set: &'d SelectionSet,
        parent: Option<&'d str>,
        groups: &mut Groups<'d>,
        spread: &mut HashSet<&'d str>,
    ) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    self.collected += 1;
                    if self.collected > MAX_COLLECTED {
                        return;
                    }
                    let name = field.node.name.node.as_str();
                    let ty = if name == "__typename" {
                        Some(typename_type())
                    } else {
                        parent.and_then(|p| self.schema.field(p, name)).map(|def| &def.ty)
                    };
                    groups
                        .entry(field.node.response_key().node.as_str())
                        .or_default()
                        .push(Reached { parent, field, ty });
                }
                Selection::InlineFragment(inline) => {
                    let on = super::fragment_type(&inline.node, parent);
                    self.collect(&inline.node.selection_set.node, on, groups, spread);
                }
                Selection::FragmentSpread(name) => {
                    let name = name.node.fragment_name.node.as_str();
                    if !spread.insert(name) {
                        continue;
                    }
                    if let Some(fragment) = self.doc.fragments.get(name) {
                        let on = fragment.node.type_condition.node.on.node.as_str();
                        self.collect(&fragment.node.selection_set.node, Some(on), groups, spread);
                    }
                }
            }
        }
    }

    /// The sub-selections of `fields`, merged into one set.
    fn merged(&mut self, fields: &[Reached<'d>]) -> Groups<'d> {
        let mut groups = IndexMap::new();
        for reached in fields {
            let parent = reached.ty.map(|t| named_type(t).as_str());
            self.collect(
                &reached.field.node.selection_set.node,
                parent,
                &mut groups,
                &mut HashSet::new(),
            );
        }
        groups
    }

    /// SameResponseShape, for every field of one response name and, merged,
    /// their sub-selections.
    fn same_response_shape(&mut self, name: &str, fields: &[Reached<'d>]) -> Result<(), Conflict> {
        let first = fields[0];
        for other in &fields[1..] {
            if let (Some(a), Some(b)) = (first.ty, other.ty) {
                if self.shapes_differ(a, b) {
                    return Err(Conflict {
                        name: name.to_string(),
                        reason: format!("they return conflicting types \"{a}\" and \"{b}\""),
                        at: vec![first.field.pos, other.field.pos],
                    });
                }
            }
        }
        if self.collected > MAX_COLLECTED {
            return Ok(());
        }
        for (sub_name, sub) in &self.merged(fields) {
            self.same_response_shape(sub_name, sub)
                .map_err(|c| nested(name, c, fields))?;
        }
        Ok(())
    }

    /// SameForCommonParents: the fields of one response name that can meet
    /// on one object, grouped by that object type (fields on an interface,
    /// a union or an unknown parent meet every group); each group is one
    /// field with one set of arguments, and its merged sub-selection is
    /// checked the same way.
    fn same_for_common_parents(&mut self, name: &str, fields: &[Reached<'d>]) -> Result<(), Conflict> {
        // Each object parent's set, in document order, with the fields on
        // an interface, a union or an unknown parent in every set.
        let objects: Vec<bool> = fields.iter().map(|f| self.is_object(f.parent)).collect();
        let mut parents: Vec<Option<&str>> = Vec::new();
        for (f, object) in fields.iter().zip(&objects) {
            if *object && !parents.contains(&f.parent) {
                parents.push(f.parent);
            }
        }
        let sets: Vec<Vec<Reached<'d>>> = if parents.is_empty() {
            vec![fields.to_vec()]
        } else {
            parents
                .iter()
                .map(|parent| {
                    fields
                        .iter()
                        .zip(&objects)
                        .filter(|(f, object)| !**object || f.parent == *parent)
                        .map(|(f, _)| *f)
                        .collect()
                })
                .collect()
        };
        for set in &sets {
            let first = set[0];
            for other in &set[1..] {
                let (a, b) = (&first.field.node, &other.field.node);
                let reason = if a.name.node != b.name.node {
                    format!("\"{}\" and \"{}\" are different fields", a.name.node, b.name.node)
                } else if !same_arguments(a, b) {
                    "they have differing arguments".to_string()
                } else {
                    continue;
                };
                return Err(Conflict {
                    name: name.to_string(),
                    reason,
                    at: vec![first.field.pos, other.field.pos],
                });
            }
            if self.collected > MAX_COLLECTED {
                return Ok(());
            }
            for (sub_name, sub) in &self.merged(set) {
                self.same_for_common_parents(sub_name, sub)
                    .map_err(|c| nested(name, c, set))?;
            }
        }
        Ok(())
    }

    fn is_object(&self, type_name: Option<&str>) -> bool {
        type_name
            .and_then(|t| self.schema.get(t))
            .is_some_and(|t| matches!(t.kind, TypeDefKind::Object(_)))
    }

    fn is_leaf(&self, type_name: &str) -> bool {
        self.schema
            .get(type_name)
            .is_none_or(|t| matches!(t.kind, TypeDefKind::Scalar | TypeDefKind::Enum(_)))
    }

    /// DoTypesConflict: lists and non-null in different places, or two
    /// different leaf types.
    fn shapes_differ(&self, a: &Type, b: &Type) -> bool {
        if a.nullable != b.nullable {
            return true;
        }
        match (&a.base, &b.base) {
            (BaseType::List(a), BaseType::List(b)) => self.shapes_differ(a, b),
            (BaseType::Named(a), BaseType::Named(b)) => (self.is_leaf(a) || self.is_leaf(b)) && a != b,
            _ => true,
        }
    }
}

/// `__typename: String!`, for every document.
fn typename_type() -> &'static Type {
    static TYPENAME: std::sync::LazyLock<Type> = std::sync::LazyLock::new(|| Type {
        base: BaseType::Named(Name::new("String")),
        nullable: false,
    });
    &TYPENAME
}

/// The same arguments, each with the same value (a variable by its name).
fn same_arguments(a: &Field, b: &Field) -> bool {
    a.arguments.len() == b.arguments.len()
        && a.arguments.iter().all(|(name, value)| {
            b.get_argument(&name.node)
                .is_some_and(|other| other.node == value.node)
        })
}

/// A conflict in the merged sub-selection of `parents`: theirs when there
/// are several to merge, as graphql-js words it; the sub-selection's own
/// when there is one.
fn nested(name: &str, conflict: Conflict, parents: &[Reached<'_>]) -> Conflict {
    if parents.len() < 2 {
        return conflict;
    }
    let mut at = vec![parents[0].field.pos];
    at.extend(conflict.at);
    Conflict {
        name: name.to_string(),
        reason: format!(
            "subfields \"{}\" conflict because {}",
            conflict.name, conflict.reason
        ),
        at,
    }
}
