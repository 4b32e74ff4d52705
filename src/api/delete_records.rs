//! DeleteRecords (key 21): move a partition's log start offset forward (offset -1 = the high
//! watermark); whole segments below it are deleted.

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::error::storage_error_code;

pub fn handle(ctx: &RequestContext<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let authz = super::authz::Authz::new(ctx);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = !authz.allows(
                crate::security::acl::Operation::Delete,
                crate::security::acl::ResourceType::Topic,
                t.name.as_str(),
            );
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if denied {
                        return resp.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let partition = match ctx.broker.leader_partition(t.name.as_str(), p.partition_index) {
                        Ok(partition) => partition,
                        Err(e) => return resp.with_error_code(e.code()),
                    };
                    let target = if p.offset == -1 {
                        partition.high_watermark()
                    } else {
                        p.offset
                    };
                    if target < 0 {
                        return resp.with_error_code(ResponseError::OffsetOutOfRange.code());
                    }
                    match partition.delete_records_before(target) {
                        Ok(low) => resp.with_low_watermark(low),
                        Err(e) => resp.with_error_code(storage_error_code(&e)),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
