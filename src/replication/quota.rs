//! Replication throttles (Kafka's `ReplicationQuotaManager`): the bytes a leader sends to,
//! and a follower fetches for, throttled replicas outside the ISR are bounded by
//! `leader.replication.throttled.rate` / `follower.replication.throttled.rate`, so moving a
//! large partition does not starve client traffic. Which replicas are throttled is the topic's
//! `*.replication.throttled.replicas`; replicas in the ISR never are.
//!
//! The rate is Kafka's: bytes over 11 one-second samples, divided by the time they span but at
//! least 10 s (a new quota lets a burst of ten seconds' worth through, as Kafka's does). Over
//! the rate, a leader sends nothing for throttled partitions and a follower leaves them out of
//! its fetches until the rate falls back under it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Kafka's `replication.quota.window.num` and `replication.quota.window.size.seconds`.
const SAMPLES: i64 = 11;
const SAMPLE_MS: i64 = 1_000;

/// One side's (leader or follower) replication quota on this broker.
#[derive(Debug)]
pub struct ReplicationQuota {
    /// Bytes per second; `u64::MAX`: unbounded (no throttle set).
    rate: AtomicU64,
    /// (sample start ms, bytes) of the last [`SAMPLES`] seconds.
    samples: Mutex<VecDeque<(i64, u64)>>,
}

impl Default for ReplicationQuota {
    fn default() -> Self {
        ReplicationQuota {
            rate: AtomicU64::new(u64::MAX),
            samples: Mutex::new(VecDeque::new()),
        }
    }
}

impl ReplicationQuota {
    /// Sets the bound (`None`: unbounded).
    pub fn set_rate(&self, bytes_per_second: Option<u64>) {
        let rate = bytes_per_second.unwrap_or(u64::MAX);
        if self.rate.swap(rate, Ordering::Relaxed) != rate {
            tracing::info!(rate = bytes_per_second, "replication throttle rate changed");
        }
    }

    pub fn rate(&self) -> Option<u64> {
        let rate = self.rate.load(Ordering::Relaxed);
        (rate != u64::MAX).then_some(rate)
    }

    /// Counts `bytes` of throttled replication at `now_ms`.
    pub fn record(&self, bytes: u64, now_ms: i64) {
        if bytes == 0 || self.rate().is_none() {
            return;
        }
        let start = now_ms - now_ms.rem_euclid(SAMPLE_MS);
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        match samples.back_mut() {
            Some((at, total)) if *at == start => *total = total.saturating_add(bytes),
            _ => samples.push_back((start, bytes)),
        }
        while samples.len() > SAMPLES as usize {
            samples.pop_front();
        }
    }

    /// Whether the measured rate is over the bound (never, unbounded).
    pub fn is_exceeded(&self, now_ms: i64) -> bool {
        let Some(rate) = self.rate() else { return false };
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let oldest_kept = now_ms - now_ms.rem_euclid(SAMPLE_MS) - (SAMPLES - 1) * SAMPLE_MS;
        while samples.front().is_some_and(|(at, _)| *at < oldest_kept) {
            samples.pop_front();
        }
        let Some(&(first, _)) = samples.front() else {
            return false;
        };
        let bytes: u64 = samples.iter().map(|(_, b)| *b).sum();
        let elapsed_ms = (now_ms - first).max((SAMPLES - 1) * SAMPLE_MS).max(1);
        let measured = u128::from(bytes) * 1_000 / elapsed_ms as u128;
        measured > u128::from(rate)
    }
}

/// Whether a replica's replication is throttled, as its topic's configs and registration say
/// (set by the replica manager from each image).
#[derive(Debug, Default)]
pub struct ReplicaThrottle {
    /// `leader.replication.throttled.replicas` names this broker's replica: while leading,
    /// what it sends to followers outside the ISR is throttled.
    leader: AtomicBool,
    /// `follower.replication.throttled.replicas` names it and it is outside the ISR: what it
    /// fetches while following is throttled.
    follower: AtomicBool,
}

impl ReplicaThrottle {
    pub fn set(&self, leader: bool, follower: bool) {
        self.leader.store(leader, Ordering::Relaxed);
        self.follower.store(follower, Ordering::Relaxed);
    }

    pub fn leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    pub fn follower(&self) -> bool {
        self.follower.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbounded_until_a_rate_is_set() {
        let q = ReplicationQuota::default();
        q.record(u64::MAX / 2, 0);
        assert!(!q.is_exceeded(0));
        q.set_rate(Some(1_000));
        assert_eq!(q.rate(), Some(1_000));
        assert!(!q.is_exceeded(0), "nothing recorded while unbounded");
        q.set_rate(None);
        assert!(q.rate().is_none());
    }

    #[test]
    fn the_rate_is_measured_over_at_least_ten_seconds() {
        let q = ReplicationQuota::default();
        q.set_rate(Some(1_000));
        // A burst of ten seconds' worth is allowed at once, one byte more is not.
        q.record(10_000, 100);
        assert!(!q.is_exceeded(200));
        q.record(1_000, 300);
        assert!(q.is_exceeded(400));
        // The burst's sample leaves the window 11 s later.
        assert!(!q.is_exceeded(11_000));
        // Samples older than the window are forgotten.
        assert!(!q.is_exceeded(30_000));
        q.record(9_000, 30_000);
        assert!(!q.is_exceeded(30_100));
        q.record(2_000, 31_000);
        assert!(q.is_exceeded(31_100));
    }
}
