//! The Kafka API layer: peek the API key and version, decode the header and body with the
//! kafka-protocol crate, dispatch with one `match` to one module per API, encode the response.
//!
//! Kafka's rules for what a client may get wrong (see `shared/KAFKA-NOTES.md`):
//! - an unknown API key, an unsupported version of any API but ApiVersions, or a body that does
//!   not decode: the connection is closed;
//! - ApiVersions newer than we know: a v0 answer with UNSUPPORTED_VERSION and our range, so the
//!   client retries with a version we speak; its response header is always v0.

mod acls;
mod api_versions;
pub(crate) mod authz;
mod configs;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_quorum;
mod describe_topic_partitions;
mod elect_leaders;
mod errors;
mod fetch;
mod groups;
mod leader_hint;
mod legacy;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod offsets;
mod produce;
mod raft_voters;
mod reassignments;
mod replica_fetch;
pub mod response_buf;
mod scram_credentials;
mod transactions;
mod unregister_broker;
pub mod versions;
mod write_txn_markers;

#[cfg(test)]
mod controller_tests;
#[cfg(test)]
mod legacy_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tracing::Instrument;

use crate::broker::Broker;
use crate::security::Principal;
use crate::server::connection::ConnectionInfo;
use response_buf::ResponseBuf;

/// What the connection does after a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send the response frame now in the caller's buffer (length prefix included).
    Respond,
    /// acks=0 produce: nothing is sent back.
    NoResponse,
    /// Close the connection (Kafka's answer to malformed or unsupported requests).
    Close,
}

/// The request context handlers see.
pub struct RequestContext<'a> {
    pub broker: &'a Broker,
    pub header: &'a RequestHeader,
    pub version: i16,
    /// The client's address (JoinGroup records it as the member's host).
    pub peer: std::net::SocketAddr,
    /// The listener the request came in on: Metadata, FindCoordinator and DescribeCluster
    /// answer with the brokers' endpoints on it, as Kafka does.
    pub listener: &'a str,
    /// Who sent it (`User:ANONYMOUS` unless SASL authenticated someone).
    pub principal: &'a Principal,
}

