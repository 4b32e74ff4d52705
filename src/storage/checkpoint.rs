//! Small text checkpoint files of a partition directory, written durably.
//!
//! Every file starts with a version line. Writes go to `<name>.tmp`, are fsynced, renamed over the
//! old file and the directory is fsynced, so a crash leaves either the old or the new content.
//! Formats (version 0):
//! - `leader-epoch-checkpoint` (Kafka's): `0\n<count>\n<epoch> <start_offset>\n...`
//! - `log-start-offset`, `recovery-point`: `0\n<offset>\n` (per partition directory: the
//!   broker's internal logs, and partitions of data directories written before the log-dir
//!   files below existed)
//! - `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint` (Kafka's, one per log
//!   dir): `0\n<count>\n<topic> <partition> <offset>\n...`

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::storage::error::{Result, StorageError};

/// The only checkpoint format version written and accepted.
pub(crate) const CHECKPOINT_VERSION: u32 = 0;
/// Name of the leader epoch checkpoint in a partition directory.
pub(crate) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// Name of the log start offset checkpoint.
pub(crate) const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset";
/// Name of the recovery point checkpoint.
pub(crate) const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point";

/// Name of the log dir's recovery point checkpoint (Kafka's).
pub const RECOVERY_POINT_OFFSET_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
/// Name of the log dir's log start offset checkpoint (Kafka's).
pub const LOG_START_OFFSET_DIR_CHECKPOINT: &str = "log-start-offset-checkpoint";

/// fsyncs a directory so a create, rename or unlink inside it is durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `contents` atomically and durably (tmp + fsync + rename + fsync dir).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp); // a partial file would hold space a full disk lacks
        return Err(e);
    }
    fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fsync_dir(dir),
        _ => Ok(()),
    }
}

/// Replaces `path` with `contents` atomically but without waiting for the disk (tmp + rename):
/// after a crash the file may be missing or unreadable, never a mix. The caller fsyncs it (and
/// its directory) later, off its hot path.
pub(crate) fn write_replaced(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    if let Err(e) = fs::write(&tmp, contents) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path)
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            Err(StorageError::Corruption(format!("{} is not text", path.display())))
        }
        Err(e) => Err(e.into()),
    }
}

fn corrupt(path: &Path, why: &str) -> StorageError {
    StorageError::Corruption(format!("{}: {why}", path.display()))
}

fn check_version(path: &Path, line: Option<&str>) -> Result<()> {
    match line.map(str::trim).map(str::parse::<u32>) {
        Some(Ok(CHECKPOINT_VERSION)) => Ok(()),
        Some(Ok(v)) => Err(corrupt(path, &format!("unsupported version {v}"))),
        _ => Err(corrupt(path, "missing or malformed version line")),
    }
}

/// Text of a single-offset checkpoint.
pub(crate) fn encode_offset(offset: i64) -> String {
    format!("{CHECKPOINT_VERSION}\n{offset}\n")
}

/// Parses a single-offset checkpoint.
pub(crate) fn decode_offset(path: &Path, text: &str) -> Result<i64> {
    let mut lines = text.lines();
    check_version(path, lines.next())?;
    let offset = lines
        .next()
        .and_then(|l| l.trim().parse::<i64>().ok())
        .ok_or_else(|| corrupt(path, "malformed offset line"))?;
    if offset < 0 {
        return Err(corrupt(path, "negative offset"));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(corrupt(path, "trailing data"));
    }
    Ok(offset)
}

/// Writes a single-offset checkpoint durably.
pub(crate) fn write_offset(path: &Path, offset: i64) -> Result<()> {
    Ok(write_atomic(path, encode_offset(offset).as_bytes())?)
}

/// Reads a single-offset checkpoint; `None` if the file does not exist.
pub(crate) fn read_offset(path: &Path) -> Result<Option<i64>> {
    read_optional(path)?.map(|text| decode_offset(path, &text)).transpose()
}

/// Text of a leader epoch checkpoint.
pub(crate) fn encode_epochs(entries: &[(i32, i64)]) -> String {
    let mut out = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for (epoch, start) in entries {
        out.push_str(&format!("{epoch} {start}\n"));
    }
    out
}

/// Parses a leader epoch checkpoint: epochs strictly increasing, start offsets non-decreasing.
pub(crate) fn decode_epochs(path: &Path, text: &str) -> Result<Vec<(i32, i64)>> {
    let mut lines = text.lines();
    check_version(path, lines.next())?;
    let count = lines
        .next()
        .and_then(|l| l.trim().parse::<usize>().ok())
        .ok_or_else(|| corrupt(path, "malformed count line"))?;
    let mut entries: Vec<(i32, i64)> = Vec::new();
    for line in lines.by_ref().take(count) {
        let mut parts = line.split_whitespace();
        let epoch = parts.next().and_then(|p| p.parse::<i32>().ok());
        let start = parts.next().and_then(|p| p.parse::<i64>().ok());
        let (Some(epoch), Some(start), None) = (epoch, start, parts.next()) else {
            return Err(corrupt(path, &format!("malformed entry {line:?}")));
        };
        if epoch < 0 || start < 0 {
            return Err(corrupt(path, "negative epoch or offset"));
        }
        if let Some(&(prev_epoch, prev_start)) = entries.last() {
            if epoch <= prev_epoch || start < prev_start {
                return Err(corrupt(path, "entries out of order"));
            }
        }
        entries.push((epoch, start));
    }
    if entries.len() != count {
        return Err(corrupt(path, "fewer entries than the count"));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(corrupt(path, "trailing data"));
    }
    Ok(entries)
}

