//! Change events: what the services announce about their committed writes,
//! turned into the [`Change`]s the synchronizer applies.
//!
//! A service publishes `{"service","type","id","op","version","at"}` in its
//! own vocabulary (`MemberNode`, a Relay id); [`ServiceEvent::to_change`]
//! maps it onto the unified schema (`Member`, `"42"`). Whatever the event
//! says, a change only names a row: the synchronizer rebuilds what depends
//! on it from the services' current state, so an event that arrives late,
//! twice or out of order does no harm.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exec::keys;
use crate::readmodel::{Change, ChangeOp};
use crate::schema::{Resolver, Supergraph};

/// A change event as a service publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEvent {
    /// The subgraph's name, e.g. `"members"`.
    pub service: String,
    /// The type as the service names it, e.g. `"MemberNode"`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The id as the service spells it: an integer, a string or a Relay id.
    pub id: Value,
    pub op: ChangeOp,
    /// The row's version after the write (informative: rebuilds read current state).
    #[serde(default)]
    pub version: Option<u64>,
    /// When the write happened.
    #[serde(default)]
    pub at: Option<String>,
}

/// Why an event cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event is not JSON of the documented shape: {reason}")]
    Malformed { reason: String },
    #[error("no type of schema.graphql is `{type_name}` of subgraph `{service}`")]
    UnknownType { service: String, type_name: String },
    #[error("`{id}` is not an id of {type_name}")]
    BadId { type_name: String, id: String },
}

impl ServiceEvent {
    pub fn parse(bytes: &[u8]) -> Result<Self, EventError> {
        serde_json::from_slice(bytes).map_err(|e| EventError::Malformed {
            reason: e.to_string(),
        })
    }

    /// The change in the unified schema's terms.
    pub fn to_change(&self, schema: &Supergraph) -> Result<Change, EventError> {
        let unified = schema
            .unified_type_name(&self.service, &self.type_name)
            .filter(|t| {
                schema
                    .object(t)
                    .and_then(|o| o.owner.as_ref())
                    .is_some_and(|o| o.subgraph == self.service)
            })
            .ok_or_else(|| EventError::UnknownType {
                service: self.service.clone(),
                type_name: self.type_name.clone(),
            })?;
        // Ids the service spells as Relay ids are plain in the unified schema.
        let global_id = match schema.field(unified, "id").map(|f| &f.resolver) {
            Some(Resolver::Owned { global_id, .. }) => global_id.as_deref(),
            _ => None,
        };
        let id = keys::canonical(&self.id, global_id).ok_or_else(|| EventError::BadId {
            type_name: unified.to_string(),
            id: self.id.to_string(),
        })?;
        Ok(Change {
            type_name: unified.to_string(),
            id,
            op: self.op,
        })
    }
}

/// Feeds change events from an in-process channel (the demo services'
/// `ChannelSink`) to the synchronizer's queue, until either side closes.
/// Events travel as their JSON, exactly as over a webhook or Kafka.
pub async fn forward<E: Serialize + Clone>(
    mut events: tokio::sync::broadcast::Receiver<E>,
    schema: std::sync::Arc<Supergraph>,
    changes: tokio::sync::mpsc::Sender<Change>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "change events missed; the next scan and reconcile catch up"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let change = serde_json::to_vec(&event)
            .map_err(|e| EventError::Malformed {
                reason: e.to_string(),
            })
            .and_then(|bytes| ServiceEvent::parse(&bytes))
            .and_then(|event| event.to_change(&schema));
        match change {
            Ok(change) => {
                if changes.send(change).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "change event ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Supergraph {
        Supergraph::parse(include_str!("../../schema.graphql")).expect("schema")
    }

    #[test]
    fn service_events_map_to_unified_types_and_ids() {
        let schema = schema();
        let member = ServiceEvent::parse(
            br#"{"service":"members","type":"MemberNode","id":"TWVtYmVyTm9kZTo0Mg==","op":"delete","version":3,"at":"2026-01-01T00:00:00.000Z"}"#,
        )
        .expect("parses");
        assert_eq!(
            member.to_change(&schema),
            Ok(Change {
                type_name: "Member".into(),
                id: "42".into(),
                op: ChangeOp::Delete
            })
        );
        let contract =
            ServiceEvent::parse(br#"{"service":"contracts","type":"Contract","id":7,"op":"update"}"#)
                .expect("parses");
        assert_eq!(contract.to_change(&schema).map(|c| c.id), Ok("7".into()));
    }

    #[test]
    fn bad_events_are_refused_with_the_reason() {
        let schema = schema();
        assert!(matches!(
            ServiceEvent::parse(b"{nope"),
            Err(EventError::Malformed { .. })
        ));
        assert!(matches!(
            ServiceEvent::parse(br#"{"service":"contracts","type":"Contract","id":7,"op":"explode"}"#),
            Err(EventError::Malformed { .. })
        ));
        let unknown =
            ServiceEvent::parse(br#"{"service":"contracts","type":"Invoice","id":7,"op":"update"}"#)
                .expect("parses");
        assert!(matches!(
            unknown.to_change(&schema),
            Err(EventError::UnknownType { .. })
        ));
        let bad_relay =
            ServiceEvent::parse(br#"{"service":"members","type":"MemberNode","id":"%%%","op":"update"}"#)
                .expect("parses");
        assert!(matches!(
            bad_relay.to_change(&schema),
            Err(EventError::BadId { .. })
        ));
    }
}
