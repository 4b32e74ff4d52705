//! DescribeConfigs (key 32), AlterConfigs (key 33) and IncrementalAlterConfigs (key 44).
//!
//! Topic configs are Kafka's topic config names; overrides are persisted in the metadata store
//! and applied to the open logs at once (no restart). Broker configs are described (read-only,
//! from the startup configuration); altering them dynamically is not supported and says so.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::RequestContext;
use crate::broker::Broker;
use crate::config::{
    topic_config_value, BrokerConfig, DYNAMIC_BROKER_KEYS, FOLLOWER_THROTTLED_REPLICAS, LEADER_THROTTLED_REPLICAS,
    TOPIC_CONFIG_KEYS,
};
use crate::controller::image::{MetadataImage, TopicImage};
use crate::error::BrokerError;
use crate::replication::replica_manager::topic_log_config;
use crate::security::acl::{Operation, ResourceType};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigSource` values.
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_DYNAMIC_BROKER_CONFIG: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// Kafka's `ConfigType` values.
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
const TYPE_DOUBLE: i8 = 6;
const TYPE_BOOLEAN: i8 = 1;

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// One described config.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    pub config_type: i8,
    /// (broker-level name, value) of the default this entry overrides or inherits.
    pub synonym: Option<(String, String)>,
}

/// The topic configs that are not log settings (read from the topic's configs, default empty).
const THROTTLE_TOPIC_KEYS: [&str; 2] = [LEADER_THROTTLED_REPLICAS, FOLLOWER_THROTTLED_REPLICAS];

fn is_topic_config_key(name: &str) -> bool {
    TOPIC_CONFIG_KEYS.iter().any(|(k, _)| *k == name) || THROTTLE_TOPIC_KEYS.contains(&name)
}

fn topic_config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" | LEADER_THROTTLED_REPLICAS | FOLLOWER_THROTTLED_REPLICAS => TYPE_LIST,
        "compression.type" | "message.timestamp.type" => TYPE_STRING,
        "unclean.leader.election.enable" => TYPE_BOOLEAN,
        "min.cleanable.dirty.ratio" => TYPE_DOUBLE,
        "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas"
        | "segment.bytes"
        | "segment.index.bytes"
        | "compression.gzip.level"
        | "compression.lz4.level"
        | "compression.zstd.level" => TYPE_INT,
        _ => TYPE_LONG,
    }
}

/// Every topic config with its effective value and where it comes from.
pub fn topic_config_entries(broker: &Broker, meta: &TopicImage) -> Vec<ConfigEntry> {
    let effective = topic_log_config(&broker.config.log, meta);
    TOPIC_CONFIG_KEYS
        .iter()
        .filter_map(|(key, broker_key)| {
            let value = topic_config_value(&effective, key)?;
            let default = topic_config_value(&broker.config.log, key).unwrap_or_default();
            let overridden = meta.configs.contains_key(*key);
            Some(ConfigEntry {
                name: (*key).to_string(),
                value,
                source: if overridden {
                    SOURCE_TOPIC_CONFIG
                } else {
                    SOURCE_DEFAULT_CONFIG
                },
                read_only: false,
                config_type: topic_config_type(key),
                synonym: Some(((*broker_key).to_string(), default)),
            })
        })
        .chain(THROTTLE_TOPIC_KEYS.iter().map(|key| {
            let set = meta.configs.get(*key);
            ConfigEntry {
                name: (*key).to_string(),
                value: set.cloned().unwrap_or_default(),
                source: if set.is_some() {
                    SOURCE_TOPIC_CONFIG
                } else {
                    SOURCE_DEFAULT_CONFIG
                },
                read_only: false,
                config_type: TYPE_LIST,
                synonym: None,
            }
        }))
        .collect()
}

/// The dynamic broker configs of `id` (with the cluster-wide defaults under them), or, for
/// `None`, the cluster-wide defaults alone; unset ones as their defaults (unbounded).
fn dynamic_broker_entries(image: &MetadataImage, id: Option<i32>) -> Vec<ConfigEntry> {
    DYNAMIC_BROKER_KEYS
        .iter()
        .filter_map(|key| {
            let found = match id {
                Some(id) => image.dynamic_broker_config(id, key),
                None => image
                    .broker_config_overrides(None)
                    .and_then(|c| c.get(*key))
                    .map(|v| (v.as_str(), true)),
            };
            let (value, source) = match found {
                Some((v, false)) => (v.to_string(), SOURCE_DYNAMIC_BROKER_CONFIG),
                Some((v, true)) => (v.to_string(), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG),
                None if id.is_none() => return None,
                None => (i64::MAX.to_string(), SOURCE_DEFAULT_CONFIG),
            };
            Some(ConfigEntry {
                name: (*key).to_string(),
                value,
                source,
                read_only: false,
                config_type: TYPE_LONG,
                synonym: None,
            })
        })
        .collect()
}

fn broker_config_entries(config: &BrokerConfig) -> Vec<ConfigEntry> {
    let listener = config
        .listeners
        .iter()
        .map(|l| format!("{}://{}", l.name, l.addr))
        .collect::<Vec<_>>()
        .join(",");
    let advertised = config
        .listeners
        .iter()
        .map(|l| format!("{}://{}:{}", l.name, l.advertised_host, l.advertised_port))
        .collect::<Vec<_>>()
        .join(",");
    let mut entries: Vec<(String, String, i8)> = vec![
        ("advertised.listeners".into(), advertised, TYPE_STRING),
        (
            "auto.create.topics.enable".into(),
            config.auto_create_topics_enable.to_string(),
            TYPE_BOOLEAN,
        ),
        (
            "default.replication.factor".into(),
            config.default_replication_factor.to_string(),
            TYPE_INT,
        ),
        ("listeners".into(), listener, TYPE_STRING),
        ("log.dirs".into(), config.log_dir.display().to_string(), TYPE_STRING),
        ("node.id".into(), config.node_id.to_string(), TYPE_INT),
        ("num.partitions".into(), config.num_partitions.to_string(), TYPE_INT),
        (
            "socket.request.max.bytes".into(),
            config.socket_request_max_bytes.to_string(),
            TYPE_INT,
        ),
    ];
    for (topic_key, broker_key) in TOPIC_CONFIG_KEYS {
        if let Some(v) = topic_config_value(&config.log, topic_key) {
            entries.push(((*broker_key).to_string(), v, topic_config_type(topic_key)));
        }
    }
    entries.sort();
    entries.dedup_by(|a, b| a.0 == b.0);
    entries
        .into_iter()
        .map(|(name, value, config_type)| ConfigEntry {
            name,
            value,
            source: SOURCE_STATIC_BROKER_CONFIG,
            read_only: true,
            config_type,
            synonym: None,
        })
        .collect()
}

/// Kafka's check of a config resource: `op` on the topic, or on the cluster for a broker
/// (TOPIC_ / CLUSTER_AUTHORIZATION_FAILED).
fn config_denied(authz: &Authz<'_>, resource_type: i8, name: &str, op: Operation) -> Option<ResponseError> {
    match resource_type {
        RESOURCE_TOPIC if !authz.allows(op, ResourceType::Topic, name) => Some(ResponseError::TopicAuthorizationFailed),
        RESOURCE_TOPIC => None,
        _ if !authz.allows_cluster(op) => Some(ResponseError::ClusterAuthorizationFailed),
        _ => None,
    }
}

pub fn describe(ctx: &RequestContext<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = ctx.broker;
    let authz = Authz::new(ctx);
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if let Some(e) = config_denied(
                &authz,
                r.resource_type,
                r.resource_name.as_str(),
                Operation::DescribeConfigs,
            ) {
                return result.with_error_code(e.code());
            }
            let entries = match r.resource_type {
                RESOURCE_TOPIC => match broker.metadata.topic(r.resource_name.as_str()) {
                    Some(meta) => topic_config_entries(broker, &meta),
                    None => {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "Topic {} does not exist",
                                r.resource_name.as_str()
                            ))))
                    }
                },
                RESOURCE_BROKER if r.resource_name.is_empty() => dynamic_broker_entries(&broker.metadata.image(), None),
                RESOURCE_BROKER => {
                    let name = r.resource_name.as_str();
                    if name != broker.config.node_id.to_string() {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "Unexpected broker id, expected {}",
                                broker.config.node_id
                            ))));
                    }
                    let mut entries = broker_config_entries(&broker.config);
                    entries.extend(dynamic_broker_entries(
                        &broker.metadata.image(),
                        Some(broker.config.node_id),
                    ));
                    entries.sort_by(|a, b| a.name.cmp(&b.name));
                    entries
                }
                _ => {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(StrBytes::from_static_str("unsupported resource type")))
                }
            };
            // Null (or, as Kafka treats it, an empty list) means every config.
            let wanted = r
                .configuration_keys
                .filter(|keys| !keys.is_empty())
                .map(|keys| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
            let configs = entries
                .into_iter()
                .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(&e.name)))
                .map(|e| describe_entry(e, ctx.version, req.include_synonyms))
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn describe_entry(e: ConfigEntry, version: i16, include_synonyms: bool) -> DescribeConfigsResourceResult {
    let mut out = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(e.name.clone()))
        .with_value(Some(StrBytes::from_string(e.value.clone())))
        .with_read_only(e.read_only)
        .with_config_source(e.source)
        .with_is_sensitive(false);
    if version >= 3 {
        out.config_type = e.config_type;
    }
    if include_synonyms && version >= 1 {
        let mut synonyms = Vec::new();
        if e.source == SOURCE_TOPIC_CONFIG {
            synonyms.push(
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(e.name.clone()))
                    .with_value(Some(StrBytes::from_string(e.value.clone())))
                    .with_source(SOURCE_TOPIC_CONFIG),
            );
        }
        if let Some((name, value)) = e.synonym {
            synonyms.push(
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(name))
                    .with_value(Some(StrBytes::from_string(value)))
                    .with_source(SOURCE_DEFAULT_CONFIG),
            );
        }
        out.synonyms = synonyms;
    }
    out
}

/// The broker a BROKER resource names: an id, or empty for the cluster-wide defaults.
fn broker_entity(name: &str) -> Result<Option<i32>, BrokerError> {
    if name.is_empty() {
        return Ok(None);
    }
    name.parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .map(Some)
        .ok_or_else(|| BrokerError::InvalidRequest(format!("Invalid broker id: {name}")))
}

/// What an alter request does to one resource's overrides.
enum ConfigChange {
    /// AlterConfigs: the given set replaces all overrides.
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs: (name, operation, value) edits.
    Edit(Vec<(String, i8, Option<String>)>),
}

/// Applies a change to one resource's config overrides.
async fn alter_resource(
    ctx: &RequestContext<'_>,
    resource_type: i8,
    name: &str,
    change: ConfigChange,
    validate_only: bool,
) -> Result<(), BrokerError> {
    match resource_type {
        RESOURCE_TOPIC => match change {
            ConfigChange::Replace(pairs) => {
                let mut next = BTreeMap::new();
                for (key, value) in pairs {
                    let value = value
                        .ok_or_else(|| BrokerError::InvalidConfig(format!("Null value not supported for {key}")))?;
                    next.insert(key, value);
                }
                ctx.broker
                    .alter_topic_configs(name, |configs| *configs = next, validate_only)
                    .await
            }
            ConfigChange::Edit(ops) => {
                validate_ops(&ops)?;
                ctx.broker
                    .alter_topic_configs(name, |configs| apply_ops(configs, &ops), validate_only)
                    .await
            }
        },
        RESOURCE_BROKER => {
            let id = broker_entity(name)?;
            let change = |configs: &mut BTreeMap<String, String>| match change {
                ConfigChange::Replace(pairs) => {
                    configs.clear();
                    for (key, value) in pairs {
                        let value = value
                            .ok_or_else(|| BrokerError::InvalidConfig(format!("Null value not supported for {key}")))?;
                        configs.insert(key, value);
                    }
                    Ok(())
                }
                ConfigChange::Edit(ops) => {
                    check_ops(&ops, |_| false)?;
                    apply_ops(configs, &ops);
                    Ok(())
                }
            };
            ctx.broker.alter_broker_configs(id, change, validate_only).await
        }
        _ => Err(BrokerError::InvalidRequest("unsupported resource type".into())),
    }
}

fn outcome_fields(outcome: Result<(), BrokerError>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err(e) => (e.code(), Some(StrBytes::from_string(e.to_string()))),
    }
}

/// AlterConfigs: the given set replaces all of a topic's overrides.
pub async fn alter(ctx: &RequestContext<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    let authz = Authz::new(ctx);
    for r in req.resources {
        responses.push({
            let pairs = r
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())));
            let change = ConfigChange::Replace(pairs.collect());
            let outcome = checked_alter(
                ctx,
                &authz,
                r.resource_type,
                r.resource_name.as_str(),
                change,
                req.validate_only,
            )
            .await;
            let (code, message) = outcome_fields(outcome);
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(message)
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs: SET / DELETE / APPEND / SUBTRACT per key (what `kafka-configs
/// --alter` sends).
pub async fn incremental_alter(
    ctx: &RequestContext<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    let authz = Authz::new(ctx);
    for r in req.resources {
        responses.push({
            let ops = r.configs.iter().map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            });
            let change = ConfigChange::Edit(ops.collect());
            let outcome = checked_alter(
                ctx,
                &authz,
                r.resource_type,
                r.resource_name.as_str(),
                change,
                req.validate_only,
            )
            .await;
            let (code, message) = outcome_fields(outcome);
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(message)
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// ALTER_CONFIGS on the resource, then the change.
async fn checked_alter(
    ctx: &RequestContext<'_>,
    authz: &Authz<'_>,
    resource_type: i8,
    name: &str,
    change: ConfigChange,
    validate_only: bool,
) -> Result<(), BrokerError> {
    match config_denied(authz, resource_type, name, Operation::AlterConfigs) {
        Some(e) => Err(denied_error(e)),
        None => alter_resource(ctx, resource_type, name, change, validate_only).await,
    }
}

/// A denial as the error the alter paths return.
fn denied_error(e: ResponseError) -> BrokerError {
    match e {
        ResponseError::TopicAuthorizationFailed => BrokerError::TopicAuthorizationFailed,
        _ => BrokerError::ClusterAuthorizationFailed,
    }
}

fn validate_ops(ops: &[(String, i8, Option<String>)]) -> Result<(), BrokerError> {
    if let Some((name, ..)) = ops.iter().find(|(name, ..)| !is_topic_config_key(name)) {
        return Err(BrokerError::InvalidConfig(format!("Unknown topic config name: {name}")));
    }
    check_ops(ops, |name| topic_config_type(name) == TYPE_LIST)
}

/// Checks each operation of an IncrementalAlterConfigs (`is_list`: may it APPEND/SUBTRACT).
fn check_ops(ops: &[(String, i8, Option<String>)], is_list: impl Fn(&str) -> bool) -> Result<(), BrokerError> {
    for (name, op, value) in ops {
        match *op {
            OP_SET if value.is_none() => {
                return Err(BrokerError::InvalidRequest(format!(
                    "Null value not supported for : {name}"
                )))
            }
            OP_SET | OP_DELETE => {}
            OP_APPEND | OP_SUBTRACT => {
                if !is_list(name) {
                    return Err(BrokerError::InvalidConfig(format!(
                        "Config value append is not allowed for config key: {name}"
                    )));
                }
            }
            other => return Err(BrokerError::InvalidRequest(format!("Unknown config operation {other}"))),
        }
    }
    Ok(())
}

fn apply_ops(configs: &mut BTreeMap<String, String>, ops: &[(String, i8, Option<String>)]) {
    for (name, op, value) in ops {
        match (*op, value) {
            (OP_SET, Some(v)) => {
                configs.insert(name.clone(), v.clone());
            }
            (OP_DELETE, _) => {
                configs.remove(name);
            }
            (OP_APPEND, Some(v)) => {
                // A list's default: cleanup.policy's is `delete`, the others' empty.
                let default = if name == "cleanup.policy" { "delete" } else { "" };
                let current = configs.get(name).cloned().unwrap_or_else(|| default.to_string());
                let mut items: Vec<String> = current.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
                for item in v.split(',') {
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    }
                }
                configs.insert(name.clone(), items.join(","));
            }
            (OP_SUBTRACT, Some(v)) => {
                let current = configs.get(name).cloned().unwrap_or_default();
                let remove: Vec<&str> = v.split(',').collect();
                let items: Vec<&str> = current
                    .split(',')
                    .filter(|s| !s.is_empty() && !remove.contains(s))
                    .collect();
                configs.insert(name.clone(), items.join(","));
            }
            _ => {}
        }
    }
}
