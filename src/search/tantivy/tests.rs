//! Tests of what only the tantivy backend has: segments, restarts, deep
//! pages. The contract every backend keeps is in `search/conformance.rs`.

use std::sync::LazyLock;
use std::time::Instant;

use serde_json::{json, Value};

use ::tantivy::query::AllQuery;

use super::collector;
use super::matches::Matches;
use super::*;
use crate::search::query::FieldValue;
use crate::search::spec::{FieldKind, FieldSpec};
use crate::search::SortKey;

use crate::search::testkit::{
    corpus_writes, ids, oracle, random_doc, spec, Rng, DATES, MANAGERS, PRICES, WORDS,
};

type TestResult = Result<(), SearchError>;

/// 2,000 documents written in shuffled batches (several segments), then
/// partly rewritten and deleted, with the surviving documents as the
/// oracle's data.
struct Corpus {
    backend: TantivyBackend,
    docs: Vec<Document>,
}

static CORPUS: LazyLock<Corpus> = LazyLock::new(|| build_corpus(2_000, 7).expect("corpus builds"));

fn build_corpus(n: usize, seed: u64) -> Result<Corpus, SearchError> {
    let backend = TantivyBackend::in_memory();
    backend.inner.create_index(spec(), "contracts_v1".into())?;
    backend.inner.point_alias("contracts", "contracts_v1")?;
    let handle = backend.handle("contracts")?;
    let (writes, docs) = corpus_writes(n, seed);
    for batch in writes {
        handle.write(batch, None)?;
    }
    Ok(Corpus { backend, docs })
}

#[test]
fn oracle_corpus_has_ties_missing_values_and_segments() {
    let corpus = &*CORPUS;
    assert!(corpus.docs.len() > 1_800, "{}", corpus.docs.len());
    let missing = corpus.docs.iter().filter(|d| !d.contains_key("amount")).count();
    assert!(missing > 100, "{missing}");
    let handle = corpus.backend.handle("contracts").expect("index");
    assert!(handle.reader.searcher().segment_readers().len() > 1);
    assert_eq!(handle.reader.searcher().num_docs(), corpus.docs.len() as u64);
}

// --- Writes and versions ------------------------------------------------

