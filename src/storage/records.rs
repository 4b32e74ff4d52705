//! The records inside a v2 batch, for the code that must look at them (the log cleaner, the
//! keyless check of compacted topics): a walk over an inflated records section that borrows
//! each record's bytes, and what a rewrite needs (a record re-based on a new base timestamp).
//!
//! Record layout (varints are zigzag): length varint, attributes i8, timestampDelta varlong,
//! offsetDelta varint, keyLength varint (-1 = null), key, valueLength varint (-1 = null), value,
//! header count varint, headers.

use crate::storage::batch::{BatchHeader, Compression, BATCH_HEADER_LEN};
use crate::storage::codec;
use crate::storage::decompress::MAX_UNCOMPRESSED_BATCH_BYTES;
use crate::storage::error::{Result, StorageError};

/// One record of an inflated records section.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordView<'a> {
    /// The whole record, its length prefix included.
    pub raw: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub value_is_null: bool,
    /// Where the offset delta starts in `raw` (after attributes and timestamp delta).
    offset_delta_at: usize,
    /// Where the body (attributes) starts in `raw`.
    body_at: usize,
}

impl RecordView<'_> {
    /// The record with its timestamp delta replaced (as needed when the batch's base timestamp
    /// changes), appended to `out`.
    pub(crate) fn encode_with_timestamp_delta(&self, timestamp_delta: i64, out: &mut Vec<u8>) {
        let attributes = self.raw.get(self.body_at).copied().unwrap_or(0);
        let tail = self.raw.get(self.offset_delta_at..).unwrap_or_default();
        let mut body = Vec::with_capacity(tail.len() + 11);
        body.push(attributes);
        put_varlong(timestamp_delta, &mut body);
        body.extend_from_slice(tail);
        put_varlong(i64::try_from(body.len()).unwrap_or(i64::MAX), out);
        out.extend_from_slice(&body);
    }
}

/// The records of an inflated records section, `count` of them (the batch's record count).
pub(crate) fn records(buf: &[u8], count: i32) -> RecordIter<'_> {
    RecordIter {
        buf,
        pos: 0,
        left: count.max(0),
    }
}

pub(crate) struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    left: i32,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let parsed = parse_record(self.buf, self.pos);
        match parsed {
            Ok((view, end)) => {
                self.pos = end;
                Some(Ok(view))
            }
            Err(e) => {
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}

fn corrupt(why: &str) -> StorageError {
    StorageError::CorruptRecord(format!("record: {why}"))
}

fn parse_record(buf: &[u8], start: usize) -> Result<(RecordView<'_>, usize)> {
    let mut pos = start;
    let length = get_varlong(buf, &mut pos).ok_or_else(|| corrupt("bad length"))?;
    let body_at = pos - start;
    let length = usize::try_from(length).map_err(|_| corrupt("negative length"))?;
    let end = pos
        .checked_add(length)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| corrupt("truncated"))?;
    let body = buf.get(..end).ok_or_else(|| corrupt("truncated"))?;
    pos += 1; // attributes
    let timestamp_delta = get_varlong(body, &mut pos).ok_or_else(|| corrupt("bad timestamp delta"))?;
    let offset_delta_at = pos - start;
    let offset_delta = get_varlong(body, &mut pos).ok_or_else(|| corrupt("bad offset delta"))?;
    let key_len = get_varlong(body, &mut pos).ok_or_else(|| corrupt("bad key length"))?;
    let key = if key_len < 0 {
        None
    } else {
        let len = usize::try_from(key_len).map_err(|_| corrupt("bad key length"))?;
        let key = body.get(pos..pos + len).ok_or_else(|| corrupt("key past the record"))?;
        pos += len;
        Some(key)
    };
    let value_len = get_varlong(body, &mut pos).ok_or_else(|| corrupt("bad value length"))?;
    let value = if value_len < 0 {
        None
    } else {
        let len = usize::try_from(value_len).map_err(|_| corrupt("bad value length"))?;
        Some(
            body.get(pos..pos + len)
                .ok_or_else(|| corrupt("value past the record"))?,
        )
    };
    let raw = buf.get(start..end).ok_or_else(|| corrupt("truncated"))?;
    Ok((
        RecordView {
            raw,
            timestamp_delta,
            offset_delta,
            key,
            value,
            value_is_null: value_len < 0,
            offset_delta_at,
            body_at,
        },
        end,
    ))
}

/// A zigzag varint/varlong at `*pos`, advancing it.
fn get_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw = 0u64;
    for i in 0..10u32 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Appends `v` as a zigzag varlong.
pub(crate) fn put_varlong(v: i64, out: &mut Vec<u8>) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// The inflated records section of a whole stored batch (capped like every inflation here).
pub(crate) fn inflate(batch: &[u8], h: &BatchHeader) -> Result<Vec<u8>> {
    let codec = h.compression()?;
    let payload = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
    codec::decompress(codec, payload, MAX_UNCOMPRESSED_BATCH_BYTES)
        .map_err(|e| StorageError::CorruptRecord(format!("batch at offset {}: {e}", h.base_offset)))
}

