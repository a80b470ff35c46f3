//! Scenarios: which credentials the double accepts and what each target answers, poll by poll.
//!
//! Everything is resolved and validated at load time (fixtures looked up, files read, statuses
//! and headers checked), so a running simulator can never fail on a bad script.

use std::path::{Path, PathBuf};

use axum::http::{HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::fixtures;
use crate::dbs::Credentials;
use crate::secret::Secret;
use crate::snapshot::Target;

/// A scripted set of responses.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    access_key_id: String,
    access_key_secret: Secret,
    security_token: Option<Secret>,
    targets: Vec<ScriptedTarget>,
    /// Successive `DescribeBackupPlanList` listings; each listing is the account's plans.
    backup_plans: Vec<Vec<Map<String, Value>>>,
    /// Restore tasks for `DescribeRestoreTaskList`, each with its successive states.
    restore_tasks: Vec<ScriptedTask>,
    /// `DescribeJobErrorCode` answers by task id.
    job_errors: Vec<(String, Map<String, Value>)>,
}

/// A restore task and the states it goes through, one per query of its id; the last repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedTask {
    /// `RestoreTaskId`.
    pub id: String,
    /// Item objects of `DescribeRestoreTaskList`, `RestoreTaskId` filled in.
    pub steps: Vec<Map<String, Value>>,
}

/// One target and the replies it gives to successive polls; the last step repeats forever.
#[derive(Debug, Clone, PartialEq)]
struct ScriptedTarget {
    target: Target,
    steps: Vec<Step>,
}

/// One scripted reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// HTTP status.
    pub status: u16,
    /// Body text; a JSON `RequestId` in it is replaced by a fresh one on every reply.
    pub body: String,
    /// Extra response headers, e.g. `x-acs-retry-after`.
    pub headers: Vec<(String, String)>,
}

impl Step {
    /// A built-in fixture, served with the status its file name implies (200 unless `httpNNN-`).
    pub fn fixture(name: &str) -> Result<Step, ScenarioError> {
        let body = fixtures::fixture(name).ok_or_else(|| ScenarioError::Invalid {
            origin: "step".to_string(),
            reason: unknown_fixture(name),
        })?;
        Ok(Step::raw(fixtures::default_status(name), body))
    }

    /// A JSON body with a status.
    pub fn json(status: u16, body: &Value) -> Step {
        Step::raw(status, body.to_string())
    }

    /// Any body text with a status.
    pub fn raw(status: u16, body: impl Into<String>) -> Step {
        Step {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// The same step with one more response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Step {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same step with another status.
    pub fn with_status(mut self, status: u16) -> Step {
        self.status = status;
        self
    }
}

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario file could not be read.
    #[error("cannot read the scenario file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON of the scenario shape.
    #[error(
        "the scenario {origin} is not a valid scenario: {source}; see the simulate module documentation for the format"
    )]
    Parse {
        /// The file, or `inline text`.
        origin: String,
        /// Where and why parsing stopped.
        #[source]
        source: serde_json::Error,
    },
    /// The content is inconsistent.
    #[error("the scenario {origin} is invalid: {reason}")]
    Invalid {
        /// The file, or `inline text`.
        origin: String,
        /// What to fix.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    access_key_id: String,
    access_key_secret: String,
    #[serde(default)]
    security_token: Option<String>,
    #[serde(default)]
    targets: Vec<TargetFile>,
    #[serde(default)]
    backup_plans: Option<PlansFile>,
    #[serde(default)]
    restore_tasks: Vec<TaskFile>,
    #[serde(default)]
    job_errors: serde_json::Map<String, Value>,
}

/// `backup_plans`: one listing (a list of plan objects) or several (`{"listings": [[...], ...]}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum PlansFile {
    Listings {
        listings: Vec<Vec<Map<String, Value>>>,
    },
    One(Vec<Map<String, Value>>),
}

