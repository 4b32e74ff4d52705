//! `GroupRecord`: a group's metadata as persisted in the offsets log (Kafka persists the same
//! facts as `GroupMetadataValue` in `__consumer_offsets`), so a Stable group survives a broker
//! restart: its members keep their ids, generation and assignments, and go on heartbeating.
//!
//! Written by the coordinator when a generation's assignments are in place (Stable) and when the
//! group becomes Empty; a tombstone when the group is deleted or removed. Our own format, all
//! integers big-endian, strings `u16 len + UTF-8` (optional ones behind a `u8` flag), byte
//! strings `u32 len + bytes`:
//! - key v2: `u16 version = 2`, group.
//! - value v1: `u16 version = 1`, protocol type, `i32 generation`, optional protocol name,
//!   optional leader id, `u32 member count`, then per member: member id, optional
//!   `group.instance.id`, client id, client host, `u64 session timeout ms`,
//!   `u64 rebalance timeout ms`, its subscription metadata for the selected protocol (bytes),
//!   its assignment (bytes).

use bytes::{BufMut, Bytes, BytesMut};

use super::offsets::{put_str16, Reader, StoreError};

/// Key version of group records (offset keys are version 1).
pub const GROUP_KEY_VERSION: u16 = 2;
const GROUP_VALUE_VERSION: u16 = 1;

/// A group's persisted metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Protocol type ("" if none).
    pub protocol_type: String,
    /// Generation.
    pub generation_id: i32,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader_id: Option<String>,
    /// Members with their assignments.
    pub members: Vec<MemberRecord>,
}

/// One member in a [`GroupRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: u64,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: u64,
    /// Its metadata for the selected protocol.
    pub subscription: Bytes,
    /// Its assignment.
    pub assignment: Bytes,
}

pub(super) fn encode_group_key(group: &str) -> Result<Bytes, StoreError> {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_u16(GROUP_KEY_VERSION);
    put_str16(&mut buf, group)?;
    Ok(buf.freeze())
}

/// The group of a version-2 key (the version already read by the caller's peek).
pub(super) fn decode_group_key(bytes: &[u8]) -> Result<String, String> {
    let mut r = Reader(bytes);
    r.version(GROUP_KEY_VERSION)?;
    let group = r.str16()?;
    r.finish()?;
    Ok(group)
}

fn put_opt(buf: &mut BytesMut, s: &Option<String>) -> Result<(), StoreError> {
    match s {
        None => buf.put_u8(0),
        Some(s) => {
            buf.put_u8(1);
            put_str16(buf, s)?;
        }
    }
    Ok(())
}

fn put_bytes32(buf: &mut BytesMut, b: &Bytes) -> Result<(), StoreError> {
    let len = u32::try_from(b.len()).map_err(|_| StoreError::Encode("member metadata too long".into()))?;
    buf.put_u32(len);
    buf.put_slice(b);
    Ok(())
}

pub(super) fn encode_group_value(g: &GroupRecord) -> Result<Bytes, StoreError> {
    let mut buf = BytesMut::with_capacity(64 + g.members.len() * 128);
    buf.put_u16(GROUP_VALUE_VERSION);
    put_str16(&mut buf, &g.protocol_type)?;
    buf.put_i32(g.generation_id);
    put_opt(&mut buf, &g.protocol_name)?;
    put_opt(&mut buf, &g.leader_id)?;
    let count = u32::try_from(g.members.len()).map_err(|_| StoreError::Encode("too many members".into()))?;
    buf.put_u32(count);
    for m in &g.members {
        put_str16(&mut buf, &m.member_id)?;
        put_opt(&mut buf, &m.group_instance_id)?;
        put_str16(&mut buf, &m.client_id)?;
        put_str16(&mut buf, &m.client_host)?;
        buf.put_u64(m.session_timeout_ms);
        buf.put_u64(m.rebalance_timeout_ms);
        put_bytes32(&mut buf, &m.subscription)?;
        put_bytes32(&mut buf, &m.assignment)?;
    }
    Ok(buf.freeze())
}

pub(super) fn decode_group_value(bytes: &[u8]) -> Result<GroupRecord, String> {
    let mut r = Reader(bytes);
    r.version(GROUP_VALUE_VERSION)?;
    let protocol_type = r.str16()?;
    let generation_id = i32::from_be_bytes(r.array()?);
    let protocol_name = r.opt_str16()?;
    let leader_id = r.opt_str16()?;
    let count = u32::from_be_bytes(r.array()?);
    let mut members = Vec::new();
    for _ in 0..count {
        members.push(MemberRecord {
            member_id: r.str16()?,
            group_instance_id: r.opt_str16()?,
            client_id: r.str16()?,
            client_host: r.str16()?,
            session_timeout_ms: u64::from_be_bytes(r.array()?),
            rebalance_timeout_ms: u64::from_be_bytes(r.array()?),
            subscription: r.bytes32()?,
            assignment: r.bytes32()?,
        });
    }
    r.finish()?;
    Ok(GroupRecord {
        protocol_type,
        generation_id,
        protocol_name,
        leader_id,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncation() -> Result<(), Box<dyn std::error::Error>> {
        let record = GroupRecord {
            protocol_type: "consumer".into(),
            generation_id: 7,
            protocol_name: Some("range".into()),
            leader_id: Some("m1".into()),
            members: vec![MemberRecord {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 45_000,
                rebalance_timeout_ms: 300_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let value = encode_group_value(&record)?;
        assert_eq!(decode_group_value(&value)?, record);
        for cut in 0..value.len() {
            let prefix = value.get(..cut).ok_or("cut")?;
            assert!(decode_group_value(prefix).is_err(), "cut at {cut}");
        }
        assert_eq!(decode_group_key(&encode_group_key("g")?)?, "g");
        Ok(())
    }
}
