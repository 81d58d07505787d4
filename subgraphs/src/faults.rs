//! Injected faults (`GET/POST /faults`) and the middleware in front of `/graphql`
//! that counts each request and then applies them.
//!
//! The middleware, in order: counts the request, sleeps the service's base
//! latency plus the fault latency, then answers `503` if `down`, a non-JSON
//! `200` if `garbage`, a GraphQL error for an `error_ratio` share of requests
//! and for requests whose body contains `error_when` (one poisoned row: a
//! consumer's "poison message"), and otherwise passes the request on. Faults are runtime state: they start off
//! and change only through `POST /faults`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::seed::splitmix64;
use crate::stats::Stats;

/// The faults in force: `{"latency_ms": 0, "error_ratio": 0.0, "down": false, "garbage": false, "error_when": null}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Faults {
    /// Added to every `/graphql` request.
    pub latency_ms: u64,
    /// Share of requests (0.0–1.0) answered with a GraphQL error.
    pub error_ratio: f64,
    /// Answer `503` with a plain-text body.
    pub down: bool,
    /// Answer `200` with a body that is not JSON.
    pub garbage: bool,
    /// Answer a GraphQL error to every request whose body contains this.
    pub error_when: Option<String>,
}

/// A partial update: only the fields present change (`"error_when": ""` clears it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    pub latency_ms: Option<u64>,
    pub error_ratio: Option<f64>,
    pub down: Option<bool>,
    pub garbage: Option<bool>,
    pub error_when: Option<String>,
}

/// Why a `POST /faults` body was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultsError {
    #[error("error_ratio must be between 0.0 and 1.0, got {given}")]
    ErrorRatio { given: f64 },
}

impl IntoResponse for FaultsError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

/// The faults of one service, shared by its handlers and middleware.
#[derive(Debug, Default)]
pub struct FaultState {
    current: RwLock<Faults>,
    /// Feeds the error-ratio draws: a counter through splitmix64, so a given
    /// sequence of requests fails the same way on every run.
    draws: AtomicU64,
}

impl FaultState {
    pub fn current(&self) -> Faults {
        self.current.read().clone()
    }

    pub fn apply(&self, patch: FaultsPatch) -> Result<Faults, FaultsError> {
        if let Some(ratio) = patch.error_ratio {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(FaultsError::ErrorRatio { given: ratio });
            }
        }
        let mut current = self.current.write();
        current.latency_ms = patch.latency_ms.unwrap_or(current.latency_ms);
        current.error_ratio = patch.error_ratio.unwrap_or(current.error_ratio);
        current.down = patch.down.unwrap_or(current.down);
        current.garbage = patch.garbage.unwrap_or(current.garbage);
        if let Some(needle) = patch.error_when {
            current.error_when = (!needle.is_empty()).then_some(needle);
        }
        Ok(current.clone())
    }

    /// Whether this request should fail, at `ratio`.
    fn draw_error(&self, ratio: f64) -> bool {
        if ratio <= 0.0 {
            return false;
        }
        if ratio >= 1.0 {
            return true;
        }
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let unit = (splitmix64(n) >> 11) as f64 / (1u64 << 53) as f64;
        unit < ratio
    }
}

/// `GET /faults` and `POST /faults`; both answer the faults now in force.
pub fn routes(faults: Arc<FaultState>) -> Router {
    Router::new()
        .route("/faults", get(show).post(update))
        .with_state(faults)
}

async fn show(State(faults): State<Arc<FaultState>>) -> Json<Faults> {
    Json(faults.current())
}

async fn update(
    State(faults): State<Arc<FaultState>>,
    Json(patch): Json<FaultsPatch>,
) -> Result<Json<Faults>, FaultsError> {
    let now = faults.apply(patch)?;
    tracing::info!(?now, "faults changed");
    Ok(Json(now))
}

/// What the `/graphql` middleware needs.
#[derive(Debug, Clone)]
pub struct FaultGate {
    pub faults: Arc<FaultState>,
    pub stats: Arc<Stats>,
    /// The service's own slowness, added before the fault latency.
    pub base_latency: Duration,
}

/// The `/graphql` middleware (see the module docs for the order of things).
pub async fn gate(State(gate): State<FaultGate>, request: Request, next: Next) -> Response {
    gate.stats.count_request();
    let faults = gate.faults.current();
    let delay = gate.base_latency + Duration::from_millis(faults.latency_ms);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if faults.down {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable (injected fault: down)\n",
        )
            .into_response();
    }
    if faults.garbage {
        // Claims JSON and is not: the worst kind of broken upstream.
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "<html><body>upstream hiccup {\"data\": ",
        )
            .into_response();
    }
    let mut request = request;
    let mut poisoned = false;
    if let Some(needle) = &faults.error_when {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
            .await
            .unwrap_or_default();
        poisoned = bytes.windows(needle.len().max(1)).any(|w| w == needle.as_bytes());
        request = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    if poisoned || gate.faults.draw_error(faults.error_ratio) {
        let body = serde_json::json!({
            "data": null,
            "errors": [{
                "message": "Internal server error (injected fault)",
                "extensions": { "code": "INTERNAL_SERVER_ERROR" }
            }]
        });
        return Json(body).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_patches_and_ratio_bounds() {
        let state = FaultState::default();
        let after = state
            .apply(FaultsPatch {
                down: Some(true),
                ..FaultsPatch::default()
            })
            .expect("valid");
        assert_eq!(
            after,
            Faults {
                down: true,
                ..Faults::default()
            }
        );
        let after = state
            .apply(FaultsPatch {
                latency_ms: Some(5),
                ..FaultsPatch::default()
            })
            .expect("valid");
        assert!(after.down, "untouched fields stay");
        assert_eq!(after.latency_ms, 5);
        assert!(state
            .apply(FaultsPatch {
                error_ratio: Some(1.5),
                ..FaultsPatch::default()
            })
            .is_err());
    }

    #[test]
    fn error_ratio_draws_match_the_ratio() {
        let state = FaultState::default();
        let failed = (0..10_000).filter(|_| state.draw_error(0.3)).count();
        assert!((2_700..=3_300).contains(&failed), "{failed}");
        assert!((0..100).all(|_| state.draw_error(1.0)));
        assert!((0..100).all(|_| !state.draw_error(0.0)));
    }
}
