//! `[[discover]]`: find the backup plans and restore tasks to watch, instead of listing them.
//!
//! Each pass lists what each block asks for (`DescribeBackupPlanList`, or
//! `DescribeRestoreTaskList` over the block's recent window, all pages), keeps what matches the
//! block's filters, and makes one watch per item, named `<block>/<id>`, with the block's schedule
//! and channels. A plan or task already watched by a `[[watch]]` of the same account is left to
//! that watch.
//!
//! Something found earlier and no longer found (deleted, or no longer matching the filters) is
//! **retired**: one `precheck.retired` / `restore.retired` event is recorded with its last known
//! state and routed like any other event, and the watch is no longer polled. A restore that had
//! already finished (see [`App::is_done`]) leaves quietly: it aged out of the window. A listing
//! that fails changes nothing, so an outage never retires every watch. If something comes back,
//! it is watched again and compared with its stored state.
//!
//! Discovered watches live in memory ([`WatchRuntime`]); every start runs discovery first.
//! Something that vanished while dbswatch was not running is not reported.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, RwLock};

use serde::Serialize;

use crate::config::{DiscoverConfig, DiscoverKind, WatchConfig};
use crate::dbs::lists::{BackupPlan, PlanQuery, RestoreQuery, RestoreTask, name_matches};
use crate::event::{Change, Event};
use crate::pipeline::App;
use crate::snapshot::Target;
use crate::store::PollWrite;

/// Watches that exist at run time besides the configured ones, and restores that are done.
#[derive(Debug, Default)]
pub struct WatchRuntime {
    discovered: RwLock<BTreeMap<String, Discovered>>,
    done: Mutex<HashSet<String>>,
}

#[derive(Debug, Clone)]
struct Discovered {
    block: String,
    watch: WatchConfig,
}

impl WatchRuntime {
    /// The discovered watches, by name.
    pub fn discovered(&self) -> Vec<WatchConfig> {
        self.read().values().map(|d| d.watch.clone()).collect()
    }

    /// Whether `watch` was found to be done.
    pub fn is_done(&self, watch: &str) -> bool {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(watch)
    }

