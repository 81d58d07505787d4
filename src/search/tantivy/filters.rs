//! Filters to tantivy queries. Each filter has one translation, chosen so
//! that it agrees with the sort order of the collector (whole strings by
//! bytes, floats by bits with -0.0 folded into 0.0, missing values apart).
//!
//! It must not validate: queries arrive checked by `SearchQuery::validate`.

use std::ops::Bound;

use ::tantivy::columnar::Column;
use ::tantivy::query::{
    AllQuery, BitSetDocSet, BooleanQuery, ConstScorer, EmptyQuery, EnableScoring, ExistsQuery, Explanation,
    Occur, Query, RangeQuery, Scorer, TermQuery, TermSetQuery, Weight,
};
use ::tantivy::schema::{Field, IndexRecordOption};
use ::tantivy::{BitSet, DocId, DocSet, Score, SegmentReader, TantivyError, Term};

use super::Handle;
use crate::search::query::{coerce, range_bound, FieldValue, Filter};
use crate::search::spec::Scalar;
use crate::search::SearchError;

/// Up to this many terms, an `in` filter is a union of term queries.
const SMALL_TERM_SET: usize = 16;

impl Handle {
    pub(super) fn filters(&self, filters: &[Filter]) -> Result<Box<dyn Query>, SearchError> {
        let mut clauses = Vec::with_capacity(filters.len());
        for filter in filters {
            clauses.push((Occur::Must, self.filter(filter)?));
        }
        Ok(match clauses.len() {
            0 => Box::new(EmptyQuery),
            1 => clauses.swap_remove(0).1,
            _ => Box::new(BooleanQuery::new(clauses)),
        })
    }

    pub(super) fn filter(&self, filter: &Filter) -> Result<Box<dyn Query>, SearchError> {
        let spec_of = |name: &str| self.layout.field(name).map(|l| &l.spec);
        Ok(match filter {
            Filter::Term { field, value } => {
                let (f, column) = self.layout.exact(field)?;
                match coerce(spec_of(field)?, value, "a term filter")? {
                    None => missing(column),
                    Some(v) if self.layout.field(field)?.exact_indexed => {
                        Box::new(TermQuery::new(term(f, &v), IndexRecordOption::Basic))
                    }
                    // A column-only field: a one-value range reads the column.
                    Some(v) => Box::new(RangeQuery::new(
                        Bound::Included(term(f, &v)),
                        Bound::Included(term(f, &v)),
                    )),
                }
            }
            Filter::In { field, values } => {
                let (f, column) = self.layout.exact(field)?;
                let spec = spec_of(field)?;
                let mut scalars = Vec::with_capacity(values.len());
                let mut with_missing = false;
                for value in values {
                    match coerce(spec, value, "an in filter")? {
                        None => with_missing = true,
                        Some(v) => scalars.push(v),
                    }
                }
                let mut alternatives: Vec<Box<dyn Query>> = Vec::with_capacity(2);
                if scalars.is_empty() {
                    // Only null: the missing ones alone.
                } else if !self.layout.field(field)?.exact_indexed {
                    alternatives.push(Box::new(ColumnIn::new(column, scalars)));
                } else if scalars.len() <= SMALL_TERM_SET {
                    // A few terms: a union of their postings, which seek
                    // (a term set builds a bitset of every match first).
                    alternatives.push(Box::new(BooleanQuery::union(
                        scalars
                            .iter()
                            .map(|v| {
                                Box::new(TermQuery::new(term(f, v), IndexRecordOption::Basic))
                                    as Box<dyn Query>
                            })
                            .collect(),
                    )));
                } else {
                    alternatives.push(Box::new(TermSetQuery::new(scalars.iter().map(|v| term(f, v)))));
                }
                if with_missing {
                    alternatives.push(missing(column));
                }
                match alternatives.len() {
                    0 => Box::new(EmptyQuery),
                    1 => alternatives.swap_remove(0),
                    _ => Box::new(BooleanQuery::union(alternatives)),
                }
            }
            Filter::Range {
                field,
                gte,
                gt,
                lte,
                lt,
            } => {
                let (f, column) = self.layout.exact(field)?;
                let spec = spec_of(field)?;
                // `up`: an inclusive lower bound or an exclusive upper one.
                let bound = |v: &Option<FieldValue>,
                             inclusive: bool,
                             up: bool|
                 -> Result<Option<Bound<Term>>, SearchError> {
                    let Some(v) = v else { return Ok(None) };
                    Ok(range_bound(spec, v, up)?.map(|s| {
                        let t = term(f, &s);
                        if inclusive {
                            Bound::Included(t)
                        } else {
                            Bound::Excluded(t)
                        }
                    }))
                };
                let lowers: Vec<_> = [bound(gte, true, true)?, bound(gt, false, false)?]
                    .into_iter()
                    .flatten()
                    .collect();
                let uppers: Vec<_> = [bound(lte, true, false)?, bound(lt, false, true)?]
                    .into_iter()
                    .flatten()
                    .collect();
                range_query(column, lowers, uppers)
            }
            Filter::Prefix { field, prefix } => {
                let (f, column) = self.layout.exact(field)?;
                // Strings starting with `prefix` are exactly those in
                // [prefix, prefix with its last char incremented): UTF-8
                // byte order is code point order.
                let lower = Bound::Included(Term::from_field_text(f, prefix));
                let upper = match prefix_successor(prefix) {
                    Some(s) => vec![Bound::Excluded(Term::from_field_text(f, &s))],
                    None => Vec::new(),
                };
                range_query(column, vec![lower], upper)
            }
            Filter::FullText { fields, text } => self.full_text(fields, text)?,
        })
    }

