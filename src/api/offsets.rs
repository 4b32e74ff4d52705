//! Committed offsets: OffsetCommit (8), OffsetFetch (9, several groups per request from v8) and
//! OffsetDelete (47). The group coordinator validates and stores; this layer checks what Kafka
//! checks per partition first (the partition exists, `offset.metadata.max.bytes`).

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::Authz;
use super::RequestContext;
use crate::security::acl::{Operation, ResourceType};

use crate::coordinator::{FetchedOffset, GroupError, OffsetCommitEntry, OffsetCommitParams, TopicPartition};
use crate::error::{group_error_code, BrokerError};

/// Per topic, each partition's early answer (`None` = left to the coordinator), in request order.
type EarlyAnswers = Vec<(TopicName, Vec<(i32, Option<i16>)>)>;

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

pub async fn offset_commit(ctx: &RequestContext<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let max_metadata = ctx.broker.config.groups.offset_metadata_max_bytes;
    // Per-partition answers, in request order; `None` = valid so far, decided by the coordinator.
    let mut answers: EarlyAnswers = Vec::with_capacity(req.topics.len());
    let mut entries = Vec::new();
    // READ on the group (else every partition GROUP_AUTHORIZATION_FAILED) and on each topic.
    let authz = Authz::new(ctx);
    let group_denied = !authz.allows(Operation::Read, ResourceType::Group, req.group_id.as_str());
    for topic in req.topics {
        let name = topic.name.to_string();
        let topic_denied = !group_denied && !authz.allows(Operation::Read, ResourceType::Topic, &name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let metadata = p.committed_metadata.map(|m| m.to_string()).unwrap_or_default();
            let early = if group_denied {
                Some(GroupError::GroupAuthorizationFailed.code())
            } else if topic_denied {
                Some(kafka_protocol::ResponseError::TopicAuthorizationFailed.code())
            } else if !ctx.broker.partition_exists(&name, p.partition_index) {
                Some(BrokerError::UnknownTopicOrPartition.code())
            } else if metadata.len() > max_metadata {
                Some(GroupError::OffsetMetadataTooLarge.code())
            } else {
                entries.push(OffsetCommitEntry {
                    topic: name.clone(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                });
                None
            };
            partitions.push((p.partition_index, early));
        }
        answers.push((topic.name, partitions));
    }
    let result = if entries.is_empty() {
        Ok(())
    } else {
        let params = OffsetCommitParams {
            member_id: req.member_id.to_string(),
            group_instance_id: req.group_instance_id.map(|i| i.to_string()),
            generation_id: req.generation_id_or_member_epoch,
            entries,
        };
        match ctx.broker.groups.commit_offsets(req.group_id.to_string(), params).await {
            // Kafka answers a member's commit to a group that does not exist with
            // GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before (as older brokers did).
            Err(GroupError::GroupIdNotFound) if ctx.version < 9 => Err(GroupError::IllegalGeneration),
            other => other,
        }
    };
    let group_code = group_error_code(result.err());
    let topics = answers
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitResponseTopic::default().with_name(name).with_partitions(
                partitions
                    .into_iter()
                    .map(|(index, early)| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(early.unwrap_or(group_code))
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's fetch: `Ok(offsets)` or a group-level error.
async fn fetch_group(
    ctx: &RequestContext<'_>,
    group_id: &str,
    partitions: Option<Vec<TopicPartition>>,
    require_stable: bool,
) -> Result<Vec<FetchedOffset>, GroupError> {
    if group_id.is_empty() {
        return Err(GroupError::InvalidGroupId);
    }
    if !Authz::new(ctx).allows(Operation::Describe, ResourceType::Group, group_id) {
        return Err(GroupError::GroupAuthorizationFailed);
    }
    ctx.broker
        .groups
        .fetch_offsets(group_id, partitions, require_stable)
        .await
}

/// The error code of one fetched partition: UNSTABLE_OFFSET_COMMIT while an open transaction
/// holds an offset for it (require_stable, v7+), when the offset is answered as -1.
fn partition_code(o: &FetchedOffset) -> i16 {
    group_error_code(o.unstable.then_some(GroupError::UnstableOffsetCommit))
}

fn offset_of(o: &FetchedOffset) -> i64 {
    if o.unstable {
        -1
    } else {
        o.committed.offset
    }
}

/// Groups fetched offsets by topic, keeping the order they came in.
fn by_topic(offsets: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut topics: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for o in offsets {
        match topics.last_mut() {
            Some((name, list)) if *name == o.topic => list.push(o),
            _ => topics.push((o.topic.clone(), vec![o])),
        }
    }
    topics
}

pub async fn offset_fetch(ctx: &RequestContext<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let version = ctx.version;
    let epoch = |e: i32| if version >= 5 { e } else { -1 };
    if version < 8 {
        let wanted = req.topics.map(|topics| {
            topics
                .iter()
                .flat_map(|t| t.partition_indexes.iter().map(|&p| (t.name.to_string(), p)))
                .collect::<Vec<_>>()
        });
        let resp = OffsetFetchResponse::default();
        let require_stable = version >= 7 && req.require_stable;
        return match fetch_group(ctx, &req.group_id, wanted, require_stable).await {
            Err(e) if version >= 2 => resp.with_error_code(e.code()),
            Err(_) => resp,
            Ok(offsets) => resp.with_topics(
                by_topic(offsets)
                    .into_iter()
                    .map(|(name, list)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(s(name)))
                            .with_partitions(
                                list.into_iter()
                                    .map(|o| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(o.partition)
                                            .with_error_code(partition_code(&o))
                                            .with_committed_offset(offset_of(&o))
                                            .with_committed_leader_epoch(epoch(o.committed.leader_epoch))
                                            .with_metadata(Some(s(o.committed.metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        };
    }
    let mut groups = Vec::with_capacity(req.groups.len());
    for group in req.groups {
        let wanted = group.topics.map(|topics| {
            topics
                .iter()
                .flat_map(|t| t.partition_indexes.iter().map(|&p| (t.name.to_string(), p)))
                .collect::<Vec<_>>()
        });
        let answer = OffsetFetchResponseGroup::default().with_group_id(GroupId(group.group_id.0.clone()));
        groups.push(
            match fetch_group(ctx, &group.group_id, wanted, req.require_stable).await {
                Err(e) => answer.with_error_code(e.code()),
                Ok(offsets) => answer.with_topics(
                    by_topic(offsets)
                        .into_iter()
                        .map(|(name, list)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(s(name)))
                                .with_partitions(
                                    list.into_iter()
                                        .map(|o| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(o.partition)
                                                .with_error_code(partition_code(&o))
                                                .with_committed_offset(offset_of(&o))
                                                .with_committed_leader_epoch(o.committed.leader_epoch)
                                                .with_metadata(Some(s(o.committed.metadata)))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            },
        );
    }
    OffsetFetchResponse::default().with_groups(groups)
}

pub async fn offset_delete(ctx: &RequestContext<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    if !Authz::new(ctx).allows(Operation::Delete, ResourceType::Group, req.group_id.as_str()) {
        return OffsetDeleteResponse::default().with_error_code(GroupError::GroupAuthorizationFailed.code());
    }
    // Partitions of unknown topics are answered here; the rest go to the coordinator.
    let mut asked: Vec<(TopicName, Vec<(i32, bool)>)> = Vec::with_capacity(req.topics.len());
    let mut known: Vec<TopicPartition> = Vec::new();
    for topic in req.topics {
        let name = topic.name.to_string();
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let exists = ctx.broker.partition_exists(&name, p.partition_index);
                if exists {
                    known.push((name.clone(), p.partition_index));
                }
                (p.partition_index, exists)
            })
            .collect();
        asked.push((topic.name, partitions));
    }
    let result = ctx
        .broker
        .groups
        .delete_offsets(req.group_id.to_string(), known, super::groups::subscribed_topics)
        .await;
    let mut results = match result {
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(results) => results.into_iter(),
    };
    let topics = asked
        .into_iter()
        .map(|(name, partitions)| {
            OffsetDeleteResponseTopic::default().with_name(name).with_partitions(
                partitions
                    .into_iter()
                    .map(|(index, exists)| {
                        let code = if exists {
                            group_error_code(results.next().flatten())
                        } else {
                            BrokerError::UnknownTopicOrPartition.code()
                        };
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
