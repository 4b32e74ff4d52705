//! The log cleaner (Kafka's `LogCleaner`): compaction of logs whose cleanup.policy has
//! `compact`, keeping at least the latest record of every key with offsets and order unchanged.
//!
//! A round over one log ([`clean_log`]) takes a snapshot under the log's lock
//! (`UnifiedLog::clean_task`: the sealed segments below the first uncleanable offset, the
//! aborted transactions, the producers' last batches), then without the lock builds the offset
//! map of the dirty section ([`OffsetMap`], bounded by `log.cleaner.dedupe.buffer.size`), and
//! rewrites the segments from the log start group by group (`run`), each group into one new
//! segment written as `<base>.log.cleaned` (+ indexes), fsynced, then installed under the lock
//! (`UnifiedLog::install_cleaned`). Reads and appends go on meanwhile: the lock is held only for
//! the snapshot and for each install's renames. Reads that planned on an old segment keep
//! reading its unlinked file. Reads and writes are paced by `log.cleaner.io.max.bytes.per.second`.
//!
//! Crash safety: an install renames the new `.log.cleaned` to `<base>-<end>.swap` (the commit
//! point: the name carries the offset range it replaces), deletes the old segments' files,
//! renames the new index files into place and finally the swap to `<base>.log`. At load
//! ([`complete_interrupted_installs`]) a swap means the install was committed: every old
//! segment file in its range goes and the swap becomes the `.log` (indexes missing after the
//! crash are rebuilt from it); `.cleaned` files without a swap are an uncommitted round and are
//! deleted. So a crash leaves either the old segments or the new one, never a mix.
//!
//! Where the last round ended (the first dirty offset) is kept per partition in
//! `cleaner-offset-checkpoint`; losing it only means cleaning clean data again.

pub mod offset_map;
mod run;

use std::collections::HashMap;
use std::fs::{self, File};
use std::ops::DerefMut;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::storage::log::CleanCandidate;
pub use offset_map::OffsetMap;
pub use run::CleanStats;

use crate::storage::checkpoint;
use crate::storage::config::LogConfig;
use crate::storage::error::Result;
use crate::storage::log::UnifiedLog;
use crate::storage::segment::{self, LogSegment, CLEANED_SUFFIX};
use crate::storage::txn_index::AbortedTxn;

/// The per-partition file holding the first dirty offset.
pub(crate) const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";
/// A cleaned segment's log file before it is committed.
pub(crate) const LOG_CLEANED_SUFFIX: &str = ".log.cleaned";
const SWAP_SUFFIX: &str = ".swap";

/// The broker's `log.cleaner.*` settings (Kafka's names and defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct CleanerConfig {
    /// log.cleaner.enable (true).
    pub enable: bool,
    /// log.cleaner.threads (1): logs cleaned at once; the dedupe buffer is split between them.
    pub threads: usize,
    /// log.cleaner.dedupe.buffer.size (128 MiB): memory for the offset maps of all threads.
    pub dedupe_buffer_size: usize,
    /// log.cleaner.io.max.bytes.per.second (unbounded): read + write rate of all threads.
    pub io_max_bytes_per_second: f64,
    /// log.cleaner.backoff.ms (15 s): sleep when no log needs cleaning.
    pub backoff_ms: u64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        Self {
            enable: true,
            threads: 1,
            dedupe_buffer_size: 128 << 20,
            io_max_bytes_per_second: f64::MAX,
            backoff_ms: 15_000,
        }
    }
}

/// Paces the cleaner's I/O to a rate (Kafka's `Throttler`): after each piece, sleeps for as
/// long as the bytes so far are ahead of the rate.
/// It also ends a round early when its owner stops (`with_stop`).
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: f64,
    start: Instant,
    bytes: u64,
    stop: Option<Arc<AtomicBool>>,
}

impl Throttle {
    pub fn new(bytes_per_second: f64) -> Self {
        Self {
            bytes_per_second,
            start: Instant::now(),
            bytes: 0,
            stop: None,
        }
    }

    /// A round paced by this throttle fails (cleanly: nothing installed is lost) once `stop`
    /// is set.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    pub(crate) fn pace(&mut self, bytes: u64) -> Result<()> {
        if self.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "the log cleaner is stopping").into());
        }
        if !self.bytes_per_second.is_finite() || self.bytes_per_second <= 0.0 || self.bytes_per_second >= f64::MAX {
            return Ok(());
        }
        self.bytes = self.bytes.saturating_add(bytes);
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
        // A fresh window every few seconds, so an idle period is not saved up as a burst.
        if elapsed > Duration::from_secs(5) {
            self.start = Instant::now();
            self.bytes = 0;
        }
        Ok(())
    }
}

/// A sealed segment as the snapshot saw it.
#[derive(Debug)]
pub(crate) struct SegmentSnapshot {
    pub base_offset: i64,
    /// The next segment's base offset.
    pub end_offset: i64,
    pub size: u64,
    pub file: Arc<File>,
}

/// What a cleaning round works on, taken under the log's lock (`UnifiedLog::clean_task`).
#[derive(Debug)]
pub struct CleanTask {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) generation: u64,
    /// From the first segment up to `end_offset`, whole segments.
    pub(crate) segments: Vec<SegmentSnapshot>,
    pub(crate) first_dirty: i64,
    /// The first uncleanable offset (a segment base).
    pub(crate) end_offset: i64,
    /// Aborted transactions overlapping the segments, by first offset.
    pub(crate) aborted: Vec<AbortedTxn>,
    /// Producer id -> (last data batch's last offset, epoch) of every producer in the state.
    pub(crate) active_producers: HashMap<i64, (Option<i64>, i16)>,
    pub(crate) now_ms: i64,
}

