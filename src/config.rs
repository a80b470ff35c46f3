//! The TOML configuration: loading, `${VAR}` expansion and validation.
//!
//! Loading never stops at the first problem: every unknown key, bad value, bad cron
//! expression, dangling channel reference and broken template is collected, with the line it
//! is on when it can be found, so `check-config` shows the whole list at once.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::{Table, Value};

use crate::dbs::credentials::ChainSettings;
use crate::dbs::{ClientOptions, Credentials, endpoint_for_region};
use crate::event::{ALL_KINDS, is_default_kind, kind_matches};
use crate::notify::{ChannelKind, ChannelSpec, CloudEventsMode};
use crate::render::{ChannelTemplate, Language};
use crate::schedule::CronSchedule;
use crate::secret::{Redactor, Secret};
use crate::snapshot::Target;

mod accounts;

pub use accounts::{DEFAULT_ACCOUNT, DbsSettings, DiscoverConfig, DiscoverKind};

pub mod outbox;

/// Where the config is read from when neither `-c` nor `DBSWATCH_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "dbswatch.toml";

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `file:line` when the line is known, else the file.
    pub location: String,
    /// The section and key, e.g. `watch "orders-db".schedule`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.path, self.message)
        }
    }
}

/// Every problem found while loading.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order as far as known.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "the configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// `[storage]`.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The SQLite file, created when missing. Relative paths are relative to the working
    /// directory, like every other tool's `--db` option.
    pub database: PathBuf,
    /// `retention`: raw snapshots and poll records older than this are pruned after each cycle.
    /// `None` keeps them forever.
    pub retention: Option<Duration>,
    /// `event_retention`: events, deliveries and attempts older than this are pruned (never
    /// shorter than `retention`). `None` keeps them forever.
    pub event_retention: Option<Duration>,
}

impl StorageConfig {
    /// What retention prunes.
    pub fn retention_policy(&self) -> crate::store::RetentionPolicy {
        crate::store::RetentionPolicy {
            retention: self.retention,
            event_retention: self.event_retention,
        }
    }
}

/// `[server]`: the read-only HTTP API, `/metrics` and `/healthz` of `dbswatch run`.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Where to listen; `None` serves nothing unless `run --listen` says so.
    pub listen: Option<std::net::SocketAddr>,
    /// Bearer token required on `/api/*`; required on a non-loopback address.
    pub token: Option<Secret>,
}

/// `[aliyun]`, and each `[[account]]`: one Alibaba Cloud account.
#[derive(Debug, Clone)]
pub struct AliyunConfig {
    /// Credentials, from the config or the `ALIBABA_CLOUD_*` environment variables. The full
    /// credential chain (profiles, ECS RAM role) is in `chain`; this is what the first two of its
    /// sources give.
    pub credentials: Option<Credentials>,
    /// Region, used to pick the endpoint.
    pub region: String,
    /// Base URL override (for the simulator, a proxy or a VPC host).
    pub endpoint: Option<String>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Retries of transient errors inside one poll.
    pub max_retries: u32,
    /// `default` for `[aliyun]`, the `name` of an `[[account]]`.
    pub name: String,
    /// Use the region's `dbs-api-vpc.` host.
    pub vpc: bool,
    /// Everything the credential chain needs (settings and captured environment).
    pub chain: ChainSettings,
}

impl AliyunConfig {
    /// The base URL polls go to.
    pub fn endpoint_url(&self) -> String {
        self.endpoint_for(None)
            .unwrap_or_else(|| endpoint_for_region(&self.region))
    }

    /// Client options derived from the settings.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            endpoint: self.endpoint_url(),
            timeout: self.timeout,
            connect_timeout: self.timeout.min(Duration::from_secs(5)),
            max_retries: self.max_retries,
            retry_base: Duration::from_millis(500),
        }
    }
}

/// `[delivery]`: how notifications are sent.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Per-request timeout towards receivers.
    pub timeout: Duration,
    /// First retry delay after a failed send; doubles per attempt.
    pub retry_base: Duration,
    /// Longest delay between two attempts.
    pub retry_max: Duration,
    /// How long a delivery is retried, counted from when it was written (or re-queued), before
    /// it is marked `dead` (`retry_budget`, default 24h).
    pub retry_budget: Duration,
    /// Failed polls of a watch in a row before `poll.failed` is announced (default 3).
    pub poll_failure_threshold: u32,
}

/// `[[watch]]`.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Unique name, used in messages, history and `--watch`.
    pub name: String,
    /// The backup plan or restore task.
    pub target: Target,
    /// When to poll.
    pub schedule: CronSchedule,
    /// Channel names this watch notifies.
    pub channels: Vec<String>,
    /// The `[[account]]` to poll with; `None` is `[aliyun]`.
    pub account: Option<String>,
    /// A region other than the account's (watches found by a `[[discover]]` with `region`).
    pub region: Option<String>,
}

/// `[[channel]]`.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Everything the sender needs.
    pub spec: ChannelSpec,
    /// Event kind filters (globs); `None` means the default set.
    pub events: Option<Vec<String>>,
    /// Override template, resolved against the config file's folder.
    pub template: Option<PathBuf>,
    /// The channel's own `language`; `None` follows the top-level one.
    pub language: Option<Language>,
    /// DingTalk: send an actionCard with a button to the DBS console.
    pub action_card: bool,
    /// `rate_limit`: the channel's own send rate, instead of the receiver's default.
    pub rate_limit: Option<crate::ratelimit::Rate>,
    /// `repeat_interval`: the same transition of a watch within this span is recorded but not
    /// sent again (a flapping plan), and the next message says how many were muted.
    pub repeat_interval: Option<Duration>,
}

impl ChannelConfig {
    /// The send rates the delivery pass keeps to for this channel's receiver: its
    /// `rate_limit`, else the receiver's documented limit (none for generic webhooks).
    pub fn rates(&self) -> Vec<crate::ratelimit::Rate> {
        match self.rate_limit {
            Some(rate) => vec![rate],
            None => outbox::default_rates(self.spec.kind),
        }
    }

    /// Does this channel want events of `kind`?
    pub fn accepts(&self, kind: &str) -> bool {
        match &self.events {
            Some(patterns) => patterns.iter().any(|p| kind_matches(p, kind)),
            None => is_default_kind(kind),
        }
    }

