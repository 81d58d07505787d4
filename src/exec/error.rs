//! The one error model: every [`ErrorCode`] a client can see (with the HTTP
//! status of a request that fails with it), the GraphQL error shape sent to
//! clients, and the errors of subgraph fetches.
//!
//! A client sees a stable code and a message written for it; what only an
//! operator should read (a subgraph's URL, a search backend's answer, a
//! planner invariant) travels as [`GraphQLError::detail`], which the
//! pipeline logs under the request id and leaves out of the response.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// Every `extensions.code` the gateway itself writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not a GraphQL request (no query, a body that is not JSON, …).
    BadRequest,
    GraphqlParseFailed,
    GraphqlValidationFailed,
    /// Arguments or variables the schema does not accept.
    BadUserInput,
    UnsupportedMediaType,
    MethodNotAllowed,
    PayloadTooLarge,
    /// A GET (or simple POST) without a header a cross-site form cannot set.
    CsrfPrevented,
    IntrospectionDisabled,
    SubscriptionNotSupported,
    MaxDepthLimit,
    MaxAliasesLimit,
    MaxRootFieldsLimit,
    MaxDirectivesLimit,
    MaxTokensLimit,
    CostEstimatedTooExpensive,
    /// The whole request ran past `[limits] request_timeout`.
    GatewayTimeout,
    /// The client did not send its request's body within
    /// `[limits] request_timeout`.
    RequestTimeout,
    SubgraphRequestFailed,
    SubgraphTimeout,
    SubgraphInvalidResponse,
    /// The subgraph's circuit breaker is open: not asked at all.
    SubgraphUnavailable,
    /// A subgraph's own error (its message is for clients).
    DownstreamServiceError,
    SearchUnavailable,
    SearchBackendError,
    InternalServerError,
    /// An automatic persisted query's hash this gateway does not hold yet:
    /// the client sends the text with it (Apollo's protocol).
    PersistedQueryNotFound,
    /// Automatic persisted queries are turned off: the client sends texts.
    PersistedQueryNotSupported,
    /// The text sent with a hash is not the text of that hash.
    PersistedQueryHashMismatch,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            ErrorCode::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::CsrfPrevented => "CSRF_PREVENTED",
            ErrorCode::IntrospectionDisabled => "INTROSPECTION_DISABLED",
            ErrorCode::SubscriptionNotSupported => "SUBSCRIPTION_NOT_SUPPORTED",
            ErrorCode::MaxDepthLimit => "MAX_DEPTH_LIMIT",
            ErrorCode::MaxAliasesLimit => "MAX_ALIASES_LIMIT",
            ErrorCode::MaxRootFieldsLimit => "MAX_ROOT_FIELDS_LIMIT",
            ErrorCode::MaxDirectivesLimit => "MAX_DIRECTIVES_LIMIT",
            ErrorCode::MaxTokensLimit => "MAX_TOKENS_LIMIT",
            ErrorCode::CostEstimatedTooExpensive => "COST_ESTIMATED_TOO_EXPENSIVE",
            ErrorCode::GatewayTimeout => "GATEWAY_TIMEOUT",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::SubgraphRequestFailed => "SUBGRAPH_REQUEST_FAILED",
            ErrorCode::SubgraphTimeout => "SUBGRAPH_TIMEOUT",
            ErrorCode::SubgraphInvalidResponse => "SUBGRAPH_INVALID_RESPONSE",
            ErrorCode::SubgraphUnavailable => "SUBGRAPH_UNAVAILABLE",
            ErrorCode::DownstreamServiceError => "DOWNSTREAM_SERVICE_ERROR",
            ErrorCode::SearchUnavailable => "SEARCH_UNAVAILABLE",
            ErrorCode::SearchBackendError => "SEARCH_BACKEND_ERROR",
            ErrorCode::InternalServerError => "INTERNAL_SERVER_ERROR",
            ErrorCode::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            ErrorCode::PersistedQueryNotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
            ErrorCode::PersistedQueryHashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
        }
    }

    /// The HTTP status of a request that this error ends before execution
    /// (field errors of an executed operation travel in a 200).
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::GatewayTimeout => 504,
            ErrorCode::RequestTimeout => 408,
            // The normal first step of the protocol, as Apollo Router answers it.
            ErrorCode::PersistedQueryNotFound => 200,
            ErrorCode::SubgraphRequestFailed
            | ErrorCode::SubgraphTimeout
            | ErrorCode::SubgraphInvalidResponse
            | ErrorCode::SubgraphUnavailable
            | ErrorCode::DownstreamServiceError
            | ErrorCode::SearchUnavailable
            | ErrorCode::SearchBackendError
            | ErrorCode::InternalServerError => 500,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a subgraph request produced no usable response. `Clone` because one
