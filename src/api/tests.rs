//! Every API at every version we accept, against a live broker: the response must encode (the
//! crate refuses fields a version lacks), decode on the client side, and carry no error where
//! the request was valid. Old versions are what kafka-python, kafkajs and old librdkafka send.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use super::versions::supported;
use crate::server::tests::{batch, coordinator_ready, Client, TestBroker};

pub(super) type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub(super) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub(super) fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let r = supported(key).map(|r| (r.min, r.max)).unwrap_or((0, -1));
    r.0..=r.1
}

pub(super) async fn create(
    c: &mut Client,
    topic: &str,
    partitions: i32,
) -> Result<uuid::Uuid, Box<dyn std::error::Error + Send + Sync>> {
    let req = CreateTopicsRequest::default().with_timeout_ms(1000).with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1),
    ]);
    let resp = c.request(&req, 7).await?.ok_or("closed")?;
    let t = resp.topics.first().ok_or("no topic")?;
    assert_eq!(t.error_code, 0, "{t:?}");
    Ok(t.topic_id)
}

#[tokio::test]
async fn every_api_at_every_version() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    let topic_id = create(&mut c, "t", 1).await?;

    for v in range(ApiKey::ApiVersions) {
        let resp = c.request(&ApiVersionsRequest::default(), v).await?.ok_or("closed")?;
        assert_eq!(resp.error_code, 0, "ApiVersions v{v}");
    }
    for v in range(ApiKey::Metadata) {
        let req = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("t")))
        ]));
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        let t = resp.topics.first().ok_or("no topic")?;
        assert_eq!(t.error_code, 0, "Metadata v{v}");
        assert_eq!(t.partitions.len(), 1, "Metadata v{v}");
        if v >= 10 {
            assert_eq!(t.topic_id, topic_id);
        }
    }
    for v in range(ApiKey::Produce) {
        let topic = produce_request::TopicProduceData::default().with_partition_data(vec![
            produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&["a", "b"], Compression::Gzip)?)),
        ]);
        let topic = if v >= 13 {
            topic.with_topic_id(topic_id)
        } else {
            topic.with_name(name("t"))
        };
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![topic]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or("no partition")?;
        assert_eq!(p.error_code, 0, "Produce v{v}: {p:?}");
    }
    for v in range(ApiKey::Fetch) {
        let topic =
            fetch_request::FetchTopic::default().with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)]);
        let topic = if v >= 13 {
            topic.with_topic_id(topic_id)
        } else {
            topic.with_topic(name("t"))
        };
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![topic]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        assert_eq!(resp.error_code, 0, "Fetch v{v}");
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or("no partition")?;
        assert_eq!(p.error_code, 0, "Fetch v{v} {p:?}");
        assert!(p.records.as_ref().is_some_and(|r: &Bytes| !r.is_empty()), "Fetch v{v}");
    }
    for v in range(ApiKey::ListOffsets) {
        for ts in [-1i64, -2, 0] {
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(ts)])]);
            let resp = c.request(&req, v).await?.ok_or("closed")?;
            let p = resp
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or("no partition")?;
            assert_eq!(p.error_code, 0, "ListOffsets v{v} ts {ts}");
            let expected = if ts == -1 {
                2 * (i64::from(*range(ApiKey::Produce).end()) - 2)
            } else {
                0
            };
            assert_eq!(p.offset, expected, "ListOffsets v{v} ts {ts}");
        }
    }
    for v in range(ApiKey::InitProducerId) {
        let resp = c
            .request(
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(1000),
                v,
            )
            .await?
            .ok_or("closed")?;
        assert_eq!(resp.error_code, 0, "InitProducerId v{v}");
        assert!(resp.producer_id.0 >= 0);
    }
    for v in range(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t")),
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("1")),
        ]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        for r in &resp.results {
            assert_eq!(r.error_code, 0, "DescribeConfigs v{v}");
            assert!(!r.configs.is_empty(), "DescribeConfigs v{v} {r:?}");
        }
    }
    for v in range(ApiKey::AlterConfigs) {
        let req =
            AlterConfigsRequest::default().with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("3600000")))])]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        assert_eq!(
            resp.responses.first().map(|r| r.error_code),
            Some(0),
            "AlterConfigs v{v}"
        );
    }
    for v in range(ApiKey::IncrementalAlterConfigs) {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("segment.bytes"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str("1048576")))]),
        ]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        assert_eq!(
            resp.responses.first().map(|r| r.error_code),
            Some(0),
            "IncrementalAlterConfigs v{v}"
        );
    }
    for v in range(ApiKey::DescribeCluster) {
        let resp = c
            .request(&DescribeClusterRequest::default(), v)
            .await?
            .ok_or("closed")?;
        assert_eq!(resp.error_code, 0, "DescribeCluster v{v}");
        assert_eq!(resp.brokers.len(), 1);
    }
    for v in range(ApiKey::OffsetForLeaderEpoch) {
        let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(name("t"))
                .with_partitions(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(0)
                        .with_leader_epoch(0),
                ]),
        ]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or("no partition")?;
        assert_eq!((p.error_code, p.leader_epoch), (0, 0), "OffsetForLeaderEpoch v{v}");
        assert!(p.end_offset > 0);
    }
    for v in range(ApiKey::DeleteRecords) {
        let req = DeleteRecordsRequest::default().with_timeout_ms(1000).with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(i64::from(v) + 1)]),
        ]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or("no partition")?;
        assert_eq!(
            (p.error_code, p.low_watermark),
            (0, i64::from(v) + 1),
            "DeleteRecords v{v}"
        );
    }
    for v in range(ApiKey::CreatePartitions) {
        let topic = format!("cp{v}");
        create(&mut c, &topic, 1).await?;
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name(&topic))
                .with_count(3)]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        assert_eq!(
            resp.results.first().map(|r| r.error_code),
            Some(0),
            "CreatePartitions v{v}"
        );
    }
    for v in range(ApiKey::CreateTopics) {
        let req = CreateTopicsRequest::default().with_timeout_ms(1000).with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(name(&format!("ct{v}")))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        assert_eq!(resp.topics.first().map(|t| t.error_code), Some(0), "CreateTopics v{v}");
    }
    for v in range(ApiKey::DeleteTopics) {
        let topic = format!("ct{}", 2 + (v - 1).min(5));
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(name(&topic)))
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
        };
        let resp = c.request(&req.with_timeout_ms(1000), v).await?.ok_or("closed")?;
        assert_eq!(
            resp.responses.first().map(|t| t.error_code),
            Some(0),
            "DeleteTopics v{v} {topic}"
        );
    }
    broker.stop().await
}

