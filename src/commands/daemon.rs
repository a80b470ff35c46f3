//! `dbswatch run`: the scheduler, and beside it (when asked) the HTTP server and a daily walk of
//! the hash chain whose result `/metrics` exports.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::Heartbeat;
use crate::pipeline::App;
use crate::scheduler;
use crate::server::{self, ApiState};

/// How often the daemon verifies the chain (and once at start).
pub const VERIFY_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Run the daemon until Ctrl-C / SIGTERM. `listen` (from `--listen`) overrides
/// `[server] listen`; with neither, no HTTP server is started.
pub async fn run(app: App, listen: Option<SocketAddr>) -> ExitCode {
    let shutdown = scheduler::shutdown_on_signals();
    let heartbeat = Arc::new(Heartbeat::new());
    let addr = listen.or(app.config.server.listen);
    let mut server_task = None;
    if let Some(addr) = addr {
        if let Some(problem) =
            crate::config::server_exposure_problem(&addr, app.config.server.token.as_ref())
        {
            eprintln!("error: {problem}");
            return ExitCode::from(2);
        }
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "error: cannot listen on {addr}: {e}; is another process using the port?"
                );
                return ExitCode::from(1);
            }
        };
        let state = ApiState::new(
            app.store.clone(),
            app.config.clone(),
            heartbeat.clone(),
            app.clock.clone(),
        );
        let stop = shutdown.clone();
        tracing::info!(%addr, "serving /healthz, /metrics and /api/v1");
        server_task = Some(tokio::spawn(server::serve(listener, state, async move {
            stop.cancelled().await
        })));
    }
    let verifier = tokio::spawn(verify_periodically(app.clone(), shutdown.clone()));
    scheduler::run_observed(app, shutdown.clone(), heartbeat).await;
    shutdown.cancel();
    let _ = verifier.await;
    if let Some(task) = server_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
            Err(e) => tracing::error!(error = %e, "the HTTP server task failed"),
        }
    }
    ExitCode::SUCCESS
}

/// Verify the chain now and every [`VERIFY_EVERY`]; a broken chain is logged as an error and
/// exported by `/metrics` (`dbswatch_chain_verify_ok 0`).
async fn verify_periodically(app: App, shutdown: CancellationToken) {
    loop {
        match app.store.verify_chain(app.clock.now_ms()).await {
            Ok(r) if r.verdict.ok() => {
                tracing::info!(events = r.verdict.events, "event hash chain intact")
            }
            Ok(r) => tracing::error!(
                problems = r.verdict.problems.len(),
                first = %r.verdict.problems[0].detail,
                "the event hash chain is broken; run `dbswatch verify` for details"
            ),
            Err(e) => tracing::warn!(error = %e, "could not verify the event hash chain"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(VERIFY_EVERY) => {}
        }
    }
}
