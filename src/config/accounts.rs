//! The configuration of Alibaba Cloud accounts, discovery and API manners: `[aliyun]` and
//! `[[account]]` (credentials, region, endpoint), `[[discover]]` (find plans and restores to
//! watch) and `[dbs]` (rate limit, concurrency, jitter, when to stop polling finished restores).
//!
//! Kept apart from the rest of the config loader so the account logic reads in one place; it
//! uses the loader's problem list, so every mistake is reported with its line like any other.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{AliyunConfig, Problems, RawAliyun};
use crate::dbs::credentials::{ChainSettings, EnvSnapshot, SourceKind};
use crate::dbs::endpoint::{is_known_region, vpc_endpoint_for_region};
use crate::dbs::limiter::{DEFAULT_MAX_CONCURRENT, DEFAULT_REQUESTS_PER_SECOND, LimiterSettings};
use crate::dbs::{Credentials, endpoint_for_region};
use crate::schedule::CronSchedule;
use crate::secret::Secret;

/// The name of the account `[aliyun]` describes; watches without `account` use it.
pub const DEFAULT_ACCOUNT: &str = "default";

/// `[[account]]` keys: `name` first, then those `[aliyun]` shares (`config.rs` takes
/// `[aliyun]`'s list from this one, so the two cannot drift apart).
pub const ACCOUNT_KEYS: &[&str] = &[
    "name",
    "access_key_id",
    "access_key_secret",
    "security_token",
    "region",
    "endpoint",
    "timeout_secs",
    "max_retries",
    "profile",
    "credential_source",
    "vpc",
    "cli_config_file",
    "credentials_file",
    "ecs_ram_role",
    "metadata_endpoint",
];

/// `[dbs]` keys.
pub const DBS_KEYS: &[&str] = &[
    "requests_per_second",
    "max_concurrent_requests",
    "jitter_secs",
    "stop_restore_after_polls",
    "discover_interval_mins",
];

/// `[[discover]]` keys.
pub const DISCOVER_KEYS: &[&str] = &[
    "name",
    "account",
    "kind",
    "region",
    "match_name",
    "status",
    "database_type",
    "recent_days",
    "schedule",
    "channels",
];

/// `BackupPlanStatus` values DBS documents.
pub const PLAN_STATUSES: &[&str] = &[
    "wait",
    "init",
    "running",
    "stop",
    "pause",
    "locked",
    "check_pass",
];

/// `RestoreStatus` values DBS documents, plus `finish`, which finished tasks report.
pub const RESTORE_STATUSES: &[&str] = &["init", "running", "stop", "pause", "check_pass", "finish"];

/// `[dbs]`: how hard dbswatch may lean on the DBS API.
#[derive(Debug, Clone, PartialEq)]
pub struct DbsSettings {
    /// Request rate and concurrency, across all accounts.
    pub limiter: LimiterSettings,
    /// Each watch's polls are shifted by a stable offset in `[0, jitter)`, so watches sharing a
    /// cron expression do not fire in the same instant.
    pub jitter: Duration,
    /// A restore task seen in a finished or failed state by this many successive polls is not
    /// polled again; 0 keeps polling forever.
    pub stop_restore_after_polls: u32,
    /// How often `[[discover]]` lists plans and restores again.
    pub discover_interval: Duration,
}

impl Default for DbsSettings {
    fn default() -> DbsSettings {
        DbsSettings {
            limiter: LimiterSettings::default(),
            jitter: Duration::from_secs(20),
            stop_restore_after_polls: 3,
            discover_interval: Duration::from_secs(600),
        }
    }
}

/// What a `[[discover]]` block lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoverKind {
    /// `backup_plans`: `DescribeBackupPlanList`; each plan's pre-check is watched.
    BackupPlans,
    /// `restore_tasks`: `DescribeRestoreTaskList` over a recent window; each task is watched.
    RestoreTasks,
}

