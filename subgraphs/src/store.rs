//! A generic in-memory table: rows by primary key, a version per row, an index on
//! update time, and the owning service's secondary indexes, all behind one lock so
//! that they never disagree.
//!
//! Writes stamp the row's update time, bump its version and emit a change event
//! while still holding the write lock, so events leave in commit order. Update
//! times are strictly increasing per table (the wall clock, pushed forward by a
//! millisecond when two writes share one), so a poller asking for "updated after
//! the newest time I have seen" never misses a write that committed later.
//!
//! Reads take the lock, pick the narrowest candidate id set ([`Source`]), filter,
//! and clone out only the page they return. The table knows nothing of GraphQL.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use base64::Engine;
use parking_lot::{RwLock, RwLockReadGuard};

use crate::events::{ChangeEvent, ChangeOp, ChangeSink, EventId};
use crate::scalars::DateTime;

/// A stored row type.
pub trait Record: Clone + Send + Sync + 'static {
    fn updated_at(&self) -> DateTime;
    fn set_updated_at(&mut self, at: DateTime);
}

/// A service's secondary indexes over its rows, kept up to date on every write.
pub trait Indexes<R>: Send + Sync + 'static {
    /// Builds the indexes over the seeded rows (in bulk, which is much faster than
    /// inserting one by one).
    fn build(rows: &BTreeMap<i64, Versioned<R>>) -> Self
    where
        Self: Sized;
    fn insert(&mut self, id: i64, row: &R);
    fn remove(&mut self, id: i64, row: &R);
}

impl<R> Indexes<R> for () {
    fn build(_rows: &BTreeMap<i64, Versioned<R>>) -> Self {}
    fn insert(&mut self, _id: i64, _row: &R) {}
    fn remove(&mut self, _id: i64, _row: &R) {}
}

/// A row and its version (1 when created or seeded, +1 per write).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<R> {
    pub version: u64,
    pub row: R,
}

/// How a table's ids appear outside (in change events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdForm {
    /// A GraphQL `Int`.
    Int,
    /// A GraphQL `ID` holding the decimal primary key.
    Numeric,
    /// A graphene Relay global id: base64 of `"<type>:<pk>"`.
    Relay,
}

/// Who owns a table, for change events.
#[derive(Debug, Clone, Copy)]
pub struct TableMeta {
    pub service: &'static str,
    pub type_name: &'static str,
    pub id_form: IdForm,
}

impl TableMeta {
    pub fn external_id(&self, pk: i64) -> EventId {
        match self.id_form {
            IdForm::Int => EventId::Int(pk),
            IdForm::Numeric => EventId::Str(pk.to_string()),
            IdForm::Relay => EventId::Str(relay_id(self.type_name, pk)),
        }
    }
}

/// graphene's global id: standard padded base64 of `"<type>:<pk>"`.
pub fn relay_id(type_name: &str, pk: i64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{type_name}:{pk}"))
}

/// Where a read's candidate rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Every row, by ascending id.
    All,
    /// These ids only (ascending, unique); ids of deleted rows are skipped.
    Ids(Vec<i64>),
}

impl Source {
    /// The smaller of two candidate sets (the filter still checks every condition).
    pub fn narrowest(self, other: Source) -> Source {
        match (self, other) {
            (Source::All, other) | (other, Source::All) => other,
            (Source::Ids(a), Source::Ids(b)) => Source::Ids(if a.len() <= b.len() { a } else { b }),
        }
    }

    /// Ascending unique ids from any iterator.
    pub fn from_ids(ids: impl IntoIterator<Item = i64>) -> Source {
        let mut ids: Vec<i64> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        Source::Ids(ids)
    }
}

/// A many-to-one index: `(key, id)` pairs in order, e.g. contracts by member.
#[derive(Debug, Clone, Default)]
pub struct MultiIndex<K: Ord + Copy> {
    pairs: BTreeSet<(K, i64)>,
}

impl<K: Ord + Copy> MultiIndex<K> {
    /// Builds from unsorted pairs in O(n log n) with one sort and a bulk load.
    pub fn build(mut pairs: Vec<(K, i64)>) -> Self {
        pairs.sort_unstable();
        Self {
            pairs: pairs.into_iter().collect(),
        }
    }

    pub fn insert(&mut self, key: K, id: i64) {
        self.pairs.insert((key, id));
    }

    pub fn remove(&mut self, key: K, id: i64) {
        self.pairs.remove(&(key, id));
    }

