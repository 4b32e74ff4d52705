//! `UnifiedLog`: the log of one partition (Kafka's `UnifiedLog` + `LocalLog`).
//!
//! Owns the segments (oldest first; the last one is active), the log start offset, high
//! watermark and recovery point, the producer state and the leader epoch cache. It validates
//! client batches, assigns offsets by rewriting each batch's 17-byte prefix (outside the CRC) and
//! appends, serves reads of whole batches below a caller-given limit, rolls and deletes segments,
//! and hands out flush requests so the caller can fsync without holding its lock (group commit).
//! Not thread safe by itself: the owner wraps it in a short std Mutex (reads take `&self`).

use std::fs::{self, File};
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::storage::batch::{self, BatchHeader, HEADER_PREFIX_LEN};
use crate::storage::checkpoint::{self, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT};
use crate::storage::cleaner;
use crate::storage::config::LogConfig;
use crate::storage::control::{self, EndTxnMarker, MarkerType};
use crate::storage::error::{Result, StorageError};
use crate::storage::leader_epoch::LeaderEpochCache;
use crate::storage::producer_state::{ProducerStateManager, StagedProducers};
use crate::storage::read::{first_record, ReadPlan};
use crate::storage::recovery;
use crate::storage::segment::LogSegment;
use crate::storage::txn_index::AbortedTxn;

/// Outcome of `append_as_leader`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogAppendInfo {
    /// Base offset assigned to the first batch (for a duplicate: the original one).
    pub first_offset: i64,
    /// Last offset of the last batch (for a duplicate: the original one).
    pub last_offset: i64,
    /// The broker time stamped into the batches, -1 unless LogAppendTime.
    pub log_append_time_ms: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
    /// Records appended (0 for a duplicate).
    pub record_count: u32,
    /// Bytes received (the whole `records` buffer).
    pub bytes: usize,
    /// The batch was a retry of one already in the log: nothing was appended.
    pub duplicate: bool,
}

/// Outcome of `read`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchDataInfo {
    /// Whole batches, possibly empty.
    pub records: Bytes,
}

/// A record located by timestamp (ListOffsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// The record's offset.
    pub offset: i64,
    /// Partition leader epoch of its batch, -1 if unknown.
    pub leader_epoch: i32,
}

/// Duplicated file handles of every segment with unflushed data, and the log end offset they
/// cover. `sync` may run without the log's lock; then pass `up_to_offset` to `complete_flush`.
#[derive(Debug)]
pub struct FlushRequest {
    /// Segment files: fdatasync.
    files: Vec<File>,
    /// The directory (new segment files) and files written at roll: fsync.
    metadata: Vec<File>,
    up_to_offset: i64,
    poisoned: Arc<AtomicBool>,
}

impl FlushRequest {
    /// Syncs every handle. A failure poisons the log: it refuses appends from then on, since
    /// the kernel may have dropped the dirty pages (fsyncgate).
    pub fn sync(&self) -> Result<()> {
        let synced = self
            .files
            .iter()
            .try_for_each(File::sync_data)
            .and_then(|()| self.metadata.iter().try_for_each(File::sync_all));
        if let Err(e) = synced {
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
        Ok(())
    }

    /// The log end offset at `prepare_flush`: everything below it is durable after `sync`.
    pub fn up_to_offset(&self) -> i64 {
        self.up_to_offset
    }
}

/// The log of one partition. See the module docs.
#[derive(Debug)]
pub struct UnifiedLog {
    dir: PathBuf,
    config: LogConfig,
    /// Oldest first, never empty; the last is the active segment.
    segments: Vec<LogSegment>,
    log_start_offset: i64,
    high_watermark: i64,
    recovery_point: i64,
    producer_state: ProducerStateManager,
    epoch_cache: LeaderEpochCache,
    last_flush_ms: i64,
    poisoned: Arc<AtomicBool>,
    /// A roll happened since the last flush was prepared: flush soon, off the append path.
    roll_flush_wanted: bool,
    /// Segment files were created since the last flush was prepared (the directory needs an
    /// fsync before the recovery point may pass them).
    dir_dirty: bool,
    /// Files written without fsync (producer snapshots at roll), synced by the next flush.
    unsynced: Vec<PathBuf>,
    /// Whether this log keeps its recovery point and log start offset in per-partition files
    /// (the broker's internal logs) rather than in its owner's log dir checkpoints.
    own_checkpoints: bool,
    /// Counts removals of segments (retention, DeleteRecords, truncation, a cleaned segment
    /// installed): a cleaning round taken at another generation must not install its output.
    generation: u64,
    /// Where the log cleaner's next round starts (see `cleaner`).
    first_dirty: i64,
}

/// Offsets a log's owner persists in the log dir's checkpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointOffsets {
    pub recovery_point: i64,
    pub log_start_offset: i64,
}

