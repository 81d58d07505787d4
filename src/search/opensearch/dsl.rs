//! Filters, sort keys and positions as OpenSearch query DSL, chosen to agree
//! exactly with the embedded backend: whole strings by bytes (keyword
//! fields), floats with -0.0 folded into 0.0, missing values last in both
//! directions, full text as the same words (see [`words`]) every one of
//! which must occur in one of the fields.
//!
//! It must not validate: queries arrive checked by `SearchQuery::validate`.

use serde_json::{json, Value};

use super::mapping::{exact_field, words_field, Mapping};
use crate::search::query::{coerce, range_bound, words, FieldValue, Filter, SortKey};
use crate::search::spec::{FieldKind, Scalar};
use crate::search::{SearchError, ID_FIELD};

/// The `bool.filter` clauses of `filters` (all must hold).
pub(super) fn filters(mapping: &Mapping, filters: &[Filter]) -> Result<Value, SearchError> {
    let clauses = filters
        .iter()
        .map(|f| filter(mapping, f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({"bool": {"filter": clauses}}))
}

fn scalar(value: Scalar) -> Value {
    match value {
        Scalar::Str(s) => Value::String(s),
        Scalar::I64(i) => Value::from(i),
        Scalar::F64(f) => Value::from(f + 0.0),
        Scalar::Bool(b) => Value::Bool(b),
    }
}

/// A value to compare whole with a field's: a date as its ISO instant, which
/// the mapping's `strict_date_optional_time` reads; as `epoch_millis`, an
/// instant before 1970 (negative) is misread and matches nothing.
fn exact(kind: FieldKind, value: Scalar) -> Value {
    match (kind, value) {
        (FieldKind::DateTime, Scalar::I64(ms)) => Value::String(iso_millis(ms)),
        (_, v) => scalar(v),
    }
}

fn exists(field: &str) -> Value {
    json!({"exists": {"field": field}})
}

fn missing(field: &str) -> Value {
    json!({"bool": {"must_not": [exists(field)]}})
}

fn filter(mapping: &Mapping, f: &Filter) -> Result<Value, SearchError> {
    Ok(match f {
        Filter::Term { field, value } => {
            let spec = mapping.spec(field)?;
            let name = exact_field(spec);
            match coerce(spec, value, "a term filter")? {
                None => missing(&name),
                Some(v) => json!({"term": {name: exact(spec.kind, v)}}),
            }
        }
        Filter::In { field, values } => {
            let spec = mapping.spec(field)?;
            let name = exact_field(spec);
            let mut terms = Vec::with_capacity(values.len());
            let mut with_missing = false;
            for value in values {
                match coerce(spec, value, "an in filter")? {
                    None => with_missing = true,
                    Some(v) => terms.push(exact(spec.kind, v)),
                }
            }
            let mut should = Vec::new();
            if !terms.is_empty() {
                should.push(json!({"terms": {&name: terms}}));
            }
            if with_missing {
                should.push(missing(&name));
            }
            if should.is_empty() {
                // "Any of nothing" matches nothing.
                json!({"bool": {"must_not": [{"match_all": {}}]}})
            } else {
                json!({"bool": {"should": should, "minimum_should_match": 1}})
            }
        }
        Filter::Range {
            field,
            gte,
            gt,
            lte,
            lt,
        } => {
            let spec = mapping.spec(field)?;
            let name = exact_field(spec);
            // One range per bound, all to hold: OpenSearch keeps only one of
            // `gte` and `gt` given together.
            let mut ranges = Vec::new();
            for (op, bound) in [("gte", gte), ("gt", gt), ("lte", lte), ("lt", lt)] {
                if let Some(v) = bound {
                    if let Some(v) = range_bound(spec, v, matches!(op, "gte" | "lt"))? {
                        let mut range = serde_json::Map::new();
                        match (spec.kind, v) {
                            // As an ISO instant: `epoch_millis` bounds before 1970
                            // (negative) are misread.
                            (FieldKind::DateTime, Scalar::I64(ms)) => {
                                range.insert(op.into(), Value::String(iso_millis(ms)));
                                range.insert(
                                    "format".into(),
                                    Value::String("strict_date_optional_time".into()),
                                );
                            }
                            (_, v) => {
                                range.insert(op.into(), scalar(v));
                            }
                        }
                        ranges.push(json!({"range": {&name: range}}));
                    }
                }
            }
            match ranges.len() {
                0 => exists(&name),
                1 => ranges.swap_remove(0),
                _ => json!({"bool": {"filter": ranges}}),
            }
        }
        Filter::Prefix { field, prefix } => {
            let name = exact_field(mapping.spec(field)?);
            if prefix.is_empty() {
                exists(&name)
            } else {
                json!({"prefix": {name: {"value": prefix}}})
            }
        }
        Filter::FullText { fields, text } => full_text(mapping, fields, text)?,
    })
}

/// Every word must occur in one of the analyzed fields; a searchable
/// keyword field matches the whole text instead.
fn full_text(mapping: &Mapping, fields: &[String], text: &str) -> Result<Value, SearchError> {
    if text.trim().is_empty() {
        return Ok(json!({"match_all": {}}));
    }
    let mut alternatives = Vec::new();
    let mut analyzed = Vec::new();
    for name in fields {
        let spec = mapping.spec(name)?;
        if spec.kind == FieldKind::Text {
            analyzed.push(words_field(spec));
        } else {
            alternatives.push(json!({"term": {exact_field(spec): text}}));
        }
    }
    let mut found = words(text);
    found.dedup();
    if !analyzed.is_empty() && !found.is_empty() {
        let all_words: Vec<Value> = found
            .iter()
            .map(|w| {
                let any_field: Vec<Value> = analyzed.iter().map(|f| json!({"term": {f: w}})).collect();
                json!({"bool": {"should": any_field, "minimum_should_match": 1}})
            })
            .collect();
        alternatives.push(json!({"bool": {"filter": all_words}}));
    }
    // No word to match (all dropped by the analyzer) and no keyword field:
    // nothing matches (`zero_terms_query: none`); empty text returned above.
    Ok(match alternatives.len() {
        0 => json!({"match_none": {}}),
        _ => json!({"bool": {"should": alternatives, "minimum_should_match": 1}}),
    })
}

/// Epoch milliseconds as `1969-07-20T20:17:40.000Z`, clamped to the years
/// 0000 to 9999 (a bound beyond them keeps its meaning at the edge).
fn iso_millis(ms: i64) -> String {
    const FIRST: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
    const LAST: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms.clamp(FIRST, LAST)) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// The sort clause: the query's keys, then `id` ascending unless sorted by it.
pub(super) fn sort(mapping: &Mapping, keys: &[SortKey]) -> Result<Vec<Value>, SearchError> {
    let mut out = Vec::with_capacity(keys.len() + 1);
    for key in keys {
        let name = exact_field(mapping.spec(&key.field)?);
        let order = if key.descending { "desc" } else { "asc" };
        out.push(json!({name: {"order": order, "missing": "_last"}}));
    }
    if !keys.iter().any(|k| k.field == ID_FIELD) {
        out.push(json!({ID_FIELD: {"order": "asc"}}));
    }
    Ok(out)
}

/// A position as `search_after` values: what OpenSearch itself puts in a
/// hit's `sort` array, including its stand-ins for missing values.
pub(super) fn search_after(
    mapping: &Mapping,
    keys: &[SortKey],
    values: &[FieldValue],
    id: &str,
) -> Result<Vec<Value>, SearchError> {
    let mut out = Vec::with_capacity(keys.len() + 1);
    for (key, value) in keys.iter().zip(values) {
        let spec = mapping.spec(&key.field)?;
        out.push(match coerce(spec, value, "a sort position")? {
            Some(Scalar::Bool(b)) => Value::from(i64::from(b)),
            Some(v) => scalar(v),
            None => missing_sort_value(spec.kind, key.descending),
        });
    }
    if !keys.iter().any(|k| k.field == ID_FIELD) {
        out.push(Value::String(id.to_owned()));
    }
    Ok(out)
}

/// Lucene's stand-in for a missing value sorted last.
fn missing_sort_value(kind: FieldKind, descending: bool) -> Value {
    match kind {
        FieldKind::Text | FieldKind::Keyword => Value::Null,
        FieldKind::F64 if descending => Value::String("-Infinity".into()),
        FieldKind::F64 => Value::String("Infinity".into()),
        FieldKind::Bool if descending => Value::from(i32::MIN),
        FieldKind::Bool => Value::from(i32::MAX),
        FieldKind::I64 | FieldKind::DateTime if descending => Value::from(i64::MIN),
        FieldKind::I64 | FieldKind::DateTime => Value::from(i64::MAX),
    }
}
