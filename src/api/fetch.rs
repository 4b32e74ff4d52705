//! Fetch (key 1): read whole batches below the high watermark (the last stable offset for
//! read_committed, with the aborted transactions among them), honouring `max_bytes`,
//! `partition_max_bytes` and at-least-one-batch as Kafka does, long-polling through the
//! replica manager's delayed fetch until `min_bytes` or `max_wait_ms`. A partition this broker
//! no longer leads names its current leader (v16+, KIP-951). From v11 a consumer may read
//! from a follower (up to its high watermark), and a leader configured with the rack-aware
//! replica selector sends a consumer in another rack to a follower in its own (KIP-392).
//!
//! Fetch sessions (KIP-227): we never create one and answer session id 0, which every client
//! treats as "sessions unsupported" and sends full fetch requests, as against a Kafka broker
//! with `max.incremental.fetch.session.cache.slots=0`. An incremental request naming a session
//! gets FETCH_SESSION_ID_NOT_FOUND.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, ProducerId};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::list_offsets::check_leader_epoch;
use super::RequestContext;
use crate::replication::partition::Partition;
use crate::replication::read_replica::{self, Candidate};
use crate::replication::replica_manager::{FetchParams, FetchTarget};
use crate::security::acl::{Operation, ResourceType};

const READ_COMMITTED: i8 = 1;

pub async fn handle(ctx: &RequestContext<'_>, req: FetchRequest) -> FetchResponse {
    let broker = ctx.broker;
    let replica = if ctx.version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let authz = Authz::new(ctx);
    if replica >= 0 {
        // A follower's fetch needs CLUSTER_ACTION (Kafka answers each partition
        // TOPIC_AUTHORIZATION_FAILED otherwise).
        if !authz.allows_cluster(Operation::ClusterAction) {
            return every_partition(req, ResponseError::TopicAuthorizationFailed);
        }
        return super::replica_fetch::handle(ctx, req, replica).await;
    }
    if req.session_id != 0 || req.session_epoch > 0 {
        return FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    // KIP-392: consumers' fetches (v11+) may be served by followers.
    let from_followers = ctx.version >= 11;
    let mut topics: Vec<FetchableTopicResponse> = Vec::with_capacity(req.topics.len());
    let mut targets: Vec<FetchTarget> = Vec::new();
    let mut slots: Vec<(usize, usize)> = Vec::new();
    let mut names: Vec<Option<String>> = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = if ctx.version >= 13 {
            broker.metadata.topic_name_by_id(t.topic_id)
        } else {
            Some(t.topic.to_string())
        };
        let denied = authz.enabled()
            && name
                .as_deref()
                .is_some_and(|n| !authz.allows(Operation::Read, ResourceType::Topic, n));
        let ti = topics.len();
        let mut resp = FetchableTopicResponse::default()
            .with_topic(t.topic.clone())
            .with_topic_id(t.topic_id);
        for p in t.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_records(Some(Bytes::new()));
            if denied {
                pd.error_code = ResponseError::TopicAuthorizationFailed.code();
                resp.partitions.push(pd);
                continue;
            }
            let partition = name
                .as_deref()
                .map(|n| broker.readable_partition(n, p.partition, from_followers));
            // v9+: the consumer's view of the leader epoch must match ours.
            let epoch_check = match &partition {
                Some(Ok(part)) if ctx.version >= 9 => check_leader_epoch(part, p.current_leader_epoch),
                Some(Err(e)) => Err(e.response_error()),
                _ => Ok(()),
            };
            let partition = partition.and_then(Result::ok);
            match (&name, epoch_check) {
                (None, _) => pd.error_code = ResponseError::UnknownTopicId.code(),
                (Some(_), Err(e)) => pd.error_code = e.code(),
                (Some(_), Ok(())) => {
                    if preferred_replica(ctx, &req.rack_id, partition.as_deref(), p.fetch_offset, &mut pd) {
                        // Sent to another replica: nothing read here.
                        resp.partitions.push(pd);
                        continue;
                    }
                    slots.push((ti, resp.partitions.len()));
                    targets.push(FetchTarget {
                        partition,
                        fetch_offset: p.fetch_offset,
                        knows_leader_epoch: ctx.version >= 9 && p.current_leader_epoch >= 0,
                        partition_max_bytes: usize::try_from(p.partition_max_bytes.max(0))
                            .unwrap_or(0)
                            .min(broker.config.fetch_max_bytes),
                    });
                }
            }
            resp.partitions.push(pd);
        }
        topics.push(resp);
        names.push(name);
    }
    let params = FetchParams {
        max_wait_ms: i64::from(req.max_wait_ms),
        min_bytes: usize::try_from(req.min_bytes.max(0)).unwrap_or(0),
        max_bytes: usize::try_from(req.max_bytes.max(0))
            .unwrap_or(0)
            .min(broker.config.fetch_max_bytes),
        hard_max_bytes_limit: ctx.version <= 2,
        read_committed: ctx.version >= 4 && req.isolation_level == READ_COMMITTED,
        from_followers,
    };
    let results = broker.replicas.fetch_messages(params, &targets).await;
    let read_committed = params.read_committed;
    for ((ti, pi), (result, target)) in slots.into_iter().zip(results.into_iter().zip(targets.iter())) {
        let Some(pd) = topics.get_mut(ti).and_then(|t| t.partitions.get_mut(pi)) else {
            continue;
        };
        if read_committed {
            pd.aborted_transactions = Some(Vec::new());
        }
        match result {
            Ok(read) => {
                if let Some(p) = &target.partition {
                    let messages: u64 = crate::storage::batch::batches(&read.records)
                        .filter_map(Result::ok)
                        .map(|(_, h)| u64::try_from(h.record_count).unwrap_or(0))
                        .sum();
                    p.metrics.sent(messages, read.records.len() as u64);
                }
                pd.high_watermark = read.high_watermark;
                pd.last_stable_offset = read.last_stable_offset;
                pd.log_start_offset = read.log_start_offset;
                if let Some(aborted) = read.aborted_transactions {
                    pd.aborted_transactions = Some(
                        aborted
                            .into_iter()
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect(),
                    );
                }
                pd.records = Some(read.records);
            }
            Err(e) => {
                pd.error_code = e.code();
                if let Some(p) = &target.partition {
                    let o = p.offsets();
                    pd.high_watermark = o.high_watermark;
                    pd.last_stable_offset = o.last_stable_offset;
                    pd.log_start_offset = o.log_start_offset;
                }
            }
        }
    }
    let mut response = FetchResponse::default().with_responses(topics);
    super::leader_hint::fill_fetch(broker, ctx.listener, ctx.version, &names, &mut response);
    response
}

