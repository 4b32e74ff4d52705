//! Idempotent producer state of one partition (Kafka's `ProducerStateManager`).
//!
//! Per producer id: the current epoch and the metadata of its last 5 batches (5 = the clients'
//! max in-flight requests with idempotence), so a retried batch is recognised as a duplicate and
//! answered with its original offsets, and a gap in sequence numbers is refused. The state is
//! rebuilt on open from the newest `<20-digit offset>.snapshot` at or below the log end plus a
//! replay of the batches after it. Snapshot format (big endian): magic `SLPS`, version i16 = 1,
//! CRC32C u32 of everything after it, count i32, then per producer: id i64, epoch i16,
//! coordinator epoch i32, txn first offset i64, last timestamp i64, batch count u8 (<= 5), and per
//! batch (oldest first): last sequence i32, last offset i64, offset delta i32, timestamp i64.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use crate::storage::batch::BatchHeader;
use crate::storage::checkpoint::{write_atomic, write_replaced};
use crate::storage::error::{Result, StorageError};

/// Batches remembered per producer for duplicate detection.
pub(crate) const MAX_CACHED_BATCHES: usize = 5;
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
const SNAPSHOT_MAGIC: [u8; 4] = *b"SLPS";
const SNAPSHOT_VERSION: i16 = 1;
/// Fixed part of a snapshot entry and size of one batch record.
const ENTRY_FIXED_LEN: usize = 8 + 2 + 4 + 8 + 8 + 1;
const BATCH_LEN: usize = 4 + 8 + 4 + 8;

/// Metadata of one appended producer batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub last_seq: i32,
    pub last_offset: i64,
    pub offset_delta: i32,
    pub timestamp: i64,
}

impl BatchMetadata {
    pub(crate) fn first_seq(&self) -> i32 {
        self.last_seq.wrapping_sub(self.offset_delta)
    }
    pub(crate) fn first_offset(&self) -> i64 {
        self.last_offset.saturating_sub(i64::from(self.offset_delta))
    }
}

/// State of one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    pub batches: VecDeque<BatchMetadata>,
    pub coordinator_epoch: i32,
    pub current_txn_first_offset: i64,
    pub last_timestamp: i64,
}

impl ProducerEntry {
    fn new(producer_id: i64, epoch: i16) -> Self {
        Self {
            producer_id,
            epoch,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            current_txn_first_offset: -1,
            last_timestamp: -1,
        }
    }

    /// Records a batch whose offsets are assigned (a new epoch clears the cache).
    fn apply(&mut self, h: &BatchHeader) {
        if h.producer_epoch != self.epoch {
            self.epoch = h.producer_epoch;
            self.batches.clear();
        }
        self.batches.push_back(BatchMetadata {
            last_seq: h.last_sequence(),
            last_offset: h.last_offset(),
            offset_delta: h.last_offset_delta,
            timestamp: h.max_timestamp,
        });
        while self.batches.len() > MAX_CACHED_BATCHES {
            self.batches.pop_front();
        }
        self.last_timestamp = h.max_timestamp;
        if h.is_transactional() && self.current_txn_first_offset < 0 {
            self.current_txn_first_offset = h.base_offset;
        }
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    next_seq == next_sequence(last_seq)
}

/// The sequence after `seq` (wraps from i32::MAX to 0 like Kafka's).
fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// Kafka's checks for one client batch against the producer's current entry. `Ok(Some(batch))`
/// means the batch is a duplicate of that cached batch (whose offsets are the original ones).
pub(crate) fn check_batch(entry: Option<&ProducerEntry>, h: &BatchHeader) -> Result<Option<BatchMetadata>> {
    let Some(e) = entry else {
        return Ok(None);
    };
    let last_seq = h.last_sequence();
    if h.producer_epoch == e.epoch {
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq() == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(Some(b.clone()));
        }
    }
    if h.producer_epoch == e.epoch && !h.is_transactional() && e.current_txn_first_offset >= 0 {
        return Err(StorageError::InvalidTxnState(format!(
            "producer {} sent a non-transactional batch inside its open transaction",
            h.producer_id
        )));
    }
    if h.producer_epoch < e.epoch {
        return Err(StorageError::InvalidProducerEpoch(format!(
            "producer {} epoch {} is older than the current epoch {}",
            h.producer_id, h.producer_epoch, e.epoch
        )));
    }
    if h.producer_epoch > e.epoch {
        if h.base_sequence != 0 && e.epoch >= 0 {
            return Err(StorageError::OutOfOrderSequence(format!(
                "producer {} new epoch {} must start at sequence 0, got {}",
                h.producer_id, h.producer_epoch, h.base_sequence
            )));
        }
    } else if let Some(last) = e.batches.back() {
        if !in_sequence(last.last_seq, h.base_sequence) {
            return Err(StorageError::OutOfOrderSequence(format!(
                "producer {} epoch {}: expected sequence {}, got {}",
                h.producer_id,
                h.producer_epoch,
                next_sequence(last.last_seq),
                h.base_sequence
            )));
        }
    }
    Ok(None)
}

