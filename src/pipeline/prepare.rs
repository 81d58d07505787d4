//! The cached stage: operation text → validated, planned operation.
//!
//! On a miss, async-graphql parses and validates the operation against the
//! client schema (its introspection-only executor runs no resolver), then the
//! planner plans it. Only successes are cached: a request that failed because
//! of its variables must not poison the entry for good requests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::Pos;
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
    /// `capacity` in operations of up to [`super::apq::TEXT_WEIGHT_UNIT`]
    /// bytes of text; a longer one counts once per started unit.
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .weigher(|_, prepared: &Arc<Prepared>| super::apq::text_weight(&prepared.query))
                .build(),
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
        let planning = prepare(schema, query, operation_name, Some(variables), limits);
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

/// The number of fields and spreads the document's operations select once
/// fragments are expanded (saturating; each fragment's size is computed
/// once, without recursion: a chain of a few thousand fragments is short
/// text). A spread of an unknown fragment, or one that closes a cycle, is
/// refused here: counted as nothing, a chain of fragments each spreading the
/// next twice and ending in one would pass this bound and then cost the
/// validation and the limits' walks exponential time (26 levels, 1 KB: 68 s).
fn expanded_size(doc: &ExecutableDocument) -> Result<u64, Box<GraphQLError>> {
    let shapes: HashMap<&str, Shape<'_>> = doc
        .fragments
        .iter()
        .map(|(name, f)| (name.as_str(), Shape::of(&f.node.selection_set.node)))
        .collect();
    let mut memo = HashMap::new();
    let mut total = 0u64;
    for (_, op) in doc.operations.iter() {
        let shape = Shape::of(&op.node.selection_set.node);
        total = total.saturating_add(shape.fields);
        for &(name, pos) in &shape.spreads {
            total = total.saturating_add(spread_size(name, pos, &shapes, &mut memo)?);
        }
    }
    Ok(total)
}

/// What a selection set selects itself: its fields (nested ones too), and
/// the fragments it spreads.
#[derive(Default)]
struct Shape<'d> {
    fields: u64,
    spreads: Vec<(&'d str, Pos)>,
}

impl<'d> Shape<'d> {
    fn of(set: &'d SelectionSet) -> Self {
        fn add<'d>(set: &'d SelectionSet, out: &mut Shape<'d>) {
            for item in &set.items {
                match &item.node {
                    Selection::Field(f) => {
                        out.fields = out.fields.saturating_add(1);
                        add(&f.node.selection_set.node, out);
                    }
                    Selection::InlineFragment(i) => add(&i.node.selection_set.node, out),
                    Selection::FragmentSpread(spread) => out
                        .spreads
                        .push((spread.node.fragment_name.node.as_str(), spread.pos)),
                }
            }
        }
        let mut out = Shape::default();
        add(set, &mut out);
        out
    }
}

/// The size of a spread of `root` (1, and its fragment expanded), depth
/// first on a stack of our own.
fn spread_size<'d>(
    root: &'d str,
    at: Pos,
    shapes: &HashMap<&'d str, Shape<'d>>,
    memo: &mut HashMap<&'d str, u64>,
) -> Result<u64, Box<GraphQLError>> {
    let refuse = |message: String, at: Pos| {
        let mut error = GraphQLError::new(message, ErrorCode::GraphqlValidationFailed);
        error.locations = vec![Location::from(at)];
        Box::new(error)
    };
    let open = |name: &'d str, at: Pos| {
        shapes
            .get(name)
            .map(|shape| (name, 0usize, 1u64.saturating_add(shape.fields)))
            .ok_or_else(|| refuse(format!("Unknown fragment: \"{name}\""), at))
    };
    if let Some(size) = memo.get(root) {
        return Ok(*size);
    }
    // (fragment, its next spread to visit, its size so far)
    let mut stack = vec![open(root, at)?];
    let mut on_stack: HashSet<&str> = HashSet::from([root]);
    while let Some((name, next, size)) = stack.last_mut() {
        let spread = shapes.get(*name).and_then(|shape| shape.spreads.get(*next));
        if let Some(&(child, at)) = spread {
            *next += 1;
            if let Some(known) = memo.get(child) {
                *size = size.saturating_add(*known);
            } else if !on_stack.insert(child) {
                return Err(refuse(format!("Cannot spread fragment \"{child}\""), at));
            } else {
                stack.push(open(child, at)?);
            }
            continue;
        }
        let (name, _, size) = (*name, *next, *size);
        stack.pop();
        on_stack.remove(name);
        memo.insert(name, size);
        match stack.last_mut() {
            Some((_, _, parent)) => *parent = parent.saturating_add(size),
            None => return Ok(size),
        }
    }
    Ok(0)
}

fn cache_key(query: &str, operation_name: Option<&str>) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(query.as_bytes());
    hasher.update(&[0]);
    hasher.update(operation_name.unwrap_or_default().as_bytes());
    hasher.digest()
}

/// The plan of an operation as a request would prepare it (parsed, within
/// the limits, validated), for any variables: what `tessera plan` prints.
pub async fn plan_operation(
    schema: &Supergraph,
    query: &str,
    operation_name: Option<&str>,
    limits: &Limits,
) -> Result<plan::QueryPlan, Vec<GraphQLError>> {
    Ok(prepare(schema, query, operation_name, None, limits).await?.plan)
}

