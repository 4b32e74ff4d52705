//! Fetch (key 1) from a follower (a replica id in the request: `replica_id` before v15,
//! `ReplicaState` from v15): records up to the log end rather than the high watermark; the
//! follower's last fetched epoch checked against ours, a divergence answered with the epoch
//! and end offset to truncate to (no records); its position recorded, which moves the high
//! watermark and may bring it back into the ISR. Consumers never reach this path.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{EpochEndOffset, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::replication::leadership::FollowerFetchTarget;

pub async fn handle(ctx: &RequestContext<'_>, req: FetchRequest, replica: i32) -> FetchResponse {
    let broker = ctx.broker;
    let mut topics: Vec<FetchableTopicResponse> = Vec::with_capacity(req.topics.len());
    let mut targets = Vec::new();
    let mut slots = Vec::new();
    for t in req.topics {
        let name = if ctx.version >= 13 {
            broker.metadata.topic_name_by_id(t.topic_id)
        } else {
            Some(t.topic.to_string())
        };
        let ti = topics.len();
        let mut resp = FetchableTopicResponse::default()
            .with_topic(t.topic.clone())
            .with_topic_id(t.topic_id);
        for p in t.partitions {
            let partition = match &name {
                None => Err(ResponseError::UnknownTopicId.code()),
                Some(n) => match broker.replicas.get_partition(n, p.partition) {
                    Some(part) => Ok(part),
                    None if broker.partition_exists(n, p.partition) => Err(ResponseError::NotLeaderOrFollower.code()),
                    None => Err(ResponseError::UnknownTopicOrPartition.code()),
                },
            };
            slots.push((ti, resp.partitions.len()));
            resp.partitions.push(
                PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
                    .with_records(Some(Bytes::new())),
            );
            targets.push(FollowerFetchTarget {
                partition,
                fetch_offset: p.fetch_offset,
                last_fetched_epoch: if ctx.version >= 12 { p.last_fetched_epoch } else { -1 },
                current_leader_epoch: p.current_leader_epoch,
                max_bytes: usize::try_from(p.partition_max_bytes.max(0)).unwrap_or(0),
            });
        }
        topics.push(resp);
    }
    let max_bytes = usize::try_from(req.max_bytes.max(0))
        .unwrap_or(0)
        .min(broker.config.fetch_max_bytes);
    let max_wait = std::time::Duration::from_millis(u64::try_from(req.max_wait_ms.max(0)).unwrap_or(0));
    let min_bytes = usize::try_from(req.min_bytes.max(0)).unwrap_or(0);
    // Kafka's KIP-841 rule: only a registered, unfenced broker not shutting down (and, KIP-858,
    // with its log dir online) joins an ISR.
    let image = broker.metadata.image();
    let isr_eligible = image.is_eligible(replica);
    let results = broker
        .replicas
        .fetch_for_follower(replica, isr_eligible, max_wait, min_bytes, max_bytes, &targets)
        .await;
    for (((ti, pi), result), target) in slots.into_iter().zip(results).zip(&targets) {
        let Some(pd) = topics.get_mut(ti).and_then(|t| t.partitions.get_mut(pi)) else {
            continue;
        };
        match (result, &target.partition) {
            (Ok(read), partition) => {
                let reassigning = partition.as_ref().is_ok_and(|p| {
                    image
                        .topic(&p.topic)
                        .and_then(|t| t.partition(p.index))
                        .is_some_and(|r| r.is_reassigning())
                });
                crate::metrics::replicated(read.records.len(), false, reassigning);
                pd.high_watermark = read.high_watermark;
                pd.log_start_offset = read.log_start_offset;
                if let Some((epoch, end_offset)) = read.diverging {
                    pd.diverging_epoch = EpochEndOffset::default().with_epoch(epoch).with_end_offset(end_offset);
                }
                pd.records = Some(read.records);
            }
            (Err(_), Err(code)) => pd.error_code = *code,
            (Err(e), Ok(p)) => {
                pd.error_code = e.code();
                let o = p.offsets();
                pd.high_watermark = o.high_watermark;
                pd.log_start_offset = o.log_start_offset;
            }
        }
    }
    FetchResponse::default().with_responses(topics)
}
