//! `InternalLog`: a broker-owned, key-compacted log of key/value records (Kafka's internal topics
//! `__consumer_offsets` and `__transaction_state`, one partition each on one node). The owner
//! keeps the live state in memory; this type appends records, replays them at open and rewrites
//! the log with the owner's live set when asked (compaction).
//!
//! Records: each `append` is ONE uncompressed v2 batch (kafka-protocol's `RecordBatchEncoder`,
//! producer id -1) with one record per key/value; a `None` value is a tombstone. The key and value
//! bytes are the owner's format. Appends reach the OS before they return (the underlying
//! `UnifiedLog` guarantees that); fsync follows the log's flush policy and clean shutdown.
//!
//! Replay reads the whole log from its start and hands every record to the owner in order. A
//! record the owner cannot decode is an error at open: the log's own recovery already truncated a
//! torn tail, so anything else is corruption we refuse to hide.
//!
//! Compaction: the owner's live set is written as fresh batches into `<name>.compacting`, which
//! is closed (fsynced) and its directory entry fsynced; then `<name>` is renamed to `.delete`,
//! `.compacting` renamed to `<name>`, the parent fsynced, `.delete` removed, and the log reopened.
//! Crash rules at open (each state the sequence can stop in has one answer):
//! - main present: any `.compacting` is an unfinished rewrite (the swap never started): deleted.
//!   Any `.delete` is the old log of a finished swap: deleted.
//! - main missing, `.compacting` present: the crash fell between the two renames. `.compacting`
//!   was complete and durable before the first rename, so it is promoted to main.
//! - main missing, only `.delete` present (not reachable by our sequence): restored to main.
//!
//! If a swap fails half way the log is poisoned: writes fail, and the next open repairs the
//! directories by the rules above.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::storage::batch::batches;
use crate::storage::{LogConfig, StorageError, UnifiedLog};

/// Records beyond `4 * live keys` tolerated before a compaction, by default.
pub const DEFAULT_COMPACTION_SLACK_RECORDS: u64 = 10_000;
/// No compaction below this log size, by default: a log of few live keys (the transaction log of
/// one busy producer) would otherwise be rewritten every few thousand writes, and its owner
/// waits for each compaction (a few ms, more under disk load).
pub const DEFAULT_COMPACTION_MIN_BYTES: u64 = 16 * 1024 * 1024;
/// Batches written by `append_chunked` and compaction hold about this many bytes.
const CHUNK_BYTES: usize = 512 * 1024;
/// Bytes asked per read during replay (a read stays within one segment anyway).
const REPLAY_READ_BYTES: usize = 16 * 1024 * 1024;
/// Leader epoch stamped on our batches (a single node; replication may change it later).
const LEADER_EPOCH: i32 = 0;

pub use crate::storage::batch::KeyValue;

