//! The `tessera` command: serve | demo | plan.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use tessera::config::Config;
use tessera_subgraphs::ServiceOptions;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "One GraphQL endpoint in front of legacy GraphQL services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Common {
    /// The unified schema.
    #[arg(long, default_value = "schema.graphql", env = "TESSERA_SCHEMA")]
    schema: PathBuf,
    /// An Apollo Federation 2 supergraph to serve instead of the schema
    /// (also `[supergraph] path` in the configuration).
    #[arg(long, env = "TESSERA_SUPERGRAPH", conflicts_with = "schema")]
    supergraph: Option<PathBuf>,
    /// Configuration file (defaults apply when the default file is absent).
    #[arg(long, default_value = "tessera.toml", env = "TESSERA_CONFIG")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway in front of running subgraphs.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Listen address (overrides the configuration).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Start the nine demo services in-process with seed data, and the gateway.
    Demo {
        #[command(flatten)]
        common: Common,
        /// Seed size: the number of contracts (other tables scale with it).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=20_000_000))]
        scale: u64,
        /// Gateway listen address.
        #[arg(long, default_value = "127.0.0.1:4000")]
        listen: SocketAddr,
        /// First port of the nine services (they take this and the next eight).
        #[arg(long, default_value_t = 4001)]
        base_port: u16,
        /// Extra latency of the events service, the demo's slow legacy system.
        #[arg(long, default_value = "15ms", value_parser = humantime::parse_duration)]
        events_latency: Duration,
    },
    /// Check schema.graphql against every subgraph's live schema.
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// Build or maintain search indexes (see docs/search.md).
    Sync {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: SyncAction,
    },
    /// Print the query plan of an operation.
    Plan {
        #[command(flatten)]
        common: Common,
        /// The operation text.
        query: String,
        /// Which operation of the document to plan.
        #[arg(long)]
        operation_name: Option<String>,
    },
}

#[derive(Subcommand)]
enum SyncAction {
    /// Build an index from every row of its sources; resumes an interrupted run.
    Backfill {
        /// The index (`contracts`, `feed`).
        index: String,
        /// Start again from the first row instead of resuming.
        #[arg(long)]
        restart: bool,
    },
    /// Apply what changed since the last sync (one poll).
    Poll { index: String },
    /// Delete (or rebuild) the documents whose rows are gone, listing ids only.
    Scan { index: String },
    /// Rebuild every document, write those that differ, delete those whose row is gone.
    Reconcile { index: String },
    /// Build a new physical index beside the live one, catch up, swap the alias.
    Reindex { index: String },
    /// Point the alias back at the previous physical index (brought up to date first).
    Rollback { index: String },
    /// List the physical indexes, their aliases, document counts and lag.
    Status,
    /// Follow the services' change events (Kafka) as a consumer-group member,
    /// backfilling indexes never built first; scans and reconciles too.
    Run,
    /// The dead-letter topic: events that kept failing.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Show the dead letters not replayed yet.
    List,
    /// Apply them again, in order (after the cause was fixed).
    Replay,
}

/// An error and its causes, each said once: most of the crate's errors
/// already name their cause in their own message.
fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

/// `println!` for the CLI's reports: a reader that stops reading
/// (`tessera plan … | head`) ends the process quietly, as Unix tools do,
/// instead of a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// `println!` for a server's announcements: lost, not fatal, when no one reads them.
macro_rules! announce {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let traces = match init_logs_and_traces() {
        Ok(provider) => provider,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            std::process::ExitCode::FAILURE
        }
    };
    // Spans still in the batch go out before the process does.
    if let Some(provider) = traces {
        let _ = provider.shutdown();
    }
    code
}

