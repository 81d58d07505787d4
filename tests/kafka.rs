//! The event-driven synchronizer against a real Kafka broker
//! (`scripts/services.sh up`; `TESSERA_TEST_KAFKA_BROKERS`, required with
//! `CI=true`): the nine services publish their change events, workers of
//! one consumer group apply them. Every test has topics, a group and a
//! dead-letter topic of its own; they run one at a time (one restarts the
//! broker).

#[macro_use]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, opensearch, proxy, random_write, Backend, Rng, Stack, StackOptions};
use serde_json::json;
use tessera::sync::kafka::{list_dead_letters, replay_dead_letters, KafkaOptions, Worker};

/// One test at a time: they share the broker, and one restarts it.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn brokers() -> Option<String> {
    match std::env::var("TESSERA_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true: the Kafka tests need TESSERA_TEST_KAFKA_BROKERS (scripts/services.sh up)")
        }
        _ => {
            eprintln!("skipped: TESSERA_TEST_KAFKA_BROKERS is not set (scripts/services.sh up)");
            None
        }
    }
}

/// Topics, group and dead letters of this test alone.
fn options(brokers: &str, partitions: u32) -> KafkaOptions {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tag = format!("t{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    KafkaOptions {
        brokers: brokers.to_string(),
        group: format!("{tag}.sync"),
        topic_prefix: format!("{tag}.changes."),
        dead_letter_topic: format!("{tag}.dead-letters"),
        max_attempts: 2,
        retry_backoff: Duration::from_millis(20),
        batch_size: 100,
        partitions,
    }
}

/// A stack whose services publish to Kafka; indexes not built yet (the
/// first worker backfills them).
async fn stack(scale: u64, backend: Backend, kafka: &KafkaOptions) -> Stack {
    let sink = tessera_subgraphs::KafkaSink::new(&kafka.brokers, &kafka.topic_prefix).expect("producer");
    Stack::start_with(StackOptions {
        scale,
        search: true,
        sink: Some(Arc::new(sink)),
        backend,
        ..StackOptions::default()
    })
    .await
}

/// Starts a worker in this process; stop it by dropping the sender.
async fn worker(
    stack: &Stack,
    kafka: &KafkaOptions,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<u64>) {
    let worker = Worker::start(Arc::clone(stack.syncer()), kafka.clone(), &|_, _| {})
        .await
        .expect("worker starts");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
            .events
    });
    (stop, handle)
}

async fn converged(stack: &Stack, within: Duration) {
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        match stack.indexes_match_a_fresh_backfill().await {
            Ok(()) => return,
            Err(difference) => last = difference,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the indexes did not converge within {within:?}: {last}");
}

async fn title_count(stack: &Stack, text: &str) -> u64 {
    stack
        .data(
            "query($t: String!) { contractSearch(filter: {text: $t}, first: 0) { totalCount } }",
            json!({"t": text}),
        )
        .await["contractSearch"]["totalCount"]
        .as_u64()
        .expect("count")
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_while_the_partition_flows_and_replay_drains_it() {
    let Some(brokers) = brokers() else { return };
    let _one = BROKER.lock().await;
    // One partition: the poison and the events after it share it.
    let kafka = options(&brokers, 1);
    let stack = stack(100, Backend::Tantivy, &kafka).await;
    let (stop, handle) = worker(&stack, &kafka).await;
    // Contract 88 cannot be read for now: its service fails every request
    // that asks for it (rebuilds send ids as variables, sorted: it is `_a0`
    // alone or beside 89).
    stack
        .faults("contracts", json!({"error_when": "\"_a0\":88"}))
        .await;
    stack.retitle(88, "Poisoned walrus").await;
    stack.retitle(89, "Healthy narwhal").await;
    eventually(
        Duration::from_secs(20),
        "the event after the poison is applied",
        || async { title_count(&stack, "narwhal").await == 1 },
    )
    .await;
    assert_eq!(title_count(&stack, "walrus").await, 0);
    let letters = list_dead_letters(&kafka).await.expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].payload.contains("\"id\":88"), "{letters:?}");
    assert!(
        letters[0].error.to_lowercase().contains("contract"),
        "{letters:?}"
    );
    assert_eq!(letters[0].attempts, 3);

    // The cause fixed, a replay drains it.
    stack.faults("contracts", json!({"error_when": ""})).await;
    let replayed = replay_dead_letters(stack.syncer(), &kafka).await.expect("replay");
    assert_eq!(
        (
            replayed.applied,
            replayed.failed_again.len(),
            replayed.stopped.is_none()
        ),
        (1, 0, true)
    );
    assert_eq!(title_count(&stack, "walrus").await, 1);
    assert!(list_dead_letters(&kafka).await.expect("list").is_empty());
    drop(stop);
    assert!(handle.await.expect("worker") >= 2);
}

