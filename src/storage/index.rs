//! Sparse offset and time indexes of one log segment (`.index`, `.timeindex`).
//!
//! Kafka's formats: the offset index holds 8-byte entries (offset relative to the segment's base
//! offset as i32, byte position in the `.log` as i32), the time index 12-byte entries (timestamp
//! i64, relative offset i32), both big endian, both strictly increasing in their key. One entry is
//! added per `index.interval.bytes` of log. The entries live in a `Vec` (lookups are a binary
//! search, no mmap); new entries are appended to the file lazily (`write_pending`, on flush, roll
//! and close). A missing or inconsistent index file is not an error: the segment rebuilds it from
//! the log, so the file only needs to be a valid prefix of the truth.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// One fixed-size index entry.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug + PartialEq {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Big-endian encoding.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes `SIZE` bytes (`None` if `bytes` is too short).
    fn decode(bytes: &[u8]) -> Option<Self>;
    /// The relative offset the entry points at.
    fn relative_offset(&self) -> i32;
}

/// Offset index entry: (relative offset, position in the log file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: i32,
    pub position: i32,
}

/// Time index entry: (largest timestamp so far, relative offset of the batch holding it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: i32,
}

fn be<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N).and_then(|s| s.try_into().ok())
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            relative_offset: i32::from_be_bytes(be(bytes, 0)?),
            position: i32::from_be_bytes(be(bytes, 4)?),
        })
    }
    fn relative_offset(&self) -> i32 {
        self.relative_offset
    }
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            timestamp: i64::from_be_bytes(be(bytes, 0)?),
            relative_offset: i32::from_be_bytes(be(bytes, 8)?),
        })
    }
    fn relative_offset(&self) -> i32 {
        self.relative_offset
    }
}

/// Encodes entries back to back (the whole file).
pub(crate) fn encode_entries<E: IndexEntry>(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * E::SIZE);
    for e in entries {
        e.encode(&mut out);
    }
    out
}

/// Decodes a whole index file; `None` if its size is not a multiple of the entry size.
pub(crate) fn decode_entries<E: IndexEntry>(bytes: &[u8]) -> Option<Vec<E>> {
    if !bytes.len().is_multiple_of(E::SIZE) {
        return None;
    }
    bytes.chunks_exact(E::SIZE).map(E::decode).collect()
}

/// A sparse index held in memory and mirrored to a file.
#[derive(Debug)]
pub(crate) struct Index<E: IndexEntry> {
    path: PathBuf,
    base_offset: i64,
    entries: Vec<E>,
    persisted: usize,
    max_entries: usize,
    file: Option<File>,
    _entry: PhantomData<E>,
}

/// The `.index` of a segment.
pub(crate) type OffsetIndex = Index<OffsetEntry>;
/// The `.timeindex` of a segment.
pub(crate) type TimeIndex = Index<TimeEntry>;

impl<E: IndexEntry> Index<E> {
    /// A new index with no entries (nothing is written until `write_pending`/`rewrite`).
    pub(crate) fn empty(path: PathBuf, base_offset: i64, max_index_bytes: u32) -> Self {
        let max_entries = (usize::try_from(max_index_bytes).unwrap_or(usize::MAX) / E::SIZE).max(1);
        Self {
            path,
            base_offset,
            entries: Vec::new(),
            persisted: 0,
            max_entries,
            file: None,
            _entry: PhantomData,
        }
    }