fn doc(id: &str, version: i64, amount: i64) -> Document {
    let value = json!({"id": id, "_version": version, "amount": amount, "managerName": "Ann"});
    value.as_object().cloned().unwrap_or_default()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        TempDir(std::env::temp_dir().join(format!("tessera-search-{tag}-{}-{nanos}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn checkpoints_and_aliases_survive_a_restart() -> TestResult {
    let dir = TempDir::new("restart");
    {
        let b = TantivyBackend::open(&dir.0)?;
        b.create_index(&spec(), "contracts_v1").await?;
        b.point_alias("contracts", "contracts_v1").await?;
        assert_eq!(b.checkpoint("contracts").await?, None);
        b.upsert_with_checkpoint("contracts", vec![doc("a", 1, 1)], Some("offset:41".into()))
            .await?;
        // A write without a checkpoint keeps the stored one.
        b.upsert("contracts", vec![doc("b", 1, 2)]).await?;
        assert_eq!(b.checkpoint("contracts").await?.as_deref(), Some("offset:41"));
        // A checkpoint alone (nothing to write) still commits.
        b.write("contracts", vec![], Some("offset:42".into())).await?;
        b.create_index(&spec(), "scratch").await?;
        b.drop_index("scratch").await?;
    }
    let b = TantivyBackend::open(&dir.0)?;
    assert_eq!(b.resolve("contracts").await?, "contracts_v1");
    assert_eq!(b.checkpoint("contracts").await?.as_deref(), Some("offset:42"));
    assert_eq!(b.count("contracts").await?, 2);
    assert!(matches!(
        b.resolve("scratch").await,
        Err(SearchError::UnknownIndex { .. })
    ));
    assert!(!dir.0.join("scratch").exists());
    Ok(())
}

/// Upserts look an id up only in segments whose id range holds it, and add
/// a delete only for a live copy: every write must still leave exactly one
/// copy of each id, the newest, whichever segment held the old one.
#[tokio::test]
async fn upserts_replace_the_copy_in_whichever_segment_holds_it() -> TestResult {
    let b = TantivyBackend::in_memory();
    b.create_index(&spec(), "c").await?;
    // One segment per write: [a, c], [e, g], [b, f] (ranges overlap).
    b.upsert("c", vec![doc("a", 1, 1), doc("c", 1, 1)]).await?;
    b.upsert("c", vec![doc("e", 1, 1), doc("g", 1, 1)]).await?;
    b.upsert("c", vec![doc("b", 1, 1), doc("f", 1, 1)]).await?;
    let outcome = b
        .upsert(
            "c",
            vec![doc("c", 2, 20), doc("f", 2, 30), doc("d", 2, 40), doc("g", 0, 99)],
        )
        .await?;
    assert_eq!(
        (outcome.written, outcome.skipped),
        (3, 1),
        "g at version 0 is older"
    );
    // Twice in one batch: the last one stays.
    b.upsert("c", vec![doc("a", 3, 5), doc("a", 4, 6)]).await?;
    b.delete("c", vec!["e".to_string()], 5).await?;
    assert_eq!(b.count("c").await?, 6);
    let ids: Vec<String> = ["a", "b", "c", "d", "e", "f", "g"].map(String::from).to_vec();
    let got = b.get("c", &ids).await?;
    let amounts: Vec<Option<i64>> = got
        .iter()
        .map(|d| d.as_ref().and_then(|d| d.get("amount")).and_then(Value::as_i64))
        .collect();
    assert_eq!(
        amounts,
        vec![Some(6), Some(1), Some(20), Some(40), None, Some(30), Some(1)]
    );
    Ok(())
}

// --- Deep pages ---------------------------------------------------------

#[test]
#[ignore = "timing print over 100k documents; run with --ignored --nocapture"]
fn deep_pages_cost_what_the_first_costs() -> TestResult {
    let corpus = build_corpus(100_000, 11)?;
    let handle = corpus.backend.handle("contracts")?;
    let sort = vec![SortKey::desc("amount"), SortKey::asc("managerName")];
    let mut query = SearchQuery {
        filters: vec![],
        sort,
        page: Page::After {
            first: 20,
            after: None,
        },
        count: true,
    };
    let expected = oracle(&handle.spec, &corpus.docs, &query);
    let time = |query: &SearchQuery| -> Result<(std::time::Duration, Vec<String>), SearchError> {
        let start = Instant::now();
        let mut result = handle.search(query)?;
        for _ in 0..9 {
            result = handle.search(query)?;
        }
        Ok((start.elapsed() / 10, ids(&result)))
    };
    let (first, _) = time(&query)?;
    // The position of the hit just before page 4,000 (depth 80,000).
    query.page = Page::Offset { offset: 0, limit: 1 };
    let deep_id = &expected[79_999];
    let deep_doc = corpus
        .docs
        .iter()
        .find(|d| d["id"] == json!(deep_id))
        .ok_or_else(|| SearchError::InvalidQuery {
            reason: "no doc".into(),
        })?;
    let position = SortPosition {
        values: vec![
            deep_doc
                .get("amount")
                .and_then(Value::as_i64)
                .map_or(FieldValue::Null, FieldValue::I64),
            deep_doc
                .get("managerName")
                .and_then(Value::as_str)
                .map_or(FieldValue::Null, |s| FieldValue::Str(s.into())),
        ],
        id: deep_id.clone(),
    };
    query.page = Page::After {
        first: 20,
        after: Some(position),
    };
    let (deep, hits) = time(&query)?;
    assert_eq!(hits, expected[80_000..80_020].to_vec());
    println!("100k docs, sort amount desc + managerName: page 1 {first:?}, page 4,001 {deep:?}");
    Ok(())
}

// --- Skipping what cannot make the page ---------------------------------

/// Without the total, a page visits only documents whose first key could
/// make it (the count a skipping collector returns is what it visited),
/// and finds the same hits, on page 1 and after a cursor.
#[test]
fn pages_without_a_total_visit_few_documents_and_find_the_same_hits() -> TestResult {
    let corpus = &*CORPUS;
    let handle = corpus.backend.handle("contracts")?;
    let searcher = handle.reader.searcher();
    let key = |column: &str, kind, descending| SortColumn {
        column: column.into(),
        kind,
        descending,
    };
    let id = key(ID_COLUMN, ColumnKind::Str, false);
    for first in [
        key("amount", ColumnKind::I64, true),
        key("amount", ColumnKind::I64, false),
        key("price", ColumnKind::F64, true),
        key("managerName", ColumnKind::Str, false),
    ] {
        let (_, exact) = handle.layout.exact(&first.column)?;
        let first = SortColumn {
            column: exact.to_owned(),
            ..first
        };
        let mut after = None;
        let k = 5;
        for page in 0..3 {
            let top = |skip: Option<Arc<SummaryCache>>| -> ::tantivy::Result<(u64, u64, Vec<collector::Candidate>)> {
                let collector = TopSorted::new(
                    vec![first.clone(), id.clone()],
                    after.clone(),
                    k,
                    Matches::new(&searcher, Vec::new(), Arc::default())?,
                    skip,
                );
                let (total, hits) = searcher.search(&AllQuery, &collector).and_then(|fruit| fruit)?;
                Ok((total, collector.visited(), hits))
            };
            let (total, _, all) = top(None).map_err(|e| handle.fail(e))?;
            let (counted, visited, skipped) = top(Some(Arc::default())).map_err(|e| handle.fail(e))?;
            assert_eq!(counted, total, "the count comes from the matches alone");
            let hits = |c: &[collector::Candidate]| c.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
            assert_eq!(hits(&skipped), hits(&all), "{first:?}, page {page}");
            assert!(
                visited * 3 < total,
                "{first:?}, page {page}: visited {visited} of {total}"
            );
            after = all.last().map(|c| c.values.clone());
        }
    }
    Ok(())
}

// --- Layouts ------------------------------------------------------------

/// An index written before numbers lost their terms (every exact field
/// INDEXED, text with positions and norms) still opens from disk and
/// answers every filter as an index of the current layout does; a keyword
/// only sorted on has no terms and still sorts, filters and lists.
#[tokio::test]
async fn indexes_of_the_earlier_layout_open_and_answer_as_the_current_one() -> TestResult {
    let mut spec = spec();
    spec.fields
        .push(FieldSpec::new("code", FieldKind::Keyword).sortable());
    let dir = TempDir::new("layout");
    let old = dir.0.join("contracts_v1");
    std::fs::create_dir_all(&old).map_err(|e| backend_error("test", e))?;
    let spec_text = serde_json::to_vec(&spec).map_err(|e| backend_error("test", e))?;
    std::fs::write(old.join(SPEC_FILE), spec_text).map_err(|e| backend_error("test", e))?;
    let (schema, _) = Layout::build(&spec, Terms::Every);
    Index::create_in_dir(&old, schema).map_err(|e| backend_error("test", e))?;
    let earlier = TantivyBackend::open(&dir.0)?;
    let current = TantivyBackend::in_memory();
    current.create_index(&spec, "contracts_v1").await?;
    let (earlier_schema, _) = Layout::build(&spec, Terms::Every);
    assert_eq!(earlier.handle("contracts_v1")?.index.schema(), earlier_schema);
    assert_ne!(current.handle("contracts_v1")?.index.schema(), earlier_schema);

    let mut rng = Rng(11);
    let docs: Vec<Document> = (0..400)
        .map(|i| {
            let mut doc = random_doc(&mut rng, &format!("c{i}"), 1);
            doc.insert("code".into(), json!(format!("k{}", i % 37)));
            doc
        })
        .collect();
    for b in [&earlier, &current] {
        b.upsert("contracts_v1", docs.clone()).await?;
    }
    let amounts = |n: i64| (-3..n).map(FieldValue::I64).collect::<Vec<_>>();
    let filters = [
        Filter::Term {
            field: "amount".into(),
            value: FieldValue::I64(4),
        },
        Filter::Term {
            field: "amount".into(),
            value: FieldValue::Null,
        },
        Filter::In {
            field: "amount".into(),
            values: amounts(2),
        },
        Filter::In {
            field: "amount".into(),
            values: amounts(40)
                .into_iter()
                .step_by(2)
                .chain([FieldValue::Null])
                .collect(),
        },
        Filter::Term {
            field: "price".into(),
            value: FieldValue::F64(-0.0),
        },
        Filter::In {
            field: "price".into(),
            values: PRICES.iter().map(|p| FieldValue::F64(*p)).collect(),
        },
        Filter::Term {
            field: "createdAt".into(),
            value: FieldValue::Str(DATES[1].into()),
        },
        Filter::Term {
            field: "managerName".into(),
            value: FieldValue::Str(MANAGERS[0].into()),
        },
        Filter::FullText {
            fields: vec!["title".into(), "notes".into()],
            text: WORDS[2].into(),
        },
    ];
    let sort = vec![SortKey {
        field: "code".into(),
        descending: true,
    }];
    for filter in filters {
        let query = SearchQuery {
            filters: vec![filter.clone()],
            sort: sort.clone(),
            page: Page::After {
                first: 500,
                after: None,
            },
            count: true,
        };
        let found = ids(&current.search("contracts_v1", &query).await?);
        assert!(
            !found.is_empty() && found.len() < docs.len(),
            "{filter:?} selects"
        );
        assert_eq!(
            ids(&earlier.search("contracts_v1", &query).await?),
            found,
            "{filter:?}"
        );
        // (The oracle has no analyzer: full text is compared across layouts only.)
        if !matches!(filter, Filter::FullText { .. }) {
            assert_eq!(found, oracle(&spec, &docs, &query), "{filter:?}");
        }
    }
    let mut codes: Vec<String> = (0..37).map(|i| format!("k{i}")).collect();
    codes.sort();
    for b in [&earlier, &current] {
        assert_eq!(b.terms("contracts_v1", "code").await?, codes);
    }
    Ok(())
}
