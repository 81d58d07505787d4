//! Skipping what cannot make the page (Elasticsearch's numeric sort
//! optimization, on tantivy's columns).
//!
//! When the total is not asked for, a segment's first `k` hits after the
//! cursor are found without visiting every match: the first sort key's
//! values are read through windows of that key, best first. A window is a
//! range of codes `[from, to]` just after the cursor (or from the best
//! value on page 1); its candidates are the documents whose first key falls
//! in it, found through per-block min/max of the column (blocks of
//! [`BLOCK`] documents whose range misses the window are not read), then
//! checked against the filters' bitset. Once `k`
//! hits are kept, every unvisited document has a first key past the window,
//! so it ranks behind all of them: the page is exact. Windows are sized from
//! a sorted sample of the column and the filter's selectivity seen so far,
//! so a page costs a few windows, not a pass over every match.
//!
//! The block bounds and sample of a segment's column are built once (a pass
//! over the column) and cached: segments never change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use ::tantivy::index::SegmentId;
use ::tantivy::{DocId, SegmentReader};
use parking_lot::Mutex;

use ::tantivy::collector::SegmentCollector;

use super::{KeyColumn, SegmentTop};
use crate::search::tantivy::matches::DocBits;

/// Documents per block of min/max bounds (tiny in tests, so their
/// corpora span many blocks and windows).
const BLOCK: u32 = if cfg!(test) { 16 } else { 512 };
/// Values kept in a column's sample (evenly spaced documents).
const SAMPLE: u32 = if cfg!(test) { 32 } else { 4096 };
/// Cached columns before the cache starts over (segments merged away leave
/// entries behind; a fresh cache rebuilds what is still used).
const CACHE_CAPACITY: usize = 512;

/// One block's bounds: the least and greatest value code present, and
/// whether any document of the block has a value.
#[derive(Clone, Copy)]
struct Bounds {
    min: u64,
    max: u64,
    any: bool,
}

/// A segment column's block bounds and sorted sample.
pub(in crate::search::tantivy) struct ColumnSummary {
    blocks: Vec<Bounds>,
    /// Sorted value codes of evenly spaced documents that have one.
    sample: Vec<u64>,
    /// Documents with a value (the sample stands for them).
    present: u64,
    min: u64,
    max: u64,
}

impl ColumnSummary {
    fn build(column: &KeyColumn, max_doc: DocId) -> ColumnSummary {
        let mut blocks = Vec::with_capacity(max_doc.div_ceil(BLOCK) as usize);
        let mut docs: Vec<DocId> = Vec::with_capacity(BLOCK as usize);
        let mut values = Vec::with_capacity(BLOCK as usize);
        let mut present = 0;
        let (mut min, mut max) = (u64::MAX, u64::MIN);
        for start in (0..max_doc).step_by(BLOCK as usize) {
            docs.clear();
            docs.extend(start..max_doc.min(start + BLOCK));
            column.raw_block(&docs, &mut values);
            let mut bounds = Bounds {
                min: u64::MAX,
                max: u64::MIN,
                any: false,
            };
            for value in values.iter().flatten() {
                bounds.min = bounds.min.min(*value);
                bounds.max = bounds.max.max(*value);
                bounds.any = true;
                present += 1;
            }
            if bounds.any {
                min = min.min(bounds.min);
                max = max.max(bounds.max);
            }
            blocks.push(bounds);
        }
        let step = (max_doc / SAMPLE).max(1);
        let picked: Vec<DocId> = (0..max_doc).step_by(step as usize).collect();
        column.raw_block(&picked, &mut values);
        let mut sample: Vec<u64> = values.iter().flatten().copied().collect();
        sample.sort_unstable();
        ColumnSummary {
            blocks,
            sample,
            present,
            min,
            max,
        }
    }

    /// The far end of a window that starts at `from` (a value, inclusive)
    /// and should hold about `wanted` documents' values, in the direction
    /// of the sort (`descending`: towards smaller values).
    fn window_end(&self, from: u64, wanted: f64, descending: bool) -> u64 {
        let per_sample = self.present as f64 / self.sample.len().max(1) as f64;
        let steps = (wanted / per_sample).ceil() as usize;
        if descending {
            let before = self.sample.partition_point(|&v| v <= from);
            if before > steps {
                self.sample[before - 1 - steps].min(from)
            } else {
                self.min.min(from)
            }
        } else {
            let at = self.sample.partition_point(|&v| v < from);
            match self.sample.get(at + steps) {
                Some(&end) => end.max(from),
                None => self.max.max(from),
            }
        }
    }
}

