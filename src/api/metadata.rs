//! Metadata (key 3): brokers, the controller, and topics with their partitions; auto-creates
//! requested topics when `auto.create.topics.enable` and the request allow it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::RequestContext;
use crate::broker::{Broker, NewTopic};
use crate::error::BrokerError;
use crate::metadata::TopicMeta;

pub fn handle(ctx: &RequestContext<'_>, req: MetadataRequest) -> MetadataResponse {
    let broker = ctx.broker;
    let config = &broker.config;
    // v0: an empty list means all topics; v1+: null means all topics.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    let topics = if all {
        broker
            .metadata
            .topics()
            .iter()
            .map(|t| topic_metadata(broker, t))
            .collect()
    } else {
        // v0-3 always allow auto-creation; from v4 the client says.
        let allow_auto = config.auto_create_topics_enable && (ctx.version < 4 || req.allow_auto_topic_creation);
        req.topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| match t.name {
                Some(name) => by_name(broker, &name, allow_auto),
                None => by_id(broker, t.topic_id),
            })
            .collect()
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(config.node_id))
            .with_host(StrBytes::from_string(config.advertised_host.clone()))
            .with_port(config.advertised_port)])
        .with_cluster_id(Some(StrBytes::from_string(broker.metadata.cluster_id())))
        .with_controller_id(BrokerId(config.node_id))
        .with_topics(topics)
}

fn by_name(broker: &Broker, name: &TopicName, allow_auto: bool) -> MetadataResponseTopic {
    if let Some(meta) = broker.metadata.topic(name.as_str()) {
        return topic_metadata(broker, &meta);
    }
    let error = if crate::broker::validate_topic_name(name.as_str()).is_err() {
        ResponseError::InvalidTopicException
    } else if allow_auto {
        let new = NewTopic {
            name: name.to_string(),
            partitions: -1,
            replication_factor: -1,
            configs: Default::default(),
        };
        match broker.create_topic(new, false) {
            Ok(meta) => return topic_metadata(broker, &meta),
            // Lost a race with another creator: report what exists now.
            Err(BrokerError::TopicAlreadyExists(_)) => match broker.metadata.topic(name.as_str()) {
                Some(meta) => return topic_metadata(broker, &meta),
                None => ResponseError::LeaderNotAvailable,
            },
            Err(e) => e.response_error(),
        }
    } else {
        ResponseError::UnknownTopicOrPartition
    };
    MetadataResponseTopic::default()
        .with_name(Some(name.clone()))
        .with_error_code(error.code())
}

fn by_id(broker: &Broker, id: Uuid) -> MetadataResponseTopic {
    match broker.metadata.topic_by_id(id) {
        Some(meta) => topic_metadata(broker, &meta),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code()),
    }
}

fn topic_metadata(broker: &Broker, meta: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    // A log dir offline after a failed write (a full disk): this replica is offline, as Kafka
    // reports it; it stays the leader, so reads go on.
    let offline = broker.replicas.health.is_offline();
    let partitions = broker
        .replicas
        .topic_partitions(&meta.name)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(node)
                .with_leader_epoch(p.leader_epoch())
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
                .with_offline_replicas(if offline { vec![node] } else { Vec::new() })
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
        .with_topic_id(meta.id)
        .with_is_internal(false)
        .with_partitions(partitions)
}
