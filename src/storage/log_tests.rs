//! Tests of `UnifiedLog` (a sibling file of log.rs to keep it short): append/read, rolling,
//! recovery after unclean shutdown, idempotent producers, retention, timestamps, epochs, flush.

#![allow(clippy::indexing_slicing)]

use std::path::Path;

use bytes::Bytes;

use super::*;
use crate::storage::batch::tests::{make_batch, make_producer_batch};
use crate::storage::batch::{batches, verify_crc};

pub(crate) const NOW: i64 = 1_700_000_000_000;

pub(crate) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

pub(crate) fn open(dir: &Path, config: LogConfig, clean: bool) -> Result<UnifiedLog> {
    UnifiedLog::open(dir.to_path_buf(), config, clean, NOW)
}

pub(crate) fn batch(count: i32, ts: i64) -> Bytes {
    Bytes::from(make_batch(count, ts, 20))
}

pub(crate) fn pbatch(pid: i64, epoch: i16, seq: i32, count: i32) -> Bytes {
    Bytes::from(make_producer_batch(count, NOW, 20, pid, epoch, seq))
}

/// Every batch header from the log start to the log end, checking CRCs and contiguity.
pub(crate) fn read_all(log: &UnifiedLog) -> Result<Vec<BatchHeader>> {
    let mut out: Vec<BatchHeader> = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1 << 20, log.log_end_offset(), true)?.records;
        assert!(!data.is_empty(), "no data at {offset}");
        for item in batches(&data) {
            let (pos, h) = item?;
            verify_crc(&h, &data[pos..pos + h.total_size()])?;
            if let Some(prev) = out.last() {
                assert_eq!(prev.next_offset(), h.base_offset, "offsets are contiguous");
            }
            offset = h.next_offset();
            out.push(h);
        }
    }
    Ok(out)
}

pub(crate) fn log_files(dir: &Path, suffix: &str) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = fs::read_dir(dir)?
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    Ok(files)
}

#[test]
fn append_and_read_round_trip_across_segment_roll() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config(), true)?;
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset(), log.num_segments()),
        (0, 0, 1)
    );
    let mut sizes = Vec::new();
    for i in 0..20 {
        let b = batch(3, NOW + i);
        sizes.push(b.len());
        let info = log.append_as_leader(b, 4, NOW)?;
        assert_eq!((info.first_offset, info.last_offset), (i * 3, i * 3 + 2));
        assert_eq!(info.record_count, 3);
        assert!(!info.duplicate);
        assert_eq!(info.log_append_time_ms, -1);
    }
    assert!(log.num_segments() > 2, "segments rolled: {}", log.num_segments());
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(log.size_bytes(), sizes.iter().sum::<usize>() as u64);
    let all = read_all(&log)?;
    assert_eq!(all.len(), 20);
    assert!(all.iter().all(|h| h.partition_leader_epoch == 4));
    // Reading from an offset in the middle of a batch returns that whole batch.
    let data = log.read(31, 1 << 20, 60, true)?.records;
    let first = BatchHeader::parse(&data)?;
    assert_eq!((first.base_offset, first.last_offset()), (30, 32));
    // Log end: empty; beyond it or below the start: out of range.
    assert!(log.read(60, 1000, 60, true)?.records.is_empty());
    assert!(matches!(
        log.read(61, 1000, 60, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(-1, 1000, 60, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Segment files have 20-digit names.
    assert!(dir.path().join("00000000000000000000.log").exists());
    log.close(NOW)?;
    let log = open(dir.path(), small_config(), true)?;
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(read_all(&log)?, all);
    Ok(())
}

#[test]
fn read_respects_max_offset_max_bytes_and_min_one_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), LogConfig::default(), true)?;
    let size = batch(2, NOW).len();
    for _ in 0..5 {
        log.append_as_leader(batch(2, NOW), 0, NOW)?;
    }
    // High watermark 5 falls inside batch [4, 5]: only batches 0-1 and 2-3 are visible.
    let data = log.read(0, 1 << 20, 5, true)?.records;
    assert_eq!(data.len(), 2 * size);
    // max_bytes cuts at a batch boundary.
    let data = log.read(0, 3 * size - 1, 10, true)?.records;
    assert_eq!(data.len(), 2 * size);
    // A first batch larger than max_bytes: whole with min_one_message, else nothing.
    assert_eq!(log.read(2, 10, 10, true)?.records.len(), size);
    assert!(log.read(2, 10, 10, false)?.records.is_empty());
    // max_offset at or below the fetch offset: nothing.
    assert!(log.read(4, 1 << 20, 4, true)?.records.is_empty());
    Ok(())
}

