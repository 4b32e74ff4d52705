//! Followers pulling from leaders (Kafka's `ReplicaFetcherManager` / `ReplicaFetcherThread`):
//! one fetcher per leader broker, each a supervised task with one connection, sending Kafka
//! Fetch requests (v15, the follower's id in `ReplicaState`) for every partition it follows
//! from that leader, at each partition's log end with the epoch of its last batch.
//!
//! Each answer is applied per partition: records appended as the leader wrote them and the
//! leader's high watermark taken (capped by this log's end); a diverging epoch truncates the
//! log before fetching again (KIP-279 through Fetch v12+); a fetch outside the leader's log
//! range restarts at its log start, or cuts back to its high watermark. Errors that mean the
//! metadata is moving (not the leader, an epoch mismatch) pause that partition until the
//! metadata gives it a new leader or epoch. Memory per fetcher is bounded by
//! `replica.fetch.response.max.bytes` (one response at a time).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use kafka_protocol::ResponseError;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::controller::image::MetadataImage;
use crate::controller::record::NodeId;
use crate::metadata::MetadataClient;
use crate::replication::broker_client::BrokerClient;
use crate::replication::log_dir::LogDirHealth;
use crate::replication::partition::Partition;
use crate::replication::quota::ReplicationQuota;
use crate::supervisor::Supervisor;

/// How long a fetcher whose every partition is throttled waits before looking again.
const THROTTLED_WAIT: Duration = Duration::from_millis(100);

/// The Fetch version followers send.
const FETCH_VERSION: i16 = 15;

/// Kafka's `replica.fetch.*` settings.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// replica.fetch.wait.max.ms (500).
    pub max_wait_ms: i32,
    /// replica.fetch.min.bytes (1).
    pub min_bytes: i32,
    /// replica.fetch.response.max.bytes (10 MiB).
    pub response_max_bytes: i32,
    /// replica.fetch.max.bytes (1 MiB per partition).
    pub partition_max_bytes: i32,
    /// replica.fetch.backoff.ms (1000).
    pub backoff_ms: u64,
    /// The listener followers reach leaders on.
    pub listener: String,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            max_wait_ms: 500,
            min_bytes: 1,
            response_max_bytes: 10 << 20,
            partition_max_bytes: 1 << 20,
            backoff_ms: 1_000,
            listener: "PLAINTEXT".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Follow {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Paused (an error that waits for new metadata) until then.
    paused_until: Option<Instant>,
    /// Errors in a row: the pause doubles with each, from 10 ms up to replica.fetch.backoff.ms
    /// (a new partition's first fetch often reaches its leader a moment before the leader has
    /// applied the metadata that made it leader).
    errors: u32,
}

#[derive(Debug, Default)]
struct Parts {
    map: HashMap<(Uuid, i32), Follow>,
    /// A task runs for this fetcher (it stops, under this lock, once the map is empty).
    running: bool,
}

/// The partitions one leader serves to this broker.
#[derive(Debug)]
struct Fetcher {
    leader: NodeId,
    parts: Mutex<Parts>,
    changed: Notify,
}

impl Fetcher {
    fn parts(&self) -> MutexGuard<'_, Parts> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Running {
    tasks: Supervisor,
    metadata: Arc<MetadataClient>,
    config: FetcherConfig,
    shutdown: watch::Receiver<bool>,
    /// `follower.replication.throttled.rate`: what throttled replicas fetch (see `quota`).
    quota: Arc<ReplicationQuota>,
    /// The log dir's state: a follower's append failing for want of space takes it offline,
    /// one succeeding brings it back (as the leader's appends do).
    health: Arc<LogDirHealth>,
}

#[derive(Default)]
struct State {
    running: Option<Arc<Running>>,
    fetchers: HashMap<NodeId, Arc<Fetcher>>,
}

/// Every fetcher of this broker, by leader.
#[derive(Default)]
pub struct ReplicaFetcherManager {
    state: Mutex<State>,
}

impl std::fmt::Debug for ReplicaFetcherManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaFetcherManager").finish_non_exhaustive()
    }
}

