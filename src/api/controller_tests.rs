//! The controller APIs at every version we accept, against a live single-node broker (a quorum
//! of one): DescribeQuorum and ElectLeaders. The cluster suite drives them on three nodes.

use kafka_protocol::messages::*;

use super::tests::{create, name, range, TestResult};
use crate::server::tests::{Client, TestBroker};

#[tokio::test]
async fn controller_apis_at_every_version() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create(&mut c, "t", 1).await?;
    for v in range(ApiKey::DescribeQuorum) {
        let ask = |topic: &str, partition: i32| {
            DescribeQuorumRequest::default().with_topics(vec![describe_quorum_request::TopicData::default()
                .with_topic_name(name(topic))
                .with_partitions(vec![
                    describe_quorum_request::PartitionData::default().with_partition_index(partition)
                ])])
        };
        let resp = c.request(&ask("__cluster_metadata", 0), v).await?.ok_or("closed")?;
        assert_eq!(resp.error_code, 0, "DescribeQuorum v{v}");
        let p = &resp.topics.first().ok_or("no topic")?.partitions[0];
        assert_eq!(p.error_code, 0, "DescribeQuorum v{v}");
        assert_eq!(p.current_voters.len(), 1, "a quorum of one: {p:?}");
        assert_eq!(p.leader_id, p.current_voters[0].replica_id);
        assert!(p.leader_epoch >= 1 && p.high_watermark > 0, "{p:?}");
        assert!(p.current_voters[0].log_end_offset >= p.high_watermark, "{p:?}");
        assert!(p.observers.is_empty());
        let other = c.request(&ask("t", 0), v).await?.ok_or("closed")?;
        assert_eq!(other.error_code, 42, "INVALID_REQUEST for any other partition, v{v}");
    }
    for v in range(ApiKey::ElectLeaders) {
        let ask = |topic: &str, partition: i32, election_type: i8| {
            ElectLeadersRequest::default()
                .with_election_type(election_type)
                .with_timeout_ms(5_000)
                .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![partition])]))
        };
        let code = |resp: &ElectLeadersResponse| {
            resp.replica_election_results
                .first()
                .and_then(|t| t.partition_result.first())
                .map(|p| p.error_code)
        };
        // A single node leads its partitions already: ELECTION_NOT_NEEDED (84), both kinds.
        let resp = c.request(&ask("t", 0, 0), v).await?.ok_or("closed")?;
        assert_eq!(
            (resp.error_code, code(&resp)),
            (0, Some(84)),
            "ElectLeaders v{v}: {resp:?}"
        );
        if v >= 1 {
            let resp = c.request(&ask("t", 0, 1), v).await?.ok_or("closed")?;
            assert_eq!(code(&resp), Some(84), "ElectLeaders v{v}");
        }
        let resp = c.request(&ask("nope", 0, 0), v).await?.ok_or("closed")?;
        assert_eq!(code(&resp), Some(3), "UNKNOWN_TOPIC_OR_PARTITION, v{v}");
        // Every partition: those that need no election are left out.
        let all = ElectLeadersRequest::default()
            .with_timeout_ms(5_000)
            .with_topic_partitions(None);
        let resp = c.request(&all, v).await?.ok_or("closed")?;
        assert_eq!(resp.error_code, 0);
        assert!(
            resp.replica_election_results
                .iter()
                .all(|t| t.partition_result.is_empty()),
            "{resp:?}"
        );
        if v >= 1 {
            let resp = c.request(&ask("t", 0, 7), v).await?.ok_or("closed")?;
            assert_eq!(
                (resp.error_code, code(&resp)),
                (42, Some(42)),
                "an unknown election type, v{v}"
            );
        }
    }
    Ok(())
}
