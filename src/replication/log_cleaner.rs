//! The broker's log cleaner threads (Kafka's `LogCleaner` + `LogCleanerManager`): each round
//! picks the dirtiest compacted partition hosted here (leader or follower: every replica
//! compacts its own log, as in Kafka) whose dirty ratio reached min.cleanable.dirty.ratio (or
//! with a record past max.compaction.lag.ms) and cleans it (`storage::cleaner`); with nothing
//! to clean a thread sleeps `log.cleaner.backoff.ms`. `log.cleaner.threads` threads share the
//! dedupe buffer and the I/O rate, and never clean the same partition at once. A round holds
//! the partition's log lock only for its snapshot and each install, so produce and fetch go on.
//!
//! The threads are OS threads of their own (as Kafka's), at a lower scheduling priority (nice
//! +10): on a busy machine the request path gets the CPU first and the cleaner what is left,
//! which is what "background" should mean. The async task that starts them is the supervised
//! one: a panic in a cleaner thread reaches the supervisor through it, and shutdown stops them
//! between two pieces of a round's I/O (the round's uninstalled output is deleted).

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{oneshot, watch};

use crate::clock::now_ms;
use crate::replication::partition::Partition;
use crate::replication::replica_manager::ReplicaManager;
use crate::storage::{CleanStats, CleanerConfig, OffsetMap, Throttle};

/// When a cleaning round last finished (ms), for the time-since-last-run metric; 0: never.
static LAST_RUN_MS: AtomicI64 = AtomicI64::new(0);

/// The nice value of the cleaner threads.
const CLEANER_NICE: i32 = 10;

/// Milliseconds since the last cleaning round ended, `None` before the first.
pub fn time_since_last_run_ms() -> Option<i64> {
    let last = LAST_RUN_MS.load(Ordering::Relaxed);
    (last > 0).then(|| now_ms().saturating_sub(last))
}

/// Partitions being cleaned now (by any cleaner thread).
type InProgress = Arc<Mutex<HashSet<(Arc<str>, i32)>>>;

/// What a cleaner thread's body returned: normally, or the panic.
type ThreadOutcome = std::thread::Result<()>;

/// Starts `config.threads` cleaner threads and runs until `shutdown` (then stops them) or until
/// one of them panics (the panic goes on from here, to the supervisor).
pub async fn run_log_cleaner(
    replicas: Arc<ReplicaManager>,
    config: CleanerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    if !config.enable {
        return;
    }
    let in_progress: InProgress = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads: FuturesUnordered<oneshot::Receiver<ThreadOutcome>> = FuturesUnordered::new();
    for i in 0..config.threads.max(1) {
        let (tx, rx) = oneshot::channel();
        let (replicas, config, in_progress, stop) = (
            Arc::clone(&replicas),
            config.clone(),
            Arc::clone(&in_progress),
            Arc::clone(&stop),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("log-cleaner-{i}"))
            .spawn(move || {
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    cleaner_thread(&replicas, &config, &in_progress, &stop)
                }));
                let _ = tx.send(outcome);
            });
        match spawned {
            Ok(_) => threads.push(rx),
            Err(e) => tracing::error!(error = %e, "could not start a log cleaner thread"),
        }
    }
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            done = threads.next() => match done {
                Some(Ok(Err(panic))) => std::panic::resume_unwind(panic),
                Some(_) => {}
                None => return,
            },
        }
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = threads.next().await {
        if let Ok(Err(panic)) = done {
            std::panic::resume_unwind(panic);
        }
    }
}

fn cleaner_thread(replicas: &ReplicaManager, config: &CleanerConfig, in_progress: &InProgress, stop: &Arc<AtomicBool>) {
    lower_priority();
    let threads = config.threads.max(1);
    let mut map = OffsetMap::new(config.dedupe_buffer_size / threads);
    let rate = config.io_max_bytes_per_second / threads as f64;
    while !stop.load(Ordering::Relaxed) {
        let mut cleaned = false;
        if let Some(p) = pick(replicas, in_progress) {
            let mut throttle = Throttle::new(rate).with_stop(Arc::clone(stop));
            let started = Instant::now();
            let result = p.clean(&mut map, &mut throttle, now_ms());
            in_progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(Arc::clone(&p.topic), p.index));
            if stop.load(Ordering::Relaxed) {
                break; // a round cut short by shutdown is no failure
            }
            cleaned = record(&p, result, started.elapsed());
        }
        if !cleaned {
            sleep_unless_stopped(Duration::from_millis(config.backoff_ms), stop);
        }
    }
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Lowers this thread's scheduling priority (Linux: nice is per thread).
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: setpriority only reads its integer arguments; who = 0 is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, CLEANER_NICE) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the log cleaner's priority");
    }
}

/// The dirtiest partition that needs cleaning and is not being cleaned, marked in progress.
fn pick(replicas: &ReplicaManager, in_progress: &InProgress) -> Option<Arc<Partition>> {
    let now = now_ms();
    let mut busy = in_progress.lock().unwrap_or_else(|e| e.into_inner());
    let best = replicas
        .all_partitions()
        .into_iter()
        .filter(|p| !busy.contains(&(Arc::clone(&p.topic), p.index)))
        .filter_map(|p| {
            let c = p.clean_candidate(now)?;
            c.needs_cleaning.then_some((c.dirty_ratio, p))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, p)| p)?;
    busy.insert((Arc::clone(&best.topic), best.index));
    Some(best)
}

/// Logs and counts a round; true if it installed something (look for more work at once).
fn record(p: &Partition, result: Result<Option<CleanStats>, crate::storage::StorageError>, took: Duration) -> bool {
    LAST_RUN_MS.store(now_ms(), Ordering::Relaxed);
    match result {
        Ok(Some(stats)) => {
            crate::metrics::log_cleaned(stats.bytes_read, stats.bytes_written);
            let secs = took.as_secs_f64().max(1e-6);
            tracing::info!(topic = %p.topic, partition = p.index, read = stats.bytes_read,
                written = stats.bytes_written, records = stats.records_read, kept = stats.records_kept,
                segments = stats.segments_installed, elapsed_ms = took.as_millis() as u64,
                mb_per_s = format!("{:.1}", stats.bytes_read as f64 / 1e6 / secs), "cleaned log");
            stats.segments_installed > 0
        }
        Ok(None) => false,
        Err(e) => {
            crate::metrics::log_cleaner_failed();
            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "cleaning the log failed; retried later");
            false
        }
    }
}
