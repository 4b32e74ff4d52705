//! Every metric the broker exports, declared once here: the names below are the only place a
//! metric name is spelled, and `grafana/sluice.json` and `grafana/alerts.yml` use exactly these
//! (a compat test checks every dashboard and alert expression against a live `/metrics`).
//!
//! Two kinds, by how they are produced:
//! - **Recorded** on the request path through the `metrics` facade and rendered by
//!   `metrics-exporter-prometheus`: request counts, errors, latencies, connections, fsync
//!   latency, group rebalances. Hot paths hold pre-registered handles ([`ApiMetrics`]): one
//!   atomic add per event, no name lookup, no allocation. With `metrics.listener` empty no
//!   recorder is installed and nothing is recorded.
//! - **Sampled at scrape time** from the broker's state ([`render_state`]): bytes and messages
//!   in/out per topic (summed from each partition's [`TopicMetrics`] atomics), per-partition log
//!   end offset, log start offset and size, consumer-group lag, groups by state, producer ids,
//!   partition counts, replication health. A deleted topic's series disappear with it, and
//!   their cost is one pass over the partitions per scrape.
//!
//! Kafka's request metrics split a request's time into queue time (read, waiting for the
//! connection's processor), local time (handling), remote time (waiting in purgatory: acks=-1
//! produce for the high watermark, fetch long-polls) and the total; so do these, per API.

use std::cell::Cell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::broker::Broker;

// ---- recorded ----------------------------------------------------------------------------
pub const CONNECTIONS_ACTIVE: &str = "sluice_connections_active";
pub const CONNECTIONS_TOTAL: &str = "sluice_connections_total";
pub const CONNECTIONS_REJECTED_TOTAL: &str = "sluice_connections_rejected_total";
pub const AUTHENTICATIONS_TOTAL: &str = "sluice_sasl_authentications_total";
pub const AUTHORIZATION_DENIED_TOTAL: &str = "sluice_authorization_denied_total";
pub const BACKGROUND_TASK_FAILURES_TOTAL: &str = "sluice_background_task_failures_total";
pub const REQUEST_MEMORY_USED_BYTES: &str = "sluice_request_memory_used_bytes";
pub const REQUESTS_TOTAL: &str = "sluice_requests_total";
pub const REQUEST_ERRORS_TOTAL: &str = "sluice_request_errors_total";
pub const REQUEST_SECONDS: &str = "sluice_request_seconds";
pub const REQUEST_QUEUE_SECONDS: &str = "sluice_request_queue_seconds";
pub const REQUEST_LOCAL_SECONDS: &str = "sluice_request_local_seconds";
pub const REQUEST_REMOTE_SECONDS: &str = "sluice_request_remote_seconds";
pub const MESSAGES_IN_TOTAL: &str = "sluice_topic_messages_in_total";
pub const BYTES_IN_TOTAL: &str = "sluice_topic_bytes_in_total";
pub const MESSAGES_OUT_TOTAL: &str = "sluice_topic_messages_out_total";
pub const BYTES_OUT_TOTAL: &str = "sluice_topic_bytes_out_total";
pub const FSYNC_SECONDS: &str = "sluice_log_flush_seconds";
pub const GROUP_REBALANCES_TOTAL: &str = "sluice_consumer_group_rebalances_total";
pub const ISR_SHRINKS_TOTAL: &str = "sluice_isr_shrinks_total";
pub const ISR_EXPANDS_TOTAL: &str = "sluice_isr_expands_total";
pub const LEADER_ELECTIONS_TOTAL: &str = "sluice_leader_elections_total";
pub const REPLICATION_BYTES_IN_TOTAL: &str = "sluice_replication_bytes_in_total";
pub const REPLICATION_BYTES_OUT_TOTAL: &str = "sluice_replication_bytes_out_total";
pub const REASSIGNMENT_BYTES_IN_TOTAL: &str = "sluice_reassignment_bytes_in_total";
pub const REASSIGNMENT_BYTES_OUT_TOTAL: &str = "sluice_reassignment_bytes_out_total";
pub const LOG_CLEANER_RUNS_TOTAL: &str = "sluice_log_cleaner_runs_total";
pub const LOG_CLEANER_FAILURES_TOTAL: &str = "sluice_log_cleaner_failures_total";
pub const LOG_CLEANER_BYTES_READ_TOTAL: &str = "sluice_log_cleaner_bytes_read_total";
pub const LOG_CLEANER_BYTES_WRITTEN_TOTAL: &str = "sluice_log_cleaner_bytes_written_total";

