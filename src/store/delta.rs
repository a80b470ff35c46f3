//! Snapshots stored as differences.
//!
//! A watch's answers differ from one change to the next by a few fields (a progress figure, one
//! item's state), so storing every distinct answer whole grows the database by the full response
//! at each change. Instead, a watch's current answer is stored whole once (`watch_state`,
//! `current_bodies`) and each older one as a *reverse delta*: the bytes needed to rebuild it
//! from the snapshot that replaced it. Reverse, not forward, because reads go newest first
//! (`snapshots`, the API) and retention deletes oldest first: no row is ever needed to rebuild
//! a newer one, so pruning can never strand one.
//!
//! The delta is an LZ4 block of the older text compressed with the newer text as its external
//! dictionary: unchanged runs become back-references into the newer text, so the delta weighs
//! about what changed plus a few bytes per run. Stored as: the first 4 bytes of the older
//! text's SHA-256, then the block with its size prepended. LZ4 has no checksum of its own, and
//! a raw body has no stored hash: without these 4 bytes a flipped byte would come back as a
//! plausible "exact" answer. Pure functions over bytes; the store decides when to use them.

use std::collections::HashMap;

use lz4_flex::block::{compress_prepend_size_with_dict, decompress_with_dict};
use sha2::{Digest, Sha256};

/// The reverse delta that rebuilds `older` from `newer`, or `None` when it would not be smaller
/// than `older` itself (unrelated texts) or does not rebuild `older` exactly. The check decodes
/// what it encoded: a stored delta that could not give back the answer would lose it.
pub fn encode(older: &str, newer: &str) -> Option<Vec<u8>> {
    let mut delta = Vec::with_capacity(CHECK + older.len() / 4);
    delta.extend_from_slice(&check_of(older));
    delta.extend(compress_prepend_size_with_dict(
        older.as_bytes(),
        newer.as_bytes(),
    ));
    if delta.len() >= older.len() {
        return None;
    }
    match decode(&delta, newer) {
        Ok(back) if back == older => Some(delta),
        _ => None,
    }
}

/// Rebuild the older text from its delta and the newer text it was taken against.
pub fn decode(delta: &[u8], newer: &str) -> Result<String, DeltaError> {
    let Some((check, block)) = delta.split_first_chunk::<CHECK>() else {
        return Err(DeltaError::Corrupt("too short".into()));
    };
    let Some((size, block)) = block.split_first_chunk::<4>() else {
        return Err(DeltaError::Corrupt("too short".into()));
    };
    // The size is read before anything is allocated for it: a damaged prefix must not ask
    // for gigabytes.
    let size = u32::from_le_bytes(*size) as usize;
    if size > MAX_TEXT {
        return Err(DeltaError::Corrupt(format!(
            "it claims {size} bytes, more than any answer"
        )));
    }
    let bytes = decompress_with_dict(block, size, newer.as_bytes())
        .map_err(|e| DeltaError::Corrupt(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| DeltaError::NotText)?;
    if check_of(&text) != *check {
        return Err(DeltaError::ChecksumMismatch);
    }
    Ok(text)
}

/// No stored text is larger: DBS answers are kilobytes (64 MiB is far beyond any of them).
const MAX_TEXT: usize = 64 << 20;

/// Bytes of the older text's SHA-256 kept in front of each delta.
const CHECK: usize = 4;

fn check_of(text: &str) -> [u8; CHECK] {
    let digest = Sha256::digest(text.as_bytes());
    let mut check = [0; CHECK];
    check.copy_from_slice(&digest[..CHECK]);
    check
}

/// One stored text of a snapshot row, as it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The text itself.
    Whole(String),
    /// A reverse delta against the same column of the row's `delta_base`.
    Delta(Vec<u8>),
    /// Nothing where the text should be (a current answer whose body row is gone).
    Missing,
}

/// A snapshot row's stored texts, as read.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// Row id.
    pub id: i64,
    /// The row the deltas were taken against (a newer snapshot of the same watch).
    pub delta_base: Option<i64>,
    /// The content hash recorded with the row: a rebuilt content must hash to it.
    pub content_hash: String,
    /// Canonical JSON of the normalised snapshot.
    pub content: Stored,
    /// The exact DBS response body.
    pub raw_body: Stored,
}

/// A snapshot row's texts, rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    /// Canonical JSON of the normalised snapshot.
    pub content: String,
    /// The exact DBS response body.
    pub raw_body: String,
}

/// Rebuild the texts of `rows`. A delta row needs its base among `rows` (bases are newer, so
/// a newest-first listing or a chain read towards the newest holds them). Each row gets its own
/// result: one unreadable row does not hide the others.
pub fn rebuild(rows: Vec<StoredRow>) -> HashMap<i64, Result<Texts, DeltaError>> {
    let mut rows = rows;
    // Bases before the rows that need them: a base is always newer, and ids only grow.
    rows.sort_by_key(|r| std::cmp::Reverse(r.id));
    let mut out: HashMap<i64, Result<Texts, DeltaError>> = HashMap::with_capacity(rows.len());
    for row in rows {
        let result = rebuild_one(&row, &out);
        out.insert(row.id, result);
    }
    out
}

