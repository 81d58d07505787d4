//! The cached stage: operation text → validated, planned operation.
//!
//! On a miss, async-graphql parses and validates the operation against the
//! client schema (its introspection-only executor runs no resolver), then the
//! planner plans it. Only successes are cached: a request that failed because
//! of its variables must not poison the entry for good requests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, Variables};
use moka::sync::Cache;
use serde_json::{Map, Value};
use xxhash_rust::xxh3::Xxh3;

use super::limits::{self, CostTree, Limits};
use crate::exec::{ErrorCode, GraphQLError, Introspection, Location};
use crate::plan::{self, PlanError, QueryPlan};
use crate::schema::Supergraph;

pub struct Prepared {
    query: String,
    operation_name: Option<String>,
    pub plan: QueryPlan,
    /// Evaluated with each request's variables.
    pub cost: CostTree,
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
        limits: &Limits,
    ) -> Result<Arc<Prepared>, Vec<GraphQLError>> {
        let key = cache_key(query, operation_name);
        if let Some(hit) = self.cache.get(&key) {
            // A 64-bit hash can collide; the text decides.
            if hit.query == query && hit.operation_name.as_deref() == operation_name {
                crate::telemetry::metrics().plan_cache(true);
                return Ok(hit);
            }
        }
        crate::telemetry::metrics().plan_cache(false);
        let planning = prepare(schema, query, operation_name, variables, limits);
        let prepared =
            Arc::new(tracing::Instrument::instrument(planning, tracing::info_span!("plan")).await?);
        self.cache.insert(key, Arc::clone(&prepared));
        Ok(prepared)
    }
}

/// The most fields an operation may select with every fragment spread
/// expanded. Fragments spreading a fragment twice, nested, double the work
/// of validation and planning at each level (24 levels of a short document
/// took 12 s); this bound is checked in one linear pass first.
pub const MAX_EXPANDED_FIELDS: u64 = 50_000;

/// The number of fields the document's operations select once fragments
/// are expanded (saturating; each fragment's size is computed once).
fn expanded_size(doc: &ExecutableDocument) -> u64 {
    fn set_size<'d>(
        set: &'d SelectionSet,
        doc: &'d ExecutableDocument,
        memo: &mut HashMap<&'d str, u64>,
        visiting: &mut HashSet<&'d str>,
    ) -> u64 {
        let mut total: u64 = 0;
        for item in &set.items {
            let size = match &item.node {
                Selection::Field(f) => {
                    1u64.saturating_add(set_size(&f.node.selection_set.node, doc, memo, visiting))
                }
                Selection::InlineFragment(i) => set_size(&i.node.selection_set.node, doc, memo, visiting),
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    match memo.get(name) {
                        Some(size) => *size,
                        // A cycle: validation rejects it.
                        None if !visiting.insert(name) => 0,
                        None => {
                            let size = doc
                                .fragments
                                .get(name)
                                .map_or(0, |f| set_size(&f.node.selection_set.node, doc, memo, visiting));
                            visiting.remove(name);
                            memo.insert(name, size);
                            size
                        }
                    }
                }
            };
            total = total.saturating_add(size);
        }
        total
    }
    let mut memo = HashMap::new();
    let mut visiting = HashSet::new();
    doc.operations
        .iter()
        .map(|(_, op)| set_size(&op.node.selection_set.node, doc, &mut memo, &mut visiting))
        .fold(0u64, u64::saturating_add)
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
    limits: &Limits,
) -> Result<Prepared, Vec<GraphQLError>> {
    limits::check_tokens(query, limits).map_err(|e| vec![*e])?;
    let doc = async_graphql::parser::parse_query(query).map_err(|e| {
        let locations = e.positions().map(Location::from).collect();
        let mut error = GraphQLError::new(format!("syntax error: {e}"), ErrorCode::GraphqlParseFailed);
        error.locations = locations;
        vec![error]
    })?;

    let expanded = expanded_size(&doc);
    if expanded > MAX_EXPANDED_FIELDS {
        return Err(vec![GraphQLError::new(
            format!(
                "the operation selects {expanded} fields once its fragments are expanded; at most {MAX_EXPANDED_FIELDS} are allowed"
            ),
            ErrorCode::GraphqlValidationFailed,
        )]);
    }

    let cost = limits::check_document(schema, &doc, operation_name, limits).map_err(|e| vec![*e])?;

    let mut request =
        async_graphql::Request::new(query).variables(Variables::from_json(Value::Object(variables.clone())));
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    request.set_parsed_query(doc.clone());
    let response = schema.validator().execute(request).await;
    // async-graphql does not see `__typename`'s directives: a variable used
    // only there is used.
    let typename_variables = super::values::typename_variables(&doc);
    let errors: Vec<ServerError> = response
        .errors
        .into_iter()
        .filter(|e| {
            !typename_variables.iter().any(|v| {
                let unused = format!("Variable \"${v}\" is not used");
                e.message == unused || e.message.starts_with(&format!("{unused} by operation"))
            })
        })
        .collect();
    if !errors.is_empty() {
        return Err(validation_errors(errors));
    }
    super::values::check(schema, &doc)?;
    super::merge::check(schema, &doc)?;

    let mut plan = plan::plan(schema, &doc, operation_name).map_err(|e| vec![plan_error(&e)])?;
    let non_null = super::values::non_null_usages(schema, &doc, operation_name);
    for variable in &mut plan.variables {
        variable.non_null_usage = non_null.contains(&variable.name);
    }
    Ok(Prepared {
        query: query.to_string(),
        operation_name: operation_name.map(str::to_string),
        plan,
        cost,
    })
}