/// `variables`: the request's, checked once the document is; `None` when
/// there is no request (the document alone is checked).
async fn prepare(
    schema: &Supergraph,
    query: &str,
    operation_name: Option<&str>,
    variables: Option<&Map<String, Value>>,
    limits: &Limits,
) -> Result<Prepared, Vec<GraphQLError>> {
    limits::check_tokens(query, limits).map_err(|e| vec![*e])?;
    let doc = async_graphql::parser::parse_query(query).map_err(|e| {
        use async_graphql::parser::Error;
        let locations = e.positions().map(Location::from).collect();
        // The parser also applies three validation rules (§5.1.1.1,
        // §5.1.2.1, §5.5.1.1): what they refuse parses.
        let mut error = match e {
            Error::MultipleOperations { .. }
            | Error::OperationDuplicated { .. }
            | Error::FragmentDuplicated { .. }
            | Error::MissingOperation => GraphQLError::new(e.to_string(), ErrorCode::GraphqlValidationFailed),
            _ => GraphQLError::new(format!("syntax error: {e}"), ErrorCode::GraphqlParseFailed),
        };
        error.locations = locations;
        vec![error]
    })?;

    let expanded = expanded_size(&doc).map_err(|e| vec![*e])?;
    if expanded > MAX_EXPANDED_FIELDS {
        return Err(vec![GraphQLError::new(
            format!(
                "the operation selects {expanded} fields once its fragments are expanded; at most {MAX_EXPANDED_FIELDS} are allowed"
            ),
            ErrorCode::GraphqlValidationFailed,
        )]);
    }

    let cost = limits::check_document(schema, &doc, operation_name, limits).map_err(|e| vec![*e])?;
    super::values::check_variable_definitions(schema, &doc)?;

    // The validator is given the variables as the gateway coerces them on
    // every request (`2.0` is the Int 2, a u64 is an ID), so that a request
    // is answered the same whether its plan was cached or not. Variables
    // that do not coerce are reported after the document's own errors
    // (validation and planning come first, spec §6.1); the validator
    // checks the document alone then.
    let coerced = variables.and_then(|v| coerce_for_validation(schema, &doc, operation_name, v));
    let mut request = async_graphql::Request::new(query).variables(match (&coerced, variables) {
        (Some(Ok(values)), _) => values.clone(),
        (Some(Err(_)), _) | (None, None) => Variables::default(),
        (None, Some(variables)) => Variables::from_json(Value::Object(variables.clone())),
    });
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    request.set_parsed_query(doc.clone());
    let response = schema.validator().execute(request).await;
    let errors = without_narrowing_artifacts(without_typename_usages(response.errors, &doc), schema);
    if !errors.is_empty() {
        return Err(validation_errors(errors));
    }

    super::values::check(schema, &doc)?;
    super::merge::check(schema, &doc)?;

    let mut plan = plan::plan(schema, &doc, operation_name).map_err(|e| vec![plan_error(&e)])?;
    // The document is plannable; now its variables (their errors are the
    // request's, and the same on a cached plan).
    if let Some(Err(errors)) = coerced {
        return Err(errors);
    }
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

/// The request's variables coerced to the types the operation
/// `operation_name` declares; `None` when there is no such operation (the
/// validator and the planner say why).
fn coerce_for_validation(
    schema: &Supergraph,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Map<String, Value>,
) -> Option<Result<Variables, Vec<GraphQLError>>> {
    let mut operations = doc.operations.iter();
    let operation = match operation_name {
        Some(wanted) => operations.find(|(name, _)| name.is_some_and(|n| n.as_str() == wanted)),
        None => operations.next().filter(|_| doc.operations.iter().count() == 1),
    }?;
    let definitions: Vec<plan::VariableDef> = operation
        .1
        .node
        .variable_definitions
        .iter()
        .map(|v| plan::VariableDef {
            name: v.node.name.node.clone(),
            ty: v.node.var_type.node.clone(),
            default: v.node.default_value.as_ref().map(|d| d.node.clone()),
            non_null_usage: false,
        })
        .collect();
    Some(
        crate::exec::coerce_variables(schema, &definitions, variables).map(|values| {
            let object = values.into_iter().collect();
            Variables::from_value(async_graphql::Value::Object(object))
        }),
    )
}

/// The validator's errors but one: async-graphql does not see
/// `__typename`'s directives, and calls a variable used only there unused.
fn without_typename_usages(errors: Vec<ServerError>, doc: &ExecutableDocument) -> Vec<ServerError> {
    let typename_variables = super::values::typename_variables(doc);
    errors
        .into_iter()
        .filter(|e| {
            !typename_variables.iter().any(|v| {
                let unused = format!("Variable \"${v}\" is not used");
                e.message == unused || e.message.starts_with(&format!("{unused} by operation"))
            })
        })
        .collect()
}

/// The validator's schema leaves out an object's `implements` edge where
/// the object narrows a field's type (`samePriceProduct: Book` for the
/// interface's `Product`; async-graphql's schema check wants them equal,
/// see `schema/validation_schema.rs`). A fragment on that object inside the
/// interface is then reported as one that can never apply. The schema
/// knows the edge: such a report stands only when the two types share no
/// possible type.
fn without_narrowing_artifacts(errors: Vec<ServerError>, schema: &Supergraph) -> Vec<ServerError> {
    let overlap = |parent: &str, fragment: &str| {
        let fragment_types = schema.possible_types(fragment);
        schema
            .possible_types(parent)
            .iter()
            .any(|t| fragment_types.contains(t))
    };
    errors
        .into_iter()
        .filter(|e| !spread_types(&e.message).is_some_and(|(parent, fragment)| overlap(parent, fragment)))
        .collect()
}

/// The two types of the validator's "cannot be spread here" message.
fn spread_types(message: &str) -> Option<(&str, &str)> {
    let (_, rest) = message.split_once("cannot be spread here as objects of type \"")?;
    let (parent, rest) = rest.split_once('"')?;
    let fragment = rest.strip_prefix(" can never be of type \"")?.strip_suffix('"')?;
    Some((parent, fragment))
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