// ---- sampled at scrape time --------------------------------------------------------------
pub const UP: &str = "sluice_up";
pub const PARTITIONS: &str = "sluice_partitions";
pub const UNDER_REPLICATED_PARTITIONS: &str = "sluice_under_replicated_partitions";
pub const UNDER_MIN_ISR_PARTITIONS: &str = "sluice_under_min_isr_partitions";
pub const LEADER_PARTITIONS: &str = "sluice_leader_partitions";
pub const ACTIVE_CONTROLLER: &str = "sluice_active_controller";
pub const REASSIGNING_PARTITIONS: &str = "sluice_reassigning_partitions";
pub const REPLICA_LAG: &str = "sluice_replica_lag_messages";
pub const REPLICA_MAX_LAG: &str = "sluice_replica_max_lag_messages";
pub const OFFLINE_PARTITIONS: &str = "sluice_offline_partitions";
pub const OFFLINE_LOG_DIRS: &str = "sluice_offline_log_directories";
pub const LOG_END_OFFSET: &str = "sluice_partition_log_end_offset";
pub const LOG_START_OFFSET: &str = "sluice_partition_log_start_offset";
pub const HIGH_WATERMARK: &str = "sluice_partition_high_watermark";
pub const LAST_STABLE_OFFSET: &str = "sluice_partition_last_stable_offset";
pub const LOG_SIZE_BYTES: &str = "sluice_partition_size_bytes";
pub const PRODUCER_IDS: &str = "sluice_producer_ids";
pub const CONSUMER_GROUPS: &str = "sluice_consumer_groups";
pub const TRANSACTIONS: &str = "sluice_transactions";
pub const GROUP_COMMITTED_OFFSET: &str = "sluice_consumer_group_committed_offset";
pub const GROUP_LAG: &str = "sluice_consumer_group_lag";
pub const LOG_CORRUPTIONS_TOTAL: &str = "sluice_log_corruptions_found_total";
pub const LOG_CLEANER_DIRTY_RATIO: &str = "sluice_log_cleaner_dirty_ratio";
pub const LOG_CLEANER_SECONDS_SINCE_LAST_RUN: &str = "sluice_log_cleaner_seconds_since_last_run";

/// Histogram buckets in seconds: 50 us to 60 s, so both sub-millisecond produce latencies and
/// multi-second JoinGroup waits and long polls resolve.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];

/// The largest HTTP request head read from a scraper.
const MAX_HTTP_REQUEST_BYTES: usize = 8192;
/// The longest one scrape (read the request, render, write) may take before it is dropped.
const MAX_SCRAPE_SECONDS: u64 = 30;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder, once per process (later calls get the same handle).
/// `None` if another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new().set_buckets(BUCKETS) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "metrics buckets refused");
                    return None;
                }
            };
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    register_apis();
                    Some(handle)
                }
                Err(e) => {
                    tracing::error!(error = %e, "installing the metrics recorder failed");
                    None
                }
            }
        })
        .clone()
}

