//! CreateTopics (key 19): validate_only, -1 for broker defaults, Kafka's errors for existing
//! topics, bad names, counts and configs, and manual assignments that name this broker only.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::configs::topic_config_entries;
use super::RequestContext;
use crate::broker::NewTopic;
use crate::error::BrokerError;

pub fn handle(ctx: &RequestContext<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.to_string()).or_default() += 1;
    }
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            let mut result = CreatableTopicResult::default().with_name(name.clone());
            if counts.get(name.as_str()).copied().unwrap_or(0) > 1 {
                return with_error(
                    result,
                    &BrokerError::InvalidRequest(format!("Duplicate topic name {}", name.as_str())),
                );
            }
            let outcome = create_one(ctx, t, req.validate_only);
            match outcome {
                Ok(meta) => {
                    result = result
                        .with_topic_id(if req.validate_only { uuid::Uuid::nil() } else { meta.id })
                        .with_num_partitions(meta.partitions)
                        .with_replication_factor(meta.replication_factor);
                    if ctx.version >= 5 {
                        let configs = topic_config_entries(ctx.broker, &meta)
                            .into_iter()
                            .map(|e| {
                                CreatableTopicConfigs::default()
                                    .with_name(StrBytes::from_string(e.name))
                                    .with_value(Some(StrBytes::from_string(e.value)))
                                    .with_read_only(e.read_only)
                                    .with_config_source(e.source)
                            })
                            .collect();
                        result = result.with_configs(Some(configs));
                    }
                    result
                }
                Err(e) => with_error(result, &e),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

fn with_error(result: CreatableTopicResult, e: &BrokerError) -> CreatableTopicResult {
    result
        .with_error_code(e.code())
        .with_error_message(Some(StrBytes::from_string(e.to_string())))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

fn create_one(
    ctx: &RequestContext<'_>,
    t: kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<crate::metadata::TopicMeta, BrokerError> {
    let node = ctx.broker.config.node_id;
    let mut partitions = t.num_partitions;
    let mut replication_factor = t.replication_factor;
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(BrokerError::InvalidRequest(
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        for (i, a) in t.assignments.iter().enumerate() {
            if a.partition_index != i as i32 || a.broker_ids.iter().any(|b| b.0 != node) || a.broker_ids.is_empty() {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "Invalid replica assignment for partition {}: only broker {node} exists",
                    a.partition_index
                )));
            }
        }
        partitions = t.assignments.len() as i32;
        replication_factor = t.assignments.first().map(|a| a.broker_ids.len() as i16).unwrap_or(1);
    }
    let mut configs = BTreeMap::new();
    for c in t.configs {
        let Some(value) = c.value else {
            return Err(BrokerError::InvalidConfig(format!(
                "Null value not supported for topic config {}",
                c.name.as_str()
            )));
        };
        configs.insert(c.name.to_string(), value.to_string());
    }
    ctx.broker.create_topic(
        NewTopic {
            name: t.name.to_string(),
            partitions,
            replication_factor,
            configs,
        },
        validate_only,
    )
}
