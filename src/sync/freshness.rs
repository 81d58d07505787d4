//! Read-your-writes: the one narrow place where a request waits on the
//! synchronizer. After a mutation through the gateway, its response waits,
//! up to a bound, until the indexes hold documents rebuilt after the
//! mutation answered, for every row it named: by an `id` argument, by the
//! `id` of the object it returned, or by a join key argument
//! (`createSettlement(contractId:)` changes that contract's document).
//!
//! It reads only the indexes: a document's version is the time its rows
//! were read, so "rebuilt at or after the mutation answered" is "its
//! version is at least then" (and a deleted row's document is gone).
//! Whoever applies the change (the events worker of this process or of
//! another, or this process, to which the wait hands the rows it waits for,
//! as read repair does) reports through the index itself; any number of
//! gateway replicas can wait on it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::exec::Variables;
use crate::plan::{FetchKind, FieldKind, OperationKind, QueryPlan, RootSource};
use crate::readmodel::{
    document_id, documents::json_id, refs_field, relations, Change, ChangeOp, RelationKind,
};
use crate::schema::{named_type, Supergraph, TypeDefKind};
use crate::search::{FieldValue, Filter, SearchBackend, VERSION_FIELD};

/// One thing the index must show before the mutation's response goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// `doc` is rebuilt (or, unless `exists`, gone).
    Rebuilt {
        index: String,
        doc: String,
        exists: bool,
    },
    /// Every document whose `field` holds `value` is rebuilt.
    Holders {
        index: String,
        field: String,
        value: String,
    },
}

/// Waits for the indexes to show a mutation; shared by a gateway.
pub struct Freshness {
    schema: Arc<Supergraph>,
    backend: Arc<dyn SearchBackend>,
    bound: Duration,
    /// Where the rows a mutation changed are handed for a rebuild at once
    /// (no poll has to come by, and a poll cannot see a delete).
    changes: Option<tokio::sync::mpsc::Sender<Change>>,
}

/// Why a mutation's response went before the indexes showed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotYet {
    #[error("the search indexes did not show this change within {0:?}; they will shortly")]
    Timeout(Duration),
    #[error("the search indexes could not be read: {0}")]
    Index(String),
}

impl Freshness {
    pub fn new(
        schema: Arc<Supergraph>,
        backend: Arc<dyn SearchBackend>,
        bound: Duration,
        changes: Option<tokio::sync::mpsc::Sender<Change>>,
    ) -> Self {
        Self {
            schema,
            backend,
            bound,
            changes,
        }
    }