/// `[[discover]]`: find things to watch instead of listing them one by one.
#[derive(Debug, Clone)]
pub struct DiscoverConfig {
    /// Unique name; discovered watches are called `<name>/<id>`.
    pub name: String,
    /// The account to list with; `None` is `[aliyun]`.
    pub account: Option<String>,
    /// What to list.
    pub kind: DiscoverKind,
    /// Listed and polled at this region's endpoint. Plans: also sent as `Region`; restores: the
    /// destination region must match.
    pub region: Option<String>,
    /// Glob on the plan or task name (`*`, `?`, case-insensitive).
    pub match_name: Option<String>,
    /// Keep only these `BackupPlanStatus` / `RestoreStatus` values; empty keeps all.
    pub statuses: Vec<String>,
    /// Plans only: keep only these `DatabaseType`s (case-insensitive); empty keeps all.
    pub database_types: Vec<String>,
    /// Restores only: tasks created within this window before now.
    pub recent: Duration,
    /// When each discovered watch is polled.
    pub schedule: CronSchedule,
    /// Channels each discovered watch notifies.
    pub channels: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawDbs {
    requests_per_second: Option<f64>,
    max_concurrent_requests: Option<u32>,
    jitter_secs: Option<u64>,
    stop_restore_after_polls: Option<u32>,
    discover_interval_mins: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawAccount {
    name: Option<String>,
    #[serde(flatten)]
    aliyun: RawAliyun,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawDiscover {
    name: Option<String>,
    account: Option<String>,
    kind: Option<String>,
    region: Option<String>,
    match_name: Option<String>,
    status: Option<Vec<String>>,
    database_type: Option<Vec<String>>,
    recent_days: Option<u32>,
    schedule: Option<String>,
    channels: Option<Vec<String>>,
}

/// Builds one account from `[aliyun]` (`index` `None`) or `[[account]]` number `index`.
pub(super) fn build_account(
    raw: RawAliyun,
    name: String,
    section: &str,
    index: Option<usize>,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems<'_>,
) -> AliyunConfig {
    let non_empty = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
    let label = match index {
        Some(_) => format!("account `{name}`: "),
        None => String::new(),
    };
    // Compatibility: the id and the secret each fall back to their environment variable.
    let raw_id = non_empty(raw.access_key_id);
    let raw_secret = raw.access_key_secret.filter(|s| !s.is_empty());
    let raw_token = raw.security_token.filter(|s| !s.is_empty());
    let env_id = non_empty(env("ALIBABA_CLOUD_ACCESS_KEY_ID"));
    let env_secret = non_empty(env("ALIBABA_CLOUD_ACCESS_KEY_SECRET")).map(Secret::new);
    let env_token = non_empty(env("ALIBABA_CLOUD_SECURITY_TOKEN")).map(Secret::new);
    let from_config = raw_id.is_some() || raw_secret.is_some();
    let merged = match (
        raw_id.or(env_id),
        raw_secret.or(env_secret),
        raw_token.or(env_token),
    ) {
        (Some(access_key_id), Some(access_key_secret), security_token) => Some(Credentials {
            access_key_id,
            access_key_secret,
            security_token,
        }),
        _ => None,
    };

    let source = match non_empty(raw.credential_source) {
        None => None,
        Some(s) => match SourceKind::parse(&s) {
            Some(kind) => Some(kind),
            None => {
                p.push(
                    section,
                    index,
                    Some("credential_source"),
                    format!(
                        "{label}unknown credential_source `{s}`; use one of {}",
                        SourceKind::NAMES.join(", ")
                    ),
                );
                None
            }
        },
    };
    if source == Some(SourceKind::Config) && !from_config {
        p.push(
            section,
            index,
            Some("credential_source"),
            format!(
                "{label}credential_source = \"config\" needs access_key_id and access_key_secret \
                 in this section"
            ),
        );
    }
    let profile = non_empty(raw.profile);
    if profile.is_some() && from_config {
        p.push(
            section,
            index,
            Some("profile"),
            format!(
                "{label}`profile` and access_key_id/access_key_secret both give credentials; \
                 keep one"
            ),
        );
    }
    let metadata_endpoint = non_empty(raw.metadata_endpoint);
    if let Some(url) = &metadata_endpoint
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        p.push(
            section,
            index,
            Some("metadata_endpoint"),
            format!("{label}`{url}` is not a URL: write it as http://100.100.100.200"),
        );
    }

    let region = non_empty(raw.region)
        .or_else(|| non_empty(env("ALIBABA_CLOUD_REGION_ID")))
        .unwrap_or_else(|| "cn-hangzhou".to_string());
    let vpc = raw.vpc.unwrap_or(false);
    if let Some(endpoint) = &raw.endpoint {
        let ok = reqwest::Url::parse(endpoint).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
        });
        if !ok {
            p.push(
                section,
                index,
                Some("endpoint"),
                format!(
                    "{label}`{}` is not a base URL: write it as https://host or \
                     http://127.0.0.1:port, without a query",
                    crate::secret::display_url(endpoint)
                ),
            );
        }
        if vpc {
            p.push(
                section,
                index,
                Some("vpc"),
                format!(
                    "{label}`vpc = true` and `endpoint` both choose the host; keep one (endpoint \
                     = \"https://dbs-api-vpc.<region>.aliyuncs.com\" does what vpc does)"
                ),
            );
        }
    } else if vpc && vpc_endpoint_for_region(&region).is_none() {
        p.push(
            section,
            index,
            Some("vpc"),
            format!(
                "{label}region {region} has no DBS VPC endpoint; remove `vpc` or set `endpoint`"
            ),
        );
    }
    if raw.endpoint.is_none() && !is_known_region(&region) {
        p.warn(
            section,
            index,
            Some("region"),
            format!(
                "{label}`{region}` is not a DBS region dbswatch knows; requests go to \
                 https://dbs-api.{region}.aliyuncs.com (check the spelling, or set `endpoint`)"
            ),
        );
    }
    if raw.timeout_secs == Some(0) {
        p.push(
            section,
            index,
            Some("timeout_secs"),
            format!("{label}`timeout_secs` must be at least 1 second"),
        );
    }
    if raw.max_retries.is_some_and(|n| n > 10) {
        p.push(
            section,
            index,
            Some("max_retries"),
            format!(
                "{label}`max_retries` above 10 only hammers a struggling API; the next \
                 scheduled poll retries anyway"
            ),
        );
    }

