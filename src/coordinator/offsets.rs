//! `OffsetStore`: consumer groups' committed offsets and group metadata, kept in memory and
//! persisted in Kafka's `__consumer_offsets`, a partitioned, replicated internal topic
//! (`coordinator::log`). A group lives in partition `abs(hashCode(group)) % partitions`; this
//! broker serves the groups of the partitions it leads, loaded by replaying the partition when
//! it became leader. Synchronous and lock-free: the group coordinator actor owns it; each write
//! returns a [`Replication`] the actor waits on (off its task) before answering a commit.
//!
//! Why a log and not a checkpoint file: every commit is one append (cheap, ordered), and the
//! log is replicated like any partition, so a new leader has every acknowledged commit.
//!
//! Record format. Each commit is ONE uncompressed v2 batch (producer id -1) with one record
//! per partition. This is our own format, not Kafka's `OffsetCommitKey`/`OffsetCommitValue`
//! schemas; the leading version lets it evolve. All integers big-endian:
//! - key v1: `u16 version = 1`, `u16 len + group (UTF-8)`, `u16 len + topic (UTF-8)`, `i32 partition`.
//! - value v1: `u16 version = 1`, `i64 offset`, `i32 leader_epoch`, `i64 commit_timestamp_ms`,
//!   `u32 len + metadata (UTF-8)`.
//! - tombstone: the key with a null value (the offset is deleted).
//! - group metadata: key version 2, see `group_record.rs`; replay tells the two apart by the
//!   key's leading version.
//! - pending transactional offset (TxnOffsetCommit): key version 3: `u16 version = 3`,
//!   `i64 producer id`, `u16 len + group`, `u16 len + topic`, `i32 partition`; value as v1.
//! - transaction end for a producer (its marker reached this partition): key version 4:
//!   `u16 version = 4`, `i64 producer id`; value `u16 version = 1`, `u8 committed (1) or
//!   aborted (0)`. Replay moves that producer's pending offsets into the committed ones, or
//!   drops them.
//!
//! - the end of a transaction also writes, in the same batch before its end record, the
//!   committed offsets as value-v1 records (commit only) and a tombstone per pending key.
//!
//! Compaction: the topic is `cleanup.policy=compact` and the log cleaner keeps the latest
//! record per key; the records above are chosen so that replaying the compacted log gives what
//! replaying the whole log gives (a test checks it).

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Record;

use super::group_record::{
    decode_group_key, decode_group_value, encode_group_key, encode_group_value, GroupRecord, GROUP_KEY_VERSION,
};
pub use super::log::LogError as StoreError;
use super::log::{partition_for, CoordinatorLog, KeyValue, Replication};

/// Tombstones written in one batch.
const TOMBSTONES_PER_BATCH: usize = 1000;
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
/// Offsets as a write stored them.
type StoredOffsets = Vec<(TopicPartitionKey, CommittedOffset)>;
/// Offsets committed inside open transactions: producer id -> group -> offsets.
type PendingOffsets = HashMap<i64, HashMap<String, GroupOffsets>>;

/// What one partition of `__consumer_offsets` holds, as its replay built it.
#[derive(Debug, Default)]
pub struct LoadedOffsets {
    groups: HashMap<String, GroupOffsets>,
    group_records: HashMap<String, GroupRecord>,
    pending: PendingOffsets,
}

impl LoadedOffsets {
    /// Replays `partition` of `log` (led here at `epoch`). Blocking: run it off the workers.
    pub fn replay(log: &CoordinatorLog, partition: i32, epoch: i32) -> Result<Self, StoreError> {
        let mut loaded = LoadedOffsets::default();
        log.replay(partition, epoch, &mut |record| {
            apply(
                &mut loaded.groups,
                &mut loaded.group_records,
                &mut loaded.pending,
                record,
            )
        })?;
        Ok(loaded)
    }
}

/// Why a group cannot be served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotServed {
    /// Another broker leads the group's partition (NOT_COORDINATOR).
    NotCoordinator,
    /// The partition is being loaded (COORDINATOR_LOAD_IN_PROGRESS).
    Loading,
}

