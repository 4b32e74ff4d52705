//! Tests of the offset store (`offsets.rs`).

use super::*;
use crate::coordinator::log::OFFSETS_TOPIC;
use crate::replication::replica_manager::ReplicaManager;
use std::sync::Arc;

type TestResult = Result<(), Box<dyn std::error::Error>>;
const DAY_MS: i64 = 86_400_000;
const PARTITIONS: i32 = 3;

fn entry(topic: &str, partition: i32, offset: i64) -> OffsetCommitEntry {
    OffsetCommitEntry {
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: 3,
        metadata: format!("m{offset}"),
    }
}

fn offset_of(store: &OffsetStore, group: &str, topic: &str, partition: i32) -> i64 {
    let wanted = [(topic.to_string(), partition)];
    store
        .fetch(group, Some(&wanted))
        .first()
        .map_or(-2, |f| f.committed.offset)
}

fn open(dir: &std::path::Path) -> Result<(OffsetStore, Arc<ReplicaManager>), Box<dyn std::error::Error>> {
    loaded_for_test(dir, PARTITIONS)
}

fn reload_all(store: &mut OffsetStore, rm: &ReplicaManager) -> TestResult {
    reload_for_test(store, rm)
}

#[test]
fn commit_then_fetch_and_overwrite_wins() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut store, _rm) = open(dir.path())?;
    drop(store.commit("g", &[entry("t", 0, 5), entry("t", 1, 7)], 1000)?);
    drop(store.commit("g", &[entry("t", 0, 9)], 2000)?);
    let all = store.fetch("g", None);
    assert_eq!(all.len(), 2);
    let first = all.first().ok_or("empty")?;
    assert_eq!((first.topic.as_str(), first.partition), ("t", 0));
    let expected = CommittedOffset {
        offset: 9,
        leader_epoch: 3,
        metadata: "m9".into(),
        commit_timestamp_ms: 2000,
    };
    assert_eq!(first.committed, expected);
    assert_eq!(offset_of(&store, "g", "t", 1), 7);
    assert_eq!(offset_of(&store, "g", "t", 2), -1);
    assert_eq!(offset_of(&store, "other", "t", 0), -1);
    assert!(store.fetch("other", None).is_empty());
    Ok(())
}

#[tokio::test]
async fn commits_are_replicated_and_survive_a_reload() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut store, rm) = open(dir.path())?;
    store
        .commit("g", &[entry("t", 0, 5), entry("u", 2, 8)], 1000)?
        .wait(std::time::Duration::from_secs(5))
        .await?;
    drop(store.commit("g", &[entry("t", 0, 6)], 1001)?);
    reload_all(&mut store, &rm)?;
    assert_eq!(offset_of(&store, "g", "t", 0), 6);
    assert_eq!(offset_of(&store, "g", "u", 2), 8);
    Ok(())
}

#[test]
fn groups_are_served_only_from_loaded_partitions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut store, rm) = open(dir.path())?;
    drop(store.commit("g", &[entry("t", 0, 5)], 0)?);
    let p = store.partition_of("g");
    assert_eq!(store.serves("g"), Ok(()));
    assert_eq!(store.unload(p), vec!["g".to_string()]);
    assert_eq!(store.serves("g"), Err(NotServed::NotCoordinator));
    assert!(store
        .commit("g", &[entry("t", 0, 6)], 0)
        .is_err_and(|e| e.is_not_leader()));
    let epoch = rm.get_partition(OFFSETS_TOPIC, p).ok_or("no partition")?.leader_epoch();
    assert!(store.begin_load(p, epoch, PARTITIONS));
    assert_eq!(store.serves("g"), Err(NotServed::Loading));
    // A load for an epoch no longer wanted is dropped.
    assert!(store.finish_load(p, epoch + 1, LoadedOffsets::default()).is_none());
    let loaded = LoadedOffsets::replay(store.log(), p, epoch)?;
    assert_eq!(store.finish_load(p, epoch, loaded), Some(vec!["g".to_string()]));
    assert_eq!(offset_of(&store, "g", "t", 0), 5);
    Ok(())
}

