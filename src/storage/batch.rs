//! A view of the v2 record batch header (magic 2, 61 bytes) and the checks the log makes on it.
//!
//! Batches stay bytes end to end: the log parses the fixed header, checks the CRC32C (which covers
//! bytes 21..end, so base offset and partition leader epoch can be rewritten without recomputing it)
//! and never decodes records on the hot path. Layout (big endian): baseOffset 0, length 8,
//! partitionLeaderEpoch 12, magic 16, crc 17, attributes 21, lastOffsetDelta 23, baseTimestamp 27,
//! maxTimestamp 35, producerId 43, producerEpoch 51, baseSequence 53, recordCount 57.

use crate::storage::error::{Result, StorageError};

/// Size of the fixed v2 batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// baseOffset + length: the bytes before the length field's coverage starts.
pub const LOG_OVERHEAD: usize = 12;
/// First byte covered by the CRC (the attributes field).
pub(crate) const CRC_START: usize = 21;
/// Bytes 0..17 (baseOffset, length, partitionLeaderEpoch, magic) precede the CRC field; the log
/// rewrites this prefix when it assigns offsets.
pub(crate) const HEADER_PREFIX_LEN: usize = 17;
/// The only batch format the log stores.
pub const MAGIC_V2: i8 = 2;
/// The smallest legal value of the length field (a header with no records).
const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

/// Smallest encoded v2 record: length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, one byte each.
const MIN_RECORD_LEN: usize = 7;

