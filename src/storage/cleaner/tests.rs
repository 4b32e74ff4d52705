//! Tests of the log cleaner against Kafka's compaction guarantees, on real files.

#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression as Codec, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::*;
use crate::storage::batch::{batches, verify_crc};
use crate::storage::control::{EndTxnMarker, MarkerType};
use crate::storage::error::Result;
use crate::storage::records;

const NOW: i64 = 1_700_000_000_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 100,
        cleanup_compact: true,
        cleanup_delete: false,
        min_cleanable_dirty_ratio: 0.01,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    }
}

/// A batch of keyed records (`None` value: a tombstone) with `codec`, optionally from a producer.
fn keyed(kvs: &[(Option<&str>, Option<&str>)], codec: Codec, producer: Option<(i64, i32, bool)>) -> Bytes {
    let (pid, seq, txn) = producer.unwrap_or((-1, -1, false));
    let records: Vec<Record> = kvs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: txn,
            control: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: if pid >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if pid >= 0 { seq + i as i32 } else { i as i32 - 1 },
            timestamp: NOW + i as i64,
            key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .expect("encodable");
    buf.freeze()
}

fn put(log: &Mutex<UnifiedLog>, key: &str, value: Option<&str>, codec: Codec) -> Result<i64> {
    let mut log = log.lock().unwrap();
    let info = log.append_as_leader(keyed(&[(Some(key), value)], codec, None), 0, NOW)?;
    let leo = log.log_end_offset();
    log.update_high_watermark(leo);
    Ok(info.first_offset)
}

fn roll(log: &Mutex<UnifiedLog>) -> Result<()> {
    log.lock().unwrap().roll_at_end(NOW)
}

/// (offset, key, is tombstone) of every record from the log start, checking every batch's CRC
/// and that kafka-protocol's decoder (as a client's) reads it.
fn contents(log: &UnifiedLog) -> Result<Vec<(i64, String, bool)>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1 << 20, log.log_end_offset(), true)?.records;
        assert!(!data.is_empty(), "no data at {offset}");
        let mut copy = data.clone();
        RecordBatchDecoder::decode_all(&mut copy).expect("a client decodes it");
        for item in batches(&data) {
            let (pos, h) = item?;
            let bytes = &data[pos..pos + h.total_size()];
            verify_crc(&h, bytes)?;
            offset = h.next_offset();
            if h.is_control() {
                out.push((h.base_offset, "<marker>".into(), false));
                continue;
            }
            let inflated = records::inflate(bytes, &h)?;
            for r in records::records(&inflated, h.record_count) {
                let r = r?;
                let key = String::from_utf8_lossy(r.key.unwrap_or(b"<none>")).into_owned();
                out.push((h.base_offset + r.offset_delta, key, r.value_is_null));
            }
        }
    }
    Ok(out)
}

fn clean(log: &Mutex<UnifiedLog>, now: i64) -> Result<Option<CleanStats>> {
    let mut map = OffsetMap::new(1 << 20);
    clean_log(|| log.lock().unwrap(), &mut map, &mut Throttle::new(f64::MAX), now)
}

