//! The transaction APIs (KIP-98), answered by the transaction coordinator actor
//! (`transaction::coordinator`) and, for TxnOffsetCommit, the group coordinator:
//! InitProducerId (key 22, both kinds), AddPartitionsToTxn (24, v0-3 one transaction, v4-5 a
//! batch with verify_only as brokers send it), AddOffsetsToTxn (25), EndTxn (26),
//! TxnOffsetCommit (28), DescribeProducers (61), DescribeTransactions (65), ListTransactions (66, v0-1: v2's regular
//! expression filter is not offered).

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::RequestContext;
use crate::coordinator::{OffsetCommitEntry, TxnOffsetCommitParams};
use crate::error::group_error_code;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::transaction::coordinator::OFFSETS_TOPIC;
use crate::transaction::{TransactionMetadata, TxnError, TxnState};

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

fn code(result: &Result<(), TxnError>) -> i16 {
    match result {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

/// InitProducerId: a new idempotent producer id for a null transactional id (any broker, as
/// Kafka), else the transaction coordinator's answer.
pub async fn init_producer_id(ctx: &RequestContext<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let authz = Authz::new(ctx);
    let Some(transactional_id) = req.transactional_id else {
        // Idempotence needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic (Kafka).
        if !authz.quietly_allows(Operation::IdempotentWrite, ResourceType::Cluster, CLUSTER_NAME)
            && !authz.allows_any(Operation::Write, ResourceType::Topic)
        {
            return resp.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        }
        return match ctx.broker.metadata.allocate_producer_id() {
            Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
            Err(e) => resp.with_error_code(e.code()),
        };
    };
    if transactional_id.is_empty() {
        return resp.with_error_code(ResponseError::InvalidRequest.code());
    }
    if !authz.allows(
        Operation::Write,
        ResourceType::TransactionalId,
        transactional_id.as_str(),
    ) {
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // v3+ (KIP-360): the producer id and epoch the client already has, -1/-1 for none.
    let expected = (ctx.version >= 3 && req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    match ctx
        .broker
        .transactions
        .init_producer_id(transactional_id.to_string(), req.transaction_timeout_ms, expected)
        .await
    {
        Ok((id, epoch)) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(epoch),
        Err(e) => resp.with_error_code(e.code()),
    }
}

/// The partitions of AddPartitionsToTxn topics, unknown ones set aside (Kafka answers them
/// UNKNOWN_TOPIC_OR_PARTITION and the known ones OPERATION_NOT_ATTEMPTED).
fn split_partitions(ctx: &RequestContext<'_>, topics: &[AddPartitionsToTxnTopic]) -> (Vec<(String, i32)>, bool) {
    let mut all = Vec::new();
    let mut unknown = false;
    for t in topics {
        for &p in &t.partitions {
            if !ctx.broker.partition_exists(t.name.as_str(), p) {
                unknown = true;
            }
            all.push((t.name.to_string(), p));
        }
    }
    (all, unknown)
}

/// One transaction's per-partition results, every partition with `code` except unknown ones
/// (and, when some topic is `denied`, those answered TOPIC_AUTHORIZATION_FAILED and the rest
/// OPERATION_NOT_ATTEMPTED, as Kafka).
fn topic_results(
    ctx: &RequestContext<'_>,
    topics: &[AddPartitionsToTxnTopic],
    code: i16,
    unknown: bool,
    denied: &[String],
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            if !denied.is_empty() {
                let c = if denied.iter().any(|d| d.as_str() == t.name.as_str()) {
                    ResponseError::TopicAuthorizationFailed.code()
                } else {
                    ResponseError::OperationNotAttempted.code()
                };
                let results = t
                    .partitions
                    .iter()
                    .map(|&p| {
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(p)
                            .with_partition_error_code(c)
                    })
                    .collect();
                return AddPartitionsToTxnTopicResult::default()
                    .with_name(t.name.clone())
                    .with_results_by_partition(results);
            }
            let results = t
                .partitions
                .iter()
                .map(|&p| {
                    let missing = !ctx.broker.partition_exists(t.name.as_str(), p);
                    let c = match (unknown, missing) {
                        (true, true) => ResponseError::UnknownTopicOrPartition.code(),
                        (true, false) => ResponseError::OperationNotAttempted.code(),
                        (false, _) => code,
                    };
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(c)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(results)
        })
        .collect()
}

async fn add_one(
    ctx: &RequestContext<'_>,
    transactional_id: &TransactionalId,
    producer_id: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let authz = Authz::new(ctx);
    if !authz.allows(
        Operation::Write,
        ResourceType::TransactionalId,
        transactional_id.as_str(),
    ) {
        let code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return topic_results(ctx, topics, code, false, &[]);
    }
    let denied: Vec<String> = topics
        .iter()
        .filter(|t| !authz.allows(Operation::Write, ResourceType::Topic, t.name.as_str()))
        .map(|t| t.name.to_string())
        .collect();
    if !denied.is_empty() {
        return topic_results(ctx, topics, 0, false, &denied);
    }
    let (partitions, unknown) = split_partitions(ctx, topics);
    if unknown {
        return topic_results(ctx, topics, 0, true, &[]);
    }
    let result = ctx
        .broker
        .transactions
        .add_partitions(
            transactional_id.to_string(),
            producer_id,
            epoch,
            partitions,
            verify_only,
        )
        .await;
    topic_results(ctx, topics, code(&result), false, &[])
}

pub async fn add_partitions_to_txn(
    ctx: &RequestContext<'_>,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version <= 3 {
        let results = add_one(
            ctx,
            &req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &req.v3_and_below_topics,
            false,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut by_txn = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let results = add_one(
            ctx,
            &t.transactional_id,
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            t.verify_only,
        )
        .await;
        by_txn.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(by_txn)
}

/// AddOffsetsToTxn: adds the group coordinator's offsets partition to the transaction.
pub async fn add_offsets_to_txn(ctx: &RequestContext<'_>, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    if req.group_id.is_empty() {
        return AddOffsetsToTxnResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    let authz = Authz::new(ctx);
    if !authz.allows(
        Operation::Write,
        ResourceType::TransactionalId,
        req.transactional_id.as_str(),
    ) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if !authz.allows(Operation::Read, ResourceType::Group, req.group_id.as_str()) {
        return AddOffsetsToTxnResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    // The group's partition of __consumer_offsets: its leader gets the transaction's marker.
    let partitions = ctx
        .broker
        .metadata
        .topic(OFFSETS_TOPIC)
        .map_or(ctx.broker.config.offsets_topic_num_partitions, |t| {
            t.partitions.len() as i32
        });
    let offsets_partition = crate::coordinator::log::partition_for(req.group_id.as_str(), partitions);
    let result = ctx
        .broker
        .transactions
        .add_partitions(
            req.transactional_id.to_string(),
            req.producer_id.0,
            req.producer_epoch,
            vec![(OFFSETS_TOPIC.to_string(), offsets_partition)],
            false,
        )
        .await;
    AddOffsetsToTxnResponse::default().with_error_code(code(&result))
}

pub async fn end_txn(ctx: &RequestContext<'_>, req: EndTxnRequest) -> EndTxnResponse {
    if !Authz::new(ctx).allows(
        Operation::Write,
        ResourceType::TransactionalId,
        req.transactional_id.as_str(),
    ) {
        return EndTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch);
    }
    let result = ctx
        .broker
        .transactions
        .end_txn(
            req.transactional_id.to_string(),
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
        )
        .await;
    let resp = EndTxnResponse::default().with_error_code(code(&result));
    if ctx.version >= 5 {
        // Transaction protocol v1: the epoch does not change at EndTxn.
        return resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch);
    }
    resp
}

/// TxnOffsetCommit: offsets stored as pending, visible to OffsetFetch once the transaction
/// commits. The producer must have called AddOffsetsToTxn (checked by Kafka only with KIP-890
/// verification; not here).
pub async fn txn_offset_commit(ctx: &RequestContext<'_>, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let max_metadata = ctx.broker.config.groups.offset_metadata_max_bytes;
    let mut entries = Vec::new();
    // Per partition: Some(code) decided here, None = the group's answer.
    let mut early: Vec<Vec<Option<i16>>> = Vec::with_capacity(req.topics.len());
    // WRITE on the transactional id, READ on the group (each failing every partition), READ
    // on each topic.
    let authz = Authz::new(ctx);
    let whole = if !authz.allows(
        Operation::Write,
        ResourceType::TransactionalId,
        req.transactional_id.as_str(),
    ) {
        Some(ResponseError::TransactionalIdAuthorizationFailed.code())
    } else if !authz.allows(Operation::Read, ResourceType::Group, req.group_id.as_str()) {
        Some(ResponseError::GroupAuthorizationFailed.code())
    } else {
        None
    };
    for t in &req.topics {
        let mut codes = Vec::with_capacity(t.partitions.len());
        let topic_denied = whole.is_none() && !authz.allows(Operation::Read, ResourceType::Topic, t.name.as_str());
        for p in &t.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or("");
            if let Some(code) = whole {
                codes.push(Some(code));
            } else if topic_denied {
                codes.push(Some(ResponseError::TopicAuthorizationFailed.code()));
            } else if !ctx.broker.partition_exists(t.name.as_str(), p.partition_index) {
                codes.push(Some(ResponseError::UnknownTopicOrPartition.code()));
            } else if metadata.len() > max_metadata {
                codes.push(Some(ResponseError::OffsetMetadataTooLarge.code()));
            } else {
                codes.push(None);
                entries.push(OffsetCommitEntry {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if ctx.version >= 2 { p.committed_leader_epoch } else { -1 },
                    metadata: metadata.to_string(),
                });
            }
        }
        early.push(codes);
    }
    let params = TxnOffsetCommitParams {
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        member_id: if ctx.version >= 3 {
            req.member_id.to_string()
        } else {
            String::new()
        },
        group_instance_id: if ctx.version >= 3 {
            req.group_instance_id.as_ref().map(|g| g.to_string())
        } else {
            None
        },
        generation_id: if ctx.version >= 3 { req.generation_id } else { -1 },
        entries,
    };
    let group_code = if params.entries.is_empty() {
        0
    } else {
        group_error_code(
            ctx.broker
                .groups
                .txn_commit_offsets(req.group_id.to_string(), params)
                .await
                .err(),
        )
    };
    let topics = req
        .topics
        .iter()
        .zip(early)
        .map(|(t, codes)| {
            let partitions = t
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, c)| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(c.unwrap_or(group_code))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

fn describe_one(id: TransactionalId, found: Result<Option<TransactionMetadata>, TxnError>) -> TransactionState {
    let base = TransactionState::default().with_transactional_id(id);
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            return base
                .with_error_code(e.code())
                .with_transaction_state(s(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1)
        }
    };
    let Some(t) = found else {
        return base
            .with_error_code(ResponseError::TransactionalIdNotFound.code())
            .with_transaction_state(s(""))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
    };
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic, partition) in &t.partitions {
        match topics.last_mut() {
            Some(last) if last.topic.as_str() == topic.as_str() => last.partitions.push(*partition),
            _ => topics.push(
                TopicData::default()
                    .with_topic(TopicName(s(topic.clone())))
                    .with_partitions(vec![*partition]),
            ),
        }
    }
    base.with_transaction_state(s(t.state.as_str()))
        .with_transaction_timeout_ms(t.timeout_ms)
        .with_transaction_start_time_ms(t.started_ms())
        .with_producer_id(ProducerId(t.producer_id))
        .with_producer_epoch(t.producer_epoch)
        .with_topics(topics)
}

pub async fn describe_transactions(
    ctx: &RequestContext<'_>,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let ids: Vec<String> = req.transactional_ids.iter().map(|i| i.to_string()).collect();
    let states = match ctx.broker.transactions.describe(ids).await {
        Ok(found) => req
            .transactional_ids
            .into_iter()
            .zip(found)
            .map(|(id, f)| describe_one(id, f))
            .collect(),
        Err(e) => req
            .transactional_ids
            .into_iter()
            .map(|id| {
                TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(e.code())
                    .with_transaction_state(s(""))
            })
            .collect(),
    };
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub async fn list_transactions(ctx: &RequestContext<'_>, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let unknown: Vec<StrBytes> = req
        .state_filters
        .iter()
        .filter(|f| !TxnState::LISTED.iter().any(|st| st.as_str() == f.as_str()))
        .cloned()
        .collect();
    let all = match ctx.broker.transactions.list().await {
        Ok(all) => all,
        Err(e) => return ListTransactionsResponse::default().with_error_code(e.code()),
    };
    let now = crate::replication::replica_manager::now_ms();
    let listed = all
        .into_iter()
        .filter(|t| req.state_filters.is_empty() || req.state_filters.iter().any(|f| f.as_str() == t.state.as_str()))
        .filter(|t| req.producer_id_filters.is_empty() || req.producer_id_filters.iter().any(|p| p.0 == t.producer_id))
        // v1+: only ids whose transaction started longer ago than the duration (ms), as Kafka's
        // TransactionStateManager compares its txnStartTimestamp; -1 = no filter.
        .filter(|t| {
            ctx.version < 1 || req.duration_filter < 0 || now.saturating_sub(t.started_ms()) > req.duration_filter
        })
        .map(|t| {
            ListedTransaction::default()
                .with_transactional_id(TransactionalId(s(t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(s(t.state.as_str()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}

pub fn describe_producers(ctx: &RequestContext<'_>, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let resp = PartitionResponse::default().with_partition_index(index);
                    match ctx.broker.leader_partition(t.name.as_str(), index) {
                        Err(e) => resp.with_error_code(e.code()),
                        Ok(p) => resp.with_active_producers(
                            p.producer_states()
                                .into_iter()
                                .map(|st| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(st.producer_id))
                                        .with_producer_epoch(i32::from(st.producer_epoch))
                                        .with_last_sequence(st.last_sequence)
                                        .with_last_timestamp(st.last_timestamp)
                                        .with_coordinator_epoch(st.coordinator_epoch)
                                        .with_current_txn_start_offset(st.current_txn_start_offset)
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            TopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