/// A restore task: scripted states (`{"restore_task_id", "steps"}`) or one fixed object.
#[derive(Deserialize)]
#[serde(untagged)]
enum TaskFile {
    Scripted(ScriptedTaskFile),
    Fixed(Map<String, Value>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedTaskFile {
    restore_task_id: String,
    steps: Vec<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    #[serde(default)]
    backup_plan_id: Option<String>,
    #[serde(default)]
    restore_task_id: Option<String>,
    steps: Vec<StepFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    fixture: Option<String>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
}

impl Scenario {
    /// An empty scenario that accepts these credentials; add targets with [`Scenario::with_target`].
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Scenario {
        Scenario {
            access_key_id: access_key_id.into(),
            access_key_secret: Secret::new(access_key_secret),
            security_token: None,
            targets: Vec::new(),
            backup_plans: Vec::new(),
            restore_tasks: Vec::new(),
            job_errors: Vec::new(),
        }
    }

    /// Sets the successive answers of `DescribeBackupPlanList`: each listing (started by a
    /// request for page 0) shows the next list of plans; the last one repeats. Plans are JSON
    /// objects with the documented fields (`BackupPlanId`, `BackupPlanName`, ...).
    ///
    /// # Panics
    /// When a plan is not a JSON object.
    pub fn with_backup_plan_listings(mut self, listings: Vec<Vec<Value>>) -> Scenario {
        self.backup_plans = listings
            .into_iter()
            .map(|l| l.into_iter().map(object).collect())
            .collect();
        self
    }

    /// Adds a restore task whose successive states are `steps` (item objects of
    /// `DescribeRestoreTaskList`; `RestoreTaskId` is filled in). A query of its id plays the next
    /// state; a listing shows the state last played.
    ///
    /// # Panics
    /// When `steps` is empty or a step is not a JSON object.
    pub fn with_restore_task(mut self, id: impl Into<String>, steps: Vec<Value>) -> Scenario {
        assert!(!steps.is_empty(), "a scripted restore task needs a state");
        let id = id.into();
        self.restore_tasks.retain(|t| t.id != id);
        let steps = steps.into_iter().map(|s| with_id(object(s), &id)).collect();
        self.restore_tasks.push(ScriptedTask { id, steps });
        self
    }

    /// Makes `DescribeJobErrorCode` answer for `task_id` with this `Item` (`ErrorCode`,
    /// `ErrorMessage`, `JobState`, `JobType`; `JobId` is filled in).
    ///
    /// # Panics
    /// When `item` is not a JSON object.
    pub fn with_job_error(mut self, task_id: impl Into<String>, item: Value) -> Scenario {
        let task_id = task_id.into();
        self.job_errors.retain(|(id, _)| *id != task_id);
        self.job_errors.push((task_id, object(item)));
        self
    }

    /// The scripted plan listings.
    pub fn backup_plan_listings(&self) -> &[Vec<Map<String, Value>>] {
        &self.backup_plans
    }

    /// The scripted restore tasks.
    pub fn restore_tasks(&self) -> &[ScriptedTask] {
        &self.restore_tasks
    }

    /// The `DescribeJobErrorCode` item for a task id.
    pub fn job_error(&self, task_id: &str) -> Option<&Map<String, Value>> {
        self.job_errors
            .iter()
            .find(|(id, _)| id == task_id)
            .map(|(_, item)| item)
    }

    /// Requires this STS token on every request, as the gateway does for STS AccessKeys.
    pub fn with_security_token(mut self, token: impl Into<String>) -> Scenario {
        self.security_token = Some(Secret::new(token));
        self
    }

    /// Adds (or replaces) a target's script.
    ///
    /// # Panics
    /// When `steps` is empty: a target must answer something.
    pub fn with_target(mut self, target: Target, steps: Vec<Step>) -> Scenario {
        assert!(
            !steps.is_empty(),
            "a scripted target needs at least one step"
        );
        self.targets.retain(|t| t.target != target);
        self.targets.push(ScriptedTarget { target, steps });
        self
    }

    /// The built-in demo: the demo credentials, a pre-check that fails (`dbsdemo0precheck`), a
    /// restore that completes (`dbsdemo0restore`) and a pre-check that passes (`dbsdemo0passes`).
    pub fn builtin_demo() -> Scenario {
        Scenario::from_json(fixtures::DEMO_SCENARIO, Path::new("."), "built-in demo")
            .expect("the embedded demo scenario is valid")
    }

    /// Loads a scenario file; `file` steps are resolved relative to its directory.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Scenario::from_json(&text, base, &path.display().to_string())
    }

    /// Parses scenario JSON; `origin` names it in errors and `base_dir` anchors `file` steps.
    pub fn from_json(text: &str, base_dir: &Path, origin: &str) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile =
            serde_json::from_str(text).map_err(|source| ScenarioError::Parse {
                origin: origin.to_string(),
                source,
            })?;
        let invalid = |reason: String| ScenarioError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        if file.access_key_id.trim().is_empty() || file.access_key_secret.is_empty() {
            return Err(invalid(
                "access_key_id and access_key_secret must not be empty".to_string(),
            ));
        }
        if file.targets.is_empty()
            && file.backup_plans.is_none()
            && file.restore_tasks.is_empty()
            && file.job_errors.is_empty()
        {
            return Err(invalid(
                "targets is empty (and there are no backup_plans, restore_tasks or job_errors)"
                    .to_string(),
            ));
        }
        let mut scenario = Scenario::new(file.access_key_id, file.access_key_secret);
        scenario.backup_plans = match file.backup_plans {
            Some(PlansFile::Listings { listings }) => listings,
            Some(PlansFile::One(plans)) => vec![plans],
            None => Vec::new(),
        };
        for (i, listing) in scenario.backup_plans.iter().enumerate() {
            if let Some(n) = listing
                .iter()
                .position(|p| !p.get("BackupPlanId").is_some_and(Value::is_string))
            {
                return Err(invalid(format!(
                    "backup plan {} of listing {} needs a string BackupPlanId",
                    n + 1,
                    i + 1
                )));
            }
        }
        for (i, task) in file.restore_tasks.into_iter().enumerate() {
            let (id, steps) = match task {
                TaskFile::Scripted(t) => (t.restore_task_id, t.steps),
                TaskFile::Fixed(item) => match item.get("RestoreTaskId").and_then(Value::as_str) {
                    Some(id) => (id.to_string(), vec![item]),
                    None => {
                        return Err(invalid(format!(
                            "restore task {} needs a RestoreTaskId (or restore_task_id and steps)",
                            i + 1
                        )));
                    }
                },
            };
            if id.trim().is_empty() || steps.is_empty() {
                return Err(invalid(format!(
                    "restore task {} needs a non-empty id and at least one step",
                    i + 1
                )));
            }
            if scenario.restore_tasks.iter().any(|t| t.id == id) {
                return Err(invalid(format!("restore task {id} appears twice")));
            }
            let steps = steps.into_iter().map(|s| with_id(s, &id)).collect();
            scenario.restore_tasks.push(ScriptedTask { id, steps });
        }
        for (task_id, item) in file.job_errors {
            match item {
                Value::Object(item) => scenario.job_errors.push((task_id, item)),
                _ => {
                    return Err(invalid(format!(
                        "job_errors.{task_id} must be an object with ErrorCode and ErrorMessage"
                    )));
                }
            }
        }
        scenario.security_token = file.security_token.map(Secret::new);
        for (t, target_file) in file.targets.into_iter().enumerate() {
            let target = match (target_file.backup_plan_id, target_file.restore_task_id) {
                (Some(id), None) if !id.trim().is_empty() => Target::BackupPlan(id),
                (None, Some(id)) if !id.trim().is_empty() => Target::RestoreTask(id),
                _ => {
                    return Err(invalid(format!(
                        "target {} needs exactly one non-empty backup_plan_id or restore_task_id",
                        t + 1
                    )));
                }
            };
            if scenario.targets.iter().any(|s| s.target == target) {
                return Err(invalid(format!(
                    "{} {} appears twice",
                    target.param_name(),
                    target.id()
                )));
            }
            if target_file.steps.is_empty() {
                return Err(invalid(format!("{} has no steps", target.id())));
            }
            let mut steps = Vec::with_capacity(target_file.steps.len());
            for (s, step_file) in target_file.steps.into_iter().enumerate() {
                let step = resolve_step(step_file, base_dir).map_err(|reason| {
                    invalid(format!("step {} of {}: {reason}", s + 1, target.id()))
                })?;
                steps.push(step);
            }
            scenario.targets.push(ScriptedTarget { target, steps });
        }
        Ok(scenario)
    }