/// failure is shared by every key of the batch it was for. `Display` is the
/// operator's text (logs); [`FetchError::client_message`] the client's.
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
    /// The circuit breaker of the subgraph is open: it was not asked.
    #[error("subgraph \"{subgraph}\" is failing; not asked until it recovers")]
    CircuitOpen { subgraph: String },
    /// The subgraph answered with an error about the whole request (its
    /// `extensions`, its own `code` among them, go on to the client).
    #[error("{message}")]
    Downstream {
        subgraph: String,
        message: String,
        extensions: Map<String, Value>,
    },
    /// An argument the subgraph's types cannot take (a non-numeric `ID`
    /// where it wants `Int`): the client's input, not the subgraph, is wrong.
    #[error("{message}")]
    BadInput { subgraph: String, message: String },
    /// A search field failed: bad arguments (`BAD_USER_INPUT`) or the
    /// index (then `detail` holds the backend's answer).
    #[error("{message}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Search {
        message: String,
        code: ErrorCode,
        detail: Option<String>,
    },
    /// A search field's listing of a service (the MERGE strategy) failed:
    /// what that request's first error said, with its code and subgraph.
    #[error("{message}")]
    Source {
        subgraph: Option<String>,
        code: ErrorCode,
        message: String,
        transient: bool,
    },
}

impl FetchError {
    /// The subgraph that failed; `None` for a search error.
    pub fn subgraph(&self) -> Option<&str> {
        match self {
            FetchError::UnknownSubgraph { subgraph }
            | FetchError::Unreachable { subgraph, .. }
            | FetchError::Timeout { subgraph, .. }
            | FetchError::HttpStatus { subgraph, .. }
            | FetchError::InvalidResponse { subgraph, .. }
            | FetchError::CircuitOpen { subgraph }
            | FetchError::Downstream { subgraph, .. }
            | FetchError::BadInput { subgraph, .. } => Some(subgraph),
            FetchError::Source { subgraph, .. } => subgraph.as_deref(),
            FetchError::Search { .. } => None,
        }
    }

    /// Whether the subgraph (or the index) failed as a whole rather than
    /// answered this request: it could not be reached, did not answer in
    /// time, answered HTTP 5xx, 408 or 429, or its circuit is open. The same
    /// request can succeed later. What a subgraph answers, errors included,
    /// and a response that is not GraphQL are about the request: not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Unreachable { .. } | FetchError::Timeout { .. } | FetchError::CircuitOpen { .. } => {
                true
            }
            FetchError::HttpStatus { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            FetchError::Search { code, .. } => *code == ErrorCode::SearchUnavailable,
            FetchError::Source { transient, .. } => *transient,
            FetchError::UnknownSubgraph { .. }
            | FetchError::InvalidResponse { .. }
            | FetchError::Downstream { .. }
            | FetchError::BadInput { .. } => false,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            FetchError::UnknownSubgraph { .. } => ErrorCode::InternalServerError,
            FetchError::Unreachable { .. } | FetchError::HttpStatus { .. } => {
                ErrorCode::SubgraphRequestFailed
            }
            FetchError::Timeout { .. } => ErrorCode::SubgraphTimeout,
            FetchError::InvalidResponse { .. } => ErrorCode::SubgraphInvalidResponse,
            FetchError::CircuitOpen { .. } => ErrorCode::SubgraphUnavailable,
            FetchError::Downstream { .. } => ErrorCode::DownstreamServiceError,
            FetchError::BadInput { .. } => ErrorCode::BadUserInput,
            FetchError::Search { code, .. } | FetchError::Source { code, .. } => *code,
        }
    }

    /// What a client is told: no URLs, no transport or backend errors.
    pub fn client_message(&self) -> String {
        match self {
            FetchError::UnknownSubgraph { .. } => {
                "internal error: a field's service is not configured".into()
            }
            FetchError::Unreachable { subgraph, .. } => format!("could not reach subgraph \"{subgraph}\""),
            FetchError::InvalidResponse { subgraph, .. } => {
                format!("subgraph \"{subgraph}\" sent an invalid GraphQL response")
            }
            FetchError::Search { message, .. } | FetchError::Source { message, .. } => message.clone(),
            _ => self.to_string(),
        }
    }

    /// What only the log gets.
    pub fn detail(&self) -> Option<String> {
        match self {
            FetchError::UnknownSubgraph { .. }
            | FetchError::Unreachable { .. }
            | FetchError::InvalidResponse { .. } => Some(self.to_string()),
            FetchError::Search { detail, .. } => detail.clone(),
            _ => None,
        }
    }
}

