//! Compressing and inflating the records section of a v2 batch, for the few places that must
//! look inside or rewrite a batch: the log cleaner (a batch that lost records) and the keyless
//! record check of compacted topics. Inflation is capped like `decompress` (a CRC-valid batch may
//! be a "compression bomb"); compression writes what Kafka's own producers and broker write:
//! gzip, xerial-framed snappy (32 KiB blocks), LZ4 frames with independent 64 KiB blocks and no
//! checksums (what Kafka's `Lz4BlockOutputStream` emits), zstd frames.

use std::io::{self, Read, Write};

use crate::storage::batch::Compression;
use crate::storage::decompress::{capped, decompressor};

/// xerial-snappy's stream header: magic, version 1, compatible version 1.
const XERIAL_HEADER: &[u8] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// The block size of Java's `SnappyOutputStream`.
const SNAPPY_BLOCK: usize = 32 * 1024;

/// A codec's level (`compression.<codec>.level`), `None` for the codec's default.
pub type Level = Option<i32>;

/// Kafka's default levels: gzip's deflater default (6), LZ4 9 (KIP-390), zstd 3.
pub const GZIP_DEFAULT_LEVEL: i32 = 6;
pub const LZ4_DEFAULT_LEVEL: i32 = 9;
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

/// Compresses `records` (the encoded records of a batch) with `codec`.
pub fn compress(codec: Compression, level: Level, records: &[u8]) -> io::Result<Vec<u8>> {
    match codec {
        Compression::None => Ok(records.to_vec()),
        Compression::Gzip => {
            let level = level.unwrap_or(GZIP_DEFAULT_LEVEL).clamp(1, 9);
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(records.len() / 2),
                flate2::Compression::new(u32::try_from(level).unwrap_or(6)),
            );
            encoder.write_all(records)?;
            encoder.finish()
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(records.len() / 2 + XERIAL_HEADER.len());
            out.extend_from_slice(XERIAL_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            for block in records.chunks(SNAPPY_BLOCK) {
                let compressed = encoder.compress_vec(block).map_err(io::Error::other)?;
                let len = u32::try_from(compressed.len()).map_err(io::Error::other)?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        Compression::Lz4 => {
            let level = level.unwrap_or(LZ4_DEFAULT_LEVEL).clamp(1, 17);
            let mut encoder = lz4::EncoderBuilder::new()
                .level(u32::try_from(level).unwrap_or(9))
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::with_capacity(records.len() / 2))?;
            encoder.write_all(records)?;
            let (out, result) = encoder.finish();
            result.map(|()| out)
        }
        Compression::Zstd => zstd::bulk::compress(records, level.unwrap_or(ZSTD_DEFAULT_LEVEL)),
    }
}

/// Inflates `payload` (a batch's records section) into memory, failing past `cap` bytes.
pub fn decompress(codec: Compression, payload: &[u8], cap: usize) -> io::Result<Vec<u8>> {
    if codec == Compression::None {
        return Ok(payload.to_vec());
    }
    let mut out = Vec::new();
    capped(decompressor(codec, payload, cap)?, cap).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_is_capped() -> io::Result<()> {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, None, &data)?;
            assert_eq!(decompress(codec, &packed, data.len())?, data, "{codec:?}");
            if codec != Compression::None {
                assert!(packed.len() < data.len(), "{codec:?}");
                assert!(decompress(codec, &packed, data.len() - 1).is_err(), "{codec:?}");
            }
        }
        Ok(())
    }
}
