//! `OffsetStore`: consumer groups' committed offsets and group metadata, kept in memory and
//! persisted in an internal log (Kafka's `__consumer_offsets`, one partition on one node),
//! replayed at open and compacted by key. Synchronous and lock-free: the group coordinator actor
//! owns it. Group metadata records (key version 2) are described in `group_record.rs`.
//!
//! Why a log and not a checkpoint file: every commit is one append (cheap, ordered, the write
//! reaches the OS before `commit` returns, as `UnifiedLog` guarantees), and a log can be
//! replicated later like any partition. Like Kafka we do not fsync per commit; the log's own
//! flush policy and clean shutdown do.
//!
//! Record format. Each commit is ONE uncompressed v2 batch (built by kafka-protocol's
//! `RecordBatchEncoder`, producer id -1) with one record per partition. This is our own format,
//! not Kafka's `OffsetCommitKey`/`OffsetCommitValue` schemas; the leading version lets it
//! evolve. All integers big-endian:
//! - key v1: `u16 version = 1`, `u16 len + group (UTF-8)`, `u16 len + topic (UTF-8)`, `i32 partition`.
//! - value v1: `u16 version = 1`, `i64 offset`, `i32 leader_epoch`, `i64 commit_timestamp_ms`,
//!   `u32 len + metadata (UTF-8)`.
//! - tombstone: the key with a null value (the offset is deleted).
//! - group metadata: key version 2, see `group_record.rs`; replay tells the two apart by the
//!   key's leading version.
//!
//! - pending transactional offset (TxnOffsetCommit): key version 3: `u16 version = 3`,
//!   `i64 producer id`, `u16 len + group`, `u16 len + topic`, `i32 partition`; value as v1.
//! - transaction end for a producer (its marker reached this log): key version 4: `u16 version
//!   = 4`, `i64 producer id`; value `u16 version = 1`, `u8 committed (1) or aborted (0)`. Replay
//!   moves that producer's pending offsets into the committed ones, or drops them.
//!
//! Replay, compaction and crash repair are `storage::internal_log`'s: a compaction rewrites
//! the live offsets and group records when the records written since the last one exceed
//! `4 * live + slack` (slack 10,000 by default) and the log has reached 16 MiB.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Record;

use super::group_record::{
    decode_group_key, decode_group_value, encode_group_key, encode_group_value, GroupRecord, GROUP_KEY_VERSION,
};
pub use crate::storage::internal_log::InternalLogError as StoreError;
use crate::storage::internal_log::{InternalLog, KeyValue};

/// Directory name of the offsets log under the broker's log dir.
pub const OFFSETS_LOG_DIR: &str = "__consumer_offsets-0";
/// Kafka's `offsets.retention.minutes` default (7 days), in milliseconds.
pub const DEFAULT_OFFSETS_RETENTION_MS: i64 = 10_080 * 60 * 1000;

const KEY_VERSION: u16 = 1;
const VALUE_VERSION: u16 = 1;
const TXN_OFFSET_KEY_VERSION: u16 = 3;
const TXN_END_KEY_VERSION: u16 = 4;

/// A committed offset, as OffsetCommit stores and OffsetFetch answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When the commit was stored (broker time).
    pub commit_timestamp_ms: i64,
}

impl CommittedOffset {
    /// What OffsetFetch answers for a partition without a committed offset.
    pub fn unknown() -> Self {
        CommittedOffset {
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: -1,
        }
    }
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitEntry {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The offset to commit.
    pub offset: i64,
    /// The leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
}

/// One partition of an OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The committed offset, or [`CommittedOffset::unknown`].
    pub committed: CommittedOffset,
    /// An open transaction holds a newer offset (asked with require_stable): the answer is
    /// UNSTABLE_OFFSET_COMMIT.
    pub unstable: bool,
}

type Key = (String, String, i32);
type TopicPartitionKey = (String, i32);
type GroupOffsets = BTreeMap<TopicPartitionKey, CommittedOffset>;
/// Offsets committed inside open transactions: producer id -> group -> offsets.
type PendingOffsets = HashMap<i64, HashMap<String, GroupOffsets>>;

/// Committed offsets of every group, backed by the `__consumer_offsets-0` log.
pub struct OffsetStore {
    log: InternalLog,
    groups: HashMap<String, GroupOffsets>,
    /// Each group's persisted metadata (see `group_record.rs`).
    group_records: HashMap<String, GroupRecord>,
    /// TxnOffsetCommit offsets waiting for their transaction's end.
    pending: PendingOffsets,
}

