//! Writing a completed transaction's markers (Kafka's `TransactionMarkerChannelManager`): each
//! partition of the transaction gets a COMMIT or ABORT control batch from its leader, this
//! broker's own partitions directly, the others as WriteTxnMarkers to their leader; a
//! `__consumer_offsets` partition ends the producer's pending offsets in its group coordinator.
//! The coordinator epoch stamped on the markers is the leader epoch of the transactional id's
//! `__transaction_state` partition; the writing stops when this broker no longer leads that
//! partition at that epoch (the new coordinator resumes the transaction from its log).

use std::collections::{BTreeMap, HashMap};
use std::sync::Weak;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;

use super::state_machine::{MarkerJob, TxnResult};
use crate::broker::Broker;
use crate::controller::record::NO_LEADER;
use crate::coordinator::log::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::metadata::MetadataClient;
use crate::replication::broker_client::BrokerClient;
use crate::storage::{EndTxnMarker, MarkerType};

/// How long one round of marker writes waits for acknowledgements before retrying.
const MARKER_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const MARKER_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The `__transaction_state` partition (and its leader epoch) a transaction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CoordinatorPartition {
    pub partition: i32,
    pub epoch: i32,
}

impl CoordinatorPartition {
    /// Whether this broker still leads the partition at the epoch.
    fn still_led(&self, broker: &Broker) -> bool {
        broker
            .replicas
            .get_partition(TRANSACTION_STATE_TOPIC, self.partition)
            .is_some_and(|p| p.is_leader() && p.leader_epoch() == self.epoch)
    }
}

/// Writes a job's markers until every partition has acknowledged one; false if the broker is
/// gone (shutdown) or no longer coordinates the transaction. Each partition goes to its leader as
/// the current metadata names it. A partition gone from the metadata (its topic deleted) has
/// nothing to mark; one without a leader, or whose leader fails, is retried with backoff.
pub async fn write_markers(broker: &Weak<Broker>, job: &MarkerJob, coordinator: CoordinatorPartition) -> bool {
    let commit = job.result == TxnResult::Commit;
    let marker = EndTxnMarker {
        marker: if commit { MarkerType::Commit } else { MarkerType::Abort },
        coordinator_epoch: coordinator.epoch,
        producer_id: job.producer_id,
        producer_epoch: job.producer_epoch,
    };
    let mut left: Vec<(String, i32)> = job.partitions.clone();
    let mut clients: HashMap<i32, BrokerClient> = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(b) = broker.upgrade() else { return false };
        if !coordinator.still_led(&b) {
            tracing::info!(transactional_id = %job.transactional_id, partition = coordinator.partition,
                "no longer the transaction's coordinator; its new coordinator writes the markers");
            return false;
        }
        let image = b.metadata.image();
        let me = b.config.node_id;
        let mut local_data = Vec::new();
        let mut local_offsets = Vec::new();
        let mut remote: HashMap<i32, Vec<(String, i32)>> = HashMap::new();
        let mut failed = Vec::new();
        for (topic, partition) in left.drain(..) {
            let leader = image
                .topic(&topic)
                .and_then(|t| t.partition(partition))
                .map(|p| p.leader);
            match leader {
                // Offsets added before the group's coordinator created the topic.
                None if topic == OFFSETS_TOPIC => local_offsets.push((topic, partition)),
                None => {} // a deleted topic
                Some(NO_LEADER) => failed.push((topic, partition)),
                Some(l) if l == me && topic == OFFSETS_TOPIC => local_offsets.push((topic, partition)),
                Some(l) if l == me => local_data.push((topic, partition)),
                Some(l) => remote.entry(l).or_default().push((topic, partition)),
            }
        }
        if !local_data.is_empty() {
            let results = b
                .replicas
                .write_txn_markers(marker, &local_data, MARKER_WRITE_TIMEOUT)
                .await;
            for (tp, r) in local_data.into_iter().zip(results) {
                if let Err(e) = r {
                    tracing::warn!(topic = %tp.0, partition = tp.1, producer_id = job.producer_id, error = %e,
                        "writing a transaction marker failed; retrying");
                    failed.push(tp);
                }
            }
        }
        if !local_offsets.is_empty() {
            if let Err(e) = b.groups.end_txn(job.producer_id, commit).await {
                tracing::warn!(producer_id = job.producer_id, error = %e, "ending transactional offsets failed; retrying");
                failed.extend(local_offsets);
            }
        }
        for (leader, partitions) in remote {
            let addr = MetadataClient::live_endpoints(&image, &b.config.cluster.inter_broker_listener_name)
                .into_iter()
                .find(|(id, ..)| *id == leader)
                .map(|(_, host, port, _)| format!("{host}:{port}"));
            match send_markers(&mut clients, leader, addr, &marker, commit, &partitions).await {
                Ok(refused) => failed.extend(refused),
                Err(e) => {
                    tracing::warn!(leader, producer_id = job.producer_id, error = %e,
                        "sending transaction markers failed; retrying");
                    clients.remove(&leader);
                    failed.extend(partitions);
                }
            }
        }
        drop(image);
        drop(b);
        if failed.is_empty() {
            return true;
        }
        left = failed;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MARKER_RETRY_MAX_BACKOFF);
    }
}

/// One WriteTxnMarkers to `leader`: the partitions it refused (to retry), or the connection's
/// error.
async fn send_markers(
    clients: &mut HashMap<i32, BrokerClient>,
    leader: i32,
    addr: Option<String>,
    marker: &EndTxnMarker,
    commit: bool,
    partitions: &[(String, i32)],
) -> std::io::Result<Vec<(String, i32)>> {
    let client = match clients.entry(leader) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            let addr = addr.ok_or_else(|| std::io::Error::other(format!("broker {leader} is not live")))?;
            v.insert(BrokerClient::connect(&addr, "sluice-txn-markers", Duration::from_secs(5)).await?)
        }
    };
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let request = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(marker.producer_id))
        .with_producer_epoch(marker.producer_epoch)
        .with_transaction_result(commit)
        .with_coordinator_epoch(marker.coordinator_epoch)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_indexes(ps)
                })
                .collect(),
        )]);
    let response = client
        .send(&request, 1, MARKER_WRITE_TIMEOUT + Duration::from_secs(5))
        .await?;
    let mut refused = Vec::new();
    for m in response.markers {
        for t in m.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    tracing::debug!(topic = %t.name.as_str(), partition = p.partition_index, leader, code = p.error_code,
                        "a transaction marker was refused; retrying");
                    refused.push((t.name.to_string(), p.partition_index));
                }
            }
        }
    }
    Ok(refused)
}
