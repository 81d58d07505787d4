//! The GraphiQL playground, whole in the binary: its page, its example tabs,
//! and the pinned GraphiQL and React builds it loads (`graphiql/`), so it
//! works on a machine with no internet.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The playground's example operations, one tab each.
pub const EXAMPLES: &[&str] = &[
    include_str!("examples/contract_search.graphql"),
    include_str!("examples/feed.graphql"),
    include_str!("examples/contracts_page.graphql"),
    include_str!("examples/contract_detail.graphql"),
    include_str!("examples/member_overview.graphql"),
    include_str!("examples/posts_and_products.graphql"),
];

/// `(file name, content type, bytes)` served under `/graphiql/`.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("graphiql/react-dom.production.min.js"),
    ),
];

pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (CONTENT_TYPE, *content_type),
                // Pinned versions: the bytes behind a name never change
                // within one gateway build.
                (CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such playground file").into_response(),
    }
}

/// The playground page, its tabs filled with [`EXAMPLES`].
pub fn playground_html() -> String {
    let tabs: Vec<serde_json::Value> = EXAMPLES
        .iter()
        .map(|q| serde_json::json!({ "query": q }))
        .collect();
    // `</` cannot appear inside the inline script.
    let examples = serde_json::to_string(&tabs)
        .unwrap_or_else(|_| "[]".into())
        .replace("</", "<\\/");
    include_str!("graphiql/index.html")
        .replace("__TESSERA_EXAMPLES__", &examples)
        .replace("__TESSERA_ENDPOINT__", "/graphql")
}
