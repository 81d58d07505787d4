//! The request pipeline: one linear function of named stages, from a parsed
//! GraphQL request to response bytes. Each stage either continues or ends the
//! request with a spec-shaped error; the cached one says so in its name.
//!
//! ```text
//! request → prepare_cached (parse, validate, plan) → coerce variables
//!         → introspection (only if selected) → execute → response
//! ```

mod prepare;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::exec::{self, coerce_variables, Executor, GraphQLError};
use crate::plan::OperationKind;
use crate::schema::Supergraph;

pub use prepare::{PlanCache, Prepared};

/// A GraphQL-over-HTTP request, from a POST body or a GET query string.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphQLRequest {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub operation_name: Option<String>,
    #[serde(default)]
    pub variables: Option<Value>,
    #[serde(default)]
    pub extensions: Option<Value>,
}

/// The response of the pipeline: an HTTP status and the body.
#[derive(Debug)]
pub struct GraphQLResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// `(total, waiting on subgraphs)`, for the `Server-Timing` header.
    pub timing: Option<(Duration, Duration)>,
}

impl GraphQLResponse {
    /// A request error: nothing was executed, so there is no `data` key.
    pub fn request_error(status: u16, errors: &[GraphQLError]) -> Self {
        Self {
            status,
            body: exec::response_body(None, errors, None),
            timing: None,
        }
    }
}

/// How a request arrived; GET may not run mutations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// Options of one request beyond the GraphQL payload.
#[derive(Debug, Default)]
pub struct RequestOptions {
    /// Add the rendered plan under `extensions.queryPlan`.
    pub include_plan: bool,
}

pub struct Gateway {
    schema: Arc<Supergraph>,
    executor: Arc<Executor>,
    plans: PlanCache,
    forward_headers: Vec<HeaderName>,
    /// Read-your-writes: a mutation's response waits for the indexes.
    freshness: Option<Arc<crate::sync::Freshness>>,
}

impl Gateway {
    pub fn new(executor: Arc<Executor>, plan_cache_size: u64, forward_headers: Vec<HeaderName>) -> Self {
        Self {
            schema: Arc::clone(executor.schema()),
            executor,
            plans: PlanCache::new(plan_cache_size),
            forward_headers,
            freshness: None,
        }
    }

    /// A mutation's response waits (up to a bound) until the search indexes
    /// show what it changed.
    pub fn with_freshness(mut self, freshness: Arc<crate::sync::Freshness>) -> Self {
        self.freshness = Some(freshness);
        self
    }

    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    pub fn schema(&self) -> &Arc<Supergraph> {
        &self.schema
    }

    pub fn plan_cache(&self) -> &PlanCache {
        &self.plans
    }

    /// Runs one request through every stage.
    pub async fn handle(
        &self,
        request: GraphQLRequest,
        method: Method,
        headers: &HeaderMap,
        options: RequestOptions,
    ) -> GraphQLResponse {
        let started = Instant::now();
        let Some(query) = request.query.as_deref().filter(|q| !q.trim().is_empty()) else {
            return GraphQLResponse::request_error(
                400,
                &[GraphQLError::new("the request has no `query`", "BAD_REQUEST")],
            );
        };
        let variables = match request.variables {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return GraphQLResponse::request_error(
                    400,
                    &[GraphQLError::new("`variables` must be an object", "BAD_REQUEST")],
                )
            }
        };

        let prepared = match self
            .plans
            .prepare_cached(&self.schema, query, request.operation_name.as_deref(), &variables)
            .await
        {
            Ok(prepared) => prepared,
            Err(errors) => return GraphQLResponse::request_error(400, &errors),
        };
        let plan = &prepared.plan;
        if method == Method::Get && plan.kind == OperationKind::Mutation {
            return GraphQLResponse::request_error(
                405,
                &[GraphQLError::new(
                    "mutations must be sent with POST",
                    "METHOD_NOT_ALLOWED",
                )],
            );
        }

        let coerced = match coerce_variables(&self.schema, &plan.variables, &variables) {
            Ok(v) => v,
            Err(errors) => return GraphQLResponse::request_error(400, &errors),
        };

        let introspection = if plan.has_introspection {
            match prepare::introspect(&self.schema, query, request.operation_name.as_deref(), &variables)
                .await
            {
                Ok(data) => Some(data),
                Err(errors) => return GraphQLResponse::request_error(400, &errors),
            }
        } else {
            None
        };

        let forwarded = exec::forwarded_headers(&self.forward_headers, headers);
        let execution = self
            .executor
            .execute(plan, &coerced, &forwarded, introspection.as_ref())
            .await;

        let mut extensions = Map::new();
        if let (OperationKind::Mutation, Some(freshness)) = (plan.kind, &self.freshness) {
            // The write is done; indexes that have not followed yet are
            // reported, never a reason to hide the mutation's result.
            // Rebuilt after the mutation answered: a rebuild that read the rows
            // while it was in flight may have missed it (and the wait hands
            // the rows over for a rebuild, so one comes).
            let answered = crate::sync::now_version();
            if let Err(e) = freshness.wait(plan, &coerced, &execution.data, answered).await {
                tracing::debug!(error = %e, "read-your-writes: indexes not caught up");
                extensions.insert("indexUpdate".into(), Value::String(e.to_string()));
            }
        }
        if options.include_plan {
            extensions.insert("queryPlan".into(), Value::String(plan.to_string()));
        }
        let body = exec::response_body(Some(&execution.data), &execution.errors, Some(&extensions));
        GraphQLResponse {
            status: 200,
            body,
            timing: Some((started.elapsed(), execution.subgraph_time)),
        }
    }
}
