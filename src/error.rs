//! Typed errors of the layers below the API, and the one place they become Kafka error codes.
//!
//! Storage and replication return their own error enums; handlers never pick error codes by
//! hand for those: they call [`storage_error_code`] / [`BrokerError::code`].

use kafka_protocol::ResponseError;

use crate::coordinator::GroupError;
use crate::storage::StorageError;
use crate::transaction::TxnError;

/// Errors of the broker layer (topic registry, replica manager).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("unknown topic id")]
    UnknownTopicId,
    #[error("topic already exists: {0}")]
    TopicAlreadyExists(String),
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("request timed out")]
    RequestTimedOut,
    #[error("not enough replicas")]
    NotEnoughReplicas,
    #[error("policy violation: {0}")]
    PolicyViolation(String),
    #[error("this broker does not lead the partition")]
    NotLeaderOrFollower,
    #[error("the leader epoch in the request is older than the partition's")]
    FencedLeaderEpoch,
    #[error("the leader epoch in the request is newer than this broker knows")]
    UnknownLeaderEpoch,
    #[error("the write was appended but the ISR fell below min.insync.replicas")]
    NotEnoughReplicasAfterAppend,
    #[error("not the active controller")]
    NotController,
    #[error("the metadata quorum is unavailable: {0}")]
    ControllerUnavailable(String),
    #[error("no producer ids available yet (a new block is on its way)")]
    ProducerIdsUnavailable,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("metadata store: {0}")]
    MetadataIo(#[from] std::io::Error),
    #[error("this broker's replica of the partition is offline (it could not be opened)")]
    ReplicaOffline,
    /// The ACL authorizer denied the action on the topic.
    #[error("Authorization failed.")]
    TopicAuthorizationFailed,
    /// The ACL authorizer denied the action on the cluster.
    #[error("Cluster authorization failed.")]
    ClusterAuthorizationFailed,
}

impl BrokerError {
    /// The Kafka error for this failure.
    pub fn response_error(&self) -> ResponseError {
        match self {
            BrokerError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            BrokerError::UnknownTopicId => ResponseError::UnknownTopicId,
            BrokerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            BrokerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
            BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            BrokerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            BrokerError::InvalidConfig(_) => ResponseError::InvalidConfig,
            BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
            BrokerError::RequestTimedOut => ResponseError::RequestTimedOut,
            BrokerError::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
            BrokerError::PolicyViolation(_) => ResponseError::PolicyViolation,
            BrokerError::NotController => ResponseError::NotController,
            BrokerError::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
            BrokerError::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
            BrokerError::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
            BrokerError::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend,
            BrokerError::ControllerUnavailable(_) => ResponseError::RequestTimedOut,
            BrokerError::ProducerIdsUnavailable => ResponseError::CoordinatorLoadInProgress,
            BrokerError::Storage(e) => storage_response_error(e),
            BrokerError::MetadataIo(_) | BrokerError::ReplicaOffline => ResponseError::KafkaStorageError,
            BrokerError::TopicAuthorizationFailed => ResponseError::TopicAuthorizationFailed,
            BrokerError::ClusterAuthorizationFailed => ResponseError::ClusterAuthorizationFailed,
        }
    }

    /// The wire code.
    pub fn code(&self) -> i16 {
        self.response_error().code()
    }
}

/// Storage failures as Kafka reports them.
pub fn storage_response_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::CorruptRecord(_) => ResponseError::CorruptMessage,
        StorageError::InvalidRecord(_) => ResponseError::InvalidRecord,
        StorageError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        StorageError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Corruption(_) | StorageError::Io(_) => ResponseError::KafkaStorageError,
    }
}

/// The wire code of a storage failure.
pub fn storage_error_code(e: &StorageError) -> i16 {
    storage_response_error(e).code()
}

/// Shorthand for "no error".
pub const NONE: i16 = 0;

/// Group coordinator failures as Kafka reports them.
pub fn group_response_error(e: GroupError) -> ResponseError {
    match e {
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::GroupAuthorizationFailed => ResponseError::GroupAuthorizationFailed,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::UnstableOffsetCommit => ResponseError::UnstableOffsetCommit,
    }
}

/// The wire code of an optional group failure (0 = none).
pub fn group_error_code(e: Option<GroupError>) -> i16 {
    e.map_or(NONE, |e| group_response_error(e).code())
}

/// Transaction coordinator failures as Kafka reports them.
pub fn txn_response_error(e: TxnError) -> ResponseError {
    match e {
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::ProducerFenced => ResponseError::ProducerFenced,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
        TxnError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
    }
}

/// AlterPartitionReassignments' per-partition failures as Kafka reports them.
pub fn reassign_response_error(e: &crate::controller::reassignment::ReassignError) -> ResponseError {
    use crate::controller::reassignment::ReassignError;
    match e {
        ReassignError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        ReassignError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ReassignError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        ReassignError::NoReassignmentInProgress => ResponseError::NoReassignmentInProgress,
        // Other changes of the partition kept winning the compare-and-set: retriable.
        ReassignError::Changed(_) => ResponseError::RequestTimedOut,
    }
}

/// ElectLeaders' per-partition failures as Kafka reports them.
pub fn election_response_error(e: &crate::controller::election::ElectionError) -> ResponseError {
    use crate::controller::election::ElectionError;
    match e {
        ElectionError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        ElectionError::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
        ElectionError::PreferredLeaderNotAvailable => ResponseError::PreferredLeaderNotAvailable,
        ElectionError::EligibleLeadersNotAvailable => ResponseError::EligibleLeadersNotAvailable,
        // Another change of the partition won the compare-and-set: retriable.
        ElectionError::Changed(_) => ResponseError::RequestTimedOut,
    }
}
