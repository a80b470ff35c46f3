//! The other DBS actions dbswatch calls: `DescribeBackupPlanList` and `DescribeRestoreTaskList`
//! (paged lists, for discovery and restore truth) and `DescribeJobErrorCode` (why a job failed).
//!
//! Pure: request parameters, reply parsing and the paging rule. Replies are read as loosely as
//! the pre-check list (every field optional, numbers as strings tolerated); the client sends the
//! requests.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::JobError;
use crate::snapshot::{RESTORE_PHASES, RestorePhase, RestoreTruth};

/// `DescribeBackupPlanList`.
pub const LIST_BACKUP_PLANS: &str = "DescribeBackupPlanList";
/// `DescribeRestoreTaskList`.
pub const LIST_RESTORE_TASKS: &str = "DescribeRestoreTaskList";
/// `DescribeJobErrorCode`.
pub const JOB_ERROR_CODE: &str = "DescribeJobErrorCode";

/// The largest page DBS serves.
pub const MAX_PAGE_SIZE: u32 = 100;

/// No listing follows more pages than this, whatever the totals say: a server that keeps
/// answering must not keep dbswatch in a loop.
pub const MAX_PAGES: u32 = 1000;

/// One backup plan, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupPlan {
    /// `BackupPlanId`.
    pub id: String,
    /// `BackupPlanName`.
    pub name: Option<String>,
    /// `BackupPlanStatus`: `wait`, `init`, `running`, `stop`, `pause`, `locked`, `check_pass`.
    pub status: Option<String>,
    /// `DatabaseType`, e.g. `MySQL`.
    pub database_type: Option<String>,
    /// `BackupMethod`: `logical`, `physical`, `duplication`.
    pub backup_method: Option<String>,
    /// `SourceEndpointRegion`.
    pub source_region: Option<String>,
    /// `SourceEndpointInstanceType`.
    pub source_instance_type: Option<String>,
    /// `SourceEndpointInstanceID`.
    pub source_instance_id: Option<String>,
    /// `BackupPlanCreateTime`, epoch ms.
    pub created_ms: Option<i64>,
    /// `ErrMessage`: the pre-check error, when there is one.
    pub error: Option<String>,
}

/// One restore task, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreTask {
    /// `RestoreTaskId`.
    pub id: String,
    /// `RestoreTaskName`.
    pub name: Option<String>,
    /// `BackupPlanId`: the plan whose backup is restored.
    pub backup_plan_id: Option<String>,
    /// `RestoreTaskCreateTime`, epoch ms.
    pub created_ms: Option<i64>,
    /// `RestoreTaskFinishTime`, epoch ms.
    pub finish_ms: Option<i64>,
    /// `DestinationEndpointRegion`.
    pub destination_region: Option<String>,
    /// `DestinationEndpointInstanceID`.
    pub destination_instance_id: Option<String>,
    /// Status, phase progress and error: what restore watches compare.
    pub truth: RestoreTruth,
}

/// One page of a list answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// `TotalElements`.
    pub total_elements: Option<u64>,
    /// `TotalPages`.
    pub total_pages: Option<u64>,
}

/// Filters for `DescribeBackupPlanList` that the server applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanQuery {
    /// `Region`.
    pub region: Option<String>,
    /// `BackupPlanId` (comma-separated ids allowed).
    pub backup_plan_id: Option<String>,
    /// `BackupPlanStatus` (one value).
    pub status: Option<String>,
    /// Items per page, 1 to [`MAX_PAGE_SIZE`]; 0 means [`MAX_PAGE_SIZE`].
    pub page_size: u32,
}

impl PlanQuery {
    /// The request parameters for page `page`.
    pub fn params(&self, page: u32) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("PageNum", page.to_string()),
            ("PageSize", page_size(self.page_size).to_string()),
        ];
        push_some(&mut params, "Region", &self.region);
        push_some(&mut params, "BackupPlanId", &self.backup_plan_id);
        push_some(&mut params, "BackupPlanStatus", &self.status);
        params
    }
}

