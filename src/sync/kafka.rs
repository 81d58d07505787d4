//! The event-driven synchronizer: a member of a Kafka consumer group that
//! turns the services' change events into document rebuilds
//! (DESIGN.md, "Sync": Kafka).
//!
//! - **Topics**: one per service, `<topic_prefix><service>`, keyed by entity
//!   id (the services publish them, see `subgraphs`); the worker reads the
//!   topics of every service whose rows an index reads.
//! - **At least once, in order per entity**: offsets are committed only after
//!   the index acknowledged the batch's writes; a worker that dies is
//!   replaced by the group's other members (or itself, restarted), which
//!   read again from the last commit. Rebuilds read current state, so a
//!   repeated event changes nothing.
//! - **Retries and dead letters**: a batch that fails is retried with
//!   backoff `max_attempts` times; then each of its events is tried alone,
//!   and one that still fails goes to the dead-letter topic with the error
//!   and its original payload, so the partition keeps flowing. A malformed
//!   event, or one for a type the schema does not give to that service,
//!   goes there at once (one of a type no index reads changes nothing). [`list_dead_letters`] and [`replay_dead_letters`] show and
//!   re-drive them; a letter that fails again is written back behind the
//!   others, so none holds back the rest.
//! - **Outages are not dead letters**: a failure that is not about the
//!   events ([`SyncError::is_transient`]: the index or a service cannot be
//!   reached, does not answer in time, answers 5xx, its circuit is open)
//!   would fail every event alone too. The batch is then kept: nothing is
//!   committed nor dead-lettered, the partitions are rewound and the batch
//!   is tried again, with a backoff doubling up to [`MAX_OUTAGE_BACKOFF`],
//!   for as long as the outage lasts. Only failures about one event (a
//!   service's error for its row, a row that does not fit the schema, a
//!   document the index refuses, a setup error) reach the dead-letter topic.
//! - **From scratch**: an index never built is backfilled first; the group's
//!   start is pinned to the end of every partition before, so the events
//!   published during the backfill are applied after it: no gap.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::events::ServiceEvent;
use super::{Change, Checkpoint, SyncError, Syncer, MAX_OUTAGE_BACKOFF};
use crate::schema::Supergraph;

/// How the worker reaches Kafka and what it does with failures: the
/// `[sync.kafka]` section as it stands.
pub use crate::config::KafkaConfig as KafkaOptions;

/// A dead letter: the event, where it came from and why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The event as published (UTF-8, lossily, if it was not).
    pub payload: String,
    pub error: String,
    pub attempts: u32,
    /// Milliseconds since the epoch.
    pub failed_at: i64,
}

fn kafka_error(what: &str, e: impl std::fmt::Display) -> SyncError {
    SyncError::Source {
        what: format!("Kafka ({what})"),
        message: e.to_string(),
    }
}

/// The topics of the services whose rows some index reads.
pub fn topics(schema: &Supergraph, prefix: &str) -> Vec<String> {
    let mut services = BTreeSet::new();
    for def in schema.indexes() {
        for source in &def.sources {
            let mut types = vec![source.entity.to_string()];
            types.extend(
                crate::readmodel::relations(schema, source)
                    .into_iter()
                    .map(|r| r.target.to_string()),
            );
            for t in types {
                if let Some(owner) = schema.object(&t).and_then(|o| o.owner.as_ref()) {
                    services.insert(owner.subgraph.clone());
                }
            }
        }
    }
    services.into_iter().map(|s| format!("{prefix}{s}")).collect()
}

fn client_config(options: &KafkaOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.brokers)
        .set("socket.timeout.ms", "10000")
        .set("log_level", "4");
    config
}