    /// Remembers that `watch` is done.
    pub fn mark_done(&self, watch: &str) {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(watch.to_string());
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Discovered>> {
        self.discovered.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Discovered>> {
        self.discovered.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one discovery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiscoveryReport {
    /// Watches that appeared.
    pub added: Vec<String>,
    /// Watches that were retired (with an event) or left quietly because they were done.
    pub retired: Vec<String>,
    /// Discovered watches now.
    pub watching: usize,
    /// Blocks whose listing failed (their watches were kept as they were).
    pub errors: Vec<String>,
}

/// The name of the watch a block makes for an id.
pub fn watch_name(block: &str, id: &str) -> String {
    format!("{block}/{id}")
}

/// Whether a listed plan passes the block's filters (`Region` is applied by DBS).
pub fn plan_matches(block: &DiscoverConfig, plan: &BackupPlan) -> bool {
    let name_ok = block
        .match_name
        .as_deref()
        .is_none_or(|glob| name_matches(glob, plan.name.as_deref().unwrap_or("")));
    let status_ok = block.statuses.is_empty()
        || plan
            .status
            .as_deref()
            .is_some_and(|s| block.statuses.iter().any(|w| w == s));
    let type_ok = block.database_types.is_empty()
        || plan.database_type.as_deref().is_some_and(|t| {
            block
                .database_types
                .iter()
                .any(|w| w.eq_ignore_ascii_case(t))
        });
    name_ok && status_ok && type_ok
}

/// Whether a listed restore task passes the block's filters.
pub fn task_matches(block: &DiscoverConfig, task: &RestoreTask) -> bool {
    let name_ok = block
        .match_name
        .as_deref()
        .is_none_or(|glob| name_matches(glob, task.name.as_deref().unwrap_or("")));
    let status_ok = block.statuses.is_empty()
        || task
            .truth
            .status
            .as_deref()
            .is_some_and(|s| block.statuses.iter().any(|w| w == s));
    let region_ok = block.region.as_deref().is_none_or(|r| {
        task.destination_region
            .as_deref()
            .is_none_or(|d| d.eq_ignore_ascii_case(r))
    });
    name_ok && status_ok && region_ok
}

/// The watch a block makes for a target.
pub fn watch_for(block: &DiscoverConfig, target: Target) -> WatchConfig {
    WatchConfig {
        name: watch_name(&block.name, target.id()),
        target,
        schedule: block.schedule.clone(),
        channels: block.channels.clone(),
        account: block.account.clone(),
        region: block.region.clone(),
    }
}

impl App {
    /// Every watch: the configured ones, then the discovered ones by name.
    pub fn watches(&self) -> Vec<WatchConfig> {
        let mut all = self.config.watches.clone();
        all.extend(self.runtime.discovered());
        all
    }

    /// The configured or discovered watch with this name.
    pub fn find_watch(&self, name: &str) -> Option<WatchConfig> {
        self.config
            .watch(name)
            .cloned()
            .or_else(|| self.runtime.read().get(name).map(|d| d.watch.clone()))
    }

    /// One discovery pass over every `[[discover]]` block.
    pub async fn discover(&self) -> DiscoveryReport {
        let mut report = DiscoveryReport::default();
        let now_ms = self.clock.now_ms();
        for block in &self.config.discover {
            let found = match self.list(block, now_ms).await {
                Ok(found) => found,
                Err(e) => {
                    let message = self
                        .redactor
                        .redact(&format!("discover `{}`: {e}", block.name));
                    tracing::warn!(error = %message, "discovery failed; its watches are kept as they were");
                    report.errors.push(message);
                    continue;
                }
            };
            // A target that a [[watch]] of the same account follows is left to it.
            let configured: HashSet<(&Target, Option<&str>)> = self
                .config
                .watches
                .iter()
                .map(|w| (&w.target, w.account.as_deref()))
                .collect();
            let wanted: BTreeMap<String, WatchConfig> = found
                .into_iter()
                .filter(|t| !configured.contains(&(t, block.account.as_deref())))
                .map(|t| {
                    let w = watch_for(block, t);
                    (w.name.clone(), w)
                })
                .collect();
            let current: Vec<String> = self
                .runtime
                .read()
                .iter()
                .filter(|(_, d)| d.block == block.name)
                .map(|(name, _)| name.clone())
                .collect();
            for name in current.iter().filter(|n| !wanted.contains_key(*n)) {
                let watch = self.runtime.write().remove(name).map(|d| d.watch);
                if let Some(watch) = watch {
                    self.retire(&watch).await;
                    report.retired.push(name.clone());
                }
            }
            let mut runtime = self.runtime.write();
            for (name, watch) in wanted {
                if let std::collections::btree_map::Entry::Vacant(slot) = runtime.entry(name) {
                    tracing::info!(watch = %slot.key(), discover = %block.name, "now watching");
                    report.added.push(slot.key().clone());
                    slot.insert(Discovered {
                        block: block.name.clone(),
                        watch,
                    });
                }
            }
        }
        report.watching = self.runtime.read().len();
        report
    }

    /// The targets a block finds now.
    async fn list(
        &self,
        block: &DiscoverConfig,
        now_ms: i64,
    ) -> Result<Vec<Target>, crate::dbs::DbsError> {
        let client = self
            .accounts
            .client(block.account.as_deref(), block.region.as_deref())?;
        Ok(match block.kind {
            DiscoverKind::BackupPlans => client
                .list_backup_plans(&PlanQuery {
                    region: block.region.clone(),
                    // One status can be filtered by DBS; several are filtered here.
                    status: match block.statuses.as_slice() {
                        [one] => Some(one.clone()),
                        _ => None,
                    },
                    page_size: 0,
                    ..PlanQuery::default()
                })
                .await?
                .into_iter()
                .filter(|p| plan_matches(block, p))
                .map(|p| Target::BackupPlan(p.id))
                .collect(),
            DiscoverKind::RestoreTasks => client
                .list_restore_tasks(&RestoreQuery {
                    start_ms: Some(now_ms - block.recent.as_millis() as i64),
                    end_ms: Some(now_ms),
                    page_size: 0,
                    ..RestoreQuery::default()
                })
                .await?
                .into_iter()
                .filter(|t| task_matches(block, t))
                .map(|t| Target::RestoreTask(t.id))
                .collect(),
        })
    }

    /// Reports a vanished watch once, with its last known state.
    async fn retire(&self, watch: &WatchConfig) {
        if self.is_done(watch).await {
            tracing::info!(watch = %watch.name, "a finished restore is no longer listed; forgotten");
            return;
        }
        let baseline = match self.store.baseline(&watch.name, &watch.target).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                tracing::info!(
                    watch = %watch.name,
                    "no longer found by discovery before its first successful poll; not watched any more"
                );
                return;
            }
            Err(e) => {
                tracing::error!(watch = %watch.name, error = %e, "cannot read the state of a retired watch");
                return;
            }
        };
        let now = self.clock.now_ms();
        let snapshot = &baseline.snapshot;
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            scope: watch.target.scope(),
            change: Change::Retired,
            watch: watch.name.clone(),
            target: watch.target.clone(),
            status_before: snapshot.status.clone(),
            status: snapshot.status.clone(),
            progress_before: snapshot.progress,
            progress: snapshot.progress,
            items: Vec::new(),
            item_change: None,
            item_total: snapshot.items.len(),
            observed_at_ms: now,
            job_error: None,
            restore_task: snapshot.restore.clone(),
            poll: None,
        };
        let channels = self.route(watch, &event.kind());
        tracing::info!(
            watch = %watch.name,
            channels = %channels.join(","),
            "no longer found by discovery; retired"
        );
        let routed = vec![(event, channels)];
        let mut new_uid = || uuid::Uuid::new_v4().to_string();
        let write = PollWrite {
            watch: &watch.name,
            target: &watch.target,
            started_at: now,
            duration_ms: 0,
            finished_at: now,
            snapshot,
            raw_body: "",
            request_id: None,
            expected_hash: Some(&baseline.content_hash),
            events: &routed,
            new_uid: &mut new_uid,
        };
        if let Err(e) = self.store.record_poll(write).await {
            tracing::error!(watch = %watch.name, error = %e, "could not record the retirement");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::CronSchedule;
    use crate::snapshot::RestoreTruth;
    use std::time::Duration;

    fn block(kind: DiscoverKind) -> DiscoverConfig {
        DiscoverConfig {
            name: "prod".into(),
            account: None,
            kind,
            region: None,
            match_name: None,
            statuses: Vec::new(),
            database_types: Vec::new(),
            recent: Duration::from_secs(86_400),
            schedule: CronSchedule::parse("*/5 * * * *").unwrap(),
            channels: vec!["ops".into()],
        }
    }

    fn plan(id: &str, name: &str, status: &str, db: &str) -> BackupPlan {
        BackupPlan {
            id: id.into(),
            name: Some(name.into()),
            status: Some(status.into()),
            database_type: Some(db.into()),
            backup_method: None,
            source_region: None,
            source_instance_type: None,
            source_instance_id: None,
            created_ms: None,
            error: None,
        }
    }

    #[test]
    fn plan_filters_combine() {
        let mut b = block(DiscoverKind::BackupPlans);
        let p = plan("dbs1", "orders-prod", "running", "MySQL");
        assert!(plan_matches(&b, &p));
        b.match_name = Some("orders-*".into());
        b.statuses = vec!["running".into(), "check_pass".into()];
        b.database_types = vec!["mysql".into()];
        assert!(plan_matches(&b, &p));
        assert!(!plan_matches(
            &b,
            &plan("dbs2", "billing", "running", "MySQL")
        ));
        assert!(!plan_matches(
            &b,
            &plan("dbs3", "orders-dev", "pause", "MySQL")
        ));
        assert!(!plan_matches(
            &b,
            &plan("dbs4", "orders-pg", "running", "PostgreSQL")
        ));
    }

    #[test]
    fn task_filters_use_status_name_and_destination_region() {
        let mut b = block(DiscoverKind::RestoreTasks);
        let task = RestoreTask {
            id: "r1".into(),
            name: Some("drill".into()),
            backup_plan_id: None,
            created_ms: None,
            finish_ms: None,
            destination_region: Some("cn-shanghai".into()),
            destination_instance_id: None,
            truth: RestoreTruth {
                status: Some("running".into()),
                ..RestoreTruth::default()
            },
        };
        assert!(task_matches(&b, &task));
        b.region = Some("cn-shanghai".into());
        b.statuses = vec!["running".into()];
        b.match_name = Some("dr*".into());
        assert!(task_matches(&b, &task));
        b.region = Some("cn-beijing".into());
        assert!(!task_matches(&b, &task));
    }

    #[test]
    fn watches_are_named_after_block_and_id() {
        let b = block(DiscoverKind::BackupPlans);
        let w = watch_for(&b, Target::BackupPlan("dbs1".into()));
        assert_eq!(w.name, "prod/dbs1");
        assert_eq!(w.channels, vec!["ops".to_string()]);
        assert_eq!(w.schedule.expr(), "*/5 * * * *");
    }
}