const OFF_PARTITION_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub(crate) const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;
/// Attributes bit 6 (KIP-534): `base_timestamp` holds the delete horizon the log cleaner set;
/// record timestamps stay `base_timestamp + delta`.
pub(crate) const ATTR_DELETE_HORIZON: i16 = 1 << 6;

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed records.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Attribute bits 0-2 naming this codec.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// Kafka's name of the codec (`compression.type`), `uncompressed` for none.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "uncompressed",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// The codec a `compression.type` names; `None` for `producer` (and unknown names).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "uncompressed" => Self::None,
            "gzip" => Self::Gzip,
            "snappy" => Self::Snappy,
            "lz4" => Self::Lz4,
            "zstd" => Self::Zstd,
            _ => return None,
        })
    }

    /// The codec named by attribute bits 0-2, `None` (the Option) for the unused codes 5-7.
    pub fn from_attributes(attributes: i16) -> Option<Self> {
        match attributes & ATTR_COMPRESSION_MASK {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// The parsed fixed header of one v2 record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (assigned by the log).
    pub base_offset: i64,
    /// Bytes after the length field (the whole batch is `LOG_OVERHEAD + batch_length`).
    pub batch_length: i32,
    /// Leader epoch stamped by the log.
    pub partition_leader_epoch: i32,
    /// Always 2 for a header that parsed.
    pub magic: i8,
    /// CRC32C of bytes 21..end.
    pub crc: u32,
    /// Compression, timestamp type, transactional, control bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the log append time).
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

fn field<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

impl BatchHeader {
    /// Parses the 61-byte header at the start of `buf`. Checks only what is needed to trust the
    /// field positions: enough bytes, magic == 2 and a length field of at least 49. It does not
    /// check the CRC or that `buf` holds the whole batch.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(StorageError::CorruptRecord(format!(
                "batch header needs {BATCH_HEADER_LEN} bytes, {} available",
                buf.len()
            )));
        }
        let magic = i8::from_be_bytes(field(buf, OFF_MAGIC));
        if magic != MAGIC_V2 {
            return Err(StorageError::CorruptRecord(format!(
                "unsupported magic {magic}, only v2 batches are accepted"
            )));
        }
        let batch_length = i32::from_be_bytes(field(buf, 8));
        if batch_length < MIN_BATCH_LENGTH {
            return Err(StorageError::CorruptRecord(format!(
                "batch length {batch_length} is smaller than the header"
            )));
        }
        Ok(Self {
            base_offset: i64::from_be_bytes(field(buf, 0)),
            batch_length,
            partition_leader_epoch: i32::from_be_bytes(field(buf, OFF_PARTITION_LEADER_EPOCH)),
            magic,
            crc: u32::from_be_bytes(field(buf, OFF_CRC)),
            attributes: i16::from_be_bytes(field(buf, OFF_ATTRIBUTES)),
            last_offset_delta: i32::from_be_bytes(field(buf, OFF_LAST_OFFSET_DELTA)),
            base_timestamp: i64::from_be_bytes(field(buf, OFF_BASE_TIMESTAMP)),
            max_timestamp: i64::from_be_bytes(field(buf, OFF_MAX_TIMESTAMP)),
            producer_id: i64::from_be_bytes(field(buf, OFF_PRODUCER_ID)),
            producer_epoch: i16::from_be_bytes(field(buf, OFF_PRODUCER_EPOCH)),
            base_sequence: i32::from_be_bytes(field(buf, OFF_BASE_SEQUENCE)),
            record_count: i32::from_be_bytes(field(buf, OFF_RECORD_COUNT)),
        })
    }

    /// Serializes the header (the inverse of `parse`).
    pub fn encode(&self) -> [u8; BATCH_HEADER_LEN] {
        let mut out = [0u8; BATCH_HEADER_LEN];
        put(&mut out, 0, &self.base_offset.to_be_bytes());
        put(&mut out, 8, &self.batch_length.to_be_bytes());
        put(
            &mut out,
            OFF_PARTITION_LEADER_EPOCH,
            &self.partition_leader_epoch.to_be_bytes(),
        );
        put(&mut out, OFF_MAGIC, &self.magic.to_be_bytes());
        put(&mut out, OFF_CRC, &self.crc.to_be_bytes());
        put(&mut out, OFF_ATTRIBUTES, &self.attributes.to_be_bytes());
        put(&mut out, OFF_LAST_OFFSET_DELTA, &self.last_offset_delta.to_be_bytes());
        put(&mut out, OFF_BASE_TIMESTAMP, &self.base_timestamp.to_be_bytes());
        put(&mut out, OFF_MAX_TIMESTAMP, &self.max_timestamp.to_be_bytes());
        put(&mut out, OFF_PRODUCER_ID, &self.producer_id.to_be_bytes());
        put(&mut out, OFF_PRODUCER_EPOCH, &self.producer_epoch.to_be_bytes());
        put(&mut out, OFF_BASE_SEQUENCE, &self.base_sequence.to_be_bytes());
        put(&mut out, OFF_RECORD_COUNT, &self.record_count.to_be_bytes());
        out
    }

    /// Size of the whole batch in bytes, header included.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + usize::try_from(self.batch_length).unwrap_or(0)
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Compression codec; `InvalidRecord` for the unused codes 5-7.
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_attributes(self.attributes).ok_or_else(|| {
            StorageError::InvalidRecord(format!(
                "unknown compression codec {}",
                self.attributes & ATTR_COMPRESSION_MASK
            ))
        })
    }

    /// Attributes bit 4.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Attributes bit 5 (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Attributes bit 3: timestamps are the broker's append time (`max_timestamp`).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// Whether the batch comes from an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// The delete horizon the cleaner set on this batch (attributes bit 6), if any.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & ATTR_DELETE_HORIZON != 0).then_some(self.base_timestamp)
    }

    /// Sequence of the last record (wraps after i32::MAX like Kafka's).
    pub fn last_sequence(&self) -> i32 {
        self.base_sequence.wrapping_add(self.last_offset_delta)
    }

    /// Header rules that hold for every stored batch: at least one record and
    /// `record_count == last_offset_delta + 1`.
    pub fn check_counts(&self) -> Result<()> {
        if self.last_offset_delta < 0 || self.record_count <= 0 {
            return Err(StorageError::InvalidRecord(format!(
                "batch has record count {} and last offset delta {}",
                self.record_count, self.last_offset_delta
            )));
        }
        if i64::from(self.record_count) != i64::from(self.last_offset_delta) + 1 {
            return Err(StorageError::InvalidRecord(format!(
                "record count {} != last offset delta {} + 1",
                self.record_count, self.last_offset_delta
            )));
        }
        Ok(())
    }
}

