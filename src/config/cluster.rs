//! The KRaft settings of a node: its roles, the controller quorum and the listeners, with
//! Kafka's names (`process.roles`, `controller.quorum.voters`, `controller.listener.names`,
//! `listeners` with a `CONTROLLER://` entry, `inter.broker.listener.name`).
//!
//! Without `controller.quorum.voters` a node is a quorum of one: it is its own controller and
//! opens no controller listener (the single-node default needs no cluster settings at all).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{invalid, ConfigError, RawValue};

/// One entry of `listeners`: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// Parses Kafka's listener list (`PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093`).
pub fn parse_listeners(key: &str, text: &str) -> Result<Vec<ListenerSpec>, ConfigError> {
    let mut out: Vec<ListenerSpec> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, rest) = item
            .split_once("://")
            .ok_or_else(|| invalid(key, format!("`{item}` is not NAME://host:port")))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, format!("`{item}` has no port")))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| invalid(key, format!("`{port}` is not a port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        let name = name.trim().to_ascii_uppercase();
        if out.iter().any(|l| l.name == name) {
            return Err(invalid(key, format!("listener name {name} appears twice")));
        }
        out.push(ListenerSpec {
            name,
            host: host.to_string(),
            port,
        });
    }
    if out.is_empty() {
        return Err(invalid(key, "no listener"));
    }
    Ok(out)
}

/// Kafka's rack-aware replica selector (`replica.selector.class`).
pub const RACK_AWARE_REPLICA_SELECTOR: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// A node's roles (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

/// The cluster settings of a node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `process.roles`: `broker,controller` (default) or `broker`.
    pub roles: Roles,
    /// `controller.quorum.voters`: `id@host:port,...`; empty: a quorum of one (this node).
    pub voters: BTreeMap<i32, String>,
    /// `controller.listener.names`: the listener(s) of `listeners` that controllers use.
    pub controller_listener_names: Vec<String>,
    /// The controller listener's address (from `listeners`), on a node with the controller role
    /// in a quorum of more than itself.
    pub controller_listener: Option<SocketAddr>,
    /// `inter.broker.listener.name`: the listener brokers use to reach each other.
    pub inter_broker_listener_name: String,
    /// `controller.quorum.election.timeout.ms` (Kafka's default 1000).
    pub election_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms` (2000).
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms` (9000): a broker silent this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `replica.lag.time.max.ms` (30000): an ISR member that has not caught up for this long
    /// leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `replica.fetch.max.bytes` (1 MiB): per partition of a follower's fetch.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes` (10 MiB): per follower fetch response.
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms` (500): how long a follower's fetch waits for data.
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.min.bytes` (1).
    pub replica_fetch_min_bytes: i32,
    /// `replica.fetch.backoff.ms` (1000): after a failed fetch.
    pub replica_fetch_backoff_ms: u64,
    /// `num.replica.fetchers` (1): accepted for Kafka's configs; a follower runs one fetcher
    /// per leader broker whatever its value.
    pub num_replica_fetchers: u32,
    /// `replica.selector.class`: Kafka's `RackAwareReplicaSelector` lets consumers that give
    /// their `client.rack` fetch from an in-rack follower (KIP-392); unset: from the leader.
    pub rack_aware_replica_selector: bool,
    /// `controlled.shutdown.enable` (true): on SIGTERM a broker in a cluster first has the
    /// controller move its leaderships to other ISR members (bounded), then stops.
    pub controlled_shutdown_enable: bool,
    /// `auto.leader.rebalance.enable` (true): the active controller gives partitions back to
    /// their preferred replica (the first) when it is a live ISR member.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds` (300): how often it looks.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.imbalance.per.broker.percentage` (10): accepted for Kafka's configs; as in KRaft,
    /// any partition not led by its preferred replica is moved back, whatever the share.
    pub leader_imbalance_per_broker_percentage: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            roles: Roles {
                broker: true,
                controller: true,
            },
            voters: BTreeMap::new(),
            controller_listener_names: vec!["CONTROLLER".to_string()],
            controller_listener: None,
            inter_broker_listener_name: "PLAINTEXT".to_string(),
            election_timeout_ms: 1_000,
            broker_heartbeat_interval_ms: 2_000,
            broker_session_timeout_ms: 9_000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_max_bytes: 1 << 20,
            replica_fetch_response_max_bytes: 10 << 20,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_min_bytes: 1,
            replica_fetch_backoff_ms: 1_000,
            num_replica_fetchers: 1,
            rack_aware_replica_selector: false,
            controlled_shutdown_enable: true,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            leader_imbalance_per_broker_percentage: 10,
        }
    }
}

/// Parses `controller.quorum.voters` (`1@127.0.0.1:9093,2@...`).
fn parse_voters(key: &str, text: &str) -> Result<BTreeMap<i32, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| invalid(key, format!("`{item}` is not id@host:port")))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|i| *i >= 0)
            .ok_or_else(|| invalid(key, format!("`{id}` is not a node id")))?;
        let addr = addr.trim();
        if !addr.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            return Err(invalid(key, format!("`{addr}` is not host:port")));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(invalid(key, format!("node {id} appears twice")));
        }
    }
    Ok(out)
}

