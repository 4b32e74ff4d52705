//! The replica manager (Kafka's `ReplicaManager`): owns every hosted [`Partition`], appends
//! produce requests, answers fetches, and runs the two waits of Kafka's purgatory:
//!
//! - delayed produce: an acknowledged append waits until the partition's high watermark passes
//!   it (after the group-commit fsync when the flush policy requires one; later, after the ISR
//!   has fetched it), or the request's timeout, which answers REQUEST_TIMED_OUT;
//! - delayed fetch: a fetch that found fewer than `min_bytes` waits for any of its partitions'
//!   high watermarks to move, or `max_wait_ms`, then reads again.
//!
//! Both waits are keyed by offset on each partition's HW watch, so replication later changes
//! who advances the HW, not who waits for it. The flusher task (group commit) drains a bounded
//! queue holding at most one entry per partition and fsyncs outside the log locks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::controller::image::TopicImage;
use crate::error::BrokerError;
use crate::replication::log_dir::LogDirHealth;
use crate::replication::partition::{IsrChange, Partition, PartitionRead, Uncommitted};
use crate::storage::checkpoint::{
    read_partition_offsets, write_partition_offsets, LOG_START_OFFSET_DIR_CHECKPOINT, RECOVERY_POINT_OFFSET_CHECKPOINT,
};
use crate::storage::{CheckpointOffsets, LogAppendInfo, LogConfig, StorageError, UnifiedLog};

/// Partitions opened or created at once (each is a few file creations and reads).
const OPEN_PARALLELISM: usize = 8;
/// Partitions closed at once at shutdown (each close is a few fsyncs; the disk overlaps them).
const SHUTDOWN_PARALLELISM: usize = 16;

/// The log dir checkpoints read at startup: `(topic, partition)` -> offset.
#[derive(Default)]
struct SavedOffsets {
    recovery_points: HashMap<(String, i32), i64>,
    log_start_offsets: HashMap<(String, i32), i64>,
}

/// How the fetch is bounded (Kafka's `FetchParams`).
#[derive(Debug, Clone, Copy)]
pub struct FetchParams {
    pub max_wait_ms: i64,
    pub min_bytes: usize,
    pub max_bytes: usize,
    /// Fetch v0-2: `max_bytes` is a hard limit even for the first batch.
    pub hard_max_bytes_limit: bool,
    /// Isolation level read_committed: read below the last stable offset.
    pub read_committed: bool,
    /// A consumer that may read from followers (Fetch v11+, KIP-392): up to their high
    /// watermark, which the leader gives them.
    pub from_followers: bool,
}

/// One partition of a fetch.
#[derive(Debug, Clone)]
pub struct FetchTarget {
    pub partition: Option<Arc<Partition>>,
    pub fetch_offset: i64,
    pub partition_max_bytes: usize,
    /// The consumer gave its view of the leader epoch (Fetch v9+, KIP-320): on a follower, past
    /// its log end is OFFSET_OUT_OF_RANGE (the consumer asks the leader); without one, an empty
    /// answer (Kafka's KAFKA-14284: it may be a stale-metadata fetch the follower cannot judge).
    pub knows_leader_epoch: bool,
}

/// A topic's partitions by index: `None` where this broker holds no replica.
type TopicPartitions = Arc<Vec<Option<Arc<Partition>>>>;

pub struct ReplicaManager {
    log_dir: PathBuf,
    /// This broker: a partition is hosted here if its replicas name it.
    pub(crate) node_id: i32,
    /// Followers fetching from their leaders (see `fetcher`).
    pub fetchers: crate::replication::fetcher::ReplicaFetcherManager,
    /// ISR changes for the controller (see `leadership`), once the broker is up.
    pub(crate) isr_changes: std::sync::OnceLock<mpsc::Sender<(Arc<Partition>, IsrChange)>>,
    defaults: RwLock<LogConfig>,
    topics: RwLock<HashMap<Arc<str>, TopicPartitions>>,
    flush_tx: mpsc::Sender<Arc<Partition>>,
    /// Offline after a failed write, online again after a successful append.
    pub health: Arc<LogDirHealth>,
    /// Some hosted replica failed to open or be created (see [`Self::is_incomplete`]).
    incomplete: std::sync::atomic::AtomicBool,
    /// The replication throttles of this broker (`leader/follower.replication.throttled.rate`).
    pub leader_quota: Arc<crate::replication::quota::ReplicationQuota>,
    pub follower_quota: Arc<crate::replication::quota::ReplicationQuota>,
}

