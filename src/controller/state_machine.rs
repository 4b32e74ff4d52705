//! The state machine of the metadata quorum (openraft's `RaftStateMachine`): applies committed
//! entries to the [`MetadataImage`] and publishes every new image on a watch channel, which is
//! how the rest of the broker learns of metadata.
//!
//! The image lives in memory. A snapshot (the image, the last applied log id and membership, as
//! JSON in `snapshot.json`, fsynced) is taken every `SNAPSHOT_EVERY` entries; at startup the
//! image comes from it and openraft re-applies the committed entries after it, so applying must
//! be (and is) a pure function of the log.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::controller::image::MetadataImage;
use crate::controller::journal::Journal;
use crate::controller::record::ApplyResult;
use crate::controller::TypeConfig;
use crate::storage::checkpoint::write_atomic;

type RaftNodeId = u64;
type Entry = openraft::Entry<TypeConfig>;

const SNAPSHOT_FILE: &str = "snapshot.json";

/// What `snapshot.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<RaftNodeId, BasicNode>,
    image: MetadataImage,
}

fn sm_error(e: impl std::fmt::Display) -> StorageError<RaftNodeId> {
    StorageError::IO {
        source: StorageIOError::write_state_machine(AnyError::error(e.to_string())),
    }
}

/// The applied metadata and where it came from.
#[derive(Debug)]
pub struct StateMachine {
    dir: PathBuf,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<RaftNodeId>>,
    membership: StoredMembership<RaftNodeId, BasicNode>,
    snapshot: Option<StoredSnapshot>,
    images: watch::Sender<Arc<MetadataImage>>,
    snapshots_built: u64,
    /// The entries applied lately, for broker-only nodes' deltas (see `journal`).
    journal: Arc<Journal>,
}

impl StateMachine {
    /// Loads the last snapshot of `dir`, if any; returns the machine and a receiver of images.
    pub fn open(dir: &Path) -> io::Result<(Self, watch::Receiver<Arc<MetadataImage>>)> {
        let snapshot: Option<StoredSnapshot> = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join(SNAPSHOT_FILE).display()),
                )
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (image, last_applied, membership) = match &snapshot {
            Some(s) => {
                let mut image = s.image.clone();
                image.reindex();
                (image, s.meta.last_log_id, s.meta.last_membership.clone())
            }
            None => (MetadataImage::default(), None, StoredMembership::default()),
        };
        let image = Arc::new(image);
        let (images, rx) = watch::channel(Arc::clone(&image));
        Ok((
            StateMachine {
                dir: dir.to_path_buf(),
                image,
                last_applied,
                membership,
                snapshot,
                images,
                snapshots_built: 0,
                journal: Arc::default(),
            },
            rx,
        ))
    }

    /// The journal of applied entries this machine keeps.
    pub fn journal(&self) -> Arc<Journal> {
        Arc::clone(&self.journal)
    }

    fn publish(&self) {
        self.images.send_replace(Arc::clone(&self.image));
    }
}

/// Writes `snapshot.json` (atomically, fsynced) off the runtime workers.
async fn persist(dir: &Path, stored: StoredSnapshot) -> Result<(), StorageError<RaftNodeId>> {
    let path = dir.join(SNAPSHOT_FILE);
    tokio::task::spawn_blocking(move || {
        let bytes = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        write_atomic(&path, &bytes)
    })
    .await
    .map_err(sm_error)?
    .map_err(|e| StorageError::IO {
        source: StorageIOError::write_snapshot(None, AnyError::new(&e)),
    })
}

/// Builds a snapshot of the state at the time it was asked for.
pub struct SnapshotBuilder {
    stored: StoredSnapshot,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<RaftNodeId>> {
        let stored = self.stored.clone();
        let bytes = serde_json::to_vec(&stored.image).map_err(sm_error)?;
        persist(&self.dir, stored.clone()).await?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<RaftNodeId>>, StoredMembership<RaftNodeId, BasicNode>), StorageError<RaftNodeId>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError<RaftNodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let image = Arc::make_mut(&mut self.image);
        for entry in entries {
            let index = entry.log_id.index;
            self.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Normal(command) => {
                    let result = image.apply(index, &command);
                    self.journal.push(index, Some(command));
                    result
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    image.offset = index;
                    self.journal.push(index, None);
                    ApplyResult {
                        offset: index,
                        ..ApplyResult::default()
                    }
                }
                EntryPayload::Blank => {
                    image.offset = index;
                    self.journal.push(index, None);
                    ApplyResult {
                        offset: index,
                        ..ApplyResult::default()
                    }
                }
            };
            results.push(result);
        }
        self.publish();
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        let index = self.last_applied.map_or(0, |l| l.index);
        SnapshotBuilder {
            stored: StoredSnapshot {
                meta: SnapshotMeta {
                    last_log_id: self.last_applied,
                    last_membership: self.membership.clone(),
                    snapshot_id: format!("{index}-{}", self.snapshots_built),
                },
                image: (*self.image).clone(),
            },
            dir: self.dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<RaftNodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<RaftNodeId>> {
        let mut image: MetadataImage = serde_json::from_slice(snapshot.get_ref()).map_err(sm_error)?;
        image.reindex();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            image: image.clone(),
        };
        persist(&self.dir, stored.clone()).await?;
        self.image = Arc::new(image);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.snapshot = Some(stored);
        self.journal.reset();
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<RaftNodeId>> {
        // The last one built is on disk; read it back (rare: a follower far behind).
        let path = self.dir.join(SNAPSHOT_FILE);
        let stored: Option<StoredSnapshot> = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(sm_error)?
        .map_err(sm_error)?;
        let Some(stored) = stored.or_else(|| self.snapshot.clone()) else {
            return Ok(None);
        };
        let bytes = serde_json::to_vec(&stored.image).map_err(sm_error)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