    let chain = ChainSettings {
        config_credentials: if from_config { merged.clone() } else { None },
        source,
        profile,
        cli_config_file: non_empty(raw.cli_config_file).map(PathBuf::from),
        credentials_file: non_empty(raw.credentials_file).map(PathBuf::from),
        ecs_ram_role: non_empty(raw.ecs_ram_role),
        metadata_endpoint: metadata_endpoint.map(|u| u.trim_end_matches('/').to_string()),
        env: EnvSnapshot::capture(env),
    };
    AliyunConfig {
        credentials: merged,
        region,
        endpoint: raw.endpoint.map(|e| e.trim_end_matches('/').to_string()),
        timeout: Duration::from_secs(raw.timeout_secs.unwrap_or(10).max(1)),
        max_retries: raw.max_retries.unwrap_or(2),
        name,
        vpc,
        chain,
    }
}

/// Every `[[account]]`, named and unique.
pub(super) fn build_accounts(
    raw: Vec<RawAccount>,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems<'_>,
) -> Vec<AliyunConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, a) in raw.into_iter().enumerate() {
        let Some(name) = a.name.filter(|n| !n.trim().is_empty()) else {
            p.push(
                "account",
                Some(i),
                None,
                "every [[account]] needs a `name`, which watches refer to with `account = \"...\"`"
                    .into(),
            );
            continue;
        };
        if name == DEFAULT_ACCOUNT {
            p.push(
                "account",
                Some(i),
                Some("name"),
                format!("`{DEFAULT_ACCOUNT}` is the name of [aliyun]; choose another name"),
            );
            continue;
        }
        if !seen.insert(name.clone()) {
            p.push(
                "account",
                Some(i),
                Some("name"),
                format!("account name `{name}` is used twice; names must be unique"),
            );
            continue;
        }
        out.push(build_account(a.aliyun, name, "account", Some(i), env, p));
    }
    out
}

