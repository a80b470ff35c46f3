//! In-process counters for `/metrics`, and a writer for the Prometheus text format (0.0.4).
//!
//! Counters live in memory and start at zero with the process, as Prometheus expects (it
//! handles resets). Gauges that must survive restarts (outbox depth, age of the last good poll,
//! the last chain verification) are read from the database at scrape time instead.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds of the poll latency histogram, seconds. DBS answers in well under a second;
/// retries and timeouts (10 s by default, up to 3 attempts) land in the top buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// One histogram: cumulative counts are computed when written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of observed values, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Record one value in seconds.
    pub fn observe(&mut self, seconds: f64) {
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// A copy of every counter, taken under the lock and written without it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Polls by (watch, outcome): `first`, `changed`, `unchanged`, `error`.
    pub polls: BTreeMap<(String, String), u64>,
    /// Poll latency by watch.
    pub poll_latency: BTreeMap<String, Histogram>,
    /// Stored events by kind.
    pub events: BTreeMap<String, u64>,
    /// Delivery attempts by (channel, outcome): `delivered`, `retryable`, `permanent`,
    /// `render_error`.
    pub deliveries: BTreeMap<(String, String), u64>,
    /// Rows removed by retention, by table.
    pub pruned: BTreeMap<String, u64>,
}

/// The process's counters. The store updates them after each commit, so they count what was
/// recorded, not what was attempted.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Counters)) {
        // A panic while holding this lock cannot leave a counter half-written; keep counting.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    /// One poll of `watch` ended with `outcome` after `duration_ms`.
    pub fn poll(&self, watch: &str, outcome: &str, duration_ms: i64) {
        self.with(|c| {
            *c.polls
                .entry((watch.to_string(), outcome.to_string()))
                .or_default() += 1;
            c.poll_latency
                .entry(watch.to_string())
                .or_default()
                .observe(duration_ms.max(0) as f64 / 1000.0);
        });
    }

    /// One event of `kind` was stored.
    pub fn event(&self, kind: &str) {
        self.with(|c| *c.events.entry(kind.to_string()).or_default() += 1);
    }

    /// One delivery attempt to `channel` ended with `outcome`.
    pub fn delivery(&self, channel: &str, outcome: &str) {
        self.with(|c| {
            *c.deliveries
                .entry((channel.to_string(), outcome.to_string()))
                .or_default() += 1;
        });
    }

    /// Retention removed `rows` rows from `table`.
    pub fn pruned(&self, table: &str, rows: u64) {
        if rows > 0 {
            self.with(|c| *c.pruned.entry(table.to_string()).or_default() += rows);
        }
    }

    /// A consistent copy of every counter.
    pub fn snapshot(&self) -> Counters {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Builds a Prometheus text exposition: `# HELP` and `# TYPE` once per family, then samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Start a family. `kind` is `counter`, `gauge` or `histogram`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }

    /// A histogram's `_bucket`, `_sum` and `_count` samples (the family must be started).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (i, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or("+Inf".to_string(), |b| format_value(*b));
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_when_written() {
        let m = Metrics::default();
        m.poll("w", "unchanged", 40);
        m.poll("w", "unchanged", 300);
        m.poll("w", "error", 90_000);
        let c = m.snapshot();
        assert_eq!(c.polls[&("w".to_string(), "unchanged".to_string())], 2);
        let mut e = Exposition::new();
        e.family("lat", "histogram", "x");
        e.histogram("lat", &[("watch", "w")], &c.poll_latency["w"]);
        let text = e.finish();
        assert!(
            text.contains("lat_bucket{watch=\"w\",le=\"0.05\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_bucket{watch=\"w\",le=\"0.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_bucket{watch=\"w\",le=\"60\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_bucket{watch=\"w\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("lat_count{watch=\"w\"} 3\n"), "{text}");
        assert!(text.contains("lat_sum{watch=\"w\"} 90.34\n"), "{text}");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Exposition::new();
        e.family("x_total", "counter", "a \\ b\nc");
        e.sample("x_total", &[("watch", "a\"b\\c\nd")], 1.0);
        assert_eq!(
            e.finish(),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total{watch=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn values_are_written_plainly() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
