//! Physical indexes behind aliases: a blue/green reindex under a steady
//! stream of writes loses nothing and serves every search meanwhile, a
//! rollback brings the previous index back up to date, an index built from
//! another schema is refused at start, and an OpenSearch that goes away
//! makes search fields fail fast and clearly until it is back.

#[macro_use]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{proxy, random_write, Backend, Rng, Stack, StackOptions};
use serde_json::json;
use tessera::search::{FieldKind, FieldSpec};

async fn stack(scale: u64, backend: Backend) -> Stack {
    let stack = Stack::start_indexed(StackOptions {
        scale,
        backend,
        ..StackOptions::default()
    })
    .await;
    stack
}

const COUNT: &str = "{ contractSearch(first: 1) { totalCount edges { node { id title } } } }";

async fn reindex_under_a_stream_of_writes_loses_nothing(backend: Backend) {
    let stack = Arc::new(stack(300, backend).await);
    let before = stack.data(COUNT, json!({})).await["contractSearch"]["totalCount"]
        .as_u64()
        .expect("count");
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    // Writes straight to the services, about 100 a second, deletes among them.
    let writer = {
        let (stack, stop, writes) = (Arc::clone(&stack), Arc::clone(&stop), Arc::clone(&writes));
        tokio::spawn(async move {
            let mut rng = Rng(0x0b1e_9ee1);
            let mut step = 0;
            while !stop.load(Ordering::Relaxed) {
                random_write(&stack, &mut rng, step, 300).await;
                writes.fetch_add(1, Ordering::Relaxed);
                step += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // The gateway's own sync loop, faster than in production.
    let poller = {
        let (stack, stop) = (Arc::clone(&stack), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for index in ["contracts", "feed"] {
                    stack.syncer().poll(index).await.expect("poll");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Searches meanwhile: never an error, never a half-built index.
    let reader = {
        let (stack, stop) = (Arc::clone(&stack), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut searches = 0;
            while !stop.load(Ordering::Relaxed) {
                let total = stack.data(COUNT, json!({})).await["contractSearch"]["totalCount"]
                    .as_u64()
                    .expect("count");
                assert!(
                    total * 10 >= before * 8,
                    "a search saw {total} of {before} contracts"
                );
                searches += 1;
            }
            searches
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reindexed = stack
        .syncer()
        .reindex("contracts", &|_| {})
        .await
        .expect("reindex");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    poller.await.expect("poller");
    let searches = reader.await.expect("reader");
    assert!(
        writes.load(Ordering::Relaxed) > 20,
        "writes went on during the reindex"
    );
    assert!(searches > 5, "searches went on during the reindex");
    assert_eq!(reindexed.previous.as_deref(), Some("contracts_v1"));
    assert_eq!(reindexed.current, "contracts_v2");
    assert!(reindexed.documents >= 250);

    // Nothing lost, nothing stale, once the last writes are synced as usual.
    for index in ["contracts", "feed"] {
        stack.syncer().poll(index).await.expect("poll");
        stack.syncer().scan(index).await.expect("scan");
    }
    stack.assert_indexes_match_a_fresh_backfill().await;
    let status = stack.syncer().status().await.expect("status");
    let live: Vec<_> = status
        .iter()
        .filter(|s| s.aliases.contains(&"contracts".to_string()))
        .collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].physical, "contracts_v2");
    assert!(status
        .iter()
        .any(|s| s.physical == "contracts_v1" && s.aliases.is_empty()));

    // Rollback: the old index is brought up to date, then takes over.
    random_write(&stack, &mut Rng(7), 0, 300).await;
    let (now, was) = stack.syncer().rollback("contracts").await.expect("rollback");
    assert_eq!((now.as_str(), was.as_str()), ("contracts_v1", "contracts_v2"));
    stack.syncer().poll("feed").await.expect("poll");
    stack.assert_indexes_match_a_fresh_backfill().await;

    // Another reindex makes v3 and keeps v1 (the previous); v2 is dropped.
    let again = stack
        .syncer()
        .reindex("contracts", &|_| {})
        .await
        .expect("reindex");
    assert_eq!(again.current, "contracts_v3");
    assert_eq!(again.previous.as_deref(), Some("contracts_v1"));
    assert_eq!(again.dropped, vec!["contracts_v2".to_string()]);
}

async fn an_index_built_from_another_schema_is_refused(backend: Backend) {
    let stack = stack(50, backend).await;
    let syncer = stack.syncer();
    syncer.check("contracts").await.expect("built from this schema");
    // An index whose spec lacks a field the schema declares, and has one it does not.
    let search = &stack.search.as_ref().expect("search").backend;
    let mut spec = search.spec("contracts").await.expect("spec");
    spec.fields.retain(|f| f.name != "managerName");
    spec.fields
        .push(FieldSpec::new("legacyCode", FieldKind::Keyword).filterable());
    search.create_index(&spec, "contracts_v9").await.expect("create");
    search
        .point_alias("contracts", "contracts_v9")
        .await
        .expect("alias");
    let err = syncer.check("contracts").await.expect_err("another spec");
    let message = err.to_string();
    for needle in [
        "`managerName` is new",
        "`legacyCode` is gone",
        "tessera sync reindex contracts",
    ] {
        assert!(message.contains(needle), "{message}");
    }
    // Nor is it rolled back to: the gateway would not start on it.
    let this_schema = search.spec("contracts_v1").await.expect("spec");
    search
        .create_index(&this_schema, "contracts_v10")
        .await
        .expect("create");
    search
        .point_alias("contracts", "contracts_v10")
        .await
        .expect("alias");
    let err = syncer.rollback("contracts").await.expect_err("another spec");
    assert!(
        err.to_string()
            .contains("`contracts_v9` was built from another version"),
        "{err}"
    );
    assert_eq!(search.resolve("contracts").await.expect("alias"), "contracts_v10");
}

on_both_backends!(
    reindex_under_a_stream_of_writes_loses_nothing,
    an_index_built_from_another_schema_is_refused,
);

#[tokio::test]
async fn opensearch_going_away_fails_search_fields_fast_and_recovers() {
    let Some(Backend::OpenSearch(url)) = common::opensearch() else {
        return;
    };
    let proxy = proxy(&url).await;
    let stack = stack(60, Backend::OpenSearch(proxy.url.clone())).await;
    let query = "{ contractSearch(first: 1) { totalCount } contract(id: \"1\") { id title } }";
    let ok = stack.data(query, json!({})).await;
    assert_eq!(ok["contractSearch"]["totalCount"], 60);

    proxy.up.store(false, Ordering::Relaxed);
    // Open connections notice within 20 ms.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let (status, body) = stack.post(json!({"query": query})).await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200);
    assert_eq!(body["data"]["contractSearch"], json!(null), "{body}");
    assert_eq!(body["data"]["contract"]["id"], "1", "the rest is served: {body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "SEARCH_UNAVAILABLE",
        "{body}"
    );
    assert!(
        stack.syncer().poll("contracts").await.is_err(),
        "sync steps fail too, and are retried"
    );

    proxy.up.store(true, Ordering::Relaxed);
    let back = stack.data(query, json!({})).await;
    assert_eq!(back["contractSearch"]["totalCount"], 60);
    stack
        .syncer()
        .poll("contracts")
        .await
        .expect("the next poll works");
}
