//! Tests of the group coordinator actor (`actor.rs`).

use bytes::Bytes;

use super::*;
use crate::coordinator::offsets::{loaded_for_test, reload_for_test};
use crate::coordinator::Protocol;
use crate::replication::replica_manager::ReplicaManager;
use std::sync::Arc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

/// An actor with a default config and an offset store in a fresh temp dir (kept alive by
/// the returned guard).
type ForTest = (
    GroupCoordinator,
    JoinHandle<()>,
    (tempfile::TempDir, Arc<ReplicaManager>),
);

fn spawn_for_test() -> Result<ForTest, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (store, rm) = loaded_for_test(dir.path(), 1)?;
    let (coordinator, task) = spawn(GroupCoordinatorConfig::default(), store);
    Ok((coordinator, task, (dir, rm)))
}

fn join_params(member_id: &str, client_id: &str) -> JoinGroupParams {
    JoinGroupParams {
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: client_id.to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_string(),
        protocols: vec![Protocol::new("range", format!("{client_id}:range"))],
        require_known_member_id: true,
        supports_skip_assignment: false,
    }
}

fn sync_params(member_id: &str, generation_id: i32, assignments: Vec<(String, Bytes)>) -> SyncGroupParams {
    SyncGroupParams {
        member_id: member_id.to_string(),
        group_instance_id: None,
        generation_id,
        protocol_type: Some("consumer".to_string()),
        protocol_name: Some("range".to_string()),
        assignments,
    }
}

fn hb(member_id: &str, generation_id: i32) -> HeartbeatParams {
    HeartbeatParams {
        member_id: member_id.to_string(),
        group_instance_id: None,
        generation_id,
    }
}

/// The v4+ dance through the actor: MEMBER_ID_REQUIRED, then the rejoin that waits.
async fn join_new(coordinator: &GroupCoordinator, group_id: &str, client_id: &str) -> JoinGroupResult {
    let first = coordinator.join_group(group_id, join_params("", client_id)).await;
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    assert!(!first.member_id.is_empty());
    coordinator
        .join_group(group_id, join_params(&first.member_id, client_id))
        .await
}

/// A consumer joins and syncs; the leader assigns "a:<member id>" to each member.
async fn consumer(coordinator: GroupCoordinator, group_id: &str, client_id: &str) -> (JoinGroupResult, Bytes) {
    let joined = join_new(&coordinator, group_id, client_id).await;
    let assignments = joined
        .members
        .iter()
        .map(|m| (m.member_id.clone(), Bytes::from(format!("a:{}", m.member_id))))
        .collect();
    let synced = coordinator
        .sync_group(
            group_id,
            sync_params(&joined.member_id, joined.generation_id, assignments),
        )
        .await;
    assert_eq!(synced.error, None, "{client_id}");
    (joined, synced.assignment)
}

async fn three_consumer_group(coordinator: &GroupCoordinator, group_id: &str) -> Vec<(JoinGroupResult, Bytes)> {
    let (a, b, c) = tokio::join!(
        consumer(coordinator.clone(), group_id, "c1"),
        consumer(coordinator.clone(), group_id, "c2"),
        consumer(coordinator.clone(), group_id, "c3"),
    );
    vec![a, b, c]
}