    fn full_text(&self, fields: &[String], text: &str) -> Result<Box<dyn Query>, SearchError> {
        if text.trim().is_empty() {
            return Ok(Box::new(AllQuery));
        }
        let mut alternatives: Vec<Box<dyn Query>> = Vec::new();
        let mut analyzed = Vec::new();
        for name in fields {
            let layout = self.layout.field(name)?;
            if let Some(f) = layout.text {
                analyzed.push(f);
            } else if let Some((f, _)) = layout.exact {
                // A searchable keyword matches the whole text.
                alternatives.push(Box::new(TermQuery::new(
                    Term::from_field_text(f, text),
                    IndexRecordOption::Basic,
                )));
            }
        }
        if let Some(first) = analyzed.first() {
            // Every TEXT field uses the default analyzer, so one pass splits
            // the words for all of them. A word may match in any field.
            let mut analyzer = self.index.tokenizer_for_field(*first).map_err(|e| self.fail(e))?;
            let mut words = Vec::new();
            analyzer
                .token_stream(text)
                .process(&mut |t| words.push(t.text.clone()));
            words.dedup();
            if !words.is_empty() {
                let all_words = words
                    .iter()
                    .map(|w| {
                        let any_field = analyzed
                            .iter()
                            .map(|f| {
                                let q: Box<dyn Query> = Box::new(TermQuery::new(
                                    Term::from_field_text(*f, w),
                                    IndexRecordOption::Basic,
                                ));
                                (Occur::Should, q)
                            })
                            .collect();
                        let q: Box<dyn Query> = Box::new(BooleanQuery::new(any_field));
                        (Occur::Must, q)
                    })
                    .collect();
                alternatives.push(Box::new(BooleanQuery::new(all_words)));
            }
        }
        // No word to match (all dropped by the analyzer) and no keyword
        // field: nothing matches, as Elasticsearch's `zero_terms_query: none`
        // (empty text, no condition at all, returned above).
        Ok(match alternatives.len() {
            0 => Box::new(EmptyQuery),
            1 => alternatives.swap_remove(0),
            _ => Box::new(BooleanQuery::union(alternatives)),
        })
    }
}

fn term(field: Field, value: &Scalar) -> Term {
    match value {
        Scalar::Str(s) => Term::from_field_text(field, s),
        Scalar::I64(i) => Term::from_field_i64(field, *i),
        Scalar::F64(f) => Term::from_field_f64(field, *f),
        Scalar::Bool(b) => Term::from_field_bool(field, *b),
    }
}

/// Documents without a value in `column`.
fn missing(column: &str) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, Box::new(AllQuery)),
        (
            Occur::MustNot,
            Box::new(ExistsQuery::new(column.to_owned(), false)),
        ),
    ]))
}

