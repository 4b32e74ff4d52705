//! One partition replica hosted by this broker, modelled as Kafka's `Partition`: the log, the
//! leader epoch, and the high watermark published to waiters.
//!
//! The high watermark (HW) is what consumers may read and what acks=-1 waits for. On a single
//! node it follows the log end offset (LEO) as soon as an append is durable under the flush
//! policy: immediately when no flush is due, after the group-commit fsync otherwise. With
//! followers, the same watch is advanced by the ISR's fetch positions instead; waiters (the
//! delayed produce and delayed fetch purgatory) do not change.
//!
//! The log sits behind a std `Mutex`: every critical section is a bounded piece of work (an
//! append's write, a read's plan), never an await; reads' preads and fsyncs run outside it.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::BrokerError;
use crate::storage::{
    AbortedTxn, CheckpointOffsets, EndTxnMarker, FlushRequest, LogAppendInfo, LogConfig, ProducerStateInfo,
    StorageError, TimestampOffset, UnifiedLog,
};

/// What an append needs before the producer may be answered.
#[derive(Debug)]
pub struct AppendOutcome {
    pub info: LogAppendInfo,
    /// The HW must reach this offset (exclusive end of the append) for the append to count as
    /// acknowledged.
    pub required_offset: i64,
    /// The flush policy requires an fsync before the HW may pass this append.
    pub flush_required: bool,
}

/// The result of reading a partition for a fetch.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub records: Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// read_committed: the aborted transactions overlapping the records returned.
    pub aborted_transactions: Option<Vec<AbortedTxn>>,
}

/// Offsets of a partition at one moment.
#[derive(Debug, Clone, Copy)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
}

#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub topic_id: Uuid,
    pub index: i32,
    leader_epoch: AtomicI32,
    /// This replica leads the partition (set by [`Partition::make_leader`] from the metadata).
    leader: AtomicBool,
    log: Mutex<UnifiedLog>,
    high_watermark: watch::Sender<i64>,
    /// Set while this partition waits in the flusher's queue (at most one entry each).
    pub(crate) flush_scheduled: AtomicBool,
    /// Its byte and message counters (summed per topic in the metrics).
    pub metrics: crate::metrics::TopicMetrics,
}

/// A partition's figures for the metrics endpoint, taken under one lock.
#[derive(Debug, Clone, Copy)]
pub struct PartitionStats {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub size_bytes: u64,
    pub producer_ids: usize,
}

impl Partition {
    /// A replica that leads nothing until the metadata says so ([`Partition::make_leader`]).
    pub fn new(topic: Arc<str>, topic_id: Uuid, index: i32, log: UnifiedLog) -> Result<Self, StorageError> {
        let leader_epoch = log.latest_epoch().unwrap_or(-1);
        let hw = log.high_watermark();
        let (tx, _) = watch::channel(hw);
        Ok(Partition {
            metrics: crate::metrics::TopicMetrics::default(),
            topic,
            topic_id,
            index,
            leader_epoch: AtomicI32::new(leader_epoch),
            leader: AtomicBool::new(false),
            log: Mutex::new(log),
            high_watermark: tx,
            flush_scheduled: AtomicBool::new(false),
        })
    }

