//! The backend-neutral query: filters, sort keys and a page, plus the hits
//! that come back, and the validation of a query against an [`IndexSpec`].
//!
//! This module owns what a valid query is (known fields, the right flags,
//! values of the right type, the result window) so that every backend
//! rejects the same queries with the same messages. It must not build
//! backend queries; backends translate an already validated [`SearchQuery`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::spec::{
    parse_datetime_millis, parse_datetime_millis_rounded, FieldKind, FieldSpec, IndexSpec, Scalar, ID_FIELD,
};
use super::SearchError;

/// A document as indexed and as returned in hits: one JSON object per entity
/// with at least `id` (string) and `_version` (integer).
pub type Document = Map<String, Value>;

/// The deepest `Page::Offset` reaches (`offset + limit`), and the largest
/// page. Like Elasticsearch's `index.max_result_window`: offset paging costs
/// the whole window per page, so past this callers must page with cursors
/// (`Page::After`), which cost the same at any depth.
pub const MAX_OFFSET_WINDOW: usize = 10_000;

/// A typed value in filters and sort positions. Serialized untagged, as the
/// plain JSON value (`"x"`, `5`, `5.5`, `true`, `null`).
///
/// `DateTime` fields take an RFC 3339 `Str` or epoch milliseconds as `I64`;
/// `F64` fields also take `I64`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Str(String),
    I64(i64),
    F64(f64),
    Bool(bool),
    Null,
}

impl FieldValue {
    fn describe(&self) -> String {
        match self {
            FieldValue::Str(s) => format!("the string {s:?}"),
            FieldValue::I64(i) => format!("the integer {i}"),
            FieldValue::F64(f) => format!("the number {f}"),
            FieldValue::Bool(b) => format!("{b}"),
            FieldValue::Null => "null".into(),
        }
    }
}

/// One condition on the documents; a query's filters must all hold.
///
/// `Null` in `Term`/`In` matches documents without a value for the field.
/// `Term`, `In`, `Range` and `Prefix` on a `Text` field compare the whole,
/// unanalyzed string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    Term {
        field: String,
        value: FieldValue,
    },
    In {
        field: String,
        values: Vec<FieldValue>,
    },
    /// No bound at all matches documents that have a value.
    Range {
        field: String,
        gte: Option<FieldValue>,
        gt: Option<FieldValue>,
        lte: Option<FieldValue>,
        lt: Option<FieldValue>,
    },
    /// Only on `Keyword` and `Text` fields; case-sensitive.
    Prefix {
        field: String,
        prefix: String,
    },
    /// Every word of `text` (as the fields' analyzer splits it) must occur in
    /// one of `fields`; a searchable `Keyword` field matches the whole text.
    /// Blank text matches everything. Only filters: there is no relevance
    /// sort.
    FullText {
        fields: Vec<String>,
        text: String,
    },
}

/// One sort key. Documents without a value sort last in both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortKey {
    pub field: String,
    #[serde(default)]
    pub descending: bool,
}

impl SortKey {
    pub fn asc(field: impl Into<String>) -> Self {
        SortKey {
            field: field.into(),
            descending: false,
        }
    }

    pub fn desc(field: impl Into<String>) -> Self {
        SortKey {
            field: field.into(),
            descending: true,
        }
    }
}

/// Which slice of the sorted matches to return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Page {
    /// Up to `first` hits strictly after `after` in the sort order (from the
    /// start when `None`). Backends return at most `first` hits: to learn
    /// whether there is a next page, ask for `first + 1` and drop the extra.
    After {
        first: usize,
        after: Option<SortPosition>,
    },
    /// Hits `offset..offset + limit`; `offset + limit` may not exceed
    /// [`MAX_OFFSET_WINDOW`].
    Offset { offset: usize, limit: usize },
}

