//! Fetching from the closest replica (KIP-392): with `replica.selector.class` set to Kafka's
//! `RackAwareReplicaSelector`, a leader answers a consumer's fetch (v11+, with its
//! `client.rack`) with a `preferred_read_replica` in the consumer's rack instead of records,
//! and the consumer fetches from that follower, which serves reads up to its high watermark.

use crate::controller::record::NodeId;

/// A replica the leader could send a consumer to: its broker's rack and its log end as the
/// leader last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub id: NodeId,
    pub rack: Option<&'a str>,
    pub log_end: i64,
}

/// Kafka's `RackAwareReplicaSelector`: a consumer with a rack reads from the leader if it is in
/// that rack, else from the most caught-up follower in it that holds `fetch_offset`; `None`
/// means the leader (no rack given, or no such follower).
pub fn select(
    client_rack: &str,
    leader_rack: Option<&str>,
    followers: &[Candidate<'_>],
    fetch_offset: i64,
) -> Option<NodeId> {
    if client_rack.is_empty() || leader_rack == Some(client_rack) {
        return None;
    }
    followers
        .iter()
        .filter(|f| f.rack == Some(client_rack) && f.log_end >= fetch_offset)
        .max_by_key(|f| (f.log_end, std::cmp::Reverse(f.id)))
        .map(|f| f.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumer_reads_in_its_rack_from_the_most_caught_up_replica() {
        let followers = [
            Candidate {
                id: 2,
                rack: Some("b"),
                log_end: 90,
            },
            Candidate {
                id: 3,
                rack: Some("b"),
                log_end: 100,
            },
            Candidate {
                id: 4,
                rack: Some("c"),
                log_end: 100,
            },
        ];
        assert_eq!(select("b", Some("a"), &followers, 50), Some(3));
        assert_eq!(select("b", Some("a"), &followers, 95), Some(3));
        assert_eq!(
            select("b", Some("a"), &followers, 101),
            None,
            "none holds the offset yet"
        );
        assert_eq!(
            select("a", Some("a"), &followers, 50),
            None,
            "the leader is in the rack"
        );
        assert_eq!(select("", Some("a"), &followers, 50), None, "no rack given");
        assert_eq!(select("d", Some("a"), &followers, 50), None, "no replica in the rack");
        let tie = [
            Candidate {
                id: 5,
                rack: Some("b"),
                log_end: 7,
            },
            Candidate {
                id: 2,
                rack: Some("b"),
                log_end: 7,
            },
        ];
        assert_eq!(select("b", None, &tie, 7), Some(2));
    }
}
