//! What the active controller writes when a broker is fenced or unfenced (Kafka's
//! `ReplicationControlManager.handleBrokerFenced` / `handleBrokerUnfenced` with
//! `PartitionChangeBuilder`'s ONLINE election). Pure functions of the image, so they are
//! tested alone; every change carries the partition epoch it was decided on (compare and set).
//!
//! Fenced: the broker leaves every ISR; the partitions it led get the first live replica of
//! their new ISR, in replica order. Kafka never writes an empty ISR: when the broker was the
//! last member it stays in the ISR and the partition goes leaderless (offline) until a member
//! returns, unless the topic allows an unclean election. Unfenced: leaderless partitions whose
//! ISR holds the broker get it as leader. And a partition leader's own ISR change
//! (AlterPartition): `on_alter_isr`; an operator's election (ElectLeaders): `on_elect`.

use serde::{Deserialize, Serialize};

use crate::controller::image::MetadataImage;
use crate::controller::network::AlterPartitionRequest;
use crate::controller::record::{LeaderRecoveryState, NodeId, PartitionChange, NO_LEADER};

/// The topic config that allows electing a replica outside the ISR (Kafka's name and default).
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

fn unclean_allowed(configs: &std::collections::BTreeMap<String, String>, default: bool) -> bool {
    configs
        .get(UNCLEAN_LEADER_ELECTION)
        .map_or(default, |v| v.eq_ignore_ascii_case("true"))
}

/// The partition changes that fence `broker` (it is still unfenced in `image`), or that take
/// everything from a broker entering controlled shutdown (Kafka's
/// `handleBrokerInControlledShutdown` makes the same changes): out of every ISR, its
/// leaderships to the next eligible ISR member.
pub fn on_fence(image: &MetadataImage, broker: NodeId, unclean_default: bool) -> Vec<PartitionChange> {
    let live = |id: NodeId| id != broker && image.is_eligible(id);
    let mut out = Vec::new();
    for topic in image.topics() {
        for (index, p) in topic.partitions.iter().enumerate() {
            let in_isr = p.isr.contains(&broker);
            if !in_isr && p.leader != broker {
                continue;
            }
            let mut change = PartitionChange::new(topic.id, index as i32, p.partition_epoch);
            let mut isr: Vec<NodeId> = p.isr.iter().copied().filter(|r| *r != broker).collect();
            if isr.is_empty() {
                isr = p.isr.clone(); // the last member stays (Kafka's rule)
            }
            if p.leader == broker {
                let clean = p.replicas.iter().copied().find(|r| isr.contains(r) && live(*r));
                let leader = match clean {
                    Some(l) => l,
                    None if unclean_allowed(&topic.configs, unclean_default) => {
                        match p.replicas.iter().copied().find(|r| live(*r)) {
                            Some(l) => {
                                isr = vec![l];
                                change.leader_recovery_state = Some(LeaderRecoveryState::Recovering);
                                l
                            }
                            None => NO_LEADER,
                        }
                    }
                    None => NO_LEADER,
                };
                change.leader = Some(leader);
            }
            if isr != p.isr {
                change.isr = Some(isr);
            }
            if change.leader.is_some() || change.isr.is_some() {
                out.push(change);
            }
        }
    }
    out
}

/// The partition changes that take a broker whose log dir went offline out of the way where
/// another replica can do its work (Kafka halts such a broker, which the controller then fences;
/// Sluice keeps it serving reads): each partition it leads moves to the next eligible ISR member
/// and it leaves each ISR that has another member. A partition with no other eligible ISR member
/// keeps it as leader (its appends fail until the disk has space, its reads go on) and in the ISR.
pub fn on_log_dir_offline(image: &MetadataImage, broker: NodeId) -> Vec<PartitionChange> {
    let eligible = |id: NodeId| id != broker && image.is_eligible(id);
    let mut out = Vec::new();
    for topic in image.topics() {
        for (index, p) in topic.partitions.iter().enumerate() {
            if !p.isr.contains(&broker) {
                continue;
            }
            let others: Vec<NodeId> = p.isr.iter().copied().filter(|r| *r != broker).collect();
            let mut change = PartitionChange::new(topic.id, index as i32, p.partition_epoch);
            if p.leader == broker {
                let Some(next) = p.replicas.iter().copied().find(|r| others.contains(r) && eligible(*r)) else {
                    continue;
                };
                change.leader = Some(next);
            } else if others.is_empty() {
                continue;
            }
            change.isr = Some(others);
            out.push(change);
        }
    }
    out
}

