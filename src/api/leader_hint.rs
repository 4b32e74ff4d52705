//! KIP-951 leader hints: a partition error that means "the leader moved"
//! (NOT_LEADER_OR_FOLLOWER; for Fetch also FENCED_LEADER_EPOCH) carries the leader and epoch
//! this broker knows, and the response lists those leaders' endpoints, so a client retries at
//! the new leader at once instead of refreshing its metadata first. Produce v10+ and Fetch v16+
//! have the (tagged) fields; older versions never see them.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{fetch_response, produce_response, BrokerId, FetchResponse, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::controller::image::MetadataImage;
use crate::controller::record::{NodeId, NO_LEADER};

/// The current leaders named so far, with their endpoints.
struct LeaderHints<'a> {
    image: Arc<MetadataImage>,
    listener: &'a str,
    nodes: BTreeMap<NodeId, (String, i32, Option<String>)>,
}

impl<'a> LeaderHints<'a> {
    fn new(image: Arc<MetadataImage>, listener: &'a str) -> Self {
        LeaderHints {
            image,
            listener,
            nodes: BTreeMap::new(),
        }
    }

    fn of(broker: &'a Broker, listener: &'a str) -> Self {
        Self::new(broker.metadata.image(), listener)
    }

    /// (leader id, leader epoch) of a partition as the metadata has it, (-1, -1) when it is not
    /// known; a live leader's endpoint is kept for the response's node endpoints (Kafka's
    /// `getCurrentLeader`).
    fn current_leader(&mut self, topic: Option<&str>, partition: i32) -> (NodeId, i32) {
        let Some(p) = topic
            .and_then(|t| self.image.topic(t))
            .and_then(|t| t.partition(partition))
        else {
            return (NO_LEADER, -1);
        };
        if p.leader != NO_LEADER && !self.nodes.contains_key(&p.leader) {
            let endpoint = self
                .image
                .brokers
                .get(&p.leader)
                .filter(|b| !b.fenced)
                .and_then(|b| Some((b.endpoint(self.listener)?, b.rack.clone())));
            if let Some((e, rack)) = endpoint {
                self.nodes.insert(p.leader, (e.host.clone(), e.port, rack));
            }
        }
        (p.leader, p.leader_epoch)
    }
}

fn moved(error_code: i16, fenced_counts: bool) -> bool {
    error_code == ResponseError::NotLeaderOrFollower.code()
        || (fenced_counts && error_code == ResponseError::FencedLeaderEpoch.code())
}

/// Fills the hints of a Produce response (v10+); `names[i]` is the name of topic `i`.
pub fn fill_produce(
    broker: &Broker,
    listener: &str,
    version: i16,
    names: &[Option<String>],
    resp: &mut ProduceResponse,
) {
    if version >= 10 {
        produce_hints(LeaderHints::of(broker, listener), names, resp);
    }
}