/// Retitles two contracts during an outage that `outage` starts and
/// `recovery` ends, held far longer than the worker's retries: the events
/// wait for the end of the outage, then are applied; none is dead-lettered.
async fn events_outlive_an_outage(
    stack: &Stack,
    kafka: &KafkaOptions,
    outage: impl std::future::Future<Output = ()>,
    recovery: impl std::future::Future<Output = ()>,
) {
    outage.await;
    stack.retitle(21, "Stranded dugong").await;
    stack.retitle(22, "Stranded manatee").await;
    // The retries (2 tries 20 ms apart, then each event alone) take
    // milliseconds; the outage lasts seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let letters = list_dead_letters(kafka).await.expect("list");
    assert!(
        letters.is_empty(),
        "an outage is not the events' fault: {letters:?}"
    );
    recovery.await;
    eventually(
        Duration::from_secs(30),
        "the events kept during the outage are applied",
        || async { title_count(stack, "stranded").await == 2 },
    )
    .await;
    let letters = list_dead_letters(kafka).await.expect("list");
    assert!(letters.is_empty(), "{letters:?}");
}

#[tokio::test]
async fn a_service_outage_keeps_the_events_instead_of_dead_lettering_them() {
    let Some(brokers) = brokers() else { return };
    let _one = BROKER.lock().await;
    let kafka = options(&brokers, 1);
    let stack = stack(100, Backend::Tantivy, &kafka).await;
    let (stop, handle) = worker(&stack, &kafka).await;
    // Staff answers 503 (then its circuit opens): no contract document,
    // which names its manager, can be built; the contracts service itself
    // takes the writes.
    events_outlive_an_outage(
        &stack,
        &kafka,
        stack.faults("staff", json!({"down": true})),
        stack.faults("staff", json!({"down": false})),
    )
    .await;
    drop(stop);
    assert!(handle.await.expect("worker") >= 2);
}

#[tokio::test]
async fn an_index_outage_keeps_the_events_instead_of_dead_lettering_them() {
    let Some(brokers) = brokers() else { return };
    let Some(Backend::OpenSearch(url)) = opensearch() else {
        return;
    };
    let _one = BROKER.lock().await;
    let kafka = options(&brokers, 1);
    // The gateway and the worker reach OpenSearch through a proxy that can be cut.
    let cut = proxy(&url).await;
    let mut stack = stack(100, Backend::OpenSearch(cut.url.clone()), &kafka).await;
    let (stop, handle) = worker(&stack, &kafka).await;
    events_outlive_an_outage(&stack, &kafka, async { cut.set_up(false) }, async {
        cut.set_up(true)
    })
    .await;
    drop(stop);
    assert!(handle.await.expect("worker") >= 2);
    // The stack drops its indexes at the server itself.
    stack.config.search.opensearch.url = url;
}

