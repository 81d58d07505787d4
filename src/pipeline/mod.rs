//! The request pipeline: one linear function of named stages, from a parsed
//! GraphQL request to response bytes. Each stage either continues or ends the
//! request with a spec-shaped error; the cached one says so in its name.
//!
//! ```text
//! request → prepare_cached (parse, validate, plan) → coerce variables
//!         → introspection (only if selected) → execute → response
//! ```

mod apq;
mod limits;
mod merge;
mod prepare;
mod values;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::exec::{self, coerce_variables, ErrorCode, Executor, GraphQLError};
use crate::plan::OperationKind;
use crate::schema::Supergraph;

/// The type an inline fragment's selections are on: its condition's, or
/// (without one) its parent's. For the passes that walk operations.
fn fragment_type<'a>(
    inline: &'a async_graphql::parser::types::InlineFragment,
    parent: Option<&'a str>,
) -> Option<&'a str> {
    inline
        .type_condition
        .as_ref()
        .map(|c| c.node.on.node.as_str())
        .or(parent)
}

pub use limits::{count_tokens, CostTree, Limits};
pub use prepare::{plan_operation, PlanCache, Prepared};

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
    /// An executed operation's response carries errors.
    pub has_errors: bool,
    /// Refused before execution: the body has no `data`.
    pub refused: bool,
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
    /// Names the request in the log and in every error the client gets.
    pub request_id: String,
    /// Add the rendered plan under `extensions.queryPlan`.
    pub include_plan: bool,
    /// Add the estimated cost under `extensions.cost`.
    pub include_cost: bool,
}

/// What the gateway enforces and shows, from `tessera.toml`.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub plan_cache_size: u64,
    /// Operation texts kept for automatic persisted queries (0: off).
    pub apq_cache_size: u64,
    /// Client request headers passed on to the subgraphs.
    pub forward_headers: Vec<HeaderName>,
    pub limits: Limits,
    /// The longest a whole request may take.
    pub request_timeout: Duration,
    /// Answer `__schema`/`__type`.
    pub introspection: bool,
    /// Show errors' internal detail to clients (development).
    pub expose_error_details: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self::from_config(&crate::config::Config::default())
    }
}

impl GatewayOptions {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            plan_cache_size: config.execution.plan_cache_size,
            apq_cache_size: config.execution.apq_cache_size,
            forward_headers: config
                .execution
                .forward_headers
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            limits: config.limits.clone(),
            request_timeout: config.limits.request_timeout,
            introspection: config.security.introspection,
            expose_error_details: config.security.expose_error_details,
        }
    }
}

