//! What an index holds: [`IndexSpec`] names the fields of one kind of
//! denormalized document and what each field may be used for (full-text,
//! filters, sort, returned in hits).
//!
//! This module owns the field vocabulary shared by every backend and the
//! backend-neutral reading of a JSON document against a spec (type checks,
//! RFC 3339 dates to milliseconds). It must not know how a backend lays the
//! fields out; that mapping belongs to the backend (`tantivy.rs`).

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SearchError;

/// The implicit document id every index has (a `Keyword`, filterable and
/// sortable; the final tiebreaker of every sort).
pub const ID_FIELD: &str = "id";

/// The longest string (in UTF-16 code units, as Elasticsearch counts) that
/// filters and sorts see. A longer one is stored and served, and its words
/// found by full-text search, but it is not indexed for exact matching:
/// filters do not match it and sorts place it with the missing values, as
/// Elasticsearch's `ignore_above` does. Lucene refuses a term over 32,766
/// bytes, and OpenSearch refused the whole document for it (a 45 KB title,
/// or a member renamed to 33,000 letters, left the documents stale); every
/// backend applies the same bound, so they still answer alike.
pub const MAX_EXACT_CHARS: usize = 1024;

/// Whether a string value of `field` is indexed for exact matching (see
/// [`MAX_EXACT_CHARS`]); an `id` always is.
pub(crate) fn exact_indexed(field: &FieldSpec, s: &str) -> bool {
    field.name == ID_FIELD || s.len() <= MAX_EXACT_CHARS || s.encode_utf16().count() <= MAX_EXACT_CHARS
}
/// The implicit version every index has (an `I64`); writes with a lower
/// version than the one indexed are skipped.
pub const VERSION_FIELD: &str = "_version";
/// The conventional `Keyword` field a multi-type index (the feed: posts,
/// products, events) declares to tell its document types apart.
pub const TYPE_FIELD: &str = "_type";
/// Reserved for backends that keep the whole document in one stored field.
pub const SOURCE_FIELD: &str = "_source";

/// The type of a field's values in the JSON documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldKind {
    /// Analyzed text (full-text search); exact filters and sort use the
    /// untouched string.
    Text,
    /// An exact string: ids, enums, names used as facets.
    Keyword,
    I64,
    F64,
    /// An RFC 3339 string in documents; compared as epoch milliseconds, and
    /// returned in sort positions as `FieldValue::I64` milliseconds.
    DateTime,
    Bool,
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldKind::Text => "Text",
            FieldKind::Keyword => "Keyword",
            FieldKind::I64 => "I64",
            FieldKind::F64 => "F64",
            FieldKind::DateTime => "DateTime",
            FieldKind::Bool => "Bool",
        })
    }
}

/// One field of an index and what it may be used for.
///
/// A field used for nothing (`searchable`, `filterable` and `sortable` all
/// false) is only carried in the stored document.
///
/// ```
/// use tessera::search::{FieldKind, FieldSpec};
/// let manager = FieldSpec::new("managerName", FieldKind::Keyword).filterable().sortable();
/// assert!(manager.stored);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    pub kind: FieldKind,
    /// Usable in `Filter::FullText` (only `Text` and `Keyword`).
    #[serde(default)]
    pub searchable: bool,
    /// Usable in term, in, range and prefix filters.
    #[serde(default)]
    pub filterable: bool,
    /// Usable as a sort key. A sortable field holds at most one value per
    /// document (no arrays), so that a document has one place in the order.
    #[serde(default)]
    pub sortable: bool,
    /// Returned in hit documents. `false` drops the field from the stored
    /// copy (e.g. a long body that is only searched).
    #[serde(default = "yes")]
    pub stored: bool,
}

fn yes() -> bool {
    true
}

impl FieldSpec {
    /// A stored field used for nothing else yet; chain the builders below.
    pub fn new(name: impl Into<String>, kind: FieldKind) -> Self {
        FieldSpec {
            name: name.into(),
            kind,
            searchable: false,
            filterable: false,
            sortable: false,
            stored: true,
        }
    }

    pub fn searchable(mut self) -> Self {
        self.searchable = true;
        self
    }

    pub fn filterable(mut self) -> Self {
        self.filterable = true;
        self
    }

    pub fn sortable(mut self) -> Self {
        self.sortable = true;
        self
    }

    pub fn not_stored(mut self) -> Self {
        self.stored = false;
        self
    }
}