    /// Reads the index file; `Ok(None)` when it is missing or fails `valid` (or is not a whole
    /// number of entries), in which case the caller rebuilds it.
    pub(crate) fn load(
        path: PathBuf,
        base_offset: i64,
        max_index_bytes: u32,
        valid: impl Fn(&[E]) -> bool,
    ) -> io::Result<Option<Self>> {
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => f.read_to_end(&mut bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(entries) = decode_entries::<E>(&bytes) else {
            return Ok(None);
        };
        if !valid(&entries) {
            return Ok(None);
        }
        let mut index = Self::empty(path, base_offset, max_index_bytes);
        index.persisted = entries.len();
        index.entries = entries;
        Ok(Some(index))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed (a cleaned segment installed); the open handle stays valid.
    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<E> {
        self.entries.last().copied()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    pub(crate) fn set_max_index_bytes(&mut self, max_index_bytes: u32) {
        self.max_entries = (usize::try_from(max_index_bytes).unwrap_or(usize::MAX) / E::SIZE).max(1);
    }

    /// Absolute offset of an entry.
    pub(crate) fn absolute(&self, entry: &E) -> i64 {
        self.base_offset + i64::from(entry.relative_offset())
    }

    /// Offset relative to the base, clamped into i32 (callers roll before a delta overflows).
    pub(crate) fn relative(&self, offset: i64) -> i32 {
        let delta = offset.saturating_sub(self.base_offset);
        i32::try_from(delta.max(0)).unwrap_or(i32::MAX)
    }

    /// The last entry for which `before(entry)` holds, for a predicate that is true on a prefix.
    pub(crate) fn floor_by(&self, before: impl Fn(&E) -> bool) -> Option<E> {
        let idx = self.entries.partition_point(before);
        idx.checked_sub(1).and_then(|i| self.entries.get(i)).copied()
    }

    /// Adds an entry if it keeps the index strictly increasing and there is room.
    pub(crate) fn push(&mut self, entry: E, increasing: impl Fn(&E, &E) -> bool) -> bool {
        self.push_inner(entry, increasing, false)
    }

    fn push_inner(&mut self, entry: E, increasing: impl Fn(&E, &E) -> bool, ignore_full: bool) -> bool {
        if self.is_full() && !ignore_full {
            return false;
        }
        if let Some(last) = self.entries.last() {
            if !increasing(last, &entry) {
                return false;
            }
        }
        self.entries.push(entry);
        true
    }

    /// Drops every entry (before a rebuild).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.persisted = 0;
    }

    fn open_file(&mut self, truncate: bool) -> io::Result<&mut File> {
        if truncate || self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(!truncate)
                .write(true)
                .truncate(truncate)
                .open(&self.path)?;
            self.file = Some(f);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("index file handle missing"))
    }

    /// Appends the entries not yet in the file (no fsync).
    pub(crate) fn write_pending(&mut self) -> io::Result<()> {
        if self.persisted == self.entries.len() && self.file.is_some() {
            return Ok(());
        }
        if self.persisted == 0 && !self.entries.is_empty() {
            return self.rewrite(); // the file's contents are not known to be a prefix
        }
        let pending = encode_entries(self.entries.get(self.persisted..).unwrap_or(&[]));
        let persisted_bytes = (self.persisted * E::SIZE) as u64;
        let file = self.open_file(false)?;
        if let Err(e) = file.write_all(&pending) {
            // A part written (a full disk) is cut off again, so the next try appends whole
            // entries right after the last complete one.
            if file.set_len(persisted_bytes).is_err() {
                self.file = None;
                self.persisted = 0; // unknown contents: the next write rewrites the file
            }
            return Err(e);
        }
        self.persisted = self.entries.len();
        Ok(())
    }

    /// Rewrites the whole file from memory (after a rebuild or a truncation).
    pub(crate) fn rewrite(&mut self) -> io::Result<()> {
        let bytes = encode_entries(&self.entries);
        self.file = None;
        // Until the file holds them all, none count as written.
        self.persisted = 0;
        let file = self.open_file(true)?;
        if let Err(e) = file.write_all(&bytes) {
            let _ = file.set_len(0);
            self.file = None;
            return Err(e);
        }
        // Later appends must go to the end: reopen in append mode.
        self.file = None;
        self.open_file(false)?;
        self.persisted = self.entries.len();
        Ok(())
    }

    /// A handle for fsync outside the log's lock, with the pending entries written if the disk
    /// takes them. If not (a full disk) the file still holds a valid prefix of the entries, which
    /// loading completes from the log (`load_trusted` scans past the last entry), so the flush
    /// goes on: the log data is what must become durable.
    pub(crate) fn flush_handle(&mut self) -> io::Result<File> {
        let _ = self.write_pending();
        self.open_file(false)?.try_clone()
    }

    /// Closes the file handle (entries already written; it reopens on demand).
    pub(crate) fn release_handle(&mut self) {
        if self.persisted == self.entries.len() {
            self.file = None;
        }
    }

    /// Writes pending entries, fsyncs and closes the file handle (inactive segments keep only
    /// their `.log` open; the handle is reopened on demand).
    pub(crate) fn sync_and_close(&mut self) -> io::Result<()> {
        self.sync()?;
        self.file = None;
        Ok(())
    }

    /// Writes pending entries and fsyncs the file.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.open_file(false)?.sync_data()
    }
}

