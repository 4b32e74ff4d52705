//! Tests of the group state machine, driven through its public calls with explicit times, as a
//! client library would drive it: MEMBER_ID_REQUIRED, rejoin, JoinGroup, SyncGroup, heartbeats.

use std::collections::HashMap;

use bytes::Bytes;

use super::GroupMetadata;
use crate::coordinator::{
    Completion, GroupCoordinatorConfig, GroupError, GroupState, HeartbeatParams, JoinGroupParams, JoinGroupResult,
    JoinOutcome, LeaveGroupMember, Protocol, SyncGroupParams, SyncGroupResult, SyncOutcome,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn group() -> GroupMetadata {
    GroupMetadata::new("g", GroupCoordinatorConfig::default())
}

fn join_params(member_id: &str, client_id: &str, protocols: &[&str]) -> JoinGroupParams {
    JoinGroupParams {
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: client_id.to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_string(),
        protocols: protocols
            .iter()
            .map(|p| Protocol::new(*p, format!("{client_id}:{p}")))
            .collect(),
        require_known_member_id: true,
        supports_skip_assignment: false,
    }
}

fn static_params(member_id: &str, instance_id: &str, protocols: &[&str]) -> JoinGroupParams {
    JoinGroupParams {
        group_instance_id: Some(instance_id.to_string()),
        ..join_params(member_id, instance_id, protocols)
    }
}

fn done(outcome: JoinOutcome) -> Result<JoinGroupResult, String> {
    match outcome {
        JoinOutcome::Done(result) => Ok(result),
        other => Err(format!("expected an immediate answer, got {other:?}")),
    }
}

fn pending(outcome: JoinOutcome) -> Result<String, String> {
    match outcome {
        JoinOutcome::Pending { member_id } => Ok(member_id),
        other => Err(format!("expected a parked JoinGroup, got {other:?}")),
    }
}

/// The v4+ dance: MEMBER_ID_REQUIRED, then the rejoin that parks. Returns the member id.
fn join_new(group: &mut GroupMetadata, client_id: &str, protocols: &[&str], now_ms: u64) -> Result<String, String> {
    let first = done(group.join(join_params("", client_id, protocols), now_ms))?;
    if first.error != Some(GroupError::MemberIdRequired) {
        return Err(format!("expected MEMBER_ID_REQUIRED, got {first:?}"));
    }
    pending(group.join(join_params(&first.member_id, client_id, protocols), now_ms))
}

fn joins(completions: Vec<Completion>) -> HashMap<String, JoinGroupResult> {
    completions
        .into_iter()
        .filter_map(|c| match c {
            Completion::Join { member_id, result } => Some((member_id, result)),
            Completion::Sync { .. } => None,
        })
        .collect()
}

fn syncs(completions: Vec<Completion>) -> HashMap<String, SyncGroupResult> {
    completions
        .into_iter()
        .filter_map(|c| match c {
            Completion::Sync { member_id, result } => Some((member_id, result)),
            Completion::Join { .. } => None,
        })
        .collect()
}

fn get<'a, T>(map: &'a HashMap<String, T>, key: &str) -> Result<&'a T, String> {
    map.get(key).ok_or_else(|| format!("no answer for {key}"))
}

