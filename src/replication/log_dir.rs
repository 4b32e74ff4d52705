//! The health of the log directory (Kafka's `LogDirFailureChannel`, for one dir and without
//! halting): a write or fsync that fails with an I/O error takes the dir offline, the next
//! write that succeeds brings it back. Both changes are logged once, not per request.
//!
//! Offline, the broker goes on serving what is on disk (fetches, offsets, metadata) and answers
//! appends with KAFKA_STORAGE_ERROR (each attempt still tries the disk, so space freed by an
//! operator or by retention is used at once). The state is reported in the metrics
//! (`sluice_offline_log_directories`, `sluice_offline_partitions`) and in Metadata, whose
//! partitions then list this broker among their `offline_replicas`, as Kafka's do.
//!
//! Kafka itself halts a broker whose last log dir fails; a full disk is the common cause, and
//! one that frees again, so here the broker keeps its reads and recovers instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::watch;

use crate::error::BrokerError;
use crate::storage::StorageError;

/// Linux's ENOSPC and EDQUOT: the disk (or the quota) is full.
const NO_SPACE: [i32; 2] = [28, 122];

/// Whether `e` says the disk (or the quota) is full.
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some_and(|code| NO_SPACE.contains(&code))
}

/// The I/O error under a broker error from the log dir, if that is what it is.
pub fn io_error(e: &BrokerError) -> Option<&std::io::Error> {
    match e {
        BrokerError::Storage(StorageError::Io(e)) | BrokerError::MetadataIo(e) => Some(e),
        _ => None,
    }
}

#[derive(Debug)]
pub struct LogDirHealth {
    dir: PathBuf,
    offline: AtomicBool,
    /// When it went offline (guarded transitions: one log line each).
    since: Mutex<Option<Instant>>,
    /// When it last came back online.
    back_at: Mutex<Option<Instant>>,
    /// Each transition (true: offline), for the heartbeat that tells the controller.
    changes: watch::Sender<bool>,
}

impl LogDirHealth {
    pub fn new(dir: &Path) -> Self {
        LogDirHealth {
            dir: dir.to_path_buf(),
            offline: AtomicBool::new(false),
            since: Mutex::new(None),
            back_at: Mutex::new(None),
            changes: watch::channel(false).0,
        }
    }

    /// Offline now, or back online for less than `settle`: a nearly full disk takes some
    /// writes and refuses others, and what the controller is told should not flap with each.
    pub fn unsettled(&self, settle: std::time::Duration) -> bool {
        self.is_offline()
            || self
                .back_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|at| at.elapsed() < settle)
    }

    /// Wakes on every transition; the value is whether the dir is offline.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Relaxed)
    }

    /// Takes the outcome of a write to the dir (`what`: "append", "flush", ...). Errors that are
    /// not the disk's (a bad batch, a sequence error) say nothing about the dir.
    pub fn observe<T>(&self, what: &str, result: &Result<T, BrokerError>) {
        match result {
            Ok(_) => self.succeeded(),
            Err(BrokerError::Storage(StorageError::Io(e)) | BrokerError::MetadataIo(e)) => self.failed(what, e),
            Err(_) => {}
        }
    }

    pub fn failed(&self, what: &str, e: &std::io::Error) {
        if self.offline.load(Ordering::Relaxed) {
            return;
        }
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        if since.is_some() {
            return;
        }
        *since = Some(Instant::now());
        self.offline.store(true, Ordering::Relaxed);
        self.changes.send_replace(true);
        if is_no_space(e) {
            tracing::error!(dir = %self.dir.display(), during = what, error = %e,
                "log dir is full: it is offline, appends get KAFKA_STORAGE_ERROR until space frees; reads go on");
        } else {
            tracing::error!(dir = %self.dir.display(), during = what, error = %e,
                "log dir failed a write: it is offline, appends get KAFKA_STORAGE_ERROR; reads go on");
        }
    }

    pub fn succeeded(&self) {
        if !self.offline.load(Ordering::Relaxed) {
            return;
        }
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        let Some(at) = since.take() else { return };
        self.offline.store(false, Ordering::Relaxed);
        *self.back_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.changes.send_replace(false);
        tracing::warn!(dir = %self.dir.display(), offline_s = at.elapsed().as_secs(), "log dir writes succeed again: it is online");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_disk_errors_change_the_state_and_each_change_is_one_transition() {
        let h = LogDirHealth::new(Path::new("/tmp/x"));
        h.observe(
            "append",
            &Err::<(), _>(BrokerError::Storage(StorageError::InvalidRecord("bad".into()))),
        );
        assert!(!h.is_offline(), "a client's bad batch is not the disk's fault");
        let full = || {
            Err::<(), _>(BrokerError::Storage(StorageError::Io(
                std::io::Error::from_raw_os_error(28),
            )))
        };
        h.observe("append", &full());
        assert!(h.is_offline());
        h.observe("append", &full());
        assert!(h.is_offline());
        h.observe("append", &Ok(()));
        assert!(!h.is_offline());
        assert!(h.unsettled(std::time::Duration::from_secs(60)), "just back");
        assert!(!h.unsettled(std::time::Duration::ZERO));
        assert!(h.since.lock().map(|s| s.is_none()).unwrap_or(false));
    }
}
