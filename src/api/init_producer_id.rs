//! InitProducerId (key 22) for idempotent producers: a new producer id at epoch 0 from the
//! cluster-wide block allocator, as Kafka does for a null transactional id (also when the
//! client passes its old id and epoch, KIP-360). Transactional ids arrive with transactions.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub fn handle(ctx: &RequestContext<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        // No transaction coordinator yet: refuse plainly rather than pretend.
        tracing::info!("transactional InitProducerId refused: transactions are not implemented yet");
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    match ctx.broker.metadata.allocate_producer_id() {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => resp.with_error_code(e.code()),
    }
}
