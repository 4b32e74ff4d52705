//! The cluster metadata a single node keeps: topics (name, id, partition count, config
//! overrides) and the producer-id block allocator.
//!
//! Kafka keeps this in the KRaft metadata log (`__cluster_metadata`). Until a controller
//! quorum exists, one JSON document under `<log.dir>/__cluster_metadata/` is the record of it,
//! replaced atomically (temp file, fsync, rename, fsync dir) on every change. Changes are rare
//! (admin requests), so a whole-document rewrite is cheap and keeps recovery trivial.
//!
//! One owner: [`MetadataStore`] behind a short std `Mutex` (never held across an await).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::BrokerError;

const FORMAT_VERSION: u32 = 1;
/// Producer ids are handed out in blocks; only block boundaries are persisted, so a restart
/// skips the rest of a block and never reuses an id.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// One topic's definition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic-level config overrides (Kafka's topic config names).
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    version: u32,
    cluster_id: String,
    topics: BTreeMap<String, TopicMeta>,
    /// The first producer id not yet reserved by a persisted block.
    producer_id_block_end: i64,
}

#[derive(Debug)]
struct Inner {
    doc: Document,
    next_producer_id: i64,
    /// Topic id -> name, derived from `doc` (Produce v13+ and Fetch v13+ name topics by id).
    names_by_id: std::collections::HashMap<Uuid, String>,
}

impl Inner {
    fn reindex(&mut self) {
        self.names_by_id = self.doc.topics.values().map(|t| (t.id, t.name.clone())).collect();
    }
}