/// HELP texts for the recorded metrics.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(CONNECTIONS_ACTIVE, "Open client connections.");
    describe_counter!(CONNECTIONS_TOTAL, "Client connections accepted.");
    describe_counter!(
        CONNECTIONS_REJECTED_TOTAL,
        "Connections closed at accept, by reason (per_ip: over max.connections.per.ip; tls_handshake: a failed or timed-out TLS handshake)."
    );
    describe_counter!(
        AUTHENTICATIONS_TOTAL,
        "SASL authentications and re-authentications, by listener, mechanism and result (success, failure)."
    );
    describe_counter!(AUTHORIZATION_DENIED_TOTAL, "Actions the ACL authorizer denied, by API.");
    describe_counter!(
        BACKGROUND_TASK_FAILURES_TOTAL,
        "Supervised background tasks that panicked, by task (each one stops the broker)."
    );
    describe_gauge!(
        REQUEST_MEMORY_USED_BYTES,
        Unit::Bytes,
        "Request bytes reserved from the queued.max.request.bytes pool (frames being read or waiting to be handled)."
    );
    describe_counter!(REQUESTS_TOTAL, "Requests handled, by API.");
    describe_counter!(
        REQUEST_ERRORS_TOTAL,
        "Error codes in responses, by API and Kafka error name."
    );
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Total request time, read to response built, by API."
    );
    describe_histogram!(
        REQUEST_QUEUE_SECONDS,
        Unit::Seconds,
        "Time a request waited for its connection's processor."
    );
    describe_histogram!(
        REQUEST_LOCAL_SECONDS,
        Unit::Seconds,
        "Time spent handling a request, without remote waits."
    );
    describe_histogram!(
        REQUEST_REMOTE_SECONDS,
        Unit::Seconds,
        "Time a request waited in purgatory (acks=-1 produce, fetch long poll)."
    );
    describe_histogram!(FSYNC_SECONDS, Unit::Seconds, "Log flush (fsync) latency.");
    describe_counter!(GROUP_REBALANCES_TOTAL, "Consumer group rebalances started.");
    describe_counter!(
        ISR_SHRINKS_TOTAL,
        "In-sync replica set shrinks the leaders here asked for (AlterPartition), once committed; not the controller's when it fences a broker."
    );
    describe_counter!(
        ISR_EXPANDS_TOTAL,
        "In-sync replica set expansions the leaders here asked for (AlterPartition), once committed."
    );
    describe_counter!(
        LEADER_ELECTIONS_TOTAL,
        "Partition leaderships this broker took at a new leader epoch (elections it won)."
    );
    describe_counter!(
        REPLICATION_BYTES_IN_TOTAL,
        "Record bytes this broker's followers appended from their leaders (Kafka's ReplicationBytesInPerSec)."
    );
    describe_counter!(
        REPLICATION_BYTES_OUT_TOTAL,
        "Record bytes this broker's leaders sent to followers (Kafka's ReplicationBytesOutPerSec)."
    );
    describe_counter!(
        REASSIGNMENT_BYTES_IN_TOTAL,
        "Of the replication bytes in, those of partitions being reassigned (Kafka's ReassignmentBytesInPerSec)."
    );
    describe_counter!(
        REASSIGNMENT_BYTES_OUT_TOTAL,
        "Of the replication bytes out, those of partitions being reassigned (Kafka's ReassignmentBytesOutPerSec)."
    );
    describe_counter!(
        LOG_CLEANER_RUNS_TOTAL,
        "Log cleaner rounds completed (a partition cleaned)."
    );
    describe_counter!(
        LOG_CLEANER_FAILURES_TOTAL,
        "Log cleaner rounds that failed (retried after log.cleaner.backoff.ms)."
    );
    describe_counter!(
        LOG_CLEANER_BYTES_READ_TOTAL,
        Unit::Bytes,
        "Bytes of log the cleaner read (the segments it recopied)."
    );
    describe_counter!(
        LOG_CLEANER_BYTES_WRITTEN_TOTAL,
        Unit::Bytes,
        "Bytes of log the cleaner wrote (the cleaned segments)."
    );
    // Created at 0 so the series exist before the first event.
    for c in [
        REPLICATION_BYTES_IN_TOTAL,
        REPLICATION_BYTES_OUT_TOTAL,
        REASSIGNMENT_BYTES_IN_TOTAL,
        REASSIGNMENT_BYTES_OUT_TOTAL,
        LOG_CLEANER_RUNS_TOTAL,
        LOG_CLEANER_FAILURES_TOTAL,
        LOG_CLEANER_BYTES_READ_TOTAL,
        LOG_CLEANER_BYTES_WRITTEN_TOTAL,
    ] {
        metrics::counter!(c).absolute(0);
    }
    metrics::counter!(LEADER_ELECTIONS_TOTAL).absolute(0);
    metrics::counter!(ISR_SHRINKS_TOTAL).absolute(0);
    metrics::counter!(ISR_EXPANDS_TOTAL).absolute(0);
    metrics::counter!(GROUP_REBALANCES_TOTAL).absolute(0);
    metrics::counter!(CONNECTIONS_TOTAL).absolute(0);
    metrics::gauge!(CONNECTIONS_ACTIVE).set(0.0);
    metrics::gauge!(REQUEST_MEMORY_USED_BYTES).set(0.0);
    // Registered now so the series exists before the first fsync (none by default: Kafka's
    // flush policy leaves write-back to the OS).
    let _ = metrics::histogram!(FSYNC_SECONDS);
}

