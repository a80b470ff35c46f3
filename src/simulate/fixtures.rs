//! The DBS reply fixtures of `tests/fixtures/`, compiled in.
//!
//! The simulator must run from an installed binary, far from the source tree, and the parser's
//! unit tests should read exactly what the simulator serves; embedding the files gives both one
//! copy.

/// Every fixture, by its path relative to `tests/fixtures/`.
pub const FIXTURES: &[(&str, &str)] = &[
    (
        "errors/http200-success-false.json",
        include_str!("../../tests/fixtures/errors/http200-success-false.json"),
    ),
    (
        "errors/http200-truncated.json",
        include_str!("../../tests/fixtures/errors/http200-truncated.json"),
    ),
    (
        "errors/http400-signature-mismatch.json",
        include_str!("../../tests/fixtures/errors/http400-signature-mismatch.json"),
    ),
    (
        "errors/http400-throttling-user.json",
        include_str!("../../tests/fixtures/errors/http400-throttling-user.json"),
    ),
    (
        "errors/http400-timestamp-expired.json",
        include_str!("../../tests/fixtures/errors/http400-timestamp-expired.json"),
    ),
    (
        "errors/http403-forbidden.json",
        include_str!("../../tests/fixtures/errors/http403-forbidden.json"),
    ),
    (
        "errors/http404-access-key-not-found.json",
        include_str!("../../tests/fixtures/errors/http404-access-key-not-found.json"),
    ),
    (
        "errors/http502-gateway.html",
        include_str!("../../tests/fixtures/errors/http502-gateway.html"),
    ),
    (
        "official-demo.json",
        include_str!("../../tests/fixtures/official-demo.json"),
    ),
    (
        "precheck-fails/01.json",
        include_str!("../../tests/fixtures/precheck-fails/01.json"),
    ),
    (
        "precheck-fails/02.json",
        include_str!("../../tests/fixtures/precheck-fails/02.json"),
    ),
    (
        "precheck-fails/03.json",
        include_str!("../../tests/fixtures/precheck-fails/03.json"),
    ),
    (
        "precheck-fails/04.json",
        include_str!("../../tests/fixtures/precheck-fails/04.json"),
    ),
    (
        "precheck-passes/01.json",
        include_str!("../../tests/fixtures/precheck-passes/01.json"),
    ),
    (
        "precheck-passes/02.json",
        include_str!("../../tests/fixtures/precheck-passes/02.json"),
    ),
    (
        "restore-completes/01.json",
        include_str!("../../tests/fixtures/restore-completes/01.json"),
    ),
    (
        "restore-completes/02.json",
        include_str!("../../tests/fixtures/restore-completes/02.json"),
    ),
    (
        "restore-completes/03.json",
        include_str!("../../tests/fixtures/restore-completes/03.json"),
    ),
];

/// The example scenario file shipped as `tests/fixtures/scenario-demo.json`; the built-in demo
/// scenario is parsed from it, so the two cannot drift apart.
pub const DEMO_SCENARIO: &str = include_str!("../../tests/fixtures/scenario-demo.json");

/// A fixture's text by its path relative to `tests/fixtures/`, e.g. `precheck-fails/01.json`.
pub fn fixture(name: &str) -> Option<&'static str> {
    FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// All fixture names, for error messages that list what exists.
pub fn names() -> impl Iterator<Item = &'static str> {
    FIXTURES.iter().map(|(name, _)| *name)
}

/// The HTTP status a fixture is served with unless a step says otherwise: the `httpNNN-` prefix
/// of the error fixtures (as listed in `tests/fixtures/README.md`), 200 for the rest.
pub fn default_status(name: &str) -> u16 {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.strip_prefix("http")
        .and_then(|rest| rest.get(..3))
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_tests_fixtures_is_embedded_verbatim() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    if rel != "README.md" && rel != "scenario-demo.json" {
                        on_disk.push(rel);
                    }
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = names().map(str::to_string).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
        for name in &on_disk {
            assert_eq!(
                fixture(name).unwrap(),
                std::fs::read_to_string(root.join(name)).unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn default_status_follows_the_file_name() {
        assert_eq!(
            default_status("errors/http404-access-key-not-found.json"),
            404
        );
        assert_eq!(default_status("errors/http502-gateway.html"), 502);
        assert_eq!(default_status("errors/http200-truncated.json"), 200);
        assert_eq!(default_status("precheck-fails/01.json"), 200);
        assert!(fixture("nope.json").is_none());
    }
}