impl ReplicaFetcherManager {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows `partition` from `leader` at `leader_epoch` (moving it from another leader's
    /// fetcher if needed).
    pub fn follow(&self, partition: Arc<Partition>, leader: NodeId, leader_epoch: i32) {
        let key = (partition.topic_id, partition.index);
        let mut state = self.state();
        for (id, f) in &state.fetchers {
            if *id != leader {
                f.parts().map.remove(&key);
            }
        }
        let fetcher = state.fetchers.entry(leader).or_insert_with(|| {
            Arc::new(Fetcher {
                leader,
                parts: Mutex::new(Parts::default()),
                changed: Notify::new(),
            })
        });
        let fetcher = Arc::clone(fetcher);
        let start = {
            let mut parts = fetcher.parts();
            parts.map.insert(
                key,
                Follow {
                    partition,
                    leader_epoch,
                    paused_until: None,
                    errors: 0,
                },
            );
            let start = !parts.running && state.running.is_some();
            if start {
                parts.running = true;
            }
            start
        };
        fetcher.changed.notify_one();
        if let (true, Some(running)) = (start, &state.running) {
            spawn(running, fetcher);
        }
    }

    /// Stops following `partition` (it leads now, has no leader, or is gone).
    pub fn unfollow(&self, topic_id: Uuid, index: i32) {
        for f in self.state().fetchers.values() {
            if f.parts().map.remove(&(topic_id, index)).is_some() {
                f.changed.notify_one();
            }
        }
    }

    /// Starts fetching (the broker is up): a task per leader with partitions to follow.
    pub fn start(
        &self,
        tasks: Supervisor,
        metadata: Arc<MetadataClient>,
        config: FetcherConfig,
        quota: Arc<ReplicationQuota>,
        health: Arc<LogDirHealth>,
        shutdown: watch::Receiver<bool>,
    ) {
        let running = Arc::new(Running {
            tasks,
            metadata,
            config,
            shutdown,
            quota,
            health,
        });
        let mut state = self.state();
        for f in state.fetchers.values() {
            let mut parts = f.parts();
            if !parts.map.is_empty() && !parts.running {
                parts.running = true;
                spawn(&running, Arc::clone(f));
            }
        }
        state.running = Some(running);
    }

    /// Partitions followed, by leader (metrics, tests).
    pub fn followed(&self) -> HashMap<NodeId, usize> {
        self.state()
            .fetchers
            .iter()
            .map(|(id, f)| (*id, f.parts().map.len()))
            .collect()
    }
}

fn spawn(running: &Arc<Running>, fetcher: Arc<Fetcher>) {
    let r = Arc::clone(running);
    running.tasks.spawn("replica-fetcher", run(r, fetcher));
}

/// A fetcher's loop: exits when it has no partition left (a new one is spawned when one is
/// added) or at shutdown.
async fn run(running: Arc<Running>, fetcher: Arc<Fetcher>) {
    let mut shutdown = running.shutdown.clone();
    let backoff = Duration::from_millis(running.config.backoff_ms);
    let mut client: Option<BrokerClient> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = Instant::now();
        let follows: Vec<Follow> = {
            let mut parts = fetcher.parts();
            if parts.map.is_empty() {
                parts.running = false;
                return;
            }
            parts
                .map
                .values()
                .filter(|f| f.paused_until.is_none_or(|t| t <= now))
                .cloned()
                .collect()
        };
        if follows.is_empty() {
            let wake = fetcher
                .parts()
                .map
                .values()
                .filter_map(|f| f.paused_until)
                .min()
                .unwrap_or(now + backoff);
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = fetcher.changed.notified() => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        if client.is_none() {
            let image = running.metadata.image();
            let addr = image
                .brokers
                .get(&fetcher.leader)
                .filter(|b| !b.fenced)
                .and_then(|b| b.endpoint(&running.config.listener))
                .map(|e| format!("{}:{}", e.host, e.port));
            let connected = match addr {
                Some(addr) => BrokerClient::connect(&addr, "sluice-replica-fetcher", Duration::from_secs(5))
                    .await
                    .ok(),
                None => None,
            };
            if connected.is_none() {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            client = connected;
        }
        let Some(conn) = client.as_mut() else { continue };
        // Throttled replicas sit out while the follower's throttled replication is over its
        // rate (Kafka's `shouldFollowerThrottle`); with nothing left, wait for the rate to fall.
        let over_quota = running.quota.is_exceeded(crate::replication::replica_manager::now_ms());
        let follows: Vec<Follow> = follows
            .into_iter()
            .filter(|f| !(over_quota && f.partition.throttle.follower()))
            .collect();
        if follows.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(THROTTLED_WAIT) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let request = build_request(&running, &follows);
        let timeout =
            Duration::from_millis(u64::try_from(running.config.max_wait_ms).unwrap_or(500)) + Duration::from_secs(10);
        // A partition added (a new leader elected) must not wait for the long poll in
        // flight to end: the connection is dropped and the next request asks for it too.
        let response = tokio::select! {
            r = conn.send(&request, FETCH_VERSION, timeout) => r,
            _ = fetcher.changed.notified() => {
                client = None;
                continue;
            }
            _ = shutdown.changed() => return,
        };
        match response {
            Ok(response) => apply_response(&fetcher, &follows, response, backoff, &running),
            Err(e) => {
                tracing::debug!(leader = fetcher.leader, error = %e, "replica fetch failed; reconnecting");
                client = None;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

fn build_request(running: &Running, follows: &[Follow]) -> FetchRequest {
    let mut topics: HashMap<Uuid, Vec<FetchPartition>> = HashMap::new();
    for f in follows {
        let (log_end, last_epoch, log_start) = f.partition.fetch_position();
        topics.entry(f.partition.topic_id).or_default().push(
            FetchPartition::default()
                .with_partition(f.partition.index)
                .with_current_leader_epoch(f.leader_epoch)
                .with_fetch_offset(log_end)
                .with_last_fetched_epoch(last_epoch)
                .with_log_start_offset(log_start)
                .with_partition_max_bytes(running.config.partition_max_bytes),
        );
    }
    FetchRequest::default()
        .with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(running.metadata.node_id()))
                .with_replica_epoch(-1),
        )
        .with_max_wait_ms(running.config.max_wait_ms)
        .with_min_bytes(running.config.min_bytes)
        .with_max_bytes(running.config.response_max_bytes)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(id, partitions)| FetchTopic::default().with_topic_id(id).with_partitions(partitions))
                .collect(),
        )
}

/// Whether partition `p` is being reassigned, in the metadata this broker has applied.
fn reassigning(image: &MetadataImage, p: &Partition) -> bool {
    image
        .topic(&p.topic)
        .and_then(|t| t.partition(p.index))
        .is_some_and(|r| r.is_reassigning())
}

fn apply_response(
    fetcher: &Fetcher,
    follows: &[Follow],
    response: kafka_protocol::messages::FetchResponse,
    backoff: Duration,
    running: &Running,
) {
    let quota = &running.quota;
    let image = running.metadata.image();
    let now_ms = crate::replication::replica_manager::now_ms();
    let by_key: HashMap<(Uuid, i32), &Follow> = follows
        .iter()
        .map(|f| ((f.partition.topic_id, f.partition.index), f))
        .collect();
    let mut pause = Vec::new();
    let mut fine = Vec::new();
    for topic in response.responses {
        for pd in topic.partitions {
            let key = (topic.topic_id, pd.partition_index);
            let Some(follow) = by_key.get(&key) else { continue };
            let p = &follow.partition;
            let outcome = match ResponseError::try_from_code(pd.error_code) {
                None if pd.diverging_epoch.epoch >= 0 => p
                    .truncate_diverging(pd.diverging_epoch.epoch, pd.diverging_epoch.end_offset)
                    .map(|_| ()),
                None => {
                    let records = pd.records.unwrap_or_default();
                    if p.throttle.follower() {
                        quota.record(records.len() as u64, now_ms);
                    }
                    let appended = p.append_as_follower(&records, pd.high_watermark, now_ms);
                    if !records.is_empty() {
                        running.health.observe("replica append", &appended);
                        if appended.is_ok() {
                            crate::metrics::replicated(records.len(), true, reassigning(&image, p));
                        }
                    }
                    appended.map(|_| ())
                }
                Some(ResponseError::OffsetOutOfRange) => {
                    p.reset_out_of_range(pd.log_start_offset, pd.high_watermark).map(|_| ())
                }
                Some(e) => {
                    tracing::debug!(topic = %p.topic, partition = p.index, leader = fetcher.leader, error = ?e,
                        "replica fetch error; waiting for new metadata");
                    pause.push(key);
                    Ok(())
                }
            };
            match outcome {
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.index, leader = fetcher.leader, error = %e,
                        "could not apply what the leader sent");
                    pause.push(key);
                }
                Ok(()) if pause.last() != Some(&key) => fine.push(key),
                Ok(()) => {}
            }
        }
    }
    let now = Instant::now();
    let mut parts = fetcher.parts();
    for key in pause {
        if let Some(f) = parts.map.get_mut(&key) {
            f.errors = f.errors.saturating_add(1);
            let wait = Duration::from_millis(10u64 << f.errors.min(10)).min(backoff);
            f.paused_until = Some(now + wait);
        }
    }
    for key in fine {
        if let Some(f) = parts.map.get_mut(&key) {
            f.errors = 0;
        }
    }
}
