//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3), earliest local (-4),
//! and the first offset whose timestamp is at or after a given time (through the time index).
//! read_committed (v2+) answers below the last stable offset instead of the high watermark.
//! A new leader whose high watermark has not reached its epoch's start answers
//! OFFSET_NOT_AVAILABLE for the latest offset (KIP-207), so clients retry instead of seeing an
//! end that moves back.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::error::storage_error_code;
use crate::replication::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(ctx: &RequestContext<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    // isolation_level exists from v2; 1 = read_committed.
    let read_committed = ctx.version >= 2 && req.isolation_level == 1;
    let authz = super::authz::Authz::new(ctx);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = authz.enabled()
                && !authz.allows(
                    crate::security::acl::Operation::Describe,
                    crate::security::acl::ResourceType::Topic,
                    t.name.as_str(),
                );
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let found = if denied {
                        Err(None)
                    } else {
                        ctx.broker
                            .leader_partition(t.name.as_str(), p.partition_index)
                            .map_err(Some)
                    };
                    let mut resp = match found {
                        Err(None) => resp.with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                        Err(Some(e)) => resp.with_error_code(e.code()),
                        Ok(partition) => lookup(&partition, p.timestamp, p.current_leader_epoch, read_committed, resp),
                    };
                    if ctx.version < 4 {
                        // The field does not exist before v4 and must stay at its default.
                        resp.leader_epoch = -1;
                    }
                    resp
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Checks the client's view of the leader epoch against ours (-1 = not checked).
pub fn check_leader_epoch(partition: &Partition, current_leader_epoch: i32) -> Result<(), ResponseError> {
    let ours = partition.leader_epoch();
    if current_leader_epoch < 0 || current_leader_epoch == ours {
        Ok(())
    } else if current_leader_epoch < ours {
        Err(ResponseError::FencedLeaderEpoch)
    } else {
        Err(ResponseError::UnknownLeaderEpoch)
    }
}

fn lookup(
    partition: &Partition,
    timestamp: i64,
    current_leader_epoch: i32,
    read_committed: bool,
    mut resp: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    if let Err(e) = check_leader_epoch(partition, current_leader_epoch) {
        return resp.with_error_code(e.code());
    }
    let epoch = partition.leader_epoch();
    let offsets = partition.offsets();
    // read_committed sees the log up to the last stable offset (Kafka's lastFetchableOffset).
    let fetchable = if read_committed {
        offsets.last_stable_offset
    } else {
        offsets.high_watermark
    };
    // A leader elected moments ago has not yet learnt what its predecessor committed (its high
    // watermark is below its epoch's start): Kafka answers OFFSET_NOT_AVAILABLE (KIP-207) for
    // the latest offset and for a timestamp not found below the fetchable end.
    let lagging = partition
        .leader_epoch_start_offset()
        .is_some_and(|start| start > offsets.high_watermark);
    match timestamp {
        LATEST if lagging => resp.error_code = ResponseError::OffsetNotAvailable.code(),
        LATEST => {
            resp.offset = fetchable;
            resp.leader_epoch = epoch;
        }
        EARLIEST | EARLIEST_LOCAL => {
            resp.offset = offsets.log_start_offset;
            resp.leader_epoch = epoch;
        }
        LATEST_TIERED => {
            // No tiered storage: Kafka answers -1 here.
        }
        MAX_TIMESTAMP => match partition.offset_of_max_timestamp() {
            Ok(Some(found)) => {
                resp.offset = found.offset;
                resp.timestamp = found.timestamp;
                resp.leader_epoch = found.leader_epoch;
            }
            Ok(None) => {}
            Err(e) => resp.error_code = storage_error_code(&e),
        },
        target => match partition.fetch_offset_by_timestamp(target) {
            Ok(Some(found)) if found.offset < fetchable => {
                resp.offset = found.offset;
                resp.timestamp = found.timestamp;
                resp.leader_epoch = found.leader_epoch;
            }
            Ok(_) if lagging => resp.error_code = ResponseError::OffsetNotAvailable.code(),
            Ok(_) => {}
            Err(e) => resp.error_code = storage_error_code(&e),
        },
    }
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::controller::record::PartitionRegistration;
    use crate::storage::batch::tests::make_batch;
    use crate::storage::log::tests::{open, NOW};
    use crate::storage::LogConfig;

    fn latest_and_a_time(partition: &Partition, time: i64) -> Vec<(i16, i64)> {
        [LATEST, EARLIEST, time]
            .into_iter()
            .map(|ts| {
                let r = lookup(
                    partition,
                    ts,
                    -1,
                    false,
                    ListOffsetsPartitionResponse::default().with_offset(-1),
                );
                (r.error_code, r.offset)
            })
            .collect()
    }

    /// KIP-207: a follower that had three records but a high watermark of 0 becomes leader with
    /// another replica in its ISR; until that replica's fetch moves the HW to the epoch's start
    /// (3), the latest offset and a time past the committed records are OFFSET_NOT_AVAILABLE.
    #[test]
    fn a_new_leader_behind_its_epoch_start_answers_offset_not_available() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let log = open(dir.path(), LogConfig::default(), true)?;
        let partition = Partition::new(Arc::from("t"), uuid::Uuid::new_v4(), 0, log)?;
        partition.make_follower(2, 0);
        partition.append_as_follower(&Bytes::from(make_batch(3, NOW, 10)), 0, NOW)?;
        let mut reg = PartitionRegistration::new(vec![1, 2]);
        reg.leader_epoch = 1;
        partition.make_leader(1, &reg, NOW)?;
        let unavailable = ResponseError::OffsetNotAvailable.code();
        assert_eq!(
            latest_and_a_time(&partition, NOW),
            vec![(unavailable, -1), (0, 0), (unavailable, -1)]
        );
        // The follower fetches from 3: the HW reaches the epoch start, and the answers come.
        partition.read_for_follower(2, true, 3, -1, 1, 1 << 20, NOW)?;
        assert_eq!(partition.high_watermark(), 3);
        assert_eq!(latest_and_a_time(&partition, NOW), vec![(0, 3), (0, 0), (0, 0)]);
        Ok(())
    }
}
