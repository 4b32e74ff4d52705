//! Hostile and ordinary input against a live in-process broker on 127.0.0.1: every bad frame
//! gets Kafka's answer (an error code or a closed connection), and another client is still
//! served afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::config::BrokerConfig;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub(crate) struct TestBroker {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start(overrides: &[&str]) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::start_in(tempfile::tempdir()?, overrides).await
    }

    /// Starts a broker on an existing data directory (restart tests).
    pub async fn start_in(
        dir: tempfile::TempDir,
        overrides: &[&str],
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut all = vec![
            format!("listeners=PLAINTEXT://{addr}"),
            format!("log.dirs={}", dir.path().display()),
            // Off unless a test asks (many test brokers share the process and its port space).
            "metrics.listener=".to_string(),
        ];
        all.extend(overrides.iter().map(|s| s.to_string()));
        let config = BrokerConfig::load(None, &all)?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::broker::run_on(
            config,
            crate::broker::Listen::Bound(listener),
            async move {
                let _ = rx.await;
            },
        ));
        Ok(TestBroker {
            addr,
            stop: Some(tx),
            task,
            _dir: dir,
        })
    }

    pub async fn stop(self) -> TestResult {
        self.stop_keeping_dir().await.map(|_| ())
    }

    /// Clean shutdown; hands back the data directory.
    pub async fn stop_keeping_dir(mut self) -> Result<tempfile::TempDir, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await??;
        Ok(self._dir)
    }

    /// Stops without any shutdown work (no flush, no marker), as a crash would; the files are
    /// as the OS has them.
    pub async fn crash(self) -> tempfile::TempDir {
        self.task.abort();
        let _ = self.task.await;
        // Give the runtime's blocking threads a moment to let go of the directory lock.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self._dir
    }
}

/// A minimal client speaking the real protocol through the crate's client-side codecs.
pub(crate) struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

