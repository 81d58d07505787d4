//! HTTP: `POST /graphql`, `GET /graphql` (query string, or the GraphiQL
//! playground for a browser), `/health`, `/ready`, `/metrics`. Turns bytes
//! into a [`GraphQLRequest`] and the pipeline's answer back into a response;
//! owns what is HTTP's alone (body size, request ids, CSRF, CORS) and knows
//! nothing of plans or subgraphs.

mod playground;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::header::{ACCEPT, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::config::Config;
use crate::exec::{ErrorCode, GraphQLError};
use crate::pipeline::{Gateway, GraphQLRequest, GraphQLResponse, Method, RequestOptions};
use crate::telemetry::Telemetry;

pub use playground::{playground_html, ASSETS, EXAMPLES};

/// Request header that asks for the query plan in `extensions.queryPlan`.
pub const INCLUDE_PLAN_HEADER: &str = "tessera-include-plan";
/// Request header that asks for the estimated cost in `extensions.cost`.
pub const INCLUDE_COST_HEADER: &str = "tessera-include-cost";
/// Names a request in the log and in its errors; taken from the client
/// when it sends a sane one, made up otherwise, always answered.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What the HTTP layer enforces (from `[limits]` and `[security]`).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub max_body_bytes: usize,
    /// The longest a client may take to send its body (and the longest
    /// shutdown waits for requests in flight, beyond a few seconds).
    pub request_timeout: std::time::Duration,
    pub csrf_prevention: bool,
    pub csrf_headers: Vec<HeaderName>,
    pub cors_origins: Vec<String>,
    pub playground: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}

impl HttpOptions {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_body_bytes: config.limits.max_body_bytes,
            request_timeout: config.limits.request_timeout,
            csrf_prevention: config.security.csrf_prevention,
            csrf_headers: config
                .security
                .csrf_headers
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            cors_origins: config.security.cors_origins.clone(),
            playground: config.security.playground,
        }
    }
}

/// Whether the gateway can take traffic: `Ok`, or the reasons it cannot.
pub trait Readiness: Send + Sync {
    fn check(&self) -> futures::future::BoxFuture<'_, Result<(), Vec<String>>>;
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct App {
    pub gateway: Arc<Gateway>,
    pub options: Arc<HttpOptions>,
    pub readiness: Option<Arc<dyn Readiness>>,
    pub telemetry: Arc<Telemetry>,
}

impl App {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self {
            gateway,
            options: Arc::new(HttpOptions::default()),
            readiness: None,
            telemetry: Arc::new(Telemetry::disabled()),
        }
    }
}

pub fn router(app: App) -> Router {
    let cors = cors_layer(&app.options.cors_origins);
    let router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphiql/{file}", get(playground::asset))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(app);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// No origins: no CORS headers, so browsers allow same-origin calls only.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
            .expose_headers([
                HeaderName::from_static(REQUEST_ID_HEADER),
                HeaderName::from_static("server-timing"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Alive: the process answers.
async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "UP" }))
}

/// Ready: the subgraphs answer within the budget and the indexes are open.
async fn ready(State(app): State<App>) -> Response {
    let result = match &app.readiness {
        Some(readiness) => readiness.check().await,
        None => Ok(()),
    };
    match result {
        Ok(()) => Json(serde_json::json!({ "status": "READY" })).into_response(),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "NOT_READY", "reasons": reasons })),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    match app.telemetry.render().await {
        Some(text) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are turned off (telemetry.metrics)",
        )
            .into_response(),
    }
}

/// The client's request id if it is short and plain, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string)
}

/// True if a browser would have sent a CORS preflight before this request
/// (a non-simple content type, or one of the CSRF headers): a cross-site
/// page cannot make it without the server's consent.
fn preflighted(headers: &HeaderMap, csrf_headers: &[HeaderName]) -> bool {
    let simple_type = match headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(t) => {
            let essence = t
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            matches!(
                essence.as_str(),
                "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
            )
        }
    };
    !simple_type || csrf_headers.iter().any(|h| headers.contains_key(h))
}

fn csrf_error() -> GraphQLError {
    GraphQLError::new(
        "this request was blocked as a possible cross-site request forgery: send `Content-Type: application/json` \
         or an `apollo-require-preflight: true` header",
        ErrorCode::CsrfPrevented,
    )
}