#[test]
fn offset_index_is_used_for_lookups() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, true)?;
    for i in 0..50 {
        log.append_as_leader(batch(1, NOW + i), 0, NOW)?;
    }
    let seg = log
        .segments
        .last()
        .ok_or_else(|| StorageError::Corruption("none".into()))?;
    assert!(seg.offset_index().entries().len() > 10);
    let (entry_offset, pos) = seg.offset_index().lookup(37);
    assert!(entry_offset <= 37 && pos > 0);
    for target in [0, 1, 17, 37, 49] {
        let data = log.read(target, 1, 50, true)?.records;
        assert_eq!(BatchHeader::parse(&data)?.base_offset, target);
    }
    Ok(())
}

#[test]
fn rejects_invalid_batches_all_or_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), LogConfig::default(), true)?;
    let good = make_batch(2, NOW, 5);
    let mut bad_crc = make_batch(2, NOW, 5);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let two = Bytes::from([good.clone(), bad_crc.clone()].concat());
    assert!(matches!(
        log.append_as_leader(two, 0, NOW),
        Err(StorageError::CorruptRecord(_))
    ));
    assert_eq!(log.log_end_offset(), 0, "nothing appended");
    let torn = Bytes::from([good.clone(), good[..30].to_vec()].concat());
    assert!(matches!(
        log.append_as_leader(torn, 0, NOW),
        Err(StorageError::CorruptRecord(_))
    ));
    let mut control = good.clone();
    control[22] |= 1 << 5;
    let crc = crc32c::crc32c(&control[21..]);
    control[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        log.append_as_leader(Bytes::from(control), 0, NOW),
        Err(StorageError::InvalidRecord(_))
    ));
    let mut count = good.clone();
    count[57..61].copy_from_slice(&5i32.to_be_bytes());
    let crc = crc32c::crc32c(&count[21..]);
    count[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        log.append_as_leader(Bytes::from(count), 0, NOW),
        Err(StorageError::InvalidRecord(_))
    ));
    let no_seq = Bytes::from(make_producer_batch(1, NOW, 5, 9, 0, -1));
    assert!(matches!(
        log.append_as_leader(no_seq, 0, NOW),
        Err(StorageError::InvalidRecord(_))
    ));
    log.set_config(LogConfig {
        max_message_bytes: 50,
        ..LogConfig::default()
    });
    assert!(matches!(
        log.append_as_leader(Bytes::from(good.clone()), 0, NOW),
        Err(StorageError::RecordTooLarge { .. })
    ));
    assert!(matches!(
        log.append_as_leader(Bytes::new(), 0, NOW),
        Err(StorageError::InvalidRecord(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    Ok(())
}

#[test]
fn multiple_batches_in_one_append_get_consecutive_offsets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), LogConfig::default(), true)?;
    let two = Bytes::from([make_batch(2, NOW, 5), make_batch(3, NOW, 5)].concat());
    let info = log.append_as_leader(two, 1, NOW)?;
    assert_eq!((info.first_offset, info.last_offset, info.record_count), (0, 4, 5));
    let all = read_all(&log)?;
    assert_eq!(all.iter().map(|h| h.base_offset).collect::<Vec<_>>(), vec![0, 2]);
    Ok(())
}

#[test]
fn duplicate_batch_returns_original_offsets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), LogConfig::default(), true)?;
    log.append_as_leader(batch(2, NOW), 0, NOW)?;
    let first = log.append_as_leader(pbatch(7, 0, 0, 3), 0, NOW)?;
    let second = log.append_as_leader(pbatch(7, 0, 3, 2), 0, NOW)?;
    assert_eq!((first.first_offset, first.last_offset), (2, 4));
    assert_eq!((second.first_offset, second.last_offset), (5, 6));
    let size = log.size_bytes();
    let dup = log.append_as_leader(pbatch(7, 0, 0, 3), 0, NOW)?;
    assert!(dup.duplicate);
    assert_eq!((dup.first_offset, dup.last_offset, dup.record_count), (2, 4, 0));
    let dup = log.append_as_leader(pbatch(7, 0, 3, 2), 0, NOW)?;
    assert_eq!((dup.first_offset, dup.last_offset, dup.duplicate), (5, 6, true));
    assert_eq!(log.size_bytes(), size, "duplicates are not appended");
    assert_eq!(log.log_end_offset(), 7);
    Ok(())
}

