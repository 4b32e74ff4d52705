//! The records of the metadata log: Kafka's KRaft records (`RegisterBrokerRecord`,
//! `TopicRecord` + `PartitionRecord`, `PartitionChangeRecord`, ...) as our own serde types.
//! Clients never see them; their meaning follows Kafka's (see `shared/REPLICATION-NOTES.md`,
//! 1.10 and 4.4).
//!
//! A Raft entry carries one [`MetadataCommand`]: its records are applied together or not at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::security::acl::AclBinding;
use crate::security::scram::{ScramCredential, ScramMechanism};

/// Kafka's broker or controller id (`node.id`).
pub type NodeId = i32;

/// "No leader" in a partition registration, as in Kafka.
pub const NO_LEADER: NodeId = -1;

/// One listener a broker registers (Kafka's `BrokerEndpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener name (`PLAINTEXT`, or a named listener).
    pub name: String,
    pub host: String,
    pub port: i32,
}

/// Kafka's `LeaderRecoveryState`: an unclean election leaves the partition `Recovering` until
/// the new leader has recovered its log (KIP-704).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LeaderRecoveryState {
    #[default]
    Recovered,
    Recovering,
}

/// A partition's replicas and leadership (Kafka's `PartitionRegistration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// [`NO_LEADER`] when no replica can lead.
    pub leader: NodeId,
    pub leader_epoch: i32,
    /// Bumped by every change: the compare-and-set version of the registration.
    pub partition_epoch: i32,
    #[serde(default)]
    pub leader_recovery_state: LeaderRecoveryState,
    /// A reassignment in progress (Kafka's `addingReplicas` / `removingReplicas`): replicas
    /// joining (in `replicas`, catching up) and leaving (in `replicas` until it completes).
    /// The target is `replicas` without `removing_replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<NodeId>,
}

