//! Produce (key 0): validate each partition's records as Kafka does at the API boundary
//! (exactly one v2 batch per partition, zstd only from v7; v0-2's old message sets converted
//! to one), hand them to the replica manager as
//! bytes, answer with base offsets (and, v10+, the current leader where this broker no longer
//! leads). acks=0 gets no response at all.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::RequestContext;
use crate::replication::partition::Partition;
use crate::security::acl::{Operation, ResourceType};
use crate::storage::error::StorageError;
use crate::storage::{message_set, BatchHeader, Compression};

/// Checks Kafka makes before the log sees the bytes. Produce v0-2's old message sets (magic 0
/// and 1) are converted to one v2 batch first (Kafka's up-conversion), in place.
fn validate(records: &mut Option<Bytes>, version: i16) -> Result<(), (ResponseError, &'static str)> {
    if version < 3 {
        if let Some(set) = records.take() {
            *records = Some(message_set::up_convert(set).map_err(|e| match e {
                StorageError::CorruptRecord(_) => (ResponseError::CorruptMessage, "corrupt message set"),
                _ => (ResponseError::InvalidRecord, "invalid message set"),
            })?);
        }
    }
    let Some(bytes) = records else {
        return Err((ResponseError::InvalidRecord, "records must not be null"));
    };
    // Magic is byte 16; anything but 2 is an old message format v3+ requests may not carry.
    if bytes.get(16).is_some_and(|m| *m != 2) {
        return Err((
            ResponseError::InvalidRecord,
            "Produce requests with version 3+ may only contain magic v2 batches",
        ));
    }
    let header =
        BatchHeader::parse(bytes).map_err(|_| (ResponseError::CorruptMessage, "malformed record batch header"))?;
    if header.total_size() != bytes.len() {
        return Err((
            ResponseError::InvalidRecord,
            "Produce requests with version 3+ must contain exactly one record batch",
        ));
    }
    if matches!(header.compression(), Ok(Compression::Zstd)) && version < 7 {
        return Err((
            ResponseError::UnsupportedCompressionType,
            "zstd requires Produce v7 or later",
        ));
    }
    if header.compression().is_err() {
        return Err((ResponseError::CorruptMessage, "unknown compression codec"));
    }
    Ok(())
}

pub async fn handle(ctx: &RequestContext<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    let broker = ctx.broker;
    let acks = req.acks;
    // Layout of the response, in request order: (topic response, per-partition slot).
    let mut topics: Vec<TopicProduceResponse> = Vec::with_capacity(req.topic_data.len());
    let mut entries: Vec<(Result<Arc<Partition>, crate::error::BrokerError>, Bytes)> = Vec::new();
    let mut counted: Vec<Option<Arc<Partition>>> = Vec::new();
    let mut slots: Vec<(usize, usize)> = Vec::new();
    let mut names: Vec<Option<String>> = Vec::with_capacity(req.topic_data.len());
    // Kafka: a transactional producer needs WRITE on its transactional id (else the whole
    // request fails), and every topic WRITE (checked before its existence).
    let authz = Authz::new(ctx);
    let txn_denied = req
        .transactional_id
        .as_ref()
        .is_some_and(|id| !authz.allows(Operation::Write, ResourceType::TransactionalId, id.as_str()));
    for t in req.topic_data {
        // v13 names topics by id.
        let name = if ctx.version >= 13 {
            broker.metadata.topic_name_by_id(t.topic_id)
        } else {
            Some(t.name.to_string())
        };
        let topic_denied = txn_denied
            || (authz.enabled()
                && !authz.allows(
                    Operation::Write,
                    ResourceType::Topic,
                    name.as_deref().unwrap_or(t.name.as_str()),
                ));
        let topic_index = topics.len();
        let mut resp = TopicProduceResponse::default()
            .with_name(t.name.clone())
            .with_topic_id(t.topic_id);
        for mut p in t.partition_data {
            let mut pr = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let check = if txn_denied {
                Err((
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "Transactional id authorization failed",
                ))
            } else if topic_denied {
                Err((ResponseError::TopicAuthorizationFailed, "Topic authorization failed"))
            } else if !matches!(acks, -1..=1) {
                Err((ResponseError::InvalidRequiredAcks, "acks must be -1, 0 or 1"))
            } else {
                validate(&mut p.records, ctx.version)
            };
            match (&name, check) {
                (None, Ok(())) => {
                    pr.error_code = ResponseError::UnknownTopicId.code();
                }
                (_, Err((err, msg))) => {
                    pr.error_code = err.code();
                    pr.error_message = Some(StrBytes::from_static_str(msg));
                }
                (Some(n), Ok(())) => {
                    let partition = broker.leader_partition(n, p.index);
                    slots.push((topic_index, resp.partition_responses.len()));
                    counted.push(partition.as_ref().ok().cloned());
                    entries.push((partition, p.records.unwrap_or_default()));
                }
            }
            resp.partition_responses.push(pr);
        }
        topics.push(resp);
        names.push(name);
    }
    let results = broker.replicas.append_records(acks, req.timeout_ms, entries).await;
    for (((ti, pi), result), partition) in slots.into_iter().zip(results).zip(counted) {
        let Some(pr) = topics.get_mut(ti).and_then(|t| t.partition_responses.get_mut(pi)) else {
            continue;
        };
        match result {
            Ok(info) => {
                if let Some(p) = &partition {
                    p.metrics.appended(u64::from(info.record_count), info.bytes as u64);
                }
                pr.base_offset = info.first_offset;
                pr.log_append_time_ms = info.log_append_time_ms;
                pr.log_start_offset = info.log_start_offset;
            }
            Err(e) => {
                pr.error_code = e.code();
                if ctx.version >= 8 {
                    pr.error_message = Some(StrBytes::from_string(e.to_string()));
                }
            }
        }
    }
    if acks == 0 {
        return None;
    }
    let mut response = ProduceResponse::default().with_responses(topics);
    super::leader_hint::fill_produce(broker, ctx.listener, ctx.version, &names, &mut response);
    Some(response)
}
