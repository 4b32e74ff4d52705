//! Where the coordinators keep their state: the partitions of an internal topic
//! (`__consumer_offsets`, `__transaction_state`), ordinary replicated partitions of the replica
//! manager. A coordinator is the leader of its partition; what it writes is committed once the
//! partition's high watermark passes it (replicated to the ISR), as Kafka's coordinators do.
//!
//! This is the coordinators' narrow door to the replica manager, and all they may do with it:
//! - [`CoordinatorLog::append`]: one uncompressed v2 batch without a producer (one record per
//!   key; a `None` value is a tombstone), appended as the leader at the epoch the coordinator
//!   loaded the partition with. It returns at once with a [`Replication`] to wait on.
//! - [`Replication::wait`]: until the high watermark passes the batch, the leadership is lost
//!   (NOT_COORDINATOR for the client), or the timeout (`offsets.commit.timeout.ms`).
//! - [`CoordinatorLog::replay`]: reads a partition from its log start to its log end (blocking;
//!   at load, when this broker became its leader) and hands every data record over in order.
//!   Control records (transaction markers) are skipped.
//!
//! The partition of a key is Kafka's: `abs(key.hashCode()) % partitions` with Java's
//! `String.hashCode` and Kafka's `Utils.abs`, so a group or transactional id lands on the same
//! partition as it would in Kafka.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use tokio::time::Instant;

use crate::error::BrokerError;
use crate::replication::partition::{Partition, Uncommitted};
use crate::replication::replica_manager::ReplicaManager;
use crate::storage::batch::batches;

/// Kafka's internal topic of committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's internal topic of transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Bytes asked per read during replay.
const REPLAY_READ_BYTES: usize = 16 * 1024 * 1024;

pub use crate::storage::batch::KeyValue;

/// A coordinator partition this broker started or stopped leading, as the metadata listener
/// tells the coordinator that owns the topic: gained (at a new leader epoch) means load it,
/// lost means drop what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// Led here at `epoch`; the topic has `count` partitions.
    Gained {
        partition: i32,
        epoch: i32,
        count: i32,
    },
    Lost {
        partition: i32,
    },
}

/// What a coordinator's log can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// This broker does not lead the partition (any more) at the coordinator's epoch: the
    /// client looks the coordinator up again (NOT_COORDINATOR).
    #[error("not the leader of {topic}-{partition} at epoch {epoch}")]
    NotLeader {
        topic: &'static str,
        partition: i32,
        epoch: i32,
    },
    /// The write could not be replicated in time or the ISR is too small: the client retries
    /// (COORDINATOR_NOT_AVAILABLE, as Kafka maps NOT_ENOUGH_REPLICAS and REQUEST_TIMED_OUT).
    #[error("{0}")]
    Unavailable(String),
    /// A record that cannot be encoded (a name longer than its length field).
    #[error("cannot encode a coordinator record: {0}")]
    Encode(String),
    /// A stored record that does not decode: the partition is not loaded.
    #[error("corrupt coordinator record at offset {offset}: {reason}")]
    Decode { offset: i64, reason: String },
}

impl LogError {
    /// Whether the client should look for the coordinator elsewhere.
    pub fn is_not_leader(&self) -> bool {
        matches!(self, LogError::NotLeader { .. })
    }
}

/// An internal topic's partitions as seen by its coordinator. Cheap to clone.
#[derive(Clone)]
pub struct CoordinatorLog {
    replicas: Arc<ReplicaManager>,
    topic: &'static str,
}

impl std::fmt::Debug for CoordinatorLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorLog").field("topic", &self.topic).finish()
    }
}

/// A batch appended and not yet known to be replicated.
#[derive(Debug, Clone)]
#[must_use = "a write is committed only once replicated"]
pub struct Replication {
    partition: Option<Arc<Partition>>,
    topic: &'static str,
    epoch: i32,
    offset: i64,
}

impl CoordinatorLog {
    pub fn new(replicas: Arc<ReplicaManager>, topic: &'static str) -> Self {
        CoordinatorLog { replicas, topic }
    }