#[tokio::test(start_paused = true)]
async fn lone_consumer_is_answered_right_after_the_initial_delay() -> TestResult {
    let (coordinator, _task, _dir) = spawn_for_test()?;
    let start = Instant::now();
    let joined = join_new(&coordinator, "g", "c1").await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(3000), "{waited:?}");
    assert!(waited < Duration::from_millis(3010), "{waited:?}");
    assert_eq!(joined.error, None);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader_id, joined.member_id);
    assert_eq!(joined.members.len(), 1);
    let assignment = vec![(joined.member_id.clone(), Bytes::from_static(b"all"))];
    let synced = coordinator
        .sync_group("g", sync_params(&joined.member_id, 1, assignment))
        .await;
    assert_eq!(synced.error, None);
    assert_eq!(synced.assignment, Bytes::from_static(b"all"));
    assert_eq!(start.elapsed(), waited, "SyncGroup of a lone leader does not wait");
    coordinator.heartbeat("g", hb(&joined.member_id, 1)).await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn three_concurrent_consumers_all_join_and_get_their_assignments() -> TestResult {
    let (coordinator, _task, _dir) = spawn_for_test()?;
    let start = Instant::now();
    let results = three_consumer_group(&coordinator, "g").await;
    // As Kafka's InitialDelayedJoin: members arriving during the 3 s delay extend it once more.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(6000), "{waited:?}");
    assert!(waited < Duration::from_millis(6010), "{waited:?}");
    let leaders: Vec<&JoinGroupResult> = results
        .iter()
        .map(|(j, _)| j)
        .filter(|j| !j.members.is_empty())
        .collect();
    assert_eq!(leaders.len(), 1);
    for (joined, assignment) in &results {
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(
            joined.leader_id,
            leaders.first().map(|l| l.member_id.clone()).unwrap_or_default()
        );
        assert_eq!(*assignment, Bytes::from(format!("a:{}", joined.member_id)));
    }
    let described = coordinator.describe_groups(vec!["g".to_string()]).await;
    let summary = described.first().ok_or("no answer")?.result.clone()?;
    assert_eq!(summary.state, GroupState::Stable);
    assert_eq!(summary.members.len(), 3);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn silent_member_expires_and_the_others_are_told_to_rebalance() -> TestResult {
    let (coordinator, _task, _dir) = spawn_for_test()?;
    let results = three_consumer_group(&coordinator, "g").await;
    let stable_at = Instant::now();
    let ids: Vec<String> = results.iter().map(|(j, _)| j.member_id.clone()).collect();
    let [live_a, live_b, silent_id] = ids.as_slice() else {
        return Err("expected three members".into());
    };
    // The two live members heartbeat every 3 s; the third says nothing.
    let error = loop {
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let mut errors = Vec::new();
        for id in [live_a, live_b] {
            if let Err(e) = coordinator.heartbeat("g", hb(id, 1)).await {
                errors.push(e);
            }
        }
        if let Some(e) = errors.first() {
            break *e;
        }
        assert!(stable_at.elapsed() < Duration::from_millis(20_000), "no expiry");
    };
    assert_eq!(error, GroupError::RebalanceInProgress);
    assert_eq!(
        stable_at.elapsed(),
        Duration::from_millis(12_000),
        "expired at 10 s, seen at the next heartbeat"
    );
    assert_eq!(
        coordinator.heartbeat("g", hb(silent_id, 1)).await,
        Err(GroupError::UnknownMemberId)
    );
    // The live members rejoin; the join completes as soon as both did.
    let rejoin = |id: &String| coordinator.join_group("g", join_params(id, "live"));
    let (a, b) = tokio::join!(rejoin(live_a), rejoin(live_b));
    for joined in [&a, &b] {
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation_id, 2);
    }
    assert_eq!(
        a.members.len() + b.members.len(),
        2,
        "only the leader lists the two members"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_second_join_of_a_waiting_member_releases_the_first() -> TestResult {
    let (coordinator, _task, _dir) = spawn_for_test()?;
    let first = coordinator.join_group("g", join_params("", "c1")).await;
    let params = join_params(&first.member_id, "c1");
    let (old, new) = tokio::join!(coordinator.join_group("g", params.clone()), async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        coordinator.join_group("g", params.clone()).await
    });
    assert_eq!(old.error, Some(GroupError::RebalanceInProgress));
    assert_eq!(new.error, None);
    assert_eq!(new.generation_id, 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn unknown_groups_follow_kafka() -> TestResult {
    let (coordinator, _task, _dir) = spawn_for_test()?;
    assert_eq!(
        coordinator.heartbeat("nope", hb("m", 1)).await,
        Err(GroupError::UnknownMemberId)
    );
    let synced = coordinator.sync_group("nope", sync_params("m", 1, Vec::new())).await;
    assert_eq!(synced.error, Some(GroupError::UnknownMemberId));
    let leaving = vec![LeaveGroupMember {
        member_id: "m".to_string(),
        group_instance_id: None,
    }];
    let left = coordinator.leave_group("nope", leaving).await?;
    assert_eq!(left.first().and_then(|l| l.error), Some(GroupError::UnknownMemberId));
    let joined = coordinator.join_group("nope", join_params("m", "c1")).await;
    assert_eq!(joined.error, Some(GroupError::UnknownMemberId));
    let joined = coordinator.join_group("", join_params("", "c1")).await;
    assert_eq!(joined.error, Some(GroupError::InvalidGroupId));
    let described = coordinator.describe_groups(vec!["nope".to_string()]).await;
    let summary = described.first().ok_or("no answer")?.result.clone()?;
    assert_eq!(summary.state, GroupState::Dead);
    assert!(summary.members.is_empty());
    assert!(
        coordinator.list_groups(Vec::new()).await?.is_empty(),
        "refused joins leave no group"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn list_describe_and_delete_groups() -> TestResult {
    let (coordinator, _task, _dir) = spawn_for_test()?;
    let results = three_consumer_group(&coordinator, "busy").await;
    let quiet = join_new(&coordinator, "quiet", "q1").await;
    let leaving = vec![LeaveGroupMember {
        member_id: quiet.member_id.clone(),
        group_instance_id: None,
    }];
    let left = coordinator.leave_group("quiet", leaving).await?;
    assert_eq!(left.first().and_then(|l| l.error), None);

    let all = coordinator.list_groups(Vec::new()).await?;
    let names: Vec<(&str, GroupState)> = all.iter().map(|g| (g.group_id.as_str(), g.state)).collect();
    assert_eq!(names, vec![("busy", GroupState::Stable), ("quiet", GroupState::Empty)]);
    let stable = coordinator.list_groups(vec!["stable".to_string()]).await?;
    assert_eq!(stable.len(), 1);
    assert_eq!(stable.first().map(|g| g.protocol_type.as_str()), Some("consumer"));

    let described = coordinator
        .describe_groups(vec!["busy".to_string(), "quiet".to_string()])
        .await;
    let busy = described.first().ok_or("no answer")?.result.clone()?;
    assert_eq!(busy.protocol_name, "range");
    for (joined, assignment) in &results {
        let member = busy
            .members
            .iter()
            .find(|m| m.member_id == joined.member_id)
            .ok_or("member not described")?;
        assert_eq!(member.assignment, *assignment);
    }

    let deleted = coordinator
        .delete_groups(vec!["busy".to_string(), "quiet".to_string(), "nope".to_string()])
        .await;
    let errors: Vec<Result<(), GroupError>> = deleted.into_iter().map(|d| d.result).collect();
    assert_eq!(
        errors,
        vec![Err(GroupError::NonEmptyGroup), Ok(()), Err(GroupError::GroupIdNotFound)]
    );
    let described = coordinator.describe_groups(vec!["quiet".to_string()]).await;
    assert_eq!(
        described.first().ok_or("no answer")?.result.clone()?.state,
        GroupState::Dead
    );
    assert_eq!(coordinator.list_groups(Vec::new()).await?.len(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_stopped_actor_answers_coordinator_not_available() -> TestResult {
    let (coordinator, task, _dir) = spawn_for_test()?;
    let first = coordinator.join_group("g", join_params("", "c1")).await;
    let waiting = {
        let coordinator = coordinator.clone();
        let params = join_params(&first.member_id, "c1");
        tokio::spawn(async move { coordinator.join_group("g", params).await })
    };
    tokio::task::yield_now().await;
    task.abort();
    let joined = waiting.await?;
    assert_eq!(joined.error, Some(GroupError::CoordinatorNotAvailable));
    assert_eq!(
        coordinator.heartbeat("g", hb(&first.member_id, 0)).await,
        Err(GroupError::CoordinatorNotAvailable)
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn groups_and_offsets_survive_a_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (store, rm) = loaded_for_test(dir.path(), 1)?;
    let (coordinator, task) = spawn(GroupCoordinatorConfig::default(), store);
    let results = three_consumer_group(&coordinator, "g").await;
    let (leader, _) = results.first().ok_or("no member")?;
    let commit = |member_id: &str, generation_id: i32| OffsetCommitParams {
        member_id: member_id.to_string(),
        group_instance_id: None,
        generation_id,
        entries: vec![crate::coordinator::OffsetCommitEntry {
            topic: "t".into(),
            partition: 0,
            offset: 17,
            leader_epoch: 0,
            metadata: String::new(),
        }],
    };
    assert_eq!(
        coordinator.commit_offsets("g", commit(&leader.member_id, 9)).await,
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        coordinator.commit_offsets("g", commit("", -1)).await,
        Err(GroupError::UnknownMemberId),
        "a simple consumer cannot commit into a live group"
    );
    coordinator.commit_offsets("g", commit(&leader.member_id, 1)).await?;
    coordinator.commit_offsets("simple", commit("", -1)).await?;
    coordinator.shutdown().await;
    task.await?;

    // A new coordinator loads the partition (as a new leader would).
    let (log, _) = crate::coordinator::log::testing::reuse(&rm, crate::coordinator::log::OFFSETS_TOPIC);
    let mut store = OffsetStore::new(log, 1);
    reload_for_test(&mut store, &rm)?;
    let (coordinator, _task) = spawn(GroupCoordinatorConfig::default(), store);
    // The members carry on with their generation: no rebalance after the restart.
    for (joined, _) in &results {
        coordinator.heartbeat("g", hb(&joined.member_id, 1)).await?;
    }
    let described = coordinator.describe_groups(vec!["g".to_string()]).await;
    let summary = described.first().ok_or("no answer")?.result.clone()?;
    assert_eq!(summary.state, GroupState::Stable);
    for (joined, assignment) in &results {
        let member = summary
            .members
            .iter()
            .find(|m| m.member_id == joined.member_id)
            .ok_or("member lost")?;
        assert_eq!(member.assignment, *assignment);
    }
    let fetched = coordinator
        .fetch_offsets("g", Some(vec![("t".into(), 0)]), false)
        .await?;
    assert_eq!(fetched.first().map(|f| f.committed.offset), Some(17));
    let listed = coordinator.list_groups(Vec::new()).await?;
    let names: Vec<(&str, GroupState)> = listed.iter().map(|g| (g.group_id.as_str(), g.state)).collect();
    assert_eq!(names, vec![("g", GroupState::Stable), ("simple", GroupState::Empty)]);
    // Members that never come back expire after their session timeout, and the group empties.
    tokio::time::sleep(Duration::from_millis(u64::try_from(SESSION_MS)? + 100)).await;
    let described = coordinator.describe_groups(vec!["g".to_string()]).await;
    assert_eq!(
        described.first().ok_or("no answer")?.result.clone()?.state,
        GroupState::Empty
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn expiry_removes_old_offsets_and_then_the_empty_group() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (store, _rm) = loaded_for_test(dir.path(), 1)?;
    let config = GroupCoordinatorConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 10_000,
        ..Default::default()
    };
    let (coordinator, _task) = spawn(config, store);
    let entry = crate::coordinator::OffsetCommitEntry {
        topic: "t".into(),
        partition: 0,
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
    };
    let params = OffsetCommitParams {
        member_id: String::new(),
        group_instance_id: None,
        generation_id: -1,
        entries: vec![entry],
    };
    coordinator.commit_offsets("old", params).await?;
    tokio::time::sleep(Duration::from_millis(30_000)).await;
    assert_eq!(coordinator.list_groups(Vec::new()).await?.len(), 1, "not yet expired");
    tokio::time::sleep(Duration::from_millis(45_000)).await;
    assert!(
        coordinator.list_groups(Vec::new()).await?.is_empty(),
        "expired with its offsets"
    );
    let fetched = coordinator
        .fetch_offsets("old", Some(vec![("t".into(), 0)]), false)
        .await?;
    assert_eq!(fetched.first().map(|f| f.committed.offset), Some(-1));
    Ok(())
}
