//! CreateTopics (key 19): validate_only, -1 for broker defaults, Kafka's errors for existing
//! topics, bad names, counts and configs, and manual replica assignments (registered brokers,
//! no duplicates, the same count for every partition).

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::authz::Authz;
use super::configs::topic_config_entries;
use super::RequestContext;
use crate::broker::NewTopic;
use crate::error::BrokerError;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub async fn handle(ctx: &RequestContext<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    // CREATE on the cluster, or else on each topic.
    let authz = Authz::new(ctx);
    let cluster_create = authz.quietly_allows(Operation::Create, ResourceType::Cluster, CLUSTER_NAME);
    for t in req.topics {
        results.push({
            let name = t.name.clone();
            let mut result = CreatableTopicResult::default().with_name(name.clone());
            if counts.get(name.as_str()).copied().unwrap_or(0) > 1 {
                results.push(with_error(
                    result,
                    &BrokerError::InvalidRequest(format!("Duplicate topic name {}", name.as_str())),
                ));
                continue;
            }
            if !cluster_create && !authz.allows(Operation::Create, ResourceType::Topic, name.as_str()) {
                result.error_code = kafka_protocol::ResponseError::TopicAuthorizationFailed.code();
                result.error_message = Some(StrBytes::from_static_str("Authorization failed."));
                results.push(result);
                continue;
            }
            let outcome = create_one(ctx, t, req.validate_only).await;
            match outcome {
                Ok(meta) => {
                    result = result
                        .with_topic_id(if req.validate_only { uuid::Uuid::nil() } else { meta.id })
                        .with_num_partitions(meta.partition_count())
                        .with_replication_factor(meta.replication_factor());
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
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn with_error(result: CreatableTopicResult, e: &BrokerError) -> CreatableTopicResult {
    result
        .with_error_code(e.code())
        .with_error_message(Some(StrBytes::from_string(e.to_string())))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

async fn create_one(
    ctx: &RequestContext<'_>,
    t: kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<std::sync::Arc<crate::controller::image::TopicImage>, BrokerError> {
    let mut partitions = t.num_partitions;
    let mut replication_factor = t.replication_factor;
    let mut assignments = None;
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(BrokerError::InvalidRequest(
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        let image = ctx.broker.metadata.image();
        let mut sorted: Vec<_> = t.assignments.iter().collect();
        sorted.sort_by_key(|a| a.partition_index);
        let width = sorted.first().map_or(0, |a| a.broker_ids.len());
        let mut replicas = Vec::with_capacity(sorted.len());
        for (i, a) in sorted.iter().enumerate() {
            let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
            let mut distinct = ids.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let why = if a.partition_index != i as i32 {
                Some("partitions must be numbered consecutively from 0".to_string())
            } else if ids.is_empty() {
                Some("an empty replica list".to_string())
            } else if distinct.len() != ids.len() {
                Some(format!("duplicate brokers in {ids:?}"))
            } else if ids.len() != width {
                Some("every partition must have the same number of replicas".to_string())
            } else {
                ids.iter()
                    .find(|b| !image.brokers.contains_key(*b))
                    .map(|b| format!("broker {b} is not registered"))
            };
            if let Some(why) = why {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "Invalid replica assignment for partition {}: {why}",
                    a.partition_index
                )));
            }
            replicas.push(ids);
        }
        partitions = replicas.len() as i32;
        replication_factor = width as i16;
        assignments = Some(replicas);
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
    ctx.broker
        .create_topic(
            NewTopic {
                name: t.name.to_string(),
                partitions,
                replication_factor,
                configs,
                assignments,
            },
            validate_only,
        )
        .await
}
