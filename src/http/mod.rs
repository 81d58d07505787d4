//! HTTP: `POST /graphql`, `GET /graphql` (query string, or the GraphiQL
//! playground for a browser), `/health`. Turns bytes into a
//! [`GraphQLRequest`] and the pipeline's answer back into a response; knows
//! nothing of plans or subgraphs.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::exec::GraphQLError;
use crate::pipeline::{Gateway, GraphQLRequest, GraphQLResponse, Method, RequestOptions};

/// Request header that asks for the query plan in `extensions.queryPlan`.
pub const INCLUDE_PLAN_HEADER: &str = "tessera-include-plan";

/// The playground's example operations: (tab title, query).
pub const EXAMPLES: &[&str] = &[
    include_str!("examples/contract_search.graphql"),
    include_str!("examples/feed.graphql"),
    include_str!("examples/contracts_page.graphql"),
    include_str!("examples/contract_detail.graphql"),
    include_str!("examples/member_overview.graphql"),
    include_str!("examples/posts_and_products.graphql"),
];

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/health", get(health))
        .with_state(gateway)
}

async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "UP" }))
}

async fn graphql_post(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    // GraphQL over HTTP: the body is JSON. Refusing form and text bodies also
    // stops cross-site "simple" POSTs (no CORS preflight) from running
    // mutations, as Apollo Router's CSRF protection does.
    if let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && essence != "application/graphql-response+json" {
            return respond(GraphQLResponse::request_error(
                415,
                &[GraphQLError::new(
                    format!("POST bodies must be `Content-Type: application/json`, not `{content_type}`"),
                    "UNSUPPORTED_MEDIA_TYPE",
                )],
            ));
        }
    }
    let request: GraphQLRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return respond(GraphQLResponse::request_error(
                400,
                &[GraphQLError::new(
                    format!("the request body is not a GraphQL JSON request: {e}"),
                    "BAD_REQUEST",
                )],
            ))
        }
    };
    let options = options(&headers);
    respond(gateway.handle(request, Method::Post, &headers, options).await)
}

async fn graphql_get(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let wants_html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html && !params.contains_key("query") {
        return Html(playground()).into_response();
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
                    return respond(GraphQLResponse::request_error(
                        400,
                        &[GraphQLError::new(
                            format!("`{name}` is not valid JSON: {e}"),
                            "BAD_REQUEST",
                        )],
                    ))
                }
            }
        }
    }
    let options = options(&headers);
    respond(gateway.handle(request, Method::Get, &headers, options).await)
}

fn options(headers: &HeaderMap) -> RequestOptions {
    RequestOptions {
        include_plan: headers
            .get(INCLUDE_PLAN_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
    }
}

fn respond(response: GraphQLResponse) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (status, response.body).into_response();
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
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

fn playground() -> String {
    let tabs: Vec<serde_json::Value> = EXAMPLES
        .iter()
        .map(|q| serde_json::json!({ "query": q }))
        .collect();
    // `</` cannot appear inside the inline script.
    let examples = serde_json::to_string(&tabs)
        .unwrap_or_else(|_| "[]".into())
        .replace("</", "<\\/");
    include_str!("playground.html")
        .replace("__TESSERA_EXAMPLES__", &examples)
        .replace("__TESSERA_ENDPOINT__", "/graphql")
}
