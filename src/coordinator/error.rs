//! `GroupError`: the ways a group request can fail, each one a Kafka error code (mapped in
//! `crate::error::group_response_error`, the one place errors become codes). No handler picks a
//! group error code by hand.

use kafka_protocol::ResponseError;

/// A group request's failure, as Kafka reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group is being removed (state Dead); the client should find the coordinator again.
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    /// Another broker leads the group's `__consumer_offsets` partition: find the coordinator again.
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    /// The group's partition is being loaded: retry shortly.
    #[error("the group's coordinator is loading")]
    CoordinatorLoadInProgress,
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
    /// DeleteGroups: the group does not exist.
    #[error("the group id does not exist")]
    GroupIdNotFound,
    /// DeleteGroups: the group still has members.
    #[error("the group is not empty")]
    NonEmptyGroup,
    /// OffsetDelete: a member of the (non-empty) group is subscribed to the topic.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// OffsetCommit: the metadata string is longer than `offset.metadata.max.bytes`.
    #[error("the offset metadata is larger than offset.metadata.max.bytes")]
    OffsetMetadataTooLarge,
    /// OffsetFetch with require_stable: an open transaction holds an offset of the partition.
    #[error("an open transaction holds an offset of this partition")]
    UnstableOffsetCommit,
    /// The ACL authorizer denied the request's action on the group.
    #[error("Group authorization failed.")]
    GroupAuthorizationFailed,
}

impl GroupError {
    /// The Kafka error code (the mapping lives in `crate::error`, with every other one).
    pub fn code(self) -> i16 {
        crate::error::group_response_error(self).code()
    }

    /// The same error as kafka-protocol's [`ResponseError`].
    pub fn response_error(self) -> ResponseError {
        crate::error::group_response_error(self)
    }
}

/// The Kafka error code of an optional error (0 = none).
pub fn error_code(error: Option<GroupError>) -> i16 {
    error.map_or(0, GroupError::code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_error_has_the_same_code() {
        let all = [
            GroupError::CoordinatorNotAvailable,
            GroupError::NotCoordinator,
            GroupError::CoordinatorLoadInProgress,
            GroupError::IllegalGeneration,
            GroupError::InconsistentGroupProtocol,
            GroupError::InvalidGroupId,
            GroupError::UnknownMemberId,
            GroupError::InvalidSessionTimeout,
            GroupError::RebalanceInProgress,
            GroupError::MemberIdRequired,
            GroupError::GroupMaxSizeReached,
            GroupError::FencedInstanceId,
            GroupError::NonEmptyGroup,
            GroupError::GroupIdNotFound,
            GroupError::GroupSubscribedToTopic,
            GroupError::OffsetMetadataTooLarge,
            GroupError::GroupAuthorizationFailed,
        ];
        for error in all {
            assert_eq!(error.response_error().code(), error.code(), "{error:?}");
            assert_ne!(error.code(), 0, "{error:?}");
        }
        assert_eq!(error_code(None), 0);
    }
}
