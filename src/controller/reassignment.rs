//! Partition reassignment as Kafka's KRaft controller does it (`ReplicationControlManager.
//! alterPartitionReassignments`, `PartitionReassignmentReplicas`, `PartitionReassignmentRevert`,
//! `PartitionChangeBuilder.completeReassignmentIfNeeded`). Pure functions of the image, tested
//! alone; each change carries the partition epoch it was decided on (compare and set).
//!
//! A new target makes `removing` = current replicas not in the target, `adding` = target
//! replicas not in the current ones, and `replicas` = the target, then the removing ones. The
//! adding replicas are created by their brokers and follow the leader like any follower; once
//! the ISR without the removing replicas holds the whole target ([`complete`], checked on the
//! reassignment itself and on every ISR change a leader asks for), the replicas become the
//! target, the removing ones leave the ISR, the lists clear, and the leader moves if it was
//! removed. Dropping replicas bumps the leader epoch, so a removed replica's fetches are fenced.
//! A cancel ([`on_reassign`] with no target) reverts: the adding replicas go, the others stay.

use serde::{Deserialize, Serialize};

use crate::controller::election::UNCLEAN_LEADER_ELECTION;
use crate::controller::image::MetadataImage;
use crate::controller::record::{LeaderRecoveryState, NodeId, PartitionChange, PartitionRegistration, NO_LEADER};

/// Why a partition's reassignment was refused (each is a Kafka error code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReassignError {
    #[error("the topic or partition does not exist")]
    UnknownTopicOrPartition,
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("no reassignment is in progress for this partition")]
    NoReassignmentInProgress,
    /// A concurrent change of the partition kept beating the reassignment's compare-and-set.
    #[error("the partition changed meanwhile: {0}")]
    Changed(String),
}

/// The change that reassigns `topic`'s `partition` to `target`, or cancels its reassignment
/// (`None`); `Ok(None)` when the registration already is what was asked. `allow_rf_change`
/// false (AlterPartitionReassignments v1) refuses a target of another size.
pub fn on_reassign(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: Option<&[NodeId]>,
    allow_rf_change: bool,
    unclean_default: bool,
) -> Result<Option<PartitionChange>, ReassignError> {
    let t = image.topic(topic).ok_or(ReassignError::UnknownTopicOrPartition)?;
    let reg = t.partition(partition).ok_or(ReassignError::UnknownTopicOrPartition)?;
    let mut change = PartitionChange::new(t.id, partition, reg.partition_epoch);
    match target {
        None => {
            let unclean = t
                .configs
                .get(UNCLEAN_LEADER_ELECTION)
                .map_or(unclean_default, |v| v.eq_ignore_ascii_case("true"));
            revert(image, reg, &mut change, unclean, &format!("{topic}:{partition}"))?;
        }
        Some(target) => {
            validate(image, target)?;
            // The replication factor as the reassignment in progress leaves it (KIP-860).
            let current = reg.target_replicas();
            if !allow_rf_change && target.len() != current.len() {
                return Err(ReassignError::InvalidReplicationFactor(format!(
                    "The replication factor is changed from {} to {}",
                    current.len(),
                    target.len()
                )));
            }
            let mut removing: Vec<NodeId> = reg.replicas.iter().copied().filter(|r| !target.contains(r)).collect();
            let mut adding: Vec<NodeId> = target.iter().copied().filter(|r| !reg.replicas.contains(r)).collect();
            removing.sort_unstable();
            adding.sort_unstable();
            let replicas: Vec<NodeId> = target.iter().chain(&removing).copied().collect();
            if replicas != reg.replicas {
                change.replicas = Some(replicas);
            }
            if adding != reg.adding_replicas {
                change.adding_replicas = Some(adding);
            }
            if removing != reg.removing_replicas {
                change.removing_replicas = Some(removing);
            }
            complete(image, reg, &mut change);
        }
    }
    let unchanged = change.replicas.is_none()
        && change.isr.is_none()
        && change.leader.is_none()
        && change.adding_replicas.is_none()
        && change.removing_replicas.is_none();
    Ok((!unchanged).then_some(change))
}

