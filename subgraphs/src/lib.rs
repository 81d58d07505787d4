//! Nine legacy GraphQL services (graphene-style, each with its own conventions)
//! for Tessera's demo, tests and benchmarks. See `docs/subgraphs.md` for the
//! contract: ports, ids, batch fields, stats, faults and change events.
//!
//! Modules, in dependency order: [`scalars`] and [`seed`] (data primitives),
//! [`events`] (change sinks), [`store`] (the in-memory table), [`stats`] and
//! [`faults`] (per-service HTTP side channels), `graphql` (the shared endpoint
//! and resolver helpers), `services` (one module per service), `server`
//! (listening). The crate holds no global state: every running service owns its
//! tables, counters and faults.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub mod events;
pub mod faults;
mod graphql;
pub mod scalars;
pub mod seed;
mod server;
mod services;
pub mod stats;
pub mod store;

pub use events::{ChangeEvent, ChangeOp, ChangeSink, ChannelSink, EventId, KafkaSink, NullSink, WebhookSink};
pub use seed::Counts;
pub use server::{prepare, serve, spawn, spawn_all, spawn_set, Prepared, RunningService};

/// One of the nine legacy services, or one of the four Apollo Federation
/// subgraphs (users, products, inventory, reviews) of the federation benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Members,
    Staff,
    Contracts,
    Accounts,
    Settlements,
    Posts,
    Products,
    Events,
    Reviews,
    FedUsers,
    FedProducts,
    FedInventory,
    FedReviews,
}

impl Service {
    /// Every service, in port order.
    pub const ALL: [Service; 9] = [
        Service::Members,
        Service::Staff,
        Service::Contracts,
        Service::Accounts,
        Service::Settlements,
        Service::Posts,
        Service::Products,
        Service::Events,
        Service::Reviews,
    ];

    /// The four Federation subgraphs, in port order.
    pub const FEDERATION: [Service; 4] = [
        Service::FedUsers,
        Service::FedProducts,
        Service::FedInventory,
        Service::FedReviews,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Members => "members",
            Service::Staff => "staff",
            Service::Contracts => "contracts",
            Service::Accounts => "accounts",
            Service::Settlements => "settlements",
            Service::Posts => "posts",
            Service::Products => "products",
            Service::Events => "events",
            Service::Reviews => "reviews",
            Service::FedUsers => "fed-users",
            Service::FedProducts => "fed-products",
            Service::FedInventory => "fed-inventory",
            Service::FedReviews => "fed-reviews",
        }
    }

    /// 4001 for members through 4009 for reviews.
    pub fn default_port(self) -> u16 {
        match self {
            Service::Members => 4001,
            Service::Staff => 4002,
            Service::Contracts => 4003,
            Service::Accounts => 4004,
            Service::Settlements => 4005,
            Service::Posts => 4006,
            Service::Products => 4007,
            Service::Events => 4008,
            Service::Reviews => 4009,
            Service::FedUsers => 4201,
            Service::FedProducts => 4202,
            Service::FedInventory => 4203,
            Service::FedReviews => 4204,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A service name that is not one of the nine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown service {given:?}; valid names: members, staff, contracts, accounts, settlements, posts, products, events, reviews, fed-users, fed-products, fed-inventory, fed-reviews"
)]
pub struct UnknownService {
    pub given: String,
}

impl FromStr for Service {
    type Err = UnknownService;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .chain(Service::FEDERATION)
            .find(|service| service.name() == s)
            .ok_or_else(|| UnknownService { given: s.to_string() })
    }
}

/// How services are seeded and behave; chosen per start-up.
#[derive(Clone)]
pub struct ServiceOptions {
    /// The number of contracts; every other table is sized from it (see [`Counts`]).
    pub scale: u64,
    /// Whether products serves Apollo Federation v2 (`_service`, `_entities`).
    pub federation: bool,
    /// Added to every `/graphql` request of the **events** service only (it plays
    /// the slow one), before any fault latency. Ignored by the other eight.
    pub base_latency: Duration,
    /// Where every committed write is announced.
    pub sink: Arc<dyn ChangeSink>,
}

impl Default for ServiceOptions {
    /// Scale 1000, federation on, no base latency, no change events.
    fn default() -> Self {
        Self {
            scale: 1000,
            federation: true,
            base_latency: Duration::ZERO,
            sink: Arc::new(NullSink),
        }
    }
}

impl fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("scale", &self.scale)
            .field("federation", &self.federation)
            .field("base_latency", &self.base_latency)
            .finish_non_exhaustive()
    }
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{service}: cannot listen on {addr}: {source}")]
    Bind {
        service: Service,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{service}: cannot read the listener's address: {source}")]
    LocalAddr {
        service: Service,
        source: std::io::Error,
    },
    #[error("{service}: seeding failed: {source}")]
    Seed {
        service: Service,
        source: tokio::task::JoinError,
    },
    #[error("base port {base_port} leaves no room for the services' consecutive ports")]
    PortRange { base_port: u16 },
}

/// Exact table sizes at `scale`.
pub fn seed_counts(scale: u64) -> Counts {
    Counts::for_scale(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ports_and_parsing() {
        for (i, service) in Service::ALL.into_iter().enumerate() {
            assert_eq!(service.name().parse::<Service>(), Ok(service));
            assert_eq!(usize::from(service.default_port()), 4001 + i);
        }
        let error = "billing".parse::<Service>().expect_err("unknown");
        assert!(
            error.to_string().contains("valid names: members, staff"),
            "{error}"
        );
    }
}