async fn graphql_post(State(app): State<App>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let id = request_id(&headers);
    let gateway = &app.gateway;
    let media = response_media_type(&headers);
    let refuse = |error: GraphQLError| respond(gateway.refuse(vec![error], &id), &id, media);
    if app.options.csrf_prevention && !preflighted(&headers, &app.options.csrf_headers) {
        return refuse(csrf_error());
    }
    // GraphQL over HTTP: the body is JSON. Refusing form and text bodies also
    // stops cross-site "simple" POSTs from running mutations.
    // A body without a `Content-Type` is refused too (the spec's SHOULD), and
    // so is a charset other than UTF-8 (the body is read as UTF-8).
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"))
        .unwrap_or_default();
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let utf8 = parts.all(|p| match p.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            matches!(
                value.trim().trim_matches('"').to_ascii_lowercase().as_str(),
                "utf-8" | "utf8"
            )
        }
        _ => true,
    });
    if !(essence == "application/json" || essence == "application/graphql-response+json") || !utf8 {
        let sent = if content_type.is_empty() {
            "none".to_owned()
        } else {
            format!("`{content_type}`")
        };
        return refuse(GraphQLError::new(
            format!("POST bodies must be `Content-Type: application/json` (UTF-8), not {sent}"),
            ErrorCode::UnsupportedMediaType,
        ));
    }
    // Bodies are read as sent: a compressed one would be refused as bad
    // JSON, blaming the wrong thing (RFC 9110 §15.5.16: 415).
    if let Some(encoding) = headers.get(CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or_default().trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return refuse(GraphQLError::new(
                format!("`Content-Encoding: {encoding}` is not supported: send the body uncompressed"),
                ErrorCode::UnsupportedMediaType,
            ));
        }
    }
    let reading = read_body(&headers, body, app.options.max_body_bytes);
    let body = match tokio::time::timeout(app.options.request_timeout, reading).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => return refuse(error),
        Err(_) => {
            return refuse(GraphQLError::new(
                format!(
                    "the request body did not arrive within {:?}",
                    app.options.request_timeout
                ),
                ErrorCode::RequestTimeout,
            ))
        }
    };
    // serde would read an array as the request's fields in order and name
    // the wrong thing; say what the body is instead.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[') => return refuse(GraphQLError::new(
            "batched requests (a JSON array of operations) are not supported: send one operation per request",
            ErrorCode::BadRequest,
        )),
        _ => {
            return refuse(GraphQLError::new(
                "the request body must be a JSON object with a `query`",
                ErrorCode::BadRequest,
            ))
        }
    }
    let request: GraphQLRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(GraphQLError::new(
                format!("the request body is not a GraphQL JSON request: {e}"),
                ErrorCode::BadRequest,
            ))
        }
    };
    execute(&app, request, Method::Post, &headers, id).await
}

/// The body, or `PAYLOAD_TOO_LARGE` as soon as it is known to exceed `max`
/// (from `Content-Length`, or while reading a chunked body).
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<axum::body::Bytes, GraphQLError> {
    let too_large = || {
        GraphQLError::new(
            format!("the request body is larger than {max} bytes"),
            ErrorCode::PayloadTooLarge,
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        // `to_bytes` fails on the limit or on a broken connection.
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else {
            GraphQLError::new(
                format!("the request body could not be read: {e}"),
                ErrorCode::BadRequest,
            )
        }
    })
}

async fn graphql_get(
    State(app): State<App>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    // GraphQL over HTTP: an empty parameter is an absent one; of a repeated
    // one the first counts (as `URLSearchParams.get` reads it, and so a
    // proxy checking it sees what runs).
    let mut params: HashMap<String, String> = HashMap::new();
    for (name, value) in pairs {
        if !value.is_empty() {
            params.entry(name).or_insert(value);
        }
    }
    // A browser names `text/html`; `*/*` alone (curl, fetch) is not one.
    let wants_html = accepted(&headers).names("text/html");
    if wants_html && !params.contains_key("query") && app.options.playground {
        let mut page = Html(playground_html()).into_response();
        page.headers_mut()
            .insert(VARY, HeaderValue::from_static("accept"));
        return page;
    }
    let id = request_id(&headers);
    let media = response_media_type(&headers);
    let refuse = |error: GraphQLError| respond(app.gateway.refuse(vec![error], &id), &id, media);
    if app.options.csrf_prevention && !preflighted(&headers, &app.options.csrf_headers) {
        return refuse(csrf_error());
    }
    let mut request = GraphQLRequest {
        query: params.get("query").cloned(),
        operation_name: params.get("operationName").cloned(),
        ..GraphQLRequest::default()
    };
    for (name, slot) in [
        ("variables", &mut request.variables),
        ("extensions", &mut request.extensions),
    ] {
        if let Some(text) = params.get(name) {
            match serde_json::from_str(text) {
                Ok(v) => *slot = Some(v),
                Err(e) => {
                    return refuse(GraphQLError::new(
                        format!("`{name}` is not valid JSON: {e}"),
                        ErrorCode::BadRequest,
                    ))
                }
            }
        }
    }
    execute(&app, request, Method::Get, &headers, id).await
}

