//! Broker configuration: Kafka's broker config names, embedded defaults, TOML files and
//! `--override key=value`, validated once at startup.
//!
//! The file format is TOML. Kafka's names contain dots, so both spellings work and mean the
//! same key: `"log.dirs" = "..."` (a quoted key) and `[log] dirs = "..."` (a table); the loader
//! flattens tables into dotted names. An unknown key, or a value of the wrong type or range,
//! stops startup with a message naming the key (Kafka does the same for bad values; for unknown
//! keys Kafka only warns, but a typo in a durability setting deserves a hard stop).
//!
//! Every key, its default, unit and reason is listed in `config/sluice.toml`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

pub mod authorizer;
pub mod cluster;
pub mod listeners;
pub mod sasl;

pub use cluster::{ClusterConfig, ListenerSpec};
pub use listeners::{BrokerListener, ClientAuth, SecurityProtocol, SslSettings};
pub use sasl::SaslSettings;

use crate::coordinator::GroupCoordinatorConfig;
use crate::storage::{CleanerConfig, LogConfig};
use crate::transaction::TransactionConfig;

/// Why a configuration was refused; always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config key `{0}`")]
    UnknownKey(String),
    #[error("invalid value for `{key}`: {reason}")]
    InvalidValue { key: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// `queued.max.request.bytes` unless set: 512 MiB (Kafka's default is unbounded).
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: usize = 512 << 20;

/// The broker's configuration. Field names follow Kafka's keys with units last.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `listeners` without the controller ones, with their protocols, advertised addresses
    /// and TLS settings (`listeners.rs`); the inter-broker listener among them.
    pub listeners: Vec<BrokerListener>,
    /// The inter-broker listener's address (`inter.broker.listener.name`'s entry).
    pub listener: SocketAddr,
    /// `process.roles`, `controller.quorum.voters`, the controller listener, ...
    pub cluster: ClusterConfig,
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: authorizer::AuthorizerConfig,
    /// The inter-broker listener's advertised host and port (`advertised.listeners`).
    pub advertised_host: String,
    pub advertised_port: i32,
    /// `node.id`: this broker's id (also the controller id on a single node).
    pub node_id: i32,
    /// `broker.rack`: the rack (or zone) this broker is in, if any: registered, shown in
    /// Metadata and DescribeCluster, and used to spread new partitions' replicas over racks.
    pub broker_rack: Option<String>,
    /// `log.dirs`: the data directory (one directory for now).
    pub log_dir: PathBuf,
    /// `metadata.log.dir`: where the metadata log (`__cluster_metadata-0`) lives; by default
    /// (`None`) in `log.dirs`, as Kafka's.
    pub metadata_log_dir: Option<PathBuf>,
    /// `num.partitions`: partitions of auto-created topics and of CreateTopics with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `offsets.topic.num.partitions` (50): partitions of `__consumer_offsets` when it is
    /// created (at the first FindCoordinator for a group).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (3), capped by the live brokers at creation.
    pub offsets_topic_replication_factor: i16,
    /// `log.retention.check.interval.ms`: how often retention runs.
    pub log_retention_check_interval_ms: u64,
    /// `log.flush.scheduler.interval.ms`: how often the time-based flush policy is checked.
    pub log_flush_scheduler_interval_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms` (and `log.flush.start.offset.checkpoint.interval.ms`:
    /// both log dir checkpoints are written together, at the shorter interval).
    pub log_flush_offset_checkpoint_interval_ms: u64,
    pub log_flush_start_offset_checkpoint_interval_ms: u64,
    /// `socket.request.max.bytes`: the largest request frame accepted.
    pub socket_request_max_bytes: usize,
    /// `max.connections`: concurrent connections accepted (a permit per connection).
    pub max_connections: usize,
    /// `max.connections.per.ip`: connections from one address; more are closed at accept.
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: per-address limits (`host:count,...`), resolved at
    /// startup.
    pub max_connections_per_ip_overrides: BTreeMap<IpAddr, usize>,
    /// `queued.max.request.bytes`: the broker-wide budget for request bytes read and not yet
    /// handled (`None`: Kafka's unbounded `-1`).
    pub queued_max_request_bytes: Option<usize>,
    /// `queued.max.requests`: requests read ahead per connection before reading pauses.
    pub queued_max_requests: usize,
    /// `connections.max.idle.ms`: idle connections are closed after this long.
    pub connections_max_idle_ms: u64,
    /// `fetch.max.bytes`: the most bytes one fetch response carries (Kafka's 55 MiB), whatever
    /// the client asks; bounds the memory of a fetch.
    pub fetch_max_bytes: usize,
    /// `metrics.listener`: the Prometheus endpoint (127.0.0.1:9644 for node 1, 9645 for node
    /// 2, ... so brokers on one machine do not collide; empty = off).
    pub metrics_listener: Option<SocketAddr>,
    /// `log.format`: `text` or `json`.
    pub log_format_json: bool,
    /// Defaults for every topic's log (`log.segment.bytes`, `log.retention.ms`, ...).
    pub log: LogConfig,
    /// The log cleaner (`log.cleaner.enable`, `log.cleaner.threads`, ...).
    pub cleaner: CleanerConfig,
    /// The group coordinator's settings (`group.*`, `offsets.*`, `offset.metadata.max.bytes`).
    pub groups: GroupCoordinatorConfig,
    /// The transaction coordinator's settings (`transaction.*`, `transactional.id.expiration.ms`).
    pub transactions: TransactionConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listeners: vec![BrokerListener {
                name: "PLAINTEXT".into(),
                addr: SocketAddr::from(([127, 0, 0, 1], 9092)),
                protocol: SecurityProtocol::Plaintext,
                advertised_host: "127.0.0.1".into(),
                advertised_port: 9092,
                ssl: None,
                sasl: None,
            }],
            listener: SocketAddr::from(([127, 0, 0, 1], 9092)),
            cluster: ClusterConfig::default(),
            authorizer: authorizer::AuthorizerConfig::default(),
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: 9092,
            node_id: 1,
            broker_rack: None,
            log_dir: PathBuf::from("./data"),
            metadata_log_dir: None,
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            log_retention_check_interval_ms: 300_000,
            log_flush_scheduler_interval_ms: 1_000,
            log_flush_offset_checkpoint_interval_ms: 60_000,
            log_flush_start_offset_checkpoint_interval_ms: 60_000,
            socket_request_max_bytes: 104_857_600,
            max_connections: 10_000,
            max_connections_per_ip: i32::MAX as usize,
            max_connections_per_ip_overrides: BTreeMap::new(),
            queued_max_request_bytes: Some(DEFAULT_QUEUED_MAX_REQUEST_BYTES),
            queued_max_requests: 16,
            connections_max_idle_ms: 600_000,
            fetch_max_bytes: 57_671_680,
            metrics_listener: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            log_format_json: false,
            log: LogConfig::default(),
            cleaner: CleanerConfig::default(),
            groups: GroupCoordinatorConfig::default(),
            transactions: TransactionConfig::default(),
        }
    }
}

/// A raw value from a file (typed by TOML) or an override (a string).
#[derive(Debug, Clone)]
pub enum RawValue {
    Toml(toml::Value),
    Text(String),
}

impl RawValue {
    fn as_text(&self) -> String {
        match self {
            RawValue::Text(s) => s.clone(),
            RawValue::Toml(toml::Value::String(s)) => s.clone(),
            RawValue::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            RawValue::Toml(v) => v.to_string(),
        }
    }

    fn as_i64(&self, key: &str) -> Result<i64, ConfigError> {
        match self {
            RawValue::Toml(toml::Value::Integer(i)) => Ok(*i),
            other => other
                .as_text()
                .trim()
                .parse::<i64>()
                .map_err(|_| invalid(key, format!("`{}` is not an integer", other.as_text()))),
        }
    }

    fn as_f64(&self, key: &str) -> Result<f64, ConfigError> {
        match self {
            RawValue::Toml(toml::Value::Float(f)) => Ok(*f),
            RawValue::Toml(toml::Value::Integer(i)) => Ok(*i as f64),
            other => other
                .as_text()
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| !f.is_nan())
                .ok_or_else(|| invalid(key, format!("`{}` is not a number", other.as_text()))),
        }
    }

    fn as_bool(&self, key: &str) -> Result<bool, ConfigError> {
        match self {
            RawValue::Toml(toml::Value::Boolean(b)) => Ok(*b),
            other => match other.as_text().trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                t => Err(invalid(key, format!("`{t}` is not true or false"))),
            },
        }
    }
}

pub(crate) fn in_range(key: &str, v: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    if v < min || v > max {
        return Err(invalid(key, format!("{v} is outside [{min}, {max}]")));
    }
    Ok(v)
}

/// Kafka's `max.connections.per.ip.overrides`: `host:count` pairs, comma-separated; a host
/// name stands for every address it resolves to now.
fn parse_per_ip_overrides(key: &str, text: &str) -> Result<BTreeMap<IpAddr, usize>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (host, count) = item
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, format!("`{item}` is not host:count")))?;
        let count = count
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|c| *c <= i32::MAX as u32)
            .ok_or_else(|| invalid(key, format!("`{count}` is not a connection count")))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (host, 0)
                .to_socket_addrs()
                .map_err(|e| invalid(key, format!("cannot resolve `{host}`: {e}")))?
                .map(|a| a.ip())
                .collect(),
        };
        for ip in addrs {
            out.insert(ip, count as usize);
        }
    }
    Ok(out)
}

pub(crate) fn parse_socket_addr(key: &str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    let host = if host == "localhost" { "127.0.0.1" } else { host };
    format!("{host}:{port}")
        .parse::<SocketAddr>()
        .or_else(|_| format!("[{host}]:{port}").parse::<SocketAddr>())
        .map_err(|_| invalid(key, format!("`{host}` is not an IP address")))
}

/// Applies one topic-level config (Kafka's topic config names) to a [`LogConfig`].
/// Used for broker defaults (`log.*` names map here too) and per-topic overrides.
pub fn apply_topic_config(log: &mut LogConfig, key: &str, value: &str) -> Result<(), ConfigError> {
    let raw = RawValue::Text(value.to_string());
    match key {
        "segment.bytes" => log.segment_bytes = in_range(key, raw.as_i64(key)?, 14, i32::MAX as i64)? as u64,
        "segment.ms" => log.segment_ms = in_range(key, raw.as_i64(key)?, 1, i64::MAX)?,
        "segment.index.bytes" => log.segment_index_bytes = in_range(key, raw.as_i64(key)?, 8, i32::MAX as i64)? as u32,
        "index.interval.bytes" => {
            log.index_interval_bytes = in_range(key, raw.as_i64(key)?, 0, i32::MAX as i64)? as u32
        }
        "retention.ms" => log.retention_ms = in_range(key, raw.as_i64(key)?, -1, i64::MAX)?,
        "retention.bytes" => log.retention_bytes = in_range(key, raw.as_i64(key)?, -1, i64::MAX)?,
        "flush.messages" => {
            // Kafka's Long.MAX_VALUE means "never force a flush", as does u64::MAX here.
            let v = in_range(key, raw.as_i64(key)?, 1, i64::MAX)?;
            log.flush_interval_messages = if v == i64::MAX { u64::MAX } else { v as u64 };
        }
        "flush.ms" => log.flush_interval_ms = in_range(key, raw.as_i64(key)?, 0, i64::MAX)?,
        "max.message.bytes" => log.max_message_bytes = in_range(key, raw.as_i64(key)?, 0, i32::MAX as i64)? as u32,
        "message.timestamp.type" => {
            log.log_append_time = match value {
                "CreateTime" => false,
                "LogAppendTime" => true,
                other => return Err(invalid(key, format!("`{other}` is not CreateTime or LogAppendTime"))),
            }
        }
        "cleanup.policy" => {
            let (mut delete, mut compact) = (false, false);
            for item in value.split(',').map(str::trim) {
                match item {
                    "delete" => delete = true,
                    "compact" => compact = true,
                    other => return Err(invalid(key, format!("`{other}` is not compact or delete"))),
                }
            }
            log.cleanup_delete = delete;
            log.cleanup_compact = compact;
        }
        "delete.retention.ms" => log.delete_retention_ms = in_range(key, raw.as_i64(key)?, 0, i64::MAX)?,
        "min.compaction.lag.ms" => log.min_compaction_lag_ms = in_range(key, raw.as_i64(key)?, 0, i64::MAX)?,
        "max.compaction.lag.ms" => log.max_compaction_lag_ms = in_range(key, raw.as_i64(key)?, 1, i64::MAX)?,
        "min.cleanable.dirty.ratio" => {
            let ratio = raw.as_f64(key)?;
            if !(0.0..=1.0).contains(&ratio) {
                return Err(invalid(key, format!("{ratio} is outside [0, 1]")));
            }
            log.min_cleanable_dirty_ratio = ratio;
        }
        "min.insync.replicas" => log.min_insync_replicas = in_range(key, raw.as_i64(key)?, 1, i32::MAX as i64)? as u32,
        "unclean.leader.election.enable" => log.unclean_leader_election_enable = raw.as_bool(key)?,
        "compression.type" => {
            log.compression = match value {
                "producer" => None,
                other => Some(
                    crate::storage::Compression::from_name(other)
                        .ok_or_else(|| invalid(key, format!("`{other}` is not a compression type")))?,
                ),
            }
        }
        // KIP-390's ranges: gzip 1-9 (or -1, the deflater's default), lz4 1-17, zstd -131072-22.
        "compression.gzip.level" => {
            let level = raw.as_i64(key)?;
            if level != -1 {
                in_range(key, level, 1, 9)?;
            }
            log.gzip_level = (level != -1).then_some(level as i32);
        }
        "compression.lz4.level" => log.lz4_level = Some(in_range(key, raw.as_i64(key)?, 1, 17)? as i32),
        "compression.zstd.level" => log.zstd_level = Some(in_range(key, raw.as_i64(key)?, -131_072, 22)? as i32),
        // Replication settings of the topic, not of its logs: validated here, read from the
        // topic's configs by the replica manager.
        LEADER_THROTTLED_REPLICAS | FOLLOWER_THROTTLED_REPLICAS => {
            ThrottledReplicas::parse(value).map_err(|reason| invalid(key, reason))?;
        }
        _ => return Err(ConfigError::UnknownKey(key.to_string())),
    }
    Ok(())
}

/// Kafka's topic configs naming the replicas whose replication is throttled on the leader's
/// and on the follower's side while they are out of the ISR (`kafka-reassign-partitions
/// --throttle` sets them to the moving replicas).
pub const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";
/// The broker configs (dynamic, set with IncrementalAlterConfigs on a broker or the cluster
/// default) bounding throttled replication, in bytes per second; unset: unbounded.
pub const LEADER_THROTTLED_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_THROTTLED_RATE: &str = "follower.replication.throttled.rate";
/// The broker configs that may be changed at runtime (Kafka's dynamic broker configs; only
/// these so far).
pub const DYNAMIC_BROKER_KEYS: &[&str] = &[LEADER_THROTTLED_RATE, FOLLOWER_THROTTLED_RATE];

/// Checks a dynamic broker config's value.
pub fn validate_dynamic_broker_config(key: &str, value: &str) -> Result<(), ConfigError> {
    if !DYNAMIC_BROKER_KEYS.contains(&key) {
        return Err(ConfigError::UnknownKey(key.to_string()));
    }
    in_range(key, RawValue::Text(value.to_string()).as_i64(key)?, 0, i64::MAX)?;
    Ok(())
}

/// A throttled replicas list: `*`, or `partition:broker` pairs (Kafka's
/// `ThrottledReplicaListValidator`); empty: none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ThrottledReplicas {
    #[default]
    None,
    All,
    Some(std::collections::HashSet<(i32, i32)>),
}

