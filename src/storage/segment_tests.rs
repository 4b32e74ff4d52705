//! Tests of `LogSegment` (a sibling file of segment.rs to keep it short).

use super::*;
use crate::storage::batch::tests::make_batch;

fn append_raw(seg: &mut LogSegment, base_offset: i64, bytes: &[u8], config: &LogConfig) -> Result<()> {
    let mut h = BatchHeader::parse(bytes)?;
    h.base_offset = base_offset;
    let prefix = batch::rewritten_prefix(bytes, base_offset, 0);
    let rest = bytes.get(batch::HEADER_PREFIX_LEN..).unwrap_or(&[]);
    let mut slices = [IoSlice::new(&prefix), IoSlice::new(rest)];
    seg.append(&[h], &mut slices, config)
}

#[test]
fn append_read_and_recover_a_segment() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        index_interval_bytes: 50,
        ..LogConfig::default()
    };
    let mut seg = LogSegment::create(dir.path(), 100, &config, 0)?;
    assert!(matches!(
        LogSegment::create(dir.path(), 100, &config, 0),
        Err(StorageError::Corruption(_))
    ));
    let b = make_batch(2, 1000, 10);
    for i in 0..10 {
        append_raw(&mut seg, 100 + 2 * i, &b, &config)?;
    }
    assert_eq!((seg.next_offset(), seg.size()), (120, 10 * b.len() as u64));
    assert_eq!(seg.max_timestamp_and_batch(), Some((1001, 100)));
    assert_eq!(
        seg.find_batch(107)?.map(|(pos, h)| (pos, h.base_offset)),
        Some((3 * b.len() as u64, 106))
    );
    let data = seg.read(107, 2 * b.len(), 200, false)?.unwrap_or_default();
    assert_eq!(data.len(), 2 * b.len());
    assert!(seg.read(120, 100, 200, true)?.is_none(), "past the segment");
    let entries = seg.offset_index().entries().to_vec();
    assert!(!entries.is_empty());
    assert_eq!(seg.recover(&config, false)?, 0);
    assert_eq!(
        seg.offset_index().entries(),
        entries.as_slice(),
        "rebuild gives the same index"
    );
    seg.log.get()?.set_len(seg.size - 1)?;
    seg.size -= 1;
    // Not allowed to cut: the torn tail is kept as damage, its offsets read as corrupt.
    assert_eq!(seg.recover(&config, false)?, 0);
    assert_eq!(seg.next_offset(), 118);
    assert!(matches!(
        seg.read(118, 100, 200, true),
        Err(StorageError::CorruptRecord(_))
    ));
    assert!(seg.read(116, 100, 200, true)?.is_some_and(|d| d.len() == b.len()));
    assert_eq!(seg.recover(&config, true)?, b.len() as u64 - 1);
    assert_eq!(seg.next_offset(), 118);
    assert!(seg.read(118, 100, 200, true)?.is_none(), "cut: nothing there any more");
    Ok(())
}

#[test]
fn log_file_names_are_twenty_digits() {
    assert_eq!(parse_log_file_name("00000000000000000042.log"), Some(42));
    assert_eq!(parse_log_file_name("42.log"), None);
    assert_eq!(parse_log_file_name("0000000000000000004x.log"), None);
    assert_eq!(parse_log_file_name("00000000000000000042.index"), None);
    assert_eq!(
        segment_file(Path::new("/d"), 7, LOG_SUFFIX),
        PathBuf::from("/d/00000000000000000007.log")
    );
}