/// Creates `topics` (and the dead-letter topic) unless they exist.
async fn ensure_topics(options: &KafkaOptions, topics: &[String]) -> Result<(), SyncError> {
    let admin: AdminClient<DefaultClientContext> = client_config(options)
        .create()
        .map_err(|e| kafka_error("admin client", e))?;
    let mut all: Vec<&str> = topics.iter().map(String::as_str).collect();
    all.push(&options.dead_letter_topic);
    let new: Vec<NewTopic> = all
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                i32::try_from(options.partitions).unwrap_or(i32::MAX),
                TopicReplication::Fixed(1),
            )
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .map_err(|e| kafka_error("creating topics", e))?;
    for result in results {
        if let Err((topic, code)) = result {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(kafka_error("creating topics", format!("{topic}: {code}")));
            }
        }
    }
    Ok(())
}

/// One consumer-group member applying change events to every index.
pub struct Worker {
    syncer: Arc<Syncer>,
    options: KafkaOptions,
    consumer: StreamConsumer,
    /// Asks the broker how far the group is (from a blocking thread); not
    /// a member of the group, so its calls never wait on the group's.
    monitor: Arc<BaseConsumer>,
    dead_letters: FutureProducer,
    topics: Vec<String>,
}

/// How often a worker records how current the indexes are (and at least
/// when idle that long).
const CAUGHT_UP_EVERY: Duration = Duration::from_secs(2);

/// What a worker did since it started.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerReport {
    pub events: u64,
    pub dead_letters: u64,
}

