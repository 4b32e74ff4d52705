//! One cleaning round over a [`CleanTask`], without the log's lock (Kafka's `Cleaner.doClean`):
//! the offset map of the dirty section, then the segments from the log start rewritten group by
//! group into `.cleaned` files, each group installed by the caller as soon as it is synced.
//!
//! What a record needs to stay (Kafka's rules): its key's latest offset in the map is its own
//! (or the key is not in the map, or the record lies past the map's end); a record without a key
//! goes; a tombstone goes once its batch's delete horizon has passed. A batch of an aborted
//! transaction goes whole; a commit marker goes once no batch of its transaction is left, an
//! abort marker once none was seen in this round, both only after their delete horizon. The last
//! batch of a producer still in the producer state stays, emptied if need be, so the producer's
//! sequence survives. A batch that keeps every record and needs no horizon is copied as is; any
//! other is rebuilt with its base offset, last offset delta, producer fields and codec.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::IoSlice;
use std::os::unix::fs::FileExt;

use crate::storage::batch::{self, BatchHeader, ATTR_DELETE_HORIZON, BATCH_HEADER_LEN};
use crate::storage::cleaner::offset_map::{key_hash, OffsetMap};
use crate::storage::cleaner::{CleanTask, CleanedSegment, SegmentSnapshot, Throttle};
use crate::storage::codec;
use crate::storage::control::{self, MarkerType};
use crate::storage::error::{Result, StorageError};
use crate::storage::records;
use crate::storage::segment::LogSegment;
use crate::storage::txn_index::AbortedTxn;

/// Read (and write) in pieces of this size.
const IO_CHUNK: usize = 1 << 20;

/// Counts of one round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub segments_installed: u64,
}

