//! The GraphQL plumbing every service shares: the `/graphql` endpoint (POST runs
//! operations, GET serves GraphiQL), the hooks resolvers use to count themselves
//! in `/stats`, and the argument checks and error type behind "bad input is a
//! GraphQL error, never a panic".
//!
//! Counting happens in resolvers rather than in an async-graphql extension on
//! purpose: any registered extension sends *every* field of every row through
//! the slow resolution path, which would tax the large lists the gateway reads.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::{Context, ErrorExtensions, Executor, ID};
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::extract::State;
use axum::handler::Handler;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use parking_lot::Mutex;

use crate::faults::{gate, FaultGate};
use crate::stats::Stats;

/// Bad arguments: answered as GraphQL errors with `extensions.code = "BAD_USER_INPUT"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("`{arg}` must be between {min} and {max}, got {given}")]
    OutOfRange {
        arg: &'static str,
        min: i64,
        max: i64,
        given: i64,
    },
    #[error("`{arg}`: {given:?} is not a valid {expected}")]
    BadId {
        arg: &'static str,
        given: String,
        expected: &'static str,
    },
    #[error("`{arg}`: {reason}")]
    Invalid { arg: &'static str, reason: String },
}

impl InputError {
    pub fn invalid(arg: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            arg,
            reason: reason.into(),
        }
    }
}

impl ErrorExtensions for InputError {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| ext.set("code", "BAD_USER_INPUT"))
    }
}

/// Resolver result type.
pub type GqlResult<T> = async_graphql::Result<T>;

/// Lifts an [`InputError`] into a GraphQL error.
pub fn bad(error: InputError) -> async_graphql::Error {
    error.extend()
}

/// Counts one call of the current root field asking for `keys` ids.
pub fn count(ctx: &Context<'_>, keys: usize) {
    if let Ok(stats) = ctx.data::<Arc<Stats>>() {
        stats.count_field(ctx.field().name(), keys as u64);
    }
}

/// Marks which `_entities` fields of one request have been counted: async-graphql
/// calls the entity resolver once per representation, so the first call per field
/// position is the field's one call.
#[derive(Debug, Default)]
pub struct EntityCalls(Mutex<HashSet<(usize, usize)>>);

/// Counts one representation of `_entities` (and the field's call, once).
pub fn count_entity(ctx: &Context<'_>) {
    let Ok(stats) = ctx.data::<Arc<Stats>>() else {
        return;
    };
    let pos = ctx.item.pos;
    let first = ctx
        .data::<Arc<EntityCalls>>()
        .is_ok_and(|calls| calls.0.lock().insert((pos.line, pos.column)));
    if first {
        stats.count_field("_entities", 1);
    } else {
        stats.count_keys("_entities", 1);
    }
}

/// Checks an `Int` argument against `min..=max`.
pub fn in_range(arg: &'static str, value: i32, min: i32, max: i32) -> GqlResult<usize> {
    if value < min || value > max {
        return Err(bad(InputError::OutOfRange {
            arg,
            min: i64::from(min),
            max: i64::from(max),
            given: i64::from(value),
        }));
    }
    Ok(usize::try_from(value).unwrap_or(0))
}

/// A non-negative offset (`offset`, `skip`).
pub fn offset(arg: &'static str, value: Option<i32>) -> GqlResult<usize> {
    in_range(arg, value.unwrap_or(0), 0, i32::MAX)
}

/// A page size: `default` when absent or null, at most `max`.
pub fn limit(arg: &'static str, value: Option<i32>, default: i32, max: i32) -> GqlResult<usize> {
    in_range(arg, value.unwrap_or(default), 0, max)
}

/// A positive `Int` foreign key or id argument.
pub fn positive(arg: &'static str, value: i32) -> GqlResult<i64> {
    if value < 1 {
        return Err(bad(InputError::invalid(
            arg,
            format!("must be a positive id, got {value}"),
        )));
    }
    Ok(i64::from(value))
}

/// The primary key inside a numeric `ID` (`"42"`).
pub fn numeric_id(arg: &'static str, id: &ID) -> GqlResult<i64> {
    parse_numeric(id.as_str()).ok_or_else(|| {
        bad(InputError::BadId {
            arg,
            given: id.to_string(),
            expected: "numeric ID",
        })
    })
}

/// `Some(pk)` for a decimal string of a positive key.
pub fn parse_numeric(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|pk| *pk > 0)
}

/// A stored key as a GraphQL `Int`. Keys are dense from 1, so they stay far below
/// `i32::MAX` at any scale that fits in memory.
pub fn int(pk: i64) -> i32 {
    i32::try_from(pk).unwrap_or(i32::MAX)
}

/// A non-empty text argument (trimmed).
pub fn required_text(arg: &'static str, value: &str) -> GqlResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(bad(InputError::invalid(arg, "must not be empty")));
    }
    Ok(trimmed.to_string())
}

/// Overwrites `slot` when a patch carries a value.
pub fn assign<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// The `/graphql` routes for one schema, behind the stats-and-faults gate.
/// `track_entities` gives each request the bookkeeping `_entities` counting needs.
pub fn endpoint<E: Executor>(
    schema: E,
    stats: Arc<Stats>,
    gate_state: FaultGate,
    track_entities: bool,
) -> Router {
    let state = Endpoint {
        schema,
        stats,
        track_entities,
    };
    let execute = execute::<E>.layer(axum::middleware::from_fn_with_state(gate_state, gate));
    Router::new()
        .route("/graphql", get(graphiql).post(execute))
        .with_state(state)
}

#[derive(Clone)]
struct Endpoint<E> {
    schema: E,
    stats: Arc<Stats>,
    track_entities: bool,
}

async fn execute<E: Executor>(
    State(endpoint): State<Endpoint<E>>,
    request: GraphQLBatchRequest,
) -> GraphQLResponse {
    let mut batch = request.into_inner();
    endpoint.stats.count_operations(batch.iter().count() as u64);
    for request in batch.iter_mut() {
        request.data.insert(endpoint.stats.clone());
        if endpoint.track_entities {
            request.data.insert(Arc::new(EntityCalls::default()));
        }
    }
    endpoint.schema.execute_batch(batch).await.into()
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_checks() {
        assert_eq!(limit("first", None, 20, 1000).ok(), Some(20));
        assert!(limit("first", Some(1001), 20, 1000).is_err());
        assert!(offset("skip", Some(-1)).is_err());
        assert_eq!(parse_numeric("42"), Some(42));
        for bad in ["", "-1", "0", "4x", " 4", "99999999999999999999"] {
            assert_eq!(parse_numeric(bad), None, "{bad:?}");
        }
        let error = limit("limit", Some(5000), 100, 1000).expect_err("too big");
        assert_eq!(error.message, "`limit` must be between 0 and 1000, got 5000");
        let code = error.extensions.as_ref().and_then(|e| e.get("code")).cloned();
        assert_eq!(code, Some(async_graphql::Value::from("BAD_USER_INPUT")));
    }
}
