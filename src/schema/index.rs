//! Index definitions: the read models behind search fields (DESIGN.md,
//! "Integrated lists").
//!
//! An index is declared by one or more *document types*, object types
//! carrying `@index(name:, type:)`. Each describes the document built for one
//! entity type: its fields are copied from the entity (same name) or
//! denormalized along a path of `@ref`/`@join` fields (`@denormalize`), and
//! flagged `@searchable`, `@filterable`, `@sortable`. Document types are not
//! part of the client schema. A multi-type index (the feed) has one document
//! type per entity type; fields with the same name must agree.
//!
//! `@changes` on an entity type says how to list its rows, all of them or
//! those updated after a watermark: the synchronizer's source of truth.
//!
//! This module only reads and checks the declarations; `search` turns them
//! into backend specs and `sync` builds the documents.

use async_graphql::parser::types::{ConstDirective, TypeDefinition, TypeKind};
use async_graphql::parser::{Pos, Positioned};
use async_graphql_value::{ConstValue, Name};

use super::load::SchemaError;

/// One index and the document types that feed it.
#[derive(Debug, Clone)]
pub struct IndexDef {
    pub name: String,
    pub sources: Vec<IndexSource>,
}

impl IndexDef {
    /// The source for entity type `entity`.
    pub fn source(&self, entity: &str) -> Option<&IndexSource> {
        self.sources.iter().find(|s| s.entity == entity)
    }

    /// Whether documents of several entity types share the index.
    pub fn is_multi_type(&self) -> bool {
        self.sources.len() > 1
    }
}

/// The document of one entity type in an index.
#[derive(Debug, Clone)]
pub struct IndexSource {
    pub doc_type: Name,
    pub entity: Name,
    pub fields: Vec<IndexField>,
    /// How to answer the index's search field without the index.
    pub merge: Option<MergeSource>,
    pub pos: Pos,
}

impl IndexSource {
    pub fn field(&self, name: &str) -> Option<&IndexField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether the document holds the entity's own field `name` unchanged.
    pub fn holds_entity_field(&self, name: &str) -> bool {
        self.field(name).is_some_and(|f| f.path.is_none())
    }
}

/// One field of a document.
#[derive(Debug, Clone)]
pub struct IndexField {
    pub name: Name,
    /// The named GraphQL type of the value (`String`, `Int`, an enum, …).
    pub type_name: Name,
    pub searchable: bool,
    pub filterable: bool,
    pub sortable: bool,
    /// `None`: the entity's field of the same name. Otherwise the fields to
    /// follow from the entity (`["manager", "name"]`); lists along the way
    /// are flattened.
    pub path: Option<Vec<Name>>,
    pub reduce: Option<Reduce>,
    pub pos: Pos,
}

/// How a denormalized path that reaches several values becomes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// How many values (objects or leaves) the path reaches.
    Count,
    /// The sum of numeric values (decimal strings included).
    Sum,
}

/// A list field of the unified schema that returns the entity's rows sorted,
/// with offset paging: one MERGE source.
#[derive(Debug, Clone)]
pub struct MergeSource {
    /// Unified root field (`posts`).
    pub field: String,
    pub limit_arg: String,
    pub offset_arg: String,
    /// The document field the list is sorted by (`createdAt`).
    pub sort_field: Name,
    /// Arguments that sort the list ascending / descending by it, ties by id
    /// in the same direction.
    pub asc: Vec<(Name, ConstValue)>,
    pub desc: Vec<(Name, ConstValue)>,
    /// Unified root field counting the rows (`postsCount`), for `totalCount`.
    pub count_field: Option<String>,
    /// The most rows the list returns at once (a merged page is one less).
    pub max_limit: Option<usize>,
    /// Arguments bounding the sort field (inclusive) from below / above:
    /// with them a page starts after the last row seen instead of at an
    /// offset, so rows added or deleted between pages shift nothing.
    pub gte_arg: Option<String>,
    pub lte_arg: Option<String>,
}

/// How the synchronizer lists an entity type's rows.
#[derive(Debug, Clone)]
pub struct Changes {
    /// Unified root field returning the rows by ascending id.
    pub field: String,
    /// Its argument taking the "updated after" watermark.
    pub since_arg: String,
    pub paging: Paging,
    pub page_size: usize,
    /// Unified root field counting the rows, for progress and ETA.
    pub count_field: Option<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum Paging {
    /// A plain list with limit/offset arguments.
    Offset { limit_arg: String, offset_arg: String },
    /// A Relay connection (`edges { node }`, `pageInfo { endCursor hasNextPage }`).
    Cursor { first_arg: String, after_arg: String },
}

pub(super) const FIELD_FLAGS: &[&str] = &["searchable", "filterable", "sortable", "denormalize"];

fn find<'a>(
    directives: &'a [Positioned<ConstDirective>],
    name: &str,
) -> Option<&'a Positioned<ConstDirective>> {
    directives.iter().find(|d| d.node.name.node == name)
}

fn str_arg(d: &ConstDirective, arg: &str) -> Option<String> {
    match d.get_argument(arg).map(|v| &v.node) {
        Some(ConstValue::String(s)) => Some(s.clone()),
        Some(ConstValue::Enum(s)) => Some(s.to_string()),
        _ => None,
    }
}

