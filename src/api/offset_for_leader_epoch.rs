//! OffsetForLeaderEpoch (key 23): the end offset of the largest leader epoch at or below the
//! one asked, from the partition's leader-epoch checkpoint. Consumers use it to validate their
//! position after a leader change; followers will use it to truncate.

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::list_offsets::check_leader_epoch;
use super::RequestContext;

pub fn handle(ctx: &RequestContext<'_>, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    // Kafka: CLUSTER_ACTION (followers), else DESCRIBE on each topic.
    let authz = super::authz::Authz::new(ctx);
    let cluster = authz.quietly_allows(
        crate::security::acl::Operation::ClusterAction,
        crate::security::acl::ResourceType::Cluster,
        crate::security::acl::CLUSTER_NAME,
    );
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = !cluster
                && !authz.allows(
                    crate::security::acl::Operation::Describe,
                    crate::security::acl::ResourceType::Topic,
                    t.topic.as_str(),
                );
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if denied {
                        return resp.with_error_code(kafka_protocol::ResponseError::TopicAuthorizationFailed.code());
                    }
                    let partition = match ctx.broker.leader_partition(t.topic.as_str(), p.partition) {
                        Ok(partition) => partition,
                        Err(e) => return resp.with_error_code(e.code()),
                    };
                    if let Err(e) = check_leader_epoch(&partition, p.current_leader_epoch) {
                        return resp.with_error_code(e.code());
                    }
                    match partition.end_offset_for_epoch(p.leader_epoch) {
                        Some((epoch, end)) => resp.with_leader_epoch(epoch).with_end_offset(end),
                        None => resp,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