/// Leaderless partitions that can have a leader now: an ISR member that is live (a clean
/// election), or, where the topic allows an unclean election, any live replica (its ISR
/// becomes just it, the partition recovering). Kafka retries these on a timer too.
pub fn on_leaderless(image: &MetadataImage, unclean_default: bool) -> Vec<PartitionChange> {
    let mut out = Vec::new();
    for topic in image.topics() {
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.leader != NO_LEADER {
                continue;
            }
            let mut change = PartitionChange::new(topic.id, index as i32, p.partition_epoch);
            if let Some(l) = p
                .replicas
                .iter()
                .copied()
                .find(|r| p.isr.contains(r) && image.is_eligible(*r))
            {
                change.leader = Some(l);
            } else if unclean_allowed(&topic.configs, unclean_default) {
                let Some(l) = p.replicas.iter().copied().find(|r| image.is_eligible(*r)) else {
                    continue;
                };
                change.leader = Some(l);
                change.isr = Some(vec![l]);
                change.leader_recovery_state = Some(LeaderRecoveryState::Recovering);
            } else {
                continue;
            }
            out.push(change);
        }
    }
    out
}

/// The partition changes that unfencing `broker` brings: it leads the leaderless partitions
/// whose ISR holds it.
pub fn on_unfence(image: &MetadataImage, broker: NodeId) -> Vec<PartitionChange> {
    let mut out = Vec::new();
    for topic in image.topics() {
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.leader == NO_LEADER && p.isr.contains(&broker) {
                let mut change = PartitionChange::new(topic.id, index as i32, p.partition_epoch);
                change.leader = Some(broker);
                out.push(change);
            }
        }
    }
    out
}

/// The partition change a leader's ISR change asks for (Kafka's
/// `ReplicationControlManager.alterPartition`), or why the image refuses it: it must come from
/// the leader at the current leader epoch and partition epoch, hold the leader, lie within the
/// replicas, and add only live brokers (KIP-841). A compare-and-set on the partition epoch.
pub fn on_alter_isr(image: &MetadataImage, r: &AlterPartitionRequest) -> Result<PartitionChange, String> {
    let Some(reg) = image.topic_by_id(r.topic_id).and_then(|t| t.partition(r.partition)) else {
        return Err("unknown partition".into());
    };
    if reg.leader != r.broker {
        return Err(format!("broker {} does not lead it (leader {})", r.broker, reg.leader));
    }
    if reg.leader_epoch != r.leader_epoch {
        return Err(format!(
            "fenced leader epoch {} (now {})",
            r.leader_epoch, reg.leader_epoch
        ));
    }
    if reg.partition_epoch != r.partition_epoch {
        return Err(format!(
            "invalid update version {} (now {})",
            r.partition_epoch, reg.partition_epoch
        ));
    }
    if !r.new_isr.contains(&r.broker) || !r.new_isr.iter().all(|m| reg.replicas.contains(m)) {
        return Err(format!(
            "ISR {:?} must hold the leader and lie within {:?}",
            r.new_isr, reg.replicas
        ));
    }
    if let Some(m) = r
        .new_isr
        .iter()
        .find(|m| !reg.isr.contains(m) && !image.is_eligible(**m))
    {
        return Err(format!("ineligible replica {m}"));
    }
    let mut change = PartitionChange::new(r.topic_id, r.partition, r.partition_epoch);
    change.isr = Some(r.new_isr.clone());
    // A leader changing its ISR has its log in order: recovered (KIP-704).
    change.leader_recovery_state = Some(LeaderRecoveryState::Recovered);
    Ok(change)
}

/// The elections ElectLeaders asks for (Kafka's `ElectionType`: 0 preferred, 1 unclean).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

/// Why ElectLeaders elected nobody for a partition (each is a Kafka error code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ElectionError {
    #[error("the topic or partition does not exist")]
    UnknownTopicOrPartition,
    #[error("the partition already has the leader this election would give it")]
    ElectionNotNeeded,
    #[error("the preferred replica is not a live member of the ISR")]
    PreferredLeaderNotAvailable,
    #[error("no live replica can lead the partition")]
    EligibleLeadersNotAvailable,
    /// A concurrent change of the partition beat the election's compare-and-set.
    #[error("the partition changed meanwhile: {0}")]
    Changed(String),
}