#[tokio::test]
async fn create_topics_reports_kafka_errors() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create(&mut c, "dup", 1).await?;
    let cases: Vec<(&str, i32, i16, i16)> = vec![
        ("dup", 1, 1, 36),      // TOPIC_ALREADY_EXISTS
        ("bad/name", 1, 1, 17), // INVALID_TOPIC_EXCEPTION
        ("zero", 0, 1, 37),     // INVALID_PARTITIONS
        ("rf3", 1, 3, 38),      // INVALID_REPLICATION_FACTOR
    ];
    for (topic, partitions, rf, code) in cases {
        let req = CreateTopicsRequest::default().with_timeout_ms(1000).with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(rf),
        ]);
        let resp = c.request(&req, 7).await?.ok_or("closed")?;
        assert_eq!(resp.topics.first().map(|t| t.error_code), Some(code), "{topic}");
    }
    // validate_only creates nothing.
    let req = CreateTopicsRequest::default()
        .with_validate_only(true)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(name("ghost"))
            .with_num_partitions(-1)
            .with_replication_factor(-1)]);
    let resp = c.request(&req, 7).await?.ok_or("closed")?;
    assert_eq!(
        resp.topics.first().map(|t| (t.error_code, t.num_partitions)),
        Some((0, 1))
    );
    let md = MetadataRequest::default()
        .with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("ghost")))
        ]))
        .with_allow_auto_topic_creation(false);
    let resp = c.request(&md, 12).await?.ok_or("closed")?;
    assert_eq!(resp.topics.first().map(|t| t.error_code), Some(3));
    broker.stop().await
}