#[test]
fn out_of_order_sequence_and_bad_epoch_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), LogConfig::default(), true)?;
    log.append_as_leader(pbatch(8, 2, 0, 2), 0, NOW)?;
    assert!(matches!(
        log.append_as_leader(pbatch(8, 2, 5, 1), 0, NOW),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    assert!(matches!(
        log.append_as_leader(pbatch(8, 1, 2, 1), 0, NOW),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    assert!(matches!(
        log.append_as_leader(pbatch(8, 3, 2, 1), 0, NOW),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    // All-or-nothing: a good batch followed by an out-of-order one appends nothing.
    let two = Bytes::from(
        [
            make_producer_batch(1, NOW, 5, 8, 2, 2),
            make_producer_batch(1, NOW, 5, 8, 2, 9),
        ]
        .concat(),
    );
    assert!(matches!(
        log.append_as_leader(two, 0, NOW),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    assert_eq!(log.log_end_offset(), 2);
    log.append_as_leader(pbatch(8, 2, 2, 1), 0, NOW)?;
    log.append_as_leader(pbatch(8, 3, 0, 1), 0, NOW)?;
    assert_eq!(log.log_end_offset(), 4);
    Ok(())
}

#[test]
fn producer_state_survives_clean_and_unclean_reopen() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config(), true)?;
    for i in 0..10 {
        log.append_as_leader(pbatch(11, 0, i * 2, 2), 0, NOW)?;
    }
    log.append_as_leader(pbatch(12, 4, 0, 1), 0, NOW)?;
    assert!(log.num_segments() > 1);
    log.close(NOW)?;
    assert!(!log_files(dir.path(), ".snapshot")?.is_empty());

    let mut log = open(dir.path(), small_config(), true)?;
    assert_eq!(log.producer_count(), 2);
    let dup = log.append_as_leader(pbatch(11, 0, 18, 2), 0, NOW)?;
    assert_eq!((dup.duplicate, dup.first_offset), (true, 18));
    assert!(matches!(
        log.append_as_leader(pbatch(11, 0, 40, 1), 0, NOW),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    log.append_as_leader(pbatch(11, 0, 20, 1), 0, NOW)?;
    drop(log); // crash: the newest batch is only in the log, not in any snapshot

    let mut log = open(dir.path(), small_config(), false)?;
    assert_eq!(log.producer_count(), 2);
    let dup = log.append_as_leader(pbatch(11, 0, 20, 1), 0, NOW)?;
    assert_eq!((dup.duplicate, dup.first_offset), (true, 21));
    assert!(matches!(
        log.append_as_leader(pbatch(12, 3, 1, 1), 0, NOW),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    drop(log);

    // Without any snapshot the state is rebuilt from the whole log.
    for f in log_files(dir.path(), ".snapshot")? {
        fs::remove_file(f)?;
    }
    let mut log = open(dir.path(), small_config(), false)?;
    assert_eq!(log.producer_count(), 2);
    let dup = log.append_as_leader(pbatch(11, 0, 16, 2), 0, NOW)?;
    assert_eq!((dup.duplicate, dup.first_offset), (true, 16));
    Ok(())
}

#[test]
fn retention_by_size_moves_log_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config(), true)?;
    for i in 0..30 {
        log.append_as_leader(batch(2, NOW + i), 0, NOW)?;
    }
    let segments = log.num_segments();
    let total = log.size_bytes();
    log.set_config(LogConfig {
        retention_bytes: (total / 2) as i64,
        ..small_config()
    });
    // Nothing is deleted above the high watermark.
    log.update_high_watermark(0);
    assert_eq!(log.apply_retention(NOW)?, 0);
    log.update_high_watermark(log.log_end_offset());
    let deleted = log.apply_retention(NOW)?;
    assert!(deleted > 0 && deleted < segments);
    assert!(log.size_bytes() >= total / 2);
    let first_base = log.segments.first().map(LogSegment::base_offset).unwrap_or(-1);
    assert_eq!(log.log_start_offset(), first_base);
    assert!(matches!(
        log.read(0, 100, 60, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log)?.first().map(|h| h.base_offset), Some(first_base));
    log.close(NOW)?;
    let log = open(dir.path(), small_config(), true)?;
    assert_eq!(log.log_start_offset(), first_base);
    Ok(())
}

#[test]
fn retention_by_time_rolls_and_deletes_expired_active_segment() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(
        dir.path(),
        LogConfig {
            retention_ms: 60_000,
            ..small_config()
        },
        true,
    )?;
    for i in 0..10 {
        log.append_as_leader(batch(2, NOW + i), 0, NOW)?;
    }
    for i in 0..10 {
        log.append_as_leader(batch(2, NOW + 120_000 + i), 0, NOW)?;
    }
    log.update_high_watermark(log.log_end_offset());
    // At NOW + 150s the first 10 batches (timestamps ~NOW) are older than 60 s.
    let deleted = log.apply_retention(NOW + 150_000)?;
    assert!(deleted >= 1);
    let start = log.log_start_offset();
    assert!(start > 0 && start <= 20, "start {start}");
    // Later everything is expired: the active segment is rolled and deleted too.
    log.apply_retention(NOW + 500_000)?;
    assert_eq!(log.log_start_offset(), 40);
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(log.num_segments(), 1);
    assert_eq!(log.size_bytes(), 0);
    assert!(log.read(40, 100, 40, true)?.records.is_empty());
    let info = log.append_as_leader(batch(1, NOW), 0, NOW)?;
    assert_eq!(info.first_offset, 40);
    Ok(())
}

#[test]
fn delete_records_before_moves_start_and_deletes_segments() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config(), true)?;
    for i in 0..20 {
        log.append_as_leader(batch(2, NOW + i), 0, NOW)?;
    }
    assert!(
        matches!(
            log.delete_records_before(10),
            Err(StorageError::OffsetOutOfRange { .. })
        ),
        "above the HW"
    );
    log.update_high_watermark(30);
    let segments = log.num_segments();
    assert_eq!(log.delete_records_before(25)?, 25);
    assert!(log.num_segments() < segments);
    assert_eq!(log.log_start_offset(), 25);
    assert!(matches!(
        log.read(24, 100, 30, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let data = log.read(25, 1 << 20, 30, true)?.records;
    assert_eq!(
        BatchHeader::parse(&data)?.base_offset,
        24,
        "the batch holding offset 25"
    );
    assert_eq!(log.delete_records_before(5)?, 25, "never backwards");
    assert_eq!(
        fs::read_to_string(dir.path().join(LOG_START_OFFSET_CHECKPOINT))?,
        "0\n25\n"
    );
    drop(log);
    let log = open(dir.path(), small_config(), false)?;
    assert_eq!(log.log_start_offset(), 25);
    // Up to the log end: everything goes, the log continues at 40.
    let mut log = log;
    log.update_high_watermark(40);
    assert_eq!(log.delete_records_before(40)?, 40);
    assert_eq!((log.num_segments(), log.log_end_offset(), log.size_bytes()), (1, 40, 0));
    Ok(())
}

#[test]
fn fetch_offset_by_timestamp_finds_first_record_at_or_after() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config(), true)?;
    // Batch i holds 3 records with timestamps 1000*i, 1000*i + 1, 1000*i + 2.
    for i in 1..=20 {
        log.append_as_leader(batch(3, 1000 * i), 5, NOW)?;
    }
    let hit = log.fetch_offset_by_timestamp(7001)?;
    assert_eq!(
        hit,
        Some(TimestampOffset {
            timestamp: 7001,
            offset: 19,
            leader_epoch: 5
        })
    );
    assert_eq!(
        log.fetch_offset_by_timestamp(7003)?.map(|t| (t.offset, t.timestamp)),
        Some((21, 8000))
    );
    assert_eq!(log.fetch_offset_by_timestamp(0)?.map(|t| t.offset), Some(0));
    assert_eq!(log.fetch_offset_by_timestamp(20_003)?, None);
    let max = log.offset_of_max_timestamp()?;
    assert_eq!(
        max,
        Some(TimestampOffset {
            timestamp: 20_002,
            offset: 59,
            leader_epoch: 5
        })
    );
    Ok(())
}

#[test]
fn log_append_time_stamps_batches() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(
        dir.path(),
        LogConfig {
            log_append_time: true,
            ..LogConfig::default()
        },
        true,
    )?;
    let info = log.append_as_leader(batch(3, 5), 0, NOW)?;
    assert_eq!(info.log_append_time_ms, NOW);
    let data = log.read(0, 1 << 20, 3, true)?.records;
    let h = BatchHeader::parse(&data)?;
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, NOW);
    verify_crc(&h, &data)?;
    assert_eq!(
        log.fetch_offset_by_timestamp(NOW)?.map(|t| (t.offset, t.timestamp)),
        Some((0, NOW))
    );
    assert_eq!(log.offset_of_max_timestamp()?.map(|t| t.offset), Some(0));
    Ok(())
}

#[test]
fn end_offset_for_epoch_follows_leader_epochs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), LogConfig::default(), true)?;
    assert_eq!(log.end_offset_for_epoch(0), None);
    log.append_as_leader(batch(2, NOW), 1, NOW)?;
    log.append_as_leader(batch(2, NOW), 1, NOW)?;
    log.append_as_leader(batch(2, NOW), 3, NOW)?;
    log.assign_epoch_start_offset(6, 6)?;
    assert_eq!(log.latest_epoch(), Some(6));
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 0)));
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 6)));
    assert_eq!(log.end_offset_for_epoch(6), Some((6, 6)));
    log.append_as_leader(batch(2, NOW), 6, NOW)?;
    assert_eq!(log.end_offset_for_epoch(6), Some((6, 8)));
    assert_eq!(log.end_offset_for_epoch(9), None);
    assert_eq!(
        fs::read_to_string(dir.path().join("leader-epoch-checkpoint"))?,
        "0\n3\n1 0\n3 4\n6 6\n"
    );
    log.close(NOW)?;
    let log = open(dir.path(), LogConfig::default(), true)?;
    assert_eq!(log.end_offset_for_epoch(4), Some((3, 6)));
    Ok(())
}

