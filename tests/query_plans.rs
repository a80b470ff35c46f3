//! No full-table scan on the hot path, checked on the statements the hot path really runs.
//!
//! The test records every SQL statement sqlx executes (its `sqlx::query` trace events) while a
//! real pipeline — DBS double and webhook receiver on 127.0.0.1, SQLite file — goes through
//! steady-state cycles: unchanged polls, a change with its events and deliveries, a delivery
//! pass, a failed poll and the recovery, and the daemon's retention step. Start-up work (the
//! migrations, loading the known heads once) is excluded. Each recorded statement is then
//! explained with `EXPLAIN QUERY PLAN` against the same file, and any `SCAN` of a table is a
//! failure (but a walk in rowid order cut off by `LIMIT`, which reads a bounded prefix): as
//! plans and months of history pile up, a scan would make every poll slower.
//! The plans are printed (`cargo test --test query_plans -- --nocapture`); ARCHITECTURE.md
//! quotes them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use dbswatch::config;
use dbswatch::pipeline::{App, Clock};
use dbswatch::scheduler;
use dbswatch::simulate::{self, Scenario, Step};
use dbswatch::snapshot::Target;
use sqlx::{ConnectOptions, Row};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Collects the SQL text of every `sqlx::query` event.
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

struct SqlVisitor {
    summary: String,
    statement: String,
}

impl Visit for SqlVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_string(),
            "db.statement" => self.statement = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        let text = text.trim_matches('"').replace("\\n", "\n");
        match field.name() {
            "summary" => self.summary = text,
            "db.statement" => self.statement = text,
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut v = SqlVisitor {
            summary: String::new(),
            statement: String::new(),
        };
        event.record(&mut v);
        // sqlx puts the full text in `db.statement` when the summary shortened it.
        let sql = if v.statement.trim().is_empty() {
            v.summary
        } else {
            v.statement
        };
        let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        self.0.lock().unwrap().push(sql);
    }
}

impl Statements {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Tables whose scan is by design: a one-row table, and the JSON batch of the ledger.
fn allowed_scan(detail: &str) -> bool {
    ["json_each", "chain_state", "CONSTANT ROW"]
        .iter()
        .any(|t| detail.contains(t))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_path_never_scans_a_table() {
    let statements = Statements::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(statements.clone()),
    )
    .expect("one subscriber per test binary");

    let fixture = |name: &str| Step::fixture(name).expect("fixture");
    let quiet = fixture("precheck-fails/01.json");
    let scenario = Scenario::new(simulate::DEMO_ACCESS_KEY_ID, "secret-for-plans")
        .with_target(Target::BackupPlan("plan-quiet".into()), vec![quiet.clone()])
        .with_target(
            Target::BackupPlan("plan-busy".into()),
            vec![
                fixture("precheck-fails/01.json"),
                fixture("precheck-fails/01.json"),
                fixture("precheck-fails/03.json"),
                fixture("errors/http400-throttling-user.json"),
                fixture("precheck-fails/04.json"),
            ],
        );
    let dbs = simulate::spawn_local(scenario).await.unwrap();
    let chat = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&chat)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plans.db");
    let text = format!(
        r#"
[storage]
database = "{db}"
retention = "7d"
event_retention = "30d"

[aliyun]
access_key_id = "{id}"
access_key_secret = "secret-for-plans"
endpoint = "{dbs}"
max_retries = 0

[[watch]]
name = "quiet"
backup_plan_id = "plan-quiet"
schedule = "*/5 * * * *"

[[watch]]
name = "busy"
backup_plan_id = "plan-busy"
schedule = "*/5 * * * *"

[[channel]]
name = "audit"
type = "webhook"
url = "{chat}/hook"
"#,
        db = db.display(),
        id = simulate::DEMO_ACCESS_KEY_ID,
        dbs = dbs.endpoint(),
        chat = chat.uri(),
    );
    let path = dir.path().join("plans.toml");
    std::fs::write(&path, text).unwrap();
    let config = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let app = App::new(config, Clock::system()).await.unwrap();

    // Start-up: migrations, first polls (baselines), loading the known heads.
    app.poll_many(None).await;
    app.deliver_until_idle(10).await.unwrap();
    statements.take();

    // Steady state: unchanged, a change with deliveries, a failure, a recovery.
    for _ in 0..4 {
        app.poll_many(None).await;
        app.deliver_until_idle(10).await.unwrap();
        scheduler::prune(&app).await;
        app.store.next_delivery_at().await.unwrap();
    }
    let hot: BTreeSet<String> = statements
        .take()
        .into_iter()
        .filter(|sql| {
            let head = sql.trim_start().to_ascii_uppercase();
            !(head.starts_with("BEGIN")
                || head.starts_with("COMMIT")
                || head.starts_with("ROLLBACK")
                || head.starts_with("PRAGMA")
                || head.starts_with("SAVEPOINT")
                || head.starts_with("RELEASE"))
        })
        .collect();
    assert!(
        hot.iter().any(|s| s.contains("json_each")),
        "the unchanged-poll batch ran: {hot:#?}"
    );
    assert!(
        hot.iter().any(|s| s.starts_with("INSERT INTO events")),
        "a change was recorded: {hot:#?}"
    );

    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let mut scans = Vec::new();
    for sql in &hot {
        let plan = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot explain {sql}: {e}"));
        let details: Vec<String> = plan.iter().map(|r| r.get::<String, _>("detail")).collect();
        println!("{sql}\n  {}\n", details.join("\n  "));
        // A walk in rowid order that stops after LIMIT rows reads a bounded prefix.
        let prefix_walk = sql.contains(" ORDER BY id LIMIT ")
            || sql.contains(" ORDER BY e.id LIMIT ")
            || sql.ends_with(" ORDER BY id LIMIT ?")
            || sql.ends_with(" ORDER BY e.id LIMIT ?");
        let bounded = prefix_walk && !details.iter().any(|d| d.contains("TEMP B-TREE"));
        for d in details {
            if d.starts_with("SCAN") && !allowed_scan(&d) && !bounded {
                scans.push(format!("{d}  <-  {sql}"));
            }
        }
    }
    assert!(
        scans.is_empty(),
        "full scans on the hot path:\n{}",
        scans.join("\n")
    );
}