/// A request frame decoded (see [`decode_request`]).
#[derive(Debug)]
pub enum Decoded {
    Request {
        api_key: ApiKey,
        version: i16,
        header: RequestHeader,
        body: RequestKind,
    },
    /// An old version the crate no longer decodes (Produce v0-2, Fetch v0-3, ListOffsets v0).
    Legacy {
        api_key: ApiKey,
        version: i16,
        header: RequestHeader,
        request: legacy::Request,
    },
    /// ApiVersions newer than we know: answered at v0 with our range.
    ApiVersionsTooNew { correlation_id: i32 },
    /// Kafka closes the connection (unknown key, unsupported version, bad header or body).
    Reject(&'static str),
}

/// Decodes one request frame (header and body), applying Kafka's rules for unknown keys and
/// versions. Pure: no broker, no I/O (the `request` fuzz target runs it on arbitrary bytes).
pub fn decode_request(frame: Bytes) -> Decoded {
    if frame.len() < 8 {
        return Decoded::Reject("frame shorter than a request header");
    }
    let mut peek = &frame[..8];
    let key_raw = peek.get_i16();
    let version = peek.get_i16();
    let correlation_id = peek.get_i32();
    let Ok(api_key) = ApiKey::try_from(key_raw) else {
        return Decoded::Reject("unknown api key");
    };
    let Some(range) = versions::supported(api_key) else {
        return Decoded::Reject("unsupported api");
    };
    if api_key == ApiKey::ApiVersions && version > range.max {
        return Decoded::ApiVersionsTooNew { correlation_id };
    }
    if legacy::handles(api_key, version) {
        let mut buf = frame;
        let Ok(header) = RequestHeader::decode(&mut buf, 1) else {
            return Decoded::Reject("bad request header");
        };
        return match legacy::decode(api_key, version, &mut buf) {
            Ok(request) => Decoded::Legacy {
                api_key,
                version,
                header,
                request,
            },
            Err(_) => Decoded::Reject("request body does not decode"),
        };
    }
    if version < range.min || version > range.max {
        return Decoded::Reject("unsupported version");
    }
    let mut buf = frame;
    let Ok(header) = RequestHeader::decode(&mut buf, api_key.request_header_version(version)) else {
        return Decoded::Reject("bad request header");
    };
    match RequestKind::decode(api_key, &mut buf, version) {
        Ok(body) => Decoded::Request {
            api_key,
            version,
            header,
            body,
        },
        Err(_) => Decoded::Reject("request body does not decode"),
    }
}

/// Handles one request frame end to end. A response is encoded into `out` (cleared first),
/// which the connection reuses, so responses are not built in freshly allocated memory.
///
/// `received` is when the frame was read off the socket: the time until handling starts is the
/// request's queue time in the metrics.
pub async fn handle_frame(
    broker: &Broker,
    frame: Bytes,
    conn: &ConnectionInfo,
    principal: &Principal,
    out: &mut ResponseBuf,
    received: std::time::Instant,
) -> Outcome {
    out.clear();
    let key_raw = frame.first_chunk::<2>().map_or(-1, |k| i16::from_be_bytes(*k));
    let (api_key, version, header, body) = match decode_request(frame) {
        Decoded::Request {
            api_key,
            version,
            header,
            body,
        } => (api_key, version, header, body),
        Decoded::ApiVersionsTooNew { correlation_id } => {
            return api_versions::unsupported_version_response(correlation_id, out);
        }
        Decoded::Legacy {
            api_key,
            version,
            header,
            request,
        } => {
            let span = tracing::debug_span!("request", api = ?api_key, version, correlation_id = header.correlation_id, peer = %conn.peer);
            let started = std::time::Instant::now();
            let ctx = RequestContext {
                broker,
                header: &header,
                version,
                peer: conn.peer,
                listener: &conn.listener,
                principal,
            };
            let (outcome, remote) =
                crate::metrics::with_remote_timer(legacy::handle(&ctx, request, header.correlation_id, out))
                    .instrument(span)
                    .await;
            if let Some(m) = crate::metrics::api(key_raw) {
                m.record(started.saturating_duration_since(received), started.elapsed(), remote);
            }
            return outcome;
        }
        Decoded::Reject(why) => {
            tracing::debug!(peer = %conn.peer, key_raw, reason = why, "closing the connection");
            return Outcome::Close;
        }
    };
    let correlation_id = header.correlation_id;
    let span = tracing::debug_span!(
        "request",
        api = ?api_key,
        version,
        correlation_id,
        client_id = header.client_id.as_deref().unwrap_or(""),
        peer = %conn.peer
    );
    async move {
        let started = std::time::Instant::now();
        let ctx = RequestContext {
            broker,
            header: &header,
            version,
            peer: conn.peer,
            listener: &conn.listener,
            principal,
        };
        let (reply, remote) = crate::metrics::with_remote_timer(dispatch(&ctx, body)).await;
        let metrics = crate::metrics::api(key_raw);
        if let (Some(m), Some(response)) = (metrics, &reply) {
            errors::for_each_error(response, |code| m.error(code));
        }
        let response = match reply {
            None => {
                if let Some(m) = metrics {
                    m.record(started.saturating_duration_since(received), started.elapsed(), remote);
                }
                return Outcome::NoResponse;
            }
            Some(r) => r,
        };
        let outcome = encode_response(api_key, version, correlation_id, &response, out);
        if let Some(m) = metrics {
            m.record(started.saturating_duration_since(received), started.elapsed(), remote);
        }
        // One line per request at debug level (RUST_LOG=sluice=debug), inside the request span:
        // api, version, correlation id, client id and peer; never a payload.
        tracing::debug!(
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "request handled"
        );
        outcome
    }
    .instrument(span)
    .await
}

/// The cluster operations of the cluster-administration APIs (Kafka: ALTER for elections,
/// reassignments, unregistration and quorum changes; DESCRIBE for listing them and the quorum):
/// denied, the API's response with CLUSTER_AUTHORIZATION_FAILED.
fn cluster_denied(ctx: &RequestContext<'_>, body: &RequestKind) -> Option<ResponseKind> {
    use crate::security::acl::Operation;
    use kafka_protocol::messages as m;
    let op = match body {
        RequestKind::ElectLeaders(_)
        | RequestKind::AlterPartitionReassignments(_)
        | RequestKind::UnregisterBroker(_)
        | RequestKind::AddRaftVoter(_)
        | RequestKind::RemoveRaftVoter(_) => Operation::Alter,
        RequestKind::DescribeQuorum(_) | RequestKind::ListPartitionReassignments(_) => Operation::Describe,
        _ => return None,
    };
    if authz::Authz::new(ctx).allows_cluster(op) {
        return None;
    }
    let code = kafka_protocol::ResponseError::ClusterAuthorizationFailed.code();
    Some(match body {
        RequestKind::ElectLeaders(_) => {
            ResponseKind::ElectLeaders(m::ElectLeadersResponse::default().with_error_code(code))
        }
        RequestKind::AlterPartitionReassignments(_) => ResponseKind::AlterPartitionReassignments(
            m::AlterPartitionReassignmentsResponse::default().with_error_code(code),
        ),
        RequestKind::UnregisterBroker(_) => {
            ResponseKind::UnregisterBroker(m::UnregisterBrokerResponse::default().with_error_code(code))
        }
        RequestKind::AddRaftVoter(_) => {
            ResponseKind::AddRaftVoter(m::AddRaftVoterResponse::default().with_error_code(code))
        }
        RequestKind::RemoveRaftVoter(_) => {
            ResponseKind::RemoveRaftVoter(m::RemoveRaftVoterResponse::default().with_error_code(code))
        }
        RequestKind::DescribeQuorum(_) => {
            ResponseKind::DescribeQuorum(m::DescribeQuorumResponse::default().with_error_code(code))
        }
        _ => ResponseKind::ListPartitionReassignments(
            m::ListPartitionReassignmentsResponse::default().with_error_code(code),
        ),
    })
}

/// One `match` from request to handler; `None` means no response at all (acks=0).
async fn dispatch(ctx: &RequestContext<'_>, body: RequestKind) -> Option<ResponseKind> {
    if let Some(denied) = cluster_denied(ctx, &body) {
        return Some(denied);
    }
    let r = match body {
        RequestKind::ApiVersions(req) => ResponseKind::ApiVersions(api_versions::handle(ctx, req)),
        RequestKind::Metadata(req) => ResponseKind::Metadata(metadata::handle(ctx, req).await),
        RequestKind::CreateTopics(req) => ResponseKind::CreateTopics(create_topics::handle(ctx, req).await),
        RequestKind::DeleteTopics(req) => ResponseKind::DeleteTopics(delete_topics::handle(ctx, req).await),
        RequestKind::CreatePartitions(req) => ResponseKind::CreatePartitions(create_partitions::handle(ctx, req).await),
        RequestKind::Produce(req) => match produce::handle(ctx, req).await {
            Some(r) => ResponseKind::Produce(r),
            None => return None,
        },
        RequestKind::Fetch(req) => ResponseKind::Fetch(fetch::handle(ctx, req).await),
        RequestKind::ListOffsets(req) => ResponseKind::ListOffsets(list_offsets::handle(ctx, req)),
        RequestKind::InitProducerId(req) => {
            ResponseKind::InitProducerId(transactions::init_producer_id(ctx, req).await)
        }
        RequestKind::AddPartitionsToTxn(req) => {
            ResponseKind::AddPartitionsToTxn(transactions::add_partitions_to_txn(ctx, req).await)
        }
        RequestKind::AddOffsetsToTxn(req) => {
            ResponseKind::AddOffsetsToTxn(transactions::add_offsets_to_txn(ctx, req).await)
        }
        RequestKind::EndTxn(req) => ResponseKind::EndTxn(transactions::end_txn(ctx, req).await),
        RequestKind::TxnOffsetCommit(req) => {
            ResponseKind::TxnOffsetCommit(transactions::txn_offset_commit(ctx, req).await)
        }
        RequestKind::WriteTxnMarkers(req) => ResponseKind::WriteTxnMarkers(write_txn_markers::handle(ctx, req).await),
        RequestKind::DescribeTransactions(req) => {
            ResponseKind::DescribeTransactions(transactions::describe_transactions(ctx, req).await)
        }
        RequestKind::ListTransactions(req) => {
            ResponseKind::ListTransactions(transactions::list_transactions(ctx, req).await)
        }
        RequestKind::DescribeProducers(req) => {
            ResponseKind::DescribeProducers(transactions::describe_producers(ctx, req))
        }
        RequestKind::DescribeConfigs(req) => ResponseKind::DescribeConfigs(configs::describe(ctx, req)),
        RequestKind::AlterConfigs(req) => ResponseKind::AlterConfigs(configs::alter(ctx, req).await),
        RequestKind::IncrementalAlterConfigs(req) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(ctx, req).await)
        }
        RequestKind::DescribeCluster(req) => ResponseKind::DescribeCluster(describe_cluster::handle(ctx, req)),
        RequestKind::DescribeQuorum(req) => ResponseKind::DescribeQuorum(describe_quorum::handle(ctx, req).await),
        RequestKind::ElectLeaders(req) => ResponseKind::ElectLeaders(elect_leaders::handle(ctx, req).await),
        RequestKind::AlterPartitionReassignments(req) => {
            ResponseKind::AlterPartitionReassignments(reassignments::alter(ctx, req).await)
        }
        RequestKind::UnregisterBroker(req) => ResponseKind::UnregisterBroker(unregister_broker::handle(ctx, req).await),
        RequestKind::AddRaftVoter(req) => ResponseKind::AddRaftVoter(raft_voters::add(ctx, req).await),
        RequestKind::RemoveRaftVoter(req) => ResponseKind::RemoveRaftVoter(raft_voters::remove(ctx, req).await),
        RequestKind::DescribeTopicPartitions(req) => {
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(ctx, req))
        }
        RequestKind::ListPartitionReassignments(req) => {
            ResponseKind::ListPartitionReassignments(reassignments::list(ctx, req))
        }
        RequestKind::OffsetForLeaderEpoch(req) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, req))
        }
        RequestKind::DeleteRecords(req) => ResponseKind::DeleteRecords(delete_records::handle(ctx, req)),
        RequestKind::FindCoordinator(req) => ResponseKind::FindCoordinator(groups::find_coordinator(ctx, req).await),
        RequestKind::JoinGroup(req) => ResponseKind::JoinGroup(groups::join_group(ctx, req).await),
        RequestKind::SyncGroup(req) => ResponseKind::SyncGroup(groups::sync_group(ctx, req).await),
        RequestKind::Heartbeat(req) => ResponseKind::Heartbeat(groups::heartbeat(ctx, req).await),
        RequestKind::LeaveGroup(req) => ResponseKind::LeaveGroup(groups::leave_group(ctx, req).await),
        RequestKind::DescribeGroups(req) => ResponseKind::DescribeGroups(groups::describe_groups(ctx, req).await),
        RequestKind::ListGroups(req) => ResponseKind::ListGroups(groups::list_groups(ctx, req).await),
        RequestKind::DeleteGroups(req) => ResponseKind::DeleteGroups(groups::delete_groups(ctx, req).await),
        RequestKind::OffsetCommit(req) => ResponseKind::OffsetCommit(offsets::offset_commit(ctx, req).await),
        RequestKind::OffsetFetch(req) => ResponseKind::OffsetFetch(offsets::offset_fetch(ctx, req).await),
        RequestKind::OffsetDelete(req) => ResponseKind::OffsetDelete(offsets::offset_delete(ctx, req).await),
        RequestKind::CreateAcls(req) => ResponseKind::CreateAcls(acls::create(ctx, req).await),
        RequestKind::DescribeAcls(req) => ResponseKind::DescribeAcls(acls::describe(ctx, req)),
        RequestKind::DeleteAcls(req) => ResponseKind::DeleteAcls(acls::delete(ctx, req).await),
        RequestKind::DescribeUserScramCredentials(req) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(ctx, req))
        }
        RequestKind::AlterUserScramCredentials(req) => {
            ResponseKind::AlterUserScramCredentials(scram_credentials::alter(ctx, req).await)
        }
        // On a SASL listener the authenticator takes these until authentication completes
        // (and a re-authentication's handshake); here they are out of place, as in Kafka.
        RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
            kafka_protocol::messages::SaslHandshakeResponse::default()
                .with_error_code(kafka_protocol::ResponseError::IllegalSaslState.code()),
        ),
        RequestKind::SaslAuthenticate(_) => ResponseKind::SaslAuthenticate(
            kafka_protocol::messages::SaslAuthenticateResponse::default()
                .with_error_code(kafka_protocol::ResponseError::IllegalSaslState.code())
                .with_error_message(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                    "SaslAuthenticate request received after successful authentication",
                ))),
        ),
        // versions::supported() admits only the APIs above; reaching this is our bug.
        other => {
            tracing::error!(request = ?std::mem::discriminant(&other), "request admitted without a handler");
            return None;
        }
    };
    Some(r)
}