/// Why an operation the gateway runs itself (the sync's listings and reads
/// by id, a MERGE page) failed: the first error and how many more.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    pub message: String,
    /// Some fetch failed for a reason about its subgraph, not the request
    /// ([`FetchError::is_transient`]): the same operation can succeed later.
    pub transient: bool,
    /// The first error's code, and the subgraph it names.
    pub code: ErrorCode,
    pub subgraph: Option<String>,
}

impl RunError {
    /// What `errors` (at least one) say together.
    pub fn from_errors(errors: &[GraphQLError]) -> Self {
        let message = match errors {
            [] => "the operation failed".to_string(),
            [one] => one.message.clone(),
            [first, _] => format!("{} (and 1 more error)", first.message),
            [first, rest @ ..] => format!("{} (and {} more errors)", first.message, rest.len()),
        };
        Self {
            message,
            transient: errors.iter().any(|e| e.transient),
            code: errors.first().map_or(ErrorCode::InternalServerError, |e| e.code),
            subgraph: errors
                .first()
                .and_then(|e| e.extensions.get("subgraph")?.as_str())
                .map(str::to_string),
        }
    }

    /// A failure before anything was fetched (variables, the result's shape).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
            code: ErrorCode::InternalServerError,
            subgraph: None,
        }
    }
}

/// One segment of a response path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum PathSegment {
    /// A response key: the plan's own `Name` (an `Arc` clone per field
    /// visited, not a copy of the string).
    Key(async_graphql::Name),
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

impl From<async_graphql::Pos> for Location {
    fn from(pos: async_graphql::Pos) -> Self {
        Location {
            line: pos.line,
            column: pos.column,
        }
    }
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
    /// The code, typed (`extensions.code` may be a subgraph's own).
    #[serde(skip)]
    pub code: ErrorCode,
    /// For the log only (see the module documentation).
    #[serde(skip)]
    pub detail: Option<String>,
    /// A fetch that failed for a reason about the subgraph, not the request
    /// ([`FetchError::is_transient`]): for the gateway's own operations,
    /// which retry (the sync), never serialized.
    #[serde(skip)]
    pub transient: bool,
}

impl GraphQLError {
    pub fn new(message: impl Into<String>, code: ErrorCode) -> Self {
        let mut extensions = Map::new();
        extensions.insert("code".into(), Value::String(code.as_str().into()));
        Self {
            message: message.into(),
            locations: Vec::new(),
            path: None,
            extensions,
            code,
            detail: None,
            transient: false,
        }
    }

    /// An internal error: the client reads `message`, the log `detail`.
    pub fn internal(message: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut error = Self::new(message, ErrorCode::InternalServerError);
        error.detail = Some(detail.into());
        error
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
        let mut out = Self::new(error.client_message(), error.code());
        out.detail = error.detail();
        out.transient = error.is_transient();
        if let FetchError::Downstream { extensions, .. } = error {
            for (key, value) in extensions {
                out.extensions.insert(key.clone(), value.clone());
            }
        }
        if let Some(subgraph) = error.subgraph() {
            out = out.with_extension("subgraph", subgraph);
        }
        out
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
    /// The error as the client sees it, at `base` + its own path, naming the
    /// subgraph that reported it (when it came from one).
    pub fn to_client(&self, subgraph: Option<&str>, base: &[PathSegment]) -> GraphQLError {
        let mut extensions = self.extensions.clone();
        extensions
            .entry("code")
            .or_insert_with(|| Value::String("DOWNSTREAM_SERVICE_ERROR".into()));
        if let Some(subgraph) = subgraph {
            extensions.insert("subgraph".into(), Value::String(subgraph.into()));
        }
        let mut path = base.to_vec();
        path.extend(self.path.iter().cloned());
        GraphQLError {
            message: self.message.clone(),
            locations: Vec::new(),
            path: (!path.is_empty()).then_some(path),
            extensions,
            code: ErrorCode::DownstreamServiceError,
            detail: None,
            transient: false,
        }
    }
}
