//! How an [`IndexSpec`] lies in an OpenSearch index, and how a document
//! goes in and comes back out.
//!
//! | spec field | OpenSearch fields |
//! |---|---|
//! | `id` | `id`: keyword (also the `_id`) |
//! | `_version` | `tessera_version`: long (the write version is `_version`, see `opensearch.rs`) |
//! | `Keyword` (searchable, filterable or sortable) | `<name>`: keyword |
//! | `Text` | `<name>`: keyword (the whole string) if filterable or sortable; `<name>__words`: keyword, the words of [`words`](crate::search::query::words) if searchable |
//! | `I64` / `F64` / `Bool` | `<name>`: long / double / boolean if filterable or sortable |
//! | `DateTime` | `<name>`: date from epoch milliseconds if filterable or sortable |
//! | whole document | `doc`: an object OpenSearch stores but does not index (`enabled: false`) |
//!
//! Indexed values are the ones the spec reading produces
//! (`spec::document_values`), so both backends index the same terms;
//! they are left out of `_source`, which keeps only `doc`. Names starting
//! with `_` (reserved for OpenSearch's metadata) are stored as `tessera_…`.

use serde_json::{json, Map, Value};

use crate::search::query::{words, Document};
use crate::search::spec::{
    document_values, FieldKind, FieldSpec, IndexSpec, Scalar, ID_FIELD, VERSION_FIELD,
};
use crate::search::SearchError;

/// Bumped when the layout above changes; an index of another format must
/// be rebuilt.
pub(super) const FORMAT: u64 = 1;

/// The OpenSearch name of a spec field.
pub(super) fn os_name(name: &str) -> String {
    match name.strip_prefix('_') {
        Some(rest) => format!("tessera_{rest}"),
        None => name.to_owned(),
    }
}

/// The field holding a spec field's whole value (terms, ranges, sort).
pub(super) fn exact_field(spec: &FieldSpec) -> String {
    os_name(&spec.name)
}

/// The field holding a `Text` field's words.
pub(super) fn words_field(spec: &FieldSpec) -> String {
    format!("{}__words", os_name(&spec.name))
}

fn indexed(spec: &FieldSpec) -> bool {
    spec.filterable || spec.sortable || spec.searchable
}

pub(super) struct Mapping {
    pub(super) spec: IndexSpec,
}

impl Mapping {
    pub(super) fn new(spec: IndexSpec) -> Self {
        Self { spec }
    }

    pub(super) fn spec(&self, field: &str) -> Result<&FieldSpec, SearchError> {
        // Validation ran first, so a miss here is a bug, not a client error.
        self.spec.field(field).ok_or_else(|| SearchError::InvalidQuery {
            reason: format!("field `{field}` has no index mapping"),
        })
    }

    /// The body that creates the index: settings and mappings, the spec in `_meta`.
    pub(super) fn create_body(&self, shards: u32, replicas: u32) -> Value {
        let mut properties = Map::new();
        let mut excludes = Vec::new();
        for f in self.spec.all_fields().filter(|f| indexed(f)) {
            let name = os_name(&f.name);
            let exact = f.filterable || f.sortable || f.name == ID_FIELD;
            let ty = match f.kind {
                FieldKind::Text | FieldKind::Keyword => json!({"type": "keyword"}),
                FieldKind::I64 => json!({"type": "long"}),
                FieldKind::F64 => json!({"type": "double"}),
                FieldKind::DateTime => json!({"type": "date", "format": "epoch_millis"}),
                FieldKind::Bool => json!({"type": "boolean"}),
            };
            if exact || f.kind == FieldKind::Keyword {
                properties.insert(name.clone(), ty);
                excludes.push(Value::String(name.clone()));
            }
            if f.kind == FieldKind::Text && f.searchable {
                let words = words_field(f);
                properties.insert(words.clone(), json!({"type": "keyword"}));
                excludes.push(Value::String(words));
            }
        }
        properties.insert("doc".into(), json!({"type": "object", "enabled": false}));
        json!({
            "settings": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
            },
            "mappings": {
                "dynamic": false,
                "_meta": {"tessera": {"format": FORMAT, "spec": &self.spec}},
                "_source": {"excludes": excludes},
                "properties": properties,
            }
        })
    }

    /// Checks `doc` against the spec and builds its `_source` (indexed
    /// values and the stored `doc`): `(id, version, source)`.
    pub(super) fn source(&self, index: &str, mut doc: Document) -> Result<(String, i64, Value), SearchError> {
        let invalid = |id: &str, reason: String| SearchError::InvalidDocument {
            index: index.to_owned(),
            id: id.to_owned(),
            reason,
        };
        let id = match doc.get(ID_FIELD) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            other => {
                let shown = other.map_or_else(|| "<missing>".to_owned(), Value::to_string);
                return Err(invalid(&shown, "`id` must be a non-empty string".into()));
            }
        };
        let version = doc
            .get(VERSION_FIELD)
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid(&id, "`_version` must be an integer".into()))?;
        if version < 0 {
            return Err(invalid(&id, "`_version` must not be negative".into()));
        }
        let mut source = Map::new();
        for f in self.spec.all_fields() {
            let values = document_values(f, doc.get(&f.name)).map_err(|r| invalid(&id, r))?;
            if !indexed(f) || values.is_empty() {
                continue;
            }
            if f.kind == FieldKind::Text && f.searchable {
                let all: Vec<Value> = values
                    .iter()
                    .filter_map(|v| match v {
                        Scalar::Str(s) => Some(s),
                        _ => None,
                    })
                    .flat_map(|s| words(s))
                    .map(Value::String)
                    .collect();
                source.insert(words_field(f), Value::Array(all));
            }
            if f.filterable || f.sortable || f.kind == FieldKind::Keyword || f.name == ID_FIELD {
                let mut values: Vec<Value> = values.into_iter().map(scalar).collect();
                let value = if values.len() == 1 {
                    values.swap_remove(0)
                } else {
                    Value::Array(values)
                };
                source.insert(os_name(&f.name), value);
            }
        }
        for f in self.spec.fields.iter().filter(|f| !f.stored) {
            doc.remove(&f.name);
        }
        source.insert("doc".into(), Value::Object(doc));
        Ok((id, version, Value::Object(source)))
    }
}