impl UnifiedLog {
    /// Opens (or creates) the partition directory `dir`. Without a clean shutdown, everything
    /// after the recovery point is re-validated and a torn or corrupt tail is truncated. The high
    /// watermark starts at the log end offset.
    /// This log keeps its own checkpoint files (the broker's internal logs).
    pub fn open(dir: PathBuf, config: LogConfig, had_clean_shutdown: bool, now_ms: i64) -> Result<Self> {
        Self::open_with(dir, config, had_clean_shutdown, now_ms, None)
    }

    /// [`Self::open`] for a log whose owner keeps its offsets in log dir checkpoints: `saved` is
    /// what they hold for it (each `None` falls back to a per-partition file, if any).
    pub fn open_managed(
        dir: PathBuf,
        config: LogConfig,
        had_clean_shutdown: bool,
        now_ms: i64,
        saved: (Option<i64>, Option<i64>),
    ) -> Result<Self> {
        Self::open_with(dir, config, had_clean_shutdown, now_ms, Some(saved))
    }

    fn open_with(
        dir: PathBuf,
        config: LogConfig,
        had_clean_shutdown: bool,
        now_ms: i64,
        saved: Option<(Option<i64>, Option<i64>)>,
    ) -> Result<Self> {
        let own_checkpoints = saved.is_none();
        let (recovery_point, log_start_offset) = saved.unwrap_or_default();
        std::fs::create_dir_all(&dir)?;
        cleaner::complete_interrupted_installs(&dir)?;
        let first_dirty = cleaner::read_first_dirty(&dir)?;
        let loaded = recovery::load(
            &dir,
            &config,
            had_clean_shutdown,
            now_ms,
            recovery_point,
            log_start_offset,
        )?;
        let mut log = Self {
            dir,
            config,
            segments: loaded.segments,
            log_start_offset: loaded.log_start_offset,
            high_watermark: 0,
            recovery_point: loaded.recovery_point,
            producer_state: loaded.producer_state,
            epoch_cache: loaded.epoch_cache,
            last_flush_ms: now_ms,
            poisoned: Arc::new(AtomicBool::new(false)),
            roll_flush_wanted: false,
            dir_dirty: false,
            unsynced: Vec::new(),
            own_checkpoints,
            generation: 0,
            first_dirty,
        };
        log.high_watermark = log.log_end_offset();
        tracing::debug!(dir = %log.dir.display(), log_start = log.log_start_offset,
            log_end = log.log_end_offset(), segments = log.segments.len(), "opened log");
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Applies a new configuration (index limits apply to existing segments too).
    pub fn set_config(&mut self, config: LogConfig) {
        for seg in &mut self.segments {
            seg.set_config(&config);
        }
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.segments
            .last()
            .map(LogSegment::next_offset)
            .unwrap_or(self.log_start_offset)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Sets the high watermark, clamped to `[log_start_offset, log_end_offset]`; returns it.
    pub fn update_high_watermark(&mut self, hw: i64) -> i64 {
        self.high_watermark = hw.clamp(self.log_start_offset, self.log_end_offset().max(self.log_start_offset));
        self.high_watermark
    }

    /// Everything below this offset has been fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(LogSegment::size).sum()
    }

    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    pub fn producer_count(&self) -> usize {
        self.producer_state.count()
    }

    /// The first offset of the oldest open transaction, if any.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producer_state.first_unstable_offset()
    }

    /// The last stable offset: read_committed consumers read below it. The high watermark, or
    /// the first offset of the oldest open transaction if that is lower.
    pub fn last_stable_offset(&self) -> i64 {
        match self.producer_state.first_unstable_offset() {
            Some(first) => first.min(self.high_watermark),
            None => self.high_watermark,
        }
    }

