//! The read model: what one index document is, for the search fields and
//! the synchronizer alike (DESIGN.md, "Integrated lists" and "Sync").
//!
//! It owns the backend spec of each declared index ([`index_spec`]), the
//! document ids (`Contract:00000000000000000042`, [`document_id`] and
//! [`entity_of`]), and the building of documents from the services' rows
//! ([`documents::DocumentBuilder`]): the selection that reads an entity and
//! everything denormalized into its document, printed once per source.
//!
//! Every document also records, per type denormalized into it, the ids of
//! the rows it was built from (`_refs_Staff: ["7"]`). That is how a change
//! to any of those rows, a delete included, finds the documents to rebuild,
//! whether the row held the key (a contract's `managerId`) or the document
//! did not (a contract's settlements).
//!
//! It reads `schema` and speaks `search` types; it must not run queries or
//! touch a backend (that is `sync`) nor know about requests (`exec`).

pub mod documents;

use std::collections::HashSet;

use async_graphql_value::Name;

use crate::schema::{named_type, IndexDef, IndexSource, Reduce, Resolver, Supergraph};
use crate::search::{FieldKind, FieldSpec, IndexSpec, TYPE_FIELD};

pub use documents::{DocumentBuilder, Position};

/// What a write did to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

/// A row of a unified type that changed (or may have: a search hit whose
/// entity is gone), by its unified id (`"42"`). The synchronizer rebuilds
/// whatever depends on it from current state, so a change that arrives
/// late, twice or out of order does no harm.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    pub type_name: String,
    pub id: String,
    pub op: ChangeOp,
}

/// Prefix of the fields that hold the ids of the rows of one denormalized
/// type a document was built from.
pub const REFS_PREFIX: &str = "_refs_";

/// The field holding the ids of the `type_name` rows a document was built from.
pub fn refs_field(type_name: &str) -> String {
    format!("{REFS_PREFIX}{type_name}")
}

/// How a document reaches the rows of another type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelationKind {
    /// Many-to-one: the entity's field `key` holds the target's id.
    Ref { key: Name },
    /// One-to-many: every target row whose field `on` holds the entity's key.
    Join { on: Name },
}

/// One relation followed by a document's denormalized fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The entity's field (`manager`, `settlements`).
    pub field: Name,
    /// The type it reaches (`Staff`, `Settlement`).
    pub target: Name,
    pub kind: RelationKind,
}

/// The relations `source`'s denormalized paths start with, in declaration order.
pub fn relations(schema: &Supergraph, source: &IndexSource) -> Vec<Relation> {
    let mut out: Vec<Relation> = Vec::new();
    for f in &source.fields {
        let Some(first) = f.path.as_ref().and_then(|p| p.first()) else {
            continue;
        };
        if out.iter().any(|r| &r.field == first) {
            continue;
        }
        let Some(field) = schema.field(&source.entity, first) else {
            continue;
        };
        let kind = match &field.resolver {
            Resolver::Ref { key } => RelationKind::Ref { key: key.clone() },
            Resolver::Join(join) => RelationKind::Join { on: join.on.clone() },
            _ => continue,
        };
        out.push(Relation {
            field: first.clone(),
            target: named_type(&field.ty).clone(),
            kind,
        });
    }
    out
}