fn produce_hints(mut hints: LeaderHints<'_>, names: &[Option<String>], resp: &mut ProduceResponse) {
    for (topic, name) in resp.responses.iter_mut().zip(names) {
        for p in topic
            .partition_responses
            .iter_mut()
            .filter(|p| moved(p.error_code, false))
        {
            let (leader, epoch) = hints.current_leader(name.as_deref(), p.index);
            p.current_leader = produce_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch);
        }
    }
    resp.node_endpoints = hints
        .nodes
        .into_iter()
        .map(|(id, (host, port, rack))| {
            produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
}

/// Fills the hints of a Fetch response (v16+); `names[i]` is the name of topic `i`.
pub fn fill_fetch(broker: &Broker, listener: &str, version: i16, names: &[Option<String>], resp: &mut FetchResponse) {
    if version >= 16 {
        fetch_hints(LeaderHints::of(broker, listener), names, resp);
    }
}

fn fetch_hints(mut hints: LeaderHints<'_>, names: &[Option<String>], resp: &mut FetchResponse) {
    for (topic, name) in resp.responses.iter_mut().zip(names) {
        for p in topic.partitions.iter_mut().filter(|p| moved(p.error_code, true)) {
            let (leader, epoch) = hints.current_leader(name.as_deref(), p.partition_index);
            p.current_leader = fetch_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch);
        }
    }
    resp.node_endpoints = hints
        .nodes
        .into_iter()
        .map(|(id, (host, port, rack))| {
            fetch_response::NodeEndpoint::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::image::BrokerRegistration;
    use crate::controller::record::{Endpoint, MetadataCommand, MetadataRecord, PartitionRegistration};
    use kafka_protocol::messages::{fetch_response as f, produce_response as p};

    /// Broker 2 (live) leads t-0, broker 3 (fenced) leads t-1.
    fn image() -> Arc<MetadataImage> {
        let mut image = MetadataImage::default();
        for (id, fenced) in [(2, false), (3, true)] {
            image.brokers.insert(
                id,
                BrokerRegistration {
                    id,
                    epoch: 1,
                    incarnation_id: uuid::Uuid::new_v4(),
                    endpoints: vec![Endpoint {
                        name: "PLAINTEXT".into(),
                        host: format!("host{id}"),
                        port: 9000 + id,
                    }],
                    rack: None,
                    fenced,
                    in_controlled_shutdown: false,
                    log_dir_offline: false,
                },
            );
        }
        let create = MetadataCommand::one(MetadataRecord::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::new_v4(),
            partitions: vec![
                PartitionRegistration::new(vec![2, 1]),
                PartitionRegistration::new(vec![3, 1]),
            ],
            configs: Default::default(),
        });
        assert_eq!(image.apply(1, &create).refused, None);
        Arc::new(image)
    }

    #[test]
    fn produce_errors_that_mean_the_leader_moved_name_it_with_its_endpoint() {
        let not_leader = ResponseError::NotLeaderOrFollower.code();
        let mut resp = ProduceResponse::default().with_responses(vec![
            p::TopicProduceResponse::default().with_partition_responses(vec![
                p::PartitionProduceResponse::default()
                    .with_index(0)
                    .with_error_code(not_leader),
                p::PartitionProduceResponse::default()
                    .with_index(1)
                    .with_error_code(not_leader),
                p::PartitionProduceResponse::default()
                    .with_index(2)
                    .with_error_code(not_leader),
            ]),
            // Another error, and an unknown topic, get no hint beyond "unknown".
            p::TopicProduceResponse::default().with_partition_responses(vec![p::PartitionProduceResponse::default()
                .with_index(0)
                .with_error_code(not_leader)]),
        ]);
        resp.responses[0].partition_responses.push(
            p::PartitionProduceResponse::default()
                .with_index(0)
                .with_error_code(ResponseError::RequestTimedOut.code()),
        );
        let names = [Some("t".to_string()), None];
        produce_hints(LeaderHints::new(image(), "PLAINTEXT"), &names, &mut resp);
        let leaders: Vec<(i32, i32)> = resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .map(|p| (p.current_leader.leader_id.0, p.current_leader.leader_epoch))
            .collect();
        assert_eq!(leaders, vec![(2, 0), (3, 0), (-1, -1), (-1, -1), (-1, -1)]);
        // Only the live leader's endpoint is listed (Kafka's getAliveBrokerNode).
        let nodes: Vec<(i32, String, i32)> = resp
            .node_endpoints
            .iter()
            .map(|n| (n.node_id.0, n.host.to_string(), n.port))
            .collect();
        assert_eq!(nodes, vec![(2, "host2".to_string(), 9002)]);
    }

    #[test]
    fn fetch_hints_cover_a_fenced_epoch_too() {
        let mut resp = FetchResponse::default().with_responses(vec![f::FetchableTopicResponse::default()
            .with_partitions(vec![
                f::PartitionData::default()
                    .with_partition_index(0)
                    .with_error_code(ResponseError::FencedLeaderEpoch.code()),
                f::PartitionData::default().with_partition_index(1),
            ])]);
        fetch_hints(LeaderHints::new(image(), "PLAINTEXT"), &[Some("t".into())], &mut resp);
        let p = &resp.responses[0].partitions;
        assert_eq!(
            (p[0].current_leader.leader_id.0, p[0].current_leader.leader_epoch),
            (2, 0)
        );
        assert_eq!(p[1].current_leader.leader_id.0, -1, "no error, no hint");
        assert_eq!(resp.node_endpoints.len(), 1);
    }
}
