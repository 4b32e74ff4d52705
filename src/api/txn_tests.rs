//! Transactions over the wire against a live broker: the coordinator's answers, read_committed
//! fetch and ListOffsets, aborted transactions, transactional offsets, fencing, the admin APIs,
//! and an open transaction surviving a crash.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

use crate::server::tests::{coordinator_ready, txn_coordinator_ready, Client, TestBroker};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn st(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Res<Bytes> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: crate::api::now_ms(),
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

/// Creates topic "t" with `partitions` partitions.
async fn create_t(c: &mut Client, partitions: i32) -> Res<()> {
    let create = CreateTopicsRequest::default().with_timeout_ms(1000).with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(st("t")))
            .with_num_partitions(partitions)
            .with_replication_factor(-1),
    ]);
    c.request(&create, 7).await?.ok_or("closed")?;
    Ok(())
}

async fn produce(c: &mut Client, partition: i32, records: Bytes) -> Res<i16> {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_transactional_id(Some(TransactionalId(st("tx"))))
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(st("t")))
            .with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let resp = c.request(&req, 9).await?.ok_or("closed")?;
    Ok(resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map_or(-1, |p| p.error_code))
}

async fn init(c: &mut Client, id: &str) -> Res<(i16, i64, i16)> {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(st(id))))
        .with_transaction_timeout_ms(60_000);
    let r = c.request(&req, 4).await?.ok_or("closed")?;
    Ok((r.error_code, r.producer_id.0, r.producer_epoch))
}

async fn add(c: &mut Client, pid: i64, epoch: i16, topic: &str, partitions: Vec<i32>) -> Res<Vec<i16>> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(st("tx")))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
            .with_name(TopicName(st(topic)))
            .with_partitions(partitions)]);
    let r = c.request(&req, 3).await?.ok_or("closed")?;
    Ok(r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| &t.results_by_partition)
        .map(|p| p.partition_error_code)
        .collect())
}

async fn end(c: &mut Client, pid: i64, epoch: i16, commit: bool) -> Res<i16> {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(st("tx")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    Ok(c.request(&req, 3).await?.ok_or("closed")?.error_code)
}

/// (records bytes, HW, LSO, aborted transactions) of a read_committed fetch of t-`partition`.
async fn fetch_committed(c: &mut Client, partition: i32) -> Res<(usize, i64, i64, Vec<(i64, i64)>)> {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(st("t")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r = c.request(&req, 11).await?.ok_or("closed")?;
    let p = r
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("no partition")?;
    assert_eq!(p.error_code, 0);
    let aborted = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    Ok((
        p.records.as_ref().map_or(0, Bytes::len),
        p.high_watermark,
        p.last_stable_offset,
        aborted,
    ))
}

async fn latest(c: &mut Client, partition: i32, isolation: i8) -> Res<i64> {
    let req = ListOffsetsRequest::default()
        .with_isolation_level(isolation)
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(st("t")))
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let r = c.request(&req, 5).await?.ok_or("closed")?;
    Ok(r.topics
        .first()
        .and_then(|t| t.partitions.first())
        .map_or(-2, |p| p.offset))
}

/// Polls `check` for up to 5 s (markers are written after EndTxn is answered).
async fn eventually<F>(c: &mut Client, what: &str, mut check: F) -> TestResult
where
    F: for<'a> FnMut(&'a mut Client) -> std::pin::Pin<Box<dyn std::future::Future<Output = Res<bool>> + Send + 'a>>,
{
    for _ in 0..100 {
        if check(c).await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("timed out waiting for {what}").into())
}

async fn offset_fetch(c: &mut Client, require_stable: bool) -> Res<(i16, i64)> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(st("g")))
        .with_require_stable(require_stable)
        .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(TopicName(st("t")))
            .with_partition_indexes(vec![0])]));
    let r = c.request(&req, 7).await?.ok_or("closed")?;
    let p = r
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("no partition")?;
    Ok((p.error_code, p.committed_offset))
}