/// The receiving end of the flush queue, run by [`run_flusher`].
pub struct FlushQueue(mpsc::Receiver<Arc<Partition>>, Arc<LogDirHealth>);

/// `<topic>-<partition>`, Kafka's partition directory name.
pub fn partition_dir(log_dir: &Path, topic: &str, index: i32) -> PathBuf {
    log_dir.join(format!("{topic}-{index}"))
}

/// Kafka's `partition.metadata` file: which topic id a partition directory belongs to.
const PARTITION_METADATA: &str = "partition.metadata";

/// Makes `dir` the directory of topic `id`'s partition: a directory left by a deleted topic of
/// the same name (its `partition.metadata` names another id) is removed first, so a new topic
/// never inherits old data. Returns whether it made the directory (`false`: it was the
/// partition's already); a failure leaves no directory it made behind.
fn claim_partition_dir(dir: &Path, id: uuid::Uuid) -> Result<bool, BrokerError> {
    let file = dir.join(PARTITION_METADATA);
    let wanted = format!("version: 0\ntopic_id: {}\n", id.simple());
    match std::fs::read_to_string(&file) {
        Ok(text) if text == wanted => return Ok(false),
        Ok(_) => {
            tracing::warn!(dir = %dir.display(), "partition directory belongs to another topic id; removing it");
            std::fs::remove_dir_all(dir)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let made =
        std::fs::create_dir_all(dir).and_then(|()| crate::storage::checkpoint::write_atomic(&file, wanted.as_bytes()));
    if let Err(e) = made {
        remove_new_dir(dir);
        return Err(e.into());
    }
    Ok(true)
}

/// Removes the directory of a partition whose creation failed (nothing in it was acknowledged).
fn remove_new_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a partition of a failed creation");
        }
        _ => {}
    }
}

/// The log the broker keeps outside the topic metadata: the metadata log itself.
fn is_internal_log(dir_name: &str) -> bool {
    dir_name.starts_with("__cluster_metadata")
}