#[test]
fn tombstones_survive_reload() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut store, rm) = open(dir.path())?;
    drop(store.commit("a", &[entry("t", 0, 1), entry("t", 1, 2), entry("gone", 0, 3)], 0)?);
    drop(store.commit("b", &[entry("t", 0, 4), entry("gone", 1, 5)], 0)?);
    drop(store.commit("c", &[entry("t", 0, 6)], 0)?);
    assert_eq!(store.delete_offsets("a", &[("t".into(), 1), ("t".into(), 9)], 1)?, 1);
    assert_eq!(store.remove_topic("gone", 1)?, 2);
    assert_eq!(store.delete_group("c", 1)?, 1);
    assert_eq!(store.delete_group("missing", 1)?, 0);
    let check = |s: &OffsetStore| {
        assert_eq!(offset_of(s, "a", "t", 0), 1);
        assert_eq!(offset_of(s, "a", "t", 1), -1);
        assert_eq!(offset_of(s, "a", "gone", 0), -1);
        assert_eq!(offset_of(s, "b", "gone", 1), -1);
        assert_eq!(offset_of(s, "b", "t", 0), 4);
        assert!(!s.has_offsets("c"));
        assert_eq!(s.live_count(), 2);
    };
    check(&store);
    reload_all(&mut store, &rm)?;
    check(&store);
    Ok(())
}

#[test]
fn expire_only_old_commits_of_empty_groups() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut store, rm) = open(dir.path())?;
    drop(store.commit("empty", &[entry("t", 0, 1)], 0)?);
    drop(store.commit("empty", &[entry("t", 1, 2)], 6 * DAY_MS)?);
    drop(store.commit("active", &[entry("t", 0, 3)], 0)?);
    let now = 7 * DAY_MS;
    let removed = store.expire(now, DEFAULT_OFFSETS_RETENTION_MS, |g| {
        (g == "empty").then_some(i64::MIN)
    })?;
    assert_eq!(removed, 1);
    // Retention counts from when the group became empty if that is later than the commit.
    drop(store.commit("late", &[entry("t", 0, 4)], 0)?);
    let removed = store.expire(now, DEFAULT_OFFSETS_RETENTION_MS, |g| {
        (g == "late").then_some(3 * DAY_MS)
    })?;
    assert_eq!(removed, 0);
    assert_eq!(offset_of(&store, "late", "t", 0), 4);
    store.delete_group("late", now)?;
    assert_eq!(offset_of(&store, "empty", "t", 0), -1);
    assert_eq!(offset_of(&store, "empty", "t", 1), 2);
    assert_eq!(offset_of(&store, "active", "t", 0), 3);
    reload_all(&mut store, &rm)?;
    assert_eq!(offset_of(&store, "empty", "t", 0), -1);
    assert_eq!(store.live_count(), 2);
    Ok(())
}

#[test]
fn transactional_offsets_appear_on_commit_only_and_survive_reload() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut store, rm) = open(dir.path())?;
    drop(store.commit("g", &[entry("t", 0, 1)], 0)?);
    drop(store.txn_commit(7, "g", &[entry("t", 0, 10), entry("t", 1, 11)], 1)?);
    drop(store.txn_commit(8, "g", &[entry("t", 2, 20)], 1)?);
    assert_eq!(offset_of(&store, "g", "t", 0), 1, "pending offsets are not visible");
    assert!(store.has_pending("g", "t", 1) && !store.has_pending("g", "t", 3));
    assert_eq!(store.end_txn(7, true, 2)?.len(), 1);
    assert_eq!(offset_of(&store, "g", "t", 0), 10);
    assert_eq!(offset_of(&store, "g", "t", 1), 11);
    assert!(!store.has_pending("g", "t", 1));
    assert!(
        store.end_txn(99, true, 2)?.is_empty(),
        "nothing pending, nothing written"
    );
    reload_all(&mut store, &rm)?;
    assert_eq!(offset_of(&store, "g", "t", 1), 11);
    assert!(store.has_pending("g", "t", 2), "the open transaction's offsets survive");
    drop(store.end_txn(8, false, 5)?);
    reload_all(&mut store, &rm)?;
    assert_eq!(offset_of(&store, "g", "t", 2), -1, "aborted offsets are dropped");
    assert!(!store.has_pending("g", "t", 2));
    Ok(())
}

