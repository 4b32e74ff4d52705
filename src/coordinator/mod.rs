//! The group coordinator: Kafka's classic consumer-group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, DescribeGroups, ListGroups), with assignment left to the clients.
//!
//! Why this shape: a group's rules (states, generations, who waits for whom, which error where)
//! are the hard part, and they are only trustworthy if they can be tested exhaustively without
//! sockets or clocks. So the rules live in a pure state machine, and time and I/O live around it.
//!
//! How the pieces fit (the API layer's group handlers call the actor through `Broker::groups`):
//! - [`group`]: `GroupMetadata`, one group's state machine (Kafka's `GroupMetadata` plus the
//!   join/sync logic of `GroupCoordinator`). Synchronous and deterministic: every call takes
//!   `now_ms`; requests that must wait return `Pending` and their answers come out of
//!   `take_completions()` / `tick(now_ms)`; `next_deadline_ms()` says when to tick.
//! - [`member`]: `MemberMetadata`, one member (protocols, assignment, liveness rules).
//! - [`messages`]: the plain inputs and outputs (no kafka-protocol types).
//! - [`error`]: `GroupError`, each variant one Kafka error code.
//! - [`actor`] (with `actor_handle.rs`, `actor_timers.rs`, `actor_partitions.rs`): `GroupCoordinator`, one tokio task per broker owning every group
//!   (`HashMap<String, GroupMetadata>`), fed by a bounded channel of requests that carry
//!   oneshot reply senders, sleeping until the earliest `next_deadline_ms()`; it parks the
//!   senders of `Pending` calls by (group, member id) and answers them from completions. One
//!   owner, no shared lock, and no network task ever blocks on a forming group.
//! - [`offsets`]: `OffsetStore`, committed offsets and group metadata of the groups whose
//!   `__consumer_offsets` partition this broker leads, loaded when it became leader.
//! - [`log`]: `CoordinatorLog`, the coordinators' narrow door to the replica manager: append to
//!   a partition led here at a given epoch, wait for the high watermark, replay at load; and
//!   Kafka's key-to-partition hash.

#![deny(clippy::indexing_slicing)]

pub mod actor;
pub mod error;
pub mod group;
pub mod group_record;
pub mod log;
pub mod member;
pub mod messages;
pub mod offsets;

pub use actor::{
    start, CommittedEntry, CoordinatorStats, DeletedGroup, DescribedGroup, GroupCoordinator, SubscribedTopics,
    TopicPartition,
};
pub use error::{error_code, GroupError};
pub use group::GroupMetadata;
pub use group_record::{GroupRecord, MemberRecord};
pub use member::{MemberMetadata, Protocol, NEW_MEMBER_JOIN_TIMEOUT_MS};
pub use messages::{
    Completion, GroupOverview, GroupState, GroupSummary, HeartbeatParams, JoinGroupMember, JoinGroupParams,
    JoinGroupResult, JoinOutcome, LeaveGroupMember, LeaveMemberResult, MemberSummary, OffsetCommitParams,
    SyncGroupParams, SyncGroupResult, SyncOutcome, TxnOffsetCommitParams,
};
pub use offsets::{CommittedOffset, FetchedOffset, LoadedOffsets, OffsetCommitEntry, OffsetStore, StoreError};

/// The coordinator's settings, named after Kafka's broker configs, with Kafka's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GroupCoordinatorConfig {
    /// `group.initial.rebalance.delay.ms` (3000): how long a group leaving Empty waits for more
    /// members before the first JoinGroup answers, extended by each new member up to the
    /// rebalance timeout. Saves the rebalance per member when a whole group starts at once.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` (6000): shorter session timeouts are refused with
    /// INVALID_SESSION_TIMEOUT (a too-eager failure detector causes rebalance storms).
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000 = 30 min): longer ones are refused too (a dead
    /// member would hold its partitions too long).
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size` (unlimited): more members get GROUP_MAX_SIZE_REACHED.
    pub group_max_size: Option<u32>,
    /// `offsets.retention.minutes` (7 days), in ms: committed offsets of a group without
    /// members are removed this long after their commit (or after the group became empty,
    /// whichever is later), and the group with them.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms` (600000): how often expiry runs.
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes` (4096): longer commit metadata gets OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.commit.timeout.ms` (5000): how long a commit waits to be replicated to the
    /// ISR of its `__consumer_offsets` partition before COORDINATOR_NOT_AVAILABLE.
    pub offsets_commit_timeout_ms: u64,
}

impl Default for GroupCoordinatorConfig {
    fn default() -> Self {
        GroupCoordinatorConfig {
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: None,
            offsets_retention_ms: offsets::DEFAULT_OFFSETS_RETENTION_MS,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            offsets_commit_timeout_ms: 5000,
        }
    }
}

/// A coordinator setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorConfigError {
    /// The session timeout bounds are empty or negative.
    #[error("group.min.session.timeout.ms ({min}) must be >= 0 and <= group.max.session.timeout.ms ({max})")]
    SessionTimeoutBounds {
        /// `group.min.session.timeout.ms`.
        min: i32,
        /// `group.max.session.timeout.ms`.
        max: i32,
    },
    /// `group.max.size` of 0 would refuse every member.
    #[error("group.max.size must be at least 1")]
    MaxSizeZero,
}

impl GroupCoordinatorConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), CoordinatorConfigError> {
        let (min, max) = (self.group_min_session_timeout_ms, self.group_max_session_timeout_ms);
        if min < 0 || min > max {
            return Err(CoordinatorConfigError::SessionTimeoutBounds { min, max });
        }
        if self.group_max_size == Some(0) {
            return Err(CoordinatorConfigError::MaxSizeZero);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas_and_valid() -> Result<(), CoordinatorConfigError> {
        let config = GroupCoordinatorConfig::default();
        assert_eq!(config.group_initial_rebalance_delay_ms, 3000);
        assert_eq!(config.group_min_session_timeout_ms, 6000);
        assert_eq!(config.group_max_session_timeout_ms, 1_800_000);
        assert_eq!(config.group_max_size, None);
        config.validate()
    }

    #[test]
    fn validate_rejects_inverted_bounds_and_zero_size() {
        let inverted = GroupCoordinatorConfig {
            group_min_session_timeout_ms: 10,
            group_max_session_timeout_ms: 5,
            ..Default::default()
        };
        assert!(inverted.validate().is_err());
        let zero = GroupCoordinatorConfig {
            group_max_size: Some(0),
            ..Default::default()
        };
        assert_eq!(zero.validate(), Err(CoordinatorConfigError::MaxSizeZero));
    }
}