/// Kafka's `validateManualPartitionAssignment`: not empty, no broker twice, every broker
/// registered (fenced ones are allowed: they catch up once back).
fn validate(image: &MetadataImage, target: &[NodeId]) -> Result<(), ReassignError> {
    if target.is_empty() {
        return Err(ReassignError::InvalidReplicaAssignment(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    let mut sorted = target.to_vec();
    sorted.sort_unstable();
    for (i, r) in sorted.iter().enumerate() {
        if !image.brokers.contains_key(r) {
            return Err(ReassignError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes broker {r}, but no such broker is registered."
            )));
        }
        if i > 0 && sorted[i - 1] == *r {
            return Err(ReassignError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes the broker {r} more than once."
            )));
        }
    }
    Ok(())
}

/// Kafka's `PartitionReassignmentRevert`: the adding replicas leave the replicas and the ISR;
/// an ISR left empty needs an unclean election (refused unless the topic allows one).
fn revert(
    image: &MetadataImage,
    reg: &PartitionRegistration,
    change: &mut PartitionChange,
    unclean_allowed: bool,
    name: &str,
) -> Result<(), ReassignError> {
    if !reg.is_reassigning() {
        return Err(ReassignError::NoReassignmentInProgress);
    }
    let kept = |r: &NodeId| !reg.adding_replicas.contains(r);
    let replicas: Vec<NodeId> = reg.replicas.iter().copied().filter(kept).collect();
    let mut isr: Vec<NodeId> = reg.isr.iter().copied().filter(kept).collect();
    let mut recovering = false;
    if isr.is_empty() {
        if !unclean_allowed {
            return Err(ReassignError::InvalidReplicaAssignment(format!(
                "Unable to revert partition assignment for {name} because it would require an unclean leader election."
            )));
        }
        let Some(&l) = replicas.first() else {
            return Err(ReassignError::InvalidReplicaAssignment(
                "Invalid replica assignment: addingReplicas contains all replicas.".into(),
            ));
        };
        isr = vec![l];
        recovering = true;
    }
    if replicas != reg.replicas {
        change.replicas = Some(replicas.clone());
    }
    if isr != reg.isr {
        change.isr = Some(isr.clone());
    }
    change.adding_replicas = Some(Vec::new());
    change.removing_replicas = Some(Vec::new());
    if reg.leader == NO_LEADER || !isr.contains(&reg.leader) {
        let leader = first_eligible(image, &replicas, &isr);
        change.leader = Some(leader);
        if recovering && leader != NO_LEADER {
            change.leader_recovery_state = Some(LeaderRecoveryState::Recovering);
        }
    } else if !reg.adding_replicas.is_empty() {
        // Replicas leave: fence their fetches with a new leader epoch.
        change.leader = Some(reg.leader);
    }
    Ok(())
}

/// Completes the reassignment of `reg` if `change` makes it complete (Kafka's
/// `completeReassignmentIfNeeded`, run on every change that can bring it about): once the ISR
/// without the removing replicas holds every target replica, the replicas become the target,
/// the removing ones leave the ISR and the lists clear; the leader stays if it is still an
/// eligible ISR member, else the first eligible target replica in the ISR leads (not the
/// preferred one: a preferred election or the rebalance moves it there later). Removing
/// replicas bumps the leader epoch.
pub fn complete(image: &MetadataImage, reg: &PartitionRegistration, change: &mut PartitionChange) {
    let next = reg.merge(change);
    if !next.is_reassigning() {
        return;
    }
    let target = next.target_replicas();
    let isr: Vec<NodeId> = next
        .isr
        .iter()
        .copied()
        .filter(|r| !next.removing_replicas.contains(r))
        .collect();
    if target.is_empty() || !target.iter().all(|r| isr.contains(r)) {
        return;
    }
    let removed = !next.removing_replicas.is_empty();
    change.replicas = Some(target.clone());
    change.isr = (isr != reg.isr).then(|| isr.clone());
    change.adding_replicas = Some(Vec::new());
    change.removing_replicas = Some(Vec::new());
    if next.leader != NO_LEADER && isr.contains(&next.leader) && image.is_eligible(next.leader) {
        if removed && change.leader.is_none() {
            change.leader = Some(next.leader);
        }
    } else {
        change.leader = Some(first_eligible(image, &target, &isr));
    }
}

