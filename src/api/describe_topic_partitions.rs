//! DescribeTopicPartitions (key 75, KIP-966): topics' partitions, paged, as the 4.x
//! `kafka-topics --describe` and the Java admin client's `describeTopics` ask for them. Topics
//! go by name (every topic when none is named), a response holds at most
//! `response_partition_limit` partitions (capped at Kafka's
//! `max.request.partition.size.limit`, 2,000), and `next_cursor` says where the next page
//! starts: mid-topic, or at the next topic when a page ends with one.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::metadata::partition_view;
use super::RequestContext;
use crate::broker::coordinators::is_internal_topic;

/// Kafka's `max.request.partition.size.limit`.
const MAX_PARTITIONS: i32 = 2_000;

pub fn handle(ctx: &RequestContext<'_>, req: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let broker = ctx.broker;
    let image = broker.metadata.image();
    let all = req.topics.is_empty();
    let mut names: Vec<String> = if all {
        image.topics().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.sort_unstable();
    names.dedup();
    let (start_topic, start_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.to_string()), c.partition_index),
        None => (None, 0),
    };
    if let Some(t) = &start_topic {
        if start_partition < 0 || (!all && !names.contains(t)) {
            // Kafka's InvalidRequestException: the cursor must name a requested topic.
            let error = |name: &String| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                    .with_error_code(ResponseError::InvalidRequest.code())
            };
            return DescribeTopicPartitionsResponse::default().with_topics(names.iter().map(error).collect());
        }
    }
    let mut remaining = if req.response_partition_limit > 0 {
        req.response_partition_limit.min(MAX_PARTITIONS)
    } else {
        MAX_PARTITIONS
    };
    let mut topics = Vec::new();
    let mut next_cursor = None;
    let from = start_topic.as_ref().map_or(0, |t| names.partition_point(|n| n < t));
    let mut pending = names[from..].iter().peekable();
    while let Some(name) = pending.next() {
        let entry = DescribeTopicPartitionsResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
            .with_is_internal(is_internal_topic(name))
            .with_topic_authorized_operations(i32::MIN);
        let Some(topic) = image.topic(name) else {
            topics.push(entry.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
            continue;
        };
        let first = if start_topic.as_deref() == Some(name.as_str()) {
            start_partition
        } else {
            0
        };
        let count = (topic.partition_count() - first).max(0);
        let taken = count.min(remaining);
        let partitions = (first..first + taken)
            .filter_map(|i| partition_view(broker, &image, topic, i))
            .map(|v| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(v.error_code)
                    .with_partition_index(v.index)
                    .with_leader_id(v.leader)
                    .with_leader_epoch(v.leader_epoch)
                    .with_replica_nodes(v.replicas)
                    .with_isr_nodes(v.isr)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(v.offline)
            })
            .collect();
        topics.push(entry.with_topic_id(topic.id).with_partitions(partitions));
        remaining -= taken;
        if taken < count {
            next_cursor = Some(cursor(name, first + taken));
            break;
        }
        if remaining == 0 {
            next_cursor = pending.peek().map(|next| cursor(next, 0));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_index(partition)
}