impl OffsetStore {
    /// Opens (or creates) `<log_dir>/__consumer_offsets-0`, repairing an interrupted compaction
    /// first, and replays it into memory.
    pub fn open(log_dir: &Path, had_clean_shutdown: bool, now_ms: i64) -> Result<Self, StoreError> {
        let mut groups = HashMap::new();
        let mut group_records = HashMap::new();
        let mut pending = HashMap::new();
        let log = InternalLog::open(log_dir, OFFSETS_LOG_DIR, had_clean_shutdown, now_ms, |record| {
            apply(&mut groups, &mut group_records, &mut pending, record)
        })?;
        let store = OffsetStore {
            log,
            groups,
            group_records,
            pending,
        };
        tracing::debug!(
            groups = store.groups.len(),
            offsets = store.live_count(),
            "replayed offsets log"
        );
        Ok(store)
    }

    /// Sets the slack of the compaction trigger (records beyond `4 * live offsets`) and drops
    /// its size floor (tests).
    pub fn set_compaction_slack_records(&mut self, slack: u64) {
        self.log.set_compaction_thresholds(slack, 0);
    }

    /// Stores `entries` for `group` as one batch, then in memory. The batch has reached the OS
    /// when this returns.
    pub fn commit(&mut self, group: &str, entries: &[OffsetCommitEntry], now_ms: i64) -> Result<(), StoreError> {
        let offsets = self.groups.entry(group.to_string()).or_default();
        let committed = Self::write_offsets(&mut self.log, entries, now_ms, |e| {
            encode_key(group, &e.topic, e.partition)
        })?;
        offsets.extend(committed);
        self.maybe_compact(now_ms);
        Ok(())
    }

