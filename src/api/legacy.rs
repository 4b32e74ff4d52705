//! The old versions old clients still send: Produce v0-2, Fetch v0-3 and ListOffsets v0 (Kafka
//! 3.9 serves them; Kafka 4 and the kafka-protocol crate dropped them). Their bodies are decoded
//! and their responses encoded by hand here, and the modern handlers serve them: Produce's
//! message sets become v2 batches in `produce.rs` (`storage::message_set::up_convert`), and
//! Fetch's v2 batches are converted down to the client's message format here (magic 0 for
//! Fetch v0-1, magic 1 for v2-3; `message_set::down_convert`, bounded by the partition's max
//! bytes). Modern clients never come through this module.
//!
//! Wire layouts (request header v1, response header v0, nothing flexible):
//! - Produce v0-2: acks i16, timeout i32, [name, [index i32, records bytes]]. Response: [name,
//!   [index, error_code i16, base_offset i64, log_append_time i64 (v2)]], throttle i32 (v1+).
//! - Fetch v0-3: replica_id i32, max_wait i32, min_bytes i32, max_bytes i32 (v3), [topic,
//!   [partition i32, fetch_offset i64, partition_max_bytes i32]]. Response: throttle i32 (v1+),
//!   [topic, [partition, error_code, high_watermark i64, records bytes]].
//! - ListOffsets v0: replica_id i32, [name, [partition i32, timestamp i64, max_num_offsets i32]].
//!   Response: [name, [partition, error_code, offsets [i64]]]. Served as v1 (the offset for
//!   the timestamp), so the answer holds at most one offset: the latest (-1), the earliest (-2),
//!   or the first at or after a timestamp, where Kafka's v0 listed segment start offsets.

use bytes::{Buf, BufMut, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, ListOffsetsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::response_buf::ResponseBuf;
use super::{Outcome, RequestContext};
use crate::storage::message_set;

/// The versions this module serves.
pub fn handles(key: ApiKey, version: i16) -> bool {
    match key {
        ApiKey::Produce => (0..=2).contains(&version),
        ApiKey::Fetch => (0..=3).contains(&version),
        ApiKey::ListOffsets => version == 0,
        _ => false,
    }
}

/// An old-version request, in the modern handlers' types where they fit.
#[derive(Debug)]
pub enum Request {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    /// The v1 request, and each partition's max_num_offsets in request order.
    ListOffsets(ListOffsetsRequest, Vec<i32>),
}

type Decode<T> = Result<T, &'static str>;

fn need(buf: &Bytes, n: usize) -> Decode<()> {
    if buf.remaining() < n {
        Err("truncated")
    } else {
        Ok(())
    }
}

fn i16_(buf: &mut Bytes) -> Decode<i16> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

fn i32_(buf: &mut Bytes) -> Decode<i32> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn i64_(buf: &mut Bytes) -> Decode<i64> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

fn string(buf: &mut Bytes) -> Decode<StrBytes> {
    let len = usize::try_from(i16_(buf)?).map_err(|_| "null string")?;
    need(buf, len)?;
    StrBytes::from_utf8(buf.split_to(len)).map_err(|_| "string is not UTF-8")
}

fn nullable_bytes(buf: &mut Bytes) -> Decode<Option<Bytes>> {
    let len = i32_(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| "bad length")?;
    need(buf, len)?;
    Ok(Some(buf.split_to(len)))
}

/// An array's element count, checked against what is left (each element takes at least
/// `min_size` bytes), so a hostile count cannot make us allocate.
fn count(buf: &mut Bytes, min_size: usize) -> Decode<usize> {
    let n = i32_(buf)?;
    let n = usize::try_from(n).map_err(|_| "null array")?;
    if n.saturating_mul(min_size) > buf.remaining() {
        return Err("array longer than the frame");
    }
    Ok(n)
}

/// Decodes the body of an old-version request (the header already taken off `buf`).
pub fn decode(key: ApiKey, version: i16, buf: &mut Bytes) -> Decode<Request> {
    let req = match key {
        ApiKey::Produce => {
            let acks = i16_(buf)?;
            let timeout_ms = i32_(buf)?;
            let nt = count(buf, 6)?;
            let mut topic_data = Vec::with_capacity(nt);
            for _ in 0..nt {
                let name = TopicName(string(buf)?);
                let n = count(buf, 8)?;
                let mut partition_data = Vec::with_capacity(n);
                for _ in 0..n {
                    partition_data.push(
                        PartitionProduceData::default()
                            .with_index(i32_(buf)?)
                            .with_records(nullable_bytes(buf)?),
                    );
                }
                topic_data.push(
                    TopicProduceData::default()
                        .with_name(name)
                        .with_partition_data(partition_data),
                );
            }
            Request::Produce(
                ProduceRequest::default()
                    .with_acks(acks)
                    .with_timeout_ms(timeout_ms)
                    .with_topic_data(topic_data),
            )
        }
        ApiKey::Fetch => {
            // Followers use current versions; an old-version fetch is a consumer's.
            let _replica_id = i32_(buf)?;
            let max_wait_ms = i32_(buf)?;
            let min_bytes = i32_(buf)?;
            let max_bytes = if version >= 3 { i32_(buf)? } else { i32::MAX };
            let nt = count(buf, 6)?;
            let mut topics = Vec::with_capacity(nt);
            for _ in 0..nt {
                let topic = TopicName(string(buf)?);
                let np = count(buf, 16)?;
                let mut partitions = Vec::with_capacity(np);
                for _ in 0..np {
                    partitions.push(
                        FetchPartition::default()
                            .with_partition(i32_(buf)?)
                            .with_fetch_offset(i64_(buf)?)
                            .with_partition_max_bytes(i32_(buf)?)
                            .with_current_leader_epoch(-1)
                            .with_last_fetched_epoch(-1)
                            .with_log_start_offset(-1),
                    );
                }
                topics.push(FetchTopic::default().with_topic(topic).with_partitions(partitions));
            }
            Request::Fetch(
                FetchRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_max_wait_ms(max_wait_ms)
                    .with_min_bytes(min_bytes)
                    .with_max_bytes(max_bytes)
                    .with_session_id(0)
                    .with_session_epoch(-1)
                    .with_topics(topics),
            )
        }
        ApiKey::ListOffsets => {
            let replica_id = i32_(buf)?;
            let nt = count(buf, 6)?;
            let mut topics = Vec::with_capacity(nt);
            let mut max_offsets = Vec::new();
            for _ in 0..nt {
                let name = TopicName(string(buf)?);
                let np = count(buf, 16)?;
                let mut partitions = Vec::with_capacity(np);
                for _ in 0..np {
                    partitions.push(
                        ListOffsetsPartition::default()
                            .with_partition_index(i32_(buf)?)
                            .with_timestamp(i64_(buf)?)
                            .with_current_leader_epoch(-1),
                    );
                    max_offsets.push(i32_(buf)?);
                }
                topics.push(ListOffsetsTopic::default().with_name(name).with_partitions(partitions));
            }
            Request::ListOffsets(
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(replica_id))
                    .with_topics(topics),
                max_offsets,
            )
        }
        _ => return Err("not a legacy request"),
    };
    if buf.has_remaining() {
        return Err("bytes after the request body");
    }
    Ok(req)
}

