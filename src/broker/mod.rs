//! The broker: its state (config, metadata, replica manager), startup with recovery,
//! background schedules (group-commit flusher, flush and retention ticks) and clean shutdown.
//!
//! Startup: take the data directory's lock, note whether the last run ended cleanly (Kafka's
//! `.kafka_cleanshutdown` marker) and remove the marker, open the metadata and every partition
//! (recovering logs after an unclean stop), then accept connections. Shutdown: stop accepting,
//! let connections finish their in-flight requests, flush and close every log, write the marker.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::controller::image::MetadataImage;
use crate::coordinator::log::{CoordinatorLog, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::coordinator::{GroupCoordinator, OffsetStore};
use crate::error::BrokerError;
use crate::metadata::MetadataClient;
use crate::replication::replica_manager::{now_ms, run_flusher, FlushQueue, ReplicaManager};
use crate::supervisor::Supervisor;

const CLEAN_SHUTDOWN_MARKER: &str = ".kafka_cleanshutdown";
const LOCK_FILE: &str = ".lock";
/// The longest a SIGTERM waits for the controller to move this broker's leaderships.
const CONTROLLED_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The most partitions one broker hosts; bounds the flush queue and CreateTopics requests.
pub const MAX_PARTITIONS: usize = 100_000;

pub mod coordinators;
mod topics;

pub struct Broker {
    pub config: BrokerConfig,
    /// The cluster metadata: images read by handlers, changes proposed to the controller.
    pub metadata: Arc<MetadataClient>,
    /// The metadata offset this broker's replicas reflect. The metadata listener owns the
    /// sender: once it stops (shutdown) the channel closes and waiters give up.
    pub local_offset: watch::Receiver<u64>,
    /// Topics whose local replicas could not be created, by topic id (see `topics`).
    pub(crate) local_failures: std::sync::Mutex<std::collections::HashMap<Uuid, BrokerError>>,
    pub replicas: Arc<ReplicaManager>,
    /// The group coordinator (an actor owning every group and the committed offsets).
    pub groups: GroupCoordinator,
    /// The transaction coordinator (an actor owning every transactional id).
    pub transactions: crate::transaction::coordinator::TxnCoordinator,
    /// Spawns the broker's background tasks under supervision.
    pub tasks: Supervisor,
    /// The data directory's lock (and the metadata log directory's, when it is elsewhere).
    _locks: Vec<File>,
}

/// A topic creation as CreateTopics or auto-creation asks for it.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1 = `num.partitions`.
    pub partitions: i32,
    /// -1 = `default.replication.factor`.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// Explicit replicas per partition (CreateTopics' `assignments`), checked by the caller.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    if name.is_empty() {
        return Err(BrokerError::InvalidTopic(
            "Topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(BrokerError::InvalidTopic("Topic name cannot be \".\" or \"..\"".into()));
    }
    if name.len() > 249 {
        return Err(BrokerError::InvalidTopic(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(BrokerError::InvalidTopic(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

impl Broker {
    /// Opens the data directory and every log in it, and starts the group and transaction
    /// coordinators under `tasks` (so it must run inside a tokio runtime).
    pub fn open(
        config: BrokerConfig,
        tasks: Supervisor,
        metadata: Arc<MetadataClient>,
        image: &MetadataImage,
        locks: Vec<File>,
        health: Arc<crate::replication::log_dir::LogDirHealth>,
    ) -> anyhow::Result<(Arc<Broker>, FlushQueue, watch::Sender<u64>)> {
        let dir = config.log_dir.clone();
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let had_clean_shutdown = marker.exists();
        let topics: Vec<Arc<crate::controller::image::TopicImage>> = image.topics().cloned().collect();
        if !had_clean_shutdown && !topics.is_empty() {
            tracing::warn!("no clean shutdown marker: recovering logs");
        }
        let started = std::time::Instant::now();
        let (replicas, queue) = ReplicaManager::open_with_health(
            &dir,
            config.node_id,
            config.log.clone(),
            &topics,
            had_clean_shutdown,
            MAX_PARTITIONS,
            health,
        )
        .context("opening logs")?;
        tracing::info!(
            topics = topics.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "logs loaded"
        );
        let replicas = Arc::new(replicas);
        let offsets_partitions = image
            .topic(OFFSETS_TOPIC)
            .map_or(config.offsets_topic_num_partitions, |t| t.partitions.len() as i32);
        let offsets = OffsetStore::new(
            CoordinatorLog::new(Arc::clone(&replicas), OFFSETS_TOPIC),
            offsets_partitions,
        );
        let (groups, group_actor) = crate::coordinator::start(config.groups, offsets);
        tasks.spawn("group-coordinator", group_actor);
        let (transactions, txn_commands) = crate::transaction::coordinator::channel();
        if had_clean_shutdown {
            std::fs::remove_file(&marker).context("removing clean shutdown marker")?;
            File::open(&dir)?.sync_all()?;
        }
        let txn_config = config.transactions;
        let (applied, local_offset) = watch::channel(image.offset);
        let broker = Arc::new(Broker {
            config,
            metadata,
            local_offset,
            local_failures: std::sync::Mutex::new(std::collections::HashMap::new()),
            replicas,
            groups,
            transactions,
            tasks,
            _locks: locks,
        });
        let txn_partitions = image
            .topic(TRANSACTION_STATE_TOPIC)
            .map_or(txn_config.state_log_num_partitions, |t| t.partitions.len() as i32);
        let txn_actor = crate::transaction::coordinator::actor(
            txn_commands,
            txn_config,
            CoordinatorLog::new(Arc::clone(&broker.replicas), TRANSACTION_STATE_TOPIC),
            txn_partitions,
            Arc::downgrade(&broker),
        );
        broker.tasks.spawn("transaction-coordinator", txn_actor);
        Ok((broker, queue, applied))
    }

    /// Whether the cluster has this partition (wherever its replicas are).
    pub fn partition_exists(&self, topic: &str, index: i32) -> bool {
        self.metadata
            .image()
            .topic(topic)
            .is_some_and(|t| t.partition(index).is_some())
    }

    /// The partition for a request only its leader serves (Produce, a consumer's Fetch,
    /// ListOffsets, ...): NOT_LEADER_OR_FOLLOWER if the partition exists but this broker does
    /// not lead it, UNKNOWN_TOPIC_OR_PARTITION if the cluster has no such partition.
    pub fn leader_partition(
        &self,
        topic: &str,
        index: i32,
    ) -> Result<Arc<crate::replication::partition::Partition>, BrokerError> {
        self.readable_partition(topic, index, false)
    }

    /// The replica of `topic`'s partition `index` hosted here if it leads, or if
    /// `followers_too` (a consumer that may read from followers, KIP-392) whatever its role.
    pub fn readable_partition(
        &self,
        topic: &str,
        index: i32,
        followers_too: bool,
    ) -> Result<Arc<crate::replication::partition::Partition>, BrokerError> {
        match self.replicas.get_partition(topic, index) {
            Some(p) if followers_too || p.is_leader() => Ok(p),
            Some(_) => Err(BrokerError::NotLeaderOrFollower),
            None => {
                let image = self.metadata.image();
                let Some(registration) = image.topic(topic).and_then(|t| t.partition(index)) else {
                    return Err(BrokerError::UnknownTopicOrPartition);
                };
                // A replica that should be here but failed to open (a full disk) is offline:
                // KAFKA_STORAGE_ERROR, as Kafka answers for a partition of an offline log dir.
                if registration.replicas.contains(&self.config.node_id) && self.replicas.is_missing(topic, index) {
                    return Err(BrokerError::ReplicaOffline);
                }
                Err(BrokerError::NotLeaderOrFollower)
            }
        }
    }

    /// Flushes, closes every log and writes the clean shutdown marker.
    pub fn shutdown(&self) -> anyhow::Result<()> {
        self.replicas.shutdown().context("closing logs")?;
        let marker = self.config.log_dir.join(CLEAN_SHUTDOWN_MARKER);
        File::create(&marker)?.sync_all()?;
        File::open(&self.config.log_dir)?.sync_all()?;
        Ok(())
    }
}

/// An exclusive advisory lock on the data directory: two brokers must never share one.
fn lock_dir(dir: &Path) -> anyhow::Result<File> {
    let file = File::create(dir.join(LOCK_FILE))?;
    #[allow(unsafe_code)]
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        anyhow::bail!(
            "{} is locked by another process (is a broker already running on it?)",
            dir.display()
        );
    }
    Ok(file)
}

/// Where the broker takes client connections.
pub enum Listen {
    /// Every listener of `listeners`, bound once the logs are open, so a connection to a port
    /// means the broker is ready (a recovery after a crash can take a while; tooling that
    /// waits for the port must not see it open before then).
    Config,
    /// A listener the caller bound (tests bind port 0) for the entry of `listeners` with its
    /// address; connections wait in its backlog until the broker is ready. The others are
    /// bound as with `Config`.
    Bound(TcpListener),
}

/// A broker opened by [`start`].
pub struct Started {
    pub broker: Arc<Broker>,
    pub queue: FlushQueue,
    pub controller: Arc<crate::controller::Controller>,
    pub cluster_id: String,
    /// A controlled shutdown is asked for through the heartbeats.
    pub shutdown_request: Arc<crate::metadata::heartbeat::ShutdownRequest>,
}

/// Takes the log dir, joins the metadata quorum (starting this node's member), opens every
/// replica the image gives this broker, and starts the metadata listener, under `tasks`.
pub async fn start(
    config: BrokerConfig,
    tasks: &Supervisor,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Started> {
    let dir = config.log_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating log.dirs {}", dir.display()))?;
    let mut locks = vec![lock_dir(&dir)?];
    let metadata_dir = config.metadata_dir().to_path_buf();
    if metadata_dir != dir {
        std::fs::create_dir_all(&metadata_dir)
            .with_context(|| format!("creating metadata.log.dir {}", metadata_dir.display()))?;
        locks.push(lock_dir(&metadata_dir)?);
    }
    crate::metadata::startup::check_node_id(&dir, config.node_id)?;
    let controller = crate::metadata::startup::start_controller(&config, tasks, shutdown.clone()).await?;
    let shutdown_request = crate::metadata::heartbeat::ShutdownRequest::new();
    let health = Arc::new(crate::replication::log_dir::LogDirHealth::new(&dir));
    let cluster_id = crate::metadata::startup::join(
        &controller,
        &config,
        tasks,
        Arc::clone(&shutdown_request),
        Arc::clone(&health),
        shutdown.clone(),
    )
    .await?;
    let metadata = MetadataClient::new(Arc::clone(&controller));
    metadata
        .prime_producer_ids()
        .await
        .context("taking a block of producer ids")?;
    let image = metadata.image();
    let (broker, queue, applied) = Broker::open(config, tasks.clone(), metadata, &image, locks, health)?;
    crate::metadata::listener::update_coordinators(&broker, &MetadataImage::default(), &image).await;
    tasks.spawn(
        "metadata-listener",
        crate::metadata::listener::run(broker.clone(), applied, image, controller.subscribe(), shutdown),
    );
    Ok(Started {
        broker,
        queue,
        controller,
        cluster_id,
        shutdown_request,
    })
}

/// Runs a broker until `stop` resolves: the whole life of the process.
pub async fn run(config: BrokerConfig, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    run_on(config, Listen::Config, stop).await
}

/// [`run`] on a chosen [`Listen`].
pub async fn run_on(
    config: BrokerConfig,
    listen: Listen,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // The recorder goes in before the logs open, so partitions register live counters.
    let metrics = match config.metrics_listener {
        None => None,
        Some(addr) => {
            let bound = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics.listener {addr}"))?;
            crate::metrics::install().map(|handle| (bound, handle))
        }
    };
    let (tasks, mut failures) = Supervisor::new();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let Started {
        broker,
        queue,
        controller,
        cluster_id,
        shutdown_request,
    } = start(config, &tasks, shutdown_rx.clone()).await?;
    let listeners = bind_listeners(&broker.config, listen).await?;
    let flusher = tasks.spawn("log-flusher", run_flusher(queue));
    start_replication(&broker, &controller, &tasks, shutdown_rx.clone());
    let ticks = tasks.spawn("schedules", run_schedules(broker.clone(), shutdown_rx.clone()));
    tasks.spawn(
        "log-cleaner",
        crate::replication::log_cleaner::run_log_cleaner(
            Arc::clone(&broker.replicas),
            broker.config.cleaner.clone(),
            shutdown_rx.clone(),
        ),
    );
    let names: Vec<String> = broker
        .config
        .listeners
        .iter()
        .map(|l| format!("{}://{}", l.name, l.addr))
        .collect();
    tracing::info!(
        listeners = %names.join(","),
        node_id = broker.config.node_id,
        cluster_id = %cluster_id,
        log_dir = %broker.config.log_dir.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "sluice started"
    );
    if let Some((bound, handle)) = metrics {
        tracing::info!(metrics = %bound.local_addr()?, "serving Prometheus metrics at /metrics");
        tasks.spawn(
            "metrics-server",
            crate::metrics::serve(bound, broker.clone(), handle, shutdown_rx.clone()),
        );
    }
    let server = tasks.spawn(
        "accept-loop",
        crate::server::serve(listeners, broker.clone(), shutdown_rx),
    );
    // Until asked to stop, or until a background task fails (see `supervisor`).
    let failed = tokio::select! {
        _ = stop => None,
        f = failures.recv() => f,
    };
    match &failed {
        None => tracing::info!("shutting down"),
        Some(f) => tracing::error!(task = f.task, "shutting down after a background task failed"),
    }
    // In a cluster, leaderships move to other brokers before this one stops serving (Kafka's
    // controlled shutdown): clients follow them with a retriable error instead of timing out.
    if failed.is_none() && broker.config.cluster.controlled_shutdown_enable && !broker.config.cluster.voters.is_empty()
    {
        let started = std::time::Instant::now();
        if shutdown_request.controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT).await {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "controlled shutdown done"
            );
        } else {
            tracing::warn!(
                timeout_s = CONTROLLED_SHUTDOWN_TIMEOUT.as_secs(),
                "controlled shutdown: the controller did not move this broker's leaderships in time; stopping anyway"
            );
        }
    }
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    let _ = ticks.await;
    flusher.abort();
    broker.transactions.shutdown().await;
    broker.groups.shutdown().await;
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.shutdown()).await??;
    controller.shutdown().await;
    if let Some(f) = failed {
        tracing::error!("shutdown complete; exiting with an error");
        return Err(anyhow::anyhow!(f));
    }
    tracing::info!("clean shutdown complete");
    Ok(())
}

/// Binds every broker listener (TLS ones with their certificates loaded), using the one the
/// caller bound for its address.
async fn bind_listeners(config: &BrokerConfig, listen: Listen) -> anyhow::Result<Vec<crate::server::listener::Bound>> {
    let mut given = match listen {
        Listen::Bound(l) => Some(l),
        Listen::Config => None,
    };
    let mut out = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let tls = match &l.ssl {
            None => None,
            Some(ssl) => {
                let server = crate::server::tls::server_config(ssl)
                    .with_context(|| format!("listener {}: TLS settings", l.name))?;
                Some(tokio_rustls::TlsAcceptor::from(server))
            }
        };
        let socket = match given.take_if(|g| g.local_addr().ok() == Some(l.addr)) {
            Some(bound) => bound,
            None => TcpListener::bind(l.addr)
                .await
                .with_context(|| format!("binding listener {}://{}", l.name, l.addr))?,
        };
        if let Some(sasl) = &l.sasl {
            let names: Vec<&'static str> = sasl.mechanisms.iter().map(|m| m.name()).collect();
            crate::metrics::authentication_listener(&l.name, &names);
        }
        out.push(crate::server::listener::Bound {
            listener: socket,
            name: Arc::from(l.name.as_str()),
            tls,
            sasl: l.sasl.clone().map(Arc::new),
        });
    }
    Ok(out)
}

/// Starts the replica fetchers and the task that sends leaders' ISR changes to the controller.
fn start_replication(
    broker: &Arc<Broker>,
    controller: &Arc<crate::controller::Controller>,
    tasks: &Supervisor,
    shutdown: watch::Receiver<bool>,
) {
    let c = &broker.config.cluster;
    let (tx, rx) = tokio::sync::mpsc::channel(MAX_PARTITIONS);
    let _ = broker.replicas.isr_changes.set(tx);
    tasks.spawn(
        "isr-changes",
        crate::replication::leadership::run_isr_changes(rx, Arc::clone(controller)),
    );
    let config = crate::replication::fetcher::FetcherConfig {
        max_wait_ms: c.replica_fetch_wait_max_ms,
        min_bytes: c.replica_fetch_min_bytes,
        response_max_bytes: c.replica_fetch_response_max_bytes,
        partition_max_bytes: c.replica_fetch_max_bytes,
        backoff_ms: c.replica_fetch_backoff_ms,
        listener: c.inter_broker_listener_name.clone(),
    };
    broker.replicas.fetchers.start(
        tasks.clone(),
        Arc::clone(&broker.metadata),
        config,
        Arc::clone(&broker.replicas.follower_quota),
        Arc::clone(&broker.replicas.health),
        shutdown,
    );
}

/// Kafka's scheduler: the time-based flush check and retention (with time-based roll).
async fn run_schedules(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut flush = tokio::time::interval(Duration::from_millis(broker.config.log_flush_scheduler_interval_ms));
    // Kafka starts retention 30 s after startup, then runs it every check interval.
    let retention_every = Duration::from_millis(broker.config.log_retention_check_interval_ms);
    let mut retention = tokio::time::interval_at(
        tokio::time::Instant::now() + retention_every.min(Duration::from_secs(30)),
        retention_every,
    );
    let checkpoint_every = Duration::from_millis(
        broker
            .config
            .log_flush_offset_checkpoint_interval_ms
            .min(broker.config.log_flush_start_offset_checkpoint_interval_ms),
    );
    let mut checkpoints = tokio::time::interval_at(tokio::time::Instant::now() + checkpoint_every, checkpoint_every);
    // Kafka's isr-expiration task, every half of replica.lag.time.max.ms.
    let lag_ms = broker.config.cluster.replica_lag_time_max_ms;
    let mut isr_expiration = tokio::time::interval(Duration::from_millis((lag_ms / 2).max(1)));
    isr_expiration.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = flush.tick() => broker.replicas.flush_due(now_ms()),
            _ = isr_expiration.tick() => broker.replicas.shrink_isrs(i64::try_from(lag_ms).unwrap_or(i64::MAX)),
            _ = checkpoints.tick() => {
                let b = broker.clone();
                let written = tokio::task::spawn_blocking(move || b.replicas.write_checkpoints()).await;
                if let Ok(Err(e)) = written {
                    tracing::error!(error = %e, "writing the log dir checkpoints failed");
                }
            }
            _ = retention.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for p in b.replicas.all_partitions() {
                        match p.run_retention(now_ms()) {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments"),
                            Err(e) => tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed"),
                        }
                    }
                }).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}
