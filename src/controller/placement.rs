//! Replica placement for new partitions: Kafka's spread (`assignReplicasToBrokers`): leaders go
//! round the brokers from a random start, and each partition's followers follow its leader at a
//! shift that changes once per round, so replicas of consecutive partitions do not pile up on
//! the same followers. When brokers have racks (`broker.rack`), Kafka's rack-aware variant: the
//! brokers are taken one rack at a time, and a follower goes to a rack without a replica of the
//! partition while there is one (a broker without a rack counts as a rack of its own).

use std::collections::{BTreeMap, HashSet};

use crate::controller::record::NodeId;

/// Replicas for new partitions over `brokers` (sorted by id, live) and their racks (see
/// [`place`]). Without racks, the brokers are one rack and this is Kafka's plain spread.
pub fn place_on_racks(
    brokers: &[(NodeId, Option<&str>)],
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
    // Kafka's rack-alternated list: the first broker of each rack (racks in name order), then
    // the second of each, and so on.
    let mut by_rack: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.unwrap_or("")).or_default().push(*id);
    }
    let racks = by_rack.len();
    let rack_of: BTreeMap<NodeId, &str> = brokers.iter().map(|(id, r)| (*id, r.unwrap_or(""))).collect();
    let mut arranged = Vec::with_capacity(n);
    for i in 0..n {
        arranged.extend(by_rack.values().filter_map(|ids| ids.get(i)));
    }
    let mut out = Vec::with_capacity(count);
    let mut next_shift = shift % n;
    for p in first_partition..first_partition + count {
        if p > 0 && p % n == 0 {
            next_shift += 1;
        }
        let first = (p + start) % n;
        let leader = *arranged.get(first)?;
        let mut replicas = vec![leader];
        let mut racks_used: HashSet<&str> = HashSet::from([*rack_of.get(&leader)?]);
        let mut k = 0;
        while replicas.len() < replication_factor {
            if k > 2 * n * replication_factor {
                return None; // cannot happen: every broker is reached within n - 1 steps
            }
            let step = 1 + (next_shift * racks + k) % (n - 1);
            let broker = *arranged.get((first + step) % n)?;
            let rack = *rack_of.get(&broker)?;
            k += 1;
            let rack_ok = !racks_used.contains(rack) || racks_used.len() == racks;
            if rack_ok && !replicas.contains(&broker) {
                replicas.push(broker);
                racks_used.insert(rack);
            }
        }
        out.push(replicas);
    }
    Some(out)
}

/// Replicas for partitions `first_partition..first_partition + count` over `brokers` (sorted,
/// live, without racks), `replication_factor` each; `start` and `shift` are the random start
/// index and replica shift Kafka draws (taken as arguments so tests are deterministic). `None`
/// if the factor exceeds the brokers.
pub fn place(
    brokers: &[NodeId],
    first_partition: usize,
    count: usize,
    replication_factor: usize,
    start: usize,
    shift: usize,
) -> Option<Vec<Vec<NodeId>>> {
    let brokers: Vec<(NodeId, Option<&str>)> = brokers.iter().map(|b| (*b, None)).collect();
    place_on_racks(&brokers, first_partition, count, replication_factor, start, shift)
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
        // Kafka's plain spread: followers at the round's shift from the leader.
        assert_eq!(
            place(&[1, 2, 3, 4], 0, 5, 3, 0, 1),
            Some(vec![
                vec![1, 3, 4],
                vec![2, 4, 1],
                vec![3, 1, 2],
                vec![4, 2, 3],
                vec![1, 4, 2]
            ])
        );
        assert_eq!(place(&[7], 0, 2, 1, 5, 9), Some(vec![vec![7], vec![7]]));
    }

    #[test]
    fn with_racks_every_partition_spans_as_many_racks_as_it_can() {
        let brokers = [
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ];
        let rack = |id: NodeId| brokers.iter().find(|(b, _)| *b == id).and_then(|(_, r)| *r);
        for start in 0..6 {
            for shift in 0..6 {
                for rf in 1..=6 {
                    let placed = place_on_racks(&brokers, 0, 24, rf, start, shift).unwrap();
                    for r in &placed {
                        let distinct: HashSet<_> = r.iter().collect();
                        assert_eq!(distinct.len(), rf, "{r:?}");
                        let racks: HashSet<_> = r.iter().map(|b| rack(*b)).collect();
                        assert_eq!(racks.len(), rf.min(3), "replicas {r:?} over racks");
                    }
                    for (b, _) in brokers {
                        assert_eq!(placed.iter().filter(|r| r[0] == b).count(), 4, "leaders of {b}");
                    }
                }
            }
        }
        // Uneven racks and a broker without one (a rack of its own).
        let uneven = [
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("a")),
            (4, Some("b")),
            (5, None),
        ];
        let placed = place_on_racks(&uneven, 0, 10, 3, 0, 0).unwrap();
        for r in &placed {
            let racks: HashSet<_> = r
                .iter()
                .map(|b| uneven.iter().find(|(x, _)| x == b).unwrap().1)
                .collect();
            assert_eq!(racks.len(), 3, "{r:?}");
        }
        assert_eq!(place_on_racks(&uneven, 0, 1, 6, 0, 0), None);
    }
}
