//! The hash chain over stored events, and the pure logic of `dbswatch verify`.
//!
//! Each event's hash is SHA-256 over a canonical serialisation of what the event says (uid,
//! watch, kind, target, status, observed_at, payload) and of the previous event's hash. Changing,
//! inserting or deleting a row behind the product's back breaks either a row's own hash or a link;
//! [`Verifier`] walks the rows in id order and says which, and where. The chain is not keyed: it
//! catches edits made with the sqlite3 CLI or a script, not someone who recomputes every hash
//! after the edited row (the head hash printed by `verify` can be kept elsewhere against that).

use serde::Serialize;
use sha2::{Digest, Sha256};

/// What the first event links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of an event that the chain protects, as stored.
#[derive(Debug, Clone, Copy)]
pub struct ChainFields<'a> {
    /// Event uid.
    pub uid: &'a str,
    /// Watch name.
    pub watch: &'a str,
    /// Event kind.
    pub kind: &'a str,
    /// `backup_plan` or `restore_task`.
    pub target_type: &'a str,
    /// Plan or task id.
    pub target_id: &'a str,
    /// Status after the event.
    pub status: Option<&'a str>,
    /// Epoch ms.
    pub observed_at: i64,
    /// The event as JSON, byte for byte as stored.
    pub payload: &'a str,
}

/// Hex SHA-256 of `prev_hash` and the fields, serialised as one JSON array (strings escaped,
/// `null` for a missing status), so no two different rows can serialise to the same bytes.
pub fn event_hash(prev_hash: &str, f: &ChainFields<'_>) -> String {
    let canonical = serde_json::json!([
        "dbswatch.event.v1",
        prev_hash,
        f.uid,
        f.watch,
        f.kind,
        f.target_type,
        f.target_id,
        f.status,
        f.observed_at,
        f.payload,
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One stored row as `verify` reads it: its links, and the hash its content computes to.
#[derive(Debug, Clone)]
pub struct ChainRow {
    /// Row id.
    pub id: i64,
    /// Event uid.
    pub uid: String,
    /// Stored link to the previous row.
    pub prev_hash: Option<String>,
    /// Stored hash.
    pub hash: Option<String>,
    /// The hash recomputed from the stored content and stored `prev_hash`; `None` when the row
    /// has no `prev_hash` to compute with.
    pub computed: Option<String>,
}

/// How a row was tampered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The row's content (or its links) no longer match what was written.
    Changed,
    /// The row was not written by dbswatch.
    Inserted,
    /// Rows are missing: a link points to a hash no remaining row has.
    Deleted,
}

impl ProblemKind {
    /// The word shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Changed => "changed",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Deleted => "deleted",
        }
    }
}

/// One finding of `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What happened.
    pub kind: ProblemKind,
    /// The row the finding is about (for `deleted`: the first row after the gap, or the last
    /// row when the newest events are missing).
    pub event_id: i64,
    /// Its uid, when the row exists.
    pub uid: Option<String>,
    /// Plain words.
    pub detail: String,
}

/// The chain's recorded head: the last event dbswatch wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Its row id.
    pub id: i64,
    /// Its hash.
    pub hash: String,
}

/// Walks rows in id order and classifies every break. Feed it with [`Verifier::push`], then
/// call [`Verifier::finish`]. It holds one row back, because telling an inserted row from a
/// changed one needs to see whether the next row links around it.
#[derive(Debug)]
pub struct Verifier {
    head: Option<Head>,
    expected_prev: String,
    last_good_id: Option<i64>,
    pending: Option<ChainRow>,
    rows: u64,
    problems: Vec<Problem>,
}

/// The outcome of a walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Rows read.
    pub events: u64,
    /// Every finding, in id order; empty when the chain is intact.
    pub problems: Vec<Problem>,
    /// The hash of the last row that checked out (the head, when intact).
    pub head_hash: String,
}

impl Verdict {
    /// True when nothing was found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Verifier {
    /// Start from `anchor` (the hash and id of the last pruned event; [`GENESIS`] and `None`
    /// when nothing was pruned) and walk towards `head`, the last event dbswatch recorded
    /// writing (`None`: it never wrote one). The rows must be read in one consistent snapshot
    /// with the head.
    pub fn new(anchor: &str, anchor_id: Option<i64>, head: Option<Head>) -> Verifier {
        Verifier {
            head,
            expected_prev: anchor.to_string(),
            last_good_id: anchor_id,
            pending: None,
            rows: 0,
            problems: Vec::new(),
        }
    }

