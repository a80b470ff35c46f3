//! Commands that help people set dbswatch up on the accounts they already have:
//!
//! - `whoami`: which credentials each account uses, and where they came from (never the secret);
//! - `plans`: the account's backup plans, optionally as ready-to-paste `[[watch]]` blocks;
//! - `restores`: the account's recent restore tasks, likewise.
//!
//! They read the config (or, without a config file, just the environment), talk to DBS through
//! the same clients as the daemon, and touch no database.
//!
//! Also the bodies of `render` and `test-channel`, and of the audit commands:
//!
//! - [`audit`]: `history`, `timeline`, `snapshots`, `stats`, `verify`;
//! - [`daemon`]: `run` with the HTTP server and the periodic chain verification;
//! - [`queries`]: answers shared by the CLI and the HTTP API;
//! - [`deliveries`]: `deliveries` and `redeliver`.

pub mod audit;
pub mod daemon;
pub mod deliveries;
pub mod queries;
pub mod render;
pub mod test_channel;

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config};

mod listing;
mod whoami;

pub use listing::{plans, restores};
pub use whoami::whoami;

/// The config at `path`; without a file there, the defaults plus the environment, so `whoami`
/// and `plans` work before any config is written.
fn load_or_default(path: &Path) -> Result<Config, ExitCode> {
    if path.exists() {
        return config::load(path).map_err(|e| {
            eprint!("error: {e}");
            ExitCode::from(2)
        });
    }
    eprintln!(
        "note: no config at {}; using the environment and the default profile files",
        path.display()
    );
    config::parse("", path, &|name| std::env::var(name).ok()).map_err(|e| {
        eprint!("error: {e}");
        ExitCode::from(2)
    })
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A TOML basic string on one line: `"`, `\` and control characters escaped.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_strings_are_quoted() {
        let out = table(
            &["ID", "NAME"],
            &[
                vec!["dbs1".into(), "orders".into()],
                vec!["dbs22".into(), "".into()],
            ],
        );
        assert_eq!(out, "ID     NAME\ndbs1   orders\ndbs22\n");
        assert_eq!(toml_string("a \"b\"\n\\"), r#""a \"b\"\n\\""#);
        let parsed: toml::Table = format!("x = {}", toml_string("q\"\u{1}\\"))
            .parse()
            .unwrap();
        assert_eq!(parsed["x"].as_str(), Some("q\"\u{1}\\"));
    }
}