static ID_SPEC: LazyLock<FieldSpec> = LazyLock::new(|| {
    FieldSpec::new(ID_FIELD, FieldKind::Keyword)
        .filterable()
        .sortable()
});
static VERSION_SPEC: LazyLock<FieldSpec> = LazyLock::new(|| {
    FieldSpec::new(VERSION_FIELD, FieldKind::I64)
        .filterable()
        .sortable()
});

/// The fields of one index. `id` and `_version` are implicit and must not be
/// listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSpec {
    /// The logical name (e.g. `contracts`); physical indexes built from the
    /// spec get their own names (`contracts_v2`).
    pub name: String,
    pub fields: Vec<FieldSpec>,
}

impl IndexSpec {
    pub fn new(name: impl Into<String>, fields: Vec<FieldSpec>) -> Self {
        IndexSpec {
            name: name.into(),
            fields,
        }
    }

    /// The field called `name`, including the implicit `id` and `_version`.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        match name {
            ID_FIELD => Some(&ID_SPEC),
            VERSION_FIELD => Some(&VERSION_SPEC),
            _ => self.fields.iter().find(|f| f.name == name),
        }
    }

    /// Every field, the implicit ones first.
    pub fn all_fields(&self) -> impl Iterator<Item = &FieldSpec> {
        [&*ID_SPEC, &*VERSION_SPEC].into_iter().chain(self.fields.iter())
    }

    /// Checks names and flags; backends call this before creating an index.
    pub fn validate(&self) -> Result<(), SearchError> {
        let invalid = |reason: String| SearchError::InvalidSpec {
            index: self.name.clone(),
            reason,
        };
        let mut seen = HashSet::new();
        for f in &self.fields {
            if f.name.is_empty() {
                return Err(invalid("a field has an empty name".into()));
            }
            if [ID_FIELD, VERSION_FIELD, SOURCE_FIELD].contains(&f.name.as_str()) {
                return Err(invalid(format!(
                    "field `{}` is implicit or reserved; do not list it",
                    f.name
                )));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(invalid(format!("field `{}` is listed twice", f.name)));
            }
            if f.searchable && !matches!(f.kind, FieldKind::Text | FieldKind::Keyword) {
                return Err(invalid(format!(
                    "field `{}` is {} and cannot be searchable; only Text and Keyword fields can",
                    f.name, f.kind
                )));
            }
        }
        Ok(())
    }

    /// Names of the fields that pass `pred`, for error messages.
    pub(crate) fn names_where(&self, pred: impl Fn(&FieldSpec) -> bool) -> String {
        let names: Vec<&str> = self
            .all_fields()
            .filter(|f| pred(f))
            .map(|f| f.name.as_str())
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

/// A single typed value after checking it against its field's kind.
/// `DateTime` values are epoch milliseconds here.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    I64(i64),
    F64(f64),
    Bool(bool),
}

/// Parses an RFC 3339 timestamp into epoch milliseconds.
pub(crate) fn parse_datetime_millis(s: &str) -> Option<i64> {
    parse_datetime_millis_rounded(s, false)
}

/// [`parse_datetime_millis`], rounded up to the next millisecond when `up`
/// and the instant falls between two.
pub(crate) fn parse_datetime_millis_rounded(s: &str, up: bool) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    let carry = i128::from(up && nanos.rem_euclid(1_000_000) != 0);
    i64::try_from(nanos.div_euclid(1_000_000) + carry).ok()
}

/// [`Scalar`] borrowing its string from the document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ScalarRef<'a> {
    Str(&'a str),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl ScalarRef<'_> {
    fn owned(self) -> Scalar {
        match self {
            ScalarRef::Str(s) => Scalar::Str(s.to_owned()),
            ScalarRef::I64(i) => Scalar::I64(i),
            ScalarRef::F64(f) => Scalar::F64(f),
            ScalarRef::Bool(b) => Scalar::Bool(b),
        }
    }
}

/// Reads the values of `field` in a JSON document: none for a missing field
/// or `null`, several for an array (only where the field is not sortable).
/// The error says what was expected, for `SearchError::InvalidDocument`.
pub(crate) fn document_values(field: &FieldSpec, value: Option<&Value>) -> Result<Vec<Scalar>, String> {
    let mut out = Vec::new();
    each_document_value(field, value, |v| out.push(v.owned()))?;
    Ok(out)
}

/// [`document_values`] without copying strings: `each` sees every value,
/// in order, until one is wrong (then the error, as `document_values`).
pub(crate) fn each_document_value<'a>(
    field: &FieldSpec,
    value: Option<&'a Value>,
    mut each: impl FnMut(ScalarRef<'a>),
) -> Result<(), String> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => {
            if field.sortable {
                return Err(format!(
                    "field `{}` is sortable, so it must hold one value, not an array",
                    field.name
                ));
            }
            for v in items.iter().filter(|v| !v.is_null()) {
                each(document_scalar(field, v)?);
            }
            Ok(())
        }
        Some(v) => {
            each(document_scalar(field, v)?);
            Ok(())
        }
    }
}

