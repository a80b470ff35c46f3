//! The Alibaba Cloud accounts of a configuration, as DBS clients.
//!
//! Each account (`[aliyun]`, named `default`, and every `[[account]]`) has its credential chain
//! resolved once, when the app starts: profile files are read then, the ECS metadata service is
//! only asked when a request needs credentials. Clients are built per (account, region) on first
//! use and kept, so connections are pooled, and they all share one [`Limiter`]: the request rate
//! and concurrency limits hold across every account and watch.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::{AliyunConfig, Config, DEFAULT_ACCOUNT};
use crate::dbs::credentials::{self, CredentialError, CredentialProvider, CredentialSource};
use crate::dbs::{ClientOptions, DbsClient, DbsError, Limiter};

/// The accounts and their clients.
#[derive(Debug)]
pub struct Accounts {
    limiter: Limiter,
    entries: Vec<Entry>,
    clients: Mutex<HashMap<(String, Option<String>), DbsClient>>,
}

#[derive(Debug)]
struct Entry {
    config: AliyunConfig,
    provider: Result<CredentialProvider, CredentialError>,
}

impl Accounts {
    /// Resolves every account's credential chain (reading profile files, contacting nothing).
    pub fn new(config: &Config) -> Accounts {
        Accounts::with_limiter(config, Limiter::new(config.dbs.limiter))
    }

    /// The same, sharing an existing limiter.
    pub fn with_limiter(config: &Config, limiter: Limiter) -> Accounts {
        Accounts {
            limiter,
            entries: config
                .all_accounts()
                .map(|a| Entry {
                    provider: credentials::resolve(&a.chain),
                    config: a.clone(),
                })
                .collect(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The limiter every client shares.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Account names, `default` first.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.config.name.clone()).collect()
    }

    /// An account's settings.
    pub fn config(&self, account: Option<&str>) -> Option<&AliyunConfig> {
        self.entry(account).map(|e| &e.config)
    }

    /// Where an account's credentials come from, or why it has none.
    pub fn source(&self, account: Option<&str>) -> Result<CredentialSource, CredentialError> {
        match self.entry(account) {
            Some(e) => e
                .provider
                .as_ref()
                .map(|p| p.source())
                .map_err(Clone::clone),
            None => Err(unknown_account(account)),
        }
    }

    /// The account's credential provider (for `whoami`).
    pub fn provider(&self, account: Option<&str>) -> Result<CredentialProvider, CredentialError> {
        match self.entry(account) {
            Some(e) => e.provider.clone(),
            None => Err(unknown_account(account)),
        }
    }

    /// The client for `account` (`None` is `[aliyun]`) in `region` (`None` is the account's).
    pub fn client(
        &self,
        account: Option<&str>,
        region: Option<&str>,
    ) -> Result<DbsClient, DbsError> {
        let name = account.unwrap_or(DEFAULT_ACCOUNT).to_string();
        let key = (name.clone(), region.map(str::to_string));
        if let Some(client) = self.lock().get(&key) {
            return Ok(client.clone());
        }
        let entry = self
            .entry(Some(&name))
            .ok_or_else(|| DbsError::Credentials(unknown_account(Some(&name))))?;
        let provider = entry.provider.clone().map_err(DbsError::Credentials)?;
        let endpoint =
            entry
                .config
                .endpoint_for(region)
                .ok_or_else(|| DbsError::InvalidOptions {
                    reason: format!(
                        "region {} has no DBS VPC endpoint",
                        region.unwrap_or(&entry.config.region)
                    ),
                    fix: format!(
                        "remove `vpc` from account `{name}` or set its `endpoint`, or choose another region"
                    ),
                })?;
        let options = ClientOptions {
            endpoint,
            ..entry.config.client_options()
        };
        let client =
            DbsClient::with_provider(provider, options)?.with_limiter(self.limiter.clone());
        self.lock().insert(key, client.clone());
        Ok(client)
    }

    fn entry(&self, account: Option<&str>) -> Option<&Entry> {
        let name = account.unwrap_or(DEFAULT_ACCOUNT);
        self.entries.iter().find(|e| e.config.name == name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Option<String>), DbsClient>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unknown_account(account: Option<&str>) -> CredentialError {
    CredentialError::UnknownAccount {
        name: account.unwrap_or(DEFAULT_ACCOUNT).to_string(),
    }
}
