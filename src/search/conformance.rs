//! The contract every [`SearchBackend`] keeps, checked against each of
//! them with the same test bodies: tantivy always; OpenSearch at
//! `TESSERA_TEST_OPENSEARCH_URL` (`scripts/services.sh up` starts one). A
//! missing server skips the OpenSearch tests, except under `CI=true`, where
//! it fails them. Any difference between the backends is a failure.
//!
//! - a pagination oracle: random documents (ties, missing values, several
//!   batches, rewrites and deletes) and random filters and sorts, walked by
//!   cursor and by offset, against a brute-force filter and sort;
//! - version rules, refused documents, hits and positions, lookups, terms,
//!   bad queries, cursors, aliases.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::query::{Document, FieldValue, Filter, Page, SearchQuery, SortKey, SortPosition};
use super::{
    CursorCodec, CursorError, OpenSearchBackend, OpenSearchOptions, SearchBackend, SearchError,
    TantivyBackend,
};

use super::testkit::{corpus_writes, first_page, ids, oracle, spec, DATES, MANAGERS};

type TestResult = Result<(), SearchError>;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Engine {
    Tantivy,
    OpenSearch,
}

/// The OpenSearch server the tests use, if any; `CI=true` requires one.
pub(crate) fn opensearch_url() -> Option<String> {
    match std::env::var("TESSERA_TEST_OPENSEARCH_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true: the OpenSearch tests need TESSERA_TEST_OPENSEARCH_URL (scripts/services.sh up)")
        }
        _ => None,
    }
}

/// A prefix no other test uses, so tests share one server safely.
pub(crate) fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, AtomicOrdering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("test{}x{nanos}x{n}_", std::process::id())
}

/// An empty backend of `engine`, or `None` when its server is not configured.
async fn fresh(engine: Engine) -> Result<Option<Arc<dyn SearchBackend>>, SearchError> {
    Ok(match engine {
        Engine::Tantivy => Some(Arc::new(TantivyBackend::in_memory())),
        Engine::OpenSearch => match opensearch_url() {
            None => {
                eprintln!("skipped: TESSERA_TEST_OPENSEARCH_URL is not set");
                None
            }
            Some(url) => Some(Arc::new(OpenSearchBackend::new(OpenSearchOptions {
                url,
                index_prefix: unique_prefix(),
                replicas: 0,
                ..OpenSearchOptions::default()
            })?)),
        },
    })
}

/// 2,000 documents written in shuffled batches, then partly rewritten
/// and deleted, with the surviving documents as the oracle's data.
struct Corpus {
    backend: Arc<dyn SearchBackend>,
    docs: Vec<Document>,
}

/// One runtime for the synchronous property tests.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
});

static TANTIVY_CORPUS: LazyLock<Option<Corpus>> = LazyLock::new(|| {
    RUNTIME
        .block_on(build_corpus(Engine::Tantivy, 2_000, 7))
        .expect("corpus builds")
});
static OPENSEARCH_CORPUS: LazyLock<Option<Corpus>> = LazyLock::new(|| {
    RUNTIME
        .block_on(build_corpus(Engine::OpenSearch, 2_000, 7))
        .expect("corpus builds")
});

async fn build_corpus(engine: Engine, n: usize, seed: u64) -> Result<Option<Corpus>, SearchError> {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(None);
    };
    let (writes, docs) = corpus_writes(n, seed);
    for batch in writes {
        backend.write("contracts", batch, None).await?;
    }
    Ok(Some(Corpus { backend, docs }))
}

// --- Random queries -----------------------------------------------------

fn str_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        4 => prop::sample::select(MANAGERS.to_vec()).prop_map(|s| FieldValue::Str(s.into())),
        1 => Just(FieldValue::Str("Nobody".into())),
        1 => Just(FieldValue::Null),
    ]
}

fn bound(values: Vec<FieldValue>) -> impl Strategy<Value = Option<FieldValue>> {
    prop_oneof![Just(None), prop::sample::select(values).prop_map(Some)]
}

