//! Where a group's (or transactional id's) coordinator is: the leader of its partition of the
//! internal topic (Kafka's `abs(hashCode(key)) % partitions`). The topic is created at the first
//! lookup, as Kafka does, with `offsets.topic.num.partitions` partitions and
//! `offsets.topic.replication.factor` replicas (`transaction.state.log.*` for
//! `__transaction_state`) capped by the brokers registered in the cluster
//! (so a single node gets a usable topic rather than an endless COORDINATOR_NOT_AVAILABLE);
//! while fewer brokers are live than that, the lookup answers COORDINATOR_NOT_AVAILABLE (the
//! client retries) rather than creating the topic under-replicated for good. Until the offset-preserving cleaner exists (issue #13) the
//! internal topics keep everything: `retention.ms` and `retention.bytes` are -1.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Broker, NewTopic};
use crate::controller::image::TopicImage;
use crate::controller::record::NO_LEADER;
use crate::coordinator::log::{partition_for, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::error::BrokerError;
use crate::metadata::MetadataClient;

/// Kafka's `offsets.topic.segment.bytes`.
const INTERNAL_SEGMENT_BYTES: &str = "104857600";

/// A coordinator's address, as FindCoordinator answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorAddress {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// Why no coordinator can be named now (COORDINATOR_NOT_AVAILABLE: the client retries).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NoCoordinator(pub String);

impl Broker {
    /// The broker coordinating `group_id`: the leader of its `__consumer_offsets` partition,
    /// with its endpoint on `listener`.
    pub async fn group_coordinator(&self, group_id: &str, listener: &str) -> Result<CoordinatorAddress, NoCoordinator> {
        let topic = self
            .internal_topic(
                OFFSETS_TOPIC,
                self.config.offsets_topic_num_partitions,
                self.config.offsets_topic_replication_factor,
                BTreeMap::new(),
            )
            .await?;
        self.partition_leader(&topic, partition_for(group_id, topic.partitions.len() as i32), listener)
    }

    /// The broker coordinating `transactional_id`: the leader of its `__transaction_state`
    /// partition. The topic's `min.insync.replicas` is `transaction.state.log.min.isr` capped
    /// by its replication factor.
    pub async fn transaction_coordinator(
        &self,
        transactional_id: &str,
        listener: &str,
    ) -> Result<CoordinatorAddress, NoCoordinator> {
        let t = &self.config.transactions;
        let topic = self
            .internal_topic(
                TRANSACTION_STATE_TOPIC,
                t.state_log_num_partitions,
                t.state_log_replication_factor,
                BTreeMap::from([("min.insync.replicas".to_string(), t.state_log_min_isr.to_string())]),
            )
            .await?;
        self.partition_leader(
            &topic,
            partition_for(transactional_id, topic.partitions.len() as i32),
            listener,
        )
    }

    /// The leader of `topic`'s partition `index`, with its endpoint on `listener`.
    fn partition_leader(
        &self,
        topic: &TopicImage,
        index: i32,
        listener: &str,
    ) -> Result<CoordinatorAddress, NoCoordinator> {
        let leader = topic.partition(index).map_or(NO_LEADER, |p| p.leader);
        if leader == NO_LEADER {
            return Err(NoCoordinator(format!("{}-{index} has no leader", topic.name)));
        }
        let image = self.metadata.image();
        MetadataClient::live_endpoints(&image, listener)
            .into_iter()
            .find(|(id, ..)| *id == leader)
            .map(|(node_id, host, port, _)| CoordinatorAddress { node_id, host, port })
            .ok_or_else(|| {
                NoCoordinator(format!(
                    "the leader of {}-{index}, broker {leader}, is not live",
                    topic.name
                ))
            })
    }

    /// The internal topic `name`; if the cluster has none, it is created and this lookup answers
    /// COORDINATOR_NOT_AVAILABLE, as Kafka's does.
    async fn internal_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        mut configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, NoCoordinator> {
        if let Some(t) = self.metadata.topic(name) {
            return Ok(t);
        }
        let image = self.metadata.image();
        let registered = image.brokers.len();
        let live = image.live_brokers().count();
        let rf = replication_factor
            .min(i16::try_from(registered).unwrap_or(i16::MAX))
            .max(1);
        if live < usize::try_from(rf).unwrap_or(0) {
            // Kafka's rule: wait for enough brokers rather than create it under-replicated for
            // good (a registered broker that is restarting comes back).
            return Err(NoCoordinator(format!(
                "{name} needs {rf} live brokers for its replication factor, {live} are live"
            )));
        }
        if let Some(min_isr) = configs.get_mut("min.insync.replicas") {
            let capped = min_isr.parse::<i16>().unwrap_or(1).clamp(1, rf);
            *min_isr = capped.to_string();
        }
        // Kafka's: compacted (the latest record per key is the state), 100 MiB segments.
        for (k, v) in [("cleanup.policy", "compact"), ("segment.bytes", INTERNAL_SEGMENT_BYTES)] {
            configs.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
        let new = NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: rf,
            configs,
            assignments: None,
        };
        match self.create_topic(new, false).await {
            // Kafka's answer to the lookup that creates the topic: the client looks again after
            // its backoff, by when the new leaders have loaded their (empty) partitions.
            Ok(_) => Err(NoCoordinator(format!(
                "{name} was just created; its partitions are loading"
            ))),
            // Created meanwhile by another request.
            Err(BrokerError::TopicAlreadyExists(_)) => self
                .metadata
                .topic(name)
                .ok_or_else(|| NoCoordinator(format!("{name} is being created"))),
            Err(e) => Err(NoCoordinator(format!("creating {name}: {e}"))),
        }
    }
}

/// Whether `topic` is one of Kafka's internal topics (Metadata's `is_internal`).
pub fn is_internal_topic(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == TRANSACTION_STATE_TOPIC
}