    /// Ids under `key`, ascending.
    pub fn ids(&self, key: K) -> impl DoubleEndedIterator<Item = i64> + '_ {
        self.pairs
            .range((key, i64::MIN)..=(key, i64::MAX))
            .map(|(_, id)| *id)
    }

    /// Ids under any of `keys`, ascending and unique.
    pub fn ids_for(&self, keys: impl IntoIterator<Item = K>) -> Vec<i64> {
        let mut ids: Vec<i64> = keys.into_iter().flat_map(|k| self.ids(k)).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// `(key, id)` pairs with `lo <= key <= hi` (either end open), in key-then-id
    /// order; reverse the iterator for descending.
    pub fn range(&self, lo: Option<K>, hi: Option<K>) -> impl DoubleEndedIterator<Item = (K, i64)> + '_ {
        let lower = lo.map_or(Bound::Unbounded, |k| Bound::Included((k, i64::MIN)));
        let upper = hi.map_or(Bound::Unbounded, |k| Bound::Included((k, i64::MAX)));
        let empty = matches!((lo, hi), (Some(l), Some(h)) if l > h);
        // BTreeSet::range panics on an inverted range; an empty one answers instead.
        let range = if empty {
            let below_first = self
                .pairs
                .first()
                .map_or(Bound::Unbounded, |p| Bound::Excluded(*p));
            self.pairs.range((Bound::Unbounded, below_first))
        } else {
            self.pairs.range((lower, upper))
        };
        range.copied()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// The locked contents of a table.
pub struct Inner<R, X> {
    rows: BTreeMap<i64, Versioned<R>>,
    by_updated: MultiIndex<DateTime>,
    /// The service's own indexes.
    pub index: X,
    next_id: i64,
    last_write: DateTime,
}

impl<R: Record, X> Inner<R, X> {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn get(&self, id: i64) -> Option<&R> {
        self.rows.get(&id).map(|v| &v.row)
    }

    pub fn versioned(&self, id: i64) -> Option<&Versioned<R>> {
        self.rows.get(&id)
    }

    /// A candidate set small enough to beat a full scan, if `ids` yields fewer than
    /// an eighth of the table; otherwise [`Source::All`].
    pub fn selective(&self, ids: impl Iterator<Item = i64>) -> Source {
        let threshold = self.rows.len() / 8 + 1;
        let mut collected = Vec::new();
        for id in ids {
            if collected.len() >= threshold {
                return Source::All;
            }
            collected.push(id);
        }
        Source::from_ids(collected)
    }

    /// Candidates for "updated strictly after `at`" (`None` means no such filter).
    pub fn updated_after(&self, at: Option<DateTime>) -> Source {
        match at {
            None => Source::All,
            Some(at) => self.selective(
                self.by_updated
                    .range(Some(DateTime(at.0 + 1)), None)
                    .map(|(_, id)| id),
            ),
        }
    }

    /// The rows of `source` by ascending id.
    pub fn scan<'a>(&'a self, source: &'a Source) -> Box<dyn Iterator<Item = (i64, &'a R)> + 'a> {
        match source {
            Source::All => Box::new(self.rows.iter().map(|(id, v)| (*id, &v.row))),
            Source::Ids(ids) => Box::new(
                ids.iter()
                    .filter_map(|id| self.rows.get(id).map(|v| (*id, &v.row))),
            ),
        }
    }

    /// Rows of `source` that pass `keep`, ascending by id, `offset` skipped, at most `limit`, cloned.
    pub fn page(&self, source: &Source, keep: impl Fn(&R) -> bool, offset: usize, limit: usize) -> Vec<R> {
        self.scan(source)
            .filter(|(_, row)| keep(row))
            .skip(offset)
            .take(limit)
            .map(|(_, row)| row.clone())
            .collect()
    }

    /// How many rows of `source` pass `keep`.
    pub fn count(&self, source: &Source, keep: impl Fn(&R) -> bool) -> usize {
        // Callers answer the unfiltered count with `len()` instead, in O(1).
        self.scan(source).filter(|(_, row)| keep(row)).count()
    }
}

/// The order of an ordered read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    IdAsc,
    IdDesc,
    /// By a time column, ties by id ascending.
    TimeAsc,
    /// By a time column, ties by id descending.
    TimeDesc,
}

/// An inclusive range on a time column (either end open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub gte: Option<DateTime>,
    pub lte: Option<DateTime>,
}

impl TimeRange {
    pub fn is_open(&self) -> bool {
        self.gte.is_none() && self.lte.is_none()
    }

    pub fn contains(&self, at: DateTime) -> bool {
        self.gte.is_none_or(|lo| at >= lo) && self.lte.is_none_or(|hi| at <= hi)
    }
}