    /// The next row, in ascending id order.
    pub fn push(&mut self, row: ChainRow) {
        self.rows += 1;
        if let Some(pending) = self.pending.take() {
            self.decide(pending, Some(&row));
        }
        self.pending = Some(row);
    }

    /// Decide the last row and compare the end of the chain with the recorded head.
    pub fn finish(mut self) -> Verdict {
        if let Some(row) = self.pending.take() {
            self.decide(row, None);
        }
        if let Some(head) = self.head.clone()
            && self.expected_prev != head.hash
        {
            match self.last_good_id {
                Some(id) if id >= head.id => self.problems.push(Problem {
                    kind: ProblemKind::Changed,
                    event_id: head.id,
                    uid: None,
                    detail: "the newest event's hash differs from the one recorded when it was \
                             written: it was altered and re-hashed"
                        .into(),
                }),
                last => self.problems.push(Problem {
                    kind: ProblemKind::Deleted,
                    event_id: last.unwrap_or(head.id),
                    uid: None,
                    detail: format!(
                        "the newest events are missing: dbswatch last wrote event {}, the chain \
                         ends at {}",
                        head.id,
                        last.map_or("nothing".to_string(), |id| format!("event {id}"))
                    ),
                }),
            }
        }
        Verdict {
            events: self.rows,
            problems: self.problems,
            head_hash: self.expected_prev,
        }
    }

    fn decide(&mut self, row: ChainRow, next: Option<&ChainRow>) {
        let after_head = self.head.as_ref().is_none_or(|h| row.id > h.id);
        if after_head {
            let detail = match &self.head {
                Some(h) => format!(
                    "the row comes after event {}, the last one dbswatch recorded writing",
                    h.id
                ),
                None => "dbswatch never recorded writing an event, yet this row exists".into(),
            };
            self.problem(ProblemKind::Inserted, &row, detail);
            return;
        }
        let (Some(prev), Some(hash)) = (row.prev_hash.as_deref(), row.hash.as_deref()) else {
            self.problem(
                ProblemKind::Inserted,
                &row,
                "the row has no chain hash: it was not written by dbswatch".into(),
            );
            return;
        };
        let content_ok = row.computed.as_deref() == Some(hash);
        let link_ok = prev == self.expected_prev;
        // The next row links to the last good one: the chain goes around this row.
        let skipped_by_next =
            next.is_some_and(|n| n.prev_hash.as_deref() == Some(self.expected_prev.as_str()));
        match (content_ok, link_ok) {
            (true, true) => {
                self.expected_prev = hash.to_string();
                self.last_good_id = Some(row.id);
            }
            (false, true) => {
                self.problem(
                    ProblemKind::Changed,
                    &row,
                    "the content no longer matches the hash it was written with".into(),
                );
                // The next row links to the stored hash, not to the altered content.
                self.expected_prev = hash.to_string();
                self.last_good_id = Some(row.id);
            }
            (_, false) if skipped_by_next => {
                self.problem(
                    ProblemKind::Inserted,
                    &row,
                    "the chain goes around this row: the next event links to the one before it"
                        .into(),
                );
            }
            (content_ok, false) => {
                let gap = self.last_good_id.is_some_and(|id| row.id > id + 1)
                    || (self.last_good_id.is_none() && row.id > 1 && content_ok);
                if content_ok && gap {
                    let from = self.last_good_id.map_or(1, |id| id + 1);
                    self.problem(
                        ProblemKind::Deleted,
                        &row,
                        format!(
                            "events {from}..{} are missing: this row links to a hash no \
                             remaining row has",
                            row.id - 1
                        ),
                    );
                } else if content_ok {
                    self.problem(
                        ProblemKind::Changed,
                        &row,
                        format!(
                            "the link to the previous row is broken although no id is missing: \
                             event {} or this row's prev_hash was altered and re-hashed",
                            self.last_good_id
                                .map_or("(none)".to_string(), |id| id.to_string())
                        ),
                    );
                } else {
                    self.problem(
                        ProblemKind::Changed,
                        &row,
                        "neither its content nor its link match what was written".into(),
                    );
                }
                self.expected_prev = hash.to_string();
                self.last_good_id = Some(row.id);
            }
        }
    }