// ---- connections ---------------------------------------------------------------------------

pub fn connection_opened() {
    metrics::gauge!(CONNECTIONS_ACTIVE).increment(1.0);
    metrics::counter!(CONNECTIONS_TOTAL).increment(1);
}

/// The rejection counters exist at 0 from startup (dashboards and alerts see them at once).
pub fn connection_rejections_at_zero() {
    for reason in ["per_ip", "tls_handshake"] {
        metrics::counter!(CONNECTIONS_REJECTED_TOTAL, "reason" => reason).increment(0);
    }
}

pub fn connection_rejected(reason: &'static str) {
    metrics::counter!(CONNECTIONS_REJECTED_TOTAL, "reason" => reason).increment(1);
}

/// A SASL listener's counters exist at 0 from startup (so dashboards and alerts see them
/// before the first authentication).
pub fn authentication_listener(listener: &str, mechanisms: &[&'static str]) {
    for mechanism in mechanisms {
        for result in ["success", "failure"] {
            metrics::counter!(
                AUTHENTICATIONS_TOTAL,
                "listener" => listener.to_string(),
                "mechanism" => *mechanism,
                "result" => result
            )
            .increment(0);
        }
    }
}

/// A SASL exchange ended (`reauth`: a KIP-368 re-authentication).
pub fn authentication(listener: &str, mechanism: &'static str, success: bool, reauth: bool) {
    let result = match (success, reauth) {
        (true, false) => "success",
        (false, false) => "failure",
        (true, true) => "reauth_success",
        (false, true) => "reauth_failure",
    };
    metrics::counter!(
        AUTHENTICATIONS_TOTAL,
        "listener" => listener.to_string(),
        "mechanism" => mechanism,
        "result" => result
    )
    .increment(1);
}

/// The authorizer denied an action of a request of `api`.
pub fn authorization_denied(api: &'static str) {
    metrics::counter!(AUTHORIZATION_DENIED_TOTAL, "api" => api).increment(1);
}

pub fn background_task_failed(task: &'static str) {
    metrics::counter!(BACKGROUND_TASK_FAILURES_TOTAL, "task" => task).increment(1);
}

pub fn request_memory_reserved(bytes: usize) {
    metrics::gauge!(REQUEST_MEMORY_USED_BYTES).increment(bytes as f64);
}

pub fn request_memory_released(bytes: usize) {
    metrics::gauge!(REQUEST_MEMORY_USED_BYTES).decrement(bytes as f64);
}

pub fn connection_closed() {
    metrics::gauge!(CONNECTIONS_ACTIVE).decrement(1.0);
}

// ---- requests ----------------------------------------------------------------------------

/// One API's request metrics, registered once.
pub struct ApiMetrics {
    name: &'static str,
    requests: Counter,
    total: Histogram,
    queue: Histogram,
    local: Histogram,
    remote: Histogram,
}

impl ApiMetrics {
    fn new(name: &'static str) -> Self {
        ApiMetrics {
            name,
            requests: metrics::counter!(REQUESTS_TOTAL, "api" => name),
            total: metrics::histogram!(REQUEST_SECONDS, "api" => name),
            queue: metrics::histogram!(REQUEST_QUEUE_SECONDS, "api" => name),
            local: metrics::histogram!(REQUEST_LOCAL_SECONDS, "api" => name),
            remote: metrics::histogram!(REQUEST_REMOTE_SECONDS, "api" => name),
        }
    }

    /// Records one request: `queue` before processing began, `handled` from then to the response
    /// being built, of which `remote` was spent waiting in purgatory.
    pub fn record(&self, queue: Duration, handled: Duration, remote: Duration) {
        self.requests.increment(1);
        self.queue.record(queue.as_secs_f64());
        self.local.record(handled.saturating_sub(remote).as_secs_f64());
        self.remote.record(remote.as_secs_f64());
        self.total.record((queue + handled).as_secs_f64());
    }

    /// Counts an error code found in a response (Kafka's per-error request metric).
    pub fn error(&self, code: i16) {
        metrics::counter!(REQUEST_ERRORS_TOTAL, "api" => self.name, "error" => error_name(code)).increment(1);
    }
}

static APIS: OnceLock<Vec<Option<ApiMetrics>>> = OnceLock::new();

/// Registers every served API's request metrics (after the recorder is installed).
fn register_apis() {
    APIS.get_or_init(|| {
        let mut all: Vec<Option<ApiMetrics>> = Vec::new();
        for (key, _, _) in crate::api::versions::advertised() {
            let Ok(index) = usize::try_from(key as i16) else {
                continue;
            };
            if all.len() <= index {
                all.resize_with(index + 1, || None);
            }
            if let Some(slot) = all.get_mut(index) {
                *slot = Some(ApiMetrics::new(crate::api::versions::name(key)));
            }
        }
        all
    });
}

/// The request metrics of API `key`; `None` when metrics are off (nothing is recorded then).
pub fn api(key: i16) -> Option<&'static ApiMetrics> {
    APIS.get()?.get(usize::try_from(key).ok()?)?.as_ref()
}

