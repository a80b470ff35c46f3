//! `dbswatch plans` and `dbswatch restores`: what the account has, as a table or as `[[watch]]`
//! blocks to paste into a config.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;

use chrono::{TimeDelta, Utc};

use super::{table, toml_string};
use crate::accounts::Accounts;
use crate::dbs::lists::{PlanQuery, RestoreQuery};

/// Lists every backup plan (of `region` when given); `toml` prints `[[watch]]` blocks instead.
pub async fn plans(
    path: &Path,
    account: Option<String>,
    region: Option<String>,
    toml: bool,
) -> ExitCode {
    let config = match super::load_or_default(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let accounts = Accounts::new(&config);
    let client = match accounts.client(account.as_deref(), region.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let plans = match client
        .list_backup_plans(&PlanQuery {
            region: region.clone(),
            ..PlanQuery::default()
        })
        .await
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if toml {
        let mut names = HashSet::new();
        for plan in &plans {
            let name = unique_name(plan.name.as_deref(), &plan.id, &mut names);
            println!("[[watch]]");
            println!("name = {}", toml_string(&name));
            println!("backup_plan_id = {}", toml_string(&plan.id));
            if let Some(account) = &account {
                println!("account = {}", toml_string(account));
            }
            println!("schedule = \"*/5 * * * *\"\n");
        }
        return ExitCode::SUCCESS;
    }
    let rows: Vec<Vec<String>> = plans
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.name.clone().unwrap_or_default(),
                p.status.clone().unwrap_or_default(),
                p.database_type.clone().unwrap_or_default(),
                p.backup_method.clone().unwrap_or_default(),
                p.source_region.clone().unwrap_or_default(),
                p.source_instance_id.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID", "NAME", "STATUS", "DATABASE", "METHOD", "REGION", "INSTANCE"
            ],
            &rows
        )
    );
    println!(
        "{} backup plan{} (`dbswatch plans --toml` prints them as [[watch]] blocks)",
        plans.len(),
        if plans.len() == 1 { "" } else { "s" }
    );
    ExitCode::SUCCESS
}

/// Lists the restore tasks created in the last `days` days; `toml` prints `[[watch]]` blocks.
pub async fn restores(path: &Path, account: Option<String>, days: u32, toml: bool) -> ExitCode {
    let config = match super::load_or_default(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let accounts = Accounts::new(&config);
    let client = match accounts.client(account.as_deref(), None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let now = Utc::now();
    let since = now - TimeDelta::days(i64::from(days.max(1)));
    let tasks = match client
        .list_restore_tasks(&RestoreQuery {
            start_ms: Some(since.timestamp_millis()),
            end_ms: Some(now.timestamp_millis()),
            ..RestoreQuery::default()
        })
        .await
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if toml {
        let mut names = HashSet::new();
        for task in &tasks {
            let name = unique_name(task.name.as_deref(), &task.id, &mut names);
            println!("[[watch]]");
            println!("name = {}", toml_string(&name));
            println!("restore_task_id = {}", toml_string(&task.id));
            if let Some(account) = &account {
                println!("account = {}", toml_string(account));
            }
            println!("schedule = \"*/2 * * * *\"\n");
        }
        return ExitCode::SUCCESS;
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone().unwrap_or_default(),
                t.truth.status.clone().unwrap_or_default(),
                t.truth
                    .overall_progress()
                    .map(|p| format!("{p}%"))
                    .unwrap_or_default(),
                t.backup_plan_id.clone().unwrap_or_default(),
                t.destination_region.clone().unwrap_or_default(),
                t.created_ms
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|c| c.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "NAME",
                "STATUS",
                "PROGRESS",
                "PLAN",
                "REGION",
                "CREATED (UTC)"
            ],
            &rows
        )
    );
    println!(
        "{} restore task{} created in the last {} day{}",
        tasks.len(),
        if tasks.len() == 1 { "" } else { "s" },
        days.max(1),
        if days.max(1) == 1 { "" } else { "s" }
    );
    ExitCode::SUCCESS
}

/// A watch name from the DBS name (its id when it has none), made unique with the id.
fn unique_name(name: Option<&str>, id: &str, taken: &mut HashSet<String>) -> String {
    let base = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(id)
        .to_string();
    let name = if taken.contains(&base) {
        format!("{base}-{id}")
    } else {
        base
    };
    taken.insert(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_names_are_unique() {
        let mut taken = HashSet::new();
        assert_eq!(unique_name(Some("orders"), "dbs1", &mut taken), "orders");
        assert_eq!(
            unique_name(Some("orders"), "dbs2", &mut taken),
            "orders-dbs2"
        );
        assert_eq!(unique_name(None, "dbs3", &mut taken), "dbs3");
        assert_eq!(unique_name(Some("  "), "dbs4", &mut taken), "dbs4");
    }
}
