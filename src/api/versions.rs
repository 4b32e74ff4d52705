//! The versions we implement, per API: what ApiVersions advertises and what we accept.
//!
//! Ranges follow what Kafka 4.1 advertises, capped by what each handler implements and by the
//! kafka-protocol crate's `VERSIONS` (never `ApiKey::valid_versions()`, which includes unstable
//! versions). Produce v0-2, Fetch v0-3 and ListOffsets v0, which the crate no longer decodes,
//! are served by `legacy.rs` (as Kafka 3.9 serves them): advertised here, and accepted
//! by `legacy::handles`.

use kafka_protocol::messages::ApiKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: i16,
    pub max: i16,
}

/// (API, advertised min, min the crate decodes, max). Only APIs listed here are advertised or
/// served; versions from the advertised min up to the crate's go to `legacy.rs`.
const TABLE: &[(ApiKey, i16, i16, i16)] = &[
    (ApiKey::Produce, 0, 3, 13),
    (ApiKey::Fetch, 0, 4, 18),
    (ApiKey::ListOffsets, 0, 1, 10),
    (ApiKey::Metadata, 0, 0, 13),
    (ApiKey::ApiVersions, 0, 0, 4),
    (ApiKey::CreateTopics, 2, 2, 7),
    (ApiKey::DeleteTopics, 1, 1, 6),
    (ApiKey::DeleteRecords, 0, 0, 2),
    (ApiKey::InitProducerId, 0, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 2, 4),
    (ApiKey::DescribeConfigs, 1, 1, 4),
    (ApiKey::AlterConfigs, 0, 0, 2),
    (ApiKey::CreatePartitions, 0, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 0, 1),
    (ApiKey::DescribeCluster, 0, 0, 2),
    (ApiKey::DescribeQuorum, 0, 0, 2),
    (ApiKey::ElectLeaders, 0, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0, 0),
    (ApiKey::UnregisterBroker, 0, 0, 0),
    (ApiKey::AddRaftVoter, 0, 0, 0),
    (ApiKey::RemoveRaftVoter, 0, 0, 0),
    (ApiKey::OffsetCommit, 2, 2, 9),
    (ApiKey::OffsetFetch, 1, 1, 9),
    // v0 of FindCoordinator and JoinGroup: librdkafka before 2.11 enables groups only if it sees them.
    (ApiKey::FindCoordinator, 0, 0, 6),
    (ApiKey::JoinGroup, 0, 0, 9),
    (ApiKey::Heartbeat, 0, 0, 4),
    (ApiKey::LeaveGroup, 0, 0, 5),
    (ApiKey::SyncGroup, 0, 0, 5),
    (ApiKey::DescribeGroups, 0, 0, 6),
    (ApiKey::ListGroups, 0, 0, 5),
    (ApiKey::DeleteGroups, 0, 0, 2),
    (ApiKey::OffsetDelete, 0, 0, 0),
    (ApiKey::AddPartitionsToTxn, 0, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 0, 4),
    (ApiKey::EndTxn, 0, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 0, 5),
    // Between brokers: a transaction coordinator's markers to partitions led elsewhere.
    (ApiKey::WriteTxnMarkers, 1, 1, 1),
    (ApiKey::DescribeProducers, 0, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0, 0),
    (ApiKey::ListTransactions, 0, 0, 1),
    // Authentication (server::sasl answers them before it completes) and SCRAM users.
    (ApiKey::SaslHandshake, 0, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0, 0),
    (ApiKey::DescribeAcls, 1, 1, 3),
    (ApiKey::CreateAcls, 1, 1, 3),
    (ApiKey::DeleteAcls, 1, 1, 3),
];

/// The versions the kafka-protocol crate decodes for `key`, or None if we do not serve it.
pub fn supported(key: ApiKey) -> Option<Range> {
    TABLE
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|&(_, _, min, max)| Range { min, max })
}

/// Everything ApiVersions lists: (key, advertised min, max).
pub fn advertised() -> impl Iterator<Item = (ApiKey, i16, i16)> {
    TABLE.iter().map(|&(k, adv_min, _, max)| (k, adv_min, max))
}