/// Kafka's name for an error code (`UNKNOWN_TOPIC_OR_PARTITION`), or the number if unknown.
fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) if !format!("{e:?}").starts_with("Unknown(") => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
        _ => code.to_string(),
    }
}

tokio::task_local! {
    /// Purgatory time of the request being handled on this task.
    static REMOTE_WAIT: Cell<Duration>;
}

/// Runs `f` (one request's handling) and returns its output with the time it spent in
/// [`remote_wait`]s.
pub async fn with_remote_timer<F: std::future::Future>(f: F) -> (F::Output, Duration) {
    REMOTE_WAIT
        .scope(Cell::new(Duration::ZERO), async move {
            let out = f.await;
            let remote = REMOTE_WAIT.try_with(Cell::get).unwrap_or_default();
            (out, remote)
        })
        .await
}

/// Adds `waited` to the current request's remote time (no-op outside a request).
pub fn remote_wait(waited: Duration) {
    let _ = REMOTE_WAIT.try_with(|c| c.set(c.get() + waited));
}

// ---- topics, logs, groups ------------------------------------------------------------------

/// A partition's byte and message counters (plain atomics: one add per event, metrics on or
/// off). Rendered per topic at scrape time, so a deleted topic's series go with it, as Kafka's do.
#[derive(Debug, Default)]
pub struct TopicMetrics {
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
}

