//! Replica placement for new partitions: Kafka's rack-unaware spread (`assignReplicasToBrokers`):
//! leaders go round the brokers from a random start, and each partition's followers follow its
//! leader at a shift that changes once per round, so replicas of consecutive partitions do not
//! pile up on the same followers.

use crate::controller::record::NodeId;

/// Replicas for partitions `first_partition..first_partition + count` over `brokers` (sorted,
/// live), `replication_factor` each; `start` and `shift` are the random start index and
/// replica shift Kafka draws (taken as arguments so tests are deterministic). `None` if the
/// factor exceeds the brokers.
pub fn place(
    brokers: &[NodeId],
    first_partition: usize,
    count: usize,
    replication_factor: usize,
    start: usize,
    shift: usize,
) -> Option<Vec<Vec<NodeId>>> {
    let n = brokers.len();
    if replication_factor == 0 || replication_factor > n {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut next_shift = shift % n;
    for p in first_partition..first_partition + count {
        if p > 0 && p % n == 0 {
            next_shift += 1;
        }
        let first = (p + start) % n;
        let mut replicas = Vec::with_capacity(replication_factor);
        replicas.push(*brokers.get(first)?);
        for j in 0..replication_factor - 1 {
            let index = if n > 1 {
                (first + 1 + (next_shift + j) % (n - 1)) % n
            } else {
                first
            };
            replicas.push(*brokers.get(index)?);
        }
        out.push(replicas);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_distinct_and_leaders_spread_evenly() {
        let brokers = [1, 2, 3];
        for start in 0..3 {
            for shift in 0..3 {
                let placed = place(&brokers, 0, 30, 3, start, shift).unwrap();
                for r in &placed {
                    let mut sorted = r.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    assert_eq!(sorted.len(), 3, "{r:?}");
                }
                for b in brokers {
                    assert_eq!(placed.iter().filter(|r| r[0] == b).count(), 10, "leaders of {b}");
                }
            }
        }
        assert_eq!(place(&brokers, 0, 1, 4, 0, 0), None);
        assert_eq!(place(&[7], 0, 2, 1, 5, 9), Some(vec![vec![7], vec![7]]));
    }
}