fn sync_params(member_id: &str, generation_id: i32, assignments: Vec<(String, Bytes)>) -> SyncGroupParams {
    SyncGroupParams {
        member_id: member_id.to_string(),
        group_instance_id: None,
        generation_id,
        protocol_type: Some("consumer".to_string()),
        protocol_name: None,
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

/// Forms a Stable group: every client joins at `now_ms`, the initial delay passes, the leader
/// assigns "a-<member id>" to each. Returns the member ids in join order and the time it ends.
fn stable_group(
    group: &mut GroupMetadata,
    clients: &[(&str, &[&str])],
    now_ms: u64,
) -> Result<(Vec<String>, u64), String> {
    let mut ids = Vec::new();
    for (client, protocols) in clients {
        ids.push(join_new(group, client, protocols, now_ms)?);
    }
    // Ticks through the initial delay and its extensions.
    let mut answers = HashMap::new();
    let mut done_at = now_ms;
    while group.state() == GroupState::PreparingRebalance && done_at < now_ms + 60_000 {
        done_at = group.next_deadline_ms().ok_or("no join timer")?;
        answers.extend(joins(group.tick(done_at)));
    }
    let leader = group.leader_id().ok_or("no leader")?.to_string();
    let generation = get(&answers, &leader)?.generation_id;
    let assignments = ids
        .iter()
        .map(|id| (id.clone(), Bytes::from(format!("a-{id}"))))
        .collect();
    for id in ids.iter().filter(|id| **id != leader) {
        if group.sync(sync_params(id, generation, Vec::new()), done_at) != SyncOutcome::Pending {
            return Err("follower sync should park".into());
        }
    }
    if group.sync(sync_params(&leader, generation, assignments), done_at) != SyncOutcome::Pending {
        return Err("leader sync should park and complete in the batch".into());
    }
    let answers = syncs(group.take_completions());
    if answers.len() != ids.len() || group.state() != GroupState::Stable {
        return Err(format!("group did not stabilize: {answers:?}"));
    }
    Ok((ids, done_at))
}

#[test]
fn lone_member_is_answered_right_after_the_initial_delay() -> TestResult {
    let mut g = group();
    let first = done(g.join(join_params("", "client-1", &["range"]), 1_000))?;
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    assert!(first.member_id.starts_with("client-1-"), "{}", first.member_id);
    assert_eq!(g.state(), GroupState::Empty);
    assert!(g.is_pending_member(&first.member_id));

    let id = pending(g.join(join_params(&first.member_id, "client-1", &["range"]), 1_010))?;
    assert_eq!(id, first.member_id);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.next_deadline_ms(), Some(4_010));
    assert!(g.tick(4_009).is_empty());

    let answers = joins(g.tick(4_010));
    let answer = get(&answers, &id)?;
    assert_eq!(answer.error, None);
    assert_eq!(answer.generation_id, 1);
    assert_eq!(answer.leader_id, id);
    assert_eq!(answer.protocol_name.as_deref(), Some("range"));
    assert_eq!(answer.members.len(), 1);
    assert_eq!(g.state(), GroupState::CompletingRebalance);

    let assignment = Bytes::from_static(b"p0,p1");
    assert_eq!(
        g.sync(sync_params(&id, 1, vec![(id.clone(), assignment.clone())]), 4_020),
        SyncOutcome::Pending
    );
    let answers = syncs(g.take_completions());
    assert_eq!(get(&answers, &id)?.assignment, assignment);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.heartbeat(&hb(&id, 1), 5_000), Ok(()));
    Ok(())
}