    fn problem(&mut self, kind: ProblemKind, row: &ChainRow, detail: String) {
        self.problems.push(Problem {
            kind,
            event_id: row.id,
            uid: Some(row.uid.clone()),
            detail,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `n` rows (ids 1..=n) as dbswatch writes it.
    fn chain(n: i64) -> Vec<(ChainRow, String)> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|id| {
                let payload = format!("{{\"n\":{id}}}");
                let uid = format!("u{id}");
                let hash = event_hash(&prev, &fields(&uid, &payload));
                let row = ChainRow {
                    id,
                    uid: uid.clone(),
                    prev_hash: Some(prev.clone()),
                    hash: Some(hash.clone()),
                    computed: Some(hash.clone()),
                };
                prev = hash;
                (row, payload)
            })
            .collect()
    }

    fn fields<'a>(uid: &'a str, payload: &'a str) -> ChainFields<'a> {
        ChainFields {
            uid,
            watch: "w",
            kind: "precheck.failed",
            target_type: "backup_plan",
            target_id: "p",
            status: Some("failed"),
            observed_at: 7,
            payload,
        }
    }

    fn run(rows: Vec<ChainRow>, head: Option<Head>) -> Verdict {
        let mut v = Verifier::new(GENESIS, None, head);
        for r in rows {
            v.push(r);
        }
        v.finish()
    }

    fn head_of(rows: &[(ChainRow, String)]) -> Option<Head> {
        rows.last().map(|(r, _)| Head {
            id: r.id,
            hash: r.hash.clone().unwrap(),
        })
    }

    fn kinds(v: &Verdict) -> Vec<(ProblemKind, i64)> {
        v.problems.iter().map(|p| (p.kind, p.event_id)).collect()
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = fields("u", "{}");
        let h = event_hash(GENESIS, &base);
        let variants = [
            ChainFields { uid: "v", ..base },
            ChainFields { watch: "x", ..base },
            ChainFields { kind: "k", ..base },
            ChainFields {
                target_type: "restore_task",
                ..base
            },
            ChainFields {
                target_id: "q",
                ..base
            },
            ChainFields {
                status: None,
                ..base
            },
            ChainFields {
                observed_at: 8,
                ..base
            },
            ChainFields {
                payload: "{ }",
                ..base
            },
        ];
        for v in variants {
            assert_ne!(event_hash(GENESIS, &v), h, "{v:?}");
        }
        assert_ne!(event_hash("1", &base), h, "the link is part of the hash");
        // Field boundaries cannot be shifted: "ab","c" differs from "a","bc".
        let a = ChainFields {
            uid: "ab",
            watch: "c",
            ..base
        };
        let b = ChainFields {
            uid: "a",
            watch: "bc",
            ..base
        };
        assert_ne!(event_hash(GENESIS, &a), event_hash(GENESIS, &b));
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(5);
        let head = head_of(&c);
        let v = run(c.into_iter().map(|(r, _)| r).collect(), head.clone());
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.events, 5);
        assert_eq!(v.head_hash, head.unwrap().hash);
        assert!(run(vec![], None).ok(), "an empty table is fine");
    }

    #[test]
    fn a_changed_row_is_named() {
        let c = chain(5);
        let head = head_of(&c);
        let mut rows: Vec<ChainRow> = c.into_iter().map(|(r, _)| r).collect();
        rows[2].computed = Some("tampered".into());
        let v = run(rows, head);
        assert_eq!(kinds(&v), [(ProblemKind::Changed, 3)]);
    }

    #[test]
    fn a_changed_and_rehashed_row_shows_as_a_broken_link_without_a_gap() {
        let c = chain(5);
        let head = head_of(&c);
        let mut rows: Vec<ChainRow> = c.into_iter().map(|(r, _)| r).collect();
        rows[2].hash = Some("rehashed".into());
        rows[2].computed = Some("rehashed".into());
        let v = run(rows, head);
        assert_eq!(kinds(&v), [(ProblemKind::Changed, 4)]);
        assert!(v.problems[0].detail.contains("event 3"), "{v:?}");
    }