/// Removes what a crash can leave behind: directories of deletions in progress (`*-delete`)
/// and partition directories of topics (or partitions) the metadata no longer has.
fn remove_stray_dirs(log_dir: &Path, node_id: i32, topics: &[Arc<TopicImage>]) -> Result<(), BrokerError> {
    let wanted: std::collections::HashSet<String> = topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.replicas.contains(&node_id))
                .map(move |(i, _)| format!("{}-{i}", t.name))
        })
        .collect();
    for entry in std::fs::read_dir(log_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !entry.file_type()?.is_dir() || is_internal_log(&name) || wanted.contains(&name) {
            continue;
        }
        let is_partition = name.ends_with("-delete")
            || name
                .rsplit_once('-')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_partition {
            tracing::warn!(dir = %name, "removing partition directory not in the metadata");
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

pub use crate::clock::now_ms;

/// The effective log config of a topic: broker defaults plus its overrides.
pub fn topic_log_config(defaults: &LogConfig, meta: &TopicImage) -> LogConfig {
    let mut config = defaults.clone();
    for (k, v) in &meta.configs {
        // Overrides were validated when stored; one that no longer parses keeps the default.
        if let Err(e) = crate::config::apply_topic_config(&mut config, k, v) {
            tracing::warn!(topic = %meta.name, error = %e, "ignoring stored topic config");
        }
    }
    config
}

impl ReplicaManager {
    /// Opens every partition of `topics` (recovering them after an unclean shutdown).
    pub fn open(
        log_dir: &Path,
        node_id: i32,
        defaults: LogConfig,
        topics: &[Arc<TopicImage>],
        had_clean_shutdown: bool,
        max_partitions: usize,
    ) -> Result<(Self, FlushQueue), BrokerError> {
        let health = Arc::new(LogDirHealth::new(log_dir));
        Self::open_with_health(
            log_dir,
            node_id,
            defaults,
            topics,
            had_clean_shutdown,
            max_partitions,
            health,
        )
    }

    /// [`Self::open`] reporting the dir's state to `health` (shared with the heartbeat, which
    /// starts before the logs are opened).
    pub fn open_with_health(
        log_dir: &Path,
        node_id: i32,
        defaults: LogConfig,
        topics: &[Arc<TopicImage>],
        had_clean_shutdown: bool,
        max_partitions: usize,
        health: Arc<LogDirHealth>,
    ) -> Result<(Self, FlushQueue), BrokerError> {
        let (flush_tx, flush_rx) = mpsc::channel(max_partitions.max(1024));
        let rm = ReplicaManager {
            log_dir: log_dir.to_path_buf(),
            node_id,
            fetchers: Default::default(),
            isr_changes: std::sync::OnceLock::new(),
            defaults: RwLock::new(defaults),
            topics: RwLock::new(HashMap::new()),
            flush_tx,
            health,
            incomplete: Default::default(),
            leader_quota: Default::default(),
            follower_quota: Default::default(),
        };
        remove_stray_dirs(log_dir, node_id, topics)?;
        let saved = SavedOffsets {
            recovery_points: read_partition_offsets(&log_dir.join(RECOVERY_POINT_OFFSET_CHECKPOINT))?,
            log_start_offsets: read_partition_offsets(&log_dir.join(LOG_START_OFFSET_DIR_CHECKPOINT))?,
        };
        for meta in topics {
            if let Err(e) = rm.open_partitions(meta, had_clean_shutdown, &saved) {
                // A full disk fails the creation of replicas the metadata gained while this
                // broker was down (or that it failed to create before): they stay offline and
                // are retried (`open_missing`) instead of keeping the broker down. Anything
                // else (a damaged directory, a permission) stops the start as before.
                if !crate::replication::log_dir::io_error(&e).is_some_and(crate::replication::log_dir::is_no_space) {
                    return Err(e);
                }
                tracing::warn!(topic = %meta.name, error = %e,
                    "a replica could not be opened for want of space: offline until it can be (retried)");
            }
            rm.apply_leadership(meta);
        }
        let health = Arc::clone(&rm.health);
        Ok((rm, FlushQueue(flush_rx, health)))
    }

    fn defaults(&self) -> LogConfig {
        self.defaults.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Creates the partitions of `meta` hosted here and not open yet (CreateTopics,
    /// CreatePartitions), [`OPEN_PARALLELISM`] at a time. Those that fail leave nothing behind
    /// and wait for [`Self::open_missing`]; the first failure is returned.
    pub fn create_partitions(&self, meta: &TopicImage) -> Result<(), BrokerError> {
        let opened = self.open_partitions(meta, true, &SavedOffsets::default());
        self.apply_leadership(meta);
        opened
    }

    /// Whether some replica the metadata puts here could not be opened or created (a full
    /// disk): those are offline until [`Self::open_missing`] opens them.
    pub fn is_incomplete(&self) -> bool {
        self.incomplete.load(Ordering::Relaxed)
    }

    /// Whether this replica of `topic`'s partition `index` should be here but is not open (see
    /// [`Self::is_incomplete`]). Cheap when nothing is missing.
    pub fn is_missing(&self, topic: &str, index: i32) -> bool {
        self.is_incomplete() && self.get_partition(topic, index).is_none()
    }

    /// Tries again to open the replicas of `topics` hosted here that a failure left unopened
    /// (recovering them as after a crash: one may hold data that failed to open). Returns
    /// whether any opened; [`Self::is_incomplete`] turns false once none is missing.
    pub fn open_missing(&self, topics: &[Arc<TopicImage>]) -> bool {
        self.incomplete.store(false, Ordering::Relaxed);
        let mut opened = false;
        for meta in topics {
            let open_before = self.topic_partitions(&meta.name).map_or(0, |p| p.len());
            if let Err(e) = self.open_partitions(meta, false, &SavedOffsets::default()) {
                tracing::debug!(topic = %meta.name, error = %e, "a missing replica still cannot be opened");
            }
            self.apply_leadership(meta);
            let open_now = self.topic_partitions(&meta.name).map_or(0, |p| p.len());
            if open_now > open_before {
                tracing::info!(topic = %meta.name, partitions = open_now - open_before, "opened replicas that had failed to open");
                opened = true;
            }
        }
        if opened && !self.is_incomplete() {
            self.health.succeeded();
        }
        opened
    }

    /// Opens the partitions of `meta` hosted here and not open yet, in parallel: all of them at
    /// startup and creation, those a failure left out on a retry. Those that open are installed;
    /// one that fails leaves no directory it made and marks the manager incomplete; the first
    /// failure is returned.
    fn open_partitions(
        &self,
        meta: &TopicImage,
        had_clean_shutdown: bool,
        saved: &SavedOffsets,
    ) -> Result<(), BrokerError> {
        let config = topic_log_config(&self.defaults(), meta);
        let name: Arc<str> = Arc::from(meta.name.as_str());
        let mut partitions: Vec<Option<Arc<Partition>>> = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(meta.name.as_str())
            .map(|v| v.as_ref().clone())
            .unwrap_or_default();
        partitions.resize(meta.partitions.len().max(partitions.len()), None);
        let hosted = |i: i32| meta.partition(i).is_some_and(|p| p.replicas.contains(&self.node_id));
        let indexes: Vec<i32> = (0..meta.partition_count())
            .filter(|i| hosted(*i) && partitions.get(*i as usize).is_some_and(Option::is_none))
            .collect();
        let open_one = |&index: &i32| -> Result<Partition, BrokerError> {
            let dir = partition_dir(&self.log_dir, &meta.name, index);
            let made = claim_partition_dir(&dir, meta.id)?;
            let key = (meta.name.clone(), index);
            let offsets = (
                saved.recovery_points.get(&key).copied(),
                saved.log_start_offsets.get(&key).copied(),
            );
            let opened = UnifiedLog::open_managed(dir.clone(), config.clone(), had_clean_shutdown, now_ms(), offsets)
                .map_err(BrokerError::from)
                .and_then(|log| Ok(Partition::new(name.clone(), meta.id, index, log)?));
            if opened.is_err() && made {
                remove_new_dir(&dir);
            }
            opened
        };
        let opened = parallel_map(&indexes, OPEN_PARALLELISM, open_one);
        let mut failure = None;
        for result in opened {
            // A failure takes the dir offline; a success does not bring it back (appends do,
            // or `open_missing` once nothing is missing): creating a few sparse files says
            // little about the space appends need.
            if result.is_err() {
                self.health.observe("create", &result);
            }
            match result {
                Ok(p) => {
                    if let Some(slot) = usize::try_from(p.index).ok().and_then(|i| partitions.get_mut(i)) {
                        *slot = Some(Arc::new(p));
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if failure.is_some() {
            self.incomplete.store(true, Ordering::Relaxed);
        }
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, Arc::new(partitions));
        failure.map_or(Ok(()), Err)
    }

    pub fn topic_partitions(&self, topic: &str) -> Option<Vec<Arc<Partition>>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .map(|v| v.iter().flatten().cloned().collect())
    }

    /// The replica of the partition hosted here, whatever its role.
    pub fn get_partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let parts = topics.get(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| parts.get(i))
            .cloned()
            .flatten()
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.values().flat_map(|v| v.iter().flatten().cloned()).collect()
    }

    /// Removes a topic's partitions and their data. In-flight requests holding a partition
    /// finish against open file handles; the directory is renamed first so a new topic of the
    /// same name starts clean.
    pub fn delete_topic(&self, topic: &str) -> Result<(), BrokerError> {
        let removed = self.topics.write().unwrap_or_else(|p| p.into_inner()).remove(topic);
        let Some(parts) = removed else { return Ok(()) };
        self.remove_replicas(topic, parts.iter().flatten().cloned().collect())
    }

    /// Makes the replicas of `meta` hosted here what its registrations say after a
    /// reassignment: replicas this broker left are removed with their data, replicas it
    /// joined are created (empty, to catch up as followers), then roles are applied.
    pub fn apply_replicas(&self, meta: &TopicImage) -> Result<(), BrokerError> {
        let hosted = |i: usize| {
            meta.partitions
                .get(i)
                .is_some_and(|p| p.replicas.contains(&self.node_id))
        };
        // Most changes are ISR or leader changes: look under the read lock first.
        let any_left = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(meta.name.as_str())
            .is_some_and(|parts| parts.iter().enumerate().any(|(i, p)| p.is_some() && !hosted(i)));
        let left: Vec<Arc<Partition>> = if !any_left {
            Vec::new()
        } else {
            let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
            match topics.get_mut(meta.name.as_str()) {
                Some(parts) if parts.iter().enumerate().any(|(i, p)| p.is_some() && !hosted(i)) => {
                    let mut kept = parts.as_ref().clone();
                    let left = kept
                        .iter_mut()
                        .enumerate()
                        .filter(|(i, p)| p.is_some() && !hosted(*i))
                        .filter_map(|(_, p)| p.take())
                        .collect();
                    *parts = Arc::new(kept);
                    left
                }
                _ => Vec::new(),
            }
        };
        for p in &left {
            tracing::info!(topic = %p.topic, partition = p.index, "replica reassigned away: removing it");
            p.make_follower(crate::controller::record::NO_LEADER, p.leader_epoch());
        }
        let removed = if left.is_empty() {
            Ok(())
        } else {
            self.remove_replicas(&meta.name, left)
        };
        let missing =
            (0..meta.partitions.len()).any(|i| hosted(i) && self.get_partition(&meta.name, i as i32).is_none());
        let created = if missing {
            self.open_partitions(meta, true, &SavedOffsets::default())
        } else {
            Ok(())
        };
        self.apply_leadership(meta);
        removed.and(created)
    }

    /// Removes replicas already taken out of `topics`, and their data (see `delete_topic`).
    fn remove_replicas(&self, topic: &str, parts: Vec<Arc<Partition>>) -> Result<(), BrokerError> {
        for p in &parts {
            self.fetchers.unfollow(p.topic_id, p.index);
        }
        // The log dir checkpoints forget the replicas before their files go, so a new replica
        // of the same name never inherits their recovery points.
        self.write_checkpoints()?;
        let mut doomed_dirs = Vec::with_capacity(parts.len());
        for p in &parts {
            let dir = partition_dir(&self.log_dir, topic, p.index);
            let doomed = self
                .log_dir
                .join(format!("{topic}-{}.{}-delete", p.index, uuid::Uuid::new_v4().simple()));
            match std::fs::rename(&dir, &doomed) {
                Ok(()) => doomed_dirs.push(doomed),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The renames made the removal final; the files go in the background, as Kafka's
        // `-delete` directories do (a crash leaves them to `remove_stray_dirs` at startup).
        let remove = move || {
            for doomed in doomed_dirs {
                if let Err(e) = std::fs::remove_dir_all(&doomed) {
                    tracing::warn!(dir = %doomed.display(), error = %e, "could not remove deleted partition");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(remove)),
            Err(_) => remove(),
        }
        Ok(())
    }

    /// Applies a topic's changed config to its open logs.
    pub fn update_topic_config(&self, meta: &TopicImage) {
        let config = topic_log_config(&self.defaults(), meta);
        for p in self.topic_partitions(&meta.name).unwrap_or_default() {
            p.set_config(config.clone());
        }
        self.refresh_throttles(meta);
    }

    fn schedule_flush(&self, p: &Arc<Partition>) {
        if !p.flush_scheduled.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.flush_tx.try_send(p.clone()) {
                // The queue holds one entry per partition at most, so this means shutdown.
                p.flush_scheduled.store(false, Ordering::Release);
                tracing::warn!(error = %e, "flush queue unavailable");
            }
        }
    }

    /// Appends each entry to its partition's leader log, then, unless `acks == 0`, waits (up to
    /// `timeout_ms`) for the high watermark to pass every successful append.
    pub async fn append_records(
        &self,
        acks: i16,
        timeout_ms: i32,
        entries: Vec<(Result<Arc<Partition>, BrokerError>, Bytes)>,
    ) -> Vec<Result<LogAppendInfo, BrokerError>> {
        let now = now_ms();
        let mut results = Vec::with_capacity(entries.len());
        let mut pending = Vec::new();
        for (i, (partition, records)) in entries.into_iter().enumerate() {
            let p = match partition {
                Ok(p) => p,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            // acks=-1 needs min.insync.replicas in the ISR before anything is written.
            if acks == -1 {
                if let Some((isr, _, min_isr)) = p.isr_sizes() {
                    if isr < min_isr {
                        results.push(Err(BrokerError::NotEnoughReplicas));
                        continue;
                    }
                }
            }
            let appended = p.append_records_to_leader(records, now);
            self.health.observe("append", &appended);
            match appended {
                Ok(outcome) => {
                    if outcome.flush_required {
                        self.schedule_flush(&p);
                    }
                    // acks=-1 waits for the HW (the ISR has it); acks=1 for this replica's own
                    // durability under the flush policy (at once without one).
                    let wait = match acks {
                        -1 => p.high_watermark() < outcome.required_offset,
                        1 => p.durable_offset() < outcome.required_offset,
                        _ => false,
                    };
                    if wait {
                        pending.push((i, p, outcome.leader_epoch, outcome.required_offset));
                    }
                    results.push(Ok(outcome.info));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !pending.is_empty() {
            let waiting = Instant::now();
            let timeout = Duration::from_millis(u64::try_from(timeout_ms.max(0)).unwrap_or(0));
            if acks == -1 {
                await_high_watermarks(pending, waiting + timeout, &mut results).await;
            } else {
                await_durable(pending, waiting + timeout, &mut results).await;
            }
            crate::metrics::remote_wait(waiting.elapsed());
        }
        results
    }

    /// Appends a coordinator's batch to `p`, led here at `epoch`; returns the offset the high
    /// watermark has to pass for it to be committed (see `coordinator::log`).
    pub fn append_internal(
        &self,
        p: &Arc<Partition>,
        epoch: i32,
        records: Bytes,
        now: i64,
    ) -> Result<i64, BrokerError> {
        let appended = p.append_records_at_epoch(records, epoch, now);
        self.health.observe("append", &appended);
        let outcome = appended?;
        if outcome.flush_required {
            self.schedule_flush(p);
        }
        Ok(outcome.required_offset)
    }

    /// Writes a transaction marker to each partition (Kafka's WriteTxnMarkers, done in-process on
    /// one node) and waits, as acks=-1 does, until each partition's high watermark passes it or
    /// `timeout`. Per partition: `Ok(())` once the marker is acknowledged.
    pub async fn write_txn_markers(
        &self,
        marker: crate::storage::EndTxnMarker,
        partitions: &[(String, i32)],
        timeout: Duration,
    ) -> Vec<Result<(), BrokerError>> {
        let now = now_ms();
        let mut results = Vec::with_capacity(partitions.len());
        let mut pending = Vec::new();
        for (i, (topic, index)) in partitions.iter().enumerate() {
            let Some(p) = self.get_partition(topic, *index) else {
                // A partition deleted since it joined the transaction has nothing to mark.
                results.push(Ok(()));
                continue;
            };
            let appended = p.append_marker(&marker, now);
            self.health.observe("append", &appended);
            match appended {
                Ok(outcome) => {
                    if outcome.flush_required {
                        self.schedule_flush(&p);
                    }
                    if p.high_watermark() < outcome.required_offset {
                        pending.push((i, p, outcome.leader_epoch, outcome.required_offset));
                    }
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        await_high_watermarks(pending, Instant::now() + timeout, &mut results).await;
        results
    }

    /// Reads every target; if fewer than `min_bytes` came back and no partition failed, waits
    /// for a high watermark to move (or `max_wait_ms`) and reads again.
    pub async fn fetch_messages(
        &self,
        params: FetchParams,
        targets: &[FetchTarget],
    ) -> Vec<Result<PartitionRead, BrokerError>> {
        let deadline = Instant::now() + Duration::from_millis(u64::try_from(params.max_wait_ms.max(0)).unwrap_or(0));
        let mut watchers: Vec<_> = targets
            .iter()
            .filter_map(|t| t.partition.as_ref().map(|p| p.subscribe_high_watermark()))
            .collect();
        loop {
            let results = read_all(params, targets);
            let bytes: usize = results
                .iter()
                .map(|r| r.as_ref().map(|d| d.records.len()).unwrap_or(0))
                .sum();
            let any_error = results.iter().any(|r| r.is_err());
            if bytes >= params.min_bytes || any_error || watchers.is_empty() || Instant::now() >= deadline {
                return results;
            }
            let changed = futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
            let waiting = Instant::now();
            let woke = tokio::time::timeout_at(deadline, changed).await;
            crate::metrics::remote_wait(waiting.elapsed());
            match woke {
                Ok((Ok(()), _, _)) => continue,
                // A sender dropped (topic deleted) or the deadline passed: answer with what we have.
                Ok((Err(_), _, _)) | Err(_) => return read_all(params, targets),
            }
        }
    }

    /// Writes the log dir's recovery point and log start offset checkpoints (Kafka's two
    /// files, one line per partition) from every partition's current offsets.
    pub fn write_checkpoints(&self) -> Result<(), BrokerError> {
        let offsets: Vec<_> = self
            .all_partitions()
            .into_iter()
            .map(|p| (p.topic.clone(), p.index, p.checkpoint_offsets()))
            .collect();
        self.write_checkpoint_files(&offsets)
    }

    fn write_checkpoint_files(&self, offsets: &[(Arc<str>, i32, CheckpointOffsets)]) -> Result<(), BrokerError> {
        let entries = |pick: fn(&CheckpointOffsets) -> i64| -> Vec<(&str, i32, i64)> {
            offsets.iter().map(|(t, i, o)| (t.as_ref(), *i, pick(o))).collect()
        };
        write_partition_offsets(
            &self.log_dir.join(RECOVERY_POINT_OFFSET_CHECKPOINT),
            &entries(|o| o.recovery_point),
        )?;
        write_partition_offsets(
            &self.log_dir.join(LOG_START_OFFSET_DIR_CHECKPOINT),
            &entries(|o| o.log_start_offset),
        )?;
        Ok(())
    }

    /// Flushes and closes every log, [`SHUTDOWN_PARALLELISM`] at a time, then writes the log
    /// dir checkpoints once; used at clean shutdown.
    pub fn shutdown(&self) -> Result<(), BrokerError> {
        let topics = std::mem::take(&mut *self.topics.write().unwrap_or_else(|p| p.into_inner()));
        let mut all: Vec<Arc<Partition>> = Vec::new();
        for (_, parts) in topics {
            all.extend(
                Arc::try_unwrap(parts)
                    .unwrap_or_else(|shared| shared.as_ref().clone())
                    .into_iter()
                    .flatten(),
            );
        }
        let workers = SHUTDOWN_PARALLELISM.min(all.len()).max(1);
        let queue = std::sync::Mutex::new(all);
        let closed = std::sync::Mutex::new(Vec::new());
        let first_error = std::sync::Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some(p) = next else { break };
                    let (topic, index) = (p.topic.clone(), p.index);
                    match close_partition(p) {
                        Ok(offsets) => closed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((topic, index, offsets)),
                        Err(e) => {
                            tracing::error!(topic = %topic, partition = index, error = %e, "closing log failed");
                            first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(BrokerError::Storage(e));
                        }
                    }
                });
            }
        });
        let closed = closed.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            // Keep the old checkpoints: a failed log is recovered from them at the next start.
            return Err(e);
        }
        // Every log is durable and closed. Without space for new checkpoint files (a full disk)
        // the old ones stay, which only means more to recover after a later crash: the
        // shutdown is still clean.
        if let Err(e) = self.write_checkpoint_files(&closed) {
            tracing::warn!(error = %e, "could not write the log dir checkpoints at shutdown; the previous ones stay");
        }
        Ok(())
    }

    /// Marks every partition whose time-based flush is due.
    /// Also closes the files of sealed segments idle since the last call (see
    /// `storage::segment_file`).
    pub fn flush_due(&self, now: i64) {
        for p in self.all_partitions() {
            if p.needs_flush(now) {
                self.schedule_flush(&p);
            }
            p.sweep_idle_files();
        }
    }
}

/// `f` over `items` on up to `threads` scoped threads; results in `items`' order.
fn parallel_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 || threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> = items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.min(items.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                if let Some(slot) = results.get(i) {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// Closes one partition at shutdown; one still referenced by a request that outlived the drain
/// is flushed instead.
fn close_partition(p: Arc<Partition>) -> Result<CheckpointOffsets, StorageError> {
    match Arc::try_unwrap(p) {
        Ok(p) => p.close(now_ms()),
        Err(shared) => {
            if let Some(req) = shared.prepare_flush()? {
                req.sync()?;
                shared.complete_flush(req.up_to_offset(), now_ms())?;
            }
            Ok(shared.checkpoint_offsets())
        }
    }
}

/// The delayed-produce wait: for each `(slot, partition, offset)`, waits until the partition's
/// high watermark reaches `offset`, or `deadline`, which turns `results[slot]` into
/// REQUEST_TIMED_OUT.
async fn await_high_watermarks<T>(
    pending: Vec<(usize, Arc<Partition>, i32, i64)>,
    deadline: Instant,
    results: &mut [Result<T, BrokerError>],
) {
    for (i, p, epoch, required) in pending {
        let committed = p.wait_committed(epoch, required, deadline).await;
        let Some(slot) = results.get_mut(i) else { continue };
        match committed {
            Err(Uncommitted::TimedOut) => *slot = Err(BrokerError::RequestTimedOut),
            // Leadership moved while waiting: the write may or may not survive.
            Err(Uncommitted::NotLeader) => *slot = Err(BrokerError::NotLeaderOrFollower),
            Ok(()) if p.isr_sizes().is_some_and(|(_, maximal, min_isr)| maximal < min_isr) => {
                *slot = Err(BrokerError::NotEnoughReplicasAfterAppend);
            }
            Ok(()) => {}
        }
    }
}

/// acks=1 under a flush policy: waits (until `deadline`) for each append to be durable here.
async fn await_durable<T>(
    pending: Vec<(usize, Arc<Partition>, i32, i64)>,
    deadline: Instant,
    results: &mut [Result<T, BrokerError>],
) {
    for (i, p, _epoch, required) in pending {
        let mut rx = p.subscribe_durable();
        let reached = tokio::time::timeout_at(deadline, rx.wait_for(|d| *d >= required)).await;
        if !matches!(reached, Ok(Ok(_))) {
            if let Some(slot) = results.get_mut(i) {
                *slot = Err(BrokerError::RequestTimedOut);
            }
        }
    }
}

fn read_all(params: FetchParams, targets: &[FetchTarget]) -> Vec<Result<PartitionRead, BrokerError>> {
    let mut remaining = params.max_bytes;
    let mut min_one_message = !params.hard_max_bytes_limit;
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let Some(p) = &t.partition else {
            out.push(Err(BrokerError::UnknownTopicOrPartition));
            continue;
        };
        if !p.is_leader() && !params.from_followers {
            out.push(Err(BrokerError::NotLeaderOrFollower));
            continue;
        }
        let limit = t.partition_max_bytes.min(remaining);
        match p.read(t.fetch_offset, limit, min_one_message, params.read_committed) {
            Err(StorageError::OffsetOutOfRange { offset, log_end, .. })
                if !t.knows_leader_epoch && !p.is_leader() && offset > log_end =>
            {
                let o = p.offsets();
                out.push(Ok(PartitionRead {
                    records: Bytes::new(),
                    high_watermark: o.high_watermark,
                    last_stable_offset: o.last_stable_offset,
                    log_start_offset: o.log_start_offset,
                    aborted_transactions: params.read_committed.then(Vec::new),
                }));
            }
            Ok(read) => {
                if !read.records.is_empty() {
                    min_one_message = false;
                }
                remaining = remaining.saturating_sub(read.records.len());
                out.push(Ok(read));
            }
            Err(e) => out.push(Err(BrokerError::Storage(e))),
        }
    }
    out
}

/// A failed flush takes the dir offline; a successful one says nothing (data written earlier
/// syncs fine on a full disk), only a successful append brings it back.
fn note_failure(health: &LogDirHealth, what: &str, e: &StorageError) {
    if let StorageError::Io(io) = e {
        health.failed(what, io);
    }
}

/// The group-commit flusher: takes every partition queued since the last round, fsyncs them
/// together off the async workers, then lets their high watermarks advance.
pub async fn run_flusher(mut queue: FlushQueue) {
    while let Some(first) = queue.0.recv().await {
        let mut batch = vec![first];
        while let Ok(p) = queue.0.try_recv() {
            batch.push(p);
        }
        let mut requests = Vec::with_capacity(batch.len());
        for p in batch {
            // Cleared before preparing: an append after this point schedules the next round.
            p.flush_scheduled.store(false, Ordering::Release);
            match p.prepare_flush() {
                Ok(Some(req)) => requests.push((p, req)),
                Ok(None) => {}
                Err(e) => {
                    note_failure(&queue.1, "flush", &e);
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "flush prepare failed");
                }
            }
        }
        if requests.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let synced = tokio::task::spawn_blocking(move || {
            requests
                .into_iter()
                .map(|(p, req)| {
                    let result = req.sync().map(|()| req.up_to_offset());
                    (p, result)
                })
                .collect::<Vec<_>>()
        })
        .await;
        crate::metrics::record_fsync(started.elapsed());
        let Ok(synced) = synced else { continue };
        let now = now_ms();
        for (p, result) in synced {
            match result.and_then(|offset| p.complete_flush(offset, now)) {
                Ok(()) => {}
                Err(e) => {
                    note_failure(&queue.1, "fsync", &e);
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "fsync failed");
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "replica_manager_tests.rs"]
mod tests;
