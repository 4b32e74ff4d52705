//! Per-partition log configuration (Kafka's topic-level `segment.*`, `retention.*`, `flush.*`,
//! `index.*`, `cleanup.policy` and compaction, and `max.message.bytes` settings). Defaults are
//! Kafka's.

use crate::storage::batch::Compression;

/// Configuration of one partition log. Units are in the field names.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// segment.bytes: roll the active segment before it would exceed this size (default 1 GiB).
    /// Positions inside a segment are i32, so values above `i32::MAX` act as `i32::MAX`.
    pub segment_bytes: u64,
    /// segment.ms: roll once this long has passed since the segment's first batch timestamp
    /// (default 7 days).
    pub segment_ms: i64,
    /// segment.index.bytes: roll when the offset or time index reaches this size (default 10 MiB).
    pub segment_index_bytes: u32,
    /// index.interval.bytes: add an index entry every this many bytes of log (default 4096).
    pub index_interval_bytes: u32,
    /// retention.ms: delete closed segments whose newest timestamp is older (default 7 days, -1 = off).
    pub retention_ms: i64,
    /// retention.bytes: delete closed segments while the log stays at least this big (default -1 = off).
    pub retention_bytes: i64,
    /// flush.messages: `needs_flush` once this many messages are unflushed (default u64::MAX = never).
    pub flush_interval_messages: u64,
    /// flush.ms: `needs_flush` once this long has passed since the last flush (default i64::MAX = never).
    pub flush_interval_ms: i64,
    /// max.message.bytes: the largest record batch accepted (default 1048588).
    pub max_message_bytes: u32,
    /// message.timestamp.type == LogAppendTime (default false = CreateTime).
    pub log_append_time: bool,
    /// producer.id.expiration.ms (a broker setting in Kafka): idle producers' state is
    /// forgotten after this long, at retention time. Default 1 day.
    pub producer_id_expiration_ms: i64,
    /// min.insync.replicas (default 1). A topic setting the log itself ignores: replication
    /// reads it from here, with the rest of the topic's config.
    pub min_insync_replicas: u32,
    /// unclean.leader.election.enable (default false); likewise for the controller.
    pub unclean_leader_election_enable: bool,
    /// cleanup.policy contains `delete` (the default): retention deletes old segments.
    pub cleanup_delete: bool,
    /// cleanup.policy contains `compact`: the log cleaner keeps the latest record per key, and
    /// records without a key are refused.
    pub cleanup_compact: bool,
    /// delete.retention.ms: how long the cleaner keeps tombstones and transaction markers it
    /// may remove (default 1 day).
    pub delete_retention_ms: i64,
    /// min.compaction.lag.ms: records younger than this are not compacted (default 0).
    pub min_compaction_lag_ms: i64,
    /// max.compaction.lag.ms: a dirty record older than this makes the log cleanable whatever
    /// its dirty ratio (default i64::MAX: never).
    pub max_compaction_lag_ms: i64,
    /// min.cleanable.dirty.ratio: clean when dirty bytes / cleanable bytes reach it (0.5).
    pub min_cleanable_dirty_ratio: f64,
    /// compression.type: `None` = `producer` (batches kept as sent, the default); a codec:
    /// batches in another one are recompressed into it on append.
    pub compression: Option<Compression>,
    /// compression.gzip.level (default Deflater's 6), compression.lz4.level (9),
    /// compression.zstd.level (3): `None` for the codec's default.
    pub gzip_level: Option<i32>,
    pub lz4_level: Option<i32>,
    pub zstd_level: Option<i32>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            flush_interval_messages: u64::MAX,
            flush_interval_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            log_append_time: false,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            compression: None,
            gzip_level: None,
            lz4_level: None,
            zstd_level: None,
        }
    }
}

impl LogConfig {
    /// The level to compress with in `codec` (`compression.<codec>.level`), `None` = default.
    pub fn level_for(&self, codec: Compression) -> Option<i32> {
        match codec {
            Compression::Gzip => self.gzip_level,
            Compression::Lz4 => self.lz4_level,
            Compression::Zstd => self.zstd_level,
            Compression::None | Compression::Snappy => None,
        }
    }

    /// The effective segment size limit: positions in the offset index are i32.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.effective_segment_bytes(), 1 << 30);
        let big = LogConfig {
            segment_bytes: u64::MAX,
            ..LogConfig::default()
        };
        assert_eq!(big.effective_segment_bytes(), i32::MAX as u64);
    }
}