#[tokio::test]
async fn malformed_and_unknown_events_are_dead_lettered_at_once() {
    let Some(brokers) = brokers() else { return };
    let _one = BROKER.lock().await;
    let kafka = options(&brokers, 1);
    let stack = stack(60, Backend::Tantivy, &kafka).await;
    let (stop, handle) = worker(&stack, &kafka).await;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    let topic = format!("{}contracts", kafka.topic_prefix);
    for payload in [
        "not json at all".to_string(),
        json!({"service": "contracts", "type": "Invoice", "id": 1, "op": "update"}).to_string(),
    ] {
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&topic)
                    .key("x")
                    .payload(&payload),
                Duration::from_secs(5),
            )
            .await
            .expect("sent");
    }
    stack.retitle(5, "After garbage").await;
    eventually(Duration::from_secs(20), "the good event is applied", || async {
        title_count(&stack, "garbage").await == 1
    })
    .await;
    // A batch's dead letters are written once the batch is settled, just
    // after its good events are applied: they may trail them a little.
    eventually(
        Duration::from_secs(10),
        "both dead letters are written",
        || async { list_dead_letters(&kafka).await.is_ok_and(|l| l.len() >= 2) },
    )
    .await;
    let letters = list_dead_letters(&kafka).await.expect("list");
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters.iter().any(|l| l.error.contains("not JSON")),
        "{letters:?}"
    );
    assert!(letters.iter().any(|l| l.error.contains("Invoice")), "{letters:?}");
    assert!(letters.iter().all(|l| l.attempts == 0 && l.topic == topic));
    // A replay cannot fix those: it says so and keeps them, each once,
    // with one more attempt counted.
    let replayed = replay_dead_letters(stack.syncer(), &kafka).await.expect("replay");
    assert_eq!(
        (replayed.applied, replayed.failed_again.len()),
        (0, 2),
        "{replayed:?}"
    );
    let letters = list_dead_letters(&kafka).await.expect("list");
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters.iter().all(|l| l.attempts == 1), "{letters:?}");
    drop(stop);
    handle.await.expect("worker");
}

/// The contracts index refuses a document whose title is over 32,766
/// bytes: a sub-field an operator added indexes the whole title, and
/// Lucene refuses so long a term (Tessera's own fields skip such values).
async fn refuse_long_titles(stack: &Stack) {
    let os = &stack.config.search.opensearch;
    let whole = json!({"properties": {"title": {
        "type": "keyword",
        "ignore_above": tessera::search::spec::MAX_EXACT_CHARS,
        "fields": {"whole": {"type": "keyword"}}
    }}});
    let response = reqwest::Client::new()
        .put(format!("{}/{}contracts/_mapping", os.url, os.index_prefix))
        .json(&whole)
        .send()
        .await
        .expect("mapping");
    assert!(response.status().is_success(), "{:?}", response.text().await);
}

