//! How an [`IndexSpec`] lies in a tantivy schema (see the table in the
//! parent module) and how a JSON document becomes a tantivy document.
//!
//! It owns field naming and document checking; it must not touch writers
//! or readers.

use std::collections::HashMap;

use ::tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED,
    STRING, TEXT,
};
use ::tantivy::TantivyDocument;
use serde_json::Value;

use super::{ID_COLUMN, SOURCE_COLUMN, VERSION_COLUMN};
use crate::search::query::Document;
use crate::search::spec::{
    each_document_value, exact_indexed, FieldKind, FieldSpec, IndexSpec, ScalarRef, ID_FIELD, VERSION_FIELD,
};
use crate::search::SearchError;

/// Where one spec field lives in the tantivy schema.
pub(super) struct FieldLayout {
    pub(super) spec: FieldSpec,
    /// The untokenized field: terms, ranges, prefixes, exists, sort.
    pub(super) exact: Option<(Field, String)>,
    /// Whether `exact` has an inverted index (terms) besides its column:
    /// term filters on a column-only field read the column instead.
    pub(super) exact_indexed: bool,
    /// The analyzed field for full-text.
    pub(super) text: Option<Field>,
}

pub(super) struct Layout {
    pub(super) id: Field,
    pub(super) source: Field,
    pub(super) fields: HashMap<String, FieldLayout>,
}

/// Which fields get an inverted index besides their column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Terms {
    /// Only where a term lookup pays: keywords that are filtered on or
    /// searched, bools, the id. Numbers and dates are columns only (their
    /// ranges read the column anyway, and their mostly unique values made
    /// a term per document to hash, sort and write), as are strings that
    /// are only sorted on.
    Needed,
    /// Every exact field, as indexes were laid out before (still opened
    /// and served as they are; a reindex moves them to `Needed`).
    Every,
}

impl Layout {
    pub(super) fn build(spec: &IndexSpec, terms: Terms) -> (Schema, Layout) {
        let every = terms == Terms::Every;
        // Nothing is scored and nothing is a phrase: documents only, no
        // frequencies, positions or norms (the earlier layout kept them).
        let unscored = |tokenizer: &str| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(tokenizer)
                    .set_index_option(IndexRecordOption::Basic)
                    .set_fieldnorms(false),
            )
        };
        let (keyword, text): (TextOptions, TextOptions) = match every {
            true => (STRING, TEXT),
            false => (unscored("raw"), unscored("default")),
        };
        let mut b = Schema::builder();
        let id = b.add_text_field(ID_COLUMN, keyword.clone() | FAST);
        let version = if every {
            b.add_i64_field(VERSION_COLUMN, INDEXED | FAST)
        } else {
            b.add_i64_field(VERSION_COLUMN, FAST)
        };
        let source = b.add_bytes_field(SOURCE_COLUMN, STORED);
        let mut fields = HashMap::new();
        for (implicit, field) in [(ID_FIELD, id), (VERSION_FIELD, version)] {
            if let Some(field_spec) = spec.field(implicit) {
                let column = if implicit == ID_FIELD {
                    ID_COLUMN
                } else {
                    VERSION_COLUMN
                };
                fields.insert(
                    implicit.to_owned(),
                    FieldLayout {
                        spec: field_spec.clone(),
                        exact: Some((field, column.to_owned())),
                        exact_indexed: implicit == ID_FIELD || every,
                        text: None,
                    },
                );
            }
        }
        for (i, f) in spec.fields.iter().enumerate() {
            let name = format!("f{i}");
            let exact_needed = f.filterable || f.sortable;
            // Strings looked up by term: filtered on, or a searchable keyword.
            let string_terms = every || f.filterable || (f.kind == FieldKind::Keyword && f.searchable);
            let string: TextOptions = if string_terms {
                keyword.clone() | FAST
            } else {
                FAST.into()
            };
            let number: NumericOptions = if every {
                (INDEXED | FAST).into()
            } else {
                FAST.into()
            };
            let (exact, exact_indexed) = match f.kind {
                FieldKind::Keyword if exact_needed || f.searchable => {
                    (Some(b.add_text_field(&name, string)), string_terms)
                }
                FieldKind::Text if exact_needed => (Some(b.add_text_field(&name, string)), string_terms),
                FieldKind::I64 | FieldKind::DateTime if exact_needed => {
                    (Some(b.add_i64_field(&name, number)), every)
                }
                FieldKind::F64 if exact_needed => (Some(b.add_f64_field(&name, number)), every),
                FieldKind::Bool if exact_needed => (Some(b.add_bool_field(&name, INDEXED | FAST)), true),
                _ => (None, false),
            };
            let text = (f.kind == FieldKind::Text && f.searchable)
                .then(|| b.add_text_field(&format!("{name}_text"), text.clone()));
            fields.insert(
                f.name.clone(),
                FieldLayout {
                    spec: f.clone(),
                    exact: exact.map(|field| (field, name)),
                    exact_indexed,
                    text,
                },
            );
        }
        (b.build(), Layout { id, source, fields })
    }

    pub(super) fn field(&self, name: &str) -> Result<&FieldLayout, SearchError> {
        // Validation ran first, so a miss here is a bug, not a client error.
        self.fields.get(name).ok_or_else(|| SearchError::InvalidQuery {
            reason: format!("field `{name}` has no index mapping"),
        })
    }

    pub(super) fn exact(&self, name: &str) -> Result<(Field, &str), SearchError> {
        self.field(name)?
            .exact
            .as_ref()
            .map(|(f, column)| (*f, column.as_str()))
            .ok_or_else(|| SearchError::InvalidQuery {
                reason: format!("field `{name}` is not indexed for exact matching"),
            })
    }

    /// Checks `doc` against the spec and builds what tantivy indexes.
    pub(super) fn document(
        &self,
        spec: &IndexSpec,
        index: &str,
        doc: Document,
    ) -> Result<Prepared, SearchError> {
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
        let mut out = TantivyDocument::new();
        // `id` and `_version` are in `fields` and go through the loop.
        for layout in self.fields.values() {
            let value = doc.get(&layout.spec.name);
            each_document_value(&layout.spec, value, |value| {
                if let Some((field, _)) = layout.exact {
                    match value {
                        ScalarRef::Str(s) if !exact_indexed(&layout.spec, s) => {}
                        ScalarRef::Str(s) => out.add_text(field, s),
                        ScalarRef::I64(i) => out.add_i64(field, i),
                        ScalarRef::F64(f) => out.add_f64(field, f),
                        ScalarRef::Bool(v) => out.add_bool(field, v),
                    }
                }
                if let (Some(field), ScalarRef::Str(s)) = (layout.text, value) {
                    out.add_text(field, s);
                }
            })
            .map_err(|r| invalid(&id, r))?;
        }
        let mut source = doc;
        for f in spec.fields.iter().filter(|f| !f.stored) {
            source.remove(&f.name);
        }
        let bytes = serde_json::to_vec(&source).map_err(|e| invalid(&id, e.to_string()))?;
        out.add_bytes(self.source, &bytes);
        Ok(Prepared::Upsert {
            id,
            version,
            doc: out,
        })
    }
}

pub(super) enum Prepared {
    Upsert {
        id: String,
        version: i64,
        doc: TantivyDocument,
    },
    Delete {
        id: String,
        version: i64,
    },
}