/// The change an operator's election of `topic`'s `partition` makes (Kafka's
/// `ReplicationControlManager.electLeader`), or why there is none. Preferred: the first
/// replica, if it is a live ISR member (a leaderless partition takes any live ISR member
/// otherwise). Unclean: only for a leaderless partition, a live ISR member first, else the
/// first live replica, whatever the topic's `unclean.leader.election.enable` (the operator
/// asked), the ISR becoming just it and the partition recovering.
pub fn on_elect(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    kind: ElectionType,
) -> Result<PartitionChange, ElectionError> {
    let t = image.topic(topic).ok_or(ElectionError::UnknownTopicOrPartition)?;
    let p = t.partition(partition).ok_or(ElectionError::UnknownTopicOrPartition)?;
    let clean = |r: &NodeId| p.isr.contains(r) && image.is_eligible(*r);
    let mut change = PartitionChange::new(t.id, partition, p.partition_epoch);
    match kind {
        ElectionType::Preferred => {
            let preferred = p.replicas.first().copied().unwrap_or(NO_LEADER);
            if p.leader == preferred {
                return Err(ElectionError::ElectionNotNeeded);
            }
            let leader = if clean(&preferred) {
                Some(preferred)
            } else if p.leader == NO_LEADER {
                p.replicas.iter().copied().find(clean)
            } else {
                None
            };
            change.leader = Some(leader.ok_or(ElectionError::PreferredLeaderNotAvailable)?);
        }
        ElectionType::Unclean => {
            if p.leader != NO_LEADER {
                return Err(ElectionError::ElectionNotNeeded);
            }
            if let Some(l) = p.replicas.iter().copied().find(clean) {
                change.leader = Some(l);
            } else {
                let l = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| image.is_eligible(*r))
                    .ok_or(ElectionError::EligibleLeadersNotAvailable)?;
                change.leader = Some(l);
                change.isr = Some(vec![l]);
                change.leader_recovery_state = Some(LeaderRecoveryState::Recovering);
            }
        }
    }
    Ok(change)
}

