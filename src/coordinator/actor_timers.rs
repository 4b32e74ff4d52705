//! The actor's time and parked requests: its clock, each group's next deadline, and the reply
//! senders of JoinGroup and SyncGroup requests waiting for their group.

use super::*;

/// The state machine's clock: wall-clock milliseconds at start plus the `tokio::time::Instant`
/// elapsed since. Monotonic (an NTP step cannot expire every session at once), still close to
/// epoch milliseconds (for timestamps that may be persisted later), and mockable: with tokio's
/// paused time (`start_paused`) the elapsed part advances only as the test runtime advances it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    start: Instant,
    start_wall_ms: u64,
}

impl Clock {
    pub(super) fn start() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock {
            start: Instant::now(),
            start_wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.start_wall_ms.saturating_add(elapsed)
    }

    /// The instant of a `now_ms`-style time; `None` if it is too far away to represent.
    pub(super) fn instant_at(&self, at_ms: u64) -> Option<Instant> {
        self.start
            .checked_add(Duration::from_millis(at_ms.saturating_sub(self.start_wall_ms)))
    }
}

/// Each group's next deadline, ordered by time.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    by_time: BTreeSet<(u64, String)>,
    by_group: HashMap<String, u64>,
}

impl Deadlines {
    pub(super) fn set(&mut self, group_id: &str, deadline_ms: Option<u64>) {
        if let Some(old) = self.by_group.remove(group_id) {
            self.by_time.remove(&(old, group_id.to_string()));
        }
        if let Some(deadline_ms) = deadline_ms {
            self.by_group.insert(group_id.to_string(), deadline_ms);
            self.by_time.insert((deadline_ms, group_id.to_string()));
        }
    }

    pub(super) fn earliest_ms(&self) -> Option<u64> {
        self.by_time.first().map(|(deadline_ms, _)| *deadline_ms)
    }

    /// Removes and returns up to `limit` groups due at `now_ms`.
    pub(super) fn pop_due(&mut self, now_ms: u64, limit: usize) -> Vec<String> {
        let mut due = Vec::new();
        while due.len() < limit {
            let Some((deadline_ms, _)) = self.by_time.first() else {
                break;
            };
            if *deadline_ms > now_ms {
                break;
            }
            if let Some((_, group_id)) = self.by_time.pop_first() {
                self.by_group.remove(&group_id);
                due.push(group_id);
            }
        }
        due
    }
}

/// Reply senders of parked requests, by (group id, member id).
#[derive(Debug, Default)]
pub(super) struct Waiters {
    join: HashMap<(String, String), Reply<JoinGroupResult>>,
    sync: HashMap<(String, String), Reply<SyncGroupResult>>,
}

impl Waiters {
    /// Parks a JoinGroup. A member's earlier parked JoinGroup (the client gave up on it and
    /// sent another; the state machine parks the member once) gets REBALANCE_IN_PROGRESS,
    /// which only tells that connection to rejoin.
    pub(super) fn park_join(&mut self, group_id: &str, member_id: String, reply: Reply<JoinGroupResult>) {
        let superseded = self.join.insert((group_id.to_string(), member_id.clone()), reply);
        if let Some(old) = superseded {
            let _ = old.send(JoinGroupResult::error(member_id, GroupError::RebalanceInProgress));
        }
    }

    /// Parks a SyncGroup; an earlier parked one of the member gets REBALANCE_IN_PROGRESS.
    pub(super) fn park_sync(&mut self, group_id: &str, member_id: String, reply: Reply<SyncGroupResult>) {
        if let Some(old) = self.sync.insert((group_id.to_string(), member_id), reply) {
            let _ = old.send(SyncGroupResult::error(GroupError::RebalanceInProgress));
        }
    }

    /// Answers parked requests. A send fails only if the client went away, which is fine.
    pub(super) fn complete(&mut self, group_id: &str, completions: Vec<Completion>) {
        for completion in completions {
            match completion {
                Completion::Join { member_id, result } => match self.join.remove(&(group_id.to_string(), member_id)) {
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    None => tracing::debug!(group = %group_id, "JoinGroup completion without a waiter"),
                },
                Completion::Sync { member_id, result } => match self.sync.remove(&(group_id.to_string(), member_id)) {
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    None => tracing::debug!(group = %group_id, "SyncGroup completion without a waiter"),
                },
            }
        }
    }

    /// Answers every parked request of `group_id` (all groups for `None`) with COORDINATOR_NOT_AVAILABLE.
    pub(super) fn abandon(&mut self, group_id: Option<&str>) {
        let matches = |key: &(String, String)| group_id.is_none_or(|g| key.0 == g);
        let joins: Vec<(String, String)> = self.join.keys().filter(|k| matches(k)).cloned().collect();
        for key in joins {
            if let Some(reply) = self.join.remove(&key) {
                let _ = reply.send(JoinGroupResult::error(key.1, GroupError::CoordinatorNotAvailable));
            }
        }
        let syncs: Vec<(String, String)> = self.sync.keys().filter(|k| matches(k)).cloned().collect();
        for key in syncs {
            if let Some(reply) = self.sync.remove(&key) {
                let _ = reply.send(SyncGroupResult::error(GroupError::CoordinatorNotAvailable));
            }
        }
    }
}

/// Sleeps until `at`, or forever for `None`.
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
