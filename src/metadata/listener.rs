//! The metadata listener (Kafka's `BrokerMetadataPublisher`): applies each new image to this
//! broker's replicas. Topics gone from the image are deleted here (and their committed offsets
//! removed from every group); new topics and partitions of which this broker holds a replica
//! are created; changed configs are applied. Only this task changes which partitions exist, so
//! request handlers and other brokers' commands reach the disk the same way.
//!
//! After each image the broker's `local_offset` moves to its offset: a handler that proposed a
//! command waits for that before answering. Creation failures are kept per topic id for the
//! handler that asked (see `broker::topics`).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use crate::broker::Broker;
use crate::controller::image::{MetadataImage, TopicImage};
use crate::coordinator::log::OFFSETS_TOPIC;

/// What one image changed for this broker.
#[derive(Debug, Default)]
struct Delta {
    deleted: Vec<Arc<TopicImage>>,
    /// New topics, or topics with new partitions.
    created: Vec<Arc<TopicImage>>,
    reconfigured: Vec<Arc<TopicImage>>,
    /// Topics whose partition registrations changed (leaders, epochs, ISR).
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
        broker.replicas.apply_leadership(t);
    }
    deleted
}

/// Runs until `shutdown`: each new image is applied, then `local_offset` moves to it.
/// `current` is the image the replicas were opened from.
pub async fn run(
    broker: Arc<Broker>,
    mut current: Arc<MetadataImage>,
    mut images: watch::Receiver<Arc<MetadataImage>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return },
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
        current = next;
        broker.local_offset.send_replace(current.offset);
    }
}

/// Tells the group coordinator which `__consumer_offsets` partitions this broker gained
/// (leader at a new epoch: load) or lost (unload) between two images.
pub async fn update_coordinators(broker: &Broker, old: &MetadataImage, new: &MetadataImage) {
    let me = broker.config.node_id;
    let before = old.topic(OFFSETS_TOPIC);
    let after = new.topic(OFFSETS_TOPIC);
    if let (Some(a), Some(b)) = (before, after) {
        if Arc::ptr_eq(a, b) {
            return;
        }
    }
    let count = after.map_or(0, |t| t.partitions.len());
    for (index, reg) in after.iter().flat_map(|t| t.partitions.iter().enumerate()) {
        let was = before.and_then(|t| t.partitions.get(index));
        let index = index as i32;
        if reg.leader == me {
            if !was.is_some_and(|w| w.leader == me && w.leader_epoch == reg.leader_epoch) {
                broker.groups.elect(index, reg.leader_epoch, count as i32).await;
            }
        } else if was.is_some_and(|w| w.leader == me) {
            broker.groups.resign(index).await;
        }
    }
    // Partitions gone with the topic (deleted, or fewer: never happens to an internal topic).
    for (index, reg) in before.iter().flat_map(|t| t.partitions.iter().enumerate()) {
        if index >= count && reg.leader == me {
            broker.groups.resign(index as i32).await;
        }
    }
}