#[test]
fn flush_policy_and_group_commit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        flush_interval_messages: 5,
        flush_interval_ms: 1000,
        ..small_config()
    };
    let mut log = open(dir.path(), config, true)?;
    assert!(!log.needs_flush(NOW + 10_000), "nothing unflushed");
    assert!(log.prepare_flush()?.is_none());
    log.append_as_leader(batch(2, NOW), 0, NOW)?;
    assert!(!log.needs_flush(NOW + 10));
    assert!(log.needs_flush(NOW + 1000), "flush.ms");
    log.append_as_leader(batch(3, NOW), 0, NOW)?;
    assert!(log.needs_flush(NOW + 10), "flush.messages");
    let req = log
        .prepare_flush()?
        .ok_or_else(|| StorageError::Corruption("expected a request".into()))?;
    assert_eq!(req.up_to_offset(), 5);
    // An append while the sync runs (outside the lock) is left for the next flush.
    log.append_as_leader(batch(1, NOW), 0, NOW)?;
    req.sync()?;
    log.complete_flush(req.up_to_offset(), NOW + 20)?;
    assert_eq!(log.recovery_point(), 5);
    assert!(!log.needs_flush(NOW + 30));
    log.flush(NOW + 40)?;
    assert_eq!(log.recovery_point(), 6);
    assert!(log.prepare_flush()?.is_none());
    log.close(NOW)?;
    assert_eq!(
        checkpoint::read_offset(&dir.path().join(RECOVERY_POINT_CHECKPOINT))?,
        Some(6)
    );
    Ok(())
}