    /// Every producer's state (DescribeProducers).
    pub fn producer_states(&self) -> Vec<ProducerStateInfo> {
        let mut out: Vec<ProducerStateInfo> = self
            .producer_state
            .producers()
            .map(|e| ProducerStateInfo {
                producer_id: e.producer_id,
                producer_epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.current_txn_first_offset,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Aborted transactions overlapping `[start, upper)`, from the `.txnindex` of the segment
    /// holding `start` and every later one (a transaction is indexed where its marker is).
    pub fn collect_aborted_txns(&self, start: i64, upper: i64) -> Vec<AbortedTxn> {
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= start)
            .saturating_sub(1);
        let mut out = Vec::new();
        for seg in self.segments.iter().skip(first) {
            seg.collect_aborted_txns(start, upper, &mut out);
        }
        out
    }

    /// Appends a transaction marker (a control batch, as Kafka's coordinator writes them) and
    /// ends `marker.producer_id`'s open transaction in this partition; an abort is recorded in
    /// the active segment's `.txnindex`. A marker of an older producer epoch is refused.
    pub fn append_marker(&mut self, marker: &EndTxnMarker, leader_epoch: i32, now_ms: i64) -> Result<LogAppendInfo> {
        self.check_writable()?;
        self.producer_state
            .check_marker(marker.producer_id, marker.producer_epoch)?;
        let records = control::encode_end_txn_marker(marker, now_ms)?;
        let mut h = BatchHeader::parse(&records)?;
        h.base_offset = self.log_end_offset();
        h.partition_leader_epoch = leader_epoch;
        if self.active()?.should_roll(
            &self.config,
            records.len() as u64,
            h.max_timestamp,
            h.last_offset(),
            now_ms,
        ) {
            self.roll(now_ms)?;
        }
        if leader_epoch >= 0 {
            self.epoch_cache.assign(leader_epoch, h.base_offset)?;
        }
        self.write_batches(&records, &[(0, h)], false, now_ms)?;
        let aborted = self.apply_marker(marker, h.base_offset, now_ms);
        if let Some(entry) = aborted {
            self.active_mut()?.append_aborted_txn(entry)?;
        }
        Ok(LogAppendInfo {
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset,
            record_count: 1,
            bytes: records.len(),
            duplicate: false,
        })
    }

    /// Ends the producer's open transaction for a marker at `offset`; for an abort, the entry
    /// of the aborted-transaction index.
    fn apply_marker(&mut self, marker: &EndTxnMarker, offset: i64, now_ms: i64) -> Option<AbortedTxn> {
        apply_marker(&mut self.producer_state, marker, offset, now_ms)
    }

    fn active(&self) -> Result<&LogSegment> {
        self.segments
            .last()
            .ok_or_else(|| StorageError::Corruption("log has no segments".into()))
    }

    fn active_mut(&mut self) -> Result<&mut LogSegment> {
        self.segments
            .last_mut()
            .ok_or_else(|| StorageError::Corruption("log has no segments".into()))
    }

    fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StorageError::Io(std::io::Error::other(format!(
                "log {} refuses writes after a failed write or fsync",
                self.dir.display()
            ))));
        }
        Ok(())
    }

    /// Validates `records` (one or more v2 batches), checks idempotent producers, assigns offsets
    /// from the log end and appends all batches or none. A retried producer batch is answered
    /// with its original offsets and `duplicate = true`.
    pub fn append_as_leader(&mut self, records: Bytes, leader_epoch: i32, now_ms: i64) -> Result<LogAppendInfo> {
        self.check_writable()?;
        let max_segment = usize::try_from(self.config.effective_segment_bytes()).unwrap_or(usize::MAX);
        if records.len() > max_segment {
            return Err(StorageError::RecordTooLarge {
                size: records.len(),
                max: max_segment,
            });
        }
        let parsed = self.validate_batches(&records)?;
        let log_append_time = self.config.log_append_time;
        let mut staged = StagedProducers::new();
        let mut next_offset = self.log_end_offset();
        let mut assigned = Vec::with_capacity(parsed.len());
        for (pos, original) in parsed {
            let mut h = original;
            h.base_offset = next_offset;
            h.partition_leader_epoch = leader_epoch;
            if log_append_time {
                h.max_timestamp = now_ms;
                h.attributes |= batch::ATTR_LOG_APPEND_TIME;
            }
            if h.has_producer_id() {
                if let Some(dup) = self.producer_state.check(&staged, &h)? {
                    return Ok(LogAppendInfo {
                        first_offset: dup.first_offset(),
                        last_offset: dup.last_offset,
                        log_append_time_ms: if log_append_time { dup.timestamp } else { -1 },
                        log_start_offset: self.log_start_offset,
                        record_count: 0,
                        bytes: records.len(),
                        duplicate: true,
                    });
                }
                self.producer_state.stage(&mut staged, &h);
            }
            next_offset = h.next_offset();
            assigned.push((pos, h));
        }
        let (Some(&(_, first)), Some(&(_, last))) = (assigned.first(), assigned.last()) else {
            return Err(StorageError::InvalidRecord("no record batches".into()));
        };
        let max_timestamp = assigned.iter().map(|(_, h)| h.max_timestamp).max().unwrap_or(-1);
        if self.active()?.should_roll(
            &self.config,
            records.len() as u64,
            max_timestamp,
            last.last_offset(),
            now_ms,
        ) {
            self.roll(now_ms)?;
        }
        if leader_epoch >= 0 {
            self.epoch_cache.assign(leader_epoch, first.base_offset)?;
        }
        self.write_batches(&records, &assigned, log_append_time, now_ms)?;
        self.producer_state.commit(staged);
        let record_count = assigned
            .iter()
            .map(|(_, h)| u32::try_from(h.record_count).unwrap_or(0))
            .fold(0u32, u32::saturating_add);
        Ok(LogAppendInfo {
            first_offset: first.base_offset,
            last_offset: last.last_offset(),
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
            record_count,
            bytes: records.len(),
            duplicate: false,
        })
    }

    /// Splits `records` into batches and runs the client checks on each.
    fn validate_batches(&self, records: &[u8]) -> Result<Vec<(usize, BatchHeader)>> {
        let mut parsed = Vec::new();
        for item in batch::batches(records) {
            let (pos, h) = item?;
            let bytes = records
                .get(pos..pos + h.total_size())
                .ok_or_else(|| StorageError::CorruptRecord("batch exceeds the buffer".into()))?;
            batch::validate_client_batch(&h, bytes, self.config.max_message_bytes)?;
            parsed.push((pos, h));
        }
        if parsed.is_empty() {
            return Err(StorageError::InvalidRecord("no record batches".into()));
        }
        Ok(parsed)
    }

    /// Writes the batches with rewritten prefixes via one vectored write (only LogAppendTime
    /// copies a batch, to recompute its CRC).
    fn write_batches(
        &mut self,
        records: &Bytes,
        assigned: &[(usize, BatchHeader)],
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<()> {
        let mut prefixes = Vec::with_capacity(assigned.len());
        let mut copies: Vec<Vec<u8>> = Vec::new();
        for (pos, h) in assigned {
            let bytes = records.get(*pos..*pos + h.total_size()).unwrap_or(&[]);
            let prefix = batch::rewritten_prefix(bytes, h.base_offset, h.partition_leader_epoch);
            if log_append_time {
                let mut copy = bytes.to_vec();
                batch::set_log_append_time(&mut copy, now_ms);
                if let Some(dst) = copy.get_mut(..HEADER_PREFIX_LEN) {
                    dst.copy_from_slice(&prefix);
                }
                copies.push(copy);
            }
            prefixes.push(prefix);
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(assigned.len() * 2);
        if log_append_time {
            slices.extend(copies.iter().map(|c| IoSlice::new(c)));
        } else {
            for ((pos, h), prefix) in assigned.iter().zip(&prefixes) {
                let rest = records
                    .get(*pos + HEADER_PREFIX_LEN..*pos + h.total_size())
                    .unwrap_or(&[]);
                slices.push(IoSlice::new(prefix));
                slices.push(IoSlice::new(rest));
            }
        }
        let headers: Vec<BatchHeader> = assigned.iter().map(|(_, h)| *h).collect();
        let active = self
            .segments
            .last_mut()
            .ok_or_else(|| StorageError::Corruption("log has no segments".into()))?;
        let result = active.append(&headers, &mut slices, &self.config);
        if let Err(StorageError::Corruption(_)) = &result {
            self.poisoned.store(true, Ordering::SeqCst);
        }
        result
    }

    /// Starts a new active segment at the log end (no-op if the active one is empty): the old one
    /// gets its final time index entry, a producer snapshot is written. Nothing here waits for
    /// the disk (it runs under the log's lock, on the append path): the old segment, its
    /// indexes, the snapshot and the directory are synced by the flush the roll asks for
    /// (`needs_flush`), after which the recovery point passes the old segment, as Kafka flushes
    /// a rolled segment asynchronously.
    fn roll(&mut self, now_ms: i64) -> Result<()> {
        let log_end = self.log_end_offset();
        self.roll_at(log_end, now_ms)
    }

    /// [`UnifiedLog::roll`] to a segment starting at `base` (>= the log end: a follower's
    /// first batch after a gap). An empty active segment is replaced rather than kept.
    pub(crate) fn roll_at(&mut self, base: i64, now_ms: i64) -> Result<()> {
        let log_end = self.log_end_offset();
        let active = self.active_mut()?;
        if active.is_empty() {
            if active.base_offset() == base {
                return Ok(());
            }
            if let Some(empty) = self.segments.pop() {
                empty.delete_files()?;
            }
            self.segments
                .push(LogSegment::create(&self.dir, base, &self.config, now_ms)?);
            self.dir_dirty = true;
            return Ok(());
        }
        active.finish_writes()?;
        let seg = LogSegment::create(&self.dir, base, &self.config, now_ms)?;
        if let Some(old) = self.segments.last_mut() {
            old.seal();
        }
        self.segments.push(seg);
        self.dir_dirty = true;
        self.roll_flush_wanted = true;
        let snapshot = self.producer_state.write_snapshot_unsynced(log_end)?;
        self.unsynced.push(snapshot);
        tracing::debug!(dir = %self.dir.display(), base_offset = log_end, "rolled segment");
        Ok(())
    }

    /// Rolls the active segment if segment.ms has passed since its first batch; true if rolled.
    pub fn maybe_roll_by_time(&mut self, now_ms: i64) -> Result<bool> {
        let active = self.active()?;
        if active.is_empty() || active.time_waited_for_roll(now_ms, now_ms) <= self.config.segment_ms {
            return Ok(false);
        }
        self.roll(now_ms)?;
        Ok(true)
    }

    /// Messages appended since the last completed flush.
    fn unflushed_messages(&self) -> u64 {
        u64::try_from(self.log_end_offset().saturating_sub(self.recovery_point)).unwrap_or(0)
    }

    /// A segment was rolled, or flush.messages or flush.ms reached with data to flush.
    pub fn needs_flush(&self, now_ms: i64) -> bool {
        let unflushed = self.unflushed_messages();
        self.roll_flush_wanted
            || unflushed > 0
                && (unflushed >= self.config.flush_interval_messages
                    || now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_interval_ms)
    }

    /// Handles to fsync for everything below the current log end; `None` if all is flushed.
    pub fn prepare_flush(&mut self) -> Result<Option<FlushRequest>> {
        let up_to_offset = self.log_end_offset();
        if up_to_offset <= self.recovery_point && !self.dir_dirty && self.unsynced.is_empty() {
            self.roll_flush_wanted = false;
            return Ok(None);
        }
        let recovery_point = self.recovery_point;
        let mut files = Vec::new();
        let last = self.segments.len().saturating_sub(1);
        for (i, seg) in self.segments.iter_mut().enumerate() {
            if seg.next_offset() > recovery_point {
                files.extend(seg.flush_handles()?);
                if i < last {
                    // Inactive from now on: only its `.log` stays open (indexes reopen on demand).
                    seg.release_index_handles();
                }
            }
        }
        let mut metadata = Vec::new();
        for path in self.unsynced.drain(..) {
            match File::open(&path) {
                Ok(f) => metadata.push(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // deleted since
                Err(e) => return Err(e.into()),
            }
        }
        if std::mem::take(&mut self.dir_dirty) {
            metadata.push(File::open(&self.dir)?);
        }
        self.roll_flush_wanted = false;
        Ok(Some(FlushRequest {
            files,
            metadata,
            up_to_offset,
            poisoned: Arc::clone(&self.poisoned),
        }))
    }

    /// What the owner's log dir checkpoints record for this log now.
    pub fn checkpoint_offsets(&self) -> CheckpointOffsets {
        CheckpointOffsets {
            recovery_point: self.recovery_point,
            log_start_offset: self.log_start_offset,
        }
    }

    /// Records that a `FlushRequest` covering `up_to_offset` was synced. The recovery point is
    /// persisted at roll and close (recovery re-validates from the last persisted one).
    pub fn complete_flush(&mut self, up_to_offset: i64, now_ms: i64) -> Result<()> {
        let up_to = up_to_offset.min(self.log_end_offset());
        if up_to > self.recovery_point {
            self.recovery_point = up_to;
        }
        self.last_flush_ms = now_ms;
        Ok(())
    }

    /// `prepare_flush` + `sync` + `complete_flush` under the caller's lock.
    pub fn flush(&mut self, now_ms: i64) -> Result<()> {
        match self.prepare_flush()? {
            Some(req) => {
                req.sync()?;
                self.complete_flush(req.up_to_offset(), now_ms)
            }
            None => {
                self.last_flush_ms = now_ms;
                Ok(())
            }
        }
    }

    fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start: self.log_start_offset,
            log_end: self.log_end_offset(),
        }
    }

    /// Whole batches from the one holding `fetch_offset`, stopping before any batch whose last
    /// offset is >= `max_offset` (the high watermark for consumers) and within `max_bytes`, except
    /// that with `min_one_message` a first batch larger than `max_bytes` is returned whole. Reads
    /// stay within one segment per call, like Kafka.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_message: bool,
    ) -> Result<FetchDataInfo> {
        self.read_plan(fetch_offset, max_bytes, max_offset, min_one_message)?
            .read()
    }

    /// [`UnifiedLog::read`] in two steps: the plan is taken with the log borrowed (range checks,
    /// index lookups, the file handles), [`ReadPlan::read`] does the file reads without it, so
    /// a caller holding the log behind a lock releases it before any I/O.
    pub fn read_plan(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_message: bool,
    ) -> Result<ReadPlan> {
        let log_end = self.log_end_offset();
        if fetch_offset < self.log_start_offset || fetch_offset > log_end {
            return Err(self.out_of_range(fetch_offset));
        }
        let mut plan = ReadPlan::new(fetch_offset, max_bytes, max_offset, min_one_message);
        if fetch_offset == log_end || max_offset <= fetch_offset {
            return Ok(plan);
        }
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= fetch_offset)
            .saturating_sub(1);
        // The segment holding the offset and, in case no batch of it reaches the offset (a gap),
        // the next one with data: its first batch is then the answer.
        for seg in self.segments.iter().skip(first) {
            plan.push(seg.reader(fetch_offset)?);
            if plan.len() > 1 && !seg.is_empty() {
                break;
            }
        }
        Ok(plan)
    }

    /// Closes the files of sealed segments not read since the last sweep; returns how many.
    pub fn sweep_idle_files(&self) -> usize {
        let sealed = self.segments.len().saturating_sub(1);
        self.segments.iter().take(sealed).filter(|s| s.sweep_file()).count()
    }

    /// The first record with timestamp >= `target_ms` at or after the log start (ListOffsets).
    pub fn fetch_offset_by_timestamp(&self, target_ms: i64) -> Result<Option<TimestampOffset>> {
        let start = self.log_start_offset;
        for seg in &self.segments {
            if seg.next_offset() <= start || seg.max_timestamp() < target_ms {
                continue;
            }
            let mut found = None;
            seg.for_each_batch(seg.timestamp_scan_start(target_ms), |h, pos| {
                if h.max_timestamp >= target_ms && h.last_offset() >= start {
                    found = Some((*h, pos));
                    return Ok(false);
                }
                Ok(true)
            })?;
            if let Some((h, pos)) = found {
                let bytes = seg.read_batch(pos, &h)?;
                if let Some(hit) = first_record(&self.dir, &bytes, &h, start, |ts| ts >= target_ms) {
                    return Ok(Some(hit));
                }
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp in the log (ListOffsets MAX_TIMESTAMP): the first
    /// record of the newest-timestamp batch that carries that timestamp.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampOffset>> {
        let mut best: Option<(&LogSegment, i64, i64)> = None;
        for seg in &self.segments {
            if let Some((ts, offset)) = seg.max_timestamp_and_batch() {
                if best.is_none_or(|(_, best_ts, _)| ts > best_ts) {
                    best = Some((seg, ts, offset));
                }
            }
        }
        let Some((seg, ts, batch_offset)) = best else {
            return Ok(None);
        };
        let Some((pos, h)) = seg.find_batch(batch_offset)? else {
            return Ok(None);
        };
        let bytes = seg.read_batch(pos, &h)?;
        let hit = first_record(&self.dir, &bytes, &h, self.log_start_offset, |t| t == ts);
        Ok(hit.or(Some(TimestampOffset {
            timestamp: ts,
            offset: h.last_offset(),
            leader_epoch: h.partition_leader_epoch,
        })))
    }

    /// DeleteRecords: moves the log start offset to `offset` (<= high watermark), deleting the
    /// segments entirely below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        if offset > self.high_watermark || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.high_watermark,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        let now_ms = crate::clock::now_ms();
        self.delete_old_segments(now_ms, |seg, next_base, start| {
            next_base.unwrap_or(seg.next_offset()) <= start
        })?;
        self.after_log_start_moved()?;
        Ok(self.log_start_offset)
    }

    /// Deletes closed segments past retention.ms (by their newest timestamp) and while the log
    /// stays at least retention.bytes without them, oldest first, never beyond the high
    /// watermark. An expired non-empty active segment is rolled first. Returns segments deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize> {
        self.producer_state
            .remove_expired(now_ms, self.config.producer_id_expiration_ms);
        let start_before = self.log_start_offset;
        let mut deleted = 0;
        // Time and size retention are cleanup.policy `delete`'s; a compacted-only log keeps
        // its segments (the cleaner shrinks them).
        let retention_ms = if self.config.cleanup_delete {
            self.config.retention_ms
        } else {
            -1
        };
        if retention_ms >= 0 {
            deleted += self.delete_old_segments(now_ms, |seg, _, _| {
                now_ms.saturating_sub(seg.largest_timestamp()) > retention_ms
            })?;
        }
        let retention_bytes = if self.config.cleanup_delete {
            self.config.retention_bytes
        } else {
            -1
        };
        if retention_bytes >= 0 {
            let mut excess = i64::try_from(self.size_bytes())
                .unwrap_or(i64::MAX)
                .saturating_sub(retention_bytes);
            deleted += self.delete_old_segments(now_ms, |seg, _, _| {
                let size = i64::try_from(seg.size()).unwrap_or(i64::MAX);
                if excess - size >= 0 {
                    excess -= size;
                    true
                } else {
                    false
                }
            })?;
        }
        deleted += self.delete_old_segments(now_ms, |seg, next_base, start| {
            next_base.unwrap_or(seg.next_offset()) <= start
        })?;
        if self.log_start_offset != start_before {
            self.after_log_start_moved()?;
        }
        Ok(deleted)
    }

    /// Deletes the longest prefix of segments matching `predicate(segment, next base offset,
    /// log start)` whose data is all below the high watermark; an empty active segment is never
    /// deleted and a non-empty one is rolled first. Moves the log start offset past them.
    fn delete_old_segments(
        &mut self,
        now_ms: i64,
        mut predicate: impl FnMut(&LogSegment, Option<i64>, i64) -> bool,
    ) -> Result<usize> {
        let mut count = 0;
        for (i, seg) in self.segments.iter().enumerate() {
            let next_base = self.segments.get(i + 1).map(LogSegment::base_offset);
            let upper = next_base.unwrap_or(seg.next_offset());
            let last_and_empty = next_base.is_none() && seg.is_empty();
            if last_and_empty || upper > self.high_watermark || !predicate(seg, next_base, self.log_start_offset) {
                break;
            }
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        if count == self.segments.len() {
            self.roll(now_ms)?;
        }
        let removed: Vec<LogSegment> = self.segments.drain(..count).collect();
        self.generation += 1;
        if let Some(first) = self.segments.first() {
            self.log_start_offset = self.log_start_offset.max(first.base_offset());
        }
        self.high_watermark = self.high_watermark.max(self.log_start_offset);
        for seg in removed {
            tracing::info!(dir = %self.dir.display(), base_offset = seg.base_offset(), "deleting segment");
            seg.delete_files()?;
        }
        Ok(count)
    }

    /// Persists the log start offset and trims what depends on it.
    fn after_log_start_moved(&mut self) -> Result<()> {
        checkpoint::write_offset(&self.dir.join(LOG_START_OFFSET_CHECKPOINT), self.log_start_offset)?;
        self.epoch_cache.truncate_from_start(self.log_start_offset)?;
        self.producer_state.delete_snapshots_before(self.log_start_offset)?;
        self.recovery_point = self.recovery_point.max(self.log_start_offset);
        Ok(())
    }

    /// Records that `epoch` starts at `start_offset` (if newer than the latest epoch).
    pub fn assign_epoch_start_offset(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        self.epoch_cache.assign(epoch, start_offset)?;
        Ok(())
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epoch_cache.latest_epoch()
    }

    /// (largest epoch <= `epoch`, its end offset: the next epoch's start or the log end offset),
    /// with Kafka's edge cases: see `LeaderEpochCache::end_offset_for`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epoch_cache.end_offset_for(epoch, self.log_end_offset())
    }

    /// Flushes what is not yet durable, finalises the active segment's indexes, writes a
    /// producer snapshot (and, for a log keeping its own, the checkpoint files). Returns the
    /// offsets for the owner's log dir checkpoints. Segments below the recovery point were
    /// synced when it passed them and are not touched.
    pub fn close(mut self, now_ms: i64) -> Result<CheckpointOffsets> {
        self.check_writable()?;
        // The log data (and the transaction index) must be durable for the shutdown to be
        // clean. The rest only makes the next start quicker, and each piece is rebuilt without
        // its file: an offset or time index is completed from the log, producer state is
        // replayed from an older snapshot, an older checkpoint only means more to recover after
        // a later crash. So on a full disk those are skipped, with a warning, and the shutdown
        // stays clean.
        let mut skipped: Vec<(&str, String)> = Vec::new();
        if let Err(e) = self.active_mut()?.finish_writes() {
            skipped.push(("indexes", e.to_string()));
        }
        self.flush(now_ms)?;
        if let Err(e) = self.active_mut()?.sync_indexes()? {
            skipped.push(("indexes", e.to_string()));
        }
        let log_end = self.log_end_offset();
        match self.producer_state.write_snapshot(log_end) {
            Ok(()) => {
                let keep: Vec<i64> = self.segments.iter().map(LogSegment::base_offset).collect();
                for offset in self.producer_state.snapshot_offsets()? {
                    if offset != log_end && !keep.contains(&offset) {
                        fs::remove_file(self.dir.join(format!("{offset:020}.snapshot")))?;
                    }
                }
            }
            Err(e) => skipped.push(("producer snapshot", e.to_string())),
        }
        if self.own_checkpoints {
            let written = checkpoint::write_offset(&self.dir.join(RECOVERY_POINT_CHECKPOINT), log_end).and_then(|()| {
                checkpoint::write_offset(&self.dir.join(LOG_START_OFFSET_CHECKPOINT), self.log_start_offset)
            });
            if let Err(e) = written {
                skipped.push(("checkpoints", e.to_string()));
            }
        }
        for (what, error) in skipped {
            tracing::warn!(dir = %self.dir.display(), skipped = what, error = %error,
                "closing the log: could not write this (rebuilt at the next start)");
        }
        Ok(CheckpointOffsets {
            recovery_point: log_end,
            log_start_offset: self.log_start_offset,
        })
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}

/// One producer's state in a partition (Kafka's DescribeProducers fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerStateInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction, -1 if none.
    pub current_txn_start_offset: i64,
}

/// Applies a marker at `offset` to the producer state (append and recovery replay). For an
/// abort of an open transaction, returns its aborted-transaction index entry, whose last stable
/// offset is the partition's first unstable offset after the abort, or the offset after the marker.
pub(crate) fn apply_marker(
    producers: &mut crate::storage::producer_state::ProducerStateManager,
    marker: &EndTxnMarker,
    offset: i64,
    timestamp: i64,
) -> Option<AbortedTxn> {
    let first = producers.complete_txn(
        marker.producer_id,
        marker.producer_epoch,
        marker.coordinator_epoch,
        timestamp,
    )?;
    (marker.marker == MarkerType::Abort).then(|| AbortedTxn {
        producer_id: marker.producer_id,
        first_offset: first,
        last_offset: offset,
        last_stable_offset: producers.first_unstable_offset().unwrap_or(offset + 1),
    })
}

#[path = "follower.rs"]
mod follower;
#[path = "cleaner/log_side.rs"]
mod log_side;
pub use log_side::CleanCandidate;

#[cfg(test)]
#[path = "log_tests.rs"]
pub(crate) mod tests;
