//! Reads that leave the log's lock before their I/O ([`ReadPlan`]), and the record lookup by
//! timestamp inside a stored batch (ListOffsets).

use std::path::Path;

use crate::storage::batch::BatchHeader;
use crate::storage::decompress::{self, MAX_UNCOMPRESSED_BATCH_BYTES};
use crate::storage::error::{Result, StorageError};
use crate::storage::log::{FetchDataInfo, TimestampOffset};
use crate::storage::segment::SegmentReader;

/// A read of the log prepared by [`UnifiedLog::read_plan`], run without the log.
#[derive(Debug)]
pub struct ReadPlan {
    fetch_offset: i64,
    max_bytes: usize,
    max_offset: i64,
    min_one_message: bool,
    segments: Vec<SegmentReader>,
}

impl ReadPlan {
    pub(crate) fn new(fetch_offset: i64, max_bytes: usize, max_offset: i64, min_one_message: bool) -> Self {
        ReadPlan {
            fetch_offset,
            max_bytes,
            max_offset,
            min_one_message,
            segments: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, segment: SegmentReader) {
        self.segments.push(segment);
    }

    pub(crate) fn len(&self) -> usize {
        self.segments.len()
    }

    /// The batches (see [`UnifiedLog::read`]). A segment cut shorter meanwhile (a truncation)
    /// reads as nothing: the caller's next read sees the log as it is now.
    pub fn read(&self) -> Result<FetchDataInfo> {
        for seg in &self.segments {
            match seg.read(self.fetch_offset, self.max_bytes, self.max_offset, self.min_one_message) {
                Ok(Some(records)) => return Ok(FetchDataInfo { records }),
                Ok(None) => {}
                Err(StorageError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        Ok(FetchDataInfo::default())
    }
}

/// The first record of a stored batch at offset >= `min_offset` whose timestamp satisfies `want`.
///
/// Compressed batches are stored unread, so a client can store one that inflates past
/// `MAX_UNCOMPRESSED_BATCH_BYTES` (a bomb) or does not decode at all. Such a batch is answered at
/// batch level, with a warning, instead of failing the partition's ListOffsets: as for a
/// LogAppendTime batch, every record is taken to carry the batch's max timestamp, so the answer
/// is the batch's first offset (>= `min_offset`), never later than the true one.
pub(crate) fn first_record(
    dir: &Path,
    bytes: &[u8],
    h: &BatchHeader,
    min_offset: i64,
    want: impl Fn(i64) -> bool,
) -> Option<TimestampOffset> {
    let hit = |timestamp, offset| TimestampOffset {
        timestamp,
        offset,
        leader_epoch: h.partition_leader_epoch,
    };
    let batch_level = || {
        let offset = h.base_offset.max(min_offset);
        (want(h.max_timestamp) && offset <= h.last_offset()).then(|| hit(h.max_timestamp, offset))
    };
    if h.is_log_append_time() {
        return batch_level();
    }
    let found = decompress::find_record(bytes, h, MAX_UNCOMPRESSED_BATCH_BYTES, |offset, ts| {
        offset >= min_offset && want(ts)
    });
    match found {
        Ok(found) => found.map(|(offset, timestamp)| hit(timestamp, offset)),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), base_offset = h.base_offset, error = %e,
                "unreadable records, answering ListOffsets at batch level");
            batch_level()
        }
    }
}