/// A letter that fails again on replay (here: the index still refuses
/// its document) stays a dead letter, written back behind the others, and
/// holds back none of them; a replay once the cause is fixed applies it.
/// A replay used to count a refused document as applied and drop the
/// letter, and to stop at the first letter it could not apply.
#[tokio::test]
async fn a_replay_keeps_the_letters_that_fail_again_and_applies_the_rest() {
    let Some(brokers) = brokers() else { return };
    let Some(backend @ Backend::OpenSearch(_)) = opensearch() else {
        return;
    };
    let _one = BROKER.lock().await;
    let kafka = options(&brokers, 1);
    let stack = stack(100, backend, &kafka).await;
    let (stop, handle) = worker(&stack, &kafka).await;
    refuse_long_titles(&stack).await;
    // Contract 31 is poisoned at its service, 30's document refused.
    stack
        .faults("contracts", json!({"error_when": "\"_a0\":31"}))
        .await;
    stack.retitle(30, &"walrus ".repeat(6000)).await;
    stack.retitle(31, "Poisoned dugong").await;
    stack.retitle(32, "Healthy narwhal").await;
    eventually(
        Duration::from_secs(20),
        "both failures are dead-lettered",
        || async { list_dead_letters(&kafka).await.is_ok_and(|l| l.len() >= 2) },
    )
    .await;
    assert_eq!(title_count(&stack, "narwhal").await, 1);
    // The service fixed, the index not: the first letter fails again and
    // is kept, the second is applied behind it.
    stack.faults("contracts", json!({"error_when": ""})).await;
    let replayed = replay_dead_letters(stack.syncer(), &kafka).await.expect("replay");
    assert_eq!(replayed.applied, 1, "{replayed:?}");
    assert_eq!(replayed.failed_again.len(), 1, "{replayed:?}");
    assert!(replayed.failed_again[0].error.contains("refused"), "{replayed:?}");
    assert_eq!(title_count(&stack, "dugong").await, 1);
    let letters = list_dead_letters(&kafka).await.expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].payload.contains("\"id\":30"), "{letters:?}");
    assert_eq!(letters[0].attempts, 4, "{letters:?}");
    // The title shortened: its own event applies it, and so does a replay.
    stack.retitle(30, "Shortened walrus").await;
    eventually(Duration::from_secs(20), "the short title is indexed", || async {
        title_count(&stack, "walrus").await == 1
    })
    .await;
    let replayed = replay_dead_letters(stack.syncer(), &kafka).await.expect("replay");
    assert_eq!(
        (replayed.applied, replayed.failed_again.len()),
        (1, 0),
        "{replayed:?}"
    );
    assert!(list_dead_letters(&kafka).await.expect("list").is_empty());
    drop(stop);
    handle.await.expect("worker");
}