/// Committed offsets and group metadata of the groups whose `__consumer_offsets` partition this
/// broker leads and has loaded.
pub struct OffsetStore {
    log: CoordinatorLog,
    /// Partitions of `__consumer_offsets` (fixed once the topic exists).
    partition_count: i32,
    /// Loaded partitions and the leader epoch each was loaded at.
    loaded: HashMap<i32, i32>,
    /// Partitions being loaded, and their epoch.
    loading: HashMap<i32, i32>,
    groups: HashMap<String, GroupOffsets>,
    /// Each group's persisted metadata (see `group_record.rs`).
    group_records: HashMap<String, GroupRecord>,
    /// TxnOffsetCommit offsets waiting for their transaction's end.
    pending: PendingOffsets,
    /// Plain commits appended and not yet replicated, per partition of `__consumer_offsets` in
    /// log order (Kafka's `pendingOffsetCommits`): OffsetFetch answers a commit only once the
    /// high watermark has passed it ([`Self::settle`]), so a commit that a failover loses
    /// (never acknowledged) was never visible either, and committed offsets seen by anyone never
    /// go back. Per partition, so one lagging partition holds back only its own groups.
    unreplicated: HashMap<i32, VecDeque<(Replication, String, StoredOffsets)>>,
}

impl OffsetStore {
    /// A store with no partition loaded yet.
    pub fn new(log: CoordinatorLog, partition_count: i32) -> Self {
        OffsetStore {
            log,
            partition_count: partition_count.max(1),
            loaded: HashMap::new(),
            loading: HashMap::new(),
            groups: HashMap::new(),
            group_records: HashMap::new(),
            pending: HashMap::new(),
            unreplicated: HashMap::new(),
        }
    }

    /// Moves the commits the high watermark has passed (in log order) into the committed
    /// offsets; drops those whose leadership is gone (the partition is unloaded with them).
    pub fn settle(&mut self) {
        for queue in self.unreplicated.values_mut() {
            while let Some((replication, _, _)) = queue.front() {
                if replication.is_lost() {
                    queue.pop_front();
                    continue;
                }
                if !replication.is_committed() {
                    break;
                }
                if let Some((_, group, stored)) = queue.pop_front() {
                    self.groups.entry(group).or_default().extend(stored);
                }
            }
        }
        self.unreplicated.retain(|_, queue| !queue.is_empty());
    }

    /// Forgets commits not yet replicated of `group`'s offset for the partition: a later write
    /// (a tombstone, a transaction's offsets) replaces them, as replaying the log would.
    fn supersede(&mut self, group: &str, topic: &str, partition: i32) {
        let Some(queue) = self.unreplicated.get_mut(&partition_for(group, self.partition_count)) else {
            return;
        };
        for (_, g, stored) in queue {
            if g == group {
                stored.retain(|((t, p), _)| !(t == topic && *p == partition));
            }
        }
    }

    /// The log (for loading partitions off the actor).
    pub fn log(&self) -> &CoordinatorLog {
        &self.log
    }

    /// The group's partition of `__consumer_offsets`.
    pub fn partition_of(&self, group: &str) -> i32 {
        partition_for(group, self.partition_count)
    }

    /// Whether this broker serves `group` now.
    pub fn serves(&self, group: &str) -> Result<(), NotServed> {
        let p = self.partition_of(group);
        if self.loaded.contains_key(&p) {
            Ok(())
        } else if self.loading.contains_key(&p) {
            Err(NotServed::Loading)
        } else {
            Err(NotServed::NotCoordinator)
        }
    }

    /// Whether any partition is being loaded (ListGroups answers COORDINATOR_LOAD_IN_PROGRESS).
    pub fn is_loading(&self) -> bool {
        !self.loading.is_empty()
    }

