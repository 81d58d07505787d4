//! Building documents: a supergraph query over the entity (the document
//! type's fields and paths) run through the executor, so the joins are
//! batched like any client query, then flattened into a [`Document`].

use serde_json::{Map, Value};

use super::{document_id, refs_field, relations, Relation};
use crate::schema::{Changes, IndexSource, Paging, Reduce, Supergraph};
use crate::search::{Document, ID_FIELD, TYPE_FIELD, VERSION_FIELD};

/// Builds the documents of one entity type of an index. Made once per
/// source: the selection is printed here, not per query.
#[derive(Debug, Clone)]
pub struct DocumentBuilder {
    source: IndexSource,
    relations: Vec<Relation>,
    /// What the document needs from one entity, as a selection set body:
    /// its fields, and `relation { id leaves… }` per relation.
    selection: String,
}

impl DocumentBuilder {
    pub fn new(schema: &Supergraph, source: &IndexSource) -> Self {
        let relations = relations(schema, source);
        let mut direct: Vec<&str> = vec!["id"];
        // relation → leaves read through it
        let mut through: indexmap::IndexMap<&str, Vec<&str>> = indexmap::IndexMap::new();
        for f in &source.fields {
            match &f.path {
                None => {
                    if !direct.contains(&f.name.as_str()) {
                        direct.push(f.name.as_str());
                    }
                }
                Some(path) => {
                    let leaves = through.entry(path[0].as_str()).or_insert_with(|| vec!["id"]);
                    if let Some(leaf) = path.get(1) {
                        if !leaves.contains(&leaf.as_str()) {
                            leaves.push(leaf.as_str());
                        }
                    }
                }
            }
        }
        let mut selection = direct.join(" ");
        for (relation, leaves) in through {
            selection.push_str(&format!(" {relation}{{{}}}", leaves.join(" ")));
        }
        Self {
            source: source.clone(),
            relations,
            selection,
        }
    }

    pub fn entity(&self) -> &str {
        &self.source.entity
    }

    pub fn source(&self) -> &IndexSource {
        &self.source
    }

    /// The relations the document denormalizes through.
    pub fn relations(&self) -> &[Relation] {
        &self.relations
    }

    pub fn selection(&self) -> &str {
        &self.selection
    }

    /// The document for one entity row (as the selection returns it), at
    /// `version`: the time its rows were read. Rebuilds always read current
    /// state, so the latest read is the newest document, whichever row
    /// changed, was added or was deleted; the backend skips an older one.
    pub fn build(&self, row: &Map<String, Value>, version: i64) -> Option<Document> {
        let source = &self.source;
        let id = match row.get("id")? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let mut doc = Document::new();
        doc.insert(ID_FIELD.into(), Value::String(document_id(&source.entity, &id)));
        doc.insert(TYPE_FIELD.into(), Value::String(source.entity.to_string()));
        for f in &source.fields {
            let value = match &f.path {
                None => row.get(f.name.as_str()).cloned().unwrap_or(Value::Null),
                Some(path) => {
                    let related = row.get(path[0].as_str()).unwrap_or(&Value::Null);
                    let objects = objects(related);
                    let leaves: Vec<&Value> = match path.get(1) {
                        Some(leaf) => objects
                            .iter()
                            .filter_map(|o| o.get(leaf.as_str()))
                            .filter(|v| !v.is_null())
                            .collect(),
                        None => Vec::new(),
                    };
                    match f.reduce {
                        Some(Reduce::Count) => Value::from(if path.len() == 1 {
                            objects.len()
                        } else {
                            leaves.len()
                        }),
                        Some(Reduce::Sum) => {
                            let sum: f64 = leaves.iter().filter_map(|v| number(v)).sum();
                            if f.type_name == "Int" {
                                Value::from(sum.round() as i64)
                            } else {
                                // Cents are exact in f64 up to 2^53; round away binary noise.
                                Value::from((sum * 100.0).round() / 100.0)
                            }
                        }
                        None => match (related, leaves.as_slice()) {
                            (Value::Array(_), _) => Value::Array(leaves.into_iter().cloned().collect()),
                            (_, [one]) => (*one).clone(),
                            _ => Value::Null,
                        },
                    }
                }
            };
            doc.insert(f.name.to_string(), value);
        }
        for relation in &self.relations {
            let field = refs_field(&relation.target);
            let mut ids: Vec<Value> = match doc.remove(&field) {
                Some(Value::Array(ids)) => ids,
                _ => Vec::new(),
            };
            for o in objects(row.get(relation.field.as_str()).unwrap_or(&Value::Null)) {
                if let Some(id) = o.get("id").and_then(json_id) {
                    let id = Value::String(id);
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            doc.insert(field, Value::Array(ids));
        }
        doc.insert(VERSION_FIELD.into(), Value::from(version));
        Some(doc)
    }
}

fn objects(related: &Value) -> Vec<&Map<String, Value>> {
    match related {
        Value::Object(o) => vec![o],
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    }
}

/// An id as the gateway writes it (`"42"`), from a string or a number.
pub fn json_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Where a listing continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Offset(usize),
    Cursor(Option<String>),
}

impl Position {
    pub fn start(changes: &Changes) -> Self {
        match changes.paging {
            Paging::Offset { .. } => Position::Offset(0),
            Paging::Cursor { .. } => Position::Cursor(None),
        }
    }
}

/// The listing of one type's rows (all, or updated after a watermark), its
/// text printed once with variables (`$size`, `$at`, `$since`), for the
/// executor to plan once.
#[derive(Debug, Clone)]
pub struct Listing {
    pub changes: Changes,
    pub text: String,
}

impl Listing {
    /// The listing of `changes.field` reading `selection` from each row;
    /// variable types are the field's own argument types (made nullable).
    pub fn new(schema: &Supergraph, changes: &Changes, selection: &str) -> Self {
        let field = schema.field(schema.query_type(), &changes.field);
        let ty = |arg: &str, fallback: &str| {
            field
                .and_then(|f| f.args.get(arg))
                .map(|a| {
                    let mut t = a.ty.clone();
                    t.nullable = true;
                    t.to_string()
                })
                .unwrap_or_else(|| fallback.to_string())
        };
        let (size_arg, at_arg, at_ty, body) = match &changes.paging {
            Paging::Offset {
                limit_arg,
                offset_arg,
            } => (
                limit_arg,
                offset_arg,
                ty(offset_arg, "Int"),
                format!("{{{selection}}}"),
            ),
            Paging::Cursor { first_arg, after_arg } => (
                first_arg,
                after_arg,
                ty(after_arg, "String"),
                format!("{{edges{{node{{{selection}}}}} pageInfo{{hasNextPage endCursor}}}}"),
            ),
        };
        let text = format!(
            "query($size:{},$at:{at_ty},$since:{}){{rows:{}({size_arg}:$size,{at_arg}:$at,{}:$since){body}}}",
            ty(size_arg, "Int"),
            ty(&changes.since_arg, "String"),
            changes.field,
            changes.since_arg,
        );
        Self {
            changes: changes.clone(),
            text,
        }
    }