/// Producer entries of one partition, plus their snapshot files in the partition directory.
#[derive(Debug)]
pub(crate) struct ProducerStateManager {
    dir: PathBuf,
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions as (first offset, producer id): the first is the first unstable offset.
    ongoing: BTreeSet<(i64, i64)>,
}

/// Entries changed by an append that has not been written yet (all-or-nothing per append).
pub(crate) type StagedProducers = HashMap<i64, ProducerEntry>;

impl ProducerStateManager {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            producers: HashMap::new(),
            ongoing: BTreeSet::new(),
        }
    }

    /// Keeps `ongoing` in step with an entry whose open transaction went from `before` to `after`.
    fn track_txn(&mut self, producer_id: i64, before: i64, after: i64) {
        if before == after {
            return;
        }
        if before >= 0 {
            self.ongoing.remove(&(before, producer_id));
        }
        if after >= 0 {
            self.ongoing.insert((after, producer_id));
        }
    }

    /// The first offset of the oldest open transaction (Kafka's first unstable offset).
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.first().map(|&(offset, _)| offset)
    }

    /// Open transactions (producer id, first offset), for DescribeProducers.
    pub(crate) fn producers(&self) -> impl Iterator<Item = &ProducerEntry> {
        self.producers.values()
    }

    /// Checks a transaction marker of `producer_id` at `epoch` (an older epoch is fenced).
    pub(crate) fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<()> {
        match self.producers.get(&producer_id) {
            Some(e) if epoch < e.epoch => Err(StorageError::InvalidProducerEpoch(format!(
                "transaction marker of producer {producer_id} has epoch {epoch}, older than {}",
                e.epoch
            ))),
            _ => Ok(()),
        }
    }

    /// Applies a transaction marker written (or replayed) at `marker_offset`: the producer's open
    /// transaction ends. Returns the transaction's first offset if one was open.
    pub(crate) fn complete_txn(
        &mut self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
        timestamp: i64,
    ) -> Option<i64> {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(producer_id, epoch));
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp = entry.last_timestamp.max(timestamp);
        let first = entry.current_txn_first_offset;
        entry.current_txn_first_offset = -1;
        self.track_txn(producer_id, first, -1);
        (first >= 0).then_some(first)
    }

    pub(crate) fn count(&self) -> usize {
        self.producers.len()
    }

    #[cfg(test)]
    pub(crate) fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks a client batch against the committed entries and the ones staged by earlier batches
    /// of the same append.
    pub(crate) fn check(&self, staged: &StagedProducers, h: &BatchHeader) -> Result<Option<BatchMetadata>> {
        let entry = staged
            .get(&h.producer_id)
            .or_else(|| self.producers.get(&h.producer_id));
        check_batch(entry, h)
    }

    /// Stages a checked batch `h` (with its assigned base offset).
    pub(crate) fn stage(&self, staged: &mut StagedProducers, h: &BatchHeader) {
        let entry = staged.entry(h.producer_id).or_insert_with(|| {
            self.producers
                .get(&h.producer_id)
                .cloned()
                .unwrap_or_else(|| ProducerEntry::new(h.producer_id, h.producer_epoch))
        });
        entry.apply(h);
    }

    /// Makes staged entries current once the append is written.
    pub(crate) fn commit(&mut self, staged: StagedProducers) {
        for (pid, entry) in staged {
            let before = self.producers.get(&pid).map_or(-1, |e| e.current_txn_first_offset);
            self.track_txn(pid, before, entry.current_txn_first_offset);
            self.producers.insert(pid, entry);
        }
    }

    /// Replays a batch read back from the log (no validation: the log is the truth).
    pub(crate) fn replay(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() || h.is_control() {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_id, h.producer_epoch));
        let before = entry.current_txn_first_offset;
        entry.apply(h);
        let after = entry.current_txn_first_offset;
        self.track_txn(h.producer_id, before, after);
    }

    /// Forgets producers idle for `expiration_ms` that are not in a transaction.
    pub(crate) fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers
            .retain(|_, e| e.current_txn_first_offset >= 0 || now_ms.saturating_sub(e.last_timestamp) < expiration_ms);
    }

    fn snapshot_path(&self, offset: i64) -> PathBuf {
        self.dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
    }

    /// Offsets of the snapshot files in the directory, ascending.
    pub(crate) fn snapshot_offsets(&self) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        for dirent in fs::read_dir(&self.dir)? {
            let name = dirent?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(SNAPSHOT_SUFFIX) {
                if stem.len() == 20 {
                    if let Ok(offset) = stem.parse::<i64>() {
                        out.push(offset);
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Writes the current state as `<offset>.snapshot` (durably).
    /// [`Self::write_snapshot`] without waiting for the disk (at roll, under the log's lock);
    /// returns the file for the caller to fsync later. A crash may leave it unreadable, and an
    /// unreadable snapshot is skipped at load (an older one and a longer replay serve instead).
    pub(crate) fn write_snapshot_unsynced(&self, offset: i64) -> Result<PathBuf> {
        let path = self.snapshot_path(offset);
        write_replaced(&path, &self.encoded_snapshot())?;
        Ok(path)
    }

    pub(crate) fn write_snapshot(&self, offset: i64) -> Result<()> {
        write_atomic(&self.snapshot_path(offset), &self.encoded_snapshot())?;
        Ok(())
    }

    fn encoded_snapshot(&self) -> Vec<u8> {
        let mut entries: Vec<&ProducerEntry> = self.producers.values().collect();
        entries.sort_by_key(|e| e.producer_id);
        encode_snapshot(&entries)
    }

    /// Loads the newest readable snapshot at or below `max_offset`, deleting newer (stale) and
    /// unreadable ones. Returns the offset the loaded state covers, `None` if there is none.
    pub(crate) fn load_latest_snapshot(&mut self, max_offset: i64) -> Result<Option<i64>> {
        self.producers.clear();
        self.ongoing.clear();
        for offset in self.snapshot_offsets()?.into_iter().rev() {
            let path = self.snapshot_path(offset);
            if offset > max_offset {
                tracing::info!(path = %path.display(), "deleting producer snapshot past the log end");
                fs::remove_file(&path)?;
                continue;
            }
            match fs::read(&path)
                .map_err(StorageError::from)
                .and_then(|b| decode_snapshot(&b))
            {
                Ok(entries) => {
                    self.producers = entries.into_iter().map(|e| (e.producer_id, e)).collect();
                    self.ongoing = self
                        .producers
                        .values()
                        .filter(|e| e.current_txn_first_offset >= 0)
                        .map(|e| (e.current_txn_first_offset, e.producer_id))
                        .collect();
                    return Ok(Some(offset));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "deleting unreadable producer snapshot");
                    fs::remove_file(&path)?;
                }
            }
        }
        Ok(None)
    }

    /// Deletes snapshots below `offset` (the log start moved past them), keeping the newest one
    /// at or below it.
    pub(crate) fn delete_snapshots_before(&self, offset: i64) -> Result<()> {
        let offsets = self.snapshot_offsets()?;
        let keep = offsets.iter().rev().find(|&&o| o <= offset).copied();
        for o in offsets.into_iter().filter(|&o| o < offset && Some(o) != keep) {
            fs::remove_file(self.snapshot_path(o))?;
        }
        Ok(())
    }
}

fn encode_snapshot(entries: &[&ProducerEntry]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&i32::try_from(entries.len()).unwrap_or(i32::MAX).to_be_bytes());
    for e in entries.iter().take(i32::MAX as usize) {
        body.extend_from_slice(&e.producer_id.to_be_bytes());
        body.extend_from_slice(&e.epoch.to_be_bytes());
        body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        body.extend_from_slice(&e.current_txn_first_offset.to_be_bytes());
        body.extend_from_slice(&e.last_timestamp.to_be_bytes());
        let batches: Vec<&BatchMetadata> = e.batches.iter().rev().take(MAX_CACHED_BATCHES).rev().collect();
        body.push(u8::try_from(batches.len()).unwrap_or(0));
        for b in batches {
            body.extend_from_slice(&b.last_seq.to_be_bytes());
            body.extend_from_slice(&b.last_offset.to_be_bytes());
            body.extend_from_slice(&b.offset_delta.to_be_bytes());
            body.extend_from_slice(&b.timestamp.to_be_bytes());
        }
    }
    let mut out = Vec::with_capacity(body.len() + 10);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Bounds-checked big-endian reader over a snapshot.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes: [u8; N] = self
            .buf
            .get(self.pos..self.pos + N)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| StorageError::Corruption("producer snapshot is truncated".into()))?;
        self.pos += N;
        Ok(bytes)
    }
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