mod fuzz {
    //! Random request bodies behind a valid header, for every API and version we accept, go
    //! through the whole request path (`handle_frame`): whatever the bytes, the broker answers
    //! or closes the connection, and never panics or aborts.

    use std::sync::Arc;

    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::ApiKey;
    use proptest::prelude::*;

    use crate::api::{handle_frame, versions};
    use crate::broker::Broker;
    use crate::config::BrokerConfig;
    use crate::server::connection::ConnectionInfo;

    fn apis() -> Vec<(i16, i16)> {
        versions::advertised()
            // Every advertised version: the crate's and legacy.rs's.
            .flat_map(|(key, min, max)| (min..=max).map(move |v| (key as i16, v)))
            .collect()
    }

    fn frame(key: i16, version: i16, body: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(1);
        b.put_i16(-1);
        let flexible = ApiKey::try_from(key)
            .map(|k| k.request_header_version(version) >= 2)
            .unwrap_or(false);
        if flexible {
            b.put_u8(0);
        }
        b.extend_from_slice(body);
        b.freeze()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]
        #[test]
        fn random_bodies_never_crash(
            api in proptest::sample::select(apis()),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            thread_local! {
                static FIXTURE: (tokio::runtime::Runtime, Arc<Broker>, tempfile::TempDir) = {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let config = BrokerConfig::load(None, &[format!("log.dirs={}", dir.path().display())]).expect("config");
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    let tasks = crate::supervisor::Supervisor::new().0;
                    let (_stop, shutdown) = tokio::sync::watch::channel(false);
                    let started = rt.block_on(crate::broker::start(config, &tasks, shutdown)).expect("broker");
                    std::mem::forget(_stop);
                    (rt, started.broker, dir)
                };
            }
            FIXTURE.with(|(rt, broker, _)| {
                let info = ConnectionInfo { peer: "127.0.0.1:1".parse().expect("addr"), listener: "PLAINTEXT".into(), sasl: None };
                // A produce with acks=-1 could wait on the flusher, which is not running here:
                // bound every request.
                let _ = rt.block_on(async {
                    tokio::time::timeout(std::time::Duration::from_secs(2), handle_frame(broker, frame(api.0, api.1, &body), &info, &crate::security::Principal::anonymous(), &mut crate::api::response_buf::ResponseBuf::new(), std::time::Instant::now())).await
                });
            });
        }
    }
}

async fn describe_topic_config(
    c: &mut Client,
    topic: &str,
    key: &str,
) -> Result<(String, i8), Box<dyn std::error::Error + Send + Sync>> {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.into()))
            .with_configuration_keys(Some(vec![StrBytes::from_string(key.into())])),
    ]);
    let resp = c.request(&req, 4).await?.ok_or("closed")?;
    let entry = resp.results.first().and_then(|r| r.configs.first()).ok_or("no entry")?;
    Ok((
        entry.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
        entry.config_source,
    ))
}

async fn incremental(
    c: &mut Client,
    topic: &str,
    key: &str,
    op: i8,
    value: Option<&str>,
) -> Result<i16, Box<dyn std::error::Error + Send + Sync>> {
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.into()))
            .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_string(key.into()))
                .with_config_operation(op)
                .with_value(value.map(|v| StrBytes::from_string(v.into())))]),
    ]);
    let resp = c.request(&req, 1).await?.ok_or("closed")?;
    Ok(resp.responses.first().map(|r| r.error_code).unwrap_or(-1))
}

