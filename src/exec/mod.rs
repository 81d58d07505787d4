//! Runs a [`QueryPlan`](crate::plan::QueryPlan): subgraph I/O behind the
//! [`Fetcher`] trait, per-request loaders for keyed fetches, and the JSON
//! projection that writes the client's response bytes.
//!
//! The executor never parses or validates operations (the pipeline did) and
//! never decides what to fetch (the plan did).

mod client;
mod error;
mod input;
pub mod keys;
mod project;
mod run;
pub mod search;
pub mod tape;

use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

pub use client::{
    forwarded_headers, Endpoint, Fetcher, HttpFetcher, SubgraphRequest, SubgraphResponse, Traffic,
};
pub use error::{ErrorCode, FetchError, GraphQLError, Location, PathSegment, RunError};
pub use input::{coerce_variables, Variables};

/// The answers of an operation's `__schema`/`__type` root fields by
/// response key, as JSON written in the order the fields were selected
/// (spec §7.2.2; a `serde_json::Map` would sort them).
pub type Introspection = std::collections::HashMap<String, Box<serde_json::value::RawValue>>;
pub use search::{SearchContext, Strategy};

use crate::plan::QueryPlan;
use crate::schema::Supergraph;

/// Executes plans against subgraphs. Cheap to share: one per gateway.
pub struct Executor {
    schema: Arc<Supergraph>,
    fetcher: Arc<dyn Fetcher>,
    max_batch_size: usize,
    search: Option<Arc<SearchContext>>,
}

/// An operation the gateway runs itself, parsed and planned once
/// ([`Executor::prepare`]).
pub struct Internal {
    plan: QueryPlan,
}

/// What executing a plan produced: the `data` JSON and the errors.
pub struct Execution {
    pub data: Vec<u8>,
    pub errors: Vec<GraphQLError>,
    /// Wall time with at least one subgraph request outstanding.
    pub subgraph_time: std::time::Duration,
}

impl Executor {
    pub fn new(schema: Arc<Supergraph>, fetcher: Arc<dyn Fetcher>, max_batch_size: usize) -> Self {
        Self {
            schema,
            fetcher,
            max_batch_size,
            search: None,
        }
    }

    /// Answers `@search` fields from `search` (without it they fail).
    pub fn with_search(mut self, search: Arc<SearchContext>) -> Self {
        self.search = Some(search);
        self
    }

    pub fn search(&self) -> Option<&Arc<SearchContext>> {
        self.search.as_ref()
    }

    /// Parses and plans an operation the gateway runs itself (document
    /// building, listings, MERGE sources), once: a mistake in it shows here,
    /// at start, not on the first request that needs it.
    pub fn prepare(&self, text: &str) -> Result<Internal, String> {
        let doc = async_graphql::parser::parse_query(text)
            .map_err(|e| format!("internal query does not parse: {e}"))?;
        let plan = crate::plan::plan(&self.schema, &doc, None).map_err(|e| format!("internal query: {e}"))?;
        Ok(Internal { plan })
    }

    /// Runs a prepared internal operation with `variables` and returns its
    /// `data`; any error fails the whole call (and says whether it was
    /// transient). `headers` are forwarded to the subgraphs as a client's
    /// would be.
    pub async fn run(
        &self,
        query: &Internal,
        variables: &Map<String, Value>,
        headers: &HeaderMap,
    ) -> Result<Map<String, Value>, RunError> {
        let data = self.run_bytes(query, variables, headers).await?;
        match serde_json::from_slice(&data) {
            Ok(Value::Object(data)) => Ok(data),
            Ok(_) => Err(RunError::internal("the query returned no data")),
            Err(e) => Err(RunError::internal(e.to_string())),
        }
    }

    /// [`run`](Self::run), answering the `data` object as the JSON bytes
    /// the projection wrote, for a caller that reads them in one pass.
    pub async fn run_bytes(
        &self,
        query: &Internal,
        variables: &Map<String, Value>,
        headers: &HeaderMap,
    ) -> Result<Vec<u8>, RunError> {
        let variables =
            input::coerce_variables(&self.schema, &query.plan.variables, variables).map_err(|errors| {
                RunError::internal(
                    errors
                        .into_iter()
                        .map(|e| e.message)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
        let execution = self.execute(&query.plan, &variables, headers, None).await;
        if !execution.errors.is_empty() {
            return Err(RunError::from_errors(&execution.errors));
        }
        Ok(execution.data)
    }

    /// [`prepare`](Self::prepare) and [`run`](Self::run) of a query without
    /// variables that changes with every call (a MERGE page).
    pub fn query_value<'s>(
        &'s self,
        text: &'s str,
        headers: &'s HeaderMap,
    ) -> futures::future::BoxFuture<'s, Result<Map<String, Value>, RunError>> {
        Box::pin(async move {
            let query = self.prepare(text).map_err(RunError::internal)?;
            self.run(&query, &Map::new(), headers).await
        })
    }

    pub fn schema(&self) -> &Arc<Supergraph> {
        &self.schema
    }

    /// Runs every fetch of `plan` and writes `data`. `introspection` is
    /// async-graphql's answer for `__schema`/`__type` root fields, if any.
    pub async fn execute(
        &self,
        plan: &QueryPlan,
        variables: &Variables,
        headers: &HeaderMap,
        introspection: Option<&Introspection>,
    ) -> Execution {
        let run = run::Run::new(
            self,
            &self.schema,
            plan,
            &self.fetcher,
            variables,
            headers,
            self.max_batch_size,
        );
        run.run().await;
        // Sized as this plan's last answer was, with room to spare (bounded: a huge one once
        // must not make every later buffer huge).
        let last = plan.response_size.load(std::sync::atomic::Ordering::Relaxed);
        let projected = project::Projector::new(&run, variables, (last + last / 8).clamp(4096, 8 << 20))
            .write_data(introspection);
        plan.response_size
            .store(projected.data.len(), std::sync::atomic::Ordering::Relaxed);
        if let (false, Some(search)) = (projected.gone.is_empty(), &self.search) {
            search.report_gone(projected.gone);
        }
        Execution {
            data: projected.data,
            errors: projected.errors,
            subgraph_time: run.subgraph_time(),
        }
    }
}

/// `{"data":…,"errors":[…],"extensions":{…}}` from parts; `data: None` leaves
/// the key out (a request error that never executed).
pub fn response_body(
    data: Option<&[u8]>,
    errors: &[GraphQLError],
    extensions: Option<&Map<String, Value>>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.map_or(0, |d| d.len()) + 64);
    body.push(b'{');
    let mut first = true;
    if let Some(data) = data {
        body.extend_from_slice(b"\"data\":");
        body.extend_from_slice(data);
        first = false;
    }
    if !errors.is_empty() {
        if !first {
            body.push(b',');
        }
        body.extend_from_slice(b"\"errors\":");
        let _ = serde_json::to_writer(&mut body, errors);
        first = false;
    }
    if let Some(ext) = extensions.filter(|e| !e.is_empty()) {
        if !first {
            body.push(b',');
        }
        body.extend_from_slice(b"\"extensions\":");
        let _ = serde_json::to_writer(&mut body, ext);
    }
    body.push(b'}');
    body
}
