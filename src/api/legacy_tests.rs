//! Old-version requests at the wire level (Produce v0-2 with magic 0/1 message sets, compressed
//! too; Fetch v0-3 down-converted; ListOffsets v0), against a real broker.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::tests::{create, TestResult};
use crate::server::tests::{Client, TestBroker};
use crate::storage::message_set::{self, put_message};
use crate::storage::{codec, Compression};

fn request(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(key);
    b.put_i16(version);
    b.put_i32(correlation_id);
    b.put_i16(6);
    b.put_slice(b"kgo-02");
    b.put_slice(body);
    let mut f = (b.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&b);
    f
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn get_str(b: &mut Bytes) -> String {
    let n = b.get_i16() as usize;
    String::from_utf8(b.split_to(n).to_vec()).unwrap()
}

/// A message set of `keys` (value = key + "-v"), in `magic`, wrapped in `codec` if not None.
fn message_set_of(keys: &[&str], magic: i8, codec: Compression) -> Vec<u8> {
    let mut inner = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let v = format!("{k}-v");
        put_message(
            &mut inner,
            i as i64,
            magic,
            0,
            1_000 + i as i64,
            Some(k.as_bytes()),
            Some(v.as_bytes()),
        );
    }
    if codec == Compression::None {
        return inner;
    }
    let packed = codec::compress(codec, None, &inner).unwrap();
    let mut out = Vec::new();
    let last = keys.len() as i64 - 1;
    put_message(
        &mut out,
        last,
        magic,
        codec.attribute_bits() as i8,
        1_000 + last,
        None,
        Some(&packed),
    );
    out
}

async fn produce(c: &mut Client, version: i16, set: &[u8]) -> (i16, i64) {
    let mut b = BytesMut::new();
    b.put_i16(-1);
    b.put_i32(5000);
    b.put_i32(1);
    put_str(&mut b, "old");
    b.put_i32(1);
    b.put_i32(0);
    b.put_i32(set.len() as i32);
    b.put_slice(set);
    c.send_raw(&request(0, version, 40 + i32::from(version), &b))
        .await
        .unwrap();
    let mut r = c.read_frame().await.unwrap().expect("a produce response");
    assert_eq!(r.get_i32(), 40 + i32::from(version));
    assert_eq!(r.get_i32(), 1);
    assert_eq!(get_str(&mut r), "old");
    assert_eq!(r.get_i32(), 1);
    assert_eq!(r.get_i32(), 0);
    let error = r.get_i16();
    let base = r.get_i64();
    if version >= 2 {
        assert_eq!(r.get_i64(), -1, "log append time (CreateTime topic)");
    }
    if version >= 1 {
        assert_eq!(r.get_i32(), 0, "throttle");
    }
    assert!(!r.has_remaining());
    (error, base)
}

/// Fetch at `version` from `offset`: (error, high watermark, the message set).
async fn fetch(c: &mut Client, version: i16, offset: i64) -> (i16, i64, Bytes) {
    let mut b = BytesMut::new();
    b.put_i32(-1);
    b.put_i32(0);
    b.put_i32(1);
    if version >= 3 {
        b.put_i32(1 << 20);
    }
    b.put_i32(1);
    put_str(&mut b, "old");
    b.put_i32(1);
    b.put_i32(0);
    b.put_i64(offset);
    b.put_i32(1 << 20);
    c.send_raw(&request(1, version, 7, &b)).await.unwrap();
    let mut r = c.read_frame().await.unwrap().expect("a fetch response");
    assert_eq!(r.get_i32(), 7);
    if version >= 1 {
        assert_eq!(r.get_i32(), 0);
    }
    assert_eq!(r.get_i32(), 1);
    assert_eq!(get_str(&mut r), "old");
    assert_eq!(r.get_i32(), 1);
    assert_eq!(r.get_i32(), 0);
    let error = r.get_i16();
    let hw = r.get_i64();
    let n = r.get_i32() as usize;
    let set = r.split_to(n);
    assert!(!r.has_remaining());
    (error, hw, set)
}

async fn list_offsets_v0(c: &mut Client, ts: i64) -> Vec<i64> {
    let mut b = BytesMut::new();
    b.put_i32(-1);
    b.put_i32(1);
    put_str(&mut b, "old");
    b.put_i32(1);
    b.put_i32(0);
    b.put_i64(ts);
    b.put_i32(1);
    c.send_raw(&request(2, 0, 9, &b)).await.unwrap();
    let mut r = c.read_frame().await.unwrap().expect("a list offsets response");
    assert_eq!(r.get_i32(), 9);
    assert_eq!(
        (r.get_i32(), get_str(&mut r), r.get_i32(), r.get_i32()),
        (1, "old".into(), 1, 0)
    );
    assert_eq!(r.get_i16(), 0);
    (0..r.get_i32()).map(|_| r.get_i64()).collect()
}