/// `[dbs]`.
pub(super) fn build_dbs(raw: RawDbs, p: &mut Problems<'_>) -> DbsSettings {
    let defaults = DbsSettings::default();
    let rate = raw
        .requests_per_second
        .unwrap_or(DEFAULT_REQUESTS_PER_SECOND);
    if !(rate.is_finite() && rate > 0.0) {
        p.push(
            "dbs",
            None,
            Some("requests_per_second"),
            format!(
                "requests_per_second must be more than 0 (the default is {DEFAULT_REQUESTS_PER_SECOND})"
            ),
        );
    }
    let concurrent = raw
        .max_concurrent_requests
        .unwrap_or(DEFAULT_MAX_CONCURRENT as u32);
    if concurrent == 0 {
        p.push(
            "dbs",
            None,
            Some("max_concurrent_requests"),
            format!(
                "max_concurrent_requests must be at least 1 (the default is {DEFAULT_MAX_CONCURRENT})"
            ),
        );
    }
    DbsSettings {
        limiter: LimiterSettings {
            requests_per_second: rate,
            max_concurrent: concurrent.max(1) as usize,
        },
        jitter: raw
            .jitter_secs
            .map(Duration::from_secs)
            .unwrap_or(defaults.jitter),
        stop_restore_after_polls: raw
            .stop_restore_after_polls
            .unwrap_or(defaults.stop_restore_after_polls),
        discover_interval: raw
            .discover_interval_mins
            .map(|m| Duration::from_secs(m.max(1) * 60))
            .unwrap_or(defaults.discover_interval),
    }
}

