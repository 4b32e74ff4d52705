//! Which groups this broker serves: the `__consumer_offsets` partitions it leads, loaded when it
//! became their leader and dropped when it stopped; and commits answered once replicated.

use super::*;

impl Actor {
    /// Makes groups of loaded records: Stable with their members or Empty as persisted, and
    /// Empty groups for those that only have offsets.
    pub(super) fn restore_groups(&mut self, ids: Vec<String>) {
        let now_ms = self.clock.now_ms();
        let Some(store) = self.store.as_ref() else { return };
        let mut stable = 0;
        let count = ids.len();
        for group_id in ids {
            let group = match store.group_record(&group_id) {
                Some(record) => {
                    let group = GroupMetadata::restore(group_id.clone(), self.config, record, now_ms);
                    self.persisted.insert(group_id.clone(), signature(&group));
                    group
                }
                None => GroupMetadata::new(group_id.clone(), self.config),
            };
            if group.state() == GroupState::Stable {
                stable += 1;
            }
            self.deadlines.set(&group_id, group.next_deadline_ms());
            self.groups.insert(group_id, group);
        }
        if count > 0 {
            tracing::info!(groups = count, stable, "loaded consumer groups");
        }
    }

    /// Whether this broker serves `group_id` now (NOT_COORDINATOR, or
    /// COORDINATOR_LOAD_IN_PROGRESS). An empty id passes: the call answers INVALID_GROUP_ID.
    pub(super) fn check_coordinator(&self, group_id: &str) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Ok(());
        }
        match self.store.as_ref() {
            None => Err(GroupError::CoordinatorNotAvailable),
            Some(store) => store.serves(group_id).map_err(|n| match n {
                NotServed::NotCoordinator => GroupError::NotCoordinator,
                NotServed::Loading => GroupError::CoordinatorLoadInProgress,
            }),
        }
    }

    pub(super) fn elect(&mut self, partition: i32, epoch: i32, partition_count: i32) {
        let previous = self.store.as_ref().and_then(|s| s.epoch_of(partition));
        if previous.is_some_and(|e| e != epoch) {
            self.resign(partition);
        }
        let Some(store) = self.store.as_mut() else { return };
        if !store.begin_load(partition, epoch, partition_count) {
            return;
        }
        let log = store.log().clone();
        let sender = self.sender.clone();
        tracing::debug!(partition, epoch, "loading consumer groups of an offsets partition");
        tokio::task::spawn_blocking(move || {
            let result = LoadedOffsets::replay(&log, partition, epoch);
            if let Some(sender) = sender.upgrade() {
                let _ = sender.blocking_send(Command::Loaded {
                    partition,
                    epoch,
                    result,
                });
            }
        });
    }

    pub(super) fn loaded(&mut self, partition: i32, epoch: i32, result: Result<LoadedOffsets, StoreError>) {
        let Some(store) = self.store.as_mut() else { return };
        match result {
            Ok(loaded) => {
                if let Some(ids) = store.finish_load(partition, epoch, loaded) {
                    if ids.is_empty() {
                        tracing::debug!(partition, epoch, "offsets partition loaded");
                    } else {
                        tracing::info!(partition, epoch, groups = ids.len(), "offsets partition loaded");
                    }
                    self.restore_groups(ids);
                }
            }
            Err(e) => {
                store.abandon_load(partition, epoch);
                if e.is_not_leader() {
                    tracing::info!(partition, epoch, "leadership moved while loading an offsets partition");
                } else {
                    tracing::error!(partition, epoch, error = %e, "loading an offsets partition failed");
                }
            }
        }
    }

    /// Drops the groups of a partition this broker no longer leads; their parked requests are
    /// answered COORDINATOR_NOT_AVAILABLE (the clients look the coordinator up again).
    pub(super) fn resign(&mut self, partition: i32) {
        let Some(store) = self.store.as_mut() else { return };
        let mut ids = store.unload(partition);
        ids.extend(
            self.groups
                .keys()
                .filter(|g| store.partition_of(g) == partition)
                .cloned(),
        );
        ids.sort_unstable();
        ids.dedup();
        for group_id in &ids {
            if let Some(mut group) = self.groups.remove(group_id) {
                group.mark_dead();
                self.waiters.complete(group_id, group.take_completions());
            }
            self.waiters.abandon(Some(group_id));
            self.deadlines.set(group_id, None);
            self.empty_since_ms.remove(group_id);
            self.last_state.remove(group_id);
            self.persisted.remove(group_id);
        }
        if ids.is_empty() {
            tracing::debug!(partition, "unloaded an offsets partition");
        } else {
            tracing::info!(partition, groups = ids.len(), "unloaded an offsets partition");
        }
    }

    /// Answers `reply` once every write is replicated (on a task of its own: the actor goes on).
    pub(super) fn reply_when_replicated(&self, writes: Vec<Replication>, reply: Reply<Result<(), GroupError>>) {
        let timeout = Duration::from_millis(self.config.offsets_commit_timeout_ms);
        tokio::spawn(async move {
            for w in writes {
                if let Err(e) = w.wait(timeout).await {
                    let _ = reply.send(Err(replication_failed(&e)));
                    return;
                }
            }
            let _ = reply.send(Ok(()));
        });
    }
}