/// The backend spec of an index: every document type's fields, `_type`, and
/// one `_refs_<Type>` field per denormalized type.
pub fn index_spec(def: &IndexDef, schema: &Supergraph) -> IndexSpec {
    let mut fields: Vec<FieldSpec> = Vec::new();
    let mut seen = HashSet::new();
    for source in &def.sources {
        for f in &source.fields {
            if !seen.insert(f.name.to_string()) {
                continue;
            }
            let kind = match (f.reduce, f.type_name.as_str()) {
                (Some(Reduce::Count), _) => FieldKind::I64,
                (Some(Reduce::Sum), "Int") => FieldKind::I64,
                (Some(Reduce::Sum), _) => FieldKind::F64,
                (None, "String") if f.searchable => FieldKind::Text,
                (None, "Int") => FieldKind::I64,
                (None, "Float") => FieldKind::F64,
                (None, "Boolean") => FieldKind::Bool,
                (None, "DateTime") => FieldKind::DateTime,
                // ID, String, enums, Date (ISO dates sort as text), Decimal strings.
                _ => FieldKind::Keyword,
            };
            fields.push(FieldSpec {
                name: f.name.to_string(),
                kind,
                searchable: f.searchable,
                filterable: f.filterable,
                sortable: f.sortable,
                stored: true,
            });
        }
    }
    fields.push(FieldSpec::new(TYPE_FIELD, FieldKind::Keyword).filterable());
    for source in &def.sources {
        for relation in relations(schema, source) {
            let name = refs_field(&relation.target);
            if seen.insert(name.clone()) {
                fields.push(FieldSpec::new(name, FieldKind::Keyword).filterable());
            }
        }
    }
    IndexSpec::new(def.name.clone(), fields)
}

/// The document id of entity `id` of `type_name`: `Contract:00000000000000000042`.
/// Numeric ids are zero-padded so that the id order (the final tiebreaker)
/// is the numeric order every legacy service sorts by.
pub fn document_id(type_name: &str, id: &str) -> String {
    if !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        format!("{type_name}:{id:0>20}")
    } else {
        format!("{type_name}:{id}")
    }
}