/// Column summaries by segment and column, shared by every search of an
/// index.
#[derive(Default)]
pub(in crate::search::tantivy) struct SummaryCache {
    columns: Mutex<HashMap<(SegmentId, String), Arc<ColumnSummary>>>,
}

impl SummaryCache {
    fn get(&self, reader: &SegmentReader, name: &str, column: &KeyColumn) -> Arc<ColumnSummary> {
        let key = (reader.segment_id(), name.to_owned());
        if let Some(summary) = self.columns.lock().get(&key) {
            return Arc::clone(summary);
        }
        // Built outside the lock: another search may build the same one.
        let summary = Arc::new(ColumnSummary::build(column, reader.max_doc()));
        let mut columns = self.columns.lock();
        if columns.len() >= CACHE_CAPACITY {
            columns.clear();
        }
        columns.insert(key, Arc::clone(&summary));
        summary
    }
}

impl SegmentTop {
    /// Keeps this segment's first `k` hits after the cursor, visiting only
    /// documents whose first key could make the page. `false`: the
    /// segment cannot be done this way (no value for enough of its
    /// documents to fill the page, say), and the caller visits every
    /// match with a fresh collector instead.
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
        let summary = cache.get(reader, column_name, &self.columns[0]);
        if summary.present == 0 {
            return Ok(false);
        }
        // Where the first window starts: the cursor's first value (its ties
        // are decided by the later keys), or the best value there is.
        let mut from = match self.after.as_ref().and_then(|a| a.first()) {
            None if descending => summary.max,
            None => summary.min,
            // Only documents without a value come after this cursor.
            Some(&u128::MAX) => return Ok(false),
            Some(&code) => {
                let code = u64::try_from(code).unwrap_or(u64::MAX);
                let raw = if descending { u64::MAX - code } else { code };
                if descending && raw < summary.min || !descending && raw > summary.max {
                    return Ok(false);
                }
                raw
            }
        };
        let mut wanted = self.k as f64 * 2.0;
        let mut docs: Vec<DocId> = Vec::with_capacity(BLOCK as usize);
        let mut values = Vec::with_capacity(BLOCK as usize);
        let mut candidates = Vec::new();
        loop {
            // Past the best `k`-th first key another segment found, nothing
            // here can make the page.
            let code = if descending { u64::MAX - from } else { from };
            if bound.is_some_and(|b| {
                let b = b.load(AtomicOrdering::Relaxed);
                b != u64::MAX && code > b
            }) {
                return Ok(true);
            }
            let end = summary.window_end(from, wanted, descending);
            let (low, high) = if descending { (end, from) } else { (from, end) };
            candidates.clear();
            for (i, bounds) in summary.blocks.iter().enumerate() {
                if !bounds.any || bounds.max < low || bounds.min > high {
                    continue;
                }
                let start = i as DocId * BLOCK;
                docs.clear();
                docs.extend(start..max_doc.min(start + BLOCK));
                self.columns[0].raw_block(&docs, &mut values);
                candidates.extend(
                    docs.iter()
                        .zip(&values)
                        .filter(|(_, v)| v.is_some_and(|v| low <= v && v <= high))
                        .map(|(doc, _)| *doc),
                );
            }
            let mut matched = 0usize;
            for &doc in &candidates {
                if matches.contains(doc) {
                    matched += 1;
                    self.collect(doc, 0.0);
                }
            }
            if self.heap.len() >= self.k {
                return Ok(true);
            }
            let exhausted = if descending {
                end <= summary.min
            } else {
                end >= summary.max
            };
            if exhausted {
                // Hits are still missing, and only documents without a
                // value are left.
                return Ok(false);
            }
            from = if descending { end - 1 } else { end + 1 };
            let missing = (self.k - self.heap.len()) as f64;
            let selectivity = (matched as f64 / candidates.len().max(1) as f64).max(1e-4);
            wanted = (missing / selectivity * 2.0).max(wanted * 4.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_ends_follow_the_sample_in_both_directions() {
        let summary = ColumnSummary {
            blocks: Vec::new(),
            sample: (0..100).map(|v| v * 10).collect(),
            present: 1000,
            min: 0,
            max: 990,
        };
        // 10 documents per sample: 50 wanted are 5 samples on.
        assert_eq!(summary.window_end(0, 50.0, false), 50);
        assert_eq!(summary.window_end(990, 50.0, true), 940);
        // Past the ends: the column's bounds.
        assert_eq!(summary.window_end(980, 500.0, false), 990);
        assert_eq!(summary.window_end(15, 500.0, true), 0);
        // Never behind the start.
        assert!(summary.window_end(995, 1.0, false) >= 995);
    }
}
