//! The Raft log store of the metadata quorum (openraft's `RaftLogStorage`), in
//! `<log.dirs>/__cluster_metadata-0/`:
//!
//! - `raft.log`: entries back to back, each `[len: u32][crc32c: u32][JSON entry]`. Appends are
//!   written and fsynced before openraft is told they are flushed (its callback), so a vote
//!   or an acknowledgement never counts an entry a crash can lose; a torn tail after a crash
//!   holds only entries never reported flushed, and is cut at open.
//! - `vote.json`, `committed.json`, `purged.json`: replaced atomically and fsynced.
//!
//! Entries are also held in memory (the metadata log is small: openraft purges what a snapshot
//! covers, keeping `max_in_snapshot_log_to_keep` more). Every file operation runs on the
//! blocking pool, never on a runtime worker.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};

use crate::controller::TypeConfig;
use crate::storage::checkpoint::write_atomic;

type Entry = openraft::Entry<TypeConfig>;
type RaftNodeId = u64;

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote.json";
const COMMITTED_FILE: &str = "committed.json";
const PURGED_FILE: &str = "purged.json";
/// An entry larger than this is taken as corruption (metadata commands are small).
const MAX_ENTRY_BYTES: usize = 64 << 20;

fn io_error(verb: fn(AnyError) -> StorageIOError<RaftNodeId>, e: &io::Error) -> StorageError<RaftNodeId> {
    StorageError::IO {
        source: verb(AnyError::new(e)),
    }
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    file: File,
    /// index -> (entry, position of its record in the file)
    entries: BTreeMap<u64, (Entry, u64)>,
    len: u64,
    last_purged: Option<LogId<RaftNodeId>>,
    vote: Option<Vote<RaftNodeId>>,
    committed: Option<LogId<RaftNodeId>>,
}

/// The log store; clones share it (openraft's log reader is one).
#[derive(Debug, Clone)]
pub struct RaftLogStore {
    inner: Arc<Mutex<Inner>>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

fn encode(entry: &Entry, out: &mut Vec<u8>) -> io::Result<()> {
    let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
    let len = u32::try_from(json.len()).map_err(|_| io::Error::other("entry too large"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(())
}

/// The whole records of `bytes`, with their positions; stops at the first torn or corrupt one.
fn decode_all(bytes: &[u8]) -> (Vec<(Entry, u64)>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let Some(head) = bytes.get(pos..pos + 8) else { break };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_ENTRY_BYTES {
            break;
        }
        let Some(body) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<Entry>(body) else {
            break;
        };
        out.push((entry, pos as u64));
        pos += 8 + len;
    }
    (out, pos as u64)
}

impl Inner {
    fn open(dir: &Path) -> io::Result<Inner> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (decoded, valid) = decode_all(&bytes);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if valid < bytes.len() as u64 {
            tracing::warn!(file = %path.display(), cut = bytes.len() as u64 - valid,
                "cutting a torn tail of the metadata log (entries never reported flushed)");
            file.set_len(valid)?;
            file.sync_all()?;
        }
        let last_purged: Option<LogId<RaftNodeId>> = read_json(&dir.join(PURGED_FILE))?;
        let purged_index = last_purged.map(|l| l.index);
        let entries = decoded
            .into_iter()
            .filter(|(e, _)| purged_index.is_none_or(|p| e.log_id.index > p))
            .map(|(e, pos)| (e.log_id.index, (e, pos)))
            .collect();
        Ok(Inner {
            dir: dir.to_path_buf(),
            file,
            entries,
            len: valid,
            last_purged,
            vote: read_json(&dir.join(VOTE_FILE))?,
            committed: read_json(&dir.join(COMMITTED_FILE))?,
        })
    }

    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for e in &entries {
            positions.push(self.len + buf.len() as u64);
            encode(e, &mut buf)?;
        }
        if let Err(e) = self.file.write_all(&buf).and_then(|()| self.file.sync_data()) {
            // Nothing of this append counts; cut what may have reached the file.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        for (e, pos) in entries.into_iter().zip(positions) {
            self.entries.insert(e.log_id.index, (e, pos));
        }
        Ok(())
    }