/// For each index a search field of `plan` read: when it last applied a
/// change, and how long ago (`{"contracts": {"lastApplied": "2026-…Z",
/// "ageMs": 3120}}`), so a frontend can say "updated 3 s ago". Indexes with
/// no known change (none since this process started, and none stamped in
/// the backend) are left out.
async fn index_freshness(executor: &Executor, plan: &crate::plan::QueryPlan) -> Option<Value> {
    let search = executor.search()?;
    let mut out = Map::new();
    for fetch in &plan.fetches {
        let crate::plan::FetchKind::Search(fetch) = &fetch.kind else {
            continue;
        };
        // A field served by MERGE read the services, not the index.
        if out.contains_key(&fetch.index) || search.strategy(&fetch.field) != crate::exec::Strategy::Index {
            continue;
        }
        let Some(at) = search.last_applied(&fetch.index).await else {
            continue;
        };
        let age = std::time::SystemTime::now()
            .duration_since(at)
            .unwrap_or_default();
        // To the millisecond, as every other instant the gateway writes
        // (and as a stamp read back from OpenSearch is).
        let at = time::OffsetDateTime::from(at);
        let stamp = at
            .replace_nanosecond(at.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap_or(at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        out.insert(
            fetch.index.clone(),
            serde_json::json!({ "lastApplied": stamp, "ageMs": age.as_millis() as u64 }),
        );
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// An executed operation, before its errors are finished and it is written.
struct Executed {
    data: Vec<u8>,
    errors: Vec<GraphQLError>,
    extensions: Map<String, Value>,
    subgraph_time: Duration,
}

pub struct Gateway {
    schema: Arc<Supergraph>,
    executor: Arc<Executor>,
    plans: PlanCache,
    persisted: apq::PersistedQueries,
    options: GatewayOptions,
    /// Read-your-writes: a mutation's response waits for the indexes.
    freshness: Option<Arc<crate::sync::Freshness>>,
}

impl Gateway {
    pub fn new(executor: Arc<Executor>, options: GatewayOptions) -> Self {
        Self {
            schema: Arc::clone(executor.schema()),
            executor,
            plans: PlanCache::new(options.plan_cache_size),
            persisted: apq::PersistedQueries::new(options.apq_cache_size),
            options,
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

    pub fn options(&self) -> &GatewayOptions {
        &self.options
    }

    /// A request refused before execution: no `data` key; the status of the
    /// first error's code.
    pub fn refuse(&self, mut errors: Vec<GraphQLError>, request_id: &str) -> GraphQLResponse {
        let status = errors.first().map_or(400, |e| e.code.status());
        self.finish_errors(&mut errors, request_id);
        GraphQLResponse {
            status,
            body: exec::response_body(None, &errors, None),
            timing: None,
            has_errors: true,
            refused: true,
        }
    }

    /// Every error gets the request id; internal detail goes to the log
    /// (and to the client only with `expose_error_details`).
    fn finish_errors(&self, errors: &mut [GraphQLError], request_id: &str) {
        for error in errors {
            if let Some(detail) = error.detail.take() {
                tracing::warn!(request_id, code = %error.code, %detail, "{}", error.message);
                if self.options.expose_error_details {
                    error.extensions.insert("detail".into(), Value::String(detail));
                }
            }
            error
                .extensions
                .insert("requestId".into(), Value::String(request_id.into()));
        }
    }

    /// Runs one request through every stage, within the request timeout.
    pub async fn handle(
        &self,
        request: GraphQLRequest,
        method: Method,
        headers: &HeaderMap,
        options: RequestOptions,
    ) -> GraphQLResponse {
        let started = Instant::now();
        let timeout = self.options.request_timeout;
        let run = tokio::time::timeout(timeout, self.run(request, method, headers, &options));
        let executed = match run.await {
            Ok(Ok(executed)) => executed,
            Ok(Err(errors)) => return self.refuse(errors, &options.request_id),
            Err(_) => {
                let error = GraphQLError::new(
                    format!(
                        "the request took longer than {}",
                        humantime::format_duration(timeout)
                    ),
                    ErrorCode::GatewayTimeout,
                );
                return self.refuse(vec![error], &options.request_id);
            }
        };
        let Executed {
            data,
            mut errors,
            extensions,
            subgraph_time,
        } = executed;
        self.finish_errors(&mut errors, &options.request_id);
        GraphQLResponse {
            status: 200,
            body: exec::response_body(Some(&data), &errors, Some(&extensions)),
            timing: Some((started.elapsed(), subgraph_time)),
            has_errors: !errors.is_empty(),
            refused: false,
        }
    }

    async fn run(
        &self,
        request: GraphQLRequest,
        method: Method,
        headers: &HeaderMap,
        options: &RequestOptions,
    ) -> Result<Executed, Vec<GraphQLError>> {
        // GraphQL over HTTP: `extensions`, when given, is a map.
        if !matches!(
            request.extensions,
            None | Some(Value::Null) | Some(Value::Object(_))
        ) {
            return Err(vec![GraphQLError::new(
                "`extensions` must be an object",
                ErrorCode::BadRequest,
            )]);
        }
        let text = self
            .persisted
            .text(request.query.as_deref(), request.extensions.as_ref())
            .map_err(|e| vec![*e])?;
        let query: &str = match &text {
            Some(text) => text.as_str(),
            None => {
                return Err(vec![GraphQLError::new(
                    "the request has no `query`",
                    ErrorCode::BadRequest,
                )])
            }
        };
        let variables = match request.variables {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(vec![GraphQLError::new(
                    "`variables` must be an object",
                    ErrorCode::BadRequest,
                )])
            }
        };

        let prepared = self
            .plans
            .prepare_cached(
                &self.schema,
                query,
                request.operation_name.as_deref(),
                &variables,
                &self.options.limits,
            )
            .await?;
        if let Some(apq::Text::Register(query, hash)) = text {
            self.persisted.keep(query, hash);
        }
        let plan = &prepared.plan;
        if method == Method::Get && plan.kind == OperationKind::Mutation {
            return Err(vec![GraphQLError::new(
                "mutations must be sent with POST",
                ErrorCode::MethodNotAllowed,
            )]);
        }
        if plan.has_introspection && !self.options.introspection {
            return Err(vec![GraphQLError::new(
                "introspection is turned off on this gateway",
                ErrorCode::IntrospectionDisabled,
            )]);
        }

        let coerced = coerce_variables(&self.schema, &plan.variables, &variables)?;
        let cost = prepared.cost.estimate(&coerced);
        limits::check_cost(cost, &self.options.limits).map_err(|e| vec![*e])?;

        let introspection = if plan.has_introspection {
            Some(
                prepare::introspect(&self.schema, query, request.operation_name.as_deref(), &variables)
                    .await?,
            )
        } else {
            None
        };

        let mut forwarded = exec::forwarded_headers(&self.options.forward_headers, headers);
        // W3C trace context: the subgraphs' spans join this request's trace
        // (the fetcher narrows it to each fetch's own span when exporting).
        let trace = crate::telemetry::TraceContext::from_headers(headers);
        if let Ok(value) =
            reqwest::header::HeaderValue::from_str(&crate::telemetry::outgoing_traceparent(&trace))
        {
            forwarded.insert("traceparent", value);
        }
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
        if let Some(freshness) = index_freshness(&self.executor, plan).await {
            extensions.insert("indexes".into(), freshness);
        }
        if options.include_plan {
            extensions.insert("queryPlan".into(), Value::String(plan.to_string()));
        }
        if options.include_cost {
            extensions.insert(
                "cost".into(),
                serde_json::json!({ "estimated": cost, "max": self.options.limits.max_cost }),
            );
        }
        Ok(Executed {
            data: execution.data,
            errors: execution.errors,
            extensions,
            subgraph_time: execution.subgraph_time,
        })
    }
}