/// Reads the batches of a sealed segment in order, `IO_CHUNK` at a time.
struct BatchReader<'a> {
    file: &'a File,
    size: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> BatchReader<'a> {
    fn new(seg: &'a SegmentSnapshot) -> Self {
        Self {
            file: &seg.file,
            size: seg.size,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// The next whole batch, or `None` at the end (a torn or invalid tail ends the segment, as
    /// recovery would have cut it).
    fn next_batch(&mut self, throttle: &mut Throttle) -> Result<Option<(BatchHeader, &[u8])>> {
        if self.pos + BATCH_HEADER_LEN as u64 > self.size {
            return Ok(None);
        }
        let header = self.slice(self.pos, BATCH_HEADER_LEN, throttle)?;
        let h = BatchHeader::parse(header)?;
        let len = h.total_size();
        if self.pos + len as u64 > self.size || h.check_stored_counts().is_err() {
            return Err(StorageError::Corruption(format!(
                "invalid batch at position {} of a sealed segment",
                self.pos
            )));
        }
        let at = self.pos;
        self.pos += len as u64;
        let bytes = self.slice(at, len, throttle)?;
        Ok(Some((h, bytes)))
    }

    fn slice(&mut self, pos: u64, len: usize, throttle: &mut Throttle) -> Result<&[u8]> {
        let have = pos >= self.buf_start && pos + len as u64 <= self.buf_start + self.buf.len() as u64;
        if !have {
            let want = len
                .max(IO_CHUNK)
                .min(usize::try_from(self.size - pos).unwrap_or(usize::MAX));
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.buf_start = pos;
            throttle.pace(want as u64)?;
        }
        let from = usize::try_from(pos - self.buf_start).unwrap_or(usize::MAX);
        self.buf
            .get(from..from + len)
            .ok_or_else(|| StorageError::Corruption("batch outside the read buffer".into()))
    }
}

/// Kafka's `CleanedTransactionMetadata`: which batches belong to aborted transactions, and
/// whether a marker may go.
struct Transactions {
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Aborted transactions started and not ended, with whether a batch of it was seen.
    aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers with a committed (or not aborted) transaction batch seen and no marker yet.
    committed: HashSet<i64>,
}

impl Transactions {
    fn new(aborted: &[AbortedTxn]) -> Self {
        Self {
            pending: aborted.iter().copied().collect(),
            aborted: HashMap::new(),
            committed: HashSet::new(),
        }
    }

    fn reach(&mut self, offset: i64) {
        while self.pending.front().is_some_and(|t| t.first_offset <= offset) {
            if let Some(t) = self.pending.pop_front() {
                self.aborted.insert(t.producer_id, (t, false));
            }
        }
    }

    /// A transactional data batch: whether it belongs to an aborted transaction.
    fn data_batch(&mut self, h: &BatchHeader) -> bool {
        if !h.is_transactional() {
            return false;
        }
        self.reach(h.last_offset());
        if let Some((_, seen)) = self.aborted.get_mut(&h.producer_id) {
            *seen = true;
            return true;
        }
        self.committed.insert(h.producer_id);
        false
    }

    /// A marker: (whether it may be removed once its horizon passed, the aborted transaction to
    /// keep indexed with it).
    fn marker(&mut self, h: &BatchHeader, marker: Option<MarkerType>) -> (bool, Option<AbortedTxn>) {
        self.reach(h.last_offset());
        match marker {
            Some(MarkerType::Abort) => match self.aborted.remove(&h.producer_id) {
                Some((txn, true)) => (false, Some(txn)),
                _ => (true, None),
            },
            Some(MarkerType::Commit) => (!self.committed.remove(&h.producer_id), None),
            // An empty control batch (already cleaned) may go.
            None => (h.record_count == 0, None),
        }
    }
}

impl CleanTask {
    /// Fills `map` with the latest offset of every key in the dirty section, from the first
    /// dirty offset on, stopping before a batch that would not fit. Returns the offset the map
    /// is complete up to (exclusive): the round cleans nothing past it. `Ok(None)` when not even
    /// one batch fits.
    pub(crate) fn build_offset_map(&self, map: &mut OffsetMap, throttle: &mut Throttle) -> Result<Option<i64>> {
        map.clear();
        let mut txns = Transactions::new(&self.aborted);
        let mut end = self.first_dirty;
        for seg in &self.segments {
            if seg.end_offset <= self.first_dirty {
                continue;
            }
            let mut reader = BatchReader::new(seg);
            while let Some((h, bytes)) = reader.next_batch(throttle)? {
                if h.last_offset() < self.first_dirty {
                    continue;
                }
                if h.is_control() {
                    txns.marker(&h, control_type(bytes, &h));
                } else if !txns.data_batch(&h) {
                    if !map.has_room_for(usize::try_from(h.record_count).unwrap_or(0)) {
                        return Ok((end > self.first_dirty).then_some(end));
                    }
                    let inflated = records::inflate(bytes, &h)?;
                    for record in records::records(&inflated, h.record_count) {
                        let record = record?;
                        let offset = h.base_offset + record.offset_delta;
                        if let Some(key) = record.key.filter(|_| offset >= self.first_dirty) {
                            map.put(key_hash(key), offset);
                        }
                    }
                }
                end = h.next_offset();
            }
            end = end.max(seg.end_offset);
        }
        Ok(Some(end.min(self.end_offset)))
    }

    /// Groups of consecutive segments (indexes into `segments`) that are cleaned into one,
    /// up to the map's end: their sizes add up to at most segment.bytes and their offsets fit a
    /// segment's 32-bit relative offsets (Kafka's `groupSegmentsBySize`).
    pub(crate) fn groups(&self, map_end: i64) -> Vec<std::ops::Range<usize>> {
        let max_bytes = self.config.effective_segment_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        let n = self.segments.iter().take_while(|s| s.base_offset < map_end).count();
        while i < n {
            let start = i;
            let mut size = 0u64;
            while let Some(seg) = self.segments.get(i).filter(|_| i < n) {
                let first_base = self.segments.get(start).map_or(seg.base_offset, |s| s.base_offset);
                let fits = size + seg.size <= max_bytes && seg.end_offset - first_base <= i64::from(i32::MAX);
                if i > start && !fits {
                    break;
                }
                size += seg.size;
                i += 1;
            }
            out.push(start..i);
        }
        out
    }

    /// Writes the segments of `group` into one new segment (`.cleaned` files, synced).
    pub(crate) fn clean_group(
        &self,
        group: std::ops::Range<usize>,
        map: &OffsetMap,
        map_end: i64,
        txns: &mut TxnTracker,
        throttle: &mut Throttle,
        stats: &mut CleanStats,
    ) -> Result<CleanedSegment> {
        let segs = self.segments.get(group).unwrap_or_default();
        let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
            return Err(StorageError::Corruption("empty cleaning group".into()));
        };
        let mut out = LogSegment::create_cleaned(&self.dir, first.base_offset, &self.config, self.now_ms)?;
        let written = self.copy_group(segs, &mut out, map, map_end, &mut txns.0, throttle, stats);
        if let Err(e) = written.and_then(|()| out.sync_all_files()) {
            let _ = out.delete_files();
            return Err(e);
        }
        Ok(CleanedSegment {
            segment: out,
            replaces: last.end_offset,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_group(
        &self,
        segs: &[SegmentSnapshot],
        out: &mut LogSegment,
        map: &OffsetMap,
        map_end: i64,
        txns: &mut Transactions,
        throttle: &mut Throttle,
        stats: &mut CleanStats,
    ) -> Result<()> {
        let mut pending = Pending::default();
        for seg in segs {
            let mut reader = BatchReader::new(seg);
            while let Some((h, bytes)) = reader.next_batch(throttle)? {
                stats.bytes_read += bytes.len() as u64;
                let kept = self.filter_batch(&h, bytes, map, map_end, txns, stats)?;
                if let Some((kept, abort)) = kept {
                    pending.push(kept);
                    if pending.bytes >= IO_CHUNK {
                        pending.write(out, &self.config, throttle, stats)?;
                    }
                    if let Some(txn) = abort {
                        pending.write(out, &self.config, throttle, stats)?;
                        out.append_aborted_txn(txn)?;
                    }
                }
            }
        }
        pending.write(out, &self.config, throttle, stats)
    }

    fn is_last_batch_of_producer(&self, h: &BatchHeader) -> bool {
        if !h.has_producer_id() {
            return false;
        }
        match self.active_producers.get(&h.producer_id) {
            Some((Some(last_data), _)) => *last_data == h.last_offset(),
            Some((None, epoch)) => h.is_control() && h.producer_epoch == *epoch,
            None => false,
        }
    }

    /// What stays of one batch: `None` if nothing, else the bytes to write (the original ones
    /// when unchanged) and, for a kept abort marker, its transaction for the new `.txnindex`.
    fn filter_batch(
        &self,
        h: &BatchHeader,
        bytes: &[u8],
        map: &OffsetMap,
        map_end: i64,
        txns: &mut Transactions,
        stats: &mut CleanStats,
    ) -> Result<Option<(Kept, Option<AbortedTxn>)>> {
        let horizon_passed = h.delete_horizon_ms().is_some_and(|d| d <= self.now_ms);
        let new_horizon = self.now_ms.saturating_add(self.config.delete_retention_ms);
        if h.is_control() {
            let (discardable, abort) = txns.marker(h, control_type(bytes, h));
            if !discardable {
                return Ok(Some((Kept::Same(bytes.to_vec()), abort)));
            }
            if horizon_passed {
                return Ok(self.empty_or_none(h).map(|k| (k, None)));
            }
            if h.delete_horizon_ms().is_some() {
                return Ok(Some((Kept::Same(bytes.to_vec()), None)));
            }
            let inflated = records::inflate(bytes, h)?;
            return Ok(Some((rebuild(h, &inflated, |_| true, Some(new_horizon))?, None)));
        }
        stats.records_read += u64::try_from(h.record_count).unwrap_or(0);
        if txns.data_batch(h) {
            return Ok(self.empty_or_none(h).map(|k| (k, None)));
        }
        let inflated = records::inflate(bytes, h)?;
        let mut keep = Vec::new();
        let mut tombstones = false;
        for record in records::records(&inflated, h.record_count) {
            let record = record?;
            let offset = h.base_offset + record.offset_delta;
            let retained = offset >= map_end
                || record.key.is_some_and(|key| {
                    let latest = map.get(key_hash(key)).is_none_or(|found| offset >= found);
                    latest && (!record.value_is_null || !horizon_passed)
                });
            if retained {
                tombstones |= record.value_is_null;
            }
            keep.push(retained);
        }
        let kept = keep.iter().filter(|k| **k).count();
        stats.records_kept += kept as u64;
        let horizon = (tombstones && h.delete_horizon_ms().is_none()).then_some(new_horizon);
        if kept == 0 {
            return Ok(self.empty_or_none(h).map(|k| (k, None)));
        }
        if kept == keep.len() && horizon.is_none() {
            return Ok(Some((Kept::Same(bytes.to_vec()), None)));
        }
        let mut flags = keep.into_iter();
        Ok(Some((
            rebuild(h, &inflated, |_| flags.next().unwrap_or(false), horizon)?,
            None,
        )))
    }

    /// A batch with nothing left: kept empty if it is its producer's last, else gone.
    fn empty_or_none(&self, h: &BatchHeader) -> Option<Kept> {
        if !self.is_last_batch_of_producer(h) {
            return None;
        }
        let header = BatchHeader {
            attributes: h.attributes & !(0x07 | ATTR_DELETE_HORIZON),
            base_timestamp: h.max_timestamp,
            ..*h
        };
        batch::assemble(&header, 0, &[]).ok().map(Kept::Rebuilt)
    }
}

/// The state of aborted/committed transactions across the groups of one round.
pub(crate) struct TxnTracker(Transactions);

impl TxnTracker {
    pub(crate) fn new(task: &CleanTask) -> Self {
        Self(Transactions::new(&task.aborted))
    }
}

/// A batch to write.
enum Kept {
    Same(Vec<u8>),
    Rebuilt(Vec<u8>),
}

impl Kept {
    fn bytes(&self) -> &[u8] {
        match self {
            Kept::Same(b) | Kept::Rebuilt(b) => b,
        }
    }
}

/// Batches waiting to be written to the new segment in one vectored write.
#[derive(Default)]
struct Pending {
    batches: Vec<Kept>,
    bytes: usize,
}

impl Pending {
    fn push(&mut self, kept: Kept) {
        self.bytes += kept.bytes().len();
        self.batches.push(kept);
    }

    fn write(
        &mut self,
        out: &mut LogSegment,
        config: &crate::storage::LogConfig,
        throttle: &mut Throttle,
        stats: &mut CleanStats,
    ) -> Result<()> {
        if self.batches.is_empty() {
            return Ok(());
        }
        let headers = self
            .batches
            .iter()
            .map(|k| BatchHeader::parse(k.bytes()))
            .collect::<Result<Vec<_>>>()?;
        let mut slices: Vec<IoSlice<'_>> = self.batches.iter().map(|k| IoSlice::new(k.bytes())).collect();
        out.append(&headers, &mut slices, config)?;
        throttle.pace(self.bytes as u64)?;
        stats.bytes_written += self.bytes as u64;
        self.batches.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// The marker type of a control batch, if it holds one.
fn control_type(bytes: &[u8], h: &BatchHeader) -> Option<MarkerType> {
    if h.record_count == 0 {
        return None;
    }
    control::decode_end_txn_marker(bytes).ok().map(|m| m.marker)
}

/// The batch rebuilt from its inflated records, keeping those `keep` selects (in order),
/// recompressed with its codec;
/// with `horizon`, its base timestamp becomes that delete horizon (record timestamps kept).
fn rebuild(
    h: &BatchHeader,
    inflated: &[u8],
    mut keep: impl FnMut(usize) -> bool,
    horizon: Option<i64>,
) -> Result<Kept> {
    let mut out = Vec::with_capacity(inflated.len());
    let mut count = 0i32;
    let mut max_timestamp = -1i64;
    for (i, record) in records::records(inflated, h.record_count).enumerate() {
        let record = record?;
        if !keep(i) {
            continue;
        }
        count += 1;
        let timestamp = h.base_timestamp.saturating_add(record.timestamp_delta);
        max_timestamp = max_timestamp.max(timestamp);
        match horizon {
            Some(base) => record.encode_with_timestamp_delta(timestamp.saturating_sub(base), &mut out),
            None => out.extend_from_slice(record.raw),
        }
    }
    let codec = h.compression()?;
    let payload = codec::compress(codec, None, &out)?;
    let mut header = *h;
    if let Some(base) = horizon {
        header.base_timestamp = base;
        header.attributes |= ATTR_DELETE_HORIZON;
    }
    if !h.is_log_append_time() && count > 0 {
        header.max_timestamp = max_timestamp;
    }
    Ok(Kept::Rebuilt(batch::assemble(&header, count, &payload)?))
}

/// Deletes a cleaned segment's files that were not installed.
pub(crate) fn discard(cleaned: CleanedSegment) {
    let base = cleaned.segment.base_offset();
    if let Err(e) = cleaned.segment.delete_files() {
        tracing::warn!(base_offset = base, error = %e, "could not delete an uninstalled cleaned segment");
    }
}