impl ThrottledReplicas {
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(ThrottledReplicas::None);
        }
        if value == "*" {
            return Ok(ThrottledReplicas::All);
        }
        let mut pairs = std::collections::HashSet::new();
        for item in value.split(',').map(str::trim) {
            let pair = item
                .split_once(':')
                .and_then(|(p, b)| Some((p.trim().parse::<i32>().ok()?, b.trim().parse::<i32>().ok()?)))
                .filter(|(p, b)| *p >= 0 && *b >= 0);
            match pair {
                Some(pair) => pairs.insert(pair),
                None => {
                    return Err(format!(
                        "`{item}` must be [partitionId]:[brokerId], or the whole list the wildcard '*'"
                    ))
                }
            };
        }
        Ok(ThrottledReplicas::Some(pairs))
    }

    /// Whether `broker`'s replica of `partition` is listed.
    pub fn contains(&self, partition: i32, broker: i32) -> bool {
        match self {
            ThrottledReplicas::None => false,
            ThrottledReplicas::All => true,
            ThrottledReplicas::Some(pairs) => pairs.contains(&(partition, broker)),
        }
    }
}

/// Topic config names we accept in CreateTopics / AlterConfigs, with their broker-level
/// names (for DescribeConfigs' synonyms and defaults).
pub const TOPIC_CONFIG_KEYS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("compression.type", "compression.type"),
    ("compression.gzip.level", "compression.gzip.level"),
    ("compression.lz4.level", "compression.lz4.level"),
    ("compression.zstd.level", "compression.zstd.level"),
    ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
    ("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms"),
    ("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio"),
    ("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms"),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("max.message.bytes", "message.max.bytes"),
    ("message.timestamp.type", "log.message.timestamp.type"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("unclean.leader.election.enable", "unclean.leader.election.enable"),
    ("retention.bytes", "log.retention.bytes"),
    ("retention.ms", "log.retention.ms"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.index.bytes", "log.index.size.max.bytes"),
    ("segment.ms", "log.roll.ms"),
];

/// The current value of a topic config in a [`LogConfig`], as Kafka prints it.
pub fn topic_config_value(log: &LogConfig, key: &str) -> Option<String> {
    Some(match key {
        "cleanup.policy" => match (log.cleanup_compact, log.cleanup_delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            (false, true) => "delete",
            (false, false) => "",
        }
        .to_string(),
        "delete.retention.ms" => log.delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => log.min_compaction_lag_ms.to_string(),
        "max.compaction.lag.ms" => log.max_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => log.min_cleanable_dirty_ratio.to_string(),
        "compression.type" => log.compression.map_or("producer", |c| c.name()).to_string(),
        "compression.gzip.level" => log.gzip_level.unwrap_or(-1).to_string(),
        "compression.lz4.level" => log
            .lz4_level
            .unwrap_or(crate::storage::codec::LZ4_DEFAULT_LEVEL)
            .to_string(),
        "compression.zstd.level" => log
            .zstd_level
            .unwrap_or(crate::storage::codec::ZSTD_DEFAULT_LEVEL)
            .to_string(),
        "flush.messages" => (log.flush_interval_messages.min(i64::MAX as u64)).to_string(),
        "flush.ms" => log.flush_interval_ms.to_string(),
        "index.interval.bytes" => log.index_interval_bytes.to_string(),
        "max.message.bytes" => log.max_message_bytes.to_string(),
        "message.timestamp.type" => if log.log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        }
        .to_string(),
        "min.insync.replicas" => log.min_insync_replicas.to_string(),
        "unclean.leader.election.enable" => log.unclean_leader_election_enable.to_string(),
        "retention.bytes" => log.retention_bytes.to_string(),
        "retention.ms" => log.retention_ms.to_string(),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.index.bytes" => log.segment_index_bytes.to_string(),
        "segment.ms" => log.segment_ms.to_string(),
        _ => return None,
    })
}

