//! Where the AccessKey comes from: the sources Alibaba Cloud's own tools read, in their order.
//!
//! People who run DBS already have credentials somewhere: in environment variables, in the aliyun
//! CLI's profiles, in the SDKs' credentials file, or as the RAM role of the ECS instance they run
//! on. [`resolve`] walks the same chain as the official credential libraries (CRED-GO's default
//! provider) and returns a [`CredentialProvider`], which the client asks for current credentials
//! before every attempt:
//!
//! 1. values in the config (`[aliyun] access_key_id` / `access_key_secret` / `security_token`);
//! 2. `ALIBABA_CLOUD_ACCESS_KEY_ID` + `ALIBABA_CLOUD_ACCESS_KEY_SECRET` (+ `ALIBABA_CLOUD_SECURITY_TOKEN`);
//! 3. the aliyun CLI profile file (`ALIBABA_CLOUD_CONFIG_FILE`, default `~/.aliyun/config.json`),
//!    modes `AK`, `StsToken` and `EcsRamRole`; skipped when `ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true`;
//! 4. the credentials ini file (`ALIBABA_CLOUD_CREDENTIALS_FILE`, default `~/.alibabacloud/credentials`),
//!    types `access_key`, `sts` and `ecs_ram_role`;
//! 5. the ECS instance's RAM role from instance metadata, unless
//!    `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`.
//!
//! A profile named in the config (`profile = "name"`) or by `ALIBABA_CLOUD_PROFILE` is looked up
//! in both files; when it is in neither, resolution fails instead of silently using something
//! else. A profile named in the config also skips steps 1 and 2 (it is a choice of source;
//! `ALIBABA_CLOUD_PROFILE` is not, as in the official tools). `credential_source` pins one
//! source and skips the chain.
//!
//! Resolution never reads the process environment or the home directory by itself: the variables
//! are captured into [`ChainSettings`] by whoever builds it (the config loader passes its `env`
//! lookup), so tests give fake variables and temporary files and nothing depends on test order.
//! Profile files are read when the chain is resolved and again whenever they change on disk, so
//! `aliyun configure` takes effect without a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::Credentials;
use super::imds::{DEFAULT_METADATA_ENDPOINT, ImdsProvider, ImdsSettings};
use super::profiles::{CliConfig, IniFile, ProfileCredentials, ProfileError, ProfileNames};

/// The environment variables the chain reads (CRED-GO, aliyun CLI), plus `HOME` for the default
/// file locations.
pub const ENV_NAMES: &[&str] = &[
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABA_CLOUD_PROFILE",
    "ALIBABA_CLOUD_CONFIG_FILE",
    "ALIBABA_CLOUD_CLI_PROFILE_DISABLED",
    "ALIBABA_CLOUD_CREDENTIALS_FILE",
    "ALIBABA_CLOUD_ECS_METADATA",
    "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
    "ALIBABA_CLOUD_IMDSV1_DISABLED",
    "HOME",
];

/// A source the config can pin with `credential_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `config`: the keys in the config section.
    Config,
    /// `env`: the `ALIBABA_CLOUD_*` variables.
    Env,
    /// `cli_profile`: the aliyun CLI's config.json.
    CliProfile,
    /// `credentials_file`: the SDKs' ini file.
    CredentialsFile,
    /// `ecs_ram_role`: instance metadata.
    EcsRamRole,
}

impl SourceKind {
    /// Every accepted name, for error messages.
    pub const NAMES: &'static [&'static str] = &[
        "config",
        "env",
        "cli_profile",
        "credentials_file",
        "ecs_ram_role",
    ];

    /// The kind for a config value.
    pub fn parse(name: &str) -> Option<SourceKind> {
        Some(match name.trim() {
            "config" => SourceKind::Config,
            "env" => SourceKind::Env,
            "cli_profile" => SourceKind::CliProfile,
            "credentials_file" => SourceKind::CredentialsFile,
            "ecs_ram_role" => SourceKind::EcsRamRole,
            _ => return None,
        })
    }
}

