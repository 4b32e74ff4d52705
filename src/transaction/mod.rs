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
//! - [`coordinator`]: the actor that owns the state machine of the ids whose
//!   `__transaction_state` partitions this broker leads ([`record`] is its record format; state
//!   changes are answered once replicated), loads and unloads partitions as leadership moves,
//!   aborts timed-out transactions.
//! - [`markers`]: writes a completed transaction's markers to each partition's leader (this
//!   broker's directly, the others' with WriteTxnMarkers) and ends transactional offsets
//!   through the group coordinator.
//! - The log side (`storage`): markers as control batches, the last stable offset, `.txnindex`.

pub mod coordinator;
pub mod markers;
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
    /// `transaction.state.log.num.partitions` (50): partitions of `__transaction_state` when it
    /// is created (at the first FindCoordinator for a transactional id).
    pub state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (3), capped by the brokers registered.
    pub state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr` (2): the topic's `min.insync.replicas`, capped by its
    /// replication factor.
    pub state_log_min_isr: i16,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
            state_log_num_partitions: 50,
            state_log_replication_factor: 3,
            state_log_min_isr: 2,
        }
    }
}