/// The first of `order` that is an eligible member of `isr`, or [`NO_LEADER`].
fn first_eligible(image: &MetadataImage, order: &[NodeId], isr: &[NodeId]) -> NodeId {
    order
        .iter()
        .copied()
        .find(|r| isr.contains(r) && image.is_eligible(*r))
        .unwrap_or(NO_LEADER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::record::{MetadataCommand, MetadataRecord as R};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    /// Brokers 1..=5 registered (1-4 live, 5 fenced); topic "t" with one partition on `replicas`.
    fn image_with(replicas: &[NodeId]) -> MetadataImage {
        let mut image = MetadataImage::default();
        let mut offset = 0;
        for b in 1..=5 {
            offset += 1;
            image.apply(
                offset,
                &MetadataCommand::one(R::RegisterBroker {
                    id: b,
                    incarnation_id: Uuid::new_v4(),
                    endpoints: vec![],
                    rack: None,
                }),
            );
            let epoch = offset as i64;
            offset += 1;
            if b != 5 {
                image.apply(
                    offset,
                    &MetadataCommand::one(R::BrokerChange {
                        id: b,
                        epoch,
                        fenced: Some(false),
                        in_controlled_shutdown: None,
                        log_dir_offline: None,
                    }),
                );
            }
        }
        image.apply(
            100,
            &MetadataCommand::one(R::CreateTopic {
                name: "t".into(),
                id: Uuid::new_v4(),
                partitions: vec![PartitionRegistration::new(replicas.to_vec())],
                configs: BTreeMap::new(),
            }),
        );
        image
    }

    fn reg(image: &MetadataImage) -> PartitionRegistration {
        image.topic("t").unwrap().partitions[0].clone()
    }

    fn apply(image: &mut MetadataImage, change: PartitionChange) {
        let offset = image.offset + 1;
        let r = image.apply(offset, &MetadataCommand::one(R::ChangePartition(change)));
        assert_eq!(r.refused, None);
    }

    fn reassign(image: &MetadataImage, target: Option<&[NodeId]>) -> Result<Option<PartitionChange>, ReassignError> {
        on_reassign(image, "t", 0, target, true, false)
    }

    /// Reassigns (or cancels) and applies the change.
    fn step(image: &mut MetadataImage, target: Option<&[NodeId]>) {
        let change = reassign(image, target).unwrap().unwrap();
        apply(image, change);
    }

    /// The leader's ISR change adding `member`, with the completion check the controller runs.
    fn join_isr(image: &mut MetadataImage, member: NodeId) {
        let r = reg(image);
        let mut change = PartitionChange::new(image.topic("t").unwrap().id, 0, r.partition_epoch);
        let mut isr = r.isr.clone();
        isr.push(member);
        change.isr = Some(isr);
        complete(image, &r, &mut change);
        apply(image, change);
    }

    #[test]
    fn a_move_adds_then_completes_once_the_target_is_in_sync() {
        let mut image = image_with(&[1, 2, 3]);
        step(&mut image, Some(&[1, 2, 4]));
        let r = reg(&image);
        assert_eq!(
            (
                r.replicas.clone(),
                r.adding_replicas.clone(),
                r.removing_replicas.clone()
            ),
            (vec![1, 2, 4, 3], vec![4], vec![3])
        );
        assert_eq!((r.isr.clone(), r.leader, r.leader_epoch), (vec![1, 2, 3], 1, 0));
        join_isr(&mut image, 4);
        let r = reg(&image);
        assert_eq!((r.replicas, r.isr, r.leader), (vec![1, 2, 4], vec![1, 2, 4], 1));
        assert!(r.adding_replicas.is_empty() && r.removing_replicas.is_empty());
        assert_eq!(r.leader_epoch, 1, "removing a replica bumps the leader epoch");
    }

    #[test]
    fn a_removed_leader_hands_over_to_the_first_target_replica_in_sync() {
        let mut image = image_with(&[1, 2, 3]);
        step(&mut image, Some(&[4, 2, 3]));
        join_isr(&mut image, 4);
        let r = reg(&image);
        assert_eq!((r.replicas, r.isr, r.leader), (vec![4, 2, 3], vec![2, 3, 4], 4));
    }

    #[test]
    fn shrinking_or_reordering_completes_at_once() {
        let mut image = image_with(&[1, 2, 3]);
        step(&mut image, Some(&[2, 3]));
        let r = reg(&image);
        assert!(!r.is_reassigning());
        assert_eq!((r.replicas, r.isr, r.leader), (vec![2, 3], vec![2, 3], 2));
        step(&mut image, Some(&[3, 2]));
        let r = reg(&image);
        assert_eq!((r.replicas, r.leader), (vec![3, 2], 2), "a reorder leaves the leader");
        assert_eq!(reassign(&image, Some(&[3, 2])), Ok(None), "nothing to change");
    }

    #[test]
    fn a_new_target_over_an_ongoing_one_removes_what_is_no_longer_wanted() {
        let mut image = image_with(&[1, 2, 3]);
        step(&mut image, Some(&[1, 2, 4]));
        step(&mut image, Some(&[1, 2, 5]));
        let r = reg(&image);
        assert_eq!(
            (r.replicas, r.adding_replicas, r.removing_replicas),
            (vec![1, 2, 5, 3, 4], vec![5], vec![3, 4])
        );
    }

    #[test]
    fn a_cancel_reverts_to_the_original_replicas() {
        let mut image = image_with(&[1, 2, 3]);
        assert_eq!(reassign(&image, None), Err(ReassignError::NoReassignmentInProgress));
        step(&mut image, Some(&[4, 5, 3]));
        join_isr(&mut image, 4);
        let before = reg(&image);
        assert_eq!(before.isr, vec![1, 2, 3, 4], "5 is fenced: not complete yet");
        step(&mut image, None);
        let r = reg(&image);
        // The original replicas, in the order the reassignment left them (Kafka's revert).
        assert_eq!((r.replicas, r.isr, r.leader), (vec![3, 1, 2], vec![1, 2, 3], 1));
        assert!(r.adding_replicas.is_empty() && r.removing_replicas.is_empty());
        assert_eq!(r.leader_epoch, before.leader_epoch + 1, "the added replicas are fenced");
    }

    #[test]
    fn a_cancel_that_needs_an_unclean_election_is_refused_unless_allowed() {
        let mut image = image_with(&[1]);
        step(&mut image, Some(&[2]));
        // Only the new replica is left in the ISR (the old one was dropped meanwhile).
        let r = reg(&image);
        let mut c = PartitionChange::new(image.topic("t").unwrap().id, 0, r.partition_epoch);
        c.isr = Some(vec![2]);
        c.leader = Some(2);
        apply(&mut image, c);
        assert!(matches!(
            reassign(&image, None),
            Err(ReassignError::InvalidReplicaAssignment(_))
        ));
        let change = on_reassign(&image, "t", 0, None, true, true).unwrap().unwrap();
        apply(&mut image, change);
        let r = reg(&image);
        assert_eq!((r.replicas, r.isr, r.leader), (vec![1], vec![1], 1));
        assert_eq!(r.leader_recovery_state, LeaderRecoveryState::Recovering);
    }

    #[test]
    fn targets_are_validated_as_kafka_does() {
        let image = image_with(&[1, 2, 3]);
        let invalid = |target: &[NodeId]| {
            matches!(
                reassign(&image, Some(target)),
                Err(ReassignError::InvalidReplicaAssignment(_))
            )
        };
        assert!(invalid(&[]));
        assert!(invalid(&[1, 1, 2]));
        assert!(invalid(&[1, 2, 9]), "an unregistered broker");
        assert!(!invalid(&[1, 2, 5]), "a fenced broker is allowed");
        assert!(matches!(
            on_reassign(&image, "t", 0, Some(&[1, 2]), false, false),
            Err(ReassignError::InvalidReplicationFactor(_))
        ));
        assert_eq!(
            on_reassign(&image, "t", 1, Some(&[1]), true, false),
            Err(ReassignError::UnknownTopicOrPartition)
        );
        assert_eq!(
            on_reassign(&image, "u", 0, Some(&[1]), true, false),
            Err(ReassignError::UnknownTopicOrPartition)
        );
    }
}
