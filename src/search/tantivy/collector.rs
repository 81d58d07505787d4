//! The collectors: [`TopSorted`] keeps the first `k` matches in sort order
//! strictly after a cursor, in one pass (see "Sort and `search_after`" in the
//! parent module); [`AllIds`] gathers the ids of every match.
//!
//! It owns the sort-value encoding; it must not know about filters or
//! documents.

mod skip;

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use ::tantivy::collector::{Collector, SegmentCollector};
use ::tantivy::columnar::{Column, StrColumn, TermOrdHit};
use ::tantivy::query::Weight;
use ::tantivy::{f64_to_u64, i64_to_u64, DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

pub(super) use self::skip::SummaryCache;
use super::matches::Matches;
use super::ID_COLUMN;
use crate::search::query::FieldValue;
use crate::search::spec::FieldKind;

#[derive(Debug, Clone, Copy)]
pub(super) enum ColumnKind {
    I64,
    F64,
    Bool,
    Str,
}

impl ColumnKind {
    pub(super) fn of(kind: FieldKind) -> ColumnKind {
        match kind {
            FieldKind::Text | FieldKind::Keyword => ColumnKind::Str,
            FieldKind::I64 | FieldKind::DateTime => ColumnKind::I64,
            FieldKind::F64 => ColumnKind::F64,
            FieldKind::Bool => ColumnKind::Bool,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct SortColumn {
    pub(super) column: String,
    pub(super) kind: ColumnKind,
    pub(super) descending: bool,
}

/// A sort value comparable across segments.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SortVal {
    Missing,
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
}

impl SortVal {
    pub(super) fn into_field_value(self) -> FieldValue {
        match self {
            SortVal::Missing => FieldValue::Null,
            SortVal::I64(i) => FieldValue::I64(i),
            SortVal::F64(f) => FieldValue::F64(f),
            SortVal::Bool(b) => FieldValue::Bool(b),
            SortVal::Str(s) => FieldValue::Str(s),
        }
    }

    /// The order the per-segment `u128` encoding follows: missing last in
    /// both directions, floats by `total_cmp` (as tantivy's `f64_to_u64`),
    /// strings by bytes (as term ordinals).
    pub(super) fn cmp_directed(&self, other: &SortVal, descending: bool) -> Ordering {
        let natural = match (self, other) {
            (SortVal::Missing, SortVal::Missing) => return Ordering::Equal,
            (SortVal::Missing, _) => return Ordering::Greater,
            (_, SortVal::Missing) => return Ordering::Less,
            (SortVal::I64(a), SortVal::I64(b)) => a.cmp(b),
            (SortVal::F64(a), SortVal::F64(b)) => a.total_cmp(b),
            (SortVal::Bool(a), SortVal::Bool(b)) => a.cmp(b),
            (SortVal::Str(a), SortVal::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            // Values of one key always share a type; any order is total.
            (a, b) => a.rank().cmp(&b.rank()),
        };
        if descending {
            natural.reverse()
        } else {
            natural
        }
    }

    fn rank(&self) -> u8 {
        match self {
            SortVal::Missing => 0,
            SortVal::I64(_) => 1,
            SortVal::F64(_) => 2,
            SortVal::Bool(_) => 3,
            SortVal::Str(_) => 4,
        }
    }
}

pub(super) fn cmp_keys(keys: &[SortColumn], a: &[SortVal], b: &[SortVal]) -> Ordering {
    keys.iter()
        .zip(a.iter().zip(b))
        .map(|(key, (x, y))| x.cmp_directed(y, key.descending))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// A hit found by [`TopSorted`]: its sort values (one per applied key) and
/// where to load it.
pub(super) struct Candidate {
    pub(super) values: Vec<SortVal>,
    pub(super) id: String,
    pub(super) addr: DocAddress,
}

/// Keeps the `k` first of `matches` in sort order that come strictly after
/// `after`, and counts them all (a population count of the matches'
/// bitsets). With `skip`, documents that cannot make the page are not
/// visited (see `skip`).
pub(super) struct TopSorted {
    keys: Vec<SortColumn>,
    after: Option<Vec<SortVal>>,
    k: usize,
    matches: Matches,
    skip: Option<Arc<SummaryCache>>,
    /// The best `k`-th first-key code any segment has found so far
    /// (`u64::MAX`: none yet), when that key is numeric, so its codes
    /// compare across segments: a document whose first key is worse cannot
    /// make the page, whichever segment it is in.
    bound: AtomicU64,
    /// Matches the segments' collectors looked at.
    visited: AtomicU64,
}

impl TopSorted {
    pub(super) fn new(
        keys: Vec<SortColumn>,
        after: Option<Vec<SortVal>>,
        k: usize,
        matches: Matches,
        skip: Option<Arc<SummaryCache>>,
    ) -> TopSorted {
        TopSorted {
            keys,
            after,
            k,
            matches,
            skip,
            bound: AtomicU64::new(u64::MAX),
            visited: AtomicU64::new(0),
        }
    }

    /// How many matches were looked at (all of them, unless skipping).
    #[cfg(test)]
    pub(super) fn visited(&self) -> u64 {
        self.visited.load(AtomicOrdering::Relaxed)
    }

    /// Shares this segment's `k`-th first key, then drops the hits that
    /// another segment's (or its own) `k` hits beat on the first key alone.
    fn share_bound(&self, top: &mut SegmentTop) {
        if self
            .keys
            .first()
            .is_none_or(|k| matches!(k.kind, ColumnKind::Str))
            || top.k == 0
        {
            return;
        }
        if top.heap.len() >= top.k {
            if let Some(worst) = top.heap.peek().and_then(|e| e.codes.first()) {
                if let Ok(worst) = u64::try_from(*worst) {
                    self.bound.fetch_min(worst, AtomicOrdering::Relaxed);
                }
            }
        }
        let bound = self.bound.load(AtomicOrdering::Relaxed);
        if bound != u64::MAX {
            top.heap
                .retain(|e| e.codes.first().is_none_or(|c| *c <= u128::from(bound)));
        }
    }
}

/// One sort key's column in one segment (`None`: no document of the segment
/// has a value).
enum KeyColumn {
    I64(Option<Column<i64>>),
    F64(Option<Column<f64>>),
    Bool(Option<Column<bool>>),
    Str(Option<StrColumn>),
}

/// Order-preserving code of an optional `u64`-mapped value in a direction.
fn directed(raw: Option<u64>, descending: bool) -> u128 {
    match raw {
        None => u128::MAX,
        Some(v) if descending => u128::from(u64::MAX - v),
        Some(v) => u128::from(v),
    }
}

/// Term ordinal `o` codes as `2o + 1`, leaving the even codes for strings
/// that fall between two terms of the segment.
fn ord_code(ord: u64) -> u64 {
    ord.saturating_mul(2).saturating_add(1)
}

impl KeyColumn {
    fn open(segment: &SegmentReader, key: &SortColumn) -> ::tantivy::Result<KeyColumn> {
        let ff = segment.fast_fields();
        Ok(match key.kind {
            ColumnKind::I64 => KeyColumn::I64(ff.column_opt(&key.column)?),
            ColumnKind::F64 => KeyColumn::F64(ff.column_opt(&key.column)?),
            ColumnKind::Bool => KeyColumn::Bool(ff.column_opt(&key.column)?),
            ColumnKind::Str => KeyColumn::Str(ff.str(&key.column)?),
        })
    }

    /// [`raw`](Self::raw) for a block of documents at once (tantivy's
    /// columns read blocks faster than single values).
    fn raw_block(&self, docs: &[DocId], out: &mut Vec<Option<u64>>) {
        fn read<T: Copy + PartialOrd + std::fmt::Debug + Send + Sync + 'static>(
            column: &Column<T>,
            docs: &[DocId],
            out: &mut Vec<Option<u64>>,
            map: impl Fn(T) -> u64,
        ) {
            let mut vals: Vec<Option<T>> = vec![None; docs.len()];
            column.first_vals(docs, &mut vals);
            out.extend(vals.into_iter().map(|v| v.map(&map)));
        }
        out.clear();
        match self {
            KeyColumn::I64(Some(c)) => read(c, docs, out, i64_to_u64),
            KeyColumn::F64(Some(c)) => read(c, docs, out, f64_to_u64),
            KeyColumn::Bool(Some(c)) => read(c, docs, out, u64::from),
            KeyColumn::Str(Some(c)) => read(c.ords(), docs, out, ord_code),
            _ => out.resize(docs.len(), None),
        }
    }

    fn raw(&self, doc: DocId) -> Option<u64> {
        match self {
            KeyColumn::I64(c) => c.as_ref()?.first(doc).map(i64_to_u64),
            KeyColumn::F64(c) => c.as_ref()?.first(doc).map(f64_to_u64),
            KeyColumn::Bool(c) => c.as_ref()?.first(doc).map(u64::from),
            KeyColumn::Str(c) => c.as_ref()?.ords().first(doc).map(ord_code),
        }
    }

    /// The code of a cursor value in this segment.
    fn code_of(&self, value: &SortVal, descending: bool) -> ::tantivy::Result<u128> {
        let raw = match (self, value) {
            (_, SortVal::Missing) => None,
            (KeyColumn::I64(_), SortVal::I64(i)) => Some(i64_to_u64(*i)),
            (KeyColumn::F64(_), SortVal::F64(f)) => Some(f64_to_u64(*f)),
            (KeyColumn::Bool(_), SortVal::Bool(b)) => Some(u64::from(*b)),
            // No document of the segment has a value: every one is missing,
            // so any present code compares the same way.
            (KeyColumn::Str(None), SortVal::Str(_)) => Some(0),
            (KeyColumn::Str(Some(c)), SortVal::Str(s)) => {
                let dictionary = c.dictionary();
                let terms = u64::try_from(dictionary.num_terms()).unwrap_or(u64::MAX);
                Some(match dictionary.term_ord_or_next(s.as_bytes())? {
                    TermOrdHit::Exact(ord) => ord_code(ord),
                    // Past the last term tantivy answers `u64::MAX`.
                    TermOrdHit::Next(ord) => ord.min(terms).saturating_mul(2),
                })
            }
            (_, v) => {
                return Err(::tantivy::TantivyError::InvalidArgument(format!(
                    "cursor value {v:?} does not fit its sort column"
                )))
            }
        };
        Ok(directed(raw, descending))
    }

    fn value(&self, doc: DocId, buf: &mut String) -> ::tantivy::Result<SortVal> {
        Ok(match self {
            KeyColumn::I64(c) => c
                .as_ref()
                .and_then(|c| c.first(doc))
                .map_or(SortVal::Missing, SortVal::I64),
            KeyColumn::F64(c) => c
                .as_ref()
                .and_then(|c| c.first(doc))
                .map_or(SortVal::Missing, SortVal::F64),
            KeyColumn::Bool(c) => c
                .as_ref()
                .and_then(|c| c.first(doc))
                .map_or(SortVal::Missing, SortVal::Bool),
            KeyColumn::Str(c) => match c.as_ref().and_then(|c| c.ords().first(doc).map(|o| (c, o))) {
                None => SortVal::Missing,
                Some((c, ord)) => {
                    buf.clear();
                    c.ord_to_str(ord, buf)?;
                    SortVal::Str(buf.clone())
                }
            },
        })
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    codes: Vec<u128>,
    doc: DocId,
}

pub(super) struct SegmentTop {
    segment: SegmentOrdinal,
    columns: Vec<KeyColumn>,
    descending: Vec<bool>,
    id: Option<StrColumn>,
    /// Which key, if any, is the id column (its value is the id).
    id_key: Option<usize>,
    after: Option<Vec<u128>>,
    k: usize,
    /// Max-heap: the worst kept entry is on top, ready to be replaced.
    heap: BinaryHeap<Entry>,
    scratch: Vec<u128>,
    /// First-key values of one block of documents (`collect_block`).
    block: Vec<Option<u64>>,
    total: u64,
}

impl Collector for TopSorted {
    type Fruit = ::tantivy::Result<(u64, Vec<Candidate>)>;
    type Child = SegmentTop;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> ::tantivy::Result<SegmentTop> {
        let columns = self
            .keys
            .iter()
            .map(|k| KeyColumn::open(reader, k))
            .collect::<::tantivy::Result<Vec<_>>>()?;
        let after = match &self.after {
            None => None,
            Some(values) => Some(
                columns
                    .iter()
                    .zip(values.iter().zip(&self.keys))
                    .map(|(c, (v, k))| c.code_of(v, k.descending))
                    .collect::<::tantivy::Result<Vec<_>>>()?,
            ),
        };
        Ok(SegmentTop {
            segment,
            descending: self.keys.iter().map(|k| k.descending).collect(),
            columns,
            id: reader.fast_fields().str(ID_COLUMN)?,
            id_key: self.keys.iter().position(|k| k.column == ID_COLUMN),
            after,
            k: self.k,
            heap: BinaryHeap::new(),
            scratch: Vec::with_capacity(self.keys.len()),
            block: Vec::new(),
            total: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    /// The `weight` is not used: documents come from `matches` (run the
    /// collector with `AllQuery`).
    fn collect_segment(
        &self,
        _weight: &dyn Weight,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> ::tantivy::Result<Self::Fruit> {
        let matches = self.matches.segment(reader)?;
        let total = matches.count();
        let mut top = self.for_segment(segment, reader)?;
        let skipped = match (&self.skip, self.keys.first()) {
            (Some(cache), Some(first)) => {
                let bound = (!matches!(first.kind, ColumnKind::Str)).then_some(&self.bound);
                top.collect_skipping(&matches, reader, cache, &first.column, bound)?
            }
            _ => false,
        };
        if !skipped {
            top = self.for_segment(segment, reader)?;
            let mut block = Vec::with_capacity(64);
            for doc in matches.docs() {
                block.push(doc);
                if block.len() == block.capacity() {
                    top.collect_block(&block);
                    block.clear();
                }
            }
            top.collect_block(&block);
        }
        self.visited.fetch_add(top.total, AtomicOrdering::Relaxed);
        top.total = total;
        self.share_bound(&mut top);
        Ok(top.harvest())
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> ::tantivy::Result<Self::Fruit> {
        let mut total = 0;
        let mut all = Vec::new();
        for fruit in fruits {
            let (count, candidates) = fruit?;
            total += count;
            all.extend(candidates);
        }
        all.sort_by(|a, b| cmp_keys(&self.keys, &a.values, &b.values));
        all.truncate(self.k);
        Ok(Ok((total, all)))
    }
}

impl SegmentCollector for SegmentTop {
    type Fruit = ::tantivy::Result<(u64, Vec<Candidate>)>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.total += 1;
        if self.k == 0 {
            return;
        }
        // Codes are read key by key and compared as they come: most
        // documents are decided by the first key (before the cursor, or
        // behind the worst kept hit) without reading the others.
        let SegmentTop {
            columns,
            descending,
            after,
            heap,
            scratch,
            k,
            ..
        } = self;
        let worst = if heap.len() < *k { None } else { heap.peek() };
        let mut vs_after = if after.is_some() {
            Ordering::Equal
        } else {
            Ordering::Greater
        };
        let mut vs_worst = if worst.is_some() {
            Ordering::Equal
        } else {
            Ordering::Less
        };
        scratch.clear();
        for (i, (column, descending)) in columns.iter().zip(descending.iter()).enumerate() {
            let code = directed(column.raw(doc), *descending);
            if vs_after.is_eq() {
                vs_after = after
                    .as_ref()
                    .and_then(|a| a.get(i))
                    .map_or(Ordering::Greater, |a| code.cmp(a));
                if vs_after.is_lt() {
                    return;
                }
            }
            if vs_worst.is_eq() {
                vs_worst = worst
                    .and_then(|w| w.codes.get(i))
                    .map_or(Ordering::Less, |w| code.cmp(w));
                if vs_worst.is_gt() {
                    return;
                }
            }
            scratch.push(code);
        }
        // Equal to the cursor or to a kept hit: the same document.
        if !vs_after.is_gt() || !vs_worst.is_lt() {
            return;
        }
        if heap.len() < *k {
            heap.push(Entry {
                codes: scratch.clone(),
                doc,
            });
        } else if let Some(mut worst) = heap.peek_mut() {
            // Reuse the evicted entry's allocation; the heap re-sifts when
            // `worst` is dropped.
            worst.codes.clone_from(scratch);
            worst.doc = doc;
        }
    }

    /// Rejects most documents of a block on their first key alone (before
    /// the cursor, or behind the worst hit kept), reading that key for the
    /// whole block at once; the rest go through [`collect`](Self::collect).
    fn collect_block(&mut self, docs: &[DocId]) {
        let first_after = self.after.as_ref().and_then(|a| a.first().copied());
        let worst_first = |top: &SegmentTop| {
            if top.heap.len() < top.k {
                None
            } else {
                top.heap.peek().and_then(|w| w.codes.first().copied())
            }
        };
        let mut worst = worst_first(self);
        if self.k == 0 || self.columns.is_empty() || (first_after.is_none() && worst.is_none()) {
            for &doc in docs {
                self.collect(doc, 0.0);
            }
            return;
        }
        let mut block = std::mem::take(&mut self.block);
        self.columns[0].raw_block(docs, &mut block);
        let descending = self.descending[0];
        for (&doc, raw) in docs.iter().zip(&block) {
            let code = directed(*raw, descending);
            if first_after.is_some_and(|a| code < a) || worst.is_some_and(|w| code > w) {
                self.total += 1;
                continue;
            }
            self.collect(doc, 0.0);
            worst = worst_first(self);
        }
        self.block = block;
    }

    fn harvest(self) -> Self::Fruit {
        let entries = self.heap.into_vec();
        let ids = match &self.id {
            Some(column) => ids_of(column, entries.iter().map(|e| e.doc))?,
            None => vec![String::new(); entries.len()],
        };
        let mut buf = String::new();
        let mut out = Vec::with_capacity(entries.len());
        for (entry, id) in entries.into_iter().zip(ids) {
            let values = self
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| match self.id_key {
                    Some(key) if key == i => Ok(SortVal::Str(id.clone())),
                    _ => c.value(entry.doc, &mut buf),
                })
                .collect::<::tantivy::Result<Vec<_>>>()?;
            out.push(Candidate {
                values,
                id,
                addr: DocAddress::new(self.segment, entry.doc),
            });
        }
        Ok((self.total, out))
    }
}

/// The ids of `docs`, in order, read from the dictionary in one ordered
/// pass: its blocks are compressed, and decoding one per id cost more than
/// the whole search.
fn ids_of(column: &StrColumn, docs: impl Iterator<Item = DocId>) -> ::tantivy::Result<Vec<String>> {
    let ords: Vec<Option<u64>> = docs.map(|doc| column.ords().first(doc)).collect();
    let mut sorted: Vec<u64> = ords.iter().flatten().copied().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut terms = Vec::with_capacity(sorted.len());
    column.dictionary().sorted_ords_to_term_cb(&sorted, |bytes| {
        terms.push(String::from_utf8_lossy(bytes).into_owned())
    })?;
    Ok(ords
        .into_iter()
        .map(|ord| {
            ord.and_then(|o| sorted.binary_search(&o).ok())
                .and_then(|i| terms.get(i).cloned())
                .unwrap_or_default()
        })
        .collect())
}

/// Collects the id of every match (dependency rebuilds need them all).
pub(super) struct AllIds;

pub(super) struct SegmentIds {
    id: Option<StrColumn>,
    ords: Vec<u64>,
}

impl Collector for AllIds {
    type Fruit = ::tantivy::Result<Vec<String>>;
    type Child = SegmentIds;

    fn for_segment(&self, _segment: SegmentOrdinal, reader: &SegmentReader) -> ::tantivy::Result<SegmentIds> {
        Ok(SegmentIds {
            id: reader.fast_fields().str(ID_COLUMN)?,
            ords: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> ::tantivy::Result<Self::Fruit> {
        let mut all = Vec::new();
        for fruit in fruits {
            all.extend(fruit?);
        }
        Ok(Ok(all))
    }
}

impl SegmentCollector for SegmentIds {
    type Fruit = ::tantivy::Result<Vec<String>>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let Some(ord) = self.id.as_ref().and_then(|c| c.ords().first(doc)) {
            self.ords.push(ord);
        }
    }

    fn harvest(mut self) -> Self::Fruit {
        let Some(column) = self.id else {
            return Ok(Vec::new());
        };
        // Sorted ordinals let the dictionary decode each block once.
        self.ords.sort_unstable();
        let mut ids = Vec::with_capacity(self.ords.len());
        column.dictionary().sorted_ords_to_term_cb(&self.ords, |bytes| {
            ids.push(String::from_utf8_lossy(bytes).into_owned())
        })?;
        Ok(ids)
    }
}
