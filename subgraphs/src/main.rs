//! `subgraphs`: serves one of the nine legacy services, or all of them, until
//! Ctrl-C. Prints one line per service once it listens.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use tessera_subgraphs::{
    ChangeSink, KafkaSink, NullSink, RunningService, Service, ServiceOptions, WebhookSink,
};

/// `all`, `federation` or one service name.
#[derive(Debug, Clone, Copy)]
enum Selection {
    All,
    Federation,
    One(Service),
}

impl FromStr for Selection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => return Ok(Selection::All),
            "federation" => return Ok(Selection::Federation),
            _ => {}
        }
        s.parse()
            .map(Selection::One)
            .map_err(|e| format!("{e} (or all, federation)"))
    }
}

/// Nine legacy GraphQL services (graphene-style) for Tessera.
#[derive(Debug, Parser)]
#[command(name = "subgraphs", version)]
struct Cli {
    /// `all` (the nine legacy services), `federation` (the four Federation
    /// subgraphs, ports 4201–4204 by default), or one service: members, staff,
    /// contracts, accounts, settlements, posts, products, events, reviews,
    /// fed-users, fed-products, fed-inventory, fed-reviews.
    #[arg(long, default_value = "all")]
    service: Selection,
    /// Port for a single service (default: its own, 4001–4009).
    #[arg(long, conflicts_with = "base_port")]
    port: Option<u16>,
    /// First port for `--service all`; service i listens on base + i (0: ephemeral ports).
    #[arg(long, default_value_t = 4001)]
    base_port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Number of contracts; every other table is sized from it.
    #[arg(long, default_value_t = 1000)]
    scale: u64,
    /// Serve products without Apollo Federation (`_service`, `_entities`).
    #[arg(long)]
    no_federation: bool,
    /// Base latency of the events service, e.g. `15ms`, `0s`.
    #[arg(long, default_value = "15ms", value_parser = humantime::parse_duration)]
    events_latency: Duration,
    /// POST every change event as JSON to this URL.
    #[arg(long, conflicts_with = "kafka")]
    webhook: Option<String>,
    /// Publish every change event to Kafka at these brokers (`host:port,…`),
    /// to topic `<kafka-topic-prefix><service>`, keyed by entity id.
    #[arg(long)]
    kafka: Option<String>,
    #[arg(long, default_value = "tessera.changes.")]
    kafka_topic_prefix: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let (Selection::All | Selection::Federation, Some(_)) = (cli.service, cli.port) {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--port needs a single --service; with `all` use --base-port",
            )
            .exit();
    }
    let sink: Arc<dyn ChangeSink> = match (&cli.webhook, &cli.kafka) {
        (Some(url), _) => Arc::new(WebhookSink::spawn(url.clone(), 10_000)),
        (None, Some(brokers)) => Arc::new(
            KafkaSink::new(brokers, &cli.kafka_topic_prefix)
                .with_context(|| format!("cannot publish to Kafka at {brokers}"))?,
        ),
        (None, None) => Arc::new(NullSink),
    };
    let opts = ServiceOptions {
        scale: cli.scale,
        federation: !cli.no_federation,
        base_latency: cli.events_latency,
        sink,
    };
    let running = match cli.service {
        Selection::All => tessera_subgraphs::spawn_all(cli.host, cli.base_port, &opts).await?,
        Selection::Federation => {
            // The default base port is the legacy services'; the Federation ones have their own.
            let base_port = if cli.base_port == 4001 {
                Service::FedUsers.default_port()
            } else {
                cli.base_port
            };
            tessera_subgraphs::spawn_set(&Service::FEDERATION, cli.host, base_port, &opts).await?
        }
        Selection::One(service) => {
            let addr = SocketAddr::new(cli.host, cli.port.unwrap_or(service.default_port()));
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("{service}: cannot listen on {addr}"))?;
            vec![tessera_subgraphs::spawn(service, listener, &opts).await?]
        }
    };
    for service in &running {
        print_ready(service);
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    for service in running {
        service.shutdown().await;
    }
    Ok(())
}

fn print_ready(service: &RunningService) {
    println!(
        "{:<13} listening on {}  ({} rows, seeded in {:.2?})",
        service.service.name(),
        service.url(),
        service.rows,
        service.seed_time
    );
}