    /// Removes entries from `index` on.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(pos) = self.entries.range(index..).next().map(|(_, (_, pos))| *pos) else {
            return Ok(());
        };
        self.file.set_len(pos)?;
        self.file.sync_all()?;
        self.len = pos;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Forgets entries up to `log_id` (a snapshot holds them): recorded first, then the file
    /// rewritten without them.
    fn purge(&mut self, log_id: LogId<RaftNodeId>) -> io::Result<()> {
        write_json(&self.dir.join(PURGED_FILE), &log_id)?;
        self.last_purged = Some(log_id);
        self.entries = self.entries.split_off(&(log_id.index + 1));
        let mut buf = Vec::new();
        for (e, pos) in self.entries.values_mut() {
            *pos = buf.len() as u64;
            encode(e, &mut buf)?;
        }
        let path = self.dir.join(LOG_FILE);
        write_atomic(&path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.len = buf.len() as u64;
        Ok(())
    }
}

impl RaftLogStore {
    /// Opens (or creates) the store in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Ok(RaftLogStore {
            inner: Arc::new(Mutex::new(Inner::open(dir)?)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the store on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&mut inner.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(io::Error::other)?
    }

    /// Whether the log has never held an entry (a pristine node).
    pub fn is_pristine(&self) -> bool {
        let g = self.lock();
        g.entries.is_empty() && g.last_purged.is_none() && g.vote.is_none()
    }
}

impl RaftLogReader<TypeConfig> for RaftLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<RaftNodeId>> {
        Ok(self.lock().entries.range(range).map(|(_, (e, _))| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for RaftLogStore {
    type LogReader = RaftLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<RaftNodeId>> {
        let g = self.lock();
        let last = g.entries.values().next_back().map(|(e, _)| e.log_id);
        Ok(LogState {
            last_purged_log_id: g.last_purged,
            last_log_id: last.or(g.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> Result<(), StorageError<RaftNodeId>> {
        let vote = *vote;
        self.blocking(move |g| {
            write_json(&g.dir.join(VOTE_FILE), &vote)?;
            g.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| io_error(StorageIOError::write_vote, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftNodeId>>, StorageError<RaftNodeId>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> Result<(), StorageError<RaftNodeId>> {
        self.blocking(move |g| {
            write_json(&g.dir.join(COMMITTED_FILE), &committed)?;
            g.committed = committed;
            Ok(())
        })
        .await
        .map_err(|e| io_error(StorageIOError::write, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<RaftNodeId>>, StorageError<RaftNodeId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<RaftNodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        match self.blocking(move |g| g.append(entries)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = io_error(StorageIOError::write_logs, &e);
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> Result<(), StorageError<RaftNodeId>> {
        self.blocking(move |g| g.truncate(log_id.index))
            .await
            .map_err(|e| io_error(StorageIOError::write_logs, &e))
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> Result<(), StorageError<RaftNodeId>> {
        self.blocking(move |g| g.purge(log_id))
            .await
            .map_err(|e| io_error(StorageIOError::write_logs, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn appends_survive_reopen_and_a_torn_tail_is_cut() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut inner = Inner::open(dir.path())?;
        inner.append((1..=5).map(|i| entry(1, i)).collect())?;
        drop(inner);
        // A torn record at the end (a crash mid-append, never reported flushed).
        let mut f = OpenOptions::new().append(true).open(dir.path().join(LOG_FILE))?;
        f.write_all(&[0, 0, 0, 40, 1, 2, 3])?;
        drop(f);
        let mut inner = Inner::open(dir.path())?;
        assert_eq!(inner.entries.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        inner.truncate(4)?;
        inner.append(vec![entry(2, 4)])?;
        drop(inner);
        let mut inner = Inner::open(dir.path())?;
        assert_eq!(inner.entries.len(), 4);
        assert_eq!(inner.entries[&4].0.log_id.leader_id.term, 2);
        inner.purge(LogId::new(CommittedLeaderId::new(1, 1), 2))?;
        inner.append(vec![entry(2, 5)])?;
        drop(inner);
        let inner = Inner::open(dir.path())?;
        assert_eq!(inner.entries.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(inner.last_purged.map(|l| l.index), Some(2));
        Ok(())
    }
}
