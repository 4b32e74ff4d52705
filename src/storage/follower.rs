//! The follower's side of the log (Kafka's `UnifiedLog.appendAsFollower` and `truncateTo`):
//! batches appended as the leader wrote them (offsets, leader epochs and CRCs kept, bytes
//! unchanged), with the producer state, open transactions, aborted-transaction index and
//! leader-epoch cache rebuilt from what is replicated; and truncation of a divergent tail.
//!
//! A child module of `log`, so it works on `UnifiedLog`'s own fields.

use std::io::IoSlice;

use bytes::Bytes;

use super::{apply_marker, LogAppendInfo, UnifiedLog};
use crate::storage::batch::{self, BatchHeader};
use crate::storage::control;
use crate::storage::error::{Result, StorageError};
use crate::storage::recovery::replay_producers;
use crate::storage::segment::LogSegment;

impl UnifiedLog {
    /// Appends batches fetched from the leader. They must parse, pass their CRC and start at or
    /// after the log end with increasing offsets; nothing else of the client's rules applies
    /// (the leader checked them). All batches or none are written.
    pub fn append_as_follower(&mut self, records: &Bytes, now_ms: i64) -> Result<LogAppendInfo> {
        self.check_writable()?;
        let mut headers: Vec<(usize, BatchHeader)> = Vec::new();
        let mut expected = self.log_end_offset();
        for item in batch::batches(records) {
            let (pos, h) = item?;
            let bytes = records
                .get(pos..pos + h.total_size())
                .ok_or_else(|| StorageError::CorruptRecord("batch exceeds the buffer".into()))?;
            batch::verify_crc(&h, bytes)?;
            h.check_stored_counts()?;
            if h.base_offset < expected {
                return Err(StorageError::InvalidRecord(format!(
                    "replicated batch at offset {} is below the log end {expected}",
                    h.base_offset
                )));
            }
            expected = h.next_offset();
            headers.push((pos, h));
        }
        let (Some(&(_, first)), Some(&(_, last))) = (headers.first(), headers.last()) else {
            return Err(StorageError::InvalidRecord("no record batches".into()));
        };
        let max_timestamp = headers.iter().map(|(_, h)| h.max_timestamp).max().unwrap_or(-1);
        let base = self.active()?.base_offset();
        let overflow = last.last_offset().saturating_sub(base) > i64::from(i32::MAX);
        if overflow
            || first.base_offset > self.log_end_offset()
            || self.active()?.should_roll(
                &self.config,
                records.len() as u64,
                max_timestamp,
                last.last_offset(),
                now_ms,
            )
        {
            // A gap (the leader's log starts later, or was compacted) also starts a segment,
            // whose name must be its first offset.
            self.roll_at(first.base_offset, now_ms)?;
        }
        for (_, h) in &headers {
            if h.partition_leader_epoch >= 0
                && self
                    .epoch_cache
                    .latest_epoch()
                    .is_none_or(|e| h.partition_leader_epoch > e)
            {
                self.epoch_cache.assign(h.partition_leader_epoch, h.base_offset)?;
            }
        }
        let mut slices: Vec<IoSlice<'_>> = headers
            .iter()
            .map(|(pos, h)| IoSlice::new(records.get(*pos..*pos + h.total_size()).unwrap_or(&[])))
            .collect();
        let only_headers: Vec<BatchHeader> = headers.iter().map(|(_, h)| *h).collect();
        let active = self
            .segments
            .last_mut()
            .ok_or_else(|| StorageError::Corruption("log has no segments".into()))?;
        let result = active.append(&only_headers, &mut slices, &self.config);
        if let Err(StorageError::Corruption(_)) = &result {
            self.poisoned.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        result?;
        let mut record_count = 0u32;
        for (pos, h) in &headers {
            if h.is_control() {
                let bytes = records.get(*pos..*pos + h.total_size()).unwrap_or(&[]);
                match control::decode_end_txn_marker(bytes) {
                    Ok(marker) => {
                        if let Some(entry) = apply_marker(&mut self.producer_state, &marker, h.base_offset, now_ms) {
                            self.active_mut()?.append_aborted_txn(entry)?;
                        }
                    }
                    Err(e) => tracing::warn!(dir = %self.dir.display(), offset = h.base_offset, error = %e,
                        "replicated control batch is not a transaction marker; kept"),
                }
            } else {
                if h.has_producer_id() {
                    self.producer_state.replay(h);
                }
                record_count = record_count.saturating_add(u32::try_from(h.record_count).unwrap_or(0));
            }
        }
        Ok(LogAppendInfo {
            first_offset: first.base_offset,
            last_offset: last.last_offset(),
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset,
            record_count,
            bytes: records.len(),
            duplicate: false,
        })
    }

    /// Removes every batch at or past `offset` (a follower's divergent tail, or what an
    /// unclean election lost): segments after it are deleted, the one holding it is cut, and
    /// the producer state, epoch cache, high watermark and recovery point go back with it.
    /// Returns the new log end offset (at or below `offset`: a batch is never split).
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        if offset >= self.log_end_offset() {
            // Nothing to cut, but an epoch this log began as leader and never wrote a batch
            // in starts at its end: the new leader does not know it, and a follower that kept
            // it would ask with it forever (each answer a divergence at the same offset).
            // Kafka's truncateTo likewise truncates the epoch cache from the log end.
            let leo = self.log_end_offset();
            self.epoch_cache.truncate_at(leo)?;
            return Ok(leo);
        }
        if offset <= self.log_start_offset {
            return self.truncate_fully_and_start_at(self.log_start_offset);
        }
        let now_ms = crate::clock::now_ms();
        self.generation += 1;
        while self.segments.len() > 1 && self.segments.last().is_some_and(|s| s.base_offset() >= offset) {
            if let Some(seg) = self.segments.pop() {
                seg.delete_files()?;
            }
        }
        let config = self.config.clone();
        self.active_mut()?.truncate_to(offset, &config)?;
        self.dir_dirty = true;
        let leo = self.log_end_offset();
        self.after_truncation(leo, now_ms)?;
        tracing::info!(dir = %self.dir.display(), asked = offset, log_end = leo, "truncated the log");
        Ok(leo)
    }

