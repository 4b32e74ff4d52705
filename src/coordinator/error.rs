//! `GroupError`: the ways a group request can fail, each one a Kafka error code. The API layer
//! copies [`GroupError::code`] into its responses; no handler picks a group error code by hand.

/// A group request's failure, as Kafka reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group is being removed (state Dead); the client should find the coordinator again.
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    /// The generation id in the request is not the group's current one.
    #[error("the generation id is not the current one")]
    IllegalGeneration,
    /// The protocol type or protocols do not match the group's.
    #[error("the group protocol type or protocols are inconsistent with the group")]
    InconsistentGroupProtocol,
    /// The group id is empty where a group is required.
    #[error("the group id is not valid")]
    InvalidGroupId,
    /// The member id is not a member of the group.
    #[error("the member id is not known to the group")]
    UnknownMemberId,
    /// The session timeout is outside the broker's bounds.
    #[error("the session timeout is outside group.min/max.session.timeout.ms")]
    InvalidSessionTimeout,
    /// The group is rebalancing: the member must rejoin.
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// A first JoinGroup (v4+) without a member id: retry with the member id given.
    #[error("a member id is required: rejoin with the member id given")]
    MemberIdRequired,
    /// The group has `group.max.size` members already.
    #[error("the group has reached group.max.size")]
    GroupMaxSizeReached,
    /// Another member with the same `group.instance.id` replaced this one.
    #[error("the group instance id is used by a newer member")]
    FencedInstanceId,
}

impl GroupError {
    /// The Kafka error code.
    pub fn code(self) -> i16 {
        match self {
            GroupError::CoordinatorNotAvailable => 15,
            GroupError::IllegalGeneration => 22,
            GroupError::InconsistentGroupProtocol => 23,
            GroupError::InvalidGroupId => 24,
            GroupError::UnknownMemberId => 25,
            GroupError::InvalidSessionTimeout => 26,
            GroupError::RebalanceInProgress => 27,
            GroupError::MemberIdRequired => 79,
            GroupError::GroupMaxSizeReached => 81,
            GroupError::FencedInstanceId => 82,
        }
    }
}

/// The Kafka error code of an optional error (0 = none).
pub fn error_code(error: Option<GroupError>) -> i16 {
    error.map_or(0, GroupError::code)
}
