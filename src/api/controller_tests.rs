//! The controller APIs at every version we accept, against a live single-node broker (a quorum
//! of one): DescribeQuorum, ElectLeaders, Alter/ListPartitionReassignments. The cluster suite
//! drives them on three nodes.

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
        // A partition named twice is answered once.
        let twice = ElectLeadersRequest::default()
            .with_timeout_ms(5_000)
            .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default()
                .with_topic(name("t"))
                .with_partitions(vec![0, 0])]));
        let resp = c.request(&twice, v).await?.ok_or("closed")?;
        let answers: usize = resp
            .replica_election_results
            .iter()
            .map(|t| t.partition_result.len())
            .sum();
        assert_eq!(answers, 1, "ElectLeaders v{v}: {resp:?}");
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

#[tokio::test]
async fn reassignment_apis_at_every_version() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create(&mut c, "t", 2).await?;
    for v in range(ApiKey::AlterPartitionReassignments) {
        let ask = |topic: &str, partition: i32, replicas: Option<Vec<i32>>, allow: bool| {
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(5_000)
                .with_allow_replication_factor_change(allow)
                .with_topics(vec![alter_partition_reassignments_request::ReassignableTopic::default(
                )
                .with_name(name(topic))
                .with_partitions(vec![
                    alter_partition_reassignments_request::ReassignablePartition::default()
                        .with_partition_index(partition)
                        .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect())),
                ])])
        };
        let code = |resp: &AlterPartitionReassignmentsResponse| {
            resp.responses
                .first()
                .and_then(|t| t.partitions.first())
                .map(|p| p.error_code)
        };
        let cases: &[(&str, i32, Option<Vec<i32>>, i16)] = &[
            ("t", 0, Some(vec![1]), 0),     // already so: nothing to do
            ("t", 0, None, 85),             // NO_REASSIGNMENT_IN_PROGRESS
            ("t", 0, Some(vec![2]), 39),    // INVALID_REPLICA_ASSIGNMENT: no broker 2
            ("t", 0, Some(vec![1, 1]), 39), // a broker twice
            ("t", 0, Some(vec![]), 39),     // empty
            ("nope", 0, Some(vec![1]), 3),  // UNKNOWN_TOPIC_OR_PARTITION
            ("t", 9, Some(vec![1]), 3),
        ];
        for (topic, partition, replicas, expected) in cases {
            let resp = c
                .request(&ask(topic, *partition, replicas.clone(), true), v)
                .await?
                .ok_or("closed")?;
            assert_eq!(resp.error_code, 0, "v{v}");
            assert_eq!(
                code(&resp),
                Some(*expected),
                "v{v} {topic}-{partition} to {replicas:?}: {resp:?}"
            );
        }
        if v >= 1 {
            // KIP-860: a target of another size is refused when not allowed (and echoed).
            let resp = c.request(&ask("t", 0, Some(vec![]), false), v).await?.ok_or("closed")?;
            assert_eq!(code(&resp), Some(39), "validated first");
            let resp = c
                .request(&ask("t", 1, Some(vec![1]), false), v)
                .await?
                .ok_or("closed")?;
            assert_eq!((code(&resp), resp.allow_replication_factor_change), (Some(0), false));
        }
    }
    for v in range(ApiKey::AddRaftVoter) {
        let listener = add_raft_voter_request::Listener::default()
            .with_name(kafka_protocol::protocol::StrBytes::from_static_str("CONTROLLER"))
            .with_host(kafka_protocol::protocol::StrBytes::from_static_str("127.0.0.1"))
            .with_port(9093);
        let req = AddRaftVoterRequest::default()
            .with_voter_id(2)
            .with_timeout_ms(1_000)
            .with_listeners(vec![listener]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        assert_eq!(
            resp.error_code, 42,
            "a quorum of one takes no voters (INVALID_REQUEST), v{v}: {resp:?}"
        );
        let other = req.with_cluster_id(Some(kafka_protocol::protocol::StrBytes::from_static_str("elsewhere")));
        let resp = c.request(&other, v).await?.ok_or("closed")?;
        assert_eq!(resp.error_code, 104, "INCONSISTENT_CLUSTER_ID, v{v}: {resp:?}");
    }
    for v in range(ApiKey::RemoveRaftVoter) {
        let resp = c
            .request(&RemoveRaftVoterRequest::default().with_voter_id(99), v)
            .await?
            .ok_or("closed")?;
        assert_eq!(resp.error_code, 127, "VOTER_NOT_FOUND, v{v}: {resp:?}");
        let resp = c
            .request(&RemoveRaftVoterRequest::default().with_voter_id(1), v)
            .await?
            .ok_or("closed")?;
        assert_eq!(
            resp.error_code, 42,
            "the last voter stays (INVALID_REQUEST), v{v}: {resp:?}"
        );
    }
    for v in range(ApiKey::UnregisterBroker) {
        let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(99));
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        assert_eq!(resp.error_code, 102, "BROKER_ID_NOT_REGISTERED, v{v}: {resp:?}");
    }
    for v in range(ApiKey::ListPartitionReassignments) {
        let all = ListPartitionReassignmentsRequest::default().with_timeout_ms(5_000);
        let resp = c.request(&all, v).await?.ok_or("closed")?;
        assert_eq!(
            (resp.error_code, resp.topics.len()),
            (0, 0),
            "nothing in progress: {resp:?}"
        );
        let named = all.with_topics(Some(vec![
            list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                .with_name(name("nope"))
                .with_partition_indexes(vec![0]),
        ]));
        let resp = c.request(&named, v).await?.ok_or("closed")?;
        assert_eq!(
            (resp.error_code, resp.topics.len()),
            (0, 0),
            "unknown topics are skipped"
        );
    }
    Ok(())
}