/// Filters for `DescribeRestoreTaskList` that the server applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreQuery {
    /// `RestoreTaskId` (comma-separated ids allowed).
    pub restore_task_id: Option<String>,
    /// `BackupPlanId`.
    pub backup_plan_id: Option<String>,
    /// `StartTimestamp`, epoch ms: tasks created from then.
    pub start_ms: Option<i64>,
    /// `EndTimestamp`, epoch ms.
    pub end_ms: Option<i64>,
    /// Items per page, 1 to [`MAX_PAGE_SIZE`]; 0 means [`MAX_PAGE_SIZE`].
    pub page_size: u32,
}

impl RestoreQuery {
    /// The request parameters for page `page`.
    pub fn params(&self, page: u32) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("PageNum", page.to_string()),
            ("PageSize", page_size(self.page_size).to_string()),
        ];
        push_some(&mut params, "RestoreTaskId", &self.restore_task_id);
        push_some(&mut params, "BackupPlanId", &self.backup_plan_id);
        push_some(
            &mut params,
            "StartTimestamp",
            &self.start_ms.map(|t| t.to_string()),
        );
        push_some(
            &mut params,
            "EndTimestamp",
            &self.end_ms.map(|t| t.to_string()),
        );
        params
    }
}

fn page_size(size: u32) -> u32 {
    if size == 0 {
        MAX_PAGE_SIZE
    } else {
        size.min(MAX_PAGE_SIZE)
    }
}

fn push_some(params: &mut Vec<(&'static str, String)>, name: &'static str, value: &Option<String>) {
    if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        params.push((name, v.to_string()));
    }
}

/// Decides whether to ask for another page.
///
/// The documentation says `PageNum` starts at 0 while the official demo answers `PageNum: 1`, so
/// the pager does not trust page arithmetic alone: it starts at 0, drops items it has already
/// seen (a server counting from 1 answers page 0 like page 1), and stops when it holds
/// `TotalElements` items, when a page is short or adds nothing new, or after [`MAX_PAGES`].
#[derive(Debug, Clone)]
pub struct Pager {
    page_size: u32,
    next: u32,
    seen: HashSet<String>,
    done: bool,
}

impl Pager {
    /// A pager for pages of `page_size` (0 means [`MAX_PAGE_SIZE`]).
    pub fn new(size: u32) -> Pager {
        Pager {
            page_size: page_size(size),
            next: 0,
            seen: HashSet::new(),
            done: false,
        }
    }

    /// The page to ask for next, or `None` when the listing is complete.
    pub fn next_page(&self) -> Option<u32> {
        (!self.done && self.next < MAX_PAGES).then_some(self.next)
    }

    /// Takes a page's items (by id) and its totals; returns the ids that are new.
    pub fn take<'a, T>(&mut self, page: &'a Page<T>, id: impl Fn(&T) -> &str) -> Vec<&'a T> {
        let fresh: Vec<&T> = page
            .items
            .iter()
            .filter(|item| self.seen.insert(id(item).to_string()))
            .collect();
        let held = self.seen.len() as u64;
        let short = (page.items.len() as u32) < self.page_size;
        let complete = match (page.total_elements, page.total_pages) {
            (Some(total), _) => held >= total,
            (None, Some(pages)) => u64::from(self.next) + 1 >= pages,
            (None, None) => false,
        };
        // Page 1 may repeat page 0 (a server counting from 1); any later page must add something.
        let stalled = fresh.is_empty() && self.next != 1;
        self.done = short || stalled || complete;
        self.next += 1;
        fresh
    }
}

/// Reads a `DescribeBackupPlanList` answer.
pub fn backup_plan_page(obj: &Map<String, Value>) -> Page<BackupPlan> {
    page(obj, "BackupPlanDetail", |item| {
        Some(BackupPlan {
            id: text(item.get("BackupPlanId")).filter(|s| !s.trim().is_empty())?,
            name: text(item.get("BackupPlanName")),
            status: text(item.get("BackupPlanStatus")),
            database_type: text(item.get("DatabaseType")),
            backup_method: text(item.get("BackupMethod")),
            source_region: text(item.get("SourceEndpointRegion")),
            source_instance_type: text(item.get("SourceEndpointInstanceType")),
            source_instance_id: text(item.get("SourceEndpointInstanceID")),
            created_ms: integer(item.get("BackupPlanCreateTime")),
            error: meaningful(text(item.get("ErrMessage"))),
        })
    })
}

