//! DeleteTopics (key 20): by name (v0-5 `topic_names`, v6 `topics`) and by topic id (v6).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::authz::Authz;
use super::RequestContext;
use crate::error::BrokerError;
use crate::security::acl::{Operation, ResourceType};

/// Deletes the topics; every group's committed offsets of them go too (as Kafka does), when
/// the metadata listener applies the deletion.
pub async fn handle(ctx: &RequestContext<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<TopicName>, Uuid)> =
        req.topic_names.into_iter().map(|n| (Some(n), Uuid::nil())).collect();
    targets.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut responses = Vec::with_capacity(targets.len());
    let authz = Authz::new(ctx);
    for (name, id) in targets {
        let resolved = match &name {
            Some(n) => Ok(n.to_string()),
            None => ctx
                .broker
                .metadata
                .topic_by_id(id)
                .map(|t| t.name.clone())
                .ok_or(BrokerError::UnknownTopicId),
        };
        let outcome = match resolved {
            Ok(n) if !authz.allows(Operation::Delete, ResourceType::Topic, &n) => {
                Err(BrokerError::TopicAuthorizationFailed)
            }
            Ok(n) => ctx.broker.delete_topic(&n).await,
            Err(e) => Err(e),
        };
        let mut result = DeletableTopicResult::default().with_name(name).with_topic_id(id);
        match outcome {
            Ok(meta) => {
                result.topic_id = meta.id;
                if result.name.is_none() {
                    result.name = Some(TopicName(StrBytes::from_string(meta.name.clone())));
                }
            }
            Err(e) => {
                result.error_code = e.code();
                if ctx.version >= 5 {
                    result.error_message = Some(StrBytes::from_string(e.to_string()));
                }
            }
        }
        if ctx.version < 6 {
            result.topic_id = Uuid::nil();
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
