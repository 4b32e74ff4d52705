//! One log segment: `<20-digit base offset>.log` plus its `.index` and `.timeindex`.
//!
//! The `.log` file holds v2 batches back to back exactly as the log wrote them. Appends go through
//! one vectored write (rewritten 17-byte header prefixes interleaved with the untouched batch
//! bytes), so the data reaches the OS before `append` returns. Reads use `pread` into one buffer.
//! The segment also tracks what Kafka tracks per segment: next offset, largest timestamp and the
//! batch holding it, the first batch's timestamp (for segment.ms) and the bytes since the last
//! index entry.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::storage::batch::{self, BatchHeader, BATCH_HEADER_LEN, CRC_START};
use crate::storage::config::LogConfig;
use crate::storage::damage::{self, Damage, DAMAGE_SUFFIX};
use crate::storage::error::{Result, StorageError};
use crate::storage::index::{OffsetIndex, TimeIndex};
use crate::storage::segment_file::SegmentFile;
pub(crate) use crate::storage::txn_index::TXN_INDEX_SUFFIX;
use crate::storage::txn_index::{AbortedTxn, TxnIndex};

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Read-ahead used when scanning a segment sequentially (recovery, index rebuild).
const SCAN_CHUNK: usize = 1 << 20;

/// `<dir>/<20-digit base offset><suffix>`.
pub(crate) fn segment_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// Parses `<20 digits>.log` into a base offset.
pub(crate) fn parse_log_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(LOG_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Reads a file sequentially with a read-ahead buffer, for scans over many small batches.
struct Scanner<'a> {
    file: &'a File,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> Scanner<'a> {
    fn new(file: &'a File, end: u64) -> Self {
        Self {
            file,
            end,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// `len` (<= SCAN_CHUNK) bytes at `pos`; the caller guarantees `pos + len <= end`.
    fn slice(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if pos < self.buf_start || pos + len as u64 > buf_end {
            let want = (self.end.saturating_sub(pos)).min(SCAN_CHUNK as u64) as usize;
            self.buf.resize(want.max(len), 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.buf_start = pos;
        }
        let from = (pos - self.buf_start) as usize;
        self.buf
            .get(from..from + len)
            .ok_or_else(|| io::Error::other("scan buffer out of range"))
    }

    /// CRC32C of `[from, to)`, streamed in chunks.
    fn crc(&mut self, from: u64, to: u64) -> io::Result<u32> {
        let mut crc = 0u32;
        let mut pos = from;
        while pos < to {
            let len = (to - pos).min(SCAN_CHUNK as u64) as usize;
            crc = crc32c::crc32c_append(crc, self.slice(pos, len)?);
            pos += len as u64;
        }
        Ok(crc)
    }
}

/// Result of scanning a segment from position 0.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    /// Bytes of valid batches from the start of the file.
    pub valid_bytes: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub invalid: Option<String>,
}

/// The header of the batch at `pos` of `file`.
fn read_header(file: &File, path: &Path, pos: u64) -> Result<BatchHeader> {
    let mut buf = [0u8; BATCH_HEADER_LEN];
    file.read_exact_at(&mut buf, pos)?;
    BatchHeader::parse(&buf).map_err(|e| StorageError::Corruption(format!("{} at position {pos}: {e}", path.display())))
}

/// A read of one segment taken under the log's lock and run without it: the bytes below `size`
/// never change while the segment exists (appends go past it; truncation, which only a
/// recovery or a follower does, makes a later read short, which the caller treats as empty).
#[derive(Debug)]
pub(crate) struct SegmentReader {
    file: Arc<File>,
    path: PathBuf,
    size: u64,
    /// Where the offset index places the batch wanted (at or before it).
    start: u64,
    damaged: Vec<Damage>,
}

impl SegmentReader {
    /// Position and header of the first batch whose last offset is >= `offset`.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        if let Some(d) = self.damaged.iter().find(|d| d.holds(offset)) {
            return Err(StorageError::CorruptRecord(format!(
                "offset {offset} lies in corrupt bytes [{}, {}) of {}",
                d.start,
                d.end,
                self.path.display()
            )));
        }
        let mut pos = self.start;
        while pos < self.size {
            if let Some(d) = self.damaged.iter().find(|d| d.start == pos) {
                pos = d.end;
                continue;
            }
            let h = read_header(&self.file, &self.path, pos)?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Whole batches starting with the one holding `fetch_offset`, none whose last offset is
    /// >= `max_offset`, within `max_bytes` (a first batch larger than that whole when
    /// `min_one_message`). `None` if no batch of this segment reaches `fetch_offset`.
    pub(crate) fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_message: bool,
    ) -> Result<Option<Bytes>> {
        let Some((pos, first)) = self.find_batch(fetch_offset)? else {
            return Ok(None);
        };
        if first.last_offset() >= max_offset {
            return Ok(Some(Bytes::new()));
        }
        // Never past the next damaged range: only whole valid batches are served.
        let limit = self
            .damaged
            .iter()
            .filter(|d| d.start > pos)
            .map(|d| d.start)
            .min()
            .unwrap_or(self.size);
        let available = usize::try_from(limit - pos).unwrap_or(usize::MAX);
        let mut to_read = max_bytes.min(available);
        if first.total_size() > to_read {
            if !min_one_message || first.total_size() > available {
                return Ok(Some(Bytes::new()));
            }
            to_read = first.total_size();
        }
        let mut buf = BytesMut::zeroed(to_read);
        self.file.read_exact_at(&mut buf, pos)?;
        let mut end = 0;
        for item in batch::batches(&buf) {
            let Ok((start, h)) = item else { break };
            if h.last_offset() >= max_offset {
                break;
            }
            end = start + h.total_size();
        }
        buf.truncate(end);
        Ok(Some(buf.freeze()))
    }
}

/// One segment of a partition log.
#[derive(Debug)]
pub(crate) struct LogSegment {
    base_offset: i64,
    log: SegmentFile,
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    txn_index: TxnIndex,
    bytes_since_last_index_entry: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    rolling_base_timestamp: Option<i64>,
    created_ms: i64,
    next_offset: i64,
    /// Invalid byte ranges recovery skipped (see `damage`); usually empty.
    damaged: Vec<Damage>,
}

/// Appended to the names of a segment's files while the log cleaner writes them (see `cleaner`).
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";

impl LogSegment {
    fn with_files(dir: &Path, base_offset: i64, log: File, size: u64, config: &LogConfig, now_ms: i64) -> Self {
        Self::with_file_names(dir, base_offset, log, size, config, now_ms, "")
    }

    /// `extra` is appended to every file name (`CLEANED_SUFFIX`, or nothing).
    fn with_file_names(
        dir: &Path,
        base_offset: i64,
        log: File,
        size: u64,
        config: &LogConfig,
        now_ms: i64,
        extra: &str,
    ) -> Self {
        let path = |suffix: &str| segment_file(dir, base_offset, &format!("{suffix}{extra}"));
        Self {
            base_offset,
            log: SegmentFile::new(path(LOG_SUFFIX), log),
            size,
            offset_index: OffsetIndex::empty(path(INDEX_SUFFIX), base_offset, config.segment_index_bytes),
            time_index: TimeIndex::empty(path(TIME_INDEX_SUFFIX), base_offset, config.segment_index_bytes),
            txn_index: TxnIndex::empty(path(TXN_INDEX_SUFFIX)),
            bytes_since_last_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            rolling_base_timestamp: None,
            created_ms: now_ms,
            next_offset: base_offset,
            damaged: Vec::new(),
        }
    }

    /// Creates a new empty segment (its three files) at `base_offset`.
    pub(crate) fn create(dir: &Path, base_offset: i64, config: &LogConfig, now_ms: i64) -> Result<Self> {
        Self::create_with(dir, base_offset, config, now_ms, "")
    }

    /// [`Self::create`] with the log cleaner's file names (`<base>.log.cleaned`, ...); see
    /// [`Self::rename_to_final`].
    pub(crate) fn create_cleaned(dir: &Path, base_offset: i64, config: &LogConfig, now_ms: i64) -> Result<Self> {
        // A leftover of an aborted round would make create_new fail.
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX] {
            remove_if_exists(&segment_file(dir, base_offset, &format!("{suffix}{CLEANED_SUFFIX}")))?;
        }
        Self::create_with(dir, base_offset, config, now_ms, CLEANED_SUFFIX)
    }

    fn create_with(dir: &Path, base_offset: i64, config: &LogConfig, now_ms: i64, extra: &str) -> Result<Self> {
        let path = segment_file(dir, base_offset, &format!("{LOG_SUFFIX}{extra}"));
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => {
                    StorageError::Corruption(format!("segment {} already exists", path.display()))
                }
                _ => e.into(),
            })?;
        let mut seg = Self::with_file_names(dir, base_offset, log, 0, config, now_ms, extra);
        seg.offset_index.rewrite()?;
        seg.time_index.rewrite()?;
        // Index entries reach their files at flush or roll: no descriptor held until then.
        seg.offset_index.release_handle();
        seg.time_index.release_handle();
        Ok(seg)
    }

    /// Opens an existing segment without reading it. The caller then runs `load_trusted` (clean
    /// shutdown, before the recovery point) or `recover`.
    pub(crate) fn open(dir: &Path, base_offset: i64, config: &LogConfig, now_ms: i64) -> Result<Self> {
        let path = segment_file(dir, base_offset, LOG_SUFFIX);
        let log = OpenOptions::new().read(true).append(true).open(&path)?;
        let meta = log.metadata()?;
        let created_ms = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .unwrap_or(now_ms);
        let mut seg = Self::with_files(dir, base_offset, log, meta.len(), config, created_ms);
        seg.damaged = damage::load(&segment_file(dir, base_offset, DAMAGE_SUFFIX))?;
        Ok(seg)
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    #[cfg(test)]
    pub(crate) fn offset_index(&self) -> &OffsetIndex {
        &self.offset_index
    }

    /// Largest timestamp for retention: the max record timestamp, or the file's modification time
    /// for a segment without timestamps (Kafka's fallback).
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            return self.max_timestamp;
        }
        self.log
            .get()
            .and_then(|f| f.metadata())
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .unwrap_or(self.created_ms)
    }

    pub(crate) fn set_config(&mut self, config: &LogConfig) {
        self.offset_index.set_max_index_bytes(config.segment_index_bytes);
        self.time_index.set_max_index_bytes(config.segment_index_bytes);
    }

    fn read_header_at(&self, pos: u64) -> Result<BatchHeader> {
        read_header(&*self.log.get()?, self.log.path(), pos)
    }

    /// The segment is no longer the active one: its file may be closed while idle.
    pub(crate) fn seal(&mut self) {
        self.log.seal();
    }

    /// Closes the segment's file now (a sealed segment just loaded; a read reopens it).
    pub(crate) fn release_file(&self) {
        self.log.release();
    }

    /// Closes the file of a sealed segment not read since the last sweep (see `segment_file`).
    pub(crate) fn sweep_file(&self) -> bool {
        self.log.sweep()
    }

    /// What a read of `offset` onwards needs, to run without the log's lock: the file, the
    /// size written so far and where the offset index says to start.
    pub(crate) fn reader(&self, offset: i64) -> Result<SegmentReader> {
        Ok(SegmentReader {
            file: self.log.get()?,
            path: self.log.path().to_path_buf(),
            size: self.size,
            start: u64::from(self.offset_index.lookup(offset).1),
            damaged: self.damaged.clone(),
        })
    }

    /// Records a batch (already in the file at `position`) in the indexes and running stats.
    fn track_batch(&mut self, h: &BatchHeader, position: u64, index_interval_bytes: u64) {
        if self.rolling_base_timestamp.is_none() {
            self.rolling_base_timestamp = Some(h.max_timestamp);
        }
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.base_offset;
        }
        if self.bytes_since_last_index_entry > index_interval_bytes {
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            self.offset_index.append(h.last_offset(), position);
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += h.total_size() as u64;
        self.next_offset = h.next_offset();
    }

    /// Scans `[from, size)` calling `visit` per batch; stops at the first batch that does not
    /// parse, does not fit, has bad counts, goes backwards in offsets, overflows the relative
    /// offset or (with `verify_crc`) fails its CRC.
    fn scan(
        &self,
        from: u64,
        verify_crc: bool,
        mut visit: impl FnMut(&BatchHeader, u64) -> Result<bool>,
    ) -> Result<ScanOutcome> {
        let file = self.log.get()?;
        let mut scanner = Scanner::new(&file, self.size);
        let mut pos = from;
        let mut min_offset = self.base_offset;
        let fail = |pos: u64, why: String| ScanOutcome {
            valid_bytes: pos,
            invalid: Some(why),
        };
        while pos < self.size {
            if let Some(d) = self.damaged.iter().find(|d| d.start == pos) {
                pos = d.end;
                min_offset = min_offset.max(d.resume_offset.min(i64::MAX - 1));
                continue;
            }
            if self.size - pos < BATCH_HEADER_LEN as u64 {
                return Ok(fail(pos, format!("torn header at position {pos}")));
            }
            let h = match BatchHeader::parse(scanner.slice(pos, BATCH_HEADER_LEN)?) {
                Ok(h) => h,
                Err(e) => return Ok(fail(pos, format!("position {pos}: {e}"))),
            };
            let end = pos + h.total_size() as u64;
            if end > self.size {
                return Ok(fail(pos, format!("torn batch at position {pos}")));
            }
            if let Err(e) = h.check_stored_counts() {
                return Ok(fail(pos, format!("position {pos}: {e}")));
            }
            if h.base_offset < min_offset || h.last_offset().saturating_sub(self.base_offset) > i64::from(i32::MAX) {
                return Ok(fail(
                    pos,
                    format!("position {pos}: offset {} out of sequence", h.base_offset),
                ));
            }
            if verify_crc && scanner.crc(pos + CRC_START as u64, end)? != h.crc {
                return Ok(fail(pos, format!("position {pos}: CRC mismatch")));
            }
            min_offset = h.next_offset();
            if !visit(&h, pos)? {
                return Ok(ScanOutcome {
                    valid_bytes: end,
                    invalid: None,
                });
            }
            pos = end;
        }
        Ok(ScanOutcome {
            valid_bytes: pos,
            invalid: None,
        })
    }

    /// Calls `visit` for each batch from position `from` (no CRC check) until it returns false.
    pub(crate) fn for_each_batch(&self, from: u64, visit: impl FnMut(&BatchHeader, u64) -> Result<bool>) -> Result<()> {
        let outcome = self.scan(from, false, visit)?;
        match outcome.invalid {
            Some(why) => Err(StorageError::Corruption(format!(
                "{}: {why}",
                self.log.path().display()
            ))),
            None => Ok(()),
        }
    }

    /// Re-validates every batch (CRC included) and rebuilds both indexes and the running stats.
    /// Invalid bytes followed by a valid batch (offsets continuing, CRC good) are skipped and
    /// recorded as damage (see `damage`), never cut. Invalid bytes running to the end of the file
    /// are a torn tail: cut when `truncate_tail` (the last segment after an unclean stop),
    /// recorded as damage otherwise. Returns the number of bytes cut.
    pub(crate) fn recover(&mut self, config: &LogConfig, truncate_tail: bool) -> Result<u64> {
        self.offset_index.clear();
        self.time_index.clear();
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.rolling_base_timestamp = None;
        self.next_offset = self.base_offset;
        self.damaged.clear();
        let mut batches = Vec::new();
        let mut found = Vec::new();
        let mut pos = 0;
        let mut cut = 0;
        loop {
            let outcome = self.scan(pos, true, |h, pos| {
                batches.push((*h, pos));
                Ok(true)
            })?;
            let Some(why) = outcome.invalid else { break };
            let start = outcome.valid_bytes;
            let next_offset = batches
                .last()
                .map_or(self.base_offset, |(h, _): &(BatchHeader, u64)| h.next_offset());
            match self.resync(start + 1, next_offset)? {
                Some((resume_pos, resume_offset)) => {
                    found.push((
                        Damage {
                            start,
                            end: resume_pos,
                            first_offset: next_offset,
                            resume_offset,
                        },
                        why,
                    ));
                    pos = resume_pos;
                }
                None if truncate_tail => {
                    cut = self.size - start;
                    tracing::warn!(segment = %self.log.path().display(), reason = %why, bytes = cut,
                        "truncating a torn tail at the end of the log");
                    self.log.get()?.set_len(start)?;
                    self.size = start;
                    break;
                }
                None => {
                    let damage = Damage {
                        start,
                        end: self.size,
                        first_offset: next_offset,
                        resume_offset: i64::MAX,
                    };
                    found.push((damage, why));
                    break;
                }
            }
        }
        let interval = u64::from(config.index_interval_bytes);
        let resume_positions: Vec<u64> = found.iter().map(|(d, _)| d.end).collect();
        for (h, pos) in &batches {
            if resume_positions.contains(pos) {
                // Index the first batch after damage, so lookups past it never walk into it.
                self.bytes_since_last_index_entry = interval + 1;
            }
            self.track_batch(h, *pos, interval);
        }
        for (d, why) in &found {
            tracing::error!(segment = %self.log.path().display(), reason = %why, start = d.start, end = d.end,
                first_offset = d.first_offset, resume_offset = d.resume_offset,
                "corrupt bytes in the log: kept and skipped; reads of the offsets they held get CORRUPT_MESSAGE");
            damage::count_found();
        }
        self.damaged = found.into_iter().map(|(d, _)| d).collect();
        let dir = self.log.path().parent().unwrap_or(Path::new("."));
        damage::store(&segment_file(dir, self.base_offset, DAMAGE_SUFFIX), &self.damaged)?;
        // The rebuilt indexes are in memory; a file that cannot be written now (a full disk)
        // is written by the next append or flush, or rebuilt at the next start.
        if let Err(e) = self.offset_index.rewrite().and_then(|()| self.time_index.rewrite()) {
            tracing::warn!(segment = %self.log.path().display(), error = %e, "could not write the rebuilt indexes; kept in memory");
        }
        Ok(cut)
    }

    /// Removes every batch whose last offset is >= `offset` (Kafka's `LogSegment.truncateTo`:
    /// whole batches only), then rebuilds the indexes and running stats from the headers left.
    /// Returns the bytes removed.
    pub(crate) fn truncate_to(&mut self, offset: i64, config: &LogConfig) -> Result<u64> {
        let pos = match self.reader(offset)?.find_batch(offset) {
            Ok(Some((pos, _))) => pos,
            Ok(None) => return Ok(0),
            // The offset lies in damaged bytes: cut at the start of the damage.
            Err(StorageError::CorruptRecord(_)) => self
                .damaged
                .iter()
                .find(|d| d.holds(offset))
                .map_or(self.size, |d| d.start),
            Err(e) => return Err(e),
        };
        let removed = self.size - pos;
        self.log.get()?.set_len(pos)?;
        self.size = pos;
        self.damaged.retain(|d| d.end <= pos);
        let dir = self.log.path().parent().unwrap_or(Path::new(".")).to_path_buf();
        damage::store(&segment_file(&dir, self.base_offset, DAMAGE_SUFFIX), &self.damaged)?;
        self.offset_index.clear();
        self.time_index.clear();
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.rolling_base_timestamp = None;
        self.next_offset = self.base_offset;
        let mut headers = Vec::new();
        self.scan(0, false, |h, p| {
            headers.push((*h, p));
            Ok(true)
        })?;
        let interval = u64::from(config.index_interval_bytes);
        for (h, p) in &headers {
            self.track_batch(h, *p, interval);
        }
        self.offset_index.rewrite()?;
        self.time_index.rewrite()?;
        self.offset_index.release_handle();
        self.time_index.release_handle();
        self.txn_index.truncate_to(offset)?;
        Ok(removed)
    }

    /// The first position at or after `from` holding a valid batch (header sane, offsets at or
    /// above `min_offset`, CRC good), with its base offset.
    fn resync(&self, from: u64, min_offset: i64) -> Result<Option<(u64, i64)>> {
        const MAGIC_AT: usize = 16; // the magic byte's place in a batch header
        let file = self.log.get()?;
        let mut scanner = Scanner::new(&file, self.size);
        let mut pos = from;
        while pos + BATCH_HEADER_LEN as u64 <= self.size {
            let header = scanner.slice(pos, BATCH_HEADER_LEN)?;
            if header.get(MAGIC_AT) == Some(&2) {
                if let Ok(h) = BatchHeader::parse(header) {
                    let end = pos + h.total_size() as u64;
                    let plausible = end <= self.size
                        && h.check_stored_counts().is_ok()
                        && h.base_offset >= min_offset
                        && h.last_offset().saturating_sub(self.base_offset) <= i64::from(i32::MAX);
                    if plausible && scanner.crc(pos + CRC_START as u64, end)? == h.crc {
                        return Ok(Some((pos, h.base_offset)));
                    }
                }
            }
            pos += 1;
        }
        Ok(None)
    }

    /// Loads a segment trusted to be intact (clean shutdown, or below the recovery point): indexes
    /// from their files, then a header scan after the last offset index entry. Falls back to a full
    /// `recover` if an index is missing or inconsistent (which may cut a torn tail only of the
    /// last segment, `is_last`).
    pub(crate) fn load_trusted(&mut self, dir: &Path, config: &LogConfig, is_last: bool) -> Result<()> {
        let offsets = OffsetIndex::load_offsets(
            segment_file(dir, self.base_offset, INDEX_SUFFIX),
            self.base_offset,
            config.segment_index_bytes,
            self.size,
        )?;
        let times = TimeIndex::load_times(
            segment_file(dir, self.base_offset, TIME_INDEX_SUFFIX),
            self.base_offset,
            config.segment_index_bytes,
        )?;
        let (Some(offsets), Some(times)) = (offsets, times) else {
            tracing::info!(segment = %self.log.path().display(), "rebuilding missing or corrupt index");
            self.recover(config, is_last)?;
            return Ok(());
        };
        self.offset_index = offsets;
        self.time_index = times;
        if let Some(last) = self.time_index.last() {
            self.max_timestamp = last.timestamp;
            self.offset_of_max_timestamp = self.time_index.absolute(&last);
        }
        if self.size > 0 {
            self.rolling_base_timestamp = Some(self.read_header_at(0)?.max_timestamp);
        }
        let from = self
            .offset_index
            .last()
            .map(|e| u64::try_from(e.position).unwrap_or(0))
            .unwrap_or(0);
        let mut tail = Vec::new();
        let outcome = self.scan(from, false, |h, _| {
            tail.push(*h);
            Ok(true)
        })?;
        for h in &tail {
            // Index entries cover everything before `from`; only the stats need the tail.
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.offset_of_max_timestamp = h.base_offset;
            }
            self.next_offset = h.next_offset();
        }
        self.bytes_since_last_index_entry = self.size.saturating_sub(from);
        let time_index_ok = self
            .time_index
            .last()
            .is_none_or(|e| self.time_index.absolute(&e) < self.next_offset);
        // The last offset index entry must name the batch found at its position.
        let offset_index_ok = self
            .offset_index
            .last()
            .is_none_or(|e| tail.first().map(BatchHeader::last_offset) == Some(self.offset_index.absolute(&e)));
        if outcome.invalid.is_some() || !time_index_ok || !offset_index_ok || (self.size > 0 && tail.is_empty()) {
            tracing::info!(segment = %self.log.path().display(), "index inconsistent with the log, rebuilding");
            self.recover(config, is_last)?;
        }
        Ok(())
    }

    /// Whether the segment must be rolled before appending `bytes` bytes whose largest timestamp
    /// is `max_timestamp` and last offset `last_offset` (Kafka's `shouldRoll`).
    pub(crate) fn should_roll(
        &self,
        config: &LogConfig,
        bytes: u64,
        max_timestamp: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        let full = self.size.saturating_add(bytes) > config.effective_segment_bytes();
        let overflow = last_offset.saturating_sub(self.base_offset) > i64::from(i32::MAX);
        full || overflow
            || self.offset_index.is_full()
            || self.time_index.is_full()
            || self.time_waited_for_roll(now_ms, max_timestamp) > config.segment_ms
    }

    /// Time since the segment's first batch timestamp (message time) or its creation.
    pub(crate) fn time_waited_for_roll(&self, now_ms: i64, message_timestamp: i64) -> i64 {
        match self.rolling_base_timestamp {
            Some(t) if t >= 0 => message_timestamp.saturating_sub(t),
            _ => now_ms.saturating_sub(self.created_ms),
        }
    }

    /// Appends batches whose headers (with assigned offsets) are `headers`; `slices` hold their
    /// bytes in order. On a write error the file is cut back to its previous size.
    pub(crate) fn append(
        &mut self,
        headers: &[BatchHeader],
        slices: &mut [IoSlice<'_>],
        config: &LogConfig,
    ) -> Result<()> {
        let start = self.size;
        let file = self.log.get()?;
        if let Err(e) = write_all_vectored(&file, slices) {
            file.set_len(start)
                .map_err(|e2| StorageError::Corruption(format!("write failed ({e}) and could not be undone: {e2}")))?;
            return Err(e.into());
        }
        let interval = u64::from(config.index_interval_bytes);
        let mut pos = start;
        for h in headers {
            self.track_batch(h, pos, interval);
            pos += h.total_size() as u64;
        }
        self.size = pos;
        Ok(())
    }

    /// Reads whole batches starting with the one holding `fetch_offset` (see `SegmentReader::read`).
    #[cfg(test)]
    pub(crate) fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_message: bool,
    ) -> Result<Option<Bytes>> {
        self.reader(fetch_offset)?
            .read(fetch_offset, max_bytes, max_offset, min_one_message)
    }

    /// Position and header of the first batch whose last offset is >= `offset`.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        self.reader(offset)?.find_batch(offset)
    }

    /// The whole bytes of the batch at `pos` with header `h`.
    pub(crate) fn read_batch(&self, pos: u64, h: &BatchHeader) -> Result<Bytes> {
        let mut buf = BytesMut::zeroed(h.total_size());
        self.log.get()?.read_exact_at(&mut buf, pos)?;
        Ok(buf.freeze())
    }

    /// Position to start scanning for the first record with timestamp >= `target`.
    pub(crate) fn timestamp_scan_start(&self, target: i64) -> u64 {
        let offset = self.time_index.lookup(target);
        u64::from(self.offset_index.lookup(offset).1)
    }

    /// (timestamp, base offset of the batch holding it) of the newest timestamp, if any batch.
    pub(crate) fn max_timestamp_and_batch(&self) -> Option<(i64, i64)> {
        (self.offset_of_max_timestamp >= 0).then_some((self.max_timestamp, self.offset_of_max_timestamp))
    }

    /// Writes pending index entries; returns dup'd handles of the log and index files for an
    /// fsync outside the log's lock.
    pub(crate) fn flush_handles(&mut self) -> Result<Vec<File>> {
        let mut files = vec![
            self.log.get()?.try_clone()?,
            self.offset_index.flush_handle()?,
            self.time_index.flush_handle()?,
        ];
        files.extend(self.txn_index.try_clone_file()?);
        // The duplicates serve the fsync; the index entries written, no descriptor is kept
        // between flushes (one per partition, the active `.log`, is all an idle partition holds).
        self.offset_index.release_handle();
        self.time_index.release_handle();
        Ok(files)
    }

    /// Loads the aborted-transaction index, dropping entries past the segment's end (run once
    /// the segment is loaded or recovered).
    pub(crate) fn load_txn_index(&mut self) -> Result<()> {
        let path = self.txn_index.path().to_path_buf();
        self.txn_index = TxnIndex::load(path, self.next_offset)?;
        Ok(())
    }

    /// Records a transaction aborted by a marker in this segment.
    pub(crate) fn append_aborted_txn(&mut self, entry: AbortedTxn) -> Result<()> {
        self.txn_index.append(entry)
    }

    /// Aborted transactions of this segment overlapping `[start, upper)`.
    pub(crate) fn collect_aborted_txns(&self, start: i64, upper: i64, out: &mut Vec<AbortedTxn>) {
        self.txn_index.collect_overlapping(start, upper, out);
    }

    /// fsyncs and closes the index files (the active segment at close, after `finish_writes`).
    /// Syncs the indexes and closes the offset and time index handles. The transaction index
    /// must be complete (an aborted transaction missing from it would reach read_committed
    /// consumers); an offset or time index that could not be written in full (a full disk) is
    /// a valid prefix, which loading completes from the log, so that failure comes back apart.
    pub(crate) fn sync_indexes(&mut self) -> Result<std::result::Result<(), io::Error>> {
        self.txn_index.sync()?;
        Ok(self
            .offset_index
            .sync_and_close()
            .and_then(|()| self.time_index.sync_and_close()))
    }

    /// At roll, under the log's lock: the final time index entry and every pending index entry
    /// reach their files, without fsync (the flush the roll asks for syncs them).
    pub(crate) fn finish_writes(&mut self) -> Result<()> {
        if self.offset_of_max_timestamp >= 0 {
            self.time_index
                .force_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
        self.offset_index.write_pending()?;
        self.time_index.write_pending()?;
        Ok(())
    }

    /// Closes the index file handles of an inactive segment (written and being synced).
    pub(crate) fn release_index_handles(&mut self) {
        self.offset_index.release_handle();
        self.time_index.release_handle();
        self.txn_index.release_handle();
    }

    /// The log file (a read handle for the cleaner, taken under the log's lock).
    pub(crate) fn file(&self) -> Result<Arc<File>> {
        Ok(self.log.get()?)
    }

    /// The first batch's timestamp, if known (segment.ms and max.compaction.lag.ms).
    pub(crate) fn first_batch_timestamp(&self) -> Option<i64> {
        self.rolling_base_timestamp
    }

    /// fsyncs a cleaned segment's files (all written) before it is installed.
    pub(crate) fn sync_all_files(&mut self) -> Result<()> {
        self.finish_writes()?;
        self.log.get()?.sync_data()?;
        if let Err(e) = self.sync_indexes()? {
            return Err(e.into());
        }
        self.release_index_handles();
        Ok(())
    }

    /// A cleaned segment being installed: its index files lose the `.cleaned` suffix (renamed,
    /// replacing the old segment's, already deleted) and every path names the final file. The
    /// caller renames the `.log` itself (from its swap name).
    pub(crate) fn rename_to_final(&mut self, dir: &Path) -> Result<()> {
        let base = self.base_offset;
        for (path, suffix) in [
            (self.offset_index.path().to_path_buf(), INDEX_SUFFIX),
            (self.time_index.path().to_path_buf(), TIME_INDEX_SUFFIX),
            (self.txn_index.path().to_path_buf(), TXN_INDEX_SUFFIX),
        ] {
            match fs::rename(&path, segment_file(dir, base, suffix)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset_index.set_path(segment_file(dir, base, INDEX_SUFFIX));
        self.time_index.set_path(segment_file(dir, base, TIME_INDEX_SUFFIX));
        self.txn_index.set_path(segment_file(dir, base, TXN_INDEX_SUFFIX));
        self.log.set_path(segment_file(dir, base, LOG_SUFFIX));
        Ok(())
    }

    /// Removes the segment's files (open handles elsewhere stay readable: unlink semantics).
    pub(crate) fn delete_files(self) -> Result<()> {
        for path in [
            self.log.path().to_path_buf(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
            self.txn_index.path().to_path_buf(),
            self.log.path().with_extension(&DAMAGE_SUFFIX[1..]),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Removes a file; one already gone is fine.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `write_all` for a vectored write: loops over partial writes. The file is in append mode.
fn write_all_vectored(mut file: &File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while slices.iter().any(|s| !s.is_empty()) {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
