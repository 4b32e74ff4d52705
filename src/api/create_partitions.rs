//! CreatePartitions (key 37): grow a topic's partition count, placing the new replicas as
//! CreateTopics does or as the request's assignments say.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    let authz = super::authz::Authz::new(ctx);
    for t in req.topics {
        let assignments = t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
            a.iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>())
                .collect()
        });
        let outcome = if authz.allows(
            crate::security::acl::Operation::Alter,
            crate::security::acl::ResourceType::Topic,
            t.name.as_str(),
        ) {
            ctx.broker
                .add_partitions(t.name.as_str(), t.count, assignments, req.validate_only)
                .await
        } else {
            Err(crate::error::BrokerError::TopicAuthorizationFailed)
        };
        let result = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