#[test]
fn keeps_the_latest_record_of_every_key_at_its_offset() -> Result<()> {
    for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let dir = tempfile::tempdir()?;
        let log = Mutex::new(UnifiedLog::open(dir.path().to_path_buf(), config(), true, NOW)?);
        let mut last = BTreeMap::new();
        for round in 0..20 {
            for k in 0..10 {
                let key = format!("k{k}");
                let offset = put(&log, &key, Some(&format!("v{round}")), codec)?;
                last.insert(key, offset);
            }
        }
        roll(&log)?;
        let tail = put(&log, "tail", Some("x"), codec)?;
        let (start, end, hw) = {
            let l = log.lock().unwrap();
            (l.log_start_offset(), l.log_end_offset(), l.high_watermark())
        };
        let stats = clean(&log, NOW)?.expect("a round ran");
        assert!(
            stats.segments_installed > 0 && stats.bytes_written < stats.bytes_read,
            "{stats:?}"
        );
        let l = log.lock().unwrap();
        assert_eq!(
            (l.log_start_offset(), l.log_end_offset(), l.high_watermark()),
            (start, end, hw)
        );
        let mut expected: Vec<(i64, String, bool)> = last.iter().map(|(k, o)| (*o, k.clone(), false)).collect();
        expected.push((tail, "tail".into(), false));
        expected.sort();
        assert_eq!(contents(&l)?, expected, "{codec:?}");
        drop(l);
        // Cleaning again finds nothing dirty; reopening (clean or not) gives the same log.
        assert_eq!(clean(&log, NOW)?, None);
        let l = log.into_inner().unwrap();
        l.close(NOW)?;
        for clean_shutdown in [true, false] {
            let l = UnifiedLog::open(dir.path().to_path_buf(), config(), clean_shutdown, NOW)?;
            assert_eq!(contents(&l)?, expected);
            assert_eq!(l.log_end_offset(), end);
        }
    }
    Ok(())
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = Mutex::new(UnifiedLog::open(dir.path().to_path_buf(), config(), true, NOW)?);
    for k in ["a", "b", "c"] {
        put(&log, k, Some("1"), Codec::None)?;
    }
    let tomb = put(&log, "b", None, Codec::None)?;
    roll(&log)?;
    put(&log, "d", Some("1"), Codec::None)?;
    clean(&log, NOW)?.expect("cleaned");
    let keys = |log: &Mutex<UnifiedLog>| -> Result<Vec<(i64, String, bool)>> { contents(&log.lock().unwrap()) };
    let after = keys(&log)?;
    assert!(after.contains(&(tomb, "b".into(), true)), "{after:?}");
    assert!(!after.iter().any(|(o, k, _)| k == "b" && *o != tomb));
    // After the horizon (NOW + delete.retention.ms) a round with new dirty data removes it.
    put(&log, "a", Some("2"), Codec::None)?;
    roll(&log)?;
    put(&log, "e", Some("1"), Codec::None)?;
    clean(&log, NOW + 500)?.expect("cleaned");
    assert!(
        keys(&log)?.iter().any(|(_, k, t)| k == "b" && *t),
        "still within the horizon"
    );
    put(&log, "c", Some("2"), Codec::None)?;
    roll(&log)?;
    put(&log, "f", Some("1"), Codec::None)?;
    clean(&log, NOW + 2000)?.expect("cleaned");
    let last = keys(&log)?;
    assert!(!last.iter().any(|(_, k, _)| k == "b"), "{last:?}");
    Ok(())
}

