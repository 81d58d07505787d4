//! The nine legacy services, one module each. A module owns its row type, its
//! seed (a pure function of scale and id), its secondary indexes and its GraphQL
//! schema, written in that service's own conventions (docs/subgraphs.md); it
//! knows nothing of the other services except the shared seed facts in
//! [`crate::seed`].
//!
//! Each module exposes `build(opts, wiring) -> Built`: seed the tables (blocking,
//! CPU-bound; run it off the async runtime) and return the `/graphql` routes.

use std::sync::Arc;

use axum::Router;

use crate::faults::FaultGate;
use crate::stats::Stats;
use crate::{Service, ServiceOptions};

pub(crate) mod accounts;
pub(crate) mod contracts;
pub(crate) mod events;
pub(crate) mod federation;
pub(crate) mod members;
pub(crate) mod posts;
pub(crate) mod products;
pub(crate) mod reviews;
pub(crate) mod settlements;
pub(crate) mod staff;

/// What a service's `/graphql` endpoint is wired to.
pub(crate) struct Wiring {
    pub stats: Arc<Stats>,
    pub gate: FaultGate,
}

/// A seeded service: its `/graphql` routes and how many rows it holds.
pub(crate) struct Built {
    pub router: Router,
    pub rows: u64,
}

/// Seeds `service` and builds its `/graphql` routes.
pub(crate) fn build(service: Service, opts: &ServiceOptions, wiring: Wiring) -> Built {
    match service {
        Service::Members => members::build(opts, wiring),
        Service::Staff => staff::build(opts, wiring),
        Service::Contracts => contracts::build(opts, wiring),
        Service::Accounts => accounts::build(opts, wiring),
        Service::Settlements => settlements::build(opts, wiring),
        Service::Posts => posts::build(opts, wiring),
        Service::Products => products::build(opts, wiring),
        Service::Events => events::build(opts, wiring),
        Service::Reviews => reviews::build(opts, wiring),
        Service::FedUsers => federation::users(wiring),
        Service::FedProducts => federation::products(wiring),
        Service::FedInventory => federation::inventory(wiring),
        Service::FedReviews => federation::reviews(wiring),
    }
}