impl<R: Record, X> Inner<R, X> {
    /// The rows of `source` within `range` of a time column, in `order`.
    ///
    /// `times` indexes that column as `(time, id)`. A narrow source (ids from
    /// another index) is fetched and sorted: O(k log k). Otherwise a time order
    /// walks the time index from the range's start in either direction, so a page
    /// costs O(log n + skipped + returned) rather than a sort of the table; an id
    /// order with a narrow time range reads the range and sorts it. Rows outside
    /// `range` never appear, but the caller's own filter must still check the rest.
    pub fn ordered<'a>(
        &'a self,
        source: &Source,
        order: Order,
        times: &'a MultiIndex<DateTime>,
        range: TimeRange,
        time_of: fn(&R) -> DateTime,
    ) -> Box<dyn Iterator<Item = &'a R> + 'a> {
        let narrowed = match source {
            Source::Ids(ids) => Some(ids.clone()),
            Source::All if matches!(order, Order::IdAsc | Order::IdDesc) && !range.is_open() => {
                match self.selective(times.range(range.gte, range.lte).map(|(_, id)| id)) {
                    Source::Ids(ids) => Some(ids),
                    Source::All => None,
                }
            }
            Source::All => None,
        };
        let in_range = move |row: &&R| range.contains(time_of(row));
        match (narrowed, order) {
            (Some(ids), _) => {
                let mut rows: Vec<(i64, &R)> = ids
                    .iter()
                    .filter_map(|id| self.rows.get(id).map(|v| (*id, &v.row)))
                    .collect();
                match order {
                    Order::IdAsc => {}
                    Order::IdDesc => rows.reverse(),
                    Order::TimeAsc => rows.sort_unstable_by_key(|(id, row)| (time_of(row), *id)),
                    Order::TimeDesc => {
                        rows.sort_unstable_by_key(|(id, row)| std::cmp::Reverse((time_of(row), *id)))
                    }
                }
                Box::new(rows.into_iter().map(|(_, row)| row).filter(in_range))
            }
            (None, Order::IdAsc) => Box::new(self.rows.values().map(|v| &v.row).filter(in_range)),
            (None, Order::IdDesc) => Box::new(self.rows.values().rev().map(|v| &v.row).filter(in_range)),
            (None, Order::TimeAsc) => Box::new(
                times
                    .range(range.gte, range.lte)
                    .filter_map(|(_, id)| self.rows.get(&id).map(|v| &v.row)),
            ),
            (None, Order::TimeDesc) => Box::new(
                times
                    .range(range.gte, range.lte)
                    .rev()
                    .filter_map(|(_, id)| self.rows.get(&id).map(|v| &v.row)),
            ),
        }
    }
}

/// A table of `R` rows with service indexes `X`.
pub struct Table<R, X = ()> {
    meta: TableMeta,
    sink: Arc<dyn ChangeSink>,
    inner: RwLock<Inner<R, X>>,
}

impl<R: Record, X: Indexes<R>> Table<R, X> {
    /// A table holding `rows` with ids 1, 2, 3, … (the seed), each at version 1.
    pub fn seeded(meta: TableMeta, rows: Vec<R>, sink: Arc<dyn ChangeSink>) -> Self {
        let count = rows.len() as i64;
        // Already in key order, so this is a linear bulk load.
        let rows: BTreeMap<i64, Versioned<R>> = rows
            .into_iter()
            .zip(1..)
            .map(|(row, id)| (id, Versioned { version: 1, row }))
            .collect();
        let by_updated = MultiIndex::build(rows.iter().map(|(id, v)| (v.row.updated_at(), *id)).collect());
        let last_write = rows
            .values()
            .map(|v| v.row.updated_at())
            .max()
            .unwrap_or_default();
        let index = X::build(&rows);
        Self {
            meta,
            sink,
            inner: RwLock::new(Inner {
                rows,
                by_updated,
                index,
                next_id: count + 1,
                last_write,
            }),
        }
    }

    pub fn meta(&self) -> &TableMeta {
        &self.meta
    }