impl PartitionRegistration {
    /// A new partition: every replica in sync, the first one leading, epochs 0.
    pub fn new(replicas: Vec<NodeId>) -> Self {
        let leader = replicas.first().copied().unwrap_or(NO_LEADER);
        PartitionRegistration {
            isr: replicas.clone(),
            replicas,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            leader_recovery_state: LeaderRecoveryState::Recovered,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas a reassignment in progress moves to (all of them otherwise).
    pub fn target_replicas(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// This registration with `change` made (Kafka's `PartitionRegistration.merge`): a new
    /// leader bumps the leader epoch, every change the partition epoch. The compare-and-set on
    /// the partition epoch is the caller's.
    pub fn merge(&self, c: &PartitionChange) -> PartitionRegistration {
        let mut next = self.clone();
        if let Some(replicas) = &c.replicas {
            next.replicas = replicas.clone();
        }
        if let Some(isr) = &c.isr {
            next.isr = isr.clone();
        }
        if let Some(leader) = c.leader {
            next.leader = leader;
            next.leader_epoch = next.leader_epoch.saturating_add(1);
        }
        if let Some(state) = c.leader_recovery_state {
            next.leader_recovery_state = state;
        }
        if let Some(adding) = &c.adding_replicas {
            next.adding_replicas = adding.clone();
        }
        if let Some(removing) = &c.removing_replicas {
            next.removing_replicas = removing.clone();
        }
        next.partition_epoch = next.partition_epoch.saturating_add(1);
        next
    }
}

/// A partition change (Kafka's `PartitionChangeRecord`). `None` fields are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    pub topic_id: Uuid,
    pub partition: i32,
    /// Applied only if the registration is still at this partition epoch (compare and set),
    /// so a decision taken on a stale view never overwrites a newer one.
    pub expected_partition_epoch: i32,
    /// A new leader ([`NO_LEADER`] for none): the leader epoch is bumped, even if the same
    /// leader is set again (Kafka's rule).
    pub leader: Option<NodeId>,
    pub isr: Option<Vec<NodeId>>,
    pub replicas: Option<Vec<NodeId>>,
    pub leader_recovery_state: Option<LeaderRecoveryState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adding_replicas: Option<Vec<NodeId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removing_replicas: Option<Vec<NodeId>>,
}

impl PartitionChange {
    pub fn new(topic_id: Uuid, partition: i32, expected_partition_epoch: i32) -> Self {
        PartitionChange {
            topic_id,
            partition,
            expected_partition_epoch,
            leader: None,
            isr: None,
            replicas: None,
            leader_recovery_state: None,
            adding_replicas: None,
            removing_replicas: None,
        }
    }
}

/// One record of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// Names the cluster; applied only while it has no id (the first controller leader
    /// proposes it).
    InitCluster {
        cluster_id: String,
    },
    /// A broker (re)registers. Its epoch becomes the log offset of this record; it starts
    /// fenced (Kafka's `RegisterBrokerRecord`).
    RegisterBroker {
        id: NodeId,
        incarnation_id: Uuid,
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
    },
    /// Kafka's `BrokerRegistrationChangeRecord`; applied only for the registration at `epoch`.
    BrokerChange {
        id: NodeId,
        epoch: i64,
        fenced: Option<bool>,
        in_controlled_shutdown: Option<bool>,
        /// Its log dir is offline (a full or failed disk; Kafka's offline directories, KIP-858):
        /// its replicas may neither lead nor join an ISR until it is back.
        #[serde(default)]
        log_dir_offline: Option<bool>,
    },
    UnregisterBroker {
        id: NodeId,
        epoch: i64,
    },
    /// A topic and its partitions (`TopicRecord` + `PartitionRecord`s).
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: Vec<PartitionRegistration>,
        configs: BTreeMap<String, String>,
    },
    /// Partitions added at the end of a topic (CreatePartitions).
    AddPartitions {
        topic_id: Uuid,
        partitions: Vec<PartitionRegistration>,
    },
    ChangePartition(PartitionChange),
    RemoveTopic {
        topic_id: Uuid,
    },
    /// Replaces a topic's config overrides.
    SetTopicConfigs {
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Replaces the dynamic configs of `broker`, or (`None`) the cluster-wide default ones
    /// (Kafka's `ConfigRecord`s of a BROKER resource, named by id or empty).
    SetBrokerConfigs {
        broker: Option<NodeId>,
        configs: BTreeMap<String, String>,
    },
    /// A block of `count` producer ids for `broker` (Kafka's `ProducerIdsRecord`): the next
    /// unassigned id moves past it.
    AllocateProducerIds {
        broker: NodeId,
        count: i64,
    },
    /// A user's SCRAM credential for one mechanism, set or replaced (Kafka's
    /// `UserScramCredentialRecord`): salted and hashed, never the password.
    UpsertScramCredential {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    /// Kafka's `RemoveUserScramCredentialRecord` (nothing if there is none).
    RemoveScramCredential {
        user: String,
        mechanism: ScramMechanism,
    },
    /// ACLs added (Kafka's `AccessControlEntryRecord`s); one already there changes nothing.
    CreateAcls {
        bindings: Vec<AclBinding>,
    },
    /// ACLs removed (Kafka's `RemoveAccessControlEntryRecord`s); one not there changes nothing.
    DeleteAcls {
        bindings: Vec<AclBinding>,
    },
}

/// What one Raft entry carries: records applied atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MetadataCommand {
    pub records: Vec<MetadataRecord>,
}

impl MetadataCommand {
    pub fn one(record: MetadataRecord) -> Self {
        MetadataCommand { records: vec![record] }
    }
}

impl std::fmt::Display for MetadataCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} metadata record(s)", self.records.len())
    }
}

/// Why a command was refused by every node's image (deterministically, at apply time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("topic id {0} already exists")]
    TopicIdAlreadyExists(Uuid),
    #[error("unknown topic id {0}")]
    UnknownTopicId(Uuid),
    #[error("unknown partition {1} of topic id {0}")]
    UnknownPartition(Uuid, i32),
    /// The partition epoch moved on since the change was decided (Kafka's INVALID_UPDATE_VERSION).
    #[error("partition {topic_id}-{partition} is at partition epoch {current}, not {expected}")]
    InvalidUpdateVersion {
        topic_id: Uuid,
        partition: i32,
        expected: i32,
        current: i32,
    },
    #[error("broker {0} is not registered at epoch {1}")]
    StaleBrokerEpoch(NodeId, i64),
    #[error("invalid change: {0}")]
    Invalid(String),
}

/// The answer to a command, the same on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ApplyResult {
    /// The log index the command was applied at (a broker's epoch, if it registered).
    pub offset: u64,
    /// `None`: every record applied.
    pub refused: Option<Refusal>,
    /// The first id of the block of an `AllocateProducerIds`.
    pub producer_id_start: Option<i64>,
}