/// Every `[[discover]]` block.
pub(super) fn build_discover(
    raw: Vec<RawDiscover>,
    accounts: &[String],
    channel_names: &[&str],
    watch_names: &[String],
    p: &mut Problems<'_>,
) -> Vec<DiscoverConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, d) in raw.into_iter().enumerate() {
        let mut ok = true;
        let name = match d.name.filter(|n| !n.trim().is_empty()) {
            Some(n) if n.contains('/') => {
                p.push(
                    "discover",
                    Some(i),
                    Some("name"),
                    format!("discover name `{n}` must not contain `/`: it prefixes watch names"),
                );
                ok = false;
                n
            }
            Some(n) => n,
            None => {
                p.push(
                    "discover",
                    Some(i),
                    None,
                    "every [[discover]] needs a `name`; discovered watches are called <name>/<id>"
                        .into(),
                );
                ok = false;
                format!("#{}", i + 1)
            }
        };
        if !seen.insert(name.clone()) {
            p.push(
                "discover",
                Some(i),
                Some("name"),
                format!("discover name `{name}` is used twice; names must be unique"),
            );
            ok = false;
        }
        let prefix = format!("{name}/");
        if let Some(w) = watch_names.iter().find(|w| w.starts_with(&prefix)) {
            p.push(
                "discover",
                Some(i),
                Some("name"),
                format!(
                    "watch `{w}` is named like the watches discover `{name}` creates \
                     (`{name}/<id>`); rename one of them"
                ),
            );
            ok = false;
        }
        let kind = match d.kind.as_deref().map(str::trim) {
            Some("backup_plans") => Some(DiscoverKind::BackupPlans),
            Some("restore_tasks") => Some(DiscoverKind::RestoreTasks),
            Some(other) => {
                p.push(
                    "discover",
                    Some(i),
                    Some("kind"),
                    format!("discover `{name}`: unknown kind `{other}`; use backup_plans or restore_tasks"),
                );
                None
            }
            None => {
                p.push(
                    "discover",
                    Some(i),
                    Some("kind"),
                    format!(
                        "discover `{name}` needs `kind = \"backup_plans\"` or `\"restore_tasks\"`"
                    ),
                );
                None
            }
        };
        if let Some(account) = &d.account
            && !accounts.contains(account)
        {
            p.push(
                "discover",
                Some(i),
                Some("account"),
                format!(
                    "discover `{name}` names account `{account}`, which is not defined; defined: {}",
                    accounts.join(", ")
                ),
            );
            ok = false;
        }
        let statuses: Vec<String> = d
            .status
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_string())
            .collect();
        let known = match kind {
            Some(DiscoverKind::RestoreTasks) => RESTORE_STATUSES,
            _ => PLAN_STATUSES,
        };
        for s in &statuses {
            if kind.is_some() && !known.contains(&s.as_str()) {
                p.push(
                    "discover",
                    Some(i),
                    Some("status"),
                    format!(
                        "discover `{name}`: unknown status `{s}`; DBS uses {}",
                        known.join(", ")
                    ),
                );
                ok = false;
            }
        }
        let database_types = d.database_type.unwrap_or_default();
        if kind == Some(DiscoverKind::RestoreTasks) && !database_types.is_empty() {
            p.push(
                "discover",
                Some(i),
                Some("database_type"),
                format!(
                    "discover `{name}`: restore tasks have no database type; remove `database_type`"
                ),
            );
            ok = false;
        }
        if kind == Some(DiscoverKind::BackupPlans) && d.recent_days.is_some() {
            p.push(
                "discover",
                Some(i),
                Some("recent_days"),
                format!("discover `{name}`: `recent_days` is for restore_tasks; plans are listed whatever their age"),
            );
            ok = false;
        }
        let schedule = match d.schedule.as_deref() {
            Some(expr) => match CronSchedule::parse(expr) {
                Ok(s) => Some(s),
                Err(e) => {
                    p.push(
                        "discover",
                        Some(i),
                        Some("schedule"),
                        format!("discover `{name}`: {e}"),
                    );
                    None
                }
            },
            None => {
                p.push(
                    "discover",
                    Some(i),
                    Some("schedule"),
                    format!("discover `{name}` needs a `schedule` for the watches it finds, e.g. \"*/5 * * * *\""),
                );
                None
            }
        };
        let channels = d
            .channels
            .unwrap_or_else(|| channel_names.iter().map(|s| s.to_string()).collect());
        for c in &channels {
            if !channel_names.contains(&c.as_str()) {
                p.push(
                    "discover",
                    Some(i),
                    Some("channels"),
                    format!("discover `{name}` names channel `{c}`, which is not defined"),
                );
                ok = false;
            }
        }
        if let (true, Some(kind), Some(schedule)) = (ok, kind, schedule) {
            out.push(DiscoverConfig {
                name,
                account: d.account.filter(|a| a != DEFAULT_ACCOUNT),
                kind,
                region: d.region.filter(|r| !r.trim().is_empty()),
                match_name: d.match_name.filter(|m| !m.trim().is_empty()),
                statuses,
                database_types,
                recent: Duration::from_secs(u64::from(d.recent_days.unwrap_or(7).max(1)) * 86_400),
                schedule,
                channels,
            });
        }
    }
    out
}

impl AliyunConfig {
    /// The base URL for `region` (the account's own when `None`): the explicit endpoint when
    /// set, else the VPC or public host of the region.
    pub fn endpoint_for(&self, region: Option<&str>) -> Option<String> {
        if let Some(endpoint) = &self.endpoint {
            return Some(endpoint.clone());
        }
        let region = region.unwrap_or(&self.region);
        if self.vpc {
            vpc_endpoint_for_region(region)
        } else {
            Some(endpoint_for_region(region))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError, parse};
    use crate::dbs::credentials::CredentialSource;

    fn env(name: &str) -> Option<String> {
        match name {
            "STAGING_SECRET" => Some("staging-secret".into()),
            "HOME" => Some("/nonexistent-home".into()),
            _ => None,
        }
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("t.toml"), &env)
    }