fn rebuild_one(
    row: &StoredRow,
    done: &HashMap<i64, Result<Texts, DeltaError>>,
) -> Result<Texts, DeltaError> {
    let base = match row.delta_base {
        None => None,
        // Deltas are only ever taken against a newer row: anything else was not written here.
        Some(b) if b <= row.id => return Err(DeltaError::BaseNotNewer(b)),
        Some(b) => match done.get(&b) {
            Some(Ok(texts)) => Some(texts),
            Some(Err(_)) => return Err(DeltaError::BaseUnreadable(b)),
            None => return Err(DeltaError::BaseMissing(b)),
        },
    };
    let text = |stored: &Stored, base_text: Option<&str>| match (stored, base_text) {
        (Stored::Whole(t), _) => Ok(t.clone()),
        (Stored::Delta(d), Some(b)) => decode(d, b),
        (Stored::Delta(_), None) => Err(DeltaError::Corrupt("a difference with no base".into())),
        (Stored::Missing, _) => Err(DeltaError::Missing),
    };
    let content = text(&row.content, base.map(|b| b.content.as_str()))?;
    if matches!(row.content, Stored::Delta(_)) && hex_sha256(&content) != row.content_hash {
        return Err(DeltaError::HashMismatch);
    }
    let raw_body = text(&row.raw_body, base.map(|b| b.raw_body.as_str()))?;
    Ok(Texts { content, raw_body })
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A stored delta that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeltaError {
    /// The bytes are not a valid delta against the given text.
    #[error("the stored difference does not decode: {0}")]
    Corrupt(String),
    /// It decoded, but not to UTF-8 text.
    #[error("the stored difference decodes to bytes that are not text")]
    NotText,
    /// The rebuilt text is not the one the delta was taken from.
    #[error("the stored difference rebuilds a different text than was stored (damaged bytes)")]
    ChecksumMismatch,
    /// No text at all where one should be.
    #[error("its text is missing (the current answer's body row is gone)")]
    Missing,
    /// The row says it is stored against a row that is not newer than itself.
    #[error("it is stored as a difference from snapshot {0}, which is not a newer snapshot")]
    BaseNotNewer(i64),
    /// The rebuilt content does not hash to the hash stored with it.
    #[error("the rebuilt content does not match its stored hash")]
    HashMismatch,
    /// The newer snapshot this one is stored against is gone.
    #[error("it is stored as a difference from snapshot {0}, which is no longer stored")]
    BaseMissing(i64),
    /// The newer snapshot this one is stored against cannot be rebuilt itself.
    #[error("it is stored as a difference from snapshot {0}, which cannot be read")]
    BaseUnreadable(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: &str = include_str!("../../tests/fixtures/restore-completes/01.json");
    const LATER: &str = include_str!("../../tests/fixtures/restore-completes/02.json");
    const DONE: &str = include_str!("../../tests/fixtures/restore-completes/03.json");

    #[test]
    fn a_small_change_costs_a_small_delta() {
        let delta = encode(RUNNING, LATER).expect("similar answers give a delta");
        // Two fields differ (RequestId's last digit, Progress 20 -> 80) in 671 bytes.
        assert!(delta.len() < 64, "delta of {} bytes", delta.len());
        assert_eq!(decode(&delta, LATER).unwrap(), RUNNING);
    }

    #[test]
    fn every_fixture_pair_round_trips() {
        let texts = [RUNNING, LATER, DONE, "", "{}", "x"];
        for older in texts {
            for newer in texts {
                if let Some(delta) = encode(older, newer) {
                    assert_eq!(decode(&delta, newer).unwrap(), older);
                    assert!(delta.len() < older.len());
                }
            }
        }
    }

    #[test]
    fn an_unrelated_text_is_kept_whole() {
        assert_eq!(encode("abc", RUNNING), None, "a delta would not be smaller");
        assert_eq!(encode("", RUNNING), None);
    }

    #[test]
    fn a_delta_against_the_wrong_text_is_an_error_or_a_different_text_never_a_panic() {
        let delta = encode(RUNNING, LATER).unwrap();
        // Against the wrong dictionary LZ4 cannot know; the checksum does.
        assert!(decode(&delta, DONE).is_err());
        assert!(matches!(
            decode(&delta[..delta.len() / 2], LATER),
            Err(DeltaError::Corrupt(_))
        ));
        assert!(decode(b"", LATER).is_err());
        assert!(decode(&[0xff, 0xff, 0xff, 0x7f, 1, 2], LATER).is_err());
    }

    #[test]
    fn a_flipped_byte_or_an_absurd_size_is_caught() {
        let delta = encode(RUNNING, LATER).unwrap();
        // Every single-byte change anywhere in the delta: an error, never a different text.
        for i in 0..delta.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = delta.clone();
                bad[i] ^= flip;
                if let Ok(text) = decode(&bad, LATER) {
                    assert_eq!(text, RUNNING, "byte {i} ^ {flip:#x}");
                }
            }
        }
        let mut huge = delta.clone();
        huge[CHECK..CHECK + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            matches!(decode(&huge, LATER), Err(DeltaError::Corrupt(m)) if m.contains("claims"))
        );
    }

    #[test]
    fn a_base_that_is_not_newer_or_a_missing_text_is_named() {
        let t = Texts {
            content: LATER.into(),
            raw_body: LATER.into(),
        };
        let mut looped = against(20, 20, RUNNING, RUNNING, &t);
        looped.delta_base = Some(20);
        assert_eq!(
            rebuild(vec![looped])[&20],
            Err(DeltaError::BaseNotNewer(20))
        );
        let mut missing = whole(30, DONE, DONE);
        missing.raw_body = Stored::Missing;
        assert_eq!(rebuild(vec![missing])[&30], Err(DeltaError::Missing));
    }

    fn whole(id: i64, content: &str, raw: &str) -> StoredRow {
        StoredRow {
            id,
            delta_base: None,
            content_hash: hex_sha256(content),
            content: Stored::Whole(content.into()),
            raw_body: Stored::Whole(raw.into()),
        }
    }

    fn against(id: i64, base: i64, content: &str, raw: &str, newer: &Texts) -> StoredRow {
        let enc = |old: &str, new: &str| match encode(old, new) {
            Some(d) => Stored::Delta(d),
            None => Stored::Whole(old.into()),
        };
        StoredRow {
            id,
            delta_base: Some(base),
            content_hash: hex_sha256(content),
            content: enc(content, &newer.content),
            raw_body: enc(raw, &newer.raw_body),
        }
    }

    #[test]
    fn a_chain_of_reverse_deltas_rebuilds_in_any_order() {
        let t3 = Texts {
            content: DONE.into(),
            raw_body: DONE.into(),
        };
        let t2 = Texts {
            content: LATER.into(),
            raw_body: LATER.into(),
        };
        let r3 = whole(30, DONE, DONE);
        let r2 = against(20, 30, LATER, LATER, &t3);
        let r1 = against(10, 20, RUNNING, RUNNING, &t2);
        assert!(matches!(r1.content, Stored::Delta(_)));
        let out = rebuild(vec![r1, r3, r2]);
        assert_eq!(out[&30].as_ref().unwrap().content, DONE);
        assert_eq!(out[&20].as_ref().unwrap().raw_body, LATER);
        assert_eq!(out[&10].as_ref().unwrap().content, RUNNING);
    }

    #[test]
    fn a_missing_or_broken_base_is_reported_for_its_dependants_only() {
        let t2 = Texts {
            content: LATER.into(),
            raw_body: LATER.into(),
        };
        let r1 = against(10, 20, RUNNING, RUNNING, &t2);
        let out = rebuild(vec![r1.clone()]);
        assert_eq!(out[&10], Err(DeltaError::BaseMissing(20)));

        // A base whose own delta is broken: its dependant says so, the whole row still reads.
        let mut r2 = against(20, 30, LATER, LATER, &t2);
        r2.content = Stored::Delta(vec![1, 2, 3]);
        let out = rebuild(vec![r1.clone(), r2, whole(30, DONE, DONE)]);
        assert!(matches!(out[&20], Err(DeltaError::Corrupt(_))));
        assert_eq!(out[&10], Err(DeltaError::BaseUnreadable(20)));
        assert!(out[&30].is_ok());

        // A delta that decodes to the wrong text is caught by the content hash.
        let mut wrong = r1;
        wrong.content_hash = hex_sha256("something else");
        let out = rebuild(vec![wrong, whole(20, LATER, LATER)]);
        assert_eq!(out[&10], Err(DeltaError::HashMismatch));
    }

    #[test]
    fn the_hash_check_matches_the_snapshot_hash() {
        let snapshot =
            crate::dbs::response::interpret(crate::dbs::response::Reply::new(200, RUNNING))
                .expect("fixture parses")
                .snapshot;
        assert_eq!(
            hex_sha256(&snapshot.canonical_json()),
            snapshot.content_hash()
        );
    }

    #[test]
    fn a_text_larger_than_the_lz4_window_still_round_trips() {
        let newer: String = (0..20_000).map(|i| format!("{i},")).collect();
        let mut older = newer.clone();
        older.replace_range(70_000..70_010, "CHANGED!!!");
        // LZ4 reaches back 64 KiB at most: the delta may be whole-sized (kept whole then), but
        // what is encoded always decodes to the same text.
        if let Some(delta) = encode(&older, &newer) {
            assert_eq!(decode(&delta, &newer).unwrap(), older);
        }
    }
}