fn object_arg(d: &ConstDirective, arg: &str) -> Vec<(Name, ConstValue)> {
    match d.get_argument(arg).map(|v| &v.node) {
        Some(ConstValue::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => Vec::new(),
    }
}

/// Reads a document type (an object type with `@index`).
pub(super) fn document_type(
    t: &TypeDefinition,
    pos: Pos,
    errors: &mut Vec<SchemaError>,
) -> Option<(String, IndexSource)> {
    let d = find(&t.directives, "index")?;
    let name = &t.name.node;
    let mut need = |arg: &str| {
        let v = str_arg(&d.node, arg);
        if v.is_none() {
            errors.push(SchemaError::new(
                d.pos,
                format!("@index on {name} needs the string argument `{arg}`"),
            ));
        }
        v
    };
    let (index, entity) = (need("name"), need("type"));
    for other in &t.directives {
        let n = other.node.name.node.as_str();
        if n != "index" && n != "mergeSource" {
            errors.push(SchemaError::new(
                other.pos,
                format!("@{n} cannot be used on document type {name}; allowed here: @index, @mergeSource"),
            ));
        }
    }
    let TypeKind::Object(object) = &t.kind else {
        errors.push(SchemaError::new(
            pos,
            format!("@index belongs on an object type, not on {name}"),
        ));
        return None;
    };
    let merge = find(&t.directives, "mergeSource").and_then(|m| merge_source(name, m, errors));
    let mut fields = Vec::new();
    for f in &object.fields {
        let fname = &f.node.name.node;
        for dir in &f.node.directives {
            if !FIELD_FLAGS.contains(&dir.node.name.node.as_str()) {
                errors.push(SchemaError::new(
                    dir.pos,
                    format!(
                        "@{} cannot be used on document field {name}.{fname}; allowed: @searchable, @filterable, @sortable, @denormalize",
                        dir.node.name.node
                    ),
                ));
            }
        }
        if fname == "id" {
            continue; // implicit in every document
        }
        let flag = |n: &str| find(&f.node.directives, n).is_some();
        let denorm = find(&f.node.directives, "denormalize");
        let path = denorm.and_then(|dn| match str_arg(&dn.node, "path") {
            Some(p) => Some(p.split('.').map(Name::new).collect::<Vec<_>>()),
            None => {
                errors.push(SchemaError::new(
                    dn.pos,
                    "@denormalize needs `path`, e.g. \"manager.name\"",
                ));
                None
            }
        });
        let reduce = denorm.and_then(|dn| match str_arg(&dn.node, "reduce").as_deref() {
            None => None,
            Some("COUNT") => Some(Reduce::Count),
            Some("SUM") => Some(Reduce::Sum),
            Some(other) => {
                errors.push(SchemaError::new(
                    dn.pos,
                    format!("@denormalize(reduce: {other}) is unknown; use COUNT or SUM"),
                ));
                None
            }
        });
        fields.push(IndexField {
            name: fname.clone(),
            type_name: super::named_type(&f.node.ty.node).clone(),
            searchable: flag("searchable"),
            filterable: flag("filterable"),
            sortable: flag("sortable"),
            path,
            reduce,
            pos: f.pos,
        });
    }
    Some((
        index?,
        IndexSource {
            doc_type: name.clone(),
            entity: Name::new(entity?),
            fields,
            merge,
            pos,
        },
    ))
}

fn merge_source(
    doc: &Name,
    d: &Positioned<ConstDirective>,
    errors: &mut Vec<SchemaError>,
) -> Option<MergeSource> {
    let mut need = |arg: &str| {
        let v = str_arg(&d.node, arg);
        if v.is_none() {
            errors.push(SchemaError::new(
                d.pos,
                format!("@mergeSource on {doc} needs the string argument `{arg}`"),
            ));
        }
        v
    };
    let (field, limit_arg, offset_arg, sort_field) = (
        need("field"),
        need("limitArg"),
        need("offsetArg"),
        need("sortField"),
    );
    Some(MergeSource {
        field: field?,
        limit_arg: limit_arg?,
        offset_arg: offset_arg?,
        sort_field: Name::new(sort_field?),
        asc: object_arg(&d.node, "asc"),
        desc: object_arg(&d.node, "desc"),
        count_field: str_arg(&d.node, "countField"),
        max_limit: match d.node.get_argument("maxLimit").map(|v| &v.node) {
            Some(ConstValue::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            _ => None,
        },
        gte_arg: str_arg(&d.node, "gteArg"),
        lte_arg: str_arg(&d.node, "lteArg"),
    })
}

/// Reads `@changes` on an entity type.
pub(super) fn changes(
    type_name: &Name,
    d: &Positioned<ConstDirective>,
    errors: &mut Vec<SchemaError>,
) -> Option<Changes> {
    let field = str_arg(&d.node, "field");
    let since = str_arg(&d.node, "since");
    let page_size = match d.node.get_argument("pageSize").map(|v| &v.node) {
        Some(ConstValue::Number(n)) => n
            .as_u64()
            .filter(|n| *n > 0)
            .and_then(|n| usize::try_from(n).ok()),
        None => Some(1000),
        Some(_) => None,
    };
    let paging = match (
        str_arg(&d.node, "limitArg"),
        str_arg(&d.node, "offsetArg"),
        str_arg(&d.node, "firstArg"),
        str_arg(&d.node, "afterArg"),
    ) {
        (Some(limit_arg), Some(offset_arg), None, None) => Some(Paging::Offset {
            limit_arg,
            offset_arg,
        }),
        (None, None, Some(first_arg), Some(after_arg)) => Some(Paging::Cursor { first_arg, after_arg }),
        _ => None,
    };
    match (field, since, paging, page_size) {
        (Some(field), Some(since_arg), Some(paging), Some(page_size)) => Some(Changes {
            field,
            since_arg,
            paging,
            page_size,
            count_field: str_arg(&d.node, "countField"),
            pos: d.pos,
        }),
        _ => {
            errors.push(SchemaError::new(
                d.pos,
                format!(
                    "@changes on {type_name} needs `field` and `since`, paging by `limitArg` + `offsetArg` or by `firstArg` + `afterArg` (a Relay connection), and an optional positive `pageSize`"
                ),
            ));
            None
        }
    }
}