#[tokio::test]
async fn old_produce_fetch_and_list_offsets_versions_are_served() -> TestResult {
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create(&mut c, "old", 1).await?;
    let sends = [
        (0, 0, Compression::None, ["a", "b"]),
        (1, 1, Compression::Gzip, ["c", "d"]),
        (2, 1, Compression::Snappy, ["e", "f"]),
        (2, 0, Compression::Lz4, ["g", "h"]),
    ];
    for (i, (version, magic, codec, keys)) in sends.iter().enumerate() {
        let (error, base) = produce(&mut c, *version, &message_set_of(keys, *magic, *codec)).await;
        assert_eq!(
            (error, base),
            (0, 2 * i as i64),
            "Produce v{version} magic {magic} {codec:?}"
        );
    }
    let all: Vec<String> = ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    for version in 0..=3 {
        for from in [0i64, 3] {
            let (error, hw, set) = fetch(&mut c, version, from).await;
            assert_eq!((error, hw), (0, 8), "Fetch v{version}");
            let expected_magic = if version <= 1 { 0 } else { 1 };
            assert_eq!(message_set::magic_of(&set), Some(expected_magic), "Fetch v{version}");
            let (msgs, _) = message_set::parse(&set)?;
            let keys: Vec<String> = msgs
                .iter()
                .map(|m| String::from_utf8(m.key.clone().unwrap().to_vec()).unwrap())
                .collect();
            assert_eq!(keys, all[from as usize..], "Fetch v{version} from {from}");
            let values_ok = msgs.iter().all(|m| {
                m.value.as_deref()
                    == Some(format!("{}-v", String::from_utf8_lossy(m.key.as_deref().unwrap())).as_bytes())
            });
            assert!(values_ok, "Fetch v{version}");
            // Magic 1 carries the CreateTime magic 1 producers set (c d e f); magic 0 ones had none.
            for m in &msgs {
                let key = m.key.as_deref().unwrap();
                let expected = match (expected_magic, key) {
                    (1, b"c" | b"e") => 1_000,
                    (1, b"d" | b"f") => 1_001,
                    _ => -1,
                };
                assert_eq!(m.timestamp, expected, "Fetch v{version} key {key:?}");
            }
        }
    }
    assert_eq!(list_offsets_v0(&mut c, -1).await, vec![8]);
    assert_eq!(list_offsets_v0(&mut c, -2).await, vec![0]);

    // A corrupt set (bad CRC) gets CORRUPT_MESSAGE; the connection goes on.
    let mut bad = message_set_of(&["x"], 1, Compression::None);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    assert_eq!(produce(&mut c, 2, &bad).await.0, 2);
    assert_eq!(list_offsets_v0(&mut c, -1).await, vec![8]);
    // A body that does not decode closes the connection, as Kafka does.
    c.send_raw(&request(1, 2, 8, &[0, 0, 0, 1])).await?;
    assert!(c.is_closed().await);
    broker.stop().await
}

#[tokio::test]
async fn modern_data_reaches_old_consumers() -> TestResult {
    // Batches a modern producer wrote (v2, with headers, zstd) as an old consumer sees them.
    let broker = TestBroker::start(&[]).await?;
    let mut c = Client::connect(broker.addr).await?;
    create(&mut c, "old", 1).await?;
    use kafka_protocol::messages::{produce_request, ProduceRequest};
    use kafka_protocol::records::Compression as Wire;
    for codec in [Wire::Lz4, Wire::Zstd] {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(super::tests::name("old"))
                .with_partition_data(vec![produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(crate::server::tests::batch(&["m1", "m2"], codec)?))])]);
        let resp = c.request(&req, 9).await?.ok_or("closed")?;
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    let (error, _, set) = fetch(&mut c, 2, 0).await;
    assert_eq!(error, 0);
    let (msgs, codec) = message_set::parse(&set)?;
    assert_eq!(
        (msgs.len(), codec),
        (2, Compression::Lz4),
        "the lz4 batch, then a stop at zstd"
    );
    // From the zstd batch on: Kafka's answer to a pre-v10 fetch of zstd data.
    let (error, _, set) = fetch(&mut c, 2, 2).await;
    assert_eq!((error, set.len()), (76, 0));
    broker.stop().await
}