    #[test]
    fn a_deleted_row_is_a_link_to_nothing() {
        let c = chain(5);
        let head = head_of(&c);
        let rows: Vec<ChainRow> = c
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| r.id != 3)
            .collect();
        let v = run(rows, head);
        assert_eq!(kinds(&v), [(ProblemKind::Deleted, 4)]);
        assert!(v.problems[0].detail.contains("events 3..3"), "{v:?}");
    }

    #[test]
    fn deleting_the_first_rows_or_the_newest_rows_is_caught() {
        let c = chain(5);
        let head = head_of(&c);
        let rows: Vec<ChainRow> = c.iter().map(|(r, _)| r.clone()).collect();
        let v = run(rows[2..].to_vec(), head.clone());
        assert_eq!(kinds(&v), [(ProblemKind::Deleted, 3)]);
        let v = run(rows[..3].to_vec(), head.clone());
        assert_eq!(kinds(&v), [(ProblemKind::Deleted, 3)]);
        assert!(v.problems[0].detail.contains("newest"), "{v:?}");
        let v = run(vec![], head);
        assert_eq!(kinds(&v), [(ProblemKind::Deleted, 5)]);
    }

    #[test]
    fn an_anchor_continues_a_pruned_chain() {
        let c = chain(5);
        let anchor = c[1].0.hash.clone().unwrap();
        let head = head_of(&c);
        let rows: Vec<ChainRow> = c.into_iter().skip(2).map(|(r, _)| r).collect();
        let mut v = Verifier::new(&anchor, Some(2), head.clone());
        for r in rows.clone() {
            v.push(r);
        }
        assert!(v.finish().ok());
        // The first row after the anchor deleted by hand: the gap starts after the anchor.
        let mut v = Verifier::new(&anchor, Some(2), head);
        for r in rows.into_iter().skip(1) {
            v.push(r);
        }
        let verdict = v.finish();
        assert_eq!(kinds(&verdict), [(ProblemKind::Deleted, 4)]);
        assert!(
            verdict.problems[0].detail.contains("events 3..3"),
            "{verdict:?}"
        );
    }

    #[test]
    fn inserted_rows_are_told_apart() {
        let c = chain(4);
        let head = head_of(&c);
        let mut rows: Vec<ChainRow> = c.into_iter().map(|(r, _)| r).collect();
        // A row added at the end by hand, without hashes.
        rows.push(ChainRow {
            id: 5,
            uid: "x".into(),
            prev_hash: None,
            hash: None,
            computed: None,
        });
        let v = run(rows.clone(), head.clone());
        assert_eq!(kinds(&v), [(ProblemKind::Inserted, 5)]);

        // A row with a plausible but wrong hash, slipped between 2 and 3 (ids renumbered).
        let mut middle = rows[..4].to_vec();
        let fake = ChainRow {
            id: 3,
            uid: "fake".into(),
            prev_hash: Some("whatever".into()),
            hash: Some("abc".into()),
            computed: Some("abc".into()),
        };
        for r in middle.iter_mut().skip(2) {
            r.id += 1;
        }
        middle.insert(2, fake);
        let last = middle.last().unwrap();
        let head = Some(Head {
            id: last.id,
            hash: last.hash.clone().unwrap(),
        });
        let v = run(middle.clone(), head.clone());
        assert_eq!(kinds(&v), [(ProblemKind::Inserted, 3)]);

        // A copy of the previous row's chain fields, slipped in after it.
        let mut copy = middle[1].clone();
        copy.id = 3;
        copy.uid = "copy".into();
        copy.computed = Some("differs: other uid".into());
        middle[2] = copy;
        let v = run(middle, head);
        assert_eq!(kinds(&v), [(ProblemKind::Inserted, 3)]);
    }

    #[test]
    fn a_well_formed_row_after_the_head_is_inserted() {
        let c = chain(4);
        let head = head_of(&c[..3]);
        let rows: Vec<ChainRow> = c.into_iter().map(|(r, _)| r).collect();
        let v = run(rows.clone(), head);
        assert_eq!(kinds(&v), [(ProblemKind::Inserted, 4)]);
        assert!(v.problems[0].detail.contains("event 3"), "{v:?}");
        let v = run(rows, None);
        assert_eq!(
            v.problems.len(),
            4,
            "no head: nothing was written by dbswatch"
        );
    }

    #[test]
    fn a_rehashed_newest_row_differs_from_the_head() {
        let c = chain(3);
        let head = head_of(&c);
        let mut rows: Vec<ChainRow> = c.into_iter().map(|(r, _)| r).collect();
        rows[2].hash = Some("rehashed".into());
        rows[2].computed = Some("rehashed".into());
        let v = run(rows, head);
        assert_eq!(kinds(&v), [(ProblemKind::Changed, 3)]);
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let c = chain(8);
        let head = head_of(&c);
        let mut rows: Vec<ChainRow> = c.into_iter().map(|(r, _)| r).collect();
        rows[1].computed = Some("x".into()); // 2 changed
        rows.remove(4); // 5 deleted
        let v = run(rows, head);
        assert_eq!(
            kinds(&v),
            [(ProblemKind::Changed, 2), (ProblemKind::Deleted, 6)]
        );
    }
}