/// The entity type and id behind a document id.
pub fn entity_of(doc_id: &str) -> Option<(&str, String)> {
    let (type_name, id) = doc_id.split_once(':')?;
    if id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        let trimmed = id.trim_start_matches('0');
        Some((
            type_name,
            if trimmed.is_empty() {
                "0".into()
            } else {
                trimmed.into()
            },
        ))
    } else {
        Some((type_name, id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_pad_numbers_and_round_trip() {
        assert_eq!(document_id("Post", "42"), "Post:00000000000000000042");
        assert_eq!(
            entity_of("Post:00000000000000000042"),
            Some(("Post", "42".into()))
        );
        assert_eq!(entity_of("Post:00000000000000000000"), Some(("Post", "0".into())));
        assert_eq!(document_id("Member", "abc"), "Member:abc");
        assert_eq!(entity_of("Member:abc"), Some(("Member", "abc".into())));
        assert!(document_id("P", "9") < document_id("P", "10"));
    }

    #[test]
    fn listings_are_printed_once_with_variables() {
        let schema = Supergraph::parse(include_str!("../../schema.graphql")).expect("schema");
        let changes = schema
            .object("Contract")
            .and_then(|o| o.changes.as_deref())
            .expect("changes")
            .clone();
        let listing = documents::Listing::new(&schema, &changes, "id title");
        assert_eq!(
            listing.text,
            "query($size:Int,$at:Int,$since:DateTime){rows:contracts(limit:$size,offset:$at,updatedAfter:$since){id title}}"
        );
        let vars = listing.variables(&Position::Offset(30), Some("2026-01-01T00:00:00Z"));
        assert_eq!(vars["at"], serde_json::json!(30));
        assert_eq!(vars["since"], serde_json::json!("2026-01-01T00:00:00Z"));
        let members = schema
            .object("Member")
            .and_then(|o| o.changes.as_deref())
            .expect("changes")
            .clone();
        let relay = documents::Listing::new(&schema, &members, "id");
        assert!(relay.text.contains("$at:String"), "{}", relay.text);
        assert!(relay.text.contains("edges{node{id}}"), "{}", relay.text);
    }

    #[test]
    fn documents_read_from_answer_bytes_match_documents_built_from_rows() {
        let schema = Supergraph::parse(include_str!("../../schema.graphql")).expect("schema");
        let def = schema.index("contracts").expect("contracts index");
        let builder = DocumentBuilder::new(&schema, def.source("Contract").expect("source"));
        let changes = schema
            .object("Contract")
            .and_then(|o| o.changes.as_deref())
            .expect("changes")
            .clone();
        let row = serde_json::json!({
            "id": "7", "contractNo": "C-7", "title": "Lease \"A\"", "amount": 120,
            "status": "ACTIVE", "extra": {"ignored": [1, 2]},
            "member": {"id": "3", "name": "Kim", "grade": "GOLD"},
            "manager": null,
            "settlements": [{"id": "1", "amount": "10.10"}, {"id": "2", "amount": 5}, {"id": "1", "amount": 1}]
        });
        let rows = serde_json::json!([row, null, {"title": "no id"}, {"id": 8, "amount": null}]);
        let data = serde_json::to_vec(&serde_json::json!({"rows": rows})).expect("bytes");
        let (docs, next) =
            documents::page_documents(&builder, &changes, &Position::Offset(40), &data, 5).expect("read");
        let built: Vec<_> = rows
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|r| r.as_object().cloned())
            .filter_map(|r| builder.build(r, 5))
            .collect();
        assert_eq!(docs, built);
        assert_eq!(docs.len(), 2);
        let first = &docs[0];
        assert_eq!(first["id"], "Contract:00000000000000000007");
        assert_eq!(first["memberName"], "Kim");
        assert_eq!(first["managerName"], serde_json::Value::Null);
        assert_eq!(first["settlementCount"], 3);
        assert_eq!(first["settlementTotal"], 16.1);
        assert_eq!(first["_refs_Settlement"], serde_json::json!(["1", "2"]));
        assert_eq!(
            first["endDate"],
            serde_json::Value::Null,
            "a field the row lacks is null"
        );
        assert!(first.get("extra").is_none());
        // Three row objects of a 10,000-row page: the last page.
        assert_eq!(next, None);

        let members = schema
            .object("Member")
            .and_then(|o| o.changes.as_deref())
            .expect("changes")
            .clone();
        // A Relay listing (members page by cursor), read with the same builder.
        let page = serde_json::json!({"rows": {
            "edges": [{"node": {"id": "9", "title": "t"}}, null, {"node": null}, {"cursor": "x"}],
            "pageInfo": {"hasNextPage": true, "endCursor": "c1"}
        }});
        let data = serde_json::to_vec(&page).expect("bytes");
        let (docs, next) =
            documents::page_documents(&builder, &members, &Position::Cursor(None), &data, 1).expect("read");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["title"], "t");
        assert_eq!(next, Some(Position::Cursor(Some("c1".into()))));
        let last =
            serde_json::json!({"rows": {"edges": [], "pageInfo": {"hasNextPage": false, "endCursor": null}}});
        let data = serde_json::to_vec(&last).expect("bytes");
        let (docs, next) =
            documents::page_documents(&builder, &members, &Position::Cursor(None), &data, 1).expect("read");
        assert!(docs.is_empty() && next.is_none());
        let garbage = documents::page_documents(&builder, &changes, &Position::Offset(0), b"{\"rows\":[", 1);
        assert!(garbage.is_err());
    }

    #[test]
    fn the_contracts_index_records_the_rows_it_denormalizes() {
        let schema = Supergraph::parse(include_str!("../../schema.graphql")).expect("schema");
        let def = schema.index("contracts").expect("contracts index");
        let spec = index_spec(def, &schema);
        for t in ["Member", "Staff", "Settlement"] {
            let f = spec.field(&refs_field(t)).expect("refs field");
            assert!(f.filterable && f.kind == FieldKind::Keyword, "{f:?}");
        }
        let source = def.source("Contract").expect("source");
        let relations = relations(&schema, source);
        assert!(relations.iter().any(|r| r.target == "Settlement"
            && matches!(&r.kind, RelationKind::Join { on } if on == "contractId")));
    }
}
