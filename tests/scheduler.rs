//! The daemon's wake-ups, under paused tokio time: an idle daemon wakes only for due work, and a
//! change found by one poll is sent while the rest of its cycle is still being polled. The
//! product's clock reads tokio's ([`Clock::tokio`]), so its sleeps, the DBS limiter and the
//! stored times all move with the virtual clock; nothing here measures real time.

mod outbox_support;

use std::sync::Arc;
use std::time::Duration;

use dbswatch::audit::Heartbeat;
use dbswatch::config;
use dbswatch::pipeline::{App, Clock};
use dbswatch::simulate::{self, Scenario, SimServer, Step};
use dbswatch::snapshot::Target;
use dbswatch::store::HistoryFilter;
use outbox_support::{Receiver, Reply, keep_virtual_time_in_small_steps};
use tokio_util::sync::CancellationToken;

/// 2025-12-03T00:30:00Z: half past, so an hourly watch first fires at 01:00.
const T0: i64 = 1_764_721_800_000;
const HOUR: u64 = 3_600;

fn config(dir: &std::path::Path, sim: &SimServer, dbs: &str, rest: &str) -> config::Config {
    let text = format!(
        r#"
[storage]
database = "{db}"

[aliyun]
access_key_id = "{id}"
access_key_secret = "{secret}"
endpoint = "{endpoint}"
max_retries = 0

[dbs]
jitter_secs = 0
{dbs}

{rest}
"#,
        db = dir.join("dbswatch.db").display(),
        id = simulate::DEMO_ACCESS_KEY_ID,
        secret = simulate::DEMO_ACCESS_KEY_SECRET,
        endpoint = sim.endpoint(),
    );
    config::parse(&text, &dir.join("dbswatch.toml"), &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the daemon on `app` for `virtual_secs` of paused time, then stops it and waits for it.
async fn run_for(app: App, heartbeat: Arc<Heartbeat>, virtual_secs: u64) {
    let tick = keep_virtual_time_in_small_steps();
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(dbswatch::scheduler::run_observed(
        app,
        stop.clone(),
        heartbeat,
    ));
    tokio::time::sleep(Duration::from_secs(virtual_secs)).await;
    stop.cancel();
    daemon.await.unwrap();
    tick.abort();
}

#[tokio::test]
async fn an_idle_daemon_wakes_once_per_due_poll_not_once_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Target::BackupPlan("dbsidle0plan".into());
    let scenario = Scenario::new(
        simulate::DEMO_ACCESS_KEY_ID,
        simulate::DEMO_ACCESS_KEY_SECRET,
    )
    .with_target(
        plan.clone(),
        vec![Step::fixture("precheck-passes/02.json").unwrap()],
    );
    let sim = simulate::spawn_local(scenario).await.unwrap();
    let config = config(
        dir.path(),
        &sim,
        "",
        r#"
[[watch]]
name = "hourly"
backup_plan_id = "dbsidle0plan"
schedule = "0 * * * *"
"#,
    );
    // Opened before pausing: the migrations take real time that paused time would skip over.
    let app = App::new(config, Clock::tokio(T0)).await.unwrap();
    tokio::time::pause();
    let heartbeat = Arc::new(Heartbeat::new());

    // 00:30 to 03:45: the watch is due at 01:00, 02:00 and 03:00.
    run_for(app, heartbeat.clone(), 3 * HOUR + 15 * 60).await;
    tokio::time::resume();

    assert_eq!(sim.served(&plan), 3, "one poll per hour");
    assert_eq!(
        heartbeat.wakeups(),
        3,
        "the loop woke for the three polls only; a one-minute tick would have woken it 195 times"
    );
    // The delivery task looked at the outbox after each poll cycle and at nothing else: the
    // unchanged answers queued nothing, and no timer woke it.
    assert_eq!(heartbeat.delivery_wakeups(), 3);
    // Asleep until the 04:00 poll when it was stopped.
    assert_eq!(heartbeat.next_wake_ms(), Some(T0 + 3_600_000 * 7 / 2));
}

#[tokio::test]
async fn a_change_is_delivered_while_the_rest_of_its_cycle_is_still_polled() {
    let dir = tempfile::tempdir().unwrap();
    let plans = [
        "dbscycle0001",
        "dbscycle0002",
        "dbscycle0003",
        "dbscycle0004",
    ];
    let mut scenario = Scenario::new(
        simulate::DEMO_ACCESS_KEY_ID,
        simulate::DEMO_ACCESS_KEY_SECRET,
    );
    let mut watches = String::new();
    for plan in plans {
        // A passed pre-check: the first answer is already a change worth a message, and it is
        // stored right after DBS answers (a failed one would first look up the job's error
        // code, one more request waiting for the limiter).
        scenario = scenario.with_target(
            Target::BackupPlan(plan.into()),
            vec![Step::fixture("precheck-passes/02.json").unwrap()],
        );
        watches.push_str(&format!(
            "[[watch]]\nname = \"{plan}\"\nbackup_plan_id = \"{plan}\"\nschedule = \"0 * * * *\"\n\
             channels = [\"hook\"]\n\n"
        ));
    }
    let sim = simulate::spawn_local(scenario).await.unwrap();
    let clock = Clock::tokio(T0);
    let rx = Receiver::start(clock.clone()).await;
    rx.script("/hook", vec![Reply::new(204, "")]);
    // One DBS request every 30 s: the four polls of the 01:00 cycle take a minute and a half,
    // far longer than storing a change and sending it.
    let config = config(
        dir.path(),
        &sim,
        "requests_per_second = 0.0333",
        &format!(
            "{watches}[[channel]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{}/hook\"\n",
            rx.url()
        ),
    );
    let app = App::new(config, clock).await.unwrap();
    let store = app.store.clone();
    tokio::time::pause();
    let heartbeat = Arc::new(Heartbeat::new());

    run_for(app, heartbeat.clone(), HOUR).await;
    tokio::time::resume();

    let history = store.history(&HistoryFilter::default()).await.unwrap();
    let watches_changed: std::collections::HashSet<&str> =
        history.iter().map(|e| e.watch.as_str()).collect();
    assert_eq!(watches_changed.len(), plans.len(), "{history:?}");
    let cycle_end = history.iter().map(|e| e.observed_at_ms).max().unwrap();
    let cycle_start = history.iter().map(|e| e.observed_at_ms).min().unwrap();
    assert!(cycle_end > cycle_start, "the limiter spread the cycle out");

    let received = rx.received("/hook");
    assert_eq!(received.len(), history.len(), "one message per change");
    let first = received.iter().map(|r| r.at_ms).min().unwrap();
    assert!(
        first < cycle_end,
        "the first change went out at {first}, before the cycle's last change was found at \
         {cycle_end}; waiting for the whole cycle would send nothing before it"
    );
    let before_the_end = received.iter().filter(|r| r.at_ms < cycle_end).count();
    assert!(
        before_the_end >= plans.len() - 1,
        "every change but the last was sent while its cycle went on: {before_the_end}"
    );
    assert_eq!(
        heartbeat.wakeups(),
        1,
        "all four watches were due in one wake-up"
    );
}
