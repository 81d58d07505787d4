//! The cached stage: operation text → validated, planned operation.
//!
//! On a miss, async-graphql parses and validates the operation against the
//! client schema (its introspection-only executor runs no resolver), then the
//! planner plans it. Only successes are cached: a request that failed because
//! of its variables must not poison the entry for good requests.

use std::sync::Arc;

use async_graphql::{ServerError, Variables};
use moka::sync::Cache;
use serde_json::{Map, Value};
use xxhash_rust::xxh3::Xxh3;

use crate::exec::{GraphQLError, Location};
use crate::plan::{self, PlanError, QueryPlan};
use crate::schema::Supergraph;

pub struct Prepared {
    query: String,
    operation_name: Option<String>,
    pub plan: QueryPlan,
}

/// Bounded LRU-ish cache (moka's TinyLFU) of prepared operations by hash of
/// (query, operationName).
pub struct PlanCache {
    cache: Cache<u64, Arc<Prepared>>,
}

impl PlanCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: Cache::new(capacity),
        }
    }

    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub async fn prepare_cached(
        &self,
        schema: &Supergraph,
        query: &str,
        operation_name: Option<&str>,
        variables: &Map<String, Value>,
    ) -> Result<Arc<Prepared>, Vec<GraphQLError>> {
        let key = cache_key(query, operation_name);
        if let Some(hit) = self.cache.get(&key) {
            // A 64-bit hash can collide; the text decides.
            if hit.query == query && hit.operation_name.as_deref() == operation_name {
                return Ok(hit);
            }
        }
        let prepared = Arc::new(prepare(schema, query, operation_name, variables).await?);
        self.cache.insert(key, Arc::clone(&prepared));
        Ok(prepared)
    }
}

fn cache_key(query: &str, operation_name: Option<&str>) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(query.as_bytes());
    hasher.update(&[0]);
    hasher.update(operation_name.unwrap_or_default().as_bytes());
    hasher.digest()
}

async fn prepare(
    schema: &Supergraph,
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Value>,
) -> Result<Prepared, Vec<GraphQLError>> {
    let doc = async_graphql::parser::parse_query(query).map_err(|e| {
        let locations = e
            .positions()
            .map(|p| Location {
                line: p.line,
                column: p.column,
            })
            .collect();
        let mut error = GraphQLError::new(format!("syntax error: {e}"), "GRAPHQL_PARSE_FAILED");
        error.locations = locations;
        vec![error]
    })?;

    let mut request =
        async_graphql::Request::new(query).variables(Variables::from_json(Value::Object(variables.clone())));
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    request.set_parsed_query(doc.clone());
    let response = schema.validator().execute(request).await;
    if !response.errors.is_empty() {
        return Err(response.errors.into_iter().map(validation_error).collect());
    }

    let plan = plan::plan(schema, &doc, operation_name).map_err(|e| vec![plan_error(&e)])?;
    Ok(Prepared {
        query: query.to_string(),
        operation_name: operation_name.map(str::to_string),
        plan,
    })
}

/// async-graphql's answer for the `__schema`/`__type` fields of an operation.
pub async fn introspect(
    schema: &Supergraph,
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<GraphQLError>> {
    let mut request =
        async_graphql::Request::new(query).variables(Variables::from_json(Value::Object(variables.clone())));
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    let response = schema.validator().execute(request).await;
    if !response.errors.is_empty() {
        return Err(response.errors.into_iter().map(validation_error).collect());
    }
    match response.data.into_json() {
        Ok(Value::Object(map)) => Ok(map),
        _ => Ok(Map::new()),
    }
}

fn validation_error(e: ServerError) -> GraphQLError {
    let code = if e.message.starts_with("Invalid value for argument") || e.message.contains("variable") {
        "BAD_USER_INPUT"
    } else {
        "GRAPHQL_VALIDATION_FAILED"
    };
    let mut error = GraphQLError::new(e.message, code);
    error.locations = e
        .locations
        .iter()
        .map(|p| Location {
            line: p.line,
            column: p.column,
        })
        .collect();
    error
}

fn plan_error(e: &PlanError) -> GraphQLError {
    let code = match e {
        PlanError::UnknownOperation { .. } | PlanError::OperationNameRequired | PlanError::NoOperation => {
            "GRAPHQL_VALIDATION_FAILED"
        }
        PlanError::Subscription => "SUBSCRIPTION_NOT_SUPPORTED",
        PlanError::Unresolvable { .. } => {
            tracing::error!(error = %e, "operation passed validation but cannot be planned");
            "INTERNAL_SERVER_ERROR"
        }
    };
    GraphQLError::new(e.to_string(), code)
}
