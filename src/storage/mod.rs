//! The storage core: the bytes on disk for one partition and everything below it. It knows
//! nothing of the Kafka wire protocol, the network or tokio (contract: docs/storage-contract.md).
//!
//! Module map:
//! - `config`: `LogConfig`, Kafka's per-topic log settings and their defaults.
//! - `error`: `StorageError`, the one error type of this module.
//! - `batch`: the v2 record batch header (61 bytes), CRC32C, client batch checks.
//! - `index`: sparse offset (`.index`) and time (`.timeindex`) indexes.
//! - `decompress`: capped, streaming reads of the records inside one batch (ListOffsets).
//! - `codec`: compressing and inflating a batch's records section (Kafka's codecs).
//! - `records`: the records inside a batch (cleaner, keyless check of compacted topics).
//! - `message_set`: the old message formats (magic 0/1) of Produce v0-2, up-converted to v2.
//! - `cleaner`: the log cleaner (compaction), its offset map and crash-safe segment installs.
//! - `segment`: `LogSegment`, one `.log` file plus its indexes; append, read, scan, recover;
//!   `SegmentReader`, a read taken under the log lock and run without it.
//! - `segment_file`: the `.log` file handle, closed while a sealed segment is idle (bounded).
//! - `producer_state`: idempotent producer state and its `.snapshot` files.
//! - `checkpoint`: durable text checkpoints (leader epochs, log start offset, recovery point).
//! - `leader_epoch`: the epoch -> start offset cache behind OffsetsForLeaderEpoch.
//! - `txn_index`: the aborted-transaction index (`.txnindex`) of a segment.
//! - `read`: `ReadPlan` (a read planned under the log lock, run without it), timestamp lookups.
//! - `recovery`: loading a partition directory, truncating a torn tail.
//! - `damage`: invalid bytes recovery found between valid batches: kept, skipped, reported.
//! - `log`: `UnifiedLog`, the partition log the API and replication layers call.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod codec;
pub mod config;
pub mod control;
pub mod damage;
mod decompress;
pub mod error;
mod index;
mod leader_epoch;
pub mod log;
pub mod message_set;
mod producer_state;
mod read;
pub mod records;
mod recovery;
mod segment;
pub mod segment_file;
mod txn_index;

pub use batch::{BatchHeader, Compression, BATCH_HEADER_LEN};
pub use cleaner::{CleanStats, CleanerConfig, OffsetMap, Throttle};
pub use config::LogConfig;
pub use control::{EndTxnMarker, MarkerType};
pub use error::StorageError;
pub use log::{
    CheckpointOffsets, FetchDataInfo, FlushRequest, LogAppendInfo, ProducerStateInfo, TimestampOffset, UnifiedLog,
};
pub use read::ReadPlan;
pub use txn_index::AbortedTxn;