impl ClusterConfig {
    /// Sets one of its keys; `Ok(false)` if `key` is not one of them.
    pub fn set(&mut self, key: &str, value: &RawValue) -> Result<bool, ConfigError> {
        let text = value.as_text();
        match key {
            "process.roles" => {
                let mut roles = Roles {
                    broker: false,
                    controller: false,
                };
                for r in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    match r {
                        "broker" => roles.broker = true,
                        "controller" => roles.controller = true,
                        other => return Err(invalid(key, format!("`{other}` is not broker or controller"))),
                    }
                }
                if !roles.broker {
                    return Err(invalid(key, "a node without the broker role is not supported yet"));
                }
                self.roles = roles;
            }
            "controller.quorum.voters" => self.voters = parse_voters(key, &text)?,
            "controller.listener.names" => {
                self.controller_listener_names = text
                    .split(',')
                    .map(|n| n.trim().to_ascii_uppercase())
                    .filter(|n| !n.is_empty())
                    .collect();
            }
            "inter.broker.listener.name" => self.inter_broker_listener_name = text.trim().to_ascii_uppercase(),
            "controller.quorum.election.timeout.ms" => {
                self.election_timeout_ms = super::in_range(key, value.as_i64(key)?, 10, 3_600_000)? as u64
            }
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = super::in_range(key, value.as_i64(key)?, 10, 3_600_000)? as u64
            }
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable = value.as_bool(key)?,
            "controlled.shutdown.enable" => self.controlled_shutdown_enable = value.as_bool(key)?,
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds =
                    super::in_range(key, value.as_i64(key)?, 1, i64::from(i32::MAX))? as u64
            }
            "leader.imbalance.per.broker.percentage" => {
                self.leader_imbalance_per_broker_percentage = super::in_range(key, value.as_i64(key)?, 0, 100)? as u32
            }
            "broker.session.timeout.ms" => {
                self.broker_session_timeout_ms = super::in_range(key, value.as_i64(key)?, 10, 3_600_000)? as u64
            }
            "replica.lag.time.max.ms" => {
                self.replica_lag_time_max_ms = super::in_range(key, value.as_i64(key)?, 10, i64::from(i32::MAX))? as u64
            }
            "replica.fetch.max.bytes" => {
                self.replica_fetch_max_bytes = super::in_range(key, value.as_i64(key)?, 1, i64::from(i32::MAX))? as i32
            }
            "replica.fetch.response.max.bytes" => {
                self.replica_fetch_response_max_bytes =
                    super::in_range(key, value.as_i64(key)?, 1, i64::from(i32::MAX))? as i32
            }
            "replica.fetch.wait.max.ms" => {
                self.replica_fetch_wait_max_ms =
                    super::in_range(key, value.as_i64(key)?, 0, i64::from(i32::MAX))? as i32
            }
            "replica.fetch.min.bytes" => {
                self.replica_fetch_min_bytes = super::in_range(key, value.as_i64(key)?, 1, i64::from(i32::MAX))? as i32
            }
            "replica.fetch.backoff.ms" => {
                self.replica_fetch_backoff_ms = super::in_range(key, value.as_i64(key)?, 0, i64::from(i32::MAX))? as u64
            }
            "replica.selector.class" => {
                self.rack_aware_replica_selector = match value.as_text().trim() {
                    "" | "org.apache.kafka.common.replica.LeaderSelector" => false,
                    RACK_AWARE_REPLICA_SELECTOR => true,
                    other => {
                        return Err(super::invalid(
                            key,
                            format!("`{other}`: only {RACK_AWARE_REPLICA_SELECTOR} (or none) is available"),
                        ))
                    }
                }
            }
            "num.replica.fetchers" => {
                self.num_replica_fetchers = super::in_range(key, value.as_i64(key)?, 1, 1024)? as u32
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether this node runs in a quorum of more than itself.
    pub fn is_multi_node(&self) -> bool {
        !self.voters.is_empty()
    }

    /// Checks the settings together, once `listeners` is known (its controller entry, if any).
    pub fn validate(&mut self, node_id: i32, controller: Option<&ListenerSpec>) -> Result<(), ConfigError> {
        if self.broker_heartbeat_interval_ms >= self.broker_session_timeout_ms {
            return Err(invalid(
                "broker.heartbeat.interval.ms",
                "must be less than broker.session.timeout.ms",
            ));
        }
        if self.voters.is_empty() {
            if controller.is_some() {
                return Err(invalid(
                    "controller.quorum.voters",
                    "a CONTROLLER listener needs the quorum's voters",
                ));
            }
            if !self.roles.controller {
                return Err(invalid(
                    "controller.quorum.voters",
                    "a node with process.roles=broker needs the quorum's voters",
                ));
            }
            return Ok(());
        }
        if self.roles.controller {
            let Some(l) = controller else {
                return Err(invalid(
                    "listeners",
                    format!(
                        "a controller needs a listener named in controller.listener.names ({})",
                        self.controller_listener_names.join(",")
                    ),
                ));
            };
            // A controller outside the voters joins the quorum once added (AddRaftVoter); see
            // `controller::membership`.
            self.controller_listener = Some(super::parse_socket_addr("listeners", &l.host, l.port)?);
        } else if self.voters.contains_key(&node_id) {
            return Err(invalid(
                "process.roles",
                format!("node {node_id} is a voter in controller.quorum.voters but has no controller role"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_voters_take_kafkas_forms() -> Result<(), ConfigError> {
        let l = parse_listeners("listeners", "PLAINTEXT://127.0.0.1:9092, controller://:9093")?;
        assert_eq!(
            l[1],
            ListenerSpec {
                name: "CONTROLLER".into(),
                host: "0.0.0.0".into(),
                port: 9093
            }
        );
        assert!(parse_listeners("listeners", "PLAINTEXT://a:1,PLAINTEXT://b:2").is_err());
        let v = parse_voters("controller.quorum.voters", "1@127.0.0.1:9093,2@localhost:9094")?;
        assert_eq!(v.get(&2).map(String::as_str), Some("localhost:9094"));
        assert!(parse_voters("controller.quorum.voters", "1@host").is_err());
        assert!(parse_voters("controller.quorum.voters", "1@h:1,1@h:2").is_err());
        Ok(())
    }
}