impl BatchHeader {
    /// The rules every stored batch keeps, also after the log cleaner removed records from it
    /// (Kafka keeps a cleaned batch's offset range, possibly with no record left):
    /// `0 <= record_count <= last_offset_delta + 1`.
    pub fn check_stored_counts(&self) -> Result<()> {
        if self.last_offset_delta < 0
            || self.record_count < 0
            || i64::from(self.record_count) > i64::from(self.last_offset_delta) + 1
        {
            return Err(StorageError::InvalidRecord(format!(
                "batch has record count {} and last offset delta {}",
                self.record_count, self.last_offset_delta
            )));
        }
        Ok(())
    }
}

/// A whole batch from `header` (its length, record count and CRC are set here) and `records`,
/// the records section as stored (compressed with the header's codec, if any).
pub(crate) fn assemble(header: &BatchHeader, record_count: i32, records: &[u8]) -> Result<Vec<u8>> {
    let length = i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + records.len())
        .map_err(|_| StorageError::InvalidRecord("batch larger than 2 GiB".into()))?;
    let h = BatchHeader {
        batch_length: length,
        record_count,
        magic: MAGIC_V2,
        crc: 0,
        ..*header
    };
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(records);
    let crc = compute_crc(&out);
    put(&mut out, OFF_CRC, &crc.to_be_bytes());
    Ok(out)
}

/// CRC32C of a whole batch's bytes 21..end (0 if the slice is shorter than that).
pub(crate) fn compute_crc(batch: &[u8]) -> u32 {
    batch.get(CRC_START..).map(crc32c::crc32c).unwrap_or(0)
}

/// Checks the stored CRC of a whole batch against its bytes.
pub fn verify_crc(header: &BatchHeader, batch: &[u8]) -> Result<()> {
    let actual = compute_crc(batch);
    if actual != header.crc {
        return Err(StorageError::CorruptRecord(format!(
            "CRC mismatch at base offset {}: stored {:#010x}, computed {actual:#010x}",
            header.base_offset, header.crc
        )));
    }
    Ok(())
}

/// Sets the LogAppendTime attribute and max timestamp of a whole batch, and recomputes its CRC
/// (what Kafka does in place: the base timestamp is left alone, readers of a LogAppendTime batch
/// use `max_timestamp` for every record).
pub(crate) fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = i16::from_be_bytes(field(batch, OFF_ATTRIBUTES)) | ATTR_LOG_APPEND_TIME;
    put(batch, OFF_ATTRIBUTES, &attributes.to_be_bytes());
    put(batch, OFF_MAX_TIMESTAMP, &now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    put(batch, OFF_CRC, &crc.to_be_bytes());
}

/// The 17-byte prefix with base offset and partition leader epoch rewritten.
pub(crate) fn rewritten_prefix(original: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; HEADER_PREFIX_LEN] {
    let mut out: [u8; HEADER_PREFIX_LEN] = field(original, 0);
    put(&mut out, 0, &base_offset.to_be_bytes());
    put(&mut out, OFF_PARTITION_LEADER_EPOCH, &leader_epoch.to_be_bytes());
    out
}

/// Iterates the batches of a buffer holding whole batches back to back, yielding each batch's
/// start position and header. It yields one `Err` and stops at the first header that does not
/// parse or batch that does not fit in the buffer (a torn tail). It does not check CRCs.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

/// Iterates the batches in `buf` (see [`BatchIter`]).
pub fn batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        pos: 0,
        failed: false,
    }
}

impl BatchIter<'_> {
    /// Position after the last batch yielded so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(usize, BatchHeader)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        if header.total_size() > rest.len() {
            self.failed = true;
            return Some(Err(StorageError::CorruptRecord(format!(
                "batch at position {} claims {} bytes, {} available",
                self.pos,
                header.total_size(),
                rest.len()
            ))));
        }
        let start = self.pos;
        self.pos += header.total_size();
        Some(Ok((start, header)))
    }
}