/// Looks up `group`'s coordinator (creating `__consumer_offsets` on first use, as a client's
/// FindCoordinator does) and waits until it serves the group (its partition loaded).
pub async fn coordinator_ready(c: &mut Client, group: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use kafka_protocol::messages::{FindCoordinatorRequest, GroupId, OffsetFetchRequest};
    use kafka_protocol::protocol::StrBytes;
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = c.request(&find, 3).await?.ok_or("closed")?;
        if found.error_code == 0 {
            let fetch = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(None);
            let r = c.request(&fetch, 5).await?.ok_or("closed")?;
            if r.error_code == 0 {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("no coordinator for {group}").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until this broker coordinates `transactional_id`: FindCoordinator (creating
/// `__transaction_state`) answers, and no partition of it is still loading.
pub async fn txn_coordinator_ready(
    c: &mut Client,
    transactional_id: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use kafka_protocol::messages::{FindCoordinatorRequest, ListTransactionsRequest};
    use kafka_protocol::protocol::StrBytes;
    let find = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(transactional_id.to_string()))
        .with_key_type(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = c.request(&find, 3).await?.ok_or("closed")?;
        if found.error_code == 0 {
            let listed = c
                .request(&ListTransactionsRequest::default(), 0)
                .await?
                .ok_or("closed")?;
            if listed.error_code == 0 {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("no transaction coordinator for {transactional_id}").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Self, std::io::Error> {
        Ok(Client {
            stream: TcpStream::connect(addr).await?,
            correlation_id: 0,
        })
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads one response frame; None if the broker closed the connection.
    pub async fn read_frame(&mut self) -> std::io::Result<Option<Bytes>> {
        let mut len = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(&mut len)).await;
        match read {
            Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no response")),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => {}
        }
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).await?;
        Ok(Some(Bytes::from(buf)))
    }

    pub async fn request<Req>(
        &mut self,
        req: &Req,
        version: i16,
    ) -> Result<Option<Req::Response>, Box<dyn std::error::Error + Send + Sync>>
    where
        Req: kafka_protocol::protocol::Request + Encodable,
        Req::Response: Decodable,
    {
        self.correlation_id += 1;
        let key = ApiKey::try_from(Req::KEY).map_err(|_| "bad key")?;
        let header = RequestHeader::default()
            .with_request_api_key(Req::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-test")));
        let mut body = BytesMut::new();
        header.encode(&mut body, key.request_header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = BytesMut::new();
        frame.put_u32(body.len() as u32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;
        let Some(mut resp) = self.read_frame().await? else {
            return Ok(None);
        };
        let header_version = if key == ApiKey::ApiVersions {
            0
        } else {
            key.response_header_version(version)
        };
        let h = ResponseHeader::decode(&mut resp, header_version)?;
        assert_eq!(h.correlation_id, self.correlation_id);
        Ok(Some(Req::Response::decode(&mut resp, version)?))
    }

    pub async fn is_closed(&mut self) -> bool {
        matches!(self.read_frame().await, Ok(None) | Err(_))
    }
}

async fn assert_still_serves(addr: SocketAddr) -> TestResult {
    let mut c = Client::connect(addr).await?;
    let resp = c.request(&ApiVersionsRequest::default(), 3).await?.ok_or("closed")?;
    assert_eq!(resp.error_code, 0);
    assert!(resp.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
    Ok(())
}

fn header_v1(key: i16, version: i16) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i16(key);
    b.put_i16(version);
    b.put_i32(7);
    b.put_i16(-1); // null client id
    b
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() -> TestResult {
    let broker = TestBroker::start(&["socket.request.max.bytes=1048576"]).await?;
    // Oversize and negative lengths.
    for len in [i32::MAX, 2 * 1024 * 1024, -1, i32::MIN] {
        let mut c = Client::connect(broker.addr).await?;
        c.send_raw(&len.to_be_bytes()).await?;
        assert!(c.is_closed().await, "length {len}");
    }
    // A truncated frame, then the peer goes away.
    {
        let mut c = Client::connect(broker.addr).await?;
        c.send_raw(&100i32.to_be_bytes()).await?;
        c.send_raw(&[0, 3, 0, 4]).await?;
    }
    // Too short to hold a header.
    let mut c = Client::connect(broker.addr).await?;
    c.send_raw(&framed(&[0, 18])).await?;
    assert!(c.is_closed().await);
    // Unknown API key.
    let mut c = Client::connect(broker.addr).await?;
    c.send_raw(&framed(&header_v1(999, 0))).await?;
    assert!(c.is_closed().await);
    // Unsupported version of a known API.
    let mut c = Client::connect(broker.addr).await?;
    c.send_raw(&framed(&header_v1(ApiKey::Metadata as i16, 99))).await?;
    assert!(c.is_closed().await);
    assert_still_serves(broker.addr).await?;
    broker.stop().await
}

#[tokio::test]
async fn absurd_array_counts_do_not_abort() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    // Metadata v4: topics array count 2^31-1 in a 20-byte frame.
    let mut body = header_v1(ApiKey::Metadata as i16, 4);
    body.put_i32(i32::MAX);
    let mut c = Client::connect(broker.addr).await?;
    c.send_raw(&framed(&body)).await?;
    assert!(c.is_closed().await);
    // Metadata v12 (flexible): compact array length varint near 2^31.
    let mut body = header_v1(ApiKey::Metadata as i16, 12);
    body.put_u8(0); // header tagged fields
    body.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]); // 2^31
    let mut c = Client::connect(broker.addr).await?;
    c.send_raw(&framed(&body)).await?;
    assert!(c.is_closed().await);
    // Produce v9: topic_data compact count 2^32-1.
    let mut body = header_v1(ApiKey::Produce as i16, 9);
    body.put_u8(0);
    body.put_u8(0); // null transactional id (compact nullable string: 0)
    body.put_i16(1);
    body.put_i32(1000);
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let mut c = Client::connect(broker.addr).await?;
    c.send_raw(&framed(&body)).await?;
    assert!(c.is_closed().await);
    assert_still_serves(broker.addr).await?;
    broker.stop().await
}

#[tokio::test]
async fn api_versions_newer_than_ours_gets_v0_answer() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    let mut body = header_v1(ApiKey::ApiVersions as i16, 99);
    body.put_u8(0);
    c.send_raw(&framed(&body)).await?;
    let mut frame = c.read_frame().await?.ok_or("closed")?;
    let h = ResponseHeader::decode(&mut frame, 0)?;
    assert_eq!(h.correlation_id, 7);
    let resp = ApiVersionsResponse::decode(&mut frame, 0)?;
    assert_eq!(resp.error_code, 35);
    assert_eq!(resp.api_keys.len(), 1);
    assert_eq!(resp.api_keys.first().map(|k| k.max_version), Some(4));
    broker.stop().await
}

pub(crate) fn batch(
    values: &[&str],
    compression: Compression,
) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // offset - sequence must be constant for the encoder to keep one batch.
            sequence: i as i32 - 1,
            timestamp: crate::api::now_ms() + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.freeze())
}

fn produce_request(topic: &str, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn produce_error(resp: &ProduceResponse) -> Option<(i16, i64)> {
    let p = resp.responses.first()?.partition_responses.first()?;
    Some((p.error_code, p.base_offset))
}

#[tokio::test]
async fn corrupt_batches_get_kafka_errors_and_good_ones_round_trip() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    let create = CreateTopicsRequest::default().with_timeout_ms(1000).with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let resp = c.request(&create, 7).await?.ok_or("closed")?;
    assert_eq!(resp.topics.first().map(|t| t.error_code), Some(0));

    let good = batch(&["a", "b", "c"], Compression::None)?;
    // Bad CRC: flip a byte inside the CRC-covered part.
    let mut bad_crc = BytesMut::from(&good[..]);
    if let Some(b) = bad_crc.get_mut(good.len() - 1) {
        *b ^= 0xff;
    }
    let resp = c
        .request(&produce_request("t", bad_crc.freeze(), 1), 9)
        .await?
        .ok_or("closed")?;
    assert_eq!(produce_error(&resp).map(|e| e.0), Some(2), "CORRUPT_MESSAGE {:?}", resp);
    // Bad magic.
    let mut bad_magic = BytesMut::from(&good[..]);
    if let Some(b) = bad_magic.get_mut(16) {
        *b = 1;
    }
    let resp = c
        .request(&produce_request("t", bad_magic.freeze(), 1), 9)
        .await?
        .ok_or("closed")?;
    assert_eq!(produce_error(&resp).map(|e| e.0), Some(87), "INVALID_RECORD");
    // Wrong record count (with a valid CRC, so only the count check can catch it).
    let mut bad_count = BytesMut::from(&good[..]);
    if let Some(count) = bad_count.get_mut(57..61) {
        count.copy_from_slice(&7i32.to_be_bytes());
    }
    let crc = crc32c::crc32c(bad_count.get(21..).unwrap_or_default());
    if let Some(field) = bad_count.get_mut(17..21) {
        field.copy_from_slice(&crc.to_be_bytes());
    }
    let resp = c
        .request(&produce_request("t", bad_count.freeze(), 1), 9)
        .await?
        .ok_or("closed")?;
    assert_eq!(
        produce_error(&resp).map(|e| e.0),
        Some(87),
        "INVALID_RECORD for a wrong count"
    );
    // Two batches in one partition entry.
    let mut two = BytesMut::from(&good[..]);
    two.extend_from_slice(&good);
    let resp = c
        .request(&produce_request("t", two.freeze(), 1), 9)
        .await?
        .ok_or("closed")?;
    assert_eq!(produce_error(&resp).map(|e| e.0), Some(87));
    // Truncated batch.
    let resp = c
        .request(&produce_request("t", good.slice(..30), 1), 9)
        .await?
        .ok_or("closed")?;
    assert_ne!(produce_error(&resp).map(|e| e.0), Some(0));
    // zstd below v7.
    let zstd = batch(&["z"], Compression::Zstd)?;
    let resp = c.request(&produce_request("t", zstd, 1), 6).await?.ok_or("closed")?;
    assert_eq!(produce_error(&resp).map(|e| e.0), Some(76));

    // The good batch is accepted at offset 0, then the next at 3.
    let resp = c
        .request(&produce_request("t", good.clone(), -1), 9)
        .await?
        .ok_or("closed")?;
    assert_eq!(produce_error(&resp), Some((0, 0)));
    let resp = c
        .request(&produce_request("t", batch(&["d"], Compression::Gzip)?, 1), 9)
        .await?
        .ok_or("closed")?;
    assert_eq!(produce_error(&resp), Some((0, 3)));

    let fetch = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = c.request(&fetch, 12).await?.ok_or("closed")?;
    let pd = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("no partition")?;
    assert_eq!(pd.error_code, 0);
    assert_eq!(pd.high_watermark, 4);
    let mut records = pd.records.clone().ok_or("no records")?;
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records)?;
    let values: Vec<Bytes> = sets
        .iter()
        .flat_map(|s| s.records.iter().filter_map(|r| r.value.clone()))
        .collect();
    assert_eq!(
        values,
        vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c"), Bytes::from("d")]
    );
    let offsets: Vec<i64> = sets.iter().flat_map(|s| s.records.iter().map(|r| r.offset)).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3]);
    assert_still_serves(broker.addr).await?;
    broker.stop().await
}