#[test]
fn three_members_leader_gets_all_metadata_and_sync_distributes() -> TestResult {
    let mut g = group();
    let m1 = join_new(&mut g, "c1", &["range"], 0)?;
    let m2 = join_new(&mut g, "c2", &["range"], 100)?;
    let m3 = join_new(&mut g, "c3", &["range"], 200)?;
    // New members during generation 0's initial delay extend it once more (InitialDelayedJoin).
    assert!(g.tick(3_000).is_empty());
    assert_eq!(g.next_deadline_ms(), Some(6_000));
    let answers = joins(g.tick(6_000));
    assert_eq!(answers.len(), 3);
    let leader = get(&answers, &m1)?;
    assert_eq!(leader.leader_id, m1);
    let mut listed: Vec<_> = leader
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.metadata.clone()))
        .collect();
    listed.sort();
    let mut expected = vec![
        (m1.clone(), Bytes::from("c1:range")),
        (m2.clone(), Bytes::from("c2:range")),
        (m3.clone(), Bytes::from("c3:range")),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(get(&answers, &m2)?.members.is_empty() && get(&answers, &m3)?.members.is_empty());
    assert_eq!(get(&answers, &m2)?.leader_id, m1);

    // A follower that syncs before the leader waits for it.
    assert_eq!(g.sync(sync_params(&m2, 1, Vec::new()), 6_100), SyncOutcome::Pending);
    assert!(g.take_completions().is_empty());
    let assignments = vec![
        (m1.clone(), Bytes::from("A1")),
        (m2.clone(), Bytes::from("A2")),
        (m3.clone(), Bytes::from("A3")),
    ];
    assert_eq!(g.sync(sync_params(&m1, 1, assignments), 6_200), SyncOutcome::Pending);
    let answers = syncs(g.take_completions());
    assert_eq!(answers.len(), 2);
    assert_eq!(get(&answers, &m1)?.assignment, Bytes::from("A1"));
    assert_eq!(get(&answers, &m2)?.assignment, Bytes::from("A2"));
    assert_eq!(g.state(), GroupState::Stable);
    match g.sync(sync_params(&m3, 1, Vec::new()), 6_300) {
        SyncOutcome::Done(result) => assert_eq!((result.error, result.assignment), (None, Bytes::from("A3"))),
        other => return Err(format!("late follower: {other:?}").into()),
    }
    Ok(())
}

#[test]
fn initial_delay_extensions_stop_at_the_rebalance_timeout() -> TestResult {
    let mut g = group();
    let mut params = join_params("", "c1", &["range"]);
    params.rebalance_timeout_ms = 5_000;
    let id = done(g.join(params.clone(), 0))?.member_id;
    params.member_id = id;
    pending(g.join(params, 0))?; // initial timer: deadline 3000, 2000 left
    join_new(&mut g, "c2", &["range"], 1_000)?;
    assert!(g.tick(3_000).is_empty()); // extended by min(3000, 2000)
    assert_eq!(g.next_deadline_ms(), Some(5_000));
    join_new(&mut g, "c3", &["range"], 4_000)?;
    assert_eq!(joins(g.tick(5_000)).len(), 3); // nothing left to extend by
    Ok(())
}

#[test]
fn expired_member_is_removed_and_the_others_rejoin_with_the_next_generation() -> TestResult {
    let mut g = group();
    let (ids, t) = stable_group(&mut g, &[("c1", &["range"]), ("c2", &["range"]), ("c3", &["range"])], 0)?;
    let [m1, m2, m3] = <[String; 3]>::try_from(ids).map_err(|_| "three ids")?;
    assert_eq!(g.heartbeat(&hb(&m1, 1), t + 5_000), Ok(()));
    assert_eq!(g.heartbeat(&hb(&m2, 1), t + 5_000), Ok(()));
    assert_eq!(g.next_deadline_ms(), Some(t + 10_000));
    assert!(g.tick(t + 10_000).is_empty());
    assert!(g.member(&m3).is_none());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&hb(&m1, 1), t + 10_001),
        Err(GroupError::RebalanceInProgress)
    );
    assert_eq!(g.heartbeat(&hb(&m3, 1), t + 10_001), Err(GroupError::UnknownMemberId));

    pending(g.join(join_params(&m1, "c1", &["range"]), t + 11_000))?;
    assert!(g.take_completions().is_empty());
    pending(g.join(join_params(&m2, "c2", &["range"]), t + 11_500))?;
    // Everyone rejoined: no need to wait for the rebalance timeout.
    let answers = joins(g.take_completions());
    assert_eq!(get(&answers, &m1)?.generation_id, 2);
    assert_eq!(get(&answers, &m2)?.generation_id, 2);
    assert_eq!(get(&answers, &m1)?.members.len(), 2);
    assert_eq!(g.leader_id(), Some(m1.as_str()));
    Ok(())
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() -> TestResult {
    let mut g = group();
    let (ids, t) = stable_group(&mut g, &[("c1", &["range"]), ("c2", &["range"])], 0)?;
    let [m1, m2] = <[String; 2]>::try_from(ids).map_err(|_| "two ids")?;
    // The leader rejoining a Stable group forces a rebalance.
    pending(g.join(join_params(&m1, "c1", &["range"]), t))?;
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&hb(&m2, 1), t + 1_000),
        Err(GroupError::RebalanceInProgress)
    );
    assert_eq!(g.next_deadline_ms(), Some(t + 11_000)); // m2's session, before the 30 s timer
    for at in [t + 9_000, t + 18_000, t + 27_000] {
        // m2 stays alive but never rejoins.
        assert_eq!(g.heartbeat(&hb(&m2, 1), at), Err(GroupError::RebalanceInProgress));
    }
    let answers = joins(g.tick(t + 30_000));
    assert_eq!(get(&answers, &m1)?.generation_id, 2);
    assert_eq!(get(&answers, &m1)?.members.len(), 1);
    assert!(g.member(&m2).is_none());
    Ok(())
}

