//! Metadata (key 3): brokers, the controller, and topics with their partitions; auto-creates
//! requested topics when `auto.create.topics.enable` and the request allow it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::authz::Authz;
use super::RequestContext;
use crate::broker::{Broker, NewTopic};
use crate::controller::image::{MetadataImage, TopicImage};
use crate::controller::record::NO_LEADER;
use crate::error::BrokerError;
use crate::metadata::MetadataClient;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub async fn handle(ctx: &RequestContext<'_>, req: MetadataRequest) -> MetadataResponse {
    let broker = ctx.broker;
    let config = &broker.config;
    // v0: an empty list means all topics; v1+: null means all topics.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    // With an authorizer: topics the principal may not DESCRIBE are left out of "all topics",
    // and named ones are answered TOPIC_AUTHORIZATION_FAILED whether they exist or not.
    let authz = Authz::new(ctx);
    let describable = |name: &str| authz.quietly_allows(Operation::Describe, ResourceType::Topic, name);
    let mut topics: Vec<MetadataResponseTopic> = if all {
        let image = broker.metadata.image();
        image
            .topics()
            .filter(|t| describable(&t.name))
            .map(|t| topic_metadata(broker, &image, t))
            .collect()
    } else {
        // v0-3 always allow auto-creation; from v4 the client says.
        let allow_auto = config.auto_create_topics_enable && (ctx.version < 4 || req.allow_auto_topic_creation);
        let mut out = Vec::new();
        for t in req.topics.unwrap_or_default() {
            out.push(match t.name {
                Some(name) if !authz.allows(Operation::Describe, ResourceType::Topic, name.as_str()) => {
                    MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                }
                Some(name) => {
                    // Creating it needs CREATE on the cluster or on the topic.
                    let may_create = allow_auto
                        && (!authz.enabled()
                            || authz.quietly_allows(Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
                            || authz.allows(Operation::Create, ResourceType::Topic, name.as_str()));
                    let mut found = by_name(broker, &name, may_create).await;
                    if allow_auto && !may_create && found.error_code == ResponseError::UnknownTopicOrPartition.code() {
                        found.error_code = ResponseError::TopicAuthorizationFailed.code();
                    }
                    found
                }
                None => {
                    let found = by_id(broker, t.topic_id);
                    match found.name.as_ref() {
                        Some(n) if !authz.allows(Operation::Describe, ResourceType::Topic, n.as_str()) => {
                            MetadataResponseTopic::default()
                                .with_topic_id(t.topic_id)
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        }
                        _ => found,
                    }
                }
            });
        }
        out
    };
    if ctx.version >= 8 && req.include_topic_authorized_operations {
        for t in &mut topics {
            if t.error_code == 0 {
                if let Some(name) = &t.name {
                    t.topic_authorized_operations = authz.operations_bitfield(ResourceType::Topic, name.as_str());
                }
            }
        }
    }
    let image = broker.metadata.image();
    let brokers = MetadataClient::live_endpoints(&image, ctx.listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
    let controller = broker.metadata.controller_id_for_clients(&image);
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(
            image.cluster_id.clone().unwrap_or_default(),
        )))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
}

async fn by_name(broker: &Broker, name: &TopicName, allow_auto: bool) -> MetadataResponseTopic {
    let image = broker.metadata.image();
    if let Some(topic) = image.topic(name.as_str()) {
        return topic_metadata(broker, &image, topic);
    }
    let error = if crate::broker::validate_topic_name(name.as_str()).is_err() {
        ResponseError::InvalidTopicException
    } else if allow_auto {
        let new = NewTopic {
            name: name.to_string(),
            partitions: -1,
            replication_factor: -1,
            configs: Default::default(),
            assignments: None,
        };
        match broker.create_topic(new, false).await {
            Ok(topic) => return topic_metadata(broker, &broker.metadata.image(), &topic),
            // Lost a race with another creator: report what exists now.
            Err(BrokerError::TopicAlreadyExists(_)) => {
                let image = broker.metadata.image();
                match image.topic(name.as_str()) {
                    Some(topic) => return topic_metadata(broker, &image, topic),
                    None => ResponseError::LeaderNotAvailable,
                }
            }
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
    let image = broker.metadata.image();
    match image.topic_by_id(id) {
        Some(topic) => topic_metadata(broker, &image, topic),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code()),
    }
}

/// A topic as the image has it (see [`partition_view`]).
fn topic_metadata(broker: &Broker, image: &MetadataImage, topic: &TopicImage) -> MetadataResponseTopic {
    let partitions = (0..topic.partition_count())
        .filter_map(|i| partition_view(broker, image, topic, i))
        .map(|v| {
            MetadataResponsePartition::default()
                .with_error_code(v.error_code)
                .with_partition_index(v.index)
                .with_leader_id(v.leader)
                .with_leader_epoch(v.leader_epoch)
                .with_replica_nodes(v.replicas)
                .with_isr_nodes(v.isr)
                .with_offline_replicas(v.offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(crate::broker::coordinators::is_internal_topic(&topic.name))
        .with_partitions(partitions)
}

/// One partition as Metadata and DescribeTopicPartitions describe it.
pub(super) struct PartitionView {
    pub error_code: i16,
    pub index: i32,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub offline: Vec<BrokerId>,
}

/// Partition `index` of `topic`: its leader (LEADER_NOT_AVAILABLE without one), epoch,
/// replicas and ISR; replicas on brokers that are fenced or gone, or on this broker while its
/// log dir is offline (a full disk) or the replica failed to open, are listed offline, as
/// Kafka reports them.
pub(super) fn partition_view(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
    index: i32,
) -> Option<PartitionView> {
    let p = topic.partition(index)?;
    let me = broker.config.node_id;
    let offline = p
        .replicas
        .iter()
        .filter(|r| {
            !image.is_live(**r)
                || image.brokers.get(r).is_some_and(|b| b.log_dir_offline)
                || (**r == me
                    && (broker.replicas.health.is_offline() || broker.replicas.is_missing(&topic.name, index)))
        })
        .map(|r| BrokerId(*r))
        .collect();
    let error_code = if p.leader == NO_LEADER {
        ResponseError::LeaderNotAvailable.code()
    } else {
        0
    };
    Some(PartitionView {
        error_code,
        index,
        leader: BrokerId(p.leader),
        leader_epoch: p.leader_epoch,
        replicas: p.replicas.iter().map(|r| BrokerId(*r)).collect(),
        isr: p.isr.iter().map(|r| BrokerId(*r)).collect(),
        offline,
    })
}