#[tokio::test]
async fn long_poll_fetch_answers_when_data_arrives() -> TestResult {
    let broker = TestBroker::start(&["num.partitions=1"]).await?;
    let mut producer = Client::connect(broker.addr).await?;
    // Auto-create through Metadata.
    let md = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("lp"))))]))
        .with_allow_auto_topic_creation(true);
    let resp = producer.request(&md, 12).await?.ok_or("closed")?;
    assert_eq!(resp.topics.first().map(|t| t.error_code), Some(0));
    let addr = broker.addr;
    let waiter = tokio::spawn(async move {
        let mut consumer = Client::connect(addr).await?;
        let fetch = FetchRequest::default()
            .with_max_wait_ms(10_000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("lp")))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let started = std::time::Instant::now();
        let resp = consumer.request(&fetch, 11).await?.ok_or("closed")?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((started.elapsed(), resp))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = producer
        .request(&produce_request("lp", batch(&["x"], Compression::None)?, 1), 9)
        .await?
        .ok_or("closed")?;
    assert_eq!(produce_error(&resp), Some((0, 0)));
    let (elapsed, resp) = waiter.await??;
    let pd = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("no partition")?;
    assert!(pd.records.as_ref().is_some_and(|r| !r.is_empty()));
    assert!(elapsed < Duration::from_secs(5), "answered on arrival, not at max_wait");
    broker.stop().await
}