/// Logs to stderr (human-readable, or JSON with `TESSERA_LOG_FORMAT=json`:
/// the request span's fields, request id and trace id, on every line inside
/// it) and, when the OpenTelemetry variables name a collector, spans over
/// OTLP. Returns the trace provider to flush at exit.
fn init_logs_and_traces() -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("TESSERA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    // RUST_LOG filters the log lines only: the request, plan and subgraph
    // spans are exported whatever the log level.
    let otlp = tessera::telemetry::otlp_layer()?;
    let (otel, provider) = match otlp {
        Some((layer, provider)) => (
            Some(layer.with_filter(
                tracing_subscriber::filter::Targets::new().with_target("tessera", tracing::Level::INFO),
            )),
            Some(provider),
        ),
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))?;
    Ok(provider)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { common, listen } => {
            let mut config = load_config(&common)?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            let (file, sdl) = read_schema(&common, &config)?;
            serve(config, &file, &sdl).await
        }
        Command::Demo {
            common,
            scale,
            listen,
            base_port,
            events_latency,
        } => demo(common, scale, listen, base_port, events_latency).await,
        Command::Check { common } => {
            let config = load_config(&common)?;
            let (file, sdl) = read_schema(&common, &config)?;
            let schema = parse_schema(&sdl, &file)?;
            let report = tessera::check_subgraphs(&config, &schema).await?;
            for (name, why) in &report.unreachable {
                eprintln!("warning: subgraph \"{name}\" was not checked: {why}");
            }
            if !report.errors.is_empty() {
                bail!("{}", tessera::format_schema_errors(&file, &report.errors));
            }
            if !report.unreachable.is_empty() {
                bail!("{} subgraph(s) could not be checked", report.unreachable.len());
            }
            say!("{file} matches all {} subgraphs", schema.subgraphs().len());
            Ok(())
        }
        Command::Sync { common, action } => sync_command(common, action).await,
        Command::Plan {
            common,
            query,
            operation_name,
        } => {
            let config = load_config(&common)?;
            let (file, sdl) = read_schema(&common, &config)?;
            let schema = parse_schema(&sdl, &file)?;
            // Prepared as a request would be: an operation the gateway
            // refuses has no plan to show.
            let plan =
                tessera::pipeline::plan_operation(&schema, &query, operation_name.as_deref(), &config.limits)
                    .await
                    .map_err(|errors| {
                        let lines: Vec<String> = errors
                            .iter()
                            .map(|e| {
                                // The operator asking for a plan is told why there is none.
                                let message = match &e.detail {
                                    Some(detail) => format!("{} ({detail})", e.message),
                                    None => e.message.clone(),
                                };
                                match e.locations.first() {
                                    Some(at) => format!("{}:{}: {message}", at.line, at.column),
                                    None => message,
                                }
                            })
                            .collect();
                        anyhow::anyhow!("{}", lines.join("\n"))
                    })?;
            say!("{plan}");
            Ok(())
        }
    }
}

fn load_config(common: &Common) -> anyhow::Result<Config> {
    let explicit = common.config.as_path() != std::path::Path::new("tessera.toml");
    Ok(Config::load(&common.config, explicit)?)
}

/// `(file, text)` of the schema to serve: the supergraph named by
/// `--supergraph` or `[supergraph] path`, else schema.graphql.
fn read_schema(common: &Common, config: &Config) -> anyhow::Result<(String, String)> {
    let supergraph = common.supergraph.as_ref().or(config.supergraph.path.as_ref());
    let path = supergraph.unwrap_or(&common.schema);
    let file = path.display().to_string();
    let sdl = std::fs::read_to_string(path).with_context(|| match supergraph {
        Some(_) => format!("cannot read the supergraph {file}"),
        None => format!("cannot read the schema {file} (run from the repository root or pass --schema)"),
    })?;
    // Parsed here too, so its problems name the file given (the later
    // parse in `tessera::build` knows no file name).
    let parsed = parse_schema(&sdl, &file)?;
    if supergraph.is_some() && parsed.federation().is_none() {
        bail!("{file} is not an Apollo Federation supergraph (it declares no `enum join__Graph`); pass it with --schema if it is Tessera's schema.graphql");
    }
    Ok((file, sdl))
}

fn parse_schema(sdl: &str, file: &str) -> anyhow::Result<tessera::schema::Supergraph> {
    tessera::schema::Supergraph::parse(sdl).map_err(|e| {
        anyhow::anyhow!(
            "{file} has {} problem(s):\n{}",
            e.len(),
            tessera::format_schema_errors(file, &e)
        )
    })
}

