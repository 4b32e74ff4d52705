//! CreatePartitions (key 37): grow a topic's partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::error::BrokerError;

pub fn handle(ctx: &RequestContext<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let node = ctx.broker.config.node_id;
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let bad_assignment = t.assignments.as_ref().is_some_and(|a| {
                a.iter()
                    .any(|x| x.broker_ids.is_empty() || x.broker_ids.iter().any(|b| b.0 != node))
            });
            let outcome = if bad_assignment {
                Err(BrokerError::InvalidReplicaAssignment(format!(
                    "only broker {node} exists"
                )))
            } else {
                ctx.broker
                    .add_partitions(t.name.as_str(), t.count, req.validate_only)
                    .map(|_| ())
            };
            let result = CreatePartitionsTopicResult::default().with_name(t.name);
            match outcome {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(e.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