/// Where the credentials in use came from: what `whoami` prints. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Handed to the client directly (`DbsClient::new`).
    Fixed,
    /// The config file's keys.
    Config,
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` and friends.
    Environment,
    /// A profile of the aliyun CLI's config.json.
    CliProfile {
        /// The file.
        path: PathBuf,
        /// The profile name.
        profile: String,
    },
    /// A profile of the credentials ini file.
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// The profile name.
        profile: String,
    },
    /// The ECS instance's RAM role.
    EcsRamRole {
        /// The role, when known before the first fetch.
        role: Option<String>,
        /// The metadata service address.
        endpoint: String,
    },
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Fixed => f.write_str("credentials given to the client"),
            CredentialSource::Config => {
                f.write_str("the config file's access_key_id/access_key_secret")
            }
            CredentialSource::Environment => f.write_str(
                "environment variables ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            ),
            CredentialSource::CliProfile { path, profile } => {
                write!(f, "aliyun CLI profile `{profile}` in {}", path.display())
            }
            CredentialSource::CredentialsFile { path, profile } => write!(
                f,
                "credentials file profile `{profile}` in {}",
                path.display()
            ),
            CredentialSource::EcsRamRole { role, endpoint } => match role {
                Some(role) => write!(
                    f,
                    "ECS RAM role `{role}` from instance metadata at {endpoint}"
                ),
                None => write!(
                    f,
                    "the ECS instance's RAM role from instance metadata at {endpoint}"
                ),
            },
        }
    }
}

/// Why no usable credentials could be had. Every message says what to do; none quotes a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Nothing in the chain had credentials.
    #[error(
        "no Alibaba Cloud credentials found; looked at: {}. Set ALIBABA_CLOUD_ACCESS_KEY_ID and \
         ALIBABA_CLOUD_ACCESS_KEY_SECRET, run `aliyun configure`, write ~/.alibabacloud/credentials, \
         or put access_key_id/access_key_secret in [aliyun]",
        tried.join("; ")
    )]
    NotFound {
        /// What was checked and why it did not count.
        tried: Vec<String>,
    },
    /// A profile was named and no file has it.
    #[error(
        "profile `{profile}` was not found in {}{}; check the name (`aliyun configure list` shows \
         the CLI's profiles)",
        searched.join(" or "),
        if known.is_empty() { String::new() } else { format!(" (profiles there: {})", known.join(", ")) }
    )]
    ProfileNotFound {
        /// The name asked for.
        profile: String,
        /// The files looked in (as displayed paths).
        searched: Vec<String>,
        /// The profile names those files do have.
        known: Vec<String>,
    },
    /// A file could not be read or parsed, or its profile is unusable.
    #[error("{path}: {reason}")]
    File {
        /// The file, as displayed.
        path: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A pinned source has nothing.
    #[error("credential_source = \"{source_name}\", but {reason}")]
    Pinned {
        /// The pinned source.
        source_name: &'static str,
        /// What is missing and what to do.
        reason: String,
    },
    /// The credentials found are malformed.
    #[error("the AccessKey from {source_text} is unusable: {reason}")]
    Invalid {
        /// Where they came from.
        source_text: String,
        /// What is wrong (never the value).
        reason: String,
    },
    /// The ECS metadata service failed.
    #[error("{reason}")]
    Metadata {
        /// What happened and what to do.
        reason: String,
    },
    /// A watch or discover block names an account the config does not define.
    #[error(
        "there is no account named `{name}`; define it with an [[account]] block or fix the name"
    )]
    UnknownAccount {
        /// The name asked for.
        name: String,
    },
}

/// A source of current credentials. Implementations cache and refresh as their source needs;
/// the client calls [`ProvideCredentials::fetch`] before every attempt, so it must be cheap when
/// nothing changed.
pub trait ProvideCredentials: Send + Sync {
    /// The credentials to sign the next request with.
    fn fetch(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + '_>>;

    /// Where they come from.
    fn source(&self) -> CredentialSource;

    /// The server said the credentials expired: drop any cache so the next fetch gets new ones.
    fn invalidate(&self) {}
}

/// The client's handle on a credential source. Cheap to clone; clones share caches.
#[derive(Clone)]
pub struct CredentialProvider {
    inner: Arc<dyn ProvideCredentials>,
}

impl fmt::Debug for CredentialProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialProvider({})", self.inner.source())
    }
}

impl CredentialProvider {
    /// Credentials that never change, labelled with where they came from.
    pub fn fixed(credentials: Credentials, source: CredentialSource) -> CredentialProvider {
        CredentialProvider::from_impl(Fixed {
            credentials,
            source,
        })
    }

    /// Wraps any implementation (tests use counting providers).
    pub fn from_impl(provider: impl ProvideCredentials + 'static) -> CredentialProvider {
        CredentialProvider {
            inner: Arc::new(provider),
        }
    }

    /// The ECS instance's RAM role, through `provider`.
    pub fn ecs_ram_role(provider: ImdsProvider) -> CredentialProvider {
        CredentialProvider::from_impl(Imds(provider))
    }

    /// The current credentials.
    pub async fn credentials(&self) -> Result<Credentials, CredentialError> {
        self.inner.fetch().await
    }

    /// Where they come from.
    pub fn source(&self) -> CredentialSource {
        self.inner.source()
    }

    /// Forget cached credentials (after `InvalidSecurityToken.Expired`).
    pub fn invalidate(&self) {
        self.inner.invalidate();
    }
}

struct Fixed {
    credentials: Credentials,
    source: CredentialSource,
}

impl ProvideCredentials for Fixed {
    fn fetch(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + '_>> {
        let credentials = self.credentials.clone();
        Box::pin(async move { Ok(credentials) })
    }

    fn source(&self) -> CredentialSource {
        self.source.clone()
    }
}

struct Imds(ImdsProvider);

impl ProvideCredentials for Imds {
    fn fetch(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + '_>> {
        Box::pin(self.0.credentials())
    }

    fn source(&self) -> CredentialSource {
        CredentialSource::EcsRamRole {
            role: self.0.settings().role.clone().or(self.0.stats().role),
            endpoint: self.0.settings().endpoint.clone(),
        }
    }

    fn invalidate(&self) {
        self.0.invalidate();
    }
}

/// Which profile file a [`FileProvider`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Cli,
    Ini,
}

/// A static profile of a CLI or ini file, read again when the file changes.
struct FileProvider {
    kind: FileKind,
    path: PathBuf,
    profile: String,
    cache: Mutex<Option<(Option<SystemTime>, Credentials)>>,
}

impl FileProvider {
    fn new(kind: FileKind, path: PathBuf, profile: String, first: Credentials) -> FileProvider {
        let modified = modified(&path);
        FileProvider {
            kind,
            path,
            profile,
            cache: Mutex::new(Some((modified, first))),
        }
    }

    fn current(&self) -> Result<Credentials, CredentialError> {
        let modified = modified(&self.path);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, credentials)) = cache.as_ref()
            && *seen == modified
            && modified.is_some()
        {
            return Ok(credentials.clone());
        }
        let text = read(&self.path)?;
        let found = match self.kind {
            FileKind::Cli => CliConfig::parse(&text).and_then(|c| {
                c.profile(Some(&self.profile))
                    .map(|p| p.credentials())
                    .transpose()
            }),
            FileKind::Ini => IniFile::parse(&text).and_then(|f| {
                f.section(&self.profile)
                    .map(|s| s.credentials())
                    .transpose()
            }),
        }
        .map_err(|e| file_error(&self.path, e))?;
        let credentials = match found {
            Some(ProfileCredentials::Static(c)) => c,
            Some(ProfileCredentials::EcsRamRole(_)) => {
                return Err(CredentialError::File {
                    path: self.path.display().to_string(),
                    reason: format!(
                        "profile `{}` changed to an ECS RAM role while dbswatch was running; \
                         restart dbswatch to use it",
                        self.profile
                    ),
                });
            }
            None => {
                return Err(CredentialError::File {
                    path: self.path.display().to_string(),
                    reason: format!(
                        "profile `{}` is no longer in the file; put it back or restart dbswatch \
                         with another profile",
                        self.profile
                    ),
                });
            }
        };
        validate(&credentials, &self.source().to_string())?;
        *cache = Some((modified, credentials.clone()));
        Ok(credentials)
    }
}

impl ProvideCredentials for FileProvider {
    fn fetch(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + '_>> {
        let result = self.current();
        Box::pin(async move { result })
    }

    fn source(&self) -> CredentialSource {
        match self.kind {
            FileKind::Cli => CredentialSource::CliProfile {
                path: self.path.clone(),
                profile: self.profile.clone(),
            },
            FileKind::Ini => CredentialSource::CredentialsFile {
                path: self.path.clone(),
                profile: self.profile.clone(),
            },
        }
    }

    fn invalidate(&self) {
        // An STS profile whose token expired: read the file again, someone may have renewed it.
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(path: &Path) -> Result<String, CredentialError> {
    std::fs::read_to_string(path).map_err(|e| CredentialError::File {
        path: path.display().to_string(),
        reason: format!("cannot read the file: {e}"),
    })
}

fn file_error(path: &Path, e: ProfileError) -> CredentialError {
    CredentialError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Environment variables captured once, so resolution never reads the process environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvSnapshot(BTreeMap<String, String>);

impl fmt::Debug for EnvSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl EnvSnapshot {
    /// The [`ENV_NAMES`] that `lookup` knows, empty values dropped.
    pub fn capture(lookup: &dyn Fn(&str) -> Option<String>) -> EnvSnapshot {
        EnvSnapshot(
            ENV_NAMES
                .iter()
                .filter_map(|name| {
                    lookup(name)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (name.to_string(), v))
                })
                .collect(),
        )
    }

    /// From explicit pairs (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> EnvSnapshot {
        EnvSnapshot(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// True when the variable is `true` (any case), as the SDKs test their `_DISABLED` flags.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// The AccessKey from `ALIBABA_CLOUD_ACCESS_KEY_ID`/`_SECRET`/`SECURITY_TOKEN`, when both
    /// key variables are set.
    pub fn access_key(&self) -> Option<Credentials> {
        let id = self.get("ALIBABA_CLOUD_ACCESS_KEY_ID")?;
        let secret = self.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")?;
        let mut credentials = Credentials::new(id, secret);
        credentials.security_token = self
            .get("ALIBABA_CLOUD_SECURITY_TOKEN")
            .map(crate::secret::Secret::new);
        Some(credentials)
    }
}

/// Everything the chain needs, captured when the config is loaded.
#[derive(Debug, Clone, Default)]
pub struct ChainSettings {
    /// Credentials written in the config section (after `${VAR}` expansion).
    pub config_credentials: Option<Credentials>,
    /// `credential_source`: skip the chain and use this one.
    pub source: Option<SourceKind>,
    /// `profile`: the CLI or ini profile to use.
    pub profile: Option<String>,
    /// `cli_config_file`: overrides `ALIBABA_CLOUD_CONFIG_FILE` and the default.
    pub cli_config_file: Option<PathBuf>,
    /// `credentials_file`: overrides `ALIBABA_CLOUD_CREDENTIALS_FILE` and the default.
    pub credentials_file: Option<PathBuf>,
    /// `ecs_ram_role`: overrides `ALIBABA_CLOUD_ECS_METADATA`.
    pub ecs_ram_role: Option<String>,
    /// `metadata_endpoint`: where the ECS metadata service is; [`DEFAULT_METADATA_ENDPOINT`].
    pub metadata_endpoint: Option<String>,
    /// The captured environment.
    pub env: EnvSnapshot,
}

impl ChainSettings {
    /// The CLI config file: setting, then `ALIBABA_CLOUD_CONFIG_FILE`, then `$HOME/.aliyun/config.json`.
    pub fn cli_config_path(&self) -> Option<PathBuf> {
        self.cli_config_file
            .clone()
            .or_else(|| self.env.get("ALIBABA_CLOUD_CONFIG_FILE").map(PathBuf::from))
            .or_else(|| {
                self.env
                    .get("HOME")
                    .map(|h| Path::new(h).join(".aliyun").join("config.json"))
            })
    }

    /// The ini file: setting, then `ALIBABA_CLOUD_CREDENTIALS_FILE`, then
    /// `$HOME/.alibabacloud/credentials`.
    pub fn credentials_file_path(&self) -> Option<PathBuf> {
        self.credentials_file
            .clone()
            .or_else(|| {
                self.env
                    .get("ALIBABA_CLOUD_CREDENTIALS_FILE")
                    .map(PathBuf::from)
            })
            .or_else(|| {
                self.env
                    .get("HOME")
                    .map(|h| Path::new(h).join(".alibabacloud").join("credentials"))
            })
    }

    /// The profile asked for: the setting, else `ALIBABA_CLOUD_PROFILE`.
    pub fn wanted_profile(&self) -> Option<&str> {
        self.profile
            .as_deref()
            .or_else(|| self.env.get("ALIBABA_CLOUD_PROFILE"))
    }

    /// Metadata service settings.
    pub fn imds_settings(&self, role: Option<String>) -> ImdsSettings {
        let mut settings = ImdsSettings::new(
            self.metadata_endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.to_string()),
            role.or_else(|| self.ecs_ram_role.clone())
                .or_else(|| self.env.get("ALIBABA_CLOUD_ECS_METADATA").map(String::from)),
        );
        settings.allow_v1 = !self.env.flag("ALIBABA_CLOUD_IMDSV1_DISABLED");
        settings
    }
}

/// Walks the chain (or the pinned source) and returns the provider of the first source that has
/// credentials. Reads profile files; contacts nothing: the ECS metadata service is only asked
/// when credentials are first needed.
pub fn resolve(settings: &ChainSettings) -> Result<CredentialProvider, CredentialError> {
    match settings.source {
        Some(kind) => resolve_pinned(settings, kind),
        None => resolve_chain(settings),
    }
}

fn resolve_pinned(
    settings: &ChainSettings,
    kind: SourceKind,
) -> Result<CredentialProvider, CredentialError> {
    let pinned = |name, reason: &str| CredentialError::Pinned {
        source_name: name,
        reason: reason.to_string(),
    };
    match kind {
        SourceKind::Config => {
            let c = settings.config_credentials.clone().ok_or_else(|| {
                pinned(
                    "config",
                    "the section has no access_key_id and access_key_secret; add them",
                )
            })?;
            fixed(c, CredentialSource::Config)
        }
        SourceKind::Env => {
            let c = settings.env.access_key().ok_or_else(|| {
                pinned(
                    "env",
                    "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET are not both \
                     set; export them",
                )
            })?;
            fixed(c, CredentialSource::Environment)
        }
        SourceKind::CliProfile => {
            let path = settings.cli_config_path().ok_or_else(|| {
                pinned(
                    "cli_profile",
                    "there is no HOME to find ~/.aliyun/config.json in; set cli_config_file",
                )
            })?;
            match from_cli(settings, &path)? {
                Some(provider) => Ok(provider),
                None => Err(profile_missing(settings, &[path])),
            }
        }
        SourceKind::CredentialsFile => {
            let path = settings.credentials_file_path().ok_or_else(|| {
                pinned(
                    "credentials_file",
                    "there is no HOME to find ~/.alibabacloud/credentials in; set credentials_file",
                )
            })?;
            match from_ini(settings, &path)? {
                Some(provider) => Ok(provider),
                None => Err(profile_missing(settings, &[path])),
            }
        }
        SourceKind::EcsRamRole => imds(settings, None),
    }
}

fn resolve_chain(settings: &ChainSettings) -> Result<CredentialProvider, CredentialError> {
    let mut tried = Vec::new();
    // A profile named in the config is a choice of source: keys in the environment (meant for
    // something else, or the default account) must not override it.
    if settings.profile.is_none() {
        if let Some(c) = settings.config_credentials.clone() {
            return fixed(c, CredentialSource::Config);
        }
        tried.push("no access_key_id/access_key_secret in the config".to_string());
        if let Some(c) = settings.env.access_key() {
            return fixed(c, CredentialSource::Environment);
        }
        tried.push("ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET not set".to_string());
    }

    let mut searched = Vec::new();
    if settings.env.flag("ALIBABA_CLOUD_CLI_PROFILE_DISABLED") {
        tried.push("aliyun CLI profiles disabled by ALIBABA_CLOUD_CLI_PROFILE_DISABLED".into());
    } else if let Some(path) = settings.cli_config_path() {
        if path.exists() {
            if let Some(provider) = from_cli(settings, &path)? {
                return Ok(provider);
            }
            searched.push(path.clone());
            tried.push(format!("{} has no usable profile", path.display()));
        } else {
            tried.push(format!("no {}", path.display()));
        }
    }
    if let Some(path) = settings.credentials_file_path() {
        if path.exists() {
            if let Some(provider) = from_ini(settings, &path)? {
                return Ok(provider);
            }
            searched.push(path.clone());
            tried.push(format!("{} has no usable profile", path.display()));
        } else if settings.credentials_file.is_some()
            || settings.env.get("ALIBABA_CLOUD_CREDENTIALS_FILE").is_some()
        {
            // Named explicitly: a missing file is a mistake, not an absent source.
            return Err(CredentialError::File {
                path: path.display().to_string(),
                reason: "the credentials file does not exist; fix the path \
                         (credentials_file / ALIBABA_CLOUD_CREDENTIALS_FILE)"
                    .to_string(),
            });
        } else {
            tried.push(format!("no {}", path.display()));
        }
    }
    if settings.wanted_profile().is_some() {
        return Err(profile_missing(settings, &searched));
    }
    if settings.env.flag("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
        tried.push("ECS instance metadata disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED".into());
        return Err(CredentialError::NotFound { tried });
    }
    imds(settings, None)
}

/// The CLI profile the settings ask for, or `None` when the file does not have it.
fn from_cli(
    settings: &ChainSettings,
    path: &Path,
) -> Result<Option<CredentialProvider>, CredentialError> {
    let text = read(path)?;
    let cli = CliConfig::parse(&text).map_err(|e| file_error(path, e))?;
    let wanted = cli.wanted(settings.wanted_profile()).map(str::to_string);
    let Some(profile) = cli.profile(settings.wanted_profile()) else {
        return Ok(None);
    };
    let name = wanted.unwrap_or_default();
    from_profile(
        settings,
        profile.credentials().map_err(|e| file_error(path, e))?,
        FileKind::Cli,
        path,
        name,
    )
    .map(Some)
}

/// The ini profile the settings ask for (`default` when none), or `None` when absent.
fn from_ini(
    settings: &ChainSettings,
    path: &Path,
) -> Result<Option<CredentialProvider>, CredentialError> {
    let text = read(path)?;
    let ini = IniFile::parse(&text).map_err(|e| file_error(path, e))?;
    let name = settings.wanted_profile().unwrap_or("default").to_string();
    let Some(section) = ini.section(&name) else {
        return Ok(None);
    };
    from_profile(
        settings,
        section.credentials().map_err(|e| file_error(path, e))?,
        FileKind::Ini,
        path,
        name,
    )
    .map(Some)
}

fn from_profile(
    settings: &ChainSettings,
    found: ProfileCredentials,
    kind: FileKind,
    path: &Path,
    profile: String,
) -> Result<CredentialProvider, CredentialError> {
    match found {
        ProfileCredentials::Static(credentials) => {
            let provider =
                FileProvider::new(kind, path.to_path_buf(), profile, credentials.clone());
            validate(&credentials, &provider.source().to_string())?;
            Ok(CredentialProvider::from_impl(provider))
        }
        ProfileCredentials::EcsRamRole(role) => imds(settings, role),
    }
}

fn imds(
    settings: &ChainSettings,
    role: Option<String>,
) -> Result<CredentialProvider, CredentialError> {
    Ok(CredentialProvider::ecs_ram_role(ImdsProvider::new(
        settings.imds_settings(role),
    )?))
}

fn fixed(
    credentials: Credentials,
    source: CredentialSource,
) -> Result<CredentialProvider, CredentialError> {
    validate(&credentials, &source.to_string())?;
    Ok(CredentialProvider::fixed(credentials, source))
}

fn profile_missing(settings: &ChainSettings, searched: &[PathBuf]) -> CredentialError {
    let profile = settings.wanted_profile().unwrap_or("default").to_string();
    let mut known = Vec::new();
    for path in searched {
        if let Ok(text) = std::fs::read_to_string(path) {
            let names = CliConfig::parse(&text)
                .map(|c| c.names())
                .or_else(|_| IniFile::parse(&text).map(|i| i.names()))
                .unwrap_or_default();
            for name in names {
                if !known.contains(&name) {
                    known.push(name);
                }
            }
        }
    }
    CredentialError::ProfileNotFound {
        profile,
        searched: if searched.is_empty() {
            vec!["the aliyun CLI config and the credentials file (neither exists)".to_string()]
        } else {
            searched.iter().map(|p| p.display().to_string()).collect()
        },
        known,
    }
}

/// Rejects credentials that would only fail later as a puzzling `SignatureDoesNotMatch`.
pub fn validate(credentials: &Credentials, source_text: &str) -> Result<(), CredentialError> {
    let invalid = |reason: &str| CredentialError::Invalid {
        source_text: source_text.to_string(),
        reason: reason.to_string(),
    };
    let id = credentials.access_key_id.as_str();
    let secret = credentials.access_key_secret.expose();
    if id.is_empty() {
        return Err(invalid("the AccessKey id is empty"));
    }
    if secret.is_empty() {
        return Err(invalid("the AccessKey secret is empty"));
    }
    if id.trim() != id {
        return Err(invalid(
            "the AccessKey id starts or ends with whitespace; remove the spaces or newline",
        ));
    }
    if secret.trim() != secret {
        return Err(invalid(
            "the AccessKey secret starts or ends with whitespace; remove the spaces or newline",
        ));
    }
    if credentials
        .security_token
        .as_ref()
        .is_some_and(|t| t.expose().trim().is_empty())
    {
        return Err(invalid(
            "the STS security token is empty; set it or leave it out for a long-lived AccessKey",
        ));
    }
    Ok(())
}

/// `LTAI5tAbCdEf` -> `LTAI****CdEf`: enough to tell keys apart, not enough to use one.
pub fn mask_key_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return "****".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}