#[tokio::test]
async fn topic_configs_alter_persist_and_apply_live() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create(&mut c, "cfg", 1).await?;
    assert_eq!(
        describe_topic_config(&mut c, "cfg", "max.message.bytes").await?,
        ("1048588".into(), 5)
    );
    // SET, visible as a topic override, and applied to the open log at once.
    assert_eq!(
        incremental(&mut c, "cfg", "max.message.bytes", 0, Some("100")).await?,
        0
    );
    assert_eq!(
        describe_topic_config(&mut c, "cfg", "max.message.bytes").await?,
        ("100".into(), 1)
    );
    let big = batch(&["x".repeat(300).as_str()], Compression::None)?;
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name("cfg"))
            .with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(big.clone()))])]);
    let code = |r: Option<ProduceResponse>| {
        r.and_then(|r| r.responses.first()?.partition_responses.first().map(|p| p.error_code))
    };
    assert_eq!(code(c.request(&req, 9).await?), Some(10), "MESSAGE_TOO_LARGE");
    // Bad values and unknown keys are refused with INVALID_CONFIG; unknown topics with 3.
    assert_eq!(incremental(&mut c, "cfg", "retention.ms", 0, Some("soon")).await?, 40);
    assert_eq!(incremental(&mut c, "cfg", "no.such.key", 0, Some("1")).await?, 40);
    assert_eq!(incremental(&mut c, "nope", "retention.ms", 0, Some("1")).await?, 3);
    // DELETE reverts to the default.
    assert_eq!(incremental(&mut c, "cfg", "max.message.bytes", 1, None).await?, 0);
    assert_eq!(
        describe_topic_config(&mut c, "cfg", "max.message.bytes").await?,
        ("1048588".into(), 5)
    );
    assert_eq!(code(c.request(&req, 9).await?), Some(0));
    // AlterConfigs replaces the whole set; the override survives a restart.
    let req =
        AlterConfigsRequest::default().with_resources(vec![alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("cfg"))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("60000")))])]);
    assert_eq!(
        c.request(&req, 2)
            .await?
            .and_then(|r| r.responses.first().map(|x| x.error_code)),
        Some(0)
    );
    drop(c);
    let dir = broker.stop_keeping_dir().await?;
    let broker = TestBroker::start_in(dir, &[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    assert_eq!(
        describe_topic_config(&mut c, "cfg", "retention.ms").await?,
        ("60000".into(), 1)
    );
    broker.stop().await
}

#[tokio::test]
async fn fetch_and_list_offsets_check_the_leader_epoch() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create(&mut c, "ep", 1).await?;
    for (epoch, code) in [(-1, 0i16), (0, 0), (5, 75)] {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("ep"))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(epoch)
                    .with_partition_max_bytes(1 << 20)])]);
        let resp = c.request(&req, 12).await?.ok_or("closed")?;
        let got = resp
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .map(|p| p.error_code);
        assert_eq!(got, Some(code), "Fetch with current leader epoch {epoch}");
        let req = ListOffsetsRequest::default().with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name("ep"))
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_current_leader_epoch(epoch)
                .with_timestamp(-1)])]);
        let resp = c.request(&req, 7).await?.ok_or("closed")?;
        let got = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .map(|p| p.error_code);
        assert_eq!(got, Some(code), "ListOffsets with current leader epoch {epoch}");
    }
    broker.stop().await
}

