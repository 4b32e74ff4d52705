//! One partition replica hosted by this broker, modelled as Kafka's `Partition`: the log, its
//! role (leader or follower, with the leader epoch), the leader's replication state (ISR and
//! follower positions, see `isr`), and the offsets published to waiters.
//!
//! Three offsets are watched: the log end offset (LEO, for followers' fetches waiting for
//! data), the durable offset (what this replica holds under its flush policy: the LEO at once
//! when no flush is due, the fsynced offset otherwise; acks=1 waits for it) and the high
//! watermark (HW: what consumers may read and acks=-1 waits for). On a leader the HW is the
//! smallest durable offset / log end across the ISR (`leader` module); on a follower it is the
//! leader's, capped by its own log end.
//!
//! Two locks, always taken in this order: the replication state, then the log. Every critical
//! section is a bounded piece of work (an append's write, a read's plan), never an await;
//! reads' preads and fsyncs run outside them.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::BrokerError;
use crate::replication::isr::LeaderState;
use crate::storage::{
    AbortedTxn, CheckpointOffsets, EndTxnMarker, FlushRequest, LogAppendInfo, LogConfig, ProducerStateInfo,
    StorageError, TimestampOffset, UnifiedLog,
};

/// What an append needs before the producer may be answered.
#[derive(Debug)]
pub struct AppendOutcome {
    pub info: LogAppendInfo,
    /// The leader epoch the records were appended at.
    pub leader_epoch: i32,
    /// The HW must reach this offset (exclusive end of the append) for the append to count as
    /// acknowledged.
    pub required_offset: i64,
    /// The flush policy requires an fsync before the HW may pass this append.
    pub flush_required: bool,
}

/// Why [`Partition::wait_committed`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncommitted {
    /// This replica no longer leads at the append's epoch: the append may or may not survive.
    NotLeader,
    TimedOut,
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
    /// The broker it follows (-1: none, or itself when leading).
    leader_id: AtomicI32,
    /// The leader's view of the replicas; `None` unless leading.
    replication: Mutex<Option<LeaderState>>,
    log: Mutex<UnifiedLog>,
    high_watermark: watch::Sender<i64>,
    durable: watch::Sender<i64>,
    log_end: watch::Sender<i64>,
    /// `min.insync.replicas` of its topic.
    min_insync_replicas: AtomicU32,
    /// Set while this partition waits in the flusher's queue (at most one entry each).
    pub(crate) flush_scheduled: AtomicBool,
    /// Its byte and message counters (summed per topic in the metrics).
    pub metrics: crate::metrics::TopicMetrics,
    /// Whether its replication is throttled (see `quota`).
    pub throttle: crate::replication::quota::ReplicaThrottle,
}

/// Sets a watched offset, waking waiters only when it changes.
fn publish(tx: &watch::Sender<i64>, value: i64) {
    tx.send_if_modified(|current| {
        if value != *current {
            *current = value;
            true
        } else {
            false
        }
    });
}