/// Checks one batch from a client (the leader append path): framing, magic, size, CRC, counts,
/// codec, no control batches, producer batches carry a sequence. `batch` is the whole batch.
pub(crate) fn validate_client_batch(header: &BatchHeader, batch: &[u8], max_message_bytes: u32) -> Result<()> {
    let max = usize::try_from(max_message_bytes).unwrap_or(usize::MAX);
    if header.total_size() > max {
        return Err(StorageError::RecordTooLarge {
            size: header.total_size(),
            max,
        });
    }
    verify_crc(header, batch)?;
    header.check_counts()?;
    if header.compression()? == Compression::None {
        // An encoded record takes at least 7 bytes: a count the bytes cannot hold would make
        // every decoder (ours for ListOffsets, the consumers') reserve memory for nothing.
        let room = header.total_size().saturating_sub(BATCH_HEADER_LEN) / MIN_RECORD_LEN;
        if usize::try_from(header.record_count).unwrap_or(usize::MAX) > room {
            return Err(StorageError::InvalidRecord(format!(
                "{} records cannot fit in {} bytes",
                header.record_count,
                header.total_size()
            )));
        }
    }
    if header.is_control() {
        return Err(StorageError::InvalidRecord(
            "control batches may not be produced by clients".into(),
        ));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(StorageError::InvalidRecord(format!(
            "producer {} sent base sequence {}",
            header.producer_id, header.base_sequence
        )));
    }
    if header.is_transactional() && !header.has_producer_id() {
        return Err(StorageError::InvalidRecord(
            "transactional batch without a producer id".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A hand-built uncompressed v2 batch of `count` records with a valid CRC (test helper shared
    /// by the other storage tests).
    pub(crate) fn make_batch(count: i32, first_ts: i64, value_len: usize) -> Vec<u8> {
        make_producer_batch(count, first_ts, value_len, -1, -1, -1)
    }

    /// Like `make_batch` with producer id, epoch and base sequence.
    pub(crate) fn make_producer_batch(
        count: i32,
        first_ts: i64,
        value_len: usize,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        make_batch_of(
            count,
            first_ts,
            value_len,
            producer_id,
            producer_epoch,
            base_sequence,
            false,
        )
    }

    /// A transactional producer batch.
    pub(crate) fn make_txn_batch(count: i32, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Vec<u8> {
        make_batch_of(
            count,
            1_700_000_000_000,
            20,
            producer_id,
            producer_epoch,
            base_sequence,
            true,
        )
    }

    fn make_batch_of(
        count: i32,
        first_ts: i64,
        value_len: usize,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        transactional: bool,
    ) -> Vec<u8> {
        use bytes::BytesMut;
        use kafka_protocol::records::{
            Compression as KCompression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional,
                control: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                // The encoder starts a new batch when offset - sequence changes, so the
                // sequence advances even without a producer (base sequence stays -1).
                sequence: base_sequence.wrapping_add(i),
                timestamp: first_ts + i64::from(i),
                key: None,
                value: Some(bytes::Bytes::from(vec![b'v'; value_len])),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression: KCompression::None,
        };
        if RecordBatchEncoder::encode(&mut buf, &records, &opts).is_err() {
            return Vec::new();
        }
        buf.to_vec()
    }

    #[test]
    fn parses_encoder_output_and_checks_crc() -> Result<()> {
        let b = make_producer_batch(3, 1000, 10, 7, 1, 5);
        let h = BatchHeader::parse(&b)?;
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 1002);
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (7, 1, 5));
        assert_eq!(h.last_sequence(), 7);
        assert_eq!(h.compression()?, Compression::None);
        validate_client_batch(&h, &b, 1 << 20)?;
        let mut bad = b.clone();
        if let Some(x) = bad.last_mut() {
            *x ^= 0xff;
        }
        assert!(matches!(
            validate_client_batch(&h, &bad, 1 << 20),
            Err(StorageError::CorruptRecord(_))
        ));
        assert!(matches!(
            validate_client_batch(&h, &b, 10),
            Err(StorageError::RecordTooLarge { .. })
        ));
        Ok(())
    }

    #[test]
    fn record_count_must_fit_in_the_bytes() -> Result<()> {
        let mut b = make_batch(2, 0, 1);
        b[23..27].copy_from_slice(&999i32.to_be_bytes());
        b[57..61].copy_from_slice(&1000i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let h = BatchHeader::parse(&b)?;
        assert!(matches!(
            validate_client_batch(&h, &b, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
        Ok(())
    }

    #[test]
    fn prefix_rewrite_keeps_crc_valid() -> Result<()> {
        let mut b = make_batch(2, 5, 3);
        let prefix = rewritten_prefix(&b, 42, 9);
        b.get_mut(..HEADER_PREFIX_LEN)
            .ok_or_else(|| StorageError::Corruption("short".into()))?
            .copy_from_slice(&prefix);
        let h = BatchHeader::parse(&b)?;
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 9));
        verify_crc(&h, &b)?;
        set_log_append_time(&mut b, 777);
        let h = BatchHeader::parse(&b)?;
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 777);
        verify_crc(&h, &b)
    }

    #[test]
    fn iter_stops_at_torn_tail() -> Result<()> {
        let mut buf = make_batch(1, 0, 4);
        let one = buf.len();
        buf.extend(make_batch(2, 0, 4));
        buf.truncate(buf.len() - 3);
        let mut it = batches(&buf);
        assert!(matches!(it.next(), Some(Ok((0, _)))));
        assert!(matches!(it.next(), Some(Err(_))));
        assert!(it.next().is_none());
        assert_eq!(it.position(), one);
        Ok(())
    }

    #[test]
    fn rejects_bad_magic_length_and_counts() -> Result<()> {
        let b = make_batch(2, 0, 1);
        let mut m = b.clone();
        m[16] = 1;
        assert!(matches!(BatchHeader::parse(&m), Err(StorageError::CorruptRecord(_))));
        let mut l = b.clone();
        l[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(BatchHeader::parse(&l), Err(StorageError::CorruptRecord(_))));
        assert!(BatchHeader::parse(&b[..30]).is_err());
        let h = BatchHeader {
            record_count: 3,
            ..BatchHeader::parse(&b)?
        };
        assert!(matches!(h.check_counts(), Err(StorageError::InvalidRecord(_))));
        let h = BatchHeader {
            attributes: 5,
            ..BatchHeader::parse(&b)?
        };
        assert!(matches!(h.compression(), Err(StorageError::InvalidRecord(_))));
        Ok(())
    }

    proptest! {
        #[test]
        fn header_round_trip(
            base_offset in any::<i64>(), len in 49i32..i32::MAX, ple in any::<i32>(), crc in any::<u32>(),
            attributes in any::<i16>(), lod in any::<i32>(), bt in any::<i64>(), mt in any::<i64>(),
            pid in any::<i64>(), pe in any::<i16>(), bs in any::<i32>(), rc in any::<i32>()
        ) {
            let h = BatchHeader { base_offset, batch_length: len, partition_leader_epoch: ple, magic: 2,
                crc, attributes, last_offset_delta: lod, base_timestamp: bt, max_timestamp: mt,
                producer_id: pid, producer_epoch: pe, base_sequence: bs, record_count: rc };
            let parsed = BatchHeader::parse(&h.encode());
            prop_assert!(parsed.is_ok());
            prop_assert_eq!(parsed.ok(), Some(h));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = BatchHeader::parse(&bytes);
            for item in batches(&bytes) {
                let _ = item;
            }
        }
    }
}

/// A key and its value (`None`: a tombstone), as internal logs store them.
pub type KeyValue = (bytes::Bytes, Option<bytes::Bytes>);

/// One uncompressed v2 batch without a producer (producer id -1), one record per key, as the
/// coordinators write their internal logs. `Err` names what could not be encoded.
pub fn encode_keyed_batch(kvs: &[KeyValue], now_ms: i64) -> std::result::Result<bytes::Bytes, String> {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let mut records = Vec::with_capacity(kvs.len());
    for (i, (key, value)) in kvs.iter().enumerate() {
        let i = i32::try_from(i).map_err(|_| "too many records in one batch".to_string())?;
        records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            // The encoder starts a new batch whenever offset - sequence changes; this keeps one
            // batch with base sequence -1 (no producer).
            sequence: i - 1,
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        });
    }
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}
