//! Transaction markers: the control batches the transaction coordinator writes to each partition
//! of a transaction to commit or abort it (`UnifiedLog::append_marker`, replayed at recovery).
//!
//! A marker is a v2 batch with the transactional and control attributes, the transaction's
//! producer id and epoch, no sequence, and one record (Kafka's `EndTxnMarker`): key
//! `i16 version = 0, i16 type` (0 = abort, 1 = commit), value `i16 version = 0,
//! i32 coordinator epoch`. Batches are built by kafka-protocol's encoder (as the offsets log's
//! are), so the CRC and record framing are the crate's, not ours.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression as WireCompression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::storage::batch::BatchHeader;
use crate::storage::error::{Result, StorageError};

/// What a marker decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerType {
    /// The transaction's records are aborted (read_committed consumers skip them).
    Abort,
    /// The transaction's records are committed.
    Commit,
}

impl MarkerType {
    fn code(self) -> i16 {
        match self {
            MarkerType::Abort => 0,
            MarkerType::Commit => 1,
        }
    }
}

/// A decoded transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub marker: MarkerType,
    pub coordinator_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Builds a marker batch (base offset 0: the log assigns offsets on append).
pub fn encode_end_txn_marker(m: &EndTxnMarker, timestamp_ms: i64) -> Result<Bytes> {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(m.marker.code());
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(m.coordinator_epoch);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: timestamp_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: WireCompression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options)
        .map_err(|e| StorageError::InvalidRecord(format!("cannot encode a transaction marker: {e}")))?;
    Ok(buf.freeze())
}

/// Reads the marker of a control batch (`batch` holds exactly one whole batch). Errors for a
/// batch that is not a control batch or whose record is not a v0 marker.
pub fn decode_end_txn_marker(batch: &[u8]) -> Result<EndTxnMarker> {
    let bad = |why: &str| StorageError::CorruptRecord(format!("transaction marker: {why}"));
    let header = BatchHeader::parse(batch)?;
    if !header.is_control() {
        return Err(bad("not a control batch"));
    }
    let mut buf = Bytes::copy_from_slice(batch);
    let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| bad(&e.to_string()))?;
    let record = sets
        .into_iter()
        .flat_map(|s| s.records)
        .next()
        .ok_or_else(|| bad("no record"))?;
    let mut key = record.key.ok_or_else(|| bad("no key"))?;
    let mut value = record.value.ok_or_else(|| bad("no value"))?;
    if key.remaining() < 4 || value.remaining() < 6 {
        return Err(bad("key or value too short"));
    }
    if key.get_i16() != 0 || value.get_i16() != 0 {
        return Err(bad("unknown marker version"));
    }
    let marker = match key.get_i16() {
        0 => MarkerType::Abort,
        1 => MarkerType::Commit,
        other => return Err(bad(&format!("unknown control type {other}"))),
    };
    Ok(EndTxnMarker {
        marker,
        coordinator_epoch: value.get_i32(),
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::verify_crc;

    #[test]
    fn markers_round_trip_with_kafkas_attributes() -> Result<()> {
        for marker in [MarkerType::Commit, MarkerType::Abort] {
            let m = EndTxnMarker {
                marker,
                coordinator_epoch: 7,
                producer_id: 4242,
                producer_epoch: 3,
            };
            let bytes = encode_end_txn_marker(&m, 1_700_000_000_000)?;
            let header = BatchHeader::parse(&bytes)?;
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (4242, 3));
            assert_eq!(header.record_count, 1);
            assert_eq!(header.base_sequence, -1);
            assert_eq!(header.total_size(), bytes.len());
            verify_crc(&header, &bytes)?;
            assert_eq!(decode_end_txn_marker(&bytes)?, m);
        }
        Ok(())
    }

    #[test]
    fn data_batches_and_garbage_are_not_markers() -> Result<()> {
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: WireCompression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [&record], &options)
            .map_err(|e| StorageError::InvalidRecord(e.to_string()))?;
        assert!(decode_end_txn_marker(&buf).is_err());
        assert!(decode_end_txn_marker(b"short").is_err());
        Ok(())
    }
}
