//! DescribeQuorum (key 55): the metadata quorum's leader, term, high watermark, voters and
//! observers (Kafka's `kafka-metadata-quorum.sh describe --status` / `--replication`, the Java
//! client's `Admin.describeMetadataQuorum`). Brokers forward it to the active controller, as
//! Kafka's do; v2 adds the voters' controller endpoints.

use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::controller::network::{QuorumState, ReplicaProgress};

/// The one Raft partition there is (Kafka's `__cluster_metadata-0`).
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(ctx: &RequestContext<'_>, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let asks_for_metadata_log = req.topics.len() == 1
        && req.topics[0].topic_name.as_str() == METADATA_TOPIC
        && req.topics[0].partitions.len() == 1
        && req.topics[0].partitions[0].partition_index == 0;
    if !asks_for_metadata_log {
        // Kafka's KafkaRaftClient: any other topic or partition is an invalid request.
        return DescribeQuorumResponse::default().with_error_code(ResponseError::InvalidRequest.code());
    }
    match ctx.broker.metadata.controller().describe_quorum().await {
        Ok(state) => response(ctx, &state),
        Err(e) => {
            // No leader answered: retriable for clients (the Java admin retries it).
            tracing::debug!(error = %e, "DescribeQuorum: no quorum leader answered");
            DescribeQuorumResponse::default()
                .with_error_code(ResponseError::NotLeaderOrFollower.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string())))
        }
    }
}

fn replica(r: &ReplicaProgress) -> ReplicaState {
    ReplicaState::default()
        .with_replica_id(BrokerId(r.id))
        .with_log_end_offset(r.log_end_offset)
        .with_last_fetch_timestamp(r.last_fetch_ms)
        .with_last_caught_up_timestamp(r.last_caught_up_ms)
}

fn response(ctx: &RequestContext<'_>, state: &QuorumState) -> DescribeQuorumResponse {
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(state.leader))
        .with_leader_epoch(state.leader_epoch)
        .with_high_watermark(state.high_watermark)
        .with_current_voters(state.voters.iter().map(replica).collect())
        .with_observers(state.observers.iter().map(replica).collect());
    let topic = TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![partition]);
    let listener = ctx
        .broker
        .config
        .cluster
        .controller_listener_names
        .first()
        .cloned()
        .unwrap_or_else(|| "CONTROLLER".to_string());
    let nodes = if ctx.version >= 2 {
        ctx.broker
            .metadata
            .controller()
            .voter_addresses()
            .iter()
            .filter_map(|(id, addr)| {
                let (host, port) = addr.rsplit_once(':')?;
                Some(
                    Node::default()
                        .with_node_id(BrokerId(*id))
                        .with_listeners(vec![Listener::default()
                            .with_name(StrBytes::from_string(listener.clone()))
                            .with_host(StrBytes::from_string(host.trim_matches(['[', ']']).to_string()))
                            .with_port(port.parse().ok()?)]),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeQuorumResponse::default()
        .with_topics(vec![topic])
        .with_nodes(nodes)
}
