//! WriteTxnMarkers (key 27, v1): a transaction coordinator on another broker asks this one, as
//! the leader of some of a transaction's partitions, to write their commit or abort markers
//! (control batches), each answered once replicated to the ISR. For a `__consumer_offsets`
//! partition the marker ends the producer's pending offsets in this broker's group coordinator
//! (which must lead that partition). Partitions this broker does not lead get
//! NOT_LEADER_OR_FOLLOWER (the coordinator looks the leader up again), unknown ones
//! UNKNOWN_TOPIC_OR_PARTITION, as Kafka answers.

use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::RequestContext;
use crate::coordinator::log::OFFSETS_TOPIC;
use crate::storage::{EndTxnMarker, MarkerType};

/// How long a marker waits for the ISR (Kafka's coordinator gives its request timeout).
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn handle(ctx: &RequestContext<'_>, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let broker = ctx.broker;
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let commit = m.transaction_result;
        let marker = EndTxnMarker {
            marker: if commit { MarkerType::Commit } else { MarkerType::Abort },
            coordinator_epoch: m.coordinator_epoch,
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let name = t.name.to_string();
            // Per partition: the error code, or None for a local leader to write to.
            let checked: Vec<(i32, Option<i16>)> = t
                .partition_indexes
                .iter()
                .map(|&p| (p, broker.leader_partition(&name, p).err().map(|e| e.code())))
                .collect();
            let local: Vec<(String, i32)> = checked
                .iter()
                .filter(|(_, e)| e.is_none())
                .map(|(p, _)| (name.clone(), *p))
                .collect();
            let mut written: Vec<i16> = if local.is_empty() {
                Vec::new()
            } else if name == OFFSETS_TOPIC {
                let code = match broker.groups.end_txn(marker.producer_id, commit).await {
                    Ok(()) => 0,
                    Err(e) => e.code(),
                };
                vec![code; local.len()]
            } else {
                broker
                    .replicas
                    .write_txn_markers(marker, &local, MARKER_TIMEOUT)
                    .await
                    .into_iter()
                    .map(|r| r.map_or_else(|e| e.code(), |()| 0))
                    .collect()
            };
            written.reverse();
            let partitions = checked
                .into_iter()
                .map(|(p, early)| {
                    let code = early.unwrap_or_else(|| written.pop().unwrap_or(0));
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(code)
                })
                .collect();
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
