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
pub mod readmodel;
pub mod schema;
pub mod search;
pub mod sync;
pub mod telemetry;

use std::collections::HashMap;
use std::sync::Arc;

use config::Config;
use exec::{Endpoint, Executor, HttpFetcher};
use pipeline::{Gateway, GatewayOptions};
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
    #[error("cannot open the search index: {0}")]
    Search(#[from] search::SearchError),
    #[error("the synchronizer cannot start: {0}")]
    Sync(#[from] sync::SyncError),
}

pub fn format_schema_errors(file: &str, errors: &[SchemaError]) -> String {
    errors
        .iter()
        .map(|e| format!("{file}:{e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds a gateway for `schema_sdl` with the subgraph endpoints of
/// `config`, without search indexes (`@search` fields fail with
/// `SEARCH_UNAVAILABLE`); [`build`] adds them.
pub fn build_gateway(config: &Config, schema_sdl: &str) -> Result<Gateway, StartError> {
    let executor = executor(config, schema_sdl)?;
    Ok(Gateway::new(
        Arc::new(executor),
        GatewayOptions::from_config(config),
    ))
}

/// A gateway with its search indexes and their synchronizer.
pub struct Tessera {
    pub gateway: Arc<Gateway>,
    pub syncer: Arc<sync::Syncer>,
    pub backend: Arc<dyn search::SearchBackend>,
    /// Changed rows to apply at once (the services' change events); the
    /// search fields report hits whose entity is gone here too.
    pub changes: tokio::sync::mpsc::Sender<sync::Change>,
}

/// Changes waiting to be applied before a sender must wait (or, for read
/// repairs, drop one: the next sync pass catches it).
const CHANGE_QUEUE: usize = 10_000;

/// Builds the gateway, opens the search backend (tantivy in
/// `search.data_dir` or in memory, or an OpenSearch client) and wires
/// read-your-writes.
pub fn build(config: &Config, schema_sdl: &str) -> Result<Tessera, StartError> {
    build_with_backend(config, schema_sdl, search_backend(config)?)
}

/// The search backend `config` names. An OpenSearch client connects lazily:
/// see [`Tessera::check_indexes`].
pub fn search_backend(config: &Config) -> Result<Arc<dyn search::SearchBackend>, StartError> {
    Ok(match config.search.backend {
        config::BackendName::OpenSearch => {
            let os = &config.search.opensearch;
            Arc::new(search::OpenSearchBackend::new(search::OpenSearchOptions {
                url: os.url.clone(),
                index_prefix: os.index_prefix.clone(),
                username: os.username.clone(),
                password: os.password.clone(),
                timeout: os.timeout,
                shards: os.shards,
                replicas: os.replicas,
            })?)
        }
        config::BackendName::Tantivy if config.search.in_memory => {
            Arc::new(search::TantivyBackend::in_memory())
        }
        config::BackendName::Tantivy => {
            std::fs::create_dir_all(&config.search.data_dir).map_err(|e| search::SearchError::Backend {
                index: config.search.data_dir.display().to_string(),
                message: e.to_string(),
            })?;
            Arc::new(search::TantivyBackend::open(&config.search.data_dir)?)
        }
    })
}

/// [`build`] with a given search backend.
pub fn build_with_backend(
    config: &Config,
    schema_sdl: &str,
    backend: Arc<dyn search::SearchBackend>,
) -> Result<Tessera, StartError> {
    let executor = executor(config, schema_sdl)?;
    let mut strategies = HashMap::new();
    for (field, strategy) in &config.search.strategies {
        let query = executor.schema().query_type().clone();
        let index = match executor.schema().field(&query, field).map(|f| &f.resolver) {
            Some(schema::Resolver::Search { index, .. }) => index.clone(),
            _ => {
                return Err(config::ConfigError::Invalid {
                    key: format!("search.strategies.{field}"),
                    message: format!("{query}.{field} is not a @search field of schema.graphql"),
                }
                .into())
            }
        };
        let strategy = match strategy {
            config::StrategyName::Index => exec::Strategy::Index,
            config::StrategyName::Merge => {
                let def = executor.schema().index(&index);
                if let Some(missing) = def.and_then(|d| d.sources.iter().find(|s| s.merge.is_none())) {
                    return Err(config::ConfigError::Invalid {
                        key: format!("search.strategies.{field}"),
                        message: format!(
                            "\"merge\" needs @mergeSource on every document type of index `{index}`; {} has none",
                            missing.doc_type
                        ),
                    }
                    .into());
                }
                exec::Strategy::Merge
            }
        };
        strategies.insert(field.clone(), strategy);
    }
    let (changes, pending) = tokio::sync::mpsc::channel(CHANGE_QUEUE);
    let context = Arc::new(
        exec::SearchContext::new(
            Arc::clone(&backend),
            config.search.cursor_secret.as_bytes(),
            strategies,
        )
        .with_repairs(changes.clone()),
    );
    let executor = Arc::new(executor.with_search(context));
    let syncer = Arc::new(sync::Syncer::new(
        Arc::clone(&executor),
        Arc::clone(&backend),
        sync::SyncOptions {
            overlap: config.sync.overlap,
            ..sync::SyncOptions::default()
        },
    )?);
    let executor_schema = &Arc::clone(executor.schema());
    let mut gateway = Gateway::new(executor, GatewayOptions::from_config(config));
    if config.sync.read_your_writes {
        gateway = gateway.with_freshness(Arc::new(sync::Freshness::new(
            Arc::clone(executor_schema),
            Arc::clone(&backend),
            config.sync.read_your_writes_timeout,
            Some(changes.clone()),
        )));
    }
    // Outside a runtime (a synchronous caller) nothing can follow; the
    // periodic passes of `Syncer::run` still do.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(Arc::clone(&syncer).follow(pending));
    }
    Ok(Tessera {
        gateway: Arc::new(gateway),
        syncer,
        backend,
        changes,
    })
}

fn executor(config: &Config, schema_sdl: &str) -> Result<Executor, StartError> {
    let schema = Arc::new(Supergraph::parse(schema_sdl).map_err(StartError::Schema)?);
    let mut config = config.clone();
    config.declare_subgraphs(schema.declared_urls())?;
    config.check_subgraphs(schema.subgraphs())?;
    let fetcher: Arc<dyn exec::Fetcher> = Arc::new(HttpFetcher::with_traffic(
        endpoints(&config),
        config.traffic.clone(),
    ));
    Ok(Executor::new(schema, fetcher, config.execution.max_batch_size))
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
    let mut config = config.clone();
    config.declare_subgraphs(schema.declared_urls())?;
    let endpoints = endpoints(&config);
    let fetcher = HttpFetcher::new(endpoints);
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
                    mutation: false,
                },
            )
            .await;
            let parsed = match response {
                Err(e) => Err(e.to_string()),
                Ok(r) => match r.data {
                    Some(data) => SubgraphSchema::from_introspection(&data.node().to_value()),
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

/// Serves the gateway with default HTTP options (tests, embedding) on
/// `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_app(listener, http::App::new(gateway), shutdown).await
}

/// Answers on `listener` while the gateway starts (its indexes open or
/// build, which can take minutes): `/health` says the process is alive
/// (200, as a liveness probe wants), everything else is 503
/// `SERVICE_UNAVAILABLE`-shaped GraphQL ("starting"); every answer closes
/// its connection, so no client stays on this server. Returns the listener
/// once `started` resolves, for [`serve_app`].
pub async fn serve_starting(
    listener: tokio::net::TcpListener,
    started: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::net::TcpListener> {
    use axum::http::header::{CONNECTION, CONTENT_TYPE};
    use axum::http::StatusCode;
    let close = [(CONNECTION, "close")];
    let router = axum::Router::new()
        .route(
            "/health",
            axum::routing::get(move || async move { (close, "ok") }),
        )
        .fallback(move || async move {
            let body = serde_json::json!({"errors": [{
                "message": "the gateway is starting (its indexes are being opened or built)",
                "extensions": {"code": "SERVICE_UNAVAILABLE"}
            }]});
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(CONNECTION, "close"), (CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
        });
    let listener = std::sync::Arc::new(listener);
    let accepting = std::sync::Arc::clone(&listener);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let mut stopped = stopped;
        loop {
            let stream = tokio::select! {
                accepted = accepting.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut stopped => break,
            };
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    started.await;
    let _ = stop.send(());
    let _ = server.await;
    std::sync::Arc::try_unwrap(listener)
        .map_err(|_| std::io::Error::other("the start-up server still holds the listener"))
}

/// How long a client may take to send a request's headers (Apollo Router's
/// `header_read_timeout`; less when the request timeout is shorter): a
/// connection that trickles them in is closed.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `app` until `shutdown` resolves, then stops accepting and lets
/// the requests in flight finish: for at most the request timeout and a few
/// seconds more, so a client that never finishes sending cannot hold the
/// process up (bodies have the request timeout to arrive, headers
/// [`HEADER_READ_TIMEOUT`]).
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: http::App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let drain = app.options.request_timeout + std::time::Duration::from_secs(5);
    let header_read_timeout = HEADER_READ_TIMEOUT.min(app.options.request_timeout);
    let router = http::router(app);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait, do not spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(drain) => {
            tracing::warn!(?drain, "connections still open after the drain; closing them");
        }
    }
    Ok(())
}

/// The HTTP application of `tessera` as `config` describes it: limits,
/// security, `/ready` over its subgraphs and indexes, `/metrics`.
pub fn app(config: &Config, tessera: &Tessera) -> Result<http::App, StartError> {
    // Readiness asks once: no retries, no breaker, nothing shared.
    let probe = exec::Traffic {
        retries: 0,
        breaker_failures: 0,
        deduplicate: false,
        ..exec::Traffic::default()
    };
    // The subgraphs the schema uses, where it says they are (a supergraph's
    // `@join__graph(url:)`, unless the configuration names them): not the
    // nine demo services a configuration without `[subgraphs]` defaults to.
    let schema = tessera.gateway.schema();
    let mut declared = config.clone();
    declared.declare_subgraphs(schema.declared_urls())?;
    let readiness = Readiness {
        fetcher: HttpFetcher::with_traffic(endpoints(&declared), probe),
        subgraphs: schema.subgraphs().iter().cloned().collect(),
        backend: Some(Arc::clone(&tessera.backend)),
        indexes: tessera.syncer.index_names(),
        budget: config.server.readiness_timeout,
    };
    Ok(http::App {
        gateway: Arc::clone(&tessera.gateway),
        options: Arc::new(http::HttpOptions::from_config(config)),
        readiness: Some(Arc::new(readiness)),
        telemetry: Arc::new(telemetry::Telemetry::new(
            config.telemetry.metrics,
            Some(Arc::clone(&tessera.syncer)),
        )),
    })
}

/// `/ready`: every subgraph answers `{ __typename }` and every index
/// resolves, within the budget.
struct Readiness {
    fetcher: HttpFetcher,
    subgraphs: Vec<String>,
    backend: Option<Arc<dyn search::SearchBackend>>,
    indexes: Vec<String>,
    budget: std::time::Duration,
}

impl http::Readiness for Readiness {
    fn check(&self) -> futures::future::BoxFuture<'_, Result<(), Vec<String>>> {
        Box::pin(async move {
            let headers = reqwest::header::HeaderMap::new();
            let subgraphs = self.subgraphs.iter().map(|name| {
                let headers = &headers;
                async move {
                    let request = exec::SubgraphRequest {
                        subgraph: name,
                        query: "{__typename}",
                        variables: serde_json::Map::new(),
                        headers,
                        mutation: false,
                    };
                    match tokio::time::timeout(self.budget, exec::Fetcher::fetch(&self.fetcher, request))
                        .await
                    {
                        Ok(Ok(_)) => None,
                        Ok(Err(e)) => Some(format!("subgraph {name}: {}", e.client_message())),
                        Err(_) => Some(format!(
                            "subgraph {name}: no answer within {}",
                            humantime::format_duration(self.budget)
                        )),
                    }
                }
            });
            let indexes = self.indexes.iter().map(|index| async move {
                let backend = self.backend.as_ref()?;
                // Its checkpoint, not only its alias: an index whose first
                // backfill has not finished answers nothing yet.
                match tokio::time::timeout(self.budget, backend.checkpoint(index)).await {
                    Ok(Ok(stored)) if sync::Checkpoint::is_built(stored.as_deref()) => None,
                    Ok(Ok(_)) => Some(format!(
                        "index {index}: not built yet (its backfill has not finished)"
                    )),
                    Ok(Err(e)) => Some(format!("index {index}: {e}")),
                    Err(_) => Some(format!(
                        "index {index}: no answer within {}",
                        humantime::format_duration(self.budget)
                    )),
                }
            });
            let (subgraphs, indexes) = futures::future::join(
                futures::future::join_all(subgraphs),
                futures::future::join_all(indexes),
            )
            .await;
            let reasons: Vec<String> = subgraphs.into_iter().chain(indexes).flatten().collect();
            if reasons.is_empty() {
                Ok(())
            } else {
                Err(reasons)
            }
        })
    }
}