#[test]
fn leave_triggers_a_rebalance_and_the_last_leave_empties_the_group() -> TestResult {
    let mut g = group();
    let (ids, t) = stable_group(&mut g, &[("c1", &["range"]), ("c2", &["range"])], 0)?;
    let [m1, m2] = <[String; 2]>::try_from(ids).map_err(|_| "two ids")?;
    let leave = |id: &str| {
        vec![LeaveGroupMember {
            member_id: id.to_string(),
            group_instance_id: None,
        }]
    };
    let results = g.leave(&leave(&m2), t)?;
    assert_eq!(results.first().map(|r| r.error), Some(None));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat(&hb(&m1, 1), t), Err(GroupError::RebalanceInProgress));
    pending(g.join(join_params(&m1, "c1", &["range"]), t + 100))?;
    assert_eq!(get(&joins(g.take_completions()), &m1)?.generation_id, 2);

    let unknown = g.leave(&leave("nobody"), t + 200)?;
    assert_eq!(unknown.first().and_then(|r| r.error), Some(GroupError::UnknownMemberId));
    g.leave(&leave(&m1), t + 300)?;
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation_id(), 3);
    assert!(g.members().is_empty());
    assert_eq!(g.next_deadline_ms(), None);
    Ok(())
}

#[test]
fn heartbeat_errors_in_each_state() -> TestResult {
    let mut g = group();
    assert_eq!(g.heartbeat(&hb("x", 0), 0), Err(GroupError::UnknownMemberId)); // Empty
    let id = join_new(&mut g, "c1", &["range"], 0)?;
    assert_eq!(g.heartbeat(&hb(&id, 0), 1), Err(GroupError::RebalanceInProgress)); // Preparing
    assert_eq!(g.heartbeat(&hb(&id, 7), 1), Err(GroupError::IllegalGeneration));
    assert_eq!(g.heartbeat(&hb("x", 0), 1), Err(GroupError::UnknownMemberId));
    g.tick(3_000);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.heartbeat(&hb(&id, 1), 3_001), Ok(()));
    assert_eq!(g.heartbeat(&hb(&id, 0), 3_001), Err(GroupError::IllegalGeneration));
    g.sync(sync_params(&id, 1, Vec::new()), 3_002);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.heartbeat(&hb(&id, 1), 3_003), Ok(()));
    assert_eq!(g.heartbeat(&hb("x", 1), 3_003), Err(GroupError::UnknownMemberId));
    g.mark_dead();
    assert_eq!(g.state(), GroupState::Dead);
    assert_eq!(
        g.heartbeat(&hb(&id, 1), 3_004),
        Err(GroupError::CoordinatorNotAvailable)
    );
    Ok(())
}