#[test]
fn rolls_by_time_and_by_index_size() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(
        dir.path(),
        LogConfig {
            segment_ms: 1000,
            ..LogConfig::default()
        },
        true,
    )?;
    assert!(!log.maybe_roll_by_time(NOW + 5000)?, "empty segments do not roll");
    log.append_as_leader(batch(1, NOW), 0, NOW)?;
    log.append_as_leader(batch(1, NOW + 500), 0, NOW)?;
    assert_eq!(log.num_segments(), 1);
    log.append_as_leader(batch(1, NOW + 1500), 0, NOW)?;
    assert_eq!(log.num_segments(), 2, "message time passed segment.ms");
    assert!(log.maybe_roll_by_time(NOW + 3000)?);
    assert_eq!(log.num_segments(), 3);

    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        segment_index_bytes: 24,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, true)?;
    for _ in 0..10 {
        log.append_as_leader(batch(1, NOW), 0, NOW)?;
    }
    assert!(log.num_segments() >= 3, "index full rolls: {}", log.num_segments());
    Ok(())
}

#[test]
fn delete_removes_the_directory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("topic-0");
    let mut log = open(&path, LogConfig::default(), false)?;
    log.append_as_leader(batch(1, NOW), 0, NOW)?;
    log.delete()?;
    assert!(!path.exists());
    Ok(())
}