    /// The variables of the page at `position` (rows updated after `since`, when set).
    pub fn variables(&self, position: &Position, since: Option<&str>) -> Map<String, Value> {
        let mut vars = Map::new();
        vars.insert("size".into(), Value::from(self.changes.page_size));
        vars.insert(
            "at".into(),
            match position {
                Position::Offset(o) => Value::from(*o),
                Position::Cursor(Some(after)) => Value::String(after.clone()),
                Position::Cursor(None) => Value::Null,
            },
        );
        if let Some(since) = since {
            vars.insert("since".into(), Value::String(since.into()));
        }
        vars
    }
}

/// The query reading `n` rows of a type by id through root field `get`
/// (`r0:contract(id:$i0){…} r1:…`), ids as variables `$i0…`.
pub fn by_id_query(get: &str, id_type: &str, n: usize, selection: &str) -> String {
    let mut vars = Vec::with_capacity(n);
    let mut fields = String::new();
    for i in 0..n {
        vars.push(format!("$i{i}:{id_type}"));
        fields.push_str(&format!(" r{i}:{get}(id:$i{i}){{{selection}}}"));
    }
    format!("query({}){{{fields}}}", vars.join(","))
}

/// The rows of a page answer and where the next page starts (`None`: last page).
pub fn page_rows(
    changes: &Changes,
    position: &Position,
    mut data: Map<String, Value>,
) -> (Vec<Map<String, Value>>, Option<Position>) {
    let rows = data.remove("rows").unwrap_or(Value::Null);
    let objects = |items: Value| -> Vec<Map<String, Value>> {
        match items {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(o) => Some(o),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    match (&changes.paging, position) {
        (Paging::Cursor { .. }, _) => {
            let Value::Object(mut connection) = rows else {
                return (Vec::new(), None);
            };
            let info = connection.remove("pageInfo").unwrap_or(Value::Null);
            let items = match connection.remove("edges") {
                Some(Value::Array(edges)) => edges
                    .into_iter()
                    .filter_map(|e| match e {
                        Value::Object(mut e) => match e.remove("node") {
                            Some(Value::Object(node)) => Some(node),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let more = info.get("hasNextPage").and_then(Value::as_bool).unwrap_or(false);
            let end = info.get("endCursor").and_then(Value::as_str).map(str::to_string);
            let next = (more && end.is_some()).then_some(Position::Cursor(end));
            (items, next)
        }
        (Paging::Offset { .. }, position) => {
            let items = objects(rows);
            let offset = match position {
                Position::Offset(o) => *o,
                Position::Cursor(_) => 0,
            };
            let next = (items.len() >= changes.page_size).then(|| Position::Offset(offset + items.len()));
            (items, next)
        }
    }
}