fn range(field: &'static str, values: Vec<FieldValue>) -> impl Strategy<Value = Filter> {
    (
        bound(values.clone()),
        bound(values.clone()),
        bound(values.clone()),
        bound(values),
    )
        .prop_map(move |(gte, gt, lte, lt)| Filter::Range {
            field: field.into(),
            gte,
            gt,
            lte,
            lt,
        })
}

fn filter() -> impl Strategy<Value = Filter> {
    let amounts: Vec<FieldValue> = (-4..14).map(FieldValue::I64).collect();
    let prices = vec![
        FieldValue::F64(-2.5),
        FieldValue::F64(-0.0),
        FieldValue::I64(0),
        FieldValue::F64(1.0),
        FieldValue::F64(1e10),
    ];
    let dates: Vec<FieldValue> = DATES
        .iter()
        .map(|d| FieldValue::Str((*d).into()))
        .chain([FieldValue::I64(0)])
        .collect();
    let names: Vec<FieldValue> = ["A", "Al", "Bo", "Z", "b", "É"]
        .iter()
        .map(|s| FieldValue::Str((*s).into()))
        .collect();
    prop_oneof![
        prop::sample::select(vec!["open", "closed", "draft"]).prop_map(|s| Filter::Term {
            field: "status".into(),
            value: FieldValue::Str(s.into()),
        }),
        str_value().prop_map(|value| Filter::Term {
            field: "managerName".into(),
            value,
        }),
        prop::collection::vec(str_value(), 0..4).prop_map(|values| Filter::In {
            field: "managerName".into(),
            values,
        }),
        prop::collection::vec(prop::sample::select(amounts.clone()), 1..4).prop_map(|values| {
            Filter::In {
                field: "amount".into(),
                values,
            }
        }),
        // Numbers and dates are columns without terms in tantivy: equality
        // and `in` read the column (with null: the missing ones too).
        prop::sample::select(amounts.clone()).prop_map(|value| Filter::Term {
            field: "amount".into(),
            value,
        }),
        prop::sample::select(prices.clone()).prop_map(|value| Filter::Term {
            field: "price".into(),
            value,
        }),
        prop::collection::vec(
            prop::sample::select(
                prices
                    .iter()
                    .cloned()
                    .chain([FieldValue::Null])
                    .collect::<Vec<_>>()
            ),
            0..20
        )
        .prop_map(|values| Filter::In {
            field: "price".into(),
            values,
        }),
        prop::collection::vec(prop::sample::select(dates.clone()), 1..3).prop_map(|values| Filter::In {
            field: "createdAt".into(),
            values,
        }),
        range("amount", amounts),
        range("price", prices),
        range("createdAt", dates),
        range("managerName", names),
        prop::sample::select(vec!["A", "Al", "B", "", "Zo", "É", "x"]).prop_map(|p| Filter::Prefix {
            field: "managerName".into(),
            prefix: p.into(),
        }),
        prop::sample::select(vec!["al", "Al", "beta", "beta-m", "g"]).prop_map(|p| Filter::Prefix {
            field: "title".into(),
            prefix: p.into(),
        }),
        prop::sample::select(vec!["open", "alpha", "beta-max"]).prop_map(|t| Filter::Term {
            field: "tags".into(),
            value: FieldValue::Str(t.into()),
        }),
        any::<bool>().prop_map(|b| Filter::Term {
            field: "a.b".into(),
            value: FieldValue::Bool(b),
        }),
    ]
}

fn sort() -> impl Strategy<Value = Vec<SortKey>> {
    let fields = vec![
        "amount",
        "price",
        "managerName",
        "title",
        "createdAt",
        "status",
        "id",
    ];
    prop::collection::vec(
        (prop::sample::select(fields), any::<bool>()).prop_map(|(f, descending)| SortKey {
            field: f.into(),
            descending,
        }),
        0..4,
    )
}