/// The start-up check: a schema that contradicts a reachable subgraph stops
/// the gateway; an unreachable subgraph only warns (it may come up later).
async fn check_before_start(config: &Config, file: &str, sdl: &str) -> anyhow::Result<()> {
    let schema = parse_schema(sdl, file)?;
    let report = tessera::check_subgraphs(config, &schema).await?;
    for (name, why) in &report.unreachable {
        tracing::warn!(subgraph = %name, "not checked at start-up: {why}");
    }
    if !report.errors.is_empty() {
        bail!(
            "{file} does not match the subgraphs ({} problem(s)); the gateway will not start:\n{}",
            report.errors.len(),
            tessera::format_schema_errors(file, &report.errors)
        );
    }
    Ok(())
}

fn kafka_options(config: &Config) -> tessera::sync::kafka::KafkaOptions {
    config.sync.kafka.clone()
}

/// The change events worker, then its background scans and reconciles.
async fn run_worker(
    config: &Config,
    tessera: &tessera::Tessera,
) -> anyhow::Result<tessera::sync::kafka::Worker> {
    let worker = tessera::sync::kafka::Worker::start(
        Arc::clone(&tessera.syncer),
        kafka_options(config),
        &|index, p| progress_printer(index)(p),
    )
    .await
    .with_context(|| {
        format!(
            "cannot follow change events from Kafka at {}",
            config.sync.kafka.brokers
        )
    })?;
    tokio::spawn(Arc::clone(&tessera.syncer).run(intervals(config)));
    Ok(worker)
}

fn intervals(config: &Config) -> tessera::sync::Intervals {
    tessera::sync::Intervals {
        poll: (config.sync.source == tessera::config::SourceName::Poll).then_some(config.sync.poll_interval),
        scan: config.sync.scan_interval,
        reconcile: config.sync.reconcile_interval,
    }
}

async fn sync_command(common: Common, action: SyncAction) -> anyhow::Result<()> {
    let config = load_config(&common)?;
    let (_, sdl) = read_schema(&common, &config)?;
    let tessera = tessera::build(&config, &sdl)?;
    let syncer = &tessera.syncer;
    sync_action(syncer, &config, &tessera, action).await?;
    // A document the index refused is not in it: every command says so
    // and fails, whichever step met it (the backfill counted it as done).
    let refused = syncer.rejected();
    if !refused.is_empty() {
        for d in &refused {
            eprintln!("  refused {} in {}: {}", d.id, d.index, d.reason);
        }
        bail!("{} document(s) could not be written", refused.len());
    }
    Ok(())
}

