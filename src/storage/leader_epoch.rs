//! The leader epoch cache of a partition (Kafka's `LeaderEpochFileCache`): epoch -> the first
//! offset written in it, persisted in `leader-epoch-checkpoint`. OffsetsForLeaderEpoch answers
//! from it, and followers (later) use it to find where their log diverges.

use std::path::{Path, PathBuf};

use crate::storage::checkpoint::{self, LEADER_EPOCH_CHECKPOINT};
use crate::storage::error::Result;

/// In-memory copy of the checkpoint: (epoch, start offset), epochs strictly increasing.
#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint of a partition directory (empty if missing; Corruption if malformed).
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let entries = checkpoint::read_epochs(&path)?;
        Ok(Self { path, entries })
    }

    fn persist(&self) -> Result<()> {
        checkpoint::write_epochs(&self.path, &self.entries)
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    /// Records `epoch -> start_offset` if `epoch` is newer than the latest; entries that would
    /// no longer be monotonic (start offset >= the new one) are dropped first, like Kafka.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool> {
        if epoch < 0 || start_offset < 0 || self.latest_epoch().is_some_and(|l| epoch <= l) {
            return Ok(false);
        }
        self.entries.retain(|&(_, s)| s < start_offset);
        self.entries.push((epoch, start_offset));
        self.persist()?;
        Ok(true)
    }

    /// (largest epoch <= `epoch`, start offset of the next epoch or `log_end_offset` if it is the
    /// latest); `(epoch, first start)` below the first epoch; `None` (UNDEFINED) for -1, above the
    /// latest epoch, or when none is known.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        // Kafka's rules (LeaderEpochFileCache.endOffsetFor): UNDEFINED asks nothing; the latest
        // epoch ends at the log end; an epoch above every known one is UNDEFINED; one below the
        // first answers itself with the first epoch's start offset; otherwise the largest epoch
        // <= it, ending where the next epoch starts.
        if epoch < 0 {
            return None;
        }
        if self.latest_epoch() == Some(epoch) {
            return Some((epoch, log_end_offset));
        }
        let idx = self.entries.partition_point(|&(e, _)| e <= epoch);
        let &(_, next_start) = self.entries.get(idx)?;
        match idx.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(&(floor, _)) => Some((floor, next_start)),
            None => Some((epoch, next_start)),
        }
    }

    /// Drops epochs that start after the log end (after recovery truncated the log).
    pub(crate) fn truncate_from_end(&mut self, log_end_offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s <= log_end_offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// Drops epochs that start at or after `offset` (a truncation removed everything from
    /// there, including the batches that began those epochs; Kafka's truncateFromEnd).
    pub(crate) fn truncate_at(&mut self, offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// The log start moved to `start`: epochs that began before it are removed except the latest
    /// of them, which now begins at `start` (Kafka's truncateFromStart).
    pub(crate) fn truncate_from_start(&mut self, start: i64) -> Result<()> {
        let below = self.entries.partition_point(|&(_, s)| s < start);
        if below == 0 {
            return Ok(());
        }
        let keep_from = below - 1;
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut() {
            first.1 = start;
        }
        // Entries stay monotonic: the moved one starts at `start`, the next ones at >= start.
        self.persist()
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_lookup_and_truncate() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut c = LeaderEpochCache::load(dir.path())?;
        assert_eq!(c.end_offset_for(0, 10), None);
        assert!(c.assign(1, 0)?);
        assert!(!c.assign(1, 5)?);
        assert!(!c.assign(0, 5)?);
        assert!(c.assign(3, 20)?);
        assert!(c.assign(5, 40)?);
        assert_eq!(
            c.end_offset_for(0, 50),
            Some((0, 0)),
            "below the first: itself, first start"
        );
        assert_eq!(c.end_offset_for(-1, 50), None, "UNDEFINED");
        assert_eq!(c.end_offset_for(1, 50), Some((1, 20)));
        assert_eq!(c.end_offset_for(2, 50), Some((1, 20)));
        assert_eq!(c.end_offset_for(4, 50), Some((3, 40)));
        assert_eq!(c.end_offset_for(5, 50), Some((5, 50)));
        assert_eq!(c.end_offset_for(9, 50), None, "above the latest: UNDEFINED");
        let reloaded = LeaderEpochCache::load(dir.path())?;
        assert_eq!(reloaded.entries(), c.entries());
        c.truncate_from_start(25)?;
        assert_eq!(c.entries(), &[(3, 25), (5, 40)]);
        c.truncate_from_end(30)?;
        assert_eq!(c.entries(), &[(3, 25)]);
        assert_eq!(LeaderEpochCache::load(dir.path())?.entries(), &[(3, 25)]);
        Ok(())
    }
}
