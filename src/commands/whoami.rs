//! `dbswatch whoami`: for each account, where its credentials come from and which AccessKey that
//! is (masked), after actually fetching them, so a broken profile or an unreachable metadata
//! service shows up here and not at the first poll. Nothing is sent to DBS.

use std::path::Path;
use std::process::ExitCode;

use crate::accounts::Accounts;
use crate::dbs::credentials::mask_key_id;
use crate::secret::display_url;

/// Prints each account's (or one account's) credential source; exit 1 when one has none.
pub async fn whoami(path: &Path, account: Option<String>) -> ExitCode {
    let config = match super::load_or_default(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let accounts = Accounts::new(&config);
    let names: Vec<String> = match &account {
        Some(name) if accounts.config(Some(name)).is_none() => {
            eprintln!(
                "error: no account named `{name}`; configured: {}",
                accounts.names().join(", ")
            );
            return ExitCode::from(2);
        }
        Some(name) => vec![name.clone()],
        None => accounts.names(),
    };
    let mut failed = false;
    for name in names {
        print!(
            "{}",
            describe(&accounts, &name).await.unwrap_or_else(|e| {
                failed = true;
                e
            })
        );
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The lines for one account, or (as the error) the lines saying why it has no credentials.
async fn describe(accounts: &Accounts, name: &str) -> Result<String, String> {
    let settings = accounts
        .config(Some(name))
        .expect("names come from the accounts");
    let mut out = format!("account {name}\n");
    let endpoint = settings
        .endpoint_for(None)
        .map(|e| display_url(&e))
        .unwrap_or_else(|| "none (no VPC endpoint in this region)".to_string());
    out.push_str(&format!("  region:      {}\n", settings.region));
    out.push_str(&format!("  endpoint:    {endpoint}\n"));
    let provider = match accounts.provider(Some(name)) {
        Ok(p) => p,
        Err(e) => {
            out.push_str(&format!("  credentials: none: {e}\n"));
            return Err(out);
        }
    };
    match provider.credentials().await {
        Ok(credentials) => {
            // Fetched first: an ECS role is only known once the metadata service named it.
            out.push_str(&format!("  credentials: {}\n", provider.source()));
            out.push_str(&format!(
                "  AccessKey:   {}{}\n",
                mask_key_id(&credentials.access_key_id),
                if credentials.security_token.is_some() {
                    " (STS, with a security token)"
                } else {
                    ""
                }
            ));
            Ok(out)
        }
        Err(e) => {
            out.push_str(&format!("  credentials: {}\n", provider.source()));
            out.push_str(&format!("  error:       {e}\n"));
            Err(out)
        }
    }
}
