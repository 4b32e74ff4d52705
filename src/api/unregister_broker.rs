//! UnregisterBroker (key 64): an operator removes a decommissioned broker from the cluster
//! (`kafka-cluster.sh unregister --id N`, the Java client's `Admin.unregisterBroker`).
//! Forwarded to the active controller, which takes the broker out of every ISR and leadership
//! and removes its registration; answered once applied here. BROKER_ID_NOT_REGISTERED for an id
//! no broker has. A broker started again with that id registers anew.

use std::time::Duration;

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;

/// How long the request waits for the active controller.
const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn handle(ctx: &RequestContext<'_>, req: UnregisterBrokerRequest) -> UnregisterBrokerResponse {
    let id = req.broker_id.0;
    let (error, message) = match ctx.broker.metadata.controller().unregister_broker(id, TIMEOUT).await {
        Ok(true) => return UnregisterBrokerResponse::default(),
        Ok(false) => (
            ResponseError::BrokerIdNotRegistered,
            format!("Broker ID {id} is not currently registered"),
        ),
        Err(e) => (ResponseError::RequestTimedOut, e.to_string()),
    };
    UnregisterBrokerResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}
