//! The metadata listener (Kafka's `BrokerMetadataPublisher`): applies each new image to this
//! broker's replicas. Topics gone from the image are deleted here (and their committed offsets
//! removed from every group); new topics and partitions of which this broker holds a replica
//! are created, and so are replicas a reassignment adds here, while those it moves away are
//! removed with their data; changed configs are applied. Only this task changes which partitions exist, so
//! request handlers and other brokers' commands reach the disk the same way.
//!
//! After each image the broker's `local_offset` moves to its offset: a handler that proposed a
//! command waits for that before answering. Creation failures are kept per topic id for the
//! handler that asked (see `broker::topics`); the replicas that failed (a full disk) are
//! retried every [`MISSING_REPLICAS_RETRY`] until they open, and are offline meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use crate::broker::Broker;
use crate::controller::image::{MetadataImage, TopicImage};
use crate::coordinator::log::{Leadership, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};

/// How often replicas that failed to open or be created are tried again.
pub const MISSING_REPLICAS_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// What one image changed for this broker.
#[derive(Debug, Default)]
struct Delta {
    deleted: Vec<Arc<TopicImage>>,
    /// New topics, or topics with new partitions.
    created: Vec<Arc<TopicImage>>,
    reconfigured: Vec<Arc<TopicImage>>,
    /// Topics whose partition registrations changed (leaders, epochs, ISR, replicas).
    changed: Vec<Arc<TopicImage>>,
}

fn delta(old: &MetadataImage, new: &MetadataImage) -> Delta {
    let mut d = Delta::default();
    let old_by_id: HashMap<Uuid, &Arc<TopicImage>> = old.topics().map(|t| (t.id, t)).collect();
    for t in old.topics() {
        if new.topic_by_id(t.id).is_none() {
            d.deleted.push(Arc::clone(t));
        }
    }
    for t in new.topics() {
        match old_by_id.get(&t.id) {
            None => d.created.push(Arc::clone(t)),
            Some(before) if Arc::ptr_eq(before, t) => {}
            Some(before) => {
                if t.partitions.len() > before.partitions.len() {
                    d.created.push(Arc::clone(t));
                }
                if t.configs != before.configs {
                    d.reconfigured.push(Arc::clone(t));
                }
                if t.partitions != before.partitions {
                    d.changed.push(Arc::clone(t));
                }
            }
        }
    }
    d
}

/// Applies `delta` to the replica manager (blocking file work: run off the runtime workers).
/// Returns the names of the topics deleted.
fn apply(broker: &Broker, d: &Delta) -> Vec<String> {
    let mut deleted = Vec::new();
    for t in &d.deleted {
        match broker.replicas.delete_topic(&t.name) {
            Ok(()) => deleted.push(t.name.clone()),
            Err(e) => tracing::error!(topic = %t.name, error = %e, "deleting the topic's replicas failed"),
        }
    }
    for t in &d.created {
        if let Err(e) = broker.replicas.create_partitions(t) {
            tracing::warn!(topic = %t.name, error = %e, "creating the topic's replicas failed");
            broker
                .local_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(t.id, e);
        }
    }
    for t in &d.reconfigured {
        broker.replicas.update_topic_config(t);
    }
    for t in &d.changed {
        // Reassignments move replicas here or away; then roles.
        if let Err(e) = broker.replicas.apply_replicas(t) {
            tracing::warn!(topic = %t.name, error = %e, "applying the topic's reassigned replicas failed");
        }
    }
    deleted
}

/// Runs until `shutdown`: each new image is applied, then `applied` (the broker's
/// `local_offset`) moves to it. `current` is the image the replicas were opened from. Returning
/// drops `applied`, which tells handlers still waiting for an offset that it will not come.
pub async fn run(
    broker: Arc<Broker>,
    applied: watch::Sender<u64>,
    mut current: Arc<MetadataImage>,
    mut images: watch::Receiver<Arc<MetadataImage>>,
    mut shutdown: watch::Receiver<bool>,
) {
    broker.replicas.set_throttle_rates(&current);
    let mut retry = tokio::time::interval(MISSING_REPLICAS_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return },
            _ = retry.tick(), if broker.replicas.is_incomplete() => {
                open_missing(&broker, &current).await;
                continue;
            }
            _ = shutdown.changed() => return,
        }
        let next = Arc::clone(&images.borrow_and_update());
        let d = delta(&current, &next);
        if !(d.deleted.is_empty() && d.created.is_empty() && d.reconfigured.is_empty() && d.changed.is_empty()) {
            let b = Arc::clone(&broker);
            let deleted = crate::supervisor::run_blocking(move || apply(&b, &d));
            if !deleted.is_empty() {
                broker.groups.remove_topics(deleted).await;
            }
        }
        update_coordinators(&broker, &current, &next).await;
        broker.replicas.set_throttle_rates(&next);
        current = next;
        applied.send_replace(current.offset);
    }
}

