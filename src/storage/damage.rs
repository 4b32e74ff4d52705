//! Damaged byte ranges inside a segment, found by recovery between valid batches.
//!
//! Kafka truncates a log at the first invalid batch it recovers and deletes every later
//! segment. That is right for a torn tail (bytes a crash left half-written at the end of the
//! active segment) and wrong anywhere else: a few flipped bytes in the middle of an old segment
//! would take every later acknowledged record with them. So recovery truncates only a torn tail
//! of the last segment; any other invalid bytes are skipped to the next valid batch (same
//! offsets continuing, CRC good) and recorded here, the segment and everything after it stay
//! readable, and a read of the offsets the damage held gets `CorruptRecord` (CORRUPT_MESSAGE
//! on the wire), as a Kafka consumer expects of a corrupt batch.
//!
//! The ranges are kept beside the segment in `<base>.damaged` so that they survive restarts in
//! which the segment is trusted (below the recovery point, or after a clean shutdown) and not
//! scanned again. Format: a version line `0`, then one line per range:
//! `<start position> <end position> <first offset> <resume offset>`.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::storage::checkpoint::write_atomic;
use crate::storage::error::{Result, StorageError};

pub(crate) const DAMAGE_SUFFIX: &str = ".damaged";

/// Damaged ranges found by recovery since the process started (exported as a metric).
static FOUND: AtomicU64 = AtomicU64::new(0);

pub(crate) fn count_found() {
    FOUND.fetch_add(1, Ordering::Relaxed);
}

/// Damaged ranges found by recovery in this process so far.
pub fn corruptions_found() -> u64 {
    FOUND.load(Ordering::Relaxed)
}

/// Invalid bytes `[start, end)` of a segment's file. They held (at most) the offsets
/// `[first_offset, resume_offset)`: from the one after the last valid batch before them up to
/// the first valid batch after them (`i64::MAX` when none follows in the segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Damage {
    pub start: u64,
    pub end: u64,
    pub first_offset: i64,
    pub resume_offset: i64,
}

impl Damage {
    pub(crate) fn holds(&self, offset: i64) -> bool {
        offset >= self.first_offset && offset < self.resume_offset
    }
}

/// Reads `path`; no file means no damage.
pub(crate) fn load(path: &Path) -> Result<Vec<Damage>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let corrupt = |why: &str| StorageError::Corruption(format!("{}: {why}", path.display()));
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("0") {
        return Err(corrupt("missing or unsupported version line"));
    }
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<i64> = line
            .split_whitespace()
            .map(str::parse::<i64>)
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| corrupt("malformed line"))?;
        let [start, end, first_offset, resume_offset] = fields[..] else {
            return Err(corrupt("a line needs four numbers"));
        };
        let (Ok(start), Ok(end)) = (u64::try_from(start), u64::try_from(end)) else {
            return Err(corrupt("negative position"));
        };
        if end <= start || resume_offset < first_offset {
            return Err(corrupt("empty or inverted range"));
        }
        out.push(Damage {
            start,
            end,
            first_offset,
            resume_offset,
        });
    }
    Ok(out)
}

/// Writes `ranges` to `path` durably, or removes the file when there are none.
pub(crate) fn store(path: &Path, ranges: &[Damage]) -> Result<()> {
    if ranges.is_empty() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        };
    }
    let mut text = String::from("0\n");
    for d in ranges {
        text.push_str(&format!(
            "{} {} {} {}\n",
            d.start, d.end, d.first_offset, d.resume_offset
        ));
    }
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_and_bad_files_are_refused() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("00000000000000000000.damaged");
        assert!(load(&path)?.is_empty());
        let ranges = [
            Damage {
                start: 10,
                end: 20,
                first_offset: 3,
                resume_offset: 5,
            },
            Damage {
                start: 40,
                end: 90,
                first_offset: 9,
                resume_offset: i64::MAX,
            },
        ];
        store(&path, &ranges)?;
        assert_eq!(load(&path)?, ranges);
        assert!(ranges[0].holds(4) && !ranges[0].holds(5) && ranges[1].holds(1 << 40));
        store(&path, &[])?;
        assert!(!path.exists());
        for bad in ["", "1\n", "0\n1 2 3\n", "0\n5 5 1 2\n", "0\n-1 5 1 2\n", "0\na b c d\n"] {
            fs::write(&path, bad)?;
            assert!(matches!(load(&path), Err(StorageError::Corruption(_))), "{bad:?}");
        }
        Ok(())
    }
}