/// Where a hit sits in the sort order: its value for each of the query's
/// sort keys (`Null` where it has none; `DateTime` as `I64` milliseconds)
/// and its id, the final tiebreaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SortPosition {
    pub values: Vec<FieldValue>,
    pub id: String,
}

/// A search: every filter must hold; hits are ordered by `sort`, then by
/// `id` ascending (unless `sort` names `id` itself), so the order is total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    pub filters: Vec<Filter>,
    pub sort: Vec<SortKey>,
    pub page: Page,
    /// Whether [`SearchResult::total`] is wanted. Counting every match
    /// costs a visit of each; without it a backend may stop once it has
    /// the page (and `total` is `None`).
    #[serde(default = "counted")]
    pub count: bool,
}

fn counted() -> bool {
    true
}

/// One page of hits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// Documents matching the filters, whatever the page (when counted).
    pub total: Option<u64>,
    pub hits: Vec<Hit>,
}

/// A matching document with its place in the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: String,
    pub position: SortPosition,
    /// The document as indexed, minus fields declared `stored: false`.
    pub document: Document,
}

impl SearchQuery {
    /// The sort keys actually applied: the query's keys up to the first `id`
    /// key (later keys cannot break a tie), ending with `id` ascending if the
    /// query does not sort by `id`.
    pub fn sort_with_tiebreak(&self) -> Vec<SortKey> {
        let mut keys = Vec::with_capacity(self.sort.len() + 1);
        for key in &self.sort {
            keys.push(key.clone());
            if key.field == ID_FIELD {
                return keys;
            }
        }
        keys.push(SortKey::asc(ID_FIELD));
        keys
    }

    /// Checks every field, flag, value type and the page window against
    /// `spec`. Backends call this before running the query.
    pub fn validate(&self, spec: &IndexSpec) -> Result<(), SearchError> {
        for filter in &self.filters {
            validate_filter(spec, filter)?;
        }
        let mut sort_fields = Vec::with_capacity(self.sort.len());
        for key in &self.sort {
            sort_fields.push(sortable_field(spec, &key.field)?);
        }
        match &self.page {
            Page::After { first, after } => {
                if *first > MAX_OFFSET_WINDOW {
                    return Err(SearchError::WindowTooLarge {
                        max: MAX_OFFSET_WINDOW,
                        asked: *first,
                    });
                }
                if let Some(position) = after {
                    validate_position(&sort_fields, position)?;
                }
            }
            Page::Offset { offset, limit } => {
                let asked = offset.saturating_add(*limit);
                if asked > MAX_OFFSET_WINDOW {
                    return Err(SearchError::WindowTooLarge {
                        max: MAX_OFFSET_WINDOW,
                        asked,
                    });
                }
            }
        }
        Ok(())
    }
}

fn known_field<'s>(spec: &'s IndexSpec, name: &str) -> Result<&'s FieldSpec, SearchError> {
    spec.field(name).ok_or_else(|| SearchError::UnknownField {
        index: spec.name.clone(),
        field: name.to_owned(),
        known: spec.names_where(|_| true),
    })
}

pub(crate) fn filterable_field<'s>(spec: &'s IndexSpec, name: &str) -> Result<&'s FieldSpec, SearchError> {
    let field = known_field(spec, name)?;
    if !field.filterable {
        return Err(SearchError::NotFilterable {
            index: spec.name.clone(),
            field: name.to_owned(),
            allowed: spec.names_where(|f| f.filterable),
        });
    }
    Ok(field)
}

pub(crate) fn sortable_field<'s>(spec: &'s IndexSpec, name: &str) -> Result<&'s FieldSpec, SearchError> {
    let field = known_field(spec, name)?;
    if !field.sortable {
        return Err(SearchError::NotSortable {
            index: spec.name.clone(),
            field: name.to_owned(),
            allowed: spec.names_where(|f| f.sortable),
        });
    }
    Ok(field)
}