#[test]
fn log_and_flush_request_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<UnifiedLog>();
    assert_send_sync::<FlushRequest>();
}

pub(crate) fn txn(pid: i64, seq: i32, count: i32) -> Bytes {
    Bytes::from(crate::storage::batch::tests::make_txn_batch(count, pid, 0, seq))
}

pub(crate) fn marker(pid: i64, commit: bool) -> EndTxnMarker {
    EndTxnMarker {
        marker: if commit { MarkerType::Commit } else { MarkerType::Abort },
        coordinator_epoch: 0,
        producer_id: pid,
        producer_epoch: 0,
    }
}

/// Open transactions hold the last stable offset back; markers end them; aborted ones are in
/// the `.txnindex` and come back for read_committed ranges, across clean and unclean reopens.
#[test]
fn transactions_move_the_lso_and_aborts_are_indexed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config(), true)?;
    log.append_as_leader(batch(2, NOW), 0, NOW)?; // 0-1
    log.append_as_leader(txn(7, 0, 3), 0, NOW)?; // 2-4, pid 7
    log.append_as_leader(txn(8, 0, 2), 0, NOW)?; // 5-6, pid 8
    log.update_high_watermark(log.log_end_offset());
    assert_eq!(log.last_stable_offset(), 2, "held at pid 7's first offset");
    assert!(
        matches!(
            log.append_as_leader(pbatch(7, 0, 3, 1), 0, NOW),
            Err(StorageError::InvalidTxnState(_))
        ),
        "a non-transactional batch inside an open transaction"
    );
    let abort = log.append_marker(&marker(7, false), 0, NOW)?; // 7
    assert_eq!(abort.first_offset, 7);
    log.update_high_watermark(log.log_end_offset());
    assert_eq!(log.last_stable_offset(), 5, "now held at pid 8's");
    log.append_marker(&marker(8, true), 0, NOW)?; // 8
    log.update_high_watermark(log.log_end_offset());
    assert_eq!(log.last_stable_offset(), 9);
    let expected = vec![AbortedTxn {
        producer_id: 7,
        first_offset: 2,
        last_offset: 7,
        last_stable_offset: 5,
    }];
    assert_eq!(log.collect_aborted_txns(0, 9), expected);
    assert_eq!(log.collect_aborted_txns(8, 9), vec![], "ended before the range");
    assert!(
        matches!(
            log.append_marker(
                &EndTxnMarker {
                    producer_epoch: -1,
                    ..marker(7, true)
                },
                0,
                NOW
            ),
            Err(StorageError::InvalidProducerEpoch(_))
        ),
        "a marker of an older epoch is fenced"
    );
    // pid 9 opens a transaction that must survive restarts.
    log.append_as_leader(txn(9, 0, 1), 0, NOW)?; // 9
    for _ in 0..12 {
        log.append_as_leader(batch(2, NOW), 0, NOW)?; // rolls segments
    }
    log.update_high_watermark(log.log_end_offset());
    assert_eq!(log.last_stable_offset(), 9);
    let end = log.log_end_offset();
    log.close(NOW)?;
    let mut log = open(dir.path(), small_config(), true)?;
    assert_eq!(log.collect_aborted_txns(0, end), expected);
    assert_eq!(
        log.last_stable_offset(),
        9,
        "open transaction restored from the snapshot"
    );
    log.append_marker(&marker(9, false), 0, NOW)?;
    drop(log); // crash: no close, no snapshot of the abort
    for f in log_files(dir.path(), ".snapshot")? {
        fs::remove_file(f)?; // force a full replay
    }
    for f in log_files(dir.path(), ".txnindex")? {
        fs::remove_file(f)?; // and rebuild every index from it
    }
    let mut log = open(dir.path(), small_config(), false)?;
    log.update_high_watermark(log.log_end_offset());
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
    let all = log.collect_aborted_txns(0, log.log_end_offset());
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], expected[0]);
    assert_eq!(
        (all[1].producer_id, all[1].first_offset, all[1].last_offset),
        (9, 9, end)
    );
    Ok(())
}

