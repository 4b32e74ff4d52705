//! The recent history of the applied metadata log, kept by a voter's state machine so that a
//! broker-only node (`observer`) that is a little behind gets the commands it missed (Kafka's
//! brokers fetch the metadata log's records the same way) instead of a whole image each time
//! something changes. Bounded by entries and by weight (records plus the partitions they
//! carry); an observer further behind than the journal reaches, or one just started, gets the
//! image.
//!
//! Entries are contiguous log offsets: the state machine applies every index in order (a Raft
//! membership or blank entry is an offset with no command). A gap (a snapshot installed from
//! the leader) empties the journal.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::image::MetadataImage;
use super::record::{MetadataCommand, MetadataRecord};

/// Entries kept at most.
pub const MAX_ENTRIES: usize = 1_024;
/// Weight kept at most (see [`weight`]): about this many partition registrations.
pub const MAX_WEIGHT: usize = 200_000;

/// One applied offset of the metadata log and the command it carried, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub offset: u64,
    pub command: Option<MetadataCommand>,
}

/// What an entry costs to keep: one per record, plus the partitions and configs it carries.
fn weight(entry: &JournalEntry) -> usize {
    entry.command.as_ref().map_or(1, |c| {
        c.records
            .iter()
            .map(|r| match r {
                MetadataRecord::CreateTopic {
                    partitions, configs, ..
                } => 1 + partitions.len() + configs.len(),
                MetadataRecord::AddPartitions { partitions, .. } => 1 + partitions.len(),
                MetadataRecord::SetTopicConfigs { configs, .. } => 1 + configs.len(),
                _ => 1,
            })
            .sum()
    })
}

#[derive(Debug, Default)]
struct Entries {
    entries: VecDeque<JournalEntry>,
    weight: usize,
}

#[derive(Debug, Default)]
pub struct Journal {
    inner: Mutex<Entries>,
}

impl Journal {
    /// Records the entry applied at `offset` (the oldest go beyond the bounds; an offset that
    /// does not follow the last one starts the journal over).
    pub fn push(&self, offset: u64, command: Option<MetadataCommand>) {
        let entry = JournalEntry { offset, command };
        let w = weight(&entry);
        let mut j = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if j.entries.back().is_some_and(|last| last.offset + 1 != offset) {
            j.entries.clear();
            j.weight = 0;
        }
        j.weight += w;
        j.entries.push_back(entry);
        while j.entries.len() > MAX_ENTRIES || (j.weight > MAX_WEIGHT && j.entries.len() > 1) {
            if let Some(old) = j.entries.pop_front() {
                j.weight -= weight(&old);
            }
        }
    }

    /// Forgets everything (a snapshot replaced the image).
    pub fn reset(&self) {
        let mut j = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        j.entries.clear();
        j.weight = 0;
    }

    /// The entries of offsets `after + 1 ..= upto`, if the journal holds them all.
    pub fn between(&self, after: u64, upto: u64) -> Option<Vec<JournalEntry>> {
        if upto <= after {
            return Some(Vec::new());
        }
        let j = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let first = j.entries.front()?.offset;
        let last = j.entries.back()?.offset;
        if first > after + 1 || last < upto {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        let take = usize::try_from(upto - after).ok()?;
        Some(j.entries.iter().skip(skip).take(take).cloned().collect())
    }
}

/// `image` with `entries` applied, if they continue it (the first is the offset after the
/// image's, and each the next); `None` otherwise.
pub fn replay(image: &MetadataImage, entries: &[JournalEntry]) -> Option<MetadataImage> {
    let mut next = image.clone();
    for e in entries {
        if e.offset != next.offset + 1 {
            return None;
        }
        match &e.command {
            Some(command) => {
                next.apply(e.offset, command);
            }
            None => next.offset = e.offset,
        }
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::record::PartitionRegistration;

    fn create(name: &str, partitions: usize) -> MetadataCommand {
        MetadataCommand::one(MetadataRecord::CreateTopic {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions: (0..partitions).map(|_| PartitionRegistration::new(vec![1])).collect(),
            configs: Default::default(),
        })
    }

    /// An observer that replays the journal from where it is ends with the image the voter
    /// applied, entry for entry.
    #[test]
    fn replaying_the_journal_gives_the_voters_image() {
        let journal = Journal::default();
        let mut voter = MetadataImage::default();
        let commands = [
            None,
            Some(MetadataCommand::one(MetadataRecord::InitCluster {
                cluster_id: "c".into(),
            })),
            Some(create("a", 3)),
            None,
            Some(create("b", 1)),
        ];
        let mut at_two = None;
        for (i, c) in commands.iter().enumerate() {
            let offset = i as u64 + 1;
            match c {
                Some(c) => {
                    voter.apply(offset, c);
                }
                None => voter.offset = offset,
            }
            journal.push(offset, c.clone());
            if offset == 2 {
                at_two = Some(voter.clone());
            }
        }
        let observer = at_two.expect("image at 2");
        let delta = journal.between(2, voter.offset).expect("held");
        assert_eq!(delta.iter().map(|e| e.offset).collect::<Vec<_>>(), [3, 4, 5]);
        let mut replayed = replay(&observer, &delta).expect("contiguous");
        replayed.reindex();
        assert_eq!(replayed, voter);
        assert!(replay(&observer, &delta[1..]).is_none(), "a gap is refused");
        assert_eq!(journal.between(5, 5), Some(Vec::new()));
        assert!(journal.between(3, 9).is_none(), "not applied yet");
    }

    #[test]
    fn the_journal_is_bounded_and_starts_over_at_a_gap() {
        let journal = Journal::default();
        for offset in 1..=(MAX_ENTRIES as u64 + 10) {
            journal.push(offset, None);
        }
        assert!(journal.between(5, 20).is_none(), "the oldest are gone");
        assert_eq!(journal.between(20, 30).map(|v| v.len()), Some(10));
        // Heavy entries push the old ones out by weight.
        journal.push(MAX_ENTRIES as u64 + 11, Some(create("big", MAX_WEIGHT - 10)));
        journal.push(MAX_ENTRIES as u64 + 12, Some(create("big2", 100)));
        assert!(journal
            .between(MAX_ENTRIES as u64 + 10, MAX_ENTRIES as u64 + 12)
            .is_none());
        assert_eq!(
            journal
                .between(MAX_ENTRIES as u64 + 11, MAX_ENTRIES as u64 + 12)
                .map(|v| v.len()),
            Some(1)
        );
        // A snapshot's jump: older entries go.
        journal.push(5_000, None);
        assert!(journal.between(MAX_ENTRIES as u64 + 11, 5_000).is_none());
        assert_eq!(journal.between(4_999, 5_000).map(|v| v.len()), Some(1));
        journal.reset();
        assert!(journal.between(4_999, 5_000).is_none());
    }
}