/// One consumer's whole group life at every version of each group API: find the coordinator,
/// join (with MEMBER_ID_REQUIRED from v4), sync, heartbeat, commit and fetch offsets, describe
/// and list, leave, then delete offsets and the group. Version v of each API gets its own group.
#[tokio::test]
async fn group_apis_at_every_version() -> TestResult {
    let broker = TestBroker::start(&["group.initial.rebalance.delay.ms=0"]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create(&mut c, "t", 2).await?;
    let group = |prefix: &str, v: i16| GroupId(StrBytes::from_string(format!("{prefix}{v}")));
    // The first lookup creates __consumer_offsets and answers COORDINATOR_NOT_AVAILABLE (Kafka's
    // answer); this waits for a served coordinator.
    coordinator_ready(&mut c, "g").await?;

    for v in range(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from_static_str("g")])
        } else {
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
        };
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        let (code, port) = match resp.coordinators.first() {
            Some(k) if v >= 4 => (k.error_code, k.port),
            _ => (resp.error_code, resp.port),
        };
        assert_eq!((code, port), (0, i32::from(broker.addr.port())), "FindCoordinator v{v}");
    }
    // The coordinator loads each group's partition before serving it (clients retry
    // COORDINATOR_LOAD_IN_PROGRESS; this test waits instead).
    for prefix in ["g", "missing", "none"] {
        for v in 0..16 {
            coordinator_ready(&mut c, &format!("{prefix}{v}")).await?;
        }
    }

    // A full join + sync + heartbeat + commit for each JoinGroup version; the others cycle
    // through their versions alongside (clamped to their own range).
    let clamp = |key: ApiKey, v: i16| {
        let r = range(key);
        v.clamp(*r.start(), *r.end())
    };
    for v in range(ApiKey::JoinGroup) {
        let g = group("g", v);
        let protocol = join_group_request::JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff"));
        let join = |member: &str| {
            JoinGroupRequest::default()
                .with_group_id(g.clone())
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(if v >= 1 { 10_000 } else { -1 })
                .with_member_id(StrBytes::from_string(member.to_string()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![protocol.clone()])
        };
        let mut resp = c.request(&join(""), v).await?.ok_or("closed")?;
        if v >= 4 {
            assert_eq!(resp.error_code, 79, "JoinGroup v{v}: MEMBER_ID_REQUIRED first");
            let id = resp.member_id.to_string();
            resp = c.request(&join(&id), v).await?.ok_or("closed")?;
        }
        assert_eq!(resp.error_code, 0, "JoinGroup v{v}: {resp:?}");
        assert_eq!(resp.generation_id, 1, "JoinGroup v{v}");
        assert_eq!(resp.leader, resp.member_id, "JoinGroup v{v}");
        assert_eq!(resp.members.len(), 1, "JoinGroup v{v}");
        assert_eq!(resp.protocol_name.as_deref(), Some("range"), "JoinGroup v{v}");
        let member = resp.member_id.clone();

        let sv = clamp(ApiKey::SyncGroup, v);
        let mut sync = SyncGroupRequest::default()
            .with_group_id(g.clone())
            .with_generation_id(1)
            .with_member_id(member.clone())
            .with_assignments(vec![sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(Bytes::from_static(b"assigned"))]);
        if sv >= 5 {
            sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
            sync.protocol_name = Some(StrBytes::from_static_str("range"));
        }
        let synced = c.request(&sync, sv).await?.ok_or("closed")?;
        assert_eq!(synced.error_code, 0, "SyncGroup v{sv}");
        assert_eq!(synced.assignment, Bytes::from_static(b"assigned"), "SyncGroup v{sv}");

        let hv = clamp(ApiKey::Heartbeat, v);
        let hb = HeartbeatRequest::default()
            .with_group_id(g.clone())
            .with_generation_id(1)
            .with_member_id(member.clone());
        let beat = c.request(&hb, hv).await?.ok_or("closed")?;
        assert_eq!(beat.error_code, 0, "Heartbeat v{hv}");
        let stale = c
            .request(&hb.clone().with_generation_id(7), hv)
            .await?
            .ok_or("closed")?;
        assert_eq!(stale.error_code, 22, "Heartbeat v{hv}: ILLEGAL_GENERATION");

        let cv = clamp(ApiKey::OffsetCommit, v);
        let commit = OffsetCommitRequest::default()
            .with_group_id(g.clone())
            .with_generation_id_or_member_epoch(1)
            .with_member_id(member.clone())
            .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42)
                        .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(9)
                        .with_committed_offset(1),
                ])]);
        let committed = c.request(&commit, cv).await?.ok_or("closed")?;
        let codes: Vec<i16> = committed
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect();
        assert_eq!(codes, vec![0, 3], "OffsetCommit v{cv}: partition 9 does not exist");
        let missing = c
            .request(&commit.clone().with_group_id(group("missing", v)), cv)
            .await?
            .ok_or("closed")?;
        assert_eq!(
            missing
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .map(|p| p.error_code),
            Some(if cv >= 9 { 69 } else { 22 }),
            "OffsetCommit v{cv}: a member's commit to a group that does not exist"
        );
        let wrong_gen = c
            .request(&commit.clone().with_generation_id_or_member_epoch(5), cv)
            .await?
            .ok_or("closed")?;
        assert_eq!(
            wrong_gen
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .map(|p| p.error_code),
            Some(22),
            "OffsetCommit v{cv}: ILLEGAL_GENERATION"
        );

        let fv = clamp(ApiKey::OffsetFetch, v);
        let topics = vec![offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(name("t"))
            .with_partition_indexes(vec![0, 1])];
        let fetch = if fv >= 8 {
            OffsetFetchRequest::default().with_groups(vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(g.clone())
                .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0, 1])]))])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(g.clone())
                .with_topics(Some(topics))
        };
        let fetched = c.request(&fetch, fv).await?.ok_or("closed")?;
        let offsets: Vec<i64> = if fv >= 8 {
            fetched
                .groups
                .iter()
                .flat_map(|g| {
                    g.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.committed_offset))
                })
                .collect()
        } else {
            fetched
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.committed_offset))
                .collect()
        };
        assert_eq!(offsets, vec![42, -1], "OffsetFetch v{fv}");

        let dv = clamp(ApiKey::DescribeGroups, v);
        let described = c
            .request(&DescribeGroupsRequest::default().with_groups(vec![g.clone()]), dv)
            .await?
            .ok_or("closed")?;
        let d = described.groups.first().ok_or("no group")?;
        assert_eq!(
            (d.error_code, d.group_state.as_str()),
            (0, "Stable"),
            "DescribeGroups v{dv}"
        );
        assert_eq!(d.members.len(), 1, "DescribeGroups v{dv}");

        let lv = clamp(ApiKey::ListGroups, v);
        let mut list = ListGroupsRequest::default();
        if lv >= 4 {
            list.states_filter = vec![StrBytes::from_static_str("Stable")];
        }
        let listed = c.request(&list, lv).await?.ok_or("closed")?;
        assert!(listed.groups.iter().any(|l| l.group_id == g), "ListGroups v{lv}");

        let gv = clamp(ApiKey::LeaveGroup, v);
        let leave = if gv >= 3 {
            LeaveGroupRequest::default().with_group_id(g.clone()).with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(member.clone()),
            ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(g.clone())
                .with_member_id(member.clone())
        };
        let left = c.request(&leave, gv).await?.ok_or("closed")?;
        assert_eq!(left.error_code, 0, "LeaveGroup v{gv}");
        assert!(left.members.iter().all(|m| m.error_code == 0), "LeaveGroup v{gv}");
    }

    for v in range(ApiKey::DescribeGroups) {
        let req = DescribeGroupsRequest::default().with_groups(vec![group("none", v)]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        let d = resp.groups.first().ok_or("no group")?;
        let want = if v >= 6 { 69 } else { 0 };
        assert_eq!(
            (d.error_code, d.group_state.as_str()),
            (want, "Dead"),
            "DescribeGroups v{v} unknown group"
        );
    }

    // Groups are Empty now, with offsets: OffsetDelete then DeleteGroups at every version.
    let od = OffsetDeleteRequest::default()
        .with_group_id(group("g", 0))
        .with_topics(vec![offset_delete_request::OffsetDeleteRequestTopic::default()
            .with_name(name("t"))
            .with_partitions(vec![
                offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0),
            ])]);
    let deleted = c.request(&od, 0).await?.ok_or("closed")?;
    assert_eq!(deleted.error_code, 0);
    let missing = c
        .request(&od.clone().with_group_id(group("none", 0)), 0)
        .await?
        .ok_or("closed")?;
    assert_eq!(missing.error_code, 69, "GROUP_ID_NOT_FOUND");
    for v in range(ApiKey::DeleteGroups) {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![group("g", v), group("none", v)]);
        let resp = c.request(&req, v).await?.ok_or("closed")?;
        let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 69], "DeleteGroups v{v}");
    }
    Ok(())
}