/// A roll syncs nothing itself; it asks for a flush (whatever the flush policy), and once that
/// flush is done the recovery point has passed the rolled segment.
#[test]
fn roll_asks_for_a_flush_that_advances_the_recovery_point() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config(), true)?;
    log.append_as_leader(batch(2, NOW), 0, NOW)?;
    assert!(!log.needs_flush(NOW), "no flush policy: no flush before a roll");
    while log.num_segments() < 2 {
        log.append_as_leader(batch(2, NOW), 0, NOW)?;
    }
    assert!(log.needs_flush(NOW), "the roll asks for one");
    assert_eq!(log.recovery_point(), 0);
    let req = log
        .prepare_flush()?
        .ok_or_else(|| StorageError::Corruption("no flush".into()))?;
    req.sync()?;
    log.complete_flush(req.up_to_offset(), NOW)?;
    assert_eq!(log.recovery_point(), log.log_end_offset());
    assert!(!log.needs_flush(NOW));
    assert_eq!(log.checkpoint_offsets().recovery_point, log.log_end_offset());
    // The rolled segment's producer snapshot was written.
    assert!(!log_files(dir.path(), ".snapshot")?.is_empty());
    Ok(())
}

#[test]
fn a_read_plan_runs_without_the_log_and_sees_what_was_there_when_taken() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config(), true)?;
    for i in 0..30 {
        log.append_as_leader(batch(2, NOW + i), 0, NOW)?;
    }
    log.update_high_watermark(log.log_end_offset());
    let hw = log.high_watermark();
    let from_start = log.read_plan(0, 1 << 20, hw, true)?;
    let at_end = log.read_plan(hw - 2, 1 << 20, hw, true)?;
    // Appends and retention after the plan was taken: the plan still reads what it saw.
    for i in 30..40 {
        log.append_as_leader(batch(2, NOW + i), 0, NOW)?;
    }
    log.update_high_watermark(log.log_end_offset());
    log.set_config(LogConfig {
        retention_bytes: 1,
        ..small_config()
    });
    assert!(log.apply_retention(NOW)? > 0);
    let first = from_start.read()?.records;
    assert_eq!(batches(&first).next().transpose()?.map(|(_, h)| h.base_offset), Some(0));
    let last: Vec<i64> = batches(&at_end.read()?.records)
        .map(|b| b.map(|(_, h)| h.base_offset))
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(last, vec![hw - 2], "nothing past the high watermark of the plan");
    Ok(())
}

#[test]
fn sealed_segments_close_their_files_when_idle() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config(), true)?;
    for i in 0..30 {
        log.append_as_leader(batch(2, NOW + i), 0, NOW)?;
    }
    let sealed = log.num_segments() - 1;
    assert!(sealed > 2);
    assert_eq!(log.sweep_idle_files(), 0, "just rolled: used since the last sweep");
    assert_eq!(log.sweep_idle_files(), sealed);
    log.update_high_watermark(log.log_end_offset());
    assert_eq!(read_all(&log)?.len(), 30, "reopened on demand");
    assert_eq!(log.sweep_idle_files(), 0);
    assert_eq!(log.sweep_idle_files(), sealed);
    log.close(NOW)?;
    let log = open(dir.path(), small_config(), true)?;
    assert_eq!(log.sweep_idle_files(), 0, "loaded sealed segments hold no file");
    assert_eq!(read_all(&log)?.len(), 30);
    Ok(())
}