/// Walks every page with cursors (through the codec, as clients would)
/// and checks each against the oracle; then some offset pages.
fn check_pagination(
    corpus: &Corpus,
    filters: Vec<Filter>,
    sort: Vec<SortKey>,
    page: usize,
) -> Result<(), TestCaseError> {
    let search = |query: &SearchQuery| {
        RUNTIME
            .block_on(corpus.backend.search("contracts", query))
            .map_err(|e| TestCaseError::fail(e.to_string()))
    };
    let codec = CursorCodec::new(b"conformance-99");
    let mut query = SearchQuery {
        filters,
        sort,
        page: Page::After {
            first: page,
            after: None,
        },
        count: true,
    };
    let expected = oracle(&spec(), &corpus.docs, &query);
    let mut seen = Vec::new();
    loop {
        let result = search(&query)?;
        prop_assert_eq!(result.total, Some(expected.len() as u64));
        prop_assert!(result.hits.len() <= page);
        // Without the total the backend may skip what cannot make the
        // page; the page must not change.
        let uncounted = search(&SearchQuery {
            count: false,
            ..query.clone()
        })?;
        prop_assert_eq!(uncounted.total, None);
        prop_assert_eq!(ids(&uncounted), ids(&result));
        prop_assert_eq!(
            uncounted.hits.iter().map(|h| &h.position).collect::<Vec<_>>(),
            result.hits.iter().map(|h| &h.position).collect::<Vec<_>>()
        );
        seen.extend(ids(&result));
        let Some(last) = result.hits.last() else { break };
        if result.hits.len() < page {
            break;
        }
        let cursor = codec.encode("contracts", &query, &last.position);
        let position = codec
            .decode(&cursor, "contracts", &query)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        query.page = Page::After {
            first: page,
            after: Some(position),
        };
        prop_assert!(seen.len() <= expected.len(), "pagination does not end");
    }
    prop_assert_eq!(&seen, &expected);

    for offset in [0, page / 2, page * 3, expected.len().saturating_sub(page / 2)] {
        query.page = Page::Offset { offset, limit: page };
        let result = search(&query)?;
        let want: Vec<String> = expected.iter().skip(offset).take(page).cloned().collect();
        prop_assert_eq!(ids(&result), want.clone());
        let uncounted = search(&SearchQuery {
            count: false,
            ..query.clone()
        })?;
        prop_assert_eq!(ids(&uncounted), want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn tantivy_cursor_pages_match_the_oracle(
        filters in prop::collection::vec(filter(), 0..3),
        sort in sort(),
        page in prop_oneof![3 => 7usize..160, 1 => 1usize..4],
    ) {
        // Tiny pages only over filtered results, to keep the test quick.
        let page = if page < 4 && filters.is_empty() { page * 40 } else { page };
        if let Some(corpus) = &*TANTIVY_CORPUS {
            check_pagination(corpus, filters, sort, page)?;
        }
    }

    #[test]
    fn opensearch_cursor_pages_match_the_oracle(
        filters in prop::collection::vec(filter(), 0..3),
        sort in sort(),
        page in prop_oneof![3 => 7usize..160, 1 => 1usize..4],
    ) {
        let page = if page < 4 && filters.is_empty() { page * 40 } else { page };
        if let Some(corpus) = &*OPENSEARCH_CORPUS {
            check_pagination(corpus, filters, sort, page)?;
        }
    }
}

#[test]
fn walking_the_whole_corpus_matches_the_oracle() -> Result<(), TestCaseError> {
    for corpus in [&*TANTIVY_CORPUS, &*OPENSEARCH_CORPUS].into_iter().flatten() {
        check_pagination(corpus, vec![], vec![SortKey::desc("amount")], 500)?;
    }
    Ok(())
}

// --- Writes and versions ------------------------------------------------

async fn backend_with_index(engine: Engine) -> Result<Option<Arc<dyn SearchBackend>>, SearchError> {
    let Some(backend) = fresh(engine).await? else {
        return Ok(None);
    };
    backend.create_index(&spec(), "contracts_v1").await?;
    backend.point_alias("contracts", "contracts_v1").await?;
    Ok(Some(backend))
}

fn doc(id: &str, version: i64, amount: i64) -> Document {
    let value = json!({"id": id, "_version": version, "amount": amount, "managerName": "Ann"});
    value.as_object().cloned().unwrap_or_default()
}

async fn amount_of(backend: &dyn SearchBackend, id: &str) -> Result<Option<i64>, SearchError> {
    let docs = backend.get("contracts", &[id.to_owned()]).await?;
    Ok(docs
        .into_iter()
        .next()
        .flatten()
        .and_then(|d| d.get("amount").and_then(Value::as_i64)))
}

async fn stale_upserts_are_skipped(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    let out = b.upsert("contracts", vec![doc("a", 2, 20)]).await?;
    assert_eq!(out.written, 1);
    // Read your writes: visible as soon as the call returns.
    assert_eq!(amount_of(b, "a").await?, Some(20));

    let out = b.upsert("contracts", vec![doc("a", 1, 10)]).await?;
    assert_eq!((out.written, out.skipped), (0, 1));
    assert_eq!(amount_of(b, "a").await?, Some(20));

    // The same version is rewritten (dependency rebuilds refresh
    // denormalized fields without a new version).
    let out = b.upsert("contracts", vec![doc("a", 2, 21)]).await?;
    assert_eq!(out.written, 1);
    assert_eq!(amount_of(b, "a").await?, Some(21));
    assert_eq!(b.count("contracts").await?, 1);

    // Within one batch, the highest version wins whatever the order.
    let out = b
        .upsert(
            "contracts",
            vec![doc("b", 5, 50), doc("b", 4, 40), doc("b", 6, 60), doc("b", 3, 30)],
        )
        .await?;
    assert_eq!((out.written, out.skipped), (2, 2));
    assert_eq!(amount_of(b, "b").await?, Some(60));
    assert_eq!(b.count("contracts").await?, 2);
    Ok(())
}

async fn deletes_win_over_older_upserts(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    b.upsert("contracts", vec![doc("a", 1, 10), doc("b", 5, 50)])
        .await?;

    let out = b.delete("contracts", vec!["a".into(), "b".into()], 3).await?;
    assert_eq!((out.deleted, out.skipped), (1, 1), "b is newer than the delete");
    assert_eq!(amount_of(b, "a").await?, None);
    assert_eq!(amount_of(b, "b").await?, Some(50));

    // A stale upsert after the delete does not resurrect it.
    let out = b
        .upsert("contracts", vec![doc("a", 2, 20), doc("a", 3, 30)])
        .await?;
    assert_eq!((out.written, out.skipped), (0, 2));
    assert_eq!(amount_of(b, "a").await?, None);

    // A newer one does.
    let out = b.upsert("contracts", vec![doc("a", 4, 40)]).await?;
    assert_eq!(out.written, 1);
    assert_eq!(amount_of(b, "a").await?, Some(40));

    // A delete that arrives before the create it follows.
    b.delete("contracts", vec!["c".into()], 9).await?;
    let out = b.upsert("contracts", vec![doc("c", 8, 80)]).await?;
    assert_eq!(out.skipped, 1);
    assert_eq!(b.count("contracts").await?, 2);
    Ok(())
}

async fn invalid_documents_are_rejected_alone(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    let mut bad = doc("x", 1, 1);
    bad.insert("amount".into(), json!("lots"));
    let out = b.upsert("contracts", vec![doc("ok", 1, 1), bad]).await?;
    assert_eq!(out.written, 1);
    assert_eq!(out.rejected.len(), 1, "{out:?}");
    assert_eq!(out.rejected[0].id, "x");
    assert!(out.rejected[0].reason.contains("`amount`"), "{out:?}");
    assert_eq!(b.count("contracts").await?, 1, "the valid document was written");

    let no_version = json!({"id": "v"}).as_object().cloned().unwrap_or_default();
    let no_id = json!({"_version": 1}).as_object().cloned().unwrap_or_default();
    let mut sorted_array = doc("y", 1, 1);
    sorted_array.insert("managerName".into(), json!(["a", "b"]));
    let out = b
        .upsert("contracts", vec![no_version, no_id, sorted_array])
        .await?;
    assert_eq!((out.written, out.rejected.len()), (0, 3), "{out:?}");
    assert_eq!(b.count("contracts").await?, 1);
    Ok(())
}

/// A string longer than `MAX_EXACT_CHARS` is stored and served, its words
/// searchable, but filters and sorts do not see it (Elasticsearch's
/// `ignore_above`): OpenSearch refused the whole document for a term over
/// 32,766 bytes, and tantivy kept it; both now answer alike.
async fn strings_too_long_to_index_exactly_are_stored_not_matched(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    let long_name = "가".repeat(12_000);
    let mut a = doc("a", 1, 1);
    a.insert("managerName".into(), json!(long_name));
    a.insert("title".into(), json!(format!("alpha {}", "b".repeat(40_000))));
    let mut short = doc("b", 1, 2);
    short.insert("managerName".into(), json!("Ann"));
    short.insert("title".into(), json!("alpha beta"));
    let out = b.upsert("contracts", vec![a, short, doc("c", 1, 3)]).await?;
    assert_eq!((out.written, out.rejected.len()), (3, 0), "{out:?}");
    let query = first_page;
    let term = Filter::Term {
        field: "managerName".into(),
        value: FieldValue::Str(long_name.clone()),
    };
    assert!(ids(&b.search("contracts", &query(vec![term], vec![])).await?).is_empty());
    let prefix = Filter::Prefix {
        field: "managerName".into(),
        prefix: "가가".into(),
    };
    assert!(ids(&b.search("contracts", &query(vec![prefix], vec![])).await?).is_empty());
    // Sorted with the missing values, after every indexed one, both ways.
    for sort in [
        SortKey::asc("managerName"),
        SortKey::desc("managerName"),
        SortKey::asc("title"),
    ] {
        let found = ids(&b.search("contracts", &query(vec![], vec![sort.clone()])).await?);
        assert_eq!(found[0], "b", "{sort:?}: {found:?}");
    }
    let words = Filter::FullText {
        fields: vec!["title".into()],
        text: "alpha".into(),
    };
    let mut found = ids(&b.search("contracts", &query(vec![words], vec![])).await?);
    found.sort();
    assert_eq!(found, vec!["a", "b"]);
    let stored = b.get("contracts", &["a".into()]).await?;
    assert_eq!(
        stored[0].as_ref().and_then(|d| d["managerName"].as_str()),
        Some(long_name.as_str())
    );
    Ok(())
}

// --- Reads ------------------------------------------------------------

async fn hits_carry_the_stored_document_and_positions(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    let d = json!({
        "id": "k1", "_version": 1, "amount": 5, "createdAt": "2024-01-01T01:00:00+01:00",
        "title": "Quarterly Report", "notes": "secret words", "extra": {"nested": [1, 2]}
    });
    b.upsert("contracts", vec![d.as_object().cloned().unwrap_or_default()])
        .await?;
    let query = SearchQuery {
        filters: vec![Filter::FullText {
            fields: vec!["title".into(), "notes".into()],
            text: "quarterly SECRET".into(),
        }],
        sort: vec![SortKey::desc("createdAt"), SortKey::asc("managerName")],
        page: Page::After {
            first: 10,
            after: None,
        },
        count: true,
    };
    let result = b.search("contracts", &query).await?;
    assert_eq!(result.total, Some(1));
    let hit = &result.hits[0];
    assert_eq!(hit.id, "k1");
    assert_eq!(
        hit.position,
        SortPosition {
            values: vec![FieldValue::I64(1_704_067_200_000), FieldValue::Null],
            id: "k1".into()
        }
    );
    assert_eq!(hit.document.get("extra"), Some(&json!({"nested": [1, 2]})));
    assert_eq!(hit.document.get("notes"), None, "notes is not stored");
    assert_eq!(hit.document.get("title"), Some(&json!("Quarterly Report")));

    let none = SearchQuery {
        filters: vec![Filter::FullText {
            fields: vec!["title".into()],
            text: "quarterly secret".into(),
        }],
        ..query.clone()
    };
    assert_eq!(
        b.search("contracts", &none).await?.total,
        Some(0),
        "each word must match some field"
    );
    // Text with no word the analyzer keeps (a word of 40 bytes or more is
    // dropped, punctuation is no word) matches nothing, as Elasticsearch's
    // `zero_terms_query: none`; it used to match every document. Only empty
    // text means no condition.
    let text = |text: &str| SearchQuery {
        filters: vec![Filter::FullText {
            fields: vec!["title".into(), "notes".into()],
            text: text.into(),
        }],
        ..query.clone()
    };
    for nothing in ["가가가가가가가가가가가가가가", "!!! ---", &"z".repeat(40)] {
        assert_eq!(
            b.search("contracts", &text(nothing)).await?.total,
            Some(0),
            "{nothing}"
        );
    }
    // The long word is dropped from the words to match, as at indexing.
    let long = format!("quarterly {}", "z".repeat(40));
    assert_eq!(b.search("contracts", &text(&long)).await?.total, Some(1));
    assert_eq!(b.search("contracts", &text("  ")).await?.total, Some(1));
    Ok(())
}

async fn ids_where_finds_every_dependent_document(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    let docs: Vec<Document> = (0..300)
        .map(|i| {
            let mut d = doc(&format!("d{i}"), 1, i);
            d.insert(
                "managerName".into(),
                json!(if i % 3 == 0 { "Ann" } else { "Bob" }),
            );
            d
        })
        .collect();
    for chunk in docs.chunks(70) {
        b.upsert("contracts", chunk.to_vec()).await?;
    }
    let mut found = b
        .ids_where(
            "contracts",
            &Filter::Term {
                field: "managerName".into(),
                value: FieldValue::Str("Ann".into()),
            },
        )
        .await?;
    found.sort();
    let mut want: Vec<String> = (0..300).filter(|i| i % 3 == 0).map(|i| format!("d{i}")).collect();
    want.sort();
    assert_eq!(found, want);
    let got = b
        .get("contracts", &["d3".into(), "nope".into(), "d4".into()])
        .await?;
    assert_eq!(
        got.iter()
            .map(|d| d.as_ref().map(|d| d["id"].clone()))
            .collect::<Vec<_>>(),
        vec![Some(json!("d3")), None, Some(json!("d4"))]
    );
    Ok(())
}

/// Instants are indexed to the millisecond; a range bound between two
/// milliseconds holds the same instants on every backend as it would
/// exactly (`lt: …17.8325Z` holds `…17.832Z`; `gte` does not).
async fn range_bounds_finer_than_a_millisecond_hold_what_they_say(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    let mut d = doc("a", 1, 1);
    d.insert("createdAt".into(), json!("2019-01-01T01:28:17.832Z"));
    b.upsert("contracts", vec![d]).await?;
    let bound = || Some(FieldValue::Str("2019-01-01T01:28:17.8325Z".into()));
    let range = |gte, gt, lte, lt| {
        let range = Filter::Range {
            field: "createdAt".into(),
            gte,
            gt,
            lte,
            lt,
        };
        first_page(vec![range], vec![])
    };
    for (query, want) in [
        (range(None, None, None, bound()), vec!["a"]),
        (range(None, None, bound(), None), vec!["a"]),
        (range(bound(), None, None, None), vec![]),
        (range(None, bound(), None, None), vec![]),
    ] {
        assert_eq!(ids(&b.search("contracts", &query).await?), want, "{query:?}");
    }
    Ok(())
}

// --- Bad input ----------------------------------------------------------

async fn bad_queries_are_client_errors_naming_the_field(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    b.upsert("contracts", vec![doc("a", 1, 1)]).await?;
    let base = SearchQuery {
        filters: vec![],
        sort: vec![],
        page: Page::After {
            first: 10,
            after: None,
        },
        count: true,
    };
    let cases: Vec<(SearchQuery, &str)> = vec![
        (
            SearchQuery {
                sort: vec![SortKey::asc("colour")],
                ..base.clone()
            },
            "`colour`",
        ),
        (
            SearchQuery {
                sort: vec![SortKey::asc("tags")],
                ..base.clone()
            },
            "`tags`",
        ),
        (
            SearchQuery {
                filters: vec![Filter::Term {
                    field: "amount".into(),
                    value: FieldValue::Str("ten".into()),
                }],
                ..base.clone()
            },
            "`amount`",
        ),
        (
            SearchQuery {
                filters: vec![Filter::Prefix {
                    field: "amount".into(),
                    prefix: "1".into(),
                }],
                ..base.clone()
            },
            "`amount`",
        ),
        (
            SearchQuery {
                page: Page::Offset {
                    offset: 10_000,
                    limit: 1,
                },
                ..base.clone()
            },
            "10001",
        ),
        (
            SearchQuery {
                sort: vec![SortKey::asc("amount")],
                page: Page::After {
                    first: 1,
                    after: Some(SortPosition {
                        values: vec![FieldValue::Str("x".into())],
                        id: "a".into(),
                    }),
                },
                ..base.clone()
            },
            "`amount`",
        ),
    ];
    for (query, needle) in cases {
        let err = b.search("contracts", &query).await.expect_err("invalid query");
        assert!(err.is_client_error(), "{err:?}");
        assert!(err.to_string().contains(needle), "{err} should mention {needle}");
    }
    let err = b.search("nope", &base).await.expect_err("unknown index");
    assert!(matches!(err, SearchError::UnknownIndex { .. }));
    Ok(())
}

async fn tampered_and_foreign_cursors_are_refused(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    b.upsert("contracts", vec![doc("a", 1, 1), doc("b", 1, 2)])
        .await?;
    let codec = CursorCodec::new(b"conformance-5");
    let query = SearchQuery {
        filters: vec![],
        sort: vec![SortKey::desc("amount")],
        page: Page::After {
            first: 1,
            after: None,
        },
        count: true,
    };
    let page = b.search("contracts", &query).await?;
    let cursor = codec.encode("contracts", &query, &page.hits[0].position);

    let mut other = query.clone();
    other.sort[0].descending = false;
    assert_eq!(
        codec.decode(&cursor, "contracts", &other),
        Err(CursorError::ForeignQuery {
            index: "contracts".into()
        })
    );
    let mut bytes = cursor.into_bytes();
    let last = bytes.len() - 3;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap_or_default();
    assert_eq!(
        codec.decode(&tampered, "contracts", &query),
        Err(CursorError::Tampered)
    );
    Ok(())
}

// --- Aliases, checkpoints, disk ------------------------------------------

async fn alias_swap_moves_searches_to_the_new_index(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    b.upsert("contracts", vec![doc("old", 1, 1)]).await?;

    b.create_index(&spec(), "contracts_v2").await?;
    b.upsert("contracts_v2", vec![doc("new1", 1, 1), doc("new2", 1, 2)])
        .await?;
    let all = SearchQuery {
        filters: vec![],
        sort: vec![],
        page: Page::After {
            first: 10,
            after: None,
        },
        count: true,
    };
    assert_eq!(ids(&b.search("contracts", &all).await?), vec!["old"]);

    let previous = b.point_alias("contracts", "contracts_v2").await?;
    assert_eq!(previous.as_deref(), Some("contracts_v1"));
    assert_eq!(b.resolve("contracts").await?, "contracts_v2");
    assert_eq!(ids(&b.search("contracts", &all).await?), vec!["new1", "new2"]);
    assert_eq!(
        ids(&b.search("contracts_v1", &all).await?),
        vec!["old"],
        "v1 stays until dropped"
    );

    assert!(matches!(
        b.drop_index("contracts_v2").await,
        Err(SearchError::IndexInUse { .. })
    ));
    b.drop_index("contracts_v1").await?;
    assert!(matches!(
        b.search("contracts_v1", &all).await,
        Err(SearchError::UnknownIndex { .. })
    ));
    assert!(matches!(
        b.create_index(&spec(), "contracts").await,
        Err(SearchError::AlreadyExists { .. })
    ));
    assert!(matches!(
        b.create_index(&spec(), "../etc").await,
        Err(SearchError::InvalidName { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn opensearch_missing_or_down_is_unavailable_not_a_hang() {
    // Nothing listens on port 9: connection refused, at once.
    let b = OpenSearchBackend::new(OpenSearchOptions {
        url: "http://127.0.0.1:9".into(),
        timeout: std::time::Duration::from_secs(2),
        ..OpenSearchOptions::default()
    })
    .expect("client");
    let query = SearchQuery {
        filters: vec![],
        sort: vec![],
        page: Page::After {
            first: 1,
            after: None,
        },
        count: true,
    };
    let started = std::time::Instant::now();
    let err = b.search("contracts", &query).await.expect_err("no server");
    assert!(matches!(err, SearchError::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

async fn terms_list_every_distinct_keyword(engine: Engine) -> TestResult {
    let Some(backend) = backend_with_index(engine).await? else {
        return Ok(());
    };
    let b = backend.as_ref();
    let docs: Vec<Document> = (0..50)
        .map(|i| {
            let mut d = doc(&format!("t{i}"), 1, i);
            d.insert("tags".into(), json!([format!("x{}", i % 7), "shared"]));
            d
        })
        .collect();
    b.upsert("contracts", docs).await?;
    let mut terms = b.terms("contracts", "tags").await?;
    terms.sort();
    let mut want: Vec<String> = (0..7)
        .map(|i| format!("x{i}"))
        .chain(["shared".to_string()])
        .collect();
    want.sort();
    assert_eq!(terms, want);
    let err = b.terms("contracts", "amount").await.expect_err("not a keyword");
    assert!(err.to_string().contains("`amount`"), "{err}");
    let catalog = b.catalog().await?;
    assert_eq!(catalog.indexes, vec!["contracts_v1".to_string()]);
    assert_eq!(
        catalog.aliases.get("contracts").map(String::as_str),
        Some("contracts_v1")
    );
    Ok(())
}

/// Every contract test, once per engine.
macro_rules! for_each_engine {
    ($($name:ident),* $(,)?) => {
        mod tantivy_backend {
            $(
                #[tokio::test]
                async fn $name() -> super::TestResult {
                    super::$name(super::Engine::Tantivy).await
                }
            )*
        }
        mod opensearch_backend {
            $(
                #[tokio::test]
                async fn $name() -> super::TestResult {
                    super::$name(super::Engine::OpenSearch).await
                }
            )*
        }
    };
}

for_each_engine!(
    stale_upserts_are_skipped,
    deletes_win_over_older_upserts,
    invalid_documents_are_rejected_alone,
    hits_carry_the_stored_document_and_positions,
    ids_where_finds_every_dependent_document,
    bad_queries_are_client_errors_naming_the_field,
    tampered_and_foreign_cursors_are_refused,
    alias_swap_moves_searches_to_the_new_index,
    terms_list_every_distinct_keyword,
    range_bounds_finer_than_a_millisecond_hold_what_they_say,
    strings_too_long_to_index_exactly_are_stored_not_matched,
);