/// Reads a `DescribeRestoreTaskList` answer.
pub fn restore_task_page(obj: &Map<String, Value>) -> Page<RestoreTask> {
    page(obj, "RestoreTaskDetail", |item| {
        Some(RestoreTask {
            id: text(item.get("RestoreTaskId")).filter(|s| !s.trim().is_empty())?,
            name: text(item.get("RestoreTaskName")),
            backup_plan_id: text(item.get("BackupPlanId")),
            created_ms: integer(item.get("RestoreTaskCreateTime")),
            finish_ms: integer(item.get("RestoreTaskFinishTime")).filter(|t| *t > 0),
            destination_region: text(item.get("DestinationEndpointRegion")),
            destination_instance_id: text(item.get("DestinationEndpointInstanceID")),
            truth: restore_truth(item),
        })
    })
}

/// The status, phases and error of one restore task item.
pub fn restore_truth(item: &Map<String, Value>) -> RestoreTruth {
    RestoreTruth {
        status: text(item.get("RestoreStatus")).filter(|s| !s.trim().is_empty()),
        phases: RESTORE_PHASES
            .iter()
            .filter_map(|(name, field)| {
                integer(item.get(*field)).map(|progress| RestorePhase {
                    name: (*name).to_string(),
                    progress,
                })
            })
            .collect(),
        error: meaningful(text(item.get("ErrMessage"))),
    }
}

/// Reads a `DescribeJobErrorCode` answer; `None` when it names no error at all.
pub fn job_error(obj: &Map<String, Value>, task_id: &str) -> Option<JobError> {
    let item = obj.get("Item")?.as_object()?;
    let code = meaningful(text(item.get("ErrorCode")));
    let message = meaningful(text(item.get("ErrorMessage")));
    if code.is_none() && message.is_none() {
        return None;
    }
    Some(JobError {
        task_id: text(item.get("JobId"))
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| task_id.to_string()),
        code,
        message,
        job_state: text(item.get("JobState")),
        job_type: text(item.get("JobType")),
    })
}

fn page<T>(
    obj: &Map<String, Value>,
    key: &str,
    read: impl Fn(&Map<String, Value>) -> Option<T>,
) -> Page<T> {
    let list: Vec<&Value> = match obj.get("Items") {
        Some(Value::Object(wrapper)) => match wrapper.get(key) {
            Some(Value::Array(list)) => list.iter().collect(),
            Some(single @ Value::Object(_)) => vec![single],
            _ => Vec::new(),
        },
        Some(Value::Array(list)) => list.iter().collect(),
        _ => Vec::new(),
    };
    Page {
        items: list
            .into_iter()
            .filter_map(Value::as_object)
            .filter_map(read)
            .collect(),
        total_elements: integer(obj.get("TotalElements")).and_then(|n| u64::try_from(n).ok()),
        total_pages: integer(obj.get("TotalPages")).and_then(|n| u64::try_from(n).ok()),
    }
}

