//! DescribeUserScramCredentials (50) and AlterUserScramCredentials (51), as `kafka-configs
//! --entity-type users` and the admin clients send them. The client salts and hashes
//! (Upsertion carries SaltedPassword); the broker derives StoredKey and ServerKey and writes
//! them to the cluster metadata, so every broker authenticates the user.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::controller::record::{MetadataCommand, MetadataRecord};
use crate::security::scram::{ScramCredential, ScramMechanism};

fn message(text: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.into()))
}

pub fn describe(
    ctx: &RequestContext<'_>,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !super::authz::Authz::new(ctx).allows_cluster(crate::security::acl::Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(message("Cluster authorization failed."));
    }
    let image = ctx.broker.metadata.image();
    let info = |user: &str| -> Vec<CredentialInfo> {
        image.scram_credentials.get(user).map_or_else(Vec::new, |m| {
            m.iter()
                .map(|(mechanism, c)| {
                    CredentialInfo::default()
                        .with_mechanism(mechanism.code())
                        .with_iterations(c.iterations)
                })
                .collect()
        })
    };
    let requested: Vec<String> = req
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    let results = if requested.is_empty() {
        image
            .scram_credentials
            .keys()
            .map(|user| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user.clone()))
                    .with_credential_infos(info(user))
            })
            .collect()
    } else {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for u in &requested {
            *counts.entry(u.as_str()).or_default() += 1;
        }
        let mut seen = std::collections::BTreeSet::new();
        requested
            .iter()
            .filter(|u| seen.insert(u.as_str()))
            .map(|user| {
                let result =
                    DescribeUserScramCredentialsResult::default().with_user(StrBytes::from_string(user.clone()));
                if counts.get(user.as_str()).copied().unwrap_or(0) > 1 {
                    result
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(message(format!(
                            "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                        )))
                } else if !image.scram_credentials.contains_key(user) {
                    result
                        .with_error_code(ResponseError::ResourceNotFound.code())
                        .with_error_message(message(format!(
                            "Attempt to describe a user credential that does not exist: {user}"
                        )))
                } else {
                    result.with_credential_infos(info(user))
                }
            })
            .collect()
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// Why one alteration is refused: its error and message.
type Rejection = (ResponseError, String);

/// One user's alterations in a request: the first refusal (which stops them all) or the records.
struct UserAlterations {
    user: String,
    refused: Option<Rejection>,
    records: Vec<MetadataRecord>,
}

/// The checks deletions and upsertions share: a name and a known mechanism.
fn check_common(user: &str, code: i8) -> Result<ScramMechanism, Rejection> {
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty".into(),
        ));
    }
    ScramMechanism::from_code(code).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism".to_string(),
        )
    })
}

pub async fn alter(
    ctx: &RequestContext<'_>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    if !super::authz::Authz::new(ctx).allows_cluster(crate::security::acl::Operation::Alter) {
        let mut users: Vec<String> = Vec::new();
        for name in req
            .deletions
            .iter()
            .map(|d| &d.name)
            .chain(req.upsertions.iter().map(|u| &u.name))
        {
            if !users.iter().any(|u| u.as_str() == name.as_str()) {
                users.push(name.to_string());
            }
        }
        let results = users
            .into_iter()
            .map(|u| {
                AlterUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(u))
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                    .with_error_message(message("Cluster authorization failed."))
            })
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    let image = ctx.broker.metadata.image();
    // Users in order of first appearance. As Kafka's controller (ScramControlManager), one
    // alteration per user and request: a second one, whatever its mechanism, makes the user's
    // answer DUPLICATE_RESOURCE; after a refusal the user's later alterations are not looked at.
    let mut users: Vec<UserAlterations> = Vec::new();
    let mut add = |user: String, check: &dyn Fn() -> Result<MetadataRecord, Rejection>| {
        let Some(u) = users.iter_mut().find(|u| u.user == user) else {
            let (refused, records) = match check() {
                Ok(record) => (None, vec![record]),
                Err(e) => (Some(e), Vec::new()),
            };
            users.push(UserAlterations { user, refused, records });
            return;
        };
        if u.refused.is_none() {
            u.records.clear();
            u.refused = Some((
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            ));
        }
    };
    for d in &req.deletions {
        let user = d.name.to_string();
        let check = || {
            let m = check_common(&user, d.mechanism)?;
            if image.scram_credential(&user, m).is_none() {
                return Err((
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist".into(),
                ));
            }
            Ok(MetadataRecord::RemoveScramCredential {
                user: user.clone(),
                mechanism: m,
            })
        };
        add(user.clone(), &check);
    }
    for u in &req.upsertions {
        let user = u.name.to_string();
        let check = || {
            let m = check_common(&user, u.mechanism)?;
            if u.iterations < ScramMechanism::MIN_ITERATIONS {
                return Err((ResponseError::UnacceptableCredential, "Too few iterations".into()));
            }
            if u.iterations > ScramMechanism::MAX_ITERATIONS {
                return Err((ResponseError::UnacceptableCredential, "Too many iterations".into()));
            }
            if u.salt.is_empty() || u.salted_password.len() != m.output_len() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "The salt must not be empty and the salted password must be one hash long".into(),
                ));
            }
            Ok(MetadataRecord::UpsertScramCredential {
                user: user.clone(),
                mechanism: m,
                credential: ScramCredential::from_salted_password(m, &u.salt, &u.salted_password, u.iterations),
            })
        };
        add(user.clone(), &check);
    }
    // A user with any bad alteration has none applied.
    let records: Vec<MetadataRecord> = users
        .iter()
        .filter(|u| u.refused.is_none())
        .flat_map(|u| u.records.iter().cloned())
        .collect();
    let written = if records.is_empty() {
        Ok(())
    } else {
        match ctx.broker.metadata.write(MetadataCommand { records }).await {
            Ok(applied) => ctx.broker.wait_local(applied.offset).await,
            Err(e) => Err(e),
        }
    };
    let results = users
        .into_iter()
        .map(|u| {
            let result = AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(u.user));
            match (u.refused, &written) {
                (Some((code, text)), _) => result.with_error_code(code.code()).with_error_message(message(text)),
                (None, Err(e)) => result
                    .with_error_code(e.code())
                    .with_error_message(message(e.to_string())),
                (None, Ok(())) => result,
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
