//! Which transactional ids this broker coordinates: those of the `__transaction_state`
//! partitions it leads, replayed when it became their leader and dropped when it stopped.

use std::collections::HashMap;

use super::{Actor, Command, Load};
use crate::coordinator::log::{partition_for, CoordinatorLog, LogError};
use crate::transaction::record;
use crate::transaction::TransactionMetadata;

impl Actor {
    /// This broker leads `partition` at `epoch`: replay it off the async workers (the ids of a
    /// partition led at an older epoch are dropped first).
    pub(super) fn elect(&mut self, partition: i32, epoch: i32, partition_count: i32) {
        if partition_count > 0 && partition_count != self.partition_count {
            self.partition_count = partition_count;
        }
        match self.partitions.get(&partition) {
            Some(Load::Loading(e) | Load::Loaded(e)) if *e == epoch => return,
            Some(_) => self.resign(partition),
            None => {}
        }
        self.partitions.insert(partition, Load::Loading(epoch));
        let log = self.log.clone();
        let sender = self.sender.clone();
        tracing::debug!(partition, epoch, "loading a transaction state partition");
        let Some(tasks) = self.broker.upgrade().map(|b| b.tasks.clone()) else {
            return;
        };
        tasks.spawn("transaction-state-load", async move {
            let replayed = crate::supervisor::run_blocking(move || replay(&log, partition, epoch));
            if let Some(sender) = sender.upgrade() {
                let _ = sender
                    .send(Command::Loaded {
                        partition,
                        epoch,
                        result: replayed,
                    })
                    .await;
            }
        });
    }

    /// A replay finished: its ids are served from now on, and transactions it left in a Prepare
    /// state get their markers written.
    pub(super) fn loaded(
        &mut self,
        partition: i32,
        epoch: i32,
        result: Result<Vec<(String, Option<TransactionMetadata>)>, LogError>,
    ) {
        if self.partitions.get(&partition) != Some(&Load::Loading(epoch)) {
            return; // resigned (or re-elected) meanwhile
        }
        let latest = match result {
            Ok(latest) => latest,
            Err(e) => {
                self.partitions.remove(&partition);
                if e.is_not_leader() {
                    tracing::info!(
                        partition,
                        epoch,
                        "leadership moved while loading a transaction state partition"
                    );
                } else {
                    tracing::error!(partition, epoch, error = %e, "loading a transaction state partition failed");
                }
                return;
            }
        };
        let mut count = 0;
        for (id, state) in latest {
            match state {
                Some(t) => {
                    self.machine.restore(t);
                    count += 1;
                }
                None => self.machine.forget(&id),
            }
        }
        self.partitions.insert(partition, Load::Loaded(epoch));
        if count > 0 {
            tracing::info!(
                partition,
                epoch,
                transactional_ids = count,
                "transaction state partition loaded"
            );
        } else {
            tracing::debug!(partition, epoch, "transaction state partition loaded");
        }
        let partitions = self.partition_count;
        for job in self.machine.pending_marker_jobs() {
            if partition_for(&job.transactional_id, partitions) == partition {
                tracing::info!(transactional_id = %job.transactional_id, result = ?job.result,
                    "resuming transaction markers");
                self.dispatch_markers(job);
            }
        }
    }

    /// This broker stopped leading `partition`: its ids are dropped (their requests in flight
    /// answer NOT_COORDINATOR when their writes come back; marker tasks stop by themselves).
    pub(super) fn resign(&mut self, partition: i32) {
        let was = self.partitions.remove(&partition);
        let partitions = self.partition_count;
        let dropped = self
            .machine
            .forget_where(|id| partition_for(id, partitions) == partition);
        if was.is_some() {
            tracing::info!(
                partition,
                transactional_ids = dropped,
                "unloaded a transaction state partition"
            );
        }
    }
}

/// The latest record of every id in `partition` (`None`: a tombstone).
fn replay(
    log: &CoordinatorLog,
    partition: i32,
    epoch: i32,
) -> Result<Vec<(String, Option<TransactionMetadata>)>, LogError> {
    let mut latest: HashMap<String, Option<TransactionMetadata>> = HashMap::new();
    log.replay(partition, epoch, &mut |r| {
        let key = r.key.ok_or("record without a key")?;
        let id = record::decode_key(key).map_err(|e| e.to_string())?;
        let state = r
            .value
            .map(|v| record::decode_value(&id, v))
            .transpose()
            .map_err(|e| e.to_string())?;
        latest.insert(id, state);
        Ok(())
    })?;
    Ok(latest.into_iter().collect())
}