#[test]
fn sync_errors() -> TestResult {
    let mut g = group();
    let id = join_new(&mut g, "c1", &["range"], 0)?;
    let error = |outcome: SyncOutcome| match outcome {
        SyncOutcome::Done(result) => result.error,
        SyncOutcome::Pending => None,
    };
    assert_eq!(
        error(g.sync(sync_params(&id, 0, Vec::new()), 1)),
        Some(GroupError::RebalanceInProgress)
    );
    g.tick(3_000);
    assert_eq!(
        error(g.sync(sync_params(&id, 2, Vec::new()), 3_001)),
        Some(GroupError::IllegalGeneration)
    );
    assert_eq!(
        error(g.sync(sync_params("x", 1, Vec::new()), 3_001)),
        Some(GroupError::UnknownMemberId)
    );
    let mut wrong_type = sync_params(&id, 1, Vec::new());
    wrong_type.protocol_type = Some("connect".into());
    assert_eq!(
        error(g.sync(wrong_type, 3_001)),
        Some(GroupError::InconsistentGroupProtocol)
    );
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    Ok(())
}

#[test]
fn protocol_selection_takes_the_common_protocol_with_most_votes() -> TestResult {
    let mut g = group();
    stable_group(
        &mut g,
        &[("c1", &["a", "b"]), ("c2", &["b", "a"]), ("c3", &["b", "a", "c"])],
        0,
    )?;
    assert_eq!(g.protocol_name(), Some("b"));

    let mut g = group();
    stable_group(&mut g, &[("c1", &["a", "b"]), ("c2", &["c", "b"])], 0)?;
    assert_eq!(g.protocol_name(), Some("b"), "only b is supported by all");

    let mut g = group();
    stable_group(&mut g, &[("c1", &["a", "b"]), ("c2", &["b", "a"])], 0)?;
    assert_eq!(
        g.protocol_name(),
        Some("a"),
        "a tie goes to the first member's preference"
    );

    // Joining members must share the type and one protocol with everyone.
    let none = done(g.join(join_params("", "c3", &["zzz"]), 10_000))?;
    assert_eq!(none.error, Some(GroupError::InconsistentGroupProtocol));
    let mut other_type = join_params("", "c3", &["a"]);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        done(g.join(other_type, 10_000))?.error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    let mut empty = GroupMetadata::new("e", GroupCoordinatorConfig::default());
    assert_eq!(
        done(empty.join(join_params("", "c", &[]), 0))?.error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    Ok(())
}

#[test]
fn static_member_restart_gets_its_assignment_back_and_fences_the_old_id() -> TestResult {
    let mut g = group();
    let s1 = pending(g.join(static_params("", "i1", &["range"]), 0))?; // static: no MEMBER_ID_REQUIRED
    let s2 = pending(g.join(static_params("", "i2", &["range"]), 0))?;
    assert!(s1.starts_with("i1-"));
    g.tick(3_000);
    g.tick(6_000);
    let (a1, a2) = (Bytes::from("A1"), Bytes::from("A2"));
    let mut leader_sync = sync_params(&s1, 1, vec![(s1.clone(), a1.clone()), (s2.clone(), a2.clone())]);
    leader_sync.group_instance_id = Some("i1".into());
    g.sync(
        SyncGroupParams {
            group_instance_id: Some("i2".into()),
            ..sync_params(&s2, 1, Vec::new())
        },
        6_000,
    );
    g.sync(leader_sync, 6_000);
    assert_eq!(syncs(g.take_completions()).len(), 2);
    assert_eq!(g.state(), GroupState::Stable);

    // i2 restarts: new member id, same generation, no rebalance of the others.
    let answer = done(g.join(static_params("", "i2", &["range"]), 7_000))?;
    assert_eq!(answer.error, None);
    assert_ne!(answer.member_id, s2);
    assert_eq!((answer.generation_id, answer.leader_id.as_str()), (1, s1.as_str()));
    assert!(answer.members.is_empty());
    assert_eq!(g.state(), GroupState::Stable);
    assert!(g.take_completions().is_empty());
    let new_s2 = answer.member_id;
    let sync = SyncGroupParams {
        group_instance_id: Some("i2".into()),
        ..sync_params(&new_s2, 1, Vec::new())
    };
    assert_eq!(
        g.sync(sync, 7_001),
        SyncOutcome::Done(SyncGroupResult {
            error: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: a2,
        })
    );
    let s1_hb = HeartbeatParams {
        group_instance_id: Some("i1".into()),
        ..hb(&s1, 1)
    };
    assert_eq!(g.heartbeat(&s1_hb, 7_002), Ok(()));

    // The old member id is fenced.
    let old_hb = HeartbeatParams {
        group_instance_id: Some("i2".into()),
        ..hb(&s2, 1)
    };
    assert_eq!(g.heartbeat(&old_hb, 7_003), Err(GroupError::FencedInstanceId));
    let old_join = done(g.join(static_params(&s2, "i2", &["range"]), 7_003))?;
    assert_eq!(old_join.error, Some(GroupError::FencedInstanceId));
    let old_sync = SyncGroupParams {
        group_instance_id: Some("i2".into()),
        ..sync_params(&s2, 1, Vec::new())
    };
    assert_eq!(
        g.sync(old_sync, 7_003),
        SyncOutcome::Done(SyncGroupResult::error(GroupError::FencedInstanceId))
    );
    let leave = [LeaveGroupMember {
        member_id: s2.clone(),
        group_instance_id: Some("i2".into()),
    }];
    assert_eq!(
        g.leave(&leave, 7_003)?.first().and_then(|r| r.error),
        Some(GroupError::FencedInstanceId)
    );
    assert_eq!(g.static_member_id("i2"), Some(new_s2.as_str()));

    // A restarted static leader on v9 learns the members but must skip the assignment.
    let mut leader_restart = static_params("", "i1", &["range"]);
    leader_restart.supports_skip_assignment = true;
    let answer = done(g.join(leader_restart, 8_000))?;
    assert_eq!(answer.leader_id, answer.member_id);
    assert!(answer.skip_assignment);
    assert_eq!(answer.members.len(), 2);
    assert_eq!(g.state(), GroupState::Stable);

    // A restart that changes the selected protocol does rebalance.
    let answer = g.join(static_params("", "i2", &["roundrobin", "range"]), 9_000);
    assert!(
        matches!(answer, JoinOutcome::Done(ref r) if r.error.is_none()),
        "{answer:?}"
    );
    let answer = g.join(static_params("", "i1", &["roundrobin", "range"]), 9_000);
    pending(answer)?;
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    Ok(())
}

#[test]
fn session_timeout_must_be_within_the_broker_bounds() -> TestResult {
    let mut g = group();
    for (timeout, ok) in [
        (5_999, false),
        (6_000, true),
        (1_800_000, true),
        (1_800_001, false),
        (-1, false),
    ] {
        let params = JoinGroupParams {
            session_timeout_ms: timeout,
            ..join_params("", "c", &["range"])
        };
        let error = done(g.join(params, 0))?.error;
        let expected = if ok {
            GroupError::MemberIdRequired
        } else {
            GroupError::InvalidSessionTimeout
        };
        assert_eq!(error, Some(expected), "session timeout {timeout}");
    }
    Ok(())
}

#[test]
fn pending_member_ids_expire_after_the_session_timeout() -> TestResult {
    let mut g = group();
    let id = done(g.join(join_params("", "c1", &["range"]), 0))?.member_id;
    assert_eq!(g.next_deadline_ms(), Some(10_000));
    g.tick(10_000);
    assert!(!g.is_pending_member(&id));
    assert_eq!(
        done(g.join(join_params(&id, "c1", &["range"]), 10_001))?.error,
        Some(GroupError::UnknownMemberId)
    );
    Ok(())
}

#[test]
fn group_max_size_sheds_extra_joiners() -> TestResult {
    let config = GroupCoordinatorConfig {
        group_max_size: Some(1),
        ..Default::default()
    };
    let mut g = GroupMetadata::new("g", config);
    join_new(&mut g, "c1", &["range"], 0)?;
    let second = done(g.join(join_params("", "c2", &["range"]), 0))?; // pending ids are not members
    let refused = done(g.join(join_params(&second.member_id, "c2", &["range"]), 0))?;
    assert_eq!(refused.error, Some(GroupError::GroupMaxSizeReached));
    Ok(())
}

#[test]
fn members_that_never_sync_are_removed_after_the_rebalance_timeout() -> TestResult {
    let mut g = group();
    let m1 = join_new(&mut g, "c1", &["range"], 0)?;
    let m2 = join_new(&mut g, "c2", &["range"], 0)?;
    g.tick(3_000);
    g.tick(6_000);
    assert_eq!(g.sync(sync_params(&m2, 1, Vec::new()), 6_000), SyncOutcome::Pending);
    // The leader never syncs: with a 10 s session, its heartbeat deadline (16 s) comes before
    // the sync timer (rebalance timeout, 36 s) and removes it.
    let answers = syncs(g.tick(16_000));
    assert_eq!(get(&answers, &m2)?.error, Some(GroupError::RebalanceInProgress));
    assert!(g.member(&m1).is_none());
    assert_eq!(g.state(), GroupState::PreparingRebalance);

    // With a long session, the sync timer (Kafka's DelayedSync) is what removes it.
    let mut g = group();
    let long = |id: &str, c: &str| JoinGroupParams {
        session_timeout_ms: 60_000,
        ..join_params(id, c, &["range"])
    };
    let m1 = done(g.join(long("", "c1"), 0))?.member_id;
    pending(g.join(long(&m1, "c1"), 0))?;
    let m2 = done(g.join(long("", "c2"), 0))?.member_id;
    pending(g.join(long(&m2, "c2"), 0))?;
    g.tick(3_000);
    g.tick(6_000);
    g.sync(sync_params(&m2, 1, Vec::new()), 6_000);
    assert_eq!(g.next_deadline_ms(), Some(36_000));
    let answers = syncs(g.tick(36_000));
    assert_eq!(get(&answers, &m2)?.error, Some(GroupError::RebalanceInProgress));
    assert!(g.member(&m1).is_none());
    Ok(())
}

#[test]
fn describe_and_list_use_kafkas_state_names() -> TestResult {
    let mut g = group();
    assert_eq!(g.overview().state.as_str(), "Empty");
    let (ids, _) = stable_group(&mut g, &[("c1", &["range"])], 0)?;
    let summary = g.describe();
    assert_eq!(summary.state.to_string(), "Stable");
    assert_eq!(
        (summary.protocol_type.as_str(), summary.protocol_name.as_str()),
        ("consumer", "range")
    );
    let member = summary.members.first().ok_or("no member")?;
    assert_eq!(member.member_id, *ids.first().ok_or("no id")?);
    assert_eq!(member.metadata, Bytes::from("c1:range"));
    assert!(!member.assignment.is_empty());
    let names: Vec<_> = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    assert_eq!(
        names,
        ["Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"]
    );
    Ok(())
}

/// Kafka's ClassicGroup rule: a commit without member or generation into a group with members
/// is refused (UNKNOWN_MEMBER_ID) unless it is transactional (TxnOffsetCommit before v3 carries
/// neither, and producers may send offsets for a group they are not in).
#[test]
fn transactional_commits_without_member_are_accepted() -> TestResult {
    let mut g = group();
    let (ids, now) = stable_group(&mut g, &[("c1", &["range"])], 0)?;
    let none: Option<String> = None;
    assert_eq!(
        g.validate_offset_commit("", &none, -1, false, now),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(g.validate_offset_commit("", &none, -1, true, now), Ok(()));
    let member = ids.first().ok_or("no member")?;
    assert_eq!(
        g.validate_offset_commit(member, &none, 99, true, now),
        Err(GroupError::IllegalGeneration),
        "a member's generation is still checked"
    );
    Ok(())
}