#[path = "leader.rs"]
mod leader;
pub use leader::{FollowerRead, IsrChange, ReplicationStatus};

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
        let leo = log.log_end_offset();
        let min_isr = log.config().min_insync_replicas;
        Ok(Partition {
            metrics: crate::metrics::TopicMetrics::default(),
            topic,
            topic_id,
            index,
            leader_epoch: AtomicI32::new(leader_epoch),
            leader: AtomicBool::new(false),
            leader_id: AtomicI32::new(-1),
            replication: Mutex::new(None),
            log: Mutex::new(log),
            high_watermark: watch::channel(hw).0,
            durable: watch::channel(leo).0,
            log_end: watch::channel(leo).0,
            min_insync_replicas: AtomicU32::new(min_isr),
            flush_scheduled: AtomicBool::new(false),
            throttle: Default::default(),
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

    /// Appends a producer's records as the leader.
    pub fn append_records_to_leader(&self, records: Bytes, now_ms: i64) -> Result<AppendOutcome, BrokerError> {
        // Inflating and compressing batches is CPU work: done before the append takes the lock.
        let (compact, compression) = {
            let log = self.log();
            let config = log.config();
            (
                config.cleanup_compact,
                config.compression.map(|c| (c, config.level_for(c))),
            )
        };
        if compact {
            let tp = format!("{}-{}", self.topic, self.index);
            crate::storage::records::check_keys(&records, &tp).map_err(BrokerError::Storage)?;
        }
        let records = match compression {
            Some((codec, level)) => {
                crate::storage::records::recompress(records, codec, level).map_err(BrokerError::Storage)?
            }
            None => records,
        };
        self.append_with(now_ms, None, |log, epoch| log.append_as_leader(records, epoch, now_ms))
    }

    /// Appends a coordinator's records as the leader, only while still leader at `epoch` (the
    /// epoch the coordinator loaded the partition with).
    pub fn append_records_at_epoch(
        &self,
        records: Bytes,
        epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, BrokerError> {
        self.append_with(now_ms, Some(epoch), |log, epoch| {
            log.append_as_leader(records, epoch, now_ms)
        })
    }

    /// The log's start and end offsets.
    pub fn log_range(&self) -> (i64, i64) {
        let log = self.log();
        (log.log_start_offset(), log.log_end_offset())
    }

    /// Reads from `fetch_offset` up to the log end, past the high watermark (a coordinator
    /// loading its partition). The file reads run without the lock.
    pub fn read_to_log_end(&self, fetch_offset: i64, max_bytes: usize) -> Result<Bytes, StorageError> {
        let plan = {
            let log = self.log();
            log.read_plan(fetch_offset, max_bytes, log.log_end_offset(), true)?
        };
        Ok(plan.read()?.records)
    }

    /// Appends a transaction marker (from the transaction coordinator) as the leader.
    pub fn append_marker(&self, marker: &EndTxnMarker, now_ms: i64) -> Result<AppendOutcome, BrokerError> {
        self.append_with(now_ms, None, |log, epoch| log.append_marker(marker, epoch, now_ms))
    }

    /// Runs an append under the log lock. Without a flush due the append is durable at once;
    /// the HW then moves as the ISR allows (at once when the leader is the whole ISR).
    fn append_with(
        &self,
        now_ms: i64,
        expected_epoch: Option<i32>,
        append: impl FnOnce(&mut UnifiedLog, i32) -> Result<LogAppendInfo, StorageError>,
    ) -> Result<AppendOutcome, BrokerError> {
        let mut log = self.log();
        if !self.is_leader() {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        if expected_epoch.is_some_and(|e| e != self.leader_epoch()) {
            return Err(BrokerError::FencedLeaderEpoch);
        }
        let leader_epoch = self.leader_epoch();
        let info = append(&mut log, leader_epoch)?;
        let required_offset = info.last_offset + 1;
        let flush_required = log.needs_flush(now_ms);
        let leo = log.log_end_offset();
        drop(log);
        publish(&self.log_end, leo);
        if !flush_required {
            publish(&self.durable, leo);
            self.maybe_advance_high_watermark();
        }
        Ok(AppendOutcome {
            info,
            leader_epoch,
            required_offset,
            flush_required,
        })
    }

    /// Every producer's state in this partition (DescribeProducers).
    pub fn producer_states(&self) -> Vec<ProducerStateInfo> {
        self.log().producer_states()
    }

    fn publish_high_watermark(&self, hw: i64) {
        publish(&self.high_watermark, hw);
    }

    /// Waits until an append made as leader at `epoch` is committed: the high watermark
    /// reaches `offset` while this replica still leads at `epoch`. Leadership lost first (a
    /// follower's high watermark says nothing of what it appended as leader, even once it
    /// passes the offset) is [`Uncommitted::NotLeader`]; `deadline` passing is
    /// [`Uncommitted::TimedOut`]. Kafka's delayed produce, completed on a role change.
    pub async fn wait_committed(&self, epoch: i32, offset: i64, deadline: Instant) -> Result<(), Uncommitted> {
        let mut hw = self.subscribe_high_watermark();
        loop {
            // The HW first, then the role: leading at `epoch` now means the HW read was set
            // while leading at it (an epoch is never led twice).
            let reached = *hw.borrow_and_update() >= offset;
            if !self.is_leader() || self.leader_epoch() != epoch {
                return Err(Uncommitted::NotLeader);
            }
            if reached {
                return Ok(());
            }
            // Role changes also wake the watch (`notify_role_change`).
            if tokio::time::timeout_at(deadline, hw.changed()).await.is_err() {
                return Err(Uncommitted::TimedOut);
            }
        }
    }

    /// Wakes the high watermark's waiters without changing it: the role or epoch changed.
    fn notify_role_change(&self) {
        self.high_watermark.send_modify(|_| {});
    }

    /// A receiver that wakes whenever the durable offset moves (acks=1 under a flush policy).
    pub fn subscribe_durable(&self) -> watch::Receiver<i64> {
        self.durable.subscribe()
    }

    pub fn durable_offset(&self) -> i64 {
        *self.durable.borrow()
    }

    /// A receiver that wakes whenever the log end moves (followers waiting for data).
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
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
        self.min_insync_replicas
            .store(config.min_insync_replicas, Ordering::Relaxed);
        self.log().set_config(config);
        self.maybe_advance_high_watermark();
    }

    /// How dirty the log is, if it is compacted (the log cleaner's choice, metrics).
    pub fn clean_candidate(&self, now_ms: i64) -> Option<crate::storage::log::CleanCandidate> {
        self.log().clean_candidate(now_ms)
    }

    /// A log cleaner round on this partition's log (blocking: run on a blocking thread). The
    /// log's lock is held only for the round's snapshot and each install.
    pub fn clean(
        &self,
        map: &mut crate::storage::OffsetMap,
        throttle: &mut crate::storage::Throttle,
        now_ms: i64,
    ) -> Result<Option<crate::storage::CleanStats>, StorageError> {
        crate::storage::cleaner::clean_log(|| self.log(), map, throttle, now_ms)
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

    /// Second half: record the sync; what it covered is durable, and the HW may pass it.
    pub fn complete_flush(&self, up_to_offset: i64, now_ms: i64) -> Result<(), StorageError> {
        self.log().complete_flush(up_to_offset, now_ms)?;
        if up_to_offset > self.durable_offset() {
            publish(&self.durable, up_to_offset);
        }
        self.maybe_advance_high_watermark();
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

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
