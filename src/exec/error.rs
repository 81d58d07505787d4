//! Errors of subgraph fetches, and the GraphQL error shape sent to clients.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// Why a subgraph request produced no usable response. `Clone` because one
/// failure is shared by every key of the batch it was for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("subgraph \"{subgraph}\" is not configured")]
    UnknownSubgraph { subgraph: String },
    #[error("could not reach subgraph \"{subgraph}\": {reason}")]
    Unreachable { subgraph: String, reason: String },
    #[error("subgraph \"{subgraph}\" did not answer within {}", humantime::format_duration(*after))]
    Timeout { subgraph: String, after: Duration },
    #[error("subgraph \"{subgraph}\" answered HTTP {status}")]
    HttpStatus { subgraph: String, status: u16 },
    #[error("subgraph \"{subgraph}\" sent an invalid GraphQL response: {reason}")]
    InvalidResponse { subgraph: String, reason: String },
    /// The subgraph answered with an error about the whole request.
    #[error("{message}")]
    Downstream { subgraph: String, message: String },
    /// An argument the subgraph's types cannot take (a non-numeric `ID`
    /// where it wants `Int`): the client's input, not the subgraph, is wrong.
    #[error("{message}")]
    BadInput { subgraph: String, message: String },
    /// A search field failed: bad arguments (`BAD_USER_INPUT`) or the index.
    #[error("{message}")]
    Search { message: String, code: &'static str },
}

impl FetchError {
    pub fn subgraph(&self) -> &str {
        match self {
            FetchError::UnknownSubgraph { subgraph }
            | FetchError::Unreachable { subgraph, .. }
            | FetchError::Timeout { subgraph, .. }
            | FetchError::HttpStatus { subgraph, .. }
            | FetchError::InvalidResponse { subgraph, .. }
            | FetchError::Downstream { subgraph, .. }
            | FetchError::BadInput { subgraph, .. } => subgraph,
            FetchError::Search { .. } => crate::plan::SEARCH_SUBGRAPH,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            FetchError::UnknownSubgraph { .. } => "INTERNAL_SERVER_ERROR",
            FetchError::Unreachable { .. } | FetchError::HttpStatus { .. } => "SUBGRAPH_REQUEST_FAILED",
            FetchError::Timeout { .. } => "SUBGRAPH_TIMEOUT",
            FetchError::InvalidResponse { .. } => "SUBGRAPH_INVALID_RESPONSE",
            FetchError::Downstream { .. } => "DOWNSTREAM_SERVICE_ERROR",
            FetchError::BadInput { .. } => "BAD_USER_INPUT",
            FetchError::Search { code, .. } => code,
        }
    }
}

/// One segment of a response path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum PathSegment {
    Key(Arc<str>),
    Index(usize),
}

impl fmt::Display for PathSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSegment::Key(k) => f.write_str(k),
            PathSegment::Index(i) => write!(f, "{i}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// A GraphQL error as the spec shapes it, with `extensions.code` always set.
#[derive(Debug, Clone, Serialize)]
pub struct GraphQLError {
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<PathSegment>>,
    pub extensions: Map<String, Value>,
}

impl GraphQLError {
    pub fn new(message: impl Into<String>, code: &str) -> Self {
        let mut extensions = Map::new();
        extensions.insert("code".into(), Value::String(code.into()));
        Self {
            message: message.into(),
            locations: Vec::new(),
            path: None,
            extensions,
        }
    }

    pub fn with_path(mut self, path: Vec<PathSegment>) -> Self {
        self.path = Some(path);
        self
    }

    pub fn with_extension(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.into(), value.into());
        self
    }

    pub fn from_fetch(error: &FetchError) -> Self {
        Self::new(error.to_string(), error.code()).with_extension("subgraph", error.subgraph())
    }
}

/// An error a subgraph reported in its `errors`, relative to one entity or root field.
#[derive(Debug, Clone)]
pub struct SubgraphError {
    pub message: String,
    /// Path below the object it is attached to.
    pub path: Vec<PathSegment>,
    pub extensions: Map<String, Value>,
}

impl SubgraphError {
    /// The client-facing error at `base` + the relative path.
    pub fn to_client(&self, subgraph: &str, base: &[PathSegment]) -> GraphQLError {
        let mut extensions = self.extensions.clone();
        extensions
            .entry("code")
            .or_insert_with(|| Value::String("DOWNSTREAM_SERVICE_ERROR".into()));
        extensions.insert("subgraph".into(), Value::String(subgraph.into()));
        let mut path = base.to_vec();
        path.extend(self.path.iter().cloned());
        GraphQLError {
            message: self.message.clone(),
            locations: Vec::new(),
            path: (!path.is_empty()).then_some(path),
            extensions,
        }
    }
}
