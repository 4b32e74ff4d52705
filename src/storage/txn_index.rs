//! The aborted-transaction index of one segment (Kafka's `TransactionIndex`, `.txnindex`).
//!
//! One entry per transaction aborted by a marker in this segment, in marker order. Entry layout
//! as Kafka's `AbortedTxn` (34 bytes, big endian): version i16 = 0, producer id i64, first offset
//! i64, last offset i64 (the abort marker's offset), last stable offset i64 (the partition's LSO
//! once the abort completed). read_committed fetches return the entries overlapping the fetched
//! range so consumers can drop the aborted records.
//!
//! The file is created on the first abort and appended (not fsynced) per abort; it is synced with
//! the segment's other files at flush, roll and close. At load, a torn last entry and entries whose
//! marker is past the (possibly truncated) segment end are dropped; the producer-state replay after
//! the newest snapshot re-adds the entries of markers it replays (see `recovery`), so an index
//! lost with an unsynced tail is rebuilt from the log.
//!
//! The entries are also kept in memory (34 bytes each, only aborted transactions).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::storage::error::Result;

pub(crate) const TXN_INDEX_SUFFIX: &str = ".txnindex";
const ENTRY_LEN: usize = 34;
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
    /// The partition's last stable offset once the abort completed.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(ENTRY_LEN);
        buf.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
        for f in [
            self.producer_id,
            self.first_offset,
            self.last_offset,
            self.last_stable_offset,
        ] {
            buf.extend_from_slice(&f.to_be_bytes());
        }
        buf
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let field = |at: usize| -> Option<i64> { Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?)) };
        let version = i16::from_be_bytes(bytes.get(..2)?.try_into().ok()?);
        if version != ENTRY_VERSION {
            return None;
        }
        Some(AbortedTxn {
            producer_id: field(2)?,
            first_offset: field(10)?,
            last_offset: field(18)?,
            last_stable_offset: field(26)?,
        })
    }
}

/// A segment's aborted transactions and their file.
#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    file: Option<File>,
    entries: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// An index with no entries; the file is created by the first `append`.
    pub(crate) fn empty(path: PathBuf) -> Self {
        TxnIndex {
            path,
            file: None,
            entries: Vec::new(),
        }
    }

    /// Loads the file at `path` (absent = no entries), keeping only whole entries whose marker is
    /// below `next_offset`; the file is rewritten if anything was dropped.
    pub(crate) fn load(path: PathBuf, next_offset: i64) -> Result<Self> {
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::empty(path)),
            Err(e) => return Err(e.into()),
        };
        let mut entries = Vec::with_capacity(bytes.len() / ENTRY_LEN);
        let mut dropped = bytes.len() % ENTRY_LEN != 0;
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            match AbortedTxn::decode(chunk) {
                Some(e) if e.last_offset < next_offset && e.first_offset <= e.last_offset => entries.push(e),
                _ => dropped = true,
            }
        }
        let mut index = TxnIndex {
            path,
            file: None,
            entries,
        };
        if dropped {
            tracing::info!(file = %index.path.display(), kept = index.entries.len(), "rewriting transaction index");
            index.rewrite()?;
        }
        Ok(index)
    }

    fn rewrite(&mut self) -> Result<()> {
        self.file = None;
        let mut bytes = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            bytes.extend_from_slice(&e.encode());
        }
        crate::storage::checkpoint::write_atomic(&self.path, &bytes)?;
        Ok(())
    }

    /// Drops the transactions whose marker is at or past `offset` (a truncation of the log).
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|e| e.last_offset < offset);
        if self.entries.len() != before || self.path.exists() {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Adds an entry unless one for the same marker offset is present (replay after a snapshot).
    pub(crate) fn append(&mut self, entry: AbortedTxn) -> Result<()> {
        if self.entries.iter().rev().any(|e| e.last_offset == entry.last_offset) {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(OpenOptions::new().create(true).append(true).open(&self.path)?);
        }
        if let Some(f) = self.file.as_mut() {
            let before = f.metadata()?.len();
            if let Err(e) = f.write_all(&entry.encode()) {
                // A part written (a full disk) is cut off, so later entries stay aligned.
                if f.set_len(before).is_err() {
                    self.file = None;
                }
                return Err(e.into());
            }
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Entries of transactions overlapping `[start, upper)`: last offset >= start and first
    /// offset < upper.
    pub(crate) fn collect_overlapping(&self, start: i64, upper: i64, out: &mut Vec<AbortedTxn>) {
        out.extend(
            self.entries
                .iter()
                .filter(|e| e.last_offset >= start && e.first_offset < upper),
        );
    }

    /// A handle for an fsync outside the log's lock, if the file exists.
    pub(crate) fn try_clone_file(&mut self) -> Result<Option<File>> {
        if self.file.is_none() && self.path.exists() {
            self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        }
        Ok(match &self.file {
            Some(f) => Some(f.try_clone()?),
            None => None,
        })
    }

    /// Closes the file handle (appends reopen it).
    pub(crate) fn release_handle(&mut self) {
        self.file = None;
    }

    pub(crate) fn sync(&mut self) -> Result<()> {
        if let Some(f) = self.try_clone_file()? {
            f.sync_data()?;
        }
        Ok(())
    }

    /// The file was renamed (a cleaned segment installed).
    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn append_load_drops_torn_and_truncated_entries() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut idx = TxnIndex::empty(path.clone());
        idx.append(entry(1, 0, 5))?;
        idx.append(entry(2, 3, 9))?;
        idx.append(entry(2, 3, 9))?; // a replayed marker is not added twice
        idx.append(entry(3, 10, 20))?;
        assert_eq!(fs::metadata(&path)?.len(), 3 * ENTRY_LEN as u64);
        let loaded = TxnIndex::load(path.clone(), 100)?;
        assert_eq!(loaded.entries(), idx.entries());
        // A torn tail and a log truncated to 15: the third entry's marker is gone.
        let mut f = OpenOptions::new().append(true).open(&path)?;
        f.write_all(&[0, 0, 1])?;
        let loaded = TxnIndex::load(path.clone(), 15)?;
        assert_eq!(loaded.entries(), &[entry(1, 0, 5), entry(2, 3, 9)]);
        assert_eq!(fs::metadata(&path)?.len(), 2 * ENTRY_LEN as u64, "file rewritten");
        let mut out = Vec::new();
        loaded.collect_overlapping(6, 8, &mut out);
        assert_eq!(out, vec![entry(2, 3, 9)]);
        out.clear();
        loaded.collect_overlapping(0, 3, &mut out);
        assert_eq!(out, vec![entry(1, 0, 5)]);
        assert!(TxnIndex::load(dir.path().join("absent.txnindex"), 10)?
            .entries()
            .is_empty());
        Ok(())
    }
}
