//! Loading a partition directory at open (Kafka's `LogLoader`).
//!
//! Segments are found by file name. After a clean shutdown they are trusted (indexes are read
//! from disk and only rebuilt if missing or inconsistent). After an unclean one every segment
//! that may hold data at or after the recovery point is re-validated batch by batch (header
//! sanity and CRC32C). A torn tail of the last segment is truncated; invalid bytes anywhere
//! else are kept, skipped to the next valid batch and reported (see `damage`): they never cost
//! the valid data after them. Producer state is then rebuilt from the newest snapshot at or
//! below the log end plus a replay of the batches after it.

use std::fs;
use std::path::Path;

use crate::storage::checkpoint::{self, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT};
use crate::storage::config::LogConfig;
use crate::storage::control;
use crate::storage::damage::DAMAGE_SUFFIX;
use crate::storage::error::{Result, StorageError};
use crate::storage::leader_epoch::LeaderEpochCache;
use crate::storage::log::apply_marker;
use crate::storage::producer_state::ProducerStateManager;
use crate::storage::segment::{self, LogSegment, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX};

/// Everything `UnifiedLog::open` needs from the directory.
pub(crate) struct LoadedLog {
    pub segments: Vec<LogSegment>,
    pub log_start_offset: i64,
    pub recovery_point: i64,
    pub producer_state: ProducerStateManager,
    pub epoch_cache: LeaderEpochCache,
}

/// Removes leftovers: `*.tmp` files and index files without a `.log`.
fn clean_directory(dir: &Path, bases: &[i64]) -> Result<()> {
    for dirent in fs::read_dir(dir)? {
        let dirent = dirent?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        let orphan_index = [INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX, DAMAGE_SUFFIX]
            .iter()
            .any(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|stem| stem.len() == 20)
                    .and_then(|stem| stem.parse::<i64>().ok())
                    .is_some_and(|base| !bases.contains(&base))
            });
        if name.ends_with(".tmp") || orphan_index {
            tracing::info!(file = name, "removing leftover file");
            fs::remove_file(dirent.path())?;
        }
    }
    Ok(())
}

