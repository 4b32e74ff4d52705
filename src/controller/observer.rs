//! A broker-only node's view of the metadata (`process.roles=broker`; Kafka's KRaft
//! observer). It is no member of the Raft group, so nothing is pushed to it and it needs no
//! controller listener: it pulls. One supervised task asks a voter over the controller
//! listener for the image newer than the one it has (`PeerRequest::FetchMetadata`, long-polled
//! up to [`FETCH_WAIT`]); the voter answers with its latest applied (so committed) image and
//! the quorum's leader as it knows it. The task publishes each newer image on the same watch
//! channel a voter's state machine feeds, so the broker above cannot tell the difference, and
//! keeps the leader for forwarding writes and heartbeats.
//!
//! Images only move forward (a voter behind the last one seen is ignored). The task prefers
//! the leader; a voter that fails is left for the next in turn after a short backoff. A node
//! restarts with an empty image and catches up from the quorum (it could not register without
//! it anyway). The first answer is a whole image; later ones are the log entries applied since
//! the node's offset (from the voter's `journal`), replayed here with the same pure
//! `MetadataImage::apply`, unless the node is further behind than the journal reaches, when it
//! gets the whole image again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::image::MetadataImage;
use super::journal;
use super::network::{MetadataUpdate, PeerClient, PeerRequest, PeerResponse};
use super::record::NodeId;

/// How long a voter holds a fetch with nothing new before answering.
pub const FETCH_WAIT: Duration = Duration::from_millis(500);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Pulls images from the voters until `shutdown`.
pub async fn run(
    voters: BTreeMap<NodeId, String>,
    images: watch::Sender<Arc<MetadataImage>>,
    leader: watch::Sender<Option<NodeId>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ids: Vec<NodeId> = voters.keys().copied().collect();
    if ids.is_empty() {
        tracing::error!("a broker-only node needs controller.quorum.voters");
        return;
    }
    let mut next = 0usize;
    let mut client: Option<(NodeId, PeerClient)> = None;
    let mut first = true;
    let mut backoff = Duration::from_millis(50);
    loop {
        if *shutdown.borrow() {
            return;
        }
        // The leader if known, else the next voter in turn.
        let target = match *leader.borrow() {
            Some(l) if voters.contains_key(&l) => l,
            _ => ids[next % ids.len()],
        };
        if client.as_ref().is_none_or(|(id, _)| *id != target) {
            let Some(addr) = voters.get(&target) else { return };
            client = Some((target, PeerClient::new(addr.clone())));
        }
        let Some((_, c)) = client.as_mut() else { return };
        let after = (!first).then(|| images.borrow().offset);
        let request = PeerRequest::FetchMetadata {
            after,
            max_wait_ms: u64::try_from(FETCH_WAIT.as_millis()).unwrap_or(500),
        };
        let answer = tokio::select! {
            a = c.call(request, FETCH_TIMEOUT) => a,
            _ = shutdown.changed() => return,
        };
        match answer {
            Ok(PeerResponse::FetchMetadata(Ok(update))) => {
                backoff = Duration::from_millis(50);
                apply(update, &images, &leader, &mut first);
            }
            other => {
                let why = match other {
                    Ok(PeerResponse::FetchMetadata(Err(e))) => e.to_string(),
                    Ok(_) => "wrong response".to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::debug!(voter = target, reason = %why, "metadata fetch failed; trying the next voter");
                client = None;
                next += 1;
                // The leader we knew may be the one that failed: ask around.
                leader.send_if_modified(|l| l.take().is_some());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Publishes what a voter sent if it moves the image forward (a newer image, or the entries
/// after this one's offset, replayed), and takes the leader the voter named.
fn apply(
    update: MetadataUpdate,
    images: &watch::Sender<Arc<MetadataImage>>,
    leader: &watch::Sender<Option<NodeId>>,
    first: &mut bool,
) {
    leader.send_if_modified(|l| {
        let changed = *l != update.leader;
        *l = update.leader;
        changed
    });
    if let Some(mut image) = update.image {
        if *first || image.offset > images.borrow().offset {
            *first = false;
            image.reindex(); // its id index is not sent
            images.send_replace(Arc::new(image));
        }
    } else if let Some(entries) = update.entries.filter(|e| !e.is_empty()) {
        let current = Arc::clone(&images.borrow());
        // Entries that do not continue this image (a voter answering an older request) are
        // dropped: the next fetch asks again from this image's offset.
        match journal::replay(&current, &entries) {
            Some(next) => {
                tracing::trace!(
                    entries = entries.len(),
                    offset = next.offset,
                    "metadata entries replayed"
                );
                images.send_replace(Arc::new(next));
            }
            None => tracing::debug!(
                at = current.offset,
                first = entries.first().map(|e| e.offset),
                "metadata entries that do not follow this image; dropped"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(leader: Option<NodeId>, offset: Option<u64>) -> MetadataUpdate {
        MetadataUpdate {
            leader,
            image: offset.map(|offset| {
                let mut image = MetadataImage::default();
                image.offset = offset;
                image
            }),
            entries: None,
        }
    }

    #[test]
    fn images_only_move_forward() {
        let (images, rx) = watch::channel(Arc::new(MetadataImage::default()));
        let (leader, leader_rx) = watch::channel(None);
        let mut first = true;
        apply(update(Some(2), Some(7)), &images, &leader, &mut first);
        assert_eq!((rx.borrow().offset, *leader_rx.borrow()), (7, Some(2)));
        // A voter behind the image already seen is ignored; its leader view is taken.
        apply(update(Some(3), Some(5)), &images, &leader, &mut first);
        assert_eq!((rx.borrow().offset, *leader_rx.borrow()), (7, Some(3)));
        apply(update(None, None), &images, &leader, &mut first);
        assert_eq!((rx.borrow().offset, *leader_rx.borrow()), (7, None));
        apply(update(Some(3), Some(9)), &images, &leader, &mut first);
        assert_eq!(rx.borrow().offset, 9);
        // Entries continuing the image move it; others are dropped.
        let entries = |from: u64, to: u64| MetadataUpdate {
            leader: Some(3),
            image: None,
            entries: Some(
                (from..=to)
                    .map(|offset| journal::JournalEntry { offset, command: None })
                    .collect(),
            ),
        };
        apply(entries(12, 14), &images, &leader, &mut first);
        assert_eq!(rx.borrow().offset, 9, "a gap");
        apply(entries(10, 14), &images, &leader, &mut first);
        assert_eq!(rx.borrow().offset, 14);
    }
}