/// All of `lowers` and `uppers` at once. tantivy's `RangeQuery` needs at
/// least one bound (it panics otherwise), so no bound at all means "has a
/// value", and extra bounds of the same side become more ranges to meet.
fn range_query(column: &str, lowers: Vec<Bound<Term>>, uppers: Vec<Bound<Term>>) -> Box<dyn Query> {
    let mut lowers = lowers.into_iter();
    let mut uppers = uppers.into_iter();
    let mut ranges: Vec<Box<dyn Query>> = Vec::new();
    loop {
        match (lowers.next(), uppers.next()) {
            (None, None) => break,
            (lower, upper) => ranges.push(Box::new(RangeQuery::new(
                lower.unwrap_or(Bound::Unbounded),
                upper.unwrap_or(Bound::Unbounded),
            ))),
        }
    }
    match ranges.len() {
        0 => Box::new(ExistsQuery::new(column.to_owned(), false)),
        1 => ranges.swap_remove(0),
        _ => Box::new(BooleanQuery::intersection(ranges)),
    }
}

/// The smallest string greater than every string starting with `prefix`,
/// or `None` if there is none (empty prefix, or only `char::MAX`).
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if next == 0xD800 {
            next = 0xE000; // skip the surrogate gap
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// An `in` filter on a column-only field (numbers and dates; strings that
/// are only sorted on cannot be filtered): one pass over the segment's
/// column, each value looked up among the wanted ones.
#[derive(Clone, Debug)]
struct ColumnIn {
    column: String,
    wanted: Wanted,
}

/// The values an `in` filter wants, sorted, as its column stores them.
#[derive(Clone, Debug)]
enum Wanted {
    /// `I64` and `DateTime` (milliseconds).
    Ints(Vec<i64>),
    /// `F64`, by bits (-0.0 folded into 0.0, as documents and filters are).
    Floats(Vec<u64>),
}

impl ColumnIn {
    fn new(column: &str, values: Vec<Scalar>) -> ColumnIn {
        let wanted = match values.first() {
            Some(Scalar::F64(_)) => {
                let mut floats: Vec<u64> = values
                    .iter()
                    .filter_map(|v| match v {
                        Scalar::F64(f) => Some(float_bits(*f)),
                        _ => None,
                    })
                    .collect();
                floats.sort_unstable();
                Wanted::Floats(floats)
            }
            _ => {
                let mut ints: Vec<i64> = values
                    .iter()
                    .filter_map(|v| match v {
                        Scalar::I64(i) => Some(*i),
                        _ => None,
                    })
                    .collect();
                ints.sort_unstable();
                Wanted::Ints(ints)
            }
        };
        ColumnIn {
            column: column.to_owned(),
            wanted,
        }
    }

    fn matches(&self, reader: &SegmentReader) -> ::tantivy::Result<BitSet> {
        fn scan<T: PartialOrd + Copy + Send + Sync + std::fmt::Debug + 'static>(
            column: Option<Column<T>>,
            max_doc: DocId,
            hit: impl Fn(T) -> bool,
        ) -> BitSet {
            let mut bits = BitSet::with_max_value(max_doc);
            if let Some(column) = column {
                for doc in 0..max_doc {
                    if column.values_for_doc(doc).any(&hit) {
                        bits.insert(doc);
                    }
                }
            }
            bits
        }
        let (columns, max_doc) = (reader.fast_fields(), reader.max_doc());
        Ok(match &self.wanted {
            Wanted::Ints(ints) => scan(columns.column_opt::<i64>(&self.column)?, max_doc, |v| {
                ints.binary_search(&v).is_ok()
            }),
            Wanted::Floats(floats) => scan(columns.column_opt::<f64>(&self.column)?, max_doc, |v| {
                floats.binary_search(&float_bits(v)).is_ok()
            }),
        })
    }
}

fn float_bits(f: f64) -> u64 {
    (f + 0.0).to_bits()
}

impl Query for ColumnIn {
    fn weight(&self, _scoring: EnableScoring<'_>) -> ::tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for ColumnIn {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> ::tantivy::Result<Box<dyn Scorer>> {
        let docs = BitSetDocSet::from(self.matches(reader)?);
        Ok(Box::new(ConstScorer::new(docs, boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> ::tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )));
        }
        Ok(Explanation::new("ColumnIn", 1.0))
    }
}
