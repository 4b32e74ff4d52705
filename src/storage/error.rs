//! The storage core's error type.
//!
//! One short enum with domain variants; the API layer maps each to a Kafka error code in one place
//! (CorruptRecord -> CORRUPT_MESSAGE, InvalidRecord -> INVALID_RECORD, RecordTooLarge ->
//! MESSAGE_TOO_LARGE / RECORD_LIST_TOO_LARGE, OutOfOrderSequence -> OUT_OF_ORDER_SEQUENCE_NUMBER,
//! InvalidProducerEpoch -> INVALID_PRODUCER_EPOCH, InvalidTxnState -> INVALID_TXN_STATE, OffsetOutOfRange -> OFFSET_OUT_OF_RANGE,
//! Corruption / Io -> KAFKA_STORAGE_ERROR).

use thiserror::Error;

/// Everything the storage core can fail with. Nothing in `src/storage` panics on bad input.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A batch that is not well formed: bad CRC, bad magic, a length field that does not match the
    /// bytes, a truncated header.
    #[error("corrupt record batch: {0}")]
    CorruptRecord(String),
    /// A well-formed batch that breaks a rule: record count != lastOffsetDelta + 1, a control batch
    /// from a client, a producer batch with a negative base sequence, an unknown compression codec.
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// A batch (or a whole append) larger than max.message.bytes (or segment.bytes).
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Size in bytes of the offending batch or append.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// An idempotent producer skipped or repeated a sequence number.
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// An idempotent producer used an epoch older than the current one.
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A producer broke the transaction protocol: a non-transactional batch inside its open
    /// transaction.
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// The requested offset is outside `[log_start, log_end]` (or above the high watermark for
    /// DeleteRecords).
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// The log start offset at the time of the request.
        log_start: i64,
        /// The log end offset (or the high watermark for DeleteRecords).
        log_end: i64,
    },
    /// On-disk state we refuse to load (or a log that refuses writes after a failed write).
    #[error("storage corruption: {0}")]
    Corruption(String),
    /// An operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Shorthand used throughout the storage core.
pub type Result<T> = std::result::Result<T, StorageError>;