    /// Deletes everything and starts an empty log at `offset` (a follower behind the leader's
    /// log start).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<i64> {
        let now_ms = crate::clock::now_ms();
        self.generation += 1;
        for seg in self.segments.drain(..) {
            seg.delete_files()?;
        }
        self.segments
            .push(LogSegment::create(&self.dir, offset, &self.config, now_ms)?);
        self.log_start_offset = offset;
        self.dir_dirty = true;
        self.epoch_cache.truncate_from_start(offset)?;
        self.after_truncation(offset, now_ms)?;
        Ok(offset)
    }

    /// What follows any truncation to `leo`: epochs past it forgotten, the producer state
    /// rebuilt (a snapshot at or below it, then replay), the high watermark and recovery point
    /// no further than it.
    fn after_truncation(&mut self, leo: i64, _now_ms: i64) -> Result<()> {
        self.epoch_cache.truncate_at(leo)?;
        let snapshot = self.producer_state.load_latest_snapshot(leo)?;
        let from = snapshot.unwrap_or(self.log_start_offset).max(self.log_start_offset);
        if from < leo {
            replay_producers(&mut self.segments, &mut self.producer_state, from)?;
        }
        if self.high_watermark > leo {
            self.high_watermark = leo;
        }
        if self.recovery_point > leo {
            self.recovery_point = leo;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::super::tests::{batch, marker, open, pbatch, read_all, small_config, txn, NOW};
    use super::*;

    /// Copies everything the leader has past the follower's end, in fetch-sized reads.
    fn replicate(leader: &UnifiedLog, follower: &mut UnifiedLog) -> Result<()> {
        while follower.log_end_offset() < leader.log_end_offset() {
            let data = leader
                .read(follower.log_end_offset(), 700, leader.log_end_offset(), true)?
                .records;
            follower.append_as_follower(&data, NOW)?;
        }
        Ok(())
    }

    fn leader_with_history(dir: &std::path::Path) -> Result<UnifiedLog> {
        let mut leader = open(dir, small_config(), true)?;
        leader.append_as_leader(batch(2, NOW), 0, NOW)?;
        leader.append_as_leader(pbatch(7, 0, 0, 3), 0, NOW)?;
        leader.append_as_leader(txn(8, 0, 2), 1, NOW)?;
        leader.append_as_leader(pbatch(7, 0, 3, 2), 1, NOW)?;
        leader.append_marker(&marker(8, false), 1, NOW)?;
        leader.append_as_leader(txn(9, 0, 1), 3, NOW)?;
        for i in 0..10 {
            leader.append_as_leader(batch(3, NOW + i), 3, NOW)?;
        }
        Ok(leader)
    }

    #[test]
    fn a_follower_holds_the_leaders_bytes_producers_transactions_and_epochs() -> Result<()> {
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let mut leader = leader_with_history(a.path())?;
        leader.update_high_watermark(leader.log_end_offset());
        let mut follower = open(b.path(), small_config(), true)?;
        replicate(&leader, &mut follower)?;
        follower.update_high_watermark(follower.log_end_offset());
        assert_eq!(
            read_all(&follower)?,
            read_all(&leader)?,
            "the same batches, offsets and epochs"
        );
        assert!(follower.num_segments() > 1, "rolled as it went");
        assert_eq!(follower.producer_states(), leader.producer_states());
        assert_eq!(follower.last_stable_offset(), leader.last_stable_offset());
        let end = leader.log_end_offset();
        assert_eq!(
            follower.collect_aborted_txns(0, end),
            leader.collect_aborted_txns(0, end)
        );
        for epoch in 0..5 {
            assert_eq!(
                follower.end_offset_for_epoch(epoch),
                leader.end_offset_for_epoch(epoch),
                "epoch {epoch}"
            );
        }
        // A batch already held (or below the end) is refused; a gap starts a new segment.
        let again = leader.read(0, 100, end, true)?.records;
        assert!(matches!(
            follower.append_as_follower(&again, NOW),
            Err(StorageError::InvalidRecord(_))
        ));
        Ok(())
    }

    #[test]
    fn truncation_removes_the_tail_and_rebuilds_producer_state_to_it() -> Result<()> {
        let (a, b, c) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);
        let leader = leader_with_history(a.path())?;
        let mut follower = open(b.path(), small_config(), true)?;
        replicate(&leader, &mut follower)?;
        // Cut at pid 9's open transaction (offset 10, epoch 3's first batch): it and
        // everything after go.
        let leo = follower.truncate_to(10)?;
        assert_eq!(leo, 10);
        assert_eq!(follower.end_offset_for_epoch(3), None, "epoch 3 started at 10: gone");
        assert_eq!(follower.end_offset_for_epoch(1), Some((1, 10)));
        follower.update_high_watermark(leo);
        assert_eq!(follower.last_stable_offset(), 10, "pid 9's transaction is gone with it");
        // The same prefix replicated afresh has the same state.
        let mut prefix = open(c.path(), small_config(), true)?;
        while prefix.log_end_offset() < 10 {
            let data = leader.read(prefix.log_end_offset(), 1, 10, true)?.records;
            prefix.append_as_follower(&data, NOW)?;
        }
        assert_eq!(read_all(&follower)?, read_all(&prefix)?);
        assert_eq!(follower.producer_states(), prefix.producer_states());
        assert_eq!(follower.collect_aborted_txns(0, 10), prefix.collect_aborted_txns(0, 10));
        // As a new leader it goes on from there: pid 7 continues at sequence 5.
        follower.append_as_leader(pbatch(7, 0, 5, 1), 4, NOW)?;
        assert!(matches!(
            follower.append_as_leader(pbatch(7, 0, 9, 1), 4, NOW),
            Err(StorageError::OutOfOrderSequence(_))
        ));
        // Reopened after a crash, the truncated log holds what it held.
        let held = read_all(&follower)?;
        drop(follower);
        let follower = open(b.path(), small_config(), false)?;
        assert_eq!(read_all(&follower)?, held);
        Ok(())
    }

    #[test]
    fn an_epoch_begun_at_the_log_end_without_batches_goes_with_a_truncation_there() -> Result<()> {
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let leader = leader_with_history(a.path())?;
        let mut old_leader = open(b.path(), small_config(), true)?;
        replicate(&leader, &mut old_leader)?;
        let end = old_leader.log_end_offset();
        // It led at epoch 5 and died before writing; the new leader (epoch 6) never saw 5 and
        // answers its fetch with a divergence at its own end, the same offset.
        old_leader.assign_epoch_start_offset(5, end)?;
        assert_eq!(old_leader.latest_epoch(), Some(5));
        assert_eq!(old_leader.truncate_to(end)?, end, "no batch to cut");
        assert_eq!(
            old_leader.latest_epoch(),
            Some(3),
            "the next fetch names the epoch both hold"
        );
        assert_eq!(old_leader.end_offset_for_epoch(3), Some((3, end)));
        drop(old_leader);
        let reopened = open(b.path(), small_config(), false)?;
        assert_eq!(reopened.latest_epoch(), Some(3), "persisted");
        Ok(())
    }

    #[test]
    fn a_follower_behind_the_leaders_start_begins_again_there() -> Result<()> {
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let leader = leader_with_history(a.path())?;
        let mut follower = open(b.path(), small_config(), true)?;
        follower.append_as_follower(&leader.read(0, 100, 2, true)?.records, NOW)?;
        assert_eq!(follower.truncate_fully_and_start_at(20)?, 20);
        assert_eq!((follower.log_start_offset(), follower.log_end_offset()), (20, 20));
        let first = leader.read(20, 100, leader.log_end_offset(), true)?.records;
        let first_base = batch::batches(&first).next().transpose()?.map(|(_, h)| h.base_offset);
        follower.append_as_follower(&first, NOW)?;
        assert_eq!(read_all(&follower)?.first().map(|h| h.base_offset), first_base);
        Ok(())
    }
}