#[test]
fn corrupt_record_is_refused_at_load() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (store, rm) = open(dir.path())?;
    let p = store.partition_of("g");
    let epoch = rm.get_partition(OFFSETS_TOPIC, p).ok_or("no partition")?.leader_epoch();
    let bad = [(Bytes::from_static(b"\x00\x09junk"), None)];
    drop(store.log().append(p, epoch, &bad, 0)?);
    let err = LoadedOffsets::replay(store.log(), p, epoch).err().ok_or("loaded")?;
    assert!(matches!(err, StoreError::Decode { offset: 0, .. }), "{err}");
    Ok(())
}

proptest::proptest! {
    #[test]
    fn codec_round_trips(group in ".{0,20}", topic in ".{0,20}", partition: i32, offset: i64,
                         leader_epoch: i32, metadata in ".{0,40}", commit_timestamp_ms: i64) {
        let key = encode_key(&group, &topic, partition).map_err(|e| e.to_string());
        proptest::prop_assert_eq!(key.and_then(|k| decode_key(&k)), Ok((group, topic, partition)));
        let c = CommittedOffset { offset, leader_epoch, metadata, commit_timestamp_ms };
        let value = encode_value(&c).map_err(|e| e.to_string());
        proptest::prop_assert_eq!(value.and_then(|v| decode_value(&v)), Ok(c));
    }
}

#[test]
fn key_and_value_round_trip() -> TestResult {
    let key = encode_key("grp", "tópic", -1)?;
    assert_eq!(decode_key(&key)?, ("grp".into(), "tópic".into(), -1));
    let c = CommittedOffset {
        offset: i64::MAX,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 42,
    };
    assert_eq!(decode_value(&encode_value(&c)?)?, c);
    assert!(decode_value(encode_value(&c)?.get(..10).ok_or("short")?).is_err());
    assert!(encode_key(&"x".repeat(70_000), "t", 0).is_err());
    Ok(())
}

/// Kafka's pendingOffsetCommits: a commit is answered by OffsetFetch only once replicated, so a
/// commit lost with its leader (never acknowledged) was never visible either; a later tombstone
/// of the same offset is not undone by an older commit replicating after it.
#[test]
fn a_commit_is_fetched_only_once_the_isr_has_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (log, rm) = crate::coordinator::log::testing::replicated(dir.path(), OFFSETS_TOPIC, 1, &[1, 2])?;
    let mut store = OffsetStore::new(log, 1);
    reload_for_test(&mut store, &rm)?;
    let p = rm.get_partition(OFFSETS_TOPIC, 0).ok_or("no partition")?;
    let replicate = |store: &mut OffsetStore| -> TestResult {
        let end = *p.subscribe_log_end().borrow();
        p.read_for_follower(2, true, end, -1, p.leader_epoch(), 1 << 20, 0)?;
        store.settle();
        Ok(())
    };

    let first = store.commit("g", &[entry("t", 0, 5)], 1000)?;
    store.settle();
    assert!(!first.is_committed());
    assert_eq!(offset_of(&store, "g", "t", 0), -1, "not replicated: not answered");
    replicate(&mut store)?;
    assert!(first.is_committed());
    assert_eq!(offset_of(&store, "g", "t", 0), 5);

    drop(store.commit("g", &[entry("t", 0, 9)], 2000)?);
    assert_eq!(offset_of(&store, "g", "t", 0), 5, "the newer commit waits for the ISR");
    store.delete_offsets("g", &[("t".to_string(), 0)], 3000)?;
    replicate(&mut store)?;
    assert_eq!(
        offset_of(&store, "g", "t", 0),
        -1,
        "the tombstone after it wins, as on replay"
    );
    reload_for_test(&mut store, &rm)?;
    assert_eq!(offset_of(&store, "g", "t", 0), -1);
    Ok(())
}