    fn problems(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    const CHANNEL: &str = "[[channel]]\nname = \"ops\"\ntype = \"slack\"\nurl = \"https://hooks.slack.com/services/x\"\n";

    #[test]
    fn accounts_have_the_aliyun_keys_and_a_name() {
        let c = load(&format!(
            r#"
[aliyun]
region = "cn-shanghai"
profile = "work"

[[account]]
name = "staging"
access_key_id = "LTAIstaging0001"
access_key_secret = "${{STAGING_SECRET}}"
region = "ap-southeast-1"
vpc = true

[[account]]
name = "ecs"
credential_source = "ecs_ram_role"
ecs_ram_role = "dbswatch"
metadata_endpoint = "http://127.0.0.1:9/"

[[watch]]
name = "w"
backup_plan_id = "p"
schedule = "*/5 * * * *"
account = "staging"
{CHANNEL}"#
        ))
        .unwrap();
        assert_eq!(c.aliyun.name, DEFAULT_ACCOUNT);
        assert_eq!(c.aliyun.chain.profile.as_deref(), Some("work"));
        assert_eq!(
            c.aliyun.endpoint_url(),
            "https://dbs-api.cn-hangzhou.aliyuncs.com",
            "Shanghai is served from Hangzhou"
        );
        let staging = c.account(Some("staging")).unwrap();
        assert_eq!(
            staging.endpoint_url(),
            "https://dbs-api-vpc.ap-southeast-1.aliyuncs.com"
        );
        assert_eq!(
            staging.endpoint_for(Some("cn-shanghai")).as_deref(),
            Some("https://dbs-api-vpc.cn-shanghai.aliyuncs.com")
        );
        let creds = staging.chain.config_credentials.as_ref().unwrap();
        assert_eq!(creds.access_key_secret.expose(), "staging-secret");
        let ecs = c.account(Some("ecs")).unwrap();
        assert_eq!(ecs.chain.source, Some(SourceKind::EcsRamRole));
        assert_eq!(
            ecs.chain.metadata_endpoint.as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(c.watches[0].account.as_deref(), Some("staging"));
        assert_eq!(c.all_accounts().count(), 3);
        assert!(!format!("{c:?}").contains("staging-secret"));
        assert_eq!(c.redactor().redact("x staging-secret"), "x ***");
        // The pinned source resolves without touching the network.
        let provider = crate::dbs::credentials::resolve(&ecs.chain).unwrap();
        assert!(matches!(
            provider.source(),
            CredentialSource::EcsRamRole { role: Some(ref r), .. } if r == "dbswatch"
        ));
    }

    #[test]
    fn account_mistakes_are_reported_with_their_line() {
        let text = format!(
            r#"
[[account]]
access_key_id = "x"

[[account]]
name = "default"

[[account]]
name = "a"
credential_source = "vault"
vpc = true
endpoint = "https://example.com"
acces_key_id = "typo"

[[account]]
name = "a"

[[account]]
name = "fin"
region = "cn-hangzhou-finance"
vpc = true

[[watch]]
name = "w"
backup_plan_id = "p"
schedule = "*/5 * * * *"
account = "nope"
{CHANNEL}"#
        );
        let all = problems(&text);
        for needle in [
            "t.toml:2: account[1]: every [[account]] needs a `name`",
            "t.toml:6: account[2].name: `default` is the name of [aliyun]",
            "t.toml:10: account[3].credential_source: account `a`: unknown credential_source `vault`; use one of config, env",
            "t.toml:11: account[3].vpc: account `a`: `vpc = true` and `endpoint` both",
            "t.toml:13: account[3].acces_key_id: unknown key `acces_key_id` in [[account]]; did you mean `access_key_id`?",
            "t.toml:16: account[4].name: account name `a` is used twice",
            "account[5].vpc: account `fin`: region cn-hangzhou-finance has no DBS VPC endpoint",
            "watch[1].account: watch `w` names account `nope`, which is not defined; defined: default, a, fin",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn dbs_settings_have_conservative_defaults_and_are_checked() {
        let c = load("").unwrap();
        assert_eq!(c.dbs, DbsSettings::default());
        assert_eq!(c.dbs.limiter.requests_per_second, 5.0);
        assert_eq!(c.dbs.limiter.max_concurrent, 4);
        assert_eq!(c.dbs.stop_restore_after_polls, 3);
        let c = load(
            "[dbs]\nrequests_per_second = 2.5\nmax_concurrent_requests = 1\njitter_secs = 0\n\
             stop_restore_after_polls = 0\ndiscover_interval_mins = 30\n",
        )
        .unwrap();
        assert_eq!(c.dbs.limiter.requests_per_second, 2.5);
        assert_eq!(c.dbs.jitter, Duration::ZERO);
        assert_eq!(c.dbs.stop_restore_after_polls, 0);
        assert_eq!(c.dbs.discover_interval, Duration::from_secs(1800));
        let all =
            problems("[dbs]\nrequests_per_second = 0\nmax_concurrent_requests = 0\nrate = 1\n");
        assert!(
            all.contains("requests_per_second must be more than 0"),
            "{all}"
        );
        assert!(
            all.contains("max_concurrent_requests must be at least 1"),
            "{all}"
        );
        assert!(all.contains("unknown key `rate` in [dbs]"), "{all}");
    }

    #[test]
    fn discover_blocks_are_built_and_checked() {
        let c = load(&format!(
            r#"
[[discover]]
name = "orders"
kind = "backup_plans"
account = "default"
region = "cn-shanghai"
match_name = "orders-*"
status = ["running"]
database_type = ["MySQL"]
schedule = "*/10 * * * *"

[[discover]]
name = "drills"
kind = "restore_tasks"
recent_days = 3
status = ["running", "pause"]
schedule = "*/2 * * * *"
channels = ["ops"]
{CHANNEL}"#
        ))
        .unwrap();
        let d = &c.discover[0];
        assert_eq!(d.kind, DiscoverKind::BackupPlans);
        assert_eq!(d.region.as_deref(), Some("cn-shanghai"));
        assert_eq!(
            d.account, None,
            "`default` is [aliyun], like a watch without account"
        );
        assert_eq!(
            d.channels,
            vec!["ops".to_string()],
            "all channels by default"
        );
        assert_eq!(c.discover[1].recent, Duration::from_secs(3 * 86_400));

        let all = problems(&format!(
            r#"
[[watch]]
name = "taken/dbs1"
backup_plan_id = "p"
schedule = "*/5 * * * *"

[[discover]]
name = "a/b"
kind = "plans"
schedule = "sometimes"

[[discover]]
name = "dup"
kind = "backup_plans"
schedule = "*/5 * * * *"

[[discover]]
name = "dup"
kind = "backup_plans"
schedule = "*/5 * * * *"

[[discover]]
name = "taken"
kind = "restore_tasks"
status = ["done"]
database_type = ["MySQL"]
account = "ghost"
channels = ["nowhere"]
{CHANNEL}"#
        ));
        for needle in [
            "discover name `a/b` must not contain `/`",
            "unknown kind `plans`",
            "discover `a/b`:",
            "discover name `dup` is used twice",
            "watch `taken/dbs1` is named like the watches discover `taken` creates",
            "unknown status `done`; DBS uses init, running, stop, pause, check_pass, finish",
            "restore tasks have no database type",
            "names account `ghost`, which is not defined",
            "needs a `schedule`",
            "names channel `nowhere`",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn the_old_aliyun_section_and_env_default_still_work() {
        let env = |name: &str| match name {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("LTAIfromEnv0001".to_string()),
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("env-secret".to_string()),
            "ALIBABA_CLOUD_SECURITY_TOKEN" => Some("CAIS-env".to_string()),
            _ => None,
        };
        let c = parse(
            "[aliyun]\nregion = \"eu-central-1\"\ntimeout_secs = 3\nmax_retries = 1\n",
            Path::new("t.toml"),
            &env,
        )
        .unwrap();
        let creds = c.aliyun.credentials.as_ref().unwrap();
        assert_eq!(creds.access_key_id, "LTAIfromEnv0001");
        assert_eq!(creds.security_token.as_ref().unwrap().expose(), "CAIS-env");
        assert!(
            c.aliyun.chain.config_credentials.is_none(),
            "from the environment, not the file"
        );
        assert_eq!(
            c.aliyun.endpoint_url(),
            "https://dbs-api.eu-central-1.aliyuncs.com"
        );
        let provider = crate::dbs::credentials::resolve(&c.aliyun.chain).unwrap();
        assert_eq!(provider.source(), CredentialSource::Environment);
    }
}
