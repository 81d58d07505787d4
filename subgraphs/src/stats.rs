//! Per-service request counters and their HTTP face (`GET /stats`,
//! `POST /stats/reset`).
//!
//! The gateway's tests read these to prove batching ("one request per service"),
//! so the counts are exact: `requests` is bumped by the `/graphql` middleware
//! before any fault is applied, `operations` by the GraphQL handler per executed
//! operation, and each root field's `calls`/`keys` by its resolver. This module
//! only counts; it does not decide what counts as a key.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Calls of one root field and the ids they asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldStats {
    pub calls: u64,
    pub keys: u64,
}

/// What `GET /stats` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub service: String,
    pub requests: u64,
    pub operations: u64,
    pub fields: BTreeMap<String, FieldStats>,
}

/// The live counters of one service.
#[derive(Debug)]
pub struct Stats {
    service: &'static str,
    requests: AtomicU64,
    operations: AtomicU64,
    fields: Mutex<BTreeMap<String, FieldStats>>,
}

impl Stats {
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            requests: AtomicU64::new(0),
            operations: AtomicU64::new(0),
            fields: Mutex::new(BTreeMap::new()),
        }
    }

    /// One HTTP request reached `/graphql`.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` GraphQL operations are about to run.
    pub fn count_operations(&self, n: u64) {
        self.operations.fetch_add(n, Ordering::Relaxed);
    }

    /// One resolution of root field `name` (each alias counts) asking for `keys` ids.
    pub fn count_field(&self, name: &str, keys: u64) {
        let mut fields = self.fields.lock();
        // Look up before inserting: the common case allocates nothing.
        if let Some(field) = fields.get_mut(name) {
            field.calls += 1;
            field.keys += keys;
        } else {
            fields.insert(name.to_string(), FieldStats { calls: 1, keys });
        }
    }

    /// `keys` more ids for root field `name`, without another call (Federation's
    /// `_entities` resolves each representation separately).
    pub fn count_keys(&self, name: &str, keys: u64) {
        self.fields.lock().entry(name.to_string()).or_default().keys += keys;
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            service: self.service.to_string(),
            requests: self.requests.load(Ordering::Relaxed),
            operations: self.operations.load(Ordering::Relaxed),
            fields: self.fields.lock().clone(),
        }
    }

    pub fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.operations.store(0, Ordering::Relaxed);
        self.fields.lock().clear();
    }
}

/// `GET /stats` and `POST /stats/reset` (which answers the zeroed counters).
pub fn routes(stats: Arc<Stats>) -> Router {
    Router::new()
        .route("/stats", get(show))
        .route("/stats/reset", post(reset))
        .with_state(stats)
}

async fn show(State(stats): State<Arc<Stats>>) -> Json<StatsSnapshot> {
    Json(stats.snapshot())
}

async fn reset(State(stats): State<Arc<Stats>>) -> Json<StatsSnapshot> {
    stats.reset();
    Json(stats.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_resets() {
        let stats = Stats::new("staff");
        stats.count_request();
        stats.count_operations(1);
        stats.count_field("staff", 1);
        stats.count_field("staff", 1);
        stats.count_keys("_entities", 3);
        let snap = stats.snapshot();
        assert_eq!((snap.requests, snap.operations), (1, 1));
        assert_eq!(snap.fields["staff"], FieldStats { calls: 2, keys: 2 });
        assert_eq!(snap.fields["_entities"], FieldStats { calls: 0, keys: 3 });
        stats.reset();
        let snap = stats.snapshot();
        assert_eq!((snap.requests, snap.operations, snap.fields.len()), (0, 0, 0));
    }
}