#[test]
fn aborted_transactions_go_and_producers_keep_their_last_batch() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = Mutex::new(UnifiedLog::open(dir.path().to_path_buf(), config(), true, NOW)?);
    {
        let mut l = log.lock().unwrap();
        // Producer 7 (idempotent) writes k1 twice; its last batch is superseded by producer-less k1.
        l.append_as_leader(
            keyed(&[(Some("k1"), Some("a"))], Codec::None, Some((7, 0, false))),
            0,
            NOW,
        )?;
        l.append_as_leader(
            keyed(&[(Some("k1"), Some("b"))], Codec::None, Some((7, 1, false))),
            0,
            NOW,
        )?;
        // Producer 9: an aborted transaction, then a committed one.
        l.append_as_leader(
            keyed(
                &[(Some("t1"), Some("x")), (Some("t2"), Some("y"))],
                Codec::Lz4,
                Some((9, 0, true)),
            ),
            0,
            NOW,
        )?;
        let abort = EndTxnMarker {
            marker: MarkerType::Abort,
            coordinator_epoch: 0,
            producer_id: 9,
            producer_epoch: 0,
        };
        l.append_marker(&abort, 0, NOW)?;
        l.append_as_leader(
            keyed(&[(Some("t3"), Some("z"))], Codec::None, Some((9, 2, true))),
            0,
            NOW,
        )?;
        let commit = EndTxnMarker {
            marker: MarkerType::Commit,
            ..abort
        };
        l.append_marker(&commit, 0, NOW)?;
        l.append_as_leader(keyed(&[(Some("k1"), Some("c"))], Codec::None, None), 0, NOW)?;
        let leo = l.log_end_offset();
        l.update_high_watermark(leo);
        l.roll_at_end(NOW)?;
        l.append_as_leader(keyed(&[(Some("tail"), Some("c"))], Codec::None, None), 0, NOW)?;
        let leo = l.log_end_offset();
        l.update_high_watermark(leo);
    }
    clean(&log, NOW)?.expect("cleaned");
    let l = log.lock().unwrap();
    let got = contents(&l)?;
    let keys: Vec<&str> = got.iter().map(|(_, k, _)| k.as_str()).collect();
    // t1/t2 (aborted) gone; the abort marker has no batch left: kept until its horizon; t3 and
    // its commit marker stay; k1's older values gone.
    assert_eq!(keys, ["<marker>", "t3", "<marker>", "k1", "tail"], "{got:?}");
    // Producer 7's last batch (offset 1) stays as an empty batch, so its sequence survives.
    let data = l.read(0, 1 << 20, l.log_end_offset(), true)?.records;
    let first = batches(&data).next().expect("a batch")?.1;
    assert_eq!((first.base_offset, first.record_count, first.producer_id), (1, 0, 7));
    assert_eq!(first.last_sequence(), 1);
    drop(l);
    // The producer goes on with sequence 2 after a restart.
    let l = log.into_inner().unwrap();
    l.close(NOW)?;
    let mut l = UnifiedLog::open(dir.path().to_path_buf(), config(), false, NOW)?;
    let next = l.append_as_leader(
        keyed(&[(Some("k2"), Some("d"))], Codec::None, Some((7, 2, false))),
        0,
        NOW,
    )?;
    assert!(!next.duplicate);
    Ok(())
}

#[test]
fn a_crash_leaves_the_old_segments_or_the_new_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = Mutex::new(UnifiedLog::open(dir.path().to_path_buf(), config(), true, NOW)?);
    for round in 0..30 {
        put(&log, &format!("k{}", round % 3), Some("v"), Codec::None)?;
    }
    roll(&log)?;
    put(&log, "tail", Some("v"), Codec::None)?;
    let before = contents(&log.lock().unwrap())?;
    // Clean without installing: the output is `.cleaned` files.
    let task = log.lock().unwrap().clean_task(NOW)?.expect("a task");
    let mut map = OffsetMap::new(1 << 20);
    let mut throttle = Throttle::new(f64::MAX);
    let map_end = task.build_offset_map(&mut map, &mut throttle)?.expect("fits");
    let groups = task.groups(map_end);
    let mut txns = run::TxnTracker::new(&task);
    let mut stats = CleanStats::default();
    let cleaned = task.clean_group(groups[0].clone(), &map, map_end, &mut txns, &mut throttle, &mut stats)?;
    let (base, replaces) = (cleaned.segment.base_offset(), cleaned.replaces);
    drop(cleaned);
    drop(log);
    // Uncommitted: the old segments are the log.
    let l = UnifiedLog::open(dir.path().to_path_buf(), config(), false, NOW)?;
    assert_eq!(contents(&l)?, before);
    assert!(!dir
        .path()
        .read_dir()?
        .any(|d| d.is_ok_and(|d| d.file_name().to_string_lossy().ends_with(".cleaned"))));
    drop(l);
    // Committed (the swap exists), crashed before the old files were all deleted: the new one.
    let log = Mutex::new(UnifiedLog::open(dir.path().to_path_buf(), config(), false, NOW)?);
    let task = log.lock().unwrap().clean_task(NOW)?.expect("a task");
    let map_end = task.build_offset_map(&mut map, &mut throttle)?.expect("fits");
    let mut txns = run::TxnTracker::new(&task);
    let cleaned = task.clean_group(
        task.groups(map_end)[0].clone(),
        &map,
        map_end,
        &mut txns,
        &mut throttle,
        &mut stats,
    )?;
    assert_eq!((cleaned.segment.base_offset(), cleaned.replaces), (base, replaces));
    drop(cleaned);
    drop(log);
    fs::rename(
        segment::segment_file(dir.path(), base, LOG_CLEANED_SUFFIX),
        swap_file(dir.path(), base, replaces),
    )?;
    fs::remove_file(segment::segment_file(dir.path(), base, ".index"))?;
    let l = UnifiedLog::open(dir.path().to_path_buf(), config(), false, NOW)?;
    let after = contents(&l)?;
    assert!(after.len() < before.len());
    assert_eq!(
        after.iter().filter(|(_, k, _)| k.starts_with('k')).count(),
        3,
        "{after:?}"
    );
    Ok(())
}