/// With `log.flush.interval.messages=1`, acks=1 and acks=-1 are answered only once the group
/// commit flusher has synced the append and advanced the high watermark; concurrent producers
/// all get through (a stalled flusher would answer REQUEST_TIMED_OUT instead).
#[tokio::test]
async fn flush_policy_acks_wait_for_group_commit() -> TestResult {
    let broker = TestBroker::start(&[
        "log.flush.interval.messages=1",
        "log.flush.scheduler.interval.ms=600000",
        "num.partitions=1",
    ])
    .await?;
    let mut admin = Client::connect(broker.addr).await?;
    let md = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("durable"))))]))
        .with_allow_auto_topic_creation(true);
    admin.request(&md, 12).await?.ok_or("closed")?;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let addr = broker.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await?;
            let mut offsets = Vec::new();
            for j in 0..20 {
                let acks = if (i + j) % 2 == 0 { -1 } else { 1 };
                let resp = c
                    .request(&produce_request("durable", batch(&["v"], Compression::None)?, acks), 9)
                    .await?
                    .ok_or("closed")?;
                let (code, offset) = produce_error(&resp).ok_or("no partition")?;
                assert_eq!(code, 0);
                offsets.push(offset);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(offsets)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    assert_eq!(all, (0..160).collect::<Vec<i64>>());
    let lo = ListOffsetsRequest::default().with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("durable")))
        .with_partitions(vec![
            list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)
        ])]);
    let resp = admin.request(&lo, 7).await?.ok_or("closed")?;
    assert_eq!(
        resp.topics.first().and_then(|t| t.partitions.first()).map(|p| p.offset),
        Some(160)
    );
    broker.stop().await
}