/// Dynamic broker configs (the replication throttle rates) per broker and cluster-wide, and the
/// topics' throttled replicas, as `kafka-configs` and `kafka-reassign-partitions --throttle` set
/// them; the cluster suite shows them holding a move back.
#[tokio::test]
async fn throttle_configs_are_dynamic() -> TestResult {
    use kafka_protocol::protocol::StrBytes;
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create(&mut c, "t", 1).await?;
    let alter = |kind: i8, name: &'static str, key: &'static str, op: i8, value: Option<&'static str>| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(StrBytes::from_static_str(name))
                .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(key))
                    .with_config_operation(op)
                    .with_value(value.map(StrBytes::from_static_str))]),
        ])
    };
    /// (resource type, name, key, operation, value, expected code)
    type Case = (i8, &'static str, &'static str, i8, Option<&'static str>, i16);
    let cases: &[Case] = &[
        (4, "1", "leader.replication.throttled.rate", 0, Some("1000"), 0),
        (4, "", "follower.replication.throttled.rate", 0, Some("2000"), 0),
        (4, "1", "num.partitions", 0, Some("3"), 42), // not dynamic: INVALID_REQUEST
        (4, "1", "leader.replication.throttled.rate", 0, Some("-5"), 40), // INVALID_CONFIG
        (4, "x", "leader.replication.throttled.rate", 0, Some("5"), 42),
        (2, "t", "leader.replication.throttled.replicas", 2, Some("0:1"), 0), // APPEND to a list
        (2, "t", "follower.replication.throttled.replicas", 0, Some("0-1"), 40),
    ];
    for (kind, name, key, op, value, code) in cases {
        let resp = c
            .request(&alter(*kind, name, key, *op, *value), 1)
            .await?
            .ok_or("closed")?;
        let got = resp.responses.first().map(|r| r.error_code);
        assert_eq!(got, Some(*code), "{kind} '{name}' {key} {op} {value:?}: {resp:?}");
    }
    let describe = |name: &'static str, kind: i8| {
        DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(StrBytes::from_static_str(name)),
        ])
    };
    let entries = |resp: DescribeConfigsResponse| -> Vec<(String, String, i8)> {
        resp.results
            .into_iter()
            .flat_map(|r| r.configs)
            .filter(|e| e.name.contains("throttled"))
            .map(|e| {
                (
                    e.name.to_string(),
                    e.value.map(|v| v.to_string()).unwrap_or_default(),
                    e.config_source,
                )
            })
            .collect()
    };
    let own = entries(c.request(&describe("1", 4), 4).await?.ok_or("closed")?);
    assert_eq!(
        own,
        [
            ("follower.replication.throttled.rate".to_string(), "2000".to_string(), 3),
            ("leader.replication.throttled.rate".to_string(), "1000".to_string(), 2)
        ],
        "its own value, and the cluster default under it"
    );
    let default = entries(c.request(&describe("", 4), 4).await?.ok_or("closed")?);
    assert_eq!(
        default,
        [("follower.replication.throttled.rate".to_string(), "2000".to_string(), 3)]
    );
    let topic = entries(c.request(&describe("t", 2), 4).await?.ok_or("closed")?);
    assert!(
        topic.contains(&(
            "leader.replication.throttled.replicas".to_string(),
            "0:1".to_string(),
            1
        )),
        "{topic:?}"
    );
    // Deleted: unbounded again (Kafka's default, Long.MAX_VALUE).
    let resp = c
        .request(&alter(4, "1", "leader.replication.throttled.rate", 1, None), 1)
        .await?
        .ok_or("closed")?;
    assert_eq!(resp.responses[0].error_code, 0);
    let own = entries(c.request(&describe("1", 4), 4).await?.ok_or("closed")?);
    assert!(
        own.contains(&("leader.replication.throttled.rate".to_string(), i64::MAX.to_string(), 5)),
        "{own:?}"
    );
    Ok(())
}