/// async-graphql's answer for the `__schema`/`__type` fields of an operation.
pub async fn introspect(
    schema: &Supergraph,
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Value>,
) -> Result<Introspection, Vec<GraphQLError>> {
    let mut request =
        async_graphql::Request::new(query).variables(Variables::from_json(Value::Object(variables.clone())));
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    let response = schema.validator().execute(request).await;
    if !response.errors.is_empty() {
        return Err(validation_errors(response.errors));
    }
    // Each answer written from async-graphql's ordered map, in the order
    // the client selected its fields.
    let async_graphql::Value::Object(fields) = response.data else {
        return Ok(Introspection::new());
    };
    Ok(fields
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_string(), serde_json::value::to_raw_value(&value).ok()?)))
        .collect())
}

/// The validator's errors, each once: two of its rules can report the same
/// fault at the same place (an operation type the schema lacks, twice).
fn validation_errors(errors: Vec<ServerError>) -> Vec<GraphQLError> {
    let mut out: Vec<GraphQLError> = Vec::with_capacity(errors.len());
    for error in errors.into_iter().map(validation_error) {
        if !out
            .iter()
            .any(|e| e.message == error.message && e.locations == error.locations)
        {
            out.push(error);
        }
    }
    out
}

fn validation_error(e: ServerError) -> GraphQLError {
    let code = if e.message.starts_with("Invalid value for argument") || e.message.contains("variable") {
        ErrorCode::BadUserInput
    } else {
        ErrorCode::GraphqlValidationFailed
    };
    let mut error = GraphQLError::new(e.message, code);
    error.locations = e.locations.iter().copied().map(Location::from).collect();
    error
}

fn plan_error(e: &PlanError) -> GraphQLError {
    let (code, at) = match e {
        PlanError::UnknownOperation { .. } | PlanError::OperationNameRequired | PlanError::NoOperation => {
            (ErrorCode::GraphqlValidationFailed, None)
        }
        PlanError::Subscription => (ErrorCode::SubscriptionNotSupported, None),
        // Bounds the planner keeps whatever the `[limits]` (the operation
        // limits refuse the same fragment nesting first).
        PlanError::FragmentsTooDeep { pos, .. } => (ErrorCode::MaxDepthLimit, Some(pos)),
        PlanError::TooManyConditions { pos, .. } => (ErrorCode::MaxDirectivesLimit, Some(pos)),
        PlanError::Unresolvable { .. } => {
            // A planner invariant: the operation is valid, the gateway is wrong.
            return GraphQLError::internal(
                "internal error: the gateway cannot plan this operation",
                format!("operation passed validation but cannot be planned: {e}"),
            );
        }
    };
    let mut error = GraphQLError::new(e.to_string(), code);
    error.locations = at.copied().map(Location::from).into_iter().collect();
    error
}
