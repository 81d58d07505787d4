//! Skipping what cannot make the page (Elasticsearch's numeric sort
//! optimization, on tantivy's columns).
//!
//! A segment's first `k` hits after the cursor are found without visiting
//! every match: its documents are walked in the order of the first sort
//! key, from the cursor's value (or the best value there is, on page 1),
//! each checked against the filters' bitset, until `k` hits are kept and
//! the next value ranks behind the worst of them (documents with an equal
//! first key are all visited: the later keys decide between them). Every
//! document not visited ranks behind the page, so the page is exact, and
//! it costs about `k / selectivity` documents at any depth.
//!
//! The order is a per-segment sorted copy of the column (values and
//! document ids, 12 bytes a document), Lucene's points tree in its
//! simplest form, built on a segment's first search by that key and cached
//! (segments never change) within a memory budget.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use ::tantivy::collector::SegmentCollector;
use ::tantivy::index::SegmentId;
use ::tantivy::{DocId, SegmentReader};

use super::{KeyColumn, SegmentTop};
use crate::search::tantivy::matches::DocBits;

/// Memory the sorted columns may take, all indexes of a backend together.
const CACHE_BYTES: u64 = 256 << 20;
/// Documents read from a column at once while building its order.
const READ_BLOCK: u32 = 1024;

/// A segment column's documents that have a value, ascending by
/// (value code, document).
pub(in crate::search::tantivy) struct SortedColumn {
    values: Vec<u64>,
    docs: Vec<DocId>,
}

impl SortedColumn {
    fn build(column: &KeyColumn, max_doc: DocId) -> SortedColumn {
        let mut pairs: Vec<(u64, DocId)> = Vec::new();
        let mut docs: Vec<DocId> = Vec::with_capacity(READ_BLOCK as usize);
        let mut values = Vec::with_capacity(READ_BLOCK as usize);
        for start in (0..max_doc).step_by(READ_BLOCK as usize) {
            docs.clear();
            docs.extend(start..max_doc.min(start + READ_BLOCK));
            column.raw_block(&docs, &mut values);
            pairs.extend(
                docs.iter()
                    .zip(&values)
                    .filter_map(|(&doc, v)| v.map(|v| (v, doc))),
            );
        }
        pairs.sort_unstable();
        let (values, docs) = pairs.into_iter().unzip();
        SortedColumn { values, docs }
    }

    fn bytes(&self) -> u32 {
        u32::try_from(self.values.len() * 12).unwrap_or(u32::MAX)
    }
}

/// Sorted columns by segment and column, shared by every search of a
/// backend.
pub(in crate::search::tantivy) struct SummaryCache {
    columns: moka::sync::Cache<(SegmentId, String), Arc<SortedColumn>>,
}

impl Default for SummaryCache {
    fn default() -> Self {
        Self {
            columns: moka::sync::Cache::builder()
                .max_capacity(CACHE_BYTES)
                .weigher(|_, column: &Arc<SortedColumn>| column.bytes())
                .build(),
        }
    }
}

impl SummaryCache {
    fn get(&self, reader: &SegmentReader, name: &str, column: &KeyColumn) -> Arc<SortedColumn> {
        let key = (reader.segment_id(), name.to_owned());
        self.columns
            .get_with(key, || Arc::new(SortedColumn::build(column, reader.max_doc())))
    }
}

impl SegmentTop {
    /// Keeps this segment's first `k` hits after the cursor, visiting only
    /// documents whose first key could make the page. `false`: the
    /// segment cannot be done this way (too few documents with a value to
    /// fill the page, say), and the caller visits every match with a fresh
    /// collector instead.
    pub(super) fn collect_skipping(
        &mut self,
        matches: &DocBits,
        reader: &SegmentReader,
        cache: &SummaryCache,
        column_name: &str,
        bound: Option<&AtomicU64>,
    ) -> ::tantivy::Result<bool> {
        if self.k == 0 {
            return Ok(true);
        }
        if self.columns.is_empty() {
            return Ok(false);
        }
        let max_doc = reader.max_doc();
        if (self.k as u64).saturating_mul(8) >= u64::from(max_doc) {
            return Ok(false);
        }
        let descending = self.descending[0];
        let sorted = cache.get(reader, column_name, &self.columns[0]);
        let code_of = |raw: u64| if descending { u64::MAX - raw } else { raw };
        // Where the walk starts: the cursor's first value (its ties are
        // decided by the later keys), or the best value there is.
        let start = match self.after.as_ref().and_then(|a| a.first()) {
            None => None,
            // Only documents without a value come after this cursor.
            Some(&u128::MAX) => return Ok(false),
            Some(&code) => Some(code_of(u64::try_from(code).unwrap_or(u64::MAX))),
        };
        let values = &sorted.values;
        // Positions in walking order: ascending from `first`, or
        // descending from just before `end`.
        let (first, end) = match (descending, start) {
            (false, None) => (0, values.len()),
            (false, Some(raw)) => (values.partition_point(|&v| v < raw), values.len()),
            (true, None) => (0, values.len()),
            (true, Some(raw)) => (0, values.partition_point(|&v| v <= raw)),
        };
        let positions: Box<dyn Iterator<Item = usize>> = if descending {
            Box::new((first..end).rev())
        } else {
            Box::new(first..end)
        };
        for (visited, i) in positions.enumerate() {
            let code = code_of(values[i]);
            if self.heap.len() >= self.k {
                let worst = self.heap.peek().and_then(|e| e.codes.first()).copied();
                if worst.is_some_and(|w| u128::from(code) > w) {
                    return Ok(true);
                }
            }
            // Past the best `k`-th first key another segment found, nothing
            // here can make the page (checked now and then: it is shared).
            if visited % 256 == 0 {
                if let Some(bound) = bound {
                    let bound = bound.load(AtomicOrdering::Relaxed);
                    if bound != u64::MAX && code > bound {
                        return Ok(true);
                    }
                }
            }
            let doc = sorted.docs[i];
            if matches.contains(doc) {
                self.collect(doc, 0.0);
            }
        }
        // Every document with a value is visited; if the page is not full,
        // documents without one may still make it.
        Ok(self.heap.len() >= self.k)
    }
}
