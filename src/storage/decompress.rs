//! Capped, streaming reads of the records inside one stored batch, for ListOffsets by timestamp
//! and by max timestamp (everything else serves batches as bytes and never looks inside).
//!
//! The broker does not decompress on produce, so a client can store a CRC-valid "compression
//! bomb" (a 1 MB zstd batch that inflates to gigabytes) or plain garbage. Here each codec is read
//! as a stream that fails once more than `max_uncompressed_bytes` come out, and the records are
//! walked one at a time: only length, timestamp delta and offset delta are parsed, keys, values
//! and headers are skipped, and the walk stops at the first match. Memory is the codecs' own
//! buffers (gzip's 32 KiB window, an LZ4 block of at most 4 MiB, one snappy block and the zstd
//! window, both held to the cap), whatever the output claims. `kafka_protocol`'s
//! `RecordBatchDecoder` is not used: it inflates without a cap and then builds a `Record` (plus a
//! header map) per record, ~20-40x the decompressed size for tiny records.
//!
//! The cap, `MAX_UNCOMPRESSED_BATCH_BYTES`, is a fixed 64 MiB. It bounds the CPU one lookup can
//! burn (inflating 64 MiB takes well under a second) and the largest single allocation. It is not
//! derived from max.message.bytes because a client can raise that per topic with AlterConfigs.
//! 64 MiB is 64x the default max.message.bytes, beyond the ratios real producers reach on batches
//! that size; a batch over it is still answered, at batch level (see `log::first_record`).

use std::io::{self, BufReader, Read};

use flate2::read::MultiGzDecoder;

use crate::storage::batch::{BatchHeader, Compression, BATCH_HEADER_LEN};
use crate::storage::error::{Result, StorageError};

/// The most bytes one batch may inflate to before we stop reading it.
pub(crate) const MAX_UNCOMPRESSED_BATCH_BYTES: usize = 64 << 20;

/// xerial-snappy framing (what Kafka's Java client writes): this magic, two 4-byte versions, then
/// blocks of a big-endian u32 length and raw snappy bytes.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// (offset, timestamp) of the first record of `batch` (a whole stored v2 batch, header included)
/// for which `want(offset, timestamp)` holds. `CorruptRecord` when the records cannot be read or
/// would inflate past `max_uncompressed_bytes`.
pub(crate) fn find_record(
    batch: &[u8],
    h: &BatchHeader,
    max_uncompressed_bytes: usize,
    mut want: impl FnMut(i64, i64) -> bool,
) -> Result<Option<(i64, i64)>> {
    let corrupt = |why: String| StorageError::CorruptRecord(format!("batch at offset {}: {why}", h.base_offset));
    let codec = h.compression().map_err(|e| corrupt(e.to_string()))?;
    let payload = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
    let stream = decompressor(codec, payload, max_uncompressed_bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut records = BufReader::new(Capped {
        inner: stream,
        left: max_uncompressed_bytes,
        cap: max_uncompressed_bytes,
    });
    for _ in 0..h.record_count {
        let (offset_delta, timestamp_delta) = next_record(&mut records).map_err(|e| corrupt(e.to_string()))?;
        let offset = h.base_offset.saturating_add(offset_delta);
        let timestamp = h.base_timestamp.saturating_add(timestamp_delta);
        if want(offset, timestamp) {
            return Ok(Some((offset, timestamp)));
        }
    }
    Ok(None)
}

pub(crate) fn decompressor<'a>(codec: Compression, payload: &'a [u8], cap: usize) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Compression::None => Box::new(payload),
        // Java's GZIPInputStream reads concatenated members, so we do too.
        Compression::Gzip => Box::new(MultiGzDecoder::new(payload)),
        Compression::Snappy => Box::new(Snappy::new(payload, cap)),
        Compression::Lz4 => Box::new(lz4::Decoder::new(payload)?),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(payload)?;
            // A window larger than the cap is of no use, and a frame may claim up to 2^31 bytes.
            let window_log = (usize::BITS - cap.saturating_sub(1).leading_zeros()).clamp(10, 27);
            decoder.window_log_max(window_log)?;
            Box::new(decoder)
        }
    })
}