pub(crate) fn searchable_field<'s>(spec: &'s IndexSpec, name: &str) -> Result<&'s FieldSpec, SearchError> {
    let field = known_field(spec, name)?;
    if !field.searchable {
        return Err(SearchError::NotSearchable {
            index: spec.name.clone(),
            field: name.to_owned(),
            allowed: spec.names_where(|f| f.searchable),
        });
    }
    Ok(field)
}

/// Checks `value` against the kind of `field` and converts it; `Null` is
/// `None` (callers decide where null is allowed). `usage` names the filter
/// in the error message.
pub(crate) fn coerce(
    field: &FieldSpec,
    value: &FieldValue,
    usage: &str,
) -> Result<Option<Scalar>, SearchError> {
    let scalar = match (field.kind, value) {
        (_, FieldValue::Null) => return Ok(None),
        (FieldKind::Text | FieldKind::Keyword, FieldValue::Str(s)) => Some(Scalar::Str(s.clone())),
        (FieldKind::I64, FieldValue::I64(i)) => Some(Scalar::I64(*i)),
        // -0.0 becomes 0.0, as in indexed documents (`spec::document_values`).
        (FieldKind::F64, FieldValue::F64(f)) if f.is_finite() => Some(Scalar::F64(*f + 0.0)),
        // Integers are exact in f64 up to 2^53; beyond that the nearest
        // double is what a document would have been indexed with anyway.
        (FieldKind::F64, FieldValue::I64(i)) => Some(Scalar::F64(*i as f64)),
        (FieldKind::DateTime, FieldValue::I64(ms)) => Some(Scalar::I64(*ms)),
        (FieldKind::DateTime, FieldValue::Str(s)) => parse_datetime_millis(s).map(Scalar::I64),
        (FieldKind::Bool, FieldValue::Bool(b)) => Some(Scalar::Bool(*b)),
        _ => None,
    };
    scalar.map(Some).ok_or_else(|| SearchError::WrongType {
        field: field.name.clone(),
        kind: field.kind,
        usage: usage.to_owned(),
        expected: expected_values(field.kind).to_owned(),
        got: value.describe(),
    })
}

/// A range bound as the index compares it. Instants are indexed to the
/// millisecond: a bound between two milliseconds is rounded so that the
/// range holds the same indexed instants, up for an inclusive lower bound
/// or an exclusive upper one (`lt: "…17.8325Z"` holds `…17.832Z`, `gte`
/// does not), down for the others.
pub(crate) fn range_bound(
    field: &FieldSpec,
    value: &FieldValue,
    up: bool,
) -> Result<Option<Scalar>, SearchError> {
    match (field.kind, value) {
        (FieldKind::DateTime, FieldValue::Str(s)) => match parse_datetime_millis_rounded(s, up) {
            Some(ms) => Ok(Some(Scalar::I64(ms))),
            None => coerce(field, value, "a range bound"),
        },
        _ => coerce(field, value, "a range bound"),
    }
}

/// The words a `Text` field is searched by, as every backend splits them:
/// maximal runs of letters and digits, words of 40 bytes or more dropped,
/// lowercased a character at a time (tantivy's default analyzer, which the
/// embedded backend indexes with; the OpenSearch backend indexes these very
/// words). Not `str::to_lowercase`, which lowercases a word-final `Σ` to
/// `ς` where tantivy writes `σ`: "ΟΔΟΣ" matched "οδος" on one backend only.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() < 40)
        .map(|w| w.chars().flat_map(char::to_lowercase).collect())
        .collect()
}

fn expected_values(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text | FieldKind::Keyword => "a string",
        FieldKind::I64 => "an integer",
        FieldKind::F64 => "a finite number",
        FieldKind::DateTime => "an RFC 3339 timestamp string or epoch milliseconds",
        FieldKind::Bool => "true or false",
    }
}