impl TopicMetrics {
    pub fn appended(&self, messages: u64, bytes: u64) {
        self.messages_in.fetch_add(messages, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sent(&self, messages: u64, bytes: u64) {
        self.messages_out.fetch_add(messages, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; 4] {
        [
            self.messages_in.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
            self.messages_out.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        ]
    }
}

pub fn record_fsync(elapsed: Duration) {
    metrics::histogram!(FSYNC_SECONDS).record(elapsed.as_secs_f64());
}

pub fn group_rebalance() {
    metrics::counter!(GROUP_REBALANCES_TOTAL).increment(1);
}

/// An ISR change of a partition led here was committed.
pub fn isr_changed(expands: bool) {
    metrics::counter!(if expands { ISR_EXPANDS_TOTAL } else { ISR_SHRINKS_TOTAL }).increment(1);
}

/// Record bytes replicated: appended by a follower here (`inbound`) or sent by a leader here to
/// a follower; `reassigning`: the partition is being reassigned.
pub fn replicated(bytes: usize, inbound: bool, reassigning: bool) {
    if bytes == 0 {
        return;
    }
    let bytes = bytes as u64;
    let (all, moving) = if inbound {
        (REPLICATION_BYTES_IN_TOTAL, REASSIGNMENT_BYTES_IN_TOTAL)
    } else {
        (REPLICATION_BYTES_OUT_TOTAL, REASSIGNMENT_BYTES_OUT_TOTAL)
    };
    metrics::counter!(all).increment(bytes);
    if reassigning {
        metrics::counter!(moving).increment(bytes);
    }
}

/// A log cleaner round ended: bytes of log it read and wrote.
pub fn log_cleaned(read: u64, written: u64) {
    metrics::counter!(LOG_CLEANER_RUNS_TOTAL).increment(1);
    metrics::counter!(LOG_CLEANER_BYTES_READ_TOTAL).increment(read);
    metrics::counter!(LOG_CLEANER_BYTES_WRITTEN_TOTAL).increment(written);
}

/// A log cleaner round failed (retried later).
pub fn log_cleaner_failed() {
    metrics::counter!(LOG_CLEANER_FAILURES_TOTAL).increment(1);
}

/// This broker became a partition's leader at a new epoch.
pub fn leadership_taken() {
    metrics::counter!(LEADER_ELECTIONS_TOTAL).increment(1);
}

/// The replication health of this broker, as Kafka's broker and controller metrics give it:
/// of the partitions led here, how many lack ISR members or are under min.insync.replicas,
/// each follower's lag; and, on the active controller only (as Kafka), the cluster's
/// leaderless and reassigning partitions.
fn render_replication(broker: &Broker, partitions: &[Arc<crate::replication::partition::Partition>], out: &mut String) {
    let (mut led, mut under, mut under_min, mut max_lag) = (0usize, 0usize, 0usize, 0i64);
    let mut lags = String::new();
    for p in partitions {
        let Some(st) = p.replication_status() else { continue };
        led += 1;
        under += usize::from(st.isr < st.replicas);
        under_min += usize::from(st.isr < st.min_isr);
        for (replica, lag) in st.lags {
            max_lag = max_lag.max(lag);
            let _ = writeln!(
                lags,
                "{REPLICA_LAG}{{topic=\"{}\",partition=\"{}\",replica=\"{replica}\"}} {lag}",
                escape(&p.topic),
                p.index
            );
        }
    }
    let image = broker.metadata.image();
    let controller = broker.metadata.controller();
    let active = controller.leader() == Some(controller.node_id());
    let (mut leaderless, mut reassigning) = (0usize, 0usize);
    if active {
        for t in image.topics() {
            for p in &t.partitions {
                leaderless += usize::from(p.leader == crate::controller::record::NO_LEADER);
                reassigning += usize::from(p.is_reassigning());
            }
        }
    }
    let offline_dir = if broker.replicas.health.is_offline() { led } else { 0 };
    let gauges = [
        (LEADER_PARTITIONS, "Partitions led by this broker (Kafka's LeaderCount).", led),
        (
            UNDER_REPLICATED_PARTITIONS,
            "Partitions led here with fewer in-sync replicas than replicas.",
            under,
        ),
        (
            UNDER_MIN_ISR_PARTITIONS,
            "Partitions led here with fewer in-sync replicas than min.insync.replicas: acks=all produce fails.",
            under_min,
        ),
        (
            OFFLINE_PARTITIONS,
            "Partitions without a leader (counted by the active controller, as Kafka), plus those led here while the log dir is offline.",
            leaderless + offline_dir,
        ),
        (
            ACTIVE_CONTROLLER,
            "1 on the node leading the controller quorum (Kafka's ActiveControllerCount).",
            usize::from(active),
        ),
        (
            REASSIGNING_PARTITIONS,
            "Partitions with a reassignment in progress (counted by the active controller).",
            reassigning,
        ),
    ];
    for (name, help, value) in gauges {
        gauge_header(out, name, help);
        let _ = writeln!(out, "{name} {value}");
    }
    gauge_header(
        out,
        REPLICA_MAX_LAG,
        "The largest lag of any follower of a partition led here, in offsets (0: none lags).",
    );
    let _ = writeln!(out, "{REPLICA_MAX_LAG} {max_lag}");
    gauge_header(
        out,
        REPLICA_LAG,
        "Each follower's lag behind the leader's log end, in offsets, for partitions led here.",
    );
    out.push_str(&lags);
}

/// Writes the scrape-time metrics (module note) in Prometheus text format.
pub async fn render_state(broker: &Broker, out: &mut String) {
    let partitions = broker.replicas.all_partitions();
    let _ = writeln!(out, "# HELP {UP} 1 while the broker serves.\n# TYPE {UP} gauge\n{UP} 1");
    gauge_header(
        out,
        PARTITIONS,
        "Replicas hosted by this broker, led or followed (Kafka's PartitionCount).",
    );
    let _ = writeln!(out, "{PARTITIONS} {}", partitions.len());
    render_replication(broker, &partitions, out);
    let offline_dir = broker.replicas.health.is_offline();
    gauge_header(
        out,
        OFFLINE_LOG_DIRS,
        "Log dirs offline after a failed write (a full disk); online again after a successful append.",
    );
    let _ = writeln!(out, "{OFFLINE_LOG_DIRS} {}", u8::from(offline_dir));
    let _ = writeln!(
        out,
        "# HELP {LOG_CORRUPTIONS_TOTAL} Corrupt byte ranges log recovery found between valid batches (kept and skipped; reads of them get CORRUPT_MESSAGE).\n# TYPE {LOG_CORRUPTIONS_TOTAL} counter\n{LOG_CORRUPTIONS_TOTAL} {}",
        crate::storage::damage::corruptions_found()
    );

    // One pass: each partition's lock is taken once.
    let mut leo = String::new();
    let mut start = String::new();
    let mut hw = String::new();
    let mut stable = String::new();
    let mut size = String::new();
    let mut dirty = String::new();
    let now = crate::clock::now_ms();
    let mut producers = 0usize;
    let mut ends = std::collections::HashMap::with_capacity(partitions.len());
    let mut per_topic: std::collections::BTreeMap<Arc<str>, [u64; 4]> = std::collections::BTreeMap::new();
    for p in &partitions {
        let sums = per_topic.entry(Arc::clone(&p.topic)).or_default();
        for (sum, v) in sums.iter_mut().zip(p.metrics.snapshot()) {
            *sum += v;
        }
        let stats = p.stats();
        let labels = format!("topic=\"{}\",partition=\"{}\"", escape(&p.topic), p.index);
        let _ = writeln!(leo, "{LOG_END_OFFSET}{{{labels}}} {}", stats.log_end_offset);
        let _ = writeln!(start, "{LOG_START_OFFSET}{{{labels}}} {}", stats.log_start_offset);
        let _ = writeln!(hw, "{HIGH_WATERMARK}{{{labels}}} {}", stats.high_watermark);
        let _ = writeln!(stable, "{LAST_STABLE_OFFSET}{{{labels}}} {}", stats.last_stable_offset);
        let _ = writeln!(size, "{LOG_SIZE_BYTES}{{{labels}}} {}", stats.size_bytes);
        if let Some(c) = p.clean_candidate(now) {
            let _ = writeln!(dirty, "{LOG_CLEANER_DIRTY_RATIO}{{{labels}}} {}", c.dirty_ratio);
        }
        producers += stats.producer_ids;
        ends.insert((Arc::clone(&p.topic), p.index), stats.log_end_offset);
    }
    let counters = [
        (MESSAGES_IN_TOTAL, "Records appended, by topic."),
        (BYTES_IN_TOTAL, "Record batch bytes appended, by topic."),
        (MESSAGES_OUT_TOTAL, "Records sent to consumers, by topic."),
        (BYTES_OUT_TOTAL, "Record batch bytes sent to consumers, by topic."),
    ];
    for (i, (name, help)) in counters.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (topic, sums) in &per_topic {
            let value = sums.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {value}", escape(topic));
        }
    }
    let per_partition = [
        (
            LOG_END_OFFSET,
            "Offset of the next record appended to the partition.",
            &leo,
        ),
        (LOG_START_OFFSET, "First offset still in the partition's log.", &start),
        (HIGH_WATERMARK, "Offset up to which consumers may read.", &hw),
        (
            LAST_STABLE_OFFSET,
            "Offset up to which read_committed consumers may read (held by open transactions).",
            &stable,
        ),
        (LOG_SIZE_BYTES, "Bytes of the partition's log segments.", &size),
        (
            LOG_CLEANER_DIRTY_RATIO,
            "Compacted partitions: dirty bytes / cleanable bytes (cleaned from min.cleanable.dirty.ratio).",
            &dirty,
        ),
    ];
    for (name, help, body) in per_partition {
        gauge_header(out, name, help);
        out.push_str(body);
    }
    if let Some(ms) = crate::replication::log_cleaner::time_since_last_run_ms() {
        gauge_header(
            out,
            LOG_CLEANER_SECONDS_SINCE_LAST_RUN,
            "Seconds since the log cleaner last finished a round (absent before the first).",
        );
        let _ = writeln!(out, "{LOG_CLEANER_SECONDS_SINCE_LAST_RUN} {}", ms as f64 / 1000.0);
    }
    gauge_header(
        out,
        PRODUCER_IDS,
        "Producer ids with state in some partition (summed over partitions).",
    );
    let _ = writeln!(out, "{PRODUCER_IDS} {producers}");

    // Transactional ids by state; every state listed, zeros included. Skipped if the
    // coordinator is gone (shutdown).
    if let Ok(all) = broker.transactions.list().await {
        gauge_header(
            out,
            TRANSACTIONS,
            "Transactional ids this broker coordinates, by transaction state.",
        );
        for state in crate::transaction::TxnState::LISTED {
            let count = all.iter().filter(|t| t.state == state).count();
            let _ = writeln!(out, "{TRANSACTIONS}{{state=\"{}\"}} {count}", state.as_str());
        }
    }

    let stats = broker.groups.stats().await;
    gauge_header(out, CONSUMER_GROUPS, "Consumer groups, by state.");
    for (state, count) in &stats.groups_by_state {
        let _ = writeln!(out, "{CONSUMER_GROUPS}{{state=\"{state}\"}} {count}");
    }
    gauge_header(
        out,
        GROUP_COMMITTED_OFFSET,
        "A group's committed offset of a partition.",
    );
    for c in &stats.committed {
        let _ = writeln!(
            out,
            "{GROUP_COMMITTED_OFFSET}{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
            escape(&c.group),
            escape(&c.topic),
            c.partition,
            c.offset
        );
    }
    gauge_header(
        out,
        GROUP_LAG,
        "Log end offset minus the group's committed offset, per partition of existing topics.",
    );
    for c in &stats.committed {
        let Some(end) = ends.get(&(Arc::from(c.topic.as_str()), c.partition)) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{GROUP_LAG}{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
            escape(&c.group),
            escape(&c.topic),
            c.partition,
            (end - c.offset).max(0)
        );
    }
}

fn gauge_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// Escapes a label value (group ids may hold any character).
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(['\\', '"', '\n']) {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        value.into()
    }
}

/// The whole `/metrics` page.
pub async fn render(broker: &Broker, handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    let mut out = handle.render();
    render_state(broker, &mut out).await;
    out
}

/// Serves `GET /metrics` on `listener` until `stop` flips. A minimal HTTP/1.1 responder: one
/// request per connection, request head capped at 8 KiB, each scrape bounded in time.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    handle: PrometheusHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (mut socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let broker = Arc::clone(&broker);
        let handle = handle.clone();
        tokio::spawn(async move {
            let served = tokio::time::timeout(
                Duration::from_secs(MAX_SCRAPE_SECONDS),
                answer(&mut socket, peer, &broker, &handle),
            )
            .await;
            if !matches!(served, Ok(Ok(()))) {
                tracing::debug!(%peer, "metrics request failed or timed out");
            }
        });
    }
}

async fn answer(
    socket: &mut tokio::net::TcpStream,
    peer: SocketAddr,
    broker: &Broker,
    handle: &PrometheusHandle,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if head.len() > MAX_HTTP_REQUEST_BYTES {
            return respond(
                socket,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"too large\n",
            )
            .await;
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = path.split(|b| *b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => {
            let body = render(broker, handle).await;
            tracing::trace!(%peer, bytes = body.len(), "metrics scraped");
            respond(
                socket,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
            )
            .await
        }
        (b"GET", _) => respond(socket, "404 Not Found", "text/plain", b"see /metrics\n").await,
        _ => respond(socket, "405 Method Not Allowed", "text/plain", b"GET only\n").await,
    }
}

async fn respond(
    socket: &mut tokio::net::TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body).await?;
    socket.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(79), "MEMBER_ID_REQUIRED");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(31_000), "31000");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