/// DescribeTopicPartitions pages partitions with a cursor (KIP-966), topics in name order.
#[tokio::test]
async fn describe_topic_partitions_pages() -> TestResult {
    use describe_topic_partitions_request::{Cursor, TopicRequest};
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    for (t, n) in [("b", 2), ("a", 3), ("c", 1)] {
        create(&mut c, t, n).await?;
    }
    let ask = |topics: &[&str], limit: i32, cursor: Option<(&str, i32)>| {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| TopicRequest::default().with_name(name(t)))
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| Cursor::default().with_topic_name(name(t)).with_partition_index(p)))
    };
    type Page = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);
    let page = |resp: DescribeTopicPartitionsResponse| -> Page {
        let topics = resp
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                (
                    name,
                    t.error_code,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect();
        (
            topics,
            resp.next_cursor.map(|c| (c.topic_name.to_string(), c.partition_index)),
        )
    };
    let named = ["c", "b", "a"];
    let p1 = page(c.request(&ask(&named, 2, None), 0).await?.ok_or("closed")?);
    assert_eq!(p1, (vec![("a".into(), 0, vec![0, 1])], Some(("a".into(), 2))));
    let p2 = page(c.request(&ask(&named, 2, Some(("a", 2))), 0).await?.ok_or("closed")?);
    assert_eq!(
        p2,
        (
            vec![("a".into(), 0, vec![2]), ("b".into(), 0, vec![0])],
            Some(("b".into(), 1))
        )
    );
    let p3 = page(c.request(&ask(&named, 2, Some(("b", 1))), 0).await?.ok_or("closed")?);
    assert_eq!(p3, (vec![("b".into(), 0, vec![1]), ("c".into(), 0, vec![0])], None));
    // A page that ends with a topic points at the next one.
    let p = page(c.request(&ask(&named, 3, None), 0).await?.ok_or("closed")?);
    assert_eq!(p.1, Some(("b".into(), 0)));
    // Unknown topics are answered as such; a cursor outside the named topics is refused.
    let p = page(c.request(&ask(&["nope", "c"], 10, None), 0).await?.ok_or("closed")?);
    assert_eq!(p, (vec![("c".into(), 0, vec![0]), ("nope".into(), 3, vec![])], None));
    let p = page(c.request(&ask(&["c"], 10, Some(("a", 0))), 0).await?.ok_or("closed")?);
    assert_eq!(p.0, vec![("c".into(), 42, vec![])]);
    // Every topic (none named), paged one partition at a time: each partition once.
    let mut seen = Vec::new();
    let mut cursor: Option<(String, i32)> = None;
    for _ in 0..20 {
        let resp = c
            .request(&ask(&[], 1, cursor.as_ref().map(|(t, p)| (t.as_str(), *p))), 0)
            .await?
            .ok_or("closed")?;
        let (topics, next) = page(resp);
        seen.extend(
            topics
                .into_iter()
                .flat_map(|(t, _, ps)| ps.into_iter().map(move |p| (t.clone(), p))),
        );
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    let mine: Vec<_> = seen.iter().filter(|(t, _)| t.len() == 1).cloned().collect();
    let expected: Vec<(String, i32)> = [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("c", 0)]
        .iter()
        .map(|(t, p)| (t.to_string(), *p))
        .collect();
    assert_eq!(mine, expected);
    Ok(())
}
