//! The broker's log cleaner threads (Kafka's `LogCleaner` + `LogCleanerManager`): each round
//! picks the dirtiest compacted partition hosted here (leader or follower: every replica
//! compacts its own log, as in Kafka) whose dirty ratio reached min.cleanable.dirty.ratio (or
//! with a record past max.compaction.lag.ms), and cleans it on a blocking thread
//! (`storage::cleaner`); with nothing to clean it sleeps `log.cleaner.backoff.ms`.
//! `log.cleaner.threads` loops share the dedupe buffer and the I/O rate, and never clean the
//! same partition at once. A round holds the partition's log lock only for its snapshot and
//! each install, so produce and fetch go on.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::now_ms;
use crate::replication::partition::Partition;
use crate::replication::replica_manager::ReplicaManager;
use crate::storage::{CleanStats, CleanerConfig, OffsetMap, Throttle};

/// When a cleaning round last finished (ms), for the time-since-last-run metric; 0: never.
static LAST_RUN_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the last cleaning round ended, `None` before the first.
pub fn time_since_last_run_ms() -> Option<i64> {
    let last = LAST_RUN_MS.load(Ordering::Relaxed);
    (last > 0).then(|| now_ms().saturating_sub(last))
}

/// Partitions being cleaned now (by any cleaner thread).
type InProgress = Arc<Mutex<HashSet<(Arc<str>, i32)>>>;

/// Runs `config.threads` cleaner loops until `shutdown`.
pub async fn run_log_cleaner(replicas: Arc<ReplicaManager>, config: CleanerConfig, shutdown: watch::Receiver<bool>) {
    if !config.enable {
        return;
    }
    let threads = config.threads.max(1);
    let in_progress: InProgress = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::with_capacity(threads);
    for _ in 0..threads {
        loops.push(tokio::spawn(cleaner_loop(
            Arc::clone(&replicas),
            config.clone(),
            Arc::clone(&in_progress),
            Arc::clone(&stop),
            shutdown.clone(),
        )));
    }
    let mut shutdown = shutdown;
    let stopping = async {
        let _ = shutdown.wait_for(|s| *s).await;
        stop.store(true, Ordering::Relaxed);
    };
    let (_, results) = tokio::join!(stopping, futures::future::join_all(loops));
    for result in results {
        if let Err(e) = result {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

async fn cleaner_loop(
    replicas: Arc<ReplicaManager>,
    config: CleanerConfig,
    in_progress: InProgress,
    stop: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let threads = config.threads.max(1);
    let mut map = Some(OffsetMap::new(config.dedupe_buffer_size / threads));
    let rate = config.io_max_bytes_per_second / threads as f64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let picked = pick(&replicas, &in_progress);
        let cleaned = match (picked, map.take()) {
            (Some(p), Some(mut m)) => {
                let stop = Arc::clone(&stop);
                let key = (Arc::clone(&p.topic), p.index);
                let round = tokio::task::spawn_blocking(move || {
                    let mut throttle = Throttle::new(rate).with_stop(stop);
                    let result = p.clean(&mut m, &mut throttle, now_ms());
                    (result, m, p)
                });
                // A blocking round cannot be aborted: shutdown sets `stop` (see
                // `run_log_cleaner`), which the round checks between pieces of I/O.
                let joined = round.await;
                in_progress.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                match joined {
                    Ok((result, m, p)) => {
                        map = Some(m);
                        record(&p, result)
                    }
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => return,
                }
            }
            (_, m) => {
                map = m.or_else(|| Some(OffsetMap::new(config.dedupe_buffer_size / threads)));
                false
            }
        };
        if !cleaned {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(config.backoff_ms)) => {}
                changed = shutdown.changed() => if changed.is_err() { return },
            }
        }
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

/// Logs and counts a round; true if it cleaned something (look for more work at once).
fn record(p: &Partition, result: Result<Option<CleanStats>, crate::storage::StorageError>) -> bool {
    LAST_RUN_MS.store(now_ms(), Ordering::Relaxed);
    match result {
        Ok(Some(stats)) => {
            crate::metrics::log_cleaned(stats.bytes_read, stats.bytes_written);
            tracing::info!(topic = %p.topic, partition = p.index, read = stats.bytes_read,
                written = stats.bytes_written, records = stats.records_read, kept = stats.records_kept,
                segments = stats.segments_installed, "cleaned log");
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
