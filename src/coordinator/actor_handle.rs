//! The group coordinator's handle: what request handlers call; each call is a command to the
//! actor (`actor.rs`) and an await of its reply.

use super::*;

/// The handle to the coordinator actor. Clone it freely; the actor stops when every handle is
/// dropped, answering parked requests with COORDINATOR_NOT_AVAILABLE.
#[derive(Debug, Clone)]
pub struct GroupCoordinator {
    commands: mpsc::Sender<Command>,
}

/// The actor owning `store`, as a future for the caller (the broker's supervisor) to spawn,
/// and its handle. `config` should have passed [`GroupCoordinatorConfig::validate`] (done
/// where the broker config is loaded).
pub fn start(
    config: GroupCoordinatorConfig,
    store: OffsetStore,
) -> (GroupCoordinator, impl std::future::Future<Output = ()> + Send + 'static) {
    let (commands, receiver) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
    let actor = Actor::new(config, Clock::start(), store, commands.downgrade());
    (GroupCoordinator { commands }, actor.run(receiver))
}

/// [`start`], spawned on the current runtime (tests).
#[cfg(test)]
pub fn spawn(config: GroupCoordinatorConfig, store: OffsetStore) -> (GroupCoordinator, JoinHandle<()>) {
    let (coordinator, actor) = start(config, store);
    (coordinator, tokio::spawn(actor))
}

impl GroupCoordinator {
    /// Sends a command and awaits its reply; `None` if the actor is gone.
    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }

    /// JoinGroup. Waits while the group rebalances (up to the rebalance timeout).
    pub async fn join_group(&self, group_id: impl Into<String>, params: JoinGroupParams) -> JoinGroupResult {
        let member_id = params.member_id.clone();
        let group_id = group_id.into();
        self.call(|reply| Command::Join {
            group_id,
            params,
            reply,
        })
        .await
        .unwrap_or_else(|| JoinGroupResult::error(member_id, GroupError::CoordinatorNotAvailable))
    }

    /// SyncGroup. Followers wait for the leader's assignments.
    pub async fn sync_group(&self, group_id: impl Into<String>, params: SyncGroupParams) -> SyncGroupResult {
        let group_id = group_id.into();
        self.call(|reply| Command::Sync {
            group_id,
            params,
            reply,
        })
        .await
        .unwrap_or_else(|| SyncGroupResult::error(GroupError::CoordinatorNotAvailable))
    }

    /// Heartbeat.
    pub async fn heartbeat(&self, group_id: impl Into<String>, params: HeartbeatParams) -> Result<(), GroupError> {
        let group_id = group_id.into();
        self.call(|reply| Command::Heartbeat {
            group_id,
            params,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// LeaveGroup: one result per member, or a group-level error.
    pub async fn leave_group(
        &self,
        group_id: impl Into<String>,
        members: Vec<LeaveGroupMember>,
    ) -> Result<Vec<LeaveMemberResult>, GroupError> {
        let group_id = group_id.into();
        self.call(|reply| Command::Leave {
            group_id,
            members,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// DescribeGroups: one answer per group id, in order.
    pub async fn describe_groups(&self, group_ids: Vec<String>) -> Vec<DescribedGroup> {
        let fallback: Vec<DescribedGroup> = group_ids
            .iter()
            .map(|group_id| DescribedGroup {
                group_id: group_id.clone(),
                result: Err(GroupError::CoordinatorNotAvailable),
            })
            .collect();
        self.call(|reply| Command::Describe { group_ids, reply })
            .await
            .unwrap_or(fallback)
    }

    /// ListGroups: every group whose state is in `states_filter` (all when empty; state names
    /// compared ignoring ASCII case).
    pub async fn list_groups(&self, states_filter: Vec<String>) -> Result<Vec<GroupOverview>, GroupError> {
        self.call(|reply| Command::List { states_filter, reply })
            .await
            .ok_or(GroupError::CoordinatorNotAvailable)
    }

    /// DeleteGroups: one answer per group id, in order. Only groups without members go.
    pub async fn delete_groups(&self, group_ids: Vec<String>) -> Vec<DeletedGroup> {
        let fallback: Vec<DeletedGroup> = group_ids
            .iter()
            .map(|group_id| DeletedGroup {
                group_id: group_id.clone(),
                result: Err(GroupError::CoordinatorNotAvailable),
            })
            .collect();
        self.call(|reply| Command::Delete { group_ids, reply })
            .await
            .unwrap_or(fallback)
    }

    /// OffsetCommit for one group: validated against the group (generation, member) and stored.
    pub async fn commit_offsets(
        &self,
        group_id: impl Into<String>,
        params: OffsetCommitParams,
    ) -> Result<(), GroupError> {
        let group_id = group_id.into();
        self.call(|reply| Command::CommitOffsets {
            group_id,
            params,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// OffsetFetch for one group: the given partitions (-1 where nothing is committed), or every
    /// committed one for `None`.
    /// With `require_stable`, partitions with an offset pending in an open transaction are
    /// marked `unstable`.
    pub async fn fetch_offsets(
        &self,
        group_id: impl Into<String>,
        partitions: Option<Vec<TopicPartition>>,
        require_stable: bool,
    ) -> Result<Vec<FetchedOffset>, GroupError> {
        let group_id = group_id.into();
        self.call(|reply| Command::FetchOffsets {
            group_id,
            partitions,
            require_stable,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// TxnOffsetCommit for one group: validated like OffsetCommit, stored as pending offsets of
    /// the producer's transaction.
    pub async fn txn_commit_offsets(
        &self,
        group_id: impl Into<String>,
        params: TxnOffsetCommitParams,
    ) -> Result<(), GroupError> {
        let group_id = group_id.into();
        self.call(|reply| Command::TxnCommitOffsets {
            group_id,
            params,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// The transaction marker for the offsets log (from the transaction coordinator): the
    /// producer's pending offsets are committed or dropped. Durable (in the OS) when it returns.
    pub async fn end_txn(&self, producer_id: i64, commit: bool) -> Result<(), GroupError> {
        self.call(|reply| Command::EndTxn {
            producer_id,
            commit,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// OffsetDelete: one result per partition, or a group-level error.
    pub async fn delete_offsets(
        &self,
        group_id: impl Into<String>,
        partitions: Vec<TopicPartition>,
        subscribed_topics: SubscribedTopics,
    ) -> Result<Vec<Option<GroupError>>, GroupError> {
        let group_id = group_id.into();
        self.call(|reply| Command::DeleteOffsets {
            group_id,
            partitions,
            subscribed_topics,
            reply,
        })
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// Group counts and committed offsets for the metrics endpoint.
    pub async fn stats(&self) -> CoordinatorStats {
        self.call(|reply| Command::Stats { reply }).await.unwrap_or_default()
    }

    /// Forgets every group's offsets of deleted topics.
    pub async fn remove_topics(&self, topics: Vec<String>) {
        let _ = self.call(|reply| Command::RemoveTopics { topics, reply }).await;
    }

    /// This broker gained a `__consumer_offsets` partition's leadership (its groups are
    /// loaded, and served once loaded: COORDINATOR_LOAD_IN_PROGRESS until then) or lost it
    /// (its groups are dropped: NOT_COORDINATOR).
    pub async fn leadership(&self, change: Leadership) {
        let _ = self.commands.send(Command::Leadership(change)).await;
    }

    /// Closes the offsets log cleanly and stops the actor; later calls get
    /// COORDINATOR_NOT_AVAILABLE.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }
}
