//! DescribeCluster (key 60): the live brokers of the image, and a live broker as the
//! controller (clients cannot reach KRaft controllers; Kafka names a broker too).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::metadata::MetadataClient;

const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(ctx: &RequestContext<'_>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let resp = DescribeClusterResponse::default();
    if ctx.version >= 1 && req.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_endpoint_type(req.endpoint_type);
    }
    let image = ctx.broker.metadata.image();
    let brokers = MetadataClient::live_endpoints(&image, ctx.listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
    let controller = ctx.broker.metadata.controller_id_for_clients(&image);
    let operations = if req.include_cluster_authorized_operations {
        super::authz::Authz::new(ctx).operations_bitfield(
            crate::security::acl::ResourceType::Cluster,
            crate::security::acl::CLUSTER_NAME,
        )
    } else {
        i32::MIN
    };
    resp.with_cluster_authorized_operations(operations)
        .with_cluster_id(StrBytes::from_string(image.cluster_id.clone().unwrap_or_default()))
        .with_controller_id(BrokerId(controller))
        .with_endpoint_type(if ctx.version >= 1 { ENDPOINT_TYPE_BROKERS } else { 1 })
        .with_brokers(brokers)
}