    /// This broker became the partition's leader at `epoch` (the topic has `partition_count`
    /// partitions): returns whether a load should start. A partition loaded (or loading) at
    /// another epoch is dropped first; the caller unloads its groups (`unload`).
    pub fn begin_load(&mut self, partition: i32, epoch: i32, partition_count: i32) -> bool {
        self.partition_count = partition_count.max(1);
        if self.loaded.get(&partition) == Some(&epoch) || self.loading.get(&partition) == Some(&epoch) {
            return false;
        }
        self.loading.insert(partition, epoch);
        true
    }

    /// A load finished: installs it if the partition is still wanted at that epoch. Returns the
    /// group ids it brought (`None` if it was stale).
    pub fn finish_load(&mut self, partition: i32, epoch: i32, loaded: LoadedOffsets) -> Option<Vec<String>> {
        if self.loading.get(&partition) != Some(&epoch) {
            return None;
        }
        self.loading.remove(&partition);
        self.loaded.insert(partition, epoch);
        let ids = group_ids_of(&loaded.groups, &loaded.group_records, |_| true);
        self.groups.extend(loaded.groups);
        self.group_records.extend(loaded.group_records);
        for (producer_id, groups) in loaded.pending {
            self.pending.entry(producer_id).or_default().extend(groups);
        }
        Some(ids)
    }

    /// A load failed: the partition stays unserved (the next election retries).
    pub fn abandon_load(&mut self, partition: i32, epoch: i32) {
        if self.loading.get(&partition) == Some(&epoch) {
            self.loading.remove(&partition);
        }
    }

    /// Drops a partition this broker no longer leads (or leads at a new epoch): forgets its
    /// groups; returns their ids.
    pub fn unload(&mut self, partition: i32) -> Vec<String> {
        self.loaded.remove(&partition);
        self.loading.remove(&partition);
        let count = self.partition_count;
        let mine = |g: &String| partition_for(g, count) == partition;
        let ids = group_ids_of(&self.groups, &self.group_records, mine);
        for g in &ids {
            self.groups.remove(g);
            self.group_records.remove(g);
        }
        for groups in self.pending.values_mut() {
            groups.retain(|g, _| !mine(g));
        }
        self.pending.retain(|_, groups| !groups.is_empty());
        self.unreplicated.remove(&partition);
        ids
    }

