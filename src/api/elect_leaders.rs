//! ElectLeaders (key 43): preferred or unclean leader elections an operator asks for
//! (`kafka-leader-election.sh`, the Java client's `Admin.electLeaders`, librdkafka's
//! `rd_kafka_ElectLeaders`). Brokers forward them to the active controller, which decides each
//! partition (`controller::election::on_elect`) and writes the elections; the answer comes once
//! they are applied on this broker. v0 is a preferred election; v1 adds the election type and a
//! top-level error code. With no partitions named, every partition an election applies to is
//! elected and those that need none are left out of the answer, as Kafka does.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::controller::election::ElectionType;
use crate::error::election_response_error;

/// The longest a request waits for the active controller, whatever its `timeout_ms` says.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn handle(ctx: &RequestContext<'_>, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let kind = match (ctx.version, req.election_type) {
        (0, _) | (_, 0) => ElectionType::Preferred,
        (_, 1) => ElectionType::Unclean,
        _ => {
            return failed(
                ctx.version,
                &req,
                ResponseError::InvalidRequest,
                "unknown election type",
            )
        }
    };
    // A partition named twice is elected (and answered) once, as Kafka collects them in a set.
    let named: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|topics| {
        let mut seen = std::collections::HashSet::new();
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .filter(|tp| seen.insert(tp.clone()))
            .collect()
    });
    if named.as_ref().is_some_and(Vec::is_empty) {
        return ElectLeadersResponse::default();
    }
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0).max(1)).min(MAX_TIMEOUT);
    let controller = ctx.broker.metadata.controller();
    match controller.elect_leaders(kind, named, timeout).await {
        Ok(outcomes) => {
            let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
            for o in outcomes {
                let (code, message) = match &o.result {
                    Ok(()) => (0, None),
                    Err(e) => (
                        election_response_error(e).code(),
                        Some(StrBytes::from_string(e.to_string())),
                    ),
                };
                by_topic.entry(o.topic).or_default().push(
                    PartitionResult::default()
                        .with_partition_id(o.partition)
                        .with_error_code(code)
                        .with_error_message(message),
                );
            }
            ElectLeadersResponse::default().with_replica_election_results(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ReplicaElectionResult::default()
                            .with_topic(TopicName(StrBytes::from_string(topic)))
                            .with_partition_result(partitions)
                    })
                    .collect(),
            )
        }
        Err(e) => {
            tracing::debug!(error = %e, "ElectLeaders: no controller answered");
            failed(ctx.version, &req, ResponseError::RequestTimedOut, &e.to_string())
        }
    }
}

/// Kafka's error response: the code at the top (v1+) and on every partition named.
fn failed(version: i16, req: &ElectLeadersRequest, error: ResponseError, message: &str) -> ElectLeadersResponse {
    let results = req
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            ReplicaElectionResult::default()
                .with_topic(t.topic.clone())
                .with_partition_result(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionResult::default()
                                .with_partition_id(*p)
                                .with_error_code(error.code())
                                .with_error_message(Some(StrBytes::from_string(message.to_string())))
                        })
                        .collect(),
                )
        })
        .collect();
    let resp = ElectLeadersResponse::default().with_replica_election_results(results);
    if version >= 1 {
        resp.with_error_code(error.code())
    } else {
        resp
    }
}
