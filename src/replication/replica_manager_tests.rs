//! The replica manager's tests: opening, creating, reassigning and deleting replicas on disk.

use super::*;
use std::collections::BTreeMap;

fn meta(name: &str, partitions: i32) -> Arc<TopicImage> {
    Arc::new(TopicImage {
        name: name.into(),
        id: uuid::Uuid::new_v4(),
        partitions: (0..partitions)
            .map(|_| crate::controller::record::PartitionRegistration::new(vec![1]))
            .collect(),
        configs: BTreeMap::new(),
    })
}

/// A crash between forgetting a topic and removing its files must not hand the old data to
/// a new topic of the same name.
#[test]
fn stale_directories_never_reach_a_new_topic() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let old = meta("t", 2);
    {
        let (rm, _q) = ReplicaManager::open(
            dir.path(),
            1,
            LogConfig::default(),
            std::slice::from_ref(&old),
            true,
            16,
        )?;
        let p = rm.get_partition("t", 0).ok_or("no partition")?;
        let records = crate::server::tests::batch(&["old"], kafka_protocol::records::Compression::None)
            .map_err(|e| e.to_string())?;
        p.append_records_to_leader(records, now_ms())?;
        rm.shutdown()?;
    }
    std::fs::create_dir_all(dir.path().join("gone-0.abc-delete"))?;
    std::fs::create_dir_all(dir.path().join("__cluster_metadata-0"))?;
    // Same name, new id (deleted and recreated before the files went away).
    let new = meta("t", 1);
    let (rm, _q) = ReplicaManager::open(dir.path(), 1, LogConfig::default(), &[new], false, 16)?;
    assert_eq!(rm.get_partition("t", 0).map(|p| p.offsets().log_end_offset), Some(0));
    assert!(!dir.path().join("t-1").exists(), "partition beyond the count removed");
    assert!(!dir.path().join("gone-0.abc-delete").exists());
    assert!(
        dir.path().join("__cluster_metadata-0").exists(),
        "the metadata log is not a stray"
    );
    Ok(())
}

/// The log dir's two checkpoints hold every partition (Kafka's format), are written at
/// shutdown and on demand, forget a deleted topic, and give the recovery point back at open.
#[test]
fn log_dir_checkpoints_cover_every_partition() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let topics = [meta("a", 2), meta("b", 1)];
    let (rm, _q) = ReplicaManager::open(dir.path(), 1, LogConfig::default(), &topics, true, 16)?;
    let p = rm.get_partition("a", 1).ok_or("no partition")?;
    let records = crate::server::tests::batch(&["x", "y"], kafka_protocol::records::Compression::None)
        .map_err(|e| e.to_string())?;
    p.append_records_to_leader(records, now_ms())?;
    rm.write_checkpoints()?;
    let rp = read_partition_offsets(&dir.path().join(RECOVERY_POINT_OFFSET_CHECKPOINT))?;
    assert_eq!(rp.len(), 3);
    assert_eq!(rp.get(&("a".to_string(), 1)), Some(&0), "not flushed yet");
    rm.delete_topic("b")?;
    let rp = read_partition_offsets(&dir.path().join(RECOVERY_POINT_OFFSET_CHECKPOINT))?;
    assert_eq!(rp.len(), 2, "the deleted topic is forgotten");
    rm.shutdown()?;
    let rp = read_partition_offsets(&dir.path().join(RECOVERY_POINT_OFFSET_CHECKPOINT))?;
    assert_eq!(rp.get(&("a".to_string(), 1)), Some(&2), "closed: everything flushed");
    let start = read_partition_offsets(&dir.path().join(LOG_START_OFFSET_DIR_CHECKPOINT))?;
    assert_eq!(start.get(&("a".to_string(), 0)), Some(&0));
    assert!(
        !dir.path().join("a-1").join("recovery-point").exists(),
        "no per-partition file"
    );
    // An unclean open trusts what the checkpoint says (nothing to re-validate here).
    let (rm, _q) = ReplicaManager::open(dir.path(), 1, LogConfig::default(), &topics[..1], false, 16)?;
    let p = rm.get_partition("a", 1).ok_or("no partition")?;
    assert_eq!(p.checkpoint_offsets().recovery_point, 2);
    assert_eq!(p.offsets().log_end_offset, 2);
    Ok(())
}

/// A creation that fails part way (here: one partition's path is taken by a file, as
/// "Too many open files" would fail it) installs the partitions that opened, leaves nothing
/// of the failed one behind, and `open_missing` opens it once it can.
#[test]
fn failed_creation_leaves_nothing_of_the_failed_partition_and_is_retried() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (rm, _q) = ReplicaManager::open(dir.path(), 1, LogConfig::default(), &[], true, 64)?;
    std::fs::write(dir.path().join("t-5"), b"in the way")?;
    let t = meta("t", 10);
    assert!(rm.create_partitions(&t).is_err());
    assert!(rm.is_incomplete());
    assert!(rm.is_missing("t", 5) && !rm.is_missing("t", 4));
    let open: Vec<i32> = rm
        .topic_partitions("t")
        .ok_or("no topic")?
        .iter()
        .map(|p| p.index)
        .collect();
    assert_eq!(open, [0, 1, 2, 3, 4, 6, 7, 8, 9]);
    assert!(dir.path().join("t-5").is_file(), "only the file that was in the way");
    assert!(!rm.open_missing(std::slice::from_ref(&t)), "still in the way");
    assert!(rm.is_incomplete());
    std::fs::remove_file(dir.path().join("t-5"))?;
    assert!(rm.open_missing(std::slice::from_ref(&t)));
    assert!(!rm.is_incomplete() && !rm.is_missing("t", 5));
    let parts = rm.topic_partitions("t").ok_or("no topic")?;
    let mut indexes: Vec<i32> = parts.iter().map(|p| p.index).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..10).collect::<Vec<_>>());
    Ok(())
}