fn scalar(value: Scalar) -> Value {
    match value {
        Scalar::Str(s) => Value::String(s),
        Scalar::I64(i) => Value::from(i),
        Scalar::F64(f) => Value::from(f + 0.0),
        Scalar::Bool(b) => Value::Bool(b),
    }
}

/// The stored document of a hit or a get.
pub(super) fn document(source: Option<&Value>) -> Option<Document> {
    match source?.get("doc")? {
        Value::Object(doc) => Some(doc.clone()),
        _ => None,
    }
}

/// The spec and format an index was created with, from its mapping's `_meta`.
pub(super) fn read_meta(mapping: &Value) -> Option<(u64, IndexSpec)> {
    let meta = mapping.get("_meta")?.get("tessera")?;
    let format = meta.get("format")?.as_u64()?;
    let spec = serde_json::from_value(meta.get("spec")?.clone()).ok()?;
    Some((format, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> IndexSpec {
        IndexSpec::new(
            "c",
            vec![
                FieldSpec::new("title", FieldKind::Text).searchable().sortable(),
                FieldSpec::new("tags", FieldKind::Keyword).filterable(),
                FieldSpec::new("at", FieldKind::DateTime).sortable(),
                FieldSpec::new("_type", FieldKind::Keyword).filterable(),
                FieldSpec::new("body", FieldKind::Text).not_stored(),
            ],
        )
    }

    #[test]
    fn documents_become_indexed_values_and_a_stored_copy() {
        let m = Mapping::new(spec());
        let doc = json!({"id": "C:1", "_version": 5, "title": "Hello, World 42", "tags": ["a", null, "b"],
                         "at": "2024-01-02T03:04:05.678Z", "_type": "Contract", "body": "secret", "extra": 1});
        let (id, version, source) = m
            .source("c", doc.as_object().cloned().unwrap_or_default())
            .expect("valid");
        assert_eq!((id.as_str(), version), ("C:1", 5));
        assert_eq!(source["title"], json!("Hello, World 42"));
        assert_eq!(source["title__words"], json!(["hello", "world", "42"]));
        assert_eq!(source["tags"], json!(["a", "b"]));
        assert_eq!(source["at"], json!(1_704_164_645_678_i64));
        assert_eq!(source["tessera_type"], json!("Contract"));
        assert_eq!(source["tessera_version"], json!(5));
        assert!(source.get("body").is_none());
        let stored = document(Some(&source)).expect("doc");
        assert_eq!(stored.get("extra"), Some(&json!(1)));
        assert!(stored.get("body").is_none(), "unstored fields are dropped");
        let body = m.create_body(1, 0);
        assert_eq!(body["mappings"]["properties"]["at"]["type"], "date");
        assert_eq!(read_meta(&body["mappings"]).map(|(_, s)| s), Some(spec()));
    }

    #[test]
    fn bad_documents_are_refused_with_their_id() {
        let m = Mapping::new(spec());
        let bad = json!({"id": "C:2", "_version": 1, "at": "yesterday"});
        let err = m
            .source("c", bad.as_object().cloned().unwrap_or_default())
            .expect_err("bad date");
        assert!(
            matches!(&err, SearchError::InvalidDocument { id, .. } if id == "C:2"),
            "{err}"
        );
        let negative = json!({"id": "C:3", "_version": -1});
        assert!(m
            .source("c", negative.as_object().cloned().unwrap_or_default())
            .is_err());
    }
}