#[tokio::test]
async fn a_worker_on_an_empty_index_backfills_then_follows_without_a_gap() {
    let Some(brokers) = brokers() else { return };
    let _one = BROKER.lock().await;
    let kafka = options(&brokers, 4);
    let stack = Arc::new(stack(200, Backend::Tantivy, &kafka).await);
    let mut rng = Rng(0xe57a);
    // Events before any worker exists, and during its backfill.
    for step in 0..40 {
        random_write(&stack, &mut rng, step, 200).await;
    }
    let writer = {
        let stack = Arc::clone(&stack);
        tokio::spawn(async move {
            let mut rng = Rng(0xbacf);
            for step in 40..140 {
                random_write(&stack, &mut rng, step, 200).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let (stop, handle) = worker(&stack, &kafka).await;
    writer.await.expect("writer");
    converged(&stack, Duration::from_secs(30)).await;
    // Caught up, the worker says how current the indexes are (no poll
    // moves the watermark in Kafka mode): the lag stays small while idle.
    tokio::time::sleep(Duration::from_secs(8)).await;
    common::eventually(
        Duration::from_secs(10),
        "the indexes' lag follows the events",
        || async {
            let status = stack.syncer().status().await.expect("status");
            status
                .iter()
                .filter(|s| !s.aliases.is_empty())
                .all(|s| s.lag.is_some_and(|lag| lag < Duration::from_secs(5)))
        },
    )
    .await;
    drop(stop);
    assert!(
        handle.await.expect("worker") > 0,
        "events were applied after the backfill"
    );
}

#[tokio::test]
async fn two_workers_share_the_partitions_and_take_over_on_exit() {
    let Some(brokers) = brokers() else { return };
    let Some(backend) = opensearch() else { return };
    let _one = BROKER.lock().await;
    let kafka = options(&brokers, 4);
    let stack = Arc::new(stack(200, backend, &kafka).await);
    let (stop_a, a) = worker(&stack, &kafka).await;
    let mut stop_a = Some(stop_a);
    let (stop_b, b) = worker(&stack, &kafka).await;
    // The group settles: each member holds partitions.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut rng = Rng(0x2a2b);
    for step in 0..150 {
        random_write(&stack, &mut rng, step, 200).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        if step == 100 {
            drop(stop_a.take()); // A leaves the group; B takes its partitions.
        }
    }
    let applied_by_a = a.await.expect("a");
    converged(&stack, Duration::from_secs(40)).await;
    drop(stop_b);
    let applied_by_b = b.await.expect("b");
    assert!(
        applied_by_a > 0 && applied_by_b > 0,
        "a {applied_by_a}, b {applied_by_b}"
    );
}

#[tokio::test]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let Some(brokers) = brokers() else { return };
    let _one = BROKER.lock().await;
    let kafka = options(&brokers, 4);
    let stack = Arc::new(stack(150, Backend::Tantivy, &kafka).await);
    let (stop, handle) = worker(&stack, &kafka).await;
    let mut rng = Rng(0x4e57);
    for step in 0..60 {
        random_write(&stack, &mut rng, step, 150).await;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    let restarted = tokio::process::Command::new(script)
        .args(["restart", "kafka"])
        .status()
        .await
        .expect("services.sh");
    assert!(restarted.success(), "the broker restarts");
    for step in 60..120 {
        random_write(&stack, &mut rng, step, 150).await;
    }
    converged(&stack, Duration::from_secs(60)).await;
    drop(stop);
    handle.await.expect("worker");
}

#[tokio::test]
async fn kill_9_of_the_worker_mid_stream_then_a_restart_loses_nothing() {
    let Some(brokers) = brokers() else { return };
    let Some(backend) = opensearch() else { return };
    let _one = BROKER.lock().await;
    let kafka = options(&brokers, 4);
    let stack = Arc::new(stack(200, backend, &kafka).await);
    // The worker as its own process, as in production, on the same indexes.
    let dir = std::env::temp_dir().join(format!("tessera-kafka-{}", kafka.group));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("tessera.toml");
    let os = &stack.config.search.opensearch;
    let mut text = format!(
        "[search]\nbackend = \"opensearch\"\n[search.opensearch]\nurl = \"{}\"\nindex_prefix = \"{}\"\nreplicas = 0\n\
         [sync]\nsource = \"kafka\"\nscan_interval = \"1h\"\n[sync.kafka]\nbrokers = \"{}\"\ngroup = \"{}\"\n\
         topic_prefix = \"{}\"\ndead_letter_topic = \"{}\"\n",
        os.url, os.index_prefix, kafka.brokers, kafka.group, kafka.topic_prefix, kafka.dead_letter_topic
    );
    for (name, sub) in &stack.config.subgraphs {
        text.push_str(&format!("[subgraphs.{name}]\nurl = \"{}\"\n", sub.url));
    }
    std::fs::write(&config, text).expect("config");
    let spawn = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["sync", "--config"])
            .arg(&config)
            .arg("--schema")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
            .arg("run")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tessera sync run")
    };
    let started = std::time::SystemTime::now();
    let mut first = spawn();
    // It backfills, then follows.
    eventually(
        Duration::from_secs(60),
        "the worker built the indexes",
        || async {
            matches!(
                stack.syncer().checkpoint("contracts").await,
                Ok(Some(tessera::sync::Checkpoint::Live { .. }))
            ) && matches!(
                stack.syncer().checkpoint("feed").await,
                Ok(Some(tessera::sync::Checkpoint::Live { .. }))
            )
        },
    )
    .await;
    let writer = {
        let stack = Arc::clone(&stack);
        tokio::spawn(async move {
            let mut rng = Rng(0x9_9999);
            for step in 0..1000 {
                random_write(&stack, &mut rng, step, 200).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.start_kill().expect("kill -9");
    first.wait().await.expect("killed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = spawn();
    writer.await.expect("writer");
    converged(&stack, Duration::from_secs(90)).await;

    // The worker stamped its writes with the index, and the gateway (which
    // applies nothing itself here) reports that freshness.
    let backend = &stack.search.as_ref().expect("search").backend;
    let stamped = backend
        .last_applied("contracts")
        .await
        .expect("state readable")
        .expect("the worker stamped the index");
    assert!(stamped >= started, "{stamped:?} is from this test's worker");
    let body = stack
        .post_to(
            &stack.gateway,
            json!({ "query": "{ contractSearch(first: 1) { edges { node { id } } } }" }),
        )
        .await;
    let age = body["extensions"]["indexes"]["contracts"]["ageMs"]
        .as_u64()
        .unwrap_or_else(|| panic!("freshness reported: {body}"));
    let since_stamp = std::time::SystemTime::now()
        .duration_since(stamped)
        .unwrap_or_default()
        .as_millis() as u64;
    // (The gateway rereads the stamp at most once a second.)
    assert!(
        age <= since_stamp + 1500,
        "age {age} ms, stamped {since_stamp} ms ago"
    );
    second.start_kill().expect("stop");
    let _ = second.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_mutation_through_the_gateway_waits_until_its_event_is_applied() {
    let Some(brokers) = brokers() else { return };
    let _one = BROKER.lock().await;
    let kafka = options(&brokers, 4);
    let stack = stack(100, Backend::Tantivy, &kafka).await;
    let (stop, handle) = worker(&stack, &kafka).await;
    let search = "query($t: String!) { contractSearch(filter: {text: $t}) { totalCount } }";
    let count = |text: &'static str| {
        let stack = &stack;
        async move { stack.data(search, json!({"t": text})).await["contractSearch"]["totalCount"].clone() }
    };
    let mutate = |query: &'static str, variables: serde_json::Value| {
        let stack = &stack;
        async move {
            let (status, body) = stack.post(json!({"query": query, "variables": variables})).await;
            assert_eq!(status, 200);
            assert!(body.get("errors").is_none(), "{body}");
            assert!(
                body.get("extensions")
                    .and_then(|e| e.get("indexUpdate"))
                    .is_none(),
                "waited in vain: {body}"
            );
            body["data"].clone()
        }
    };
    // Create (no id argument: the id comes from the response), update, delete.
    let created = mutate(
        "mutation { createContract(input: {title: \"Axolotl launch\", memberId: 3, managerId: 2, amount: 5, startDate: \"2026-03-01\"}) { id } }",
        json!({}),
    )
    .await;
    assert_eq!(count("axolotl").await, 1);
    let id = created["createContract"]["id"].clone();
    mutate(
        "mutation($id: ID!) { updateContract(id: $id, input: {title: \"Capybara launch\"}) { id } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        (count("axolotl").await, count("capybara").await),
        (json!(0), json!(1))
    );
    mutate(
        "mutation($id: ID!) { deleteContract(id: $id) }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(count("capybara").await, 0);
    // A renamed manager: every contract denormalizing the name.
    mutate(
        "mutation { updateStaff(id: 4, name: \"Quokka Manager\") { id } }",
        json!({}),
    )
    .await;
    let renamed = stack
        .data(
            "{ contractSearch(filter: {managerName: {eq: \"Quokka Manager\"}}) { totalCount } }",
            json!({}),
        )
        .await;
    let direct = stack
        .subgraph("contracts", "{ contracts_count(manager_id: 4) }", json!({}))
        .await;
    assert_eq!(renamed["contractSearch"]["totalCount"], direct["contracts_count"]);
    // A new settlement: its contract's count.
    mutate(
        "mutation { createSettlement(contractId: 9, amount: \"10.00\", scheduledOn: \"2026-04-01\") { id } }",
        json!({}),
    )
    .await;
    let settled = stack
        .search
        .as_ref()
        .expect("search")
        .backend
        .get("contracts", &[format!("Contract:{:0>20}", 9)])
        .await
        .expect("get");
    let truth = stack
        .subgraph(
            "settlements",
            "{ settlementsByContractIds(contractIds: [9]) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        settled[0].as_ref().expect("contract 9")["settlementCount"],
        json!(truth["settlementsByContractIds"].as_array().map(Vec::len))
    );
    drop(stop);
    handle.await.expect("worker");
}