/// Only a full disk is waited out at startup (`open_missing`, covered by the hardening
/// suite's restart on a full tmpfs); any other failure to open a replica stops the start.
#[test]
fn a_replica_failing_to_open_at_startup_for_another_reason_stops_the_start() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (a, b) = (meta("a", 1), meta("b", 2));
    {
        let (rm, _q) = ReplicaManager::open(dir.path(), 1, LogConfig::default(), std::slice::from_ref(&a), true, 16)?;
        rm.shutdown()?;
    }
    std::fs::write(dir.path().join("b-1"), b"in the way")?;
    let topics = [a.clone(), b.clone()];
    assert!(ReplicaManager::open(dir.path(), 1, LogConfig::default(), &topics, true, 16).is_err());
    std::fs::remove_file(dir.path().join("b-1"))?;
    let (rm, _q) = ReplicaManager::open(dir.path(), 1, LogConfig::default(), &topics, true, 16)?;
    assert!(!rm.is_incomplete() && rm.get_partition("b", 1).is_some());
    Ok(())
}

/// A reassignment that moves a replica away removes it and its data (renamed, then removed in
/// the background); one that moves a replica here creates it empty, to catch up as a follower.
#[test]
fn reassigned_replicas_are_removed_and_created() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let t = meta("t", 2);
    let (rm, _q) = ReplicaManager::open(dir.path(), 1, LogConfig::default(), std::slice::from_ref(&t), true, 16)?;
    let p = rm.get_partition("t", 1).ok_or("no partition")?;
    let records =
        crate::server::tests::batch(&["x"], kafka_protocol::records::Compression::None).map_err(|e| e.to_string())?;
    p.append_records_to_leader(records, now_ms())?;
    // Partition 1 moves to brokers 2 and 3.
    let mut moved = t.as_ref().clone();
    moved.partitions[1] = crate::controller::record::PartitionRegistration::new(vec![2, 3]);
    rm.apply_replicas(&moved)?;
    assert!(rm.get_partition("t", 1).is_none() && rm.get_partition("t", 0).is_some());
    assert!(
        !p.is_leader(),
        "a removed replica answers NOT_LEADER_OR_FOLLOWER to what still holds it"
    );
    assert!(!dir.path().join("t-1").exists());
    let rp = read_partition_offsets(&dir.path().join(RECOVERY_POINT_OFFSET_CHECKPOINT))?;
    assert!(!rp.contains_key(&("t".to_string(), 1)), "the checkpoints forget it");
    // And back here, as a follower of broker 2: a new, empty replica.
    let mut back = moved.clone();
    back.partitions[1] = crate::controller::record::PartitionRegistration::new(vec![2, 1]);
    rm.apply_replicas(&back)?;
    let p = rm.get_partition("t", 1).ok_or("not created")?;
    assert_eq!(
        (p.offsets().log_end_offset, p.is_leader(), p.leader_id()),
        (0, false, 2)
    );
    assert!(dir.path().join("t-1").join(PARTITION_METADATA).exists());
    Ok(())
}

/// A consumer fetching from a follower past its log end (KIP-392): OFFSET_OUT_OF_RANGE if it
/// gave its view of the leader epoch (it then asks the leader), else an empty answer (Kafka's
/// KAFKA-14284: Fetch v11 without an epoch may come from stale metadata).
#[test]
fn a_follower_answers_past_its_end_by_whether_the_consumer_knows_the_epoch() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut t = meta("t", 1).as_ref().clone();
    t.partitions[0] = crate::controller::record::PartitionRegistration::new(vec![2, 1]);
    let (rm, _q) = ReplicaManager::open(dir.path(), 1, LogConfig::default(), &[Arc::new(t)], true, 16)?;
    let p = rm.get_partition("t", 0).ok_or("no partition")?;
    assert!(!p.is_leader());
    let params = FetchParams {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        hard_max_bytes_limit: false,
        read_committed: false,
        from_followers: true,
    };
    let target = |knows_leader_epoch| FetchTarget {
        partition: Some(Arc::clone(&p)),
        fetch_offset: 5,
        partition_max_bytes: 1 << 20,
        knows_leader_epoch,
    };
    let without = read_all(params, &[target(false)]);
    assert!(matches!(&without[..], [Ok(r)] if r.records.is_empty()), "{without:?}");
    let with = read_all(params, &[target(true)]);
    assert!(
        matches!(
            &with[..],
            [Err(BrokerError::Storage(StorageError::OffsetOutOfRange { .. }))]
        ),
        "{with:?}"
    );
    Ok(())
}
