//! Everything a client's bytes reach before a subgraph is asked: the HTTP
//! body as a GraphQL request, the limits (tokens, depth, aliases, cost),
//! parsing, validation, planning, variable coercion, and cursor decoding
//! (with a valid seal, so the decoder behind the MAC is reached too).
//! Any panic is a bug: every input must end in a value or a GraphQL error.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tessera::pipeline::{GraphQLRequest, Limits, PlanCache};
use tessera::schema::Supergraph;
use tessera::search::{CursorCodec, Page, SearchQuery, SortKey};

fn schema() -> &'static Supergraph {
    static SCHEMA: OnceLock<Supergraph> = OnceLock::new();
    SCHEMA.get_or_init(|| Supergraph::parse(include_str!("../../schema.graphql")).expect("the schema parses"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 4 == 0 {
        // A cursor body sealed with the right key: the decoder must refuse
        // garbage with an error, never panic.
        let codec = CursorCodec::new(b"fuzz");
        let cursor = codec.seal_raw(rest);
        let query = SearchQuery {
            filters: Vec::new(),
            sort: vec![SortKey::desc("amount")],
            page: Page::After {
                first: 10,
                after: None,
            },
            count: false,
        };
        let _ = codec.decode(&cursor, "contracts", &query);
        return;
    }
    let request: GraphQLRequest = match serde_json::from_slice(rest) {
        Ok(r) => r,
        // Or the bytes are the query text itself.
        Err(_) => GraphQLRequest {
            query: std::str::from_utf8(rest).ok().map(str::to_string),
            ..GraphQLRequest::default()
        },
    };
    let Some(query) = request.query.as_deref() else {
        return;
    };
    let variables = match request.variables {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let cache = PlanCache::new(0);
    let limits = Limits::default();
    let prepared = futures::executor::block_on(cache.prepare_cached(
        schema(),
        query,
        request.operation_name.as_deref(),
        &variables,
        &limits,
    ));
    if let Ok(prepared) = prepared {
        if let Ok(coerced) = tessera::exec::coerce_variables(schema(), &prepared.plan.variables, &variables) {
            let _ = prepared.cost.estimate(&coerced);
        }
        let _ = prepared.plan.to_string();
    }
});