/// DBS writes `"NULL"` (and sometimes blanks) where there is no error.
fn meaningful(value: Option<String>) -> Option<String> {
    value
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("null"))
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// Does `text` match the glob `pattern` (`*` any run, `?` one character), ignoring case?
/// Plan names are typed by people, so `Orders*` should find `orders-prod`.
pub fn name_matches(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// META's DescribeBackupPlanList demo.
    const PLAN_DEMO: &str = r#"{"HttpStatusCode":200,"PageNum":1,"RequestId":"4F1888AC-1138-4995-B9FE-D2734F61C058","ErrCode":"InvalidParameterValid","Success":true,"TotalPages":4,"TotalElements":100,"PageSize":30,"Items":{"BackupPlanDetail":[{"BackupPlanId":"dbstooi01eXXXX","BackupPlanName":"dbstooi01e****","BackupPlanStatus":"init","BackupMethod":"logical","DatabaseType":"MySQL","SourceEndpointInstanceType":"rds","SourceEndpointRegion":"cn-hangzhou","BackupPlanCreateTime":1582527713000,"ErrMessage":"  can not connect to oracle instance orcl with user dbs","EnableBackupLog":true,"InstanceClass":"micro"}]}}"#;

    /// META's DescribeRestoreTaskList demo, trimmed.
    const RESTORE_DEMO: &str = r#"{"HttpStatusCode":200,"PageNum":1,"RequestId":"9C397502-B4F2-4E22-AD97-C81F0049F3F3","Success":true,
 "TotalPages":1,"TotalElements":1,"PageSize":30,
 "Items":{"RestoreTaskDetail":[{"RestoreStatus":"running","RestoreTaskId":"s1XXXXXX","RestoreTaskName":"test",
   "BackupPlanId":"dbs1hvb0wXXXX","BackupSetId":"1ibh2f5uXXX","RestoreTaskCreateTime":1554560477000,
   "RestoreTaskFinishTime":1554560477000,"RestoreTime":1554560477000,"FullDataRestoreProgress":100,
   "FullStruforeRestoreProgress":0,"FullStruAfterRestoreProgress":100,"ContinuousRestoreProgress":100,
   "DestinationEndpointInstanceType":"RDS","DestinationEndpointInstanceID":"rm-bp1p8c2947XXX",
   "DestinationEndpointRegion":"cn-hangzhou","ErrMessage":"NULL","BackupGatewayId":324234332}]}}"#;

    #[test]
    fn the_official_plan_demo_parses() {
        let page = backup_plan_page(&serde_json::from_str(PLAN_DEMO).unwrap());
        assert_eq!(page.total_elements, Some(100));
        assert_eq!(page.total_pages, Some(4));
        let plan = &page.items[0];
        assert_eq!(plan.id, "dbstooi01eXXXX");
        assert_eq!(plan.status.as_deref(), Some("init"));
        assert_eq!(plan.database_type.as_deref(), Some("MySQL"));
        assert_eq!(plan.source_region.as_deref(), Some("cn-hangzhou"));
        assert_eq!(plan.created_ms, Some(1582527713000));
        assert_eq!(
            plan.error.as_deref(),
            Some("can not connect to oracle instance orcl with user dbs")
        );
    }

    #[test]
    fn the_official_restore_demo_parses_with_its_phases() {
        let page = restore_task_page(&serde_json::from_str(RESTORE_DEMO).unwrap());
        let task = &page.items[0];
        assert_eq!(task.id, "s1XXXXXX");
        assert_eq!(task.backup_plan_id.as_deref(), Some("dbs1hvb0wXXXX"));
        assert_eq!(task.truth.status.as_deref(), Some("running"));
        assert_eq!(task.truth.error, None, "\"NULL\" is no error");
        let phases: Vec<(&str, i64)> = task
            .truth
            .phases
            .iter()
            .map(|p| (p.name.as_str(), p.progress))
            .collect();
        assert_eq!(
            phases,
            vec![
                ("structure_before_data", 0),
                ("full_data", 100),
                ("structure_after_data", 100),
                ("incremental", 100)
            ]
        );
        assert_eq!(task.truth.overall_progress(), Some(75));
    }

    #[test]
    fn items_without_an_id_are_skipped_and_shapes_tolerated() {
        let page = backup_plan_page(&obj(json!({
            "Items": {"BackupPlanDetail": [{"BackupPlanName": "no id"}, {"BackupPlanId": "p1"}]},
            "TotalElements": "2"
        })));
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.total_elements, Some(2));
        let page = restore_task_page(&obj(json!({
            "Items": {"RestoreTaskDetail": {"RestoreTaskId": "r1", "FullDataRestoreProgress": "40"}}
        })));
        assert_eq!(page.items[0].truth.phases[0].progress, 40);
        assert!(
            backup_plan_page(&obj(json!({"Items": {}})))
                .items
                .is_empty()
        );
    }

    #[test]
    fn job_error_demo_and_empty_answers() {
        let demo = obj(
            json!({"HttpStatusCode":200,"RequestId":"1FC2F86D","Success":true,
            "Item":{"JobState":"init","ErrorMessage":"Describe preCheck progress failed.","ErrorCode":"failed",
                    "JobId":"r1iv62ud****","JobType":"testId","Language":"en"}}),
        );
        let e = job_error(&demo, "asked").unwrap();
        assert_eq!(e.task_id, "r1iv62ud****");
        assert_eq!(e.code.as_deref(), Some("failed"));
        assert_eq!(
            e.message.as_deref(),
            Some("Describe preCheck progress failed.")
        );
        assert_eq!(e.job_state.as_deref(), Some("init"));
        let empty = obj(json!({"Item": {"JobId": "x", "ErrorCode": "", "ErrorMessage": "NULL"}}));
        assert_eq!(job_error(&empty, "x"), None);
        assert_eq!(job_error(&obj(json!({"Success": true})), "x"), None);
        let no_id = obj(json!({"Item": {"ErrorCode": "E1"}}));
        assert_eq!(job_error(&no_id, "asked").unwrap().task_id, "asked");
    }

    #[test]
    fn query_parameters() {
        let q = PlanQuery {
            region: Some("cn-shanghai".into()),
            status: Some(" ".into()),
            page_size: 500,
            ..PlanQuery::default()
        };
        assert_eq!(
            q.params(2),
            vec![
                ("PageNum", "2".to_string()),
                ("PageSize", "100".to_string()),
                ("Region", "cn-shanghai".to_string())
            ]
        );
        let q = RestoreQuery {
            restore_task_id: Some("r1".into()),
            start_ms: Some(10),
            end_ms: Some(20),
            page_size: 0,
            ..RestoreQuery::default()
        };
        assert_eq!(
            q.params(0),
            vec![
                ("PageNum", "0".to_string()),
                ("PageSize", "100".to_string()),
                ("RestoreTaskId", "r1".to_string()),
                ("StartTimestamp", "10".to_string()),
                ("EndTimestamp", "20".to_string())
            ]
        );
    }

    fn ids_page(ids: &[&str], total: Option<u64>, pages: Option<u64>) -> Page<String> {
        Page {
            items: ids.iter().map(|s| s.to_string()).collect(),
            total_elements: total,
            total_pages: pages,
        }
    }

    #[test]
    fn pager_follows_totals_and_stops_on_short_or_repeated_pages() {
        // 7 items in pages of 3, counted from 0.
        let mut p = Pager::new(3);
        let mut got = Vec::new();
        let pages = [&["a", "b", "c"][..], &["d", "e", "f"], &["g"]];
        while let Some(n) = p.next_page() {
            let page = ids_page(pages[n as usize], Some(7), Some(3));
            got.extend(p.take(&page, |s| s.as_str()).into_iter().cloned());
        }
        assert_eq!(got, vec!["a", "b", "c", "d", "e", "f", "g"]);

        // A server that counts from 1 answers page 0 like page 1: the repeat is dropped and the
        // listing still ends complete.
        let server = |n: u32| -> &[&str] {
            match n {
                0 | 1 => &["a", "b"],
                2 => &["c", "d"],
                _ => &["e"],
            }
        };
        let mut p = Pager::new(2);
        let mut got = Vec::new();
        while let Some(n) = p.next_page() {
            let page = ids_page(server(n), Some(5), Some(3));
            got.extend(p.take(&page, |s| s.as_str()).into_iter().cloned());
        }
        assert_eq!(got, vec!["a", "b", "c", "d", "e"]);

        // No totals at all: the first page after the second that adds nothing ends it.
        let mut p = Pager::new(2);
        let mut asked = 0;
        while let Some(_n) = p.next_page() {
            asked += 1;
            p.take(&ids_page(&["a", "b"], None, None), |s| s.as_str());
        }
        assert_eq!(asked, 3);
    }

    #[test]
    fn globs_ignore_case() {
        assert!(name_matches("orders-*", "Orders-Prod"));
        assert!(name_matches("*prod", "orders-prod"));
        assert!(name_matches("db?", "db1"));
        assert!(!name_matches("db?", "db12"));
        assert!(name_matches("*", ""));
        assert!(!name_matches("orders", "orders-prod"));
    }
}