/// Opens the replicas this broker should host but could not open or create (a full disk; see
/// `ReplicaManager::open_missing`); coordinators are told again of the internal partitions they
/// lead, whose loads failed while the replicas were missing.
async fn open_missing(broker: &Arc<Broker>, current: &Arc<MetadataImage>) {
    let topics: Vec<Arc<TopicImage>> = current.topics().cloned().collect();
    let b = Arc::clone(broker);
    if crate::supervisor::run_blocking(move || b.replicas.open_missing(&topics)) {
        update_coordinators(broker, &MetadataImage::default(), current).await;
    }
}

/// Tells the group coordinator which `__consumer_offsets` partitions, and the transaction
/// coordinator which `__transaction_state` partitions, this broker gained (leader at a new
/// epoch: load) or lost (unload) between two images.
pub async fn update_coordinators(broker: &Broker, old: &MetadataImage, new: &MetadataImage) {
    let me = broker.config.node_id;
    for change in leadership_changes(me, old.topic(OFFSETS_TOPIC), new.topic(OFFSETS_TOPIC)) {
        broker.groups.leadership(change).await;
    }
    let (before, after) = (old.topic(TRANSACTION_STATE_TOPIC), new.topic(TRANSACTION_STATE_TOPIC));
    for change in leadership_changes(me, before, after) {
        broker.transactions.leadership(change).await;
    }
}

/// The partitions of one internal topic whose leadership by `me` changed between two images.
fn leadership_changes(me: i32, before: Option<&Arc<TopicImage>>, after: Option<&Arc<TopicImage>>) -> Vec<Leadership> {
    if let (Some(a), Some(b)) = (before, after) {
        if Arc::ptr_eq(a, b) {
            return Vec::new();
        }
    }
    let mut changes = Vec::new();
    let count = after.map_or(0, |t| t.partitions.len());
    for (index, reg) in after.iter().flat_map(|t| t.partitions.iter().enumerate()) {
        let was = before.and_then(|t| t.partitions.get(index));
        let partition = index as i32;
        if reg.leader == me {
            if !was.is_some_and(|w| w.leader == me && w.leader_epoch == reg.leader_epoch) {
                changes.push(Leadership::Gained {
                    partition,
                    epoch: reg.leader_epoch,
                    count: count as i32,
                });
            }
        } else if was.is_some_and(|w| w.leader == me) {
            changes.push(Leadership::Lost { partition });
        }
    }
    // Partitions gone with the topic (deleted, or fewer: never happens to an internal topic).
    for (index, reg) in before.iter().flat_map(|t| t.partitions.iter().enumerate()) {
        if index >= count && reg.leader == me {
            changes.push(Leadership::Lost {
                partition: index as i32,
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::record::PartitionRegistration;

    fn topic(leaders: &[(i32, i32)]) -> Arc<TopicImage> {
        Arc::new(TopicImage {
            name: TRANSACTION_STATE_TOPIC.into(),
            id: Uuid::nil(),
            partitions: leaders
                .iter()
                .map(|&(leader, epoch)| {
                    let mut p = PartitionRegistration::new(vec![1, 2]);
                    p.leader = leader;
                    p.leader_epoch = epoch;
                    p
                })
                .collect(),
            configs: Default::default(),
        })
    }

    #[test]
    fn coordinator_partitions_follow_leadership() {
        let first = topic(&[(1, 0), (2, 0), (1, 0)]);
        let gained = |partition, epoch| Leadership::Gained {
            partition,
            epoch,
            count: 3,
        };
        // Created: every partition led here is loaded.
        assert_eq!(
            leadership_changes(1, None, Some(&first)),
            vec![gained(0, 0), gained(2, 0)]
        );
        // The same image: nothing.
        assert!(leadership_changes(1, Some(&first), Some(&first)).is_empty());
        // 0 moves away, 1 comes here, 2 is led here at a new epoch (reloaded).
        let next = topic(&[(2, 1), (1, 1), (1, 1)]);
        assert_eq!(
            leadership_changes(1, Some(&first), Some(&next)),
            vec![Leadership::Lost { partition: 0 }, gained(1, 1), gained(2, 1)]
        );
        // Deleted: every partition led here is dropped.
        assert_eq!(
            leadership_changes(1, Some(&next), None),
            vec![Leadership::Lost { partition: 1 }, Leadership::Lost { partition: 2 }]
        );
    }
}