    pub fn topic(&self) -> &'static str {
        self.topic
    }

    fn leader(&self, partition: i32, epoch: i32) -> Result<Arc<Partition>, LogError> {
        let not_leader = || LogError::NotLeader {
            topic: self.topic,
            partition,
            epoch,
        };
        let p = self
            .replicas
            .get_partition(self.topic, partition)
            .ok_or_else(not_leader)?;
        if !p.is_leader() || p.leader_epoch() != epoch {
            return Err(not_leader());
        }
        Ok(p)
    }

    /// Appends `kvs` as one batch to `partition`, led here at `epoch` (see the module docs).
    /// Nothing to write is an immediate success.
    pub fn append(&self, partition: i32, epoch: i32, kvs: &[KeyValue], now_ms: i64) -> Result<Replication, LogError> {
        if kvs.is_empty() {
            return Ok(Replication::done(self.topic));
        }
        let p = self.leader(partition, epoch)?;
        if let Some((isr, _, min_isr)) = p.isr_sizes() {
            if isr < min_isr {
                return Err(LogError::Unavailable(format!(
                    "{}-{partition}: the ISR ({isr}) is below min.insync.replicas ({min_isr})",
                    self.topic
                )));
            }
        }
        let records = encode_batch(kvs, now_ms)?;
        let outcome = self
            .replicas
            .append_internal(&p, epoch, records, now_ms)
            .map_err(|e| match e {
                BrokerError::NotLeaderOrFollower | BrokerError::FencedLeaderEpoch => LogError::NotLeader {
                    topic: self.topic,
                    partition,
                    epoch,
                },
                other => LogError::Unavailable(format!("{}-{partition}: {other}", self.topic)),
            })?;
        Ok(Replication {
            partition: Some(p),
            topic: self.topic,
            epoch,
            offset: outcome,
        })
    }

    /// Reads `partition` from its log start to its log end and applies every data record in
    /// order. Blocking (file reads): call it off the async workers.
    pub fn replay(
        &self,
        partition: i32,
        epoch: i32,
        apply: &mut dyn FnMut(Record) -> Result<(), String>,
    ) -> Result<(), LogError> {
        let p = self.leader(partition, epoch)?;
        let (mut offset, end) = p.log_range();
        while offset < end {
            let data = p
                .read_to_log_end(offset, REPLAY_READ_BYTES)
                .map_err(|e| LogError::Unavailable(format!("{}-{partition}: {e}", self.topic)))?;
            let mut next = offset;
            for header in batches(&data) {
                next = header
                    .map_err(|e| LogError::Decode {
                        offset: next,
                        reason: e.to_string(),
                    })?
                    .1
                    .next_offset();
            }
            if next <= offset {
                return Err(LogError::Decode {
                    offset,
                    reason: "read returned no batch before the log end".into(),
                });
            }
            let mut buf = data.clone();
            let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| LogError::Decode {
                offset,
                reason: e.to_string(),
            })?;
            for record in sets.into_iter().flat_map(|s| s.records) {
                if record.control {
                    continue;
                }
                let at = record.offset;
                apply(record).map_err(|reason| LogError::Decode { offset: at, reason })?;
            }
            offset = next;
        }
        Ok(())
    }
}

impl Replication {
    /// A write with nothing to wait for.
    pub fn done(topic: &'static str) -> Self {
        Replication {
            partition: None,
            topic,
            epoch: -1,
            offset: 0,
        }
    }

    /// Whether the write is committed now: the HW passed it while this broker leads at the
    /// write's epoch. A write with nothing to wait for is.
    pub fn is_committed(&self) -> bool {
        self.partition
            .as_ref()
            .is_none_or(|p| p.is_leader() && p.leader_epoch() == self.epoch && p.high_watermark() >= self.offset)
    }

    /// Whether the write can no longer be committed by this broker (its leadership at the
    /// write's epoch is gone; a new leader may have truncated it).
    pub fn is_lost(&self) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|p| !p.is_leader() || p.leader_epoch() != self.epoch)
    }

    /// Waits until the write is committed (the HW passed it), the leadership at the write's
    /// epoch is lost, or `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<(), LogError> {
        let Some(p) = self.partition else { return Ok(()) };
        match p
            .wait_committed(self.epoch, self.offset, Instant::now() + timeout)
            .await
        {
            Ok(()) => Ok(()),
            Err(Uncommitted::NotLeader) => Err(LogError::NotLeader {
                topic: self.topic,
                partition: p.index,
                epoch: self.epoch,
            }),
            Err(Uncommitted::TimedOut) => Err(LogError::Unavailable(format!(
                "{}-{}: not replicated within {} ms",
                self.topic,
                p.index,
                timeout.as_millis()
            ))),
        }
    }
}