/// Writes a leader epoch checkpoint durably.
pub(crate) fn write_epochs(path: &Path, entries: &[(i32, i64)]) -> Result<()> {
    Ok(write_atomic(path, encode_epochs(entries).as_bytes())?)
}

/// Reads a leader epoch checkpoint; empty if the file does not exist.
pub(crate) fn read_epochs(path: &Path) -> Result<Vec<(i32, i64)>> {
    Ok(read_optional(path)?
        .map(|text| decode_epochs(path, &text))
        .transpose()?
        .unwrap_or_default())
}

/// Writes a log dir checkpoint (Kafka's format) of `(topic, partition, offset)` durably.
pub fn write_partition_offsets(path: &Path, entries: &[(&str, i32, i64)]) -> Result<()> {
    let mut out = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for (topic, partition, offset) in entries {
        out.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    Ok(write_atomic(path, out.as_bytes())?)
}

/// Reads a log dir checkpoint; empty if the file does not exist.
pub fn read_partition_offsets(path: &Path) -> Result<std::collections::HashMap<(String, i32), i64>> {
    let mut out = std::collections::HashMap::new();
    let Some(text) = read_optional(path)? else {
        return Ok(out);
    };
    let mut lines = text.lines();
    check_version(path, lines.next())?;
    let count = lines
        .next()
        .and_then(|l| l.trim().parse::<usize>().ok())
        .ok_or_else(|| corrupt(path, "malformed count line"))?;
    for line in lines.by_ref().take(count) {
        let mut parts = line.split_whitespace();
        let topic = parts.next();
        let partition = parts.next().and_then(|p| p.parse::<i32>().ok());
        let offset = parts.next().and_then(|p| p.parse::<i64>().ok());
        let (Some(topic), Some(partition), Some(offset), None) = (topic, partition, offset, parts.next()) else {
            return Err(corrupt(path, &format!("malformed entry {line:?}")));
        };
        if partition < 0 || offset < 0 {
            return Err(corrupt(path, "negative partition or offset"));
        }
        out.insert((topic.to_string(), partition), offset);
    }
    if out.len() != count {
        return Err(corrupt(path, "entry count does not match"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_checkpoint_round_trip_on_disk() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(RECOVERY_POINT_CHECKPOINT);
        assert_eq!(read_offset(&path)?, None);
        write_offset(&path, 42)?;
        assert_eq!(read_offset(&path)?, Some(42));
        assert_eq!(fs::read_to_string(&path)?, "0\n42\n");
        assert!(!tmp_path(&path).exists());
        Ok(())
    }

    #[test]
    fn log_dir_checkpoints_are_kafkas_format() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(RECOVERY_POINT_OFFSET_CHECKPOINT);
        assert!(read_partition_offsets(&path)?.is_empty());
        write_partition_offsets(&path, &[("a.b", 0, 7), ("c", 3, 0)])?;
        assert_eq!(fs::read_to_string(&path)?, "0\n2\na.b 0 7\nc 3 0\n");
        let read = read_partition_offsets(&path)?;
        assert_eq!(read.get(&("a.b".to_string(), 0)), Some(&7));
        assert_eq!(read.len(), 2);
        for bad in ["0\n2\na 0 1\n", "0\n1\na x 1\n", "0\n1\na 0 -1\n", "1\n0\n"] {
            fs::write(&path, bad)?;
            assert!(
                matches!(read_partition_offsets(&path), Err(StorageError::Corruption(_))),
                "{bad:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn epoch_checkpoint_is_kafkas_format() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        write_epochs(&path, &[(0, 0), (3, 17)])?;
        assert_eq!(fs::read_to_string(&path)?, "0\n2\n0 0\n3 17\n");
        assert_eq!(read_epochs(&path)?, vec![(0, 0), (3, 17)]);
        Ok(())
    }

    #[test]
    fn malformed_checkpoints_are_corruption() {
        let p = Path::new("x");
        for text in ["", "1\n5\n", "0\n", "0\nabc\n", "0\n-3\n", "0\n5\n6\n"] {
            assert!(
                matches!(decode_offset(p, text), Err(StorageError::Corruption(_))),
                "{text:?}"
            );
        }
        for text in [
            "0\n2\n1 5\n",
            "0\n2\n2 5\n1 6\n",
            "0\n1\n1 5 7\n",
            "0\nx\n",
            "0\n1\n1 5\n2 7\n",
        ] {
            assert!(
                matches!(decode_epochs(p, text), Err(StorageError::Corruption(_))),
                "{text:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn offset_text_round_trip(offset in 0i64..i64::MAX) {
            let text = encode_offset(offset);
            prop_assert_eq!(decode_offset(Path::new("p"), &text).ok(), Some(offset));
        }

        #[test]
        fn epoch_text_round_trip(raw in proptest::collection::btree_map(0i32..i32::MAX, 0i64..1_000_000, 0..20)) {
            // Make start offsets non-decreasing in epoch order.
            let mut starts: Vec<i64> = raw.values().copied().collect();
            starts.sort_unstable();
            let entries: Vec<(i32, i64)> = raw.keys().copied().zip(starts).collect();
            let text = encode_epochs(&entries);
            prop_assert_eq!(decode_epochs(Path::new("p"), &text).ok(), Some(entries));
        }
    }
}