async fn sync_action(
    syncer: &Arc<tessera::sync::Syncer>,
    config: &Config,
    tessera: &tessera::Tessera,
    action: SyncAction,
) -> anyhow::Result<()> {
    // Writing documents of this schema into an index built from another
    // would leave one the gateway refuses to start on: only a reindex
    // (a new index) or a rollback (checked itself) may change declarations.
    if let SyncAction::Backfill { index, .. }
    | SyncAction::Poll { index }
    | SyncAction::Scan { index }
    | SyncAction::Reconcile { index } = &action
    {
        syncer.check(index).await?;
    }
    match action {
        SyncAction::Backfill { index, restart } => {
            let started = Instant::now();
            let done = syncer
                .backfill(&index, restart, &progress_printer(&index))
                .await?;
            eprintln!();
            say!(
                "{index}: {done} documents in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
        SyncAction::Poll { index } => {
            let r = syncer.poll(&index).await?;
            say!(
                "{index}: {} written, {} deleted, {} failed",
                r.written,
                r.deleted,
                r.failed
            );
        }
        SyncAction::Scan { index } => {
            let r = syncer.scan(&index).await?;
            say!(
                "{index}: {} deleted, {} rebuilt, {} failed",
                r.deleted,
                r.written,
                r.failed
            );
        }
        SyncAction::Reconcile { index } => {
            let r = syncer.reconcile(&index).await?;
            say!(
                "{index}: {} written, {} deleted, {} unchanged, {} skipped (newer already indexed), {} failed",
                r.written, r.deleted, r.unchanged, r.skipped, r.failed
            );
        }
        SyncAction::Reindex { index } => {
            let started = Instant::now();
            let r = syncer.reindex(&index, &progress_printer(&index)).await?;
            eprintln!();
            say!(
                "{index}: now {} ({} documents, caught up: {} written, {} deleted) in {:.1}s; previous {} kept for rollback{}",
                r.current,
                r.documents,
                r.caught_up.written,
                r.caught_up.deleted,
                started.elapsed().as_secs_f64(),
                r.previous.as_deref().unwrap_or("(none)"),
                if r.dropped.is_empty() {
                    String::new()
                } else {
                    format!("; dropped {}", r.dropped.join(", "))
                }
            );
        }
        SyncAction::Run => {
            let worker = run_worker(config, tessera).await?;
            say!(
                "following {} as a member of group {}",
                worker.topics().join(", "),
                config.sync.kafka.group
            );
            let report = worker.run(shutdown_signal()).await;
            say!(
                "stopped: {} events applied, {} dead-lettered",
                report.events,
                report.dead_letters
            );
        }
        SyncAction::Dlq { action } => match action {
            DlqAction::List => {
                let letters = tessera::sync::kafka::list_dead_letters(&kafka_options(config)).await?;
                for l in &letters {
                    say!(
                        "{}/{}@{} key {}: {} (tried {}): {}",
                        l.topic,
                        l.partition,
                        l.offset,
                        l.key.as_deref().unwrap_or("-"),
                        l.error,
                        l.attempts,
                        l.payload
                    );
                }
                say!("{} dead letter(s) waiting", letters.len());
            }
            DlqAction::Replay => {
                let r = tessera::sync::kafka::replay_dead_letters(syncer, &kafka_options(config)).await?;
                say!("{} dead letter(s) applied", r.applied);
                for letter in &r.failed_again {
                    say!(
                        "{}/{}@{} failed again (kept as a dead letter, attempt {}): {}",
                        letter.topic,
                        letter.partition,
                        letter.offset,
                        letter.attempts,
                        letter.error
                    );
                }
                if let Some((letter, why)) = r.stopped {
                    bail!(
                        "stopped at {}/{}@{}: {why} (it and the letters not replayed yet stay)",
                        letter.topic,
                        letter.partition,
                        letter.offset
                    );
                }
                if !r.failed_again.is_empty() {
                    bail!("{} dead letter(s) failed again", r.failed_again.len());
                }
            }
        },
        SyncAction::Rollback { index } => {
            let (now, was) = syncer.rollback(&index).await?;
            say!("{index}: now {now} (was {was}, kept)");
        }
        SyncAction::Status => {
            say!(
                "{:<16} {:<12} {:>10} {:>10}  state",
                "index",
                "alias",
                "documents",
                "lag"
            );
            for s in syncer.status().await? {
                // Only an index behind an alias is kept in sync; another is
                // one kept for a rollback (or a reindex's target, building).
                let state = match (&s.checkpoint, s.aliases.is_empty()) {
                    (Some(tessera::sync::Checkpoint::Live { watermark }), false) => {
                        format!("live, synced to {watermark}")
                    }
                    (Some(tessera::sync::Checkpoint::Live { watermark }), true) => {
                        format!("kept, synced to {watermark} until it was swapped out")
                    }
                    (Some(tessera::sync::Checkpoint::Backfill { done, complete, .. }), _) => {
                        if *complete {
                            format!("rebuilding in place at {done} documents (serving meanwhile)")
                        } else {
                            format!("backfill at {done} documents (not served until it ends)")
                        }
                    }
                    (None, _) if s.documents > 0 => "partly built (no checkpoint yet)".into(),
                    (None, _) => "empty".into(),
                };
                let lag = s
                    .lag
                    .filter(|_| !s.aliases.is_empty())
                    .map(|l| format!("{:.1}s", l.as_secs_f64()))
                    .unwrap_or_else(|| "-".into());
                let aliases = if s.aliases.is_empty() {
                    "-".into()
                } else {
                    s.aliases.join(",")
                };
                say!(
                    "{:<16} {:<12} {:>10} {:>10}  {state}",
                    s.physical,
                    aliases,
                    s.documents,
                    lag
                );
            }
        }
    }
    Ok(())
}

/// Prints backfill progress: a bar redrawn in place on a terminal, a line
/// every 10% otherwise.
fn progress_printer(index: &str) -> impl Fn(tessera::sync::Progress) + Send + Sync + '_ {
    use std::io::IsTerminal;
    // indicatif draws on a terminal only (and measures rate and ETA itself,
    // from a smoothed estimate); a log gets a line per tenth instead.
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {percent:>3}% {human_pos}/{human_len} docs  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("#>-"),
    );
    bar.set_prefix(index.to_string());
    let terminal = std::io::stderr().is_terminal();
    let last_decile = std::sync::atomic::AtomicU64::new(u64::MAX);
    move |p: tessera::sync::Progress| {
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.done);
        let done = p.total.is_some_and(|t| p.done >= t);
        if terminal {
            if done {
                bar.finish();
            }
            return;
        }
        let decile = match p.total {
            Some(total) if total > 0 => p.done.saturating_mul(10) / total,
            _ => 0,
        };
        if last_decile.swap(decile, std::sync::atomic::Ordering::Relaxed) != decile {
            let rate = p.done as f64 / p.elapsed.as_secs_f64().max(0.001);
            let total = p.total.map_or_else(|| "?".to_string(), |t| t.to_string());
            eprintln!("{index:>10} {}/{total} docs  {rate:.0} docs/s", p.done);
        }
    }
}