impl Worker {
    /// Connects, creates missing topics and, for indexes never built,
    /// pins the group's start to the current end of every partition and
    /// backfills them (`progress` for each).
    pub async fn start(
        syncer: Arc<Syncer>,
        options: KafkaOptions,
        progress: &(dyn Fn(&str, super::Progress) + Send + Sync),
    ) -> Result<Self, SyncError> {
        let topics = topics(syncer.schema(), &options.topic_prefix);
        // A broker that just (re)started answers "not leader" for a moment.
        let mut delay = Duration::from_millis(200);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match ensure_topics(&options, &topics).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "Kafka not ready; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
        let consumer: StreamConsumer = client_config(&options)
            .set("group.id", &options.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create()
            .map_err(|e| kafka_error("consumer", e))?;
        let mut unbuilt = Vec::new();
        for index in syncer.index_names() {
            if !matches!(syncer.checkpoint(&index).await, Ok(Some(Checkpoint::Live { .. }))) {
                unbuilt.push(index);
            }
        }
        if !unbuilt.is_empty() {
            let mut delay = Duration::from_millis(200);
            loop {
                match pin_start_to_end(&consumer, &topics) {
                    Ok(()) => break,
                    Err(e) if Instant::now() < deadline => {
                        tracing::debug!(error = %e, "Kafka not ready; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                    Err(e) => return Err(e),
                }
            }
            for index in unbuilt {
                syncer.backfill(&index, false, &|p| progress(&index, p)).await?;
            }
        }
        let subscribed: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&subscribed)
            .map_err(|e| kafka_error("subscribing", e))?;
        let dead_letters = dead_letter_producer(&options)?;
        let monitor: BaseConsumer = client_config(&options)
            .set("group.id", &options.group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| kafka_error("consumer", e))?;
        let monitor = Arc::new(monitor);
        Ok(Self {
            syncer,
            options,
            consumer,
            monitor,
            dead_letters,
            topics,
        })
    }

    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Applies events until `shutdown` resolves. Failures to reach Kafka,
    /// the index or a service are logged and retried without committing
    /// (the batch is read again); so is a dead-letter topic that cannot be
    /// written.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> WorkerReport {
        let mut report = WorkerReport::default();
        // The wait before a kept batch is tried again; doubles while it fails.
        let mut backoff = self.options.retry_backoff;
        tokio::pin!(shutdown);
        // Per partition, when the last event applied was published.
        let mut applied: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut checked = Instant::now();
        loop {
            if checked.elapsed() >= CAUGHT_UP_EVERY {
                self.mark_current(&applied).await;
                checked = Instant::now();
            }
            let first = tokio::select! {
                _ = &mut shutdown => break,
                m = self.consumer.recv() => m,
                // Idle: how far the group is is worth knowing now.
                _ = tokio::time::sleep(CAUGHT_UP_EVERY) => continue,
            };
            let first = match first {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(error = %e, "reading change events failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut batch = vec![first];
            // Whatever else is already there, without waiting long.
            while batch.len() < self.options.batch_size {
                match tokio::time::timeout(Duration::from_millis(5), self.consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m.detach()),
                    _ => break,
                }
            }
            match self.handle(&batch).await {
                Ok(dead) => {
                    backoff = self.options.retry_backoff;
                    report.events += batch.len() as u64;
                    report.dead_letters += dead;
                    if let Err(e) = self.commit(&batch) {
                        tracing::warn!(error = %e, "committing offsets failed; the events will be applied again");
                    } else {
                        for m in &batch {
                            if let Some(at) = m.timestamp().to_millis() {
                                let entry = applied
                                    .entry((m.topic().to_string(), m.partition()))
                                    .or_insert(at);
                                *entry = (*entry).max(at);
                            }
                        }
                    }
                }
                Err(e) => {
                    // Nothing committed: seek back so the batch comes again.
                    if e.is_transient() {
                        tracing::warn!(error = %e, events = batch.len(), retry_in = ?backoff,
                            "the index or a service is unavailable; the batch is kept (nothing committed nor dead-lettered) and tried again");
                    } else {
                        tracing::error!(error = %e, events = batch.len(), retry_in = ?backoff,
                            "a batch could not be applied nor dead-lettered; retrying it");
                    }
                    self.rewind(&batch);
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_OUTAGE_BACKOFF);
                }
            }
        }
        // Leave the group cleanly: the others take over at once.
        self.consumer.unsubscribe();
        report
    }

    /// Applies a batch; returns how many events went to the dead-letter
    /// topic. A transient error (an outage) is returned before anything is
    /// dead-lettered: the whole batch is to be tried again.
    async fn handle(&self, batch: &[OwnedMessage]) -> Result<u64, SyncError> {
        let schema = self.syncer.schema();
        let mut changes: Vec<(usize, Change)> = Vec::with_capacity(batch.len());
        // (event, error, tries): written once the rest of the batch is applied,
        // so a batch kept for an outage does not dead-letter them again.
        let mut letters: Vec<(usize, String, u32)> = Vec::new();
        for (i, message) in batch.iter().enumerate() {
            let parsed = ServiceEvent::parse(message.payload().unwrap_or_default())
                .and_then(|event| event.to_change(schema));
            match parsed {
                Ok(change) => changes.push((i, change)),
                Err(e) => letters.push((i, e.to_string(), 0)),
            }
        }
        if !changes.is_empty() {
            let all: Vec<Change> = changes.iter().map(|(_, c)| c.clone()).collect();
            match self.apply_with_retries(&all).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e),
                // Something in the batch keeps failing: find it, let the rest through.
                Err(_) => {
                    for (i, change) in changes {
                        match self.apply(std::slice::from_ref(&change)).await {
                            Ok(()) => {}
                            Err(e) if e.is_transient() => return Err(e),
                            Err(e) => letters.push((i, e.to_string(), self.options.max_attempts + 1)),
                        }
                    }
                }
            }
        }
        for (i, error, attempts) in &letters {
            let message = &batch[*i];
            tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(),
                %error, attempts, "a change event cannot be applied; it goes to the dead-letter topic");
            self.dead_letter(message, error, *attempts).await?;
        }
        Ok(letters.len() as u64)
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), SyncError> {
        apply_refusing(&self.syncer, changes).await
    }

    async fn apply_with_retries(&self, changes: &[Change]) -> Result<(), SyncError> {
        let mut delay = self.options.retry_backoff;
        let mut attempt = 1;
        loop {
            match self.apply(changes).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < self.options.max_attempts => {
                    tracing::warn!(error = %e, attempt, changes = changes.len(), "applying change events failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn dead_letter(&self, message: &OwnedMessage, error: &str, attempts: u32) -> Result<(), SyncError> {
        let letter = DeadLetter {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            error: error.to_string(),
            attempts,
            failed_at: super::now_millis(),
        };
        write_dead_letter(&self.dead_letters, &self.options, &letter).await
    }

    /// Marks every index current up to the moment everything the services
    /// had published was applied: now, when the group has committed every
    /// partition up to its end; else when the oldest of the partitions
    /// still behind had its last applied event published (`applied`; one
    /// this worker has not applied from leaves the watermark where it is).
    /// Without it the watermark only moved on polls, which Kafka mode does
    /// not make: `sync status` and `tessera_index_lag_seconds` grew for good.
    async fn mark_current(&self, applied: &BTreeMap<(String, i32), i64>) {
        let asked_at = super::now_millis();
        let monitor = Arc::clone(&self.monitor);
        let topics = self.topics.clone();
        let behind = tokio::task::spawn_blocking(move || partitions_behind(&monitor, &topics)).await;
        let behind = match behind {
            Ok(Ok(behind)) => behind,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not read how far the group is");
                return;
            }
            Err(_) => return,
        };
        let at = behind.iter().try_fold(asked_at, |at, partition| {
            applied.get(partition).map(|t| at.min(*t))
        });
        let Some(at) = at else { return };
        for index in self.syncer.index_names() {
            if let Err(e) = self.syncer.mark_current(&index, at).await {
                tracing::debug!(%index, error = %e, "could not record how current the index is");
            }
        }
    }

    /// Commits, per partition, the offset after the batch's last message.
    fn commit(&self, batch: &[OwnedMessage]) -> Result<(), SyncError> {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in batch {
            let entry = next.entry((m.topic().to_string(), m.partition())).or_insert(0);
            *entry = (*entry).max(m.offset() + 1);
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            list.add_partition_offset(&topic, partition, Offset::Offset(offset))
                .map_err(|e| kafka_error("commit", e))?;
        }
        self.consumer
            .commit(&list, CommitMode::Sync)
            .map_err(|e| kafka_error("commit", e))
    }

    /// Moves each partition of the batch back to its first message. A
    /// partition that cannot be moved back must not go on past the batch
    /// (the next batch's commit would skip it): the worker then leaves the
    /// group and joins again, and reads from the last commit.
    fn rewind(&self, batch: &[OwnedMessage]) {
        let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in batch {
            let entry = first
                .entry((m.topic().to_string(), m.partition()))
                .or_insert(i64::MAX);
            *entry = (*entry).min(m.offset());
        }
        let mut failed = false;
        for ((topic, partition), offset) in first {
            if let Err(e) =
                self.consumer
                    .seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(5))
            {
                tracing::warn!(%topic, partition, error = %e,
                    "seeking back failed; rejoining the group to read again from the last commit");
                failed = true;
            }
        }
        if failed {
            self.consumer.unsubscribe();
            let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            if let Err(e) = self.consumer.subscribe(&topics) {
                tracing::error!(error = %e, "subscribing again failed");
            }
        }
    }
}