    /// A read snapshot; hold it only for the duration of one query.
    pub fn read(&self) -> RwLockReadGuard<'_, Inner<R, X>> {
        self.inner.read()
    }

    pub fn get(&self, id: i64) -> Option<R> {
        self.inner.read().get(id).cloned()
    }

    /// The rows for `ids`, in the same order, `None` where there is none.
    pub fn get_many(&self, ids: impl IntoIterator<Item = Option<i64>>) -> Vec<Option<R>> {
        let inner = self.inner.read();
        ids.into_iter()
            .map(|id| id.and_then(|id| inner.get(id).cloned()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.read().is_empty()
    }

    /// Inserts the row `build(id, now)` under the next id.
    pub fn insert(&self, build: impl FnOnce(i64, DateTime) -> R) -> R {
        let mut inner = self.inner.write();
        let id = inner.next_id;
        inner.next_id += 1;
        let at = stamp(&mut inner.last_write, DateTime(0));
        let mut row = build(id, at);
        row.set_updated_at(at);
        inner.index.insert(id, &row);
        inner.by_updated.insert(at, id);
        inner.rows.insert(
            id,
            Versioned {
                version: 1,
                row: row.clone(),
            },
        );
        self.emit(id, ChangeOp::Create, 1, at);
        row
    }

    /// Applies `change` to a copy of row `id` and stores it if `change` succeeds.
    /// `Ok(None)` when there is no such row; `Err` leaves the row untouched.
    pub fn update<E>(&self, id: i64, change: impl FnOnce(&mut R) -> Result<(), E>) -> Result<Option<R>, E> {
        let mut inner = self.inner.write();
        let Some(current) = inner.rows.get(&id) else {
            return Ok(None);
        };
        let mut row = current.row.clone();
        let version = current.version + 1;
        change(&mut row)?;
        let old = current.row.clone();
        let at = stamp(&mut inner.last_write, old.updated_at());
        row.set_updated_at(at);
        inner.index.remove(id, &old);
        inner.index.insert(id, &row);
        inner.by_updated.remove(old.updated_at(), id);
        inner.by_updated.insert(at, id);
        inner.rows.insert(
            id,
            Versioned {
                version,
                row: row.clone(),
            },
        );
        self.emit(id, ChangeOp::Update, version, at);
        Ok(Some(row))
    }

    /// Deletes row `id`; false when there is none.
    pub fn delete(&self, id: i64) -> bool {
        let mut inner = self.inner.write();
        let Some(old) = inner.rows.remove(&id) else {
            return false;
        };
        let at = stamp(&mut inner.last_write, old.row.updated_at());
        inner.index.remove(id, &old.row);
        inner.by_updated.remove(old.row.updated_at(), id);
        self.emit(id, ChangeOp::Delete, old.version + 1, at);
        true
    }

    fn emit(&self, id: i64, op: ChangeOp, version: u64, at: DateTime) {
        self.sink.emit(ChangeEvent {
            service: self.meta.service.to_string(),
            type_name: self.meta.type_name.to_string(),
            id: self.meta.external_id(id),
            op,
            version,
            at,
        });
    }
}

/// The time of a write: now, but strictly after the table's previous write and
/// after the row's previous update time.
fn stamp(last_write: &mut DateTime, previous: DateTime) -> DateTime {
    let at = DateTime::now()
        .max(DateTime(last_write.0 + 1))
        .max(DateTime(previous.0 + 1));
    *last_write = at;
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ChannelSink;

    #[derive(Debug, Clone, PartialEq)]
    struct Row {
        group: i64,
        updated: DateTime,
    }

    impl Record for Row {
        fn updated_at(&self) -> DateTime {
            self.updated
        }
        fn set_updated_at(&mut self, at: DateTime) {
            self.updated = at;
        }
    }

    struct ByGroup(MultiIndex<i64>);

    impl Indexes<Row> for ByGroup {
        fn build(rows: &BTreeMap<i64, Versioned<Row>>) -> Self {
            Self(MultiIndex::build(
                rows.iter().map(|(id, v)| (v.row.group, *id)).collect(),
            ))
        }
        fn insert(&mut self, id: i64, row: &Row) {
            self.0.insert(row.group, id);
        }
        fn remove(&mut self, id: i64, row: &Row) {
            self.0.remove(row.group, id);
        }
    }

    const META: TableMeta = TableMeta {
        service: "test",
        type_name: "Row",
        id_form: IdForm::Int,
    };

    fn table(sink: Arc<dyn ChangeSink>) -> Table<Row, ByGroup> {
        let rows = (1..=100)
            .map(|i| Row {
                group: i % 5,
                updated: DateTime(i * 1000),
            })
            .collect();
        Table::seeded(META, rows, sink)
    }

    #[test]
    fn writes_keep_indexes_versions_and_events_in_step() {
        let sink = Arc::new(ChannelSink::new(16));
        let mut events = sink.subscribe();
        let t = table(sink);
        assert_eq!(t.read().index.0.ids(3).count(), 20);

        let created = t.insert(|_, at| Row {
            group: 3,
            updated: at,
        });
        assert_eq!(t.read().index.0.ids(3).last(), Some(101));
        let updated = t
            .update(101, |row| {
                row.group = 4;
                Ok::<_, ()>(())
            })
            .expect("no error")
            .expect("row exists");
        assert!(updated.updated > created.updated);
        assert_eq!(t.read().index.0.ids(3).count(), 20);
        assert_eq!(t.read().index.0.ids(4).last(), Some(101));
        assert_eq!(
            t.read().updated_after(Some(created.updated)),
            Source::Ids(vec![101])
        );
        assert!(t.delete(101));
        assert!(!t.delete(101));
        assert_eq!(t.update(101, |_| Ok::<_, ()>(())), Ok(None));
        assert_eq!(t.read().index.0.ids(4).count(), 20);

        let seen: Vec<(ChangeOp, u64)> = (0..3)
            .map(|_| events.try_recv().expect("event"))
            .map(|e| (e.op, e.version))
            .collect();
        assert_eq!(
            seen,
            [
                (ChangeOp::Create, 1),
                (ChangeOp::Update, 2),
                (ChangeOp::Delete, 3)
            ]
        );
        assert!(events.try_recv().is_err(), "no event for a missing row");
    }

    #[test]
    fn a_failed_change_leaves_the_row_alone() {
        let t = table(Arc::new(crate::events::NullSink));
        let before = t.get(7);
        assert_eq!(
            t.update(7, |row| {
                row.group = 99;
                Err("nope")
            }),
            Err("nope")
        );
        assert_eq!(t.get(7), before);
    }

    #[test]
    fn reads_page_filter_and_pick_narrow_sources() {
        let t = table(Arc::new(crate::events::NullSink));
        let r = t.read();
        let all = r.page(&Source::All, |row| row.group == 2, 1, 3);
        assert_eq!(
            all.iter().map(|row| row.updated.0 / 1000).collect::<Vec<_>>(),
            [7, 12, 17]
        );
        assert_eq!(
            r.updated_after(Some(DateTime(98_000))),
            Source::Ids(vec![99, 100])
        );
        assert_eq!(r.updated_after(Some(DateTime(0))), Source::All, "not selective");
        assert_eq!(r.count(&Source::Ids(vec![1, 2, 500]), |_| true), 2);
        assert_eq!(
            r.index.0.range(Some(3), Some(1)).count(),
            0,
            "inverted range is empty"
        );
        assert_eq!(r.index.0.range(Some(1), Some(2)).count(), 40);
    }

    #[test]
    fn ordered_reads_agree_with_a_sort() {
        let t = table(Arc::new(crate::events::NullSink));
        let r = t.read();
        let times = MultiIndex::build((1..=100).map(|id| (DateTime((id * 37) % 11), id)).collect());
        let time_of: fn(&Row) -> DateTime = |row| DateTime((row.updated.0 / 1000 * 37) % 11);
        let range = TimeRange {
            gte: Some(DateTime(2)),
            lte: Some(DateTime(8)),
        };
        let mut expected: Vec<(DateTime, i64)> = (1..=100)
            .map(|id| (DateTime((id * 37) % 11), id))
            .filter(|(t, _)| range.contains(*t))
            .collect();
        expected.sort();
        let id_of = |row: &Row| row.updated.0 / 1000;
        let got: Vec<i64> = r
            .ordered(&Source::All, Order::TimeAsc, &times, range, time_of)
            .map(id_of)
            .collect();
        assert_eq!(got, expected.iter().map(|(_, id)| *id).collect::<Vec<_>>());
        let got: Vec<i64> = r
            .ordered(&Source::All, Order::TimeDesc, &times, range, time_of)
            .map(id_of)
            .collect();
        assert_eq!(got, expected.iter().rev().map(|(_, id)| *id).collect::<Vec<_>>());
        let narrow = Source::from_ids(expected.iter().map(|(_, id)| *id).filter(|id| id % 2 == 0));
        let got: Vec<i64> = r
            .ordered(&narrow, Order::TimeDesc, &times, range, time_of)
            .map(id_of)
            .collect();
        let want: Vec<i64> = expected
            .iter()
            .rev()
            .map(|(_, id)| *id)
            .filter(|id| id % 2 == 0)
            .collect();
        assert_eq!(got, want);
        let got: Vec<i64> = r
            .ordered(&Source::All, Order::IdDesc, &times, range, time_of)
            .map(id_of)
            .collect();
        let mut want: Vec<i64> = expected.iter().map(|(_, id)| *id).collect();
        want.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(got, want);
    }
}