/// The persisted topic registry and producer-id allocator.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl MetadataStore {
    /// Loads the store from `log_dir`, creating an empty one (with a new cluster id) if absent.
    pub fn open(log_dir: &Path) -> Result<Self, BrokerError> {
        let dir = log_dir.join("__cluster_metadata");
        fs::create_dir_all(&dir)?;
        let path = dir.join("metadata.json");
        let mut created = false;
        let doc = match fs::read(&path) {
            Ok(bytes) => {
                let doc: Document = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
                })?;
                if doc.version != FORMAT_VERSION {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: unsupported format version {}", path.display(), doc.version),
                    )
                    .into());
                }
                doc
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                created = true;
                Document {
                    version: FORMAT_VERSION,
                    cluster_id: cluster_id_from(Uuid::new_v4()),
                    topics: BTreeMap::new(),
                    producer_id_block_end: 0,
                }
            }
            Err(e) => return Err(e.into()),
        };
        let next_producer_id = doc.producer_id_block_end;
        let mut inner = Inner {
            doc,
            next_producer_id,
            names_by_id: Default::default(),
        };
        inner.reindex();
        let store = MetadataStore {
            path,
            inner: Mutex::new(inner),
        };
        // Only a new store is written here: rewriting one just read would make a start with a
        // full disk fail.
        if created {
            store.persist_locked(&store.lock().doc)?;
        }
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update; the document is
        // replaced atomically, so the in-memory copy is still the last good state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster id reported in Metadata and DescribeCluster.
    pub fn cluster_id(&self) -> String {
        self.lock().doc.cluster_id.clone()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<TopicMeta> {
        self.lock().doc.topics.values().cloned().collect()
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.lock().doc.topics.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        let inner = self.lock();
        let name = inner.names_by_id.get(&id)?;
        inner.doc.topics.get(name).cloned()
    }

    /// The name of the topic with this id (cheap: no copy of its definition).
    pub fn topic_name_by_id(&self, id: Uuid) -> Option<String> {
        self.lock().names_by_id.get(&id).cloned()
    }

    /// Adds a topic; fails if the name (or a name colliding with it, as Kafka checks for `.`
    /// versus `_`) exists.
    pub fn create_topic(&self, topic: TopicMeta) -> Result<TopicMeta, BrokerError> {
        let mut inner = self.lock();
        if inner.doc.topics.contains_key(&topic.name) {
            return Err(BrokerError::TopicAlreadyExists(format!(
                "Topic '{}' already exists.",
                topic.name
            )));
        }
        let normalized = topic.name.replace('.', "_");
        if let Some(other) = inner.doc.topics.keys().find(|n| n.replace('.', "_") == normalized) {
            return Err(BrokerError::InvalidTopic(format!(
                "Topic '{}' collides with existing topic: {other}",
                topic.name
            )));
        }
        let mut next = std::mem::take(&mut inner.doc.topics);
        next.insert(topic.name.clone(), topic.clone());
        inner.doc.topics = next;
        if let Err(e) = self.persist_locked(&inner.doc) {
            inner.doc.topics.remove(&topic.name);
            return Err(e);
        }
        inner.reindex();
        Ok(topic)
    }

    /// Removes a topic; returns its definition.
    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, BrokerError> {
        let mut inner = self.lock();
        let removed = inner
            .doc
            .topics
            .remove(name)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        if let Err(e) = self.persist_locked(&inner.doc) {
            inner.doc.topics.insert(name.to_string(), removed);
            return Err(e);
        }
        inner.reindex();
        Ok(removed)
    }

    /// Applies `update` to a topic's definition and persists it.
    pub fn update_topic(
        &self,
        name: &str,
        update: impl FnOnce(&mut TopicMeta) -> Result<(), BrokerError>,
    ) -> Result<TopicMeta, BrokerError> {
        let mut inner = self.lock();
        let current = inner
            .doc
            .topics
            .get(name)
            .cloned()
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        let mut changed = current.clone();
        update(&mut changed)?;
        inner.doc.topics.insert(name.to_string(), changed.clone());
        if let Err(e) = self.persist_locked(&inner.doc) {
            inner.doc.topics.insert(name.to_string(), current);
            return Err(e);
        }
        Ok(changed)
    }

    /// A producer id unique for the life of this data directory.
    pub fn allocate_producer_id(&self) -> Result<i64, BrokerError> {
        let mut inner = self.lock();
        if inner.next_producer_id >= inner.doc.producer_id_block_end {
            inner.doc.producer_id_block_end = inner.next_producer_id + PRODUCER_ID_BLOCK;
            self.persist_locked(&inner.doc)?;
        }
        let id = inner.next_producer_id;
        inner.next_producer_id += 1;
        Ok(id)
    }

    fn persist_locked(&self, doc: &Document) -> Result<(), BrokerError> {
        let bytes = serde_json::to_vec_pretty(doc)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        write_atomically(&self.path, &bytes)?;
        Ok(())
    }
}

/// Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding (22 chars).
fn cluster_id_from(id: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
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

/// Temp file + fsync + rename + fsync of the directory: the file is either the old or the new
/// document after a crash, never a torn mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp); // a partial file would hold space a full disk lacks
        return Err(e);
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicMeta {
        TopicMeta {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions: 3,
            replication_factor: 1,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn topics_and_producer_ids_survive_reopen() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let first_pid;
        let id;
        {
            let s = MetadataStore::open(dir.path())?;
            id = s.create_topic(topic("a.b"))?.id;
            assert!(matches!(
                s.create_topic(topic("a.b")),
                Err(BrokerError::TopicAlreadyExists(_))
            ));
            assert!(matches!(
                s.create_topic(topic("a_b")),
                Err(BrokerError::InvalidTopic(_))
            ));
            first_pid = s.allocate_producer_id()?;
            assert_eq!(s.allocate_producer_id()?, first_pid + 1);
            assert_eq!(s.cluster_id().len(), 22);
        }
        let s = MetadataStore::open(dir.path())?;
        assert_eq!(s.topic("a.b").map(|t| t.id), Some(id));
        assert_eq!(s.topic_name_by_id(id).as_deref(), Some("a.b"));
        assert!(s.allocate_producer_id()? > first_pid + 1);
        s.delete_topic("a.b")?;
        assert!(s.topic("a.b").is_none());
        assert!(s.topic_name_by_id(id).is_none() && s.topic_by_id(id).is_none());
        Ok(())
    }
}
