//! The record format of `__transaction_state` (written by the coordinator actor): one
//! record per transactional id, the latest wins, a null value deletes (compaction by key, as
//! the offsets log). Our own versioned format, big-endian, strings `u16 len + UTF-8`:
//! - key v1: `u16 version = 1`, transactional id.
//! - value v1: `u16 version = 1`, `i64 producer id`, `i64 last producer id`, `i16 epoch`,
//!   `i16 last epoch`, `i32 timeout ms`, `u8 state` (see [`state_code`]), `u64 txn start ms`,
//!   `u64 last update ms`, `u32 partition count`, then per partition topic and `i32 partition`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state_machine::{TransactionMetadata, TxnState};

const KEY_VERSION: u16 = 1;
const VALUE_VERSION: u16 = 1;

/// Why a stored record does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction record: {0}")]
pub struct RecordError(String);

fn bad(why: impl Into<String>) -> RecordError {
    RecordError(why.into())
}

/// The state's stored code (stable across releases: append, never renumber).
pub fn state_code(state: TxnState) -> u8 {
    match state {
        TxnState::Empty => 0,
        TxnState::Ongoing => 1,
        TxnState::PrepareCommit => 2,
        TxnState::PrepareAbort => 3,
        TxnState::CompleteCommit => 4,
        TxnState::CompleteAbort => 5,
        TxnState::Dead => 6,
        TxnState::PrepareEpochFence => 7,
    }
}

fn state_from(code: u8) -> Result<TxnState, RecordError> {
    Ok(match code {
        0 => TxnState::Empty,
        1 => TxnState::Ongoing,
        2 => TxnState::PrepareCommit,
        3 => TxnState::PrepareAbort,
        4 => TxnState::CompleteCommit,
        5 => TxnState::CompleteAbort,
        6 => TxnState::Dead,
        7 => TxnState::PrepareEpochFence,
        other => return Err(bad(format!("unknown state {other}"))),
    })
}

fn put_str(buf: &mut BytesMut, s: &str) -> Result<(), RecordError> {
    let len = u16::try_from(s.len()).map_err(|_| bad("string longer than 65535 bytes"))?;
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn get_str(buf: &mut Bytes) -> Result<String, RecordError> {
    need(buf, 2)?;
    let len = usize::from(buf.get_u16());
    need(buf, len)?;
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|e| bad(e.to_string()))
}

fn need(buf: &Bytes, n: usize) -> Result<(), RecordError> {
    if buf.remaining() < n {
        Err(bad(format!("truncated: wanted {n} bytes, {} left", buf.remaining())))
    } else {
        Ok(())
    }
}

pub fn encode_key(transactional_id: &str) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_u16(KEY_VERSION);
    put_str(&mut buf, transactional_id)?;
    Ok(buf.freeze())
}

pub fn decode_key(mut buf: Bytes) -> Result<String, RecordError> {
    need(&buf, 2)?;
    if buf.get_u16() != KEY_VERSION {
        return Err(bad("unknown key version"));
    }
    let id = get_str(&mut buf)?;
    if buf.has_remaining() {
        return Err(bad("trailing bytes in key"));
    }
    Ok(id)
}

pub fn encode_value(t: &TransactionMetadata) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(64 + t.partitions.len() * 32);
    buf.put_u16(VALUE_VERSION);
    buf.put_i64(t.producer_id);
    buf.put_i64(t.last_producer_id);
    buf.put_i16(t.producer_epoch);
    buf.put_i16(t.last_producer_epoch);
    buf.put_i32(t.timeout_ms);
    buf.put_u8(state_code(t.state));
    buf.put_u64(t.txn_start_ms);
    buf.put_u64(t.last_update_ms);
    let count = u32::try_from(t.partitions.len()).map_err(|_| bad("too many partitions"))?;
    buf.put_u32(count);
    for (topic, partition) in &t.partitions {
        put_str(&mut buf, topic)?;
        buf.put_i32(*partition);
    }
    Ok(buf.freeze())
}

pub fn decode_value(transactional_id: &str, mut buf: Bytes) -> Result<TransactionMetadata, RecordError> {
    need(&buf, 2 + 8 + 8 + 2 + 2 + 4 + 1 + 8 + 8 + 4)?;
    if buf.get_u16() != VALUE_VERSION {
        return Err(bad("unknown value version"));
    }
    let producer_id = buf.get_i64();
    let last_producer_id = buf.get_i64();
    let producer_epoch = buf.get_i16();
    let last_producer_epoch = buf.get_i16();
    let timeout_ms = buf.get_i32();
    let state = state_from(buf.get_u8())?;
    let txn_start_ms = buf.get_u64();
    let last_update_ms = buf.get_u64();
    let count = buf.get_u32();
    let mut partitions = std::collections::BTreeSet::new();
    for _ in 0..count {
        let topic = get_str(&mut buf)?;
        need(&buf, 4)?;
        partitions.insert((topic, buf.get_i32()));
    }
    if buf.has_remaining() {
        return Err(bad("trailing bytes in value"));
    }
    Ok(TransactionMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        last_producer_id,
        producer_epoch,
        last_producer_epoch,
        timeout_ms,
        state,
        partitions,
        txn_start_ms,
        last_update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation_is_an_error() -> Result<(), RecordError> {
        let t = TransactionMetadata {
            transactional_id: "tx-1".into(),
            producer_id: 42,
            last_producer_id: -1,
            producer_epoch: 5,
            last_producer_epoch: 4,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("a".to_string(), 0), ("b".to_string(), 3)].into_iter().collect(),
            txn_start_ms: 1_000,
            last_update_ms: 2_000,
        };
        let key = encode_key(&t.transactional_id)?;
        let id = decode_key(key)?;
        let value = encode_value(&t)?;
        assert_eq!(decode_value(&id, value.clone())?, t);
        for cut in 0..value.len() {
            assert!(decode_value(&id, value.slice(..cut)).is_err(), "cut at {cut}");
        }
        for state in [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
            TxnState::Dead,
            TxnState::PrepareEpochFence,
        ] {
            assert_eq!(state_from(state_code(state))?, state);
        }
        assert!(state_from(8).is_err());
        Ok(())
    }
}