    fn log(&self) -> MutexGuard<'_, UnifiedLog> {
        // The log's own state is consistent at every return from its methods; a panic in one
        // caller must not make the partition unusable for all others.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Relaxed)
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Becomes the leader at `epoch` (Kafka's `makeLeader`): the epoch starts at the log end in
    /// the leader-epoch cache, even before a record of it exists (a follower truncating
    /// against this log must find it). A stale epoch (an older image) changes nothing.
    pub fn make_leader(&self, epoch: i32) -> Result<(), StorageError> {
        let mut log = self.log();
        if epoch < self.leader_epoch() {
            return Ok(());
        }
        if log.latest_epoch().is_none_or(|latest| epoch > latest) {
            let leo = log.log_end_offset();
            log.assign_epoch_start_offset(epoch, leo)?;
        }
        self.leader_epoch.store(epoch, Ordering::Relaxed);
        self.leader.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops leading (another replica leads at `epoch`, or none does): produce and fetch get
    /// NOT_LEADER_OR_FOLLOWER here from now on.
    pub fn make_follower(&self, epoch: i32) {
        let _log = self.log(); // ordered with appends in progress
        if epoch >= self.leader_epoch() {
            self.leader_epoch.store(epoch, Ordering::Relaxed);
        }
        self.leader.store(false, Ordering::Release);
    }

    /// Appends a producer's records as the leader.
    pub fn append_records_to_leader(&self, records: Bytes, now_ms: i64) -> Result<AppendOutcome, BrokerError> {
        self.append_with(now_ms, |log, epoch| log.append_as_leader(records, epoch, now_ms))
    }

    /// Appends a transaction marker (from the transaction coordinator) as the leader.
    pub fn append_marker(&self, marker: &EndTxnMarker, now_ms: i64) -> Result<AppendOutcome, BrokerError> {
        self.append_with(now_ms, |log, epoch| log.append_marker(marker, epoch, now_ms))
    }

    /// Runs an append under the log lock; without a flush due, the HW follows the LEO at once.
    fn append_with(
        &self,
        now_ms: i64,
        append: impl FnOnce(&mut UnifiedLog, i32) -> Result<LogAppendInfo, StorageError>,
    ) -> Result<AppendOutcome, BrokerError> {
        let mut log = self.log();
        if !self.is_leader() {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        let info = append(&mut log, self.leader_epoch())?;
        let required_offset = info.last_offset + 1;
        let flush_required = log.needs_flush(now_ms);
        if !flush_required {
            let leo = log.log_end_offset();
            let hw = log.update_high_watermark(leo);
            drop(log);
            self.publish_high_watermark(hw);
        }
        Ok(AppendOutcome {
            info,
            required_offset,
            flush_required,
        })
    }

    /// Every producer's state in this partition (DescribeProducers).
    pub fn producer_states(&self) -> Vec<ProducerStateInfo> {
        self.log().producer_states()
    }

    fn publish_high_watermark(&self, hw: i64) {
        self.high_watermark.send_if_modified(|current| {
            if hw != *current {
                *current = hw;
                true
            } else {
                false
            }
        });
    }

    /// A receiver that wakes whenever the HW moves.
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// Reads for a consumer: whole batches below the HW, or below the last stable offset for
    /// read_committed, which also gets the aborted transactions among the records returned.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        min_one_message: bool,
        read_committed: bool,
    ) -> Result<PartitionRead, StorageError> {
        // The lock only for the plan (offsets, index lookups, file handles): the preads run
        // without it, so appends never wait for a read's I/O.
        let (plan, hw, lso, log_start) = {
            let log = self.log();
            let hw = log.high_watermark();
            let lso = log.last_stable_offset();
            let limit = if read_committed { lso } else { hw };
            let plan = log.read_plan(fetch_offset, max_bytes, limit, min_one_message)?;
            (plan, hw, lso, log.log_start_offset())
        };
        let data = plan.read()?;
        let aborted_transactions = read_committed.then(|| {
            let upper = crate::storage::batch::batches(&data.records)
                .filter_map(Result::ok)
                .last()
                .map_or(fetch_offset, |(_, h)| h.next_offset());
            if upper > fetch_offset {
                self.log().collect_aborted_txns(fetch_offset, upper)
            } else {
                Vec::new()
            }
        });
        Ok(PartitionRead {
            records: data.records,
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: log_start,
            aborted_transactions,
        })
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let log = self.log();
        PartitionOffsets {
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            high_watermark: log.high_watermark(),
            last_stable_offset: log.last_stable_offset(),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.log().size_bytes()
    }

    pub fn stats(&self) -> PartitionStats {
        let log = self.log();
        PartitionStats {
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            high_watermark: log.high_watermark(),
            last_stable_offset: log.last_stable_offset(),
            size_bytes: log.size_bytes(),
            producer_ids: log.producer_count(),
        }
    }

    pub fn fetch_offset_by_timestamp(&self, target_ms: i64) -> Result<Option<TimestampOffset>, StorageError> {
        self.log().fetch_offset_by_timestamp(target_ms)
    }

    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampOffset>, StorageError> {
        self.log().offset_of_max_timestamp()
    }

    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.log().end_offset_for_epoch(epoch)
    }

    pub fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        self.log().delete_records_before(offset)
    }

    pub fn set_config(&self, config: LogConfig) {
        self.log().set_config(config);
    }

    /// Closes idle sealed segments' files (see `storage::segment_file`).
    pub fn sweep_idle_files(&self) -> usize {
        self.log().sweep_idle_files()
    }

    pub fn needs_flush(&self, now_ms: i64) -> bool {
        self.log().needs_flush(now_ms)
    }

    /// First half of a group-commit flush: snapshot what must be synced.
    pub fn prepare_flush(&self) -> Result<Option<FlushRequest>, StorageError> {
        self.log().prepare_flush()
    }

    /// Second half: record the sync and let the HW pass what it covered.
    pub fn complete_flush(&self, up_to_offset: i64, now_ms: i64) -> Result<(), StorageError> {
        let mut log = self.log();
        log.complete_flush(up_to_offset, now_ms)?;
        let current = log.high_watermark();
        let hw = log.update_high_watermark(up_to_offset.max(current));
        drop(log);
        self.publish_high_watermark(hw);
        Ok(())
    }

    /// Housekeeping on the scheduler's tick: time-based roll and retention.
    pub fn run_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let mut log = self.log();
        log.maybe_roll_by_time(now_ms)?;
        log.apply_retention(now_ms)
    }

    /// What the log dir checkpoints record for this partition now.
    pub fn checkpoint_offsets(&self) -> CheckpointOffsets {
        self.log().checkpoint_offsets()
    }

    /// Flushes and closes the log (clean shutdown); the partition is unusable afterwards.
    /// Returns its final offsets for the log dir checkpoints.
    pub fn close(self, now_ms: i64) -> Result<CheckpointOffsets, StorageError> {
        let log = self.log.into_inner().unwrap_or_else(|p| p.into_inner());
        log.close(now_ms)
    }

    /// Deletes the log from disk.
    pub fn delete(self) -> Result<(), StorageError> {
        let log = self.log.into_inner().unwrap_or_else(|p| p.into_inner());
        log.delete()
    }
}