    /// Appends `entries` as one batch under the keys `key` gives; returns them as stored.
    fn write_offsets(
        log: &mut InternalLog,
        entries: &[OffsetCommitEntry],
        now_ms: i64,
        key: impl Fn(&OffsetCommitEntry) -> Result<Bytes, StoreError>,
    ) -> Result<Vec<(TopicPartitionKey, CommittedOffset)>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut kvs = Vec::with_capacity(entries.len());
        let mut stored = Vec::with_capacity(entries.len());
        for e in entries {
            let c = CommittedOffset {
                offset: e.offset,
                leader_epoch: e.leader_epoch,
                metadata: e.metadata.clone(),
                commit_timestamp_ms: now_ms,
            };
            kvs.push((key(e)?, Some(encode_value(&c)?)));
            stored.push(((e.topic.clone(), e.partition), c));
        }
        log.append(&kvs, now_ms)?;
        Ok(stored)
    }

    /// TxnOffsetCommit: stores `entries` for `group` as pending offsets of `producer_id`'s open
    /// transaction; they become the group's committed offsets when `end_txn` commits it.
    pub fn txn_commit(
        &mut self,
        producer_id: i64,
        group: &str,
        entries: &[OffsetCommitEntry],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let stored = Self::write_offsets(&mut self.log, entries, now_ms, |e| {
            encode_txn_offset_key(producer_id, group, &e.topic, e.partition)
        })?;
        if !stored.is_empty() {
            self.pending
                .entry(producer_id)
                .or_default()
                .entry(group.to_string())
                .or_default()
                .extend(stored);
        }
        self.maybe_compact(now_ms);
        Ok(())
    }

    /// A transaction marker for `producer_id` reached the group coordinator: its pending
    /// offsets become committed (`commit`) or are dropped. Nothing is written without any.
    pub fn end_txn(&mut self, producer_id: i64, commit: bool, now_ms: i64) -> Result<(), StoreError> {
        if !self.pending.contains_key(&producer_id) {
            return Ok(());
        }
        let value = Bytes::from(vec![0, 1, u8::from(commit)]);
        self.append(&[(encode_txn_end_key(producer_id), Some(value))], now_ms)?;
        resolve_pending(&mut self.groups, &mut self.pending, producer_id, commit);
        self.maybe_compact(now_ms);
        Ok(())
    }

    /// Whether an open transaction holds an offset of `group` for the partition (OffsetFetch
    /// with require_stable answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending
            .values()
            .any(|groups| groups.get(group).is_some_and(|o| o.contains_key(&key)))
    }

    /// The group's offsets for `partitions` (unknown ones answer offset -1), or all of them
    /// (sorted by topic and partition) for `None`.
    pub fn fetch(&self, group: &str, partitions: Option<&[(String, i32)]>) -> Vec<FetchedOffset> {
        let offsets = self.groups.get(group);
        match partitions {
            None => offsets
                .into_iter()
                .flatten()
                .map(|((topic, partition), c)| FetchedOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    committed: c.clone(),
                    unstable: false,
                })
                .collect(),
            Some(wanted) => wanted
                .iter()
                .map(|(topic, partition)| FetchedOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    committed: offsets
                        .and_then(|o| o.get(&(topic.clone(), *partition)))
                        .cloned()
                        .unwrap_or_else(CommittedOffset::unknown),
                    unstable: false,
                })
                .collect(),
        }
    }

    /// Persists a group's metadata (`Some`), or removes it (`None`, a tombstone if there was
    /// one). The record has reached the OS when this returns.
    pub fn store_group(&mut self, group: &str, record: Option<&GroupRecord>, now_ms: i64) -> Result<(), StoreError> {
        match record {
            Some(record) => {
                let kv = (encode_group_key(group)?, Some(encode_group_value(record)?));
                self.append(&[kv], now_ms)?;
                self.group_records.insert(group.to_string(), record.clone());
            }
            None => {
                if !self.group_records.contains_key(group) {
                    return Ok(());
                }
                self.append(&[(encode_group_key(group)?, None)], now_ms)?;
                self.group_records.remove(group);
            }
        }
        self.maybe_compact(now_ms);
        Ok(())
    }

    /// Every group's persisted metadata, as replayed or stored since.
    pub fn group_records(&self) -> &HashMap<String, GroupRecord> {
        &self.group_records
    }

    /// Every committed offset: (group, topic, partition, offset).
    pub fn all_committed(&self) -> impl Iterator<Item = (&str, &str, i32, i64)> {
        self.groups
            .iter()
            .flat_map(|(g, o)| o.iter().map(move |((t, p), c)| (g.as_str(), t.as_str(), *p, c.offset)))
    }

    /// Whether `group` has any committed offset.
    pub fn has_offsets(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|o| !o.is_empty())
    }

    /// Number of live committed offsets across all groups.
    pub fn live_count(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    /// Deletes every offset of `group` (DeleteGroups). Returns how many were removed.
    pub fn delete_group(&mut self, group: &str, now_ms: i64) -> Result<usize, StoreError> {
        let keys: Vec<Key> = self
            .groups
            .get(group)
            .into_iter()
            .flat_map(|o| o.keys())
            .map(|(t, p)| (group.to_string(), t.clone(), *p))
            .collect();
        let removed = self.write_tombstones(keys, now_ms)?;
        self.store_group(group, None, now_ms)?;
        Ok(removed)
    }

    /// Deletes the group's offsets of `partitions` (OffsetDelete). Returns how many were removed.
    pub fn delete_offsets(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let keys: Vec<Key> = match self.groups.get(group) {
            None => Vec::new(),
            Some(o) => partitions
                .iter()
                .filter(|tp| o.contains_key(*tp))
                .map(|(t, p)| (group.to_string(), t.clone(), *p))
                .collect(),
        };
        self.write_tombstones(keys, now_ms)
    }

    /// Deletes every group's offsets of a deleted topic. Returns how many were removed.
    pub fn remove_topic(&mut self, topic: &str, now_ms: i64) -> Result<usize, StoreError> {
        let keys: Vec<Key> = self
            .groups
            .iter()
            .flat_map(|(g, o)| {
                o.keys()
                    .filter(|(t, _)| t == topic)
                    .map(move |(t, p)| (g.clone(), t.clone(), *p))
            })
            .collect();
        self.write_tombstones(keys, now_ms)
    }

    /// Kafka's offsets retention (KIP-211): for each group `empty_since` says has no members
    /// (`Some(when it became empty)`, `i64::MIN` if unknown), removes offsets whose later of
    /// commit time and that moment is at least `retention_ms` before `now_ms`. Groups with
    /// members (`None`) keep their offsets. Returns how many were removed.
    pub fn expire(
        &mut self,
        now_ms: i64,
        retention_ms: i64,
        empty_since: impl Fn(&str) -> Option<i64>,
    ) -> Result<usize, StoreError> {
        let keys: Vec<Key> = self
            .groups
            .iter()
            .filter_map(|(g, o)| empty_since(g).map(|since| (g, o, since)))
            .flat_map(|(g, o, since)| {
                o.iter()
                    .filter(move |(_, c)| now_ms.saturating_sub(c.commit_timestamp_ms.max(since)) >= retention_ms)
                    .map(move |((t, p), _)| (g.clone(), t.clone(), *p))
            })
            .collect();
        let removed = self.write_tombstones(keys, now_ms)?;
        if removed > 0 {
            tracing::info!(removed, "expired committed offsets");
        }
        Ok(removed)
    }

    /// The groups that have committed offsets.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, o)| !o.is_empty())
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Flushes the log to disk (fsync).
    pub fn flush(&mut self, now_ms: i64) -> Result<(), StoreError> {
        self.log.flush(now_ms)
    }

    /// Closes the log cleanly (flush, checkpoints).
    pub fn close(self, now_ms: i64) -> Result<(), StoreError> {
        self.log.close(now_ms)
    }

    /// Size of the offsets log in bytes.
    pub fn log_size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// Rewrites the log with only the live offsets and group records.
    pub fn compact(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let mut kvs = Vec::new();
        for (group, offsets) in &self.groups {
            for ((topic, partition), c) in offsets {
                kvs.push((encode_key(group, topic, *partition)?, Some(encode_value(c)?)));
            }
        }
        for (group, record) in &self.group_records {
            kvs.push((encode_group_key(group)?, Some(encode_group_value(record)?)));
        }
        for (producer_id, groups) in &self.pending {
            for (group, offsets) in groups {
                for ((topic, partition), c) in offsets {
                    kvs.push((
                        encode_txn_offset_key(*producer_id, group, topic, *partition)?,
                        Some(encode_value(c)?),
                    ));
                }
            }
        }
        self.log.compact(&kvs, now_ms)
    }

    fn maybe_compact(&mut self, now_ms: i64) {
        let pending: usize = self.pending.values().flat_map(HashMap::values).map(BTreeMap::len).sum();
        if self
            .log
            .should_compact(self.live_count() + self.group_records.len() + pending)
        {
            // The caller's write is already durable; a failed compaction is retried next time.
            if let Err(e) = super::run_blocking(|| self.compact(now_ms)) {
                tracing::warn!(error = %e, "offsets log compaction failed");
            }
        }
    }

    /// Appends `kvs` as one batch.
    fn append(&mut self, kvs: &[KeyValue], now_ms: i64) -> Result<(), StoreError> {
        self.log.append(kvs, now_ms)
    }

    /// Writes tombstones for `keys` in batches of about `CHUNK_BYTES`, removing each batch's
    /// keys from memory once it is appended.
    fn write_tombstones(&mut self, keys: Vec<Key>, now_ms: i64) -> Result<usize, StoreError> {
        let mut kvs = Vec::with_capacity(keys.len());
        for (g, t, p) in &keys {
            kvs.push((encode_key(g, t, *p)?, None));
        }
        let mut done = 0;
        let mut written = Vec::new();
        let result = self.log.append_chunked(&kvs, now_ms, |range| {
            done = range.end;
            written.push(range);
        });
        for range in written {
            for (g, t, p) in keys.get(range).unwrap_or(&[]) {
                remove_key(&mut self.groups, g, t, *p);
            }
        }
        result?;
        if done > 0 {
            self.maybe_compact(now_ms);
        }
        Ok(done)
    }
}

