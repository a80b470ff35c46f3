//! The DBS double: verifies signatures like the gateway and plays scripted replies.
//!
//! It exists so that the demo, `dbswatch simulate` and the tests exercise the real client, the
//! real signature and the real parser end to end, on 127.0.0.1, without an Alibaba Cloud account.
//! It must behave like the gateway where dbswatch could get it wrong, and it must never call out.
//!
//! # What it checks, in order
//! 1. The common parameters `Action`, `Version`, `AccessKeyId`, `SignatureMethod`,
//!    `SignatureVersion`, `SignatureNonce`, `Timestamp`, `Signature` are present
//!    (else 400 `MissingParameter`). Parameters are read from the query string and from an
//!    `application/x-www-form-urlencoded` body, for GET and POST alike.
//! 2. `AccessKeyId` is the scenario's (else 404 `InvalidAccessKeyId.NotFound`).
//! 3. `HMAC-SHA1` / `1.0` (else 400 `IncompleteSignature`).
//! 4. `Timestamp` parses (else 400 `IllegalTimestamp`) and is within 15 minutes of the local clock
//!    (else 400 `InvalidTimeStamp.Expired`).
//! 5. The signature verifies with the scenario's secret and the HTTP method used (else 400
//!    `SignatureDoesNotMatch`, whose message ends with `server string to sign is:<S>` like the
//!    real gateway's).
//! 6. The scenario's `security_token`, when it has one, is sent as `SecurityToken` (else 403
//!    `InvalidSecurityToken.Mismatch`).
//! 7. The nonce was not seen before (else 400 `SignatureNonceUsed`).
//! 8. `Action` is one of `DescribePreCheckProgressList`, `DescribeBackupPlanList`,
//!    `DescribeRestoreTaskList`, `DescribeJobErrorCode`, and `Version=2019-03-06` (else 400).
//! 9. For `DescribePreCheckProgressList`: exactly one of `BackupPlanId`/`RestoreTaskId` names a
//!    scripted target (else HTTP 200 with `Success: false`, `ErrCode: InvalidParameterValid`, as
//!    DBS does).
//!
//! A known target then gets its next step; after the last step, the last one repeats. Every JSON
//! body that has a `RequestId` gets a fresh uppercase UUID there (and in `x-acs-request-id`).
//!
//! The list actions page from `PageNum` 0 with `PageSize` 1 to 100 (default 30) and answer
//! `TotalElements`/`TotalPages`. `DescribeBackupPlanList` filters by `BackupPlanId`, `Region`
//! (the plan's `SourceEndpointRegion`), `BackupPlanStatus` and `BackupPlanName`; every request
//! for page 0 starts the next scripted listing (the last repeats). `DescribeRestoreTaskList`
//! with `RestoreTaskId` plays each named task's next state; without it, it lists every task in
//! the state last played, filtered by `BackupPlanId` and the `StartTimestamp`/`EndTimestamp`
//! window. `DescribeJobErrorCode` answers the scripted item for `TaskId`, or
//! `InvalidParameterValid`.
//!
//! # Scenario file format (JSON)
//! ```json
//! {
//!   "access_key_id": "demo-access-key-id",
//!   "access_key_secret": "demo-access-key-secret",
//!   "security_token": "optional; when set, every request must carry it",
//!   "targets": [
//!     {"backup_plan_id": "dbsdemo0precheck", "steps": [
//!       {"fixture": "precheck-fails/01.json"},
//!       {"file": "my/response.json"},
//!       {"status": 502, "fixture": "errors/http502-gateway.html"},
//!       {"status": 400, "body": {"Code": "Throttling.User", "Message": "..."},
//!        "headers": {"x-acs-retry-after": "1000"}}
//!     ]},
//!     {"restore_task_id": "dbsdemo0restore", "steps": [{"body": "any text"}]}
//!   ],
//!   "backup_plans": {"listings": [
//!     [{"BackupPlanId": "dbsplan0001", "BackupPlanName": "orders", "BackupPlanStatus": "running",
//!       "DatabaseType": "MySQL", "SourceEndpointRegion": "cn-hangzhou"}],
//!     []
//!   ]},
//!   "restore_tasks": [
//!     {"restore_task_id": "dbsdemo0restore", "steps": [
//!       {"RestoreStatus": "running", "FullDataRestoreProgress": 40},
//!       {"RestoreStatus": "finish", "FullDataRestoreProgress": 100}]},
//!     {"RestoreTaskId": "r2", "RestoreStatus": "stop", "RestoreTaskCreateTime": 1764720000000}
//!   ],
//!   "job_errors": {"r2": {"ErrorCode": "RESTORE_FAILED", "ErrorMessage": "disk full"}}
//! }
//! ```
//! - Each target has exactly one of `backup_plan_id` / `restore_task_id`, and at least one step.
//! - Each step has exactly one of `fixture` (a file of `tests/fixtures/`, compiled in; see
//!   [`fixtures::names`]), `file` (a path relative to the scenario file), or `body` (a JSON
//!   value sent as JSON, or a string sent as is).
//! - `status` defaults to 200, except for the `errors/httpNNN-*` fixtures, which default to NNN.
//! - `headers` maps header names to string (or number) values.
//! - Unknown keys are rejected, so a typo does not silently change the script.
//! - `targets`, `backup_plans`, `restore_tasks` and `job_errors` are each optional, but at least
//!   one must be there. `backup_plans` is a list of plans (one listing) or `{"listings": [...]}`.
//!   A restore task is `{"restore_task_id", "steps"}` or one fixed item with its `RestoreTaskId`.
//!
//! `tests/fixtures/scenario-demo.json` is the built-in demo ([`Scenario::builtin_demo`]) as a
//! file, a starting point for custom scenarios.

pub mod fixtures;
mod scenario;
mod server;

pub use scenario::ScriptedTask;
pub use scenario::{Scenario, ScenarioError, Step};
pub use server::{ACTIONS, MAX_CLOCK_SKEW, SimServer, serve, spawn_local};

/// Credentials the built-in scenario accepts.
pub const DEMO_ACCESS_KEY_ID: &str = "demo-access-key-id";
/// Secret the built-in scenario accepts.
pub const DEMO_ACCESS_KEY_SECRET: &str = "demo-access-key-secret";