impl OffsetIndex {
    /// Loads a `.index`, rejecting entries that are not strictly increasing or point past the log.
    pub(crate) fn load_offsets(
        path: PathBuf,
        base_offset: i64,
        max_index_bytes: u32,
        log_size: u64,
    ) -> io::Result<Option<Self>> {
        Self::load(path, base_offset, max_index_bytes, |entries: &[OffsetEntry]| {
            let in_file = entries
                .iter()
                .all(|e| e.relative_offset >= 0 && e.position >= 0 && (e.position as u64) < log_size);
            in_file
                && entries.windows(2).all(|w| match w {
                    [a, b] => a.relative_offset < b.relative_offset && a.position < b.position,
                    _ => true,
                })
        })
    }

    /// Adds (offset, position) if both increase.
    pub(crate) fn append(&mut self, offset: i64, position: u32) -> bool {
        let entry = OffsetEntry {
            relative_offset: self.relative(offset),
            position: i32::try_from(position).unwrap_or(i32::MAX),
        };
        self.push(entry, |a, b| {
            b.relative_offset > a.relative_offset && b.position > a.position
        })
    }

    /// The largest entry whose offset is <= `target`, as (absolute offset, position); the start of
    /// the segment if there is none.
    pub(crate) fn lookup(&self, target: i64) -> (i64, u32) {
        if target < self.base_offset {
            return (self.base_offset, 0);
        }
        let rel = self.relative(target);
        match self.floor_by(|e| e.relative_offset <= rel) {
            Some(e) => (self.absolute(&e), u32::try_from(e.position).unwrap_or(0)),
            None => (self.base_offset, 0),
        }
    }
}

impl TimeIndex {
    /// Loads a `.timeindex`, rejecting entries that are not increasing or point past `next_offset`
    /// (not known yet at load time: pass i64::MAX and re-check after the log is scanned).
    pub(crate) fn load_times(path: PathBuf, base_offset: i64, max_index_bytes: u32) -> io::Result<Option<Self>> {
        Self::load(path, base_offset, max_index_bytes, |entries: &[TimeEntry]| {
            entries.iter().all(|e| e.relative_offset >= 0)
                && entries.windows(2).all(|w| match w {
                    [a, b] => a.timestamp < b.timestamp && a.relative_offset <= b.relative_offset,
                    _ => true,
                })
        })
    }

    /// Adds (timestamp, offset) if the timestamp grows (the index is monotonic).
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> bool {
        let entry = TimeEntry {
            timestamp,
            relative_offset: self.relative(offset),
        };
        self.push(entry, |a, b| {
            b.timestamp > a.timestamp && b.relative_offset >= a.relative_offset
        })
    }

    /// Like `maybe_append` even when the index is full (the final entry written when a segment
    /// becomes inactive, as Kafka does).
    pub(crate) fn force_append(&mut self, timestamp: i64, offset: i64) -> bool {
        let entry = TimeEntry {
            timestamp,
            relative_offset: self.relative(offset),
        };
        self.push_inner(
            entry,
            |a, b| b.timestamp > a.timestamp && b.relative_offset >= a.relative_offset,
            true,
        )
    }