/// Reads a v2 record's (offset delta, timestamp delta) and skips the rest of it.
fn next_record(r: &mut impl Read) -> io::Result<(i64, i64)> {
    let (length, _) = read_varlong(r)?;
    let mut attributes = [0u8; 1];
    r.read_exact(&mut attributes)?;
    let (timestamp_delta, ts_len) = read_varlong(r)?;
    let (offset_delta, offset_len) = read_varlong(r)?;
    let rest = u64::try_from(length)
        .ok()
        .and_then(|l| l.checked_sub(1 + ts_len + offset_len))
        .ok_or_else(|| invalid(format!("record length {length} is too small")))?;
    if io::copy(&mut r.by_ref().take(rest), &mut io::sink())? != rest {
        return Err(invalid("records end inside a record".into()));
    }
    Ok((offset_delta, timestamp_delta))
}

/// A zigzag varint of up to 10 bytes (Kafka's varint and varlong): (value, bytes read).
fn read_varlong(r: &mut impl Read) -> io::Result<(i64, u64)> {
    let mut raw = 0u64;
    for i in 0..10u32 {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte)?;
        let [b] = byte;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), u64::from(i) + 1));
        }
    }
    Err(invalid("varint longer than 10 bytes".into()))
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

fn over_cap(cap: usize) -> io::Error {
    invalid(format!("records inflate past the cap of {cap} bytes"))
}

/// `inner`, failing once more than `cap` bytes come out of it.
pub(crate) fn capped<R: Read>(inner: R, cap: usize) -> impl Read {
    Capped { inner, left: cap, cap }
}

/// Passes through at most `cap` bytes and fails, rather than ending, when there are more.
struct Capped<R> {
    inner: R,
    left: usize,
    cap: usize,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the budget tells "more output" apart from the end of the stream.
        let (head, _) = buf.split_at_mut(buf.len().min(self.left.saturating_add(1)));
        let n = self.inner.read(head)?;
        self.left = self.left.checked_sub(n).ok_or_else(|| over_cap(self.cap))?;
        Ok(n)
    }
}

/// Kafka's snappy: xerial-framed, or (accepted like the Java client does) one raw block. Each
/// block is inflated on its own after checking its declared length against the cap.
struct Snappy<'a> {
    rest: &'a [u8],
    raw: bool,
    block: Vec<u8>,
    pos: usize,
    cap: usize,
}

impl<'a> Snappy<'a> {
    fn new(payload: &'a [u8], cap: usize) -> Self {
        let raw = !payload.starts_with(XERIAL_MAGIC);
        let rest = if raw {
            payload
        } else {
            payload.get(XERIAL_HEADER_LEN..).unwrap_or_default()
        };
        Self {
            rest,
            raw,
            block: Vec::new(),
            pos: 0,
            cap,
        }
    }

    /// Inflates the next block (`rest` is not empty).
    fn next_block(&mut self) -> io::Result<()> {
        let compressed = if self.raw {
            std::mem::take(&mut self.rest)
        } else {
            let (len, tail) = self
                .rest
                .split_first_chunk::<4>()
                .ok_or_else(|| invalid("truncated snappy block length".into()))?;
            let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
            let (block, tail) = tail
                .split_at_checked(len)
                .ok_or_else(|| invalid("truncated snappy block".into()))?;
            self.rest = tail;
            block
        };
        if compressed.is_empty() {
            return Err(invalid("empty snappy block".into()));
        }
        let len = snap::raw::decompress_len(compressed).map_err(io::Error::other)?;
        if len > self.cap {
            return Err(over_cap(self.cap));
        }
        self.block = vec![0; len];
        self.pos = 0;
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(io::Error::other)?;
        Ok(())
    }
}

