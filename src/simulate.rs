//! The DBS double: verifies signatures and plays scripted responses.
//!
//! INTERFACE STUB: replaced by the real implementation (see the helper brief).

use std::net::SocketAddr;

/// A scripted set of responses.
#[derive(Debug, Clone)]
pub struct Scenario;

impl Scenario {
    /// The built-in demo scenario.
    pub fn builtin_demo() -> Scenario {
        Scenario
    }
    /// Load a scenario file.
    pub fn load(_path: &std::path::Path) -> Result<Scenario, String> {
        Ok(Scenario)
    }
}

/// Serve the scenario on the listener until `shutdown` resolves.
pub async fn serve(
    _listener: tokio::net::TcpListener,
    _scenario: Scenario,
    _shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Ok(())
}

/// Credentials the built-in scenario accepts.
pub const DEMO_ACCESS_KEY_ID: &str = "demo-access-key-id";
/// Secret the built-in scenario accepts.
pub const DEMO_ACCESS_KEY_SECRET: &str = "demo-access-key-secret";

#[allow(dead_code)]
fn _addr(_a: SocketAddr) {}
