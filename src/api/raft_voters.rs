//! AddRaftVoter (key 80) and RemoveRaftVoter (key 81), Kafka's KIP-853 quorum changes
//! (`kafka-metadata-quorum add-controller / remove-controller`, the Java client's
//! `Admin.addRaftVoter` / `removeRaftVoter`, which send them to a broker): forwarded to the
//! active controller (`controller::membership`). The new voter's address is its listener named
//! in `controller.listener.names` (else its first). Sluice keeps no directory ids: the one sent
//! is not checked. A request naming another cluster is refused (INCONSISTENT_CLUSTER_ID).

use std::time::Duration;

use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::controller::membership::VoterChangeError;
use crate::controller::ControllerError;

/// How long RemoveRaftVoter waits for the active controller.
const TIMEOUT: Duration = Duration::from_secs(30);

type Answer = (ResponseError, String);

fn outcome(result: Result<Result<(), VoterChangeError>, ControllerError>) -> Option<Answer> {
    let e = match result {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => e,
        Err(e) => return Some((ResponseError::RequestTimedOut, e.to_string())),
    };
    let code = match &e {
        VoterChangeError::Duplicate(_) => ResponseError::DuplicateVoter,
        VoterChangeError::NotFound(_) => ResponseError::VoterNotFound,
        VoterChangeError::LastVoter(_) => ResponseError::InvalidRequest,
        VoterChangeError::NotCaughtUp(..) => ResponseError::RequestTimedOut,
        VoterChangeError::Refused(_) => ResponseError::RequestTimedOut,
    };
    Some((code, e.to_string()))
}

/// The request's cluster id, if it names one that is not this cluster's.
fn wrong_cluster(ctx: &RequestContext<'_>, cluster_id: Option<&StrBytes>) -> Option<Answer> {
    let theirs = cluster_id?.as_str();
    if theirs.is_empty() {
        return None; // as good as null (the Java client sends null unless asked)
    }
    let ours = ctx.broker.metadata.image().cluster_id.clone().unwrap_or_default();
    (theirs != ours).then(|| {
        (
            ResponseError::InconsistentClusterId,
            format!("cluster id {theirs} is not this cluster's ({ours})"),
        )
    })
}

pub async fn add(ctx: &RequestContext<'_>, req: AddRaftVoterRequest) -> AddRaftVoterResponse {
    let names = &ctx.broker.config.cluster.controller_listener_names;
    let listener = req
        .listeners
        .iter()
        .find(|l| names.iter().any(|n| n == l.name.as_str()))
        .or_else(|| req.listeners.first());
    let single = !ctx.broker.config.cluster.is_multi_node();
    let answer = match (wrong_cluster(ctx, req.cluster_id.as_ref()), listener) {
        (Some(wrong), _) => Some(wrong),
        // A quorum of one has no controller listener for a new voter to reach it.
        _ if single => Some((
            ResponseError::InvalidRequest,
            "a quorum of one (no controller.quorum.voters) takes no voters".to_string(),
        )),
        (None, Some(l)) if l.host.is_empty() || l.port == 0 => Some((
            ResponseError::InvalidRequest,
            format!("no address for the new voter: {:?}:{}", l.host.as_str(), l.port),
        )),
        (None, None) => Some((
            ResponseError::InvalidRequest,
            "no listener for the new voter".to_string(),
        )),
        (None, Some(l)) => {
            let address = format!("{}:{}", l.host.as_str(), l.port);
            let timeout = Duration::from_millis(u64::try_from(req.timeout_ms.max(1)).unwrap_or(1));
            outcome(
                ctx.broker
                    .metadata
                    .controller()
                    .add_voter(req.voter_id, address, timeout)
                    .await,
            )
        }
    };
    match answer {
        None => AddRaftVoterResponse::default(),
        Some((code, message)) => AddRaftVoterResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message))),
    }
}

pub async fn remove(ctx: &RequestContext<'_>, req: RemoveRaftVoterRequest) -> RemoveRaftVoterResponse {
    let answer = match wrong_cluster(ctx, req.cluster_id.as_ref()) {
        Some(wrong) => Some(wrong),
        None => outcome(
            ctx.broker
                .metadata
                .controller()
                .remove_voter(req.voter_id, TIMEOUT)
                .await,
        ),
    };
    match answer {
        None => RemoveRaftVoterResponse::default(),
        Some((code, message)) => RemoveRaftVoterResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message))),
    }
}
