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
//! | `DateTime` | `<name>`: date (the RFC 3339 string, or epoch milliseconds) if filterable or sortable |
//! | any other field | kept in `_source`, not indexed (`dynamic: false`) |
//!
//! The document is its own `_source`, once: names starting with `_`
//! (OpenSearch reserves them) are stored as `tessera_…`, and `-0.0` as
//! `0.0` (Lucene would tell the two zeros apart; the spec reading folds
//! them). Fields declared `stored: false` are indexed and left out of
//! `_source`. Both backends index the values the spec reading checks
//! (`spec::document_values`), and the same words for full text.

use serde_json::{json, Map, Value};

use crate::search::query::{words as query_words, Document};
use crate::search::spec::{
    document_values, FieldKind, FieldSpec, IndexSpec, Scalar, ID_FIELD, MAX_EXACT_CHARS, VERSION_FIELD,
};
use crate::search::SearchError;

/// Bumped when the layout above changes; an index of another format must
/// be rebuilt.
pub(super) const FORMAT: u64 = 2;

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

/// Suffix of the field holding a `Text` field's words.
const WORDS: &str = "__words";
/// Prefix standing in for `_` at the start of a name.
const RESERVED: &str = "tessera_";

/// The field holding a `Text` field's words.
pub(super) fn words_field(spec: &FieldSpec) -> String {
    format!("{}{WORDS}", os_name(&spec.name))
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
        for f in self.spec.all_fields().filter(|f| indexed(f)) {
            let name = os_name(&f.name);
            let exact = f.filterable || f.sortable || f.name == ID_FIELD;
            let ty = match f.kind {
                FieldKind::Text | FieldKind::Keyword if f.name == ID_FIELD => json!({"type": "keyword"}),
                FieldKind::Text | FieldKind::Keyword => {
                    json!({"type": "keyword", "ignore_above": MAX_EXACT_CHARS})
                }
                FieldKind::I64 => json!({"type": "long"}),
                FieldKind::F64 => json!({"type": "double"}),
                FieldKind::DateTime => {
                    json!({"type": "date", "format": "strict_date_optional_time||epoch_millis"})
                }
                FieldKind::Bool => json!({"type": "boolean"}),
            };
            if exact || f.kind == FieldKind::Keyword {
                properties.insert(name, ty);
            }
            if f.kind == FieldKind::Text && f.searchable {
                properties.insert(words_field(f), json!({"type": "keyword"}));
            }
        }
        // Fields only indexed stay out of `_source`. (An exclude makes
        // OpenSearch rewrite every source it stores: the words stay in, and
        // `document` drops them.)
        let excludes: Vec<Value> = self
            .spec
            .fields
            .iter()
            .filter(|f| !f.stored)
            .map(|f| Value::String(os_name(&f.name)))
            .collect();
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

    /// Checks `doc` against the spec and builds its `_source`: `(id,
    /// version, source)`.
    pub(super) fn source(&self, index: &str, doc: Document) -> Result<(String, i64, Value), SearchError> {
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
        if let Some(key) = doc.keys().find(|k| k.starts_with(RESERVED) || k.ends_with(WORDS)) {
            return Err(invalid(
                &id,
                format!(
                    "field `{key}`: names starting with `{RESERVED}` or ending with `{WORDS}` are reserved"
                ),
            ));
        }
        let mut words = Vec::new();
        for f in self.spec.all_fields() {
            let values = document_values(f, doc.get(&f.name)).map_err(|r| invalid(&id, r))?;
            if f.kind == FieldKind::Text && f.searchable {
                let all: Vec<Value> = values
                    .iter()
                    .filter_map(|v| match v {
                        Scalar::Str(s) => Some(s),
                        _ => None,
                    })
                    .flat_map(|s| query_words(s))
                    .map(Value::String)
                    .collect();
                words.push((words_field(f), Value::Array(all)));
            }
        }
        let mut source = Map::with_capacity(doc.len() + words.len());
        for (key, value) in doc {
            let value = match value {
                // The spec reading folds -0.0 into 0.0; Lucene would not.
                Value::Number(n) if n.is_f64() && n.as_f64() == Some(0.0) => Value::from(0.0),
                other => other,
            };
            source.insert(os_name(&key), value);
        }
        source.extend(words);
        Ok((id, version, Value::Object(source)))
    }
}

/// The stored document of a hit or a get.
pub(super) fn document(source: Option<&Value>) -> Option<Document> {
    let Value::Object(source) = source? else {
        return None;
    };
    Some(
        source
            .iter()
            .filter(|(k, _)| !k.ends_with(WORDS))
            .map(|(k, v)| match k.strip_prefix(RESERVED) {
                Some(rest) => (format!("_{rest}"), v.clone()),
                None => (k.clone(), v.clone()),
            })
            .collect(),
    )
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
    fn documents_are_their_own_source() {
        let m = Mapping::new(spec());
        let doc = json!({"id": "C:1", "_version": 5, "title": "Hello, World 42", "tags": ["a", null, "b"],
                         "at": "2024-01-02T03:04:05.678Z", "_type": "Contract", "body": "secret", "extra": 1,
                         "price": -0.0});
        let doc = doc.as_object().cloned().unwrap_or_default();
        let (id, version, source) = m.source("c", doc.clone()).expect("valid");
        assert_eq!((id.as_str(), version), ("C:1", 5));
        assert_eq!(source["title"], json!("Hello, World 42"));
        assert_eq!(source["title__words"], json!(["hello", "world", "42"]));
        assert_eq!(source["tessera_type"], json!("Contract"));
        assert_eq!(source["tessera_version"], json!(5));
        assert_eq!(source["price"].to_string(), "0.0", "-0.0 is folded");
        let back = document(Some(&source)).expect("doc");
        let mut want = doc;
        want.insert("price".into(), json!(0.0));
        assert_eq!(back, want, "the document comes back as written");
        let body = m.create_body(1, 0);
        assert_eq!(body["mappings"]["properties"]["at"]["type"], "date");
        assert_eq!(body["mappings"]["_source"]["excludes"], json!(["body"]));
        assert_eq!(read_meta(&body["mappings"]).map(|(_, s)| s), Some(spec()));
        let reserved = json!({"id": "C:9", "_version": 1, "tessera_x": 1});
        assert!(m
            .source("c", reserved.as_object().cloned().unwrap_or_default())
            .is_err());
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