#[tokio::test]
async fn transactions_over_the_wire() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create_t(&mut c, 2).await?;
    coordinator_ready(&mut c, "g").await?;
    assert_eq!(
        init(&mut c, "tx").await?.0,
        16,
        "NOT_COORDINATOR before __transaction_state exists"
    );

    let find = FindCoordinatorRequest::default().with_key(st("tx")).with_key_type(1);
    let found = c.request(&find, 3).await?.ok_or("closed")?;
    assert_eq!(
        found.error_code, 15,
        "COORDINATOR_NOT_AVAILABLE from the lookup that creates __transaction_state (Kafka's)"
    );
    txn_coordinator_ready(&mut c, "tx").await?;
    let found = c.request(&find, 3).await?.ok_or("closed")?;
    assert_eq!(
        (found.error_code, found.node_id.0),
        (0, 1),
        "this broker leads every partition of __transaction_state"
    );

    let (code, pid, epoch) = init(&mut c, "tx").await?;
    assert_eq!((code, epoch), (0, 0));
    assert_eq!(add(&mut c, pid, epoch, "t", vec![0, 1]).await?, vec![0, 0]);
    assert_eq!(
        add(&mut c, pid, epoch, "nope", vec![0]).await?,
        vec![3],
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(produce(&mut c, 0, txn_batch(pid, epoch, 0, &["a", "b"])?).await?, 0);
    assert_eq!(produce(&mut c, 1, txn_batch(pid, epoch, 0, &["c"])?).await?, 0);
    let (bytes, hw, lso, _) = fetch_committed(&mut c, 0).await?;
    assert_eq!(
        (bytes, hw, lso),
        (0, 2, 0),
        "an open transaction holds read_committed back"
    );
    assert_eq!(
        latest(&mut c, 0, 1).await?,
        0,
        "ListOffsets read_committed answers the LSO"
    );
    assert_eq!(latest(&mut c, 0, 0).await?, 2);

    // Abort: the marker lands, the LSO moves past it, the aborted range is reported.
    assert_eq!(end(&mut c, pid, epoch, false).await?, 0);
    eventually(&mut c, "abort markers", |c| {
        Box::pin(async move { Ok(fetch_committed(c, 0).await?.2 == 3) })
    })
    .await?;
    let (bytes, hw, lso, aborted) = fetch_committed(&mut c, 0).await?;
    assert!(bytes > 0);
    assert_eq!((hw, lso, aborted), (3, 3, vec![(pid, 0)]));

    // Transactional offsets are invisible until the commit, and unstable meanwhile.
    assert_eq!(add(&mut c, pid, epoch, "t", vec![0]).await?, vec![0]);
    let add_offsets = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(st("tx")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(st("g")));
    assert_eq!(c.request(&add_offsets, 3).await?.ok_or("closed")?.error_code, 0);
    let txn_commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(st("tx")))
        .with_group_id(GroupId(st("g")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(st("t")))
            .with_partitions(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(42),
            ])]);
    let r = c.request(&txn_commit, 3).await?.ok_or("closed")?;
    assert_eq!(
        r.topics
            .first()
            .and_then(|t| t.partitions.first())
            .map(|p| p.error_code),
        Some(0)
    );
    assert_eq!(
        offset_fetch(&mut c, false).await?,
        (0, -1),
        "not visible before the commit"
    );
    assert_eq!(offset_fetch(&mut c, true).await?, (88, -1), "UNSTABLE_OFFSET_COMMIT");
    assert_eq!(produce(&mut c, 0, txn_batch(pid, epoch, 2, &["d"])?).await?, 0);
    assert_eq!(end(&mut c, pid, epoch, true).await?, 0);
    eventually(&mut c, "the committed offset", |c| {
        Box::pin(async move { Ok(offset_fetch(c, true).await? == (0, 42)) })
    })
    .await?;
    let (_, hw, lso, aborted) = fetch_committed(&mut c, 0).await?;
    assert_eq!((hw, lso, aborted), (5, 5, vec![(pid, 0)]));

    // A new producer instance: epoch bump; the old epoch is fenced.
    let (code, pid2, epoch2) = init(&mut c, "tx").await?;
    assert_eq!((code, pid2, epoch2), (0, pid, 1));
    assert_eq!(add(&mut c, pid, 0, "t", vec![1]).await?, vec![90], "PRODUCER_FENCED");
    assert_eq!(end(&mut c, pid, 0, true).await?, 90);

    // Admin views.
    let describe = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(st("tx")), TransactionalId(st("nope"))]);
    let d = c.request(&describe, 0).await?.ok_or("closed")?;
    let states: Vec<(i16, String, i64, i16)> = d
        .transaction_states
        .iter()
        .map(|t| {
            (
                t.error_code,
                t.transaction_state.to_string(),
                t.producer_id.0,
                t.producer_epoch,
            )
        })
        .collect();
    assert_eq!(states[0], (0, "Empty".to_string(), pid, 1));
    assert_eq!(states[1].0, 105, "TRANSACTIONAL_ID_NOT_FOUND");
    let list = c
        .request(&ListTransactionsRequest::default(), 1)
        .await?
        .ok_or("closed")?;
    assert_eq!(list.transaction_states.len(), 1);
    let producers =
        DescribeProducersRequest::default().with_topics(vec![describe_producers_request::TopicRequest::default()
            .with_name(TopicName(st("t")))
            .with_partition_indexes(vec![0])]);
    let p = c.request(&producers, 0).await?.ok_or("closed")?;
    let active = &p.topics[0].partitions[0].active_producers;
    assert_eq!(active.iter().map(|a| a.producer_id.0).collect::<Vec<_>>(), vec![pid]);

    // An open transaction survives a crash and commits afterwards.
    assert_eq!(add(&mut c, pid, 1, "t", vec![1]).await?, vec![0]);
    assert_eq!(produce(&mut c, 1, txn_batch(pid, 1, 0, &["e"])?).await?, 0);
    let (_, hw, lso, _) = fetch_committed(&mut c, 1).await?;
    assert_eq!((hw, lso), (3, 2));
    let dir = broker.crash().await;
    let broker = TestBroker::start_in(dir, &[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    txn_coordinator_ready(&mut c, "tx").await?;
    let (_, hw, lso, _) = fetch_committed(&mut c, 1).await?;
    assert_eq!((hw, lso), (3, 2), "still open after the crash");
    let d = c.request(&describe, 0).await?.ok_or("closed")?;
    assert_eq!(d.transaction_states[0].transaction_state.as_str(), "Ongoing");
    assert_eq!(end(&mut c, pid, 1, true).await?, 0);
    eventually(&mut c, "the commit after a crash", |c| {
        Box::pin(async move { Ok(fetch_committed(c, 1).await?.2 == 4) })
    })
    .await?;
    broker.stop().await
}

/// A whole transaction at every version of each transaction API (fresh transactional id per
/// round): every response must encode for its version and carry no error.
#[tokio::test]
async fn transaction_apis_at_every_version() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create_t(&mut c, 1).await?;
    coordinator_ready(&mut c, "g").await?;
    txn_coordinator_ready(&mut c, "tx-v0").await?;
    for v in 0..=5i16 {
        let id = TransactionalId(st(&format!("tx-v{v}")));
        let init_req = InitProducerIdRequest::default()
            .with_transactional_id(Some(id.clone()))
            .with_transaction_timeout_ms(60_000);
        let r = c.request(&init_req, v).await?.ok_or("closed")?;
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
        let (pid, epoch) = (r.producer_id, r.producer_epoch);
        let topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
            .with_name(TopicName(st("t")))
            .with_partitions(vec![0]);
        let add_req = if v <= 3 {
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(id.clone())
                .with_v3_and_below_producer_id(pid)
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![topic])
        } else {
            AddPartitionsToTxnRequest::default().with_transactions(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(id.clone())
                    .with_producer_id(pid)
                    .with_producer_epoch(epoch)
                    .with_topics(vec![topic]),
            ])
        };
        let r = c.request(&add_req, v).await?.ok_or("closed")?;
        let codes: Vec<i16> = r
            .results_by_topic_v3_and_below
            .iter()
            .chain(r.results_by_transaction.iter().flat_map(|t| &t.topic_results))
            .flat_map(|t| &t.results_by_partition)
            .map(|p| p.partition_error_code)
            .collect();
        assert_eq!((r.error_code, codes), (0, vec![0]), "AddPartitionsToTxn v{v}");
        let add_offsets = AddOffsetsToTxnRequest::default()
            .with_transactional_id(id.clone())
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(st("g")));
        let r = c.request(&add_offsets, v.min(4)).await?.ok_or("closed")?;
        assert_eq!(r.error_code, 0, "AddOffsetsToTxn v{}", v.min(4));
        let commit = TxnOffsetCommitRequest::default()
            .with_transactional_id(id.clone())
            .with_group_id(GroupId(st("g")))
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_generation_id(-1)
            .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(st("t")))
                .with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(i64::from(v))
                        .with_committed_leader_epoch(if v >= 2 { 0 } else { -1 }),
                ])]);
        let r = c.request(&commit, v).await?.ok_or("closed")?;
        assert_eq!(
            r.topics
                .first()
                .and_then(|t| t.partitions.first())
                .map(|p| p.error_code),
            Some(0),
            "TxnOffsetCommit v{v}"
        );
        let end_req = EndTxnRequest::default()
            .with_transactional_id(id.clone())
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_committed(true);
        let r = c.request(&end_req, v).await?.ok_or("closed")?;
        assert_eq!(r.error_code, 0, "EndTxn v{v}");
        eventually(&mut c, "the offset", |c| {
            Box::pin(async move { Ok(offset_fetch(c, false).await?.1 == i64::from(v)) })
        })
        .await?;
    }
    for v in 0..=1 {
        let r = c
            .request(&ListTransactionsRequest::default().with_duration_filter(-1), v)
            .await?
            .ok_or("closed")?;
        assert_eq!(
            (r.error_code, r.transaction_states.len()),
            (0, 6),
            "ListTransactions v{v}"
        );
    }
    broker.stop().await
}