fn remove_key(groups: &mut HashMap<String, GroupOffsets>, group: &str, topic: &str, partition: i32) {
    if let Some(offsets) = groups.get_mut(group) {
        offsets.remove(&(topic.to_string(), partition));
        if offsets.is_empty() {
            groups.remove(group);
        }
    }
}

/// Ends `producer_id`'s pending offsets: into the committed ones (`commit`) or dropped.
fn resolve_pending(
    groups: &mut HashMap<String, GroupOffsets>,
    pending: &mut PendingOffsets,
    producer_id: i64,
    commit: bool,
) {
    let Some(by_group) = pending.remove(&producer_id) else {
        return;
    };
    if commit {
        for (group, offsets) in by_group {
            groups.entry(group).or_default().extend(offsets);
        }
    }
}

fn apply(
    groups: &mut HashMap<String, GroupOffsets>,
    group_records: &mut HashMap<String, GroupRecord>,
    pending: &mut PendingOffsets,
    record: Record,
) -> Result<(), String> {
    let key = record.key.as_ref().ok_or_else(|| "record without a key".to_string())?;
    if key.get(..2) == Some(&TXN_OFFSET_KEY_VERSION.to_be_bytes()[..]) {
        let (producer_id, group, topic, partition) = decode_txn_offset_key(key)?;
        let value = record.value.as_ref().ok_or("pending offset without a value")?;
        pending
            .entry(producer_id)
            .or_default()
            .entry(group)
            .or_default()
            .insert((topic, partition), decode_value(value)?);
        return Ok(());
    }
    if key.get(..2) == Some(&TXN_END_KEY_VERSION.to_be_bytes()[..]) {
        let mut r = Reader(key);
        r.version(TXN_END_KEY_VERSION)?;
        let producer_id = i64::from_be_bytes(r.array()?);
        r.finish()?;
        let value = record.value.as_ref().ok_or("transaction end without a value")?;
        let mut r = Reader(value);
        r.version(1)?;
        let [committed] = r.array::<1>()?;
        r.finish()?;
        resolve_pending(groups, pending, producer_id, committed == 1);
        return Ok(());
    }
    if key.get(..2) == Some(&GROUP_KEY_VERSION.to_be_bytes()[..]) {
        let group = decode_group_key(key)?;
        match &record.value {
            None => group_records.remove(&group),
            Some(value) => group_records.insert(group, decode_group_value(value)?),
        };
        return Ok(());
    }
    let (group, topic, partition) = decode_key(key)?;
    match &record.value {
        None => remove_key(groups, &group, &topic, partition),
        Some(value) => {
            let committed = decode_value(value)?;
            groups.entry(group).or_default().insert((topic, partition), committed);
        }
    }
    Ok(())
}