/// What an internal log can fail with.
#[derive(Debug, thiserror::Error)]
pub enum InternalLogError {
    /// The log failed.
    #[error("internal log: {0}")]
    Storage(#[from] StorageError),
    /// An I/O error outside the log (directory renames and removals of a compaction).
    #[error("internal log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A stored batch or record that does not decode: refused at open.
    #[error("corrupt internal log record at offset {offset}: {reason}")]
    Decode {
        /// Log offset of the batch or record.
        offset: i64,
        /// What was wrong.
        reason: String,
    },
    /// A record that cannot be encoded (a name longer than its length field, an encoder failure).
    #[error("cannot encode internal log record: {0}")]
    Encode(String),
    /// A compaction failed half way; writes are refused until the log is reopened.
    #[error("internal log is poisoned by a failed compaction; reopen it")]
    Poisoned,
}

/// See the module docs.
pub struct InternalLog {
    log_dir: PathBuf,
    name: &'static str,
    log: UnifiedLog,
    records_since_compaction: u64,
    compaction_slack_records: u64,
    compaction_min_bytes: u64,
    poisoned: bool,
}

/// The internal logs' config: Kafka's `offsets.topic.segment.bytes` (100 MiB), no time or size
/// retention (compaction is the owner's), the rest the defaults.
fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 100 * 1024 * 1024,
        retention_ms: -1,
        retention_bytes: -1,
        ..LogConfig::default()
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl InternalLog {
    /// Opens (or creates) `<log_dir>/<name>`, repairing an interrupted compaction first, and
    /// replays every record through `apply` (which names what is wrong with a bad record).
    pub fn open(
        log_dir: &Path,
        name: &'static str,
        had_clean_shutdown: bool,
        now_ms: i64,
        mut apply: impl FnMut(Record) -> Result<(), String>,
    ) -> Result<Self, InternalLogError> {
        fs::create_dir_all(log_dir)?;
        repair_dirs(log_dir, name)?;
        let log = UnifiedLog::open(log_dir.join(name), log_config(), had_clean_shutdown, now_ms)?;
        let mut this = InternalLog {
            log_dir: log_dir.to_path_buf(),
            name,
            log,
            records_since_compaction: 0,
            compaction_slack_records: DEFAULT_COMPACTION_SLACK_RECORDS,
            compaction_min_bytes: DEFAULT_COMPACTION_MIN_BYTES,
            poisoned: false,
        };
        this.replay(&mut apply)?;
        this.records_since_compaction = this.record_span();
        Ok(this)
    }

    fn dir_with_suffix(&self, suffix: &str) -> PathBuf {
        self.log_dir.join(format!("{}{suffix}", self.name))
    }

    /// Sets the compaction trigger: records beyond `4 * live keys`, and the least log size.
    pub fn set_compaction_thresholds(&mut self, slack_records: u64, min_bytes: u64) {
        self.compaction_slack_records = slack_records;
        self.compaction_min_bytes = min_bytes;
    }

    /// Whether enough records accumulated since the last compaction, with `live` keys alive,
    /// and the log is at least the minimum size.
    pub fn should_compact(&self, live: usize) -> bool {
        let live = u64::try_from(live).unwrap_or(u64::MAX);
        self.records_since_compaction > live.saturating_mul(4).saturating_add(self.compaction_slack_records)
            && self.log.size_bytes() >= self.compaction_min_bytes
    }

    /// Appends `kvs` as one batch.
    pub fn append(&mut self, kvs: &[KeyValue], now_ms: i64) -> Result<(), InternalLogError> {
        self.check_writable()?;
        let info = self
            .log
            .append_as_leader(encode_batch(kvs, now_ms)?, LEADER_EPOCH, now_ms)?;
        self.records_since_compaction += u64::from(info.record_count);
        Ok(())
    }

    /// Appends `kvs` in batches of about `CHUNK_BYTES`, calling `written(range)` with the
    /// indexes of each batch once it is appended.
    pub fn append_chunked(
        &mut self,
        kvs: &[KeyValue],
        now_ms: i64,
        mut written: impl FnMut(std::ops::Range<usize>),
    ) -> Result<(), InternalLogError> {
        let mut done = 0;
        for chunk in chunks(kvs) {
            self.append(chunk, now_ms)?;
            written(done..done + chunk.len());
            done += chunk.len();
        }
        Ok(())
    }

    /// Flushes the log to disk (fsync).
    pub fn flush(&mut self, now_ms: i64) -> Result<(), InternalLogError> {
        self.check_writable()?;
        Ok(self.log.flush(now_ms)?)
    }

    /// Closes the log cleanly (flush, checkpoints).
    pub fn close(self, now_ms: i64) -> Result<(), InternalLogError> {
        self.check_writable()?;
        self.log.close(now_ms)?;
        Ok(())
    }

    /// Size of the log in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// Records from the log start to its end.
    pub fn record_span(&self) -> u64 {
        u64::try_from(self.log.log_end_offset() - self.log.log_start_offset()).unwrap_or(0)
    }

    /// Rewrites the log with only `live` (see the module docs).
    pub fn compact(&mut self, live: &[KeyValue], now_ms: i64) -> Result<(), InternalLogError> {
        self.check_writable()?;
        let compacting = self.dir_with_suffix(".compacting");
        if compacting.exists() {
            fs::remove_dir_all(&compacting)?;
        }
        if let Err(e) = self.write_live_set(&compacting, live, now_ms) {
            // Nothing was swapped: the current log stays valid; a leftover goes at next open.
            let _ = fs::remove_dir_all(&compacting);
            return Err(e);
        }
        let main = self.log_dir.join(self.name);
        let old = self.dir_with_suffix(".delete");
        if old.exists() {
            fs::remove_dir_all(&old)?;
        }
        // From the first rename on, `self.log` points at a moved directory: a failure poisons.
        let swapped = (|| -> Result<UnifiedLog, InternalLogError> {
            fs::rename(&main, &old)?;
            fs::rename(&compacting, &main)?;
            fsync_dir(&self.log_dir)?;
            Ok(UnifiedLog::open(main.clone(), log_config(), true, now_ms)?)
        })();
        match swapped {
            Ok(log) => {
                // The old log is dropped, not closed: closing would write its checkpoints into
                // `main`, which is now the new log's directory.
                drop(std::mem::replace(&mut self.log, log));
                self.records_since_compaction = self.record_span();
                fs::remove_dir_all(&old)?;
                fsync_dir(&self.log_dir)?;
                tracing::info!(
                    log = self.name,
                    live = live.len(),
                    bytes = self.log.size_bytes(),
                    "compacted internal log"
                );
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                tracing::error!(log = self.name, error = %e, "internal log compaction failed during the swap");
                Err(e)
            }
        }
    }

    fn write_live_set(&self, dir: &Path, live: &[KeyValue], now_ms: i64) -> Result<(), InternalLogError> {
        let mut log = UnifiedLog::open(dir.to_path_buf(), log_config(), false, now_ms)?;
        for chunk in chunks(live) {
            log.append_as_leader(encode_batch(chunk, now_ms)?, LEADER_EPOCH, now_ms)?;
        }
        log.close(now_ms)?;
        fsync_dir(&self.log_dir)?;
        Ok(())
    }

    fn check_writable(&self) -> Result<(), InternalLogError> {
        if self.poisoned {
            Err(InternalLogError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Reads the whole log from its start and applies every record in order.
    fn replay(&mut self, apply: &mut dyn FnMut(Record) -> Result<(), String>) -> Result<(), InternalLogError> {
        let mut offset = self.log.log_start_offset();
        let end = self.log.log_end_offset();
        while offset < end {
            let data = self.log.read(offset, REPLAY_READ_BYTES, i64::MAX, true)?.records;
            let mut next = offset;
            for header in batches(&data) {
                next = header?.1.next_offset();
            }
            if next <= offset {
                return Err(InternalLogError::Decode {
                    offset,
                    reason: "read returned no batch before the log end".into(),
                });
            }
            let mut buf = data.clone();
            let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| InternalLogError::Decode {
                offset,
                reason: e.to_string(),
            })?;
            for record in sets.into_iter().flat_map(|s| s.records) {
                let at = record.offset;
                apply(record).map_err(|reason| InternalLogError::Decode { offset: at, reason })?;
            }
            offset = next;
        }
        Ok(())
    }
}

/// Applies the crash rules of the module docs to `log_dir/<name>*`.
fn repair_dirs(log_dir: &Path, name: &str) -> Result<(), InternalLogError> {
    let main = log_dir.join(name);
    let compacting = log_dir.join(format!("{name}.compacting"));
    let old = log_dir.join(format!("{name}.delete"));
    let mut changed = false;
    if !main.exists() && compacting.exists() {
        tracing::warn!(log = name, "finishing an interrupted compaction");
        fs::rename(&compacting, &main)?;
        changed = true;
    } else if !main.exists() && old.exists() {
        tracing::warn!(log = name, "restoring the log from its .delete directory");
        fs::rename(&old, &main)?;
        changed = true;
    }
    if compacting.exists() {
        tracing::warn!(log = name, "removing an unfinished compaction");
        fs::remove_dir_all(&compacting)?;
        changed = true;
    }
    if old.exists() {
        fs::remove_dir_all(&old)?;
        changed = true;
    }
    if changed {
        fsync_dir(log_dir)?;
    }
    Ok(())
}

/// Splits `kvs` into runs of about `CHUNK_BYTES` (at least one record each).
fn chunks(kvs: &[KeyValue]) -> Vec<&[KeyValue]> {
    let mut out = Vec::new();
    let mut rest = kvs;
    while !rest.is_empty() {
        let mut size = 0;
        let mut n = 0;
        for (k, v) in rest {
            let len = k.len() + v.as_ref().map_or(0, Bytes::len) + 32;
            if n > 0 && size + len > CHUNK_BYTES {
                break;
            }
            size += len;
            n += 1;
        }
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// One uncompressed v2 batch without a producer, one record per key.
pub(crate) fn encode_batch(kvs: &[KeyValue], now_ms: i64) -> Result<Bytes, InternalLogError> {
    crate::storage::batch::encode_keyed_batch(kvs, now_ms).map_err(InternalLogError::Encode)
}
