//! One member of a classic group (Kafka's `MemberMetadata`): who it is, its timeouts, the
//! protocols it offers with their metadata, the assignment the leader gave it, and whether one
//! of its JoinGroup or SyncGroup requests is waiting for an answer.
//!
//! Liveness follows Kafka: a member is expired when its heartbeat deadline passes, except while a
//! JoinGroup or SyncGroup of it is parked (the client cannot heartbeat then), and a *new* member
//! parked in its first JoinGroup is only kept for [`NEW_MEMBER_JOIN_TIMEOUT_MS`].

use bytes::Bytes;

/// How long a member that joined for the first time may wait in a rebalance before it is dropped
/// (Kafka's `NewMemberJoinTimeoutMs`, 5 minutes): a client that gave up and retried with a new
/// member id must not keep a defunct member in the group forever.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 5 * 60 * 1000;

/// One protocol a member supports (e.g. "range" with its subscription metadata), in the
/// member's order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// Protocol name, e.g. "range" or "cooperative-sticky" for consumers.
    pub name: String,
    /// Opaque protocol metadata (for consumers: the serialized subscription).
    pub metadata: Bytes,
}

impl Protocol {
    /// A protocol with its metadata.
    pub fn new(name: impl Into<String>, metadata: impl Into<Bytes>) -> Self {
        Protocol {
            name: name.into(),
            metadata: metadata.into(),
        }
    }
}

/// The coordinator's record of one group member.
#[derive(Debug, Clone)]
pub struct MemberMetadata {
    /// The id the coordinator gave this member.
    pub member_id: String,
    /// `group.instance.id` of a static member; `None` for a dynamic member.
    pub group_instance_id: Option<String>,
    /// The client id of its last JoinGroup.
    pub client_id: String,
    /// The client host of its last JoinGroup.
    pub client_host: String,
    /// The session timeout it asked for (already checked against the broker's bounds).
    pub session_timeout_ms: u64,
    /// How long it may take to rejoin during a rebalance.
    pub rebalance_timeout_ms: u64,
    /// Protocol type, e.g. "consumer".
    pub protocol_type: String,
    /// Supported protocols, most preferred first.
    pub protocols: Vec<Protocol>,
    /// Its assignment from the leader's last SyncGroup (empty until then).
    pub assignment: Bytes,
    /// When it last proved it is alive (heartbeat, join, sync).
    pub last_heartbeat_ms: u64,
    /// When it is considered dead unless it proves it is alive again.
    pub heartbeat_deadline_ms: u64,
    /// A JoinGroup of this member is parked until the rebalance completes.
    pub awaiting_join: bool,
    /// A SyncGroup of this member is parked until the leader sends the assignments.
    pub awaiting_sync: bool,
    /// Joined in the current rebalance and has not received a JoinGroup answer yet.
    pub is_new: bool,
}

impl MemberMetadata {
    /// Whether this member is static (has a `group.instance.id`).
    pub fn is_static(&self) -> bool {
        self.group_instance_id.is_some()
    }

    /// The metadata it sent for `protocol`, if it supports it.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols.iter().find(|p| p.name == protocol).map(|p| &p.metadata)
    }

    /// Whether it supports the protocol `name`.
    pub fn supports(&self, name: &str) -> bool {
        self.protocols.iter().any(|p| p.name == name)
    }

    /// Whether `protocols` are exactly what it sent last time (names, order and metadata), as
    /// Kafka's `MemberMetadata.matches`.
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// Its vote in protocol selection: its most preferred protocol among `candidates`.
    pub fn vote<'a>(&self, candidates: &[&'a str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .find_map(|p| candidates.iter().find(|c| **c == p.name).copied())
    }

    /// Records a sign of life at `now_ms` and sets the next deadline `timeout_ms` later.
    pub(crate) fn touch(&mut self, now_ms: u64, timeout_ms: u64) {
        self.last_heartbeat_ms = now_ms;
        self.heartbeat_deadline_ms = now_ms.saturating_add(timeout_ms);
    }

    /// Records a heartbeat: the next one is due within the session timeout.
    pub(crate) fn heartbeat(&mut self, now_ms: u64) {
        self.touch(now_ms, self.session_timeout_ms);
    }

    /// When this member expires if nothing happens, or `None` while it cannot expire (a parked
    /// JoinGroup or SyncGroup of a member that is not new), as Kafka's `hasSatisfiedHeartbeat`.
    pub fn expiry_deadline_ms(&self) -> Option<u64> {
        if !self.is_new && (self.awaiting_join || self.awaiting_sync) {
            None
        } else {
            Some(self.heartbeat_deadline_ms)
        }
    }

    /// Whether the member has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expiry_deadline_ms().is_some_and(|deadline| now_ms >= deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(protocols: Vec<Protocol>) -> MemberMetadata {
        MemberMetadata {
            member_id: "m".into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols,
            assignment: Bytes::new(),
            last_heartbeat_ms: 0,
            heartbeat_deadline_ms: 10_000,
            awaiting_join: false,
            awaiting_sync: false,
            is_new: false,
        }
    }

    #[test]
    fn vote_takes_the_most_preferred_candidate() -> Result<(), String> {
        let m = member(vec![
            Protocol::new("sticky", ""),
            Protocol::new("range", ""),
            Protocol::new("rr", ""),
        ]);
        assert_eq!(m.vote(&["rr", "range"]), Some("range"));
        assert_eq!(m.vote(&["other"]), None);
        Ok(())
    }

    #[test]
    fn parked_members_do_not_expire_unless_new() -> Result<(), String> {
        let mut m = member(vec![Protocol::new("range", "x")]);
        assert!(m.is_expired(10_000));
        m.awaiting_sync = true;
        assert!(!m.is_expired(99_000));
        m.awaiting_sync = false;
        m.awaiting_join = true;
        assert!(!m.is_expired(99_000));
        m.is_new = true;
        assert!(m.is_expired(10_000));
        Ok(())
    }

    #[test]
    fn matches_compares_names_order_and_metadata() -> Result<(), String> {
        let m = member(vec![Protocol::new("range", "a"), Protocol::new("rr", "b")]);
        assert!(m.matches(&[Protocol::new("range", "a"), Protocol::new("rr", "b")]));
        assert!(!m.matches(&[Protocol::new("rr", "b"), Protocol::new("range", "a")]));
        assert!(!m.matches(&[Protocol::new("range", "changed"), Protocol::new("rr", "b")]));
        Ok(())
    }
}
