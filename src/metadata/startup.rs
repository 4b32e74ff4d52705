//! Joining the metadata quorum at startup: start this node's Raft member, wait for a leader,
//! name the cluster (the first leader proposes a cluster id), check `meta.properties`, and
//! register this broker.
//!
//! `meta.properties` in the log dir is Kafka's: `version`, `cluster.id`, `node.id`. A log dir
//! that names another cluster or node refuses to start, so data from one cluster never mixes
//! into another.
//!
//! A log dir from before the quorum (`__cluster_metadata/metadata.json`) is imported once:
//! its cluster id, topics (ids, partition counts, configs) and producer-id high mark become
//! the first commands of the new log, and the file is renamed `metadata.json.imported`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::controller::record::{Endpoint, MetadataCommand, MetadataRecord, PartitionRegistration};
use crate::controller::{network, Controller, QuorumConfig};

const META_PROPERTIES: &str = "meta.properties";

/// The pre-quorum metadata document (format version 1).
#[derive(Debug, Deserialize)]
struct LegacyDocument {
    cluster_id: String,
    topics: BTreeMap<String, LegacyTopic>,
    producer_id_block_end: i64,
}

#[derive(Debug, Deserialize)]
struct LegacyTopic {
    name: String,
    id: Uuid,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

/// A new cluster id: 16 random bytes in Kafka's URL-safe base64 (22 characters).
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    out
}

/// Starts this node's member of the quorum (voters from `controller.quorum.voters`, or just
/// this node) and serves peers on the controller listener, under `tasks`; on a broker-only
/// node (`process.roles=broker`), the pull of the voters' images instead.
pub async fn start_controller(
    config: &BrokerConfig,
    tasks: &crate::supervisor::Supervisor,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Arc<Controller>> {
    if !config.cluster.roles.controller {
        let (controller, pull) = Controller::observe(config.node_id, &config.cluster.voters, shutdown);
        tasks.spawn("metadata-fetcher", pull);
        tracing::info!(voters = ?config.cluster.voters, "broker-only node: following the controller quorum");
        return Ok(Arc::new(controller));
    }
    let voters: BTreeMap<i32, String> = if config.cluster.voters.is_empty() {
        BTreeMap::from([(config.node_id, String::new())])
    } else {
        config.cluster.voters.clone()
    };
    let quorum = QuorumConfig {
        election_timeout_ms: config.cluster.election_timeout_ms,
        heartbeat_interval_ms: (config.cluster.election_timeout_ms / 10).max(5),
        broker_session_timeout_ms: config.cluster.broker_session_timeout_ms,
        unclean_leader_election: config.log.unclean_leader_election_enable,
        leader_rebalance_every: config
            .cluster
            .auto_leader_rebalance_enable
            .then(|| Duration::from_secs(config.cluster.leader_imbalance_check_interval_seconds)),
    };
    // Bound before the member starts, so peers reach it as soon as it votes.
    let listener = match config.cluster.controller_listener {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the controller listener {addr}"))?,
        ),
        None => None,
    };
    let controller = Arc::new(
        Controller::start(
            config.node_id,
            config.metadata_dir(),
            &voters,
            &quorum,
            network::Network::default(),
        )
        .await?,
    );
    let Some(quorum) = controller.quorum().cloned() else {
        anyhow::bail!("a controller node without its quorum member");
    };
    if let Some(listener) = listener {
        tasks.spawn(
            "controller-listener",
            network::serve(listener, Arc::clone(&quorum), shutdown.clone()),
        );
    }
    tasks.spawn("active-controller", quorum.run(shutdown));
    Ok(controller)
}