impl BrokerConfig {
    /// The directory holding the metadata log: `metadata.log.dir`, or else `log.dirs`.
    pub fn metadata_dir(&self) -> &std::path::Path {
        self.metadata_log_dir.as_deref().unwrap_or(&self.log_dir)
    }

    /// Builds the configuration from an optional TOML file and `key=value` overrides (applied
    /// after the file, in order).
    pub fn load(file: Option<&std::path::Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut raw: BTreeMap<String, RawValue> = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            flatten("", &table, &mut raw);
        }
        for item in overrides {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| invalid(item, "an override must be key=value"))?;
            raw.insert(k.trim().to_string(), RawValue::Text(v.trim().to_string()));
        }
        let mut config = BrokerConfig::default();
        let mut advertised: Option<String> = None;
        let mut listeners: Option<String> = None;
        let mut listener_keys: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in &raw {
            match key.as_str() {
                "advertised.listeners" => advertised = Some(value.as_text()),
                "listeners" => listeners = Some(value.as_text()),
                k if listeners::is_listener_key(k) => {
                    listener_keys.insert(key.clone(), value.as_text());
                }
                _ => {
                    if !config.cluster.set(key, value)? && !config.authorizer.set(key, value)? {
                        config.set(key, value)?;
                    }
                }
            }
        }
        let specs = match &listeners {
            Some(text) => cluster::parse_listeners("listeners", text)?,
            None => vec![ListenerSpec {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
        };
        let is_controller = |l: &ListenerSpec| config.cluster.controller_listener_names.contains(&l.name);
        let advertised = advertised
            .map(|text| cluster::parse_listeners("advertised.listeners", &text))
            .transpose()?;
        config.listeners = listeners::resolve(
            &specs,
            advertised.as_deref(),
            &config.cluster.controller_listener_names,
            &listener_keys,
        )?;
        // Without inter.broker.listener.name, Kafka's PLAINTEXT, else the only broker listener.
        if !raw.contains_key("inter.broker.listener.name")
            && !config.listeners.iter().any(|l| l.name == "PLAINTEXT")
            && config.listeners.len() == 1
        {
            if let Some(only) = config.listeners.first() {
                config.cluster.inter_broker_listener_name = only.name.clone();
            }
        }
        let inter = config
            .listeners
            .iter()
            .find(|l| l.name == config.cluster.inter_broker_listener_name)
            .cloned()
            .ok_or_else(|| {
                invalid(
                    "inter.broker.listener.name",
                    format!(
                        "{} is not a broker listener of `listeners`",
                        config.cluster.inter_broker_listener_name
                    ),
                )
            })?;
        let multi_node = config.cluster.voters.len() > 1 || !config.cluster.roles.controller;
        if inter.protocol != SecurityProtocol::Plaintext && multi_node {
            return Err(invalid(
                "inter.broker.listener.name",
                format!(
                    "{}: brokers talk to each other over PLAINTEXT only, for now",
                    inter.name
                ),
            ));
        }
        config.listener = inter.addr;
        config.advertised_host = inter.advertised_host.clone();
        config.advertised_port = inter.advertised_port;
        let controller = specs.iter().find(|l| is_controller(l)).cloned();
        config.cluster.validate(config.node_id, controller.as_ref())?;
        if !raw.contains_key("metrics.listener") {
            // One machine, several nodes: each its own default port.
            config.metrics_listener = u16::try_from(config.node_id)
                .ok()
                .and_then(|id| 9643u16.checked_add(id.max(1)))
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
        }
        if config.max_connections_per_ip == 0 && config.max_connections_per_ip_overrides.is_empty() {
            // Kafka's rule: a per-IP limit of 0 only makes sense with overrides that let some in.
            return Err(invalid(
                "max.connections.per.ip",
                "0 requires max.connections.per.ip.overrides",
            ));
        }
        config
            .groups
            .validate()
            .map_err(|e| invalid("group.min.session.timeout.ms", e.to_string()))?;
        Ok(config)
    }

    fn set(&mut self, key: &str, value: &RawValue) -> Result<(), ConfigError> {
        let int = |min: i64, max: i64| -> Result<i64, ConfigError> { in_range(key, value.as_i64(key)?, min, max) };
        match key {
            "node.id" | "broker.id" => self.node_id = int(0, i32::MAX as i64)? as i32,
            "broker.rack" => {
                let rack = value.as_text().trim().to_string();
                self.broker_rack = (!rack.is_empty()).then_some(rack);
            }
            "log.dirs" | "log.dir" => {
                let text = value.as_text();
                let first = text.split(',').next().unwrap_or("").trim();
                if first.is_empty() {
                    return Err(invalid(key, "empty path"));
                }
                self.log_dir = PathBuf::from(first);
            }
            "metadata.log.dir" => {
                let text = value.as_text();
                let path = text.trim();
                self.metadata_log_dir = (!path.is_empty()).then(|| PathBuf::from(path));
            }
            "num.partitions" => self.num_partitions = int(1, 100_000)? as i32,
            "default.replication.factor" => self.default_replication_factor = int(1, i16::MAX as i64)? as i16,
            "auto.create.topics.enable" => self.auto_create_topics_enable = value.as_bool(key)?,
            "offsets.topic.num.partitions" => self.offsets_topic_num_partitions = int(1, 10_000)? as i32,
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = int(1, i16::MAX as i64)? as i16
            }
            "log.retention.check.interval.ms" => self.log_retention_check_interval_ms = int(1, i64::MAX)? as u64,
            "log.flush.scheduler.interval.ms" => self.log_flush_scheduler_interval_ms = int(1, i64::MAX)? as u64,
            "log.flush.offset.checkpoint.interval.ms" => {
                self.log_flush_offset_checkpoint_interval_ms = int(1, i32::MAX as i64)? as u64
            }
            "log.flush.start.offset.checkpoint.interval.ms" => {
                self.log_flush_start_offset_checkpoint_interval_ms = int(1, i32::MAX as i64)? as u64
            }
            "socket.request.max.bytes" => self.socket_request_max_bytes = int(1024, i32::MAX as i64)? as usize,
            "max.connections" => self.max_connections = int(1, 1_000_000)? as usize,
            "max.connections.per.ip" => self.max_connections_per_ip = int(0, i32::MAX as i64)? as usize,
            "max.connections.per.ip.overrides" => {
                self.max_connections_per_ip_overrides = parse_per_ip_overrides(key, &value.as_text())?
            }
            "queued.max.request.bytes" => {
                let bytes = value.as_i64(key)?;
                self.queued_max_request_bytes = match bytes {
                    -1 => None,
                    b => Some(in_range(key, b, 1024, i64::MAX)? as usize),
                };
            }
            "queued.max.requests" => self.queued_max_requests = int(1, 10_000)? as usize,
            "connections.max.idle.ms" => self.connections_max_idle_ms = int(1, i64::MAX)? as u64,
            "fetch.max.bytes" => self.fetch_max_bytes = int(1024, i32::MAX as i64)? as usize,
            "producer.id.expiration.ms" => self.log.producer_id_expiration_ms = int(1, i64::MAX)?,
            "group.initial.rebalance.delay.ms" => {
                self.groups.group_initial_rebalance_delay_ms = int(0, i32::MAX as i64)? as u64
            }
            "group.min.session.timeout.ms" => {
                self.groups.group_min_session_timeout_ms = int(0, i32::MAX as i64)? as i32
            }
            "group.max.session.timeout.ms" => {
                self.groups.group_max_session_timeout_ms = int(0, i32::MAX as i64)? as i32
            }
            "group.max.size" => {
                let size = int(1, i32::MAX as i64)?;
                self.groups.group_max_size = if size == i32::MAX as i64 {
                    None
                } else {
                    Some(size as u32)
                };
            }
            "offsets.retention.minutes" => self.groups.offsets_retention_ms = int(1, i32::MAX as i64)? * 60_000,
            "offsets.retention.check.interval.ms" => {
                self.groups.offsets_retention_check_interval_ms = int(1, i64::MAX)? as u64
            }
            "offsets.commit.timeout.ms" => self.groups.offsets_commit_timeout_ms = int(1, i32::MAX as i64)? as u64,
            "offset.metadata.max.bytes" => self.groups.offset_metadata_max_bytes = int(0, i32::MAX as i64)? as usize,
            "transaction.max.timeout.ms" => self.transactions.max_timeout_ms = int(1, i32::MAX as i64)? as i32,
            "transactional.id.expiration.ms" => self.transactions.id_expiration_ms = int(1, i32::MAX as i64)? as u64,
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.transactions.abort_timed_out_interval_ms = int(1, i32::MAX as i64)? as u64
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                self.transactions.remove_expired_interval_ms = int(1, i32::MAX as i64)? as u64
            }
            "transaction.state.log.num.partitions" => {
                self.transactions.state_log_num_partitions = int(1, 10_000)? as i32
            }
            "transaction.state.log.replication.factor" => {
                self.transactions.state_log_replication_factor = int(1, i16::MAX as i64)? as i16
            }
            "transaction.state.log.min.isr" => self.transactions.state_log_min_isr = int(1, i16::MAX as i64)? as i16,
            "metrics.listener" => {
                let text = value.as_text();
                self.metrics_listener = if text.trim().is_empty() {
                    None
                } else {
                    Some(
                        text.trim()
                            .parse()
                            .map_err(|_| invalid(key, format!("`{text}` is not host:port")))?,
                    )
                };
            }
            "log.format" => {
                self.log_format_json = match value.as_text().as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(invalid(key, format!("`{other}` is not text or json"))),
                }
            }
            "log.cleaner.enable" => self.cleaner.enable = value.as_bool(key)?,
            "log.cleaner.threads" => self.cleaner.threads = int(1, 64)? as usize,
            "log.cleaner.dedupe.buffer.size" => self.cleaner.dedupe_buffer_size = int(1 << 16, i64::MAX)? as usize,
            "log.cleaner.io.max.bytes.per.second" => {
                let rate = value.as_f64(key)?;
                if rate <= 0.0 {
                    return Err(invalid(key, format!("{rate} must be positive")));
                }
                self.cleaner.io_max_bytes_per_second = rate;
            }
            "log.cleaner.backoff.ms" => self.cleaner.backoff_ms = int(0, i64::MAX)? as u64,
            "log.roll.hours" => {
                let hours = int(1, i32::MAX as i64)?;
                self.log.segment_ms = hours * 3_600_000;
            }
            "log.retention.hours" => {
                let hours = int(-1, i32::MAX as i64)?;
                self.log.retention_ms = if hours < 0 { -1 } else { hours * 3_600_000 };
            }
            "log.retention.minutes" => {
                let minutes = int(-1, i32::MAX as i64)?;
                self.log.retention_ms = if minutes < 0 { -1 } else { minutes * 60_000 };
            }
            _ => {
                let topic_key = broker_to_topic_key(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
                apply_topic_config(&mut self.log, topic_key, &value.as_text()).map_err(|e| match e {
                    ConfigError::InvalidValue { reason, .. } => invalid(key, reason),
                    other => other,
                })?;
            }
        }
        Ok(())
    }
}

