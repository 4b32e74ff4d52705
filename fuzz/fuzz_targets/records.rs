//! The record-batch validator and the log behind it: any bytes as the records of a Produce
//! partition, appended as the leader would (validation, idempotent producer checks, offsets,
//! the write), then read back, and looked up by timestamp (which decompresses records).
//!
//! The first byte chooses a mode: odd means the target rewrites each batch's CRC first, so the
//! fuzzer explores what lies past the checksum (codecs, record counts, producer state).
#![no_main]

use std::sync::Mutex;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::storage::{LogConfig, UnifiedLog};

const NOW: i64 = 1_700_000_000_000;

struct Target {
    _dir: tempfile::TempDir,
    log: UnifiedLog,
}

static TARGET: Mutex<Option<Target>> = Mutex::new(None);

fn open() -> Target {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let log = UnifiedLog::open(dir.path().join("fuzz-0"), config, true, NOW).expect("a new log");
    Target { _dir: dir, log }
}

/// Sets the CRC32C of every whole batch in `buf` (v2 layout: length at 8, CRC at 17, covered
/// bytes from 21 to the end of the batch).
fn fix_crcs(buf: &mut [u8]) {
    let mut pos = 0usize;
    while pos + 61 <= buf.len() {
        let len = i32::from_be_bytes([buf[pos + 8], buf[pos + 9], buf[pos + 10], buf[pos + 11]]);
        let Ok(len) = usize::try_from(len) else { return };
        let end = pos + 12 + len;
        if len < 49 || end > buf.len() {
            return;
        }
        let crc = crc32c::crc32c(&buf[pos + 21..end]);
        buf[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut records = rest.to_vec();
    if mode & 1 == 1 {
        fix_crcs(&mut records);
    }
    let mut guard = TARGET.lock().unwrap_or_else(|p| p.into_inner());
    let target = guard.get_or_insert_with(open);
    let log = &mut target.log;
    if let Ok(info) = log.append_as_leader(Bytes::from(records), 0, NOW) {
        let end = log.log_end_offset();
        log.update_high_watermark(end);
        let read = log.read(info.first_offset, 1 << 20, end, true);
        assert!(info.duplicate || read.is_ok_and(|r| !r.records.is_empty()), "an append reads back");
        let _ = log.fetch_offset_by_timestamp(0);
        let _ = log.fetch_offset_by_timestamp(NOW);
        let _ = log.offset_of_max_timestamp();
    }
    if log.size_bytes() > 64 << 20 {
        *guard = None; // a fresh log: bounded disk use
    }
});