async fn execute(
    app: &App,
    request: GraphQLRequest,
    method: Method,
    headers: &HeaderMap,
    id: String,
) -> Response {
    let flag = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    };
    let options = RequestOptions {
        request_id: id,
        include_plan: flag(INCLUDE_PLAN_HEADER),
        include_cost: flag(INCLUDE_COST_HEADER),
    };
    let operation_name = request.operation_name.clone();
    let span = app
        .telemetry
        .request_span(&options.request_id, operation_name.as_deref(), headers);
    let started = std::time::Instant::now();
    let id = options.request_id.clone();
    let response =
        tracing::Instrument::instrument(app.gateway.handle(request, method, headers, options), span).await;
    app.telemetry
        .record_request(operation_name.as_deref(), &response, started.elapsed());
    respond(response, &id, response_media_type(headers))
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The media ranges of a request's `Accept` headers, with their weights.
struct Accepted<'h>(Vec<(&'h str, f32)>);

fn accepted(headers: &HeaderMap) -> Accepted<'_> {
    let ranges = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next()?.trim();
            // RFC 9110 §12.4.2: `q` (any case), 0 to 1; 1 when absent.
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, value)| value.trim().parse::<f32>().unwrap_or(0.0));
            (!essence.is_empty()).then_some((essence, q.clamp(0.0, 1.0)))
        })
        .collect();
    Accepted(ranges)
}

impl Accepted<'_> {
    /// The weight the client gives `media` (`type/subtype`, lowercase): its
    /// most specific range's (RFC 9110 §12.5.1); 0 when none matches.
    fn quality(&self, media: &str) -> f32 {
        let kind = media.split('/').next().unwrap_or_default();
        let mut best: Option<(u8, f32)> = None;
        for &(range, q) in &self.0 {
            let specificity = if range.eq_ignore_ascii_case(media) {
                2
            } else if range
                .strip_suffix("/*")
                .is_some_and(|k| k.eq_ignore_ascii_case(kind))
            {
                1
            } else if range == "*/*" {
                0
            } else {
                continue;
            };
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, q));
            }
        }
        best.map_or(0.0, |(_, q)| q)
    }

    /// Whether the client names `media` itself, with a weight above 0.
    fn names(&self, media: &str) -> bool {
        self.0
            .iter()
            .any(|&(range, q)| range.eq_ignore_ascii_case(media) && q > 0.0)
    }
}

/// GraphQL over HTTP: the media type the client weighs highest of the two
/// (`application/graphql-response+json` on a tie, and when the client
/// names neither but accepts anything: the status codes are the same
/// either way, 4xx for a request that cannot run, 200 with partial data;
/// but for `PERSISTED_QUERY_NOT_FOUND`, see [`respond`]); `application/json`
/// when there is no `Accept`, or it accepts neither (no 406: the spec lets
/// a server answer in a type the client did not list).
fn response_media_type(headers: &HeaderMap) -> &'static str {
    let accepted = accepted(headers);
    let (response, json) = (
        accepted.quality(GRAPHQL_RESPONSE),
        accepted.quality("application/json"),
    );
    if accepted.names(GRAPHQL_RESPONSE) && response >= json {
        GRAPHQL_RESPONSE
    } else {
        "application/json"
    }
}

fn respond(response: GraphQLResponse, request_id: &str, media_type: &'static str) -> Response {
    let mut status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // GraphQL over HTTP: with `application/graphql-response+json`, a response
    // without `data` is 4xx or 5xx. `PERSISTED_QUERY_NOT_FOUND` is answered 200
    // to `application/json` clients, as Apollo Router does; Apollo Client's
    // persisted-queries link reads the error from a 400's body as well.
    if response.refused && status == StatusCode::OK && media_type == GRAPHQL_RESPONSE {
        status = StatusCode::BAD_REQUEST;
    }
    let mut res = (status, response.body).into_response();
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    // The same request gets another media type (or GraphiQL) with another `Accept`.
    headers.insert(VARY, HeaderValue::from_static("accept"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        // RFC 9110 §15.5.6: a 405 names the methods that would work.
        headers.insert(axum::http::header::ALLOW, HeaderValue::from_static("POST"));
    }
    if let Some((total, subgraphs)) = response.timing {
        // W3C Server-Timing: the gateway's overhead is total minus subgraphs.
        let value = format!(
            "total;dur={:.3}, subgraphs;dur={:.3}",
            total.as_secs_f64() * 1000.0,
            subgraphs.as_secs_f64() * 1000.0
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert("server-timing", v);
        }
    }
    res
}