/// Waits for a leader, names the cluster if this node leads a new one, checks and writes
/// `meta.properties`, registers this broker and starts its heartbeats (under `tasks`), and
/// returns once the active controller has unfenced it. Returns the cluster id.
pub async fn join(
    controller: &Arc<Controller>,
    config: &BrokerConfig,
    tasks: &crate::supervisor::Supervisor,
    shutdown_request: Arc<crate::metadata::heartbeat::ShutdownRequest>,
    health: Arc<crate::replication::log_dir::LogDirHealth>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<String> {
    let leader = loop {
        match controller.wait_for_leader(Duration::from_secs(5)).await {
            Ok(id) => break id,
            Err(_) => {
                tracing::info!(voters = ?config.cluster.voters, "waiting for the controller quorum to elect a leader")
            }
        }
    };
    if leader == config.node_id && controller.image().cluster_id.is_none() {
        let command = match import_legacy(&config.log_dir, config.node_id)? {
            Some(import) => import,
            None => MetadataCommand::one(MetadataRecord::InitCluster {
                cluster_id: new_cluster_id(),
            }),
        };
        controller.write(command).await?;
        let legacy = config.log_dir.join("__cluster_metadata").join("metadata.json");
        if legacy.exists() {
            std::fs::rename(&legacy, legacy.with_extension("json.imported"))?;
            tracing::info!(file = %legacy.display(), "imported the pre-quorum metadata");
        }
    }
    let mut images = controller.subscribe();
    let image = images
        .wait_for(|i| i.cluster_id.is_some())
        .await
        .map_err(|_| anyhow::anyhow!("the metadata quorum stopped"))?
        .clone();
    let cluster_id = image.cluster_id.clone().unwrap_or_default();
    check_meta_properties(&config.log_dir, &cluster_id, config.node_id)?;
    let registration = crate::metadata::heartbeat::Registration {
        id: config.node_id,
        // Every broker listener, by name: a client gets the endpoints of the listener it used.
        endpoints: config
            .listeners
            .iter()
            .map(|l| Endpoint {
                name: l.name.clone(),
                host: l.advertised_host.clone(),
                port: l.advertised_port,
            })
            .collect(),
        rack: config.broker_rack.clone(),
    };
    let epoch = registration.register(controller).await?;
    tasks.spawn(
        "broker-heartbeat",
        crate::metadata::heartbeat::run(
            Arc::clone(controller),
            registration,
            epoch,
            Duration::from_millis(config.cluster.broker_heartbeat_interval_ms),
            shutdown_request,
            health,
            shutdown,
        ),
    );
    let mut images = controller.subscribe();
    let mut waited = 0u32;
    loop {
        let unfenced = tokio::time::timeout(
            Duration::from_secs(5),
            images.wait_for(|i| i.brokers.get(&config.node_id).is_some_and(|b| !b.fenced)),
        )
        .await;
        match unfenced {
            Ok(Ok(_)) => break,
            Ok(Err(_)) => anyhow::bail!("the metadata quorum stopped"),
            Err(_) => {
                waited += 5;
                tracing::info!(
                    waited_s = waited,
                    "waiting for the active controller to unfence this broker"
                );
            }
        }
    }
    Ok(cluster_id)
}

/// The commands that import a pre-quorum metadata document, if the log dir has one.
fn import_legacy(log_dir: &Path, node_id: i32) -> anyhow::Result<Option<MetadataCommand>> {
    let path = log_dir.join("__cluster_metadata").join("metadata.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let doc: LegacyDocument = serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?;
    let mut records = vec![MetadataRecord::InitCluster {
        cluster_id: doc.cluster_id,
    }];
    for t in doc.topics.into_values() {
        records.push(MetadataRecord::CreateTopic {
            name: t.name,
            id: t.id,
            // A pre-quorum broker was a single node: it held every replica.
            partitions: (0..t.partitions)
                .map(|_| PartitionRegistration::new(vec![node_id]))
                .collect(),
            configs: t.configs,
        });
    }
    if doc.producer_id_block_end > 0 {
        records.push(MetadataRecord::AllocateProducerIds {
            broker: node_id,
            count: doc.producer_id_block_end,
        });
    }
    Ok(Some(MetadataCommand { records }))
}

/// Checks `meta.properties` against the cluster and node, or writes it the first time.
fn check_meta_properties(log_dir: &Path, cluster_id: &str, node_id: i32) -> anyhow::Result<()> {
    let path = log_dir.join(META_PROPERTIES);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let props: BTreeMap<&str, &str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            if let Some(found) = props.get("cluster.id").filter(|c| **c != cluster_id) {
                anyhow::bail!(
                    "cluster id mismatch: {} belongs to cluster {found}, but the controller quorum is cluster {cluster_id} \
                     (a log dir from another cluster: use a new log dir, or the quorum it came from)",
                    log_dir.display()
                );
            }
            if let Some(found) = props.get("node.id").filter(|n| **n != node_id.to_string()) {
                anyhow::bail!(
                    "node id mismatch: {} belongs to node {found}, but this is node.id {node_id}",
                    log_dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = format!("#\n#Written by sluice\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
            crate::storage::checkpoint::write_atomic(&path, text.as_bytes())?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Before the quorum starts: a log dir whose `meta.properties` names another node refuses
/// at once (the cluster id is checked once the quorum answers).
pub fn check_node_id(log_dir: &Path, node_id: i32) -> anyhow::Result<()> {
    match std::fs::read_to_string(log_dir.join(META_PROPERTIES)) {
        Ok(text) => {
            let found = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("node.id="))
                .next()
                .map(str::trim);
            if let Some(found) = found.filter(|f| *f != node_id.to_string()) {
                anyhow::bail!(
                    "node id mismatch: {} belongs to node {found}, but this is node.id {node_id}",
                    log_dir.display()
                );
            }
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(id, new_cluster_id());
    }

    #[test]
    fn meta_properties_are_written_once_and_checked() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        check_meta_properties(dir.path(), "abc", 1)?;
        check_meta_properties(dir.path(), "abc", 1)?;
        let e = check_meta_properties(dir.path(), "other", 1).unwrap_err().to_string();
        assert!(e.contains("cluster id mismatch"), "{e}");
        assert!(check_node_id(dir.path(), 2).is_err());
        assert!(check_node_id(dir.path(), 1).is_ok());
        Ok(())
    }
}
