//! Authorization of requests (issue #14): the one place handlers ask whether the request's
//! principal may act on a resource, with Kafka's `StandardAuthorizer` rules (`security::acl`)
//! over the ACLs of the current metadata image. Without `authorizer.class.name` everything is
//! allowed and no image is read.

use std::sync::Arc;

use super::RequestContext;
use crate::controller::image::MetadataImage;
use crate::security::acl::{self, Operation, Requester, ResourceType};

/// Decisions for one request: the image is read once.
pub struct Authz<'a> {
    ctx: &'a RequestContext<'a>,
    /// `None`: no authorizer configured.
    image: Option<Arc<MetadataImage>>,
    who: Requester,
}

impl<'a> Authz<'a> {
    pub fn new(ctx: &'a RequestContext<'a>) -> Self {
        let enabled = ctx.broker.config.authorizer.enabled;
        let image = enabled.then(|| ctx.broker.metadata.image());
        let who = if enabled {
            Requester::new(ctx.principal, ctx.peer.ip())
        } else {
            Requester {
                principal: String::new(),
                host: String::new(),
            }
        };
        Authz { ctx, image, who }
    }

    /// Whether an authorizer is configured.
    pub fn enabled(&self) -> bool {
        self.image.is_some()
    }

    /// Whether the principal may `op` on resource `(t, name)`; a denial is counted.
    pub fn allows(&self, op: Operation, t: ResourceType, name: &str) -> bool {
        let Some(image) = &self.image else {
            return true;
        };
        let ok = acl::authorize(
            &self.ctx.broker.config.authorizer.settings,
            &image.acls,
            &self.who,
            op,
            t,
            name,
        );
        if !ok {
            self.denied(op, t, name);
        }
        ok
    }

    /// As [`Self::allows`], without counting a denial (Metadata filtering, bitfields).
    pub fn quietly_allows(&self, op: Operation, t: ResourceType, name: &str) -> bool {
        let Some(image) = &self.image else {
            return true;
        };
        acl::authorize(
            &self.ctx.broker.config.authorizer.settings,
            &image.acls,
            &self.who,
            op,
            t,
            name,
        )
    }

    /// On the cluster resource.
    pub fn allows_cluster(&self, op: Operation) -> bool {
        self.allows(op, ResourceType::Cluster, acl::CLUSTER_NAME)
    }

    /// Kafka's `authorizeByResourceType` (an ALLOW on some resource of the type).
    pub fn allows_any(&self, op: Operation, t: ResourceType) -> bool {
        let Some(image) = &self.image else {
            return true;
        };
        acl::authorize_by_resource_type(
            &self.ctx.broker.config.authorizer.settings,
            &image.acls,
            &self.who,
            op,
            t,
        )
    }

    /// The authorized-operations bitfield of a resource (Metadata, DescribeGroups,
    /// DescribeCluster): every operation the type supports that is allowed.
    pub fn operations_bitfield(&self, t: ResourceType, name: &str) -> i32 {
        t.operations()
            .iter()
            .filter(|op| self.quietly_allows(**op, t, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    fn denied(&self, op: Operation, t: ResourceType, name: &str) {
        let api = kafka_protocol::messages::ApiKey::try_from(self.ctx.header.request_api_key)
            .map_or("Other", super::api_key_name);
        tracing::debug!(principal = %self.ctx.principal, ?op, resource = ?t, name, api, "authorization denied");
        crate::metrics::authorization_denied(api);
    }
}