#[tokio::test]
async fn restart_keeps_data_after_clean_and_unclean_stops() -> TestResult {
    let broker = TestBroker::start(&["num.partitions=1"]).await?;
    let mut c = Client::connect(broker.addr).await?;
    let resp = c
        .request(&produce_request("keep", batch(&["a", "b"], Compression::Lz4)?, -1), 9)
        .await?;
    // The topic does not exist until someone asks for its metadata.
    assert_eq!(resp.and_then(|r| produce_error(&r)).map(|e| e.0), Some(3));
    let md = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("keep"))))]))
        .with_allow_auto_topic_creation(true);
    let before = c.request(&md, 12).await?.ok_or("closed")?;
    let resp = c
        .request(&produce_request("keep", batch(&["a", "b"], Compression::Lz4)?, -1), 9)
        .await?
        .ok_or("closed")?;
    assert_eq!(produce_error(&resp), Some((0, 0)));
    let pid = c
        .request(&InitProducerIdRequest::default().with_transactional_id(None), 4)
        .await?
        .ok_or("closed")?;
    drop(c);
    let dir = broker.stop_keeping_dir().await?;
    assert!(dir.path().join(".kafka_cleanshutdown").exists());

    let broker = TestBroker::start_in(dir, &[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    let after = c.request(&md, 12).await?.ok_or("closed")?;
    assert!(
        !broker._dir.path().join(".kafka_cleanshutdown").exists(),
        "marker removed while running"
    );
    assert_eq!(
        before.topics.first().map(|t| t.topic_id),
        after.topics.first().map(|t| t.topic_id)
    );
    let pid2 = c
        .request(&InitProducerIdRequest::default().with_transactional_id(None), 4)
        .await?
        .ok_or("closed")?;
    assert!(pid2.producer_id.0 > pid.producer_id.0, "producer ids are never reused");
    let resp = c
        .request(&produce_request("keep", batch(&["c"], Compression::None)?, 1), 9)
        .await?
        .ok_or("closed")?;
    assert_eq!(produce_error(&resp), Some((0, 2)));
    drop(c);
    let dir = broker.crash().await;

    let broker = TestBroker::start_in(dir, &[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    let lo = ListOffsetsRequest::default().with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("keep")))
        .with_partitions(vec![
            list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)
        ])]);
    let resp = c.request(&lo, 7).await?.ok_or("closed")?;
    assert_eq!(
        resp.topics.first().and_then(|t| t.partitions.first()).map(|p| p.offset),
        Some(3)
    );
    broker.stop().await
}

