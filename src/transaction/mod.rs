//! The transaction coordinator (KIP-98): exactly-once across partitions.
//!
//! Scope: Kafka's transaction protocol version 1 (the broker does not advertise the
//! `transaction.version` feature, so Java 4.x clients use it too): the producer epoch is bumped
//! by InitProducerId and by coordinator-side aborts (fencing, timeouts), not by every EndTxn.
//!
//! The pieces:
//! - [`TransactionStateMachine`] (`state_machine.rs`): Kafka's rules for every transactional
//!   id, pure and clock-free. Each call returns its answer plus the work to do: persist the
//!   metadata, and for a transaction being completed, write markers and then call
//!   [`TransactionStateMachine::markers_written`].
//! - [`coordinator`]: the actor that owns the state machine and the `__transaction_state-0` log
//!   ([`record`] is its record format), writes markers through the replica manager and ends
//!   transactional offsets through the group coordinator, aborts timed-out transactions.
//! - The log side (`storage`): markers as control batches, the last stable offset, `.txnindex`.

pub mod coordinator;
pub mod record;
pub mod state_machine;

pub use state_machine::{
    EndTxnOutcome, InitPidOutcome, MarkerJob, TransactionMetadata, TransactionStateMachine, TxnError, TxnResult,
    TxnState,
};

/// The transaction coordinator's settings, Kafka's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TransactionConfig {
    /// `transaction.max.timeout.ms` (900000): longer producer timeouts get INVALID_TRANSACTION_TIMEOUT.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms` (604800000 = 7 days): idle ids are forgotten.
    pub id_expiration_ms: u64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (10000).
    pub abort_timed_out_interval_ms: u64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms` (3600000).
    pub remove_expired_interval_ms: u64,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
        }
    }
}
