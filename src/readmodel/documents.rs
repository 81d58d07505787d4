//! Building documents: a supergraph query over the entity (the document
//! type's fields and paths) run through the executor, so the joins are
//! batched like any client query, then flattened into a [`Document`].

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
    /// The fields the document copies from the entity as they are.
    direct: Vec<String>,
    /// `_refs_<Type>` of each relation, in `relations` order.
    refs: Vec<String>,
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
        let direct = source
            .fields
            .iter()
            .filter(|f| f.path.is_none())
            .map(|f| f.name.to_string())
            .collect();
        let refs = relations.iter().map(|r| refs_field(&r.target)).collect();
        Self {
            source: source.clone(),
            relations,
            selection,
            direct,
            refs,
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
    pub fn build(&self, row: Map<String, Value>, version: i64) -> Option<Document> {
        let mut parts = RowParts::default();
        for (key, value) in row {
            if let Some(slot) = self.slot(&key) {
                parts.push(slot, key, value);
            }
        }
        self.assemble(parts, version)
    }

    /// The document from a row's parts; its own fields move into it,
    /// uncopied, under the keys they were read with. The fields are
    /// gathered first and the map built once from them (keys sorted in one
    /// go: inserting one by one cost more than everything else here).
    fn assemble(&self, parts: RowParts, version: i64) -> Option<Document> {
        let RowParts {
            id,
            own,
            seen,
            related,
        } = parts;
        let source = &self.source;
        let id = match id? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let related_value = |field: &str| {
            related
                .iter()
                .find(|(k, _)| k == field)
                .map_or(&Value::Null, |(_, v)| v)
        };
        let mut fields: Vec<(String, Value)> =
            Vec::with_capacity(source.fields.len() + self.relations.len() + 3);
        fields.push((ID_FIELD.into(), Value::String(document_id(&source.entity, &id))));
        fields.push((TYPE_FIELD.into(), Value::String(source.entity.to_string())));
        for f in &source.fields {
            let Some(path) = &f.path else { continue };
            let related = related_value(path[0].as_str());
            let objects = objects(related);
            let leaves: Vec<&Value> = match path.get(1) {
                Some(leaf) => objects
                    .iter()
                    .filter_map(|o| o.get(leaf.as_str()))
                    .filter(|v| !v.is_null())
                    .collect(),
                None => Vec::new(),
            };
            let value = match f.reduce {
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
            };
            fields.push((f.name.to_string(), value));
        }
        // One `_refs_<Type>` per target type, whichever relations reach it.
        let mut refs: Vec<(&str, Vec<Value>)> = Vec::with_capacity(self.refs.len());
        for (relation, field) in self.relations.iter().zip(&self.refs) {
            let at = match refs.iter().position(|(f, _)| f == field) {
                Some(at) => at,
                None => {
                    refs.push((field.as_str(), Vec::new()));
                    refs.len() - 1
                }
            };
            let ids = &mut refs[at].1;
            for o in objects(related_value(relation.field.as_str())) {
                if let Some(id) = o.get("id").and_then(json_id) {
                    let id = Value::String(id);
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        fields.extend(
            refs.into_iter()
                .map(|(f, ids)| (f.to_string(), Value::Array(ids))),
        );
        for (i, name) in self.direct.iter().enumerate() {
            if !seen.get(i).copied().unwrap_or(false) {
                fields.push((name.clone(), Value::Null));
            }
        }
        fields.extend(own);
        fields.push((VERSION_FIELD.into(), Value::from(version)));
        // Equal keys keep the last value, as successive inserts would.
        Some(fields.into_iter().collect())
    }

    /// Where a row's `key` goes (`None`: the document does not read it).
    fn slot(&self, key: &str) -> Option<Slot> {
        if self.relations.iter().any(|r| r.field == key) {
            Some(Slot::Related)
        } else if let Some(i) = self.direct.iter().position(|d| d == key) {
            Some(Slot::Own(i))
        } else if key == "id" {
            Some(Slot::Id)
        } else {
            None
        }
    }
}

/// Where one of a row's values goes.
#[derive(Clone, Copy)]
enum Slot {
    /// The entity's id, not a document field.
    Id,
    /// The document's field `direct[i]`, copied as it is.
    Own(usize),
    /// A relation's answer (`member`, `settlements`).
    Related,
}

/// A row's values, split as the document reads them.
#[derive(Default)]
struct RowParts {
    id: Option<Value>,
    own: Vec<(String, Value)>,
    /// Which `direct` fields the row held.
    seen: Vec<bool>,
    related: Vec<(String, Value)>,
}

impl RowParts {
    fn push(&mut self, slot: Slot, key: String, value: Value) {
        match slot {
            Slot::Id => self.id = Some(value),
            Slot::Own(i) => {
                if key == "id" {
                    self.id = Some(value.clone());
                }
                if self.seen.len() <= i {
                    self.seen.resize(i + 1, false);
                }
                self.seen[i] = true;
                self.own.push((key, value));
            }
            Slot::Related => self.related.push((key, value)),
        }
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

/// The documents of a page answer, read straight from the projected JSON
/// bytes (no response tree, no row maps: each row's fields move into its
/// document as they are parsed), and where the next page starts.
pub fn page_documents(
    builder: &DocumentBuilder,
    changes: &Changes,
    position: &Position,
    data: &[u8],
    version: i64,
) -> Result<(Vec<Document>, Option<Position>), String> {
    let cursor = matches!(changes.paging, Paging::Cursor { .. });
    let rows = RowsSeed {
        builder,
        version,
        cursor,
    };
    let mut de = serde_json::Deserializer::from_slice(data);
    let page = DataSeed(rows).deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    let next = if cursor {
        let info = page.info.unwrap_or_default();
        (info.has_next_page && info.end_cursor.is_some()).then_some(Position::Cursor(info.end_cursor))
    } else {
        let offset = match position {
            Position::Offset(o) => *o,
            Position::Cursor(_) => 0,
        };
        (page.rows >= changes.page_size).then_some(Position::Offset(offset + page.rows))
    };
    Ok((page.docs, next))
}

/// What one page answer held.
#[derive(Default)]
struct PageRead {
    docs: Vec<Document>,
    /// Row objects read (a row without an id makes no document).
    rows: usize,
    info: Option<PageInfo>,
}

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    #[serde(default)]
    has_next_page: bool,
    #[serde(default)]
    end_cursor: Option<String>,
}

/// `{"rows": …}`.
struct DataSeed<'b>(RowsSeed<'b>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = PageRead;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<PageRead, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = PageRead;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a data object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PageRead, A::Error> {
        let mut page = PageRead::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "rows" {
                page = map.next_value_seed(self.0)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(page)
    }
}

/// The listing's answer: a list of rows (offset paging) or a connection
/// (`edges { node }`, `pageInfo`); anything else holds no rows.
#[derive(Clone, Copy)]
struct RowsSeed<'b> {
    builder: &'b DocumentBuilder,
    version: i64,
    cursor: bool,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = PageRead;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<PageRead, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = PageRead;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of rows or a connection")
    }

    fn visit_unit<E>(self) -> Result<PageRead, E> {
        Ok(PageRead::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PageRead, A::Error> {
        let mut page = PageRead::default();
        if self.cursor {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(page);
        }
        while let Some(row) = seq.next_element_seed(RowSeed(self))? {
            page.add(row);
        }
        Ok(page)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PageRead, A::Error> {
        let mut page = PageRead::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "edges" if self.cursor => {
                    map.next_value_seed(EdgesSeed(self, &mut page))?;
                }
                "pageInfo" if self.cursor => page.info = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(page)
    }
}

impl PageRead {
    /// A row read: `None` when it was not an object.
    fn add(&mut self, row: Option<Option<Document>>) {
        if let Some(doc) = row {
            self.rows += 1;
            self.docs.extend(doc);
        }
    }
}

/// `edges: [{node: row}]` of a connection.
struct EdgesSeed<'b, 'p>(RowsSeed<'b>, &'p mut PageRead);

impl<'de> DeserializeSeed<'de> for EdgesSeed<'_, '_> {
    type Value = IgnoredAny;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<IgnoredAny, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EdgesSeed<'_, '_> {
    type Value = IgnoredAny;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of edges")
    }

    fn visit_unit<E>(self) -> Result<IgnoredAny, E> {
        Ok(IgnoredAny)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IgnoredAny, A::Error> {
        let EdgesSeed(rows, page) = self;
        while let Some(row) = seq.next_element_seed(EdgeSeed(rows))? {
            page.add(row.flatten());
        }
        Ok(IgnoredAny)
    }
}

/// `{node: row}`: the row, `None` for a null edge.
struct EdgeSeed<'b>(RowsSeed<'b>);

impl<'de> DeserializeSeed<'de> for EdgeSeed<'_> {
    type Value = Option<Option<Option<Document>>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EdgeSeed<'_> {
    type Value = Option<Option<Option<Document>>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an edge")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut row = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "node" {
                row = Some(map.next_value_seed(RowSeed(self.0))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(row)
    }
}

/// One row: `Some(document)` for an object (`Some(None)` when it makes no
/// document), `None` for anything else.
struct RowSeed<'b>(RowsSeed<'b>);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Option<Option<Document>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Option<Option<Document>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let builder = self.0.builder;
        let mut parts = RowParts::default();
        while let Some(key) = map.next_key::<String>()? {
            match builder.slot(&key) {
                Some(slot) => parts.push(slot, key, map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(builder.assemble(parts, self.0.version)))
    }
}
