//! The old message formats (magic 0 and 1, Kafka's "message sets") that Produce v0-2 carries,
//! converted to one v2 batch on the way in (Kafka's up-conversion in `LogValidator`), so the log
//! only ever holds v2 batches and the modern hot path is untouched.
//!
//! A message set is a sequence of `offset i64, size i32, message`, a message being `crc u32
//! (CRC-32 of the rest), magic i8, attributes i8, timestamp i64 (magic 1 only), key bytes, value
//! bytes` (bytes: an i32 length, -1 = null). A compressed message (attributes bits 0-2) holds, as
//! its value, a compressed message set of the real messages. Timestamps: magic 0 has none (-1,
//! Kafka's NO_TIMESTAMP); magic 1 carries CreateTime per message, or, with attributes bit 3, the
//! wrapper's LogAppendTime. The v2 batch keeps the producer's codec (compression.type `producer`;
//! a topic codec recompresses it afterwards like any batch), has no producer id, and its records
//! take offset deltas 0..n in order.

use bytes::Bytes;

use crate::storage::batch::{self, BatchHeader, Compression, BATCH_HEADER_LEN};
use crate::storage::codec;
use crate::storage::decompress::MAX_UNCOMPRESSED_BATCH_BYTES;
use crate::storage::error::{Result, StorageError};
use crate::storage::records::put_varlong;

/// One message of an old-format set, after unwrapping compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldMessage {
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

fn corrupt(why: &str) -> StorageError {
    StorageError::CorruptRecord(format!("message set: {why}"))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let out = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| corrupt("truncated"))?;
        self.pos += n;
        Ok(out)
    }
    fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.take(1)?.try_into().map_err(|_| corrupt("i8"))?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| corrupt("i32"))?,
        ))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| corrupt("i64"))?,
        ))
    }
    fn bytes(&mut self) -> Result<Option<&'a [u8]>> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(usize::try_from(len).map_err(|_| corrupt("length"))?)?))
    }
}

/// The magic byte of the first message of `set` (byte 16 of an old set, as of a v2 batch).
pub fn magic_of(set: &[u8]) -> Option<i8> {
    set.get(16).map(|m| i8::from_be_bytes([*m]))
}

/// Every message of an old-format `set` (nested compressed sets unwrapped, one level as Kafka
/// allows), with the codec of the first compressed wrapper (`None` if none). A partial message
/// at the end (the way old clients fill a fetch) is not allowed on produce: an error.
pub fn parse(set: &[u8]) -> Result<(Vec<OldMessage>, Compression)> {
    let mut out = Vec::new();
    let mut codec = Compression::None;
    parse_into(set, &mut out, &mut codec, true)?;
    if out.is_empty() {
        return Err(StorageError::InvalidRecord("empty message set".into()));
    }
    Ok((out, codec))
}

fn parse_into(set: &[u8], out: &mut Vec<OldMessage>, codec: &mut Compression, outer: bool) -> Result<()> {
    let mut c = Cursor { buf: set, pos: 0 };
    while c.pos < set.len() {
        let _offset = c.i64()?;
        let size = usize::try_from(c.i32()?).map_err(|_| corrupt("negative message size"))?;
        let message = c.take(size)?;
        let mut m = Cursor { buf: message, pos: 0 };
        let crc = u32::from_be_bytes(m.take(4)?.try_into().map_err(|_| corrupt("crc"))?);
        if crc32fast::hash(message.get(4..).unwrap_or_default()) != crc {
            return Err(corrupt("CRC mismatch"));
        }
        let magic = m.i8()?;
        if !(0..=1).contains(&magic) {
            return Err(StorageError::InvalidRecord(format!(
                "message magic {magic} in a v0/v1 set"
            )));
        }
        let attributes = m.i8()?;
        let timestamp = if magic == 1 { m.i64()? } else { -1 };
        let key = m.bytes()?.map(Bytes::copy_from_slice);
        let value = m.bytes()?;
        let wrapped = Compression::from_attributes(i16::from(attributes) & 0x07)
            .ok_or_else(|| StorageError::InvalidRecord(format!("unknown codec in attributes {attributes}")))?;
        if wrapped == Compression::None {
            out.push(OldMessage {
                timestamp,
                key,
                value: value.map(Bytes::copy_from_slice),
            });
            continue;
        }
        if !outer || wrapped == Compression::Zstd {
            return Err(StorageError::InvalidRecord(
                "nested or zstd compression in a v0/v1 set".into(),
            ));
        }
        *codec = wrapped;
        let inner = codec::decompress(wrapped, value.unwrap_or_default(), MAX_UNCOMPRESSED_BATCH_BYTES)
            .map_err(|e| corrupt(&format!("inflating: {e}")))?;
        let first = out.len();
        parse_into(&inner, out, codec, false)?;
        // LogAppendTime on the wrapper (bit 3): every inner message takes its timestamp.
        if magic == 1 && attributes & 0x08 != 0 {
            for msg in out.iter_mut().skip(first) {
                msg.timestamp = timestamp;
            }
        }
    }
    Ok(())
}

