//! Audit: the pure parts of answering "what happened, when, who was told, and can we trust it".
//!
//! - [`chain`]: the event hash chain and the logic of `dbswatch verify`;
//! - [`when`]: times as typed (`7d`, RFC 3339, local dates) and as shown (configured zone);
//! - [`timeline`]: one pre-check or restore run as it unfolded, from stored events;
//! - [`stats`]: per-watch runs, failures, durations and the checks that fail most;
//! - [`metrics`]: in-process counters and the Prometheus text format;
//! - [`heartbeat`]: the scheduler's last tick, for `/healthz`.
//!
//! No IO here: the SQL is in `store`, the HTTP in `server`, the printing in `commands`.

pub mod chain;
pub mod heartbeat;
pub mod metrics;
pub mod stats;
pub mod timeline;
pub mod when;

use crate::event::{ALL_KINDS, kind_matches};

pub use heartbeat::Heartbeat;

/// The stored kinds a list of kind filters stands for: globs are matched against every kind the
/// product emits ([`ALL_KINDS`], a closed set), exact names are kept as given.
pub fn expand_kinds(patterns: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in patterns {
        if p.contains('*') {
            for k in ALL_KINDS.iter().filter(|k| kind_matches(p, k)) {
                if !out.iter().any(|o| o == k) {
                    out.push(k.to_string());
                }
            }
        } else if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// Reject a kind filter that can match nothing, naming the kinds that exist.
pub fn check_kind_patterns(patterns: &[String]) -> Result<(), String> {
    for p in patterns {
        if !ALL_KINDS.iter().any(|k| kind_matches(p, k)) {
            return Err(format!(
                "`{p}` matches no event kind; kinds are {} (globs like precheck.* or *.failed work)",
                ALL_KINDS.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_expand_to_known_kinds() {
        let k = expand_kinds(&["precheck.*".into(), "*.failed".into()]);
        let expected = crate::event::ALL_KINDS
            .iter()
            .filter(|kind| kind.starts_with("precheck.") || kind.ends_with(".failed"))
            .count();
        assert_eq!(k.len(), expected, "{k:?}");
        assert!(k.contains(&"restore.failed".to_string()));
        assert_eq!(
            expand_kinds(&["restore.completed".into(), "restore.completed".into()]),
            ["restore.completed"]
        );
        assert!(expand_kinds(&["nothing.*".into()]).is_empty());
    }

    #[test]
    fn unknown_kind_filters_are_refused_with_the_list() {
        assert!(check_kind_patterns(&["*.failed".into(), "restore.progress".into()]).is_ok());
        let err = check_kind_patterns(&["precheck.exploded".into()]).unwrap_err();
        assert!(err.contains("precheck.failed"), "{err}");
    }
}
