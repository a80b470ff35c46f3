//! The command line: parses arguments, sets up logging, runs a command, and decides the exit
//! code (0 success, 1 a poll or delivery failed, 2 bad configuration or usage).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::diff;
use crate::pipeline::{App, Clock};
use crate::scheduler;
use crate::simulate;
use crate::snapshot::Target;

/// Watches Alibaba Cloud DBS pre-checks and restores and tells people in chat.
#[derive(Debug, Parser)]
#[command(name = "dbswatch", version, about, long_about = None)]
pub struct Cli {
    /// Config file [default: ./dbswatch.toml]
    #[arg(short, long, global = true, env = "DBSWATCH_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log filter, e.g. `info`, `debug`, `dbswatch=debug` (also RUST_LOG)
    #[arg(long, global = true)]
    pub log: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll every watch on its schedule and send notifications
    Run {
        /// Also serve /healthz, /metrics and the read-only /api/v1 on this address
        /// (overrides `[server] listen`), e.g. 127.0.0.1:9187
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Poll every watch (or one) once now, deliver what it caused, and exit
    Poll {
        /// Only this watch
        #[arg(long)]
        watch: Option<String>,
    },
    /// Run recorded DBS responses (oldest first) through the diff engine and print the events
    /// as JSON lines; no network, no config
    Replay {
        /// The files are a restore task's responses (events are `restore.*`)
        #[arg(long)]
        restore: bool,
        /// Response files, in the order they were received
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show stored events, newest first, with where each notification went
    History {
        /// Only this watch
        #[arg(long)]
        watch: Option<String>,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// At most this many events
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only this backup plan's pre-check events
        #[arg(long, conflicts_with = "task")]
        plan: Option<String>,
        /// Only this restore task's events
        #[arg(long)]
        task: Option<String>,
        /// Only these kinds; repeatable, globs work (`precheck.*`, `*.failed`)
        #[arg(long)]
        kind: Vec<String>,
        /// Observed at or after: RFC 3339, a local date/time, or a span back from now (`7d`)
        #[arg(long)]
        since: Option<String>,
        /// Observed before: same forms as --since
        #[arg(long)]
        until: Option<String>,
    },
    /// Check the config file and report every problem at once (exit 2 when there are any)
    CheckConfig,
    /// Offline tour: the whole pipeline against a built-in DBS double and chat sink
    Demo,
    /// Serve the DBS double for trying a real config and templates locally
    Simulate {
        /// Address to listen on, host:port; point `[aliyun] endpoint` at http://<this>
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: String,
        /// Scenario file (JSON); the built-in demo scenario when omitted
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Print exactly the body a channel would be sent (one per line), for a sample event of
    /// every kind, one kind, or events from a file; nothing is sent
    Render {
        /// The channel, as named in the config
        #[arg(long)]
        channel: String,
        /// Only the sample of this kind, e.g. precheck.failed
        #[arg(long, conflicts_with = "event_file")]
        event: Option<String>,
        /// Events as JSON (one per line, as `replay` prints them) instead of the samples
        #[arg(long)]
        event_file: Option<PathBuf>,
    },
    /// Send one clearly marked test message to a channel and say what the receiver answered
    /// (exit 1 when it was not delivered)
    TestChannel {
        /// The channel, as named in the config
        name: String,
    },
    /// Show where each account's credentials come from and which AccessKey that is (masked)
    Whoami {
        /// Only this account (`default` is `[aliyun]`)
        #[arg(long)]
        account: Option<String>,
    },
    /// List the account's backup plans, to help write a config
    Plans {
        /// Only plans of this region (its endpoint is used)
        #[arg(long)]
        region: Option<String>,
        /// The account to list (`default` is `[aliyun]`)
        #[arg(long)]
        account: Option<String>,
        /// Print `[[watch]]` blocks to paste into the config
        #[arg(long)]
        toml: bool,
    },
    /// List the account's recent restore tasks, to help write a config
    Restores {
        /// The account to list (`default` is `[aliyun]`)
        #[arg(long)]
        account: Option<String>,
        /// Tasks created in the last this many days
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Print `[[watch]]` blocks to paste into the config
        #[arg(long)]
        toml: bool,
    },
    /// Show one pre-check or restore run as it unfolded: each item's states with when it
    /// entered them and how long it stayed, status and progress over time, total duration
    Timeline {
        /// The watch
        watch: String,
        /// Which run: 1 is the latest, 2 the one before, ...
        #[arg(long, default_value_t = 1)]
        run: usize,
        /// Output format (table or json)
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List the stored snapshots (distinct DBS answers) of a watch, newest first
    Snapshots {
        /// The watch
        watch: String,
        /// Print each exact response body as received
        #[arg(long)]
        raw: bool,
        /// At most this many snapshots
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Output format (table or json)
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Per watch: runs, failures, mean and p95 duration, the checks that fail most
    Stats {
        /// Only this watch
        #[arg(long)]
        watch: Option<String>,
        /// Only runs observed at or after (RFC 3339, local date/time, or `30d`)
        #[arg(long)]
        since: Option<String>,
        /// Only runs observed before
        #[arg(long)]
        until: Option<String>,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Walk the event hash chain and report rows changed, inserted or deleted behind dbswatch's
    /// back (exit 1 when any)
    Verify {
        /// Output format (table or json)
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List notifications in the outbox, newest first, with their attempts and last error
    Deliveries {
        /// Only notifications in this state
        #[arg(long, value_enum)]
        status: Option<DeliveryStatus>,
        /// Only this channel
        #[arg(long)]
        channel: Option<String>,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// At most this many
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Re-queue dead notifications (ids from `dbswatch deliveries`) with a fresh retry budget
    /// (exit 1 when an id was not re-queued)
    Redeliver {
        /// Delivery ids
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

/// Where a notification stands, for `deliveries --status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeliveryStatus {
    /// Waiting to be sent or retried
    Pending,
    /// Accepted by the receiver
    Delivered,
    /// Given up: a configuration or content error, or the retry budget ran out
    Dead,
    /// A repeat of a flapping transition within the channel's repeat_interval; not sent
    Muted,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Muted => "muted",
        }
    }
}

/// History output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people
    Table,
    /// One JSON object per line for tools
    Json,
    /// Comma-separated values with a header row, for spreadsheets
    Csv,
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log.as_deref(), &cli.command) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // The daemon polls at a lower CPU priority than it delivers (see `priority`).
    let runtime = match &cli.command {
        Command::Run { .. } => crate::priority::daemon_runtime(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run_command(cli))
}

fn init_logging(filter: Option<&str>, command: &Command) -> Result<(), String> {
    use std::io::IsTerminal;
    let default = match command {
        Command::Run { .. } | Command::Simulate { .. } => "info",
        // One-shot commands print their own results; logs add only real trouble.
        _ => "error",
    };
    let filter = filter
        .map(String::from)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_string());
    let env_filter = tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| {
        format!("`{filter}` is not a log filter ({e}); use error, warn, info, debug or trace")
    })?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
    Ok(())
}

async fn run_command(cli: Cli) -> ExitCode {
    let config_path = config::resolve_path(cli.config.as_deref());
    match cli.command {
        Command::CheckConfig => check_config(&config_path),
        Command::Run { listen } => {
            with_app(&config_path, |app| async move {
                crate::commands::daemon::run(app, listen).await
            })
            .await
        }
        Command::Poll { watch } => {
            with_app(
                &config_path,
                |app| async move { poll_once(app, watch).await },
            )
            .await
        }
        Command::History {
            watch,
            format,
            limit,
            plan,
            task,
            kind,
            since,
            until,
        } => {
            let args = crate::commands::audit::HistoryArgs {
                filter: crate::commands::queries::FilterInput {
                    watch,
                    plan,
                    task,
                    kinds: kind,
                    since,
                    until,
                },
                format,
                limit: limit.into(),
            };
            crate::commands::audit::history(&config_path, args).await
        }
        Command::Replay { restore, files } => replay(restore, &files),
        Command::Demo => crate::demo::run().await,
        Command::Simulate { listen, scenario } => simulate_cmd(listen, scenario).await,
        Command::Render {
            channel,
            event,
            event_file,
        } => render_cmd(&config_path, &channel, event, event_file),
        Command::TestChannel { name } => test_channel_cmd(&config_path, &name).await,
        Command::Whoami { account } => crate::commands::whoami(&config_path, account).await,
        Command::Plans {
            region,
            account,
            toml,
        } => crate::commands::plans(&config_path, account, region, toml).await,
        Command::Restores {
            account,
            days,
            toml,
        } => crate::commands::restores(&config_path, account, days, toml).await,
        Command::Timeline { watch, run, format } => {
            crate::commands::audit::timeline(&config_path, &watch, run, format).await
        }
        Command::Snapshots {
            watch,
            raw,
            limit,
            format,
        } => crate::commands::audit::snapshots(&config_path, &watch, raw, limit, format).await,
        Command::Stats {
            watch,
            since,
            until,
            format,
        } => {
            let filter = crate::commands::queries::FilterInput {
                watch,
                since,
                until,
                ..Default::default()
            };
            crate::commands::audit::stats(&config_path, filter, format).await
        }
        Command::Verify { format } => crate::commands::audit::verify(&config_path, format).await,
        Command::Deliveries {
            status,
            channel,
            format,
            limit,
        } => deliveries_cmd(&config_path, status, channel, format, limit).await,
        Command::Redeliver { ids } => redeliver_cmd(&config_path, &ids).await,
    }
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprint!("error: {e}{}", e.next_step());
        ExitCode::from(2)
    })
}

async fn with_app<F, Fut>(path: &Path, f: F) -> ExitCode
where
    F: FnOnce(App) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let app = match App::new(config, Clock::system()).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let store = app.store.clone();
    let code = f(app).await;
    store.close().await;
    code
}

fn check_config(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            println!(
                "{}: OK — {} watch{}, {} channel{}, endpoint {}{}",
                path.display(),
                c.watches.len(),
                if c.watches.len() == 1 { "" } else { "es" },
                c.channels.len(),
                if c.channels.len() == 1 { "" } else { "s" },
                crate::secret::display_url(&c.aliyun.endpoint_url()),
                match &c.aliyun.credentials {
                    Some(creds) => format!(", AccessKey {}", mask_key_id(&creds.access_key_id)),
                    None => ", AccessKey from a profile or the ECS RAM role (`dbswatch whoami` \
                             shows which)"
                        .to_string(),
                }
            );
            for w in &c.warnings {
                println!("warning: {w}");
            }
            for w in &c.watches {
                println!(
                    "  watch {}: {} {} on \"{}\" -> {}",
                    w.name,
                    w.target.type_name(),
                    w.target.id(),
                    w.schedule.expr(),
                    w.channels.join(", ")
                );
            }
            for a in &c.accounts {
                println!(
                    "  account {}: region {}, endpoint {}",
                    a.name,
                    a.region,
                    crate::secret::display_url(&a.endpoint_url())
                );
            }
            // Where credentials would come from (files are read, nothing is contacted).
            for a in c.all_accounts() {
                match crate::dbs::credentials::resolve(&a.chain) {
                    Ok(p) => println!("  credentials {}: {}", a.name, p.source()),
                    Err(e) => println!("  credentials {}: none yet: {e}", a.name),
                }
            }
            for d in &c.discover {
                println!(
                    "  discover {}: {:?} on \"{}\" -> {}",
                    d.name,
                    d.kind,
                    d.schedule.expr(),
                    d.channels.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `precheck.item_changed x3, precheck.failed`: counts instead of thousands of repeats.
fn summarize_kinds(events: &[crate::event::Event]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for e in events {
        let kind = e.kind();
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    counts
        .iter()
        .map(|(k, n)| {
            if *n > 1 {
                format!("{k} x{n}")
            } else {
                k.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `LTAI5tAbCdEf` -> `LTAI****CdEf`: enough to tell keys apart, not enough to use one.
fn mask_key_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return "****".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

async fn poll_once(app: App, watch: Option<String>) -> ExitCode {
    let mut failed = false;
    if !app.config.discover.is_empty() {
        let found = app.discover().await;
        for e in &found.errors {
            println!("discovery failed: {e}");
            failed = true;
        }
    }
    if let Some(name) = &watch
        && app.find_watch(name).is_none()
    {
        let watches = app.watches();
        let names: Vec<_> = watches.iter().map(|w| w.name.as_str()).collect();
        eprintln!(
            "error: no watch named `{name}`; configured: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    }
    let names = watch.map(|w| vec![w]);
    let reports = app.poll_many(names.as_deref()).await;
    if let Some([name]) = names.as_deref()
        && reports.is_empty()
    {
        println!("{name}: the restore has finished; it is not polled any more");
    }
    for r in &reports {
        match (&r.outcome, &r.error) {
            (_, Some(e)) => {
                failed = true;
                println!("{}: poll failed: {e}", r.watch);
            }
            (Some(outcome), None) => {
                let kinds = summarize_kinds(&r.events);
                println!(
                    "{}: {}{}",
                    r.watch,
                    serde_json::to_value(outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    if kinds.is_empty() {
                        String::new()
                    } else {
                        format!(" -> {kinds}")
                    }
                );
            }
            (None, None) => {}
        }
    }
    match app.deliver_until_idle(100).await {
        Ok(d) => {
            if d.delivered + d.retrying + d.dead > 0 {
                println!(
                    "notifications: {} delivered, {} to retry, {} failed for good",
                    d.delivered, d.retrying, d.dead
                );
            }
            if d.muted > 0 {
                println!(
                    "notifications: {} muted as repeats (the channel's repeat_interval)",
                    d.muted
                );
            }
            if let Ok(counts) = app.store.outbox_counts().await
                && counts.pending > 0
            {
                println!(
                    "outbox: {} notification(s) pending for a later retry or a receiver's rate \
                     limit (see `dbswatch deliveries`)",
                    counts.pending
                );
            }
            for f in &d.failures {
                println!("  delivery failed: {f}");
            }
            if !d.failures.is_empty() {
                failed = true;
            }
        }
        Err(e) => {
            eprintln!(
                "error: delivery pass failed: {e}; pending messages are kept for the next run"
            );
            failed = true;
        }
    }
    scheduler::prune(&app).await;
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn replay(restore: bool, files: &[PathBuf]) -> ExitCode {
    let target = if restore {
        Target::RestoreTask("replay".into())
    } else {
        Target::BackupPlan("replay".into())
    };
    let mut snapshots = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let body = match std::fs::read_to_string(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        match crate::dbs::response::interpret(crate::dbs::response::Reply::new(200, &body)) {
            Ok(parsed) => snapshots.push((parsed.snapshot, i as i64)),
            Err(e) => {
                eprintln!("{}: skipped, not a usable response: {e}", file.display());
            }
        }
    }
    if snapshots.is_empty() {
        eprintln!("error: none of the files is a usable DescribePreCheckProgressList answer");
        return ExitCode::from(1);
    }
    let mut n = 0u64;
    let mut next_id = || {
        n += 1;
        format!("replay-{n}")
    };
    let events = diff::replay("replay", &target, None, snapshots, &mut next_id);
    for e in events {
        let mut value = serde_json::to_value(&e).expect("events serialise");
        value["kind"] = serde_json::Value::String(e.kind());
        value["file"] = serde_json::Value::String(
            files
                .get(e.observed_at_ms as usize)
                .map(|f| f.display().to_string())
                .unwrap_or_default(),
        );
        println!("{value}");
    }
    ExitCode::SUCCESS
}

async fn simulate_cmd(listen: String, scenario: Option<PathBuf>) -> ExitCode {
    let scenario = match scenario {
        Some(path) => match simulate::Scenario::load(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => simulate::Scenario::builtin_demo(),
    };
    let listener = match tokio::net::TcpListener::bind(listen.as_str()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {listen}: {e}\n\
                 Give --listen as host:port, e.g. 127.0.0.1:18080 (the default), and a port \
                 nothing else uses."
            );
            return ExitCode::from(1);
        }
    };
    eprintln!("DBS double listening on http://{listen} (Ctrl-C to stop)");
    let shutdown = scheduler::shutdown_on_signals();
    match simulate::serve(
        listener,
        scenario,
        async move { shutdown.cancelled().await },
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn render_cmd(
    path: &Path,
    channel: &str,
    event: Option<String>,
    event_file: Option<PathBuf>,
) -> ExitCode {
    use crate::commands::render::{Selection, previews};
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let selection = match (event, event_file) {
        (_, Some(file)) => Selection::File(file),
        (Some(kind), None) => Selection::Sample(kind),
        (None, None) => Selection::AllSamples,
    };
    match previews(&config, channel, &selection) {
        Ok(list) => {
            for preview in list {
                eprintln!("# {} -> {channel}", preview.kind);
                for note in &preview.notes {
                    eprintln!("#   {note}");
                }
                println!("{}", preview.body);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn test_channel_cmd(path: &Path, name: &str) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match crate::commands::test_channel::send_test(&config, name).await {
        Ok(result) => {
            println!("{}", result.summary);
            if result.report.outcome == crate::notify::Outcome::Delivered {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn deliveries_cmd(
    path: &Path,
    status: Option<DeliveryStatus>,
    channel: Option<String>,
    format: Format,
    limit: u32,
) -> ExitCode {
    use crate::commands::deliveries;
    let filter = crate::store::OutboxFilter {
        status: status.map(|s| s.as_str().to_string()),
        channel,
        limit: Some(i64::from(limit)),
    };
    match deliveries::list(path, &filter).await {
        Ok(rows) => {
            match format {
                Format::Table => print!("{}", deliveries::table(&rows)),
                Format::Json => print!("{}", deliveries::json_lines(&rows)),
                Format::Csv => {
                    eprintln!("error: deliveries prints as table or json");
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn redeliver_cmd(path: &Path, ids: &[i64]) -> ExitCode {
    use crate::commands::deliveries;
    let now = chrono::Utc::now().timestamp_millis();
    match deliveries::redeliver(path, ids, now).await {
        Ok(results) => {
            print!("{}", deliveries::redelivery_lines(&results));
            if results
                .iter()
                .all(|(_, r)| *r == crate::store::Redelivery::Requeued)
            {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_masked() {
        assert_eq!(mask_key_id("LTAI5tAbCdEfGh"), "LTAI****EfGh");
        assert_eq!(mask_key_id("short"), "****");
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
