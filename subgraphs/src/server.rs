//! Turning services into listening HTTP servers: the per-service router
//! (`/graphql`, `/health`, `/stats`, `/faults`), [`prepare`] (seed, blocking),
//! [`serve`] (start on a listener), and the [`spawn`]/[`spawn_all`] conveniences.
//!
//! A [`RunningService`] stops when shut down or dropped: dropping it drops the
//! shutdown sender, which ends the server gracefully in the background.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::faults::{self, FaultGate, FaultState};
use crate::services::{self, Wiring};
use crate::stats::{self, Stats};
use crate::{Error, Service, ServiceOptions};

/// A seeded service, ready to serve.
pub struct Prepared {
    pub service: Service,
    /// Rows across the service's tables.
    pub rows: u64,
    /// How long seeding took.
    pub seed_time: Duration,
    router: Router,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("service", &self.service)
            .field("rows", &self.rows)
            .field("seed_time", &self.seed_time)
            .finish_non_exhaustive()
    }
}

/// Seeds `service` and builds its router. CPU-bound and blocking: call it from
/// `spawn_blocking` or a plain thread.
pub fn prepare(service: Service, opts: &ServiceOptions) -> Prepared {
    let started = Instant::now();
    let stats = Arc::new(Stats::new(service.name()));
    let fault_state = Arc::new(FaultState::default());
    let base_latency = match service {
        Service::Events => opts.base_latency,
        _ => Duration::ZERO,
    };
    let gate = FaultGate {
        faults: fault_state.clone(),
        stats: stats.clone(),
        base_latency,
    };
    let built = services::build(
        service,
        opts,
        Wiring {
            stats: stats.clone(),
            gate,
        },
    );
    let router = built
        .router
        .route("/health", get(|| async { "ok" }))
        .merge(stats::routes(stats))
        .merge(faults::routes(fault_state));
    Prepared {
        service,
        rows: built.rows,
        seed_time: started.elapsed(),
        router,
    }
}

/// A service listening on `addr`.
#[derive(Debug)]
pub struct RunningService {
    pub service: Service,
    pub addr: SocketAddr,
    /// Rows across the service's tables at start.
    pub rows: u64,
    /// How long seeding took.
    pub seed_time: Duration,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningService {
    /// The GraphQL endpoint, `http://<addr>/graphql`.
    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// Stops accepting requests and waits for in-flight ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                tracing::warn!(service = %self.service, %error, "server task ended abnormally");
            }
        }
    }
}

/// Serves a prepared service on `listener` from a background task.
pub fn serve(prepared: Prepared, listener: TcpListener) -> Result<RunningService, Error> {
    let service = prepared.service;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::LocalAddr { service, source })?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, prepared.router)
            .with_graceful_shutdown(async move {
                // Either an explicit shutdown or the sender being dropped.
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = result {
            tracing::error!(%service, %error, "server stopped with an error");
        }
    });
    Ok(RunningService {
        service,
        addr,
        rows: prepared.rows,
        seed_time: prepared.seed_time,
        shutdown: Some(shutdown),
        task: Some(task),
    })
}

/// Seeds `service` (off the async runtime) and serves it on `listener`.
pub async fn spawn(
    service: Service,
    listener: TcpListener,
    opts: &ServiceOptions,
) -> Result<RunningService, Error> {
    let opts = opts.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(service, &opts))
        .await
        .map_err(|source| Error::Seed { service, source })?;
    serve(prepared, listener)
}

/// Starts all nine services on `host`, service *i* (in [`Service::ALL`] order) on
/// `base_port + i`, or each on an ephemeral port when `base_port` is 0. Ports are
/// bound first (so a taken port fails fast), then the nine seeds run concurrently.
pub async fn spawn_all(
    host: IpAddr,
    base_port: u16,
    opts: &ServiceOptions,
) -> Result<Vec<RunningService>, Error> {
    spawn_set(&Service::ALL, host, base_port, opts).await
}

/// [`spawn_all`] for any set of services (e.g. [`Service::FEDERATION`]).
pub async fn spawn_set(
    services: &[Service],
    host: IpAddr,
    base_port: u16,
    opts: &ServiceOptions,
) -> Result<Vec<RunningService>, Error> {
    let mut listeners = Vec::with_capacity(services.len());
    for (offset, &service) in (0u16..).zip(services) {
        let port = if base_port == 0 {
            0
        } else {
            base_port
                .checked_add(offset)
                .ok_or(Error::PortRange { base_port })?
        };
        let addr = SocketAddr::new(host, port);
        let listener = TcpListener::bind(addr).await.map_err(|source| Error::Bind {
            service,
            addr,
            source,
        })?;
        listeners.push((service, listener));
    }
    let seeds: Vec<_> = services
        .iter()
        .map(|&service| {
            let opts = opts.clone();
            tokio::task::spawn_blocking(move || prepare(service, &opts))
        })
        .collect();
    let mut running = Vec::with_capacity(listeners.len());
    for ((service, listener), seed) in listeners.into_iter().zip(seeds) {
        let prepared = seed.await.map_err(|source| Error::Seed { service, source })?;
        running.push(serve(prepared, listener)?);
    }
    Ok(running)
}