/// Applies `changes`; a document the index refused fails them too (so
/// its event is retried, then dead-lettered, and a replay keeps its letter:
/// never silently dropped).
async fn apply_refusing(syncer: &Syncer, changes: &[Change]) -> Result<(), SyncError> {
    let report = syncer.apply(changes).await?;
    if report.failed == 0 {
        return Ok(());
    }
    let refused = syncer.rejected();
    let last = refused
        .last()
        .map(|r| format!("{}: {}", r.id, r.reason))
        .unwrap_or_default();
    Err(SyncError::Source {
        what: "the index".into(),
        message: format!("refused {} document(s), last {last}", report.failed),
    })
}

fn dead_letter_producer(options: &KafkaOptions) -> Result<FutureProducer, SyncError> {
    client_config(options)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| kafka_error("dead-letter producer", e))
}

/// Appends `letter` to the dead-letter topic, keyed as its event was.
async fn write_dead_letter(
    producer: &FutureProducer,
    options: &KafkaOptions,
    letter: &DeadLetter,
) -> Result<(), SyncError> {
    let payload = serde_json::to_vec(letter).map_err(|e| kafka_error("dead letter", e))?;
    let key = letter.key.clone().unwrap_or_default();
    producer
        .send(
            FutureRecord::to(&options.dead_letter_topic)
                .key(&key)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| kafka_error("writing a dead letter", e))?;
    crate::telemetry::metrics().dead_lettered();
    Ok(())
}

