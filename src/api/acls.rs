//! CreateAcls (30), DescribeAcls (29) and DeleteAcls (31), v1-3, as `kafka-acls` and the
//! admin clients send them. The bindings are written to the cluster metadata, so every broker
//! applies them. Without an authorizer Kafka answers SECURITY_DISABLED, and so do we.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::RequestContext;
use crate::controller::record::{MetadataCommand, MetadataRecord};
use crate::error::BrokerError;
use crate::security::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME};

const ANY: i8 = 1;
const MATCH: i8 = 2;
const SECURITY_DISABLED: &str = "No Authorizer is configured.";

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn pattern_from_code(code: i8) -> Option<PatternType> {
    match code {
        3 => Some(PatternType::Literal),
        4 => Some(PatternType::Prefixed),
        _ => None,
    }
}

/// A creation as a binding, or why it is invalid (Kafka: INVALID_REQUEST).
fn binding(c: &AclCreation) -> Result<AclBinding, String> {
    let resource_type = ResourceType::from_code(c.resource_type).ok_or("Invalid resource type")?;
    let pattern = pattern_from_code(c.resource_pattern_type).ok_or("Invalid resource pattern type")?;
    let operation = Operation::from_code(c.operation).ok_or("Invalid operation")?;
    let permission = Permission::from_code(c.permission_type).ok_or("Invalid permission type")?;
    let name = c.resource_name.to_string();
    if name.is_empty() {
        return Err("Resource name should not be empty".into());
    }
    if resource_type == ResourceType::Cluster && name != CLUSTER_NAME {
        return Err("The only valid name for the CLUSTER resource is kafka-cluster".into());
    }
    let principal = c.principal.to_string();
    match principal.split_once(':') {
        Some((kind, who)) if !kind.is_empty() && !who.is_empty() => {}
        _ => return Err(format!("Invalid principal: {principal}")),
    }
    if c.host.is_empty() {
        return Err("Invalid host: empty".into());
    }
    Ok(AclBinding {
        resource_type,
        name,
        pattern,
        principal,
        host: c.host.to_string(),
        operation,
        permission,
    })
}

/// The ACL APIs' own checks: an authorizer configured (else SECURITY_DISABLED), and `op` on
/// the cluster (else CLUSTER_AUTHORIZATION_FAILED).
fn gate(authz: &Authz<'_>, op: Operation) -> Result<(), (ResponseError, &'static str)> {
    if !authz.enabled() {
        return Err((ResponseError::SecurityDisabled, SECURITY_DISABLED));
    }
    if !authz.allows_cluster(op) {
        return Err((
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        ));
    }
    Ok(())
}

async fn write(ctx: &RequestContext<'_>, record: MetadataRecord) -> Result<(), BrokerError> {
    let applied = ctx.broker.metadata.write(MetadataCommand::one(record)).await?;
    ctx.broker.wait_local(applied.offset).await
}

pub async fn create(ctx: &RequestContext<'_>, req: CreateAclsRequest) -> CreateAclsResponse {
    let authz = Authz::new(ctx);
    let all = |code: ResponseError, message: &str| {
        let results = req
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(code.code())
                    .with_error_message(Some(text(message)))
            })
            .collect();
        CreateAclsResponse::default().with_results(results)
    };
    if let Err((code, message)) = gate(&authz, Operation::Alter) {
        return all(code, message);
    }
    let checked: Vec<Result<AclBinding, String>> = req.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|c| c.as_ref().ok().cloned()).collect();
    let written = if valid.is_empty() {
        Ok(())
    } else {
        write(ctx, MetadataRecord::CreateAcls { bindings: valid }).await
    };
    let results = checked
        .into_iter()
        .map(|c| match (c, &written) {
            (Err(why), _) => AclCreationResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(text(why))),
            (Ok(_), Err(e)) => AclCreationResult::default()
                .with_error_code(e.code())
                .with_error_message(Some(text(e.to_string()))),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// A wire filter (DescribeAcls, DeleteAcls) as an [`AclFilter`], or why it is invalid.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, &'static str> {
    Ok(AclFilter {
        resource_type: match resource_type {
            ANY => None,
            code => Some(ResourceType::from_code(code).ok_or("Invalid resource type filter")?),
        },
        name: name.map(|n| n.to_string()),
        pattern: match pattern {
            ANY => None,
            MATCH => Some(None),
            code => Some(Some(pattern_from_code(code).ok_or("Invalid pattern type filter")?)),
        },
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: match operation {
            ANY => None,
            code => Some(Operation::from_code(code).ok_or("Invalid operation filter")?),
        },
        permission: match permission {
            ANY => None,
            code => Some(Permission::from_code(code).ok_or("Invalid permission filter")?),
        },
    })
}

pub fn describe(ctx: &RequestContext<'_>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let authz = Authz::new(ctx);
    let error = |code: ResponseError, message: &str| {
        DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(text(message)))
    };
    if let Err((code, message)) = gate(&authz, Operation::Describe) {
        return error(code, message);
    }
    let f = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(why) => return error(ResponseError::InvalidRequest, why),
    };
    let image = ctx.broker.metadata.image();
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in image.acls.bindings().filter(|b| f.matches(b)) {
        let acl = AclDescription::default()
            .with_principal(text(b.principal.clone()))
            .with_host(text(b.host.clone()))
            .with_operation(b.operation.code())
            .with_permission_type(b.permission.code());
        // Bindings come grouped by resource, so the last group is the only candidate.
        match resources.last_mut() {
            Some(r)
                if r.resource_type == b.resource_type.code()
                    && r.resource_name.as_str() == b.name
                    && r.pattern_type == b.pattern.code() =>
            {
                r.acls.push(acl)
            }
            _ => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(text(b.name.clone()))
                    .with_pattern_type(b.pattern.code())
                    .with_acls(vec![acl]),
            ),
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

pub async fn delete(ctx: &RequestContext<'_>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let authz = Authz::new(ctx);
    let all = |code: ResponseError, message: &str| {
        let results = req
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code.code())
                    .with_error_message(Some(text(message)))
            })
            .collect();
        DeleteAclsResponse::default().with_filter_results(results)
    };
    if let Err((code, message)) = gate(&authz, Operation::Alter) {
        return all(code, message);
    }
    let image = ctx.broker.metadata.image();
    let matched: Vec<Result<Vec<AclBinding>, &'static str>> = req
        .filters
        .iter()
        .map(|f| {
            let f = filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )?;
            Ok(image.acls.bindings().filter(|b| f.matches(b)).collect())
        })
        .collect();
    let mut doomed: Vec<AclBinding> = matched.iter().flatten().flatten().cloned().collect();
    doomed.sort();
    doomed.dedup();
    let written = if doomed.is_empty() {
        Ok(())
    } else {
        write(ctx, MetadataRecord::DeleteAcls { bindings: doomed }).await
    };
    let results = matched
        .into_iter()
        .map(|m| match (m, &written) {
            (Err(why), _) => DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(text(why))),
            (Ok(_), Err(e)) => DeleteAclsFilterResult::default()
                .with_error_code(e.code())
                .with_error_message(Some(text(e.to_string()))),
            (Ok(bindings), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                bindings
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(text(b.name))
                            .with_pattern_type(b.pattern.code())
                            .with_principal(text(b.principal))
                            .with_host(text(b.host))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