/// Builds every index that is not built yet, with progress, then keeps
/// them in sync in the background.
async fn start_sync(config: &Config, tessera: &tessera::Tessera) -> anyhow::Result<()> {
    for index in tessera.syncer.index_names() {
        match tessera.syncer.check(&index).await {
            Ok(()) => {}
            Err(tessera::sync::SyncError::Index(e @ tessera::search::SearchError::Unavailable { .. })) => {
                tracing::warn!(
                    index = %index,
                    "{e}; search fields answer SEARCH_UNAVAILABLE until it is back, everything else is served"
                );
            }
            Err(e) => bail!("{e}"),
        }
    }
    if !config.sync.enabled {
        return Ok(());
    }
    if config.sync.source == tessera::config::SourceName::Kafka {
        // The worker backfills what was never built, then follows the events;
        // a broker that is down delays that, never the gateway.
        let syncer = Arc::clone(&tessera.syncer);
        let options = kafka_options(config);
        tokio::spawn(async move {
            loop {
                let started =
                    tessera::sync::kafka::Worker::start(Arc::clone(&syncer), options.clone(), &|index, p| {
                        progress_printer(index)(p)
                    })
                    .await;
                match started {
                    Ok(worker) => {
                        tracing::info!(topics = ?worker.topics(), group = %options.group, "following change events");
                        worker.run(std::future::pending::<()>()).await;
                        return;
                    }
                    Err(e) => {
                        tracing::error!(brokers = %options.brokers, error = %e, "cannot follow change events yet; retrying in 5s");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        });
        tokio::spawn(Arc::clone(&tessera.syncer).run(intervals(config)));
        return Ok(());
    }
    for index in tessera.syncer.index_names() {
        let live = matches!(
            tessera.syncer.checkpoint(&index).await,
            Ok(Some(tessera::sync::Checkpoint::Live { .. }))
        );
        if !live {
            match tessera
                .syncer
                .backfill(&index, false, &progress_printer(&index))
                .await
            {
                Ok(done) => {
                    eprintln!();
                    say!("  index {index:<10} {done} documents");
                }
                // A service that is down must not keep the gateway from
                // serving: the poller resumes the backfill from its checkpoint.
                Err(e) => {
                    eprintln!();
                    tracing::warn!(index = %index, error = %e, "index not built yet; the poller will retry");
                }
            }
        }
    }
    tokio::spawn(Arc::clone(&tessera.syncer).run(intervals(config)));
    Ok(())
}

/// The shortest cursor secret `tessera serve` takes, in bytes (HMAC-SHA256's
/// own output size, the usual floor for its keys).
const MIN_CURSOR_SECRET: usize = 32;

async fn serve(config: Config, file: &str, sdl: &str) -> anyhow::Result<()> {
    if config.uses_development_secret() {
        bail!(
            "search.cursor_secret is the public development secret; `tessera serve` needs your own \
             (set TESSERA_CURSOR_SECRET or search.cursor_secret to a long random string, the same on every replica; \
             `tessera demo` keeps the development one)"
        );
    }
    // Cursors are sealed with HMAC-SHA256: a short key can be found from
    // one cursor offline, and every cursor forged with it.
    if config.search.cursor_secret.len() < MIN_CURSOR_SECRET {
        bail!(
            "search.cursor_secret is {} bytes; `tessera serve` needs at least {MIN_CURSOR_SECRET} \
             (e.g. TESSERA_CURSOR_SECRET=$(openssl rand -hex 32))",
            config.search.cursor_secret.len()
        );
    }
    // Listening first: a port in use fails at once, not after the indexes
    // are built, and `/health` answers while they are.
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let (started, starting) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(tessera::serve_starting(listener, async {
        let _ = starting.await;
    }));
    let start = async {
        check_before_start(&config, file, sdl).await?;
        let tessera = tessera::build(&config, sdl)?;
        start_sync(&config, &tessera).await?;
        let app = tessera::app(&config, &tessera)?;
        anyhow::Ok((tessera, app))
    };
    let built = start.await;
    let _ = started.send(());
    let listener = serving.await??;
    // Held while serving, as before: the change queue's first sender.
    let (_tessera, app) = built?;
    let addr = listener.local_addr()?;
    announce!("Tessera is serving http://{addr}/graphql (GraphiQL in a browser)");
    tessera::serve_app(listener, app, shutdown_signal()).await?;
    Ok(())
}

async fn demo(
    common: Common,
    scale: u64,
    listen: SocketAddr,
    base_port: u16,
    events_latency: Duration,
) -> anyhow::Result<()> {
    if base_port.checked_add(8).is_none() {
        bail!("--base-port {base_port} leaves no room for nine services; use a port below 65527");
    }
    if common.supergraph.is_some() {
        bail!("the demo serves the nine services behind schema.graphql; serve a supergraph with `tessera serve --supergraph FILE`");
    }
    let (file, sdl) = read_schema(&common, &Config::default())?;
    let started = Instant::now();
    // The services announce every committed write; the gateway applies
    // them at once (deletes included).
    let events = tessera_subgraphs::ChannelSink::new(100_000);
    let announced = events.subscribe();
    let options = ServiceOptions {
        scale,
        federation: true,
        base_latency: events_latency,
        sink: Arc::new(events),
    };
    let host: IpAddr = listen.ip();
    announce!("Seeding the nine services at scale {scale} …");
    let services = tessera_subgraphs::spawn_all(host, base_port, &options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the demo services: {e}"))?;
    let mut config = load_config(&common)?;
    config.server.listen = listen;
    for service in &services {
        if let Some(sub) = config.subgraphs.get_mut(service.service.name()) {
            sub.url = service.url();
        }
        announce!("  {:<12} {}", service.service.name(), service.url());
    }
    check_before_start(&config, &file, &sdl).await?;
    // The demo is the embedded setup: its services are reseeded on every
    // start, so its indexes are rebuilt too, in a folder of their own.
    if config.search.backend != tessera::config::BackendName::Tantivy {
        say!("  (the demo keeps its indexes in the embedded backend; `serve` uses OpenSearch)");
        config.search.backend = tessera::config::BackendName::Tantivy;
    }
    if !config.search.in_memory {
        config.search.data_dir = config.search.data_dir.join("demo");
        let _ = std::fs::remove_dir_all(&config.search.data_dir);
    }
    let tessera = tessera::build(&config, &sdl)?;
    tokio::spawn(tessera::sync::events::forward(
        announced,
        Arc::clone(tessera.syncer.schema()),
        tessera.changes.clone(),
    ));
    say!("Building the search indexes …");
    start_sync(&config, &tessera).await?;
    let app = tessera::app(&config, &tessera)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is another demo running? pass --listen)"))?;
    let addr = listener.local_addr()?;
    say!(
        "Ready in {:.1}s. Open the playground: http://{addr}/graphql",
        started.elapsed().as_secs_f64()
    );
    tessera::serve_app(listener, app, shutdown_signal()).await?;
    for service in services {
        service.shutdown().await;
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM (what `docker stop` and Kubernetes send): stop
/// accepting, let the requests in flight finish.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: draining the requests in flight");
}