/// The index (within the batch) of the first record without a key, if any: a compacted topic
/// refuses such a batch (Kafka's INVALID_RECORD). Inflates compressed batches.
pub(crate) fn first_keyless_record(batch: &[u8], h: &BatchHeader) -> Result<Option<usize>> {
    let inflated = inflate(batch, h)?;
    for (i, record) in records(&inflated, h.record_count).enumerate() {
        if record?.key.is_none() {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Checks that every record of `records` (whole batches, as produced) has a key: a compacted
/// topic refuses the rest (Kafka's INVALID_RECORD, with its message).
pub fn check_keys(records: &[u8], topic_partition: &str) -> Result<()> {
    for item in crate::storage::batch::batches(records) {
        let (pos, h) = item?;
        let bytes = records.get(pos..pos + h.total_size()).unwrap_or_default();
        if first_keyless_record(bytes, &h)?.is_some() {
            return Err(StorageError::InvalidRecord(format!(
                "Compacted topic cannot accept message without key in topic partition {topic_partition}."
            )));
        }
    }
    Ok(())
}

/// The batches of `records` (as produced) in `target`'s codec, for a topic whose
/// compression.type is not `producer` (Kafka's recompression on append): a batch already in it
/// stays bytes as received; any other is checked (CRC, every record readable), inflated and
/// rebuilt in `target` with the same header fields (producer, sequence, timestamps) and a new
/// CRC. Offsets are assigned later by the log, as for any batch.
pub fn recompress(batches: bytes::Bytes, target: Compression, level: Option<i32>) -> Result<bytes::Bytes> {
    let mut all_in_target = true;
    for item in crate::storage::batch::batches(&batches) {
        all_in_target &= item?.1.compression()? == target;
    }
    if all_in_target {
        return Ok(batches);
    }
    let mut out = Vec::with_capacity(batches.len());
    for item in crate::storage::batch::batches(&batches) {
        let (pos, h) = item?;
        let bytes = batches.get(pos..pos + h.total_size()).unwrap_or_default();
        if h.compression()? == target {
            out.extend_from_slice(bytes);
            continue;
        }
        crate::storage::batch::verify_crc(&h, bytes)?;
        let inflated = inflate(bytes, &h)?;
        let mut end = 0usize;
        for record in records(&inflated, h.record_count) {
            let record = record?;
            end += record.raw.len();
        }
        let body = inflated.get(..end).unwrap_or_default();
        let payload = crate::storage::codec::compress(target, level, body)?;
        let header = BatchHeader {
            attributes: (h.attributes & !0x07) | target.attribute_bits(),
            ..h
        };
        out.extend_from_slice(&crate::storage::batch::assemble(&header, h.record_count, &payload)?);
    }
    Ok(bytes::Bytes::from(out))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn record(ts_delta: i64, offset_delta: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
        let mut body = vec![0u8];
        put_varlong(ts_delta, &mut body);
        put_varlong(offset_delta, &mut body);
        match key {
            Some(k) => {
                put_varlong(k.len() as i64, &mut body);
                body.extend_from_slice(k);
            }
            None => put_varlong(-1, &mut body),
        }
        match value {
            Some(v) => {
                put_varlong(v.len() as i64, &mut body);
                body.extend_from_slice(v);
            }
            None => put_varlong(-1, &mut body),
        }
        put_varlong(0, &mut body);
        let mut out = Vec::new();
        put_varlong(body.len() as i64, &mut out);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn walks_records_and_rebases_timestamps() -> Result<()> {
        let mut buf = record(5, 0, Some(b"k1"), Some(b"v"));
        buf.extend(record(-300, 1, None, Some(b"vv")));
        buf.extend(record(70_000, 2, Some(b"k3"), None));
        let views: Vec<_> = records(&buf, 3).collect::<Result<_>>()?;
        assert_eq!(views.len(), 3);
        assert_eq!((views[0].timestamp_delta, views[0].key), (5, Some(&b"k1"[..])));
        assert_eq!(
            (views[1].timestamp_delta, views[1].offset_delta, views[1].key),
            (-300, 1, None)
        );
        assert!(views[2].value_is_null && !views[0].value_is_null);
        let mut out = Vec::new();
        views[2].encode_with_timestamp_delta(-12_345_678_901, &mut out);
        let again: Vec<_> = records(&out, 1).collect::<Result<_>>()?;
        assert_eq!(again[0].timestamp_delta, -12_345_678_901);
        assert_eq!(
            (again[0].offset_delta, again[0].key, again[0].value_is_null),
            (2, Some(&b"k3"[..]), true)
        );
        // Truncated input is an error, never a panic.
        assert!(records(&buf[..buf.len() - 1], 3).any(|r| r.is_err()));
        assert!(records(&buf, 4).any(|r| r.is_err()));
        Ok(())
    }
}