/// ElectLeaders for every partition (no partitions named): the outcome of each partition an
/// election applies to, leaving out those that need none, as Kafka does.
pub fn on_elect_all(
    image: &MetadataImage,
    kind: ElectionType,
) -> Vec<(String, i32, Result<PartitionChange, ElectionError>)> {
    let mut out = Vec::new();
    for t in image.topics() {
        for index in 0..t.partition_count() {
            match on_elect(image, &t.name, index, kind) {
                Err(ElectionError::ElectionNotNeeded) => {}
                outcome => out.push((t.name.clone(), index, outcome)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::record::{MetadataCommand, MetadataRecord as R, PartitionRegistration};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn image_with(replicas: &[Vec<NodeId>], brokers: &[NodeId], configs: BTreeMap<String, String>) -> MetadataImage {
        let mut image = MetadataImage::default();
        let mut offset = 0;
        for b in brokers {
            offset += 1;
            image.apply(
                offset,
                &MetadataCommand::one(R::RegisterBroker {
                    id: *b,
                    incarnation_id: Uuid::new_v4(),
                    endpoints: vec![],
                    rack: None,
                }),
            );
            let epoch = offset as i64;
            offset += 1;
            image.apply(
                offset,
                &MetadataCommand::one(R::BrokerChange {
                    id: *b,
                    epoch,
                    fenced: Some(false),
                    in_controlled_shutdown: None,
                    log_dir_offline: None,
                }),
            );
        }
        offset += 1;
        image.apply(
            offset,
            &MetadataCommand::one(R::CreateTopic {
                name: "t".into(),
                id: Uuid::new_v4(),
                partitions: replicas.iter().map(|r| PartitionRegistration::new(r.clone())).collect(),
                configs,
            }),
        );
        image
    }

    fn alter(image: &MetadataImage, broker: NodeId, new_isr: &[NodeId]) -> AlterPartitionRequest {
        let t = image.topic("t").unwrap();
        let reg = &t.partitions[0];
        AlterPartitionRequest {
            broker,
            topic_id: t.id,
            partition: 0,
            leader_epoch: reg.leader_epoch,
            partition_epoch: reg.partition_epoch,
            new_isr: new_isr.to_vec(),
        }
    }

    #[test]
    fn an_isr_change_is_the_leaders_at_the_current_epochs_and_adds_only_live_brokers() {
        // Broker 3 is a replica but not registered (not live).
        let mut image = image_with(&[vec![1, 2, 3]], &[1, 2], BTreeMap::new());
        let shrink = on_alter_isr(&image, &alter(&image, 1, &[1, 2])).expect("the leader may shrink");
        assert_eq!(shrink.isr, Some(vec![1, 2]));
        assert!(on_alter_isr(&image, &alter(&image, 2, &[2]))
            .unwrap_err()
            .contains("does not lead"));
        assert!(on_alter_isr(&image, &alter(&image, 1, &[2, 3]))
            .unwrap_err()
            .contains("must hold the leader"));
        assert!(on_alter_isr(&image, &alter(&image, 1, &[1, 4]))
            .unwrap_err()
            .contains("lie within"));
        let stale = alter(&image, 1, &[1, 3]);
        applied(&mut image, vec![shrink]);
        assert!(on_alter_isr(&image, &stale)
            .unwrap_err()
            .contains("invalid update version"));
        assert_eq!(
            on_alter_isr(&image, &alter(&image, 1, &[1, 3])).unwrap_err(),
            "ineligible replica 3",
            "3 is not live: it may not join"
        );
        assert!(
            on_alter_isr(&image, &alter(&image, 1, &[1])).is_ok(),
            "dropping a member needs no liveness"
        );
    }

    #[test]
    fn two_changes_of_one_partition_in_one_command_are_refused_together() {
        // What AlterPartition's batch relies on: a command applies all its records or none.
        let mut image = image_with(&[vec![1, 2, 3]], &[1, 2, 3], BTreeMap::new());
        let a = on_alter_isr(&image, &alter(&image, 1, &[1, 2])).unwrap();
        let b = on_alter_isr(&image, &alter(&image, 1, &[1, 3])).unwrap();
        let cmd = MetadataCommand {
            records: vec![R::ChangePartition(a.clone()), R::ChangePartition(b)],
        };
        let offset = image.offset + 1;
        assert!(
            image.apply(offset, &cmd).refused.is_some(),
            "the second fails its compare-and-set"
        );
        assert_eq!(
            image.topic("t").unwrap().partitions[0].isr,
            vec![1, 2, 3],
            "nothing applied"
        );
        applied(&mut image, vec![a]);
        assert_eq!(image.topic("t").unwrap().partitions[0].isr, vec![1, 2]);
    }

    fn applied(image: &mut MetadataImage, changes: Vec<PartitionChange>) {
        let cmd = MetadataCommand {
            records: changes.into_iter().map(R::ChangePartition).collect(),
        };
        let offset = image.offset + 1;
        assert_eq!(image.apply(offset, &cmd).refused, None);
    }

    #[test]
    fn a_fenced_leader_is_replaced_by_the_next_isr_member_in_replica_order() {
        let mut image = image_with(&[vec![1, 2, 3], vec![2, 3, 1]], &[1, 2, 3], BTreeMap::new());
        let changes = on_fence(&image, 1, false);
        assert_eq!(changes.len(), 2, "both partitions have 1 in their ISR");
        applied(&mut image, changes);
        let t = image.topic("t").unwrap();
        assert_eq!((t.partitions[0].leader, t.partitions[0].isr.clone()), (2, vec![2, 3]));
        assert_eq!(t.partitions[0].leader_epoch, 1);
        assert_eq!(
            (t.partitions[1].leader, t.partitions[1].leader_epoch),
            (2, 0),
            "a shrink keeps the epoch"
        );
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_goes_offline_until_it_returns() {
        let mut image = image_with(&[vec![1]], &[1, 2], BTreeMap::new());
        let changes = on_fence(&image, 1, false);
        applied(&mut image, changes);
        let p = image.topic("t").unwrap().partitions[0].clone();
        assert_eq!((p.leader, p.isr), (NO_LEADER, vec![1]));
        assert!(on_fence(&image, 1, false).is_empty(), "nothing more to change");
        let changes = on_unfence(&image, 1);
        applied(&mut image, changes);
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (1, 2));
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr_when_the_topic_allows() {
        let mut image = image_with(&[vec![1, 2]], &[1, 2], BTreeMap::new());
        // 2 fell out of the ISR earlier.
        let mut shrink = PartitionChange::new(image.topic("t").unwrap().id, 0, 0);
        shrink.isr = Some(vec![1]);
        applied(&mut image, vec![shrink]);
        assert_eq!(on_fence(&image, 1, false)[0].leader, Some(NO_LEADER), "clean: offline");
        let unclean = on_fence(&image, 1, true);
        assert_eq!(unclean[0].leader, Some(2));
        assert_eq!(unclean[0].isr, Some(vec![2]));
        assert_eq!(unclean[0].leader_recovery_state, Some(LeaderRecoveryState::Recovering));
        let configs = BTreeMap::from([(UNCLEAN_LEADER_ELECTION.to_string(), "true".to_string())]);
        let image = image_with(&[vec![1, 2]], &[1, 2], configs);
        assert_eq!(
            on_fence(&image, 1, false)[0].leader,
            Some(2),
            "in the ISR: clean anyway"
        );
    }
    fn fence(image: &mut MetadataImage, id: NodeId) {
        let epoch = image.brokers[&id].epoch;
        let offset = image.offset + 1;
        let cmd = MetadataCommand::one(R::BrokerChange {
            id,
            epoch,
            fenced: Some(true),
            in_controlled_shutdown: None,
            log_dir_offline: None,
        });
        assert_eq!(image.apply(offset, &cmd).refused, None);
    }

    #[test]
    fn a_preferred_election_needs_the_first_replica_live_in_the_isr() {
        let mut image = image_with(&[vec![1, 2, 3]], &[1, 2, 3], BTreeMap::new());
        let elect = |image: &MetadataImage| on_elect(image, "t", 0, ElectionType::Preferred);
        assert_eq!(elect(&image), Err(ElectionError::ElectionNotNeeded));
        assert_eq!(
            on_elect(&image, "t", 1, ElectionType::Preferred),
            Err(ElectionError::UnknownTopicOrPartition)
        );
        assert_eq!(
            on_elect(&image, "u", 0, ElectionType::Preferred),
            Err(ElectionError::UnknownTopicOrPartition)
        );
        // 1 fenced: 2 leads, 1 out of the ISR; back but not caught up: not available.
        let fenced = on_fence(&image, 1, false);
        applied(&mut image, fenced);
        assert_eq!(elect(&image), Err(ElectionError::PreferredLeaderNotAvailable));
        // Back in the ISR: elected, at a new leader epoch.
        let t = image.topic("t").unwrap();
        let mut rejoin = PartitionChange::new(t.id, 0, t.partitions[0].partition_epoch);
        rejoin.isr = Some(vec![2, 3, 1]);
        applied(&mut image, vec![rejoin]);
        let change = elect(&image).expect("elected");
        assert_eq!((change.leader, change.isr.clone()), (Some(1), None));
        applied(&mut image, vec![change]);
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (1, 2));
        assert!(
            on_elect_all(&image, ElectionType::Preferred).is_empty(),
            "balanced: nothing to do"
        );
    }

    #[test]
    fn an_unclean_election_is_only_for_leaderless_partitions_and_ignores_the_topic_setting() {
        let mut image = image_with(&[vec![1, 2]], &[1, 2], BTreeMap::new());
        let elect = |image: &MetadataImage| on_elect(image, "t", 0, ElectionType::Unclean);
        assert_eq!(elect(&image), Err(ElectionError::ElectionNotNeeded));
        // 2 left the ISR, then 1 died: offline (the topic does not allow unclean elections).
        let mut shrink = PartitionChange::new(image.topic("t").unwrap().id, 0, 0);
        shrink.isr = Some(vec![1]);
        applied(&mut image, vec![shrink]);
        let fenced = on_fence(&image, 1, false);
        applied(&mut image, fenced);
        fence(&mut image, 1);
        assert_eq!(image.topic("t").unwrap().partitions[0].leader, NO_LEADER);
        let all = on_elect_all(&image, ElectionType::Unclean);
        assert_eq!(all.len(), 1);
        let change = elect(&image).expect("2 is live");
        assert_eq!(change.leader, Some(2));
        assert_eq!(change.isr, Some(vec![2]));
        assert_eq!(change.leader_recovery_state, Some(LeaderRecoveryState::Recovering));
        let preferred = on_elect(&image, "t", 0, ElectionType::Preferred);
        assert_eq!(
            preferred,
            Err(ElectionError::PreferredLeaderNotAvailable),
            "a preferred election stays clean"
        );
        // Nobody live at all.
        let image = image_with(&[vec![3]], &[1], BTreeMap::new());
        let mut image = image;
        let t = image.topic("t").unwrap();
        let mut offline = PartitionChange::new(t.id, 0, 0);
        offline.leader = Some(NO_LEADER);
        applied(&mut image, vec![offline]);
        assert_eq!(elect(&image), Err(ElectionError::EligibleLeadersNotAvailable));
    }
    #[test]
    fn a_broker_in_controlled_shutdown_gives_up_its_leaderships_and_may_not_come_back() {
        let mut image = image_with(&[vec![1, 2, 3]], &[1, 2, 3], BTreeMap::new());
        // What the controller writes for broker 1's controlled shutdown: the flag and on_fence.
        let changes = on_fence(&image, 1, false);
        let epoch = image.brokers[&1].epoch;
        let mut records = vec![R::BrokerChange {
            id: 1,
            epoch,
            fenced: None,
            in_controlled_shutdown: Some(true),
            log_dir_offline: None,
        }];
        records.extend(changes.into_iter().map(R::ChangePartition));
        let offset = image.offset + 1;
        assert_eq!(image.apply(offset, &MetadataCommand { records }).refused, None);
        let p = image.topic("t").unwrap().partitions[0].clone();
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2, 3]));
        assert!(
            image.is_live(1) && !image.is_eligible(1),
            "still registered, not eligible"
        );
        assert_eq!(
            on_alter_isr(&image, &alter(&image, 2, &[2, 3, 1])).unwrap_err(),
            "ineligible replica 1",
            "it may not rejoin the ISR"
        );
        assert_eq!(
            on_elect(&image, "t", 0, ElectionType::Preferred),
            Err(ElectionError::PreferredLeaderNotAvailable)
        );
    }

    /// A log dir offline: the broker's leaderships move to another eligible ISR member and it
    /// leaves the ISRs with other members; a partition only it can serve keeps it; back
    /// online it may rejoin.
    #[test]
    fn a_broker_whose_log_dir_is_offline_hands_over_what_others_can_take() {
        let mut image = image_with(&[vec![1, 2, 3], vec![2, 1], vec![1]], &[1, 2, 3], BTreeMap::new());
        let changes = on_log_dir_offline(&image, 1);
        assert_eq!(changes.len(), 2, "the single-replica partition keeps its only replica");
        let epoch = image.brokers[&1].epoch;
        let set = |offline: bool| R::BrokerChange {
            id: 1,
            epoch,
            fenced: None,
            in_controlled_shutdown: None,
            log_dir_offline: Some(offline),
        };
        let mut records = vec![set(true)];
        records.extend(changes.into_iter().map(R::ChangePartition));
        assert_eq!(
            image.apply(image.offset + 1, &MetadataCommand { records }).refused,
            None
        );
        let parts = image.topic("t").unwrap().partitions.clone();
        assert_eq!((parts[0].leader, parts[0].isr.clone()), (2, vec![2, 3]));
        assert_eq!((parts[1].leader, parts[1].isr.clone()), (2, vec![2]));
        assert_eq!((parts[2].leader, parts[2].isr.clone()), (1, vec![1]));
        assert!(image.is_live(1) && !image.is_eligible(1));
        assert_eq!(
            on_alter_isr(&image, &alter(&image, 2, &[2, 3, 1])).unwrap_err(),
            "ineligible replica 1"
        );
        assert_eq!(
            image.apply(image.offset + 1, &MetadataCommand::one(set(false))).refused,
            None
        );
        assert!(image.is_eligible(1));
        assert!(
            on_alter_isr(&image, &alter(&image, 2, &[2, 3, 1])).is_ok(),
            "back online it may rejoin"
        );
    }
}