    /// The AccessKey id the double accepts.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret the double verifies signatures with.
    pub fn access_key_secret(&self) -> &Secret {
        &self.access_key_secret
    }

    /// The STS token the double requires, if any.
    pub fn security_token(&self) -> Option<&Secret> {
        self.security_token.as_ref()
    }

    /// Credentials that the double accepts, for pointing a real client at it.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: self.access_key_id.clone(),
            access_key_secret: self.access_key_secret.clone(),
            security_token: self.security_token.clone(),
        }
    }

    /// Every target with its number of steps, in file order: what `dbswatch simulate` lists.
    pub fn targets(&self) -> Vec<(Target, usize)> {
        self.targets
            .iter()
            .map(|t| (t.target.clone(), t.steps.len()))
            .collect()
    }

    /// A target's steps.
    pub fn steps(&self, target: &Target) -> Option<&[Step]> {
        self.targets
            .iter()
            .find(|t| &t.target == target)
            .map(|t| t.steps.as_slice())
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("scripted DBS items are JSON objects, not {other}"),
    }
}

fn with_id(mut item: Map<String, Value>, id: &str) -> Map<String, Value> {
    item.insert("RestoreTaskId".to_string(), Value::String(id.to_string()));
    item
}

fn unknown_fixture(name: &str) -> String {
    format!(
        "there is no built-in fixture {name:?}; known fixtures: {}",
        fixtures::names().collect::<Vec<_>>().join(", ")
    )
}