/// `queued.max.request.bytes`: connections holding big unfinished frames spend the pool; a
/// further big request waits (its connection is not read) until they go, while small requests
/// on other connections are served throughout.
#[tokio::test]
async fn held_frames_spend_the_memory_pool_and_small_requests_are_still_served() -> TestResult {
    // An 8 MiB pool: 1 MiB kept for small frames, 7 MiB shared.
    let broker = TestBroker::start(&[
        "socket.request.max.bytes=4194304",
        "queued.max.request.bytes=8388608",
        "message.max.bytes=5000000",
    ])
    .await?;
    let mut c = Client::connect(broker.addr).await?;
    let create = CreateTopicsRequest::default().with_timeout_ms(1000).with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("big")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let resp = c.request(&create, 7).await?.ok_or("closed")?;
    assert_eq!(resp.topics.first().map(|t| t.error_code), Some(0));
    let value = "x".repeat(3 << 20);
    let produce = produce_request("big", batch(&[value.as_str()], Compression::None)?, 1);
    let resp = c.request(&produce, 9).await?.ok_or("closed")?;
    assert_eq!(produce_error(&resp), Some((0, 0)));

    // Two connections each hold a 3 MiB frame one byte short: 6 of the 7 shared MiB.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(broker.addr).await?;
        s.write_all(&(3u32 << 20).to_be_bytes()).await?;
        s.write_all(&vec![0u8; (3 << 20) - 1]).await?;
        holders.push(s);
    }
    // And bare length prefixes, which reserve nothing they cannot get and allocate nothing.
    for _ in 0..20 {
        let mut s = TcpStream::connect(broker.addr).await?;
        s.write_all(&(4u32 << 20).to_be_bytes()).await?;
        holders.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A second 3 MiB produce does not fit: it waits.
    let waiting = tokio::spawn(async move {
        let mut c = Client::connect(broker.addr).await?;
        let resp = c.request(&produce, 9).await?.ok_or("closed")?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(produce_error(&resp))
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a frame beyond the pool was read");
    // Small requests on other connections are answered meanwhile.
    for _ in 0..5 {
        assert_still_serves(broker.addr).await?;
        let resp = c
            .request(&MetadataRequest::default().with_topics(None), 4)
            .await?
            .ok_or("closed")?;
        assert_eq!(resp.topics.len(), 1);
    }
    // The holders go; the waiting produce proceeds.
    drop(holders);
    let answered = tokio::time::timeout(Duration::from_secs(10), waiting).await???;
    assert_eq!(answered, Some((0, 1)));
    broker.stop().await
}

/// `max.connections.per.ip`: a connection over its address's limit is closed at once; others
/// and later ones (after one closes) are served.
#[tokio::test]
async fn connections_over_the_per_ip_limit_are_closed() -> TestResult {
    let broker = TestBroker::start(&["max.connections.per.ip=2"]).await?;
    let mut a = Client::connect(broker.addr).await?;
    let b = Client::connect(broker.addr).await?;
    let resp = a.request(&ApiVersionsRequest::default(), 3).await?;
    assert!(resp.is_some());
    let mut over = Client::connect(broker.addr).await?;
    assert!(
        over.is_closed().await,
        "the third connection from 127.0.0.1 stayed open"
    );
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_still_serves(broker.addr).await?;
    let resp = a.request(&ApiVersionsRequest::default(), 3).await?;
    assert!(resp.is_some());
    broker.stop().await
}

fn fetch_at(topic: &'static str, offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

/// A few corrupt bytes in the middle of the log after a crash: recovery keeps every batch
/// after them, a fetch of the damaged offsets gets CORRUPT_MESSAGE, the rest is served.
#[tokio::test]
async fn corrupt_bytes_mid_log_are_reported_and_later_batches_served() -> TestResult {
    let broker = TestBroker::start(&["num.partitions=1"]).await?;
    let mut c = Client::connect(broker.addr).await?;
    let md = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("dmg"))))]))
        .with_allow_auto_topic_creation(true);
    c.request(&md, 12).await?.ok_or("closed")?;
    let len = batch(&["aa", "bb"], Compression::None)?.len();
    for i in 0..10 {
        let resp = c
            .request(&produce_request("dmg", batch(&["aa", "bb"], Compression::None)?, 1), 9)
            .await?
            .ok_or("closed")?;
        assert_eq!(produce_error(&resp), Some((0, 2 * i)));
    }
    drop(c);
    let dir = broker.crash().await;
    let path = dir.path().join("dmg-0").join("00000000000000000000.log");
    let mut bytes = std::fs::read(&path)?;
    let at = 4 * len + 40; // inside the fifth batch (offsets 8 and 9), past its CRC field
    *bytes.get_mut(at).ok_or("short log")? ^= 0x55;
    std::fs::write(&path, &bytes)?;

    let broker = TestBroker::start_in(dir, &[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    let part = |r: &FetchResponse| {
        r.responses.first().and_then(|t| t.partitions.first()).map(|p| {
            (
                p.error_code,
                p.high_watermark,
                p.records.as_ref().map_or(0, |r| r.len()),
            )
        })
    };
    let resp = c.request(&fetch_at("dmg", 0), 11).await?.ok_or("closed")?;
    assert_eq!(part(&resp), Some((0, 20, 4 * len)), "the batches before the damage");
    let resp = c.request(&fetch_at("dmg", 8), 11).await?.ok_or("closed")?;
    assert_eq!(part(&resp).map(|p| p.0), Some(2), "CORRUPT_MESSAGE");
    let resp = c.request(&fetch_at("dmg", 10), 11).await?.ok_or("closed")?;
    assert_eq!(part(&resp), Some((0, 20, 5 * len)), "every batch after the damage");
    broker.stop().await
}