/// KIP-392 on the leader: with the rack-aware selector configured and a consumer in a rack
/// (Fetch v11+), names the replica it should read from instead (no records; the offsets as
/// the leader has them) and returns true; false to read here.
fn preferred_replica(
    ctx: &RequestContext<'_>,
    client_rack: &str,
    partition: Option<&Partition>,
    fetch_offset: i64,
    pd: &mut PartitionData,
) -> bool {
    let broker = ctx.broker;
    let Some(p) = partition else { return false };
    if ctx.version < 11
        || client_rack.is_empty()
        || !broker.config.cluster.rack_aware_replica_selector
        || !p.is_leader()
    {
        return false;
    }
    let image = broker.metadata.image();
    let rack = |id: i32| image.brokers.get(&id).and_then(|b| b.rack.as_deref());
    let followers: Vec<Candidate<'_>> = p
        .follower_log_ends()
        .into_iter()
        .filter(|(id, _)| image.is_live(*id))
        .map(|(id, log_end)| Candidate {
            id,
            rack: rack(id),
            log_end,
        })
        .collect();
    let Some(chosen) = read_replica::select(client_rack, rack(broker.config.node_id), &followers, fetch_offset) else {
        return false;
    };
    let o = p.offsets();
    pd.preferred_read_replica = BrokerId(chosen);
    pd.high_watermark = o.high_watermark;
    pd.last_stable_offset = o.last_stable_offset;
    pd.log_start_offset = o.log_start_offset;
    true
}

/// A response giving every partition of `req` the error `e` (and nothing else).
fn every_partition(req: FetchRequest, e: ResponseError) -> FetchResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_error_code(e.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_records(Some(Bytes::new()))
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_responses(topics)
}
