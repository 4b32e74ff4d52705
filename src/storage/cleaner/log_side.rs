//! The log's side of cleaning, under its lock and short: what may be cleaned and a snapshot of
//! it ([`UnifiedLog::clean_task`]), and putting a cleaned segment in place of the ones it was
//! made from ([`UnifiedLog::install_cleaned`]). Everything slow (reading, filtering, writing and
//! syncing the new files) runs between the two without the lock (see `cleaner::run`).
//!
//! A child module of `log`, so it works on `UnifiedLog`'s own fields.

use std::collections::HashMap;

use super::UnifiedLog;
use crate::storage::cleaner::{swap_file, CleanTask, CleanedSegment, SegmentSnapshot, LOG_CLEANED_SUFFIX};
use crate::storage::error::{Result, StorageError};
use crate::storage::segment::{self, LOG_SUFFIX};

/// How dirty a compacted log is, for choosing the one to clean first (Kafka's `LogToClean`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CleanCandidate {
    /// Bytes of whole sealed segments between the first dirty offset and the first uncleanable
    /// one.
    pub dirty_bytes: u64,
    /// Bytes of the cleanable part of the log (already clean + dirty).
    pub cleanable_bytes: u64,
    /// dirty / cleanable (0 when nothing is cleanable).
    pub dirty_ratio: f64,
    /// The ratio reached min.cleanable.dirty.ratio, or a dirty record is older than
    /// max.compaction.lag.ms.
    pub needs_cleaning: bool,
}

impl UnifiedLog {
    /// Where the next cleaning round starts (the end of the last one), within the log.
    pub fn first_dirty_offset(&self) -> i64 {
        let leo = self.log_end_offset();
        if self.first_dirty < self.log_start_offset || self.first_dirty > leo {
            self.log_start_offset
        } else {
            self.first_dirty
        }
    }

    /// The first offset the cleaner may not touch: the active segment, anything at or past the
    /// last stable offset (and so the high watermark), and segments with records younger than
    /// min.compaction.lag.ms. Returned as the base of the first segment not wholly below it.
    fn first_uncleanable_offset(&self, now_ms: i64) -> i64 {
        let active_base = self.segments.last().map_or(0, |s| s.base_offset());
        let mut bound = active_base.min(self.last_stable_offset());
        if self.config.min_compaction_lag_ms > 0 {
            let young = self
                .segments
                .iter()
                .find(|s| now_ms.saturating_sub(s.largest_timestamp()) < self.config.min_compaction_lag_ms);
            if let Some(s) = young {
                bound = bound.min(s.base_offset());
            }
        }
        // Whole segments only: the end of the last segment wholly below the bound.
        let mut end = self.segments.first().map_or(0, |s| s.base_offset());
        for next in self.segments.iter().skip(1) {
            if next.base_offset() > bound {
                break;
            }
            end = next.base_offset();
        }
        end
    }

    /// How dirty this log is; `None` unless cleanup.policy has `compact`.
    pub fn clean_candidate(&self, now_ms: i64) -> Option<CleanCandidate> {
        if !self.config.cleanup_compact {
            return None;
        }
        let first_dirty = self.first_dirty_offset();
        let end = self.first_uncleanable_offset(now_ms);
        let (mut clean, mut dirty) = (0u64, 0u64);
        let mut oldest_dirty: Option<i64> = None;
        for (i, seg) in self.segments.iter().enumerate() {
            let next_base = self.segments.get(i + 1).map(|s| s.base_offset());
            let Some(next_base) = next_base.filter(|&n| n <= end) else {
                break;
            };
            if next_base <= first_dirty {
                clean += seg.size();
            } else {
                dirty += seg.size();
                if seg.size() > 0 {
                    let first_ts = seg.first_batch_timestamp().unwrap_or(seg.largest_timestamp());
                    oldest_dirty = Some(oldest_dirty.map_or(first_ts, |t: i64| t.min(first_ts)));
                }
            }
        }
        let cleanable = clean + dirty;
        let ratio = if cleanable == 0 {
            0.0
        } else {
            dirty as f64 / cleanable as f64
        };
        let overdue = oldest_dirty.is_some_and(|t| now_ms.saturating_sub(t) > self.config.max_compaction_lag_ms);
        Some(CleanCandidate {
            dirty_bytes: dirty,
            cleanable_bytes: cleanable,
            dirty_ratio: ratio,
            needs_cleaning: dirty > 0 && (ratio >= self.config.min_cleanable_dirty_ratio || overdue),
        })
    }

