//! Change events: what every committed write announces, and where it goes.
//!
//! A table calls [`ChangeSink::emit`] while it still holds its write lock, so
//! events leave each table in commit order; `emit` must therefore never block or
//! do I/O itself. The sinks here: an in-process broadcast channel
//! ([`ChannelSink`]), an HTTP webhook fed from a bounded queue by a background
//! task ([`WebhookSink`]), and nothing ([`NullSink`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::scalars::DateTime;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

/// A row id as its service exposes it: an `Int`, or an `ID` string (numeric or Relay).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventId {
    Int(i64),
    Str(String),
}

/// One committed write:
/// `{"service","type","id","op":"create|update|delete","version","at"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The service's name, e.g. `"contracts"`.
    pub service: String,
    /// The GraphQL type written, e.g. `"Contract"`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub id: EventId,
    pub op: ChangeOp,
    /// The row's version after this write: 1 on create, +1 per write (delete included).
    pub version: u64,
    /// When the write happened (the row's new update time).
    pub at: DateTime,
}

/// Where change events go. `emit` is called under a table's write lock: it must
/// return at once and never fail the write.
pub trait ChangeSink: Send + Sync {
    fn emit(&self, event: ChangeEvent);
}

/// Discards every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl ChangeSink for NullSink {
    fn emit(&self, _event: ChangeEvent) {}
}

/// Broadcasts events in process (the demo's synchronizer, tests). Subscribers that
/// fall more than `capacity` events behind lose the oldest ones (tokio's
/// `broadcast` semantics); events emitted while nobody subscribes are dropped.
#[derive(Debug, Clone)]
pub struct ChannelSink {
    sender: broadcast::Sender<ChangeEvent>,
}

impl ChannelSink {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.sender.subscribe()
    }
}

impl ChangeSink for ChannelSink {
    fn emit(&self, event: ChangeEvent) {
        // An error only means nobody is listening right now.
        let _ = self.sender.send(event);
    }
}

/// POSTs each event as JSON to a URL, in order, from a background task.
///
/// The queue is bounded: when the receiver is slower than the writes, new events
/// are dropped (and counted) rather than slowing the service down. Each event is
/// tried up to `1 + RETRIES` times with a short backoff, then given up.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    queue: mpsc::Sender<ChangeEvent>,
    dropped: Arc<AtomicU64>,
}

impl WebhookSink {
    /// Retries after the first failed delivery of an event.
    pub const RETRIES: u32 = 2;

    /// Starts the delivery task; must be called inside a tokio runtime.
    pub fn spawn(url: impl Into<String>, queue_capacity: usize) -> Self {
        let url = url.into();
        let (queue, mut receiver) = mpsc::channel::<ChangeEvent>(queue_capacity.max(1));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                deliver(&client, &url, &event).await;
            }
        });
        Self {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Events dropped because the queue was full or the task had stopped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn deliver(client: &reqwest::Client, url: &str, event: &ChangeEvent) {
    for attempt in 0..=WebhookSink::RETRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * 4u64.pow(attempt - 1))).await;
        }
        match client.post(url).json(event).send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(url, status = %response.status(), attempt, "webhook refused a change event")
            }
            Err(error) => tracing::warn!(url, %error, attempt, "webhook delivery failed"),
        }
    }
    tracing::error!(url, service = %event.service, id = ?event.id, "change event given up after retries");
}

impl ChangeSink for WebhookSink {
    fn emit(&self, event: ChangeEvent) {
        if self.queue.try_send(event).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per thousand, not per event: a stalled webhook must not flood the log.
            if dropped % 1000 == 1 {
                tracing::warn!(dropped, "webhook queue full; change events dropped");
            }
        }
    }
}

/// Publishes each event to Kafka topic `<prefix><service>`, keyed by the
/// entity id (so one entity's events stay in order on one partition), as the
/// JSON above. librdkafka queues and sends in its own thread; `emit` only
/// enqueues. A full queue drops the event (counted, logged every 1,000):
/// the synchronizer's scan and reconcile catch what a lost event missed.
pub struct KafkaSink {
    producer: rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    prefix: String,
    dropped: AtomicU64,
}

impl KafkaSink {
    /// A producer for `brokers` (`host:port,…`); fails on a bad setting,
    /// not on an unreachable broker (librdkafka keeps retrying).
    pub fn new(brokers: &str, topic_prefix: &str) -> Result<Self, rdkafka::error::KafkaError> {
        let producer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "300000")
            .create()?;
        Ok(Self {
            producer,
            prefix: topic_prefix.to_string(),
            dropped: AtomicU64::new(0),
        })
    }

    /// Events dropped because librdkafka's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl ChangeSink for KafkaSink {
    fn emit(&self, event: ChangeEvent) {
        let topic = format!("{}{}", self.prefix, event.service);
        let key = match &event.id {
            EventId::Int(i) => i.to_string(),
            EventId::Str(s) => s.clone(),
        };
        let Ok(payload) = serde_json::to_vec(&event) else {
            return;
        };
        let record = rdkafka::producer::BaseRecord::to(&topic)
            .key(&key)
            .payload(&payload);
        if let Err((error, _)) = self.producer.send(record) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped % 1000 == 1 {
                tracing::warn!(%error, dropped, "change events not queued for Kafka");
            }
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        use rdkafka::producer::Producer;
        // Send what is queued before the process goes.
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_to_the_documented_shape() {
        let event = ChangeEvent {
            service: "members".into(),
            type_name: "MemberNode".into(),
            id: EventId::Str("TWVtYmVyTm9kZTo0Mg==".into()),
            op: ChangeOp::Update,
            version: 2,
            at: DateTime::ymd(2023, 4, 5),
        };
        let json = serde_json::to_value(&event).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "service": "members", "type": "MemberNode", "id": "TWVtYmVyTm9kZTo0Mg==",
                "op": "update", "version": 2, "at": "2023-04-05T00:00:00.000Z"
            })
        );
        let back: ChangeEvent = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, event);
        let int_id = serde_json::to_value(EventId::Int(7)).expect("serialises");
        assert_eq!(int_id, serde_json::json!(7));
    }
}