    /// The offset to start scanning from for the first record with timestamp >= `target`: the
    /// entry with the largest timestamp strictly below `target` (every record before its offset
    /// is older than `target`), else the segment's base offset.
    pub(crate) fn lookup(&self, target: i64) -> i64 {
        match self.floor_by(|e| e.timestamp < target) {
            Some(e) => self.absolute(&e),
            None => self.base_offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_lookup_finds_largest_entry_at_or_below() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut idx = OffsetIndex::empty(dir.path().join("a.index"), 100, 1024);
        assert_eq!(idx.lookup(150), (100, 0));
        assert!(idx.append(110, 4000));
        assert!(idx.append(120, 8000));
        assert!(!idx.append(120, 9000), "offsets must increase");
        assert!(idx.append(130, 12000));
        assert_eq!(idx.lookup(99), (100, 0));
        assert_eq!(idx.lookup(109), (100, 0));
        assert_eq!(idx.lookup(110), (110, 4000));
        assert_eq!(idx.lookup(125), (120, 8000));
        assert_eq!(idx.lookup(i64::MAX), (130, 12000));
        idx.write_pending()?;
        let loaded = OffsetIndex::load_offsets(dir.path().join("a.index"), 100, 1024, 20000)?;
        assert_eq!(loaded.map(|l| l.entries().to_vec()), Some(idx.entries().to_vec()));
        // An entry pointing past the log makes the file invalid.
        let loaded = OffsetIndex::load_offsets(dir.path().join("a.index"), 100, 1024, 10000)?;
        assert!(loaded.is_none());
        Ok(())
    }

    #[test]
    fn torn_index_file_is_rejected_and_missing_is_none() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("b.index");
        assert!(OffsetIndex::load_offsets(path.clone(), 0, 1024, 100)?.is_none());
        std::fs::write(&path, [0u8; 12])?;
        assert!(OffsetIndex::load_offsets(path, 0, 1024, 100)?.is_none());
        Ok(())
    }

    #[test]
    fn full_index_refuses_entries() {
        let mut idx = OffsetIndex::empty(PathBuf::from("/nonexistent"), 0, 16);
        assert!(idx.append(1, 10));
        assert!(idx.append(2, 20));
        assert!(idx.is_full());
        assert!(!idx.append(3, 30));
    }

    #[test]
    fn time_lookup_is_strictly_below_target() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut idx = TimeIndex::empty(dir.path().join("c.timeindex"), 50, 1200);
        assert!(idx.maybe_append(1000, 60));
        assert!(!idx.maybe_append(1000, 61), "timestamps must grow");
        assert!(idx.maybe_append(2000, 70));
        assert_eq!(idx.lookup(500), 50);
        assert_eq!(idx.lookup(1000), 50);
        assert_eq!(idx.lookup(1001), 60);
        assert_eq!(idx.lookup(5000), 70);
        idx.rewrite()?;
        idx.maybe_append(3000, 80);
        idx.sync()?;
        let loaded = TimeIndex::load_times(dir.path().join("c.timeindex"), 50, 1200)?;
        assert_eq!(loaded.map(|l| l.entries().len()), Some(3));
        Ok(())
    }

    proptest! {
        #[test]
        fn offset_entries_round_trip(raw in proptest::collection::vec((any::<i32>(), any::<i32>()), 0..50)) {
            let entries: Vec<OffsetEntry> = raw.iter()
                .map(|&(relative_offset, position)| OffsetEntry { relative_offset, position })
                .collect();
            let bytes = encode_entries(&entries);
            prop_assert_eq!(bytes.len(), entries.len() * 8);
            prop_assert_eq!(decode_entries::<OffsetEntry>(&bytes), Some(entries));
        }

        #[test]
        fn time_entries_round_trip(raw in proptest::collection::vec((any::<i64>(), any::<i32>()), 0..50)) {
            let entries: Vec<TimeEntry> = raw.iter()
                .map(|&(timestamp, relative_offset)| TimeEntry { timestamp, relative_offset })
                .collect();
            let bytes = encode_entries(&entries);
            prop_assert_eq!(decode_entries::<TimeEntry>(&bytes), Some(entries));
        }

        #[test]
        fn lookup_matches_linear_scan(mut offs in proptest::collection::btree_set(0i32..10_000, 1..40), target in 0i64..12_000) {
            let mut idx = OffsetIndex::empty(PathBuf::from("/nonexistent"), 0, 1 << 20);
            let sorted: Vec<i32> = std::mem::take(&mut offs).into_iter().collect();
            for (i, o) in sorted.iter().enumerate() {
                idx.append(i64::from(*o), (i as u32 + 1) * 10);
            }
            let expect = sorted.iter().enumerate().rfind(|(_, o)| i64::from(**o) <= target)
                .map(|(i, o)| (i64::from(*o), (i as u32 + 1) * 10)).unwrap_or((0, 0));
            prop_assert_eq!(idx.lookup(target), expect);
        }
    }
}