/// Kafka's partition of a coordinator key: `Utils.abs(key.hashCode()) % partitions`.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = key
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// One uncompressed v2 batch without a producer, one record per key.
pub fn encode_batch(kvs: &[KeyValue], now_ms: i64) -> Result<Bytes, LogError> {
    crate::storage::batch::encode_keyed_batch(kvs, now_ms).map_err(LogError::Encode)
}

/// A single-node internal topic for tests: a replica manager in `dir` leading every partition.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::controller::image::TopicImage;
    use crate::controller::record::PartitionRegistration;
    use crate::storage::LogConfig;

    pub fn single_node(
        dir: &std::path::Path,
        topic: &'static str,
        partitions: i32,
    ) -> Result<(CoordinatorLog, Arc<ReplicaManager>), Box<dyn std::error::Error>> {
        replicated(dir, topic, partitions, &[1])
    }

    /// Node 1 leading every partition, `replicas` (node 1 first) in every ISR: a write
    /// commits once the others have fetched it.
    pub fn replicated(
        dir: &std::path::Path,
        topic: &'static str,
        partitions: i32,
        replicas: &[crate::controller::record::NodeId],
    ) -> Result<(CoordinatorLog, Arc<ReplicaManager>), Box<dyn std::error::Error>> {
        let image = Arc::new(TopicImage {
            name: topic.into(),
            id: uuid::Uuid::new_v4(),
            partitions: (0..partitions)
                .map(|_| PartitionRegistration::new(replicas.to_vec()))
                .collect(),
            configs: Default::default(),
        });
        let (rm, queue) = ReplicaManager::open(dir, 1, LogConfig::default(), std::slice::from_ref(&image), true, 16)?;
        std::mem::forget(queue);
        let rm = Arc::new(rm);
        rm.apply_leadership(&image);
        Ok(reuse(&rm, topic))
    }

    /// Another view of the same replica manager's topic.
    pub fn reuse(rm: &Arc<ReplicaManager>, topic: &'static str) -> (CoordinatorLog, Arc<ReplicaManager>) {
        (CoordinatorLog::new(Arc::clone(rm), topic), Arc::clone(rm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_kafkas() {
        // Expected values from Java 17: s.hashCode(), then Kafka's Utils.abs(h) % 50.
        assert_eq!(partition_for("my-group", 50), 12); // hashCode -1906497762
        assert_eq!(partition_for("compat-cluster-group", 50), 41); // hashCode -239234591
                                                                   // Non-ASCII keys hash by UTF-16 code units, as Java does.
        assert_eq!(partition_for("\u{1F600}", 50), 49); // hashCode 1772899
        assert_eq!(partition_for("\u{e9}t\u{e9}", 50), 42); // hashCode 227742
        assert_eq!(partition_for("", 50), 0);
    }

    #[tokio::test]
    async fn appended_records_replay_and_commit() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (log, rm) = testing::single_node(dir.path(), OFFSETS_TOPIC, 3)?;
        let epoch = rm.get_partition(OFFSETS_TOPIC, 1).ok_or("no partition")?.leader_epoch();
        let kvs = vec![
            (Bytes::from_static(b"k1"), Some(Bytes::from_static(b"v1"))),
            (Bytes::from_static(b"k2"), None),
        ];
        log.append(1, epoch, &kvs, 7)?.wait(Duration::from_secs(5)).await?;
        // A stale epoch is refused.
        assert!(log.append(1, epoch + 1, &kvs, 7).is_err_and(|e| e.is_not_leader()));
        let mut seen = Vec::new();
        log.replay(1, epoch, &mut |r| {
            seen.push((r.key, r.value));
            Ok(())
        })?;
        assert_eq!(seen, kvs.into_iter().map(|(k, v)| (Some(k), v)).collect::<Vec<_>>());
        rm.shutdown()?;
        Ok(())
    }
}
