//! Which documents of a segment match a search's filters, as a bitset per
//! segment: each filter clause's matches are computed once per segment and
//! cached (segments never change; Lucene's query cache and Elasticsearch's
//! filter cache do the same), so a page ANDs a few cached bitsets with the
//! segment's live documents instead of intersecting postings and columns
//! again. The total is the bitset's population count; a candidate hit is one
//! bit test.
//!
//! It must not know about sort orders or documents.

use std::sync::Arc;

use ::tantivy::query::{EnableScoring, Query, Weight};
use ::tantivy::{DocId, Searcher, SegmentReader};

use crate::search::query::Filter;

/// Cached bitsets, by weight (bytes) at most this much.
const CACHE_BYTES: u64 = 64 << 20;

/// The documents of one segment, one bit each.
#[derive(Clone)]
pub(super) struct DocBits {
    words: Vec<u64>,
}

impl DocBits {
    fn empty(max_doc: DocId) -> DocBits {
        DocBits {
            words: vec![0; max_doc.div_ceil(64) as usize],
        }
    }

    fn full(max_doc: DocId) -> DocBits {
        let mut bits = DocBits {
            words: vec![u64::MAX; max_doc.div_ceil(64) as usize],
        };
        if !max_doc.is_multiple_of(64) {
            if let Some(last) = bits.words.last_mut() {
                *last = (1u64 << (max_doc % 64)) - 1;
            }
        }
        bits
    }

    fn insert(&mut self, doc: DocId) {
        if let Some(word) = self.words.get_mut((doc / 64) as usize) {
            *word |= 1 << (doc % 64);
        }
    }

    pub(super) fn contains(&self, doc: DocId) -> bool {
        self.words
            .get((doc / 64) as usize)
            .is_some_and(|w| w & (1 << (doc % 64)) != 0)
    }

    fn and(&mut self, other: &DocBits) {
        for (word, other) in self.words.iter_mut().zip(&other.words) {
            *word &= other;
        }
    }

    pub(super) fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The documents in the set, ascending.
    pub(super) fn docs(&self) -> impl Iterator<Item = DocId> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let base = i as DocId * 64;
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(base + bit)
            })
        })
    }

    fn bytes(&self) -> u32 {
        u32::try_from(self.words.len() * 8).unwrap_or(u32::MAX)
    }
}

/// What a cached bitset is the matches of: a clause (its filter, as JSON)
/// or the live documents (by how many are deleted: deletes only grow).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Clause(String),
    Alive(u32),
}

/// Bitsets by segment and clause, shared by every search of an index.
pub(super) struct MatchCache {
    bits: moka::sync::Cache<(::tantivy::index::SegmentId, Key), Arc<DocBits>>,
}

impl Default for MatchCache {
    fn default() -> Self {
        Self {
            bits: moka::sync::Cache::builder()
                .max_capacity(CACHE_BYTES)
                .weigher(|_, bits: &Arc<DocBits>| bits.bytes())
                .build(),
        }
    }
}

/// A search's filter clauses, ready to run on any segment.
pub(super) struct Matches {
    clauses: Vec<(String, Box<dyn Weight>)>,
    cache: Arc<MatchCache>,
}

impl Matches {
    /// `clauses`: each filter with its query (every one must hold).
    pub(super) fn new(
        searcher: &Searcher,
        clauses: Vec<(&Filter, Box<dyn Query>)>,
        cache: Arc<MatchCache>,
    ) -> ::tantivy::Result<Matches> {
        let scoring = EnableScoring::disabled_from_searcher(searcher);
        let clauses = clauses
            .into_iter()
            .map(|(filter, query)| {
                let key = serde_json::to_string(filter).unwrap_or_default();
                Ok((key, query.weight(scoring)?))
            })
            .collect::<::tantivy::Result<_>>()?;
        Ok(Matches { clauses, cache })
    }

    /// The live documents of `reader` every clause matches.
    pub(super) fn segment(&self, reader: &SegmentReader) -> ::tantivy::Result<DocBits> {
        let segment = reader.segment_id();
        let max_doc = reader.max_doc();
        let mut bits = match reader.alive_bitset() {
            None => DocBits::full(max_doc),
            Some(alive) => {
                let key = (segment, Key::Alive(reader.num_deleted_docs()));
                match self.cache.bits.get(&key) {
                    Some(bits) => DocBits::clone(&bits),
                    None => {
                        let mut bits = DocBits::empty(max_doc);
                        alive.iter_alive().for_each(|doc| bits.insert(doc));
                        self.cache.bits.insert(key, Arc::new(bits.clone()));
                        bits
                    }
                }
            }
        };
        for (clause, weight) in &self.clauses {
            let key = (segment, Key::Clause(clause.clone()));
            let matched = match self.cache.bits.get(&key) {
                Some(matched) => matched,
                None => {
                    let mut matched = DocBits::empty(max_doc);
                    weight.for_each_no_score(reader, &mut |docs| {
                        docs.iter().for_each(|&doc| matched.insert(doc))
                    })?;
                    let matched = Arc::new(matched);
                    self.cache.bits.insert(key, Arc::clone(&matched));
                    matched
                }
            };
            bits.and(&matched);
        }
        Ok(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_count_iterate_and_intersect() {
        let mut a = DocBits::empty(130);
        for doc in [0, 63, 64, 129] {
            a.insert(doc);
        }
        assert_eq!(a.docs().collect::<Vec<_>>(), vec![0, 63, 64, 129]);
        let full = DocBits::full(130);
        assert_eq!(full.count(), 130);
        assert!(!full.contains(130));
        let mut b = DocBits::full(130);
        b.and(&a);
        assert_eq!(b.count(), 4);
        assert!(b.contains(129) && !b.contains(1));
    }
}