fn validate_filter(spec: &IndexSpec, filter: &Filter) -> Result<(), SearchError> {
    match filter {
        Filter::Term { field, value } => {
            coerce(filterable_field(spec, field)?, value, "a term filter")?;
        }
        Filter::In { field, values } => {
            let field = filterable_field(spec, field)?;
            for value in values {
                coerce(field, value, "an in filter")?;
            }
        }
        Filter::Range {
            field,
            gte,
            gt,
            lte,
            lt,
        } => {
            let field = filterable_field(spec, field)?;
            if field.kind == FieldKind::Bool {
                return Err(SearchError::UnsupportedFilter {
                    field: field.name.clone(),
                    kind: field.kind,
                    filter: "range".into(),
                    allowed: "Text, Keyword, I64, F64 and DateTime fields".into(),
                });
            }
            for bound in [gte, gt, lte, lt].into_iter().flatten() {
                if coerce(field, bound, "a range bound")?.is_none() {
                    return Err(SearchError::WrongType {
                        field: field.name.clone(),
                        kind: field.kind,
                        usage: "a range bound".into(),
                        expected: format!(
                            "{} (leave the bound out instead of null)",
                            expected_values(field.kind)
                        ),
                        got: "null".into(),
                    });
                }
            }
        }
        Filter::Prefix { field, .. } => {
            let field = filterable_field(spec, field)?;
            if !matches!(field.kind, FieldKind::Keyword | FieldKind::Text) {
                return Err(SearchError::UnsupportedFilter {
                    field: field.name.clone(),
                    kind: field.kind,
                    filter: "prefix".into(),
                    allowed: "Keyword and Text fields".into(),
                });
            }
        }
        Filter::FullText { fields, .. } => {
            if fields.is_empty() {
                return Err(SearchError::InvalidQuery {
                    reason: format!(
                        "a full-text filter needs at least one field; searchable fields: {}",
                        spec.names_where(|f| f.searchable)
                    ),
                });
            }
            for field in fields {
                searchable_field(spec, field)?;
            }
        }
    }
    Ok(())
}

