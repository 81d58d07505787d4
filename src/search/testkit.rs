//! What the backend tests share: a generated corpus (ties, missing values,
//! accents and case, equal instants written differently, rewrites and
//! deletes) and a brute-force oracle that filters and sorts it on plain
//! JSON, independent of any backend's own ordering code.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::json;

use super::query::{coerce, Document, FieldValue, Filter, Page, SearchQuery, SearchResult, SortKey};
use super::spec::{document_values, exact_indexed, FieldKind, FieldSpec, IndexSpec, Scalar};
use super::WriteOp;

/// A sort value as the oracle compares it: missing last in both
/// directions, floats by `total_cmp`, strings by bytes.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Missing,
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
}

impl Val {
    fn cmp_directed(&self, other: &Val, descending: bool) -> Ordering {
        let natural = match (self, other) {
            (Val::Missing, Val::Missing) => return Ordering::Equal,
            (Val::Missing, _) => return Ordering::Greater,
            (_, Val::Missing) => return Ordering::Less,
            (Val::I64(a), Val::I64(b)) => a.cmp(b),
            (Val::F64(a), Val::F64(b)) => a.total_cmp(b),
            (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
            (Val::Str(a), Val::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            _ => Ordering::Equal,
        };
        if descending {
            natural.reverse()
        } else {
            natural
        }
    }
}

pub(crate) fn spec() -> IndexSpec {
    IndexSpec::new(
        "contracts",
        vec![
            FieldSpec::new("amount", FieldKind::I64).filterable().sortable(),
            FieldSpec::new("price", FieldKind::F64).filterable().sortable(),
            FieldSpec::new("managerName", FieldKind::Keyword)
                .filterable()
                .sortable(),
            FieldSpec::new("title", FieldKind::Text)
                .searchable()
                .filterable()
                .sortable(),
            FieldSpec::new("createdAt", FieldKind::DateTime)
                .filterable()
                .sortable(),
            FieldSpec::new("status", FieldKind::Keyword)
                .filterable()
                .sortable(),
            FieldSpec::new("tags", FieldKind::Keyword).filterable(),
            FieldSpec::new("notes", FieldKind::Text).searchable().not_stored(),
            FieldSpec::new("a.b", FieldKind::Bool).filterable(),
        ],
    )
}

/// SplitMix64: a seeded generator, so failures reproduce.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Whether a field is left out (one time in `n`).
    pub(crate) fn missing(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

pub(crate) const MANAGERS: [&str; 8] = ["Ann", "Al", "Alice", "Bob", "bob", "Zoë", "Émile", "Bo"];
pub(crate) const STATUSES: [&str; 3] = ["open", "closed", "draft"];
pub(crate) const WORDS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "Alpha", "beta-max"];
pub(crate) const DATES: [&str; 5] = [
    "2024-01-01T00:00:00Z",
    "2024-01-01T01:00:00+01:00", // the same instant as the first
    "2024-03-05T12:30:00.250Z",
    "1969-07-20T20:17:40Z",
    "2030-12-31T23:59:59.999Z",
];
pub(crate) const PRICES: [f64; 5] = [-2.5, -0.0, 0.0, 1.25, 1e10];

pub(crate) fn random_doc(rng: &mut Rng, id: &str, version: i64) -> Document {
    let mut doc = Document::new();
    doc.insert("id".into(), json!(id));
    doc.insert("_version".into(), json!(version));
    if !rng.missing(8) {
        doc.insert(
            "amount".into(),
            json!(i64::try_from(rng.below(16)).unwrap_or(0) - 3),
        );
    }
    if !rng.missing(8) {
        doc.insert("price".into(), json!(rng.pick(&PRICES)));
    }
    if !rng.missing(6) {
        doc.insert("managerName".into(), json!(rng.pick(&MANAGERS)));
    }
    if !rng.missing(10) {
        let title = format!("{} {}", rng.pick(&WORDS), rng.pick(&WORDS));
        doc.insert("title".into(), json!(title));
    }
    if !rng.missing(7) {
        doc.insert("createdAt".into(), json!(rng.pick(&DATES)));
    }
    doc.insert("status".into(), json!(rng.pick(&STATUSES)));
    doc.insert("tags".into(), json!([rng.pick(&STATUSES), rng.pick(&WORDS)]));
    doc.insert("notes".into(), json!(format!("note {}", rng.pick(&WORDS))));
    doc.insert("a.b".into(), json!(rng.below(2) == 0));
    doc.insert("extra".into(), json!({"kept": true}));
    doc
}

/// The first ten hits of `filters` in `sort` order, counted.
pub(crate) fn first_page(filters: Vec<Filter>, sort: Vec<SortKey>) -> SearchQuery {
    SearchQuery {
        filters,
        sort,
        page: Page::After {
            first: 10,
            after: None,
        },
        count: true,
    }
}

pub(crate) fn ids(result: &SearchResult) -> Vec<String> {
    result.hits.iter().map(|h| h.id.clone()).collect()
}

pub(crate) fn upserts(docs: &[Document]) -> Vec<WriteOp> {
    docs.iter().cloned().map(WriteOp::Upsert).collect()
}

/// The writes that build a corpus of `n` documents: shuffled batches (so
/// several segments), then some rewritten and some deleted; and the
/// documents that survive them, the oracle's data.
pub(crate) fn corpus_writes(n: usize, seed: u64) -> (Vec<Vec<WriteOp>>, Vec<Document>) {
    let mut rng = Rng(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut writes = Vec::new();
    let mut docs: BTreeMap<String, Document> = BTreeMap::new();
    let id_of = |d: &Document| d["id"].as_str().unwrap_or_default().to_owned();
    for chunk in order.chunks(n.div_ceil(5).max(1)) {
        let batch: Vec<Document> = chunk
            .iter()
            .map(|i| random_doc(&mut rng, &format!("c{i}"), 1))
            .collect();
        writes.push(upserts(&batch));
        docs.extend(batch.into_iter().map(|d| (id_of(&d), d)));
    }
    let rewrites: Vec<Document> = (0..n / 12)
        .map(|_| {
            let id = format!("c{}", rng.below(n));
            random_doc(&mut rng, &id, 2)
        })
        .collect();
    writes.push(upserts(&rewrites));
    docs.extend(rewrites.into_iter().map(|d| (id_of(&d), d)));
    let deletes: Vec<WriteOp> = (0..n / 20)
        .map(|_| WriteOp::Delete {
            id: format!("c{}", rng.below(n)),
            version: 5,
        })
        .collect();
    for op in &deletes {
        if let WriteOp::Delete { id, .. } = op {
            docs.remove(id);
        }
    }
    writes.push(deletes);
    (writes, docs.into_values().collect())
}

// --- The oracle: filters and the total order on plain JSON ------------

fn json_values(doc: &Document, field: &FieldSpec) -> Vec<Val> {
    document_values(field, doc.get(&field.name))
        .unwrap_or_default()
        .into_iter()
        // A string too long to index exactly is neither matched nor sorted by.
        .filter(|s| !matches!(s, Scalar::Str(s) if !exact_indexed(field, s)))
        .map(|s| match s {
            Scalar::Str(s) => Val::Str(s),
            Scalar::I64(i) => Val::I64(i),
            Scalar::F64(f) => Val::F64(f),
            Scalar::Bool(b) => Val::Bool(b),
        })
        .collect()
}

fn filter_value(field: &FieldSpec, value: &FieldValue) -> Option<Val> {
    match coerce(field, value, "test").ok()?? {
        Scalar::Str(s) => Some(Val::Str(s)),
        Scalar::I64(i) => Some(Val::I64(i)),
        Scalar::F64(f) => Some(Val::F64(f)),
        Scalar::Bool(b) => Some(Val::Bool(b)),
    }
}

fn oracle_matches(spec: &IndexSpec, doc: &Document, filter: &Filter) -> bool {
    let field = |name: &str| {
        spec.field(name)
            .cloned()
            .unwrap_or_else(|| FieldSpec::new(name, FieldKind::Bool))
    };
    let cmp = |a: &Val, b: &Val| a.cmp_directed(b, false);
    match filter {
        Filter::Term { field: f, value } => {
            let f = field(f);
            let values = json_values(doc, &f);
            match filter_value(&f, value) {
                None => values.is_empty(),
                Some(v) => values.contains(&v),
            }
        }
        Filter::In {
            field: f,
            values: wanted,
        } => wanted.iter().any(|w| {
            oracle_matches(
                spec,
                doc,
                &Filter::Term {
                    field: f.clone(),
                    value: w.clone(),
                },
            )
        }),
        Filter::Range {
            field: f,
            gte,
            gt,
            lte,
            lt,
        } => {
            let f = field(f);
            let bound = |b: &Option<FieldValue>| b.as_ref().and_then(|v| filter_value(&f, v));
            let (gte, gt, lte, lt) = (bound(gte), bound(gt), bound(lte), bound(lt));
            json_values(doc, &f).iter().any(|v| {
                gte.as_ref().is_none_or(|b| cmp(v, b).is_ge())
                    && gt.as_ref().is_none_or(|b| cmp(v, b).is_gt())
                    && lte.as_ref().is_none_or(|b| cmp(v, b).is_le())
                    && lt.as_ref().is_none_or(|b| cmp(v, b).is_lt())
            })
        }
        Filter::Prefix { field: f, prefix } => json_values(doc, &field(f))
            .iter()
            .any(|v| matches!(v, Val::Str(s) if s.starts_with(prefix.as_str()))),
        Filter::FullText { .. } => true,
    }
}

pub(crate) fn oracle(spec: &IndexSpec, docs: &[Document], query: &SearchQuery) -> Vec<String> {
    let keys = query.sort_with_tiebreak();
    let mut rows: Vec<(Vec<Val>, String)> = docs
        .iter()
        .filter(|d| query.filters.iter().all(|f| oracle_matches(spec, d, f)))
        .map(|d| {
            let values = keys
                .iter()
                .map(|k| {
                    spec.field(&k.field)
                        .and_then(|f| json_values(d, f).into_iter().next())
                        .unwrap_or(Val::Missing)
                })
                .collect();
            (values, d["id"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    rows.sort_by(|(a, _), (b, _)| {
        keys.iter()
            .zip(a.iter().zip(b))
            .map(|(k, (x, y))| x.cmp_directed(y, k.descending))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    rows.into_iter().map(|(_, id)| id).collect()
}