pub(super) fn put_str16(buf: &mut BytesMut, s: &str) -> Result<(), StoreError> {
    let len = u16::try_from(s.len()).map_err(|_| StoreError::Encode(format!("name of {} bytes", s.len())))?;
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn encode_key(group: &str, topic: &str, partition: i32) -> Result<Bytes, StoreError> {
    let mut buf = BytesMut::with_capacity(10 + group.len() + topic.len());
    buf.put_u16(KEY_VERSION);
    put_str16(&mut buf, group)?;
    put_str16(&mut buf, topic)?;
    buf.put_i32(partition);
    Ok(buf.freeze())
}

fn encode_value(c: &CommittedOffset) -> Result<Bytes, StoreError> {
    let len = u32::try_from(c.metadata.len()).map_err(|_| StoreError::Encode("metadata too long".into()))?;
    let mut buf = BytesMut::with_capacity(26 + c.metadata.len());
    buf.put_u16(VALUE_VERSION);
    buf.put_i64(c.offset);
    buf.put_i32(c.leader_epoch);
    buf.put_i64(c.commit_timestamp_ms);
    buf.put_u32(len);
    buf.put_slice(c.metadata.as_bytes());
    Ok(buf.freeze())
}

fn encode_txn_offset_key(producer_id: i64, group: &str, topic: &str, partition: i32) -> Result<Bytes, StoreError> {
    let mut buf = BytesMut::with_capacity(18 + group.len() + topic.len());
    buf.put_u16(TXN_OFFSET_KEY_VERSION);
    buf.put_i64(producer_id);
    put_str16(&mut buf, group)?;
    put_str16(&mut buf, topic)?;
    buf.put_i32(partition);
    Ok(buf.freeze())
}

fn decode_txn_offset_key(bytes: &[u8]) -> Result<(i64, String, String, i32), String> {
    let mut r = Reader(bytes);
    r.version(TXN_OFFSET_KEY_VERSION)?;
    let producer_id = i64::from_be_bytes(r.array()?);
    let group = r.str16()?;
    let topic = r.str16()?;
    let partition = i32::from_be_bytes(r.array()?);
    r.finish()?;
    Ok((producer_id, group, topic, partition))
}

fn encode_txn_end_key(producer_id: i64) -> Bytes {
    let mut buf = BytesMut::with_capacity(10);
    buf.put_u16(TXN_END_KEY_VERSION);
    buf.put_i64(producer_id);
    buf.freeze()
}

/// A bounds-checked reader over a record's key or value.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn str16(&mut self) -> Result<String, String> {
        let len = u16::from_be_bytes(self.array()?);
        self.string(usize::from(len))
    }
    pub(super) fn opt_str16(&mut self) -> Result<Option<String>, String> {
        match self.array::<1>()? {
            [0] => Ok(None),
            [1] => Ok(Some(self.str16()?)),
            [flag] => Err(format!("bad optional-string flag {flag}")),
        }
    }
    pub(super) fn bytes32(&mut self) -> Result<Bytes, String> {
        let len = usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|e| e.to_string())?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("truncated: wanted {n} bytes, {} left", self.0.len()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N)?.try_into().map_err(|_| "short read".to_string())
    }
    fn string(&mut self, len: usize) -> Result<String, String> {
        String::from_utf8(self.take(len)?.to_vec()).map_err(|e| format!("invalid UTF-8: {e}"))
    }
    pub(super) fn version(&mut self, want: u16) -> Result<(), String> {
        match u16::from_be_bytes(self.array()?) {
            v if v == want => Ok(()),
            v => Err(format!("unknown format version {v}")),
        }
    }
    pub(super) fn finish(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.0.len()))
        }
    }
}