fn document_scalar<'a>(field: &FieldSpec, v: &'a Value) -> Result<ScalarRef<'a>, String> {
    let bad = || {
        let expected = match field.kind {
            FieldKind::Text | FieldKind::Keyword => "a string",
            FieldKind::I64 => "an integer",
            FieldKind::F64 => "a number",
            FieldKind::DateTime => "an RFC 3339 timestamp string",
            FieldKind::Bool => "true or false",
        };
        format!(
            "field `{}` is {} and needs {expected}, got {v}",
            field.name, field.kind
        )
    };
    match field.kind {
        FieldKind::Text | FieldKind::Keyword => v.as_str().map(ScalarRef::Str),
        FieldKind::I64 => v.as_i64().map(ScalarRef::I64),
        // `+ 0.0` turns -0.0 into 0.0: indexes order floats by their bits,
        // so the two zeros would otherwise differ in terms, ranges and sort.
        FieldKind::F64 => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| ScalarRef::F64(f + 0.0)),
        FieldKind::DateTime => v.as_str().and_then(parse_datetime_millis).map(ScalarRef::I64),
        FieldKind::Bool => v.as_bool().map(ScalarRef::Bool),
    }
    .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn implicit_fields_are_found_and_cannot_be_listed() {
        let spec = IndexSpec::new("c", vec![FieldSpec::new("amount", FieldKind::I64)]);
        assert_eq!(spec.field("id").map(|f| f.kind), Some(FieldKind::Keyword));
        assert_eq!(spec.field("_version").map(|f| f.kind), Some(FieldKind::I64));
        assert!(spec.validate().is_ok());

        let bad = IndexSpec::new("c", vec![FieldSpec::new("id", FieldKind::Keyword)]);
        let err = bad.validate().expect_err("id is implicit").to_string();
        assert!(err.contains("`id`"), "{err}");

        let twice = IndexSpec::new(
            "c",
            vec![
                FieldSpec::new("a", FieldKind::I64),
                FieldSpec::new("a", FieldKind::Bool),
            ],
        );
        assert!(twice.validate().is_err());

        let num_search = IndexSpec::new("c", vec![FieldSpec::new("a", FieldKind::I64).searchable()]);
        assert!(num_search.validate().is_err());
    }

    #[test]
    fn datetimes_become_millis() {
        assert_eq!(parse_datetime_millis("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_datetime_millis("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_datetime_millis("1969-12-31T23:59:59.9995Z"), Some(-1));
        assert_eq!(parse_datetime_millis("yesterday"), None);
        assert_eq!(
            parse_datetime_millis_rounded("1970-01-01T00:00:01.5001Z", true),
            Some(1501)
        );
        assert_eq!(
            parse_datetime_millis_rounded("1970-01-01T00:00:01.5Z", true),
            Some(1500)
        );
        assert_eq!(
            parse_datetime_millis_rounded("1969-12-31T23:59:59.9995Z", true),
            Some(0)
        );
    }

    #[test]
    fn document_values_check_types() {
        let sortable = FieldSpec::new("n", FieldKind::I64).sortable();
        assert_eq!(
            document_values(&sortable, Some(&json!(3))),
            Ok(vec![Scalar::I64(3)])
        );
        assert_eq!(document_values(&sortable, None), Ok(vec![]));
        assert!(document_values(&sortable, Some(&json!([1, 2]))).is_err());
        assert!(document_values(&sortable, Some(&json!(1.5))).is_err());
        let tags = FieldSpec::new("tags", FieldKind::Keyword).filterable();
        assert_eq!(
            document_values(&tags, Some(&json!(["a", null, "b"]))),
            Ok(vec![Scalar::Str("a".into()), Scalar::Str("b".into())])
        );
        let err = document_values(&tags, Some(&json!(7))).expect_err("7 is not a string");
        assert!(err.contains("`tags`") && err.contains("string"), "{err}");
    }
}