pub(crate) fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
    out: &mut ResponseBuf,
) -> Outcome {
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    if let ResponseKind::Fetch(f) = response {
        // Fetched record sets go out by reference, not copied into the response.
        for r in f
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.as_ref())
        {
            out.share(r);
        }
    }
    out.reserve(size_hint(response));
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(out, header_version)
        .and_then(|()| encode_body(response, out, version));
    match encoded {
        Ok(()) => Outcome::Respond,
        Err(e) => {
            // A response we built for the wrong version is our bug; the client would hang on a
            // missing response, so closing is the honest answer.
            tracing::error!(?api_key, version, error = %e, "encoding response failed");
            Outcome::Close
        }
    }
}

/// `ResponseKind::encode` only writes into a `BytesMut`; each message's own encoder takes any
/// buffer, so the rope is used through them.
fn encode_body(response: &ResponseKind, out: &mut ResponseBuf, version: i16) -> anyhow::Result<()> {
    match response {
        ResponseKind::ApiVersions(r) => r.encode(out, version),
        ResponseKind::Metadata(r) => r.encode(out, version),
        ResponseKind::CreateTopics(r) => r.encode(out, version),
        ResponseKind::DeleteTopics(r) => r.encode(out, version),
        ResponseKind::CreatePartitions(r) => r.encode(out, version),
        ResponseKind::Produce(r) => r.encode(out, version),
        ResponseKind::Fetch(r) => r.encode(out, version),
        ResponseKind::ListOffsets(r) => r.encode(out, version),
        ResponseKind::InitProducerId(r) => r.encode(out, version),
        ResponseKind::AddPartitionsToTxn(r) => r.encode(out, version),
        ResponseKind::AddOffsetsToTxn(r) => r.encode(out, version),
        ResponseKind::EndTxn(r) => r.encode(out, version),
        ResponseKind::WriteTxnMarkers(r) => r.encode(out, version),
        ResponseKind::TxnOffsetCommit(r) => r.encode(out, version),
        ResponseKind::DescribeTransactions(r) => r.encode(out, version),
        ResponseKind::ListTransactions(r) => r.encode(out, version),
        ResponseKind::DescribeProducers(r) => r.encode(out, version),
        ResponseKind::DescribeConfigs(r) => r.encode(out, version),
        ResponseKind::AlterConfigs(r) => r.encode(out, version),
        ResponseKind::IncrementalAlterConfigs(r) => r.encode(out, version),
        ResponseKind::DescribeCluster(r) => r.encode(out, version),
        ResponseKind::DescribeQuorum(r) => r.encode(out, version),
        ResponseKind::ElectLeaders(r) => r.encode(out, version),
        ResponseKind::AlterPartitionReassignments(r) => r.encode(out, version),
        ResponseKind::ListPartitionReassignments(r) => r.encode(out, version),
        ResponseKind::DescribeTopicPartitions(r) => r.encode(out, version),
        ResponseKind::UnregisterBroker(r) => r.encode(out, version),
        ResponseKind::AddRaftVoter(r) => r.encode(out, version),
        ResponseKind::RemoveRaftVoter(r) => r.encode(out, version),
        ResponseKind::OffsetForLeaderEpoch(r) => r.encode(out, version),
        ResponseKind::DeleteRecords(r) => r.encode(out, version),
        ResponseKind::FindCoordinator(r) => r.encode(out, version),
        ResponseKind::JoinGroup(r) => r.encode(out, version),
        ResponseKind::SyncGroup(r) => r.encode(out, version),
        ResponseKind::Heartbeat(r) => r.encode(out, version),
        ResponseKind::LeaveGroup(r) => r.encode(out, version),
        ResponseKind::DescribeGroups(r) => r.encode(out, version),
        ResponseKind::ListGroups(r) => r.encode(out, version),
        ResponseKind::DeleteGroups(r) => r.encode(out, version),
        ResponseKind::OffsetCommit(r) => r.encode(out, version),
        ResponseKind::OffsetFetch(r) => r.encode(out, version),
        ResponseKind::OffsetDelete(r) => r.encode(out, version),
        ResponseKind::CreateAcls(r) => r.encode(out, version),
        ResponseKind::DescribeAcls(r) => r.encode(out, version),
        ResponseKind::DeleteAcls(r) => r.encode(out, version),
        ResponseKind::DescribeUserScramCredentials(r) => r.encode(out, version),
        ResponseKind::AlterUserScramCredentials(r) => r.encode(out, version),
        ResponseKind::SaslHandshake(r) => r.encode(out, version),
        ResponseKind::SaslAuthenticate(r) => r.encode(out, version),
        _ => anyhow::bail!("no encoder wired for this response"),
    }
}

/// Room for the copied part of a response up front (large record sets are shared, not copied).
fn size_hint(response: &ResponseKind) -> usize {
    match response {
        ResponseKind::Fetch(f) => {
            let copied: usize = f
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| {
                    p.records
                        .as_ref()
                        .map_or(0, |r| if r.len() < 16 * 1024 { r.len() } else { 0 })
                        + 64
                })
                .sum();
            copied + 256 + f.responses.len() * 64
        }
        _ => 256,
    }
}

/// A stable label for metrics.
pub fn api_key_name(key: ApiKey) -> &'static str {
    versions::name(key)
}

/// Current wall-clock time in ms, shared by handlers.
pub use crate::clock::now_ms;