/// Commits the current end of every partition of `topics` for the group,
/// where it has no offset yet: events from now on are read, older ones
/// are covered by the backfill that follows.
fn pin_start_to_end(consumer: &StreamConsumer, topics: &[String]) -> Result<(), SyncError> {
    let timeout = Duration::from_secs(10);
    let committed = committed_offsets(consumer, topics, timeout)?;
    let mut pin = TopicPartitionList::new();
    for element in committed.elements() {
        if matches!(element.offset(), Offset::Invalid) {
            let (_, high) = consumer
                .fetch_watermarks(element.topic(), element.partition(), timeout)
                .map_err(|e| kafka_error("end offsets", e))?;
            pin.add_partition_offset(element.topic(), element.partition(), Offset::Offset(high))
                .map_err(|e| kafka_error("end offsets", e))?;
        }
    }
    if pin.count() > 0 {
        consumer
            .commit(&pin, CommitMode::Sync)
            .map_err(|e| kafka_error("pinning the group's start", e))?;
    }
    Ok(())
}

/// The partitions of `topics` where the group's committed offset is short
/// of the end (blocking: ask from a blocking thread).
fn partitions_behind(consumer: &BaseConsumer, topics: &[String]) -> Result<Vec<(String, i32)>, SyncError> {
    let timeout = Duration::from_secs(5);
    let committed = committed_offsets(consumer, topics, timeout)?;
    let mut behind = Vec::new();
    for element in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(element.topic(), element.partition(), timeout)
            .map_err(|e| kafka_error("end offsets", e))?;
        let done = match element.offset() {
            Offset::Offset(o) => o >= high,
            _ => high <= low,
        };
        if !done {
            behind.push((element.topic().to_string(), element.partition()));
        }
    }
    Ok(behind)
}

/// Every partition of `topics`, with the group's committed offset
/// (`Offset::Invalid` where it has none).
fn committed_offsets(
    consumer: &impl Consumer,
    topics: &[String],
    timeout: Duration,
) -> Result<TopicPartitionList, SyncError> {
    let mut all = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| kafka_error("metadata", e))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                all.add_partition(topic, p.id());
            }
        }
    }
    consumer
        .committed_offsets(all, timeout)
        .map_err(|e| kafka_error("committed offsets", e))
}

/// A consumer of the dead-letter topic in the group `<group>.replay`, whose
/// committed offsets mark what was replayed.
fn dead_letter_consumer(options: &KafkaOptions) -> Result<(StreamConsumer, TopicPartitionList), SyncError> {
    let consumer: StreamConsumer = client_config(options)
        .set("group.id", format!("{}.replay", options.group))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| kafka_error("consumer", e))?;
    let timeout = Duration::from_secs(10);
    let committed = committed_offsets(
        &consumer,
        std::slice::from_ref(&options.dead_letter_topic),
        timeout,
    )?;
    let mut start = TopicPartitionList::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Invalid => Offset::Beginning,
            other => other,
        };
        start
            .add_partition_offset(e.topic(), e.partition(), offset)
            .map_err(|e| kafka_error("assign", e))?;
    }
    consumer.assign(&start).map_err(|e| kafka_error("assign", e))?;
    Ok((consumer, start))
}

