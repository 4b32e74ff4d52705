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

/// Appends one old-format message (magic 0 or 1) at `offset`: offset, size, CRC-32, magic,
/// attributes, timestamp (magic 1), key, value.
pub fn put_message(
    out: &mut Vec<u8>,
    offset: i64,
    magic: i8,
    attributes: i8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let size = 4 + 2 + if magic == 1 { 8 } else { 0 } + 8 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&i32::try_from(size).unwrap_or(i32::MAX).to_be_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(magic.to_be_bytes()[0]);
    out.push(attributes.to_be_bytes()[0]);
    if magic == 1 {
        out.extend_from_slice(&timestamp.to_be_bytes());
    }
    for field in [key, value] {
        match field {
            Some(b) => {
                out.extend_from_slice(&i32::try_from(b.len()).unwrap_or(i32::MAX).to_be_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let crc = crc32fast::hash(out.get(crc_at + 4..).unwrap_or_default());
    if let Some(slot) = out.get_mut(crc_at..crc_at + 4) {
        slot.copy_from_slice(&crc.to_be_bytes());
    }
}

/// What [`down_convert`] made of a fetch's batches.
#[derive(Debug)]
pub struct DownConverted {
    pub set: Bytes,
    /// Conversion stopped at a zstd batch, which the old formats cannot carry; if `set` is
    /// empty the fetch gets UNSUPPORTED_COMPRESSION_TYPE, as from Kafka before Fetch v10.
    pub stopped_at_zstd: bool,
}

/// Fetch v0-3's records: `batches` (whole v2 batches, as the log read them) as a message set of
/// `magic` (0 for Fetch v0-1, 1 for v2-3), as Kafka's down-conversion does it: control batches
/// are left out, and records before `fetch_offset`; headers go (the old formats have none). An
/// uncompressed batch becomes one message per record at its offset; a compressed one a wrapper
/// message in the same codec around its records (inner offsets relative to the first for magic
/// 1, absolute for magic 0; the wrapper at the last record's offset, with the batch's
/// timestamp type and max timestamp). Conversion stops before the set passes `max_bytes`
/// (the first message always goes), so memory is bounded by `max_bytes` plus one inflated
/// batch; the client's next fetch starts after the last message it got. Only the old clients
/// that ask for these versions pay for it.
pub fn down_convert(batches: &[u8], magic: i8, fetch_offset: i64, max_bytes: usize) -> Result<DownConverted> {
    let mut out = Vec::new();
    let done = |out: Vec<u8>, stopped_at_zstd| {
        Ok(DownConverted {
            set: Bytes::from(out),
            stopped_at_zstd,
        })
    };
    for item in batch::batches(batches) {
        // A partial batch at the end (a size-limited read) is not sent, as Kafka drops it.
        let Ok((pos, h)) = item else { break };
        let Some(raw) = batches.get(pos..pos + h.total_size()) else {
            break;
        };
        if h.is_control() || h.last_offset() < fetch_offset {
            continue;
        }
        let codec = h.compression()?;
        if codec == Compression::Zstd {
            return done(out, true);
        }
        let log_append = h.is_log_append_time();
        let ts_attr: i8 = if magic == 1 && log_append { 0x08 } else { 0 };
        let inflated = crate::storage::records::inflate(raw, &h)?;
        let mut inner = Vec::new();
        let mut first_kept: Option<i64> = None;
        let mut last_kept = -1;
        for record in crate::storage::records::records(&inflated, h.record_count) {
            let r = record?;
            let offset = h.base_offset + r.offset_delta;
            if offset < fetch_offset {
                continue;
            }
            let timestamp = if log_append {
                h.max_timestamp
            } else {
                h.base_timestamp + r.timestamp_delta
            };
            if codec == Compression::None {
                let before = out.len();
                put_message(&mut out, offset, magic, ts_attr, timestamp, r.key, r.value);
                if before > 0 && out.len() > max_bytes {
                    out.truncate(before);
                    return done(out, false);
                }
                continue;
            }
            let first = *first_kept.get_or_insert(offset);
            let inner_offset = if magic == 1 { offset - first } else { offset };
            put_message(&mut inner, inner_offset, magic, 0, timestamp, r.key, r.value);
            last_kept = offset;
        }
        if first_kept.is_some() {
            let packed = codec::compress(codec, None, &inner)?;
            let attributes = i8::try_from(codec.attribute_bits()).unwrap_or(0) | ts_attr;
            let before = out.len();
            put_message(
                &mut out,
                last_kept,
                magic,
                attributes,
                h.max_timestamp,
                None,
                Some(&packed),
            );
            if before > 0 && out.len() > max_bytes {
                out.truncate(before);
                return done(out, false);
            }
        }
        if out.len() >= max_bytes {
            break;
        }
    }
    done(out, false)
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
        let mut out = Vec::new();
        put_message(&mut out, offset, magic, attributes, ts, key, value);
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

    type ClientMessage = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>);

    /// (absolute offset, timestamp, key, value) of every message of an old set, unwrapping
    /// compressed wrappers as a client does (magic 1: relative inner offsets).
    fn client_view(set: &[u8]) -> Vec<ClientMessage> {
        let mut out = Vec::new();
        let mut c = Cursor { buf: set, pos: 0 };
        while c.pos < set.len() {
            let offset = c.i64().unwrap();
            let size = c.i32().unwrap() as usize;
            let m = c.take(size).unwrap();
            assert_eq!(crc32fast::hash(&m[4..]), u32::from_be_bytes(m[..4].try_into().unwrap()));
            let mut r = Cursor { buf: m, pos: 4 };
            let magic = r.i8().unwrap();
            let attributes = r.i8().unwrap();
            let ts = if magic == 1 { r.i64().unwrap() } else { -1 };
            let key = r.bytes().unwrap().map(<[u8]>::to_vec);
            let value = r.bytes().unwrap().map(<[u8]>::to_vec);
            let codec = Compression::from_attributes(i16::from(attributes) & 7).unwrap();
            if codec == Compression::None {
                out.push((offset, ts, key, value));
                continue;
            }
            let inner = codec::decompress(codec, &value.unwrap(), 1 << 20).unwrap();
            let msgs = client_view(&inner);
            let last_rel = msgs.last().unwrap().0;
            for (o, t, k, v) in msgs {
                let abs = if magic == 1 { offset - last_rel + o } else { o };
                out.push((abs, t, k, v));
            }
        }
        out
    }

    fn v2_batch(base_offset: i64, codec: Compression, n: i64, control: bool) -> Vec<u8> {
        let msgs: Vec<OldMessage> = (0..n)
            .map(|i| OldMessage {
                timestamp: 1000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: (i != 1).then(|| Bytes::from(format!("v{i}"))),
            })
            .collect();
        let b = to_batch(&msgs, codec).unwrap();
        let mut h = BatchHeader::parse(&b).unwrap();
        h.base_offset = base_offset;
        if control {
            h.attributes |= 0x20;
        }
        let payload = &b[BATCH_HEADER_LEN..];
        batch::assemble(&h, h.record_count, payload).unwrap()
    }

    #[test]
    fn v2_batches_go_down_to_magic_0_and_1_as_a_client_reads_them() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
        ] {
            let mut log = v2_batch(10, codec, 3, false);
            log.extend(v2_batch(13, Compression::None, 1, true)); // a control batch: left out
            log.extend(v2_batch(14, codec, 2, false));
            for magic in [0i8, 1] {
                let d = down_convert(&log, magic, 11, 1 << 20).unwrap();
                assert!(!d.stopped_at_zstd);
                let got = client_view(&d.set);
                let offsets: Vec<i64> = got.iter().map(|m| m.0).collect();
                assert_eq!(offsets, vec![11, 12, 14, 15], "{codec:?} magic {magic}");
                let ts = if magic == 1 { 1001 } else { -1 };
                assert_eq!(got[0], (11, ts, Some(b"k1".to_vec()), None), "{codec:?} magic {magic}");
                assert_eq!(got[1].3.as_deref(), Some(&b"v2"[..]));
                // The set goes back up as the same records.
                let (msgs, up_codec) = parse(&d.set).unwrap();
                assert_eq!(msgs.len(), 4);
                assert_eq!(up_codec, codec);
            }
        }
    }

    #[test]
    fn down_conversion_is_bounded_and_stops_at_zstd() {
        let mut log = v2_batch(0, Compression::None, 3, false);
        log.extend(v2_batch(3, Compression::Gzip, 3, false));
        // The first message always goes; then nothing past max_bytes.
        let one = down_convert(&log, 1, 0, 1).unwrap();
        assert_eq!(client_view(&one.set).len(), 1);
        let all = down_convert(&log, 1, 0, 1 << 20).unwrap();
        let three = down_convert(&log, 1, 0, all.set.len() - 1).unwrap();
        assert_eq!(client_view(&three.set).len(), 3, "the wrapper does not fit");
        // A partial batch at the end is dropped.
        let cut = down_convert(&log[..log.len() - 5], 1, 0, 1 << 20).unwrap();
        assert_eq!(client_view(&cut.set).len(), 3);
        // zstd: whatever came before, then a stop.
        let mut z = v2_batch(0, Compression::None, 1, false);
        z.extend(v2_batch(1, Compression::Zstd, 2, false));
        let d = down_convert(&z, 1, 0, 1 << 20).unwrap();
        assert!(d.stopped_at_zstd);
        assert_eq!(client_view(&d.set).len(), 1);
        let d = down_convert(&z, 1, 1, 1 << 20).unwrap();
        assert!(d.stopped_at_zstd && d.set.is_empty());
    }
}
