//! Tessera: one GraphQL endpoint in front of legacy GraphQL services.
//!
//! Data flows one way: `http → pipeline → plan → exec → subgraphs`.
//! `schema` is read by everyone and depends on no one. See
//! `docs/architecture.md` for the module map.

pub mod config;
pub mod exec;
pub mod http;
pub mod pipeline;
pub mod plan;
pub mod schema;
pub mod search;

use std::collections::HashMap;
use std::sync::Arc;

use config::Config;
use exec::{Endpoint, Executor, HttpFetcher};
use pipeline::Gateway;
use schema::{SchemaError, Supergraph};

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("schema.graphql has {} problem(s):\n{}", .0.len(), format_schema_errors("schema.graphql", .0))]
    Schema(Vec<SchemaError>),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot create the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

pub fn format_schema_errors(file: &str, errors: &[SchemaError]) -> String {
    errors
        .iter()
        .map(|e| format!("{file}:{e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds a gateway for `schema_sdl` with the subgraph endpoints of `config`.
pub fn build_gateway(config: &Config, schema_sdl: &str) -> Result<Gateway, StartError> {
    let schema = Arc::new(Supergraph::parse(schema_sdl).map_err(StartError::Schema)?);
    config.check_subgraphs(schema.subgraphs())?;
    let fetcher: Arc<dyn exec::Fetcher> = Arc::new(HttpFetcher::new(endpoints(config))?);
    let executor = Executor::new(schema, fetcher, config.execution.max_batch_size);
    let forward = config
        .execution
        .forward_headers
        .iter()
        .filter_map(|h| reqwest::header::HeaderName::from_bytes(h.as_bytes()).ok())
        .collect();
    Ok(Gateway::new(executor, config.execution.plan_cache_size, forward))
}

/// What `tessera check` found: schema mismatches, and subgraphs that could
/// not be introspected (and so were not checked).
#[derive(Debug, Default)]
pub struct CheckReport {
    pub errors: Vec<SchemaError>,
    pub unreachable: Vec<(String, String)>,
}

/// Introspects every subgraph the schema names and compares.
pub async fn check_subgraphs(config: &Config, schema: &Supergraph) -> Result<CheckReport, StartError> {
    use schema::check::{SubgraphSchema, INTROSPECTION_QUERY};
    let endpoints = endpoints(config);
    let fetcher = HttpFetcher::new(endpoints)?;
    let headers = reqwest::header::HeaderMap::new();
    let mut report = CheckReport::default();
    let requests = schema.subgraphs().iter().map(|name| {
        let fetcher = &fetcher;
        let headers = &headers;
        async move {
            let response = exec::Fetcher::fetch(
                fetcher,
                exec::SubgraphRequest {
                    subgraph: name,
                    query: INTROSPECTION_QUERY,
                    variables: serde_json::Map::new(),
                    headers,
                },
            )
            .await;
            let parsed = match response {
                Err(e) => Err(e.to_string()),
                Ok(r) => match r.data {
                    Some(data) => SubgraphSchema::from_introspection(&data),
                    None => Err(r
                        .errors
                        .first()
                        .map(|e| e.message.clone())
                        .unwrap_or_else(|| "no data".into())),
                },
            };
            (name.clone(), parsed)
        }
    });
    let mut subgraphs = HashMap::new();
    for (name, result) in futures::future::join_all(requests).await {
        match result {
            Ok(s) => {
                subgraphs.insert(name, s);
            }
            Err(e) => report.unreachable.push((name, e)),
        }
    }
    report.errors = schema::check::check(schema, &subgraphs);
    Ok(report)
}

fn endpoints(config: &Config) -> HashMap<String, Endpoint> {
    config
        .subgraphs
        .iter()
        .map(|(name, s)| {
            (
                name.clone(),
                Endpoint {
                    url: s.url.clone(),
                    timeout: s.timeout,
                },
            )
        })
        .collect()
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, http::router(gateway))
        .with_graceful_shutdown(shutdown)
        .await
}