fn validate_position(sort_fields: &[&FieldSpec], position: &SortPosition) -> Result<(), SearchError> {
    if position.values.len() != sort_fields.len() {
        return Err(SearchError::BadPosition {
            reason: format!(
                "the position has {} sort value(s) but the query sorts by {} key(s)",
                position.values.len(),
                sort_fields.len()
            ),
        });
    }
    for (field, value) in sort_fields.iter().zip(&position.values) {
        coerce(field, value, "a sort position")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::spec::FieldSpec;

    /// The OpenSearch backend's words are the embedded backend's: tantivy's
    /// default analyzer's tokens, for scripts whose lowercase is not one
    /// character for one (final sigma, dotted İ, ß, digits, long words).
    #[test]
    fn words_are_tantivys_default_tokens() {
        let mut analyzer = tantivy::tokenizer::TokenizerManager::default()
            .get("default")
            .expect("default analyzer");
        for text in [
            "ΟΔΟΣ Σοφίας ΣΟΦΟΣ",
            "İstanbul DİYARBAKIR straße STRASSE",
            "Ünïcödé — x2 é́ 𝔘𝔫𝔦",
            "a-b_c.d 42ND 東京タワー",
            &format!("{} short", "y".repeat(40)),
            &format!("{} short", "é".repeat(20)),
        ] {
            let mut tokens = Vec::new();
            analyzer
                .token_stream(text)
                .process(&mut |t| tokens.push(t.text.clone()));
            assert_eq!(words(text), tokens, "{text}");
        }
    }

    fn spec() -> IndexSpec {
        IndexSpec::new(
            "contracts",
            vec![
                FieldSpec::new("amount", FieldKind::I64).filterable().sortable(),
                FieldSpec::new("price", FieldKind::F64).filterable().sortable(),
                FieldSpec::new("title", FieldKind::Text).searchable(),
                FieldSpec::new("status", FieldKind::Keyword).filterable(),
                FieldSpec::new("createdAt", FieldKind::DateTime)
                    .filterable()
                    .sortable(),
                FieldSpec::new("active", FieldKind::Bool).filterable(),
            ],
        )
    }

    fn query(filters: Vec<Filter>, sort: Vec<SortKey>, page: Page) -> SearchQuery {
        SearchQuery {
            filters,
            sort,
            page,
            count: true,
        }
    }

    fn first(n: usize) -> Page {
        Page::After {
            first: n,
            after: None,
        }
    }

    #[test]
    fn unknown_and_unsortable_fields_are_named() {
        let err = query(vec![], vec![SortKey::asc("nope")], first(10))
            .validate(&spec())
            .expect_err("unknown sort field");
        assert!(matches!(&err, SearchError::UnknownField { field, .. } if field == "nope"));
        assert!(
            err.to_string().contains("`nope`") && err.to_string().contains("amount"),
            "{err}"
        );

        let err = query(vec![], vec![SortKey::asc("status")], first(10))
            .validate(&spec())
            .expect_err("status is not sortable");
        assert!(matches!(&err, SearchError::NotSortable { field, .. } if field == "status"));
        let text = err.to_string();
        assert!(
            text.contains("`status`") && text.contains("amount, price"),
            "{text}"
        );

        let err = query(
            vec![Filter::Term {
                field: "title".into(),
                value: FieldValue::Str("x".into()),
            }],
            vec![],
            first(1),
        )
        .validate(&spec())
        .expect_err("title is not filterable");
        assert!(matches!(err, SearchError::NotFilterable { .. }));
    }

    #[test]
    fn values_must_match_the_field_kind() {
        let err = query(
            vec![Filter::Term {
                field: "amount".into(),
                value: FieldValue::Str("ten".into()),
            }],
            vec![],
            first(1),
        )
        .validate(&spec())
        .expect_err("string for an integer");
        let text = err.to_string();
        assert!(matches!(err, SearchError::WrongType { .. }));
        assert!(text.contains("`amount`") && text.contains("integer"), "{text}");

        // Widening and dates are accepted.
        let ok = query(
            vec![
                Filter::Term {
                    field: "price".into(),
                    value: FieldValue::I64(3),
                },
                Filter::Range {
                    field: "createdAt".into(),
                    gte: Some(FieldValue::Str("2024-01-01T00:00:00Z".into())),
                    gt: None,
                    lte: Some(FieldValue::I64(0)),
                    lt: None,
                },
                Filter::In {
                    field: "status".into(),
                    values: vec![FieldValue::Str("a".into()), FieldValue::Null],
                },
            ],
            vec![],
            first(1),
        );
        assert_eq!(ok.validate(&spec()), Ok(()));

        let bad_date = query(
            vec![Filter::Range {
                field: "createdAt".into(),
                gte: Some(FieldValue::Str("last tuesday".into())),
                gt: None,
                lte: None,
                lt: None,
            }],
            vec![],
            first(1),
        );
        assert!(matches!(
            bad_date.validate(&spec()),
            Err(SearchError::WrongType { .. })
        ));

        let null_bound = query(
            vec![Filter::Range {
                field: "amount".into(),
                gte: Some(FieldValue::Null),
                gt: None,
                lte: None,
                lt: None,
            }],
            vec![],
            first(1),
        );
        assert!(matches!(
            null_bound.validate(&spec()),
            Err(SearchError::WrongType { .. })
        ));

        let nan = query(
            vec![Filter::Term {
                field: "price".into(),
                value: FieldValue::F64(f64::NAN),
            }],
            vec![],
            first(1),
        );
        assert!(matches!(
            nan.validate(&spec()),
            Err(SearchError::WrongType { .. })
        ));
    }

    #[test]
    fn prefix_and_range_only_where_they_make_sense() {
        let err = query(
            vec![Filter::Prefix {
                field: "amount".into(),
                prefix: "1".into(),
            }],
            vec![],
            first(1),
        )
        .validate(&spec())
        .expect_err("prefix on a number");
        let text = err.to_string();
        assert!(matches!(err, SearchError::UnsupportedFilter { .. }));
        assert!(
            text.contains("`amount`") && text.contains("Keyword and Text"),
            "{text}"
        );

        let err = query(
            vec![Filter::Range {
                field: "active".into(),
                gte: Some(FieldValue::Bool(false)),
                gt: None,
                lte: None,
                lt: None,
            }],
            vec![],
            first(1),
        )
        .validate(&spec())
        .expect_err("range on a bool");
        assert!(matches!(err, SearchError::UnsupportedFilter { .. }));

        let err = query(
            vec![Filter::FullText {
                fields: vec!["status".into()],
                text: "x".into(),
            }],
            vec![],
            first(1),
        )
        .validate(&spec())
        .expect_err("status is not searchable");
        assert!(err.to_string().contains("searchable fields: title"), "{err}");
    }

    #[test]
    fn windows_are_bounded() {
        let err = query(
            vec![],
            vec![],
            Page::Offset {
                offset: 9_990,
                limit: 20,
            },
        )
        .validate(&spec())
        .expect_err("beyond the window");
        assert_eq!(
            err,
            SearchError::WindowTooLarge {
                max: MAX_OFFSET_WINDOW,
                asked: 10_010
            }
        );
        let overflow = query(
            vec![],
            vec![],
            Page::Offset {
                offset: usize::MAX,
                limit: 2,
            },
        );
        assert!(matches!(
            overflow.validate(&spec()),
            Err(SearchError::WindowTooLarge { .. })
        ));
        let ok = query(
            vec![],
            vec![],
            Page::Offset {
                offset: 9_990,
                limit: 10,
            },
        );
        assert_eq!(ok.validate(&spec()), Ok(()));
        assert!(query(vec![], vec![], first(10_001)).validate(&spec()).is_err());
    }

    #[test]
    fn positions_must_fit_the_sort() {
        let page = |values| Page::After {
            first: 5,
            after: Some(SortPosition {
                values,
                id: "7".into(),
            }),
        };
        let sort = vec![SortKey::desc("amount")];
        let ok = query(vec![], sort.clone(), page(vec![FieldValue::I64(3)]));
        assert_eq!(ok.validate(&spec()), Ok(()));
        let null_ok = query(vec![], sort.clone(), page(vec![FieldValue::Null]));
        assert_eq!(null_ok.validate(&spec()), Ok(()));
        let short = query(vec![], sort.clone(), page(vec![]));
        assert!(matches!(
            short.validate(&spec()),
            Err(SearchError::BadPosition { .. })
        ));
        let typed = query(vec![], sort, page(vec![FieldValue::Bool(true)]));
        assert!(matches!(
            typed.validate(&spec()),
            Err(SearchError::WrongType { .. })
        ));
    }

    #[test]
    fn tiebreak_is_id_unless_sorted_by_id() {
        let q = query(vec![], vec![SortKey::desc("amount")], first(1));
        assert_eq!(
            q.sort_with_tiebreak(),
            vec![SortKey::desc("amount"), SortKey::asc("id")]
        );
        let q = query(
            vec![],
            vec![SortKey::desc("id"), SortKey::asc("amount")],
            first(1),
        );
        assert_eq!(q.sort_with_tiebreak(), vec![SortKey::desc("id")]);
    }

    #[test]
    fn field_values_serialize_as_plain_json() -> Result<(), serde_json::Error> {
        let values = vec![
            FieldValue::Str("a".into()),
            FieldValue::I64(-3),
            FieldValue::F64(2.5),
            FieldValue::Bool(true),
            FieldValue::Null,
        ];
        let json = serde_json::to_string(&values)?;
        assert_eq!(json, r#"["a",-3,2.5,true,null]"#);
        let back: Vec<FieldValue> = serde_json::from_str(&json)?;
        assert_eq!(back, values);
        Ok(())
    }
}
