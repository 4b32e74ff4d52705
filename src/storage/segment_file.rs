//! The `.log` file of a segment, with a bounded number of descriptors held for sealed segments.
//!
//! The active segment of every partition keeps its file open (appends and reads of new data).
//! A sealed segment opens its file when a read needs it and keeps it while it is read; a sweep
//! (the log dir's periodic flush check) closes the ones not read since the previous sweep. At
//! most [`SealedFiles::limit`] sealed files stay open across the broker; past that, a read opens
//! the file for itself and closes it after (a syscall more, never a failure). So the descriptors
//! a broker holds are about one per partition plus that limit, whatever the number of segments,
//! where Kafka holds one per segment.
//!
//! A read holds an `Arc<File>`: a segment deleted (retention) or released meanwhile stays readable
//! through it (unlink semantics), and the descriptor goes when the last reader drops it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Sealed segment files held open across the broker, and the most that may be.
#[derive(Debug)]
pub struct SealedFiles {
    open: AtomicUsize,
    limit: usize,
}

impl SealedFiles {
    /// The process-wide budget: a quarter of the descriptor limit (the soft `RLIMIT_NOFILE`,
    /// raised to the hard limit at startup), at least 64 and at most 16,384.
    pub fn global() -> &'static SealedFiles {
        static GLOBAL: OnceLock<SealedFiles> = OnceLock::new();
        GLOBAL.get_or_init(|| SealedFiles {
            open: AtomicUsize::new(0),
            limit: (descriptor_limit() / 4).clamp(64, 16_384),
        })
    }

    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn try_reserve(&self) -> bool {
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
    }
}

/// The soft `RLIMIT_NOFILE` (1024 if it cannot be read).
pub fn descriptor_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// Raises the soft descriptor limit to the hard one (as the JVM does for Kafka); returns the
/// limit in force after.
pub fn raise_descriptor_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
        }
    }
    descriptor_limit()
}

#[derive(Debug)]
struct Cached {
    file: Arc<File>,
    /// Counted in [`SealedFiles`] (a sealed segment's file opened by a read).
    counted: bool,
}

/// A segment's `.log` file: always open while the segment is active, opened on demand once sealed.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    path: PathBuf,
    cached: Mutex<Option<Cached>>,
    sealed: bool,
    /// Read since the last sweep.
    used: AtomicBool,
}

impl SegmentFile {
    /// An open file (the active segment, or a segment being loaded).
    pub(crate) fn new(path: PathBuf, file: File) -> Self {
        SegmentFile {
            path,
            cached: Mutex::new(Some(Cached {
                file: Arc::new(file),
                counted: false,
            })),
            sealed: false,
            used: AtomicBool::new(true),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed (a cleaned segment installed); an open handle stays valid.
    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file, opened if it is not (a sealed segment).
    pub(crate) fn get(&self) -> io::Result<Arc<File>> {
        self.used.store(true, Ordering::Relaxed);
        let mut cached = self.lock();
        if let Some(c) = cached.as_ref() {
            return Ok(Arc::clone(&c.file));
        }
        let file = Arc::new(OpenOptions::new().read(true).append(true).open(&self.path)?);
        if SealedFiles::global().try_reserve() {
            *cached = Some(Cached {
                file: Arc::clone(&file),
                counted: true,
            });
        }
        Ok(file)
    }

    /// The segment is no longer active: its file may be closed when idle.
    pub(crate) fn seal(&mut self) {
        self.sealed = true;
    }

    /// Closes a sealed segment's file if it was not read since the last sweep (readers keep
    /// theirs). Returns whether it closed one.
    pub(crate) fn sweep(&self) -> bool {
        if !self.sealed || self.used.swap(false, Ordering::Relaxed) {
            return false;
        }
        self.close()
    }

    /// Closes the file now if the segment is sealed (readers keep theirs).
    pub(crate) fn release(&self) {
        if self.sealed {
            self.close();
        }
    }

    fn close(&self) -> bool {
        let Some(c) = self.lock().take() else { return false };
        if c.counted {
            SealedFiles::global().release();
        }
        true
    }

    /// Whether a descriptor is held (tests).
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.lock().is_some()
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_file_closes_when_idle_and_reopens_on_read() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("0.log");
        std::fs::write(&path, b"abc")?;
        let mut f = SegmentFile::new(path.clone(), File::open(&path)?);
        assert!(!f.sweep(), "active: never closed");
        f.seal();
        assert!(!f.sweep(), "read since the last sweep (at creation)");
        assert!(f.sweep(), "idle for a whole sweep");
        assert!(!f.is_open());
        let held = f.get()?;
        assert!(f.is_open(), "within the budget: kept for the next read");
        assert!(!f.sweep());
        assert!(f.sweep());
        assert!(!f.is_open());
        let mut buf = [0u8; 3];
        std::os::unix::fs::FileExt::read_exact_at(&*held, &mut buf, 0)?;
        assert_eq!(&buf, b"abc", "a reader keeps its handle after the sweep");
        Ok(())
    }
}