fn resolve_step(step: StepFile, base_dir: &Path) -> Result<Step, String> {
    let (default_status, body) = match (step.fixture, step.file, step.body) {
        (Some(name), None, None) => {
            let body = fixtures::fixture(&name).ok_or_else(|| unknown_fixture(&name))?;
            (fixtures::default_status(&name), body.to_string())
        }
        (None, Some(file), None) => {
            let path = base_dir.join(&file);
            let body = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            (200, body)
        }
        (None, None, Some(Value::String(text))) => (200, text),
        (None, None, Some(Value::Null)) => return Err("body is null".to_string()),
        (None, None, Some(json)) => (200, json.to_string()),
        _ => return Err("give exactly one of fixture, file or body".to_string()),
    };
    let status = step.status.unwrap_or(default_status);
    if StatusCode::from_u16(status).is_err() || !(100..=599).contains(&status) {
        return Err(format!("status {status} is not an HTTP status"));
    }
    let mut headers = Vec::with_capacity(step.headers.len());
    for (name, value) in step.headers {
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => return Err(format!("header {name} must be a string, not {other}")),
        };
        if HeaderName::from_bytes(name.as_bytes()).is_err()
            || HeaderValue::from_str(&value).is_err()
        {
            return Err(format!(
                "header {name}: {value:?} is not a valid HTTP header"
            ));
        }
        headers.push((name, value));
    }
    Ok(Step {
        status,
        body,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::{DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET};

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_json(text, Path::new("."), "test")
    }

    #[test]
    fn builtin_demo_has_the_three_demo_targets() {
        let demo = Scenario::builtin_demo();
        assert_eq!(demo.access_key_id(), DEMO_ACCESS_KEY_ID);
        assert_eq!(demo.access_key_secret().expose(), DEMO_ACCESS_KEY_SECRET);
        assert_eq!(
            demo.targets(),
            vec![
                (Target::BackupPlan("dbsdemo0precheck".into()), 4),
                (Target::RestoreTask("dbsdemo0restore".into()), 3),
                (Target::BackupPlan("dbsdemo0passes".into()), 2),
            ]
        );
        let steps = demo
            .steps(&Target::BackupPlan("dbsdemo0precheck".into()))
            .unwrap();
        assert_eq!(
            steps[3].body,
            fixtures::fixture("precheck-fails/04.json").unwrap()
        );
        assert!(steps.iter().all(|s| s.status == 200));
    }

    #[test]
    fn the_example_file_on_disk_is_the_builtin_demo() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenario-demo.json");
        assert_eq!(Scenario::load(&path).unwrap(), Scenario::builtin_demo());
    }

    #[test]
    fn every_step_kind_resolves() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("my")).unwrap();
        std::fs::write(dir.path().join("my/response.json"), r#"{"Status":"x"}"#).unwrap();
        let path = dir.path().join("scenario.json");
        std::fs::write(
            &path,
            r#"{"access_key_id":"id","access_key_secret":"s","security_token":"tok",
                "targets":[{"backup_plan_id":"p","steps":[
                  {"fixture":"precheck-fails/01.json"},
                  {"file":"my/response.json"},
                  {"status":502,"fixture":"errors/http502-gateway.html"},
                  {"fixture":"errors/http404-access-key-not-found.json"},
                  {"status":400,"body":{"Code":"Throttling.User","Message":"slow"},
                   "headers":{"x-acs-retry-after":"1000","x-n":5}},
                  {"body":"plain text"}]},
                  {"restore_task_id":"r","steps":[{"body":{"Status":"finish"}}]}]}"#,
        )
        .unwrap();
        let scenario = Scenario::load(&path).unwrap();
        assert_eq!(scenario.security_token().unwrap().expose(), "tok");
        let steps = scenario.steps(&Target::BackupPlan("p".into())).unwrap();
        assert_eq!(steps.len(), 6);
        assert_eq!(steps[1].body, r#"{"Status":"x"}"#);
        assert_eq!(steps[2].status, 502);
        assert_eq!(steps[3].status, 404, "status implied by the fixture name");
        assert_eq!(steps[4].status, 400);
        assert_eq!(
            steps[4].body,
            r#"{"Code":"Throttling.User","Message":"slow"}"#
        );
        assert_eq!(
            steps[4].headers,
            vec![
                ("x-acs-retry-after".to_string(), "1000".to_string()),
                ("x-n".to_string(), "5".to_string())
            ]
        );
        assert_eq!(steps[5].body, "plain text");
        assert_eq!(scenario.targets()[1], (Target::RestoreTask("r".into()), 1));
    }

    #[test]
    fn mistakes_are_reported_with_what_to_fix() {
        let base = |targets: &str| {
            format!(r#"{{"access_key_id":"id","access_key_secret":"s","targets":{targets}}}"#)
        };
        for (text, needle) in [
            (base("[]"), "targets is empty"),
            (
                r#"{"access_key_id":"id","access_key_secret":"s","backup_plans":[{"BackupPlanName":"x"}]}"#
                    .to_string(),
                "needs a string BackupPlanId",
            ),
            (
                r#"{"access_key_id":"id","access_key_secret":"s","restore_tasks":[{"RestoreStatus":"running"}]}"#
                    .to_string(),
                "needs a RestoreTaskId",
            ),
            (
                r#"{"access_key_id":"id","access_key_secret":"s","job_errors":{"r1":"boom"}}"#
                    .to_string(),
                "must be an object",
            ),
            (base(r#"[{"steps":[{"body":"x"}]}]"#), "exactly one"),
            (
                base(r#"[{"backup_plan_id":"a","restore_task_id":"b","steps":[{"body":"x"}]}]"#),
                "exactly one",
            ),
            (base(r#"[{"backup_plan_id":"a","steps":[]}]"#), "no steps"),
            (
                base(r#"[{"backup_plan_id":"a","steps":[{"fixture":"nope.json"}]}]"#),
                "known fixtures: ",
            ),
            (
                base(r#"[{"backup_plan_id":"a","steps":[{"body":"x","file":"y"}]}]"#),
                "exactly one of fixture, file or body",
            ),
            (
                base(r#"[{"backup_plan_id":"a","steps":[{"file":"missing/file.json"}]}]"#),
                "cannot read",
            ),
            (
                base(r#"[{"backup_plan_id":"a","steps":[{"body":"x","status":99}]}]"#),
                "not an HTTP status",
            ),
            (
                base(
                    r#"[{"backup_plan_id":"a","steps":[{"body":"x","headers":{"bad header":"v"}}]}]"#,
                ),
                "not a valid HTTP header",
            ),
            (
                base(
                    r#"[{"backup_plan_id":"a","steps":[{"body":"x"}]},{"backup_plan_id":"a","steps":[{"body":"y"}]}]"#,
                ),
                "appears twice",
            ),
            (
                r#"{"access_key_id":"","access_key_secret":"s","targets":[]}"#.to_string(),
                "must not be empty",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}\n=> {err}");
        }
        let err = parse(r#"{"access_key_id":"id","access_key_secret":"s","targets":[],"typo":1}"#)
            .unwrap_err();
        assert!(matches!(err, ScenarioError::Parse { .. }), "{err}");
        let err = Scenario::load(Path::new("/nonexistent/scenario.json")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/scenario.json"),
            "{err}"
        );
    }

    #[test]
    fn builder_api() {
        let target = Target::BackupPlan("p".into());
        let scenario = Scenario::new("id", "s")
            .with_target(target.clone(), vec![Step::raw(200, "a")])
            .with_target(
                target.clone(),
                vec![
                    Step::fixture("errors/http400-throttling-user.json")
                        .unwrap()
                        .with_header("x-acs-retry-after", "10"),
                    Step::json(200, &serde_json::json!({"Status": "running"})).with_status(201),
                ],
            );
        assert_eq!(scenario.targets(), vec![(target.clone(), 2)]);
        let steps = scenario.steps(&target).unwrap();
        assert_eq!(steps[0].status, 400);
        assert_eq!(steps[1].status, 201);
        assert!(Step::fixture("nope").is_err());
        let creds = scenario.credentials();
        assert_eq!(creds.access_key_id, "id");
        assert_eq!(creds.access_key_secret.expose(), "s");
    }

    #[test]
    fn plans_restore_tasks_and_job_errors_load_from_a_file() {
        let scenario = parse(
            r#"{"access_key_id":"id","access_key_secret":"s",
                "backup_plans":{"listings":[[{"BackupPlanId":"p1"},{"BackupPlanId":"p2"}],[{"BackupPlanId":"p1"}]]},
                "restore_tasks":[
                  {"restore_task_id":"r1","steps":[{"RestoreStatus":"running"},{"RestoreStatus":"finish"}]},
                  {"RestoreTaskId":"r2","RestoreStatus":"stop"}],
                "job_errors":{"r2":{"ErrorCode":"E1","ErrorMessage":"boom"}}}"#,
        )
        .unwrap();
        assert_eq!(scenario.backup_plan_listings().len(), 2);
        assert_eq!(scenario.backup_plan_listings()[0].len(), 2);
        let tasks = scenario.restore_tasks();
        assert_eq!(tasks[0].id, "r1");
        assert_eq!(tasks[0].steps.len(), 2);
        assert_eq!(tasks[0].steps[1]["RestoreTaskId"], "r1");
        assert_eq!(tasks[1].steps[0]["RestoreStatus"], "stop");
        assert_eq!(scenario.job_error("r2").unwrap()["ErrorCode"], "E1");
        assert!(scenario.job_error("r1").is_none());
        // A single listing may be written as a plain list.
        let one = parse(
            r#"{"access_key_id":"id","access_key_secret":"s","backup_plans":[{"BackupPlanId":"p1"}]}"#,
        )
        .unwrap();
        assert_eq!(one.backup_plan_listings().len(), 1);
        assert!(one.targets().is_empty());
    }
}