/// One v2 batch (base offset 0, no producer) of `messages` compressed with `codec`.
pub fn to_batch(messages: &[OldMessage], codec: Compression) -> Result<Bytes> {
    let base_ts = messages.first().map_or(-1, |m| m.timestamp);
    let max_ts = messages.iter().map(|m| m.timestamp).max().unwrap_or(-1);
    let mut records = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let mut body = vec![0u8];
        put_varlong(m.timestamp.saturating_sub(base_ts), &mut body);
        put_varlong(i as i64, &mut body);
        for field in [&m.key, &m.value] {
            match field {
                Some(b) => {
                    put_varlong(b.len() as i64, &mut body);
                    body.extend_from_slice(b);
                }
                None => put_varlong(-1, &mut body),
            }
        }
        put_varlong(0, &mut body); // no headers
        put_varlong(body.len() as i64, &mut records);
        records.extend_from_slice(&body);
    }
    let count = i32::try_from(messages.len()).map_err(|_| StorageError::InvalidRecord("too many messages".into()))?;
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: codec.attribute_bits(),
        last_offset_delta: count - 1,
        base_timestamp: base_ts,
        max_timestamp: max_ts,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: count,
    };
    let payload = codec::compress(codec, None, &records)?;
    let out = batch::assemble(&header, count, &payload)?;
    debug_assert!(out.len() >= BATCH_HEADER_LEN);
    Ok(Bytes::from(out))
}

/// Produce v0-2's records: an old-format set (magic 0/1) converted to one v2 batch; a v2 batch
/// (clients may send one at those versions too) is returned as it is.
pub fn up_convert(set: Bytes) -> Result<Bytes> {
    match magic_of(&set) {
        Some(2) => Ok(set),
        Some(0 | 1) => {
            let (messages, codec) = parse(&set)?;
            to_batch(&messages, codec)
        }
        _ => Err(corrupt("no message")),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::records;

    /// An old-format message (magic 0 or 1) at `offset`.
    pub(crate) fn message(
        offset: i64,
        magic: i8,
        attributes: i8,
        ts: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut m = vec![magic as u8, attributes as u8];
        if magic == 1 {
            m.extend_from_slice(&ts.to_be_bytes());
        }
        for f in [key, value] {
            match f {
                Some(b) => {
                    m.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    m.extend_from_slice(b);
                }
                None => m.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        let mut out = offset.to_be_bytes().to_vec();
        out.extend_from_slice(&((m.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
        out.extend_from_slice(&m);
        out
    }

    fn read_back(batch: &Bytes) -> Vec<(i64, i64, Option<Vec<u8>>, bool)> {
        let h = BatchHeader::parse(batch).unwrap();
        batch::verify_crc(&h, batch).unwrap();
        let inflated = records::inflate(batch, &h).unwrap();
        records::records(&inflated, h.record_count)
            .map(|r| {
                let r = r.unwrap();
                (
                    r.offset_delta,
                    h.base_timestamp + r.timestamp_delta,
                    r.key.map(<[u8]>::to_vec),
                    r.value_is_null,
                )
            })
            .collect()
    }

    #[test]
    fn plain_and_compressed_sets_become_one_v2_batch() {
        // Magic 0, uncompressed.
        let mut set = message(0, 0, 0, 0, Some(b"k0"), Some(b"v0"));
        set.extend(message(1, 0, 0, 0, None, Some(b"v1")));
        let batch = up_convert(Bytes::from(set)).unwrap();
        assert_eq!(
            read_back(&batch),
            vec![(0, -1, Some(b"k0".to_vec()), false), (1, -1, None, false)]
        );
        // Magic 1 gzip and snappy wrappers with CreateTime inner messages and a null value.
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
            let mut inner = message(0, 1, 0, 1000, Some(b"a"), Some(b"x"));
            inner.extend(message(1, 1, 0, 1005, Some(b"b"), None));
            let packed = codec::compress(codec, None, &inner).unwrap();
            let wrapper = message(1, 1, codec.attribute_bits() as i8, 1005, None, Some(&packed));
            let batch = up_convert(Bytes::from(wrapper)).unwrap();
            let h = BatchHeader::parse(&batch).unwrap();
            assert_eq!(
                (h.compression().unwrap(), h.record_count, h.max_timestamp),
                (codec, 2, 1005)
            );
            assert_eq!(
                read_back(&batch),
                vec![
                    (0, 1000, Some(b"a".to_vec()), false),
                    (1, 1005, Some(b"b".to_vec()), true)
                ]
            );
        }
        // A v2 batch passes through; a bad CRC is CORRUPT, never a panic.
        assert_eq!(up_convert(batch.clone()).unwrap(), batch);
        let mut bad = message(0, 1, 0, 5, None, Some(b"v"));
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            up_convert(Bytes::from(bad)),
            Err(StorageError::CorruptRecord(_))
        ));
        for cut in 0..20 {
            let set = message(0, 1, 0, 5, Some(b"key"), Some(b"value"));
            let _ = up_convert(Bytes::from(set[..cut.min(set.len())].to_vec()));
        }
    }
}