    /// Waits until every row `plan` changed is rebuilt in the indexes at or
    /// after `sent` (a version: epoch µs, when the mutation answered), or the bound
    /// passes. `data` is the mutation's response `data`.
    pub async fn wait(
        &self,
        plan: &QueryPlan,
        variables: &Variables,
        data: &[u8],
        sent: i64,
    ) -> Result<(), NotYet> {
        if plan.kind != OperationKind::Mutation {
            return Ok(());
        }
        let data: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
        let rows = self.changed_rows(plan, variables, &data);
        let expects = self.expectations(&rows);
        if expects.is_empty() {
            return Ok(());
        }
        if let Some(changes) = &self.changes {
            for (type_name, id, _) in &rows {
                // Never waits: a full queue only means the wait may time out.
                let _ = changes.try_send(Change {
                    type_name: type_name.clone(),
                    id: id.clone(),
                    op: ChangeOp::Update,
                });
            }
        }
        let deadline = tokio::time::Instant::now() + self.bound;
        let mut pending = expects;
        loop {
            let mut still = Vec::with_capacity(pending.len());
            for e in pending {
                if !self.shown(&e, sent).await? {
                    still.push(e);
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NotYet::Timeout(self.bound));
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn shown(&self, e: &Expect, sent: i64) -> Result<bool, NotYet> {
        // Strictly after: a read in the very microsecond of the answer may
        // have come before the write.
        let fresh = |doc: &crate::search::Document| {
            doc.get(VERSION_FIELD)
                .and_then(Value::as_i64)
                .is_some_and(|v| v > sent)
        };
        let index_error = |e: crate::search::SearchError| NotYet::Index(e.to_string());
        match e {
            Expect::Rebuilt { index, doc, exists } => {
                let got = self
                    .backend
                    .get(index, std::slice::from_ref(doc))
                    .await
                    .map_err(index_error)?;
                Ok(match got.into_iter().next().flatten() {
                    Some(d) => fresh(&d),
                    None => !exists,
                })
            }
            Expect::Holders { index, field, value } => {
                let filter = Filter::In {
                    field: field.clone(),
                    values: vec![FieldValue::Str(value.clone())],
                };
                let ids = self
                    .backend
                    .ids_where(index, &filter)
                    .await
                    .map_err(index_error)?;
                let docs = self.backend.get(index, &ids).await.map_err(index_error)?;
                Ok(docs.iter().flatten().all(fresh))
            }
        }
    }

    /// The rows a mutation changed: `(type, id, whether its document must
    /// exist)`; one that need not is rebuilt if present, or absent.
    fn changed_rows(
        &self,
        plan: &QueryPlan,
        variables: &Variables,
        data: &Value,
    ) -> Vec<(String, String, bool)> {
        let schema = &*self.schema;
        let mut rows: Vec<(String, String, bool)> = Vec::new();
        for root in &plan.output {
            let RootSource::Fetch(id) = root.source else {
                continue;
            };
            let Some(fetch) = plan.fetches.get(id) else {
                continue;
            };
            let FetchKind::Root(query) = &fetch.kind else {
                continue;
            };
            let value = data.get(root.node.response_key.as_str()).unwrap_or(&Value::Null);
            let returned = named_type(&root.node.ty).to_string();
            let returns_entity = matches!(schema.get(&returned).map(|t| &t.kind), Some(TypeDefKind::Object(o)) if o.owner.is_some());
            // The types this subgraph owns: what an `id` argument names when
            // the field returns no entity (`deleteContract(id:): Boolean`).
            let owned: Vec<String> = if returns_entity {
                vec![returned.clone()]
            } else {
                schema
                    .types()
                    .filter(|t| matches!(&t.kind, TypeDefKind::Object(o) if o.owner.as_ref().is_some_and(|o| o.subgraph == query.subgraph)))
                    .map(|t| t.name.to_string())
                    .collect()
            };
            let exists = value.is_object();
            for arg in &fetch.arguments {
                let given = match &arg.value {
                    async_graphql_value::Value::Variable(v) => variables.get(v).cloned(),
                    other => other.clone().into_const(),
                };
                let Some(given) = given.and_then(|v| v.into_json().ok()).as_ref().and_then(json_id) else {
                    continue;
                };
                if arg.def.name.as_str() == "id" {
                    for t in &owned {
                        rows.push((t.clone(), given.clone(), exists));
                    }
                }
                // A join key: the parent whose document gains or loses the row.
                for def in schema.indexes() {
                    for source in &def.sources {
                        for r in relations(schema, source) {
                            let owned_by_it = schema
                                .object(&r.target)
                                .and_then(|o| o.owner.as_ref())
                                .is_some_and(|o| o.subgraph == query.subgraph);
                            if matches!(&r.kind, RelationKind::Join { on } if on == arg.def.name.as_str())
                                && owned_by_it
                            {
                                // Its document is rebuilt if it has one; a
                                // child does not make a parent that was not
                                // there (`createSettlement` for a contract
                                // the service does not have): nothing to wait for.
                                rows.push((source.entity.to_string(), given.clone(), false));
                            }
                        }
                    }
                }
            }
            // The `id` of the object returned (a create names no id argument).
            if let (true, FieldKind::Object { selection, .. }) = (returns_entity, &root.node.kind) {
                let id_key = selection
                    .by_type
                    .iter()
                    .flat_map(|(_, fields)| fields)
                    .find(|f| matches!(&f.kind, FieldKind::Leaf { data_key, .. } if data_key == "id"))
                    .map(|f| f.response_key.to_string());
                if let Some(id) = id_key.and_then(|k| value.get(&k)).and_then(json_id) {
                    rows.push((returned.clone(), id, true));
                }
            }
        }
        rows.sort();
        rows.dedup();
        rows
    }

    /// What the indexes must show for `rows`.
    fn expectations(&self, rows: &[(String, String, bool)]) -> Vec<Expect> {
        let schema = &*self.schema;
        let mut out = Vec::new();
        for (type_name, id, exists) in rows {
            let (type_name, exists) = (type_name.as_str(), *exists);
            for def in schema.indexes() {
                for source in &def.sources {
                    if source.entity == type_name {
                        out.push(Expect::Rebuilt {
                            index: def.name.clone(),
                            doc: document_id(type_name, id),
                            exists,
                        });
                    }
                    for r in relations(schema, source) {
                        if r.target != type_name {
                            continue;
                        }
                        out.push(Expect::Holders {
                            index: def.name.clone(),
                            field: refs_field(&r.target),
                            value: id.clone(),
                        });
                        if let RelationKind::Ref { key } = &r.kind {
                            out.push(Expect::Holders {
                                index: def.name.clone(),
                                field: key.to_string(),
                                value: id.clone(),
                            });
                        }
                    }
                }
            }
        }
        out.sort_by_key(|e| format!("{e:?}"));
        out.dedup();
        out
    }
}