/// WriteTxnMarkers as another broker's transaction coordinator sends it: the marker ends the
/// producer's open transaction on a partition led here (the last stable offset moves past
/// it); a partition the cluster does not have gets UNKNOWN_TOPIC_OR_PARTITION.
#[tokio::test]
async fn write_txn_markers_from_another_coordinator() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create_t(&mut c, 1).await?;
    txn_coordinator_ready(&mut c, "tx").await?;
    let (code, pid, epoch) = init(&mut c, "tx").await?;
    assert_eq!(code, 0);
    assert_eq!(add(&mut c, pid, epoch, "t", vec![0]).await?, vec![0]);
    assert_eq!(produce(&mut c, 0, txn_batch(pid, epoch, 0, &["a", "b"])?).await?, 0);
    assert_eq!(latest(&mut c, 0, 1).await?, 0, "the open transaction holds the LSO");
    let topic = |name: &str| {
        write_txn_markers_request::WritableTxnMarkerTopic::default()
            .with_name(TopicName(st(name)))
            .with_partition_indexes(vec![0])
    };
    let req =
        WriteTxnMarkersRequest::default().with_markers(vec![write_txn_markers_request::WritableTxnMarker::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_transaction_result(true)
            .with_topics(vec![topic("t"), topic("nope")])]);
    let r = c.request(&req, 1).await?.ok_or("closed")?;
    let codes: Vec<(String, i16)> = r
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), p.error_code)))
        .collect();
    assert_eq!(codes, vec![("t".to_string(), 0), ("nope".to_string(), 3)]);
    assert_eq!(latest(&mut c, 0, 1).await?, 3, "records and marker are stable");
    broker.stop().await
}