/// Offsets committed (and acknowledged) survive both a clean restart and a crash, and deleting
/// the topic takes them away.
#[tokio::test]
async fn committed_offsets_survive_restart_and_crash() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create(&mut c, "t", 1).await?;
    coordinator_ready(&mut c, "g").await?;
    let commit = |offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ])])
    };
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(name("t"))
            .with_partition_indexes(vec![0])]));
    let committed = |resp: &OffsetFetchResponse| {
        resp.topics
            .first()
            .and_then(|t| t.partitions.first())
            .map(|p| p.committed_offset)
    };
    let resp = c.request(&commit(5), 7).await?.ok_or("closed")?;
    assert_eq!(
        resp.topics
            .first()
            .and_then(|t| t.partitions.first())
            .map(|p| p.error_code),
        Some(0)
    );

    let dir = broker.stop_keeping_dir().await?;
    let broker = TestBroker::start_in(dir, &[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    coordinator_ready(&mut c, "g").await?;
    assert_eq!(
        committed(&c.request(&fetch, 7).await?.ok_or("closed")?),
        Some(5),
        "clean restart"
    );
    c.request(&commit(9), 7).await?.ok_or("closed")?;

    let dir = broker.crash().await;
    let broker = TestBroker::start_in(dir, &[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    coordinator_ready(&mut c, "g").await?;
    assert_eq!(
        committed(&c.request(&fetch, 7).await?.ok_or("closed")?),
        Some(9),
        "after a crash"
    );

    let delete = DeleteTopicsRequest::default().with_topic_names(vec![name("t")]);
    c.request(&delete, 4).await?.ok_or("closed")?;
    create(&mut c, "t", 1).await?;
    assert_eq!(
        committed(&c.request(&fetch, 7).await?.ok_or("closed")?),
        Some(-1),
        "topic deleted"
    );
    broker.stop().await
}

/// The Prometheus endpoint of a live broker: recorded request metrics, per-topic counters, and
/// the scrape-time partition and group figures, in text format; unknown paths get 404.
#[tokio::test]
async fn metrics_endpoint_reports_traffic_and_lag() -> TestResult {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let listener = format!("metrics.listener=127.0.0.1:{port}");
    let broker = TestBroker::start(&[listener.as_str()]).await?;
    let mut c = Client::connect(broker.addr).await?;
    coordinator_ready(&mut c, "lagging").await?;
    create(&mut c, "metered", 2).await?;
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name("metered"))
            .with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_index(1)
                .with_records(Some(batch(&["a", "b", "c"], Compression::None)?))])]);
    c.request(&produce, 9).await?.ok_or("closed")?;
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("lagging")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(name("metered"))
            .with_partitions(vec![
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(1),
            ])]);
    c.request(&commit, 8).await?.ok_or("closed")?;
    // An error to count: a partition that does not exist.
    let bad = commit
        .clone()
        .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(name("metered"))
            .with_partitions(vec![
                offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(7),
            ])]);
    c.request(&bad, 8).await?.ok_or("closed")?;

    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await?;
        let mut body = String::new();
        s.read_to_string(&mut body).await?;
        Ok::<String, std::io::Error>(body)
    };
    let page = get("/metrics").await?;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page:.200}");
    for line in [
        "sluice_up 1",
        "sluice_topic_messages_in_total{topic=\"metered\"} 3",
        "sluice_partition_log_end_offset{topic=\"metered\",partition=\"1\"} 3",
        "sluice_partition_log_end_offset{topic=\"metered\",partition=\"0\"} 0",
        "sluice_consumer_group_committed_offset{group=\"lagging\",topic=\"metered\",partition=\"1\"} 1",
        "sluice_consumer_group_lag{group=\"lagging\",topic=\"metered\",partition=\"1\"} 2",
        "sluice_under_replicated_partitions 0",
        "sluice_transactions{state=\"Ongoing\"} 0",
        "sluice_partition_last_stable_offset{topic=\"metered\",partition=\"1\"} 3",
    ] {
        assert!(page.lines().any(|l| l == line), "missing `{line}` in:\n{page}");
    }
    // The recorder is process-wide: other tests' brokers count too, so these are lower bounds.
    for series in [
        "sluice_partitions ",
        "sluice_consumer_groups{state=\"Empty\"} ",
        "sluice_requests_total{api=\"Produce\"} ",
        "sluice_request_errors_total{api=\"OffsetCommit\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} ",
    ] {
        let value = page
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .ok_or_else(|| format!("missing {series}"))?;
        assert!(value.parse::<f64>()? >= 1.0, "{series}{value}");
    }
    assert!(page.contains("sluice_request_seconds_bucket{api=\"Produce\",le=\"0.001\"}"));
    assert!(get("/nope").await?.starts_with("HTTP/1.1 404"));
    broker.stop().await
}
