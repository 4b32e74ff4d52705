//! The buffer responses are encoded into: a rope that copies small fields and keeps large
//! record sets by reference.
//!
//! A fetch response is mostly record batches read from the log. Encoding it into one
//! contiguous buffer would copy every fetched byte once more; instead, record sets registered
//! with [`ResponseBuf::share`] are recognised when the encoder writes them (`put_slice` with
//! the very same pointer and length) and kept as `Bytes` pieces. The connection then writes the
//! pieces in order. The kafka-protocol encoder never seeks back or patches gaps when encoding
//! messages (only the record-batch encoder does, and responses do not use it), so a rope is
//! enough: `seek` and `range` work within the piece being written.
//!
//! The one `unsafe` here is the `BufMut` implementation, which forwards to `BytesMut`.
#![allow(unsafe_code)]

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Record sets smaller than this are copied: a separate piece is not worth it.
const MIN_SHARED_BYTES: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct ResponseBuf {
    /// Finished pieces, in order.
    pieces: Vec<Bytes>,
    /// Bytes in `pieces`.
    pieces_len: usize,
    /// The piece being written.
    head: BytesMut,
    /// Record sets the encoder may write, kept by reference when it does.
    shared: Vec<Bytes>,
}

impl ResponseBuf {
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the buffer, keeping the head's capacity for the next response.
    pub fn clear(&mut self) {
        self.pieces.clear();
        self.pieces_len = 0;
        self.shared.clear();
        self.head.clear();
    }

    /// Lets `bytes` be referenced rather than copied when the encoder writes it.
    pub fn share(&mut self, bytes: &Bytes) {
        if bytes.len() >= MIN_SHARED_BYTES {
            self.shared.push(bytes.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.pieces_len + self.head.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity held between responses.
    pub fn capacity(&self) -> usize {
        self.head.capacity()
    }

    /// Reserves room in the piece being written.
    pub fn reserve(&mut self, additional: usize) {
        self.head.reserve(additional);
    }

    /// The response, piece by piece, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.pieces
            .iter()
            .map(|b| b.as_ref())
            .chain(std::iter::once(self.head.as_ref()))
    }

    fn finish_head(&mut self) {
        if !self.head.is_empty() {
            let done = self.head.split().freeze();
            self.pieces_len += done.len();
            self.pieces.push(done);
        }
    }
}

// SAFETY: every method forwards to the head `BytesMut`, which upholds `BufMut`'s contract;
// `put_slice` only appends whole pieces or forwards.
unsafe impl BufMut for ResponseBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut()`, which is the head's.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= MIN_SHARED_BYTES {
            let found = self
                .shared
                .iter()
                .find(|b| std::ptr::eq(b.as_ptr(), src.as_ptr()) && b.len() == src.len())
                .cloned();
            if let Some(piece) = found {
                self.finish_head();
                self.pieces_len += piece.len();
                self.pieces.push(piece);
                return;
            }
        }
        self.head.extend_from_slice(src);
    }
}

impl ByteBufMut for ResponseBuf {
    fn offset(&self) -> usize {
        self.len()
    }

    fn seek(&mut self, offset: usize) {
        // Within the head only (see the module note); earlier offsets are never revisited.
        let within = offset.saturating_sub(self.pieces_len);
        self.head.resize(within, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.pieces_len);
        let end = r.end.saturating_sub(self.pieces_len);
        match self.head.get_mut(start..end) {
            Some(slice) => slice,
            None => &mut [],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Encodable;

    /// The rope holds exactly what a contiguous encode produces, with big record sets shared.
    #[test]
    fn rope_matches_contiguous_encoding() -> anyhow::Result<()> {
        let big = Bytes::from(vec![7u8; 100_000]);
        let small = Bytes::from(vec![9u8; 100]);
        let resp =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default().with_partitions(vec![
                PartitionData::default().with_records(Some(big.clone())),
                PartitionData::default()
                    .with_partition_index(1)
                    .with_records(Some(small.clone())),
                PartitionData::default()
                    .with_partition_index(2)
                    .with_records(Some(big.clone())),
            ])]);
        for version in [4i16, 11, 12, 16] {
            let mut flat = BytesMut::new();
            resp.encode(&mut flat, version)?;
            let mut rope = ResponseBuf::new();
            rope.share(&big);
            rope.share(&small);
            resp.encode(&mut rope, version)?;
            let joined: Vec<u8> = rope.pieces().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(joined, flat.to_vec(), "v{version}");
            assert!(
                rope.pieces.iter().any(|p| std::ptr::eq(p.as_ptr(), big.as_ptr())),
                "shared, not copied"
            );
            rope.clear();
            assert!(rope.is_empty());
        }
        Ok(())
    }
}