/// Commits wait for their own partition of `__consumer_offsets` only: one that lags holds back
/// only its own groups.
#[test]
fn a_lagging_offsets_partition_holds_back_only_its_own_groups() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (log, rm) = crate::coordinator::log::testing::replicated(dir.path(), OFFSETS_TOPIC, 2, &[1, 2])?;
    let mut store = OffsetStore::new(log, 2);
    reload_for_test(&mut store, &rm)?;
    let groups: Vec<String> = (0..20).map(|i| format!("g{i}")).collect();
    let a = groups[0].as_str();
    let b = groups
        .iter()
        .map(String::as_str)
        .find(|g| store.partition_of(g) != store.partition_of(a))
        .ok_or("no group in the other partition")?;
    let pb = store.partition_of(b);
    drop(store.commit(a, &[entry("t", 0, 5)], 1000)?);
    drop(store.commit(b, &[entry("t", 0, 7)], 1000)?);
    let p = rm.get_partition(OFFSETS_TOPIC, pb).ok_or("no partition")?;
    let end = *p.subscribe_log_end().borrow();
    p.read_for_follower(2, true, end, -1, p.leader_epoch(), 1 << 20, 0)?;
    store.settle();
    assert_eq!(offset_of(&store, b, "t", 0), 7, "its partition is replicated");
    assert_eq!(offset_of(&store, a, "t", 0), -1, "the other's is not");
    Ok(())
}

/// What the log cleaner leaves of `records`: the latest record of each key, in log order;
/// `keep_tombstones` false once their delete horizon passed (they go too).
fn compacted(records: &[Record], keep_tombstones: bool) -> Vec<Record> {
    let mut last: HashMap<Bytes, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        if let Some(k) = &r.key {
            last.insert(k.clone(), i);
        }
    }
    records
        .iter()
        .enumerate()
        .filter(|(i, r)| r.key.as_ref().and_then(|k| last.get(k)) == Some(i) && (keep_tombstones || r.value.is_some()))
        .map(|(_, r)| r.clone())
        .collect()
}

#[test]
fn a_compacted_log_replays_to_the_same_offsets_as_the_whole_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (mut store, rm) = open(dir.path())?;
    drop(store.commit("g", &[entry("t", 0, 1)], 0)?);
    // Producer 7: a committed transaction, an aborted one over the same keys, an open one.
    drop(store.txn_commit(7, "g", &[entry("t", 0, 10), entry("t", 1, 11)], 1)?);
    drop(store.end_txn(7, true, 2)?);
    drop(store.txn_commit(7, "g", &[entry("t", 0, 20)], 3)?);
    drop(store.end_txn(7, false, 4)?);
    drop(store.txn_commit(7, "g", &[entry("t", 1, 31)], 5)?);
    // Producer 8: a committed transaction on its own partition, then a plain commit over it.
    drop(store.txn_commit(8, "g", &[entry("t", 2, 40)], 6)?);
    drop(store.end_txn(8, true, 7)?);
    drop(store.commit("g", &[entry("t", 2, 41)], 8)?);
    let p = store.partition_of("g");
    let epoch = rm.get_partition(OFFSETS_TOPIC, p).ok_or("no partition")?.leader_epoch();
    let mut records = Vec::new();
    store.log().replay(p, epoch, &mut |r| {
        records.push(r);
        Ok(())
    })?;
    let replay = |records: Vec<Record>| -> Result<LoadedOffsets, String> {
        let mut l = LoadedOffsets::default();
        for r in records {
            apply(&mut l.groups, &mut l.group_records, &mut l.pending, r)?;
        }
        Ok(l)
    };
    let whole = replay(records.clone())?;
    let committed = |l: &LoadedOffsets| {
        l.groups
            .get("g")
            .map(|o| o.values().map(|c| c.offset).collect::<Vec<_>>())
    };
    assert_eq!(committed(&whole), Some(vec![10, 11, 41]));
    assert_eq!(whole.pending.len(), 1);
    for keep_tombstones in [true, false] {
        let l = replay(compacted(&records, keep_tombstones))?;
        assert_eq!(l.groups, whole.groups, "tombstones kept: {keep_tombstones}");
        assert_eq!(l.pending, whole.pending, "tombstones kept: {keep_tombstones}");
    }
    assert!(compacted(&records, false).len() < records.len());
    Ok(())
}