fn segment_base_offsets(dir: &Path) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    for dirent in fs::read_dir(dir)? {
        if let Some(base) = dirent?.file_name().to_str().and_then(segment::parse_log_file_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Opens every segment, recovering the ones that need it.
fn load_segments(
    dir: &Path,
    config: &LogConfig,
    clean: bool,
    recovery_point: i64,
    now_ms: i64,
) -> Result<Vec<LogSegment>> {
    let bases = segment_base_offsets(dir)?;
    clean_directory(dir, &bases)?;
    let mut segments: Vec<LogSegment> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let mut seg = LogSegment::open(dir, base, config, now_ms)?;
        let below_recovery_point = next_base.is_some_and(|n| n <= recovery_point);
        if clean || below_recovery_point {
            seg.load_trusted(dir, config, next_base.is_none())?;
        } else {
            // Only the last segment can have a torn tail; damage anywhere else is kept and
            // skipped, and never costs the segments after it (see `damage`).
            seg.recover(config, next_base.is_none())?;
        }
        if let Some(prev) = segments.last_mut() {
            if prev.next_offset() > base {
                return Err(StorageError::Corruption(format!(
                    "segment {base} overlaps the previous one, which ends at {}",
                    prev.next_offset()
                )));
            }
            // Sealed: its file is reopened when a read needs it (loading thousands of
            // segments must not hold a descriptor each).
            prev.seal();
            prev.release_file();
        }
        segments.push(seg);
    }
    Ok(segments)
}

/// Loads (or creates) the partition directory `dir`.
/// `saved_recovery_point` and `saved_log_start` come from the owner's log dir checkpoints;
/// without them the per-partition files (if any) are read. The log start is the largest of
/// the two sources (DeleteRecords and retention write the per-partition file at once).
pub(crate) fn load(
    dir: &Path,
    config: &LogConfig,
    clean: bool,
    now_ms: i64,
    saved_recovery_point: Option<i64>,
    saved_log_start: Option<i64>,
) -> Result<LoadedLog> {
    fs::create_dir_all(dir)?;
    let start_file = checkpoint::read_offset(&dir.join(LOG_START_OFFSET_CHECKPOINT))?;
    let start_ckpt = start_file.max(saved_log_start).unwrap_or(0);
    let recovery_ckpt = match saved_recovery_point {
        Some(rp) => rp,
        None => checkpoint::read_offset(&dir.join(RECOVERY_POINT_CHECKPOINT))?.unwrap_or(0),
    };
    let mut segments = load_segments(dir, config, clean, recovery_ckpt, now_ms)?;

    let first_base = segments.first().map(LogSegment::base_offset);
    let mut log_start_offset = start_ckpt.max(first_base.unwrap_or(0));
    let log_end = segments.last().map(LogSegment::next_offset).unwrap_or(log_start_offset);
    if segments.is_empty() || log_start_offset > log_end {
        // No data, or recovery cut everything at or above the log start: start afresh there.
        for seg in segments.drain(..) {
            seg.delete_files()?;
        }
        log_start_offset = log_start_offset.max(log_end);
        segments.push(LogSegment::create(dir, log_start_offset, config, now_ms)?);
        checkpoint::fsync_dir(dir)?;
    }
    let log_end = segments.last().map(LogSegment::next_offset).unwrap_or(log_start_offset);

    let mut epoch_cache = LeaderEpochCache::load(dir)?;
    epoch_cache.truncate_from_end(log_end)?;
    epoch_cache.truncate_from_start(log_start_offset)?;

    for seg in &mut segments {
        seg.load_txn_index()?;
    }
    let mut producer_state = ProducerStateManager::new(dir);
    let snapshot = producer_state.load_latest_snapshot(log_end)?;
    let replay_from = snapshot.unwrap_or(log_start_offset).max(log_start_offset);
    if snapshot.is_none() || replay_from < log_end {
        replay_producers(&mut segments, &mut producer_state, replay_from)?;
    }

    let recovery_point = if clean {
        log_end
    } else {
        recovery_ckpt.clamp(log_start_offset, log_end)
    };
    Ok(LoadedLog {
        segments,
        log_start_offset,
        recovery_point,
        producer_state,
        epoch_cache,
    })
}

/// Replays producer batches with base offset >= `from` into the producer state.
pub(crate) fn replay_producers(
    segments: &mut [LogSegment],
    producer_state: &mut ProducerStateManager,
    from: i64,
) -> Result<()> {
    for seg in segments.iter_mut().filter(|s| s.next_offset() > from) {
        let Some((pos, _)) = seg.find_batch(from)? else {
            continue;
        };
        // Markers of this segment that aborted a transaction: re-added to its `.txnindex` (a
        // no-op for entries it already has).
        let mut aborted = Vec::new();
        let reader: &LogSegment = seg;
        reader.for_each_batch(pos, |h, pos| {
            if h.base_offset < from {
                return Ok(true);
            }
            if h.is_control() {
                let bytes = reader.read_batch(pos, h)?;
                match control::decode_end_txn_marker(&bytes) {
                    Ok(marker) => aborted.extend(apply_marker(producer_state, &marker, h.base_offset, h.max_timestamp)),
                    Err(e) => tracing::warn!(offset = h.base_offset, error = %e, "skipping unreadable control batch"),
                }
            } else {
                producer_state.replay(h);
            }
            Ok(true)
        })?;
        for entry in aborted {
            seg.append_aborted_txn(entry)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    //! Recovery scenarios driven through `UnifiedLog::open` (helpers shared with log_tests.rs).

    use super::*;
    use crate::storage::batch::BatchHeader;
    use crate::storage::log::tests::{batch, log_files, open, read_all, small_config, NOW};

    #[test]
    fn torn_tail_is_truncated_on_unclean_open() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut log = open(dir.path(), small_config(), true)?;
        for i in 0..12 {
            log.append_as_leader(batch(2, NOW + i), 0, NOW)?;
        }
        let segments = log.num_segments();
        let last_batch_len = batch(2, NOW).len() as u64;
        drop(log); // crash: no close
        let files = log_files(dir.path(), ".log")?;
        let active = files.last().ok_or_else(|| StorageError::Corruption("no log".into()))?;
        let last_size = fs::metadata(active)?.len();
        let f = fs::OpenOptions::new().write(true).open(active)?;
        f.set_len(last_size - 7)?;
        let log = open(dir.path(), small_config(), false)?;
        assert_eq!(log.num_segments(), segments);
        assert_eq!(log.log_end_offset(), 22, "the torn last batch [22, 23] is gone");
        assert_eq!(fs::metadata(active)?.len(), last_size - last_batch_len);
        assert_eq!(read_all(&log)?.len(), 11);
        assert_eq!(log.high_watermark(), 22);
        Ok(())
    }

    /// Every batch readable from the start, stepping one offset past each one a read reports
    /// corrupt; returns the batches and the offsets reported.
    fn read_around_damage(log: &crate::storage::UnifiedLog) -> Result<(Vec<BatchHeader>, Vec<i64>)> {
        let (mut found, mut corrupt) = (Vec::new(), Vec::new());
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            match log.read(offset, 1 << 20, log.log_end_offset(), true) {
                Err(StorageError::CorruptRecord(_)) => {
                    corrupt.push(offset);
                    offset += 1;
                }
                Err(e) => return Err(e),
                Ok(data) => {
                    assert!(!data.records.is_empty(), "no data at {offset}");
                    for item in crate::storage::batch::batches(&data.records) {
                        let (_, h) = item?;
                        offset = h.next_offset();
                        found.push(h);
                    }
                }
            }
        }
        Ok((found, corrupt))
    }

    #[test]
    fn corrupt_batch_in_the_middle_is_skipped_and_reported_never_cut() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut log = open(dir.path(), LogConfig::default(), true)?;
        let len = batch(2, NOW).len() as u64;
        for i in 0..6 {
            log.append_as_leader(batch(2, NOW + i), 0, NOW)?;
        }
        drop(log);
        let path = dir.path().join("00000000000000000000.log");
        let mut bytes = fs::read(&path)?;
        let at = (2 * len + 40) as usize; // inside the third batch, after its CRC field
        bytes[at] ^= 0xff;
        fs::write(&path, &bytes)?;
        // A clean open trusts the data.
        let log = open(dir.path(), LogConfig::default(), true)?;
        assert_eq!(log.log_end_offset(), 12);
        drop(log);
        let before = crate::storage::damage::corruptions_found();
        let log = open(dir.path(), LogConfig::default(), false)?;
        assert!(crate::storage::damage::corruptions_found() > before, "counted");
        assert_eq!(log.log_end_offset(), 12, "the batches after the damage stay");
        assert_eq!(fs::metadata(&path)?.len(), 6 * len, "nothing cut");
        let (found, corrupt) = read_around_damage(&log)?;
        assert_eq!(
            found.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
            [0, 2, 6, 8, 10]
        );
        assert_eq!(corrupt, [4, 5]);
        // The damage is remembered when the segment is trusted again (clean restart).
        log.close(NOW)?;
        let mut log = open(dir.path(), LogConfig::default(), true)?;
        assert_eq!(read_around_damage(&log)?.1, [4, 5]);
        // Appends continue after it.
        log.append_as_leader(batch(2, NOW), 0, NOW)?;
        assert_eq!(log.log_end_offset(), 14);
        Ok(())
    }

    #[test]
    fn corruption_in_an_old_segment_costs_no_later_segment() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut log = open(dir.path(), small_config(), true)?;
        for i in 0..20 {
            log.append_as_leader(batch(2, NOW + i), 0, NOW)?;
        }
        let segments = log.num_segments();
        assert!(segments >= 3);
        drop(log);
        // Recovery point 0: every segment is re-validated. Corrupt the first one's second batch
        // and the tail of the second segment.
        fs::write(dir.path().join(RECOVERY_POINT_CHECKPOINT), "0\n0\n")?;
        let files = log_files(dir.path(), ".log")?;
        let len = batch(2, NOW).len();
        let (first, second) = (&files[0], &files[1]);
        let mut bytes = fs::read(first)?;
        bytes[len + 50] ^= 1;
        fs::write(first, &bytes)?;
        let mut bytes = fs::read(second)?;
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        fs::write(second, &bytes)?;
        let log = open(dir.path(), small_config(), false)?;
        assert_eq!((log.num_segments(), log.log_end_offset()), (segments, 40));
        let (found, corrupt) = read_around_damage(&log)?;
        assert_eq!(found.len(), 18, "every batch but the two damaged ones");
        assert_eq!(corrupt.len(), 4);
        assert_eq!(corrupt[..2], [2, 3]);
        Ok(())
    }

    #[test]
    fn segments_below_recovery_point_are_not_truncated() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut log = open(dir.path(), small_config(), true)?;
        for i in 0..20 {
            log.append_as_leader(batch(2, NOW + i), 0, NOW)?;
        }
        log.flush(NOW)?;
        let flushed = log.recovery_point();
        while log.num_segments() < 5 {
            log.append_as_leader(batch(2, NOW), 0, NOW)?;
        }
        let end = log.log_end_offset();
        drop(log);
        // As the owner's checkpoint (or a close) would have persisted it.
        fs::write(dir.path().join(RECOVERY_POINT_CHECKPOINT), format!("0\n{flushed}\n"))?;
        let first = dir.path().join("00000000000000000000.log");
        let mut bytes = fs::read(&first)?;
        bytes[100] ^= 1;
        fs::write(&first, &bytes)?;
        // The damaged segment is below the persisted recovery point: trusted, not re-validated.
        let log = open(dir.path(), small_config(), false)?;
        assert_eq!(log.log_end_offset(), end);
        // With its index gone it must be rebuilt, which finds the damage: kept and reported.
        drop(log);
        fs::remove_file(dir.path().join("00000000000000000000.index"))?;
        let log = open(dir.path(), small_config(), false)?;
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(read_around_damage(&log)?.1, [0, 1]);
        Ok(())
    }

    #[test]
    fn missing_or_corrupt_index_is_rebuilt() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut log = open(
            dir.path(),
            LogConfig {
                index_interval_bytes: 100,
                ..LogConfig::default()
            },
            true,
        )?;
        for i in 0..40 {
            log.append_as_leader(batch(1, NOW + i), 0, NOW)?;
        }
        log.close(NOW)?;
        let index = dir.path().join("00000000000000000000.index");
        let time_index = dir.path().join("00000000000000000000.timeindex");
        let original = fs::read(&index)?;
        let original_time = fs::read(&time_index)?;
        assert!(original.len() >= 8 * 10);
        fs::remove_file(&index)?;
        let log = open(
            dir.path(),
            LogConfig {
                index_interval_bytes: 100,
                ..LogConfig::default()
            },
            true,
        )?;
        assert_eq!(fs::read(&index)?, original, "rebuilt index equals the original");
        assert_eq!(
            log.read(25, 1, 40, true)
                .map(|d| BatchHeader::parse(&d.records).map(|h| h.base_offset))??,
            25
        );
        log.close(NOW)?;
        // A torn index file (not a multiple of 8 bytes) is rebuilt too.
        fs::write(&index, &original[..original.len() - 3])?;
        fs::write(&time_index, &original_time[..5])?;
        let log = open(
            dir.path(),
            LogConfig {
                index_interval_bytes: 100,
                ..LogConfig::default()
            },
            true,
        )?;
        assert_eq!(fs::read(&index)?, original);
        assert_eq!(log.fetch_offset_by_timestamp(NOW + 30)?.map(|t| t.offset), Some(30));
        Ok(())
    }

    #[test]
    fn every_cut_point_recovers_the_whole_batch_prefix() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p-0");
        let mut log = open(&path, LogConfig::default(), true)?;
        let mut ends = vec![0u64];
        for i in 0..8 {
            log.append_as_leader(batch(1 + (i % 3), NOW + i64::from(i)), 0, NOW)?;
            ends.push(log.size_bytes());
        }
        log.close(NOW)?;
        let seg = path.join("00000000000000000000.log");
        let pristine = fs::read(&seg)?;
        for cut in (0..pristine.len()).step_by(7) {
            fs::write(&seg, &pristine[..cut])?;
            fs::write(path.join(RECOVERY_POINT_CHECKPOINT), "0\n0\n")?;
            for f in log_files(&path, ".snapshot")? {
                fs::remove_file(f)?;
            }
            let log = open(&path, LogConfig::default(), false)?;
            let whole = ends.iter().rev().find(|&&e| e <= cut as u64).copied().unwrap_or(0);
            assert_eq!(log.size_bytes(), whole, "cut at {cut}");
            let batches_kept = ends.iter().filter(|&&e| e > 0 && e <= whole).count();
            assert_eq!(read_all(&log)?.len(), batches_kept);
            drop(log);
        }
        Ok(())
    }
}