/// A new segment, written and synced, to replace the segments from its base up to `replaces`.
#[derive(Debug)]
pub struct CleanedSegment {
    pub(crate) segment: LogSegment,
    pub(crate) replaces: i64,
}

/// The commit name of a cleaned segment's log: its base and the end of the range it replaces.
pub(crate) fn swap_file(dir: &Path, base: i64, end: i64) -> PathBuf {
    dir.join(format!("{base:020}-{end:020}{SWAP_SUFFIX}"))
}

fn parse_swap_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(SWAP_SUFFIX)?;
    let (base, end) = stem.split_once('-')?;
    if base.len() != 20 || end.len() != 20 {
        return None;
    }
    Some((base.parse().ok()?, end.parse().ok()?))
}

/// Finishes the installs a crash interrupted and removes uncommitted cleaner output (see the
/// module docs). Runs before the segments are listed at load.
pub(crate) fn complete_interrupted_installs(dir: &Path) -> Result<()> {
    let mut swaps = Vec::new();
    let mut cleaned = Vec::new();
    for dirent in fs::read_dir(dir)? {
        let dirent = dirent?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(range) = parse_swap_name(name) {
            swaps.push(range);
        } else if name.ends_with(CLEANED_SUFFIX) {
            cleaned.push(dirent.path());
        }
    }
    for path in cleaned {
        tracing::info!(file = %path.display(), "removing an uncommitted cleaned segment file");
        fs::remove_file(path)?;
    }
    for (base, end) in swaps {
        tracing::info!(dir = %dir.display(), base_offset = base, end, "completing an interrupted cleaned segment install");
        for dirent in fs::read_dir(dir)? {
            let dirent = dirent?;
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.split('.').next().filter(|s| s.len() == 20) else {
                continue;
            };
            let Ok(seg_base) = stem.parse::<i64>() else { continue };
            let is_segment_file = [".log", ".index", ".timeindex", ".txnindex", ".damage"]
                .iter()
                .any(|suffix| name.get(20..) == Some(*suffix));
            if is_segment_file && seg_base >= base && seg_base < end {
                fs::remove_file(dirent.path())?;
            }
        }
        fs::rename(
            swap_file(dir, base, end),
            segment::segment_file(dir, base, segment::LOG_SUFFIX),
        )?;
    }
    checkpoint::fsync_dir(dir)?;
    Ok(())
}

/// Reads the first dirty offset saved for a partition (0 when none).
pub(crate) fn read_first_dirty(dir: &Path) -> Result<i64> {
    Ok(checkpoint::read_offset(&dir.join(CLEANER_CHECKPOINT))?.unwrap_or(0))
}

/// Cleans one log: a whole round when it needs one. `lock` takes the log's lock (held only for
/// the snapshot and each install). Returns the round's counts, `None` if nothing was cleaned.
pub fn clean_log<G: DerefMut<Target = UnifiedLog>>(
    lock: impl Fn() -> G,
    map: &mut OffsetMap,
    throttle: &mut Throttle,
    now_ms: i64,
) -> Result<Option<CleanStats>> {
    let task = {
        let log = lock();
        match log.clean_candidate(now_ms) {
            Some(c) if c.needs_cleaning => log.clean_task(now_ms)?,
            _ => None,
        }
    };
    let Some(task) = task else { return Ok(None) };
    clean_task(&lock, task, map, throttle)
}

/// Runs a round over `task` (see [`clean_log`]). A round the log outran (a truncation or
/// retention removed segments it read) is abandoned, its output deleted.
pub(crate) fn clean_task<G: DerefMut<Target = UnifiedLog>>(
    lock: &impl Fn() -> G,
    task: CleanTask,
    map: &mut OffsetMap,
    throttle: &mut Throttle,
) -> Result<Option<CleanStats>> {
    let mut stats = CleanStats::default();
    match run_round(lock, &task, map, throttle, &mut stats) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) if lock().generation_now() != task.generation && stats.segments_installed == 0 => {
            tracing::info!(dir = %task.dir.display(), error = %e, "log changed while cleaning; round abandoned");
        }
        Err(e) => return Err(e),
    }
    Ok(Some(stats))
}

/// The round's steps; false when nothing could be cleaned.
fn run_round<G: DerefMut<Target = UnifiedLog>>(
    lock: &impl Fn() -> G,
    task: &CleanTask,
    map: &mut OffsetMap,
    throttle: &mut Throttle,
    stats: &mut CleanStats,
) -> Result<bool> {
    let Some(map_end) = task.build_offset_map(map, throttle)? else {
        tracing::warn!(dir = %task.dir.display(), "log.cleaner.dedupe.buffer.size cannot hold the keys of one batch; not cleaned");
        return Ok(false);
    };
    let mut txns = run::TxnTracker::new(task);
    let mut generation = task.generation;
    let groups = task.groups(map_end);
    let last = groups.len().saturating_sub(1);
    for (i, group) in groups.into_iter().enumerate() {
        let cleaned = task.clean_group(group, map, map_end, &mut txns, throttle, stats)?;
        let first_dirty = (i == last).then_some(map_end);
        let mut log = lock();
        if generation != log.generation_now() {
            drop(log);
            run::discard(cleaned);
            tracing::info!(dir = %task.dir.display(), "log changed while cleaning; round abandoned");
            return Ok(true);
        }
        log.install_cleaned(cleaned, generation, first_dirty)?;
        generation = log.generation_now();
        drop(log);
        stats.segments_installed += 1;
    }
    checkpoint::fsync_dir(&task.dir)?;
    checkpoint::write_offset(&task.dir.join(CLEANER_CHECKPOINT), map_end)?;
    Ok(true)
}

#[cfg(test)]
mod tests;