#[test]
fn a_log_that_changed_meanwhile_is_not_replaced() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = Mutex::new(UnifiedLog::open(dir.path().to_path_buf(), config(), true, NOW)?);
    for round in 0..40 {
        put(&log, &format!("k{}", round % 4), Some("value"), Codec::None)?;
    }
    roll(&log)?;
    put(&log, "tail", Some("v"), Codec::None)?;
    let task = log.lock().unwrap().clean_task(NOW)?.expect("a task");
    // A truncation (a follower's) after the snapshot.
    log.lock().unwrap().truncate_to(3)?;
    let before = contents(&log.lock().unwrap())?;
    let mut map = OffsetMap::new(1 << 20);
    let stats = clean_task(&|| log.lock().unwrap(), task, &mut map, &mut Throttle::new(f64::MAX))?;
    assert_eq!(stats.map(|s| s.segments_installed), Some(0));
    assert_eq!(contents(&log.lock().unwrap())?, before);
    Ok(())
}

#[test]
fn keyless_records_are_refused_for_compacted_topics() -> Result<()> {
    let ok = keyed(&[(Some("a"), Some("1")), (Some("b"), None)], Codec::Zstd, None);
    assert!(records::check_keys(&ok, "t-0").is_ok());
    let bad = keyed(&[(Some("a"), Some("1")), (None, Some("2"))], Codec::Gzip, None);
    let e = records::check_keys(&bad, "t-0").unwrap_err();
    assert!(e
        .to_string()
        .contains("Compacted topic cannot accept message without key in topic partition t-0."));
    Ok(())
}

#[test]
fn batches_are_recompressed_into_the_topic_codec() -> Result<()> {
    use crate::storage::{BatchHeader, Compression};
    let sent = keyed(
        &[(Some("a"), Some("1")), (None, Some("2")), (Some("c"), None)],
        Codec::Gzip,
        Some((5, 3, false)),
    );
    let fields = |bytes: &Bytes| {
        let mut buf = bytes.clone();
        RecordBatchDecoder::decode_all(&mut buf)
            .expect("decodes")
            .into_iter()
            .flat_map(|s| s.records)
            .map(|r| (r.key, r.value, r.sequence, r.producer_id, r.timestamp, r.offset))
            .collect::<Vec<_>>()
    };
    for target in [
        Compression::Zstd,
        Compression::None,
        Compression::Snappy,
        Compression::Lz4,
    ] {
        let stored = records::recompress(sent.clone(), target, Some(1))?;
        let h = BatchHeader::parse(&stored)?;
        assert_eq!(h.compression()?, target);
        verify_crc(&h, &stored)?;
        assert_eq!(fields(&stored), fields(&sent), "{target:?}");
        // Already in the codec: the same bytes.
        assert_eq!(records::recompress(stored.clone(), target, None)?, stored);
    }
    let mut corrupt = sent.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(records::recompress(Bytes::from(corrupt), Compression::Zstd, None).is_err());
    Ok(())
}
