//! AlterPartitionReassignments (key 45) and ListPartitionReassignments (key 46): moving
//! partitions' replicas between brokers (`kafka-reassign-partitions`, the Java client's
//! `Admin.alterPartitionReassignments`, kafka-python's `alter_partition_reassignments`).
//!
//! Alter is forwarded to the active controller, which decides each partition
//! (`controller::reassignment`) and writes them together; the answer comes once they are
//! applied on this broker. Each partition gets its own code, as Kafka answers; v1 adds
//! `allow_replication_factor_change` (KIP-860), echoed. List reads this broker's image: the
//! partitions with replicas being added or removed, named ones that are not skipped, as Kafka.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::controller::image::TopicImage;
use crate::controller::network::Reassignment;
use crate::controller::record::PartitionRegistration;
use crate::error::reassign_response_error;

/// The longest a request waits for the active controller, whatever its `timeout_ms` says.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn alter(
    ctx: &RequestContext<'_>,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    // v0 has no such field: a change of replication factor is allowed.
    let allow_rf_change = ctx.version == 0 || req.allow_replication_factor_change;
    let reassignments: Vec<Reassignment> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Reassignment {
                topic: t.name.to_string(),
                partition: p.partition_index,
                target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            })
        })
        .collect();
    let resp = AlterPartitionReassignmentsResponse::default().with_allow_replication_factor_change(allow_rf_change);
    if reassignments.is_empty() {
        return resp;
    }
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0).max(1)).min(MAX_TIMEOUT);
    let controller = ctx.broker.metadata.controller();
    let outcomes = match controller
        .alter_reassignments(reassignments.clone(), allow_rf_change, timeout)
        .await
    {
        Ok(outcomes) => outcomes
            .iter()
            .map(|o| match o {
                Ok(()) => (0, None),
                Err(e) => (reassign_response_error(e).code(), Some(e.to_string())),
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            tracing::debug!(error = %e, "AlterPartitionReassignments: no controller answered");
            let failed = (ResponseError::RequestTimedOut.code(), Some(e.to_string()));
            vec![failed; reassignments.len()]
        }
    };
    let mut by_topic: BTreeMap<&str, Vec<ReassignablePartitionResponse>> = BTreeMap::new();
    for (r, (code, message)) in reassignments.iter().zip(outcomes) {
        by_topic.entry(&r.topic).or_default().push(
            ReassignablePartitionResponse::default()
                .with_partition_index(r.partition)
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    resp.with_responses(
        by_topic
            .into_iter()
            .map(|(name, partitions)| {
                ReassignableTopicResponse::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

pub fn list(ctx: &RequestContext<'_>, req: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    let image = ctx.broker.metadata.image();
    let mut topics = Vec::new();
    match &req.topics {
        None => {
            for t in image.topics() {
                let indexes = 0..t.partition_count();
                topics.extend(ongoing(t, indexes));
            }
        }
        Some(named) => {
            for n in named {
                if let Some(t) = image.topic(n.name.as_str()) {
                    topics.extend(ongoing(t, n.partition_indexes.iter().copied()));
                }
            }
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

/// The reassignments in progress among `indexes` of `topic` (none: no entry).
fn ongoing(topic: &TopicImage, indexes: impl Iterator<Item = i32>) -> Option<OngoingTopicReassignment> {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let partitions: Vec<OngoingPartitionReassignment> = indexes
        .filter_map(|i| topic.partition(i).map(|p| (i, p)))
        .filter(|(_, p): &(i32, &PartitionRegistration)| p.is_reassigning())
        .map(|(i, p)| {
            OngoingPartitionReassignment::default()
                .with_partition_index(i)
                .with_replicas(ids(&p.replicas))
                .with_adding_replicas(ids(&p.adding_replicas))
                .with_removing_replicas(ids(&p.removing_replicas))
        })
        .collect();
    (!partitions.is_empty()).then(|| {
        OngoingTopicReassignment::default()
            .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
            .with_partitions(partitions)
    })
}