fn decode_key(bytes: &[u8]) -> Result<Key, String> {
    let mut r = Reader(bytes);
    r.version(KEY_VERSION)?;
    let len = u16::from_be_bytes(r.array()?);
    let group = r.string(usize::from(len))?;
    let len = u16::from_be_bytes(r.array()?);
    let topic = r.string(usize::from(len))?;
    let partition = i32::from_be_bytes(r.array()?);
    r.finish()?;
    Ok((group, topic, partition))
}

fn decode_value(bytes: &[u8]) -> Result<CommittedOffset, String> {
    let mut r = Reader(bytes);
    r.version(VALUE_VERSION)?;
    let offset = i64::from_be_bytes(r.array()?);
    let leader_epoch = i32::from_be_bytes(r.array()?);
    let commit_timestamp_ms = i64::from_be_bytes(r.array()?);
    let len = usize::try_from(u32::from_be_bytes(r.array()?)).map_err(|e| e.to_string())?;
    let metadata = r.string(len)?;
    r.finish()?;
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    type TestResult = Result<(), Box<dyn std::error::Error>>;
    const DAY_MS: i64 = 86_400_000;

    fn entry(topic: &str, partition: i32, offset: i64) -> OffsetCommitEntry {
        OffsetCommitEntry {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: 3,
            metadata: format!("m{offset}"),
        }
    }

    fn offset_of(store: &OffsetStore, group: &str, topic: &str, partition: i32) -> i64 {
        let wanted = [(topic.to_string(), partition)];
        store
            .fetch(group, Some(&wanted))
            .first()
            .map_or(-2, |f| f.committed.offset)
    }

    #[test]
    fn commit_then_fetch_and_overwrite_wins() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut store = OffsetStore::open(dir.path(), true, 1000)?;
        store.commit("g", &[entry("t", 0, 5), entry("t", 1, 7)], 1000)?;
        store.commit("g", &[entry("t", 0, 9)], 2000)?;
        let all = store.fetch("g", None);
        assert_eq!(all.len(), 2);
        let first = all.first().ok_or("empty")?;
        assert_eq!((first.topic.as_str(), first.partition), ("t", 0));
        let expected = CommittedOffset {
            offset: 9,
            leader_epoch: 3,
            metadata: "m9".into(),
            commit_timestamp_ms: 2000,
        };
        assert_eq!(first.committed, expected);
        assert_eq!(offset_of(&store, "g", "t", 1), 7);
        assert_eq!(offset_of(&store, "g", "t", 2), -1);
        assert_eq!(offset_of(&store, "other", "t", 0), -1);
        assert!(store.fetch("other", None).is_empty());
        Ok(())
    }

    #[test]
    fn survives_clean_and_unclean_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut store = OffsetStore::open(dir.path(), true, 1000)?;
        store.commit("g", &[entry("t", 0, 5), entry("u", 2, 8)], 1000)?;
        store.commit("g", &[entry("t", 0, 6)], 1001)?;
        let before = store.fetch("g", None);
        store.close(1002)?;
        let mut store = OffsetStore::open(dir.path(), true, 1003)?;
        assert_eq!(store.fetch("g", None), before);
        store.commit("h", &[entry("t", 0, 1)], 1004)?;
        drop(store); // a crash: no close, no flush
        let store = OffsetStore::open(dir.path(), false, 1005)?;
        assert_eq!(store.fetch("g", None), before);
        assert_eq!(offset_of(&store, "h", "t", 0), 1);
        Ok(())
    }

    #[test]
    fn tombstones_survive_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut store = OffsetStore::open(dir.path(), true, 0)?;
        store.commit("a", &[entry("t", 0, 1), entry("t", 1, 2), entry("gone", 0, 3)], 0)?;
        store.commit("b", &[entry("t", 0, 4), entry("gone", 1, 5)], 0)?;
        store.commit("c", &[entry("t", 0, 6)], 0)?;
        assert_eq!(store.delete_offsets("a", &[("t".into(), 1), ("t".into(), 9)], 1)?, 1);
        assert_eq!(store.remove_topic("gone", 1)?, 2);
        assert_eq!(store.delete_group("c", 1)?, 1);
        assert_eq!(store.delete_group("missing", 1)?, 0);
        let check = |s: &OffsetStore| {
            assert_eq!(offset_of(s, "a", "t", 0), 1);
            assert_eq!(offset_of(s, "a", "t", 1), -1);
            assert_eq!(offset_of(s, "a", "gone", 0), -1);
            assert_eq!(offset_of(s, "b", "gone", 1), -1);
            assert_eq!(offset_of(s, "b", "t", 0), 4);
            assert!(!s.has_offsets("c"));
            assert_eq!(s.live_count(), 2);
        };
        check(&store);
        drop(store);
        check(&OffsetStore::open(dir.path(), false, 2)?);
        Ok(())
    }

    #[test]
    fn expire_only_old_commits_of_empty_groups() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut store = OffsetStore::open(dir.path(), true, 0)?;
        store.commit("empty", &[entry("t", 0, 1)], 0)?;
        store.commit("empty", &[entry("t", 1, 2)], 6 * DAY_MS)?;
        store.commit("active", &[entry("t", 0, 3)], 0)?;
        let now = 7 * DAY_MS;
        let removed = store.expire(now, DEFAULT_OFFSETS_RETENTION_MS, |g| {
            (g == "empty").then_some(i64::MIN)
        })?;
        assert_eq!(removed, 1);
        // Retention counts from when the group became empty if that is later than the commit.
        store.commit("late", &[entry("t", 0, 4)], 0)?;
        let removed = store.expire(now, DEFAULT_OFFSETS_RETENTION_MS, |g| {
            (g == "late").then_some(3 * DAY_MS)
        })?;
        assert_eq!(removed, 0);
        assert_eq!(offset_of(&store, "late", "t", 0), 4);
        store.delete_group("late", now)?;
        assert_eq!(offset_of(&store, "empty", "t", 0), -1);
        assert_eq!(offset_of(&store, "empty", "t", 1), 2);
        assert_eq!(offset_of(&store, "active", "t", 0), 3);
        drop(store);
        let store = OffsetStore::open(dir.path(), false, now)?;
        assert_eq!(offset_of(&store, "empty", "t", 0), -1);
        assert_eq!(store.live_count(), 2);
        Ok(())
    }

    #[test]
    fn compaction_keeps_live_offsets_shrinks_and_survives_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut store = OffsetStore::open(dir.path(), true, 0)?;
        store.set_compaction_slack_records(u64::MAX);
        for round in 0..50 {
            let entries: Vec<_> = (0..20).map(|p| entry("t", p, round * 100 + i64::from(p))).collect();
            store.commit("g", &entries, round)?;
            store.commit("h", &[entry("u", 0, round)], round)?;
        }
        store.delete_group("h", 60)?;
        let before = store.fetch("g", None);
        let size_before = store.log_size_bytes();
        store.compact(61)?;
        assert!(
            store.log_size_bytes() * 10 < size_before,
            "{} vs {size_before}",
            store.log_size_bytes()
        );
        assert_eq!(store.fetch("g", None), before);
        assert!(!dir.path().join("__consumer_offsets-0.compacting").exists());
        assert!(!dir.path().join("__consumer_offsets-0.delete").exists());
        store.commit("g", &[entry("t", 0, 1)], 62)?;
        drop(store);
        let store = OffsetStore::open(dir.path(), false, 63)?;
        assert_eq!(store.live_count(), 20);
        assert_eq!(offset_of(&store, "g", "t", 0), 1);
        assert_eq!(store.fetch("g", None).get(1..), before.get(1..));
        assert!(!store.has_offsets("h"));
        Ok(())
    }

    #[test]
    fn compaction_triggers_by_record_count() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut store = OffsetStore::open(dir.path(), true, 0)?;
        store.set_compaction_slack_records(10);
        for i in 0..30 {
            store.commit("g", &[entry("t", 0, i)], i)?;
        }
        // Compacted whenever more than 4 * 1 + 10 records had accumulated.
        assert!(store.log.log().log_end_offset() <= 15);
        store.close(31)?;
        let store = OffsetStore::open(dir.path(), true, 32)?;
        assert_eq!(offset_of(&store, "g", "t", 0), 29);
        Ok(())
    }

    /// Inside a multi-threaded runtime (the broker's) compaction leaves the worker first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_runs_off_the_runtime_worker() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut store = OffsetStore::open(dir.path(), true, 0)?;
        store.set_compaction_slack_records(10);
        for i in 0..30 {
            store.commit("g", &[entry("t", 0, i)], i)?;
        }
        assert!(store.log.log().log_end_offset() <= 15, "compacted");
        assert_eq!(offset_of(&store, "g", "t", 0), 29);
        Ok(())
    }

    #[test]
    fn interrupted_compactions_are_repaired_at_open() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut store = OffsetStore::open(dir.path(), true, 0)?;
        store.commit("g", &[entry("t", 0, 5)], 0)?;
        store.close(1)?;
        // A rewrite that never swapped (contents stale on purpose): thrown away.
        let compacting = dir.path().join("__consumer_offsets-0.compacting");
        let mut stale = OffsetStore::open(&dir.path().join("elsewhere"), true, 0)?;
        stale.commit("g", &[entry("t", 0, 1)], 0)?;
        stale.close(1)?;
        fs::rename(dir.path().join("elsewhere").join(OFFSETS_LOG_DIR), &compacting)?;
        let store = OffsetStore::open(dir.path(), true, 2)?;
        assert!(!compacting.exists());
        assert_eq!(offset_of(&store, "g", "t", 0), 5);
        store.close(3)?;
        // A crash between the two renames: the complete rewrite is promoted.
        let main = dir.path().join(OFFSETS_LOG_DIR);
        let old = dir.path().join("__consumer_offsets-0.delete");
        fs::rename(&main, &compacting)?;
        fs::create_dir(&old)?;
        let store = OffsetStore::open(dir.path(), false, 4)?;
        assert!(!compacting.exists() && !old.exists());
        assert_eq!(offset_of(&store, "g", "t", 0), 5);
        Ok(())
    }

    #[test]
    fn transactional_offsets_appear_on_commit_only_and_survive_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut store = OffsetStore::open(dir.path(), true, 0)?;
        store.commit("g", &[entry("t", 0, 1)], 0)?;
        store.txn_commit(7, "g", &[entry("t", 0, 10), entry("t", 1, 11)], 1)?;
        store.txn_commit(8, "g", &[entry("t", 2, 20)], 1)?;
        assert_eq!(offset_of(&store, "g", "t", 0), 1, "pending offsets are not visible");
        assert!(store.has_pending("g", "t", 1) && !store.has_pending("g", "t", 3));
        store.end_txn(7, true, 2)?;
        assert_eq!(offset_of(&store, "g", "t", 0), 10);
        assert_eq!(offset_of(&store, "g", "t", 1), 11);
        assert!(!store.has_pending("g", "t", 1));
        drop(store); // crash with pid 8 still open
        let mut store = OffsetStore::open(dir.path(), false, 3)?;
        assert_eq!(offset_of(&store, "g", "t", 1), 11);
        assert!(store.has_pending("g", "t", 2), "the open transaction's offsets survive");
        store.compact(4)?;
        store.end_txn(8, false, 5)?;
        store.close(6)?;
        let store = OffsetStore::open(dir.path(), true, 7)?;
        assert_eq!(offset_of(&store, "g", "t", 2), -1, "aborted offsets are dropped");
        assert!(!store.has_pending("g", "t", 2));
        Ok(())
    }

    #[test]
    fn corrupt_record_is_refused_at_open() -> TestResult {
        let dir = tempfile::tempdir()?;
        let bad = [(Bytes::from_static(b"\x00\x09junk"), None)];
        crate::storage::internal_log::write_raw(dir.path(), OFFSETS_LOG_DIR, &bad)?;
        let err = OffsetStore::open(dir.path(), true, 2).err().ok_or("opened")?;
        assert!(matches!(err, StoreError::Decode { offset: 0, .. }), "{err}");
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn codec_round_trips(group in ".{0,20}", topic in ".{0,20}", partition: i32, offset: i64,
                             leader_epoch: i32, metadata in ".{0,40}", commit_timestamp_ms: i64) {
            let key = encode_key(&group, &topic, partition).map_err(|e| e.to_string());
            proptest::prop_assert_eq!(key.and_then(|k| decode_key(&k)), Ok((group, topic, partition)));
            let c = CommittedOffset { offset, leader_epoch, metadata, commit_timestamp_ms };
            let value = encode_value(&c).map_err(|e| e.to_string());
            proptest::prop_assert_eq!(value.and_then(|v| decode_value(&v)), Ok(c));
        }
    }

    #[test]
    fn key_and_value_round_trip() -> TestResult {
        let key = encode_key("grp", "tópic", -1)?;
        assert_eq!(decode_key(&key)?, ("grp".into(), "tópic".into(), -1));
        let c = CommittedOffset {
            offset: i64::MAX,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 42,
        };
        assert_eq!(decode_value(&encode_value(&c)?)?, c);
        assert!(decode_value(encode_value(&c)?.get(..10).ok_or("short")?).is_err());
        assert!(encode_key(&"x".repeat(70_000), "t", 0).is_err());
        Ok(())
    }
}