/// Maps a broker-level log default (`log.segment.bytes`) to its topic-level name.
pub fn broker_to_topic_key(key: &str) -> Option<&'static str> {
    TOPIC_CONFIG_KEYS
        .iter()
        .find(|(_, broker)| *broker == key)
        .map(|(topic, _)| *topic)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, RawValue>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            other => {
                out.insert(key, RawValue::Toml(other.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_replica_lists_are_kafkas() {
        assert_eq!(ThrottledReplicas::parse(""), Ok(ThrottledReplicas::None));
        assert_eq!(ThrottledReplicas::parse("*"), Ok(ThrottledReplicas::All));
        let list = ThrottledReplicas::parse("0:1, 0:2,3:1").unwrap();
        assert!(list.contains(0, 2) && list.contains(3, 1) && !list.contains(1, 1));
        for bad in ["0", "0:1,*", "a:1", "0:-1", "0:1,"] {
            assert!(ThrottledReplicas::parse(bad).is_err(), "{bad}");
        }
        let mut log = LogConfig::default();
        assert!(apply_topic_config(&mut log, LEADER_THROTTLED_REPLICAS, "0:1").is_ok());
        assert!(apply_topic_config(&mut log, FOLLOWER_THROTTLED_REPLICAS, "x").is_err());
        assert!(validate_dynamic_broker_config(LEADER_THROTTLED_RATE, "1048576").is_ok());
        assert!(validate_dynamic_broker_config(LEADER_THROTTLED_RATE, "-1").is_err());
        assert!(validate_dynamic_broker_config("num.partitions", "3").is_err());
    }

    #[test]
    fn defaults_need_no_file() -> Result<(), ConfigError> {
        let c = BrokerConfig::load(None, &[])?;
        assert_eq!(c.listener.port(), 9092);
        assert_eq!(c.node_id, 1);
        assert_eq!(c.log.segment_bytes, 1 << 30);
        Ok(())
    }

    #[test]
    fn overrides_and_tables() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("b.toml");
        std::fs::write(&path, "\"log.segment.bytes\" = 2048\n[log.retention]\nms = 5000\n")?;
        let c = BrokerConfig::load(
            Some(&path),
            &["listeners=PLAINTEXT://127.0.0.1:19092".into(), "log.dirs=/tmp/x".into()],
        )?;
        assert_eq!(c.log.segment_bytes, 2048);
        assert_eq!(c.log.retention_ms, 5000);
        assert_eq!(c.listener.port(), 19092);
        assert_eq!(c.advertised_port, 19092);
        assert_eq!(c.log_dir, PathBuf::from("/tmp/x"));
        Ok(())
    }

    /// config/sluice.toml documents the embedded defaults: loading it must change nothing.
    #[test]
    fn shipped_config_file_is_the_defaults() -> Result<(), ConfigError> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sluice.toml");
        let from_file = BrokerConfig::load(Some(&path), &[])?;
        let defaults = BrokerConfig::default();
        assert_eq!(from_file.log, defaults.log);
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
        Ok(())
    }

    #[test]
    fn unknown_key_and_bad_value_name_the_key() {
        let e = BrokerConfig::load(None, &["log.segmnt.bytes=1".into()])
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("log.segmnt.bytes"));
        let e = BrokerConfig::load(None, &["num.partitions=zero".into()])
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("num.partitions"));
        let e = BrokerConfig::load(None, &["listeners=SSL://127.0.0.1:1".into()])
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("ssl.keystore.location"));
    }

    #[test]
    fn connection_limits_take_kafkas_forms() -> Result<(), ConfigError> {
        let c = BrokerConfig::load(
            None,
            &[
                "max.connections.per.ip=5".into(),
                "max.connections.per.ip.overrides=127.0.0.2:1, [::1]:0,localhost:7".into(),
                "queued.max.request.bytes=-1".into(),
            ],
        )?;
        assert_eq!(c.max_connections_per_ip, 5);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.max_connections_per_ip_overrides.get(&ip("127.0.0.2")), Some(&1));
        assert_eq!(c.max_connections_per_ip_overrides.get(&ip("127.0.0.1")), Some(&7));
        assert_eq!(c.queued_max_request_bytes, None);
        assert_eq!(
            BrokerConfig::default().queued_max_request_bytes,
            Some(DEFAULT_QUEUED_MAX_REQUEST_BYTES)
        );
        for bad in [
            "max.connections.per.ip=0",
            "max.connections.per.ip.overrides=127.0.0.1",
            "max.connections.per.ip.overrides=127.0.0.1:many",
            "queued.max.request.bytes=0",
        ] {
            let e = BrokerConfig::load(None, &[bad.into()]).err().map(|e| e.to_string());
            let key = bad.split('=').next().unwrap_or_default();
            assert!(e.unwrap_or_default().contains(key), "{bad}");
        }
        Ok(())
    }
}