fn decode_snapshot(bytes: &[u8]) -> Result<Vec<ProducerEntry>> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take::<4>()? != SNAPSHOT_MAGIC {
        return Err(StorageError::Corruption("producer snapshot has a bad magic".into()));
    }
    let version = i16::from_be_bytes(r.take()?);
    if version != SNAPSHOT_VERSION {
        return Err(StorageError::Corruption(format!("producer snapshot version {version}")));
    }
    let crc = u32::from_be_bytes(r.take()?);
    if crc32c::crc32c(bytes.get(r.pos..).unwrap_or(&[])) != crc {
        return Err(StorageError::Corruption("producer snapshot CRC mismatch".into()));
    }
    let count = usize::try_from(i32::from_be_bytes(r.take()?))
        .map_err(|_| StorageError::Corruption("negative producer count".into()))?;
    if count > r.remaining() / ENTRY_FIXED_LEN {
        return Err(StorageError::Corruption("producer count exceeds the file".into()));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let mut e = ProducerEntry::new(i64::from_be_bytes(r.take()?), i16::from_be_bytes(r.take()?));
        e.coordinator_epoch = i32::from_be_bytes(r.take()?);
        e.current_txn_first_offset = i64::from_be_bytes(r.take()?);
        e.last_timestamp = i64::from_be_bytes(r.take()?);
        let [n] = r.take::<1>()?;
        if usize::from(n) > MAX_CACHED_BATCHES || usize::from(n) * BATCH_LEN > r.remaining() {
            return Err(StorageError::Corruption("bad batch count in producer snapshot".into()));
        }
        for _ in 0..n {
            e.batches.push_back(BatchMetadata {
                last_seq: i32::from_be_bytes(r.take()?),
                last_offset: i64::from_be_bytes(r.take()?),
                offset_delta: i32::from_be_bytes(r.take()?),
                timestamp: i64::from_be_bytes(r.take()?),
            });
        }
        entries.push(e);
    }
    if r.remaining() != 0 {
        return Err(StorageError::Corruption("trailing bytes in producer snapshot".into()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 10,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    fn append(m: &mut ProducerStateManager, h: &BatchHeader) -> Result<Option<(i64, i64)>> {
        let mut staged = StagedProducers::new();
        if let Some(dup) = m.check(&staged, h)? {
            return Ok(Some((dup.first_offset(), dup.last_offset)));
        }
        m.stage(&mut staged, h);
        m.commit(staged);
        Ok(None)
    }

    #[test]
    fn kafka_sequence_rules() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut m = ProducerStateManager::new(dir.path());
        assert_eq!(
            append(&mut m, &header(1, 0, 7, 3, 0))?,
            None,
            "unknown producer: any sequence"
        );
        assert_eq!(append(&mut m, &header(1, 0, 10, 2, 3))?, None);
        assert_eq!(append(&mut m, &header(1, 0, 7, 3, 99))?, Some((0, 2)), "duplicate");
        assert_eq!(append(&mut m, &header(1, 0, 10, 2, 99))?, Some((3, 4)));
        assert!(matches!(
            append(&mut m, &header(1, 0, 13, 1, 5)),
            Err(StorageError::OutOfOrderSequence(_))
        ));
        assert!(matches!(
            append(&mut m, &header(1, 0, 11, 1, 5)),
            Err(StorageError::OutOfOrderSequence(_))
        ));
        assert!(matches!(
            append(&mut m, &header(1, 1, 5, 1, 5)),
            Err(StorageError::OutOfOrderSequence(_))
        ));
        assert_eq!(append(&mut m, &header(1, 1, 0, 1, 5))?, None, "new epoch from 0");
        assert!(matches!(
            append(&mut m, &header(1, 0, 12, 1, 6)),
            Err(StorageError::InvalidProducerEpoch(_))
        ));
        assert_eq!(
            m.entry(1).map(|e| e.batches.len()),
            Some(1),
            "new epoch cleared the cache"
        );
        Ok(())
    }

    #[test]
    fn sequence_wraps_and_cache_keeps_five() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut m = ProducerStateManager::new(dir.path());
        append(&mut m, &header(2, 0, i32::MAX, 1, 0))?;
        assert_eq!(append(&mut m, &header(2, 0, 0, 1, 1))?, None);
        for i in 1..10 {
            append(&mut m, &header(2, 0, i, 1, i64::from(i) + 1))?;
        }
        assert_eq!(m.entry(2).map(|e| e.batches.len()), Some(MAX_CACHED_BATCHES));
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(i32::MAX, i32::MIN));
        assert!(in_sequence(4, 5));
        Ok(())
    }

    #[test]
    fn snapshot_round_trip_and_bad_files_skipped() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut m = ProducerStateManager::new(dir.path());
        for i in 0..7 {
            append(&mut m, &header(3, 2, i * 2, 2, i64::from(i) * 2))?;
        }
        append(&mut m, &header(4, 0, 0, 1, 20))?;
        m.write_snapshot(21)?;
        m.write_snapshot(30)?;
        fs::write(dir.path().join(format!("{:020}.snapshot", 25)), b"garbage")?;
        let mut loaded = ProducerStateManager::new(dir.path());
        assert_eq!(loaded.load_latest_snapshot(28)?, Some(21));
        assert_eq!(loaded.producers, m.producers);
        assert_eq!(
            loaded.snapshot_offsets()?,
            vec![21],
            "stale and unreadable snapshots deleted"
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn snapshot_codec_round_trip(raw in proptest::collection::vec(
            (any::<i64>(), any::<i16>(), any::<i32>(), any::<i64>(), any::<i64>(),
             proptest::collection::vec((any::<i32>(), any::<i64>(), any::<i32>(), any::<i64>()), 0..=5)), 0..10)) {
            let entries: Vec<ProducerEntry> = raw.into_iter().map(|(id, epoch, ce, txn, ts, batches)| ProducerEntry {
                producer_id: id, epoch, coordinator_epoch: ce, current_txn_first_offset: txn, last_timestamp: ts,
                batches: batches.into_iter().map(|(last_seq, last_offset, offset_delta, timestamp)|
                    BatchMetadata { last_seq, last_offset, offset_delta, timestamp }).collect(),
            }).collect();
            let refs: Vec<&ProducerEntry> = entries.iter().collect();
            let bytes = encode_snapshot(&refs);
            prop_assert_eq!(decode_snapshot(&bytes).ok(), Some(entries));
        }

        #[test]
        fn snapshot_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_snapshot(&bytes);
        }
    }
}
