//! DescribeCluster (key 60): this broker, which is also the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;

const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(ctx: &RequestContext<'_>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let config = &ctx.broker.config;
    let resp = DescribeClusterResponse::default();
    if ctx.version >= 1 && req.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_endpoint_type(req.endpoint_type);
    }
    resp.with_cluster_id(StrBytes::from_string(ctx.broker.metadata.cluster_id()))
        .with_controller_id(BrokerId(config.node_id))
        .with_endpoint_type(if ctx.version >= 1 { ENDPOINT_TYPE_BROKERS } else { 1 })
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(config.node_id))
            .with_host(StrBytes::from_string(config.advertised_host.clone()))
            .with_port(config.advertised_port)])
}