/// The dead letters not replayed yet, oldest first per partition, with
/// where each sits (`(partition, offset)` in the dead-letter topic).
async fn pending_dead_letters(
    consumer: &StreamConsumer,
    options: &KafkaOptions,
    partitions: &TopicPartitionList,
) -> Result<Vec<(i32, i64, DeadLetter)>, SyncError> {
    let timeout = Duration::from_secs(10);
    let mut ends = BTreeMap::new();
    for e in partitions.elements() {
        let (low, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), timeout)
            .map_err(|e| kafka_error("end offsets", e))?;
        let from = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        if high > from {
            ends.insert(e.partition(), high);
        }
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ends.is_empty() && Instant::now() < deadline {
        let message = match tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            Ok(Ok(m)) => m.detach(),
            Ok(Err(e)) => return Err(kafka_error("reading dead letters", e)),
            Err(_) => break,
        };
        let partition = message.partition();
        let letter = serde_json::from_slice::<DeadLetter>(message.payload().unwrap_or_default())
            .unwrap_or_else(|e| DeadLetter {
                topic: options.dead_letter_topic.clone(),
                partition,
                offset: message.offset(),
                key: None,
                payload: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
                error: format!("not a dead letter written by Tessera: {e}"),
                attempts: 0,
                failed_at: 0,
            });
        out.push((partition, message.offset(), letter));
        if ends
            .get(&partition)
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&partition);
        }
    }
    Ok(out)
}

/// The dead letters waiting for a replay.
pub async fn list_dead_letters(options: &KafkaOptions) -> Result<Vec<DeadLetter>, SyncError> {
    let (consumer, partitions) = dead_letter_consumer(options)?;
    Ok(pending_dead_letters(&consumer, options, &partitions)
        .await?
        .into_iter()
        .map(|(_, _, l)| l)
        .collect())
}

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct Replayed {
    pub applied: usize,
    /// The letters that failed again, each with its new error: written
    /// back to the end of the dead-letter topic (one more attempt counted)
    /// for a later replay, so none holds back the letters behind it.
    pub failed_again: Vec<DeadLetter>,
    /// An outage (the index or a service unavailable) stopped the replay
    /// at this letter, with why: it and every letter not replayed yet stay
    /// where they are.
    pub stopped: Option<(DeadLetter, String)>,
}

/// Applies the pending dead letters again, in order; each one applied is
/// marked replayed. One that fails again is written back to the end of
/// the topic with its new error and marked replayed (nothing lost, and the
/// letters behind it go on); an outage stops the replay, nothing marked
/// past it.
pub async fn replay_dead_letters(syncer: &Syncer, options: &KafkaOptions) -> Result<Replayed, SyncError> {
    let (consumer, partitions) = dead_letter_consumer(options)?;
    let pending = pending_dead_letters(&consumer, options, &partitions).await?;
    let producer = dead_letter_producer(options)?;
    let mut replayed = Replayed::default();
    for (partition, offset, mut letter) in pending {
        let change =
            ServiceEvent::parse(letter.payload.as_bytes()).and_then(|e| e.to_change(syncer.schema()));
        let result = match change {
            Ok(change) => apply_refusing(syncer, &[change]).await,
            Err(e) => Err(SyncError::Source {
                what: "the event".into(),
                message: e.to_string(),
            }),
        };
        match result {
            Ok(()) => replayed.applied += 1,
            Err(e) if e.is_transient() => {
                replayed.stopped = Some((letter, e.to_string()));
                break;
            }
            Err(e) => {
                letter.error = e.to_string();
                letter.attempts += 1;
                letter.failed_at = super::now_millis();
                write_dead_letter(&producer, options, &letter).await?;
                replayed.failed_again.push(letter);
            }
        }
        let mut done = TopicPartitionList::new();
        done.add_partition_offset(&options.dead_letter_topic, partition, Offset::Offset(offset + 1))
            .map_err(|e| kafka_error("commit", e))?;
        consumer
            .commit(&done, CommitMode::Sync)
            .map_err(|e| kafka_error("commit", e))?;
    }
    Ok(replayed)
}