    /// The partitions loaded here and their epochs.
    pub fn loaded_partitions(&self) -> impl Iterator<Item = (i32, i32)> + '_ {
        self.loaded.iter().map(|(p, e)| (*p, *e))
    }

    /// Appends `kvs` to `group`'s partition at the epoch it was loaded with.
    fn append(&self, group: &str, kvs: &[KeyValue], now_ms: i64) -> Result<Replication, StoreError> {
        self.append_to(self.partition_of(group), kvs, now_ms)
    }

    fn append_to(&self, partition: i32, kvs: &[KeyValue], now_ms: i64) -> Result<Replication, StoreError> {
        let epoch = *self.loaded.get(&partition).ok_or(StoreError::NotLeader {
            topic: self.log.topic(),
            partition,
            epoch: -1,
        })?;
        self.log.append(partition, epoch, kvs, now_ms)
    }

    /// Stores `entries` for `group` as one batch. Committed (and answered by OffsetFetch) once
    /// the returned replication completes.
    pub fn commit(
        &mut self,
        group: &str,
        entries: &[OffsetCommitEntry],
        now_ms: i64,
    ) -> Result<Replication, StoreError> {
        let (kvs, stored) = offset_records(entries, now_ms, |e| encode_key(group, &e.topic, e.partition))?;
        let replication = self.append(group, &kvs, now_ms)?;
        if !stored.is_empty() {
            self.unreplicated
                .entry(self.partition_of(group))
                .or_default()
                .push_back((replication.clone(), group.to_string(), stored));
        }
        self.settle();
        Ok(replication)
    }

    /// TxnOffsetCommit: stores `entries` for `group` as pending offsets of `producer_id`'s open
    /// transaction; they become the group's committed offsets when `end_txn` commits it.
    pub fn txn_commit(
        &mut self,
        producer_id: i64,
        group: &str,
        entries: &[OffsetCommitEntry],
        now_ms: i64,
    ) -> Result<Replication, StoreError> {
        let (kvs, stored) = offset_records(entries, now_ms, |e| {
            encode_txn_offset_key(producer_id, group, &e.topic, e.partition)
        })?;
        let replication = self.append(group, &kvs, now_ms)?;
        if !stored.is_empty() {
            self.pending
                .entry(producer_id)
                .or_default()
                .entry(group.to_string())
                .or_default()
                .extend(stored);
        }
        Ok(replication)
    }

    /// A transaction marker for `producer_id` reached the group coordinator: its pending
    /// offsets become committed (`commit`) or are dropped. One batch per partition holding
    /// some; nothing is written without any.
    ///
    /// The batch says it in a form the log cleaner keeps true: on commit the offsets as ordinary
    /// commit records, then a tombstone for each of the transaction's pending-offset keys, then
    /// the end record. Keeping only the latest record per key could otherwise drop the end
    /// record that committed a pending offset (the producer's next transaction writes the same
    /// end key) while keeping the pending offset, or the other way round.
    pub fn end_txn(&mut self, producer_id: i64, commit: bool, now_ms: i64) -> Result<Vec<Replication>, StoreError> {
        let Some(by_group) = self.pending.get(&producer_id) else {
            return Ok(Vec::new());
        };
        let mut batches: BTreeMap<i32, Vec<KeyValue>> = BTreeMap::new();
        for (group, offsets) in by_group {
            let kvs = batches.entry(self.partition_of(group)).or_default();
            for ((topic, partition), committed) in offsets {
                if commit {
                    kvs.push((encode_key(group, topic, *partition)?, Some(encode_value(committed)?)));
                }
                kvs.push((encode_txn_offset_key(producer_id, group, topic, *partition)?, None));
            }
        }
        let value = Bytes::from(vec![0, 1, u8::from(commit)]);
        let mut out = Vec::with_capacity(batches.len());
        for (p, mut kvs) in batches {
            kvs.push((encode_txn_end_key(producer_id), Some(value.clone())));
            out.push(self.append_to(p, &kvs, now_ms)?);
        }
        if commit {
            let keys: Vec<Key> = by_group
                .iter()
                .flat_map(|(g, offsets)| offsets.keys().map(|(t, p)| (g.clone(), t.clone(), *p)))
                .collect();
            for (g, t, p) in keys {
                self.supersede(&g, &t, p);
            }
        }
        resolve_pending(&mut self.groups, &mut self.pending, producer_id, commit);
        Ok(out)
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
    /// one).
    pub fn store_group(
        &mut self,
        group: &str,
        record: Option<&GroupRecord>,
        now_ms: i64,
    ) -> Result<Replication, StoreError> {
        match record {
            Some(record) => {
                let kv = (encode_group_key(group)?, Some(encode_group_value(record)?));
                let replication = self.append(group, &[kv], now_ms)?;
                self.group_records.insert(group.to_string(), record.clone());
                Ok(replication)
            }
            None => {
                if !self.group_records.contains_key(group) {
                    return Ok(Replication::done(self.log.topic()));
                }
                let replication = self.append(group, &[(encode_group_key(group)?, None)], now_ms)?;
                self.group_records.remove(group);
                Ok(replication)
            }
        }
    }

    /// The persisted metadata of `group`, as replayed or stored since.
    pub fn group_record(&self, group: &str) -> Option<&GroupRecord> {
        self.group_records.get(group)
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
        drop(self.store_group(group, None, now_ms)?);
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

    /// Every group this store knows: with offsets or persisted metadata.
    pub fn all_group_ids(&self) -> Vec<String> {
        group_ids_of(&self.groups, &self.group_records, |_| true)
    }

    /// The epoch `partition` is loaded (or being loaded) at.
    pub fn epoch_of(&self, partition: i32) -> Option<i32> {
        self.loaded
            .get(&partition)
            .or_else(|| self.loading.get(&partition))
            .copied()
    }

    /// The groups that have committed offsets.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, o)| !o.is_empty())
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Writes tombstones for `keys`, one batch of at most `TOMBSTONES_PER_BATCH` per
    /// partition at a time, removing each batch's keys from memory once it is appended. Not
    /// waited for: a tombstone lost with its leader leaves an offset a later expiry removes.
    fn write_tombstones(&mut self, keys: Vec<Key>, now_ms: i64) -> Result<usize, StoreError> {
        let mut by_partition: BTreeMap<i32, Vec<Key>> = BTreeMap::new();
        for key in keys {
            by_partition.entry(self.partition_of(&key.0)).or_default().push(key);
        }
        let mut done = 0;
        for (partition, keys) in by_partition {
            for chunk in keys.chunks(TOMBSTONES_PER_BATCH) {
                let mut kvs = Vec::with_capacity(chunk.len());
                for (g, t, p) in chunk {
                    kvs.push((encode_key(g, t, *p)?, None));
                }
                drop(self.append_to(partition, &kvs, now_ms)?);
                for (g, t, p) in chunk {
                    self.supersede(g, t, *p);
                    remove_key(&mut self.groups, g, t, *p);
                }
                done += chunk.len();
            }
        }
        Ok(done)
    }
}

/// The ids (sorted, once each) of the groups with offsets or metadata that `keep` accepts.
fn group_ids_of(
    groups: &HashMap<String, GroupOffsets>,
    records: &HashMap<String, GroupRecord>,
    keep: impl Fn(&String) -> bool,
) -> Vec<String> {
    let mut ids: Vec<String> = groups
        .keys()
        .chain(records.keys())
        .filter(|g| keep(g))
        .cloned()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Records for `entries` under the keys `key` gives, and the offsets as stored.
fn offset_records(
    entries: &[OffsetCommitEntry],
    now_ms: i64,
    key: impl Fn(&OffsetCommitEntry) -> Result<Bytes, StoreError>,
) -> Result<(Vec<KeyValue>, StoredOffsets), StoreError> {
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
    Ok((kvs, stored))
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
        let Some(value) = record.value.as_ref() else {
            // The transaction ended (a tombstone written with its end record).
            if let Some(groups) = pending.get_mut(&producer_id) {
                if let Some(offsets) = groups.get_mut(&group) {
                    offsets.remove(&(topic, partition));
                    if offsets.is_empty() {
                        groups.remove(&group);
                    }
                }
                if groups.is_empty() {
                    pending.remove(&producer_id);
                }
            }
            return Ok(());
        };
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

/// A store over a fresh single-node `__consumer_offsets` of `partitions` partitions in `dir`,
/// every partition loaded (tests). Keep the replica manager: it owns the logs.
#[cfg(test)]
pub(crate) fn loaded_for_test(
    dir: &std::path::Path,
    partitions: i32,
) -> Result<
    (
        OffsetStore,
        std::sync::Arc<crate::replication::replica_manager::ReplicaManager>,
    ),
    Box<dyn std::error::Error>,
> {
    let (log, rm) = super::log::testing::single_node(dir, super::log::OFFSETS_TOPIC, partitions)?;
    let mut store = OffsetStore::new(log, partitions);
    reload_for_test(&mut store, &rm)?;
    Ok((store, rm))
}

/// Unloads every partition and loads it again from its log, as a new leader would (tests).
#[cfg(test)]
pub(crate) fn reload_for_test(
    store: &mut OffsetStore,
    rm: &crate::replication::replica_manager::ReplicaManager,
) -> Result<(), Box<dyn std::error::Error>> {
    for p in 0..store.partition_count {
        let epoch = rm
            .get_partition(super::log::OFFSETS_TOPIC, p)
            .ok_or("no partition")?
            .leader_epoch();
        store.unload(p);
        store.begin_load(p, epoch, store.partition_count);
        let loaded = LoadedOffsets::replay(&store.log, p, epoch)?;
        store.finish_load(p, epoch, loaded).ok_or("stale load")?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "offsets_tests.rs"]
mod tests;