/// A stable, low-cardinality name for logs and metrics.
pub fn name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::DescribeQuorum => "DescribeQuorum",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::DescribeTopicPartitions => "DescribeTopicPartitions",
        ApiKey::UnregisterBroker => "UnregisterBroker",
        ApiKey::AddRaftVoter => "AddRaftVoter",
        ApiKey::RemoveRaftVoter => "RemoveRaftVoter",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        ApiKey::DescribeProducers => "DescribeProducers",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        ApiKey::DescribeAcls => "DescribeAcls",
        ApiKey::CreateAcls => "CreateAcls",
        ApiKey::DeleteAcls => "DeleteAcls",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    /// Every accepted range lies inside what the crate can decode.
    #[test]
    fn ranges_within_crate_versions() {
        fn check<M: Message>(key: ApiKey) {
            let r = supported(key).expect("listed");
            assert!(r.min >= M::VERSIONS.min && r.max <= M::VERSIONS.max, "{key:?}");
        }
        check::<ProduceRequest>(ApiKey::Produce);
        check::<FetchRequest>(ApiKey::Fetch);
        check::<ListOffsetsRequest>(ApiKey::ListOffsets);
        check::<MetadataRequest>(ApiKey::Metadata);
        check::<ApiVersionsRequest>(ApiKey::ApiVersions);
        check::<CreateTopicsRequest>(ApiKey::CreateTopics);
        check::<DeleteTopicsRequest>(ApiKey::DeleteTopics);
        check::<DeleteRecordsRequest>(ApiKey::DeleteRecords);
        check::<InitProducerIdRequest>(ApiKey::InitProducerId);
        check::<OffsetForLeaderEpochRequest>(ApiKey::OffsetForLeaderEpoch);
        check::<DescribeConfigsRequest>(ApiKey::DescribeConfigs);
        check::<AlterConfigsRequest>(ApiKey::AlterConfigs);
        check::<CreatePartitionsRequest>(ApiKey::CreatePartitions);
        check::<IncrementalAlterConfigsRequest>(ApiKey::IncrementalAlterConfigs);
        check::<DescribeClusterRequest>(ApiKey::DescribeCluster);
        check::<DescribeQuorumRequest>(ApiKey::DescribeQuorum);
        check::<ElectLeadersRequest>(ApiKey::ElectLeaders);
        check::<AlterPartitionReassignmentsRequest>(ApiKey::AlterPartitionReassignments);
        check::<ListPartitionReassignmentsRequest>(ApiKey::ListPartitionReassignments);
        check::<DescribeTopicPartitionsRequest>(ApiKey::DescribeTopicPartitions);
        check::<UnregisterBrokerRequest>(ApiKey::UnregisterBroker);
        check::<AddRaftVoterRequest>(ApiKey::AddRaftVoter);
        check::<RemoveRaftVoterRequest>(ApiKey::RemoveRaftVoter);
        check::<OffsetCommitRequest>(ApiKey::OffsetCommit);
        check::<OffsetFetchRequest>(ApiKey::OffsetFetch);
        check::<FindCoordinatorRequest>(ApiKey::FindCoordinator);
        check::<JoinGroupRequest>(ApiKey::JoinGroup);
        check::<HeartbeatRequest>(ApiKey::Heartbeat);
        check::<LeaveGroupRequest>(ApiKey::LeaveGroup);
        check::<SyncGroupRequest>(ApiKey::SyncGroup);
        check::<DescribeGroupsRequest>(ApiKey::DescribeGroups);
        check::<ListGroupsRequest>(ApiKey::ListGroups);
        check::<DeleteGroupsRequest>(ApiKey::DeleteGroups);
        check::<OffsetDeleteRequest>(ApiKey::OffsetDelete);
        check::<AddPartitionsToTxnRequest>(ApiKey::AddPartitionsToTxn);
        check::<AddOffsetsToTxnRequest>(ApiKey::AddOffsetsToTxn);
        check::<EndTxnRequest>(ApiKey::EndTxn);
        check::<TxnOffsetCommitRequest>(ApiKey::TxnOffsetCommit);
        check::<WriteTxnMarkersRequest>(ApiKey::WriteTxnMarkers);
        check::<DescribeProducersRequest>(ApiKey::DescribeProducers);
        check::<DescribeTransactionsRequest>(ApiKey::DescribeTransactions);
        check::<ListTransactionsRequest>(ApiKey::ListTransactions);
    }
}