    /// A snapshot of everything a cleaning round needs, or `None` when there is nothing to clean.
    pub fn clean_task(&self, now_ms: i64) -> Result<Option<CleanTask>> {
        if !self.config.cleanup_compact {
            return Ok(None);
        }
        let first_dirty = self.first_dirty_offset();
        let end = self.first_uncleanable_offset(now_ms);
        if end <= first_dirty {
            return Ok(None);
        }
        let mut segments = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            let Some(next_base) = self.segments.get(i + 1).map(|s| s.base_offset()).filter(|&n| n <= end) else {
                break;
            };
            segments.push(SegmentSnapshot {
                base_offset: seg.base_offset(),
                end_offset: next_base,
                size: seg.size(),
                file: seg.file()?,
            });
        }
        let Some(first_base) = segments.first().map(|s| s.base_offset) else {
            return Ok(None);
        };
        let mut aborted = self.collect_aborted_txns(first_base, end);
        aborted.sort_by_key(|t| (t.first_offset, t.last_offset));
        aborted.dedup();
        let mut active_producers = HashMap::new();
        for p in self.producer_state.producers() {
            active_producers.insert(p.producer_id, (p.batches.back().map(|b| b.last_offset), p.epoch));
        }
        Ok(Some(CleanTask {
            dir: self.dir.clone(),
            config: self.config.clone(),
            generation: self.generation,
            segments,
            first_dirty,
            end_offset: end,
            aborted,
            active_producers,
            now_ms,
        }))
    }

    /// Replaces the segments `cleaned` was made from by it, unless the log changed them since
    /// the task was taken (`generation`: retention, DeleteRecords or a truncation removed
    /// segments); `Ok(false)` then, and the caller deletes the new files. The rename of the new
    /// `.log` to its swap name is the commit point (see `cleaner` for recovery). `first_dirty`:
    /// the round's end, set once its last segment is in place. Renames and unlinks only: the
    /// new files were synced before, the directory is synced by the next flush.
    pub fn install_cleaned(
        &mut self,
        cleaned: CleanedSegment,
        generation: u64,
        first_dirty: Option<i64>,
    ) -> Result<bool> {
        if generation != self.generation {
            return Ok(false);
        }
        let CleanedSegment { mut segment, replaces } = cleaned;
        let base = segment.base_offset();
        let start = self
            .segments
            .iter()
            .position(|s| s.base_offset() == base)
            .ok_or_else(|| StorageError::Corruption(format!("cleaned segment {base} has no segment to replace")))?;
        let count = self
            .segments
            .iter()
            .skip(start)
            .take_while(|s| s.base_offset() < replaces)
            .count();
        let sealed = self.segments.len().saturating_sub(1);
        if count == 0 || start + count > sealed {
            return Err(StorageError::Corruption(format!(
                "cleaned segment {base}..{replaces} does not match sealed segments"
            )));
        }
        let cleaned_log = segment::segment_file(&self.dir, base, LOG_CLEANED_SUFFIX);
        let swap = swap_file(&self.dir, base, replaces);
        // The commit point: from here the new segment is the log's, on disk (recovery
        // completes the install) and so in memory, whatever fails below.
        std::fs::rename(&cleaned_log, &swap)?;
        let old: Vec<_> = self.segments.drain(start..start + count).collect();
        let finished = old
            .into_iter()
            .try_for_each(|seg| seg.delete_files())
            .and_then(|()| segment.rename_to_final(&self.dir))
            .and_then(|()| {
                Ok(std::fs::rename(
                    &swap,
                    segment::segment_file(&self.dir, base, LOG_SUFFIX),
                )?)
            });
        segment.seal();
        if finished.is_ok() {
            segment.release_file();
        }
        self.segments.insert(start, segment);
        self.generation += 1;
        self.dir_dirty = true;
        if let Err(e) = finished {
            // The next start completes the install from the swap file; until then the log
            // takes no writes (its files are not where they belong).
            self.poisoned.store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(e);
        }
        if let Some(offset) = first_dirty {
            self.first_dirty = offset;
        }
        tracing::debug!(dir = %self.dir.display(), base_offset = base, end = replaces, "installed cleaned segment");
        Ok(true)
    }

    /// The generation a task must still see at install.
    pub(crate) fn generation_now(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
impl UnifiedLog {
    /// Rolls the active segment now (tests).
    pub(crate) fn roll_at_end(&mut self, now_ms: i64) -> Result<()> {
        self.roll(now_ms)
    }
}