    /// What the renderer needs, with the defaults (English, UTC, cn-hangzhou) where the
    /// channel says nothing; [`Config::templates`] fills in the top-level settings.
    pub fn template_spec(&self) -> ChannelTemplate {
        ChannelTemplate {
            template: self.template.clone(),
            at_mobiles: self.spec.at_mobiles.clone(),
            language: self.language.unwrap_or_default(),
            keyword: self.spec.keyword.clone(),
            action_card: self.action_card,
            cloudevents: self.spec.cloudevents.is_some(),
            ..ChannelTemplate::new(self.spec.name.clone(), self.spec.kind)
        }
    }
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub source: PathBuf,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[aliyun]`.
    pub aliyun: AliyunConfig,
    /// `[delivery]`.
    pub delivery: DeliveryConfig,
    /// `[[watch]]` blocks.
    pub watches: Vec<WatchConfig>,
    /// `[[channel]]` blocks.
    pub channels: Vec<ChannelConfig>,
    /// Top-level `timezone`: how times are shown to people (messages, history). Storage and
    /// schedules stay in UTC.
    pub timezone: chrono_tz::Tz,
    /// Settings that work but are probably not what was meant (shown by `check-config`).
    pub warnings: Vec<ConfigProblem>,
    /// Top-level `language` of messages (`en` or `zh-CN`); a channel's own `language` wins.
    pub language: Language,
    /// `[[account]]` blocks; `[aliyun]` (the account named `default`) is the `aliyun` field.
    pub accounts: Vec<AliyunConfig>,
    /// `[[discover]]` blocks.
    pub discover: Vec<DiscoverConfig>,
    /// `[dbs]`: rate limit, concurrency, jitter, stopping finished restores.
    pub dbs: DbsSettings,
    /// `[server]`.
    pub server: ServerConfig,
}

impl Config {
    /// The channel with this name.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.spec.name == name)
    }

    /// The watch with this name.
    pub fn watch(&self, name: &str) -> Option<&WatchConfig> {
        self.watches.iter().find(|w| w.name == name)
    }

    /// The account called `name` (`None` or `default` is `[aliyun]`).
    pub fn account(&self, name: Option<&str>) -> Option<&AliyunConfig> {
        match name {
            None | Some(DEFAULT_ACCOUNT) => Some(&self.aliyun),
            Some(name) => self.accounts.iter().find(|a| a.name == name),
        }
    }

    /// `[aliyun]` followed by every `[[account]]`.
    pub fn all_accounts(&self) -> impl Iterator<Item = &AliyunConfig> {
        std::iter::once(&self.aliyun).chain(self.accounts.iter())
    }

    /// A redactor that knows every secret in this configuration.
    pub fn redactor(&self) -> Redactor {
        let mut r = Redactor::new();
        for account in self.all_accounts() {
            if let Some(c) = &account.credentials {
                r.add_secret(&c.access_key_secret);
                if let Some(t) = &c.security_token {
                    r.add_secret(t);
                }
            }
        }
        for ch in &self.channels {
            r.add_secret(&ch.spec.url);
            if let Some(s) = &ch.spec.secret {
                r.add_secret(s);
            }
        }
        if let Some(t) = &self.server.token {
            r.add_secret(t);
        }
        r
    }

    /// Channel templates for the renderer, with the top-level language, time zone and region.
    pub fn templates(&self) -> Vec<ChannelTemplate> {
        self.channels
            .iter()
            .map(|c| ChannelTemplate {
                language: c.language.unwrap_or(self.language),
                timezone: self.timezone,
                region: self.aliyun.region.clone(),
                ..c.template_spec()
            })
            .collect()
    }
}

/// Which file to read: `-c`, then `DBSWATCH_CONFIG`, then `./dbswatch.toml`.
pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os("DBSWATCH_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// The database file named by `[storage] database`, relative paths taken from the config
/// file's folder (like template paths), `dbswatch.db` beside the config by default.
fn resolve_database(database: Option<&str>, base_dir: &Path) -> PathBuf {
    let path = PathBuf::from(database.unwrap_or("dbswatch.db"));
    if path.is_absolute() {
        path
    } else {
        base_dir.join(path)
    }
}

/// Only the database path of a config file, for read-only commands such as `history`: they
/// must work for an auditor who has the file but not the tokens its `${VAR}`s refer to.
pub fn database_path(path: &Path) -> Result<PathBuf, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![ConfigProblem {
            location: path.display().to_string(),
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
        }],
    })?;
    let problem = |message: String| ConfigError {
        problems: vec![ConfigProblem {
            location: path.display().to_string(),
            path: "storage.database".into(),
            message,
        }],
    };
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| problem(format!("not valid TOML: {}", e.message())))?;
    let raw = match table.get("storage").and_then(|s| s.get("database")) {
        None => None,
        Some(Value::String(s)) => Some(
            expand_str(s, &|name| std::env::var(name).ok())
                .map_err(|v| problem(format!("environment variable {v} is not set")))?,
        ),
        Some(_) => return Err(problem("`database` must be a string".into())),
    };
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(resolve_database(raw.as_deref(), &base_dir))
}

/// The configuration as read-only commands (`history`, `timeline`, `stats`, ...) need it: the
/// sections that hold credentials and receiver URLs are left out before validation, so an
/// auditor can read the history with the config file but without the secrets its `${VAR}`s
/// refer to.
pub fn load_for_reading(path: &Path) -> Result<Config, ConfigError> {
    let text = read_config_text(path)?;
    let Ok(mut table) = text.parse::<Table>() else {
        // Let the full parser report the syntax error with its line.
        return parse(&text, path, &|name| std::env::var(name).ok());
    };
    for section in ["channel", "aliyun", "account", "discover", "server"] {
        table.remove(section);
    }
    if let Some(Value::Array(watches)) = table.get_mut("watch") {
        for w in watches.iter_mut() {
            if let Value::Table(t) = w {
                t.remove("channels");
                t.remove("account");
            }
        }
    }
    let reduced = toml::to_string(&table).unwrap_or_default();
    parse(&reduced, path, &|name| std::env::var(name).ok())
}

/// Read and validate a config file, with `${VAR}` taken from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read_config_text(path)?;
    parse(&text, path, &|name| std::env::var(name).ok())
}

/// The file's text, or a problem that says what to do: a missing file is the usual first-run
/// mistake (wrong directory, no `-c`), so it says where a config comes from.
fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![ConfigProblem {
            location: path.display().to_string(),
            path: String::new(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                MISSING_FILE.to_string()
            } else {
                format!("cannot read the file: {e}")
            },
        }],
    })
}

const MISSING_FILE: &str = "file not found: create it (README.md has a complete example) or \
                            point -c / DBSWATCH_CONFIG at your config";

impl ConfigError {
    /// What to do after reading the problems: fix the file, or (when there is no file) the
    /// problem itself already says.
    pub fn next_step(&self) -> &'static str {
        if self.problems.iter().any(|p| p.message == MISSING_FILE) {
            ""
        } else {
            "Fix the file and run `dbswatch check-config` to confirm.\n"
        }
    }
}

/// Parse and validate config text. `env` looks variables up (injected for tests).
pub fn parse(
    text: &str,
    source: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut p = Problems {
        text,
        file: source.display().to_string(),
        list: Vec::new(),
        unexpanded: HashSet::new(),
        warnings: Vec::new(),
    };
    let mut table: Table = match text.parse::<Table>() {
        Ok(t) => t,
        Err(e) => {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            p.list.push(ConfigProblem {
                location: match line {
                    Some(l) => format!("{}:{l}", p.file),
                    None => p.file.clone(),
                },
                path: String::new(),
                message: format!(
                    "not valid TOML: {}",
                    e.message().trim_end_matches('\n').trim()
                ),
            });
            return Err(ConfigError { problems: p.list });
        }
    };

    expand_env(&mut table, &mut Vec::new(), env, &mut p);
    check_unknown_keys(&table, &mut p);

    let storage = section::<RawStorage>(&table, "storage", &mut p).unwrap_or_default();
    let aliyun_raw = section::<RawAliyun>(&table, "aliyun", &mut p).unwrap_or_default();
    let delivery_raw = section::<RawDelivery>(&table, "delivery", &mut p).unwrap_or_default();
    let raw_watches = array::<RawWatch>(&table, "watch", &mut p);
    let raw_channels = array::<RawChannel>(&table, "channel", &mut p);
    let dbs_raw = section::<accounts::RawDbs>(&table, "dbs", &mut p).unwrap_or_default();
    let raw_accounts = array::<accounts::RawAccount>(&table, "account", &mut p);
    let raw_discover = array::<accounts::RawDiscover>(&table, "discover", &mut p);
    let server_raw = section::<RawServer>(&table, "server", &mut p).unwrap_or_default();

    let timezone = build_timezone(&table, &mut p);
    let language = build_language(&table, &mut p);
    let aliyun = accounts::build_account(
        aliyun_raw,
        DEFAULT_ACCOUNT.to_string(),
        "aliyun",
        None,
        env,
        &mut p,
    );
    let extra_accounts = accounts::build_accounts(raw_accounts, env, &mut p);
    let account_names: Vec<String> = std::iter::once(DEFAULT_ACCOUNT.to_string())
        .chain(extra_accounts.iter().map(|a| a.name.clone()))
        .collect();
    let dbs = accounts::build_dbs(dbs_raw, &mut p);
    let base_dir = source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let channels = build_channels(raw_channels, &base_dir, &mut p);
    let declared: Vec<String> = match table.get("channel") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let watches = build_watches(raw_watches, &channels, &declared, &account_names, &mut p);
    let channel_names: Vec<&str> = channels.iter().map(|c| c.spec.name.as_str()).collect();
    let watch_names: Vec<String> = watches.iter().map(|w| w.name.clone()).collect();
    let discover = accounts::build_discover(
        raw_discover,
        &account_names,
        &channel_names,
        &watch_names,
        &mut p,
    );
    let (retention, event_retention) = build_retention(&storage, &mut p);
    let server = build_server(server_raw, &mut p);

    let config = Config {
        source: source.to_path_buf(),
        storage: StorageConfig {
            database: resolve_database(storage.database.as_deref(), &base_dir),
            retention,
            event_retention,
        },
        aliyun,
        delivery: build_delivery(delivery_raw, &mut p),
        watches,
        channels,
        timezone,
        warnings: Vec::new(),
        language,
        accounts: extra_accounts,
        discover,
        dbs,
        server,
    };

    // Templates are checked only when the rest is sound, so a typo in a channel name does not
    // also show up as a confusing template error.
    if p.list.is_empty() {
        match crate::render::Renderer::new(&config.templates()) {
            Ok(renderer) => {
                for e in renderer.check() {
                    p.push_plain(format!("template: {e}"));
                }
            }
            Err(errors) => {
                for e in errors {
                    p.push_plain(format!("template: {e}"));
                }
            }
        }
    }

    if config.watches.is_empty() && p.list.is_empty() {
        p.warn(
            "",
            None,
            None,
            "no [[watch]] is configured: nothing will be polled".into(),
        );
    }
    if p.list.is_empty() {
        let mut config = config;
        config.warnings = p.warnings;
        Ok(config)
    } else {
        Err(ConfigError { problems: p.list })
    }
}

struct Problems<'a> {
    text: &'a str,
    file: String,
    list: Vec<ConfigProblem>,
    /// Keys whose `${VAR}` could not be expanded: their value is meaningless, so no further
    /// problem is reported for them.
    unexpanded: HashSet<String>,
    /// Things that work but are probably not what was meant.
    warnings: Vec<ConfigProblem>,
}

impl Problems<'_> {
    /// Record a problem at `section[index].key`, finding its line in the text when possible.
    /// Only the first problem of each key is kept: a value that failed `${VAR}` expansion is
    /// not reported again as an invalid URL.
    fn push(&mut self, section: &str, index: Option<usize>, key: Option<&str>, message: String) {
        let path = display_path(section, index, key);
        if self.unexpanded.contains(&path) {
            return;
        }
        let problem = self.problem(section, index, key, path, message);
        self.list.push(problem);
    }

    /// Record a warning: reported by `check-config`, does not stop the program.
    fn warn(&mut self, section: &str, index: Option<usize>, key: Option<&str>, message: String) {
        let path = display_path(section, index, key);
        let problem = self.problem(section, index, key, path, message);
        self.warnings.push(problem);
    }

    fn problem(
        &self,
        section: &str,
        index: Option<usize>,
        key: Option<&str>,
        path: String,
        message: String,
    ) -> ConfigProblem {
        let line = locate(self.text, section, index, key)
            .or_else(|| locate(self.text, section, index, None));
        ConfigProblem {
            location: match line {
                Some(l) => format!("{}:{l}", self.file),
                None => self.file.clone(),
            },
            path,
            message: message.replace('\n', " "),
        }
    }

    fn push_plain(&mut self, message: String) {
        self.list.push(ConfigProblem {
            location: self.file.clone(),
            path: String::new(),
            message,
        });
    }
}

fn display_path(section: &str, index: Option<usize>, key: Option<&str>) -> String {
    let mut s = match index {
        Some(i) => format!("{section}[{}]", i + 1),
        None if section.is_empty() => String::new(),
        None => section.to_string(),
    };
    if let Some(k) = key {
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(k);
    }
    s
}

/// The 1-based line of `key` inside the `index`-th `[[section]]` (or `[section]`), or of the
/// section header itself when no key is given.
fn locate(text: &str, section: &str, index: Option<usize>, key: Option<&str>) -> Option<usize> {
    let header = match index {
        Some(_) => format!("[[{section}]]"),
        None => format!("[{section}]"),
    };
    let mut seen = 0usize;
    let mut inside = section.is_empty();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let compact: String = t
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            if compact == header {
                inside = index.is_none_or(|i| seen == i);
                seen += 1;
                if inside && key.is_none() {
                    return Some(n + 1);
                }
            } else {
                inside = false;
            }
            continue;
        }
        if inside && let Some(k) = key {
            let name = t.split('=').next().unwrap_or("").trim().trim_matches('"');
            if t.contains('=') && name == k {
                return Some(n + 1);
            }
        }
    }
    None
}

/// Replace `${NAME}` in every string with the variable's value; `$${` is a literal `${`.
fn expand_env(
    table: &mut Table,
    path: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems<'_>,
) {
    for (key, value) in table.iter_mut() {
        path.push(key.clone());
        expand_value(value, path, env, p);
        path.pop();
    }
}

fn expand_value(
    value: &mut Value,
    path: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems<'_>,
) {
    match value {
        Value::String(s) => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(missing) => {
                let (section, index, key) = split_path(path);
                p.unexpanded
                    .remove(&display_path(&section, index, key.as_deref()));
                p.push(
                    &section,
                    index,
                    key.as_deref(),
                    format!(
                        "environment variable {missing} is not set (referenced as ${{{missing}}}); \
                         export it or write the value in the file"
                    ),
                );
                p.unexpanded
                    .insert(display_path(&section, index, key.as_deref()));
            }
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                expand_value(item, path, env, p);
                path.pop();
            }
        }
        Value::Table(t) => expand_env(t, path, env, p),
        _ => {}
    }
}

/// Turn a value path like `["watch", "0", "schedule"]` into (section, index, key).
fn split_path(path: &[String]) -> (String, Option<usize>, Option<String>) {
    let section = path.first().cloned().unwrap_or_default();
    let index = path.get(1).and_then(|s| s.parse::<usize>().ok());
    let key_at = if index.is_some() { 2 } else { 1 };
    (section, index, path.get(key_at).cloned())
}

fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix("${")
            && let Some(end) = inner.find('}')
        {
            let name = &inner[..end];
            match env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(name.to_string()),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

const TOP_KEYS: &[&str] = &[
    "timezone", "storage", "aliyun", "delivery", "watch", "channel", "language", "dbs", "account",
    "discover", "server",
];
const STORAGE_KEYS: &[&str] = &["database", "retention", "event_retention"];
const SERVER_KEYS: &[&str] = &["listen", "token"];
/// `[aliyun]` takes every `[[account]]` key but `name` (it is the account named `default`).
const ALIYUN_KEYS: &[&str] = match accounts::ACCOUNT_KEYS.split_first() {
    Some((_, rest)) => rest,
    None => &[],
};
const DELIVERY_KEYS: &[&str] = &[
    "timeout_secs",
    "retry_base_secs",
    "retry_max_secs",
    "retry_budget",
    "poll_failure_threshold",
];
const WATCH_KEYS: &[&str] = &[
    "name",
    "backup_plan_id",
    "restore_task_id",
    "schedule",
    "channels",
    "account",
];
const CHANNEL_KEYS: &[&str] = &[
    "name",
    "type",
    "url",
    "secret",
    "at_mobiles",
    "events",
    "template",
    "language",
    "keyword",
    "action_card",
    "cloudevents",
    "rate_limit",
    "repeat_interval",
];

fn check_unknown_keys(table: &Table, p: &mut Problems<'_>) {
    for key in table.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            p.push(
                "",
                None,
                Some(key),
                unknown_key_message(key, TOP_KEYS, "at the top level"),
            );
        }
    }
    for (section, known) in [
        ("storage", STORAGE_KEYS),
        ("aliyun", ALIYUN_KEYS),
        ("delivery", DELIVERY_KEYS),
        ("dbs", accounts::DBS_KEYS),
        ("server", SERVER_KEYS),
    ] {
        if let Some(Value::Table(t)) = table.get(section) {
            for key in t.keys().filter(|k| !known.contains(&k.as_str())) {
                p.push(
                    section,
                    None,
                    Some(key),
                    unknown_key_message(key, known, &format!("in [{section}]")),
                );
            }
        }
    }
    for (section, known) in [
        ("watch", WATCH_KEYS),
        ("channel", CHANNEL_KEYS),
        ("account", accounts::ACCOUNT_KEYS),
        ("discover", accounts::DISCOVER_KEYS),
    ] {
        if let Some(Value::Array(items)) = table.get(section) {
            for (i, item) in items.iter().enumerate() {
                if let Value::Table(t) = item {
                    for key in t.keys().filter(|k| !known.contains(&k.as_str())) {
                        p.push(
                            section,
                            Some(i),
                            Some(key),
                            unknown_key_message(key, known, &format!("in [[{section}]]")),
                        );
                    }
                }
            }
        }
    }
}

fn unknown_key_message(key: &str, known: &[&str], place: &str) -> String {
    let close = known
        .iter()
        .min_by_key(|k| edit_distance(key, k))
        .filter(|k| edit_distance(key, k) <= 2);
    match close {
        Some(k) => format!("unknown key `{key}` {place}; did you mean `{k}`?"),
        None => format!(
            "unknown key `{key}` {place}; known keys: {}",
            known.join(", ")
        ),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[derive(Debug, Default, Deserialize)]
struct RawStorage {
    database: Option<String>,
    retention: Option<String>,
    event_retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawServer {
    listen: Option<String>,
    token: Option<Secret>,
}

/// `[storage] retention` and `event_retention`: durations such as "180d"; events are kept at
/// least as long as snapshots, so an event never outlives the evidence it was built from.
fn build_retention(raw: &RawStorage, p: &mut Problems<'_>) -> (Option<Duration>, Option<Duration>) {
    let mut parse = |key: &str, value: &Option<String>| -> Option<Duration> {
        let text = value.as_deref()?;
        match crate::audit::when::parse_duration(text) {
            Ok(d) if d.as_secs() >= 3_600 => Some(d),
            Ok(_) => {
                p.push(
                    "storage",
                    None,
                    Some(key),
                    format!("`{text}` is too short: keep at least 1h"),
                );
                None
            }
            Err(e) => {
                p.push("storage", None, Some(key), e);
                None
            }
        }
    };
    let retention = parse("retention", &raw.retention);
    let event_retention = parse("event_retention", &raw.event_retention);
    if let (Some(r), Some(e)) = (retention, event_retention)
        && e < r
    {
        p.push(
            "storage",
            None,
            Some("event_retention"),
            "`event_retention` must be at least `retention`: events are the audit trail and \
             outlive raw snapshots"
                .to_string(),
        );
    }
    (retention, event_retention)
}

/// Shortest accepted API token: guessing must stay out of reach.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the API may not listen on `addr` with this token, if it may not.
pub fn server_exposure_problem(
    addr: &std::net::SocketAddr,
    token: Option<&Secret>,
) -> Option<String> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Some(format!(
            "refusing to serve the API on {addr} without a token: set [server] token (e.g. \
             token = \"${{DBSWATCH_API_TOKEN}}\") or listen on 127.0.0.1"
        ));
    }
    None
}

fn build_server(raw: RawServer, p: &mut Problems<'_>) -> ServerConfig {
    let token = raw.token.filter(|t| !t.is_empty());
    if let Some(t) = &token
        && t.expose().len() < MIN_TOKEN_LEN
    {
        p.push(
            "server",
            None,
            Some("token"),
            format!(
                "the token is shorter than {MIN_TOKEN_LEN} characters; generate one with: \
                 head -c 24 /dev/urandom | base64"
            ),
        );
    }
    let listen =
        raw.listen
            .as_deref()
            .and_then(|text| match text.trim().parse::<std::net::SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    p.push(
                        "server",
                        None,
                        Some("listen"),
                        format!("`{text}` is not an address: write it as 127.0.0.1:9187"),
                    );
                    None
                }
            });
    if let Some(addr) = &listen
        && let Some(problem) = server_exposure_problem(addr, token.as_ref())
    {
        p.push("server", None, Some("listen"), problem);
    }
    ServerConfig { listen, token }
}

#[derive(Debug, Default, Deserialize)]
struct RawAliyun {
    access_key_id: Option<String>,
    access_key_secret: Option<Secret>,
    security_token: Option<Secret>,
    region: Option<String>,
    endpoint: Option<String>,
    timeout_secs: Option<u64>,
    max_retries: Option<u32>,
    profile: Option<String>,
    credential_source: Option<String>,
    vpc: Option<bool>,
    cli_config_file: Option<String>,
    credentials_file: Option<String>,
    ecs_ram_role: Option<String>,
    metadata_endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawDelivery {
    timeout_secs: Option<u64>,
    retry_base_secs: Option<u64>,
    retry_max_secs: Option<u64>,
    retry_budget: Option<String>,
    poll_failure_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct RawWatch {
    name: Option<String>,
    backup_plan_id: Option<String>,
    restore_task_id: Option<String>,
    schedule: Option<String>,
    channels: Option<Vec<String>>,
    account: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawChannel {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<Secret>,
    secret: Option<Secret>,
    at_mobiles: Option<Vec<String>>,
    events: Option<Vec<String>>,
    template: Option<String>,
    language: Option<String>,
    keyword: Option<String>,
    action_card: Option<bool>,
    cloudevents: Option<String>,
    rate_limit: Option<String>,
    repeat_interval: Option<String>,
}

/// Deserialise `[name]`, reporting a type error against the section.
fn section<T: for<'de> Deserialize<'de>>(
    table: &Table,
    name: &str,
    p: &mut Problems<'_>,
) -> Option<T> {
    let value = table.get(name)?;
    if !value.is_table() {
        p.push(
            "",
            None,
            Some(name),
            format!("`{name}` must be a table: write it as [{name}]"),
        );
        return None;
    }
    deserialize_located(value.clone(), name, None, p)
}

/// Deserialise every `[[name]]` entry, reporting type errors against each entry.
fn array<T: for<'de> Deserialize<'de>>(table: &Table, name: &str, p: &mut Problems<'_>) -> Vec<T> {
    let Some(value) = table.get(name) else {
        return Vec::new();
    };
    let Value::Array(items) = value else {
        p.push(
            "",
            None,
            Some(name),
            format!("`{name}` must be a list of tables: write each one as [[{name}]]"),
        );
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| deserialize_located(item.clone(), name, Some(i), p))
        .collect()
}

fn deserialize_located<T: for<'de> Deserialize<'de>>(
    value: Value,
    section: &str,
    index: Option<usize>,
    p: &mut Problems<'_>,
) -> Option<T> {
    match T::deserialize(value.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            // Name the key whose value has the wrong type when we can find it.
            let key = value.as_table().and_then(|t| {
                t.keys()
                    .find(|k| e.to_string().contains(&format!("`{k}`")))
                    .cloned()
            });
            p.push(
                section,
                index,
                key.as_deref(),
                format!("wrong type: {}", e.to_string().trim()),
            );
            None
        }
    }
}

fn build_delivery(raw: RawDelivery, p: &mut Problems<'_>) -> DeliveryConfig {
    let mut positive = |key: &str, value: Option<u64>, default: u64| -> u64 {
        match value {
            Some(0) => {
                p.push(
                    "delivery",
                    None,
                    Some(key),
                    format!("`{key}` must be at least 1 second"),
                );
                default
            }
            Some(v) => v,
            None => default,
        }
    };
    let timeout = positive("timeout_secs", raw.timeout_secs, 10);
    let base = positive("retry_base_secs", raw.retry_base_secs, 30);
    let max = positive("retry_max_secs", raw.retry_max_secs, 3600);
    if base > max {
        p.push(
            "delivery",
            None,
            Some("retry_base_secs"),
            format!("`retry_base_secs` ({base}) is larger than `retry_max_secs` ({max})"),
        );
    }
    let retry_budget = match raw.retry_budget.as_deref().map(outbox::parse_duration) {
        None => outbox::DEFAULT_RETRY_BUDGET,
        Some(Ok(d)) if d.is_zero() => {
            p.push(
                "delivery",
                None,
                Some("retry_budget"),
                "`retry_budget` must be longer than 0s: it is how long a failed message is \
                 retried before it is marked dead"
                    .into(),
            );
            outbox::DEFAULT_RETRY_BUDGET
        }
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            p.push("delivery", None, Some("retry_budget"), e);
            outbox::DEFAULT_RETRY_BUDGET
        }
    };
    let poll_failure_threshold = match raw.poll_failure_threshold {
        Some(0) => {
            p.push(
                "delivery",
                None,
                Some("poll_failure_threshold"),
                "`poll_failure_threshold` must be at least 1 (failed polls in a row before \
                 poll.failed is announced)"
                    .into(),
            );
            outbox::DEFAULT_POLL_FAILURE_THRESHOLD
        }
        Some(n) => n,
        None => outbox::DEFAULT_POLL_FAILURE_THRESHOLD,
    };
    DeliveryConfig {
        timeout: Duration::from_secs(timeout),
        retry_base: Duration::from_secs(base),
        retry_max: Duration::from_secs(max),
        retry_budget,
        poll_failure_threshold,
    }
}

/// The top-level `timezone`: an IANA name such as `Asia/Shanghai`; UTC when absent.
fn build_timezone(table: &Table, p: &mut Problems<'_>) -> chrono_tz::Tz {
    match table.get("timezone") {
        None => chrono_tz::UTC,
        Some(Value::String(name)) => match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                p.push(
                    "",
                    None,
                    Some("timezone"),
                    format!(
                        "`{name}` is not an IANA time zone name; use e.g. \"Asia/Shanghai\", \
                         \"Europe/Berlin\" or \"UTC\""
                    ),
                );
                chrono_tz::UTC
            }
        },
        Some(_) => {
            p.push(
                "",
                None,
                Some("timezone"),
                "`timezone` must be a string such as \"Asia/Shanghai\"".to_string(),
            );
            chrono_tz::UTC
        }
    }
}

/// The top-level `language`: `en` or `zh-CN`; English when absent.
fn build_language(table: &Table, p: &mut Problems<'_>) -> Language {
    match table.get("language") {
        None => Language::default(),
        Some(Value::String(tag)) => Language::parse(tag).unwrap_or_else(|| {
            p.push("", None, Some("language"), unknown_language(tag));
            Language::default()
        }),
        Some(_) => {
            p.push(
                "",
                None,
                Some("language"),
                "`language` must be a string: \"en\" or \"zh-CN\"".to_string(),
            );
            Language::default()
        }
    }
}

fn unknown_language(tag: &str) -> String {
    format!(
        "unknown language `{tag}`; built-in messages exist in {}",
        Language::ALL
            .iter()
            .map(|l| format!("\"{}\"", l.as_str()))
            .collect::<Vec<_>>()
            .join(" and ")
    )
}

fn build_channels(
    raw: Vec<RawChannel>,
    base_dir: &Path,
    p: &mut Problems<'_>,
) -> Vec<ChannelConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let mut ok = true;
        let name = match c.name.filter(|n| !n.trim().is_empty()) {
            Some(n) => n,
            None => {
                p.push(
                    "channel",
                    Some(i),
                    Some("name"),
                    "every channel needs a `name`".into(),
                );
                ok = false;
                format!("#{}", i + 1)
            }
        };
        if !seen.insert(name.clone()) {
            p.push(
                "channel",
                Some(i),
                Some("name"),
                format!("channel name `{name}` is used twice; names must be unique"),
            );
            ok = false;
        }
        let kind = match c.kind.as_deref() {
            Some(text) => match ChannelKind::parse(text) {
                Some(kind) => Some(kind),
                None => {
                    p.push(
                        "channel",
                        Some(i),
                        Some("type"),
                        format!(
                            "channel `{name}`: unknown type `{text}`; use dingtalk, slack, webhook, feishu or wecom"
                        ),
                    );
                    None
                }
            },
            None => {
                p.push(
                    "channel",
                    Some(i),
                    Some("type"),
                    format!(
                        "channel `{name}` needs a `type`: dingtalk, slack, webhook, feishu or wecom"
                    ),
                );
                None
            }
        };
        let url = match c.url {
            Some(u) if u.expose().starts_with("https://") || u.expose().starts_with("http://") => {
                Some(u)
            }
            Some(u) if u.is_empty() => {
                p.push(
                    "channel",
                    Some(i),
                    Some("url"),
                    format!("channel `{name}`: `url` is empty (an unset variable?)"),
                );
                None
            }
            Some(_) => {
                p.push(
                    "channel",
                    Some(i),
                    Some("url"),
                    format!("channel `{name}`: `url` must start with https:// or http://"),
                );
                None
            }
            None => {
                p.push(
                    "channel",
                    Some(i),
                    Some("url"),
                    format!("channel `{name}` needs a `url`"),
                );
                None
            }
        };
        let secret = c.secret.filter(|s| !s.is_empty());
        if let (Some(ChannelKind::Webhook), Some(s)) = (kind, &secret)
            && let Err(e) = webhook_secret_bytes(s.expose())
        {
            p.push(
                "channel",
                Some(i),
                Some("secret"),
                format!("channel `{name}`: {e}"),
            );
        }
        if let (Some(ChannelKind::Slack), Some(_)) = (kind, &secret) {
            p.push(
                "channel",
                Some(i),
                Some("secret"),
                format!("channel `{name}`: Slack incoming webhooks take no signing secret; remove `secret`"),
            );
        }
        if let (Some(ChannelKind::Wecom), Some(_)) = (kind, &secret) {
            p.push(
                "channel",
                Some(i),
                Some("secret"),
                format!("channel `{name}`: WeCom group bots take no signing secret (the `key` in the URL is the credential); remove `secret`"),
            );
        }
        if let (Some(ChannelKind::Wecom), Some(u)) = (kind, &url)
            && !u.expose().contains("key=")
        {
            p.push(
                "channel",
                Some(i),
                Some("url"),
                format!("channel `{name}`: a WeCom bot URL carries its key, like https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…; paste the whole webhook URL"),
            );
        }
        let at_mobiles = c.at_mobiles.unwrap_or_default();
        for m in &at_mobiles {
            let digits = m.strip_prefix('+').unwrap_or(m);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '-') {
                p.push(
                    "channel",
                    Some(i),
                    Some("at_mobiles"),
                    format!("channel `{name}`: `{m}` is not a mobile number (digits only)"),
                );
            }
        }
        if !at_mobiles.is_empty() && kind != Some(ChannelKind::Dingtalk) {
            p.push(
                "channel",
                Some(i),
                Some("at_mobiles"),
                format!("channel `{name}`: `at_mobiles` only works for dingtalk channels"),
            );
        }
        let action_card = c.action_card.unwrap_or(false);
        if action_card && kind != Some(ChannelKind::Dingtalk) {
            p.push(
                "channel",
                Some(i),
                Some("action_card"),
                format!("channel `{name}`: `action_card` only works for dingtalk channels"),
            );
        }
        if action_card && !at_mobiles.is_empty() {
            p.push(
                "channel",
                Some(i),
                Some("action_card"),
                format!("channel `{name}`: DingTalk cannot @-mention anyone in an actionCard; remove `at_mobiles` or `action_card`"),
            );
        }
        let keyword = match c.keyword {
            Some(k) if k.trim().is_empty() => {
                p.push(
                    "channel",
                    Some(i),
                    Some("keyword"),
                    format!("channel `{name}`: `keyword` is empty; write the robot's keyword or remove the key"),
                );
                None
            }
            other => other,
        };
        if let Some(k) = &keyword {
            if !matches!(
                kind,
                Some(ChannelKind::Dingtalk | ChannelKind::Feishu) | None
            ) {
                p.push(
                    "channel",
                    Some(i),
                    Some("keyword"),
                    format!("channel `{name}`: `keyword` only applies to dingtalk and feishu robots with keyword security"),
                );
            } else if k.chars().count() > 100 {
                p.push(
                    "channel",
                    Some(i),
                    Some("keyword"),
                    format!("channel `{name}`: `keyword` is over 100 characters; robots' keywords are short words such as \"DBS\""),
                );
            }
        }
        let cloudevents = match c.cloudevents.as_deref() {
            None => None,
            Some(text) => match CloudEventsMode::parse(text) {
                Some(_) if kind.is_some() && kind != Some(ChannelKind::Webhook) => {
                    p.push(
                        "channel",
                        Some(i),
                        Some("cloudevents"),
                        format!("channel `{name}`: `cloudevents` only works for webhook channels"),
                    );
                    None
                }
                Some(mode) => Some(mode),
                None => {
                    p.push(
                        "channel",
                        Some(i),
                        Some("cloudevents"),
                        format!("channel `{name}`: `cloudevents` is `{text}`; use \"structured\" (one JSON body) or \"binary\" (data as body, attributes as ce-* headers)"),
                    );
                    None
                }
            },
        };
        let language = c.language.as_deref().and_then(|tag| {
            let parsed = Language::parse(tag);
            if parsed.is_none() {
                p.push("channel", Some(i), Some("language"), unknown_language(tag));
            }
            parsed
        });
        if let Some(events) = &c.events {
            for pattern in events {
                if !ALL_KINDS.iter().any(|k| kind_matches(pattern, k)) {
                    p.push(
                        "channel",
                        Some(i),
                        Some("events"),
                        format!(
                            "channel `{name}`: `{pattern}` matches no event kind; kinds are {}",
                            ALL_KINDS.join(", ")
                        ),
                    );
                }
            }
        }
        let rate_limit = c.rate_limit.as_deref().and_then(|text| {
            outbox::parse_rate_limit(kind, text)
                .map_err(|e| {
                    p.push(
                        "channel",
                        Some(i),
                        Some("rate_limit"),
                        format!("channel `{name}`: {e}"),
                    )
                })
                .ok()
        });
        let repeat_interval = match c.repeat_interval.as_deref().map(outbox::parse_duration) {
            None => None,
            Some(Ok(d)) if d.is_zero() => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                p.push(
                    "channel",
                    Some(i),
                    Some("repeat_interval"),
                    format!("channel `{name}`: {e}"),
                );
                None
            }
        };
        let template = c.template.map(|t| {
            let path = PathBuf::from(&t);
            if path.is_absolute() {
                path
            } else {
                base_dir.join(path)
            }
        });
        if let Some(t) = &template
            && !t.is_file()
        {
            p.push(
                "channel",
                Some(i),
                Some("template"),
                format!("channel `{name}`: template file {} not found", t.display()),
            );
            ok = false;
        }
        if let (true, Some(kind), Some(url)) = (ok, kind, url) {
            out.push(ChannelConfig {
                spec: ChannelSpec {
                    name,
                    kind,
                    url,
                    secret,
                    at_mobiles,
                    keyword,
                    cloudevents,
                },
                events: c.events,
                template,
                language,
                action_card,
                rate_limit,
                repeat_interval,
            });
        }
    }
    out
}

/// The HMAC key of a Standard Webhooks secret: base64 after an optional `whsec_` prefix.
pub fn webhook_secret_bytes(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| {
            "`secret` must be a Standard Webhooks secret: `whsec_` followed by base64 \
             (generate one with: head -c 32 /dev/urandom | base64)"
                .to_string()
        })
}

fn build_watches(
    raw: Vec<RawWatch>,
    channels: &[ChannelConfig],
    declared: &[String],
    account_names: &[String],
    p: &mut Problems<'_>,
) -> Vec<WatchConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let channel_names: Vec<&str> = channels.iter().map(|c| c.spec.name.as_str()).collect();
    // Each distinct expression parsed once and shared by the watches that use it.
    let mut parsed: std::collections::HashMap<String, Result<CronSchedule, String>> =
        std::collections::HashMap::new();
    for (i, w) in raw.into_iter().enumerate() {
        let name = w.name.filter(|n| !n.trim().is_empty());
        let label = name.clone().unwrap_or_else(|| format!("#{}", i + 1));
        if name.is_none() {
            p.push("watch", Some(i), None, "every watch needs a `name`".into());
        }
        if name.is_some() && !seen.insert(label.clone()) {
            p.push(
                "watch",
                Some(i),
                Some("name"),
                format!("watch name `{label}` is used twice; names must be unique"),
            );
        }
        let plan = w.backup_plan_id.filter(|s| !s.trim().is_empty());
        let task = w.restore_task_id.filter(|s| !s.trim().is_empty());
        let target = match (plan, task) {
            (Some(p), None) => Some(Target::BackupPlan(p)),
            (None, Some(t)) => Some(Target::RestoreTask(t)),
            (Some(_), Some(_)) => {
                p.push(
                    "watch",
                    Some(i),
                    None,
                    format!("watch `{label}` has both backup_plan_id and restore_task_id; keep one (one watch follows one thing)"),
                );
                None
            }
            (None, None) => {
                p.push(
                    "watch",
                    Some(i),
                    None,
                    format!("watch `{label}` needs backup_plan_id (a pre-check) or restore_task_id (a restore)"),
                );
                None
            }
        };
        let schedule = match w.schedule.as_deref() {
            Some(expr) => match parsed
                .entry(expr.to_string())
                .or_insert_with(|| CronSchedule::parse(expr))
                .clone()
            {
                Ok(s) if s.next_after(chrono::Utc::now()).is_none() => {
                    p.push(
                        "watch",
                        Some(i),
                        Some("schedule"),
                        format!("watch `{label}`: `{expr}` never fires (no such date)"),
                    );
                    None
                }
                Ok(s) => Some(s),
                Err(e) => {
                    p.push(
                        "watch",
                        Some(i),
                        Some("schedule"),
                        format!("watch `{label}`: {e}"),
                    );
                    None
                }
            },
            None => {
                p.push(
                    "watch",
                    Some(i),
                    Some("schedule"),
                    format!(
                        "watch `{label}` needs a `schedule`, e.g. \"*/1 * * * *\" (every minute)"
                    ),
                );
                None
            }
        };
        let names = w
            .channels
            .unwrap_or_else(|| channel_names.iter().map(|s| s.to_string()).collect());
        for c in &names {
            if declared.contains(c) {
                // Defined but invalid: that channel's own problems are reported already.
                continue;
            }
            let close = declared
                .iter()
                .min_by_key(|d| edit_distance(c, d))
                .filter(|d| edit_distance(c, d) <= 2);
            let hint = match close {
                Some(d) => format!("did you mean `{d}`?"),
                None if declared.is_empty() => "no channel is defined".to_string(),
                None => format!("defined: {}", declared.join(", ")),
            };
            p.push(
                "watch",
                Some(i),
                Some("channels"),
                format!("watch `{label}` names channel `{c}`, which is not defined; {hint}"),
            );
        }
        if let Some(account) = &w.account
            && !account_names.contains(account)
        {
            p.push(
                "watch",
                Some(i),
                Some("account"),
                format!(
                    "watch `{label}` names account `{account}`, which is not defined; defined: {}",
                    account_names.join(", ")
                ),
            );
        }
        if let (Some(name), Some(target), Some(schedule)) = (name, target, schedule) {
            out.push(WatchConfig {
                name,
                target,
                schedule,
                channels: names,
                account: w.account.filter(|a| a != DEFAULT_ACCOUNT),
                region: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[storage]
database = "dbswatch.db"            # SQLite file, created if missing

[aliyun]
access_key_id = "${ALIBABA_CLOUD_ACCESS_KEY_ID}"
access_key_secret = "${ALIBABA_CLOUD_ACCESS_KEY_SECRET}"
region = "cn-hangzhou"
endpoint = "http://127.0.0.1:18080"  # optional override of the regional endpoint

[[watch]]
name = "orders-db"
backup_plan_id = "dbstooi01XXXX"     # or: restore_task_id = "..."
schedule = "*/30 * * * * *"          # cron; 5-field (minute-based) and 6-field (with seconds) both accepted
channels = ["ops-dingtalk", "ops-slack", "audit"]

[[channel]]
name = "ops-dingtalk"
type = "dingtalk"                    # dingtalk | slack | webhook
url = "https://oapi.dingtalk.com/robot/send?access_token=${DINGTALK_TOKEN}"
secret = "${DINGTALK_SECRET}"        # optional: DingTalk signing ("SEC...")
at_mobiles = ["13800000000"]         # optional: who is @-mentioned
events = ["precheck.failed"]         # optional: which event kinds this channel gets

[[channel]]
name = "ops-slack"
type = "slack"
url = "${SLACK_WEBHOOK_URL}"

[[channel]]
name = "audit"
type = "webhook"
url = "https://hooks.example.com/dbs"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("LTAIexample".into()),
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("very-secret".into()),
            "DINGTALK_TOKEN" => Some("tok123456".into()),
            "DINGTALK_SECRET" => Some("SECabcdef".into()),
            "SLACK_WEBHOOK_URL" => Some("https://hooks.slack.com/services/T0/B0/XYZXYZXYZ".into()),
            _ => None,
        }
    }

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("test.toml"), &env)
    }

    #[test]
    fn the_documented_example_loads() {
        let c = parse_str(EXAMPLE).unwrap();
        assert_eq!(
            c.storage.database,
            PathBuf::from("dbswatch.db"),
            "beside test.toml"
        );
        assert_eq!(c.aliyun.endpoint_url(), "http://127.0.0.1:18080");
        let creds = c.aliyun.credentials.as_ref().unwrap();
        assert_eq!(creds.access_key_id, "LTAIexample");
        assert_eq!(creds.access_key_secret.expose(), "very-secret");
        assert_eq!(c.watches.len(), 1);
        assert_eq!(
            c.watches[0].target,
            Target::BackupPlan("dbstooi01XXXX".into())
        );
        assert_eq!(c.channels.len(), 3);
        let ding = c.channel("ops-dingtalk").unwrap();
        assert_eq!(
            ding.spec.url.expose(),
            "https://oapi.dingtalk.com/robot/send?access_token=tok123456"
        );
        assert!(ding.accepts("precheck.failed"));
        assert!(!ding.accepts("precheck.passed"));
        let slack = c.channel("ops-slack").unwrap();
        assert!(slack.accepts("restore.completed"));
        assert!(!slack.accepts("restore.progress"));
        assert!(!slack.accepts("precheck.item_changed"));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = parse_str(EXAMPLE).unwrap();
        let dump = format!("{c:?}");
        for secret in [
            "very-secret",
            "tok123456",
            "SECabcdef",
            "XYZXYZXYZ",
            "whsec_",
        ] {
            assert!(!dump.contains(secret), "{secret} leaked in {dump}");
        }
        let r = c.redactor();
        assert_eq!(r.redact("x very-secret y tok123456"), "x *** y ***");
    }

    #[test]
    fn credentials_default_to_the_environment() {
        let text = "[aliyun]\nregion = \"ap-southeast-1\"\n";
        let c = parse_str(text).unwrap();
        let creds = c.aliyun.credentials.clone().unwrap();
        assert_eq!(creds.access_key_id, "LTAIexample");
        assert!(creds.security_token.is_none());
        assert_eq!(
            c.aliyun.endpoint_url(),
            endpoint_for_region("ap-southeast-1")
        );
    }

    #[test]
    fn a_missing_variable_is_an_error_with_its_place() {
        let text = "[[channel]]\nname = \"s\"\ntype = \"slack\"\nurl = \"${NOPE_NOT_SET}\"\n";
        let err = parse_str(text).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let p = &err.problems[0];
        assert_eq!(p.location, "test.toml:4");
        assert!(p.message.contains("NOPE_NOT_SET"), "{p}");
    }

    #[test]
    fn timezone_is_validated() {
        assert_eq!(parse_str("").unwrap().timezone, chrono_tz::UTC);
        let c = parse_str("timezone = \"Asia/Shanghai\"\n").unwrap();
        assert_eq!(c.timezone, chrono_tz::Asia::Shanghai);
        for bad in [
            "timezone = \"Mars/Phobos\"\n",
            "timezone = \"\"\n",
            "timezone = 8\n",
        ] {
            let err = parse_str(bad).unwrap_err();
            assert!(err.to_string().contains("timezone"), "{err}");
            assert_eq!(err.problems[0].location, "test.toml:1");
        }
    }

    #[test]
    fn retention_and_server_keys_are_validated() {
        let c = parse_str(
            "[storage]\nretention = \"180d\"\nevent_retention = \"2y\"\n\
             [server]\nlisten = \"0.0.0.0:9187\"\ntoken = \"${DINGTALK_SECRET}-0123456789\"\n",
        )
        .unwrap();
        assert_eq!(c.storage.retention.unwrap().as_secs(), 180 * 86_400);
        assert_eq!(c.storage.event_retention.unwrap().as_secs(), 730 * 86_400);
        assert_eq!(c.server.listen.unwrap().port(), 9187);
        assert!(
            !format!("{c:?}").contains("SECabcdef"),
            "the token is a secret"
        );
        assert_eq!(c.redactor().redact("t=SECabcdef-0123456789"), "t=***");
        assert!(parse_str("").unwrap().server.listen.is_none());

        let err = parse_str(
            "[storage]\nretention = \"30d\"\nevent_retention = \"7d\"\n\
             [server]\nlisten = \"0.0.0.0:9187\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("at least `retention`"), "{err}");
        assert!(err.contains("without a token"), "{err}");
        for bad in [
            "[storage]\nretention = \"forever\"\n",
            "[storage]\nretention = \"10m\"\n",
            "[server]\nlisten = \"localhost\"\n",
            "[server]\ntoken = \"short\"\n",
            "[server]\nlisen = \"127.0.0.1:1\"\n",
        ] {
            assert!(parse_str(bad).is_err(), "{bad}");
        }
        assert!(parse_str("[server]\nlisten = \"127.0.0.1:9187\"\n").is_ok());
    }

    #[test]
    fn dollar_dollar_is_a_literal() {
        assert_eq!(expand_str("a$${B}c$d", &env).unwrap(), "a${B}c$d");
        assert_eq!(
            expand_str("x${DINGTALK_TOKEN}y", &env).unwrap(),
            "xtok123456y"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
[storage]
databse = "x.db"

[[watch]]
name = "a"
backup_plan_id = "p"
restore_task_id = "t"
schedule = "* * *"
channels = ["nowhere"]

[[watch]]
name = "b"
shedule = "* * * * *"

[[channel]]
name = "c"
type = "teams"
url = "https://example.com"
"#;
        let err = parse_str(text).unwrap_err();
        let all = err.to_string();
        let expect = [
            ("test.toml:3", "did you mean `database`"),
            ("test.toml:5", "both backup_plan_id and restore_task_id"),
            ("test.toml:9", "3 fields"),
            ("test.toml:10", "channel `nowhere`, which is not defined"),
            ("test.toml:14", "did you mean `schedule`"),
            ("test.toml:12", "needs backup_plan_id"),
            ("test.toml:12", "needs a `schedule`"),
            ("test.toml:18", "unknown type `teams`"),
        ];
        for (loc, msg) in expect {
            assert!(
                err.problems
                    .iter()
                    .any(|p| p.location.starts_with(loc) && p.message.contains(msg)),
                "missing {loc} {msg} in:\n{all}"
            );
        }
    }

    #[test]
    fn questionable_values_are_caught() {
        let text = r#"
[aliyun]
endpoint = "http://127.0.0.1:18080/?x=1"
timeout_secs = 0
max_retries = 100000

[delivery]
retry_base_secs = 600
retry_max_secs = 60

[[watch]]
name = "w"
backup_plan_id = "p"
schedule = "0 0 31 2 *"
channels = ["slak"]

[[channel]]
name = "slack"
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=x"
at_mobiles = ["abc"]
events = ["nope.*", "precheck.exploded"]
"#;
        let err = parse_str(text).unwrap_err();
        let all = err.to_string();
        for expected in [
            "without a query",
            "`timeout_secs` must be at least 1",
            "`max_retries` above 10",
            "larger than `retry_max_secs`",
            "never fires",
            "did you mean `slack`?",
            "`abc` is not a mobile number",
            "`nope.*` matches no event kind",
            "`precheck.exploded` matches no event kind",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn an_unknown_region_is_a_warning() {
        let c = parse_str("[aliyun]\nregion = \"cn-hangzou\"\n").unwrap();
        let warnings: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("cn-hangzou") && w.contains("test.toml:2")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("no [[watch]]")),
            "{warnings:?}"
        );
    }

    #[test]
    fn toml_syntax_errors_have_a_line() {
        let err = parse_str("[storage]\ndatabase = \"x\n").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].location.starts_with("test.toml:"), "{err}");
        assert!(err.problems[0].message.contains("not valid TOML"));
    }

    #[test]
    fn bad_webhook_secret_and_events_are_reported() {
        let text = r#"
[[channel]]
name = "w"
type = "webhook"
url = "https://example.com"
secret = "whsec_not base64!"
events = ["precheck.exploded"]
"#;
        let err = parse_str(text).unwrap_err();
        assert!(
            err.to_string().contains("Standard Webhooks secret"),
            "{err}"
        );
        assert!(err.to_string().contains("matches no event kind"), "{err}");
        assert!(
            !err.to_string().contains("not base64!"),
            "secret echoed: {err}"
        );
    }

    #[test]
    fn feishu_wecom_languages_keywords_and_cloudevents_load() {
        let text = r#"
language = "zh-CN"
timezone = "Asia/Shanghai"

[[channel]]
name = "lark"
type = "feishu"
url = "https://open.feishu.cn/open-apis/bot/v2/hook/abc"
secret = "feishu-secret"
keyword = "DBS"

[[channel]]
name = "wx"
type = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1"
language = "en"

[[channel]]
name = "ding"
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=t"
action_card = true
keyword = "告警"

[[channel]]
name = "ce"
type = "webhook"
url = "https://hooks.example.com/dbs"
cloudevents = "binary"
"#;
        let c = parse_str(text).unwrap();
        assert_eq!(c.language, Language::ZhCn);
        let lark = c.channel("lark").unwrap();
        assert_eq!(lark.spec.kind, ChannelKind::Feishu);
        assert_eq!(lark.spec.keyword.as_deref(), Some("DBS"));
        assert_eq!(c.channel("wx").unwrap().spec.kind, ChannelKind::Wecom);
        assert!(c.channel("ding").unwrap().action_card);
        assert_eq!(
            c.channel("ce").unwrap().spec.cloudevents,
            Some(CloudEventsMode::Binary)
        );
        let templates = c.templates();
        let by_name = |n: &str| templates.iter().find(|t| t.name == n).unwrap();
        assert_eq!(
            by_name("lark").language,
            Language::ZhCn,
            "top-level language"
        );
        assert_eq!(
            by_name("wx").language,
            Language::En,
            "the channel's own wins"
        );
        assert_eq!(by_name("lark").timezone, chrono_tz::Asia::Shanghai);
        assert_eq!(by_name("lark").region, "cn-hangzhou");
        assert!(by_name("ding").action_card);
        assert!(by_name("ce").cloudevents);
        assert_eq!(by_name("ding").keyword.as_deref(), Some("告警"));
    }

    #[test]
    fn new_channel_keys_are_validated_where_they_are() {
        let text = r#"
language = "fr"

[[channel]]
name = "wx"
type = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
secret = "x"
keyword = "DBS"

[[channel]]
name = "s"
type = "slack"
url = "https://hooks.slack.com/services/x"
action_card = true
cloudevents = "structured"
language = "klingon"

[[channel]]
name = "d"
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=t"
at_mobiles = ["13800000000"]
action_card = true
keyword = " "

[[channel]]
name = "w"
type = "webhook"
url = "https://hooks.example.com/dbs"
cloudevents = "batch"

[[channel]]
name = "t"
type = "teams"
url = "https://example.com"
"#;
        let err = parse_str(text).unwrap_err();
        let all = err.to_string();
        let expect = [
            (
                "test.toml:2",
                "unknown language `fr`; built-in messages exist in \"en\" and \"zh-CN\"",
            ),
            ("test.toml:8", "WeCom group bots take no signing secret"),
            ("test.toml:7", "paste the whole webhook URL"),
            (
                "test.toml:9",
                "`keyword` only applies to dingtalk and feishu",
            ),
            ("test.toml:15", "`action_card` only works for dingtalk"),
            ("test.toml:16", "`cloudevents` only works for webhook"),
            ("test.toml:17", "unknown language `klingon`"),
            ("test.toml:24", "cannot @-mention anyone in an actionCard"),
            ("test.toml:25", "`keyword` is empty"),
            ("test.toml:31", "use \"structured\""),
            (
                "test.toml:35",
                "use dingtalk, slack, webhook, feishu or wecom",
            ),
        ];
        for (loc, msg) in expect {
            assert!(
                err.problems
                    .iter()
                    .any(|p| p.location == loc && p.message.contains(msg)),
                "missing {loc} {msg} in:\n{all}"
            );
        }
        assert!(!all.contains("secret = "), "{all}");
    }

    #[test]
    fn watch_channels_default_to_all() {
        let text = r#"
[[watch]]
name = "r"
restore_task_id = "t1"
schedule = "*/5 * * * *"

[[channel]]
name = "s"
type = "slack"
url = "https://hooks.slack.com/services/x"
"#;
        let c = parse_str(text).unwrap();
        assert_eq!(c.watches[0].channels, vec!["s".to_string()]);
        assert_eq!(c.watches[0].target, Target::RestoreTask("t1".into()));
    }
}
