//! Tests of a partition's role changes as acks=-1 waits see them.

use std::time::Duration;

use super::*;
use crate::controller::record::PartitionRegistration;
use crate::storage::batch::tests::make_batch;
use crate::storage::log::tests::{open, NOW};
use crate::storage::LogConfig;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Node 1 leading at `epoch` with node 2 in the ISR.
fn leader(dir: &std::path::Path, epoch: i32) -> Result<Arc<Partition>, Box<dyn std::error::Error>> {
    let log = open(dir, LogConfig::default(), true)?;
    let p = Arc::new(Partition::new(Arc::from("t"), Uuid::new_v4(), 0, log)?);
    let mut reg = PartitionRegistration::new(vec![1, 2]);
    reg.leader_epoch = epoch;
    p.make_leader(1, &reg, NOW)?;
    Ok(p)
}

#[tokio::test]
async fn an_append_commits_once_the_isr_has_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = leader(dir.path(), 1)?;
    let out = p.append_records_to_leader(Bytes::from(make_batch(3, NOW, 10)), NOW)?;
    assert_eq!((out.leader_epoch, out.required_offset), (1, 3));
    let waiter = tokio::spawn({
        let p = Arc::clone(&p);
        async move { p.wait_committed(1, 3, Instant::now() + Duration::from_secs(10)).await }
    });
    p.read_for_follower(2, true, 3, -1, 1, 1 << 20, NOW)?;
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), waiter).await??, Ok(()));
    Ok(())
}

/// Leadership lost while an append waits: the waiter is told at once, and stays told even when
/// the replica's high watermark (now the new leader's) passes the offset later.
#[tokio::test]
async fn leadership_lost_is_not_a_commit_even_when_the_hw_passes_later() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = leader(dir.path(), 1)?;
    p.append_records_to_leader(Bytes::from(make_batch(3, NOW, 10)), NOW)?;
    let waiter = tokio::spawn({
        let p = Arc::clone(&p);
        async move { p.wait_committed(1, 3, Instant::now() + Duration::from_secs(30)).await }
    });
    tokio::task::yield_now().await;
    p.make_follower(2, 2);
    let woke = tokio::time::timeout(Duration::from_secs(5), waiter).await??;
    assert_eq!(
        woke,
        Err(Uncommitted::NotLeader),
        "woken by the role change, not the deadline"
    );
    // As a follower whose leader's HW is 3: still not a commit of epoch 1's append.
    p.append_as_follower(&Bytes::new(), 3, NOW)?;
    assert_eq!(p.high_watermark(), 3);
    let late = p.wait_committed(1, 3, Instant::now() + Duration::from_secs(1)).await;
    assert_eq!(late, Err(Uncommitted::NotLeader));
    // Leading again at a later epoch does not revive it either.
    let mut reg = PartitionRegistration::new(vec![1, 2]);
    reg.leader_epoch = 3;
    p.make_leader(1, &reg, NOW)?;
    let again = p.wait_committed(1, 3, Instant::now() + Duration::from_secs(1)).await;
    assert_eq!(again, Err(Uncommitted::NotLeader));
    Ok(())
}

#[tokio::test]
async fn an_append_the_isr_never_gets_times_out() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = leader(dir.path(), 0)?;
    p.append_records_to_leader(Bytes::from(make_batch(1, NOW, 10)), NOW)?;
    let waited = p.wait_committed(0, 1, Instant::now() + Duration::from_millis(50)).await;
    assert_eq!(waited, Err(Uncommitted::TimedOut));
    Ok(())
}

/// A caught-up follower joins the ISR only when the metadata lets it (KIP-841): a fenced one's
/// fetches propose nothing.
#[test]
fn only_an_eligible_follower_is_proposed_for_the_isr() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path(), LogConfig::default(), true)?;
    let p = Partition::new(Arc::from("t"), Uuid::new_v4(), 0, log)?;
    let mut reg = PartitionRegistration::new(vec![1, 2]);
    reg.isr = vec![1];
    p.make_leader(1, &reg, NOW)?;
    let (_, change) = p.read_for_follower(2, false, 0, -1, 0, 1 << 20, NOW)?;
    assert!(change.is_none(), "fenced: no proposal");
    let (_, change) = p.read_for_follower(2, true, 0, -1, 0, 1 << 20, NOW)?;
    assert_eq!(change.map(|c| c.new_isr), Some(vec![1, 2]));
    Ok(())
}