impl Read for Snappy<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.block.get(self.pos..).unwrap_or_default();
            if !ready.is_empty() || out.is_empty() {
                let n = ready.read(out)?;
                self.pos = self.pos.saturating_add(n);
                return Ok(n);
            }
            if self.rest.is_empty() {
                return Ok(0);
            }
            self.next_block()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression as Codec, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use proptest::test_runner::TestCaseError;

    use super::*;
    use crate::storage::batch::compute_crc;
    use crate::storage::log::tests::{open, NOW};
    use crate::storage::LogConfig;

    const CODECS: [Codec; 5] = [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

    fn record(offset: i64, timestamp: i64, value: Bytes) -> Record {
        Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: i32::try_from(offset).unwrap_or_default() - 1,
            timestamp,
            key: (offset % 3 == 0).then(|| Bytes::from(format!("key-{offset}"))),
            value: Some(value),
            headers: if offset % 4 == 0 {
                [(StrBytes::from_static_str("h"), Some(Bytes::from_static(b"v")))].into()
            } else {
                Default::default()
            },
            delete_horizon: false,
        }
    }

    fn encode(records: &[Record], compression: Codec) -> anyhow::Result<(Vec<u8>, BatchHeader)> {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )?;
        let h = BatchHeader::parse(&buf)?;
        assert_eq!(h.total_size(), buf.len(), "one batch");
        Ok((buf.to_vec(), h))
    }

    /// Every (offset, timestamp) `find_record` walks past when nothing matches.
    fn walk(batch: &[u8], h: &BatchHeader, cap: usize) -> Result<Vec<(i64, i64)>> {
        let mut seen = Vec::new();
        let found = find_record(batch, h, cap, |o, t| {
            seen.push((o, t));
            false
        })?;
        assert_eq!(found, None);
        Ok(seen)
    }

    /// The same records as a raw (unframed) snappy batch, which the Java client also accepts.
    fn raw_snappy(plain: &[u8], mut h: BatchHeader) -> anyhow::Result<(Vec<u8>, BatchHeader)> {
        let (header, records) = plain.split_at(BATCH_HEADER_LEN);
        let mut batch = header.to_vec();
        batch.extend(snap::raw::Encoder::new().compress_vec(records)?);
        h.attributes = (h.attributes & !7) | 2;
        Ok((batch, h))
    }

    #[test]
    fn every_codec_reads_what_kafka_protocol_decodes() -> anyhow::Result<()> {
        let records: Vec<Record> = (0..50)
            .map(|i| {
                record(
                    i,
                    1_000 + (i * 7) % 13,
                    Bytes::from(vec![b'a'; (i * 37 % 300) as usize]),
                )
            })
            .collect();
        for codec in CODECS {
            let (batch, h) = encode(&records, codec)?;
            let oracle = RecordBatchDecoder::decode(&mut Bytes::from(batch.clone()))?;
            let want: Vec<(i64, i64)> = oracle.records.iter().map(|r| (r.offset, r.timestamp)).collect();
            assert_eq!(walk(&batch, &h, MAX_UNCOMPRESSED_BATCH_BYTES)?, want, "{codec:?}");
            let first_late = find_record(&batch, &h, MAX_UNCOMPRESSED_BATCH_BYTES, |o, t| o >= 10 && t >= 1_010)?;
            assert_eq!(first_late, Some((11, 1_012)), "{codec:?}");
            if codec == Codec::None {
                let (raw, raw_h) = raw_snappy(&batch, h)?;
                assert_eq!(walk(&raw, &raw_h, MAX_UNCOMPRESSED_BATCH_BYTES)?, want, "raw snappy");
            }
        }
        Ok(())
    }

    #[test]
    fn bombs_stop_at_the_cap() -> anyhow::Result<()> {
        let (cap, bomb_len) = (2 << 20, 16 << 20);
        let records = [
            record(1, 2_000, Bytes::from(vec![0; bomb_len])),
            record(2, 2_010, Bytes::new()),
        ];
        let mut bombs = Vec::new();
        for codec in CODECS {
            let (batch, h) = encode(&records, codec)?;
            if codec == Codec::None {
                bombs.push(raw_snappy(&batch, h)?);
            }
            bombs.push((batch, h));
        }
        for (batch, h) in &bombs {
            let late = |_: i64, t: i64| t >= 2_005;
            let err = find_record(batch, h, cap, late)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("past the cap"), "{:?}: {err}", h.compression());
            // The same batch reads fine under a cap it fits in: it is the cap that stopped it.
            assert_eq!(find_record(batch, h, bomb_len * 2, late)?, Some((2, 2_010)));
        }
        Ok(())
    }

    #[test]
    fn truncated_records_are_errors_not_panics() -> anyhow::Result<()> {
        let records: Vec<Record> = (0..20)
            .map(|i| record(i, 5_000 + i, Bytes::from_static(b"value")))
            .collect();
        for codec in CODECS {
            let (batch, h) = encode(&records, codec)?;
            for cut in BATCH_HEADER_LEN..batch.len() {
                // Only a cut in a codec's trailer (checksum, end mark) leaves every record readable.
                if let Ok(seen) = walk(batch.get(..cut).unwrap_or_default(), &h, 1 << 20) {
                    assert_eq!(seen.len(), records.len(), "{codec:?} cut at {cut}");
                }
            }
        }
        Ok(())
    }

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push(z as u8 | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// A record's bytes up to its value (no key), for a value of `value_len` bytes and no headers.
    fn record_head(timestamp_delta: i64, offset_delta: i64, value_len: usize) -> Vec<u8> {
        let mut body = vec![0];
        for v in [timestamp_delta, offset_delta, -1, value_len as i64] {
            put_varint(&mut body, v);
        }
        let mut out = Vec::new();
        put_varint(&mut out, (body.len() + value_len + 1) as i64);
        out.extend(body);
        out
    }

    /// A header for `record_count` records from NOW to NOW + 10 and a `payload_len`-byte payload.
    fn header(attributes: i16, record_count: i32, payload_len: usize) -> anyhow::Result<BatchHeader> {
        Ok(BatchHeader {
            base_offset: 0,
            batch_length: i32::try_from(BATCH_HEADER_LEN - 12 + payload_len)?,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes,
            last_offset_delta: record_count - 1,
            base_timestamp: NOW,
            max_timestamp: NOW + 10,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count,
        })
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(
            codec in 0i16..8,
            xerial in proptest::bool::ANY,
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            count in 0i32..100,
        ) {
            let h = header(codec, count, payload.len()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let prefix: &[u8] = if xerial { b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01" } else { b"" };
            let batch = [&h.encode()[..], prefix, &payload].concat();
            let _ = find_record(&batch, &h, 1 << 16, |_, _| false);
        }
    }

    #[test]
    fn list_offsets_on_a_stored_zstd_bomb_answers_at_batch_level() -> anyhow::Result<()> {
        // Record 0 holds a value of zeros 1 MiB past the cap, streamed into zstd (a few KiB out).
        let bomb_len = MAX_UNCOMPRESSED_BATCH_BYTES + (1 << 20);
        let mut zstd = zstd::stream::Encoder::new(Vec::new(), 1)?;
        zstd.write_all(&record_head(0, 0, bomb_len))?;
        io::copy(&mut io::repeat(0).take(bomb_len as u64), &mut zstd)?;
        zstd.write_all(&[0])?;
        zstd.write_all(&[record_head(10, 1, 0), vec![0]].concat())?;
        let payload = zstd.finish()?;
        let h = header(4, 2, payload.len())?;
        let crc = compute_crc(&[&h.encode()[..], &payload].concat());
        let h = BatchHeader { crc, ..h };
        let batch = [&h.encode()[..], &payload].concat();
        let err = find_record(&batch, &h, MAX_UNCOMPRESSED_BATCH_BYTES, |_, _| false).err();
        assert!(err.is_some_and(|e| e.to_string().contains("past the cap")));

        let dir = tempfile::tempdir()?;
        let mut log = open(dir.path(), LogConfig::default(), true)?;
        log.append_as_leader(Bytes::from(batch), 3, NOW)?;
        // The true answer is offset 1; the batch-level one is the batch's first offset.
        let at = |t: Option<crate::storage::TimestampOffset>| t.map(|t| (t.offset, t.timestamp));
        assert_eq!(at(log.fetch_offset_by_timestamp(NOW + 5)?), Some((0, NOW + 10)));
        assert_eq!(at(log.offset_of_max_timestamp()?), Some((0, NOW + 10)));
        assert_eq!(at(log.fetch_offset_by_timestamp(NOW + 11)?), None);

        // A well-formed zstd batch after it is still answered record by record.
        let records: Vec<Record> = (0..3)
            .map(|i| record(i, NOW + 20 + i, Bytes::from_static(b"v")))
            .collect();
        log.append_as_leader(Bytes::from(encode(&records, Codec::Zstd)?.0), 3, NOW)?;
        assert_eq!(at(log.fetch_offset_by_timestamp(NOW + 21)?), Some((3, NOW + 21)));
        assert_eq!(at(log.offset_of_max_timestamp()?), Some((4, NOW + 22)));
        Ok(())
    }
}
