//! Loading a partition directory at open (Kafka's `LogLoader`).
//!
//! Segments are found by file name. After a clean shutdown they are trusted (indexes are read
//! from disk and only rebuilt if missing or inconsistent). After an unclean one every segment
//! that may hold data at or after the recovery point is re-validated batch by batch (header
//! sanity and CRC32C); the first invalid or torn byte truncates that segment and every later
//! segment is deleted. Damage found in a segment below the recovery point is refused
//! (`Corruption`) rather than silently cut. Producer state is then rebuilt from the newest
//! snapshot at or below the log end plus a replay of the batches after it.

use std::fs;
use std::io;
use std::path::Path;

use crate::storage::checkpoint::{self, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT};
use crate::storage::config::LogConfig;
use crate::storage::error::{Result, StorageError};
use crate::storage::leader_epoch::LeaderEpochCache;
use crate::storage::producer_state::ProducerStateManager;
use crate::storage::segment::{self, LogSegment, INDEX_SUFFIX, TIME_INDEX_SUFFIX};

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
        let orphan_index = [INDEX_SUFFIX, TIME_INDEX_SUFFIX].iter().any(|suffix| {
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
        if let Some(base) = dirent?
            .file_name()
            .to_str()
            .and_then(segment::parse_log_file_name)
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn delete_segment_files(dir: &Path, base: i64) -> io::Result<()> {
    for suffix in [segment::LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        match fs::remove_file(segment::segment_file(dir, base, suffix)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
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
            seg.load_trusted(dir, config)?;
        } else {
            let cut = seg.recover(config, true)?;
            if cut > 0 {
                for &later in bases.get(i + 1..).unwrap_or(&[]) {
                    tracing::warn!(
                        base_offset = later,
                        "deleting segment after a truncated one"
                    );
                    delete_segment_files(dir, later)?;
                }
                segments.push(seg);
                break;
            }
        }
        if let Some(prev) = segments.last() {
            if prev.next_offset() > base {
                return Err(StorageError::Corruption(format!(
                    "segment {base} overlaps the previous one, which ends at {}",
                    prev.next_offset()
                )));
            }
        }
        segments.push(seg);
    }
    Ok(segments)
}

/// Loads (or creates) the partition directory `dir`.
pub(crate) fn load(dir: &Path, config: &LogConfig, clean: bool, now_ms: i64) -> Result<LoadedLog> {
    fs::create_dir_all(dir)?;
    let start_ckpt = checkpoint::read_offset(&dir.join(LOG_START_OFFSET_CHECKPOINT))?.unwrap_or(0);
    let recovery_ckpt = checkpoint::read_offset(&dir.join(RECOVERY_POINT_CHECKPOINT))?.unwrap_or(0);
    let mut segments = load_segments(dir, config, clean, recovery_ckpt, now_ms)?;

    let first_base = segments.first().map(LogSegment::base_offset);
    let mut log_start_offset = start_ckpt.max(first_base.unwrap_or(0));
    let log_end = segments
        .last()
        .map(LogSegment::next_offset)
        .unwrap_or(log_start_offset);
    if segments.is_empty() || log_start_offset > log_end {
        // No data, or recovery cut everything at or above the log start: start afresh there.
        for seg in segments.drain(..) {
            seg.delete_files()?;
        }
        log_start_offset = log_start_offset.max(log_end);
        segments.push(LogSegment::create(dir, log_start_offset, config, now_ms)?);
        checkpoint::fsync_dir(dir)?;
    }
    let log_end = segments
        .last()
        .map(LogSegment::next_offset)
        .unwrap_or(log_start_offset);

    let mut epoch_cache = LeaderEpochCache::load(dir)?;
    epoch_cache.truncate_from_end(log_end)?;
    epoch_cache.truncate_from_start(log_start_offset)?;

    let mut producer_state = ProducerStateManager::new(dir);
    let snapshot = producer_state.load_latest_snapshot(log_end)?;
    let replay_from = snapshot.unwrap_or(log_start_offset).max(log_start_offset);
    if snapshot.is_none() || replay_from < log_end {
        replay_producers(&segments, &mut producer_state, replay_from)?;
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
    segments: &[LogSegment],
    producer_state: &mut ProducerStateManager,
    from: i64,
) -> Result<()> {
    for seg in segments.iter().filter(|s| s.next_offset() > from) {
        let Some((pos, _)) = seg.find_batch(from)? else {
            continue;
        };
        seg.for_each_batch(pos, |h, _| {
            if h.base_offset >= from {
                producer_state.replay(h);
            }
            Ok(true)
        })?;
    }
    Ok(())
}