fn put_string(out: &mut ResponseBuf, s: &str) {
    out.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    out.put_slice(s.as_bytes());
}

fn put_len(out: &mut ResponseBuf, n: usize) {
    out.put_i32(i32::try_from(n).unwrap_or(i32::MAX));
}

/// Serves an old-version request through the modern handler and encodes its response into
/// `out` (response header v0: the correlation id).
pub async fn handle(ctx: &RequestContext<'_>, req: Request, correlation_id: i32, out: &mut ResponseBuf) -> Outcome {
    let version = ctx.version;
    match req {
        Request::Produce(req) => {
            let Some(resp) = super::produce::handle(ctx, req).await else {
                return Outcome::NoResponse;
            };
            out.put_i32(correlation_id);
            put_len(out, resp.responses.len());
            for t in &resp.responses {
                put_string(out, t.name.as_str());
                put_len(out, t.partition_responses.len());
                for p in &t.partition_responses {
                    out.put_i32(p.index);
                    out.put_i16(p.error_code);
                    out.put_i64(p.base_offset);
                    if version >= 2 {
                        out.put_i64(p.log_append_time_ms);
                    }
                }
            }
            if version >= 1 {
                out.put_i32(resp.throttle_time_ms);
            }
        }
        Request::Fetch(req) => {
            // Fetch v0-1 read magic 0, v2-3 magic 1 (Kafka's mapping).
            let magic = if version <= 1 { 0 } else { 1 };
            let asked: Vec<(i64, i32)> = req
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (p.fetch_offset, p.partition_max_bytes)))
                .collect();
            let resp = super::fetch::handle(ctx, req).await;
            out.put_i32(correlation_id);
            if version >= 1 {
                out.put_i32(resp.throttle_time_ms);
            }
            put_len(out, resp.responses.len());
            let mut asked = asked.into_iter();
            for t in &resp.responses {
                put_string(out, t.topic.as_str());
                put_len(out, t.partitions.len());
                for p in &t.partitions {
                    let (fetch_offset, max_bytes) = asked.next().unwrap_or((0, 0));
                    let mut error_code = p.error_code;
                    let mut set = Bytes::new();
                    if let Some(records) = p.records.as_ref().filter(|r| !r.is_empty() && error_code == 0) {
                        let max_bytes = usize::try_from(max_bytes.max(0)).unwrap_or(0);
                        match message_set::down_convert(records, magic, fetch_offset, max_bytes) {
                            Ok(d) if d.set.is_empty() && d.stopped_at_zstd => {
                                error_code = ResponseError::UnsupportedCompressionType.code();
                            }
                            Ok(d) => set = d.set,
                            Err(e) => {
                                tracing::warn!(topic = %t.topic.as_str(), partition = p.partition_index, error = %e,
                                    "down-converting fetched batches failed");
                                error_code = ResponseError::CorruptMessage.code();
                            }
                        }
                    }
                    out.put_i32(p.partition_index);
                    out.put_i16(error_code);
                    out.put_i64(p.high_watermark);
                    put_len(out, set.len());
                    out.share(&set);
                    out.put_slice(&set);
                }
            }
        }
        Request::ListOffsets(req, max_offsets) => {
            let v1 = RequestContext {
                broker: ctx.broker,
                header: ctx.header,
                version: 1,
                peer: ctx.peer,
                listener: ctx.listener,
                principal: ctx.principal,
            };
            let resp = super::list_offsets::handle(&v1, req);
            out.put_i32(correlation_id);
            put_len(out, resp.topics.len());
            let mut max_offsets = max_offsets.into_iter();
            for t in &resp.topics {
                put_string(out, t.name.as_str());
                put_len(out, t.partitions.len());
                for p in &t.partitions {
                    let wanted = max_offsets.next().unwrap_or(1);
                    out.put_i32(p.partition_index);
                    out.put_i16(p.error_code);
                    if p.error_code == 0 && p.offset >= 0 && wanted > 0 {
                        out.put_i32(1);
                        out.put_i64(p.offset);
                    } else {
                        out.put_i32(0);
                    }
                }
            }
        }
    }
    Outcome::Respond
}
